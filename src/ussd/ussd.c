/*
 * ussd: the engine (see ussd.h).  One struct ussd_hop per HTTP request:
 *
 *   lock + load (one EVAL) -> replay | expire | new session | step(input)
 *   step: navigation keys, option/item/input -> action -> enter next screen
 *   enter: run the screen's "enter" action, then render
 *   save + unlock (one EVAL) -> reply -> free
 *
 * A hop that ran no action with effects (menus, Back, data screens that
 * only read) replies first and saves after, on the same Redis connection:
 * hiredis sends commands in order, so this daemon's next load of the
 * session comes after the save; another daemon's comes after it too or
 * finds the lock still held ("busy", as for a copy of a running hop).  If
 * such a save fails, the session is deleted, so the next hop ends with
 * "Session expired" instead of acting on a screen older than the one the
 * user sees.  A hop whose action changed something (a payment, a PIN, a
 * message) still saves before it replies: its reply must not promise what
 * the session may not remember.
 *
 * Back to a screen whose "enter" action only shows data (ACT_SHOWN_AGAIN)
 * shows it again from the session: its variables and items are kept with
 * the back stack ("cache"), for the screens on the stack only.
 *
 * The session (one Redis key per aggregator and session id, TTL renewed on
 * every hop) holds the screen, the back stack, variables, language, login,
 * list items and the reply last given, so any daemon can serve any hop and
 * a resent hop gets the same reply without running its action again.  The
 * path typed so far is kept only as a length and a keyed digest: the text
 * of a cumulative aggregator carries PINs.
 *
 * A per-session lock (SET NX PX) makes concurrent copies of one hop wait
 * their turn instead of both running an action.
 */
#include "ussd/ussd.h"
#include "ussd/ussd_hop.h"
#include "app.h"
#include "dom/auth.h"
#include "dom/policy.h"
#include "dom/user.h"
#include "base/config.h"
#include "net/db.h"
#include "base/gsm7.h"
#include "net/httpd.h"
#include "base/log.h"
#include "base/menu.h"
#include "dom/notify.h"
#include "base/phone.h"
#include "net/redis.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#define MAX_TRANSITIONS 12	/* redirects and pre-filled inputs in one hop */
#define MAX_STACK 20
#define MAX_VARS 40

/* KEYS: state, lock.  ARGV: token, lock ms.  -> {locked?, state or nil} */
static const char LUA_BEGIN[] =
	"local got = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) "
	"local s = redis.call('GET', KEYS[1]) "
	"if got then return {1, s} else return {0, s} end";
/* KEYS: state, lock.  ARGV: token, state ('' = delete), ttl s. */
static const char LUA_SAVE[] =
	"if ARGV[2] == '' then redis.call('DEL', KEYS[1]) "
	"else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end "
	"if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end "
	"return 1";

/* Screens and strings the engine itself relies on. */
static const char *const required_screens[] = { "start_new", "start_login", "main", NULL };
static const char *const required_strings[] = { "err_invalid", "expired", "busy", "bye", NULL };

enum hop_phase { PH_START, PH_ENTER, PH_SUBMIT };

/* How hops ended, for /metrics. */
enum hop_outcome { OUT_SCREEN, OUT_END, OUT_REPLAY, OUT_EXPIRED, OUT_BUSY, OUT_TIMEOUT, OUT_BAD_PHONE, OUT_COUNT };
static const char *const outcome_names[OUT_COUNT] = { "screen", "end", "replay", "expired", "busy", "timeout",
						      "bad_phone" };
static uint64_t outcomes[OUT_COUNT];
static uint64_t saves_lost;	/* sessions dropped after a reply whose save failed */

struct ussd_hop {
	struct app *app;
	const struct ussd_adapter *ad;
	struct http_ctx *ctx;	/* held until the hop is freed */
	struct ussd_req req;
	struct menu_set *menus;	/* reference held */
	json_t *st;		/* the session (owned) */
	char key[128], lock[128], token[33], sid[96];
	char phone[20];
	const struct menu_screen *sc;	/* the screen the user is on */
	enum hop_phase phase;
	const char *next_after;	/* submit: where to go when the action is done */
	char *notice;		/* string key shown as a first line */
	char *secret;		/* secret input for the action (wiped) */
	json_t *items;		/* list items being filled by an enter action */
	int transitions;
	bool end, replied, saving;
	bool timed_out;		/* the hop's timer gave the user "busy" already */
	bool ended;		/* the hop reached its one end: finish, unavailable or held */
	bool effects;		/* an action that may change something ran */
	bool trailing;		/* replied before the save was answered */
	bool going_back;	/* enter_screen from Back */
	const struct ussd_action *shows;	/* the ACT_SHOWN_AGAIN enter action running */
	json_t *shown_vars;	/* the variables it set */
	struct {		/* the first hop's user row (hop_dial_user) */
		bool have, no_pin, locked;
		char until[16];
	} dial;
	struct event *timer;
	struct event *hold;	/* hop_overloaded: the END waits on this */
	struct event *relock;	/* the session's lock was held: try again on this */
	json_t *prefetch;	/* hop_prefetch: this hop's only */
	struct buf screen;	/* rendered text */
	uint64_t t0;
};

static void enter_screen(struct ussd_hop *h, const char *id, bool push);
static void invalid(struct ussd_hop *h, const char *key);
static void step(struct ussd_hop *h, const char *input);
static void finish(struct ussd_hop *h);

/* ---- small helpers ---------------------------------------------------- */

static const char *st_str(json_t *st, const char *k)
{
	return json_string_value(json_object_get(st, k));
}

static long long st_int(json_t *st, const char *k)
{
	return json_integer_value(json_object_get(st, k));
}

static json_t *vars(struct ussd_hop *h)
{
	json_t *v = json_object_get(h->st, "vars");

	if (!json_is_object(v)) {
		v = json_object();
		json_object_set_new(h->st, "vars", v);
	}
	return v;
}

static const char *text_for(struct ussd_hop *h, const char *key)
{
	const char *s = menu_string(h->menus, key, hop_lang(h));

	return s ? s : key;
}

static const char *var_lookup(const char *name, void *arg)
{
	return hop_var(arg, name);
}

/* The menus' visibility hook: a protected action is offered when the
 * actions the session keeps with the member's role (set with the chama
 * they picked, dom/policy.h) include it.  The statement behind it checks
 * again in the database. */
static bool hop_allows(const char *action, void *arg)
{
	return policy_in(hop_var(arg, "allowed"), action);
}

static bool logged_in(struct ussd_hop *h)
{
	return json_is_true(json_object_get(h->st, "auth"));
}

/* ---- the hop API for actions ------------------------------------------ */

struct app *hop_app(struct ussd_hop *h)
{
	return h->app;
}

const char *hop_phone(const struct ussd_hop *h)
{
	return h->phone;
}

const char *hop_session_id(const struct ussd_hop *h)
{
	return h->sid;
}

uint64_t hop_deadline_ms(const struct ussd_hop *h)
{
	int t = h->app->cfg->ussd_hop_timeout_ms;
	int margin = t / 10;

	/* what is left of the hop after the work: a write, the session save,
	 * the render; a tenth of the hop, within [50, 500] ms */
	margin = margin < 50 ? 50 : margin > 500 ? 500 : margin;
	return h->t0 / 1000 + (uint64_t)(t - margin);
}

enum menu_lang hop_lang(const struct ussd_hop *h)
{
	enum menu_lang l = LANG_EN;

	menu_lang_parse(st_str(h->st, "lang"), &l);
	return l;
}

void hop_set_lang(struct ussd_hop *h, enum menu_lang lang)
{
	json_object_set_new(h->st, "lang", json_string(menu_lang_code(lang)));
}

const char *hop_user(const struct ussd_hop *h)
{
	const char *u = st_str(h->st, "uid");

	return json_is_true(json_object_get(h->st, "auth")) && u && *u ? u : NULL;
}

void hop_login(struct ussd_hop *h, const char *user_id)
{
	json_object_set_new(h->st, "auth", json_true());
	json_object_set_new(h->st, "uid", json_string(user_id));
	json_array_clear(json_object_get(h->st, "stack"));
}

void hop_prefetch(struct ussd_hop *h, const char *key, const char *value)
{
	if (!h->prefetch)
		h->prefetch = json_object();
	json_object_set_new(h->prefetch, key, json_string(value));
}

const char *hop_prefetched(const struct ussd_hop *h, const char *key)
{
	return json_string_value(json_object_get(h->prefetch, key));
}

bool hop_dial_user(const struct ussd_hop *h, bool *no_pin, bool *locked, const char **until)
{
	if (!h->dial.have)
		return false;
	*no_pin = h->dial.no_pin;
	*locked = h->dial.locked;
	*until = h->dial.until;
	return true;
}

const char *hop_secret(const struct ussd_hop *h)
{
	return h->secret;
}

const char *hop_var(const struct ussd_hop *h, const char *name)
{
	return st_str(json_object_get(h->st, "vars"), name);
}

void hop_set_var(struct ussd_hop *h, const char *name, const char *value)
{
	json_t *v = vars(h);

	if (json_object_size(v) >= MAX_VARS && !json_object_get(v, name)) {
		log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: too many session variables, %s dropped", name);
		return;
	}
	json_object_set_new(v, name, json_string(value ? value : ""));
	if (h->shown_vars)
		json_object_set_new(h->shown_vars, name, json_string(value ? value : ""));
}

void hop_set_varf(struct ussd_hop *h, const char *name, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	hop_set_var(h, name, tmp);
}

void hop_del_var(struct ussd_hop *h, const char *name)
{
	json_object_del(vars(h), name);
	if (h->shown_vars)
		json_object_set_new(h->shown_vars, name, json_null());
}

void hop_add_item(struct ussd_hop *h, const char *label, const char *value)
{
	if (!h->items)
		h->items = json_array();
	if (json_array_size(h->items) < 200)
		json_array_append_new(h->items, json_pack("[s, s]", label, value));
}

void hop_audit_params(const struct ussd_hop *h, const char *out[3])
{
	const char *u = hop_user(h);

	out[0] = h->phone;
	out[1] = h->sid;
	out[2] = u ? u : "";
}

/* ---- replies ---------------------------------------------------------- */

static void hop_free(struct ussd_hop *h)
{
	/* every hop answers the aggregator before it goes */
	xassert(h->replied);
	if (h->timer)
		event_free(h->timer);
	if (h->hold)
		event_free(h->hold);
	if (h->relock)
		event_free(h->relock);
	if (h->secret) {
		sodium_memzero(h->secret, strlen(h->secret));
		free(h->secret);
	}
	free(h->notice);
	json_decref(h->items);
	json_decref(h->prefetch);
	json_decref(h->shown_vars);
	json_decref(h->st);
	ussd_req_clear(&h->req);
	if (h->menus)
		menu_set_unref(h->menus);
	buf_free(&h->screen);
	http_ctx_release(h->ctx);
	free(h);
}

/* Renders the reply through the adapter (once). */
static void reply(struct ussd_hop *h, bool end, const char *text, enum hop_outcome outcome)
{
	struct ussd_reply rep = { end, text };
	struct buf out;
	const char *ctype = "text/plain";

	/* one reply per hop; the only later one is the real end of a hop
	 * whose timer answered first (the session is still saved) */
	if (h->replied) {
		xassert(h->timed_out);
		return;
	}
	h->replied = true;
	if (h->timer)
		evtimer_del(h->timer);
	outcomes[outcome]++;
	buf_init(&out, 8192);
	h->ad->render(&h->req, &rep, &out, &ctype);
	http_reply(h->ctx, 200, ctype, out.data ? out.data : "", out.len);
	buf_free(&out);
}

/* Ends the hop without touching the session (busy, expired). */
static void reply_and_unlock(struct ussd_hop *h, const char *key);

static void on_hop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct ussd_hop *h = arg;

	(void)fd;
	(void)what;
	log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: hop not done in %d ms; told the user to retry",
		h->app->cfg->ussd_hop_timeout_ms);
	xassert(!h->replied);
	h->timed_out = true;
	reply(h, true, h->menus ? text_for(h, "busy") : "Service busy, please try again.", OUT_TIMEOUT);
}

/* ---- saving ----------------------------------------------------------- */

static void unlocked(const struct redis_result *r, void *arg);

static void saved(const struct redis_result *r, void *arg)
{
	struct ussd_hop *h = arg;

	if (r->status != REDIS_S_OK && h->trailing) {
		/* the user already sees this hop's screen, which the session
		 * does not remember: better "Session expired" on the next hop
		 * than input applied to an older screen */
		const char *argv[2] = { "DEL", h->key };

		saves_lost++;
		log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: %s %s: session not saved after the reply (%s); "
			"dropping it", h->ad->name, h->sid, r->error);
		redis_cmd(h->app->redis, unlocked, h, 2, argv, NULL);
		return;
	}
	if (r->status != REDIS_S_OK) {
		/* the user saw nothing yet: better a polite END than a screen
		 * whose session we could not keep */
		log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: session not saved: %s", r->error);
		if (!h->replied)
			reply(h, true, text_for(h, "busy"), OUT_BUSY);
	} else if (!h->replied) {
		reply(h, h->end, h->screen.data ? h->screen.data : "", h->end ? OUT_END : OUT_SCREEN);
	}
	log_msg(LOG_DEBUG, http_ctx_reqid(h->ctx), "ussd: %s %s -> %s in %llu us", h->ad->name, h->sid,
		h->sc ? h->sc->id : "-", (unsigned long long)(util_now_us() - h->t0));
	hop_free(h);
}

static void save(struct ussd_hop *h, bool drop)
{
	char ttl[16];
	char *state = drop ? xstrdup("") : json_dumps(h->st, JSON_COMPACT);
	const char *argv[7] = { "EVAL", LUA_SAVE, "2", h->key, h->lock, h->token, state };
	const char *args[8];

	snprintf(ttl, sizeof(ttl), "%d", h->app->cfg->ussd_session_ttl_s);
	memcpy(args, argv, sizeof(argv));
	args[7] = ttl;
	/* one save per hop: it ends the hop (saved frees it) */
	xassert(!h->saving);
	h->saving = true;
	redis_cmd(h->app->redis, saved, h, 8, args, NULL);
	free(state);
}

static void unlocked(const struct redis_result *r, void *arg)
{
	(void)r;
	hop_free(arg);
}

/* Keeps the variables and items of the screens on the back stack that
 * can be shown again, and only those. */
static void prune_cache(struct ussd_hop *h)
{
	json_t *cache = json_object_get(h->st, "cache"), *stack = json_object_get(h->st, "stack");
	const char *id;
	json_t *v;
	void *tmp;

	if (!json_is_object(cache))
		return;
	json_object_foreach_safe(cache, tmp, id, v) {
		bool keep = h->sc && !strcmp(id, h->sc->id);

		for (size_t i = 0; !keep && i < json_array_size(stack); i++)
			keep = !strcmp(id, json_string_value(json_array_get(stack, i)));
		if (!keep)
			json_object_del(cache, id);
	}
	if (!json_object_size(cache))
		json_object_del(h->st, "cache");
}

/* Releases our lock (if still ours) without touching the session, then
 * frees the hop. */
static void unlock_and_free(struct ussd_hop *h)
{
	static const char LUA_UNLOCK[] =
		"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";
	const char *argv[5] = { "EVAL", LUA_UNLOCK, "1", h->lock, h->token };

	redis_cmd(h->app->redis, unlocked, h, 5, argv, NULL);
}

static void reply_and_unlock(struct ussd_hop *h, const char *key)
{
	reply(h, true, text_for(h, key), !strcmp(key, "expired") ? OUT_EXPIRED : OUT_BUSY);
	unlock_and_free(h);
}

/* The session is over: store the final reply so a resent last hop gets
 * the same END, then let the key expire. */
static void finish_end(struct ussd_hop *h, const char *text)
{
	h->end = true;
	buf_reset(&h->screen);
	buf_puts(&h->screen, text);
	finish(h);
}

/* ---- rendering -------------------------------------------------------- */

static void render(struct ussd_hop *h)
{
	json_t *items = json_object_get(h->st, "items");
	size_t n = json_array_size(items), first = (size_t)st_int(h->st, "first");
	const char **labels = n ? xcalloc(n, sizeof(*labels)) : NULL;
	bool is_main = !strcmp(h->sc->id, "main");
	struct menu_view v = {
		.lang = hop_lang(h),
		.var = var_lookup,
		.var_arg = h,
		.allows = hop_allows,
		.notice = h->notice ? text_for(h, h->notice) : NULL,
		.items = labels,
		.nitems = n,
		.first = first < n ? first : 0,
		.back = h->sc->back && (json_array_size(json_object_get(h->st, "stack")) > 0 || first > 0),
		.home = h->sc->home && logged_in(h) && !is_main,
		.cap = h->app->cfg->ussd_screen_max,
	};
	size_t shown;

	for (size_t i = 0; i < n; i++)
		labels[i] = json_string_value(json_array_get(json_array_get(items, i), 0));
	shown = menu_render(h->menus, h->sc, &v, &h->screen);
	json_object_set_new(h->st, "shown", json_integer((json_int_t)shown));
	free(labels);
	h->end = h->sc->type == SCREEN_END;
}

/* Done with this hop: render (unless an END text is set) and save. */
static void finish(struct ussd_hop *h)
{
	const char *hk = h->req.hop_key ? h->req.hop_key : "";
	char digest[65];

	/* a handler ends its hop once (hop_done, _goto, _fail, _end or
	 * _unavailable); a second end would save and answer twice */
	xassert(!h->ended);
	h->ended = true;
	if (!h->end)
		render(h);
	auth_digest(h->app->auth, "hop", h->sid, hk, digest);
	json_object_set_new(h->st, "hk", json_string(digest));
	json_object_set_new(h->st, "reply", json_string(h->screen.data ? h->screen.data : ""));
	json_object_set_new(h->st, "end", json_boolean(h->end));
	json_object_set_new(h->st, "hops", json_integer(st_int(h->st, "hops") + 1));
	prune_cache(h);
	if (h->effects)		/* what it wrote may have queued an SMS */
		app_outbox_queued(h->app);
	if (!h->effects) {
		h->trailing = true;
		reply(h, h->end, h->screen.data ? h->screen.data : "", h->end ? OUT_END : OUT_SCREEN);
	}
	save(h, false);
}

/* ---- pre-filled input (dial-string shortcuts) --------------------------- */

/* After a screen is shown, feeds the next pre-filled input, unless the
 * screen wants a secret (PINs never come from a dial string: it stays in
 * the phone's call log) or the session is over. */
static bool feed_pending(struct ussd_hop *h)
{
	json_t *p = json_object_get(h->st, "pending");
	char *in;

	if (!json_array_size(p) || h->end || h->sc->type == SCREEN_END || h->sc->secret ||
	    h->transitions >= MAX_TRANSITIONS)
		return false;
	in = xstrdup(json_string_value(json_array_get(p, 0)));
	json_array_remove(p, 0);
	h->transitions++;
	step(h, in);
	free(in);
	return true;
}

/* Every path through the engine ends here or in finish_end. */
static void settle(struct ussd_hop *h)
{
	if (!feed_pending(h))
		finish(h);
}

/* ---- actions ---------------------------------------------------------- */

/* The registered action tables (one per act_*.c module, registered by
 * main.c before the menus load). */
static const struct ussd_action *action_tables[16];
static size_t n_action_tables;

void ussd_actions_register(const struct ussd_action *table)
{
	for (size_t i = 0; i < n_action_tables; i++)
		if (action_tables[i] == table)
			return;
	xassert(n_action_tables < ARRAY_LEN(action_tables));
	action_tables[n_action_tables++] = table;
}

static const struct ussd_action *find_action(const char *name)
{
	for (size_t t = 0; t < n_action_tables; t++)
		for (const struct ussd_action *a = action_tables[t]; a->name; a++)
			if (!strcmp(a->name, name))
				return a;
	return NULL;
}

bool ussd_action_known(const char *name)
{
	return find_action(name) != NULL;
}

static void run_action(struct ussd_hop *h, const char *name, enum hop_phase phase)
{
	const struct ussd_action *a = find_action(name);

	h->phase = phase;
	if (!a) {		/* the loader refuses unknown names; a reload race */
		hop_unavailable(h, "unknown action");
		return;
	}
	if (!(a->flags & ACT_NO_EFFECT))
		h->effects = true;
	json_decref(h->shown_vars);
	h->shown_vars = NULL;
	h->shows = NULL;
	if (phase == PH_ENTER && (a->flags & ACT_SHOWN_AGAIN)) {
		h->shows = a;
		h->shown_vars = json_object();
	}
	a->fn(h);
}

void hop_done(struct ussd_hop *h, const char *notice)
{
	if (notice) {
		free(h->notice);
		h->notice = xstrdup(notice);
	}
	if (h->phase == PH_ENTER) {
		json_object_set_new(h->st, "items", h->items ? h->items : json_array());
		h->items = NULL;
		if (h->shows && h->sc->enter && !strcmp(h->sc->enter, h->shows->name)) {
			json_t *cache = json_object_get(h->st, "cache");

			if (!json_is_object(cache)) {
				cache = json_object();
				json_object_set_new(h->st, "cache", cache);
			}
			json_object_set_new(cache, h->sc->id,
					    json_pack("{s:s, s:O, s:O}", "action", h->shows->name, "vars",
						      h->shown_vars, "items", json_object_get(h->st, "items")));
		}
		h->shows = NULL;
		json_decref(h->shown_vars);
		h->shown_vars = NULL;
		h->phase = PH_START;
		settle(h);
		return;
	}
	h->phase = PH_START;
	if (h->next_after)
		enter_screen(h, h->next_after, true);
	else
		settle(h);
}

void hop_goto(struct ussd_hop *h, const char *screen, const char *notice)
{
	bool push = h->phase == PH_SUBMIT;

	json_decref(h->items);
	h->items = NULL;
	if (notice) {
		free(h->notice);
		h->notice = xstrdup(notice);
	}
	h->phase = PH_START;
	if (++h->transitions > MAX_TRANSITIONS) {
		hop_unavailable(h, "too many redirects");
		return;
	}
	enter_screen(h, screen, push);
}

void hop_fail(struct ussd_hop *h, const char *key)
{
	json_t *stack = json_object_get(h->st, "stack");
	size_t n = json_array_size(stack);

	free(h->notice);
	h->notice = xstrdup(key);
	json_decref(h->items);
	h->items = NULL;
	if (h->phase == PH_ENTER) {
		/* the screen could not be shown: back to where the user was */
		const char *prev = n ? json_string_value(json_array_get(stack, n - 1)) : NULL;
		const struct menu_screen *sc = prev ? menu_screen(h->menus, prev) : NULL;

		if (!sc) {
			h->phase = PH_START;
			hop_end(h, key);
			return;
		}
		json_array_remove(stack, n - 1);
		h->sc = sc;
		json_object_set_new(h->st, "screen", json_string(sc->id));
	}
	h->phase = PH_START;
	json_object_del(h->st, "pending");
	finish(h);
}

char *hop_text(struct ussd_hop *h, const char *key)
{
	return hop_text_lang(h, key, hop_lang(h));
}

char *hop_text_lang(struct ussd_hop *h, const char *key, enum menu_lang lang)
{
	return menu_text_format(h->menus, key, lang, var_lookup, h);
}

void hop_end(struct ussd_hop *h, const char *key)
{
	char *text = hop_text(h, key);
	size_t keep = strlen(text);

	/* an END string may carry {vars}; the cap holds for it too */
	int n;

	while (keep > 0 && ((n = gsm7_septets(text, NULL)) < 0 || n > h->app->cfg->ussd_screen_max))
		text[--keep] = '\0';
	h->phase = PH_START;
	finish_end(h, text);
	free(text);
}

/* Under load refusals come by the thousand a second: one log line a
 * second says how many, instead of a line each. */
static void log_cannot_serve(struct ussd_hop *h, const char *why)
{
	static uint64_t last_ms, quiet;
	uint64_t now = util_now_ms();

	if (now - last_ms < 1000) {
		quiet++;
		return;
	}
	log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: %s %s: cannot serve: %s%s", h->ad->name, h->sid, why,
		quiet ? " (and more in the last second)" : "");
	if (quiet)
		log_msg(LOG_WARN, NULL, "ussd: %llu more hop(s) not served since the last such line",
			(unsigned long long)quiet);
	last_ms = now;
	quiet = 0;
}

void hop_unavailable(struct ussd_hop *h, const char *why)
{
	xassert(!h->ended);
	h->ended = true;
	log_cannot_serve(h, why);
	/* nothing of this hop is kept: the user dials again from the start */
	h->phase = PH_START;
	reply(h, true, text_for(h, "busy"), OUT_BUSY);
	save(h, true);
}

static void hold_done(evutil_socket_t fd, short what, void *arg)
{
	struct ussd_hop *h = arg;

	reply(h, true, text_for(h, "busy"), OUT_BUSY);
	save(h, true);
}

void hop_overloaded(struct ussd_hop *h, const char *why)
{
	int64_t left = (int64_t)hop_deadline_ms(h) - (int64_t)util_now_ms();
	int64_t ms = h->app->cfg->ussd_busy_hold_ms < left ? h->app->cfg->ussd_busy_hold_ms : left;
	struct timeval tv;

	if (ms <= 0) {
		hop_unavailable(h, why);
		return;
	}
	xassert(!h->ended && !h->hold);
	h->ended = true;
	log_cannot_serve(h, why);
	h->phase = PH_START;
	h->hold = evtimer_new(h->app->base, hold_done, h);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(h->hold, &tv);
}

/* ---- navigation ------------------------------------------------------- */

/* Back to a screen whose data the session holds: shows it from there. */
static bool show_again(struct ussd_hop *h, const struct menu_screen *sc)
{
	json_t *c = json_object_get(json_object_get(h->st, "cache"), sc->id);
	json_t *vs = json_object_get(c, "vars"), *v;
	const char *name;

	if (!json_is_object(vs) || !json_is_array(json_object_get(c, "items")) ||
	    strcmp(sc->enter, st_str(c, "action") ? st_str(c, "action") : ""))
		return false;
	json_object_foreach(vs, name, v) {
		if (json_is_string(v))
			json_object_set(vars(h), name, v);
		else
			json_object_del(vars(h), name);
	}
	json_object_set(h->st, "items", json_object_get(c, "items"));
	settle(h);
	return true;
}

static void enter_screen(struct ussd_hop *h, const char *id, bool push)
{
	const struct menu_screen *sc = menu_screen(h->menus, id);
	json_t *stack = json_object_get(h->st, "stack");
	bool back = h->going_back;

	h->going_back = false;
	if (!sc) {
		hop_unavailable(h, "screen vanished (menus reloaded)");
		return;
	}
	if (sc->auth && !logged_in(h)) {
		hop_end(h, "expired");
		return;
	}
	if (sc->policy && !hop_allows(sc->policy, h)) {
		/* reached by a path no option offered (a stale link): refused
		 * here, as the statement behind it would */
		invalid(h, "err_not_official");
		return;
	}
	if (!strcmp(id, "main")) {
		json_array_clear(stack);
	} else if (push && h->sc && strcmp(h->sc->id, id)) {
		if (json_array_size(stack) >= MAX_STACK)
			json_array_remove(stack, 0);
		json_array_append_new(stack, json_string(h->sc->id));
	}
	h->sc = sc;
	json_object_set_new(h->st, "screen", json_string(sc->id));
	json_object_set_new(h->st, "first", json_integer(0));
	json_object_set_new(h->st, "pages", json_array());
	json_object_set_new(h->st, "items", json_array());
	if (sc->enter && back && show_again(h, sc))
		return;
	if (sc->enter) {
		json_decref(h->items);
		h->items = NULL;
		run_action(h, sc->enter, PH_ENTER);
		return;
	}
	settle(h);
}

static void go_back(struct ussd_hop *h)
{
	json_t *stack = json_object_get(h->st, "stack");
	json_t *pages = json_object_get(h->st, "pages");
	size_t n = json_array_size(stack);
	char *prev;

	if (json_array_size(pages)) {	/* previous page of a list */
		size_t k = json_array_size(pages) - 1;

		json_object_set_new(h->st, "first", json_integer(json_integer_value(json_array_get(pages, k))));
		json_array_remove(pages, k);
		settle(h);
		return;
	}
	prev = xstrdup(json_string_value(json_array_get(stack, n - 1)));
	json_array_remove(stack, n - 1);
	h->going_back = true;
	enter_screen(h, prev, false);
	free(prev);
}

static void invalid(struct ussd_hop *h, const char *key)
{
	free(h->notice);
	h->notice = xstrdup(key);
	json_object_del(h->st, "pending");
	finish(h);
}

/* Checks and normalises typed input; returns a new string or NULL (with
 * *why set to a string key). */
static char *validate(struct ussd_hop *h, const struct menu_screen *sc, const char *in, const char **why)
{
	size_t n = strlen(in);
	bool digits = n > 0 && strspn(in, "0123456789") == n;
	long long v;

	*why = "err_invalid";
	switch (sc->validator) {
	case VALID_NONE:
		return xstrdup(in);
	case VALID_DIGITS:
		return digits && (long long)n >= sc->vmin && (long long)n <= sc->vmax ? xstrdup(in) : NULL;
	case VALID_AMOUNT:
		*why = "err_amount";
		if (!digits || n > 12 || util_parse_ll(in, sc->vmin, sc->vmax, &v) < 0)
			return NULL;
		return xasprintf("%lld", v);
	case VALID_PIN:
		*why = "err_pin_format";
		return digits && n == 4 ? xstrdup(in) : NULL;
	case VALID_NEW_PIN:
		*why = "err_pin_format";
		if (!digits || n != 4)
			return NULL;
		*why = "err_pin_trivial";
		return auth_pin_trivial(in) ? NULL : xstrdup(in);
	case VALID_OTP:
		*why = "err_otp_format";
		return digits && n == 6 ? xstrdup(in) : NULL;
	case VALID_PHONE: {
		char e164[20];

		*why = "err_phone";
		return phone_normalise(in, h->app->cfg->ussd_country_code, e164, sizeof(e164)) < 0 ? NULL
												     : xstrdup(e164);
	}
	case VALID_TEXT: {
		char clean[256];
		size_t len;

		*why = "err_text";
		len = gsm7_transliterate(in, n, clean, sizeof(clean));
		util_trim(clean);
		len = strlen(clean);
		return (long long)len >= sc->vmin && (long long)len <= sc->vmax ? xstrdup(clean) : NULL;
	}
	case VALID_CODE: {
		char *c;

		*why = "err_code";
		if (n < (size_t)sc->vmin || n > (size_t)sc->vmax)
			return NULL;
		c = xstrdup(in);
		for (size_t i = 0; i < n; i++) {
			if (c[i] >= 'a' && c[i] <= 'z')
				c[i] = (char)(c[i] - 32);
			if (!((c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= '0' && c[i] <= '9'))) {
				free(c);
				return NULL;
			}
		}
		return c;
	}
	}
	return NULL;
}

/* A choice or a value was accepted: run the screen's action, then go on to
 * next; without an action, go on at once. */
static void submit(struct ussd_hop *h, const struct menu_screen *sc, const char *next)
{
	if (sc->action) {
		h->next_after = next;
		run_action(h, sc->action, PH_SUBMIT);
	} else {
		enter_screen(h, next, true);
	}
}

/* Applies one input to the screen the user is on. */
static void step(struct ussd_hop *h, const char *in)
{
	const struct menu_screen *sc = h->sc;
	json_t *stack = json_object_get(h->st, "stack");
	json_t *items = json_object_get(h->st, "items");
	long long n = -1;
	char *value;
	const char *why;

	free(h->notice);
	h->notice = NULL;
	if (strspn(in, "0123456789") == strlen(in) && strlen(in) > 0 && strlen(in) <= 3)
		n = atoll(in);
	/* navigation, wherever it makes sense; input screens that want digits
	 * still take "0" only as Back when Back is offered */
	if (!strcmp(in, "00") && logged_in(h) && (sc->home || !strcmp(sc->id, "main"))) {
		enter_screen(h, "main", false);
		return;
	}
	if (!strcmp(in, "0") && sc->back &&
	    (json_array_size(stack) > 0 || json_array_size(json_object_get(h->st, "pages")) > 0)) {
		go_back(h);
		return;
	}
	if (!strcmp(in, "98") && sc->type == SCREEN_LIST) {
		size_t first = (size_t)st_int(h->st, "first"), shown = (size_t)st_int(h->st, "shown");

		if (first + shown < json_array_size(items)) {
			json_array_append_new(json_object_get(h->st, "pages"), json_integer((json_int_t)first));
			json_object_set_new(h->st, "first", json_integer((json_int_t)(first + shown)));
			settle(h);
			return;
		}
	}
	switch (sc->type) {
	case SCREEN_MENU: {
		const struct menu_option *op;

		if (n < 1 || n > (long long)sc->noptions)
			break;
		op = &sc->options[n - 1];
		if (!menu_option_offered(h->menus, sc, (size_t)(n - 1),
					 &(struct menu_view){ .var_arg = h, .allows = hop_allows }))
			break;	/* hidden from this user */
		if (op->set_var) {
			if (!strcmp(op->set_var, "lang")) {
				enum menu_lang l;

				if (menu_lang_parse(op->set_val, &l) == 0)
					hop_set_lang(h, l);
			}
			hop_set_var(h, op->set_var, op->set_val);
		}
		submit(h, sc, op->next);
		return;
	}
	case SCREEN_INPUT:
		for (size_t i = 0; i < sc->noptions; i++) {
			if (!strcmp(in, sc->options[i].key)) {
				enter_screen(h, sc->options[i].next, true);
				return;
			}
		}
		value = validate(h, sc, in, &why);
		if (!value) {
			invalid(h, why);
			return;
		}
		if (sc->secret) {
			free(h->secret);
			h->secret = value;
		} else {
			hop_set_var(h, sc->var, value);
			free(value);
		}
		submit(h, sc, sc->next);
		return;
	case SCREEN_LIST: {
		size_t first = (size_t)st_int(h->st, "first"), shown = (size_t)st_int(h->st, "shown");
		json_t *it;

		if (n < 1 || (size_t)n > shown || first + (size_t)n > json_array_size(items))
			break;
		it = json_array_get(items, first + (size_t)n - 1);
		hop_set_var(h, sc->var, json_string_value(json_array_get(it, 1)));
		hop_set_var(h, "item_label", json_string_value(json_array_get(it, 0)));
		submit(h, sc, sc->next);
		return;
	}
	case SCREEN_INFO:
		if (sc->next && strcmp(in, "0") && strcmp(in, "00")) {
			enter_screen(h, sc->next, true);
			return;
		}
		break;
	case SCREEN_END:
		finish_end(h, h->screen.data ? h->screen.data : "");
		return;
	}
	invalid(h, "err_invalid");
}

/* ---- the start of a hop ----------------------------------------------- */

/* The input this hop adds, derived from what we already saw: a cumulative
 * text must extend the stored path by "*" + input (the input itself may
 * contain '*').  Returns a new string. */
static char *newest_input(struct ussd_hop *h)
{
	const char *text = h->req.text;
	size_t len = (size_t)st_int(h->st, "plen"), tl = strlen(text);
	char digest[65];

	if (!h->req.cumulative)
		return xstrdup(text);
	if (len == 0 && !json_is_true(json_object_get(h->st, "pfx")))
		return xstrdup(text);
	if (tl > len) {
		char *prefix = xstrndup(text, len);
		const char *seen = st_str(h->st, "path");

		auth_digest(h->app->auth, "path", h->sid, prefix, digest);
		free(prefix);
		if (seen && !strcmp(seen, digest) && (len == 0 || text[len] == '*'))
			return xstrdup(text + len + (len ? 1 : 0));
	}
	/* not an extension of what we saw: the newest '*'-segment is the best guess */
	log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: %s %s: text does not extend the path we saw", h->ad->name,
		h->sid);
	return xstrdup(strrchr(text, '*') ? strrchr(text, '*') + 1 : text);
}

static void remember_path(struct ussd_hop *h)
{
	char digest[65];

	if (!h->req.cumulative)
		return;
	auth_digest(h->app->auth, "path", h->sid, h->req.text, digest);
	json_object_set_new(h->st, "path", json_string(digest));
	json_object_set_new(h->st, "plen", json_integer((json_int_t)strlen(h->req.text)));
	json_object_set_new(h->st, "pfx", json_true());
}

/* Pre-filled inputs of a new session: the dial string's segments after our
 * service code (Hubtel: the whole dial string in Message; AT: a non-empty
 * first text whose segments also end the dialled code).  Returns -1 when
 * the first hop carries input that is not a dial-string shortcut: a
 * session we lost. */
static int prefill(struct ussd_hop *h, json_t *pending)
{
	const char *text = h->req.text, *code = h->req.service_code;
	const char *base = h->app->cfg->ussd_service_code;
	char *extra = NULL, *save = NULL, *tok;

	if (h->req.cumulative) {
		size_t tl = strlen(text), cl = strlen(code);

		if (!tl)
			return 0;
		/* "*384*1234*3*1#" with text "3*1" */
		if (cl > tl + 1 && code[cl - 1] == '#' && !strncmp(code + cl - 1 - tl, text, tl) &&
		    code[cl - 2 - tl] == '*')
			extra = xstrdup(text);
		else
			return -1;
	} else {
		/* Hubtel Initiation: Message "*714*5*3*100#", ServiceCode "714*5" or our base code */
		const char *p = text;
		size_t bl;

		if (*p == '*')
			p++;
		bl = strlen(code);
		if (bl && !strncmp(p, code, bl) && p[bl] == '*') {
			extra = xstrdup(p + bl + 1);
		} else if (*base) {
			const char *b = base[0] == '*' ? base + 1 : base;

			bl = strcspn(b, "#");
			if (!strncmp(p, b, bl) && p[bl] == '*')
				extra = xstrdup(p + bl + 1);
		}
		if (!extra)
			return 0;
		extra[strcspn(extra, "#")] = '\0';
	}
	for (tok = strtok_r(extra, "*", &save); tok; tok = strtok_r(NULL, "*", &save))
		if (json_array_size(pending) < 8)
			json_array_append_new(pending, json_string(tok));
	free(extra);
	return 0;
}

static void user_looked_up(const struct db_result *r, void *arg)
{
	struct ussd_hop *h = arg;

	if (r->status != DB_OK) {
		if (r->status == DB_BUSY)
			hop_overloaded(h, r->error);
		else
			hop_unavailable(h, r->error);
		return;
	}
	if (PQntuples(r->res) == 1) {
		enum menu_lang l = LANG_EN;

		h->dial.have = true;
		h->dial.no_pin = !strcmp(PQgetvalue(r->res, 0, USER_NO_PIN), "t");
		h->dial.locked = !strcmp(PQgetvalue(r->res, 0, USER_LOCKED), "t");
		snprintf(h->dial.until, sizeof(h->dial.until), "%s", PQgetvalue(r->res, 0, USER_UNTIL));
		menu_lang_parse(PQgetvalue(r->res, 0, USER_LANG), &l);
		hop_set_lang(h, l);
		hop_set_var(h, "name", PQgetvalue(r->res, 0, USER_NAME));
		json_object_set_new(h->st, "uid", json_string(PQgetvalue(r->res, 0, USER_ID)));
		enter_screen(h, "start_login", false);
	} else {
		enter_screen(h, "start_new", false);
	}
}

static void new_session(struct ussd_hop *h)
{
	json_t *pending = json_array();
	const char *params[2] = { h->phone, h->app->cfg->ussd_timezone };

	if (prefill(h, pending) < 0) {
		json_decref(pending);
		reply_and_unlock(h, "expired");
		return;
	}
	json_decref(h->st);
	h->st = json_pack("{s:i, s:s, s:s, s:b, s:s, s:[], s:{}, s:o, s:i}", "v", 1, "agg", h->ad->name, "lang", "en",
			  "auth", 0, "uid", "", "stack", "vars", "pending", pending, "t0",
			  (json_int_t)(time(NULL)));
	remember_path(h);
	/* all the log-in screen needs too (hop_dial_user): one statement */
	db_run_by(h->app->db, hop_deadline_ms(h), &user_by_phone, params, user_looked_up, h);
}

/* How long a hop waits for a session someone else holds, and how often it
 * asks again.  A trailing save takes one Redis round trip; a resent copy
 * of a menu hop a few ms.  A third of the hop's deadline leaves the rest
 * for the hop itself. */
#define LOCK_RETRY_MS 20
static uint64_t lock_wait_us(const struct ussd_hop *h)
{
	uint64_t third = (uint64_t)h->app->cfg->ussd_hop_timeout_ms * 1000 / 3;

	return third < 500000 ? third : 500000;
}

static void loaded(const struct redis_result *r, void *arg);

/* Takes the session's lock and loads it, in one EVAL.  The lock outlives
 * the hop's own deadline, so a copy of the hop that arrives while this one
 * still runs cannot start a second action. */
static void lock_and_load(struct ussd_hop *h)
{
	char lockms[16];
	const char *argv[7];

	snprintf(lockms, sizeof(lockms), "%d", h->app->cfg->ussd_hop_timeout_ms + 2000);
	argv[0] = "EVAL";
	argv[1] = LUA_BEGIN;
	argv[2] = "2";
	argv[3] = h->key;
	argv[4] = h->lock;
	argv[5] = h->token;
	argv[6] = lockms;
	redis_cmd(h->app->redis, loaded, h, 7, argv, NULL);
}

static void relock(evutil_socket_t fd, short what, void *arg)
{
	struct ussd_hop *h = arg;

	(void)fd;
	(void)what;
	xassert(!h->replied);
	lock_and_load(h);
}

static void loaded(const struct redis_result *r, void *arg)
{
	struct ussd_hop *h = arg;
	redisReply *rep = r->reply;
	json_error_t jerr;
	char digest[65];
	const char *state;
	char *in;

	if (r->status != REDIS_S_OK || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
		log_msg(LOG_WARN, http_ctx_reqid(h->ctx), "ussd: session load failed: %s",
			r->error ? r->error : "unexpected reply");
		reply(h, true, text_for(h, "busy"), OUT_BUSY);
		hop_free(h);
		return;
	}
	state = rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->str : NULL;
	if (rep->element[0]->integer != 1) {
		/* Someone holds the session: a copy of this hop still running
		 * (an aggregator's resend), or the trailing save of the hop
		 * before it, on this daemon or another.  Either lets go within
		 * moments, and then this hop is served (or, for a copy, replays
		 * the reply): wait a little, well inside the hop's deadline,
		 * before "busy". */
		if (util_now_us() - h->t0 < lock_wait_us(h)) {
			struct timeval tv = { 0, LOCK_RETRY_MS * 1000 };

			if (!h->relock)
				h->relock = evtimer_new(h->app->base, relock, h);
			evtimer_add(h->relock, &tv);
			return;
		}
		/* still held: a copy that runs long (a PIN check under load) */
		reply(h, true, text_for(h, "busy"), OUT_BUSY);
		hop_free(h);
		return;
	}
	if (h->req.kind == USSD_RELEASE) {	/* the aggregator closed it */
		reply(h, true, "", OUT_END);
		save(h, true);
		return;
	}
	if (!state) {
		if (h->req.kind == USSD_CONTINUE && !h->req.cumulative) {
			reply_and_unlock(h, "expired");
			return;
		}
		new_session(h);
		return;
	}
	json_decref(h->st);
	h->st = json_loads(state, 0, &jerr);
	if (!json_is_object(h->st) || !menu_screen(h->menus, st_str(h->st, "screen"))) {
		json_decref(h->st);
		h->st = json_object();
		reply_and_unlock(h, "expired");
		return;
	}
	auth_digest(h->app->auth, "hop", h->sid, h->req.hop_key ? h->req.hop_key : "", digest);
	if (st_str(h->st, "hk") && !strcmp(st_str(h->st, "hk"), digest)) {
		/* a resent hop: the same reply, nothing run again */
		reply(h, json_is_true(json_object_get(h->st, "end")), st_str(h->st, "reply"), OUT_REPLAY);
		unlock_and_free(h);
		return;
	}
	if (json_is_true(json_object_get(h->st, "end"))) {
		reply_and_unlock(h, "expired");
		return;
	}
	h->sc = menu_screen(h->menus, st_str(h->st, "screen"));
	if (h->req.kind == USSD_BEGIN) {	/* a new dial reusing an id: start over */
		json_decref(h->st);
		h->st = NULL;
		h->sc = NULL;
		new_session(h);
		return;
	}
	in = newest_input(h);
	remember_path(h);
	step(h, in);
	free(in);
}

void ussd_serve(struct app *app, const struct ussd_adapter *ad, struct http_ctx *ctx, struct ussd_req *req)
{
	struct ussd_hop *h = xcalloc(1, sizeof(*h));

	h->t0 = util_now_us();
	h->app = app;
	h->ad = ad;
	h->ctx = ctx;
	http_ctx_hold(ctx);
	h->req = *req;
	memset(req, 0, sizeof(*req));
	h->menus = menu_set_ref(app->menus);
	h->st = json_object();
	buf_init(&h->screen, 4096);
	snprintf(h->sid, sizeof(h->sid), "%s:%s", ad->name, h->req.session_id);
	snprintf(h->key, sizeof(h->key), "ussd:s:%s", h->sid);
	snprintf(h->lock, sizeof(h->lock), "ussd:l:%s", h->sid);
	util_random_hex(h->token, 16);
	h->timer = evtimer_new(app->base, on_hop_timeout, h);
	{
		struct timeval tv = { app->cfg->ussd_hop_timeout_ms / 1000, (app->cfg->ussd_hop_timeout_ms % 1000) * 1000 };

		evtimer_add(h->timer, &tv);
	}
	if (phone_normalise(h->req.phone, app->cfg->ussd_country_code, h->phone, sizeof(h->phone)) < 0) {
		log_msg(LOG_WARN, http_ctx_reqid(ctx), "ussd: %s: bad phone number", ad->name);
		reply(h, true, text_for(h, "err_phone_number"), OUT_BAD_PHONE);
		hop_free(h);
		return;
	}
	lock_and_load(h);
}

/* ---- menus ------------------------------------------------------------ */

struct menu_set *ussd_menus_load(const struct config *cfg, char *err, size_t errlen)
{
	struct menu_opts o = {
		.screen_max = cfg->ussd_screen_max,
		.error_reserve = 30,
		.known = ussd_action_known,
		.required_screens = required_screens,
		.required_strings = required_strings,
		.sms_needed = notify_templates,	/* the SMS templates the code writes */
	};

	return menu_load_dir(cfg->ussd_menus_dir, &o, err, errlen);
}

void ussd_metrics(struct buf *out)
{
	buf_puts(out, "# HELP chamad_ussd_hops_total USSD hops answered, by outcome.\n"
		      "# TYPE chamad_ussd_hops_total counter\n");
	for (int i = 0; i < OUT_COUNT; i++)
		buf_printf(out, "chamad_ussd_hops_total{outcome=\"%s\"} %llu\n", outcome_names[i],
			   (unsigned long long)outcomes[i]);
	buf_printf(out, "# HELP chamad_ussd_saves_lost_total Sessions dropped because their save failed after the reply.\n"
			"# TYPE chamad_ussd_saves_lost_total counter\nchamad_ussd_saves_lost_total %llu\n",
		   (unsigned long long)saves_lost);
}
