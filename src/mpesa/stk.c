/*
 * stk: the STK callback and settling (see mpesa_int.h).
 *
 * A callback is stored durably (and only then acknowledged: a 503 tells
 * Safaricom to send it again), then settled from the table by any daemon:
 * mpesa_settle in one statement with the member's texts in their language.
 * One that names a CheckoutRequestID not recorded yet (it overtook the
 * push's answer, or the answer was lost) waits, or is matched to the one
 * 'unknown' request with its phone and amount.  The status query's answer
 * for a push settles the same way.
 *
 * Credit only what M-Pesa confirmed: a stored success callback whose
 * request is known is first checked with the STK push query for its
 * CheckoutRequestID, and settled with the query's ResultCode (mpesa_settle
 * posts only when it is 0; otherwise the request is 'contradicted' and the
 * officials alerted).  A query that cannot answer yet (still processing,
 * Daraja busy or silent) leaves the callback stored, due again after a
 * backoff; the status query job goes on asking for the request meanwhile
 * and gives it up ('expired', never credited) after its attempts.  A
 * failure callback credits nothing and is settled as it comes.
 *
 * Settling is idempotent in the database
 * (mpesa_settle locks the request and decides once; post_contribution is
 * keyed on the CheckoutRequestID and the receipt), so a callback delivered
 * twice, or racing the status query, records one contribution.
 */
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/menu.h"
#include "base/util.h"
#include "dom/payment.h"
#include "mpesa/mpesa_int.h"
#include "net/daraja.h"
#include "net/db.h"
#include "net/httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct settle {
	struct mpesa *m;
	struct http_ctx *ctx;	/* the callback's, until it is answered */
	struct held held;	/* a stored callback claimed for settling */
	char cbid[24];		/* mpesa_callbacks.id, when settling a stored one */
	char checkout[72], receipt[40], phone[24], desc[300];
	long long code, amount_cents;	/* -1: not given */
	long long confirm;	/* the STK push query's ResultCode for a success callback */
	bool confirmed;		/* confirm holds it */
	char req_amount[24];	/* the request's amount (cents), while confirming */
	const char *source;
	char *body;		/* the callback as it came */
};

static void settle_free(struct settle *s)
{
	xassert(!s->ctx && !s->held.linked);
	free(s->body);
	free(s);
}

/* A settle of a claimed callback ends: its claim is released. */
static void settle_done(struct settle *s)
{
	if (s->held.linked)
		mpesa_held_release(s->m, &s->held);
	mpesa_work_end(s->m);
	settle_free(s);
}

/* $1..$6 of both statements that take a report: CheckoutRequestID, result
 * code, description, receipt, amount (cents) and phone; code and cents are
 * the caller's buffers. */
static void report_params(const struct settle *s, char code[24], char cents[24], const char *p[6])
{
	snprintf(code, 24, "%lld", s->code);
	snprintf(cents, 24, "%lld", s->amount_cents);
	p[0] = s->checkout;
	p[1] = code;
	p[2] = s->desc;
	p[3] = *s->receipt ? s->receipt : NULL;
	p[4] = s->amount_cents >= 0 ? cents : NULL;
	p[5] = *s->phone ? s->phone : NULL;
}

static void settled(const struct db_result *r, void *arg)
{
	struct settle *s = arg;

	if (r->status != DB_OK)
		log_warn("mpesa: settling %s failed: %s", s->checkout, r->error);
	else if (PQntuples(r->res) == 1) {
		const char *status = PQgetvalue(r->res, 0, 0);
		bool now = PQgetvalue(r->res, 0, 1)[0] == 't';

		log_info("mpesa: %s %s by %s: %s", s->checkout, status, s->source, now ? "settled now" : "already settled");
		/* the alert's own line and count come from the alert job */
		if (now && (!strcmp(status, "contradicted") || !strcmp(status, "flagged")))
			mpesa_alerts_soon(s->m);
		app_outbox_queued(s->m->app);	/* the receipt, the failure notice or the alert */
	}
	settle_done(s);
}

/*
 * Settles one report (a stored callback, or the status query's answer) in
 * one statement: mpesa_settle with the member's messages by key (the
 * receipt, or the notice for this result code if the menus have one; the
 * sender renders them in the member's language), and for a stored callback
 * its row marked settled in the same statement.  amount comes from the
 * request.
 */
static void settle_with(struct settle *s, const char *amount_cents)
{
	struct app *app = s->m->app;
	char code[24], key[48], cents[24], at[CLOCK_TEXT_MAX], confirm[24], max[24];
	const char *p[13];

	if (s->amount_cents < 0)	/* the query does not tell: it is what we asked */
		s->amount_cents = atoll(amount_cents);
	snprintf(key, sizeof(key), "sms_mpesa_failed_%lld", s->code);
	report_params(s, code, cents, p);
	p[6] = s->source;
	p[7] = "sms_mpesa_receipt";
	p[8] = menu_sms_exists(app->menus, key) ? key : "sms_mpesa_failed";
	p[9] = *s->cbid ? s->cbid : NULL;
	p[10] = clock_p_at(at);	/* the posting's date */
	snprintf(confirm, sizeof(confirm), "%lld", s->confirm);
	p[11] = s->confirmed ? confirm : NULL;
	snprintf(max, sizeof(max), "%lld", (long long)app->cfg->mpesa_max_amount * 100);
	p[12] = max;
	db_run_durable(app->dbbg, &payment_settle, p, 0, settled, s);
}

/* A stored callback whose request is not known (yet): a success whose push
 * answer was lost is matched to the one 'unknown' request with its phone
 * and amount; otherwise it waits (backoff) for the push's answer to be
 * recorded, and after CB_MAX_TRIES it is left 'unmatched' for an operator. */
static void unmatched_done(const struct db_result *r, void *arg)
{
	struct settle *s = arg;

	if (r->status != DB_OK) {
		log_warn("mpesa: callback %s: %s", s->cbid, r->error);
	} else if (PQntuples(r->res) == 1 && PQgetvalue(r->res, 0, 1)[0] == 't') {
		log_info("mpesa: callback %s matched request of %s by phone and amount", s->checkout, s->phone);
		mpesa_callbacks_soon(s->m, 0);
	} else if (PQntuples(r->res) == 1 && !strcmp(PQgetvalue(r->res, 0, 0), "unmatched")) {
		log_warn("mpesa: callback for an unknown CheckoutRequestID %s: kept, not credited", s->checkout);
		s->m->unmatched++;
	}
	settle_done(s);
}

static void settle_unmatched(struct settle *s)
{
	char code[24], cents[24], tries[16];
	const char *p[6] = { s->cbid, s->checkout, code, *s->phone ? s->phone : NULL, cents, tries };

	snprintf(code, sizeof(code), "%lld", s->code);
	snprintf(cents, sizeof(cents), "%lld", s->amount_cents);
	snprintf(tries, sizeof(tries), "%d", CB_MAX_TRIES);
	db_run_durable(s->m->app->dbbg, &payment_callback_match, p, 0, unmatched_done, s);
}

/* ---- a success callback, confirmed by the STK push query first ---- */

static void confirm_later_done(const struct db_result *r, void *arg)
{
	struct settle *s = arg;

	if (r->status != DB_OK)	/* the lease brings it back */
		log_warn("mpesa: callback %s: not released for later: %s", s->cbid, r->error);
	settle_done(s);
}

static void confirm_answered(const struct daraja_query_result *r, void *arg)
{
	struct settle *s = arg;
	const char *p[1] = { s->cbid };

	if (r->outcome == DARAJA_CANCELLED || s->m->stopping) {	/* the lease brings it back */
		settle_done(s);
		return;
	}
	s->m->queries++;
	if (r->outcome == DARAJA_ACCEPTED) {
		s->confirm = r->result_code;
		s->confirmed = true;
		if (r->result_code != 0)
			log_msg(LOG_ERROR, NULL,
				"mpesa: callback %s said %s paid (receipt %s) but the STK push query says %lld %s",
				s->cbid, s->checkout, s->receipt, r->result_code, r->result_desc);
		/* the query's words are the decision's */
		snprintf(s->desc, sizeof(s->desc), "%s", r->result_desc);
		settle_with(s, s->req_amount);
		return;
	}
	/* not decided yet, or Daraja busy or silent: ask again after a while */
	log_info("mpesa: callback %s for %s: the STK push query has no answer yet (%ld)", s->cbid, s->checkout,
		 r->http_code);
	db_run_durable(s->m->app->dbbg, &payment_callback_later, p, 0, confirm_later_done, s);
}

static void confirm_callback(struct settle *s, const char *amount_cents)
{
	snprintf(s->req_amount, sizeof(s->req_amount), "%s", amount_cents);
	daraja_stk_query(s->m->daraja, s->checkout, confirm_answered, s);
}

static void callbacks_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;
	int n = r->status == DB_OK ? PQntuples(r->res) : 0;

	for (int i = 0; i < n && !m->stopping; i++) {
		struct settle *s = xcalloc(1, sizeof(*s));
		const PGresult *res = r->res;

		s->m = m;
		s->source = "callback";
		snprintf(s->cbid, sizeof(s->cbid), "%s", PQgetvalue(res, i, 0));
		snprintf(s->checkout, sizeof(s->checkout), "%s", PQgetvalue(res, i, 1));
		s->code = atoll(PQgetvalue(res, i, 2));
		snprintf(s->desc, sizeof(s->desc), "%s", PQgetvalue(res, i, 3));
		snprintf(s->receipt, sizeof(s->receipt), "%s", PQgetvalue(res, i, 4));
		s->amount_cents = PQgetisnull(res, i, 5) ? -1 : atoll(PQgetvalue(res, i, 5));
		snprintf(s->phone, sizeof(s->phone), "%s", PQgetvalue(res, i, 6));
		mpesa_held_add(m, &s->held, HELD_CALLBACK, s->cbid);
		mpesa_work_begin(m);
		if (PQgetisnull(res, i, 7))
			settle_unmatched(s);
		else if (s->code == 0)	/* a success: posted only once the query agrees */
			confirm_callback(s, PQgetvalue(res, i, 7));
		else
			settle_with(s, PQgetvalue(res, i, 7));
	}
	mpesa_claim_end(m, &m->settling, r, "callbacks", n, PAYMENT_CALLBACK_BATCH, mpesa_callbacks_soon);
}

/* Claims stored callbacks that are due, with what settling needs of their
 * request (NULL columns when no request has that CheckoutRequestID). */
void mpesa_callbacks_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;

	(void)fd;
	(void)what;
	if (!mpesa_claim_start(m, &m->settling))
		return;
	db_run_durable(m->app->dbbg, &payment_callbacks_claim, NULL, util_now_ms() + 10000, callbacks_claimed, m);
}

void mpesa_callbacks_soon(struct mpesa *m, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (m->stopping)
		return;
	if (!evtimer_pending(m->cb_ev, NULL))
		evtimer_add(m->cb_ev, &tv);
}

/* ---- the status query's answer for a push: settled like a callback ---- */

static void query_loaded(const struct db_result *r, void *arg)
{
	struct settle *s = arg;

	if (r->status != DB_OK || PQntuples(r->res) != 1) {
		if (r->status != DB_OK)
			log_warn("mpesa: looking up %s: %s", s->checkout, r->error);
		settle_done(s);
		return;
	}
	settle_with(s, PQgetvalue(r->res, 0, 0));
}

void mpesa_settle_queried(struct mpesa *m, const char *checkout, long long code, const char *desc)
{
	struct settle *s = xcalloc(1, sizeof(*s));
	const char *p[1] = { s->checkout };

	s->m = m;
	s->source = "query";
	s->code = code;
	s->amount_cents = -1;
	snprintf(s->checkout, sizeof(s->checkout), "%s", checkout);
	snprintf(s->desc, sizeof(s->desc), "%s", desc);
	mpesa_work_begin(m);
	db_run_durable(m->app->dbbg, &payment_request_by_checkout, p, 0, query_loaded, s);
}

/* ---- the STK callback: stored, then acknowledged ---- */

static void callback_stored(const struct db_result *r, void *arg)
{
	struct settle *s = arg;
	struct http_ctx *ctx = s->ctx;

	/* Safaricom gets one answer per callback: this one */
	xassert(ctx);
	s->ctx = NULL;
	if (r->status != DB_OK) {
		/* not kept: say so, so the sender may try again, and keep it in the log */
		log_msg(LOG_ERROR, http_ctx_reqid(ctx), "mpesa: callback %s NOT stored (%s): %s", s->checkout,
			r->error, s->body);
		http_reply_error(ctx, 503, "not stored, try again");
	} else {
		http_reply(ctx, 200, "application/json", DARAJA_STK_ACK, sizeof(DARAJA_STK_ACK) - 1);
		mpesa_callbacks_soon(s->m, 0);
	}
	http_ctx_release(ctx);
	settle_done(s);
}

/* POST /mpesa/stk/callback[/<secret>]: stored durably (and only then
 * acknowledged), settled from the table by mpesa_callbacks_tick. */
void mpesa_stk_callback(struct http_ctx *ctx)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	struct daraja_stk_callback cb;
	struct settle *s;
	char code[24], cents[24];
	const char *p[9];

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	if (!m || daraja_stk_callback_parse(body, len, &cb) < 0) {
		http_reply_error(ctx, 400, "not an STK callback");
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->ctx = ctx;
	http_ctx_hold(ctx);
	s->source = "callback";
	s->body = xstrndup(body, len);
	snprintf(s->checkout, sizeof(s->checkout), "%s", cb.checkout);
	s->code = cb.result_code;
	snprintf(s->desc, sizeof(s->desc), "%s", cb.desc);
	snprintf(s->receipt, sizeof(s->receipt), "%s", cb.receipt);
	snprintf(s->phone, sizeof(s->phone), "%s", cb.phone);
	s->amount_cents = cb.amount_cents;
	m->callbacks++;
	if (s->code == 0 && (s->amount_cents < 0 || !*s->receipt)) {
		log_warn("mpesa: callback %s: success without a usable Amount or receipt", s->checkout);
		s->amount_cents = s->amount_cents < 0 ? 0 : s->amount_cents;
	}
	report_params(s, code, cents, p);
	p[6] = s->body;
	p[7] = http_ctx_peer(ctx);
	p[8] = http_ctx_reqid(ctx);
	mpesa_work_begin(m);
	/* retried while the answer can still reach Safaricom in time */
	db_run_durable(app->dbbg, &payment_callback_store, p,
		       util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, callback_stored, s);
}
