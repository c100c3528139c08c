/*
 * pin: see pin.h.
 */
#include "dom/pin.h"
#include "dom/auth.h"
#include "base/config.h"
#include "net/db.h"
#include "dom/loginlog.h"
#include "base/util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* The audit context of every update here: $1 channel, $2 MSISDN,
 * $3 request id, $4 the user (the actor of their own log-in). */
#define PIN_AUDIT_CTE                                                                                       \
	"WITH audit_ctx AS MATERIALIZED (SELECT set_config('chamad.channel', $1, true) AS a1, "             \
	"set_config('chamad.msisdn', $2, true) AS a2, set_config('chamad.request_id', $3, true) AS a3, "    \
	"set_config('chamad.actor_user_id', $4, true) AS a4) "

struct pin_job {
	struct pin_env env;
	char *phone, *pin, *channel, *request_id;
	char user_id[24], lang[4], until[8];
	bool overloaded;	/* PIN_UNAVAILABLE for want of capacity */
	char *chamas;
	char *full_name;
	bool dirty;		/* a failed-attempt count or a lock to clear */
	uint64_t deadline_ms;
	pin_cb cb;
	void *arg;
};

static void job_finish(struct pin_job *j, enum pin_outcome o, int tries_left, const char *error)
{
	struct pin_result r = { o, j->user_id, j->full_name ? j->full_name : "", j->lang, tries_left, j->until,
				error, j->overloaded, j->chamas };

	/* the one call of the callback: every path of a check ends here,
	 * and the job goes with it */
	j->cb(&r, j->arg);
	sodium_memzero(j->pin, strlen(j->pin));
	free(j->phone);
	free(j->pin);
	free(j->channel);
	free(j->request_id);
	free(j->full_name);
	free(j->chamas);
	free(j);
}

static void logged_in(struct pin_job *j)
{
	if (j->env.logins)
		loginlog_add(j->env.logins, j->user_id, j->channel, j->phone, j->request_id);
	job_finish(j, PIN_OK, 0, NULL);
}

static void success_recorded(const struct db_result *r, void *arg)
{
	struct pin_job *j = arg;

	if (r->status != DB_OK)
		job_finish(j, PIN_UNAVAILABLE, 0, r->error);
	else
		logged_in(j);
}

static void miss_recorded(const struct db_result *r, void *arg)
{
	struct pin_job *j = arg;

	if (r->status != DB_OK || PQntuples(r->res) != 1) {
		job_finish(j, PIN_UNAVAILABLE, 0, r->error ? r->error : "user vanished");
		return;
	}
	snprintf(j->until, sizeof(j->until), "%s", PQgetvalue(r->res, 0, 2));
	if (!strcmp(PQgetvalue(r->res, 0, 1), "t"))
		job_finish(j, PIN_LOCKED, 0, NULL);
	else
		job_finish(j, PIN_WRONG, atoi(PQgetvalue(r->res, 0, 0)), NULL);
}

static void verified(void *arg, enum auth_status st, char *rehash)
{
	struct pin_job *j = arg;
	const struct config *cfg = j->env.cfg;
	const char *p[7] = { j->channel, j->phone, j->request_id, j->user_id };
	char max[16], mins[16];

	if (st == AUTH_OK && !rehash && !j->dirty) {
		/* nothing on the row changes: no write, no WAL flush */
		logged_in(j);
	} else if (st == AUTH_OK) {
		/* the WHERE re-checks, so a row that is already clean is not
		 * rewritten (and audited) again */
		p[4] = rehash;
		db_query_by(j->env.db, j->deadline_ms,
			    PIN_AUDIT_CTE "UPDATE users SET failed_pin_attempts = 0, locked_until = NULL, "
			    "pin_hash = coalesce($5, pin_hash) FROM audit_ctx WHERE id = $4::bigint "
			    "AND (failed_pin_attempts <> 0 OR locked_until IS NOT NULL OR $5::text IS NOT NULL)",
			    5, p, success_recorded, j);
	} else if (st == AUTH_MISMATCH) {
		snprintf(max, sizeof(max), "%d", cfg->auth_pin_max_attempts);
		snprintf(mins, sizeof(mins), "%d", cfg->auth_pin_lock_minutes);
		p[4] = max;
		p[5] = mins;
		p[6] = cfg->ussd_timezone;
		/* count the miss; the one that reaches the limit locks the account
		 * and queues the alert, in the same statement (s is read at the
		 * end so that it runs: a SELECT in WITH runs only as far as read) */
		db_query(j->env.db,
			 PIN_AUDIT_CTE ", x AS (SELECT CASE WHEN locked_until IS NOT NULL AND locked_until <= now() "
			 "THEN 1 ELSE failed_pin_attempts + 1 END AS n FROM users WHERE id = $4::bigint), "
			 "u AS (UPDATE users SET failed_pin_attempts = x.n, locked_until = CASE WHEN x.n >= $5::int "
			 "THEN now() + make_interval(mins => $6::int) END FROM x, audit_ctx WHERE users.id = $4::bigint "
			 "RETURNING x.n, locked_until), "
			 "s AS (SELECT notify($4::bigint, 'pin_locked', 'sms_pin_locked', "
			 "jsonb_build_object('minutes', $6::int), 1, "
			 "'pin_locked:' || $4 || ':' || extract(epoch FROM locked_until)::bigint) FROM u "
			 "WHERE locked_until IS NOT NULL) "
			 "SELECT greatest($5::int - n, 0), locked_until IS NOT NULL, "
			 "coalesce(to_char(locked_until AT TIME ZONE $7, 'HH24:MI'), ''), (SELECT count(*) FROM s) FROM u",
			 7, p, miss_recorded, j);
	} else {
		j->overloaded = st == AUTH_BUSY;
		job_finish(j, PIN_UNAVAILABLE, 0, st == AUTH_BUSY ? "PIN workers busy" : "PIN check failed");
	}
	free(rehash);
}

static void looked_up(const struct db_result *r, void *arg)
{
	struct pin_job *j = arg;

	if (r->status != DB_OK) {
		j->overloaded = r->status == DB_BUSY;
		job_finish(j, PIN_UNAVAILABLE, 0, r->error);
		return;
	}
	if (PQntuples(r->res) != 1) {
		job_finish(j, PIN_NO_USER, 0, NULL);
		return;
	}
	snprintf(j->user_id, sizeof(j->user_id), "%s", PQgetvalue(r->res, 0, 0));
	snprintf(j->lang, sizeof(j->lang), "%s", PQgetvalue(r->res, 0, 5));
	snprintf(j->until, sizeof(j->until), "%s", PQgetvalue(r->res, 0, 3));
	j->full_name = xstrdup(PQgetvalue(r->res, 0, 4));
	j->dirty = !strcmp(PQgetvalue(r->res, 0, 6), "t");
	j->chamas = xstrdup(PQgetvalue(r->res, 0, 7));
	if (!strcmp(PQgetvalue(r->res, 0, 2), "t"))
		job_finish(j, PIN_LOCKED, 0, NULL);
	else if (PQgetisnull(r->res, 0, 1))
		job_finish(j, PIN_NO_PIN, 0, NULL);
	else
		auth_pin_verify(j->env.auth, j->pin, PQgetvalue(r->res, 0, 1), j->deadline_ms, verified, j);
}

void pin_check(const struct pin_env *env, const struct pin_check_args *a, pin_cb cb, void *arg)
{
	struct pin_job *j = xcalloc(1, sizeof(*j));
	const char *p[2] = { a->phone, env->cfg->ussd_timezone };

	j->env = *env;
	j->phone = xstrdup(a->phone);
	j->pin = xstrdup(a->pin);
	j->channel = xstrdup(a->channel);
	j->request_id = xstrdup(a->request_id);
	snprintf(j->lang, sizeof(j->lang), "en");
	j->deadline_ms = a->deadline_ms;
	j->cb = cb;
	j->arg = arg;
	db_query_prepared_by(env->db, a->deadline_ms, "pin_user",
			     "SELECT id, pin_hash, coalesce(locked_until > now(), false), "
			     "coalesce(to_char(locked_until AT TIME ZONE $2, 'HH24:MI'), ''), full_name, preferred_language, "
			     "failed_pin_attempts <> 0 OR locked_until IS NOT NULL, "
			     /* what the first screen after a log-in shows, in the same statement */
			     "(SELECT coalesce(json_agg(json_build_array(x.chama_id::text, x.name, x.role, "
			     "policy_allowed(x.role)) ORDER BY lower(x.name), "
			     "x.chama_id), '[]') FROM (SELECT m.chama_id, c.name, m.role FROM memberships m JOIN chamas c "
			     "ON c.id = m.chama_id AND c.deleted_at IS NULL WHERE m.user_id = users.id AND m.status = 'active' "
			     "ORDER BY lower(c.name), c.id LIMIT 200) x) "
			     "FROM users WHERE phone = $1 AND deleted_at IS NULL",
			     2, p, looked_up, j);
}
