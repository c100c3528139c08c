/*
 * c2b: paybill payments (see mpesa_int.h), credited only once M-Pesa
 * confirmed them to us.
 *
 * Safaricom signs none of its callbacks, so a confirmation is a claim, not
 * money: it must name our shortcode ([mpesa] shortcode: anything else is
 * logged, counted and acknowledged, never recorded) and an amount within
 * [mpesa] max_amount (past it: recorded flagged, never credited); then
 * c2b_confirm records it once per TransID, unverified, and opens its
 * Transaction Status query (the status rail, purpose 'c2b').  The result's
 * amount, receipt, shortcode and account must agree before c2b_on_status
 * credits the member and sends the receipt (schema/40_money.sql).  A TransID
 * seen before with another amount or account is a replay: logged, counted,
 * alerted, ignored.
 *
 * The validation (when Safaricom calls it) refuses what the confirmation
 * would never credit: another shortcode, an amount we cannot read or past
 * the limit, no account.
 *
 * The periodic pass flags what never verified within [mpesa]
 * verify_flag_after_s, and logs each alert row (mpesa_alerts) once, at
 * LOG_ERROR with its ids, counted by kind in /metrics.
 */
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/payment.h"
#include "mpesa/mpesa_int.h"
#include "net/daraja.h"
#include "net/db.h"
#include "net/httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const mpesa_alert_kinds[MPESA_ALERT_KINDS] = { "stk_contradicted", "stk_over_limit", "c2b_flagged",
							   "c2b_replay" };
const char *const mpesa_ignored_whys[MPESA_IGNORED_WHYS] = { "shortcode", "amount", "malformed", "replay" };

struct c2b {
	struct mpesa *m;
	struct http_ctx *ctx;	/* until it is answered */
	char *body;
};

static void c2b_done(const struct db_result *r, void *arg)
{
	struct c2b *c = arg;
	struct http_ctx *ctx = c->ctx;

	/* Safaricom gets one answer per confirmation: this one */
	xassert(ctx);
	c->ctx = NULL;
	if (r->status != DB_OK) {
		/* not kept: say so (Safaricom may resend), and keep it in the log */
		log_msg(LOG_ERROR, http_ctx_reqid(ctx), "mpesa c2b NOT recorded (%s): %s", r->error, c->body);
		http_reply_error(ctx, 503, "not stored, try again");
	} else {
		const char *outcome = PQgetvalue(r->res, 0, 0), *status = PQgetvalue(r->res, 0, 2);

		if (!strcmp(outcome, "replay")) {
			/* acknowledged (Safaricom must not resend it), never recorded */
			log_msg(LOG_WARN, http_ctx_reqid(ctx), "mpesa c2b: a TransID seen before with another amount "
				"or account, ignored: %s", c->body);
			c->m->ignored[IGNORED_REPLAY]++;
			mpesa_alerts_soon(c->m);
		} else {
			log_msg(LOG_INFO, http_ctx_reqid(ctx), "mpesa c2b: %s, %s%s", outcome, status,
				PQgetvalue(r->res, 0, 1)[0] == 't' ? "" : " (seen before)");
			if (!strcmp(status, "flagged"))
				mpesa_alerts_soon(c->m);
			else if (!strcmp(status, "unverified"))
				mpesa_status_soon(c->m, 0);	/* its Transaction Status query, now (status.c) */
		}
		http_reply(ctx, 200, "application/json", DARAJA_C2B_ACK, sizeof(DARAJA_C2B_ACK) - 1);
		app_outbox_queued(http_ctx_app(ctx));
	}
	http_ctx_release(ctx);
	mpesa_unref(c->m);
	free(c->body);
	free(c);
}

static void reply_json(struct http_ctx *ctx, const char *body)
{
	http_reply(ctx, 200, "application/json", body, strlen(body));
}

static void c2b_route(struct http_ctx *ctx, bool confirm)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	const struct config *cfg = app->cfg;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	long long max = (long long)cfg->mpesa_max_amount * 100;
	struct daraja_c2b pay;
	struct c2b *c;
	char centss[24], maxs[24], at[CLOCK_TEXT_MAX];
	bool ours, readable, within;

	if (!http_guard(ctx, "", cfg->mpesa_allow_ips, "safaricom"))
		return;
	if (!m) {
		http_reply_error(ctx, 400, "M-Pesa is off");
		return;
	}
	daraja_c2b_parse(body, len, &pay);
	ours = pay.shortcode && !strcmp(pay.shortcode, cfg->mpesa_shortcode);
	readable = pay.amount_cents > 0 && pay.bill_ref;
	within = pay.amount_cents <= max;
	if (!confirm) {
		/* a paybill payment must be to our shortcode, whole shillings
		 * within the limit, to an account we can read; whose it is,
		 * the confirmation works out */
		bool yes = ours && readable && within;

		if (!yes) {
			log_msg(LOG_WARN, http_ctx_reqid(ctx), "mpesa c2b validation refused (%s): %.*s",
				!ours ? "not our shortcode" : !readable ? "no amount or account" : "past the limit",
				(int)(len > 600 ? 600 : len), body);
			m->ignored[!ours ? IGNORED_SHORTCODE : !readable ? IGNORED_MALFORMED : IGNORED_AMOUNT]++;
		}
		reply_json(ctx, yes ? DARAJA_C2B_ACCEPT : DARAJA_C2B_REJECT);
		daraja_c2b_clear(&pay);
		return;
	}
	if (!pay.trans_id || !readable) {
		daraja_c2b_clear(&pay);
		m->ignored[IGNORED_MALFORMED]++;
		http_reply_error(ctx, 400, "not a C2B confirmation");
		return;
	}
	if (!ours) {
		/* not a payment to us: acknowledged so it is not resent, never
		 * recorded or credited */
		log_msg(LOG_WARN, http_ctx_reqid(ctx), "mpesa c2b: confirmation %s for shortcode %s (ours: %s) ignored",
			pay.trans_id, pay.shortcode ? pay.shortcode : "(none)", cfg->mpesa_shortcode);
		m->ignored[IGNORED_SHORTCODE]++;
		daraja_c2b_clear(&pay);
		reply_json(ctx, DARAJA_C2B_ACK);
		return;
	}
	snprintf(centss, sizeof(centss), "%lld", pay.amount_cents);
	snprintf(maxs, sizeof(maxs), "%lld", max);
	c = xcalloc(1, sizeof(*c));
	c->m = m;
	mpesa_hold(m);
	c->ctx = ctx;
	c->body = xstrndup(body, len);
	http_ctx_hold(ctx);
	{
		/* the receipt by key, sent once it is verified */
		const char *p[9] = { pay.trans_id, centss, pay.bill_ref, pay.first_name, pay.msisdn,
				     "sms_mpesa_receipt", clock_p_at(at), pay.shortcode, maxs };

		/* retried while the answer can still reach Safaricom in time */
		db_run_durable(app->dbbg, &payment_c2b_confirm, p,
			       util_now_ms() + (uint64_t)cfg->http_request_timeout_ms / 2, c2b_done, c);
	}
	daraja_c2b_clear(&pay);
}

void mpesa_c2b_validation(struct http_ctx *ctx)
{
	c2b_route(ctx, false);
}

void mpesa_c2b_confirmation(struct http_ctx *ctx)
{
	c2b_route(ctx, true);
}

/* ---- the periodic pass: what never verified, and the alert log ---- */

static void alerts_again(struct mpesa *m, int ms)
{
	(void)ms;
	mpesa_alerts_soon(m);
}

static void alerts_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;
	int n = r->status == DB_OK ? PQntuples(r->res) : 0;

	for (int i = 0; i < n; i++) {
		const char *kind = PQgetvalue(r->res, i, 1);

		for (int k = 0; k < MPESA_ALERT_KINDS; k++)
			if (!strcmp(kind, mpesa_alert_kinds[k]))
				m->alerts[k]++;
		/* the operator's line: every id needed to find it */
		log_msg(LOG_ERROR, NULL, "mpesa ALERT %s: alert %s, chama %s, %s %s: %s", kind, PQgetvalue(r->res, i, 0),
			PQgetvalue(r->res, i, 2), PQgetvalue(r->res, i, 3), PQgetvalue(r->res, i, 4),
			PQgetvalue(r->res, i, 5));
	}
	mpesa_claim_end(m, &m->alerting, r, "alerts", n, 50, alerts_again);
}

void mpesa_alerts_soon(struct mpesa *m)
{
	if (m->stopping || !mpesa_claim_start(m, &m->alerting))
		return;
	db_run_durable(m->app->dbbg, &payment_alerts_claim, NULL, util_now_ms() + 10000, alerts_claimed, m);
}

static void overdue_flagged(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;

	m->flagging = false;
	if (r->status != DB_OK && r->status != DB_CANCELLED)
		log_warn("mpesa: flagging unverified paybill payments: %s", r->error);
	else if (r->status == DB_OK && atoi(PQgetvalue(r->res, 0, 0)) > 0) {
		log_warn("mpesa: %s paybill payments never verified within %d s: flagged, not credited",
			 PQgetvalue(r->res, 0, 0), m->app->cfg->mpesa_verify_flag_after_s);
		app_outbox_queued(m->app);	/* the officials' alerts */
	}
	mpesa_alerts_soon(m);
	mpesa_unref(m);
}

void mpesa_verify_tick(struct mpesa *m)
{
	char after[16], at[CLOCK_TEXT_MAX];
	const char *p[2] = { after, clock_p_at(at) };

	if (m->flagging || m->quiescing) {
		mpesa_alerts_soon(m);
		return;
	}
	m->flagging = true;
	mpesa_hold(m);
	snprintf(after, sizeof(after), "%d", m->app->cfg->mpesa_verify_flag_after_s);
	db_run(m->app->dbbg, &payment_c2b_flag_overdue, p, overdue_flagged, m);
}

void mpesa_verify_metrics(const struct mpesa *m, struct buf *out)
{
	buf_puts(out, "# HELP chamad_mpesa_contradictions_total M-Pesa alerts this daemon logged: a callback the "
		 "query contradicted, a paybill payment that did not verify, a replayed TransID; none credited.\n"
		 "# TYPE chamad_mpesa_contradictions_total counter\n");
	for (int k = 0; k < MPESA_ALERT_KINDS; k++)
		buf_printf(out, "chamad_mpesa_contradictions_total{kind=\"%s\"} %llu\n", mpesa_alert_kinds[k],
			   (unsigned long long)m->alerts[k]);
	buf_puts(out, "# HELP chamad_mpesa_c2b_ignored_total Paybill confirmations and validations refused "
		 "(another shortcode, an amount past the limit, unreadable, a replayed TransID).\n"
		 "# TYPE chamad_mpesa_c2b_ignored_total counter\n");
	for (int k = 0; k < MPESA_IGNORED_WHYS; k++)
		buf_printf(out, "chamad_mpesa_c2b_ignored_total{why=\"%s\"} %llu\n", mpesa_ignored_whys[k],
			   (unsigned long long)m->ignored[k]);
}
