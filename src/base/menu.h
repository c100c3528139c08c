/*
 * menu: USSD menus as data.  menus/NAME.json are read with jansson into an
 * immutable set of screens; the loader validates everything (links,
 * handlers, both languages, GSM-7 only, size caps) and names the file and
 * screen of the first problem.  A SIGHUP reload builds a new set and swaps
 * it in only if it validates; hops in flight keep the set they started
 * with (sets are reference counted).
 *
 * File format (see menus/README.md):
 *   { "strings": { "<key>": {"en": "...", "sw": "..."}, ... },
 *     "sms":     { "sms_<name>": {"vars": ["name", ...], "en": "...", "sw": "..."}, ... },
 *     "screens": { "<id>": { "type": "menu" | "input" | "list" | "info" | "end",
 *                            "text": {"en": ..., "sw": ...}, ... }, ... } }
 * A screen or option may name the protected action it belongs to:
 * "policy": "money.cash_record" (the policy_actions rows say who may).
 *
 * The "sms" section holds the message templates the outbox stores by key
 * (notify()); the sender renders them with menu_sms_render when it sends,
 * in the recipient's language.  Each declares its variables: a text that
 * uses an undeclared {name}, or a brace that opens none, is refused at
 * load, and so is a template that declares a variable its writer does not
 * supply (menu_opts.sms_needed).
 */
#ifndef CHAMAD_MENU_H
#define CHAMAD_MENU_H

#include <stdbool.h>
#include <stddef.h>

enum menu_lang { LANG_EN, LANG_SW, LANG_COUNT };

enum menu_type { SCREEN_MENU, SCREEN_INPUT, SCREEN_LIST, SCREEN_INFO, SCREEN_END };

enum menu_validator {
	VALID_NONE,
	VALID_DIGITS,	/* min_len..max_len digits */
	VALID_AMOUNT,	/* whole shillings in min..max */
	VALID_PIN,	/* 4 digits (log-in) */
	VALID_NEW_PIN,	/* 4 digits, not trivial (0000, 1234, 1111, 9876, ...) */
	VALID_OTP,	/* 6 digits */
	VALID_PHONE,	/* a phone number, normalised to E.164 */
	VALID_TEXT,	/* free text, 1..max_len characters */
	VALID_CODE,	/* invite code: 6..12 letters and digits, upper-cased */
};

struct menu_text {
	char *s[LANG_COUNT];
};

struct menu_option {
	struct menu_text label;
	char *key;		/* input screens: the shortcut typed ("9"); menus number options 1.. */
	char *next;		/* screen id (validated) */
	char *set_var, *set_val;	/* "set": {"var": "val"} applied when chosen */
	char *policy;		/* the protected action it leads to ("money.cash_record"), or NULL */
};

struct menu_screen {
	char *id;
	const char *file;	/* borrowed from the set */
	enum menu_type type;
	struct menu_text text;
	struct menu_option *options;	/* SCREEN_MENU; also shortcuts on SCREEN_INPUT */
	size_t noptions;
	enum menu_validator validator;
	long long vmin, vmax;	/* lengths or amounts */
	char *var;		/* input/list: where the value goes */
	char *enter;		/* action run when the screen is entered, or NULL */
	char *action;		/* action run on valid input / selection, or NULL */
	char *next;		/* input/list/info: screen after the action, or NULL */
	struct menu_text empty;	/* list: text when there are no items (optional) */
	bool back;		/* "0. Back" offered (default true) */
	bool home;		/* "00. Main menu" offered (default true) */
	bool auth;		/* needs a logged-in user (default true) */
	bool secret;		/* input never stored as typed nor replayed from dial strings */
	char *policy;		/* the protected action this screen is part of, or NULL */
	/* whether who may see it can depend on the policy: its own "policy",
	 * or a menu whose every option is gated (computed by menu_set_finish) */
	bool gated;
};

struct menu_set;
struct buf;

/* Looks up an action handler by name; the loader refuses unknown names. */
typedef bool (*menu_action_known)(const char *name);

/* What the code that writes a message supplies: the template key (a
 * trailing '*' names every template with that prefix, none required) and
 * the variables its writer puts in the row, separated by spaces. */
struct menu_sms_need {
	const char *key;
	const char *vars;
};

struct menu_opts {
	int screen_max;		/* septets per screen (cap), 64..182 */
	int error_reserve;	/* septets kept free on fixed screens for an error line */
	menu_action_known known;	/* NULL: accept every action name */
	const char *const *required_screens;	/* NULL-terminated, or NULL */
	const char *const *required_strings;	/* NULL-terminated, or NULL */
	/* {NULL}-terminated, or NULL: each template must exist (unless a
	 * prefix) and declare only variables its writer supplies */
	const struct menu_sms_need *sms_needed;
};

struct menu_set *menu_set_new(void);
/* Adds the screens and strings of one JSON document (file names a file in
 * messages).  Returns 0, or -1 with "file: screen: problem" in err. */
int menu_set_add_json(struct menu_set *m, const char *file, const char *json, size_t len, char *err, size_t errlen);
/* Cross-checks the whole set (links, handlers, required screens, caps).
 * Returns 0, or -1 with the problem in err. */
int menu_set_finish(struct menu_set *m, const struct menu_opts *o, char *err, size_t errlen);
/* Loads every *.json in dir (sorted) and finishes.  Returns a set with one
 * reference, or NULL with err filled. */
struct menu_set *menu_load_dir(const char *dir, const struct menu_opts *o, char *err, size_t errlen);
struct menu_set *menu_set_ref(struct menu_set *m);
void menu_set_unref(struct menu_set *m);

const struct menu_screen *menu_screen(const struct menu_set *m, const char *id);
/* A shared string in lang, or NULL. */
const char *menu_string(const struct menu_set *m, const char *key, enum menu_lang lang);
size_t menu_screen_count(const struct menu_set *m);

/* What one screen shows this time. */
struct menu_view {
	enum menu_lang lang;
	/* Value of {name} in texts (raw; transliterated to GSM-7 here), or NULL. */
	const char *(*var)(const char *name, void *arg);
	void *var_arg;
	/* Whether the user may do the protected action (called with var_arg);
	 * what it refuses is hidden.  NULL refuses every protected action. */
	bool (*allows)(const char *action, void *arg);
	const char *notice;	/* a first line (error or confirmation), or NULL */
	const char *const *items;	/* list labels */
	size_t nitems, first;	/* list: all items, and the first one on this page */
	bool back, home;	/* offer "0" / "00" */
	int cap;		/* septets */
};

/*
 * Visibility, from the policy alone (v->allows): a screen is offered when
 * its own "policy" (if any) is allowed and, for a menu, when it offers at
 * least one of its options; an option is offered when its own "policy" (if
 * any) is allowed and the screen it leads to is offered.  So a menu whose
 * every item its role may not do is hidden, and the option leading to it
 * with it.  (A screen met again on the way, a loop back, counts as
 * offered.)
 */
bool menu_screen_offered(const struct menu_set *m, const struct menu_screen *sc, const struct menu_view *v);
bool menu_option_offered(const struct menu_set *m, const struct menu_screen *sc, size_t i,
			 const struct menu_view *v);

/*
 * Renders a screen into out (reset first): the notice, the text with its
 * {vars}, the offered options (numbered by their place in the menu, so a
 * hidden option never renumbers the others) or one page of list items
 * (numbered from 1 on every page, as many as fit, then "98" for more), then
 * the navigation line.  Never longer than cap septets: variables are cut
 * first, and as a last resort the text.  Returns the number of list items
 * shown.
 */
size_t menu_render(const struct menu_set *m, const struct menu_screen *sc, const struct menu_view *v,
		   struct buf *out);

/* The shared string `key` in lang with its {vars} filled from var (values
 * transliterated to GSM-7), not cut to any cap; the key itself if there is
 * no such string.  Returns a new string (for SMS bodies). */
char *menu_text_format(const struct menu_set *m, const char *key, enum menu_lang lang,
		       const char *(*var)(const char *name, void *arg), void *arg);

/* Septets an SMS template may take without its variables: one message. */
#define MENU_SMS_MAX 160

/* True if the set has the SMS template key. */
bool menu_sms_exists(const struct menu_set *m, const char *key);

/*
 * Renders the SMS template key in lang into out (reset first), filling its
 * {vars} from vars_json, a JSON object (NULL or "" for none).  A value is
 *   - a string or an integer: put in as text, transliterated to GSM-7 and
 *     cut like a screen's variable;
 *   - {"template": "sms_x", "vars": {...}}: that template rendered here, in
 *     the same language (a word or a line that is itself translated);
 *   - an array of those: each item on a line of its own (a newline before
 *     each), for replies that list things (BAL, STMT).
 * Nothing is sent with a hole: an unknown template, or a variable the text
 * uses that is missing, null, empty or of another type, makes it return -1
 * with the reason (naming the template and the variable) in err.
 * Returns 0 on success.
 */
int menu_sms_render(const struct menu_set *m, const char *key, enum menu_lang lang, const char *vars_json,
		    struct buf *out, char *err, size_t errlen);

const char *menu_lang_code(enum menu_lang l);
int menu_lang_parse(const char *code, enum menu_lang *out);

#endif
