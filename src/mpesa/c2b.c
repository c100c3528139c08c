/*
 * c2b: paybill payments (see mpesa_int.h).  The validation only checks
 * that the payment is one we can read (whole shillings, an account); whose
 * it is, the confirmation works out in c2b_confirm, once per TransID.
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

struct c2b {
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
		log_msg(LOG_INFO, http_ctx_reqid(ctx), "mpesa c2b: %s%s", PQgetvalue(r->res, 0, 0),
			PQgetvalue(r->res, 0, 1)[0] == 't' ? "" : " (seen before)");
		http_reply(ctx, 200, "application/json", DARAJA_C2B_ACK, sizeof(DARAJA_C2B_ACK) - 1);
		app_outbox_queued(http_ctx_app(ctx));
	}
	http_ctx_release(ctx);
	free(c->body);
	free(c);
}

static void c2b_route(struct http_ctx *ctx, bool confirm)
{
	struct app *app = http_ctx_app(ctx);
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	struct daraja_c2b pay;
	struct c2b *c;
	char centss[24];

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	daraja_c2b_parse(body, len, &pay);
	if (!confirm) {
		/* a paybill payment must be whole shillings to a number we can
		 * read; whose it is, the confirmation works out */
		bool yes = pay.amount_cents > 0 && pay.bill_ref;

		http_reply(ctx, 200, "application/json", yes ? DARAJA_C2B_ACCEPT : DARAJA_C2B_REJECT,
			   yes ? sizeof(DARAJA_C2B_ACCEPT) - 1 : sizeof(DARAJA_C2B_REJECT) - 1);
		daraja_c2b_clear(&pay);
		return;
	}
	if (!pay.trans_id || !pay.bill_ref || pay.amount_cents <= 0) {
		daraja_c2b_clear(&pay);
		http_reply_error(ctx, 400, "not a C2B confirmation");
		return;
	}
	snprintf(centss, sizeof(centss), "%lld", pay.amount_cents);
	c = xcalloc(1, sizeof(*c));
	c->ctx = ctx;
	c->body = xstrndup(body, len);
	http_ctx_hold(ctx);
	{
		/* the receipt by key: c2b_confirm fills chama, amount, receipt */
		char at[CLOCK_TEXT_MAX];
		const char *p[7] = { pay.trans_id, centss, pay.bill_ref, pay.first_name, pay.msisdn,
				     "sms_mpesa_receipt", clock_p_at(at) };

		/* retried while the answer can still reach Safaricom in time */
		db_run_durable(app->dbbg, &payment_c2b_confirm, p,
			       util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, c2b_done, c);
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
