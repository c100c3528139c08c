/*
 * mpesa: Safaricom Daraja on the loop (M-Pesa Express / STK push).
 *
 *   a member confirms a contribution on USSD -> an mpesa_requests row
 *   -> the session ENDs (the prompt cannot show while it is open)
 *   -> [mpesa] push_delay_ms later: OAuth token (cached until expiry),
 *      STK push -> row 'pushed' with its CheckoutRequestID
 *   -> POST /mpesa/stk/callback/<secret> -> mpesa_settle() in one statement
 *   -> or, with no callback after query_after_s, the status query job
 *      settles it (a callback that comes late then changes nothing).
 *
 * Settling is idempotent in the database (mpesa_settle locks the request and
 * decides once; post_contribution is keyed on the CheckoutRequestID and the
 * receipt), so a callback delivered twice, or racing the status query,
 * records one contribution.  Amounts cross the boundary as whole shillings;
 * the callback's Amount is read from the JSON text as digits and
 * TransactionDate/PhoneNumber as 64-bit integers, never through a double.
 */
#include "mpesa/mpesa.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "net/httpc.h"
#include "net/httpd.h"
#include "base/log.h"
#include "base/menu.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

typedef void (*token_fn)(struct mpesa *m, const char *token, void *arg);

struct waiter {
	struct waiter *next;
	token_fn fn;
	void *arg;
};

/* One claiming job (pushes, callbacks): one claim in flight at a time; a
 * wake-up during it, or a full batch, claims again when it ends. */
struct claim {
	bool running, again;
};

#define PUSH_BATCH 50
#define PUSH_BATCH_S "50"
#define CB_BATCH 100
#define CB_BATCH_S "100"
#define CB_MAX_TRIES 10		/* ~5 minutes of waiting for a push's answer */

struct mpesa {
	struct app *app;
	struct httpc *http;
	char token[128];
	uint64_t token_expires_ms;
	bool fetching;
	struct waiter *waiting;
	struct event *query_ev, *push_ev, *cb_ev;
	uint64_t push_at_ms;	/* when push_ev fires */
	struct claim pushing, settling;
	bool querying, quiescing, stopping;
	int refs;
	int unrecorded;		/* work whose outcome is not in PostgreSQL yet */
	char me[64];		/* claimed_by: host:pid:random */
	uint64_t pushes, callbacks, queries, unmatched;
};

static void pushes_soon(struct mpesa *m, int ms);
static void callbacks_soon(struct mpesa *m, int ms);

static void db_logged(const struct db_result *r, void *arg)
{
	if (r->status != DB_OK)
		log_warn("mpesa: %s: %s", (const char *)arg, r->error);
}

/* ---- small helpers ---- */

/* "YYYYMMDDHHmmss" in East Africa Time (UTC+3, no daylight saving). */
static void eat_timestamp(char out[15])
{
	time_t t = time(NULL) + 3 * 3600;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 15, "%Y%m%d%H%M%S", &tm);
}

static void password(const struct config *cfg, const char *ts, char *out, size_t outlen)
{
	char *plain = xasprintf("%s%s%s", cfg->mpesa_shortcode, cfg->mpesa_passkey, ts);

	sodium_bin2base64(out, outlen, (const unsigned char *)plain, strlen(plain), sodium_base64_VARIANT_ORIGINAL);
	free(plain);
}

static const char *digits_of(const char *phone)
{
	return phone[0] == '+' ? phone + 1 : phone;
}

/* ---- the OAuth token, cached until a minute before it expires ---- */

static void token_answered(const struct httpc_response *r, void *arg)
{
	struct mpesa *m = arg;
	struct waiter *w = m->waiting;
	json_t *doc = NULL;
	const char *tok = NULL;

	m->fetching = false;
	m->waiting = NULL;
	if (r->status == HTTPC_OK && r->code == 200 && (doc = json_loadb(r->body, r->body_len, 0, NULL))) {
		json_t *exp = json_object_get(doc, "expires_in");
		long long secs = json_is_integer(exp) ? json_integer_value(exp) : 0;

		if (json_is_string(exp))
			util_parse_ll(json_string_value(exp), 1, 86400, &secs);
		tok = json_string_value(json_object_get(doc, "access_token"));
		if (tok && strlen(tok) < sizeof(m->token) && secs > 60) {
			snprintf(m->token, sizeof(m->token), "%s", tok);
			m->token_expires_ms = util_now_ms() + (uint64_t)(secs - 60) * 1000;
		} else {
			tok = NULL;
		}
	}
	if (!tok)
		log_warn("mpesa: no OAuth token: %s %ld %.120s", r->error ? r->error : "", r->code, r->body);
	while (w) {
		struct waiter *next = w->next;

		w->fn(m, tok ? m->token : NULL, w->arg);
		free(w);
		w = next;
	}
	json_decref(doc);
}

static void with_token(struct mpesa *m, token_fn fn, void *arg)
{
	const struct config *cfg = m->app->cfg;
	struct waiter *w;
	char *cred, b64[512], hdr[600], *url;
	const char *headers[2] = { hdr, NULL };
	struct httpc_request req = { "GET", NULL, headers, NULL, 0, 0 };

	if (*m->token && util_now_ms() < m->token_expires_ms) {
		fn(m, m->token, arg);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->next = m->waiting;
	m->waiting = w;
	if (m->fetching)
		return;
	m->fetching = true;
	cred = xasprintf("%s:%s", cfg->mpesa_consumer_key, cfg->mpesa_consumer_secret);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)cred, strlen(cred), sodium_base64_VARIANT_ORIGINAL);
	snprintf(hdr, sizeof(hdr), "Authorization: Basic %s", b64);
	url = xasprintf("%s/oauth/v1/generate?grant_type=client_credentials", cfg->mpesa_base_url);
	req.url = url;
	httpc_request(m->http, &req, token_answered, m);
	sodium_memzero(cred, strlen(cred));
	free(cred);
	free(url);
}

/* Daraja answers an expired or unknown token with 404.001.03. */
static bool token_rejected(const struct httpc_response *r)
{
	return r->status == HTTPC_OK && r->code == 404 && strstr(r->body, "404.001.03");
}

/* ---- one Daraja call with a fresh token and one retry on a stale one ---- */

struct call {
	struct mpesa *m;
	char *path;
	json_t *body;		/* without Password/Timestamp: added per attempt */
	bool retried;
	void (*done)(struct call *c, const struct httpc_response *r);
	char id[24];		/* the mpesa_requests row */
	char checkout[72];
	bool never_sent;	/* no OAuth token: Daraja never saw it */
	bool once;		/* must never reach Daraja twice (httpc once) */
};

static void call_send(struct mpesa *m, const char *token, void *arg);

static void call_free(struct call *c)
{
	json_decref(c->body);
	free(c->path);
	free(c);
}

static void call_answered(const struct httpc_response *r, void *arg)
{
	struct call *c = arg;

	if (token_rejected(r) && !c->retried) {
		c->retried = true;
		c->m->token[0] = '\0';
		with_token(c->m, call_send, c);
		return;
	}
	c->done(c, r);
	call_free(c);
}

static void call_send(struct mpesa *m, const char *token, void *arg)
{
	struct call *c = arg;
	const struct config *cfg = m->app->cfg;
	char ts[15], pw[256], auth[200], *url, *text;
	const char *headers[3] = { auth, "Content-Type: application/json", NULL };
	struct httpc_request req = { "POST", NULL, headers, NULL, 0, 0 };
	struct httpc_response fail = { HTTPC_ERROR, 0, "", 0, NULL, "no OAuth token", 0 };

	if (!token) {
		c->never_sent = true;
		c->done(c, &fail);
		call_free(c);
		return;
	}
	eat_timestamp(ts);
	password(cfg, ts, pw, sizeof(pw));
	json_object_set_new(c->body, "Timestamp", json_string(ts));
	json_object_set_new(c->body, "Password", json_string(pw));
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	url = xasprintf("%s%s", cfg->mpesa_base_url, c->path);
	text = json_dumps(c->body, JSON_COMPACT);
	req.url = url;
	req.body = text;
	req.body_len = strlen(text);
	req.once = c->once;
	httpc_request(m->http, &req, call_answered, c);
	free(url);
	free(text);
}

static struct call *call_new(struct mpesa *m, const char *path, json_t *body,
			     void (*done)(struct call *c, const struct httpc_response *r))
{
	struct call *c = xcalloc(1, sizeof(*c));

	c->m = m;
	c->path = xstrdup(path);
	c->body = body;
	c->done = done;
	return c;
}

/* ---- the push: a claimed row ---- */

/* After "WITH r AS (UPDATE mpesa_requests ... RETURNING *)": the member's
 * notice that the payment never started (no prompt, no money moved), as
 * the statement's last SELECT (so it runs for every row of r). */
#define PUSH_FAILED_NOTICE                                                                                      \
	"SELECT notify(r.user_id, 'mpesa_failed', 'sms_mpesa_push_failed', jsonb_build_object('amount', "        \
	"format_kes(r.amount_cents), 'chama', c.name), 3, 'mpesa:request:' || r.id || ':push_failed', "         \
	"r.chama_id) FROM r JOIN chamas c ON c.id = r.chama_id"

/* One piece of work whose outcome is still to be recorded: counted so a
 * draining daemon waits for it (mpesa_unrecorded). */
/* The object lives while anything in flight points at it: mpesa_free
 * drops the first reference, each query or call in flight holds one. */
static void mpesa_hold(struct mpesa *m)
{
	m->refs++;
}

static void mpesa_unref(struct mpesa *m)
{
	if (--m->refs == 0)
		free(m);
}

/* Starts a claim unless one is running (then it runs again after). */
static bool claim_start(struct mpesa *m, struct claim *c)
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

static void claim_end(struct mpesa *m, struct claim *c, const struct db_result *r, const char *what, int batch,
		      void (*soon)(struct mpesa *m, int ms))
{
	int n = r->status == DB_OK ? PQntuples(r->res) : 0;

	c->running = false;
	if (r->status != DB_OK && r->status != DB_CANCELLED)
		log_warn("mpesa: claiming %s: %s", what, r->error);
	if (n == batch || c->again) {
		c->again = false;
		soon(m, 0);
	}
	mpesa_unref(m);
}

static void work_begin(struct mpesa *m)
{
	m->unrecorded++;
	mpesa_hold(m);
}

static void work_end(struct mpesa *m)
{
	m->unrecorded--;
	mpesa_unref(m);
}

static void outcome_recorded(const struct db_result *r, void *arg)
{
	struct call *c = arg;

	if (r->status != DB_OK)	/* only a real refusal or shutdown gets here: the lease resolves it */
		log_warn("mpesa: request %s: outcome not recorded: %s", c->id, r->error);
	else if (c->checkout[0])
		callbacks_soon(c->m, 0);	/* a callback may have overtaken this answer */
	else
		app_outbox_queued(c->m->app);	/* a failed push's notice */
	work_end(c->m);
	free(c);
}

/* The push's answer, recorded until PostgreSQL has it.  No answer at all
 * (timeout, reset) may still mean Daraja prompted the member: 'unknown',
 * never pushed again; its callback is matched by phone and amount. */
static void pushed(struct call *c, const struct httpc_response *r)
{
	struct mpesa *m = c->m;
	json_t *doc = r->status == HTTPC_OK ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(doc, "ResponseCode"));
	const char *checkout = json_string_value(json_object_get(doc, "CheckoutRequestID"));
	const char *emsg = json_string_value(json_object_get(doc, "errorMessage"));
	struct call *rec;
	char after[16], why[300];

	if (r->status == HTTPC_CANCELLED) {	/* shutting down: the lease resolves it */
		json_decref(doc);
		work_end(m);
		return;
	}
	rec = xcalloc(1, sizeof(*rec));
	rec->m = m;
	snprintf(rec->id, sizeof(rec->id), "%s", c->id);
	m->pushes++;
	snprintf(after, sizeof(after), "%d", m->app->cfg->mpesa_query_after_s);
	if (r->status == HTTPC_OK && r->code == 200 && code && !strcmp(code, "0") && checkout) {
		const char *p[4] = { c->id, checkout, json_string_value(json_object_get(doc, "MerchantRequestID")), after };

		snprintf(rec->checkout, sizeof(rec->checkout), "%s", checkout);
		db_query_durable(m->app->dbbg,
				 "UPDATE mpesa_requests SET status = 'pushed', checkout_request_id = $2, "
				 "merchant_request_id = $3, pushed_at = now(), lease_until = NULL, "
				 "next_query_at = now() + make_interval(secs => $4::int) "
				 "WHERE id = $1::bigint AND status = 'created'",
				 4, p, 0, outcome_recorded, rec);
	} else if (c->never_sent) {
		const char *p[1] = { c->id };

		/* no token, so nothing reached Daraja: due again in a moment */
		db_query_durable(m->app->dbbg,
				 "UPDATE mpesa_requests SET push_attempts = 0, claimed_by = NULL, lease_until = NULL, "
				 "push_at = now() + interval '5 seconds' WHERE id = $1::bigint AND status = 'created'",
				 1, p, 0, outcome_recorded, rec);
	} else if (r->status == HTTPC_OK) {
		const char *p[2] = { c->id, why };

		snprintf(why, sizeof(why), "push refused: HTTP %ld %s", r->code, emsg ? emsg : "");
		log_warn("mpesa: request %s: %s", c->id, why);
		/* the member learns it by SMS: the USSD session is over */
		db_query_durable(m->app->dbbg,
				 "WITH r AS (UPDATE mpesa_requests SET status = 'push_failed', result_desc = left($2, 300), "
				 "completed_at = now(), lease_until = NULL WHERE id = $1::bigint AND status = 'created' "
				 "RETURNING *) " PUSH_FAILED_NOTICE,
				 2, p, 0, outcome_recorded, rec);
	} else {
		const char *p[2] = { c->id, why };

		snprintf(why, sizeof(why), "push unanswered: %s", r->error ? r->error : "no answer");
		log_warn("mpesa: request %s: %s; waiting for a callback", c->id, why);
		db_query_durable(m->app->dbbg,
				 "UPDATE mpesa_requests SET status = 'unknown', result_desc = left($2, 300), "
				 "lease_until = NULL WHERE id = $1::bigint AND status = 'created'",
				 2, p, 0, outcome_recorded, rec);
	}
	json_decref(doc);
	/* the count work_begin took for the push passes to its record */
}

static void push_one(struct mpesa *m, const PGresult *res, int i)
{
	const struct config *cfg = m->app->cfg;
	struct call *c;
	char cb[512];
	long long cents = atoll(PQgetvalue(res, i, 2));

	snprintf(cb, sizeof(cb), "%s/mpesa/stk/callback%s%s", cfg->mpesa_public_url, *cfg->mpesa_callback_secret ? "/" : "",
		 cfg->mpesa_callback_secret);
	c = call_new(m, "/mpesa/stkpush/v1/processrequest",
		     json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "BusinessShortCode", cfg->mpesa_shortcode,
			       "TransactionType", cfg->mpesa_transaction_type, "Amount", (json_int_t)(cents / 100),
			       "PartyA", digits_of(PQgetvalue(res, i, 1)), "PartyB", cfg->mpesa_shortcode,
			       "PhoneNumber", digits_of(PQgetvalue(res, i, 1)), "CallBackURL", cb, "AccountReference",
			       PQgetvalue(res, i, 3), "TransactionDesc", "Contribution"),
		     pushed);
	snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(res, i, 0));
	c->once = true;
	work_begin(m);
	with_token(m, call_send, c);
}

static void push_claimed(const struct db_result *r, void *arg)
{
	struct mpesa *m = arg;
	int n = r->status == DB_OK ? PQntuples(r->res) : 0;

	for (int i = 0; i < n && !m->stopping; i++)
		push_one(m, r->res, i);
	claim_end(m, &m->pushing, r, "pushes", PUSH_BATCH, pushes_soon);
}

/* Claims due pushes (SKIP LOCKED: several daemons share them) under a
 * lease; each is tried once: push_attempts can only go from 0 to 1. */
static void push_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;
	char lease[16];
	const char *p[2] = { m->me, lease };

	if (!claim_start(m, &m->pushing))
		return;
	snprintf(lease, sizeof(lease), "%d", m->app->cfg->mpesa_timeout_ms / 1000 * 3 + 30);
	db_query_durable(m->app->dbbg,
			 "UPDATE mpesa_requests q SET push_attempts = 1, claimed_by = $1, "
			 "lease_until = now() + make_interval(secs => $2::int) "
			 "FROM (SELECT id FROM mpesa_requests WHERE status = 'created' AND push_attempts = 0 "
			 "AND push_at <= now() AND push_at > now() - interval '5 minutes' ORDER BY push_at "
			 "LIMIT " PUSH_BATCH_S " FOR UPDATE SKIP LOCKED) due WHERE q.id = due.id "
			 "RETURNING q.id, q.phone, q.amount_cents, q.account_ref",
			 2, p, util_now_ms() + 10000, push_claimed, m);
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

void mpesa_push_later(struct mpesa *m, const char *request_id)
{
	(void)request_id;	/* the row says when it is due; any daemon may push it */
	pushes_soon(m, m->app->cfg->mpesa_push_delay_ms);
}

/* ---- settling: callbacks are stored, then settled from the table ---- */

struct settle {
	struct mpesa *m;
	struct http_ctx *ctx;	/* the callback's, while it is being stored */
	char cbid[24];		/* mpesa_callbacks.id, when settling a stored one */
	char checkout[72], receipt[40], phone[20], desc[300];
	long long code, amount_cents;	/* -1: not given */
	const char *source;
	char *body;		/* the callback as it came */
};

static void settle_free(struct settle *s)
{
	free(s->body);
	free(s);
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
		log_info("mpesa: %s %s by %s: %s", s->checkout, PQgetvalue(r->res, 0, 0), s->source,
			 PQgetvalue(r->res, 0, 1)[0] == 't' ? "settled now" : "already settled");
		app_outbox_queued(s->m->app);	/* the receipt or the failure notice */
	}
	work_end(s->m);
	settle_free(s);
}

/*
 * Settles one report (a stored callback, or the status query's answer) in
 * one statement: mpesa_settle with the member's messages by key (the
 * receipt, or the notice for this result code if the menus have one), and
 * for a stored callback its row marked settled in the same statement.
 * amount comes from the request.
 */
static void settle_with(struct settle *s, const char *amount_cents)
{
	struct app *app = s->m->app;
	char code[24], key[48], cents[24];
	const char *p[10];

	if (s->amount_cents < 0)	/* the query does not tell: it is what we asked */
		s->amount_cents = atoll(amount_cents);
	snprintf(key, sizeof(key), "sms_mpesa_failed_%lld", s->code);
	report_params(s, code, cents, p);
	p[6] = s->source;
	p[7] = "sms_mpesa_receipt";
	p[8] = menu_sms_exists(app->menus, key) ? key : "sms_mpesa_failed";
	p[9] = *s->cbid ? s->cbid : NULL;
	db_query_durable(app->dbbg,
			 "WITH s AS (SELECT * FROM mpesa_settle($1, $2::int, $3, $4, $5::bigint, $6, $7, $8, $9)), "
			 "k AS (UPDATE mpesa_callbacks SET status = 'settled', settled_at = now(), lease_until = NULL, "
			 "outcome = (SELECT s.status || CASE WHEN s.settled_now THEN '' ELSE ' before' END FROM s), "
			 "request_id = (SELECT id FROM mpesa_requests WHERE checkout_request_id = $1) "
			 "WHERE id = $10::bigint) "
			 "SELECT status, settled_now FROM s",
			 10, p, 0, settled, s);
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
		callbacks_soon(s->m, 0);
	} else if (PQntuples(r->res) == 1 && !strcmp(PQgetvalue(r->res, 0, 0), "unmatched")) {
		log_warn("mpesa: callback for an unknown CheckoutRequestID %s: kept, not credited", s->checkout);
		s->m->unmatched++;
	}
	work_end(s->m);
	settle_free(s);
}

static void settle_unmatched(struct settle *s)
{
	char code[24], cents[24], tries[16];
	const char *p[6] = { s->cbid, s->checkout, code, *s->phone ? s->phone : NULL, cents, tries };

	snprintf(code, sizeof(code), "%lld", s->code);
	snprintf(cents, sizeof(cents), "%lld", s->amount_cents);
	snprintf(tries, sizeof(tries), "%d", CB_MAX_TRIES);
	db_query_durable(s->m->app->dbbg,
			 "WITH m AS (SELECT id FROM mpesa_requests WHERE status = 'unknown' AND checkout_request_id IS NULL "
			 "AND $3::bigint = 0 AND phone = $4 AND amount_cents = $5::bigint ORDER BY id LIMIT 2), "
			 "one AS (SELECT id FROM m WHERE (SELECT count(*) FROM m) = 1), "
			 "q AS (UPDATE mpesa_requests r SET status = 'pushed', checkout_request_id = $2, "
			 "pushed_at = coalesce(r.pushed_at, now()), next_query_at = now() + interval '1 minute' "
			 "FROM one WHERE r.id = one.id RETURNING r.id) "
			 "UPDATE mpesa_callbacks k SET lease_until = NULL, "
			 "status = CASE WHEN EXISTS (SELECT 1 FROM q) OR k.attempts < $6::int THEN 'received' "
			 "ELSE 'unmatched' END, "
			 "outcome = CASE WHEN EXISTS (SELECT 1 FROM q) THEN 'matched by phone' "
			 "WHEN k.attempts < $6::int THEN 'waiting' ELSE 'no such request' END, "
			 "next_try_at = CASE WHEN EXISTS (SELECT 1 FROM q) THEN now() "
			 "ELSE now() + make_interval(secs => least(60, power(2, k.attempts))::int) END "
			 "WHERE k.id = $1::bigint RETURNING k.status, EXISTS (SELECT 1 FROM q)",
			 6, p, 0, unmatched_done, s);
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
		work_begin(m);
		if (PQgetisnull(res, i, 7))
			settle_unmatched(s);
		else
			settle_with(s, PQgetvalue(res, i, 7));
	}
	claim_end(m, &m->settling, r, "callbacks", CB_BATCH, callbacks_soon);
}

/* Claims stored callbacks that are due, with what settling needs of their
 * request (NULL columns when no request has that CheckoutRequestID). */
static void callbacks_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;

	if (!claim_start(m, &m->settling))
		return;
	db_query_durable(m->app->dbbg,
			 "WITH c AS (UPDATE mpesa_callbacks k SET attempts = k.attempts + 1, "
			 "lease_until = now() + interval '60 seconds' FROM (SELECT id FROM mpesa_callbacks "
			 "WHERE status = 'received' AND next_try_at <= now() AND (lease_until IS NULL OR lease_until < now()) "
			 "ORDER BY next_try_at LIMIT " CB_BATCH_S " FOR UPDATE SKIP LOCKED) due WHERE k.id = due.id "
			 "RETURNING k.*) "
			 "SELECT c.id, c.checkout_request_id, c.result_code, c.result_desc, c.mpesa_receipt, c.amount_cents, "
			 "c.phone, r.amount_cents, u.preferred_language, ch.name FROM c "
			 "LEFT JOIN mpesa_requests r ON r.checkout_request_id = c.checkout_request_id "
			 "LEFT JOIN users u ON u.id = r.user_id LEFT JOIN chamas ch ON ch.id = r.chama_id",
			 0, NULL, util_now_ms() + 10000, callbacks_claimed, m);
}

static void callbacks_soon(struct mpesa *m, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (m->stopping)
		return;
	if (!evtimer_pending(m->cb_ev, NULL))
		evtimer_add(m->cb_ev, &tv);
}

/* The status query's answer for a push: settled like a callback. */
static void query_loaded(const struct db_result *r, void *arg)
{
	struct settle *s = arg;

	if (r->status != DB_OK || PQntuples(r->res) != 1) {
		if (r->status != DB_OK)
			log_warn("mpesa: looking up %s: %s", s->checkout, r->error);
		work_end(s->m);
		settle_free(s);
		return;
	}
	settle_with(s, PQgetvalue(r->res, 0, 0));
}

static void settle_queried(struct settle *s)
{
	const char *p[1] = { s->checkout };

	work_begin(s->m);
	db_query_durable(s->m->app->dbbg,
			 "SELECT r.amount_cents, u.preferred_language, c.name FROM mpesa_requests r "
			 "JOIN users u ON u.id = r.user_id JOIN chamas c ON c.id = r.chama_id "
			 "WHERE r.checkout_request_id = $1",
			 1, p, 0, query_loaded, s);
}

/* The Amount item's value as cents, read from the JSON text: "100.00" or
 * "100" -> 10000; -1 if absent or not whole shillings. */
static long long amount_from_text(const char *body)
{
	const char *p = strstr(body, "\"Amount\""), *v;
	long long kes = 0;
	int digits = 0;

	if (!p || !(v = strstr(p, "\"Value\"")))
		return -1;
	v += 7;
	v += strspn(v, " \t\r\n:");
	for (; *v >= '0' && *v <= '9' && digits < 10; v++, digits++)
		kes = kes * 10 + (*v - '0');
	if (!digits)
		return -1;
	if (*v == '.')
		for (v++; *v >= '0' && *v <= '9'; v++)
			if (*v != '0')
				return -1;	/* cents at the M-Pesa boundary: refuse */
	return kes * 100;
}

static void callback_stored(const struct db_result *r, void *arg)
{
	struct settle *s = arg;
	static const char ok[] = "{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}";

	if (r->status != DB_OK) {
		/* not kept: say so, so the sender may try again, and keep it in the log */
		log_msg(LOG_ERROR, http_ctx_reqid(s->ctx), "mpesa: callback %s NOT stored (%s): %s", s->checkout,
			r->error, s->body);
		http_reply_error(s->ctx, 503, "not stored, try again");
	} else {
		http_reply(s->ctx, 200, "application/json", ok, sizeof(ok) - 1);
		callbacks_soon(s->m, 0);
	}
	http_ctx_release(s->ctx);
	work_end(s->m);
	settle_free(s);
}

/* The STK callback: stored durably (and only then acknowledged), settled
 * from the table by callbacks_tick. */
static void callback(struct http_ctx *ctx)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	json_t *doc, *cb, *items, *it;
	struct settle *s;
	size_t i;
	char code[24], cents[24];
	const char *p[9];

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	doc = json_loadb(body, len, 0, NULL);
	cb = json_object_get(json_object_get(doc, "Body"), "stkCallback");
	if (!m || !json_is_object(cb) || !json_is_string(json_object_get(cb, "CheckoutRequestID")) ||
	    !json_is_integer(json_object_get(cb, "ResultCode")) ||
	    strlen(json_string_value(json_object_get(cb, "CheckoutRequestID"))) > 64) {
		json_decref(doc);
		http_reply_error(ctx, 400, "not an STK callback");
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->ctx = ctx;
	http_ctx_hold(ctx);
	s->source = "callback";
	s->body = xstrndup(body, len);
	snprintf(s->checkout, sizeof(s->checkout), "%s", json_string_value(json_object_get(cb, "CheckoutRequestID")));
	s->code = json_integer_value(json_object_get(cb, "ResultCode"));
	snprintf(s->desc, sizeof(s->desc), "%s",
		 json_string_value(json_object_get(cb, "ResultDesc")) ? json_string_value(json_object_get(cb, "ResultDesc"))
								      : "");
	s->amount_cents = s->code == 0 ? amount_from_text(s->body) : -1;
	items = json_object_get(json_object_get(cb, "CallbackMetadata"), "Item");
	json_array_foreach(items, i, it) {
		const char *name = json_string_value(json_object_get(it, "Name"));
		json_t *v = json_object_get(it, "Value");

		if (!name)
			continue;
		if (!strcmp(name, "MpesaReceiptNumber") && json_is_string(v))
			snprintf(s->receipt, sizeof(s->receipt), "%s", json_string_value(v));
		else if (!strcmp(name, "PhoneNumber") && json_is_integer(v))	/* 64-bit, exact */
			snprintf(s->phone, sizeof(s->phone), "+%lld", (long long)json_integer_value(v));
	}
	json_decref(doc);
	m->callbacks++;
	if (s->code == 0 && (s->amount_cents < 0 || !*s->receipt)) {
		log_warn("mpesa: callback %s: success without a usable Amount or receipt", s->checkout);
		s->amount_cents = s->amount_cents < 0 ? 0 : s->amount_cents;
	}
	report_params(s, code, cents, p);
	p[6] = s->body;
	p[7] = http_ctx_peer(ctx);
	p[8] = http_ctx_reqid(ctx);
	work_begin(m);
	/* retried while the answer can still reach Safaricom in time */
	db_query_durable(app->dbbg,
			 "INSERT INTO mpesa_callbacks (checkout_request_id, result_code, result_desc, mpesa_receipt, "
			 "amount_cents, phone, body, remote_addr, http_request_id) VALUES ($1, $2::bigint, left($3, 300), "
			 "left($4, 32), $5::bigint, left($6, 20), $7, left($8, 64), left($9, 64)) RETURNING id",
			 9, p, util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, callback_stored, s);
}

/* ---- paybill (C2B): validation and confirmation ---- */

/* "500" or "500.00" -> 50000; -1 unless whole shillings. */
static long long kes_to_cents(const char *s)
{
	long long kes = 0;
	int digits = 0;

	if (!s)
		return -1;
	for (; *s >= '0' && *s <= '9' && digits < 10; s++, digits++)
		kes = kes * 10 + (*s - '0');
	if (*s == '.')
		for (s++; *s == '0'; s++)
			;
	return digits && !*s && kes > 0 ? kes * 100 : -1;
}

struct c2b {
	struct http_ctx *ctx;
	char *body;
};

static void c2b_done(const struct db_result *r, void *arg)
{
	struct c2b *c = arg;
	static const char ok[] = "{\"ResultCode\":0,\"ResultDesc\":\"Success\"}";

	if (r->status != DB_OK) {
		/* not kept: say so (Safaricom may resend), and keep it in the log */
		log_msg(LOG_ERROR, http_ctx_reqid(c->ctx), "mpesa c2b NOT recorded (%s): %s", r->error, c->body);
		http_reply_error(c->ctx, 503, "not stored, try again");
	} else {
		log_msg(LOG_INFO, http_ctx_reqid(c->ctx), "mpesa c2b: %s%s", PQgetvalue(r->res, 0, 0),
			PQgetvalue(r->res, 0, 1)[0] == 't' ? "" : " (seen before)");
		http_reply(c->ctx, 200, "application/json", ok, sizeof(ok) - 1);
		app_outbox_queued(http_ctx_app(c->ctx));
	}
	http_ctx_release(c->ctx);
	free(c->body);
	free(c);
}

static void c2b_route(struct http_ctx *ctx, bool confirm)
{
	struct app *app = http_ctx_app(ctx);
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	json_t *doc;
	const char *trans, *ref;
	long long cents;
	struct c2b *c;
	char centss[24];

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	doc = json_loadb(body, len, 0, NULL);
	trans = json_string_value(json_object_get(doc, "TransID"));
	ref = json_string_value(json_object_get(doc, "BillRefNumber"));
	cents = kes_to_cents(json_string_value(json_object_get(doc, "TransAmount")));
	if (!confirm) {
		/* a paybill payment must be whole shillings to a number we can
		 * read; whose it is, the confirmation works out */
		static const char yes[] = "{\"ResultCode\":\"0\",\"ResultDesc\":\"Accepted\"}";
		static const char no[] = "{\"ResultCode\":\"C2B00013\",\"ResultDesc\":\"Rejected\"}";

		http_reply(ctx, 200, "application/json", cents > 0 && ref ? yes : no, cents > 0 && ref ? sizeof(yes) - 1
													: sizeof(no) - 1);
		json_decref(doc);
		return;
	}
	if (!trans || !ref || cents <= 0) {
		json_decref(doc);
		http_reply_error(ctx, 400, "not a C2B confirmation");
		return;
	}
	snprintf(centss, sizeof(centss), "%lld", cents);
	c = xcalloc(1, sizeof(*c));
	c->ctx = ctx;
	c->body = xstrndup(body, len);
	http_ctx_hold(ctx);
	{
		const char *p[6] = { trans, centss, ref, json_string_value(json_object_get(doc, "FirstName")),
				     json_string_value(json_object_get(doc, "MSISDN")),
				     "sms_mpesa_receipt" };	/* the receipt's template */

		/* retried while the answer can still reach Safaricom in time */
		db_query_durable(app->dbbg, "SELECT * FROM c2b_confirm($1, $2::bigint, $3, $4, $5, $6)", 6, p,
				 util_now_ms() + (uint64_t)app->cfg->http_request_timeout_ms / 2, c2b_done, c);
	}
	json_decref(doc);
}

static void c2b_validation(struct http_ctx *ctx)
{
	c2b_route(ctx, false);
}

static void c2b_confirmation(struct http_ctx *ctx)
{
	c2b_route(ctx, true);
}

/* ---- the status query job ---- */

static void queried(struct call *c, const struct httpc_response *r)
{
	json_t *doc = r->status == HTTPC_OK ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(doc, "ResultCode"));
	long long n;

	c->m->queries++;
	if (r->status == HTTPC_OK && r->code == 200 && code && util_parse_ll(code, 0, 1000000000, &n) == 0) {
		struct settle *s = xcalloc(1, sizeof(*s));

		s->m = c->m;
		s->source = "query";
		s->code = n;
		s->amount_cents = -1;
		snprintf(s->checkout, sizeof(s->checkout), "%s", c->checkout);
		snprintf(s->desc, sizeof(s->desc), "%s",
			 json_string_value(json_object_get(doc, "ResultDesc")) ?
				 json_string_value(json_object_get(doc, "ResultDesc")) : "");
		settle_queried(s);
	} else {
		/* still being processed, or Daraja busy: the next run asks again */
		log_debug("mpesa: query %s: not decided (%ld)", c->checkout, r->code);
	}
	json_decref(doc);
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
		struct call *c;

		if (!strcmp(PQgetvalue(r->res, i, 2), "t"))	/* given up: expired */
			continue;
		c = call_new(m, "/mpesa/stkpushquery/v1/query",
			     json_pack("{s:s, s:s}", "BusinessShortCode", m->app->cfg->mpesa_shortcode,
				       "CheckoutRequestID", PQgetvalue(r->res, i, 1)),
			     queried);
		snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(r->res, i, 0));
		snprintf(c->checkout, sizeof(c->checkout), "%s", PQgetvalue(r->res, i, 1));
		with_token(m, call_send, c);
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
	callbacks_soon(m, 0);
	if (m->querying || m->quiescing)
		return;
	m->querying = true;
	snprintf(unknown, sizeof(unknown), "%d", cfg->mpesa_unknown_close_s);
	/* a request no daemon pushed in time (all were down): no prompt was
	 * ever sent and no money moved; close it and tell the member to retry.
	 * One claimed by a daemon that died while pushing: maybe prompted, so
	 * never pushed again, but 'unknown' until a callback matches it or it
	 * is closed after [mpesa] unknown_close_s. */
	db_query(m->app->dbbg,
		 "WITH r AS (UPDATE mpesa_requests SET status = 'push_failed', completed_at = now(), "
		 "result_desc = CASE WHEN status = 'unknown' THEN 'push outcome unknown, no callback' "
		 "ELSE 'never pushed (no daemon could)' END, lease_until = NULL "
		 "WHERE (status = 'created' AND push_attempts = 0 AND coalesce(push_at, created_at) < now() - interval "
		 "'5 minutes') OR (status = 'unknown' AND created_at < now() - make_interval(secs => $1::int)) "
		 "RETURNING *) " PUSH_FAILED_NOTICE,
		 1, pu, db_logged, "closing requests never pushed");
	db_query(m->app->dbbg,
		 "UPDATE mpesa_requests SET status = 'unknown', lease_until = NULL, "
		 "result_desc = 'its daemon stopped while pushing' "
		 "WHERE status = 'created' AND push_attempts = 1 AND lease_until < now()",
		 0, NULL, db_logged, "resolving pushes whose daemon stopped");
	snprintf(every, sizeof(every), "%d", cfg->mpesa_query_every_s);
	snprintf(max, sizeof(max), "%d", cfg->mpesa_query_max_attempts);
	mpesa_hold(m);
	/* SKIP LOCKED: several daemons share the job without asking twice */
	db_query(m->app->dbbg,
		 "UPDATE mpesa_requests q SET query_attempts = q.query_attempts + 1, "
		 "next_query_at = now() + make_interval(secs => $1::int), "
		 "status = CASE WHEN q.query_attempts + 1 > $2::int THEN 'expired' ELSE q.status END, "
		 "completed_at = CASE WHEN q.query_attempts + 1 > $2::int THEN now() ELSE q.completed_at END "
		 "FROM (SELECT id FROM mpesa_requests WHERE status = 'pushed' AND next_query_at <= now() "
		 "ORDER BY next_query_at LIMIT 50 FOR UPDATE SKIP LOCKED) due WHERE q.id = due.id "
		 "RETURNING q.id, q.checkout_request_id, q.status = 'expired'",
		 2, p, due_claimed, m);
}

/* ---- life ---- */

struct mpesa *mpesa_new(struct app *app)
{
	const struct config *cfg = app->cfg;
	struct mpesa *m;
	struct httpc_opts ho = { 2000, cfg->mpesa_timeout_ms, 256 * 1024, 8 };
	struct timeval tv = { cfg->mpesa_query_every_s, 0 };
	char host[32] = "chamad", rnd[9];

	if (!*cfg->mpesa_consumer_key)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	m->refs = 1;
	m->app = app;
	m->http = httpc_new(app->base, &ho);
	m->query_ev = event_new(app->base, -1, EV_PERSIST, query_tick, m);
	m->push_ev = evtimer_new(app->base, push_tick, m);
	m->cb_ev = evtimer_new(app->base, callbacks_tick, m);
	gethostname(host, sizeof(host) - 1);
	util_random_hex(rnd, 4);
	snprintf(m->me, sizeof(m->me), "%.30s:%d:%s", host, (int)getpid(), rnd);
	event_add(m->query_ev, &tv);
	pushes_soon(m, 0);	/* whatever is due already */
	callbacks_soon(m, 0);
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
	/* cancels calls in flight: a push claimed but unanswered becomes
	 * 'unknown' when its lease ends; a pushed one is settled by any
	 * daemon's query job; a stored callback by any daemon's settling.
	 * Queries in flight hold references: the pool, freed after us,
	 * cancels them and the last one frees m. */
	httpc_free(m->http);
	m->http = NULL;
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

size_t mpesa_routes(const struct config *cfg, struct http_route *out, size_t max)
{
	/* C2B URLs may not contain "mpesa" (Daraja refuses to register them) */
	static char paths[3][200];
	const char *sep = *cfg->mpesa_callback_secret ? "/" : "";
	const struct http_route routes[3] = {
		{ paths[0], HTTP_POST, callback, "mpesa_stk_callback", NULL },
		{ paths[1], HTTP_POST, c2b_validation, "c2b_validation", NULL },
		{ paths[2], HTTP_POST, c2b_confirmation, "c2b_confirmation", NULL },
	};
	size_t n = 0;

	snprintf(paths[0], sizeof(paths[0]), "/mpesa/stk/callback%s%s", sep, cfg->mpesa_callback_secret);
	snprintf(paths[1], sizeof(paths[1]), "/payments/c2b/validation%s%s", sep, cfg->mpesa_callback_secret);
	snprintf(paths[2], sizeof(paths[2]), "/payments/c2b/confirmation%s%s", sep, cfg->mpesa_callback_secret);
	for (; n < 3 && n < max; n++)
		out[n] = routes[n];
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
		   "# HELP chamad_mpesa_unrecorded M-Pesa work whose outcome is not in PostgreSQL yet.\n"
		   "# TYPE chamad_mpesa_unrecorded gauge\nchamad_mpesa_unrecorded %d\n",
		   (unsigned long long)m->pushes, (unsigned long long)m->callbacks, (unsigned long long)m->queries,
		   (unsigned long long)m->unmatched, m->unrecorded);
}
