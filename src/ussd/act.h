/*
 * act: helpers shared by the USSD action handlers (act_*.c).
 *
 * act_query runs one statement for a hop and calls fn only when PostgreSQL
 * answered (DB_OK or DB_ERROR: fn decides what a constraint error means);
 * when it could not (down, busy, timeout, shutting down) the hop ends with
 * the polite "Service busy" and fn is not called.  act_redis is the same
 * for one Redis command.
 */
#ifndef CHAMAD_ACT_H
#define CHAMAD_ACT_H

#include "net/db.h"
#include "net/redis.h"
#include "ussd/ussd_hop.h"

typedef void (*act_db_fn)(struct ussd_hop *hop, const struct db_result *r);
typedef void (*act_redis_fn)(struct ussd_hop *hop, const redisReply *reply);

void act_query(struct ussd_hop *hop, const char *sql, int nparams, const char *const *params, act_db_fn fn);
/* act_query as a statement prepared once per connection (db_query_prepared:
 * one name, one SQL text). */
void act_query_prepared(struct ussd_hop *hop, const char *name, const char *sql, int nparams,
			const char *const *params, act_db_fn fn);
/* act_query_prepared for a named statement from src/dom/: the way every
 * action runs SQL once the layer check holds. */
void act_run(struct ussd_hop *hop, const struct db_stmt *s, const char *const *params, act_db_fn fn);
/* A list screen: s (from src/dom/) takes $1 user, $2 the picked chama, $3
 * the time zone and returns (value, label) rows, the screen's items. */
void act_list_run(struct ussd_hop *hop, const struct db_stmt *s);
/* A list for the holders of one policy action: s is a POLICY_LIST
 * statement (dom/policy.h), the check and the list in one statement.  A
 * role the session's policy or the statement refuses gets err_not_official
 * (the screen before, with its words). */
void act_list_for(struct ussd_hop *hop, const char *action, const struct db_stmt *s);
void act_redis(struct ussd_hop *hop, int argc, const char **argv, act_redis_fn fn);

/* Ends the hop as unavailable when r is a server error; returns true then. */
bool act_db_failed(struct ussd_hop *hop, const struct db_result *r);

/* True when r holds exactly one row; otherwise ends the hop (unavailable,
 * or hop_fail(missing) when there is no such row). */
bool act_one_row(struct ussd_hop *hop, const struct db_result *r, const char *missing);

/* The chama the user picked, or NULL after hop_fail("err_no_chama"). */
const char *act_chama(struct ussd_hop *hop);

/* The C check: whether the actions the session keeps with the member's role
 * (dom/policy.h) include action; if not, the hop is refused with
 * err_not_official (no round trip) and this returns false.  The statement
 * that does the action checks the policy again, in the database. */
bool act_may(struct ussd_hop *hop, const char *action);

/* The audit context of a write statement from src/dom/ (dom/member.h):
 * MSISDN, request id, user, channel. */
void act_audit_params(const struct ussd_hop *hop, const char *out[4]);

/* Reads the outcome row of a dom statement (first column: a menu string
 * key).  ok_*: returns the key, and the caller reads the other columns and
 * ends the hop (the END screen's text is the confirmation, so the key's
 * words are for the other channels).  err_*: the screen again with the
 * key's words (hop_fail); end_*: the session ends with them (hop_end);
 * a failed statement: unavailable.  These return NULL, the hop ended. */
const char *act_outcome(struct ussd_hop *hop, const struct db_result *r);

struct pin_result;

/* Checks the PIN typed on this hop (hop_secret) on the shared path (pin.c:
 * lock-out and its SMS alert included); refused before any work (no
 * lookup, no hashing) when the PIN workers cannot answer within the hop,
 * and "expired" when nothing was typed.  fn gets the result, once. */
void act_pin_check(struct ussd_hop *hop, void (*fn)(const struct pin_result *r, void *hop));

/* A PIN result's refusals, answered on the hop: wrong (the screen again
 * with the tries left), locked (END, with until), unavailable or busy, no
 * user or no PIN (expired).  True for PIN_OK: the caller goes on. */
bool act_pin_ok(struct ussd_hop *hop, const struct pin_result *r);

/* Each module's table of actions (NULL-terminated), one line each in
 * act_register_all (actions.c). */
extern const struct ussd_action act_auth_actions[];
extern const struct ussd_action act_chama_actions[];
extern const struct ussd_action act_money_actions[];
extern const struct ussd_action act_approve_actions[];
extern const struct ussd_action act_payout_actions[];
extern const struct ussd_action act_loan_off_actions[];
extern const struct ussd_action act_check_actions[];
extern const struct ussd_action act_loan_view_actions[];
extern const struct ussd_action act_loan_actions[];
extern const struct ussd_action act_loan_guar_actions[];
extern const struct ussd_action act_loan_repay_actions[];

/* Registers every module's table (ussd_actions_register): main.c does it
 * before the menus load, and so do the tests that load the real menus. */
void act_register_all(void);

#endif
