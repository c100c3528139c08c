/*
 * sms: the outbox sender (see sms.h).
 *
 *   wake (NOTIFY, poll timer, a send finished) -> pump:
 *     tokens available and no claim running -> claim up to n due rows
 *     -> for each: provider send -> sms_sent -> record outcome -> pump
 *
 * The rate limit is a token bucket in thousandths of a message, refilled
 * from the monotonic clock ([sms] rate_per_sec, a burst of one second).
 * The sender is reference counted: every query in flight holds a
 * reference, so freeing it while PostgreSQL still owes an answer is safe.
 */
#include "sms.h"
#include "app.h"
#include "config.h"
#include "db.h"
#include "gsm7.h"
#include "httpc.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

static const struct sms_provider *const sms_providers[] = { &sms_provider_at, &sms_provider_kannel };

struct sms_sender {
	struct app *app;
	const struct sms_provider *provider;
	struct httpc *http;
	struct event *wake_ev, *poll_ev, *refill_ev;
	int refs;
	bool stopping, claiming, rewake;
	int inflight;		/* messages with the provider or being recorded */
	int64_t tokens;		/* thousandths of a message */
	uint64_t refilled_ms;
	char me[64];		/* claimed_by: host:pid:random */
	uint64_t sent, retried, failed, claimed;
};

const struct sms_provider *sms_provider_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(sms_providers); i++)
		if (!strcmp(sms_providers[i]->name, name))
			return sms_providers[i];
	return NULL;
}

int sms_segments(const char *body, enum sms_coding *coding)
{
	int septets = gsm7_septets(body, NULL);
	size_t units = 0;

	if (septets >= 0) {
		*coding = SMS_GSM7;
		return septets <= 160 ? 1 : (septets + 152) / 153;
	}
	/* UCS-2: UTF-16 code units; a character beyond the BMP takes two */
	for (const unsigned char *p = (const unsigned char *)body; *p; p++) {
		if ((*p & 0xc0) != 0x80)
			units += (*p >= 0xf0) ? 2 : 1;
	}
	*coding = SMS_UCS2;
	return units <= 70 ? 1 : (int)((units + 66) / 67);
}

struct app *sms_sender_app(struct sms_sender *s)
{
	return s->app;
}

struct httpc *sms_sender_http(struct sms_sender *s)
{
	return s->http;
}

static void sender_unref(struct sms_sender *s)
{
	if (--s->refs > 0)
		return;
	event_free(s->wake_ev);
	event_free(s->poll_ev);
	event_free(s->refill_ev);
	free(s);
}

static void msg_free(struct sms_msg *m)
{
	free(m->to);
	free(m->body);
	free(m->idempotency_key);
	free(m);
}

static void pump(struct sms_sender *s);

/* ---- recording outcomes ---- */

static void recorded(const struct db_result *r, void *arg)
{
	struct sms_sender *s = arg;

	if (r->status != DB_OK)	/* the lease brings the row back */
		log_warn("sms: outcome not recorded: %s", r->error);
	s->inflight--;
	if (!s->stopping)
		pump(s);
	sender_unref(s);
}

/* "KES 0.8000" -> 80 (cents, rounded half up); -1 if not a money string. */
static long long cost_cents(const char *cost)
{
	const char *p = cost ? strchr(cost, ' ') : NULL;
	long long whole = 0, frac = 0;
	int digits = 0;

	if (!p)
		return -1;
	for (p++; *p >= '0' && *p <= '9'; p++)
		whole = whole * 10 + (*p - '0');
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
	while (digits < 3) {
		frac *= 10;
		digits++;
	}
	if (*p || whole > 100000000)
		return -1;
	return whole * 100 + (frac + 5) / 10;
}

void sms_sent(struct sms_sender *s, struct sms_msg *m, const struct sms_outcome *o)
{
	const struct config *cfg = s->app->cfg;
	char cents[24], seg[16], delay[24];
	const char *p[9] = { m->id, s->me };
	long long c;

	if (s->stopping) {	/* shutting down: the lease brings the row back */
		s->inflight--;
		msg_free(m);
		sender_unref(s);
		return;
	}
	s->refs++;
	if (o->verdict == SMS_SENT) {
		s->sent++;
		c = cost_cents(o->cost);
		snprintf(cents, sizeof(cents), "%lld", c);
		snprintf(seg, sizeof(seg), "%d", m->segments);
		p[2] = s->provider->name;
		p[3] = o->provider_id;
		p[4] = o->cost;
		p[5] = c >= 0 ? cents : NULL;
		p[6] = seg;
		p[7] = m->coding == SMS_GSM7 ? "gsm7" : "ucs2";
		db_query(s->app->db,
			 "UPDATE notifications SET status = 'sent', sent_at = now(), provider = $3, "
			 "provider_message_id = $4, provider_cost = left($5, 32), cost_cents = $6::bigint, "
			 "segments = $7::smallint, coding = $8, lease_until = NULL, last_error = NULL "
			 "WHERE id = $1::bigint AND claimed_by = $2 AND status = 'sending'",
			 8, p, recorded, s);
	} else {
		if (o->verdict == SMS_RETRY)
			s->retried++;
		else
			s->failed++;
		/* retry after a backoff on the attempts so far, with jitter,
		 * unless that was the last attempt or the refusal is final */
		snprintf(cents, sizeof(cents), "%d", cfg->sms_max_attempts);
		p[2] = o->verdict == SMS_RETRY ? "retry" : "failed";
		p[3] = o->error ? o->error : "unknown error";
		p[4] = cents;
		snprintf(seg, sizeof(seg), "%d", cfg->sms_retry_min_s);
		p[5] = seg;
		snprintf(delay, sizeof(delay), "%d", cfg->sms_retry_max_s);
		p[6] = delay;
		db_query(s->app->db,
			 "UPDATE notifications SET lease_until = NULL, last_error = left($4, 500), "
			 "status = CASE WHEN $3 = 'retry' AND attempts < $5::int THEN 'retry' ELSE 'failed' END, "
			 "failure_reason = CASE WHEN $3 = 'retry' AND attempts < $5::int THEN failure_reason "
			 "ELSE left($4, 200) END, "
			 /* min * 2^(attempts-1), capped, minus up to a quarter at random */
			 "next_attempt_at = now() + make_interval(secs => least($7::float8, $6::float8 * "
			 "power(2, greatest(attempts - 1, 0))) * (1 - random() / 4)) "
			 "WHERE id = $1::bigint AND claimed_by = $2 AND status = 'sending'",
			 7, p, recorded, s);
	}
	msg_free(m);
	/* the reference the message held passes to the record query */
	sender_unref(s);
}

/* ---- claiming ---- */

static void refill(struct sms_sender *s)
{
	uint64_t now = util_now_ms();
	int64_t cap = (int64_t)s->app->cfg->sms_rate_per_sec * 1000;

	s->tokens += (int64_t)(now - s->refilled_ms) * s->app->cfg->sms_rate_per_sec;
	if (s->tokens > cap)
		s->tokens = cap;
	s->refilled_ms = now;
}

static void send_one(struct sms_sender *s, const PGresult *res, int row)
{
	struct sms_msg *m = xcalloc(1, sizeof(*m));
	struct sms_outcome too_long = { SMS_FAILED, NULL, NULL, "message longer than [sms] max_segments" };

	snprintf(m->id, sizeof(m->id), "%s", PQgetvalue(res, row, 0));
	m->to = xstrdup(PQgetvalue(res, row, 1));
	m->body = xstrdup(PQgetvalue(res, row, 2));
	m->idempotency_key = xstrdup(PQgetvalue(res, row, 3));
	m->segments = sms_segments(m->body, &m->coding);
	s->inflight++;
	s->refs++;		/* held by the message until sms_sent */
	s->tokens -= 1000;
	if (m->segments > s->app->cfg->sms_max_segments)
		sms_sent(s, m, &too_long);
	else
		s->provider->send(s, m);
}

static void claimed(const struct db_result *r, void *arg)
{
	struct sms_sender *s = arg;
	int n = 0;

	s->claiming = false;
	if (s->stopping) {
		sender_unref(s);
		return;
	}
	if (r->status != DB_OK) {
		log_warn("sms: claim failed: %s", r->error);
	} else {
		n = PQntuples(r->res);
		s->claimed += (uint64_t)n;
		for (int i = 0; i < n; i++)
			send_one(s, r->res, i);
	}
	/* a full batch, or a wake-up during the claim: there may be more */
	if ((r->status == DB_OK && n > 0) || s->rewake) {
		s->rewake = false;
		pump(s);
	}
	sender_unref(s);
}

static void pump(struct sms_sender *s)
{
	const struct config *cfg = s->app->cfg;
	char lim[16], lease[16];
	const char *p[3] = { s->me, lim, lease };
	int64_t n;

	if (s->stopping)
		return;
	if (s->claiming) {
		s->rewake = true;
		return;
	}
	refill(s);
	n = s->tokens / 1000;
	if (n > cfg->sms_batch - s->inflight)
		n = cfg->sms_batch - s->inflight;
	if (n <= 0) {
		/* come back when a token has accrued (or a send finished) */
		struct timeval tv = { 0, (suseconds_t)(1000000 / cfg->sms_rate_per_sec) + 1000 };

		if (s->inflight < cfg->sms_batch)
			evtimer_add(s->refill_ev, &tv);
		return;
	}
	snprintf(lim, sizeof(lim), "%lld", (long long)n);
	snprintf(lease, sizeof(lease), "%d", cfg->sms_lease_s);
	s->claiming = true;
	s->refs++;
	db_query(s->app->db,
		 "UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1, claimed_by = $1, "
		 "lease_until = now() + make_interval(secs => $3::int) "
		 "FROM (SELECT id FROM notifications WHERE channel = 'sms' AND "
		 "((status IN ('queued', 'retry') AND next_attempt_at <= now()) OR "
		 "(status = 'sending' AND lease_until < now())) "
		 "ORDER BY priority, next_attempt_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED) due "
		 "WHERE n.id = due.id RETURNING n.id, n.recipient, n.body, n.idempotency_key",
		 3, p, claimed, s);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
	struct sms_sender *s = arg;

	(void)channel;
	(void)payload;
	/* from inside the pool: only note it; pump on the next loop pass */
	event_active(s->wake_ev, EV_TIMEOUT, 0);
}

void sms_sender_wake(struct sms_sender *s)
{
	if (s)
		event_active(s->wake_ev, EV_TIMEOUT, 0);
}

struct sms_sender *sms_sender_new(struct app *app, char *err, size_t errlen)
{
	const struct config *cfg = app->cfg;
	const struct sms_provider *prov;
	struct sms_sender *s;
	/* a few keep-alive connections, reused; more sends wait in curl's queue */
	struct httpc_opts ho = { 2000, cfg->sms_timeout_ms, 256 * 1024, 16 };
	struct timeval poll = { cfg->sms_poll_ms / 1000, (cfg->sms_poll_ms % 1000) * 1000 };
	char host[32] = "chamad", rnd[9];

	if (!strcmp(cfg->sms_provider, "none"))
		return NULL;
	prov = sms_provider_find(cfg->sms_provider);
	if (!prov) {
		snprintf(err, errlen, "[sms] provider \"%s\" is not known", cfg->sms_provider);
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->app = app;
	s->provider = prov;
	s->refs = 1;
	s->http = httpc_new(app->base, &ho);
	s->wake_ev = event_new(app->base, -1, 0, on_wake, s);
	s->poll_ev = event_new(app->base, -1, EV_PERSIST, on_wake, s);
	s->refill_ev = evtimer_new(app->base, on_wake, s);
	s->refilled_ms = util_now_ms();
	s->tokens = 1000;
	gethostname(host, sizeof(host) - 1);
	util_random_hex(rnd, 4);
	snprintf(s->me, sizeof(s->me), "%.30s:%d:%s", host, (int)getpid(), rnd);
	event_add(s->poll_ev, &poll);
	if (db_pool_listen(app->db, "chamad_sms", on_notify, s) < 0) {
		snprintf(err, errlen, "sms: cannot listen");
		sms_sender_free(s);
		return NULL;
	}
	event_active(s->wake_ev, EV_TIMEOUT, 0);	/* whatever is due already */
	log_info("sms: sending through %s at up to %d/s as %s", prov->name, cfg->sms_rate_per_sec, s->me);
	return s;
}

void sms_sender_free(struct sms_sender *s)
{
	if (!s)
		return;
	s->stopping = true;
	event_del(s->poll_ev);
	event_del(s->refill_ev);
	event_del(s->wake_ev);
	/* cancels sends in flight: each comes back through sms_sent */
	httpc_free(s->http);
	s->http = NULL;
	sender_unref(s);
}

void sms_metrics(struct sms_sender *s, struct buf *out)
{
	struct httpc_stats hs = { 0 };

	if (!s)
		return;
	if (s->http)
		httpc_get_stats(s->http, &hs);
	buf_printf(out,
		   "# HELP chamad_sms_http_requests_total Requests to the SMS provider.\n"
		   "# TYPE chamad_sms_http_requests_total counter\nchamad_sms_http_requests_total %llu\n"
		   "# HELP chamad_sms_http_connects_total New connections to the provider (the rest reused one).\n"
		   "# TYPE chamad_sms_http_connects_total counter\nchamad_sms_http_connects_total %llu\n",
		   (unsigned long long)hs.requests, (unsigned long long)hs.connects);
	buf_printf(out,
		   "# HELP chamad_sms_claimed_total Outbox rows claimed for sending.\n"
		   "# TYPE chamad_sms_claimed_total counter\nchamad_sms_claimed_total %llu\n"
		   "# HELP chamad_sms_sends_total Provider answers by outcome.\n"
		   "# TYPE chamad_sms_sends_total counter\n"
		   "chamad_sms_sends_total{outcome=\"sent\"} %llu\n"
		   "chamad_sms_sends_total{outcome=\"retry\"} %llu\n"
		   "chamad_sms_sends_total{outcome=\"failed\"} %llu\n"
		   "# HELP chamad_sms_inflight Messages with the provider now.\n"
		   "# TYPE chamad_sms_inflight gauge\nchamad_sms_inflight %d\n",
		   (unsigned long long)s->claimed, (unsigned long long)s->sent, (unsigned long long)s->retried,
		   (unsigned long long)s->failed, s->inflight);
}
