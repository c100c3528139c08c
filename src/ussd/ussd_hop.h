/*
 * ussd_hop: what an action handler sees of the hop it serves.
 *
 * Handlers are named in the menus and registered by their module's table (ussd_actions_register)
 * (actions.c).  The engine calls a handler when a screen with "enter" is
 * shown, or when a screen with "action" gets valid input (or a menu option
 * or list item is chosen).  The handler starts its queries and, from their
 * callbacks, ends with exactly one of hop_done, hop_goto, hop_fail,
 * hop_end or hop_unavailable.  Everything a handler passes in is copied.
 *
 * A handler never trusts the menu for authorisation: an official's action
 * checks the role in the database itself.
 */
#ifndef CHAMAD_USSD_HOP_H
#define CHAMAD_USSD_HOP_H

#include <stdbool.h>
#include <stdint.h>

#include "base/menu.h"
#include "dom/audit.h"

struct app;
struct ussd_hop;

typedef void (*ussd_action_fn)(struct ussd_hop *hop);

/* What an action does besides showing a screen (ussd_action.flags). */
enum {
	/* changes nothing anywhere (reads, sets session variables): the
	 * hop's reply need not wait for the session to be saved */
	ACT_NO_EFFECT = 1,
	/* and, as a screen's "enter", what it shows depends only on the
	 * variables and list items it sets: Back to that screen shows it
	 * again from the session, without running the action */
	ACT_SHOWN_AGAIN = 2,
};

struct ussd_action {
	const char *name;
	ussd_action_fn fn;
	unsigned flags;
};

/* Adds a module's NULL-terminated table of actions (kept by reference);
 * registering one twice is harmless.  Before the menus load. */
void ussd_actions_register(const struct ussd_action *table);
bool ussd_action_known(const char *name);

struct app *hop_app(struct ussd_hop *hop);
const char *hop_phone(const struct ussd_hop *hop);	/* E.164 */
const char *hop_session_id(const struct ussd_hop *hop);	/* aggregator:session id, for audit */
/* The monotonic millisecond (util_now_ms) by which work started for this
 * hop must be done: the hop's start plus [ussd] hop_timeout_ms, less a
 * margin for the rest of the hop.  Pass it to the queues (db, auth). */
uint64_t hop_deadline_ms(const struct ussd_hop *hop);
enum menu_lang hop_lang(const struct ussd_hop *hop);
void hop_set_lang(struct ussd_hop *hop, enum menu_lang lang);
/* The logged-in user's id as a decimal string, or NULL. */
const char *hop_user(const struct ussd_hop *hop);
/* Marks the session logged in as user_id (decimal) and clears the back stack. */
void hop_login(struct ussd_hop *hop, const char *user_id);
/* Data one handler of this hop already holds for a later one (the PIN
 * check's chama list for the screen after log-in), so that screen needs no
 * statement of its own.  Kept for this hop only, never in the session.
 * hop_prefetched returns a borrowed string or NULL. */
void hop_prefetch(struct ussd_hop *hop, const char *key, const char *value);
const char *hop_prefetched(const struct ussd_hop *hop, const char *key);
/* On the first hop of a session the engine has read the caller's user
 * row already: then this returns true with whether the user has no PIN,
 * is locked out, and until when (HH24:MI, borrowed), so that the log-in
 * screen needs no second statement. */
bool hop_dial_user(const struct ussd_hop *hop, bool *no_pin, bool *locked, const char **until);
/* The value just typed on a "secret" input screen (PIN, code), else NULL. */
const char *hop_secret(const struct ussd_hop *hop);

/* Session variables: strings kept for the rest of the session. */
const char *hop_var(const struct ussd_hop *hop, const char *name);
void hop_set_var(struct ussd_hop *hop, const char *name, const char *value);
void hop_set_varf(struct ussd_hop *hop, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void hop_del_var(struct ussd_hop *hop, const char *name);
/* List screens: adds one item (label shown, value stored in the screen's var). */
void hop_add_item(struct ussd_hop *hop, const char *label, const char *value);

/* The string `key` in the session's language with its {vars} filled (for
 * SMS bodies).  Returns a new string. */
char *hop_text(struct ussd_hop *hop, const char *key);
char *hop_text_lang(struct ussd_hop *hop, const char *key, enum menu_lang lang);

/* Continue: to the screen's "next" (submit actions) or show the screen
 * (enter actions).  notice is a string key shown as a first line, or NULL. */
void hop_done(struct ussd_hop *hop, const char *notice);
/* Continue on another screen instead (a redirect for enter actions). */
void hop_goto(struct ussd_hop *hop, const char *screen, const char *notice);
/* Refuse: show the current screen again (for enter actions, the one
 * before it) with the string `key` as a first line. */
void hop_fail(struct ussd_hop *hop, const char *key);
/* End the session with the string `key` (its {vars} filled). */
void hop_end(struct ussd_hop *hop, const char *key);
/* PostgreSQL, Redis or the PIN workers cannot serve now: the polite END. */
void hop_unavailable(struct ussd_hop *hop, const char *why);
/* The same when the cause is load (a queue cannot answer in time): the END
 * is held for [ussd] busy_hold_ms (within the hop's deadline), so a phone
 * or gateway that redials at once does not turn refusals into a storm that
 * takes the cores from the work being served. */
void hop_overloaded(struct ussd_hop *hop, const char *why);

/* The audit context of a hop's statements (dom/audit.h, AUDIT_CTE_USSD):
 * MSISDN, request id (the session) and actor (the logged-in user, or "")
 * as the statement's first three parameters. */
void hop_audit_params(const struct ussd_hop *hop, const char *out[3]);

/* The old name of AUDIT_CTE_USSD, for the statements not yet moved into
 * src/dom/ (they fail the layer check until they are); remove with the last. */
#define HOP_AUDIT_CTE AUDIT_CTE_USSD

#endif
