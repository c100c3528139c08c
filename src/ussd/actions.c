/*
 * actions: the helpers every USSD action handler shares.  Each act_*.c
 * exports its own table of actions (act_auth_actions, ...), which main.c
 * registers with ussd_actions_register.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>


struct act_call {
	struct ussd_hop *hop;
	act_db_fn dbfn;
	act_redis_fn rfn;
	void (*then)(struct ussd_hop *hop);
};

/* who may see the officials' lists and run their actions */
#define OFFICIAL_ROLES "('chairperson', 'treasurer', 'secretary')"

static void db_done(const struct db_result *r, void *arg)
{
	struct act_call *c = arg;

	if (r->status == DB_OK || r->status == DB_ERROR)
		c->dbfn(c->hop, r);
	else if (r->status == DB_BUSY)
		hop_overloaded(c->hop, r->error ? r->error : db_status_name(r->status));
	else
		hop_unavailable(c->hop, r->error ? r->error : db_status_name(r->status));
	free(c);
}

void act_query(struct ussd_hop *hop, const char *sql, int nparams, const char *const *params, act_db_fn fn)
{
	struct act_call *c = xcalloc(1, sizeof(*c));

	c->hop = hop;
	c->dbfn = fn;
	db_query_by(hop_app(hop)->db, hop_deadline_ms(hop), sql, nparams, params, db_done, c);
}

void act_query_prepared(struct ussd_hop *hop, const char *name, const char *sql, int nparams,
			const char *const *params, act_db_fn fn)
{
	struct act_call *c = xcalloc(1, sizeof(*c));

	c->hop = hop;
	c->dbfn = fn;
	db_query_prepared_by(hop_app(hop)->db, hop_deadline_ms(hop), name, sql, nparams, params, db_done, c);
}

static void items_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	for (int i = 0; i < PQntuples(r->res); i++)
		hop_add_item(hop, PQgetvalue(r->res, i, 1), PQgetvalue(r->res, i, 0));
	hop_done(hop, NULL);
}

/* $1 user, $2 the picked chama, $3 the time zone */
static bool list_params(struct ussd_hop *hop, const char *p[3])
{
	const char *c = act_chama(hop);

	if (!c)
		return false;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	return true;
}

void act_run(struct ussd_hop *hop, const struct db_stmt *s, const char *const *params, act_db_fn fn)
{
	act_query_prepared(hop, s->name, s->sql, s->nparams, params, fn);
}

void act_list(struct ussd_hop *hop, const char *name, const char *sql)
{
	const char *p[3];

	if (list_params(hop, p))
		act_query_prepared(hop, name, sql, 3, p, items_loaded);
}

/* First column: whether the user is an official; then the list's (value,
 * label), NULL when the list is empty or not theirs to see. */
static void official_items_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) < 1 || strcmp(PQgetvalue(r->res, 0, 0), "t")) {
		hop_end(hop, "end_not_allowed");
		return;
	}
	for (int i = 0; i < PQntuples(r->res); i++)
		if (!PQgetisnull(r->res, i, 1))
			hop_add_item(hop, PQgetvalue(r->res, i, 2), PQgetvalue(r->res, i, 1));
	hop_done(hop, NULL);
}

void act_list_for_officials(struct ussd_hop *hop, const char *name, const char *sql)
{
	const char *p[3];
	char *full;

	if (!list_params(hop, p))
		return;
	/* one statement: the role check and the list together */
	full = xasprintf("SELECT ok.allowed, x.* FROM (SELECT EXISTS (SELECT 1 FROM memberships WHERE user_id = $1::bigint "
			 "AND chama_id = $2::bigint AND status = 'active' AND role IN " OFFICIAL_ROLES ") "
			 "AND $3::text IS NOT NULL) ok (allowed) LEFT JOIN LATERAL (%s) x ON ok.allowed",
			 sql);
	act_query_prepared(hop, name, full, 3, p, official_items_loaded);
	free(full);
}

static void redis_done(const struct redis_result *r, void *arg)
{
	struct act_call *c = arg;

	if (r->status == REDIS_S_OK)
		c->rfn(c->hop, r->reply);
	else
		hop_unavailable(c->hop, r->error ? r->error : redis_status_name(r->status));
	free(c);
}

void act_redis(struct ussd_hop *hop, int argc, const char **argv, act_redis_fn fn)
{
	struct act_call *c = xcalloc(1, sizeof(*c));

	c->hop = hop;
	c->rfn = fn;
	redis_cmd(hop_app(hop)->redis, redis_done, c, argc, argv, NULL);
}

bool act_db_failed(struct ussd_hop *hop, const struct db_result *r)
{
	if (r->status == DB_OK)
		return false;
	hop_unavailable(hop, r->error ? r->error : "database error");
	return true;
}

bool act_one_row(struct ussd_hop *hop, const struct db_result *r, const char *missing)
{
	if (act_db_failed(hop, r))
		return false;
	if (PQntuples(r->res) != 1) {
		hop_fail(hop, missing);
		return false;
	}
	return true;
}

const char *act_chama(struct ussd_hop *hop)
{
	const char *c = hop_var(hop, "chama_id");

	if (!c || !*c) {
		hop_fail(hop, "err_no_chama");
		return NULL;
	}
	return c;
}

static void official_checked(const struct db_result *r, void *arg)
{
	struct act_call *c = arg;

	if (r->status == DB_BUSY)
		hop_overloaded(c->hop, r->error ? r->error : db_status_name(r->status));
	else if (r->status != DB_OK)
		hop_unavailable(c->hop, r->error ? r->error : db_status_name(r->status));
	else if (PQntuples(r->res) != 1)
		hop_end(c->hop, "end_not_allowed");
	else
		c->then(c->hop);
	free(c);
}

void act_require_official(struct ussd_hop *hop, void (*fn)(struct ussd_hop *hop))
{
	const char *chama = act_chama(hop);
	const char *params[2];
	struct act_call *c;

	if (!chama)
		return;
	params[0] = hop_user(hop);
	params[1] = chama;
	c = xcalloc(1, sizeof(*c));
	c->hop = hop;
	c->then = fn;
	db_query_prepared_by(hop_app(hop)->db, hop_deadline_ms(hop), "is_official",
			     "SELECT 1 FROM memberships WHERE user_id = $1 AND chama_id = $2 AND status = 'active' "
			     "AND role IN " OFFICIAL_ROLES,
			     2, params, official_checked, c);
}
