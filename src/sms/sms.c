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
#include "sms/sms.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "dom/outbox.h"
#include "base/gsm7.h"
#include "net/httpc.h"
#include "base/log.h"
#include "base/menu.h"
#include "base/util.h"
#include "dom/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

static const struct sms_provider *const sms_providers[] = { &sms_provider_at, &sms_provider_kannel };

struct sms_sender {
	struct app *app;
	const struct sms_provider *provider;
	struct httpc *http;
	struct event *wake_ev, *poll_ev, *refill_ev;
	int refs;
	bool stopping, quiescing, claiming, rewake;
	int inflight;		/* claimed messages whose outcome is not recorded yet */
	int with_provider;	/* of those, the ones the provider has not answered */
	json_t *pending;	/* outcomes waiting for the next flush */
	struct event *flush_ev, *soon_ev;
	uint64_t flushes;
	int64_t tokens;		/* thousandths of a message */
	uint64_t refilled_ms;
	char me[64];		/* claimed_by: host:pid:random */
	uint64_t sent, retried, failed, claimed, unrendered;
};

const struct sms_provider *sms_provider_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(sms_providers); i++)
		if (!strcmp(sms_providers[i]->name, name))
			return sms_providers[i];
	return NULL;
}

int sms_provider_check(const char *name, char *err, size_t errlen)
{
	struct buf names;

	if (!strcmp(name, "none") || sms_provider_find(name))
		return 0;
	buf_init(&names, 256);
	for (size_t i = 0; i < ARRAY_LEN(sms_providers); i++)
		buf_printf(&names, "%s, ", sms_providers[i]->name);
	snprintf(err, errlen, "must be %sor none, got \"%s\"", names.data ? names.data : "", name);
	buf_free(&names);
	return -1;
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
	event_free(s->flush_ev);
	event_free(s->soon_ev);
	json_decref(s->pending);
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

/*
 * Outcomes are recorded in batches: one UPDATE ... FROM jsonb_to_recordset
 * per flush, whatever the batch size, through the background pool's durable
 * path (retried until PostgreSQL has it).  A flush happens when nothing is
 * left with the provider, when FLUSH_MAX outcomes wait, or FLUSH_MS after
 * the first one waited: a row is never left 'sending' for want of room in
 * a queue, which is what made its lease run out and the row go out twice.
 */
#define FLUSH_MAX 200
#define FLUSH_MS 20

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

struct flush {
	struct sms_sender *s;
	int n;
};

static void recorded(const struct db_result *r, void *arg)
{
	struct flush *f = arg;
	struct sms_sender *s = f->s;

	if (r->status != DB_OK)	/* shutting down, or refused: the lease brings the rows back */
		log_warn("sms: %d outcome(s) not recorded: %s", f->n, r->error);
	else
		s->flushes++;
	s->inflight -= f->n;
	free(f);
	if (!s->stopping)
		pump(s);
	sender_unref(s);
}

static void flush_outcomes(struct sms_sender *s)
{
	const struct config *cfg = s->app->cfg;
	struct flush *f;
	char *json, maxa[16], rmin[16], rmax[16];
	const char *p[6];

	evtimer_del(s->flush_ev);
	if (!json_array_size(s->pending))
		return;
	f = xcalloc(1, sizeof(*f));
	f->s = s;
	f->n = (int)json_array_size(s->pending);
	json = json_dumps(s->pending, JSON_COMPACT);
	json_array_clear(s->pending);
	snprintf(maxa, sizeof(maxa), "%d", cfg->sms_max_attempts);
	snprintf(rmin, sizeof(rmin), "%d", cfg->sms_retry_min_s);
	snprintf(rmax, sizeof(rmax), "%d", cfg->sms_retry_max_s);
	p[0] = json;
	p[1] = maxa;
	p[2] = s->provider->name;
	p[3] = rmin;
	p[4] = rmax;
	p[5] = s->me;
	s->refs++;
	db_run_durable(s->app->dbbg, &outbox_record, p, 0, recorded, f);
	free(json);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	flush_outcomes(arg);
}

void sms_sent(struct sms_sender *s, struct sms_msg *m, const struct sms_outcome *o)
{
	json_t *row, *err;
	long long c;

	s->with_provider--;
	if (s->stopping) {	/* cancelled at shutdown: the lease brings the row back */
		s->inflight--;
		msg_free(m);
		sender_unref(s);
		return;
	}
	row = json_pack("{s:I, s:b}", "id", (json_int_t)atoll(m->id), "ok", o->verdict == SMS_SENT);
	if (m->rendered) {	/* what went out (or was refused), in its language */
		json_object_set_new(row, "body", json_string(m->body));
		json_object_set_new(row, "lang", json_string(m->lang));
	}
	if (o->verdict == SMS_SENT) {
		s->sent++;
		c = cost_cents(o->cost);
		json_object_set_new(row, "provider_id", json_string(o->provider_id));
		json_object_set_new(row, "cost", o->cost ? json_string(o->cost) : json_null());
		json_object_set_new(row, "cost_cents", c >= 0 ? json_integer(c) : json_null());
		json_object_set_new(row, "segments", json_integer(m->segments));
		json_object_set_new(row, "coding", json_string(m->coding == SMS_GSM7 ? "gsm7" : "ucs2"));
	} else {
		if (o->verdict == SMS_RETRY)
			s->retried++;
		else if (m->unrendered)
			s->unrendered++;
		else
			s->failed++;
		json_object_set_new(row, "verdict", json_string(o->verdict == SMS_RETRY ? "retry" : "failed"));
		err = json_string(o->error ? o->error : "unknown error");
		/* provider text is not always valid UTF-8, which jansson refuses */
		json_object_set_new(row, "error", err ? err : json_string("unprintable provider error"));
	}
	json_array_append_new(s->pending, row);
	msg_free(m);
	if (s->with_provider == 0 || json_array_size(s->pending) >= FLUSH_MAX) {
		flush_outcomes(s);
	} else if (!evtimer_pending(s->flush_ev, NULL)) {
		struct timeval tv = { 0, FLUSH_MS * 1000 };

		evtimer_add(s->flush_ev, &tv);
	}
	/* the reference the message held is done with */
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

/* The row's template in the recipient's language now (columns of
 * outbox_claim); false, with why in err, when it cannot be. */
static bool render(struct sms_sender *s, struct sms_msg *m, const PGresult *res, int row, char *err, size_t errlen)
{
	enum menu_lang lang = LANG_EN;
	struct buf b;
	int rc;

	menu_lang_parse(PQgetvalue(res, row, OUTBOX_CLAIM_LANG), &lang);
	snprintf(m->lang, sizeof(m->lang), "%s", menu_lang_code(lang));
	buf_init(&b, 8192);
	rc = menu_sms_render(s->app->menus, PQgetvalue(res, row, OUTBOX_CLAIM_TEMPLATE), lang,
			     PQgetisnull(res, row, OUTBOX_CLAIM_VARS) ? NULL : PQgetvalue(res, row, OUTBOX_CLAIM_VARS), &b, err, errlen);
	if (rc == 0) {
		m->body = xstrdup(b.data ? b.data : "");
		m->rendered = true;
	}
	buf_free(&b);
	return rc == 0;
}

static void send_one(struct sms_sender *s, const PGresult *res, int row)
{
	struct sms_msg *m = xcalloc(1, sizeof(*m));
	struct sms_outcome too_long = { SMS_FAILED, NULL, NULL, "message longer than [sms] max_segments" };
	struct sms_outcome unrendered = { SMS_FAILED, NULL, NULL, NULL };
	char why[300];

	snprintf(m->id, sizeof(m->id), "%s", PQgetvalue(res, row, OUTBOX_CLAIM_ID));
	m->to = xstrdup(PQgetvalue(res, row, OUTBOX_CLAIM_RECIPIENT));
	m->idempotency_key = xstrdup(PQgetvalue(res, row, OUTBOX_CLAIM_KEY));
	s->inflight++;
	s->with_provider++;
	s->refs++;		/* held by the message until sms_sent */
	if (PQgetisnull(res, row, 4)) {
		m->body = xstrdup(PQgetvalue(res, row, OUTBOX_CLAIM_BODY));
	} else if (!render(s, m, res, row, why, sizeof(why))) {
		/* never sent with a hole: failed for good, with the reason */
		log_warn("sms: outbox row %s (%s) not sent: %s", m->id, m->idempotency_key, why);
		m->unrendered = true;
		unrendered.error = why;
		sms_sent(s, m, &unrendered);
		return;
	}
	m->segments = sms_segments(m->body, &m->coding);
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

	if (s->stopping || s->quiescing)
		return;
	if (s->claiming) {
		s->rewake = true;
		return;
	}
	refill(s);
	n = s->tokens / 1000;
	/* two batches in flight: the next is claimed while the last is still
	 * with the provider or being recorded, so neither waits on the other */
	if (n > cfg->sms_batch)
		n = cfg->sms_batch;
	if (n > 2 * cfg->sms_batch - s->inflight)
		n = 2 * cfg->sms_batch - s->inflight;
	if (n <= 0) {
		/* come back when a token has accrued (or a send finished) */
		struct timeval tv = { 0, (suseconds_t)(1000000 / cfg->sms_rate_per_sec) + 1000 };

		if (s->inflight < 2 * cfg->sms_batch)
			evtimer_add(s->refill_ev, &tv);
		return;
	}
	snprintf(lim, sizeof(lim), "%lld", (long long)n);
	snprintf(lease, sizeof(lease), "%d", cfg->sms_lease_s);
	s->claiming = true;
	s->refs++;
	/* durable: a claim refused for want of room is asked again; one whose
	 * answer was lost leaves rows that come back when their lease ends */
	db_run_durable(s->app->dbbg, &outbox_claim, p, util_now_ms() + 10000, claimed, s);
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

void app_outbox_queued(struct app *app)
{
	sms_sender_wake_soon(app->sms);
}

/* Coalesced: many writes in a burst make one claim, WAKE_SOON_MS later. */
#define WAKE_SOON_MS 20

void sms_sender_wake_soon(struct sms_sender *s)
{
	struct timeval tv = { 0, WAKE_SOON_MS * 1000 };

	if (s && !s->stopping && !evtimer_pending(s->soon_ev, NULL))
		evtimer_add(s->soon_ev, &tv);
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
	s->flush_ev = evtimer_new(app->base, on_flush, s);
	s->soon_ev = evtimer_new(app->base, on_wake, s);
	s->pending = json_array();
	s->refilled_ms = util_now_ms();
	s->tokens = 1000;
	gethostname(host, sizeof(host) - 1);
	util_random_hex(rnd, 4);
	snprintf(s->me, sizeof(s->me), "%.30s:%d:%s", host, (int)getpid(), rnd);
	event_add(s->poll_ev, &poll);
	if (db_pool_listen(app->dbbg, "chamad_sms", on_notify, s) < 0) {
		snprintf(err, errlen, "sms: cannot listen");
		sms_sender_free(s);
		return NULL;
	}
	event_active(s->wake_ev, EV_TIMEOUT, 0);	/* whatever is due already */
	log_info("sms: sending through %s at up to %d/s as %s", prov->name, cfg->sms_rate_per_sec, s->me);
	return s;
}

void sms_sender_quiesce(struct sms_sender *s)
{
	if (!s)
		return;
	s->quiescing = true;
	flush_outcomes(s);
}

int sms_sender_unrecorded(const struct sms_sender *s)
{
	return s ? s->inflight : 0;
}

void sms_sender_free(struct sms_sender *s)
{
	if (!s)
		return;
	/* outcomes known but not yet sent to PostgreSQL go now; the pool,
	 * freed after us, delivers (cancels) what it cannot finish */
	flush_outcomes(s);
	s->stopping = true;
	event_del(s->poll_ev);
	event_del(s->refill_ev);
	event_del(s->wake_ev);
	event_del(s->flush_ev);
	event_del(s->soon_ev);
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
		   "# HELP chamad_sms_sends_total Outcomes of claimed messages: the provider's answer, or unrendered "
		   "(template unknown or a variable missing: failed, never sent).\n"
		   "# TYPE chamad_sms_sends_total counter\n"
		   "chamad_sms_sends_total{outcome=\"sent\"} %llu\n"
		   "chamad_sms_sends_total{outcome=\"retry\"} %llu\n"
		   "chamad_sms_sends_total{outcome=\"failed\"} %llu\n"
		   "chamad_sms_sends_total{outcome=\"unrendered\"} %llu\n"
		   "# HELP chamad_sms_inflight Claimed messages whose outcome is not recorded yet.\n"
		   "# TYPE chamad_sms_inflight gauge\nchamad_sms_inflight %d\n"
		   "# HELP chamad_sms_outcome_flushes_total Statements that recorded a batch of outcomes.\n"
		   "# TYPE chamad_sms_outcome_flushes_total counter\nchamad_sms_outcome_flushes_total %llu\n",
		   (unsigned long long)s->claimed, (unsigned long long)s->sent, (unsigned long long)s->retried,
		   (unsigned long long)s->failed, (unsigned long long)s->unrendered, s->inflight,
		   (unsigned long long)s->flushes);
}
