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
/* A list screen: sql takes $1 user, $2 the picked chama, $3 the time zone
 * and returns (value, label) rows, which become the screen's items. */
void act_list(struct ussd_hop *hop, const char *name, const char *sql);
/* The same for officials only, checked in the same statement (else the
 * session ends with "end_not_allowed"). */
void act_list_for_officials(struct ussd_hop *hop, const char *name, const char *sql);
void act_redis(struct ussd_hop *hop, int argc, const char **argv, act_redis_fn fn);

/* Ends the hop as unavailable when r is a server error; returns true then. */
bool act_db_failed(struct ussd_hop *hop, const struct db_result *r);

/* True when r holds exactly one row; otherwise ends the hop (unavailable,
 * or hop_fail(missing) when there is no such row). */
bool act_one_row(struct ussd_hop *hop, const struct db_result *r, const char *missing);

/* The chama the user picked, or NULL after hop_fail("err_no_chama"). */
const char *act_chama(struct ussd_hop *hop);

/* Runs fn if the user is an active official (chairperson, treasurer,
 * secretary) of the picked chama, checked in the database; else ends the
 * session with "end_not_allowed". */
void act_require_official(struct ussd_hop *hop, void (*fn)(struct ussd_hop *hop));

/* Each module's table of actions (NULL-terminated), for main.c to register. */
extern const struct ussd_action act_auth_actions[];
extern const struct ussd_action act_chama_actions[];
extern const struct ussd_action act_money_actions[];

#endif
