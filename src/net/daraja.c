/*
 * daraja: see daraja.h.
 */
#include "net/daraja.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "net/httpc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

struct call;

struct daraja {
	const struct config *cfg;
	struct httpc *http;
	char token[128];
	uint64_t token_expires_ms;
	bool fetching;
	struct call *waiting;	/* calls waiting for the token being fetched */
};

enum call_kind { CALL_PUSH, CALL_QUERY };

/* One Daraja call with a fresh token and one retry on a stale one. */
struct call {
	struct daraja *d;
	struct call *next;	/* in d->waiting */
	enum call_kind kind;
	const char *path;
	json_t *body;		/* without Password/Timestamp: added per attempt */
	bool retried;		/* sent again after Daraja refused the token */
	int sends;
	bool once;		/* must never reach Daraja twice (httpc once) */
	union {
		daraja_push_cb push;
		daraja_query_cb query;
	} cb;
	void *arg;
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
	sodium_memzero(plain, strlen(plain));
	free(plain);
}

static const char *digits_of(const char *phone)
{
	return phone[0] == '+' ? phone + 1 : phone;
}

/* ---- the end of a call: its callback, exactly once ---- */

static void call_free(struct call *c)
{
	json_decref(c->body);
	free(c);
}

static void push_finish(struct call *c, const struct httpc_response *r, bool unsent)
{
	json_t *doc = r->status == HTTPC_OK ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(doc, "ResponseCode"));
	const char *checkout = json_string_value(json_object_get(doc, "CheckoutRequestID"));
	const char *emsg = json_string_value(json_object_get(doc, "errorMessage"));
	char detail[300];
	struct daraja_push_result res = { DARAJA_UNANSWERED, NULL, NULL, detail };

	if (unsent) {
		res.outcome = DARAJA_UNSENT;
		snprintf(detail, sizeof(detail), "no OAuth token");
	} else if (r->status == HTTPC_CANCELLED) {
		res.outcome = DARAJA_CANCELLED;
		snprintf(detail, sizeof(detail), "cancelled");
	} else if (r->status == HTTPC_OK && r->code == 200 && code && !strcmp(code, "0") && checkout) {
		res.outcome = DARAJA_ACCEPTED;
		res.checkout = checkout;
		res.merchant = json_string_value(json_object_get(doc, "MerchantRequestID"));
		res.detail = NULL;
	} else if (r->status == HTTPC_OK) {
		res.outcome = DARAJA_REFUSED;
		snprintf(detail, sizeof(detail), "HTTP %ld %s", r->code, emsg ? emsg : "");
	} else {
		snprintf(detail, sizeof(detail), "%s", r->error ? r->error : "no answer");
	}
	c->cb.push(&res, c->arg);
	json_decref(doc);
}

static void query_finish(struct call *c, const struct httpc_response *r, bool unsent)
{
	json_t *doc = r->status == HTTPC_OK ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(doc, "ResultCode"));
	const char *desc = json_string_value(json_object_get(doc, "ResultDesc"));
	struct daraja_query_result res = { DARAJA_UNANSWERED, 0, desc ? desc : "", r->code };
	long long n;

	if (unsent)
		res.outcome = DARAJA_UNSENT;
	else if (r->status == HTTPC_CANCELLED)
		res.outcome = DARAJA_CANCELLED;
	else if (r->status == HTTPC_OK && r->code == 200 && code && util_parse_ll(code, 0, 1000000000, &n) == 0) {
		res.outcome = DARAJA_ACCEPTED;
		res.result_code = n;
	} else if (r->status == HTTPC_OK)
		res.outcome = DARAJA_REFUSED;	/* still being processed, or Daraja busy */
	c->cb.query(&res, c->arg);
	json_decref(doc);
}

static void call_finish(struct call *c, const struct httpc_response *r, bool unsent)
{
	if (c->kind == CALL_PUSH)
		push_finish(c, r, unsent);
	else
		query_finish(c, r, unsent);
	call_free(c);
}

/* ---- the OAuth token, cached until a minute before it expires ---- */

static void call_send(struct call *c, const char *token);

static void token_answered(const struct httpc_response *r, void *arg)
{
	struct daraja *d = arg;
	struct call *w = d->waiting;
	json_t *doc = NULL;
	const char *tok = NULL;

	d->fetching = false;
	d->waiting = NULL;
	if (r->status == HTTPC_OK && r->code == 200 && (doc = json_loadb(r->body, r->body_len, 0, NULL))) {
		json_t *exp = json_object_get(doc, "expires_in");
		long long secs = json_is_integer(exp) ? json_integer_value(exp) : 0;

		if (json_is_string(exp))
			util_parse_ll(json_string_value(exp), 1, 86400, &secs);
		tok = json_string_value(json_object_get(doc, "access_token"));
		if (tok && strlen(tok) < sizeof(d->token) && secs > 60) {
			snprintf(d->token, sizeof(d->token), "%s", tok);
			d->token_expires_ms = util_now_ms() + (uint64_t)(secs - 60) * 1000;
		} else {
			tok = NULL;
		}
	}
	if (!tok && r->status != HTTPC_CANCELLED)
		log_warn("daraja: no OAuth token: %s %ld %.120s", r->error ? r->error : "", r->code, r->body);
	while (w) {
		struct call *next = w->next;

		call_send(w, tok ? d->token : NULL);
		w = next;
	}
	json_decref(doc);
}

static void with_token(struct call *c)
{
	struct daraja *d = c->d;
	const struct config *cfg = d->cfg;
	char *cred, b64[512], hdr[600], *url;
	const char *headers[2] = { hdr, NULL };
	struct httpc_request req = { "GET", NULL, headers, NULL, 0, 0 };

	if (*d->token && util_now_ms() < d->token_expires_ms) {
		call_send(c, d->token);
		return;
	}
	c->next = d->waiting;
	d->waiting = c;
	if (d->fetching)
		return;
	d->fetching = true;
	cred = xasprintf("%s:%s", cfg->mpesa_consumer_key, cfg->mpesa_consumer_secret);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)cred, strlen(cred), sodium_base64_VARIANT_ORIGINAL);
	snprintf(hdr, sizeof(hdr), "Authorization: Basic %s", b64);
	url = xasprintf("%s/oauth/v1/generate?grant_type=client_credentials", cfg->mpesa_base_url);
	req.url = url;
	httpc_request(d->http, &req, token_answered, d);
	sodium_memzero(cred, strlen(cred));
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(hdr, sizeof(hdr));
	free(cred);
	free(url);
}

/* Daraja answers an expired or unknown token with 404.001.03. */
static bool token_rejected(const struct httpc_response *r)
{
	return r->status == HTTPC_OK && r->code == 404 && strstr(r->body, "404.001.03");
}

/* ---- one call ---- */

static void call_answered(const struct httpc_response *r, void *arg)
{
	struct call *c = arg;

	if (token_rejected(r) && !c->retried) {
		/* the request itself was not processed: safe to send again */
		c->retried = true;
		c->d->token[0] = '\0';
		with_token(c);
		return;
	}
	call_finish(c, r, false);
}

static void call_send(struct call *c, const char *token)
{
	struct daraja *d = c->d;
	const struct config *cfg = d->cfg;
	char ts[15], pw[256], auth[200], *url, *text;
	const char *headers[3] = { auth, "Content-Type: application/json", NULL };
	struct httpc_request req = { "POST", NULL, headers, NULL, 0, 0 };
	static const struct httpc_response none = { HTTPC_ERROR, 0, "", 0, NULL, "no OAuth token", 0 };

	if (!token) {
		call_finish(c, &none, true);
		return;
	}
	/* a push reaches Daraja once, and again only after a refused token */
	c->sends++;
	xassert(!c->once || c->sends == 1 || (c->sends == 2 && c->retried));
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
	httpc_request(d->http, &req, call_answered, c);
	sodium_memzero(pw, sizeof(pw));
	free(url);
	free(text);
}

static struct call *call_new(struct daraja *d, enum call_kind kind, const char *path, json_t *body, void *arg)
{
	struct call *c = xcalloc(1, sizeof(*c));

	c->d = d;
	c->kind = kind;
	c->path = path;
	c->body = body;
	c->arg = arg;
	return c;
}

void daraja_stk_push(struct daraja *d, const struct daraja_push *p, daraja_push_cb cb, void *arg)
{
	const struct config *cfg = d->cfg;
	struct call *c;

	/* mpesa_requests holds whole shillings only (a CHECK): cents here are a bug */
	xassert(p->amount_cents > 0 && p->amount_cents % 100 == 0);
	c = call_new(d, CALL_PUSH, "/mpesa/stkpush/v1/processrequest",
		     json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "BusinessShortCode", cfg->mpesa_shortcode,
			       "TransactionType", cfg->mpesa_transaction_type, "Amount",
			       (json_int_t)(p->amount_cents / 100), "PartyA", digits_of(p->phone), "PartyB",
			       cfg->mpesa_shortcode, "PhoneNumber", digits_of(p->phone), "CallBackURL", p->callback_url,
			       "AccountReference", p->account_ref, "TransactionDesc", p->desc),
		     arg);
	c->cb.push = cb;
	c->once = true;
	with_token(c);
}

void daraja_stk_query(struct daraja *d, const char *checkout_request_id, daraja_query_cb cb, void *arg)
{
	struct call *c = call_new(d, CALL_QUERY, "/mpesa/stkpushquery/v1/query",
				  json_pack("{s:s, s:s}", "BusinessShortCode", d->cfg->mpesa_shortcode,
					    "CheckoutRequestID", checkout_request_id),
				  arg);

	c->cb.query = cb;
	with_token(c);
}

/* ---- life ---- */

struct daraja *daraja_new(struct event_base *base, const struct config *cfg)
{
	struct daraja *d = xcalloc(1, sizeof(*d));
	struct httpc_opts ho = { 2000, cfg->mpesa_timeout_ms, 256 * 1024, 8 };

	d->cfg = cfg;
	d->http = httpc_new(base, &ho);
	return d;
}

void daraja_free(struct daraja *d)
{
	if (!d)
		return;
	/* every request in flight ends (HTTPC_CANCELLED), the token fetch
	 * included: the calls waiting for it end unsent */
	httpc_free(d->http);
	xassert(!d->waiting && !d->fetching);
	sodium_memzero(d->token, sizeof(d->token));
	free(d);
}

/* ---- what Daraja posts to us ---- */

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

int daraja_stk_callback_parse(const char *body, size_t len, struct daraja_stk_callback *out)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	json_t *cb = json_object_get(json_object_get(doc, "Body"), "stkCallback");
	json_t *items, *it;
	const char *checkout = json_string_value(json_object_get(cb, "CheckoutRequestID"));
	const char *desc;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(cb) || !checkout || strlen(checkout) > 64 ||
	    !json_is_integer(json_object_get(cb, "ResultCode"))) {
		json_decref(doc);
		return -1;
	}
	snprintf(out->checkout, sizeof(out->checkout), "%s", checkout);
	out->result_code = json_integer_value(json_object_get(cb, "ResultCode"));
	desc = json_string_value(json_object_get(cb, "ResultDesc"));
	snprintf(out->desc, sizeof(out->desc), "%s", desc ? desc : "");
	if (out->result_code == 0) {
		/* the text is NUL-terminated: json_loadb accepted len bytes of it */
		char *text = xstrndup(body, len);

		out->amount_cents = amount_from_text(text);
		free(text);
	} else {
		out->amount_cents = -1;
	}
	items = json_object_get(json_object_get(cb, "CallbackMetadata"), "Item");
	json_array_foreach(items, i, it) {
		const char *name = json_string_value(json_object_get(it, "Name"));
		json_t *v = json_object_get(it, "Value");

		if (!name)
			continue;
		if (!strcmp(name, "MpesaReceiptNumber") && json_is_string(v))
			snprintf(out->receipt, sizeof(out->receipt), "%s", json_string_value(v));
		else if (!strcmp(name, "PhoneNumber") && json_is_integer(v))	/* 64-bit, exact */
			snprintf(out->phone, sizeof(out->phone), "+%lld", (long long)json_integer_value(v));
	}
	json_decref(doc);
	return 0;
}

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

static char *dup_string(json_t *doc, const char *key)
{
	const char *s = json_string_value(json_object_get(doc, key));

	return s ? xstrdup(s) : NULL;
}

void daraja_c2b_parse(const char *body, size_t len, struct daraja_c2b *out)
{
	json_t *doc = json_loadb(body, len, 0, NULL);

	out->trans_id = dup_string(doc, "TransID");
	out->bill_ref = dup_string(doc, "BillRefNumber");
	out->first_name = dup_string(doc, "FirstName");
	out->msisdn = dup_string(doc, "MSISDN");
	{
		json_t *sc = json_object_get(doc, "BusinessShortCode");
		char digits[24];

		if (json_is_integer(sc) && json_integer_value(sc) >= 0) {
			snprintf(digits, sizeof(digits), "%lld", (long long)json_integer_value(sc));
			out->shortcode = xstrdup(digits);
		} else {
			out->shortcode = dup_string(doc, "BusinessShortCode");
		}
	}
	out->amount_cents = kes_to_cents(json_string_value(json_object_get(doc, "TransAmount")));
	json_decref(doc);
}

void daraja_c2b_clear(struct daraja_c2b *c)
{
	free(c->trans_id);
	free(c->bill_ref);
	free(c->first_name);
	free(c->msisdn);
	free(c->shortcode);
	memset(c, 0, sizeof(*c));
}
