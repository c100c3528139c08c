/*
 * Unit tests of SMS templates (menus' "sms" section): what the loader
 * refuses (an undeclared or unsupplied variable, a missing language, a
 * stray brace) and what the renderer makes of a row's variables (text,
 * numbers, translated parts, lines), never a message with a hole.
 */
#include "t.h"
#include "base/config.h"
#include "base/gsm7.h"
#include "base/menu.h"
#include "base/util.h"
#include "dom/notify.h"
#include "ussd/act.h"
#include "ussd/ussd.h"

#include <stdlib.h>

void test_sms_template_validation(void);
void test_sms_render(void);
void test_sms_real_templates(void);

#define NAV "\"strings\": {\"nav_back\": {\"en\": \"0. Back\", \"sw\": \"0. Rudi\"}, " \
	    "\"nav_home\": {\"en\": \"00. Menu\", \"sw\": \"00. Menyu\"}, \"nav_more\": {\"en\": \"98. More\", \"sw\": \"98. Zaidi\"}}"

static const struct menu_sms_need needs[] = {
	{ "sms_receipt", "chama amount receipt" },
	{ "sms_word_*", "" },
	{ NULL, NULL },
};

/* One document with the SMS section sms, finished with needs (or none);
 * returns the set, or NULL with err filled. */
static struct menu_set *load_sms(const char *sms, const struct menu_sms_need *need, char *err, size_t errlen)
{
	struct menu_opts o = { 160, 30, NULL, NULL, NULL, need };
	struct menu_set *m = menu_set_new();
	char *json = xasprintf("{" NAV ", \"sms\": {%s}}", sms);

	if (menu_set_add_json(m, "s.json", json, strlen(json), err, errlen) < 0 ||
	    menu_set_finish(m, &o, err, errlen) < 0) {
		menu_set_unref(m);
		m = NULL;
	}
	free(json);
	return m;
}

static bool refused(const char *sms, const struct menu_sms_need *need, const char *want1, const char *want2)
{
	char err[512] = "";
	struct menu_set *m = load_sms(sms, need, err, sizeof(err));
	bool ok = m == NULL && strstr(err, want1) && (!want2 || strstr(err, want2));

	if (!ok)
		fprintf(stderr, "    got: %s\n", m ? "(loaded)" : err);
	menu_set_unref(m);
	return ok;
}

#define RECEIPT_EN "\"en\": \"Got KES {amount} for {chama}, ref {receipt}.\""
#define RECEIPT_SW "\"sw\": \"Tumepokea KES {amount} kwa {chama}, {receipt}.\""

void test_sms_template_validation(void)
{
	char err[512];
	struct menu_set *m;

	m = load_sms("\"sms_receipt\": {\"vars\": [\"amount\", \"chama\", \"receipt\"], " RECEIPT_EN ", " RECEIPT_SW "}",
		     needs, err, sizeof(err));
	T_CHECK(m != NULL && menu_sms_exists(m, "sms_receipt") && !menu_sms_exists(m, "sms_nope"));
	if (!m)
		fprintf(stderr, "    %s\n", err);
	menu_set_unref(m);
	/* a text that uses a variable "vars" does not declare (a typo), in one language only */
	T_CHECK(refused("\"sms_receipt\": {\"vars\": [\"amount\", \"chama\", \"receipt\"], " RECEIPT_EN ", "
			"\"sw\": \"Tumepokea KES {amount} kwa {chama}, {reciept}.\"}",
			NULL, "s.json: sms_receipt: sw text uses {reciept}", "does not declare"));
	/* a language missing */
	T_CHECK(refused("\"sms_receipt\": {\"vars\": [\"amount\", \"chama\", \"receipt\"], " RECEIPT_EN "}", NULL,
			"s.json: sms_receipt: ", "missing translation (sw)"));
	/* "vars" missing altogether */
	T_CHECK(refused("\"sms_receipt\": {" RECEIPT_EN ", " RECEIPT_SW "}", NULL, "sms_receipt: ", "\"vars\""));
	/* a brace that opens no variable would be a hole */
	T_CHECK(refused("\"sms_x\": {\"vars\": [], \"en\": \"Use {\", \"sw\": \"x\"}", NULL, "sms_x: en text: the brace",
			NULL));
	T_CHECK(refused("\"sms_x\": {\"vars\": [], \"en\": \"a } b\", \"sw\": \"x\"}", NULL, "sms_x: en text: the brace",
			NULL));
	/* keys and names have a shape */
	T_CHECK(refused("\"receipt\": {\"vars\": [], \"en\": \"x\", \"sw\": \"x\"}", NULL, "receipt: an SMS template's key",
			NULL));
	T_CHECK(refused("\"sms_x\": {\"vars\": [\"Bad name\"], \"en\": \"x\", \"sw\": \"x\"}", NULL, "\"vars\" holds names",
			NULL));
	T_CHECK(refused("\"sms_x\": {\"vars\": [\"a\", \"a\"], \"en\": \"{a}\", \"sw\": \"{a}\"}", NULL, "declared twice",
			NULL));
	/* GSM-7 only, and one message long without its variables */
	T_CHECK(refused("\"sms_x\": {\"vars\": [], \"en\": \"Don\xe2\x80\x99t\", \"sw\": \"x\"}", NULL, "GSM-7", NULL));
	{
		char big[512];

		snprintf(big, sizeof(big), "\"sms_x\": {\"vars\": [\"a\"], \"en\": \"{a}\", \"sw\": \"%0161d\"}", 0);
		T_CHECK(refused(big, NULL, "sms_x: sw text is 161 characters without its variables", NULL));
	}
	/* declared, but no writer supplies it: every message would have a hole */
	T_CHECK(refused("\"sms_receipt\": {\"vars\": [\"amount\", \"chama\", \"receipt\", \"date\"], "
			"\"en\": \"{amount} {chama} {receipt} on {date}\", \"sw\": \"{amount}\"}",
			needs, "s.json: sms_receipt: declares {date}", "does not supply (it supplies: chama amount receipt)"));
	/* a prefix covers every template it names, and requires none */
	T_CHECK(refused("\"sms_receipt\": {\"vars\": [\"amount\", \"chama\", \"receipt\"], " RECEIPT_EN ", " RECEIPT_SW "}, "
			"\"sms_word_in\": {\"vars\": [\"x\"], \"en\": \"in {x}\", \"sw\": \"ndani {x}\"}",
			needs, "sms_word_in: declares {x}", "supplies: nothing"));
	/* a template the code writes is missing */
	T_CHECK(refused("\"sms_other\": {\"vars\": [], \"en\": \"x\", \"sw\": \"x\"}", needs,
			"menus: sms_receipt: SMS template is missing", NULL));
	/* a key is a template or a string, not both */
	{
		static const char j[] = "{\"strings\": {\"sms_dup\": {\"en\": \"x\", \"sw\": \"x\"}}, "
					"\"sms\": {\"sms_dup\": {\"vars\": [], \"en\": \"x\", \"sw\": \"x\"}}}";

		m = menu_set_new();
		T_CHECK(menu_set_add_json(m, "d.json", j, sizeof(j) - 1, err, sizeof(err)) == -1 &&
			strstr(err, "d.json: sms_dup: ") && strstr(err, "twice"));
		menu_set_unref(m);
	}
}

static int render(const struct menu_set *m, const char *key, enum menu_lang lang, const char *vars, char *out,
		  size_t outlen, char *err, size_t errlen)
{
	struct buf b;
	int rc;

	buf_init(&b, 8192);
	rc = menu_sms_render(m, key, lang, vars, &b, err, errlen);
	snprintf(out, outlen, "%s", b.data ? b.data : "");
	buf_free(&b);
	return rc;
}

void test_sms_render(void)
{
	static const char sms[] =
		"\"sms_receipt\": {\"vars\": [\"amount\", \"chama\", \"receipt\"], " RECEIPT_EN ", " RECEIPT_SW "}, "
		"\"sms_bal\": {\"vars\": [\"lines\"], \"en\": \"Balance:{lines}\", \"sw\": \"Salio:{lines}\"}, "
		"\"sms_bal_line\": {\"vars\": [\"chama\", \"what\", \"n\"], \"en\": \"{chama} {what} {n}\", "
		"\"sw\": \"{chama} {what} {n}\"}, "
		"\"sms_word_in\": {\"vars\": [], \"en\": \"paid in\", \"sw\": \"umechanga\"}";
	char err[512], out[1024];
	struct menu_set *m = load_sms(sms, needs, err, sizeof(err));

	T_CHECK(m != NULL);
	if (!m) {
		fprintf(stderr, "    %s\n", err);
		return;
	}
	/* each language from its own text; values transliterated to GSM-7 */
	T_CHECK(render(m, "sms_receipt", LANG_SW, "{\"amount\": \"1,500\", \"chama\": \"Nyot\xc3\xa2 \xe2\x80\x9c" "A\xe2\x80\x9d\", "
		       "\"receipt\": \"QK12\"}", out, sizeof(out), err, sizeof(err)) == 0);
	T_STREQ(out, "Tumepokea KES 1,500 kwa Nyota \"A\", QK12.");
	T_CHECK(gsm7_septets(out, NULL) > 0);
	T_CHECK(render(m, "sms_receipt", LANG_EN, "{\"amount\": \"1,500\", \"chama\": \"Umoja\", \"receipt\": \"QK12\"}",
		       out, sizeof(out), err, sizeof(err)) == 0);
	T_STREQ(out, "Got KES 1,500 for Umoja, ref QK12.");
	/* a variable missing, null, empty or blank: never a hole */
	static const char *const holes[] = {
		"{\"amount\": \"1,500\", \"chama\": \"Umoja\"}",
		"{\"amount\": \"1,500\", \"chama\": \"Umoja\", \"receipt\": null}",
		"{\"amount\": \"1,500\", \"chama\": \"Umoja\", \"receipt\": \"\"}",
		"{\"amount\": \"1,500\", \"chama\": \"Umoja\", \"receipt\": \"  \"}",
		"{\"amount\": \"1,500\", \"chama\": \"Umoja\", \"receipt\": []}",
	};
	for (size_t i = 0; i < ARRAY_LEN(holes); i++) {
		strcpy(out, "untouched");
		T_CHECK(render(m, "sms_receipt", LANG_EN, holes[i], out, sizeof(out), err, sizeof(err)) == -1);
		T_CHECK(strstr(err, "template sms_receipt: variable {receipt} is missing") != NULL);
		T_STREQ(out, "");
	}
	T_CHECK(render(m, "sms_receipt", LANG_EN, NULL, out, sizeof(out), err, sizeof(err)) == -1 &&
		strstr(err, "variable {amount} is missing"));
	/* not a value: refused too */
	T_CHECK(render(m, "sms_receipt", LANG_EN, "{\"amount\": true, \"chama\": \"U\", \"receipt\": \"Q\"}", out,
		       sizeof(out), err, sizeof(err)) == -1 && strstr(err, "{amount} is neither"));
	T_CHECK(render(m, "sms_receipt", LANG_EN, "[1]", out, sizeof(out), err, sizeof(err)) == -1 &&
		strstr(err, "not a JSON object"));
	T_CHECK(render(m, "sms_nope", LANG_EN, "{}", out, sizeof(out), err, sizeof(err)) == -1 &&
		strstr(err, "unknown SMS template \"sms_nope\""));
	/* a list: each item a line template on its own line, a translated word
	 * inside, numbers as text */
	static const char lines[] =
		"{\"lines\": [{\"template\": \"sms_bal_line\", \"vars\": {\"chama\": \"Umoja\", \"what\": "
		"{\"template\": \"sms_word_in\"}, \"n\": 3}}, {\"template\": \"sms_bal_line\", \"vars\": {\"chama\": \"Tumaini\", "
		"\"what\": {\"template\": \"sms_word_in\"}, \"n\": 40}}]}";
	T_CHECK(render(m, "sms_bal", LANG_SW, lines, out, sizeof(out), err, sizeof(err)) == 0);
	T_STREQ(out, "Salio:\nUmoja umechanga 3\nTumaini umechanga 40");
	T_CHECK(render(m, "sms_bal", LANG_EN, lines, out, sizeof(out), err, sizeof(err)) == 0);
	T_STREQ(out, "Balance:\nUmoja paid in 3\nTumaini paid in 40");
	/* a line missing a variable fails the whole message, naming the line */
	T_CHECK(render(m, "sms_bal", LANG_EN, "{\"lines\": [{\"template\": \"sms_bal_line\", \"vars\": {\"chama\": \"U\", "
		       "\"what\": \"x\"}}]}", out, sizeof(out), err, sizeof(err)) == -1 &&
		strstr(err, "template sms_bal_line: variable {n} is missing"));
	T_CHECK(render(m, "sms_bal", LANG_EN, "{\"lines\": [{\"template\": \"sms_gone\"}]}", out, sizeof(out), err,
		       sizeof(err)) == -1 && strstr(err, "unknown SMS template \"sms_gone\""));
	/* templates inside themselves stop */
	T_CHECK(render(m, "sms_bal", LANG_EN, "{\"lines\": [{\"template\": \"sms_bal\", \"vars\": {\"lines\": [{\"template\": "
		       "\"sms_bal\", \"vars\": {\"lines\": [{\"template\": \"sms_bal\", \"vars\": {\"lines\": [{\"template\": "
		       "\"sms_bal\"}]}}]}}]}}]}", out, sizeof(out), err, sizeof(err)) == -1 && strstr(err, "nested"));
	menu_set_unref(m);
}

/* The shipped menus against what the code writes: every template there,
 * rendered in both languages with every variable its writer supplies,
 * leaves no brace and no double space. */
void test_sms_real_templates(void)
{
	struct config *cfg = config_new();
	char err[512], out[1024];
	struct menu_set *m;

	/* what main.c registers: the menus name these actions */
	act_register_all();
	m = ussd_menus_load(cfg, err, sizeof(err));

	T_CHECK(m != NULL);
	if (!m) {
		fprintf(stderr, "    menus: %s\n", err);
		config_free(cfg);
		return;
	}
	for (size_t i = 0; notify_templates[i].key; i++) {
		const struct menu_sms_need *n = &notify_templates[i];
		struct buf vars;
		const char *p = n->vars;

		if (n->key[strlen(n->key) - 1] == '*')
			continue;
		buf_init(&vars, 4096);
		buf_puts(&vars, "{");
		while (*p) {
			size_t len = strcspn(p, " ");

			/* lines are lists of line templates: give them one */
			if (len == 5 && !strncmp(p, "lines", 5))
				buf_printf(&vars, "%s\"lines\": [\"one line\"]", vars.len > 1 ? ", " : "");
			else
				buf_printf(&vars, "%s\"%.*s\": \"v%.*s\"", vars.len > 1 ? ", " : "", (int)len, p,
					   (int)len, p);
			p += len + strspn(p + len, " ");
		}
		buf_puts(&vars, "}");
		for (int lang = 0; lang < LANG_COUNT; lang++) {
			const char *v = vars.data;

			T_CHECK(render(m, n->key, (enum menu_lang)lang, v, out, sizeof(out), err, sizeof(err)) == 0);
			if (strpbrk(out, "{}") || strstr(out, "  "))
				fprintf(stderr, "    %s (%s): %s\n", n->key, menu_lang_code((enum menu_lang)lang), out);
			T_CHECK(!strpbrk(out, "{}") && !strstr(out, "  ") && *out);
		}
		buf_free(&vars);
	}
	menu_set_unref(m);
	config_free(cfg);
}
