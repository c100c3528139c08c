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
 * unless PostgreSQL is down (503: the provider will try again).  Inbound
 * messages go to sms_cmd.c.
 */
#include "sms/sms_http.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "dom/outbox.h"
#include "base/form.h"
#include "net/httpd.h"
#include "base/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parameters from the query string and a form body ---- */

void sms_params_free(struct sms_params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->key[i]);
		free(p->val[i]);
	}
	memset(p, 0, sizeof(*p));
}

static void param_add(const char *key, const char *val, void *arg)
{
	struct sms_params *p = arg;

	if (p->n < SMS_PARAMS_MAX && !sms_param(p, key)) {
		p->key[p->n] = xstrdup(key);
		p->val[p->n++] = xstrdup(val);
	}
}

const char *sms_param(const struct sms_params *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->key[i], key))
			return p->val[i];
	return NULL;
}

int sms_params_read(struct http_ctx *ctx, struct sms_params *p)
{
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	const char *q = http_ctx_query_raw(ctx);

	memset(p, 0, sizeof(*p));
	if (form_parse(q, strlen(q), param_add, p) < 0 || form_parse(body, len, param_add, p) < 0) {
		sms_params_free(p);
		return -1;
	}
	return 0;
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

static void at_dlr(struct http_ctx *ctx)
{
	struct sms_params p;
	const char *id, *status, *state = "";

	if (!guarded(ctx, "africastalking"))
		return;
	if (sms_params_read(ctx, &p) < 0 || !(id = sms_param(&p, "id")) || !(status = sms_param(&p, "status"))) {
		log_msg(LOG_INFO, http_ctx_reqid(ctx), "sms dlr without id or status: ignored");
		http_reply(ctx, 200, "text/plain", "OK", 2);
		sms_params_free(&p);
		return;
	}
	if (!strcasecmp(status, "Success"))
		state = "delivered";
	else if (!strcasecmp(status, "Failed") || !strcasecmp(status, "Rejected") || !strcasecmp(status, "Expired"))
		state = "undeliverable";
	dlr_apply(ctx, "africastalking", &outbox_dlr_provider_id, id, status, state,
		  sms_param(&p, "failureReason"));
	sms_params_free(&p);
}

static void kannel_dlr(struct http_ctx *ctx)
{
	struct sms_params p;
	const char *id, *status, *state = "", *reason = NULL;
	long long n, type;
	char raw[24];

	if (!guarded(ctx, "kannel"))
		return;
	if (sms_params_read(ctx, &p) < 0 || !(id = sms_param(&p, "id")) || !(status = sms_param(&p, "status")) ||
	    util_parse_ll(id, 1, INT64_MAX, &n) < 0 || util_parse_ll(status, 0, 1 << 16, &type) < 0) {
		log_msg(LOG_INFO, http_ctx_reqid(ctx), "kannel dlr without a valid id and status: ignored");
		http_reply(ctx, 200, "text/plain", "OK", 2);
		sms_params_free(&p);
		return;
	}
	/* Kannel's report types: 1 delivered to the phone, 2 not delivered,
	 * 4 buffered at the SMSC, 8 accepted by the SMSC, 16 rejected by it */
	if (type & 1) {
		state = "delivered";
	} else if (type & (2 | 16)) {
		state = "undeliverable";
		reason = type & 16 ? "rejected by the SMSC" : "not delivered to the phone";
	}
	snprintf(raw, sizeof(raw), "kannel:%lld", type);
	/* the row may not be marked sent yet: Kannel can report first */
	dlr_apply(ctx, "kannel", &outbox_dlr_row, id, raw, state, reason);
	sms_params_free(&p);
}

/* ---- inbound ---- */

static void at_inbound(struct http_ctx *ctx)
{
	if (guarded(ctx, "africastalking"))
		sms_inbound(ctx, "africastalking");
}

static void kannel_inbound(struct http_ctx *ctx)
{
	if (guarded(ctx, "kannel"))
		sms_inbound(ctx, "kannel");
}

/* The SMS module's routes, registered by main.c. */
const struct http_route sms_routes[] = {
	{ "/sms/africastalking/dlr", HTTP_POST, at_dlr, "sms_africastalking_dlr", NULL },
	{ "/sms/kannel/dlr", HTTP_GET | HTTP_POST, kannel_dlr, "sms_kannel_dlr", NULL },
	{ "/sms/africastalking/inbound", HTTP_POST, at_inbound, "sms_africastalking_inbound", NULL },
	{ "/sms/kannel/inbound", HTTP_GET | HTTP_POST, kannel_inbound, "sms_kannel_inbound", NULL },
	{ NULL },
};
