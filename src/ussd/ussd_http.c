/*
 * ussd_http: the aggregators' HTTP routes.  ussd_routes[] is the one list
 * of aggregators: each gets POST <adapter path>, guarded by its shared
 * secret and IP allow-list ([ussd] secrets, allow_ips; with neither, only
 * loopback is served), parsed by its adapter and served by the engine.  Africa's Talking's end-of-session
 * notification is recorded here too.
 */
#include "ussd/ussd.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "dom/session_log.h"
#include "net/httpd.h"
#include "base/input.h"
#include "base/log.h"
#include "base/phone.h"
#include "net/redis.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


static void serve(struct http_ctx *ctx)
{
	const struct ussd_adapter *ad = http_ctx_route_data(ctx);
	struct app *app = http_ctx_app(ctx);
	struct ussd_req req;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	char err[128];

	if (!http_guard(ctx, app->cfg->ussd_secrets, app->cfg->ussd_allow_ips, ad->name))
		return;
	if (ad->parse(body, len, &req, err, sizeof(err)) < 0) {
		/* 400: the aggregator ends the session; a hop is never resent */
		ussd_req_clear(&req);
		http_reply_bad_input(ctx, 400, err);
		return;
	}
	ussd_serve(app, ad, ctx, &req);
}

/* ---- Africa's Talking end-of-session notification ---- */

struct at_event {
	char *f[10];
	struct http_ctx *ctx;
	int pending;
	bool db_ok;
};

static const char *const ev_names[10] = { "sessionId", "status", "phoneNumber", "serviceCode", "networkCode",
					  "durationInMillis", "hopsCount", "lastAppResponse", "errorMessage", "cost" };

static void ev_field(const char *key, const char *val, void *arg)
{
	struct at_event *e = arg;

	for (int i = 0; i < 10; i++)
		if (!strcmp(key, ev_names[i]) && !e->f[i])
			e->f[i] = xstrdup(val);
}

static void ev_free(struct at_event *e)
{
	for (int i = 0; i < 10; i++)
		free(e->f[i]);
	if (e->ctx)
		http_ctx_release(e->ctx);
	free(e);
}

static void ev_step(struct at_event *e)
{
	if (--e->pending > 0)
		return;
	if (e->db_ok)
		http_reply(e->ctx, 200, "text/plain", "OK", 2);
	else
		http_reply_error(e->ctx, 503, "could not record the event, please retry");
	ev_free(e);
}

static void ev_recorded(const struct db_result *r, void *arg)
{
	struct at_event *e = arg;

	e->db_ok = r->status == DB_OK;
	if (!e->db_ok)
		log_msg(LOG_WARN, http_ctx_reqid(e->ctx), "ussd event not recorded: %s", r->error);
	ev_step(e);
}

static void ev_dropped(const struct redis_result *r, void *arg)
{
	(void)r;		/* the session expires by itself anyway */
	ev_step(arg);
}

/* What the notification may hold (base/input), before PostgreSQL sees
 * it: the numbers must fit their columns (hops is an int). */
static const struct input_field ev_checks[] = {
	{ "sessionId", INPUT_TEXT, 64, true },
	{ "status", INPUT_TOKEN, 16, true },
	{ "phoneNumber", INPUT_TEXT, 32, false },
	{ "serviceCode", INPUT_TEXT, 64, false },
	{ "networkCode", INPUT_TEXT, 32, false },
	{ "durationInMillis", INPUT_DIGITS, 18, false },
	{ "hopsCount", INPUT_DIGITS, 9, false },
	{ "lastAppResponse", INPUT_TEXT, 1000, false },
	{ "errorMessage", INPUT_TEXT, 1000, false },
	{ "cost", INPUT_TEXT, 32, false },
	{ NULL },
};

static const char *ev_get(const void *src, const char *name, size_t *len)
{
	const struct at_event *e = src;

	for (int i = 0; i < 10; i++) {
		if (!strcmp(name, ev_names[i])) {
			*len = e->f[i] ? strlen(e->f[i]) : 0;
			return e->f[i];
		}
	}
	return NULL;
}

/* An optional number: NULL when absent or empty (the column takes NULL). */
static const char *number_or_null(const char *s)
{
	return s && *s ? s : NULL;
}

static void at_events(struct http_ctx *ctx)
{
	struct app *app = http_ctx_app(ctx);
	struct at_event *e;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	const char *status;
	char phone[20], key[128], lowered[16], why[128];
	const char *params[11];

	if (!http_guard(ctx, app->cfg->ussd_secrets, app->cfg->ussd_allow_ips, ussd_adapter_at.name))
		return;
	e = xcalloc(1, sizeof(*e));
	if (form_parse(body, len, ev_field, e) < 0 || !e->f[0] || !ussd_session_id_ok(e->f[0]) || !e->f[1]) {
		http_reply_error(ctx, 400, "need sessionId and status");
		ev_free(e);
		return;
	}
	/* 400, as for a malformed one: the notification only reports a
	 * session that has ended (PROTOCOLS.md 1.4), nothing waits on it */
	if (input_check(ev_checks, ev_get, e, why, sizeof(why)) < 0) {
		http_reply_bad_input(ctx, 400, why);
		ev_free(e);
		return;
	}
	status = e->f[1];
	if (strcasecmp(status, "Success") && strcasecmp(status, "Incomplete") && strcasecmp(status, "Failed")) {
		http_reply_error(ctx, 400, "status must be Success, Incomplete or Failed");
		ev_free(e);
		return;
	}
	/* the three accepted words, lower-cased for the CHECK constraint */
	snprintf(lowered, sizeof(lowered), "%s", status);
	for (char *p = lowered; *p; p++)
		*p = (char)(*p | 0x20);
	e->ctx = ctx;
	http_ctx_hold(ctx);
	e->pending = 2;
	params[0] = ussd_adapter_at.name;
	params[1] = e->f[0];
	params[2] = e->f[2] && phone_normalise(e->f[2], app->cfg->ussd_country_code, phone, sizeof(phone)) == 0 ? phone
														     : NULL;
	params[3] = e->f[3];
	params[4] = e->f[4];
	params[5] = lowered;
	params[6] = number_or_null(e->f[5]);
	params[7] = number_or_null(e->f[6]);
	params[8] = e->f[7];
	params[9] = e->f[8];
	params[10] = e->f[9];
	db_run(app->db, &session_log_record, params, ev_recorded, e);
	snprintf(key, sizeof(key), "ussd:s:%s:%s", ussd_adapter_at.name, e->f[0]);
	{
		const char *argv[2] = { "DEL", key };

		redis_cmd(app->redis, ev_dropped, e, 2, argv, NULL);
	}
	log_msg(LOG_INFO, http_ctx_reqid(ctx), "ussd session %s ended: %s, %s hops, %s ms%s%s", e->f[0], status,
		e->f[6] ? e->f[6] : "?", e->f[5] ? e->f[5] : "?", e->f[8] ? ": " : "", e->f[8] ? e->f[8] : "");
}

/* The USSD module's routes, registered by main.c: one per aggregator (a
 * new one is a file with its adapter and a line here, at the adapter's
 * path, with the adapter as the route's data), and AT's end-of-session
 * notification. */
const struct http_route ussd_routes[] = {
	{ "/ussd/africastalking", HTTP_POST, serve, "ussd_africastalking", &ussd_adapter_at },
	{ "/ussd/hubtel", HTTP_POST, serve, "ussd_hubtel", &ussd_adapter_hubtel },
	{ "/ussd/africastalking/events", HTTP_POST, at_events, "ussd_africastalking_events", NULL },
	{ NULL },
};
