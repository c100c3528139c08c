/*
 * status: /healthz asks PostgreSQL (a round trip through the pool) and Redis
 * (PING) at the same time and answers when both have answered, each within
 * its own client's timeout, so a dead dependency turns the answer into 503
 * in about a second rather than hanging.  /metrics renders counters kept by
 * the modules themselves.
 */
#include "ops/status.h"
#include "app.h"
#include "net/db.h"
#include "net/httpd.h"
#include "base/log.h"
#include "net/redis.h"
#include "dom/auth.h"
#include "ussd/ussd.h"
#include "sms/sms.h"
#include "mpesa/mpesa.h"
#include "base/workpool.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

struct health {
	struct http_ctx *ctx;
	int pending;
	bool pg_ok, redis_ok;
	char pg_err[256], redis_err[256];
};

static json_t *part(bool ok, const char *err)
{
	return ok ? json_pack("{s:s}", "status", "up") : json_pack("{s:s, s:s}", "status", "down", "error", err);
}

static void health_step(struct health *hs)
{
	json_t *body, *down;
	char *text;
	bool ok = hs->pg_ok && hs->redis_ok;

	if (--hs->pending > 0)
		return;
	down = json_array();
	if (!hs->pg_ok)
		json_array_append_new(down, json_string("postgres"));
	if (!hs->redis_ok)
		json_array_append_new(down, json_string("redis"));
	body = json_pack("{s:s, s:o, s:o, s:o}", "status", ok ? "ok" : "unavailable", "postgres",
			 part(hs->pg_ok, hs->pg_err), "redis", part(hs->redis_ok, hs->redis_err), "down", down);
	text = json_dumps(body, JSON_COMPACT);
	if (!ok)
		log_msg(LOG_WARN, http_ctx_reqid(hs->ctx), "healthz: down:%s%s", hs->pg_ok ? "" : " postgres",
			hs->redis_ok ? "" : " redis");
	http_reply(hs->ctx, ok ? 200 : 503, "application/json", text, strlen(text));
	free(text);
	json_decref(body);
	http_ctx_release(hs->ctx);
	free(hs);
}

static void health_db_cb(const struct db_result *r, void *arg)
{
	struct health *hs = arg;

	hs->pg_ok = r->status == DB_OK;
	if (!hs->pg_ok) {
		snprintf(hs->pg_err, sizeof(hs->pg_err), "%s: %s", db_status_name(r->status),
			 r->error ? r->error : "");
		util_trim(hs->pg_err);
	}
	health_step(hs);
}

static void health_redis_cb(const struct redis_result *r, void *arg)
{
	struct health *hs = arg;

	hs->redis_ok = r->status == REDIS_S_OK && r->reply && r->reply->type == REDIS_REPLY_STATUS &&
		       !strcmp(r->reply->str, "PONG");
	if (!hs->redis_ok)
		snprintf(hs->redis_err, sizeof(hs->redis_err), "%s: %s", redis_status_name(r->status),
			 r->error ? r->error : "unexpected reply");
	health_step(hs);
}

static void status_healthz(struct http_ctx *ctx)
{
	struct app *app = http_ctx_app(ctx);
	struct health *hs = xcalloc(1, sizeof(*hs));
	const char *ping[1] = { "PING" };

	hs->ctx = ctx;
	hs->pending = 2;
	http_ctx_hold(ctx);
	db_ping(app->db, health_db_cb, hs);
	redis_cmd(app->redis, health_redis_cb, hs, 1, ping, NULL);
}

static void status_metrics(struct http_ctx *ctx)
{
	struct app *app = http_ctx_app(ctx);
	struct db_stats ds;
	struct redis_stats rs;
	struct buf b;

	db_pool_stats(app->db, &ds);
	redis_get_stats(app->redis, &rs);
	buf_init(&b, 1 << 20);
	httpd_metrics(app->httpd, &b);
	buf_printf(&b,
		   "# HELP chamad_db_pool_size Configured PostgreSQL connections.\n"
		   "# TYPE chamad_db_pool_size gauge\nchamad_db_pool_size %d\n"
		   "# HELP chamad_db_pool_connected PostgreSQL connections up.\n"
		   "# TYPE chamad_db_pool_connected gauge\nchamad_db_pool_connected %d\n"
		   "# HELP chamad_db_pool_busy Connections running a query or holding a transaction.\n"
		   "# TYPE chamad_db_pool_busy gauge\nchamad_db_pool_busy %d\n"
		   "# HELP chamad_db_pool_queued Queries waiting for a connection.\n"
		   "# TYPE chamad_db_pool_queued gauge\nchamad_db_pool_queued %d\n"
		   "# HELP chamad_db_reconnects_total Connection attempts after a slot's first.\n"
		   "# TYPE chamad_db_reconnects_total counter\nchamad_db_reconnects_total %llu\n"
		   "# HELP chamad_db_queries_total Queries completed (any outcome).\n"
		   "# TYPE chamad_db_queries_total counter\nchamad_db_queries_total %llu\n"
		   "# HELP chamad_db_timeouts_total Queries that hit the client-side timeout.\n"
		   "# TYPE chamad_db_timeouts_total counter\nchamad_db_timeouts_total %llu\n",
		   ds.size, ds.connected, ds.busy, ds.queued, (unsigned long long)ds.reconnects,
		   (unsigned long long)ds.queries, (unsigned long long)ds.timeouts);
	db_pool_stats(app->dbbg, &ds);
	buf_printf(&b,
		   "# HELP chamad_dbbg_pool_size PostgreSQL connections for background work.\n"
		   "# TYPE chamad_dbbg_pool_size gauge\nchamad_dbbg_pool_size %d\n"
		   "# HELP chamad_dbbg_pool_connected Background connections up.\n"
		   "# TYPE chamad_dbbg_pool_connected gauge\nchamad_dbbg_pool_connected %d\n"
		   "# HELP chamad_dbbg_pool_busy Background connections running a statement.\n"
		   "# TYPE chamad_dbbg_pool_busy gauge\nchamad_dbbg_pool_busy %d\n"
		   "# HELP chamad_dbbg_pool_queued Background statements waiting for a connection.\n"
		   "# TYPE chamad_dbbg_pool_queued gauge\nchamad_dbbg_pool_queued %d\n"
		   "# HELP chamad_dbbg_retrying Durable statements waiting to be sent again.\n"
		   "# TYPE chamad_dbbg_retrying gauge\nchamad_dbbg_retrying %d\n"
		   "# HELP chamad_dbbg_retries_total Durable statements sent again after a transient failure.\n"
		   "# TYPE chamad_dbbg_retries_total counter\nchamad_dbbg_retries_total %llu\n",
		   ds.size, ds.connected, ds.busy, ds.queued, ds.retrying, (unsigned long long)ds.retries);
	buf_printf(&b,
		   "# HELP chamad_redis_up 1 when the Redis connection is up.\n"
		   "# TYPE chamad_redis_up gauge\nchamad_redis_up %d\n"
		   "# HELP chamad_redis_pending Redis commands in flight.\n"
		   "# TYPE chamad_redis_pending gauge\nchamad_redis_pending %d\n"
		   "# HELP chamad_redis_reconnects_total Connection attempts after the first.\n"
		   "# TYPE chamad_redis_reconnects_total counter\nchamad_redis_reconnects_total %llu\n"
		   "# HELP chamad_redis_commands_total Commands sent.\n"
		   "# TYPE chamad_redis_commands_total counter\nchamad_redis_commands_total %llu\n"
		   "# HELP chamad_redis_timeouts_total Commands that hit the timeout.\n"
		   "# TYPE chamad_redis_timeouts_total counter\nchamad_redis_timeouts_total %llu\n"
		   "# HELP chamad_uptime_seconds Seconds since start.\n"
		   "# TYPE chamad_uptime_seconds gauge\nchamad_uptime_seconds %llu\n",
		   rs.up ? 1 : 0, rs.pending, (unsigned long long)rs.reconnects, (unsigned long long)rs.commands,
		   (unsigned long long)rs.timeouts, (unsigned long long)((util_now_ms() - app->started_ms) / 1000));
	ussd_metrics(&b);
	sms_metrics(app->sms, &b);
	mpesa_metrics(app->mpesa, &b);
	if (app->auth) {
		struct workpool_stats ws;

		auth_stats(app->auth, &ws);
		buf_printf(&b,
			   "# HELP chamad_auth_workers Threads hashing and checking PINs.\n"
			   "# TYPE chamad_auth_workers gauge\nchamad_auth_workers %d\n"
			   "# HELP chamad_auth_queued PIN jobs waiting for a worker.\n"
			   "# TYPE chamad_auth_queued gauge\nchamad_auth_queued %d\n"
			   "# HELP chamad_auth_running PIN jobs running.\n"
			   "# TYPE chamad_auth_running gauge\nchamad_auth_running %d\n"
			   "# HELP chamad_auth_jobs_total PIN jobs done.\n"
			   "# TYPE chamad_auth_jobs_total counter\nchamad_auth_jobs_total %llu\n"
			   "# HELP chamad_auth_rejected_total PIN jobs refused because the queue was full.\n"
			   "# TYPE chamad_auth_rejected_total counter\nchamad_auth_rejected_total %llu\n",
			   ws.threads, ws.queued, ws.running, (unsigned long long)ws.done,
			   (unsigned long long)ws.rejected);
	}
	http_reply(ctx, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
	buf_free(&b);
}

/* The operator endpoints, registered by main.c. */
const struct http_route status_routes[] = {
	{ "/healthz", HTTP_GET, status_healthz, "healthz", NULL },
	{ "/metrics", HTTP_GET, status_metrics, "metrics", NULL },
	{ NULL },
};
