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
#include "dom/auth.h"
#include "dom/pin.h"
#include "dom/policy.h"

#include <stdlib.h>
#include <string.h>


struct act_call {
	struct ussd_hop *hop;
	act_db_fn dbfn;
	act_redis_fn rfn;
	void (*then)(struct ussd_hop *hop);
};

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

void act_list_run(struct ussd_hop *hop, const struct db_stmt *s)
{
	const char *p[3];

	if (list_params(hop, p))
		act_run(hop, s, p, items_loaded);
}

/* First column: whether the policy allows the user the list; then the
 * list's (value, label), NULL when the list is empty or not theirs. */
static void policy_items_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) < 1 || strcmp(PQgetvalue(r->res, 0, 0), "t")) {
		hop_fail(hop, "err_not_official");
		return;
	}
	for (int i = 0; i < PQntuples(r->res); i++)
		if (!PQgetisnull(r->res, i, 1))
			hop_add_item(hop, PQgetvalue(r->res, i, 2), PQgetvalue(r->res, i, 1));
	hop_done(hop, NULL);
}

void act_list_for(struct ussd_hop *hop, const char *action, const struct db_stmt *s)
{
	const char *p[3];

	if (act_may(hop, action) && list_params(hop, p))
		act_run(hop, s, p, policy_items_loaded);
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

bool act_may(struct ussd_hop *hop, const char *action)
{
	if (policy_in(hop_var(hop, "allowed"), action))
		return true;
	hop_fail(hop, "err_not_official");
	return false;
}

void act_audit_params(const struct ussd_hop *hop, const char *out[4])
{
	hop_audit_params(hop, out);
	out[3] = "ussd";
}

const char *act_outcome(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key;

	if (act_db_failed(hop, r))
		return NULL;
	if (PQntuples(r->res) != 1 || PQnfields(r->res) < 1 || PQgetisnull(r->res, 0, 0)) {
		/* the schema functions always answer one outcome row: a bug */
		hop_unavailable(hop, "no outcome row");
		return NULL;
	}
	key = PQgetvalue(r->res, 0, 0);
	if (!strncmp(key, "ok_", 3))
		return key;
	if (!strncmp(key, "end_", 4))
		hop_end(hop, key);
	else
		hop_fail(hop, key);
	return NULL;
}

void act_pin_check(struct ussd_hop *hop, void (*fn)(const struct pin_result *r, void *hop))
{
	struct app *app = hop_app(hop);
	struct pin_check_args a = { hop_phone(hop), hop_secret(hop), "ussd", hop_session_id(hop),
				    hop_deadline_ms(hop) };
	struct pin_env env = { app->db, app->auth, app->logins, app->cfg };

	if (!a.pin) {
		hop_end(hop, "expired");
		return;
	}
	if (!auth_admits(app->auth, a.deadline_ms)) {
		hop_overloaded(hop, "PIN workers cannot answer in time");
		return;
	}
	pin_check(&env, &a, fn, hop);
}

bool act_pin_ok(struct ussd_hop *hop, const struct pin_result *r)
{
	switch (r->outcome) {
	case PIN_OK:
		return true;
	case PIN_WRONG:
		hop_set_varf(hop, "tries", "%d", r->tries_left);
		hop_fail(hop, "err_pin_wrong");
		break;
	case PIN_LOCKED:
		hop_set_var(hop, "until", r->until);
		hop_end(hop, "end_locked");
		break;
	case PIN_UNAVAILABLE:
		if (r->overloaded)
			hop_overloaded(hop, r->error ? r->error : "PIN workers busy");
		else
			hop_unavailable(hop, r->error ? r->error : "PIN check unavailable");
		break;
	case PIN_NO_PIN:
	case PIN_NO_USER:
		hop_end(hop, "expired");
		break;
	}
	return false;
}

void act_register_all(void)
{
	ussd_actions_register(act_auth_actions);
	ussd_actions_register(act_chama_actions);
	ussd_actions_register(act_money_actions);
	ussd_actions_register(act_approve_actions);
	ussd_actions_register(act_payout_actions);
	ussd_actions_register(act_check_actions);
	ussd_actions_register(act_loan_view_actions);
	ussd_actions_register(act_loan_actions);
	ussd_actions_register(act_loan_guar_actions);
	ussd_actions_register(act_loan_off_actions);
	ussd_actions_register(act_loan_repay_actions);
}
