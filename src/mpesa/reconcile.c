/*
 * reconcile: the books against M-Pesa (schema/95_reconcile.sql; the
 * statements are dom/reconcile).
 *
 *   the job: every min([mpesa] reconcile_every_s, 300) seconds each daemon
 *      asks for the run of the period that just ended (periods of
 *      reconcile_every_s from local midnight, on the domain clock
 *      base/clock); an advisory lock and a unique index make it one run
 *      per period, whichever daemon asks.  Not at start-up: a daemon
 *      started (or restarted) at any time asks within five minutes.
 *   `chamad reconcile` writes a run (and NOTIFYs chamad_reconcile).
 *   a run is a claimed row: any daemon with M-Pesa configured claims it
 *      (after its own job asked, and every CLAIM_EVERY_S), one at a
 *      time, under a lease of reconcile_balance_wait_s + 300 s:
 *   -> the statement, page after page by OffSetValue, until an empty page
 *      (daraja_pull_transactions), each page recorded
 *   -> the Account Balance (daraja_account_balance): its Result comes to
 *      POST /mpesa/balance/result/<secret> (or .../timeout/<secret>) on
 *      any daemon, which records it and compares the run there
 *   -> or, with no result after reconcile_balance_wait_s, the claimant
 *      compares it with the balance unknown: a run never hangs.
 * A daemon that stops mid-run leaves its lease to end; the next claim
 * starts the run over.  Whoever compares a run logs its differences, one
 * line each, counts them (chamad_reconcile_differences) and wakes its SMS
 * sender (the officials' messages).
 */
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/reconcile.h"
#include "mpesa/mpesa_int.h"
#include "net/daraja.h"
#include "net/db.h"
#include "net/httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

/* how often a daemon looks for a run to do.  A poll, not a LISTEN: a pool
 * listens on one channel, and both pools' are taken (the SMS sender's,
 * the status rail's); reconcile_request still NOTIFYs chamad_reconcile
 * for the day a pool listens on more. */
#define CLAIM_EVERY_S 5
#define JOB_EVERY_MAX_S 300
#define LEASE_EXTRA_S 300
#define MAX_PAGES 10000

static const char *const kinds[] = { "float_mismatch", "balance_unknown", "receipt_missing_in_books",
				     "entry_missing_in_statement", "receipt_duplicated" };
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

struct recon_run;

struct recon {
	struct mpesa *m;
	struct event *claim_ev, *job_ev;
	bool claiming, asking;
	struct recon_run *run;	/* the one run this daemon holds, or NULL */
	uint64_t done, failed, diffs[NKINDS];
	long long last;		/* differences of the last run this daemon compared, -1 before one */
};

/* The run this daemon claimed, from its claim until it is compared,
 * failed, or no longer ours. */
struct recon_run {
	struct recon *rc;
	char id[24], attempt[12], tz[72], from[24], to[24], originator[64];
	long offset;
	int pages;
	bool busy;		/* a call or statement of the run is in flight */
	struct event *wait_ev;	/* waiting for the balance result */
};

static void claim_soon(struct recon *rc, int s);

static bool stopping(const struct recon *rc)
{
	return rc->m->stopping;
}

static void run_end(struct recon_run *run)
{
	struct recon *rc = run->rc;

	if (run->wait_ev)
		event_free(run->wait_ev);
	if (rc->run == run)
		rc->run = NULL;
	free(run);
	/* another run may be waiting */
	if (!stopping(rc))
		claim_soon(rc, 0);
}

/* ---- the report: whoever compared a run ---- */

static void reported(const struct db_result *r, void *arg)
{
	struct recon *rc = arg;
	struct mpesa *m = rc->m;
	int n = r->status == DB_OK ? PQntuples(r->res) : 0;

	if (r->status != DB_OK && r->status != DB_CANCELLED)
		log_warn("reconcile: reading a run's differences: %s", r->error);
	for (int i = 0; i < n; i++) {
		const char *kind = PQgetvalue(r->res, i, RECONCILE_ITEM_KIND);

		for (size_t k = 0; k < NKINDS; k++)
			if (!strcmp(kinds[k], kind))
				rc->diffs[k]++;
		log_warn("reconcile: difference: %s chama=%s receipt=%s amount_cents=%s %s %s %s", kind,
			 *PQgetvalue(r->res, i, RECONCILE_ITEM_CHAMA) ? PQgetvalue(r->res, i, RECONCILE_ITEM_CHAMA) : "-",
			 *PQgetvalue(r->res, i, RECONCILE_ITEM_RECEIPT) ? PQgetvalue(r->res, i, RECONCILE_ITEM_RECEIPT)
									 : "-",
			 *PQgetvalue(r->res, i, RECONCILE_ITEM_CENTS) ? PQgetvalue(r->res, i, RECONCILE_ITEM_CENTS) : "-",
			 PQgetvalue(r->res, i, RECONCILE_ITEM_NEW)[0] == 't' ? "new" : "again",
			 PQgetvalue(r->res, i, RECONCILE_ITEM_HANDLED), PQgetvalue(r->res, i, RECONCILE_ITEM_DETAILS));
	}
	if (r->status == DB_OK)
		rc->last = n;
	mpesa_unref(m);
}

/* Run run_id was compared here (differences: its count): logged, counted,
 * and the officials' messages sent. */
static void compared(struct recon *rc, const char *run_id, const char *differences)
{
	const char *p[1] = { run_id };

	rc->done++;
	log_info("reconcile: run %s compared: %s difference(s)", run_id, differences);
	app_outbox_queued(rc->m->app);
	mpesa_hold(rc->m);
	db_run(rc->m->app->dbbg, &reconcile_run_items, p, reported, rc);
}

/* ---- a run: the claimant's steps ---- */

static void finished(const struct db_result *r, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;

	run->busy = false;
	if (r->status == DB_OK && !PQgetisnull(r->res, 0, 0))
		compared(run->rc, run->id, PQgetvalue(r->res, 0, 0));
	else if (r->status != DB_OK && r->status != DB_CANCELLED)
		log_warn("reconcile: run %s: comparing: %s", run->id, r->error);
	run_end(run);
	mpesa_unref(m);
}

/* Compares the run now: the balance, if not reported by now, is unknown. */
static void finish(struct recon_run *run)
{
	struct mpesa *m = run->rc->m;
	char wait[16], at[CLOCK_TEXT_MAX];
	const char *p[5] = { run->id, m->me, run->attempt, wait, clock_p_at(at) };

	snprintf(wait, sizeof(wait), "%d", m->app->cfg->mpesa_reconcile_balance_wait_s);
	run->busy = true;
	mpesa_hold(m);
	db_run_durable(m->app->dbbg, &reconcile_finish_stmt, p, 0, finished, run);
}

static void waited(evutil_socket_t fd, short what, void *arg)
{
	struct recon_run *run = arg;

	(void)fd;
	(void)what;
	if (run->busy) {	/* the query's acknowledgement is still being recorded */
		struct timeval again = { 1, 0 };

		evtimer_add(run->wait_ev, &again);
		return;
	}
	log_warn("reconcile: run %s: no Account Balance result within %d s", run->id,
		 run->rc->m->app->cfg->mpesa_reconcile_balance_wait_s);
	finish(run);
}

static void wait_for_balance(struct recon_run *run)
{
	struct timeval tv = { run->rc->m->app->cfg->mpesa_reconcile_balance_wait_s, 0 };

	run->wait_ev = evtimer_new(run->rc->m->app->base, waited, run);
	evtimer_add(run->wait_ev, &tv);
}

static void ack_recorded(const struct db_result *r, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;

	run->busy = false;
	if (r->status != DB_OK || PQgetvalue(r->res, 0, 0)[0] != 't') {
		if (r->status != DB_OK && r->status != DB_CANCELLED)
			log_warn("reconcile: run %s: recording the balance query: %s", run->id, r->error);
		run_end(run);
	} else if (run->wait_ev == NULL && !stopping(run->rc)) {
		/* refused: compared now, with the balance unknown */
		finish(run);
	}
	mpesa_unref(m);
}

static void balance_acked(const struct daraja_ack *a, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;
	const char *p[7] = { run->id, m->me, run->attempt, "t", a->originator_id, a->conversation_id, NULL };
	char why[300];

	run->busy = false;
	if (a->outcome == DARAJA_CANCELLED || stopping(run->rc)) {
		run_end(run);
		mpesa_unref(m);
		return;
	}
	if (a->outcome == DARAJA_ACCEPTED || a->outcome == DARAJA_UNANSWERED) {
		/* unanswered: it may have been queued; its result may still come */
		if (a->outcome == DARAJA_UNANSWERED)
			log_warn("reconcile: run %s: Account Balance unanswered (%s); waiting for its result", run->id,
				 a->detail ? a->detail : "");
		wait_for_balance(run);
		if (a->outcome == DARAJA_UNANSWERED) {
			mpesa_unref(m);
			return;
		}
	} else {
		snprintf(why, sizeof(why), "Account Balance refused: %s%s%s", a->error_code ? a->error_code : "",
			 a->error_code ? " " : "", a->detail ? a->detail : "");
		log_warn("reconcile: run %s: %s", run->id, why);
		p[3] = "f";
		p[6] = why;
	}
	run->busy = true;
	mpesa_hold(m);
	db_run_durable(m->app->dbbg, &reconcile_balance_acked_stmt, p, 0, ack_recorded, run);
	mpesa_unref(m);
}

static void ask_balance(struct recon_run *run)
{
	struct mpesa *m = run->rc->m;
	const struct config *cfg = m->app->cfg;
	const char *sep = *cfg->mpesa_callback_secret ? "/" : "";
	char result[512], timeout[512];

	snprintf(result, sizeof(result), "%s/mpesa/balance/result%s%s", cfg->mpesa_public_url, sep,
		 cfg->mpesa_callback_secret);
	snprintf(timeout, sizeof(timeout), "%s/mpesa/balance/timeout%s%s", cfg->mpesa_public_url, sep,
		 cfg->mpesa_callback_secret);
	run->busy = true;
	mpesa_hold(m);
	daraja_account_balance(m->daraja, run->originator, result, timeout, balance_acked, run);
}

static void statement_recorded(const struct db_result *r, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;

	run->busy = false;
	if (r->status != DB_OK || PQgetisnull(r->res, 0, 0) || stopping(run->rc)) {
		if (r->status != DB_OK && r->status != DB_CANCELLED)
			log_warn("reconcile: run %s: recording the statement: %s", run->id, r->error);
		run_end(run);
	} else {
		log_info("reconcile: run %s: statement in (%ld line(s), %d page(s))", run->id, run->offset, run->pages);
		if (!strcmp(PQgetvalue(r->res, 0, 0), "reported"))
			finish(run);	/* a balance came in an earlier attempt */
		else
			ask_balance(run);
	}
	mpesa_unref(m);
}

static void failed(const struct db_result *r, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;

	run->busy = false;
	if (r->status == DB_OK && PQgetvalue(r->res, 0, 0)[0] == 't')
		run->rc->failed++;
	run_end(run);
	mpesa_unref(m);
}

static void fail(struct recon_run *run, const char *why)
{
	struct mpesa *m = run->rc->m;
	const char *p[4] = { run->id, m->me, run->attempt, why };

	log_error("reconcile: run %s failed: %s", run->id, why);
	run->busy = true;
	mpesa_hold(m);
	db_run_durable(m->app->dbbg, &reconcile_fail_stmt, p, 0, failed, run);
}

static void pull(struct recon_run *run);

static void page_recorded(const struct db_result *r, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;

	run->busy = false;
	if (r->status != DB_OK || atoi(PQgetvalue(r->res, 0, 0)) < 0 || stopping(run->rc)) {
		if (r->status != DB_OK && r->status != DB_CANCELLED)
			log_warn("reconcile: run %s: recording a statement page: %s", run->id, r->error);
		run_end(run);
	} else {
		pull(run);
	}
	mpesa_unref(m);
}

static void pulled(const struct daraja_pull_result *r, void *arg)
{
	struct recon_run *run = arg;
	struct mpesa *m = run->rc->m;
	char why[400];

	run->busy = false;
	if (r->outcome == DARAJA_CANCELLED || stopping(run->rc)) {
		run_end(run);
	} else if (r->outcome != DARAJA_ACCEPTED) {
		snprintf(why, sizeof(why), "the statement (Pull Transactions, offset %ld): %s%s%s", run->offset,
			 r->error_code ? r->error_code : "", r->error_code ? " " : "", r->detail ? r->detail : "");
		fail(run, why);
	} else if (r->n == 0) {
		const char *p[4] = { run->id, m->me, run->attempt, run->originator };

		/* the whole statement is in: the balance next */
		run->busy = true;
		mpesa_hold(m);
		db_run_durable(m->app->dbbg, &reconcile_statement_done_stmt, p, 0, statement_recorded, run);
	} else if (++run->pages > MAX_PAGES) {
		fail(run, "the statement has more pages than a run reads");
	} else {
		json_t *lines = json_array();
		char offset[24], *text;
		const char *p[5] = { run->id, m->me, run->attempt, offset, NULL };

		for (size_t i = 0; i < r->n; i++) {
			const struct daraja_pull_txn *t = &r->txns[i];

			json_array_append_new(lines, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:I}", "transaction_id",
							       t->transaction_id, "trx_date", t->trx_date, "msisdn",
							       t->msisdn, "transaction_type", t->transaction_type,
							       "bill_ref", t->bill_ref, "amount_cents",
							       (json_int_t)t->amount_cents));
		}
		text = json_dumps(lines, JSON_COMPACT);
		json_decref(lines);
		snprintf(offset, sizeof(offset), "%ld", run->offset);
		p[4] = text ? text : "[]";
		run->offset += (long)r->n;
		run->busy = true;
		mpesa_hold(m);
		db_run_durable(m->app->dbbg, &reconcile_statement_add_stmt, p, 0, page_recorded, run);
		free(text);
	}
	mpesa_unref(m);
}

static void pull(struct recon_run *run)
{
	struct mpesa *m = run->rc->m;

	run->busy = true;
	mpesa_hold(m);
	daraja_pull_transactions(m->daraja, run->from, run->to, run->offset, pulled, run);
}

static void claimed(const struct db_result *r, void *arg)
{
	struct recon *rc = arg;
	struct mpesa *m = rc->m;
	struct recon_run *run;

	rc->claiming = false;
	if (r->status != DB_OK) {
		if (r->status != DB_CANCELLED)
			log_warn("reconcile: claiming a run: %s", r->error);
		mpesa_unref(m);
		return;
	}
	if (PQntuples(r->res) == 0 || stopping(rc)) {
		mpesa_unref(m);
		return;
	}
	run = xcalloc(1, sizeof(*run));
	run->rc = rc;
	snprintf(run->id, sizeof(run->id), "%s", PQgetvalue(r->res, 0, RECONCILE_CLAIM_RUN));
	snprintf(run->attempt, sizeof(run->attempt), "%s", PQgetvalue(r->res, 0, RECONCILE_CLAIM_ATTEMPT));
	snprintf(run->tz, sizeof(run->tz), "%s", PQgetvalue(r->res, 0, RECONCILE_CLAIM_TZ));
	snprintf(run->from, sizeof(run->from), "%s", PQgetvalue(r->res, 0, RECONCILE_CLAIM_FROM));
	snprintf(run->to, sizeof(run->to), "%s", PQgetvalue(r->res, 0, RECONCILE_CLAIM_TO));
	/* unique per run and attempt: the result names the query it answers */
	snprintf(run->originator, sizeof(run->originator), "reconcile-%s-%s-%.8s", run->id, run->attempt,
		 strrchr(m->me, ':') ? strrchr(m->me, ':') + 1 : m->me);
	rc->run = run;
	log_info("reconcile: run %s (attempt %s): statement %s .. %s (%s)", run->id, run->attempt, run->from, run->to,
		 run->tz);
	pull(run);
	mpesa_unref(m);
}

static void claim_tick(evutil_socket_t fd, short what, void *arg)
{
	struct recon *rc = arg;
	struct mpesa *m = rc->m;
	char lease[16], margin[16];
	const char *p[3] = { m->me, lease, margin };

	(void)fd;
	(void)what;
	if (!stopping(rc))
		claim_soon(rc, CLAIM_EVERY_S);
	if (rc->run || rc->claiming || m->quiescing)
		return;
	rc->claiming = true;
	snprintf(lease, sizeof(lease), "%d", m->app->cfg->mpesa_reconcile_balance_wait_s + LEASE_EXTRA_S);
	snprintf(margin, sizeof(margin), "%d", RECONCILE_MARGIN_S);
	mpesa_hold(m);
	db_run(m->app->dbbg, &reconcile_claim_stmt, p, claimed, rc);
}

static void claim_soon(struct recon *rc, int s)
{
	struct timeval tv = { s, 0 };

	evtimer_add(rc->claim_ev, &tv);
}

/* ---- the job ---- */

static void job_asked(const struct db_result *r, void *arg)
{
	struct recon *rc = arg;

	rc->asking = false;
	if (r->status != DB_OK) {
		if (r->status != DB_CANCELLED)
			log_warn("reconcile: the job: %s", r->error);
	} else if (!PQgetisnull(r->res, 0, 0)) {
		log_info("reconcile: the job asked for run %s", PQgetvalue(r->res, 0, 0));
		if (!stopping(rc))
			claim_soon(rc, 0);
	}
	mpesa_unref(rc->m);
}

static void job_tick(evutil_socket_t fd, short what, void *arg)
{
	struct recon *rc = arg;
	struct mpesa *m = rc->m;
	const struct config *cfg = m->app->cfg;
	char at[CLOCK_TEXT_MAX], every[16];
	const char *p[4] = { clock_p_at(at), cfg->ussd_timezone, every, m->me };

	(void)fd;
	(void)what;
	if (rc->asking || m->quiescing || cfg->mpesa_reconcile_every_s <= 0)
		return;
	rc->asking = true;
	snprintf(every, sizeof(every), "%d", cfg->mpesa_reconcile_every_s);
	mpesa_hold(m);
	db_run(m->app->dbbg, &reconcile_job_request_stmt, p, job_asked, rc);
}

void mpesa_reconcile_start(struct mpesa *m)
{
	struct recon *rc = xcalloc(1, sizeof(*rc));
	int every = m->app->cfg->mpesa_reconcile_every_s;
	struct timeval job = { every > 0 && every < JOB_EVERY_MAX_S ? every : JOB_EVERY_MAX_S, 0 };

	rc->m = m;
	rc->last = -1;
	rc->claim_ev = evtimer_new(m->app->base, claim_tick, rc);
	rc->job_ev = event_new(m->app->base, -1, EV_PERSIST, job_tick, rc);
	event_add(rc->job_ev, &job);
	m->recon = rc;
	/* runs a CLI asked for, or that a stopped daemon left */
	claim_soon(rc, 0);
}

void mpesa_reconcile_stop(struct mpesa *m)
{
	struct recon *rc = m->recon;

	if (!rc)
		return;
	event_free(rc->claim_ev);
	event_free(rc->job_ev);
	rc->claim_ev = rc->job_ev = NULL;
	/* a run waiting for its balance has nothing in flight: its lease
	 * ends and another daemon starts it over; one with a call in flight
	 * ends in that call's (cancelled) callback */
	if (rc->run && !rc->run->busy)
		run_end(rc->run);
}

void mpesa_reconcile_free(struct mpesa *m)
{
	free(m->recon);
	m->recon = NULL;
}

/* ---- the Account Balance result routes ---- */

struct balance {
	struct mpesa *m;
	struct http_ctx *ctx;
	char originator[104];
};

static void balance_recorded(const struct db_result *r, void *arg)
{
	struct balance *b = arg;
	struct mpesa *m = b->m;
	struct recon *rc = m->recon;

	if (r->status != DB_OK) {
		log_msg(LOG_ERROR, http_ctx_reqid(b->ctx), "reconcile: balance result %s NOT recorded: %s", b->originator,
			r->error);
		http_reply_error(b->ctx, 503, "not recorded, try again");
	} else {
		if (PQntuples(r->res) == 0) {
			/* a result for a query we never made: logged, never acted on */
			log_msg(LOG_WARN, http_ctx_reqid(b->ctx),
				"reconcile: balance result %s matches no run of ours: ignored", b->originator);
		} else if (!PQgetisnull(r->res, 0, 1) && rc && !m->stopping) {
			const char *id = PQgetvalue(r->res, 0, 0);

			compared(rc, id, PQgetvalue(r->res, 0, 1));
			/* this daemon's own run, compared here: its wait is over */
			if (rc->run && rc->run->wait_ev && !rc->run->busy && !strcmp(rc->run->id, id))
				run_end(rc->run);
		}
		http_reply(b->ctx, 200, "application/json", DARAJA_RESULT_ACK, sizeof(DARAJA_RESULT_ACK) - 1);
	}
	http_ctx_release(b->ctx);
	free(b);
	mpesa_work_end(m);
}

static void balance_route(struct http_ctx *ctx, bool timeout)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	struct daraja_result res;
	struct balance *b;
	char code[24], cents[24], at[CLOCK_TEXT_MAX];
	long long funds;

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	if (daraja_result_parse(body, len, &res) < 0 || !m || (!res.originator_id && !res.conversation_id)) {
		daraja_result_clear(&res);
		http_reply_error(ctx, 400, "not an Account Balance result");
		return;
	}
	funds = res.account_balance ? daraja_balance_cents(res.account_balance, app->cfg->mpesa_reconcile_float_account)
				    : -1;
	snprintf(code, sizeof(code), "%lld", res.result_code);
	snprintf(cents, sizeof(cents), "%lld", funds);
	b = xcalloc(1, sizeof(*b));
	b->m = m;
	b->ctx = ctx;
	snprintf(b->originator, sizeof(b->originator), "%s", res.originator_id ? res.originator_id : res.conversation_id);
	http_ctx_hold(ctx);
	{
		const char *p[9] = { res.originator_id ? res.originator_id : "",
				     res.conversation_id ? res.conversation_id : "",
				     code,
				     res.desc,
				     cents,
				     res.account_balance,
				     timeout ? "t" : "f",
				     app->cfg->mpesa_reconcile_float_account,
				     clock_p_at(at) };

		mpesa_work_begin(m);
		/* retried while the answer can still reach Safaricom in time */
		db_run_durable(app->dbbg, &reconcile_balance_result_stmt, p,
			       util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, balance_recorded, b);
	}
	daraja_result_clear(&res);
}

void mpesa_balance_result(struct http_ctx *ctx)
{
	balance_route(ctx, false);
}

void mpesa_balance_timeout(struct http_ctx *ctx)
{
	balance_route(ctx, true);
}

void mpesa_reconcile_metrics(struct mpesa *m, struct buf *out)
{
	struct recon *rc = m->recon;

	if (!rc)
		return;
	buf_printf(out,
		   "# HELP chamad_reconcile_runs_total Reconcile runs this daemon compared, or failed.\n"
		   "# TYPE chamad_reconcile_runs_total counter\n"
		   "chamad_reconcile_runs_total{status=\"done\"} %llu\nchamad_reconcile_runs_total{status=\"failed\"} %llu\n"
		   "# HELP chamad_reconcile_differences Differences found by the last run this daemon compared.\n"
		   "# TYPE chamad_reconcile_differences gauge\nchamad_reconcile_differences %lld\n"
		   "# HELP chamad_reconcile_differences_total Differences found by the runs this daemon compared.\n"
		   "# TYPE chamad_reconcile_differences_total counter\n",
		   (unsigned long long)rc->done, (unsigned long long)rc->failed, rc->last < 0 ? 0 : rc->last);
	for (size_t k = 0; k < NKINDS; k++)
		buf_printf(out, "chamad_reconcile_differences_total{kind=\"%s\"} %llu\n", kinds[k],
			   (unsigned long long)rc->diffs[k]);
}
