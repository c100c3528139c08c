/*
 * Unit tests of the USSD building blocks that need no server: phone
 * numbers, GSM-7, the aggregators' parsers, menu loading and validation,
 * rendering within the cap, and the trivial-PIN rule.
 */
#include "t.h"
#include "dom/auth.h"
#include "base/config.h"
#include "base/gsm7.h"
#include "base/menu.h"
#include "base/phone.h"
#include "ussd/ussd.h"
#include "ussd/act.h"
#include "ussd/ussd_hop.h"
#include "base/util.h"

#include <stdlib.h>

void test_phone_normalise(void);
void test_gsm7(void);
void test_at_parse(void);
void test_hubtel_parse(void);
void test_menu_validation(void);
void test_menu_render_limits(void);
void test_real_menus(void);
void test_trivial_pins(void);

void test_phone_normalise(void)
{
	static const char *const same[] = { "0712345678", "712345678", "254712345678", "+254712345678",
					    "+254 712 345 678", "00254712345678", "0712-345-678" };
	static const char *const bad[] = { "", "12", "+0712345678", "07123abc78", "+2547123456789012345",
					   "++254712345678", "phone" };
	char out[20];

	for (size_t i = 0; i < ARRAY_LEN(same); i++) {
		T_CHECK(phone_normalise(same[i], "254", out, sizeof(out)) == 0);
		T_STREQ(out, "+254712345678");
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		T_CHECK(phone_normalise(bad[i], "254", out, sizeof(out)) == -1);
	/* another country's code from config */
	T_CHECK(phone_normalise("0246912184", "233", out, sizeof(out)) == 0);
	T_STREQ(out, "+233246912184");
	T_CHECK(phone_normalise("233246912184", "233", out, sizeof(out)) == 0);
	T_STREQ(out, "+233246912184");
}

void test_gsm7(void)
{
	char out[64];
	size_t bad = 99;

	T_CHECK(gsm7_septets("Hello, 1. Salio", NULL) == 15);
	T_CHECK(gsm7_septets("\xc3\xa9t\xc3\xa9", NULL) == 3);		/* é is in the basic set */
	T_CHECK(gsm7_septets("{x}", NULL) == 5);			/* braces take two septets */
	T_CHECK(gsm7_septets("\xe2\x82\xac", NULL) == 2);		/* euro sign */
	T_CHECK(gsm7_septets("ok \xe2\x80\x99", &bad) == -1 && bad == 3);	/* typographic apostrophe */
	T_CHECK(gsm7_septets("a`b", &bad) == -1 && bad == 1);
	T_CHECK(gsm7_septets("\xff", NULL) == -1);			/* not UTF-8 */
	T_CHECK(gsm7_septets("\xf0\x9f\x98\x80", NULL) == -1);	/* emoji */
	gsm7_transliterate("Ng\xc3\xa2ng\xe2\x80\x99" "a \xf0\x9f\x98\x80\t\xff", 17, out, sizeof(out));
	T_STREQ(out, "Ngang'a ? ?");
	T_CHECK(gsm7_septets(out, NULL) >= 0);
	/* output never overflows and stays valid */
	gsm7_transliterate("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, out, 4);
	T_CHECK(strlen(out) <= 3 && gsm7_septets(out, NULL) >= 0);
	T_CHECK(utf8_valid("abc", 3) && !utf8_valid("\xc0\xaf", 2) && !utf8_valid("\xed\xa0\x80", 3));
}

void test_at_parse(void)
{
	struct ussd_req r;
	char err[128];
	static const char ok[] = "sessionId=ATUid_1&serviceCode=%2A384%2A1234%23&phoneNumber=%2B254712345678"
				 "&networkCode=63902&text=1%2A2%2AJane+Doe";

	T_CHECK(ussd_adapter_at.parse(ok, sizeof(ok) - 1, &r, err, sizeof(err)) == 0);
	T_STREQ(r.session_id, "ATUid_1");
	T_STREQ(r.phone, "+254712345678");
	T_STREQ(r.service_code, "*384*1234#");
	T_STREQ(r.text, "1*2*Jane Doe");
	T_CHECK(r.cumulative);
	ussd_req_clear(&r);
	/* the first hop has an empty text */
	T_CHECK(ussd_adapter_at.parse("sessionId=a&phoneNumber=254712345678&text=", 42, &r, err, sizeof(err)) == 0);
	T_STREQ(r.text, "");
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_at.parse("sessionId=a&text=1", 18, &r, err, sizeof(err)) == -1);
	T_STREQ(err, "missing phoneNumber");
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_at.parse("sessionId=a&phoneNumber=1&text=%FF", 34, &r, err, sizeof(err)) == -1);
	T_STREQ(err, "text is not UTF-8");
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_at.parse("sessionId=a&phoneNumber=1&text=%0", 33, &r, err, sizeof(err)) == -1);
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_at.parse("sessionId=a%00b&phoneNumber=1&text=", 35, &r, err, sizeof(err)) == -1);
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_at.parse("sessionId=a b&phoneNumber=1&text=", 33, &r, err, sizeof(err)) == -1);
	T_STREQ(err, "bad sessionId");
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_at.parse("sessionId=a&sessionId=b&phoneNumber=1&text=", 43, &r, err, sizeof(err)) == -1);
	ussd_req_clear(&r);
	{
		struct buf out;
		const char *ct = NULL;
		struct ussd_reply rep = { false, "Main menu\n1. Balance" };

		buf_init(&out, 1000);
		ussd_adapter_at.render(&r, &rep, &out, &ct);
		T_STREQ(out.data, "CON Main menu\n1. Balance");
		T_STREQ(ct, "text/plain");
		buf_reset(&out);
		rep.end = true;
		ussd_adapter_at.render(&r, &rep, &out, &ct);
		T_CHECK(!strncmp(out.data, "END ", 4));
		buf_free(&out);
	}
}

void test_hubtel_parse(void)
{
	struct ussd_req r;
	char err[128];
	static const char init[] = "{\"Type\":\"Initiation\",\"Mobile\":\"233246912184\",\"SessionId\":\"s1\","
				   "\"ServiceCode\":\"714\",\"Message\":\"*714*5#\",\"Operator\":\"mtn\",\"Sequence\":1,"
				   "\"ClientState\":\"\"}";
	static const char resp[] = "{\"Type\":\"response\",\"Mobile\":\"233246912184\",\"SessionId\":\"s1\","
				   "\"Message\":\"2\",\"Sequence\":2}";
	static const char bad_mobile[] = "{\"Type\":\"Response\",\"Mobile\":5,\"SessionId\":\"s\",\"Message\":\"1\"}";
	static const char bad_type[] = "{\"Type\":\"Shout\",\"Mobile\":\"1\",\"SessionId\":\"s\",\"Message\":\"1\"}";
	static const char bad_utf8[] = "{\"Type\":\"Response\",\"Mobile\":\"1\",\"SessionId\":\"s\",\"Message\":\"\xff\"}";
	struct buf out;
	const char *ct = NULL;
	struct ussd_reply rep = { true, "Bye" };

	T_CHECK(ussd_adapter_hubtel.parse(init, sizeof(init) - 1, &r, err, sizeof(err)) == 0);
	T_CHECK(r.kind == USSD_BEGIN && !r.cumulative);
	T_STREQ(r.text, "*714*5#");
	T_STREQ(r.hop_key, "1");
	buf_init(&out, 1000);
	ussd_adapter_hubtel.render(&r, &rep, &out, &ct);
	T_CHECK(strstr(out.data, "\"Type\":\"Release\"") && strstr(out.data, "\"Message\":\"Bye\""));
	T_STREQ(ct, "application/json");
	buf_free(&out);
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_hubtel.parse(resp, sizeof(resp) - 1, &r, err, sizeof(err)) == 0);
	T_CHECK(r.kind == USSD_CONTINUE);
	T_STREQ(r.text, "2");
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_hubtel.parse("[1,2]", 5, &r, err, sizeof(err)) == -1);
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_hubtel.parse(bad_mobile, sizeof(bad_mobile) - 1, &r, err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "Mobile") != NULL);
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_hubtel.parse(bad_type, sizeof(bad_type) - 1, &r, err, sizeof(err)) == -1);
	T_STREQ(err, "unknown Type");
	ussd_req_clear(&r);
	T_CHECK(ussd_adapter_hubtel.parse(bad_utf8, sizeof(bad_utf8) - 1, &r, err, sizeof(err)) == -1);
	ussd_req_clear(&r);
}

static const struct menu_opts test_opts = { 160, 30, NULL, NULL, NULL };

#define NAV "\"strings\": {\"nav_back\": {\"en\": \"0. Back\", \"sw\": \"0. Rudi\"}, " \
	    "\"nav_home\": {\"en\": \"00. Menu\", \"sw\": \"00. Menyu\"}, \"nav_more\": {\"en\": \"98. More\", \"sw\": \"98. Zaidi\"}}"

/* Loads one document and finishes; returns 0 or -1 with err filled. */
static int load(const char *json, char *err, size_t errlen)
{
	struct menu_set *m = menu_set_new();
	int rc = menu_set_add_json(m, "t.json", json, strlen(json), err, errlen);

	if (rc == 0)
		rc = menu_set_finish(m, &test_opts, err, errlen);
	menu_set_unref(m);
	return rc;
}

void test_menu_validation(void)
{
	char err[512];
	char big[2048];

	T_CHECK(load("{" NAV ", \"screens\": {\"a\": {\"type\": \"end\", \"text\": {\"en\": \"Hi\", \"sw\": \"Jambo\"}}}}",
		     err, sizeof(err)) == 0);
	/* a missing translation names the file, the screen and the language */
	T_CHECK(load("{" NAV ", \"screens\": {\"a\": {\"type\": \"end\", \"text\": {\"en\": \"Hi\"}}}}", err,
		     sizeof(err)) == -1);
	T_CHECK(strstr(err, "t.json: a: ") && strstr(err, "missing translation (sw)"));
	/* a dangling link */
	T_CHECK(load("{" NAV ", \"screens\": {\"a\": {\"type\": \"menu\", \"text\": {\"en\": \"A\", \"sw\": \"A\"}, "
		     "\"options\": [{\"label\": {\"en\": \"x\", \"sw\": \"x\"}, \"next\": \"nowhere\"}]}}}",
		     err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "a: ") && strstr(err, "\"nowhere\" leads to no screen"));
	/* a character outside GSM-7 (typographic apostrophe) */
	T_CHECK(load("{" NAV ", \"screens\": {\"a\": {\"type\": \"end\", \"text\": {\"en\": \"Don\xe2\x80\x99t\", "
		     "\"sw\": \"x\"}}}}", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "GSM-7") != NULL);
	/* an unknown key (a typo) */
	T_CHECK(load("{" NAV ", \"screens\": {\"a\": {\"type\": \"end\", \"txet\": 1, \"text\": {\"en\": \"x\", "
		     "\"sw\": \"x\"}}}}", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "unknown key \"txet\"") != NULL);
	/* a required string missing */
	T_CHECK(load("{\"screens\": {\"a\": {\"type\": \"end\", \"text\": {\"en\": \"x\", \"sw\": \"x\"}}}}", err,
		     sizeof(err)) == -1);
	T_CHECK(strstr(err, "nav_back") && strstr(err, "required string"));
	/* over the cap in Swahili only: both languages are checked */
	snprintf(big, sizeof(big), "{" NAV ", \"screens\": {\"long\": {\"type\": \"end\", \"text\": {\"en\": \"short\", "
		 "\"sw\": \"%0170d\"}}}}", 0);
	T_CHECK(load(big, err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "long: sw text is 170 characters") != NULL);
	/* a menu fits only with room for the error line and navigation */
	snprintf(big, sizeof(big), "{" NAV ", \"screens\": {\"m\": {\"type\": \"menu\", \"text\": {\"en\": \"%0120d\", "
		 "\"sw\": \"x\"}, \"options\": [{\"label\": {\"en\": \"x\", \"sw\": \"x\"}, \"next\": \"m\"}]}}}", 0);
	T_CHECK(load(big, err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "m: en text is") && strstr(err, "over the cap of 160"));
	/* unknown handler, through the engine's table */
	{
		struct menu_opts o = test_opts;
		struct menu_set *m = menu_set_new();
		static const char j[] = "{" NAV ", \"screens\": {\"a\": {\"type\": \"end\", \"enter\": \"no_such\", "
					"\"text\": {\"en\": \"x\", \"sw\": \"x\"}}}}";

		o.known = ussd_action_known;
		T_CHECK(menu_set_add_json(m, "h.json", j, sizeof(j) - 1, err, sizeof(err)) == 0);
		T_CHECK(menu_set_finish(m, &o, err, sizeof(err)) == -1);
		T_CHECK(strstr(err, "h.json: a: ") && strstr(err, "\"no_such\" is not a registered handler"));
		menu_set_unref(m);
	}
	/* a screen defined twice across files */
	{
		struct menu_set *m = menu_set_new();
		static const char j[] = "{\"screens\": {\"a\": {\"type\": \"end\", \"text\": {\"en\": \"x\", \"sw\": \"x\"}}}}";

		T_CHECK(menu_set_add_json(m, "1.json", j, sizeof(j) - 1, err, sizeof(err)) == 0);
		T_CHECK(menu_set_add_json(m, "2.json", j, sizeof(j) - 1, err, sizeof(err)) == -1);
		T_CHECK(strstr(err, "2.json: a: screen defined twice") != NULL);
		menu_set_unref(m);
	}
	T_CHECK(load("not json", err, sizeof(err)) == -1 && strstr(err, "t.json: line"));
}

static const char *fixed_var(const char *name, void *arg)
{
	(void)arg;
	return !strcmp(name, "who") ? "Zoe \xe2\x80\x9cZ\xe2\x80\x9d Ng\xc3\xa2" : NULL;
}

/* the policy of a member (nothing protected) and of an official (chama.boss) */
static bool allows_nothing(const char *action, void *arg)
{
	(void)action;
	(void)arg;
	return false;
}

static bool allows_boss(const char *action, void *arg)
{
	(void)arg;
	return !strcmp(action, "chama.boss");
}

void test_menu_render_limits(void)
{
	static const char j[] = "{" NAV ", \"screens\": {"
		"\"l\": {\"type\": \"list\", \"enter\": \"x\", \"var\": \"v\", \"next\": \"l\", "
		"\"text\": {\"en\": \"Members of {who}:\", \"sw\": \"Wanachama:\"}, \"empty\": {\"en\": \"None\", \"sw\": \"Hakuna\"}},"
		"\"m\": {\"type\": \"menu\", \"text\": {\"en\": \"Menu\", \"sw\": \"Menyu\"}, \"options\": ["
		"{\"label\": {\"en\": \"One\", \"sw\": \"Moja\"}, \"next\": \"m\"},"
		"{\"label\": {\"en\": \"Boss\", \"sw\": \"Bosi\"}, \"next\": \"m\", \"policy\": \"chama.boss\"},"
		"{\"label\": {\"en\": \"Three\", \"sw\": \"Tatu\"}, \"next\": \"m\"},"
		"{\"label\": {\"en\": \"Sub\", \"sw\": \"Ndogo\"}, \"next\": \"sub\"}]},"
		/* a menu whose every option is protected: hidden when none is allowed */
		"\"sub\": {\"type\": \"menu\", \"text\": {\"en\": \"Sub\", \"sw\": \"Ndogo\"}, \"options\": ["
		"{\"label\": {\"en\": \"Pay\", \"sw\": \"Lipa\"}, \"next\": \"m\", \"policy\": \"money.pay\"},"
		"{\"label\": {\"en\": \"Boss\", \"sw\": \"Bosi\"}, \"next\": \"sub\", \"policy\": \"chama.boss\"}]}}}";
	struct menu_set *m = menu_set_new();
	char err[256], label[40];
	const char *items[40];
	struct buf out;
	size_t first = 0, pages = 0, total = 0;

	T_CHECK(menu_set_add_json(m, "r.json", j, sizeof(j) - 1, err, sizeof(err)) == 0);
	T_CHECK(menu_set_finish(m, &test_opts, err, sizeof(err)) == 0);
	for (int i = 0; i < 40; i++) {
		snprintf(label, sizeof(label), "Member number %02d with a name", i);
		items[i] = strdup(label);
	}
	buf_init(&out, 8192);
	/* 40 items page by page: every page within the cap, "98" while more
	 * remain, numbering from 1 on every page, every item shown once */
	while (first < 40) {
		struct menu_view v = { LANG_EN, fixed_var, NULL, 0, NULL, items, 40, first, true, true, 160 };
		size_t shown = menu_render(m, menu_screen(m, "l"), &v, &out);

		T_CHECK(shown > 0);
		T_CHECK(gsm7_septets(out.data, NULL) >= 0 && gsm7_septets(out.data, NULL) <= 160);
		T_CHECK(strstr(out.data, "\n1. Member number") != NULL);
		T_CHECK((first + shown < 40) == (strstr(out.data, "\n98. More") != NULL));
		T_CHECK(strstr(out.data, "\n0. Back 00. Menu") != NULL);
		T_CHECK(strstr(out.data, "Zoe \"Z\" Nga") != NULL);	/* transliterated */
		first += shown;
		total += shown;
		pages++;
	}
	T_CHECK(total == 40 && pages > 5);
	/* an official's option is hidden from a member and does not renumber the rest */
	{
		struct menu_view v = { LANG_SW, NULL, NULL, allows_nothing, "Chaguo si sahihi.", NULL, 0, 0, false, false, 160 };

		menu_render(m, menu_screen(m, "m"), &v, &out);
		T_STREQ(out.data, "Chaguo si sahihi.\nMenyu\n1. Moja\n3. Tatu");
		T_CHECK(!menu_screen_offered(m, menu_screen(m, "sub"), &v));
		v.allows = allows_boss;
		menu_render(m, menu_screen(m, "m"), &v, &out);
		T_CHECK(strstr(out.data, "\n2. Bosi\n") != NULL);
		/* the sub-menu offers Boss, so it is offered, with only that option */
		T_CHECK(strstr(out.data, "\n4. Ndogo") != NULL);
		T_CHECK(menu_screen_offered(m, menu_screen(m, "sub"), &v));
		menu_render(m, menu_screen(m, "sub"), &v, &out);
		T_STREQ(out.data, "Chaguo si sahihi.\nNdogo\n2. Bosi");
	}
	/* a small cap: the text is cut, the choices never */
	{
		struct menu_view v = { LANG_EN, fixed_var, NULL, 0, NULL, items, 40, 0, true, true, 64 };

		menu_render(m, menu_screen(m, "l"), &v, &out);
		T_CHECK(gsm7_septets(out.data, NULL) <= 64);
		T_CHECK(strstr(out.data, "1. Member") != NULL);
	}
	for (int i = 0; i < 40; i++)
		free((char *)items[i]);
	buf_free(&out);
	menu_set_unref(m);
}

void test_real_menus(void)
{
	struct config *cfg = config_new();
	char err[512];
	struct menu_set *m;

	/* what main.c registers */
	ussd_actions_register(act_auth_actions);
	ussd_actions_register(act_chama_actions);
	ussd_actions_register(act_money_actions);
	ussd_actions_register(act_approve_actions);
	ussd_actions_register(act_payout_actions);
	ussd_actions_register(act_check_actions);
	m = ussd_menus_load(cfg, err, sizeof(err));

	T_CHECK(m != NULL);
	if (!m)
		fprintf(stderr, "    menus: %s\n", err);
	else
		T_CHECK(menu_screen(m, "main") && menu_screen(m, "start_new") && menu_screen_count(m) > 20);
	menu_set_unref(m);
	/* the same menus do not fit a 100-character cap: the check is real */
	free(cfg->ussd_menus_dir);
	cfg->ussd_menus_dir = strdup("menus");
	cfg->ussd_screen_max = 100;
	m = ussd_menus_load(cfg, err, sizeof(err));
	T_CHECK(m == NULL && strstr(err, "over") && strstr(err, "of 100"));
	if (m == NULL && !strstr(err, "of 100"))
		fprintf(stderr, "    menus at 100: %s\n", err);
	menu_set_unref(m);
	config_free(cfg);
}

void test_trivial_pins(void)
{
	static const char *const trivial[] = { "0000", "1111", "1234", "4321", "0123", "9876", "6789", "1212", "2580" };
	static const char *const fine[] = { "4827", "1357", "9052", "7319" };

	for (size_t i = 0; i < ARRAY_LEN(trivial); i++)
		T_CHECK(auth_pin_trivial(trivial[i]));
	for (size_t i = 0; i < ARRAY_LEN(fine); i++)
		T_CHECK(!auth_pin_trivial(fine[i]));
}
