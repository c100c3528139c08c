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
#include "mpesa.h"
#include "app.h"
#include "config.h"
#include "db.h"
#include "httpc.h"
#include "httpd.h"
#include "log.h"
#include "menu.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

typedef void (*token_fn)(struct mpesa *m, const char *token, void *arg);

struct waiter {
	struct waiter *next;
	token_fn fn;
	void *arg;
};

struct mpesa {
	struct app *app;
	struct httpc *http;
	char token[128];
	uint64_t token_expires_ms;
	bool fetching;
	struct waiter *waiting;
	struct event *query_ev;
	bool querying;
	uint64_t pushes, callbacks, queries;
};

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

/* ---- the push ---- */

/* After "WITH r AS (UPDATE mpesa_requests ... RETURNING *)": the member's
 * notice that the payment never started (no prompt, no money moved). */
#define PUSH_FAILED_NOTICE                                                                                      \
	"INSERT INTO notifications (user_id, chama_id, channel, kind, recipient, body, language, priority, "      \
	"idempotency_key) SELECT r.user_id, r.chama_id, 'sms', 'mpesa_failed', r.phone, "                       \
	"CASE WHEN u.preferred_language = 'sw' THEN 'ChamaSmart: hatukuweza kuanzisha malipo ya M-Pesa. "        \
	"Tafadhali jaribu tena baadaye.' ELSE 'ChamaSmart: we could not start the M-Pesa payment. "             \
	"Please try again later.' END, u.preferred_language, 3, 'mpesa:request:' || r.id || ':push_failed' "   \
	"FROM r JOIN users u ON u.id = r.user_id"

static void db_logged(const struct db_result *r, void *arg)
{
	if (r->status != DB_OK)
		log_warn("mpesa: %s: %s", (const char *)arg, r->error);
}

static void pushed(struct call *c, const struct httpc_response *r)
{
	struct mpesa *m = c->m;
	json_t *doc = r->status == HTTPC_OK ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(doc, "ResponseCode"));
	const char *checkout = json_string_value(json_object_get(doc, "CheckoutRequestID"));
	char after[16];

	snprintf(after, sizeof(after), "%d", m->app->cfg->mpesa_query_after_s);
	if (r->status == HTTPC_OK && r->code == 200 && code && !strcmp(code, "0") && checkout) {
		const char *p[4] = { c->id, checkout, json_string_value(json_object_get(doc, "MerchantRequestID")), after };

		db_query(m->app->db,
			 "UPDATE mpesa_requests SET status = 'pushed', checkout_request_id = $2, merchant_request_id = $3, "
			 "pushed_at = now(), next_query_at = now() + make_interval(secs => $4::int) "
			 "WHERE id = $1::bigint AND status = 'created'",
			 4, p, db_logged, "recording a push");
	} else {
		char why[300];
		const char *p[2] = { c->id, why };

		snprintf(why, sizeof(why), "push refused: %s %ld %s", r->error ? r->error : "", r->code,
			 json_string_value(json_object_get(doc, "errorMessage")) ? json_string_value(json_object_get(
											     doc, "errorMessage"))
										     : "");
		log_warn("mpesa: request %s: %s", c->id, why);
		/* the member learns it by SMS: the USSD session is over */
		db_query(m->app->db,
			 "WITH r AS (UPDATE mpesa_requests SET status = 'push_failed', result_desc = left($2, 300), "
			 "completed_at = now() WHERE id = $1::bigint AND status = 'created' RETURNING *) "
			 PUSH_FAILED_NOTICE,
			 2, p, db_logged, "recording a failed push");
	}
	m->pushes++;
	json_decref(doc);
}

static void push_loaded(const struct db_result *r, void *arg)
{
	struct mpesa *m = *(struct mpesa **)arg;
	const struct config *cfg = m->app->cfg;
	struct call *c;
	char cb[512];
	long long cents;

	free(arg);
	if (r->status != DB_OK || PQntuples(r->res) != 1) {
		if (r->status != DB_OK)
			log_warn("mpesa: loading a request to push: %s", r->error);
		return;
	}
	cents = atoll(PQgetvalue(r->res, 0, 2));
	snprintf(cb, sizeof(cb), "%s/mpesa/stk/callback%s%s", cfg->mpesa_public_url, *cfg->mpesa_callback_secret ? "/" : "",
		 cfg->mpesa_callback_secret);
	c = call_new(m, "/mpesa/stkpush/v1/processrequest",
		     json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "BusinessShortCode", cfg->mpesa_shortcode,
			       "TransactionType", cfg->mpesa_transaction_type, "Amount", (json_int_t)(cents / 100),
			       "PartyA", digits_of(PQgetvalue(r->res, 0, 1)), "PartyB", cfg->mpesa_shortcode,
			       "PhoneNumber", digits_of(PQgetvalue(r->res, 0, 1)), "CallBackURL", cb, "AccountReference",
			       PQgetvalue(r->res, 0, 3), "TransactionDesc", "Contribution"),
		     pushed);
	snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(r->res, 0, 0));
	with_token(m, call_send, c);
}

struct push_timer {
	struct mpesa *m;
	struct event *ev;
	char id[24];
};

static void push_now(evutil_socket_t fd, short what, void *arg)
{
	struct push_timer *t = arg;
	struct mpesa **mp = xmalloc(sizeof(*mp));
	const char *p[1] = { t->id };

	(void)fd;
	(void)what;
	*mp = t->m;
	db_query(t->m->app->db,
		 "SELECT id, phone, amount_cents, account_ref FROM mpesa_requests WHERE id = $1::bigint "
		 "AND status = 'created'",
		 1, p, push_loaded, mp);
	event_free(t->ev);
	free(t);
}

void mpesa_push_later(struct mpesa *m, const char *request_id)
{
	struct push_timer *t = xcalloc(1, sizeof(*t));
	int ms = m->app->cfg->mpesa_push_delay_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	t->m = m;
	snprintf(t->id, sizeof(t->id), "%s", request_id);
	t->ev = evtimer_new(m->app->base, push_now, t);
	evtimer_add(t->ev, &tv);
}

/* ---- settling: the callback and the status query ---- */

struct settle {
	struct mpesa *m;
	struct http_ctx *ctx;	/* the callback's, or NULL for the query job */
	char checkout[72], receipt[40], phone[20], desc[300];
	long long code, amount_cents;	/* -1: not given */
	const char *source;
};

static void settled(const struct db_result *r, void *arg)
{
	struct settle *s = arg;
	static const char ok[] = "{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}";

	if (r->status != DB_OK)
		log_warn("mpesa: settling %s failed: %s", s->checkout, r->error);
	else
		log_info("mpesa: %s %s by %s: %s%s", s->checkout, PQgetvalue(r->res, 0, 0), s->source,
			 PQgetvalue(r->res, 0, 1)[0] == 't' ? "settled now" : "already settled", "");
	if (s->ctx) {
		/* Safaricom does not retry: a failure here is recovered by the
		 * status query, so the answer is an acknowledgement either way */
		http_reply(s->ctx, 200, "application/json", ok, sizeof(ok) - 1);
		http_ctx_release(s->ctx);
	}
	free(s);
}

static const char *settle_var(const char *name, void *arg)
{
	const char *const *kv = arg;

	for (int i = 0; kv[i]; i += 2)
		if (!strcmp(kv[i], name))
			return kv[i + 1];
	return NULL;
}

/* With the request's member and chama known, the texts in their language. */
static void settle_loaded(const struct db_result *r, void *arg)
{
	struct settle *s = arg;
	struct app *app = s->m->app;
	enum menu_lang lang = LANG_EN;
	char amount[40], code[24], key[48], cents[24], *ok_body, *fail_body;
	const char *vars[] = { "amount", amount, "chama", "", "receipt", s->receipt, "desc", s->desc, NULL };
	const char *p[9];

	if (r->status != DB_OK || PQntuples(r->res) != 1) {
		if (r->status != DB_OK)
			log_warn("mpesa: looking up %s: %s", s->checkout, r->error);
		else
			log_warn("mpesa: callback for an unknown CheckoutRequestID %s: ignored", s->checkout);
		settled(&(struct db_result){ DB_ERROR, NULL, "unknown request", NULL }, s);
		return;
	}
	menu_lang_parse(PQgetvalue(r->res, 0, 1), &lang);
	util_format_cents(atoll(PQgetvalue(r->res, 0, 0)), amount, sizeof(amount));
	vars[3] = PQgetvalue(r->res, 0, 2);
	if (s->amount_cents < 0)	/* the query does not tell: it is what we asked */
		s->amount_cents = atoll(PQgetvalue(r->res, 0, 0));
	snprintf(key, sizeof(key), "sms_mpesa_failed_%lld", s->code);
	ok_body = menu_text_format(app->menus, "sms_mpesa_receipt", lang, settle_var, (void *)vars);
	fail_body = menu_text_format(app->menus, menu_string(app->menus, key, lang) ? key : "sms_mpesa_failed", lang,
				     settle_var, (void *)vars);
	snprintf(code, sizeof(code), "%lld", s->code);
	snprintf(cents, sizeof(cents), "%lld", s->amount_cents);
	p[0] = s->checkout;
	p[1] = code;
	p[2] = s->desc;
	p[3] = *s->receipt ? s->receipt : NULL;
	p[4] = cents;
	p[5] = *s->phone ? s->phone : NULL;
	p[6] = s->source;
	p[7] = ok_body;
	p[8] = fail_body;
	db_query(app->db, "SELECT * FROM mpesa_settle($1, $2::int, $3, $4, $5::bigint, $6, $7, $8, $9)", 9, p, settled,
		 s);
	free(ok_body);
	free(fail_body);
}

static void settle(struct settle *s)
{
	const char *p[1] = { s->checkout };

	db_query(s->m->app->db,
		 "SELECT r.amount_cents, u.preferred_language, c.name FROM mpesa_requests r "
		 "JOIN users u ON u.id = r.user_id JOIN chamas c ON c.id = r.chama_id WHERE r.checkout_request_id = $1",
		 1, p, settle_loaded, s);
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

static void callback(struct http_ctx *ctx)
{
	struct app *app = http_ctx_app(ctx);
	struct mpesa *m = app->mpesa;
	size_t len;
	const char *body = http_ctx_body(ctx, &len);
	json_t *doc, *cb, *items, *it;
	struct settle *s;
	size_t i;

	if (!http_guard(ctx, "", app->cfg->mpesa_allow_ips, "safaricom"))
		return;
	doc = json_loadb(body, len, 0, NULL);
	cb = json_object_get(json_object_get(doc, "Body"), "stkCallback");
	if (!m || !json_is_object(cb) || !json_is_string(json_object_get(cb, "CheckoutRequestID")) ||
	    !json_is_integer(json_object_get(cb, "ResultCode"))) {
		json_decref(doc);
		http_reply_error(ctx, 400, "not an STK callback");
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->ctx = ctx;
	http_ctx_hold(ctx);
	s->source = "callback";
	snprintf(s->checkout, sizeof(s->checkout), "%s", json_string_value(json_object_get(cb, "CheckoutRequestID")));
	s->code = json_integer_value(json_object_get(cb, "ResultCode"));
	snprintf(s->desc, sizeof(s->desc), "%s",
		 json_string_value(json_object_get(cb, "ResultDesc")) ? json_string_value(json_object_get(cb, "ResultDesc"))
								      : "");
	s->amount_cents = s->code == 0 ? amount_from_text(body) : -1;
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
	settle(s);
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
};

static void c2b_done(const struct db_result *r, void *arg)
{
	struct c2b *c = arg;
	static const char ok[] = "{\"ResultCode\":0,\"ResultDesc\":\"Success\"}";

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "mpesa c2b not recorded: %s", r->error);
		http_reply_error(c->ctx, 503, "try again");
	} else {
		log_msg(LOG_INFO, http_ctx_reqid(c->ctx), "mpesa c2b: %s%s", PQgetvalue(r->res, 0, 0),
			PQgetvalue(r->res, 0, 1)[0] == 't' ? "" : " (seen before)");
		http_reply(c->ctx, 200, "application/json", ok, sizeof(ok) - 1);
	}
	http_ctx_release(c->ctx);
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
	char amount[40], centss[24], *receipt;
	const char *vars[] = { "amount", amount, "chama", "", "receipt", "", NULL };

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
	util_format_cents(cents, amount, sizeof(amount));
	vars[5] = trans;
	receipt = menu_text_format(app->menus, "sms_mpesa_receipt", LANG_EN, settle_var, (void *)vars);
	snprintf(centss, sizeof(centss), "%lld", cents);
	c = xcalloc(1, sizeof(*c));
	c->ctx = ctx;
	http_ctx_hold(ctx);
	{
		const char *p[6] = { trans, centss, ref, json_string_value(json_object_get(doc, "FirstName")),
				     json_string_value(json_object_get(doc, "MSISDN")), receipt };

		db_query(app->db, "SELECT * FROM c2b_confirm($1, $2::bigint, $3, $4, $5, $6)", 6, p, c2b_done, c);
	}
	free(receipt);
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
		settle(s);
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
		log_warn("mpesa: query job: %s", r->error);
		return;
	}
	for (int i = 0; i < PQntuples(r->res); i++) {
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
}

static void query_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mpesa *m = arg;
	const struct config *cfg = m->app->cfg;
	char every[16], max[16];
	const char *p[2] = { every, max };

	(void)fd;
	(void)what;
	if (m->querying)
		return;
	m->querying = true;
	/* a request whose daemon died before pushing it: no prompt was ever
	 * sent and no money moved; close it and tell the member to retry */
	db_query(m->app->db,
		 "WITH r AS (UPDATE mpesa_requests SET status = 'push_failed', completed_at = now(), "
		 "result_desc = 'never pushed (the daemon stopped)' WHERE status = 'created' "
		 "AND created_at < now() - interval '5 minutes' RETURNING *) "
		 PUSH_FAILED_NOTICE " ON CONFLICT (idempotency_key) DO NOTHING",
		 0, NULL, db_logged, "closing requests never pushed");
	snprintf(every, sizeof(every), "%d", cfg->mpesa_query_every_s);
	snprintf(max, sizeof(max), "%d", cfg->mpesa_query_max_attempts);
	/* SKIP LOCKED: several daemons share the job without asking twice */
	db_query(m->app->db,
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

	if (!*cfg->mpesa_consumer_key)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	m->app = app;
	m->http = httpc_new(app->base, &ho);
	m->query_ev = event_new(app->base, -1, EV_PERSIST, query_tick, m);
	event_add(m->query_ev, &tv);
	log_info("mpesa: STK push through %s, shortcode %s", cfg->mpesa_base_url, cfg->mpesa_shortcode);
	return m;
}

void mpesa_free(struct mpesa *m)
{
	if (!m)
		return;
	event_free(m->query_ev);
	/* cancels calls in flight; their rows are settled by the next daemon's
	 * query job (pushed) or stay 'created' for an operator */
	httpc_free(m->http);
	free(m);
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
		   "chamad_mpesa_calls_total{call=\"query\"} %llu\n",
		   (unsigned long long)m->pushes, (unsigned long long)m->callbacks, (unsigned long long)m->queries);
}
