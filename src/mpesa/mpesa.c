/*
 * mpesa: money in by Safaricom M-Pesa (see mpesa_int.h for the files).
 *
 *   a member confirms a contribution on USSD -> an mpesa_requests row due
 *      [mpesa] push_delay_ms later (push_at), and the session ENDs (the
 *      prompt cannot show while it is open)
 *   -> the push job: any daemon claims the due row under a lease and
 *      pushes it (net/daraja: OAuth token, STK push) -> 'pushed' with its
 *      CheckoutRequestID
 *   -> POST /mpesa/stk/callback/<secret> -> stored, settled (stk.c)
 *   -> or, with no callback after query_after_s, the status query job
 *      settles it (a callback that comes late then changes nothing).
 *
 * Waking the push job.  The row is the push: USSD only records it.  This
 * daemon then wakes its own push job when the row is due (the
 * app->mpesa_requested hook, wired by main.c: ussd never calls into mpesa);
 * every claim also returns when the next unclaimed row is due, so a daemon
 * that has looked once pushes the rows it saw at their push_at, whoever
 * wrote them; and the periodic pass ([mpesa] query_every_s, and once at
 * start-up) picks up the rest: rows written by a daemon that died before
 * their push_at, and rows past the push window, which it closes with the
 * SMS saying no payment started.  So a daemon killed between the USSD END
 * and the push loses nothing: the next daemon pushes the row at its
 * push_at (never earlier: the member sees the END first), or closes it.
 * No NOTIFY: a NOTIFY serialises the commits of every transaction that
 * sends one (migration 016), and it would only help in the rare case
 * where the writer dies in the push_delay_ms between the row and its push
 * while another daemon stays up; that case waits for the periodic pass.
 */
#include "mpesa/mpesa.h"
#include "app.h"
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
#include <unistd.h>

#include <event2/event.h>

/* the longest the push job sleeps on a row due later: beyond it, it looks again */
#define PUSH_NEXT_MAX_MS 60000

static void pushes_soon(struct mpesa *m, int ms);

static void db_logged(const struct db_result *r, void *arg)
{
	if (r->status != DB_OK)
		log_warn("mpesa: %s: %s", (const char *)arg, r->error);
}

/* ---- the life of work in flight ---- */

void mpesa_hold(struct mpesa *m)
{
	m->refs++;
}

void mpesa_unref(struct mpesa *m)
{
	xassert(m->refs > 0);
	if (--m->refs == 0) {
		/* nothing in flight points here any more: every claim was released */
		xassert(!m->held && m->unrecorded == 0);
		mpesa_reconcile_free(m);
		free(m);
	}
}

void mpesa_work_begin(struct mpesa *m)
{
	m->unrecorded++;
	mpesa_hold(m);
}

void mpesa_work_end(struct mpesa *m)
{
	xassert(m->unrecorded > 0);
	m->unrecorded--;
	mpesa_unref(m);
}

bool mpesa_claim_start(struct mpesa *m, struct claim *c)
{
	if (m->quiescing)
		return false;
	if (c->running) {
		c->again = true;
		return false;
	}
	c->running = true;
	mpesa_hold(m);
	return true;
}

void mpesa_claim_end(struct mpesa *m, struct claim *c, const struct db_result *r, const char *what, int claimed,
		     int batch, void (*soon)(struct mpesa *m, int ms))
{
	xassert(c->running);
	c->running = false;
	if (r->status != DB_OK && r->status != DB_CANCELLED)
		log_warn("mpesa: claiming %s: %s", what, r->error);
	if (claimed == batch || c->again) {
		c->again = false;
		soon(m, 0);
	}
	mpesa_unref(m);
}

void mpesa_held_add(struct mpesa *m, struct held *h, enum held_kind kind, const char *id)
{
	xassert(!h->linked);
	for (const struct held *o = m->held; o; o = o->next)
		/* push_attempts goes from 0 to 1 once: a request handed to
		 * Daraja is never claimed again; a payout's attempt (its
		 * originator id) is claimed once */
		xassert(!(kind != HELD_CALLBACK && o->kind == kind && o->sent && !strcmp(o->id, id)));
	h->kind = kind;
	snprintf(h->id, sizeof(h->id), "%s", id);
	h->sent = false;
	h->linked = true;
	h->next = m->held;
	m->held = h;
}

void mpesa_held_release(struct mpesa *m, struct held *h)
{
	struct held **pp = &m->held;

	/* released once: it is listed until now */
	xassert(h->linked);
	while (*pp && *pp != h)
		pp = &(*pp)->next;
	xassert(*pp == h);
	*pp = h->next;
	h->next = NULL;
	h->linked = false;
}

/* ---- the push: a claimed row ---- */

/* One request being pushed, from its claim until its outcome is recorded. */
struct push {
	struct mpesa *m;
	struct held held;
	char checkout[72];
};

static void push_done(struct push *rec)
{
	struct mpesa *m = rec->m;

	mpesa_held_release(m, &rec->held);
	free(rec);
	mpesa_work_end(m);
}

static void outcome_recorded(const struct db_result *r, void *arg)
{
	struct push *c = arg;

	if (r->status != DB_OK)	/* only a real refusal or shutdown gets here: the lease resolves it */
		log_warn("mpesa: request %s: outcome not recorded: %s", c->held.id, r->error);
	else if (c->checkout[0])
		mpesa_callbacks_soon(c->m, 0);	/* a callback may have overtaken this answer */
	else
		app_outbox_queued(c->m->app);	/* a failed push's notice */
	push_done(c);
}

/* The push's answer, recorded until PostgreSQL has it.  No answer at all
 * (timeout, reset) may still mean Daraja prompted the member: 'unknown',
 * never pushed again; its callback is matched by phone and amount. */
static void pushed(const struct daraja_push_result *r, void *arg)
{
	struct push *rec = arg;
	struct mpesa *m = rec->m;
	char after[16], why[300];

	if (r->outcome == DARAJA_CANCELLED) {	/* shutting down: the lease resolves it */
		push_done(rec);
		return;
	}
	m->pushes++;
	snprintf(after, sizeof(after), "%d", m->app->cfg->mpesa_query_after_s);
	if (r->outcome == DARAJA_ACCEPTED) {
		const char *p[4] = { rec->held.id, r->checkout, r->merchant, after };

		snprintf(rec->checkout, sizeof(rec->checkout), "%s", r->checkout);
		db_run_durable(m->app->dbbg, &payment_push_accepted, p, 0, outcome_recorded, rec);
	} else if (r->outcome == DARAJA_UNSENT) {
		const char *p[1] = { rec->held.id };

		/* no token, so nothing reached Daraja: due again in a moment */
		rec->held.sent = false;
		db_run_durable(m->app->dbbg, &payment_push_unsent, p, 0, outcome_recorded, rec);
	} else if (r->outcome == DARAJA_REFUSED) {
		const char *p[2] = { rec->held.id, why };

		snprintf(why, sizeof(why), "push refused: %s", r->detail);
		log_warn("mpesa: request %s: %s", rec->held.id, why);
		/* the member learns it by SMS: the USSD session is over */
		db_run_durable(m->app->dbbg, &payment_push_refused, p, 0, outcome_recorded, rec);
	} else {
		const char *p[2] = { rec->held.id, why };

		snprintf(why, sizeof(why), "push unanswered: %s", r->detail);
		log_warn("mpesa: request %s: %s; waiting for a callback", rec->held.id, why);
		db_run_durable(m->app->dbbg, &payment_push_unknown, p, 0, outcome_recorded, rec);
	}
	/* the count mpesa_work_begin took for the push passes to its record */
}

static void push_one(struct mpesa *m, const PGresult *res, int i)
{
	const struct config *cfg = m->app->cfg;
	struct push *rec = xcalloc(1, sizeof(*rec));
	char cb[512];
	struct daraja_push p = { PQgetvalue(res, i, 1), atoll(PQgetvalue(res, i, 2)), PQgetvalue(res, i, 3),
				 "Contribution", cb };

	rec->m = m;
	mpesa_held_add(m, &rec->held, HELD_PUSH, PQgetvalue(res, i, 0));
	snprintf(cb, sizeof(cb), "%s/mpesa/stk/callback%s%s", cfg->mpesa_public_url, *cfg->mpesa_callback_secret ? "/" : "",
		 cfg->mpesa_callback_secret);
	mpesa_work_begin(m);
	rec->held.sent = true;
	daraja_stk_push(m->daraja, &p, pushed, rec);
}

static void push_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;
	int rows = r->status == DB_OK ? PQntuples(r->res) : 0, n = 0;
	long long next = -1;

	for (int i = 0; i < rows; i++) {
		if (!PQgetisnull(r->res, i, 4))
			next = atoll(PQgetvalue(r->res, i, 4));
		if (PQgetisnull(r->res, i, 0))	/* the row that says none was due */
			continue;
		n++;
		if (!m->stopping)
			push_one(m, r->res, i);
	}
	/* the next row is due later: look again then (a full batch, or a
	 * wake-up during this claim, looks again at once) */
	if (next >= 0)
		pushes_soon(m, next > PUSH_NEXT_MAX_MS ? PUSH_NEXT_MAX_MS : (int)next);
	mpesa_claim_end(m, &m->pushing, r, "pushes", n, PAYMENT_PUSH_BATCH, pushes_soon);
}

/* Claims due pushes (SKIP LOCKED: several daemons share them) under a
 * lease; each is tried once: push_attempts can only go from 0 to 1. */
static void push_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;
	char lease[16];
	const char *p[2] = { m->me, lease };

	(void)fd;
	(void)what;
	if (!mpesa_claim_start(m, &m->pushing))
		return;
	snprintf(lease, sizeof(lease), "%d", m->app->cfg->mpesa_timeout_ms / 1000 * 3 + 30);
	db_run_durable(m->app->dbbg, &payment_push_claim, p, util_now_ms() + 10000, push_claimed, m);
}

/* Runs push_tick in ms (0: on the next loop pass), unless it already will
 * run sooner. */
static void pushes_soon(struct mpesa *m, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	uint64_t at = util_now_ms() + (uint64_t)ms;

	if (m->stopping)
		return;
	if (evtimer_pending(m->push_ev, NULL) && m->push_at_ms <= at)
		return;
	m->push_at_ms = at;
	evtimer_add(m->push_ev, &tv);
}

void mpesa_push_soon(struct app *app)
{
	/* the row says when it is due (push_at); if this wake-up comes a
	 * little early, the claim says how long to wait */
	if (app->mpesa)
		pushes_soon(app->mpesa, app->cfg->mpesa_push_delay_ms);
}

/* ---- the status query job ---- */

struct query {
	struct mpesa *m;
	char checkout[72];
};

static void queried(const struct daraja_query_result *r, void *arg)
{
	struct query *q = arg;

	if (r->outcome != DARAJA_CANCELLED)
		q->m->queries++;
	if (r->outcome == DARAJA_ACCEPTED && !q->m->stopping)
		mpesa_settle_queried(q->m, q->checkout, r->result_code, r->result_desc);
	else if (r->outcome != DARAJA_CANCELLED)
		/* still being processed, or Daraja busy: the next run asks again */
		log_debug("mpesa: query %s: not decided (%ld)", q->checkout, r->http_code);
	mpesa_unref(q->m);
	free(q);
}

static void due_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;

	m->querying = false;
	if (r->status != DB_OK) {
		if (r->status != DB_CANCELLED)
			log_warn("mpesa: query job: %s", r->error);
		mpesa_unref(m);
		return;
	}
	for (int i = 0; i < PQntuples(r->res) && !m->stopping; i++) {
		struct query *q;

		if (!strcmp(PQgetvalue(r->res, i, 2), "t"))	/* given up: expired */
			continue;
		q = xcalloc(1, sizeof(*q));
		q->m = m;
		snprintf(q->checkout, sizeof(q->checkout), "%s", PQgetvalue(r->res, i, 1));
		mpesa_hold(m);
		daraja_stk_query(m->daraja, q->checkout, queried, q);
	}
	mpesa_unref(m);
}

static void query_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;
	const struct config *cfg = m->app->cfg;
	char every[16], max[16], unknown[16];
	const char *p[2] = { every, max };
	const char *pu[1] = { unknown };

	(void)fd;
	(void)what;
	/* the periodic pass also picks up pushes and callbacks another daemon
	 * left (it stopped before it could do them) */
	pushes_soon(m, 0);
	mpesa_callbacks_soon(m, 0);
	mpesa_status_soon(m, 0);
	mpesa_payouts_sweep(m);
	mpesa_verify_tick(m);	/* paybill payments never verified, and the alerts (c2b.c) */
	if (m->querying || m->quiescing)
		return;
	m->querying = true;
	snprintf(unknown, sizeof(unknown), "%d", cfg->mpesa_unknown_close_s);
	/* a request no daemon pushed in time (all were down): no prompt was
	 * ever sent and no money moved; close it and tell the member to retry.
	 * One claimed by a daemon that died while pushing: maybe prompted, so
	 * never pushed again, but 'unknown' until a callback matches it or it
	 * is closed after [mpesa] unknown_close_s. */
	db_run(m->app->dbbg, &payment_close_unpushed, pu, db_logged, "closing requests never pushed");
	db_run(m->app->dbbg, &payment_push_orphans, NULL, db_logged, "resolving pushes whose daemon stopped");
	snprintf(every, sizeof(every), "%d", cfg->mpesa_query_every_s);
	snprintf(max, sizeof(max), "%d", cfg->mpesa_query_max_attempts);
	mpesa_hold(m);
	/* SKIP LOCKED: several daemons share the job without asking twice */
	db_run(m->app->dbbg, &payment_query_claim, p, due_claimed, m);
}

/* ---- life ---- */

struct mpesa *mpesa_new(struct app *app)
{
	const struct config *cfg = app->cfg;
	struct mpesa *m;
	struct timeval tv = { cfg->mpesa_query_every_s, 0 };
	char host[32] = "chamad", rnd[9];

	if (!*cfg->mpesa_consumer_key)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	m->refs = 1;
	m->app = app;
	m->daraja = daraja_new(app->base, cfg);
	m->query_ev = event_new(app->base, -1, EV_PERSIST, query_tick, m);
	m->push_ev = evtimer_new(app->base, push_tick, m);
	m->cb_ev = evtimer_new(app->base, mpesa_callbacks_tick, m);
	gethostname(host, sizeof(host) - 1);
	util_random_hex(rnd, 4);
	snprintf(m->me, sizeof(m->me), "%.30s:%d:%s", host, (int)getpid(), rnd);
	event_add(m->query_ev, &tv);
	mpesa_status_start(m);
	mpesa_b2c_start(m);
	mpesa_reconcile_start(m);
	/* what other daemons left: the pushes due already (and when the next
	 * is), the callbacks stored, the requests past the push window */
	query_tick(-1, 0, m);
	log_info("mpesa: STK push through %s, shortcode %s", cfg->mpesa_base_url, cfg->mpesa_shortcode);
	return m;
}

void mpesa_free(struct mpesa *m)
{
	if (!m)
		return;
	m->quiescing = m->stopping = true;
	event_free(m->query_ev);
	event_free(m->push_ev);
	event_free(m->cb_ev);
	mpesa_status_stop(m);
	mpesa_b2c_stop(m);
	mpesa_reconcile_stop(m);
	/* cancels calls in flight: a push claimed but unanswered becomes
	 * 'unknown' when its lease ends; a pushed one is settled by any
	 * daemon's query job; a stored callback by any daemon's settling.
	 * Queries in flight hold references: the pool, freed after us,
	 * cancels them and the last one frees m. */
	daraja_free(m->daraja);
	m->daraja = NULL;
	mpesa_unref(m);
}

void mpesa_quiesce(struct mpesa *m)
{
	if (m)
		m->quiescing = true;
}

int mpesa_unrecorded(const struct mpesa *m)
{
	return m ? m->unrecorded : 0;
}

void mpesa_query_now(struct mpesa *m)
{
	if (m)
		query_tick(-1, 0, m);
}

/* Every route Safaricom posts to: the path before the secret.  (C2B URLs
 * may not contain "mpesa": Daraja refuses to register them.) */
static const struct {
	const char *path;
	http_handler fn;
	const char *name;
} mpesa_route_table[] = {
	{ "/mpesa/stk/callback", mpesa_stk_callback, "mpesa_stk_callback" },
	{ "/payments/c2b/validation", mpesa_c2b_validation, "c2b_validation" },
	{ "/payments/c2b/confirmation", mpesa_c2b_confirmation, "c2b_confirmation" },
	{ "/mpesa/status/result", mpesa_status_result, "mpesa_status_result" },
	{ "/mpesa/status/timeout", mpesa_status_timeout, "mpesa_status_timeout" },
	{ "/mpesa/b2c/result", mpesa_b2c_result, "b2c_result" },
	{ "/mpesa/b2c/timeout", mpesa_b2c_timeout, "b2c_timeout" },
	{ "/mpesa/balance/result", mpesa_balance_result, "mpesa_balance_result" },
	{ "/mpesa/balance/timeout", mpesa_balance_timeout, "mpesa_balance_timeout" },
};
#define MPESA_NROUTES (sizeof(mpesa_route_table) / sizeof(mpesa_route_table[0]))

size_t mpesa_routes(const struct config *cfg, struct http_route *out, size_t max)
{
	static char paths[MPESA_NROUTES][200];
	const char *sep = *cfg->mpesa_callback_secret ? "/" : "";
	size_t n = 0;

	/* M-Pesa off: no money route at all (config_validate guards it when on) */
	if (!*cfg->mpesa_consumer_key)
		return 0;
	for (; n < MPESA_NROUTES && n < max; n++) {
		snprintf(paths[n], sizeof(paths[n]), "%s%s%s", mpesa_route_table[n].path, sep,
			 cfg->mpesa_callback_secret);
		out[n] = (struct http_route){ paths[n], HTTP_POST, mpesa_route_table[n].fn, mpesa_route_table[n].name,
					      NULL };
	}
	/* a route left out would be a callback nobody takes: main's table holds them all */
	xassert(n == MPESA_NROUTES);
	return n;
}

void mpesa_metrics(struct mpesa *m, struct buf *out)
{
	if (!m)
		return;
	buf_printf(out,
		   "# HELP chamad_mpesa_calls_total Daraja STK pushes sent, callbacks received, status queries made.\n"
		   "# TYPE chamad_mpesa_calls_total counter\n"
		   "chamad_mpesa_calls_total{call=\"push\"} %llu\nchamad_mpesa_calls_total{call=\"callback\"} %llu\n"
		   "chamad_mpesa_calls_total{call=\"query\"} %llu\n"
		   "# HELP chamad_mpesa_callbacks_unmatched_total Callbacks no request of ours took (kept, not credited).\n"
		   "# TYPE chamad_mpesa_callbacks_unmatched_total counter\nchamad_mpesa_callbacks_unmatched_total %llu\n"
		   "# HELP chamad_mpesa_status_total Transaction Status queries sent, results received, results "
		   "for no query of ours.\n"
		   "# TYPE chamad_mpesa_status_total counter\n"
		   "chamad_mpesa_status_total{event=\"status_queries_sent\"} %llu\n"
		   "chamad_mpesa_status_total{event=\"status_results\"} %llu\n"
		   "chamad_mpesa_status_total{event=\"status_unmatched\"} %llu\n"
		   "# HELP chamad_mpesa_unrecorded M-Pesa work whose outcome is not in PostgreSQL yet.\n"
		   "# TYPE chamad_mpesa_unrecorded gauge\nchamad_mpesa_unrecorded %d\n"
		   "# HELP chamad_mpesa_b2c_total B2C payouts sent, results received, results for no attempt of ours.\n"
		   "# TYPE chamad_mpesa_b2c_total counter\n"
		   "chamad_mpesa_b2c_total{event=\"sent\"} %llu\nchamad_mpesa_b2c_total{event=\"result\"} %llu\n"
		   "chamad_mpesa_b2c_total{event=\"ignored\"} %llu\n"
		   "# HELP chamad_mpesa_payouts_unknown Payouts whose outcome is unknown (the status query decides).\n"
		   "# TYPE chamad_mpesa_payouts_unknown gauge\nchamad_mpesa_payouts_unknown %d\n",
		   (unsigned long long)m->pushes, (unsigned long long)m->callbacks, (unsigned long long)m->queries,
		   (unsigned long long)m->unmatched, (unsigned long long)m->status_sent,
		   (unsigned long long)m->status_results, (unsigned long long)m->status_unmatched, m->unrecorded,
		   (unsigned long long)m->b2c_sent, (unsigned long long)m->b2c_results,
		   (unsigned long long)m->b2c_ignored, m->b2c_unknown);
	mpesa_reconcile_metrics(m, out);
	mpesa_verify_metrics(m, out);
}
