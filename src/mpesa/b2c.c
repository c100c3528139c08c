/*
 * b2c: money out by M-Pesa B2C, never twice (see mpesa_int.h; the
 * lifecycle is migration 021's comment, its statements dom/payout).
 *
 *   two officials approve a payout (helper E's approvals) -> 'approved',
 *      NOTIFY chamad_payouts
 *   -> the payout job: any daemon claims the due payout under a lease
 *      (SKIP LOCKED; the chama's float, less what is already going out,
 *      must cover it) -> 'sending' with a new OriginatorConversationID
 *      ("payout:<id>:<attempt>") -> daraja_b2c
 *   -> the answer: accepted -> 'sent'; refused -> 'failed'; no answer ->
 *      'unknown' and the Transaction Status query (helper C's rail)
 *   -> POST /mpesa/b2c/result/<secret> (or .../timeout/<secret>): recorded
 *      in one statement (paid: posted once), then acknowledged
 *   -> no result within [mpesa] b2c_result_timeout_s, or a daemon that
 *      died while sending: the sweep makes it 'unknown' -> the status
 *      query decides: completed -> paid; no such payment -> sent again
 *      with the next attempt's id; no answer -> stays unknown, officials
 *      told.
 *
 * A request handed to Daraja is never sent again by anyone until the
 * status query says it does not exist: the claim only takes 'approved'
 * rows, and a payout leaves 'sending' only by its answer, or by the sweep
 * to 'unknown'.  This daemon holds each claimed attempt in the held list
 * (its originator id), which asserts it is never claimed twice.
 */
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/payout.h"
#include "mpesa/mpesa_int.h"
#include "net/daraja.h"
#include "net/db.h"
#include "net/httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#define B2C_ACK "{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"
/* the longest the job sleeps on a payout due later: beyond it, it looks again */
#define PAYOUT_NEXT_MAX_MS 60000

/* One attempt being sent, from its claim until Daraja's answer is recorded. */
struct send {
	struct mpesa *m;
	struct held held;	/* id: the attempt's OriginatorConversationID */
};

static void send_done(struct send *s)
{
	struct mpesa *m = s->m;

	mpesa_held_release(m, &s->held);
	free(s);
	mpesa_work_end(m);
}

static void answer_recorded(const struct db_result *r, void *arg)
{
	struct send *s = arg;

	if (r->status != DB_OK)	/* the lease ends, the sweep makes it unknown: the status query decides */
		log_warn("mpesa: payout %s: answer not recorded: %s", s->held.id, r->error);
	else {
		log_info("mpesa: payout %s: %s", s->held.id, PQgetvalue(r->res, 0, 0));
		app_outbox_queued(s->m->app);	/* a failure's notices */
		/* an unanswered call opened a status question: ask it now */
		if (!strcmp(PQgetvalue(r->res, 0, 0), "unknown"))
			mpesa_status_wake(s->m->app);
	}
	send_done(s);
}

/* Daraja's answer, recorded until PostgreSQL has it.  No answer (timeout,
 * reset) may still mean it was queued: 'unknown', for the status query. */
static void b2c_answered(const struct daraja_ack *a, void *arg)
{
	struct send *s = arg;
	struct mpesa *m = s->m;
	char timeout[16], at[CLOCK_TEXT_MAX];
	const char *p[7] = { s->held.id, NULL, NULL, NULL, NULL, timeout, clock_p_at(at) };

	if (a->outcome == DARAJA_CANCELLED) {	/* shutting down: the lease ends, the sweep resolves it */
		send_done(s);
		return;
	}
	m->b2c_sent++;
	snprintf(timeout, sizeof(timeout), "%d", m->app->cfg->mpesa_b2c_result_timeout_s);
	switch (a->outcome) {
	case DARAJA_ACCEPTED:
		p[1] = "accepted";
		p[2] = a->conversation_id;
		break;
	case DARAJA_REFUSED:
		p[1] = "refused";
		p[3] = a->error_code;
		p[4] = a->detail;
		log_warn("mpesa: payout %s refused: %s %s", s->held.id, a->error_code ? a->error_code : "",
			 a->detail ? a->detail : "");
		break;
	case DARAJA_UNSENT:
		/* it never reached Daraja: due again in a moment, as a new attempt */
		p[1] = "unsent";
		p[4] = a->detail;
		s->held.sent = false;
		break;
	default:
		p[1] = "unanswered";
		p[4] = a->detail;
		log_warn("mpesa: payout %s unanswered (%s): its outcome is unknown until the status query says",
			 s->held.id, a->detail ? a->detail : "");
		break;
	}
	db_run_durable(m->app->dbbg, &payout_answered, p, 0, answer_recorded, s);
}

static void url(const struct config *cfg, const char *what, char *out, size_t len)
{
	snprintf(out, len, "%s/mpesa/b2c/%s%s%s", cfg->mpesa_public_url, what, *cfg->mpesa_callback_secret ? "/" : "",
		 cfg->mpesa_callback_secret);
}

static void send_one(struct mpesa *m, const PGresult *res, int i)
{
	const struct config *cfg = m->app->cfg;
	struct send *s = xcalloc(1, sizeof(*s));
	char result[512], timeout[512];
	struct daraja_b2c_req q = {
		.originator_id = PQgetvalue(res, i, PAYOUT_CLAIM_ORIGINATOR),
		.phone = PQgetvalue(res, i, PAYOUT_CLAIM_PHONE),
		.remarks = PQgetvalue(res, i, PAYOUT_CLAIM_REMARKS),
		.occasion = PQgetvalue(res, i, PAYOUT_CLAIM_OCCASION),
		.result_url = result,
		.timeout_url = timeout,
		.amount_cents = atoll(PQgetvalue(res, i, PAYOUT_CLAIM_CENTS)),
	};

	s->m = m;
	mpesa_held_add(m, &s->held, HELD_PAYOUT, q.originator_id);
	url(cfg, "result", result, sizeof(result));
	url(cfg, "timeout", timeout, sizeof(timeout));
	mpesa_work_begin(m);
	s->held.sent = true;
	daraja_b2c(m->daraja, &q, b2c_answered, s);
}

static void payouts_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;
	int rows = r->status == DB_OK ? PQntuples(r->res) : 0, n = 0;
	long long next = -1;
	bool failed = false;

	for (int i = 0; i < rows; i++) {
		if (!PQgetisnull(r->res, i, PAYOUT_CLAIM_NEXT_MS))
			next = atoll(PQgetvalue(r->res, i, PAYOUT_CLAIM_NEXT_MS));
		if (PQgetisnull(r->res, i, PAYOUT_CLAIM_ID))	/* the row that only says when next */
			continue;
		n++;
		if (!strcmp(PQgetvalue(r->res, i, PAYOUT_CLAIM_ACTION), "failed")) {
			log_warn("mpesa: payout %s not sent: the float cannot cover it, or over max_payout",
				 PQgetvalue(r->res, i, PAYOUT_CLAIM_ID));
			failed = true;
		} else if (!m->stopping)
			send_one(m, r->res, i);
		/* stopping: the claimed row stays 'sending' until its lease
		 * ends; the sweep makes it unknown and the status query says
		 * whether it went (it did not) */
	}
	if (failed)
		app_outbox_queued(m->app);	/* the officials' notices */
	if (next >= 0)
		mpesa_payouts_soon(m, next > PAYOUT_NEXT_MAX_MS ? PAYOUT_NEXT_MAX_MS : (int)next);
	mpesa_claim_end(m, &m->paying, r, "payouts", n, PAYOUT_CLAIM_BATCH, mpesa_payouts_soon);
}

static void payout_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;
	const struct config *cfg = m->app->cfg;
	char lease[16], max[24], at[CLOCK_TEXT_MAX];
	const char *p[4] = { m->me, lease, max, clock_p_at(at) };

	(void)fd;
	(void)what;
	if (!mpesa_claim_start(m, &m->paying))
		return;
	/* longer than any call can take: a lease that ends means its daemon stopped */
	snprintf(lease, sizeof(lease), "%d", cfg->mpesa_timeout_ms / 1000 * 3 + 30);
	snprintf(max, sizeof(max), "%lld", (long long)cfg->mpesa_max_payout * 100);
	db_run_durable(m->app->dbbg, &payout_claim_due, p, util_now_ms() + 10000, payouts_claimed, m);
}

void mpesa_payouts_soon(struct mpesa *m, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	uint64_t at = util_now_ms() + (uint64_t)ms;

	if (m->stopping)
		return;
	if (evtimer_pending(m->payout_ev, NULL) && m->payout_at_ms <= at)
		return;
	m->payout_at_ms = at;
	evtimer_add(m->payout_ev, &tv);
}

/* NOTIFY chamad_payouts (a payout approved or to be sent again, by any
 * daemon or tool): from inside the pool, only note it.  arg is the app,
 * which outlives the pool's listeners; the module may be gone. */
static void on_notify(const char *channel, const char *payload, void *arg)
{
	struct app *app = arg;

	(void)channel;
	(void)payload;
	if (app->mpesa)
		mpesa_payouts_soon(app->mpesa, 0);
}

/* ---- the sweep: unknown outcomes go to the status query ---- */

static void swept(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;

	m->sweeping = false;
	if (r->status != DB_OK) {
		if (r->status != DB_CANCELLED)
			log_warn("mpesa: payout sweep: %s", r->error);
	} else if (PQntuples(r->res) == 1) {
		int moved = atoi(PQgetvalue(r->res, 0, 0)), unknown = atoi(PQgetvalue(r->res, 0, 1));

		if (moved) {
			log_warn("mpesa: %d payout(s) with no answer or no result in time: asking their status", moved);
			/* the questions are open: the status job asks them now */
			mpesa_status_wake(m->app);
		}
		if (unknown != m->b2c_unknown && unknown)
			/* for operators: money may have left, the status query decides */
			log_warn("mpesa: %d payout(s) of unknown outcome", unknown);
		m->b2c_unknown = unknown;
	}
	mpesa_unref(m);
}

void mpesa_payouts_sweep(struct mpesa *m)
{
	char at[CLOCK_TEXT_MAX];
	const char *p[1] = { clock_p_at(at) };

	mpesa_payouts_soon(m, 0);
	if (m->sweeping || m->quiescing)
		return;
	m->sweeping = true;
	mpesa_hold(m);
	db_run(m->app->dbbg, &payout_sweep_due, p, swept, m);
}

/* ---- the Result routes: recorded, then acknowledged ---- */

struct result {
	struct mpesa *m;
	struct http_ctx *ctx;
	char originator[72];
	char *body;
};

static void result_recorded(const struct db_result *r, void *arg)
{
	struct result *s = arg;
	struct http_ctx *ctx = s->ctx;
	struct mpesa *m = s->m;

	if (r->status == DB_OK && PQntuples(r->res) == 1) {
		const char *outcome = PQgetvalue(r->res, 0, 0);

		if (!strcmp(outcome, "ignored") || !strcmp(outcome, "stale")) {
			m->b2c_ignored++;
			log_msg(LOG_WARN, http_ctx_reqid(ctx), "mpesa: B2C result for %s %s: %s", s->originator,
				!strcmp(outcome, "stale") ? "(an earlier attempt, re-sent since: an operator checks it)"
							 : "(no payout of ours)", s->body);
		} else
			log_info("mpesa: B2C result %s: %s", s->originator, outcome);
		http_reply(ctx, 200, "application/json", B2C_ACK, sizeof(B2C_ACK) - 1);
		app_outbox_queued(m->app);
	} else if (r->status == DB_ERROR) {
		/* refused by the database itself (a bug): a retry would only
		 * repeat it; the payout stays as it is, and the sweep and the
		 * status query resolve it */
		log_msg(LOG_ERROR, http_ctx_reqid(ctx), "mpesa: B2C result %s NOT recorded (%s): %s", s->originator,
			r->error, s->body);
		http_reply(ctx, 200, "application/json", B2C_ACK, sizeof(B2C_ACK) - 1);
	} else {
		log_msg(LOG_ERROR, http_ctx_reqid(ctx), "mpesa: B2C result %s NOT recorded (%s): %s", s->originator,
			r->error ? r->error : db_status_name(r->status), s->body);
		http_reply_error(ctx, 503, "not recorded, try again");
	}
	http_ctx_release(ctx);
	s->ctx = NULL;
	free(s->body);
	free(s);
	mpesa_work_end(m);
}

static void b2c_result(struct http_ctx *ctx, const char *source)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	struct daraja_result res;
	struct result *s;
	char code[24], cents[24], at[CLOCK_TEXT_MAX];
	const char *p[8];

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	if (!m || daraja_result_parse(body, len, &res) < 0 || !res.originator_id) {
		daraja_result_clear(&res);
		http_reply_error(ctx, 400, "not a B2C result");
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->ctx = ctx;
	http_ctx_hold(ctx);
	s->body = xstrndup(body, len);
	snprintf(s->originator, sizeof(s->originator), "%s", res.originator_id);
	m->b2c_results++;
	snprintf(code, sizeof(code), "%lld", res.result_code);
	snprintf(cents, sizeof(cents), "%lld", res.amount_cents);
	p[0] = res.originator_id;
	p[1] = res.conversation_id;
	p[2] = code;
	p[3] = res.desc ? res.desc : "";
	p[4] = res.receipt ? res.receipt : res.transaction_id;
	p[5] = res.amount_cents >= 0 ? cents : NULL;
	p[6] = source;
	p[7] = clock_p_at(at);
	mpesa_work_begin(m);
	/* retried while the answer can still reach Safaricom in time */
	db_run_durable(app->dbbg, &payout_result_record, p,
		       util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, result_recorded, s);
	daraja_result_clear(&res);
}

void mpesa_b2c_result(struct http_ctx *ctx)
{
	b2c_result(ctx, "result");
}

/* The QueueTimeOutURL: the request expired in Safaricom's queue (not paid). */
void mpesa_b2c_timeout(struct http_ctx *ctx)
{
	b2c_result(ctx, "timeout");
}

/* ---- life ---- */

void mpesa_b2c_start(struct mpesa *m)
{
	m->payout_ev = evtimer_new(m->app->base, payout_tick, m);
	if (db_pool_listen(m->app->dbbg, "chamad_payouts", on_notify, m->app) < 0)
		log_warn("mpesa: cannot listen for payouts: the periodic pass finds them");
}

void mpesa_b2c_stop(struct mpesa *m)
{
	event_free(m->payout_ev);
	m->payout_ev = NULL;
}
