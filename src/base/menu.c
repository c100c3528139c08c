/*
 * menu: loading, validating and rendering the USSD menus of menus/NAME.json.
 *
 * A set is built once (at start-up or on SIGHUP) and never changed after
 * menu_set_finish, so hops can share it without copying; the engine holds
 * a reference for each hop in flight.  The same menu_render serves the
 * loader's size checks and the engine's screens, so what was checked is
 * what is shown.
 */
#include "base/menu.h"
#include "base/gsm7.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define VAR_MAX 120		/* septets of one {var} value; the screen cap still holds */

static const char *const lang_codes[LANG_COUNT] = { "en", "sw" };

struct menu_string {
	char *key;
	struct menu_text text;
};

/* An SMS template: its declared variables and its texts. */
struct menu_sms {
	char *key;
	const char *file;	/* borrowed from the set */
	char **vars;
	size_t nvars;
	struct menu_text text;
};

struct menu_set {
	int refs;
	bool finished;
	struct menu_screen *screens;
	size_t nscreens;
	struct menu_string *strings;
	size_t nstrings;
	struct menu_sms *sms;
	size_t nsms;
	char **files;
	size_t nfiles;
};

const char *menu_lang_code(enum menu_lang l)
{
	return l < LANG_COUNT ? lang_codes[l] : "en";
}

int menu_lang_parse(const char *code, enum menu_lang *out)
{
	for (int i = 0; i < LANG_COUNT; i++) {
		if (code && !strcmp(code, lang_codes[i])) {
			*out = (enum menu_lang)i;
			return 0;
		}
	}
	return -1;
}

struct menu_set *menu_set_new(void)
{
	struct menu_set *m = xcalloc(1, sizeof(*m));

	m->refs = 1;
	return m;
}

struct menu_set *menu_set_ref(struct menu_set *m)
{
	m->refs++;
	return m;
}

static void text_free(struct menu_text *t)
{
	for (int i = 0; i < LANG_COUNT; i++)
		free(t->s[i]);
}

void menu_set_unref(struct menu_set *m)
{
	if (!m || --m->refs > 0)
		return;
	for (size_t i = 0; i < m->nscreens; i++) {
		struct menu_screen *sc = &m->screens[i];

		free(sc->id);
		text_free(&sc->text);
		text_free(&sc->empty);
		for (size_t k = 0; k < sc->noptions; k++) {
			text_free(&sc->options[k].label);
			free(sc->options[k].key);
			free(sc->options[k].next);
			free(sc->options[k].set_var);
			free(sc->options[k].set_val);
			free(sc->options[k].policy);
		}
		free(sc->options);
		free(sc->var);
		free(sc->enter);
		free(sc->action);
		free(sc->next);
		free(sc->policy);
	}
	for (size_t i = 0; i < m->nstrings; i++) {
		free(m->strings[i].key);
		text_free(&m->strings[i].text);
	}
	for (size_t i = 0; i < m->nsms; i++) {
		free(m->sms[i].key);
		for (size_t k = 0; k < m->sms[i].nvars; k++)
			free(m->sms[i].vars[k]);
		free(m->sms[i].vars);
		text_free(&m->sms[i].text);
	}
	for (size_t i = 0; i < m->nfiles; i++)
		free(m->files[i]);
	free(m->screens);
	free(m->strings);
	free(m->sms);
	free(m->files);
	free(m);
}

const struct menu_screen *menu_screen(const struct menu_set *m, const char *id)
{
	for (size_t i = 0; id && i < m->nscreens; i++)
		if (!strcmp(m->screens[i].id, id))
			return &m->screens[i];
	return NULL;
}

static const struct menu_string *find_string(const struct menu_set *m, const char *key)
{
	for (size_t i = 0; i < m->nstrings; i++)
		if (!strcmp(m->strings[i].key, key))
			return &m->strings[i];
	return NULL;
}

static const struct menu_sms *find_sms(const struct menu_set *m, const char *key)
{
	for (size_t i = 0; key && i < m->nsms; i++)
		if (!strcmp(m->sms[i].key, key))
			return &m->sms[i];
	return NULL;
}

bool menu_sms_exists(const struct menu_set *m, const char *key)
{
	return find_sms(m, key) != NULL;
}

const char *menu_string(const struct menu_set *m, const char *key, enum menu_lang lang)
{
	const struct menu_string *s = find_string(m, key);

	return s && lang < LANG_COUNT ? s->text.s[lang] : NULL;
}

size_t menu_screen_count(const struct menu_set *m)
{
	return m->nscreens;
}

/* ---- loading --------------------------------------------------------- */

struct loader {
	const char *file;
	const char *where;	/* screen id or string key */
	char *err;
	size_t errlen;
};

static int fail(struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct loader *l, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(l->err, l->errlen, "%s: %s: %s", l->file, l->where ? l->where : "(top level)", msg);
	return -1;
}

/* Both languages present, GSM-7 only. */
static int load_text(struct loader *l, json_t *v, const char *what, struct menu_text *out)
{
	if (!json_is_object(v))
		return fail(l, "%s must be an object {\"en\": ..., \"sw\": ...}", what);
	for (int i = 0; i < LANG_COUNT; i++) {
		json_t *s = json_object_get(v, lang_codes[i]);
		size_t bad;

		if (!json_is_string(s) || !json_string_length(s))
			return fail(l, "%s: missing translation (%s)", what, lang_codes[i]);
		if (gsm7_septets(json_string_value(s), &bad) < 0)
			return fail(l, "%s (%s): character outside the GSM-7 alphabet at byte %zu", what, lang_codes[i],
				    bad);
		out->s[i] = xstrdup(json_string_value(s));
	}
	if (json_object_size(v) != LANG_COUNT)
		return fail(l, "%s: only \"en\" and \"sw\" are allowed", what);
	return 0;
}

static int only_keys(struct loader *l, json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		size_t i = 0;

		while (allowed[i] && strcmp(allowed[i], k))
			i++;
		if (!allowed[i])
			return fail(l, "unknown key \"%s\"", k);
	}
	return 0;
}

static int opt_str(struct loader *l, json_t *o, const char *key, char **out)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return 0;
	if (!json_is_string(v) || !json_string_length(v))
		return fail(l, "\"%s\" must be a non-empty string", key);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int opt_bool(struct loader *l, json_t *o, const char *key, bool def, bool *out)
{
	json_t *v = json_object_get(o, key);

	*out = def;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fail(l, "\"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static const struct {
	const char *name;
	enum menu_validator v;
	long long min, max;	/* defaults */
} validators[] = {
	{ "digits", VALID_DIGITS, 1, 12 }, { "amount", VALID_AMOUNT, 1, 1000000 }, { "pin", VALID_PIN, 4, 4 },
	{ "new_pin", VALID_NEW_PIN, 4, 4 }, { "otp", VALID_OTP, 6, 6 }, { "phone", VALID_PHONE, 0, 0 },
	{ "text", VALID_TEXT, 1, 40 }, { "code", VALID_CODE, 6, 12 },
};

static int load_validator(struct loader *l, json_t *v, struct menu_screen *sc)
{
	static const char *const keys[] = { "kind", "min", "max", NULL };
	const char *kind = json_string_value(json_object_get(v, "kind"));

	if (!json_is_object(v) || !kind)
		return fail(l, "\"validate\" must be {\"kind\": ...}");
	if (only_keys(l, v, keys) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_LEN(validators); i++) {
		if (strcmp(validators[i].name, kind))
			continue;
		sc->validator = validators[i].v;
		sc->vmin = validators[i].min;
		sc->vmax = validators[i].max;
		if (json_object_get(v, "min"))
			sc->vmin = json_integer_value(json_object_get(v, "min"));
		if (json_object_get(v, "max"))
			sc->vmax = json_integer_value(json_object_get(v, "max"));
		if ((json_object_get(v, "min") && !json_is_integer(json_object_get(v, "min"))) ||
		    (json_object_get(v, "max") && !json_is_integer(json_object_get(v, "max"))) || sc->vmin < 0 ||
		    sc->vmax < sc->vmin || sc->vmax > 100000000)
			return fail(l, "validator bounds must be integers with 0 <= min <= max");
		return 0;
	}
	return fail(l, "unknown validator \"%s\"", kind);
}

/* "policy": the name of a protected action as policy_actions.action spells
 * it: [a-z]+ then one or more ".[a-z_]+" ("money.cash_record"). */
static int load_policy(struct loader *l, json_t *o, char **out)
{
	const char *p, *q;

	if (opt_str(l, o, "policy", out) < 0)
		return -1;
	if (!*out)
		return 0;
	p = *out;
	q = p + strspn(p, "abcdefghijklmnopqrstuvwxyz");
	if (q == p || *q != '.')
		return fail(l, "\"policy\" must name an action like \"money.cash_record\"");
	while (*q == '.') {
		size_t n = strspn(q + 1, "abcdefghijklmnopqrstuvwxyz_");

		if (!n)
			break;
		q += 1 + n;
	}
	if (*q || strlen(p) > 64)
		return fail(l, "\"policy\" must name an action like \"money.cash_record\"");
	return 0;
}

static int load_options(struct loader *l, json_t *arr, struct menu_screen *sc)
{
	static const char *const keys[] = { "label", "next", "set", "policy", "key", NULL };
	size_t i;
	json_t *o;

	if (!json_is_array(arr) || !json_array_size(arr) || json_array_size(arr) > 12)
		return fail(l, "\"options\" must be an array of 1 to 12 options");
	sc->options = xcalloc(json_array_size(arr), sizeof(*sc->options));
	json_array_foreach(arr, i, o) {
		struct menu_option *op = &sc->options[i];
		json_t *set;
		char what[32];

		sc->noptions = i + 1;
		snprintf(what, sizeof(what), "option %zu", i + 1);
		if (!json_is_object(o) || only_keys(l, o, keys) < 0)
			return json_is_object(o) ? -1 : fail(l, "%s must be an object", what);
		if (load_text(l, json_object_get(o, "label"), what, &op->label) < 0 ||
		    opt_str(l, o, "next", &op->next) < 0 || opt_str(l, o, "key", &op->key) < 0)
			return -1;
		if (!op->next)
			return fail(l, "%s has no \"next\"", what);
		if ((sc->type == SCREEN_INPUT) != (op->key != NULL))
			return fail(l, "%s: \"key\" is required on input screens and not allowed elsewhere", what);
		if (op->key && (strspn(op->key, "0123456789") != strlen(op->key) || !strcmp(op->key, "0") ||
				!strcmp(op->key, "00") || !strcmp(op->key, "98")))
			return fail(l, "%s: key must be digits other than 0, 00 and 98", what);
		if ((set = json_object_get(o, "set"))) {
			const char *k;
			json_t *v;

			if (!json_is_object(set) || json_object_size(set) != 1)
				return fail(l, "%s: \"set\" must be {\"var\": \"value\"}", what);
			json_object_foreach(set, k, v) {
				if (!json_is_string(v))
					return fail(l, "%s: \"set\" value must be a string", what);
				op->set_var = xstrdup(k);
				op->set_val = xstrdup(json_string_value(v));
			}
		}
		if (load_policy(l, o, &op->policy) < 0)
			return -1;
	}
	return 0;
}

static int load_screen(struct loader *l, const char *id, json_t *o, struct menu_screen *sc)
{
	static const char *const keys[] = { "type", "text", "options", "validate", "var", "enter", "action",
					    "next", "empty", "back", "home", "auth", "secret", "policy", "comment", NULL };
	static const char *const types[] = { "menu", "input", "list", "info", "end" };
	const char *type = json_string_value(json_object_get(o, "type"));
	size_t t = 0;

	sc->id = xstrdup(id);
	sc->file = l->file;
	if (!json_is_object(o))
		return fail(l, "a screen must be an object");
	if (only_keys(l, o, keys) < 0)
		return -1;
	while (t < ARRAY_LEN(types) && (!type || strcmp(types[t], type)))
		t++;
	if (t == ARRAY_LEN(types))
		return fail(l, "\"type\" must be menu, input, list, info or end");
	sc->type = (enum menu_type)t;
	if (load_text(l, json_object_get(o, "text"), "text", &sc->text) < 0 || opt_str(l, o, "var", &sc->var) < 0 ||
	    opt_str(l, o, "enter", &sc->enter) < 0 || opt_str(l, o, "action", &sc->action) < 0 ||
	    opt_str(l, o, "next", &sc->next) < 0 || opt_bool(l, o, "back", sc->type != SCREEN_END, &sc->back) < 0 ||
	    opt_bool(l, o, "home", sc->type != SCREEN_END, &sc->home) < 0 ||
	    opt_bool(l, o, "auth", true, &sc->auth) < 0 || opt_bool(l, o, "secret", false, &sc->secret) < 0)
		return -1;
	if (json_object_get(o, "empty") && load_text(l, json_object_get(o, "empty"), "empty", &sc->empty) < 0)
		return -1;
	if (load_policy(l, o, &sc->policy) < 0)
		return -1;
	if (json_object_get(o, "options") && load_options(l, json_object_get(o, "options"), sc) < 0)
		return -1;
	switch (sc->type) {
	case SCREEN_MENU:
		if (!sc->noptions)
			return fail(l, "a menu needs \"options\"");
		if (sc->var || sc->next)
			return fail(l, "a menu takes its links from its options, not \"var\"/\"next\"");
		break;
	case SCREEN_INPUT:
		if (!json_object_get(o, "validate"))
			return fail(l, "an input screen needs \"validate\"");
		if (load_validator(l, json_object_get(o, "validate"), sc) < 0)
			return -1;
		if (!sc->next && !sc->action)
			return fail(l, "an input screen needs \"next\" or \"action\"");
		if (sc->secret && sc->var)
			return fail(l, "a secret input is never stored: drop \"var\"");
		if (!sc->secret && !sc->var)
			return fail(l, "an input screen needs \"var\" (or \"secret\": true)");
		break;
	case SCREEN_LIST:
		if (!sc->enter)
			return fail(l, "a list needs an \"enter\" action that fills it");
		if (!sc->var || (!sc->next && !sc->action))
			return fail(l, "a list needs \"var\" and \"next\" or \"action\"");
		if (!sc->empty.s[0])
			return fail(l, "a list needs \"empty\" (shown when it has no items)");
		break;
	case SCREEN_INFO:
	case SCREEN_END:
		if (sc->noptions || json_object_get(o, "validate") || sc->var || sc->action)
			return fail(l, "info and end screens take no options, input or action");
		break;
	}
	return 0;
}

/* ---- SMS templates ---------------------------------------------------- */

/* The next {name} in t at or after *pos: 1 with its name in name, 0 at the
 * end, -1 for a brace that opens or closes no {name} (the offset in *pos).
 * The same rule as put_text: a name is at most 31 bytes. */
static int next_var(const char *t, size_t *pos, char name[40])
{
	const char *open = strpbrk(t + *pos, "{}"), *close;

	if (!open)
		return 0;
	*pos = (size_t)(open - t);
	if (*open == '}' || !(close = strchr(open, '}')) || close - open > 32 || close == open + 1 ||
	    memchr(open + 1, '{', (size_t)(close - open - 1)))
		return -1;
	memcpy(name, open + 1, (size_t)(close - open - 1));
	name[close - open - 1] = '\0';
	*pos = (size_t)(close - t) + 1;
	return 1;
}

static bool var_name_ok(const char *n)
{
	size_t len = strlen(n);

	return len >= 1 && len <= 31 && n[0] >= 'a' && n[0] <= 'z' && strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789_") == len;
}

static bool sms_declares(const struct menu_sms *t, const char *name)
{
	for (size_t i = 0; i < t->nvars; i++)
		if (!strcmp(t->vars[i], name))
			return true;
	return false;
}

/* {"vars": [...], "en": ..., "sw": ...}: names well formed and unique, both
 * languages, GSM-7, every {name} declared, no stray brace, one message long
 * without its variables. */
static int load_sms(struct loader *l, const char *key, json_t *v, struct menu_sms *t)
{
	static const char *const keys[] = { "vars", "en", "sw", "comment", NULL };
	json_t *vars = json_object_get(v, "vars"), *text, *n;
	size_t i;

	t->key = xstrdup(key);
	t->file = l->file;
	/* the part after sms_ reads as a variable name, but may run to 60
	 * characters (sms_approval_what_<kind> for the longest kinds) */
	if (strncmp(key, "sms_", 4) || strlen(key) > 64 || key[4] < 'a' || key[4] > 'z' ||
	    strspn(key + 4, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(key + 4))
		return fail(l, "an SMS template's key is sms_ then [a-z0-9_] (at most 64 characters)");
	if (!json_is_object(v))
		return fail(l, "an SMS template must be {\"vars\": [...], \"en\": ..., \"sw\": ...}");
	if (only_keys(l, v, keys) < 0)
		return -1;
	if (!json_is_array(vars))
		return fail(l, "\"vars\" (the variables its texts may use, [] for none) is missing or not an array");
	t->vars = xcalloc(json_array_size(vars) + 1, sizeof(*t->vars));
	json_array_foreach(vars, i, n) {
		if (!json_is_string(n) || !var_name_ok(json_string_value(n)))
			return fail(l, "\"vars\" holds names: [a-z][a-z0-9_], at most 31 characters");
		if (sms_declares(t, json_string_value(n)))
			return fail(l, "variable \"%s\" declared twice", json_string_value(n));
		t->vars[t->nvars++] = xstrdup(json_string_value(n));
	}
	text = json_object();
	json_object_set(text, "en", json_object_get(v, "en"));
	json_object_set(text, "sw", json_object_get(v, "sw"));
	if (load_text(l, text, "text", &t->text) < 0) {
		json_decref(text);
		return -1;
	}
	json_decref(text);
	for (int lang = 0; lang < LANG_COUNT; lang++) {
		const char *s = t->text.s[lang];
		char name[40];
		size_t pos = 0;
		int r, n_sept;
		struct buf b;

		while ((r = next_var(s, &pos, name)) > 0) {
			if (!sms_declares(t, name))
				return fail(l, "%s text uses {%s}, which \"vars\" does not declare", lang_codes[lang], name);
		}
		if (r < 0)
			return fail(l, "%s text: the brace at byte %zu opens or closes no {variable}", lang_codes[lang],
				    pos);
		/* measured without its variables: those decide whether it takes
		 * a second part */
		buf_init(&b, 8192);
		for (const char *p = s; *p;) {
			const char *open = strchr(p, '{');

			if (!open) {
				buf_puts(&b, p);
				break;
			}
			buf_append(&b, p, (size_t)(open - p));
			p = strchr(open, '}') + 1;	/* matched: checked above */
		}
		n_sept = gsm7_septets(b.len ? b.data : "", NULL);
		buf_free(&b);
		if (n_sept > MENU_SMS_MAX)
			return fail(l, "%s text is %d characters without its variables, over one SMS (%d)",
				    lang_codes[lang], n_sept, MENU_SMS_MAX);
	}
	return 0;
}

int menu_set_add_json(struct menu_set *m, const char *file, const char *json, size_t len, char *err, size_t errlen)
{
	static const char *const top[] = { "strings", "sms", "screens", "comment", NULL };
	struct loader l = { file, NULL, err, errlen };
	json_error_t jerr;
	json_t *root, *screens, *strings, *sms, *v;
	const char *k;
	int rc = -1;

	m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
	l.file = m->files[m->nfiles++] = xstrdup(file);
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errlen, "%s: line %d: %s", file, jerr.line, jerr.text);
		return -1;
	}
	if (!json_is_object(root) || only_keys(&l, root, top) < 0) {
		if (!json_is_object(root))
			fail(&l, "must be a JSON object");
		goto out;
	}
	screens = json_object_get(root, "screens");
	strings = json_object_get(root, "strings");
	sms = json_object_get(root, "sms");
	if ((screens && !json_is_object(screens)) || (strings && !json_is_object(strings)) ||
	    (sms && !json_is_object(sms))) {
		fail(&l, "\"screens\", \"strings\" and \"sms\" must be objects");
		goto out;
	}
	json_object_foreach(sms, k, v) {
		l.where = k;
		if (find_sms(m, k) || find_string(m, k)) {
			fail(&l, "SMS template defined twice (or also as a string)");
			goto out;
		}
		m->sms = xrealloc(m->sms, (m->nsms + 1) * sizeof(*m->sms));
		memset(&m->sms[m->nsms], 0, sizeof(m->sms[0]));
		if (load_sms(&l, k, v, &m->sms[m->nsms++]) < 0)
			goto out;
	}
	json_object_foreach(strings, k, v) {
		l.where = k;
		if (find_string(m, k) || find_sms(m, k)) {
			fail(&l, "string defined twice");
			goto out;
		}
		m->strings = xrealloc(m->strings, (m->nstrings + 1) * sizeof(*m->strings));
		memset(&m->strings[m->nstrings], 0, sizeof(m->strings[0]));
		m->strings[m->nstrings].key = xstrdup(k);
		if (load_text(&l, v, "string", &m->strings[m->nstrings++].text) < 0)
			goto out;
	}
	json_object_foreach(screens, k, v) {
		l.where = k;
		if (menu_screen(m, k)) {
			fail(&l, "screen defined twice");
			goto out;
		}
		m->screens = xrealloc(m->screens, (m->nscreens + 1) * sizeof(*m->screens));
		memset(&m->screens[m->nscreens], 0, sizeof(m->screens[0]));
		if (load_screen(&l, k, v, &m->screens[m->nscreens++]) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* ---- rendering ------------------------------------------------------- */

/* Bytes of s that fit in max septets (s is GSM-7). */
static size_t fit_septets(const char *s, int max)
{
	size_t i = 0, n = strlen(s);
	int used = 0;

	while (i < n) {
		size_t j = i + 1;
		char one[8];
		int w;

		/* one character: a lead byte and at most 3 continuation bytes */
		while (j < n && j - i < 4 && ((unsigned char)s[j] & 0xc0) == 0x80)
			j++;
		memcpy(one, s + i, j - i);
		one[j - i] = '\0';
		w = gsm7_septets(one, NULL);
		if (w < 0 || used + w > max)
			break;
		used += w;
		i = j;
	}
	return i;
}

static int septets(const char *s)
{
	int n = gsm7_septets(s, NULL);

	return n < 0 ? INT_MAX / 4 : n;
}

/* Appends text with {var}s substituted (values transliterated and cut). */
static void put_text(struct buf *b, const char *t, const struct menu_view *v)
{
	while (*t) {
		const char *open = strchr(t, '{'), *close;

		if (!open || !(close = strchr(open, '}')) || close - open > 32) {
			buf_puts(b, t);
			return;
		}
		buf_append(b, t, (size_t)(open - t));
		if (v->var) {
			char name[40], clean[256];
			const char *val;

			memcpy(name, open + 1, (size_t)(close - open - 1));
			name[close - open - 1] = '\0';
			val = v->var(name, v->var_arg);
			if (val) {
				gsm7_transliterate(val, strlen(val), clean, sizeof(clean));
				buf_append(b, clean, fit_septets(clean, VAR_MAX));
			}
		}
		t = close + 1;
	}
}

/* ---- visibility -------------------------------------------------------- */

static bool allowed(const struct menu_view *v, const char *action)
{
	return !action || (v->allows && v->allows(action, v->var_arg));
}

static bool option_offered(const struct menu_set *m, const struct menu_option *op, const struct menu_view *v,
			   unsigned char *seen);

/* memo, by screen index: 0 not yet known, 1 on the way here (a loop back
 * counts as offered), 2 offered, 3 not; each screen is decided once per
 * question, so the walk is linear in the menus whatever their shape */
static bool screen_offered(const struct menu_set *m, const struct menu_screen *sc, const struct menu_view *v,
			   unsigned char *memo)
{
	size_t at = (size_t)(sc - m->screens);
	bool any = false;

	if (!sc->gated)
		return true;
	if (memo[at])
		return memo[at] != 3;
	if (!allowed(v, sc->policy)) {
		memo[at] = 3;
		return false;
	}
	if (sc->type != SCREEN_MENU) {
		memo[at] = 2;
		return true;
	}
	memo[at] = 1;
	for (size_t i = 0; i < sc->noptions && !any; i++)
		any = option_offered(m, &sc->options[i], v, memo);
	memo[at] = any ? 2 : 3;
	return any;
}

static bool option_offered(const struct menu_set *m, const struct menu_option *op, const struct menu_view *v,
			   unsigned char *memo)
{
	const struct menu_screen *to = menu_screen(m, op->next);

	return allowed(v, op->policy) && (!to || screen_offered(m, to, v, memo));
}

bool menu_screen_offered(const struct menu_set *m, const struct menu_screen *sc, const struct menu_view *v)
{
	unsigned char *seen;
	bool r;

	if (!sc->gated)
		return true;
	seen = xcalloc(m->nscreens ? m->nscreens : 1, 1);
	r = screen_offered(m, sc, v, seen);
	free(seen);
	return r;
}

bool menu_option_offered(const struct menu_set *m, const struct menu_screen *sc, size_t i, const struct menu_view *v)
{
	const struct menu_option *op = &sc->options[i];
	const struct menu_screen *to = menu_screen(m, op->next);
	unsigned char *seen;
	bool r;

	if (!op->policy && (!to || !to->gated))
		return true;
	seen = xcalloc(m->nscreens ? m->nscreens : 1, 1);
	seen[sc - m->screens] = 1;	/* the screen it is on: a loop back to it */
	r = option_offered(m, op, v, seen);
	free(seen);
	return r;
}

/* Marks the screens whose visibility can depend on the policy: those with
 * a "policy", and menus whose every option is gated (an option is gated by
 * its own "policy" or by the screen it leads to).  The least fixed point,
 * so a loop of menus with nothing else is not gated. */
static void mark_gated(struct menu_set *m)
{
	bool changed = true;

	for (size_t i = 0; i < m->nscreens; i++)
		m->screens[i].gated = m->screens[i].policy != NULL;
	while (changed) {
		changed = false;
		for (size_t i = 0; i < m->nscreens; i++) {
			struct menu_screen *sc = &m->screens[i];
			bool all = sc->type == SCREEN_MENU && sc->noptions > 0;

			if (sc->gated)
				continue;
			for (size_t k = 0; k < sc->noptions && all; k++) {
				const struct menu_screen *to = menu_screen(m, sc->options[k].next);

				all = sc->options[k].policy || (to && to->gated);
			}
			if (all) {
				sc->gated = true;
				changed = true;
			}
		}
	}
}

/* ---- rendering, continued ------------------------------------------------ */

size_t menu_render(const struct menu_set *m, const struct menu_screen *sc, const struct menu_view *v,
		   struct buf *out)
{
	struct buf text, tail, items;
	const char *back = menu_string(m, "nav_back", v->lang), *home = menu_string(m, "nav_home", v->lang);
	const char *more = menu_string(m, "nav_more", v->lang);
	size_t shown = 0;
	int budget;

	buf_init(&text, 4096);
	buf_init(&tail, 4096);
	buf_init(&items, 4096);
	if (v->notice) {
		put_text(&text, v->notice, v);
		buf_puts(&text, "\n");
	}
	if (sc->type == SCREEN_LIST && v->nitems == 0 && sc->empty.s[v->lang])
		put_text(&text, sc->empty.s[v->lang], v);
	else
		put_text(&text, sc->text.s[v->lang], v);
	for (size_t i = 0; i < sc->noptions; i++) {
		if (!menu_option_offered(m, sc, i, v))
			continue;
		if (sc->options[i].key)
			buf_printf(&tail, "\n%s. %s", sc->options[i].key, sc->options[i].label.s[v->lang]);
		else
			buf_printf(&tail, "\n%zu. %s", i + 1, sc->options[i].label.s[v->lang]);
	}
	if ((v->back && back) || (v->home && home)) {
		buf_puts(&tail, "\n");
		if (v->back && back)
			put_text(&tail, back, v);
		if (v->back && back && v->home && home)
			buf_puts(&tail, " ");
		if (v->home && home)
			put_text(&tail, home, v);
	}
	budget = v->cap - septets(text.len ? text.data : "") - septets(tail.len ? tail.data : "");
	/* list items: as many as fit, keeping room for "98" if more remain */
	for (size_t i = v->first; i < v->nitems; i++) {
		char line[300];
		int w, reserve = 0;

		snprintf(line, sizeof(line), "\n%zu. %s", shown + 1, v->items[i]);
		w = septets(line);
		if (i + 1 < v->nitems && more)
			reserve = 1 + septets(more);
		if (w + reserve > budget && shown > 0)
			break;
		if (w + reserve > budget) {	/* one item always shows, cut to fit */
			size_t keep = fit_septets(line, budget - reserve > 8 ? budget - reserve : 8);

			line[keep] = '\0';
			w = septets(line);
		}
		buf_puts(&items, line);
		budget -= w;
		shown++;
	}
	if (v->first + shown < v->nitems && more) {
		buf_printf(&items, "\n%s", more);
		budget -= 1 + septets(more);
	}
	buf_reset(out);
	if (budget < 0 && text.len) {	/* last resort: cut the text, never the choices */
		size_t keep = fit_septets(text.data, septets(text.data) + budget - 2);

		buf_append(out, text.data, keep);
		buf_puts(out, "..");
	} else if (text.len) {
		buf_puts(out, text.data);
	}
	if (items.len)
		buf_puts(out, items.data);
	if (tail.len)
		buf_puts(out, tail.data);
	if (out->len && septets(out->data) > v->cap) {
		/* a screen the loader could not foresee (a cap lowered at run
		 * time, a text too short to absorb a long item): never over */
		size_t keep = fit_septets(out->data, v->cap);

		out->len = keep;
		out->data[keep] = '\0';
	}
	buf_free(&text);
	buf_free(&tail);
	buf_free(&items);
	return shown;
}

/* ---- cross-checks ---------------------------------------------------- */

static const char *no_vars(const char *name, void *arg)
{
	(void)name;
	(void)arg;
	return NULL;
}

/* The loader measures every screen with everything offered. */
static bool allow_all(const char *action, void *arg)
{
	(void)action;
	(void)arg;
	return true;
}

/* The screen as rendered with every option, both navigation links and the
 * longest notice: its length must be within the cap, without cutting. */
static int check_size(const struct menu_set *m, const struct menu_screen *sc, const struct menu_opts *o,
		      struct loader *l)
{
	char notice[200];
	struct buf out;
	int reserve = sc->type == SCREEN_END ? 0 : o->error_reserve;

	if (reserve > 0) {
		memset(notice, 'x', (size_t)reserve - 1);
		notice[reserve - 1] = '\0';
	}
	buf_init(&out, 8192);
	/* a list is measured on a first page with "98" and room for one
	 * short item, so a long item is cut, never the screen */
	static const char *const two[] = { "xxxxxxxxxx", "xxxxxxxxxx" };
	bool list = sc->type == SCREEN_LIST;

	for (int lang = 0; lang < LANG_COUNT; lang++) {
		struct menu_view v = { (enum menu_lang)lang, no_vars, NULL, allow_all, reserve > 0 ? notice : NULL,
				       list ? two : NULL, list ? 2 : 0, 0, sc->back, sc->home, 1 << 20 };
		int n;

		menu_render(m, sc, &v, &out);
		n = septets(out.len ? out.data : "");
		if (n > o->screen_max) {
			buf_free(&out);
			return fail(l, "%s text is %d characters with its options, navigation and a %d-character "
				       "error line: over the cap of %d", lang_codes[lang], n, reserve, o->screen_max);
		}
	}
	buf_free(&out);
	return 0;
}

static int check_link(const struct menu_set *m, struct loader *l, const char *what, const char *id)
{
	if (id && !menu_screen(m, id))
		return fail(l, "%s \"%s\" leads to no screen (dangling link)", what, id);
	return 0;
}

static int check_action(const struct menu_opts *o, struct loader *l, const char *what, const char *name)
{
	if (name && o->known && !o->known(name))
		return fail(l, "%s \"%s\" is not a registered handler", what, name);
	return 0;
}

/* True if word is one of the space-separated words of list. */
static bool word_in(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p;) {
		size_t len;

		p += strspn(p, " ");
		len = strcspn(p, " ");
		if (len == n && !strncmp(p, word, n))
			return true;
		p += len;
	}
	return false;
}

/* The templates the code writes exist, and declare only what their writer
 * supplies: a variable no writer fills would be a hole in every message. */
static int check_sms_needed(const struct menu_set *m, const struct menu_opts *o, struct loader *l)
{
	for (size_t i = 0; o->sms_needed && o->sms_needed[i].key; i++) {
		const struct menu_sms_need *need = &o->sms_needed[i];
		size_t klen = strlen(need->key);
		bool prefix = klen > 0 && need->key[klen - 1] == '*', found = false;

		for (size_t k = 0; k < m->nsms; k++) {
			const struct menu_sms *t = &m->sms[k];

			if (prefix ? strncmp(t->key, need->key, klen - 1) != 0 : strcmp(t->key, need->key) != 0)
				continue;
			found = true;
			for (size_t v = 0; v < t->nvars; v++) {
				if (word_in(need->vars, t->vars[v]))
					continue;
				l->file = t->file;
				l->where = t->key;
				return fail(l, "declares {%s}, which the code that writes it does not supply (it supplies: %s)",
					    t->vars[v], *need->vars ? need->vars : "nothing");
			}
		}
		if (!prefix && !found) {
			l->where = need->key;
			return fail(l, "SMS template is missing (the code writes it)");
		}
	}
	l->file = "menus";
	return 0;
}

int menu_set_finish(struct menu_set *m, const struct menu_opts *o, char *err, size_t errlen)
{
	static const char *const nav[] = { "nav_back", "nav_home", "nav_more", NULL };
	struct loader l = { "menus", NULL, err, errlen };
	const char *const *lists[] = { nav, o->required_strings };

	for (size_t k = 0; k < ARRAY_LEN(lists); k++) {
		for (size_t i = 0; lists[k] && lists[k][i]; i++) {
			if (!find_string(m, lists[k][i])) {
				l.where = lists[k][i];
				return fail(&l, "required string is missing");
			}
		}
	}
	for (size_t i = 0; o->required_screens && o->required_screens[i]; i++) {
		if (!menu_screen(m, o->required_screens[i])) {
			l.where = o->required_screens[i];
			return fail(&l, "required screen is missing");
		}
	}
	for (size_t i = 0; i < m->nstrings; i++) {
		const struct menu_string *s = &m->strings[i];
		/* err_* and ok_* strings are shown as a first line above a screen */
		bool notice = !strncmp(s->key, "err_", 4) || !strncmp(s->key, "ok_", 3);
		int max = notice ? o->error_reserve - 1 : o->screen_max;

		l.where = s->key;
		for (int lang = 0; lang < LANG_COUNT; lang++) {
			/* measured without its {vars}: those are cut to fit when shown */
			struct menu_view v = { .var = no_vars };
			struct buf b;
			int n;

			buf_init(&b, 8192);
			put_text(&b, s->text.s[lang], &v);
			n = septets(b.len ? b.data : "");
			buf_free(&b);
			if (n > max)
				return fail(&l, "%s text is %d characters, over its limit of %d", lang_codes[lang], n, max);
		}
	}
	if (check_sms_needed(m, o, &l) < 0)
		return -1;
	for (size_t i = 0; i < m->nscreens; i++) {
		const struct menu_screen *sc = &m->screens[i];

		l.file = sc->file;
		l.where = sc->id;
		if (check_link(m, &l, "\"next\"", sc->next) < 0 || check_action(o, &l, "enter", sc->enter) < 0 ||
		    check_action(o, &l, "action", sc->action) < 0)
			return -1;
		for (size_t k = 0; k < sc->noptions; k++)
			if (check_link(m, &l, "option", sc->options[k].next) < 0)
				return -1;
	}
	mark_gated(m);
	for (size_t i = 0; i < m->nscreens; i++) {
		const struct menu_screen *sc = &m->screens[i];

		l.file = sc->file;
		l.where = sc->id;
		if (check_size(m, sc, o, &l) < 0)
			return -1;
	}
	m->finished = true;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct menu_set *menu_load_dir(const char *dir, const struct menu_opts *o, char *err, size_t errlen)
{
	struct menu_set *m = menu_set_new();
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	if (!d) {
		snprintf(err, errlen, "cannot open menus directory %s: %s", dir, strerror(errno));
		menu_set_unref(m);
		return NULL;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len > 5 && !strcmp(de->d_name + len - 5, ".json")) {
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xstrdup(de->d_name);
		}
	}
	closedir(d);
	qsort(names, n, sizeof(*names), name_cmp);
	if (!n) {
		snprintf(err, errlen, "no *.json menus in %s", dir);
		rc = -1;
	}
	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		FILE *f = rc == 0 ? fopen(path, "rb") : NULL;
		struct buf b;
		char chunk[4096];
		size_t got;

		buf_init(&b, 4 << 20);
		if (rc == 0 && !f) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			rc = -1;
		}
		while (f && (got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
			if (buf_append(&b, chunk, got) < 0) {
				snprintf(err, errlen, "%s: larger than 4 MiB", path);
				rc = -1;
				break;
			}
		}
		if (f)
			fclose(f);
		if (rc == 0 && menu_set_add_json(m, names[i], b.data ? b.data : "", b.len, err, errlen) < 0)
			rc = -1;
		buf_free(&b);
		free(path);
		free(names[i]);
	}
	free(names);
	if (rc == 0 && menu_set_finish(m, o, err, errlen) < 0)
		rc = -1;
	if (rc < 0) {
		menu_set_unref(m);
		return NULL;
	}
	return m;
}

char *menu_text_format(const struct menu_set *m, const char *key, enum menu_lang lang,
		       const char *(*var)(const char *name, void *arg), void *arg)
{
	const char *t = menu_string(m, key, lang);
	struct menu_view v = { .lang = lang, .var = var, .var_arg = arg };
	struct buf b;
	char *s;

	buf_init(&b, 8192);
	put_text(&b, t ? t : key, &v);
	s = xstrdup(b.data ? b.data : "");
	buf_free(&b);
	return s;
}

/* ---- SMS rendering ---------------------------------------------------- */

#define SMS_DEPTH_MAX 3		/* a line inside a reply inside a reply: enough */

struct sms_render {
	const struct menu_set *m;
	enum menu_lang lang;
	char *err;
	size_t errlen;
};

static int render_sms(struct sms_render *r, const char *key, json_t *vars, int depth, struct buf *out);

/* Appends one value (see menu_sms_render); item is true inside a list. */
static int put_value(struct sms_render *r, const char *key, const char *name, json_t *v, bool item, int depth,
		     struct buf *out)
{
	char clean[256];
	const char *s;

	if (json_is_integer(v)) {
		buf_printf(out, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	if (json_is_string(v)) {
		s = json_string_value(v);
		if (s[strspn(s, " \t\r\n")] == '\0')
			goto missing;	/* an empty value is a hole too */
		gsm7_transliterate(s, strlen(s), clean, sizeof(clean));
		buf_append(out, clean, fit_septets(clean, VAR_MAX));
		return 0;
	}
	if (json_is_object(v)) {
		json_t *t = json_object_get(v, "template"), *tv = json_object_get(v, "vars");

		if (!json_is_string(t) || (tv && !json_is_object(tv)) || json_object_size(v) != 1u + (tv != NULL)) {
			snprintf(r->err, r->errlen, "template %s: {%s} is an object other than {\"template\", \"vars\"}",
				 key, name);
			return -1;
		}
		return render_sms(r, json_string_value(t), tv, depth + 1, out);
	}
	if (json_is_array(v) && !item && json_array_size(v) > 0) {
		size_t i;
		json_t *e;

		json_array_foreach(v, i, e) {
			buf_puts(out, "\n");
			if (put_value(r, key, name, e, true, depth, out) < 0)
				return -1;
		}
		return 0;
	}
	if (v && !json_is_null(v) && !json_is_array(v)) {
		snprintf(r->err, r->errlen, "template %s: {%s} is neither text, a number, a template nor a list", key,
			 name);
		return -1;
	}
missing:
	snprintf(r->err, r->errlen, "template %s: variable {%s} is missing%s", key, name,
		 json_is_array(v) && item ? " (a list inside a list)" : "");
	return -1;
}

static int render_sms(struct sms_render *r, const char *key, json_t *vars, int depth, struct buf *out)
{
	const struct menu_sms *t = find_sms(r->m, key);
	const char *s, *p;
	char name[40];
	size_t pos = 0;

	if (!t) {
		snprintf(r->err, r->errlen, "unknown SMS template \"%s\"", key);
		return -1;
	}
	if (depth > SMS_DEPTH_MAX) {
		snprintf(r->err, r->errlen, "template %s: nested more than %d deep", key, SMS_DEPTH_MAX);
		return -1;
	}
	s = p = t->text.s[r->lang];
	/* the loader made sure every brace opens a declared {name} */
	while (next_var(s, &pos, name) > 0) {
		buf_append(out, p, (size_t)(strchr(p, '{') - p));
		if (put_value(r, key, name, json_object_get(vars, name), false, depth, out) < 0)
			return -1;
		p = s + pos;
	}
	buf_puts(out, p);
	return 0;
}

int menu_sms_render(const struct menu_set *m, const char *key, enum menu_lang lang, const char *vars_json,
		    struct buf *out, char *err, size_t errlen)
{
	struct sms_render r = { m, lang < LANG_COUNT ? lang : LANG_EN, err, errlen };
	json_t *vars = NULL;
	json_error_t jerr;
	int rc;

	buf_reset(out);
	if (vars_json && *vars_json) {
		vars = json_loads(vars_json, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(vars)) {
			snprintf(err, errlen, "template %s: its variables are not a JSON object", key ? key : "(none)");
			json_decref(vars);
			return -1;
		}
	}
	rc = render_sms(&r, key ? key : "", vars, 0, out);
	json_decref(vars);
	if (rc < 0)
		buf_reset(out);
	return rc;
}
