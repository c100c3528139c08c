/*
 * sms_http: what the SMS providers call.
 *
 *   POST /sms/africastalking/dlr       delivery report (id = AT's messageId)
 *   GET|POST /sms/kannel/dlr           the dlr-url we gave Kannel (id = our row, status = %d)
 *   POST /sms/africastalking/inbound   a message from a member
 *   GET|POST /sms/kannel/inbound       Kannel's get-url (%p sender, %a text)
 *
 * A delivery report moves a sent row on (delivered, or undeliverable with
 * the reason); final states never move back, so repeated and out-of-order
 * reports are harmless; unknown ones are logged.  All are answered 200
 * unless PostgreSQL is down (503: the provider will try again); what we
 * cannot read is checked here, before PostgreSQL (sms_parse.c), so bytes
 * it would refuse never turn into a 503.  Inbound messages go to
 * sms_cmd.c.
 */
#include "sms/sms_http.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "dom/outbox.h"
#include "net/httpd.h"
#include "base/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parameters from the query string and a form body ---- */

int sms_params_read(struct http_ctx *ctx, struct sms_params *p)
{
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	const char *q = http_ctx_query_raw(ctx);

	return sms_params_parse(p, q, strlen(q), body, len);
}

/* ---- delivery reports ---- */

struct dlr {
	struct http_ctx *ctx;
	char what[160];
};

static void dlr_done(const struct db_result *r, void *arg)
{
	struct dlr *d = arg;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(d->ctx), "sms dlr %s not recorded: %s", d->what, r->error);
		http_reply_error(d->ctx, 503, "try again later");
	} else {
		if (!strcmp(PQcmdTuples(r->res), "0"))
			log_msg(LOG_INFO, http_ctx_reqid(d->ctx), "sms dlr %s: unknown, repeated or out of order; ignored",
				d->what);
		http_reply(d->ctx, 200, "text/plain", "OK", 2);
	}
	http_ctx_release(d->ctx);
	free(d);
}

/*
 * Applies one report: state is "delivered", "undeliverable" or "" (not
 * final: only delivery_status changes).  Rows already delivered or
 * undeliverable keep their state.
 */
static void dlr_apply(struct http_ctx *ctx, const char *provider, const struct db_stmt *match, const char *id,
		      const char *raw, const char *state, const char *reason)
{
	struct app *app = http_ctx_app(ctx);
	struct dlr *d = xcalloc(1, sizeof(*d));
	const char *p[5] = { provider, id, raw, state, reason };

	d->ctx = ctx;
	http_ctx_hold(ctx);
	snprintf(d->what, sizeof(d->what), "%s %.64s %.32s", provider, id, raw);
	db_run(app->dbbg, match, p, dlr_done, d);
}

static bool guarded(struct http_ctx *ctx, const char *name)
{
	struct app *app = http_ctx_app(ctx);

	return http_guard(ctx, app->cfg->sms_secrets, app->cfg->sms_allow_ips, name);
}

/*
 * A report we cannot read is answered 200 and logged (and counted): the
 * provider resends a report until it hears 200, and these bytes would
 * never be readable.  Only a database that cannot record a good one gets
 * 503.
 */
static void dlr_route(struct http_ctx *ctx, const char *provider, const struct db_stmt *match,
		      int (*read)(const struct sms_params *, struct sms_dlr *, char *, size_t))
{
	struct sms_params p;
	struct sms_dlr d;
	char why[128];

	if (!guarded(ctx, provider))
		return;
	if (sms_params_read(ctx, &p) < 0) {
		http_reply_bad_input(ctx, 200, "malformed query or form body");
		return;
	}
	if (read(&p, &d, why, sizeof(why)) < 0)
		http_reply_bad_input(ctx, 200, why);
	else
		/* the row may not be marked sent yet: Kannel can report first */
		dlr_apply(ctx, provider, match, d.id, d.raw, d.state, d.reason);
	sms_params_free(&p);
}

static void at_dlr(struct http_ctx *ctx)
{
	dlr_route(ctx, "africastalking", &outbox_dlr_provider_id, sms_dlr_at);
}

static void kannel_dlr(struct http_ctx *ctx)
{
	dlr_route(ctx, "kannel", &outbox_dlr_row, sms_dlr_kannel);
}

/* ---- inbound ---- */

/*
 * Without from or text it is not a message: 400, as before.  A message
 * whose bytes, length or sender we can never store is answered 200 and
 * logged (counted): the provider would resend it, and it can never
 * succeed.
 */
static void inbound_route(struct http_ctx *ctx, const char *provider)
{
	struct app *app = http_ctx_app(ctx);
	struct sms_params p;
	struct sms_in in;
	char why[128];

	if (!guarded(ctx, provider))
		return;
	if (sms_params_read(ctx, &p) < 0) {
		http_reply_bad_input(ctx, 400, "need from and text");
		return;
	}
	switch (sms_in_read(&p, app->cfg->ussd_country_code, &in, why, sizeof(why))) {
	case SMS_IN_MISSING:
		http_reply_bad_input(ctx, 400, why);
		break;
	case SMS_IN_BAD:
		http_reply_bad_input(ctx, 200, why);
		break;
	case SMS_IN_OK:
		sms_inbound(ctx, provider, &in);
		sms_in_clear(&in);
		break;
	}
	sms_params_free(&p);
}

static void at_inbound(struct http_ctx *ctx)
{
	inbound_route(ctx, "africastalking");
}

static void kannel_inbound(struct http_ctx *ctx)
{
	inbound_route(ctx, "kannel");
}

/* The SMS module's routes, registered by main.c. */
const struct http_route sms_routes[] = {
	{ "/sms/africastalking/dlr", HTTP_POST, at_dlr, "sms_africastalking_dlr", NULL },
	{ "/sms/kannel/dlr", HTTP_GET | HTTP_POST, kannel_dlr, "sms_kannel_dlr", NULL },
	{ "/sms/africastalking/inbound", HTTP_POST, at_inbound, "sms_africastalking_inbound", NULL },
	{ "/sms/kannel/inbound", HTTP_GET | HTTP_POST, kannel_inbound, "sms_kannel_inbound", NULL },
	{ NULL },
};
