/*
 * fuzz_menu: the menu loader and renderer (src/menu.c).
 *
 * Input: one menu JSON document, or several separated by a line "#file"
 * ("\n#file\n"), each added as its own file (fuzz.json, fuzz1.json, ...) so
 * cross-file links and duplicates are exercised; optionally a last section
 * after "\n#view\n" whose first line is the value of every {var} and whose
 * further lines are list items, any bytes (else fixed names are used;
 * built with -DFUZZ_MENU_VALID_UTF8_ITEMS, invalid UTF-8 in items becomes
 * '?').  Then
 * menu_set_finish with {screen_max 160, error_reserve 30, known NULL},
 * then menu_render of every screen, then menu_set_unref.
 * Invariants:
 *   - add_json and finish return 0 or -1; on -1 err is a non-empty C
 *     string within errlen (allocated at exactly errlen);
 *   - unref frees the set whatever state it is in (a failed add, a failed
 *     finish): LeakSanitizer reports anything left;
 *   - after a successful finish: every screen named in the documents is
 *     found by menu_screen under that id and the screen count is the number
 *     of ids; texts, labels and empty texts are GSM-7 in both languages;
 *     options and "next" link to existing screens; menu screens have
 *     options; vmin <= vmax; strings exist in both languages and are
 *     GSM-7; those without {vars} are within error_reserve - 1 septets
 *     (err_*, ok_*) or screen_max (the others);
 *     an unknown id gives NULL;
 *   - menu_render of every screen, in both languages, for no role / a
 *     member / every role, with and without a notice of error_reserve - 1
 *     characters, with {vars} set to a long value and (lists) with no items,
 *     every item, or from the second item: the output is GSM-7 and never
 *     longer than cap (menu.h: "Never longer than cap septets"), returns at
 *     most the items offered, and every visible option's line
 *     "\nN. label" is there (the text is cut, never the choices);
 *   - an extra reference (menu_set_ref) keeps the set alive after one unref.
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "base/gsm7.h"
#include "base/menu.h"
#include "base/util.h"

#define MAX_DOCS 4
#define MAX_ITEMS 40
#define SEP "\n#file\n"
#define VIEW "\n#view\n"

static const struct menu_opts opts = { .screen_max = 160, .error_reserve = 30, .known = NULL };

static const char *default_items[] = {
	"Wanjiku Kamau", "Otieno Odhiambo", "Achieng' Atieno Nyambura wa Kariuki", "Mwangi", "Kiprop Kipchumba",
	"Njeri", "Auma Oduya", "Chebet Jeptoo", "Wafula", "Nekesa Nafula Wanyonyi", "Muthoni", "Ali Hassan Omar",
};

struct view_in {
	const char *var;
	const char *items[MAX_ITEMS];
	size_t nitems;
};

#ifdef FUZZ_MENU_VALID_UTF8_ITEMS
/* Replaces invalid UTF-8 in place with '?' (one per byte), for a build
 * that only offers valid UTF-8 list items (as PostgreSQL text would be):
 * -DFUZZ_MENU_VALID_UTF8_ITEMS in FUZZ_EXTRA_CFLAGS. */
static void make_utf8(char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n;) {
		size_t k = 1;

		while (k <= 4 && i + k <= n && !fuzz_utf8_valid((unsigned char *)s + i, k, NULL))
			k++;
		if (k > 4 || i + k > n) {
			s[i++] = '?';
			continue;
		}
		i += k;
	}
}
#endif

static const char *var_value(const char *name, void *arg)
{
	const struct view_in *vi = arg;

	(void)name;
	return vi->var;
}

static void check_text(const struct menu_text *t, bool required, const char *what, const char *id)
{
	for (int l = 0; l < LANG_COUNT; l++) {
		if (!t->s[l]) {
			FUZZ_CHECKF(!required, "screen %s: %s has no %s text", id, what, menu_lang_code(l));
			continue;
		}
		FUZZ_CHECKF(gsm7_septets(t->s[l], NULL) >= 0, "screen %s: %s (%s) is not GSM-7: \"%s\"", id, what,
			    menu_lang_code(l), t->s[l]);
	}
}

static void check_screen(const struct menu_set *set, const char *id)
{
	const struct menu_screen *s = menu_screen(set, id);

	FUZZ_CHECKF(s != NULL, "screen \"%s\" in the JSON but not in the set", id);
	FUZZ_CHECK(s->id != NULL && strcmp(s->id, id) == 0);
	FUZZ_CHECK(s->file != NULL);
	FUZZ_CHECK(s->type >= SCREEN_MENU && s->type <= SCREEN_END);
	check_text(&s->text, true, "text", id);
	check_text(&s->empty, false, "empty", id);
	FUZZ_CHECK(s->noptions == 0 || s->options != NULL);
	if (s->type == SCREEN_MENU)
		FUZZ_CHECKF(s->noptions > 0, "menu screen %s has no options", id);
	for (size_t i = 0; i < s->noptions; i++) {
		const struct menu_option *o = &s->options[i];

		check_text(&o->label, true, "option label", id);
		FUZZ_CHECKF(o->next != NULL, "screen %s option %zu has no next", id, i);
		FUZZ_CHECKF(menu_screen(set, o->next) != NULL, "screen %s option %zu links to missing \"%s\"", id, i,
			    o->next);
		FUZZ_CHECK((o->set_var == NULL) == (o->set_val == NULL));
	}
	if (s->next)
		FUZZ_CHECKF(menu_screen(set, s->next) != NULL, "screen %s links to missing \"%s\"", id, s->next);
	FUZZ_CHECKF(s->vmin <= s->vmax, "screen %s: vmin %lld > vmax %lld", id, s->vmin, s->vmax);
}

static void check_string(const struct menu_set *set, const char *key)
{
	bool notice = !strncmp(key, "err_", 4) || !strncmp(key, "ok_", 3);
	int max = notice ? opts.error_reserve - 1 : opts.screen_max;

	for (int l = 0; l < LANG_COUNT; l++) {
		const char *s = menu_string(set, key, (enum menu_lang)l);
		int n;

		FUZZ_CHECKF(s != NULL, "string %s has no %s text", key, menu_lang_code(l));
		n = gsm7_septets(s, NULL);
		FUZZ_CHECKF(n >= 0, "string %s (%s) is not GSM-7", key, menu_lang_code(l));
		/* Measured without its {vars} by the loader (they are cut to fit
		 * when shown): only strings without any are checked here. */
		if (!strchr(s, '{'))
			FUZZ_CHECKF(n <= max, "string %s (%s) is %d septets, limit %d", key, menu_lang_code(l), n, max);
	}
}

static bool allow_everything(const char *action, void *arg)
{
	(void)action;
	(void)arg;
	return true;
}

static void render_one(const struct menu_set *set, const struct menu_screen *sc, struct menu_view *v,
		       struct buf *out)
{
	size_t shown = menu_render(set, sc, v, out);
	const char *text = out->len ? out->data : "";
	int n = gsm7_septets(text, NULL);
	char line[512];

	FUZZ_CHECKF(n >= 0, "screen %s (%s): render is not GSM-7: \"%s\"", sc->id, menu_lang_code(v->lang), text);
	FUZZ_CHECKF(n <= v->cap, "screen %s (%s, policy %s, notice %s, items %zu from %zu): %d septets over the cap "
		    "of %d:\n%s", sc->id, menu_lang_code(v->lang), v->allows ? "all" : "none", v->notice ? "yes" : "no",
		    v->nitems, v->first, n, v->cap, text);
	FUZZ_CHECKF(shown <= (v->nitems > v->first ? v->nitems - v->first : 0), "%zu items shown of %zu from %zu",
		    shown, v->nitems, v->first);
	for (size_t i = 0; i < sc->noptions; i++) {
		const struct menu_option *o = &sc->options[i];

		if (!menu_option_offered(set, sc, i, v))
			continue;
		if (o->key)
			snprintf(line, sizeof line, "\n%s. %s", o->key, o->label.s[v->lang]);
		else
			snprintf(line, sizeof line, "\n%zu. %s", i + 1, o->label.s[v->lang]);
		FUZZ_CHECKF(strstr(text, line) != NULL, "screen %s (%s): option %zu cut (\"%s\"):\n%s", sc->id,
			    menu_lang_code(v->lang), i + 1, line + 1, text);
	}
}

static void render_screen(const struct menu_set *set, const struct menu_screen *sc, struct view_in *vi)
{
	/* nothing protected allowed (a member), or everything */
	bool (*const roles[])(const char *, void *) = { NULL, allow_everything };
	char notice[64];
	struct buf out;

	memset(notice, 'x', (size_t)opts.error_reserve - 1);
	notice[opts.error_reserve - 1] = '\0';
	buf_init(&out, 64 * 1024);
	for (int lang = 0; lang < LANG_COUNT; lang++) {
		for (size_t r = 0; r < ARRAY_LEN(roles); r++) {
			for (int with_notice = 0; with_notice < 2; with_notice++) {
				struct menu_view v = {
					.lang = (enum menu_lang)lang, .var = var_value, .var_arg = vi,
					.allows = roles[r], .notice = with_notice ? notice : NULL,
					.items = vi->items, .nitems = 0, .first = 0,
					.back = sc->back, .home = sc->home, .cap = opts.screen_max,
				};

				render_one(set, sc, &v, &out);
				if (sc->type != SCREEN_LIST)
					continue;
				v.nitems = vi->nitems;
				render_one(set, sc, &v, &out);
				if (vi->nitems > 1) {
					v.first = 1;
					render_one(set, sc, &v, &out);
				}
			}
		}
	}
	buf_free(&out);
}

/* Checks every screen and string the documents name (as jansson reads
 * them); returns the number of screen ids. */
static size_t check_docs(const struct menu_set *set, const char **docs, const size_t *lens, size_t ndocs,
			 struct view_in *vi)
{
	size_t count = 0;

	for (size_t d = 0; d < ndocs; d++) {
		json_t *doc = json_loadb(docs[d], lens[d], 0, NULL), *obj, *v;
		const char *k;

		FUZZ_CHECKF(doc != NULL, "document %zu loaded by the set but not by jansson", d);
		obj = json_object_get(doc, "screens");
		json_object_foreach(obj, k, v) {
			check_screen(set, k);
			render_screen(set, menu_screen(set, k), vi);
			count++;
		}
		obj = json_object_get(doc, "strings");
		json_object_foreach(obj, k, v)
			check_string(set, k);
		json_decref(doc);
	}
	return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_copy(data, size);
	const char *docs[MAX_DOCS];
	size_t lens[MAX_DOCS], ndocs = 0;
	const size_t errlen = 160;
	char *err = fuzz_errbuf(errlen);
	struct menu_set *set;
	const char *p = in, *end = in + size, *view;
	char *viewbuf = NULL;
	struct view_in vi = { .var = "Wanjiku Kamau-Otieno wa Nyambura (Umoja Women Group)" };
	int rc = 0;

	/* An optional view section at the end. */
	view = memmem(in, size, VIEW, strlen(VIEW));
	if (view) {
		char *line, *save = NULL;

		viewbuf = fuzz_cstr((const uint8_t *)view + strlen(VIEW), (size_t)(end - view) - strlen(VIEW));
		end = view;
		line = strtok_r(viewbuf, "\n", &save);
		vi.var = line ? line : "";
		while (vi.nitems < MAX_ITEMS && (line = strtok_r(NULL, "\n", &save))) {
#ifdef FUZZ_MENU_VALID_UTF8_ITEMS
			make_utf8(line);
#endif
			vi.items[vi.nitems++] = line;
		}
	} else {
		for (size_t i = 0; i < ARRAY_LEN(default_items); i++)
			vi.items[vi.nitems++] = default_items[i];
	}

	/* Split on SEP into at most MAX_DOCS documents. */
	while (ndocs < MAX_DOCS - 1) {
		const char *q = memmem(p, (size_t)(end - p), SEP, strlen(SEP));

		if (!q)
			break;
		docs[ndocs] = p;
		lens[ndocs++] = (size_t)(q - p);
		p = q + strlen(SEP);
	}
	docs[ndocs] = p;
	lens[ndocs++] = (size_t)(end - p);

	set = menu_set_new();
	FUZZ_CHECK(set != NULL);
	for (size_t d = 0; d < ndocs; d++) {
		char name[32];
		/* Each document in its own exact-size copy: no NUL after it. */
		char *doc = fuzz_copy((const uint8_t *)docs[d], lens[d]);

		if (d == 0)
			snprintf(name, sizeof name, "fuzz.json");
		else
			snprintf(name, sizeof name, "fuzz%zu.json", d);
		rc = menu_set_add_json(set, name, doc, lens[d], err, errlen);
		free(doc);
		FUZZ_CHECKF(rc == 0 || rc == -1, "menu_set_add_json returned %d", rc);
		if (rc < 0) {
			fuzz_check_err(err, errlen);
			break;
		}
	}

	if (rc == 0) {
		rc = menu_set_finish(set, &opts, err, errlen);
		FUZZ_CHECKF(rc == 0 || rc == -1, "menu_set_finish returned %d", rc);
		if (rc < 0) {
			fuzz_check_err(err, errlen);
		} else {
			size_t count = check_docs(set, docs, lens, ndocs, &vi);

			FUZZ_CHECKF(menu_screen_count(set) == count, "set has %zu screens, the JSON %zu",
				    menu_screen_count(set), count);
			FUZZ_CHECK(menu_screen(set, "\x01no such screen") == NULL);

			/* A second reference outlives the first unref. */
			FUZZ_CHECK(menu_set_ref(set) == set);
			menu_set_unref(set);
			FUZZ_CHECK(menu_screen_count(set) == count);
		}
	}
	menu_set_unref(set);
	free(viewbuf);
	free(err);
	free(in);
	return 0;
}
