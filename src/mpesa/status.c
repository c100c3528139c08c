/*
 * status: the Transaction Status rail (see mpesa_int.h, dom/mpesa_status.h).
 *
 * A question is a row (mpesa_status_queries), opened in SQL by its purpose
 * (mpesa_status_open).  This job claims the due rows under a lease (any
 * daemon: SKIP LOCKED), sends each as a Transaction Status query and
 * records what came of the send; a row whose result does not come within
 * [mpesa] status_timeout_s is due again, up to status_max_attempts, then
 * given up (unknown).  Woken by the NOTIFY of a question opened outside
 * chamad, by mpesa_status_wake from chamad's own writers, by the next due
 * time the claim reports, and by the module's periodic pass.
 *
 * A crash loses nothing: a row claimed and never recorded is claimed again
 * when its lease ends and sent again, which is harmless: a status query
 * moves no money, and whichever result comes first answers the row.
 *
 * The result (POST /mpesa/status/result/<secret>, or the QueueTimeOutURL
 * /mpesa/status/timeout/<secret>) is stored with its dispatch to the
 * purpose in one statement, and only then acknowledged; a result for a
 * query we never sent is logged, counted and ignored.
 */
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/mpesa_status.h"
#include "mpesa/mpesa_int.h"
#include "net/daraja.h"
#include "net/db.h"
#include "net/httpd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

/* the longest the job sleeps on a row due later: beyond it, it looks again */
#define STATUS_NEXT_MAX_MS 60000

/* One query being sent, from its claim until what came of it is recorded. */
struct sq {
	struct mpesa *m;
	struct held held;
	char originator[104];
	int again_ms;		/* when the row is due again, once recorded */
};

static void url_of(const struct config *cfg, const char *what, char *out, size_t n)
{
	snprintf(out, n, "%s/mpesa/status/%s%s%s", cfg->mpesa_public_url, what, *cfg->mpesa_callback_secret ? "/" : "",
		 cfg->mpesa_callback_secret);
}

static void sq_done(struct sq *q)
{
	struct mpesa *m = q->m;

	mpesa_held_release(m, &q->held);
	free(q);
	mpesa_work_end(m);
}

static void send_recorded(const struct db_result *r, void *arg)
{
	struct sq *q = arg;

	/* not recorded: the lease ends and any daemon sends it again */
	if (r->status != DB_OK)
		log_warn("mpesa: status query %s: send not recorded: %s", q->held.id, r->error);
	else if (!q->m->stopping)
		/* due again then (unless its result comes first): the claim that
		 * took it could not see that */
		mpesa_status_soon(q->m, q->again_ms);
	sq_done(q);
}

static void status_acked(const struct daraja_ack *a, void *arg)
{
	struct sq *q = arg;
	struct mpesa *m = q->m;
	char timeout[16];
	const char *outcome;
	const char *p[6];

	if (a->outcome == DARAJA_CANCELLED) {	/* shutting down: the lease resolves it */
		sq_done(q);
		return;
	}
	switch (a->outcome) {
	case DARAJA_ACCEPTED:
		outcome = "accepted";
		m->status_sent++;
		break;
	case DARAJA_REFUSED:
		outcome = "refused";
		log_warn("mpesa: status query %s refused: %s", q->originator, a->detail);
		break;
	case DARAJA_UNSENT:
		outcome = "unsent";
		break;
	default:
		/* it may have been queued: its result may still come */
		outcome = "unanswered";
		m->status_sent++;
		log_warn("mpesa: status query %s unanswered: %s", q->originator, a->detail);
		break;
	}
	snprintf(timeout, sizeof(timeout), "%d", m->app->cfg->mpesa_status_timeout_s);
	/* as mpesa_status_sent sets next_at, and a little after */
	q->again_ms = (a->outcome == DARAJA_UNSENT ? 5000 : m->app->cfg->mpesa_status_timeout_s * 1000) + 100;
	p[0] = q->held.id;
	p[1] = m->me;
	p[2] = outcome;
	p[3] = a->outcome == DARAJA_ACCEPTED ? a->conversation_id : NULL;
	p[4] = a->outcome == DARAJA_ACCEPTED ? NULL : a->detail;
	p[5] = timeout;
	db_run_durable(m->app->dbbg, &mpesa_status_record_send, p, 0, send_recorded, q);
}

static void send_one(struct mpesa *m, const PGresult *res, int i)
{
	const struct config *cfg = m->app->cfg;
	struct sq *q = xcalloc(1, sizeof(*q));
	char result_url[512], timeout_url[512];
	struct daraja_status_req req = { 0 };

	q->m = m;
	mpesa_held_add(m, &q->held, HELD_STATUS, PQgetvalue(res, i, MST_CLAIM_ID));
	snprintf(q->originator, sizeof(q->originator), "%s", PQgetvalue(res, i, MST_CLAIM_ORIGINATOR));
	url_of(cfg, "result", result_url, sizeof(result_url));
	url_of(cfg, "timeout", timeout_url, sizeof(timeout_url));
	req.originator_id = q->originator;
	req.transaction_id = PQgetisnull(res, i, MST_CLAIM_TXN) ? NULL : PQgetvalue(res, i, MST_CLAIM_TXN);
	req.original_originator_id = PQgetisnull(res, i, MST_CLAIM_ORIGINAL) ? NULL
									   : PQgetvalue(res, i, MST_CLAIM_ORIGINAL);
	req.result_url = result_url;
	req.timeout_url = timeout_url;
	req.remarks = "Status";
	log_info("mpesa: status query %s (attempt %s) for %s", q->originator, PQgetvalue(res, i, MST_CLAIM_ATTEMPT),
		 req.transaction_id ? req.transaction_id : req.original_originator_id);
	mpesa_work_begin(m);
	daraja_txn_status(m->daraja, &req, status_acked, q);
}

static void status_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;
	int rows = r->status == DB_OK ? PQntuples(r->res) : 0, n = 0;
	long long next = -1;

	for (int i = 0; i < rows; i++) {
		if (!PQgetisnull(r->res, i, MST_CLAIM_NEXT_MS))
			next = atoll(PQgetvalue(r->res, i, MST_CLAIM_NEXT_MS));
		if (PQgetisnull(r->res, i, MST_CLAIM_ID))	/* the row that says none was due */
			continue;
		n++;
		if (!m->stopping)
			send_one(m, r->res, i);
	}
	if (next >= 0)
		mpesa_status_soon(m, next > STATUS_NEXT_MAX_MS ? STATUS_NEXT_MAX_MS : (int)next);
	mpesa_claim_end(m, &m->statusing, r, "status queries", n, MPESA_STATUS_BATCH, mpesa_status_soon);
}

static void given_up(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;

	if (r->status != DB_OK) {
		if (r->status != DB_CANCELLED)
			log_warn("mpesa: giving up status queries: %s", r->error);
	} else {
		for (int i = 0; i < PQntuples(r->res); i++)
			log_warn("mpesa: status query %s (%s %s): no result after every attempt: %s",
				 PQgetvalue(r->res, i, 0), PQgetvalue(r->res, i, 1), PQgetvalue(r->res, i, 2),
				 PQgetvalue(r->res, i, 3)[0] == 't' ? "unknown" : "its purpose failed, kept");
	}
	mpesa_unref(m);
}

void mpesa_status_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;
	const struct config *cfg = m->app->cfg;
	char lease[16], max[16], at[CLOCK_TEXT_MAX];
	const char *p[3] = { m->me, lease, max };
	const char *pg[2] = { max, clock_p_at(at) };

	(void)fd;
	(void)what;
	if (!mpesa_claim_start(m, &m->statusing))
		return;
	snprintf(lease, sizeof(lease), "%d", cfg->mpesa_timeout_ms / 1000 * 3 + 30);
	snprintf(max, sizeof(max), "%d", cfg->mpesa_status_max_attempts);
	/* the spent ones first: their outcome is unknown (the purposes decide) */
	mpesa_hold(m);
	db_run(m->app->dbbg, &mpesa_status_give_up_spent, pg, given_up, m);
	db_run_durable(m->app->dbbg, &mpesa_status_claim_due, p, util_now_ms() + 10000, status_claimed, m);
}

void mpesa_status_soon(struct mpesa *m, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	uint64_t at = util_now_ms() + (uint64_t)ms;

	if (m->stopping)
		return;
	if (evtimer_pending(m->status_ev, NULL) && m->status_at_ms <= at)
		return;
	m->status_at_ms = at;
	evtimer_add(m->status_ev, &tv);
}

void mpesa_status_wake(struct app *app)
{
	if (app->mpesa)
		mpesa_status_soon(app->mpesa, 0);
}

/* A question opened outside chamad (psql, a tool): mpesa_status_open NOTIFYs. */
static void status_notified(const char *channel, const char *payload, void *arg)
{
	(void)channel;
	(void)payload;
	mpesa_status_wake(arg);
}

void mpesa_status_start(struct mpesa *m)
{
	m->status_ev = evtimer_new(m->app->base, mpesa_status_tick, m);
	/* the foreground pool: the background one LISTENs for the SMS sender */
	if (db_pool_listen(m->app->db, "chamad_mpesa_status", status_notified, m->app) < 0)
		log_warn("mpesa: cannot listen for status queries: the job polls");
	mpesa_status_soon(m, 0);
}

void mpesa_status_stop(struct mpesa *m)
{
	event_free(m->status_ev);
	m->status_ev = NULL;
}

/* ---- the Result: stored with its dispatch, then acknowledged ---- */

struct res {
	struct mpesa *m;
	struct http_ctx *ctx;
	char *body;
	char originator[104];
};

static void result_recorded(const struct db_result *r, void *arg)
{
	struct res *s = arg;
	struct http_ctx *ctx = s->ctx;
	const char *outcome = r->status == DB_OK && PQntuples(r->res) == 1 ? PQgetvalue(r->res, 0, MST_RES_OUTCOME) : "";

	if (r->status != DB_OK) {
		/* not kept: say so, so the sender may try again, and keep it in the log */
		log_msg(LOG_ERROR, http_ctx_reqid(ctx), "mpesa: status result NOT stored (%s): %s", r->error, s->body);
		http_reply_error(ctx, 503, "not stored, try again");
	} else {
		if (!strcmp(outcome, "unmatched")) {
			s->m->status_unmatched++;
			log_msg(LOG_WARN, http_ctx_reqid(ctx),
				"mpesa: status result for %s: no query of ours; ignored: %.400s", s->originator, s->body);
		} else {
			log_msg(LOG_INFO, http_ctx_reqid(ctx), "mpesa: status result for query %s (%s %s): %s%s",
				PQgetvalue(r->res, 0, MST_RES_ID), PQgetvalue(r->res, 0, MST_RES_PURPOSE),
				PQgetvalue(r->res, 0, MST_RES_REF), outcome,
				!strcmp(outcome, "answered") ? (PQgetvalue(r->res, 0, MST_RES_FOUND)[0] == 't'
									? ", found"
									: ", not found")
							     : "");
			if (!strcmp(outcome, "retry"))
				mpesa_status_soon(s->m, 0);
			else
				app_outbox_queued(s->m->app);	/* the purpose may have queued messages */
		}
		http_reply(ctx, 200, "application/json", DARAJA_RESULT_ACK, sizeof(DARAJA_RESULT_ACK) - 1);
	}
	http_ctx_release(ctx);
	free(s->body);
	mpesa_work_end(s->m);
	free(s);
}

static void set_text(json_t *o, const char *key, const char *v)
{
	json_object_set_new(o, key, v ? json_string(v) : json_null());
}

static void set_cents(json_t *o, const char *key, long long v)
{
	json_object_set_new(o, key, v >= 0 ? json_integer((json_int_t)v) : json_null());
}

static void status_result_route(struct http_ctx *ctx, bool timeout)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	struct daraja_result dr;
	struct res *s;
	json_t *res;
	char *text, code[24], at[CLOCK_TEXT_MAX];
	const char *p[6];

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	if (!m || daraja_result_parse(body, len, &dr) < 0 || dr.result_code < INT_MIN || dr.result_code > INT_MAX ||
	    (!dr.originator_id && !dr.conversation_id)) {
		if (m)
			daraja_result_clear(&dr);
		http_reply_error(ctx, 400, "not a Result");
		return;
	}
	m->status_results++;
	res = json_object();
	json_object_set_new(res, "result_code", json_integer((json_int_t)dr.result_code));
	set_text(res, "desc", dr.desc);
	set_cents(res, "amount_cents", dr.amount_cents);
	set_text(res, "receipt", dr.receipt);
	set_text(res, "status", dr.status);
	set_text(res, "debit_party", dr.debit_party);
	set_text(res, "credit_party", dr.credit_party);
	set_text(res, "reason", dr.reason);
	set_text(res, "originator_id", dr.originator_id);
	set_text(res, "conversation_id", dr.conversation_id);
	set_text(res, "transaction_id", dr.transaction_id);
	set_text(res, "completed", dr.completed);
	text = json_dumps(res, JSON_COMPACT);
	json_decref(res);
	snprintf(code, sizeof(code), "%lld", dr.result_code);
	s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->ctx = ctx;
	s->body = xstrndup(body, len);
	snprintf(s->originator, sizeof(s->originator), "%s", dr.originator_id ? dr.originator_id : "");
	http_ctx_hold(ctx);
	p[0] = dr.originator_id;
	p[1] = dr.conversation_id;
	p[2] = code;
	p[3] = text;
	p[4] = timeout ? "true" : "false";
	p[5] = clock_p_at(at);
	mpesa_work_begin(m);
	/* retried while the answer can still reach Safaricom in time */
	db_run_durable(app->dbbg, &mpesa_status_record_result, p,
		       util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, result_recorded, s);
	free(text);
	daraja_result_clear(&dr);
}

void mpesa_status_result(struct http_ctx *ctx)
{
	status_result_route(ctx, false);
}

void mpesa_status_timeout(struct http_ctx *ctx)
{
	status_result_route(ctx, true);
}
