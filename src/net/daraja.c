/*
 * daraja: the client, the OAuth token, one call's life, the STK push and
 * its query (see daraja.h, daraja_int.h).
 */
#include "net/daraja.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "net/daraja_int.h"
#include "net/httpc.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

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

static void call_finish(struct call *c, const struct httpc_response *r, const char *unsent)
{
	switch (c->kind) {
	case CALL_PUSH:
		push_finish(c, r, unsent != NULL);
		break;
	case CALL_QUERY:
		query_finish(c, r, unsent != NULL);
		break;
	case CALL_ACK:
		daraja_ack_finish(c, r, unsent);
		break;
	case CALL_PULL:
		daraja_pull_finish(c, r, unsent);
		break;
	}
	call_free(c);
}

static const struct httpc_response no_response = { HTTPC_ERROR, 0, "", 0, NULL, "not sent", 0 };

static void unsent_now(struct defer_node *n)
{
	struct call *c = (struct call *)((char *)n - offsetof(struct call, later));

	call_finish(c, &no_response, c->unsent_why);
}

void daraja_call_unsent_later(struct call *c, const char *why)
{
	c->unsent_why = why;
	defer_push(&c->d->later, &c->later, unsent_now);
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
	call_finish(c, r, NULL);
}

static void call_send(struct call *c, const char *token)
{
	struct daraja *d = c->d;
	const struct config *cfg = d->cfg;
	char ts[15], pw[256], auth[200], *url, *text;
	const char *headers[3] = { auth, "Content-Type: application/json", NULL };
	struct httpc_request req = { "POST", NULL, headers, NULL, 0, 0 };
	if (!token) {
		call_finish(c, &no_response, "no OAuth token");
		return;
	}
	/* a push reaches Daraja once, and again only after a refused token */
	c->sends++;
	xassert(!c->once || c->sends == 1 || (c->sends == 2 && c->retried));
	if (c->stk) {
		eat_timestamp(ts);
		password(cfg, ts, pw, sizeof(pw));
		json_object_set_new(c->body, "Timestamp", json_string(ts));
		json_object_set_new(c->body, "Password", json_string(pw));
	}
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

struct call *daraja_call_new(struct daraja *d, enum call_kind kind, const char *path, json_t *body, void *arg)
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
	c = daraja_call_new(d, CALL_PUSH, "/mpesa/stkpush/v1/processrequest",
		     json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "BusinessShortCode", cfg->mpesa_shortcode,
			       "TransactionType", cfg->mpesa_transaction_type, "Amount",
			       (json_int_t)(p->amount_cents / 100), "PartyA", digits_of(p->phone), "PartyB",
			       cfg->mpesa_shortcode, "PhoneNumber", digits_of(p->phone), "CallBackURL", p->callback_url,
			       "AccountReference", p->account_ref, "TransactionDesc", p->desc),
		     arg);
	c->cb.push = cb;
	c->once = true;
	c->stk = true;
	with_token(c);
}

void daraja_stk_query(struct daraja *d, const char *checkout_request_id, daraja_query_cb cb, void *arg)
{
	struct call *c = daraja_call_new(d, CALL_QUERY, "/mpesa/stkpushquery/v1/query",
				  json_pack("{s:s, s:s}", "BusinessShortCode", d->cfg->mpesa_shortcode,
					    "CheckoutRequestID", checkout_request_id),
				  arg);

	c->cb.query = cb;
	c->stk = true;
	with_token(c);
}

void daraja_call_start(struct call *c)
{
	with_token(c);
}

/* ---- life ---- */

struct daraja *daraja_new(struct event_base *base, const struct config *cfg)
{
	struct daraja *d = xcalloc(1, sizeof(*d));
	struct httpc_opts ho = { 2000, cfg->mpesa_timeout_ms, 256 * 1024, 8 };

	d->cfg = cfg;
	d->http = httpc_new(base, &ho);
	defer_init(&d->later, base);
	return d;
}

void daraja_free(struct daraja *d)
{
	if (!d)
		return;
	/* every request in flight ends (HTTPC_CANCELLED), the token fetch
	 * included: the calls waiting for it end unsent */
	httpc_free(d->http);
	defer_free(&d->later);	/* calls refused before sending end now */
	xassert(!d->waiting && !d->fetching);
	sodium_memzero(d->token, sizeof(d->token));
	free(d);
}
