/*
 * httpd: evhttp setup, routing, request contexts, request metrics.
 */
#include "net/httpd.h"
#include "base/config.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

/* Latency buckets in seconds (Prometheus le labels). */
static const double lat_bounds[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define NBUCKETS (sizeof(lat_bounds) / sizeof(lat_bounds[0]))
#define MAX_CODES 12

struct route_stats {
	struct { int code; uint64_t n; } codes[MAX_CODES];
	uint64_t buckets[NBUCKETS + 1];	/* non-cumulative; last is +Inf */
	uint64_t count;
	uint64_t sum_us;
	uint64_t bad_input;	/* answered by http_reply_bad_input */
};

struct httpd {
	struct event_base *base;
	const struct config *cfg;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	const struct http_route *routes;
	size_t nroutes;
	struct route_stats *stats;	/* nroutes + 1: last is "unmatched" */
	void *app;
	int inflight;		/* requests not yet answered */
	int sending;		/* answers libevent is still writing */
	bool draining;
	uint64_t seq;
	char idprefix[9];
};

struct http_ctx {
	struct httpd *h;		/* NULL once the server is freed */
	struct evhttp_request *req;	/* NULL once answered or client gone */
	struct evhttp_connection *evcon;
	struct event *deadline;
	size_t route;			/* index into stats */
	int refs;
	bool answered;
	uint64_t start_us;
	char *body;
	size_t body_len;
	const void *route_data;
	char peer[64];
	char reqid[65];
	char method[8];
	char path[128];
};

static void ctx_maybe_free(struct http_ctx *ctx);

/* libevent wrote the whole answer; only then may a drain close the socket. */
static void sent_cb(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;

	h->sending--;
}

void *http_ctx_app(const struct http_ctx *ctx)
{
	return ctx->h ? ctx->h->app : NULL;
}

const void *http_ctx_route_data(const struct http_ctx *ctx)
{
	return ctx->route_data;
}

const char *http_ctx_peer(const struct http_ctx *ctx)
{
	return ctx->peer;
}

const char *http_ctx_header(const struct http_ctx *ctx, const char *name)
{
	return ctx->req ? evhttp_find_header(evhttp_request_get_input_headers(ctx->req), name) : NULL;
}

const char *http_ctx_query_raw(const struct http_ctx *ctx)
{
	const struct evhttp_uri *uri = ctx->req ? evhttp_request_get_evhttp_uri(ctx->req) : NULL;
	const char *q = uri ? evhttp_uri_get_query(uri) : NULL;

	return q ? q : "";
}

int http_ctx_query(const struct http_ctx *ctx, const char *name, char *out, size_t outlen)
{
	const struct evhttp_uri *uri = ctx->req ? evhttp_request_get_evhttp_uri(ctx->req) : NULL;
	const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq params;
	const char *v;
	int rc = -1;

	if (!q || evhttp_parse_query_str(q, &params) < 0)
		return -1;
	if ((v = evhttp_find_header(&params, name))) {
		snprintf(out, outlen, "%s", v);
		rc = 0;
	}
	evhttp_clear_headers(&params);
	return rc;
}

const char *http_ctx_reqid(const struct http_ctx *ctx)
{
	return ctx->reqid;
}

struct evhttp_request *http_ctx_req(const struct http_ctx *ctx)
{
	return ctx->req;
}

bool http_ctx_answered(const struct http_ctx *ctx)
{
	return ctx->answered;
}

const char *http_ctx_body(struct http_ctx *ctx, size_t *len)
{
	*len = ctx->body_len;
	return ctx->body ? ctx->body : "";
}

void http_ctx_hold(struct http_ctx *ctx)
{
	ctx->refs++;
}

void http_ctx_release(struct http_ctx *ctx)
{
	ctx->refs--;
	ctx_maybe_free(ctx);
}

static void record(struct httpd *h, size_t route, int code, uint64_t us)
{
	struct route_stats *s = &h->stats[route];
	double secs = (double)us / 1e6;
	size_t b = 0;

	for (int i = 0; i < MAX_CODES; i++) {
		if (s->codes[i].code == code || s->codes[i].code == 0) {
			s->codes[i].code = code;
			s->codes[i].n++;
			break;
		}
	}
	while (b < NBUCKETS && secs > lat_bounds[b])
		b++;
	s->buckets[b]++;
	s->count++;
	s->sum_us += us;
}

static void ctx_detach_conn(struct http_ctx *ctx)
{
	if (ctx->evcon) {
		evhttp_connection_set_closecb(ctx->evcon, NULL, NULL);
		ctx->evcon = NULL;
	}
}

static void ctx_finish(struct http_ctx *ctx, int code)
{
	uint64_t us = util_now_us() - ctx->start_us;

	ctx->answered = true;
	evtimer_del(ctx->deadline);
	if (ctx->h) {
		record(ctx->h, ctx->route, code, us);
		ctx->h->inflight--;
	}
	log_msg(code >= 500 ? LOG_WARN : LOG_INFO, ctx->reqid, "%s %s -> %d in %.1f ms", ctx->method, ctx->path,
		code, (double)us / 1000.0);
}

void http_reply(struct http_ctx *ctx, int code, const char *content_type, const char *body, size_t len)
{
	struct evhttp_request *req = ctx->req;

	if (ctx->answered)
		return;
	if (req) {
		struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
		struct evbuffer *out = evbuffer_new();

		evhttp_add_header(hdr, "Content-Type", content_type);
		evhttp_add_header(hdr, "X-Request-Id", ctx->reqid);
		if (ctx->h && ctx->h->draining)
			evhttp_add_header(hdr, "Connection", "close");
		evbuffer_add(out, body, len);
		ctx_detach_conn(ctx);
		ctx->req = NULL;
		if (ctx->h) {
			ctx->h->sending++;
			evhttp_request_set_on_complete_cb(req, sent_cb, ctx->h);
		}
		evhttp_send_reply(req, code, NULL, out);
		evbuffer_free(out);
	}
	ctx_finish(ctx, code);
	ctx_maybe_free(ctx);
}

void http_reply_bad_input(struct http_ctx *ctx, int code, const char *why)
{
	xassert(code == 200 || code == 400);
	if (ctx->h)
		ctx->h->stats[ctx->route].bad_input++;
	log_msg(LOG_WARN, ctx->reqid, "%s %s: bad input, answered %d%s: %s", ctx->method, ctx->path, code,
		code == 200 ? " so it is not sent again" : "", why);
	if (code == 200)
		http_reply(ctx, 200, "text/plain", "OK", 2);
	else
		http_reply_error(ctx, 400, why);
}

void http_reply_error(struct http_ctx *ctx, int code, const char *msg)
{
	struct buf b;

	buf_init(&b, 1024);
	buf_puts(&b, "{\"error\":\"");
	buf_json_escape(&b, msg);
	buf_puts(&b, "\"}\n");
	http_reply(ctx, code, "application/json", b.data ? b.data : "", b.len);
	buf_free(&b);
}

static void ctx_maybe_free(struct http_ctx *ctx)
{
	if (!ctx->answered || ctx->refs > 0)
		return;
	ctx_detach_conn(ctx);
	event_free(ctx->deadline);
	free(ctx->body);
	free(ctx);
}

/*
 * The client's connection is being freed.  If libevent already detached the
 * request from it (EOF while we were working), the request is ours and a
 * reply frees it; otherwise libevent frees it right after this callback.
 */
static void conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct http_ctx *ctx = arg;

	ctx->evcon = NULL;
	if (ctx->req && evhttp_request_get_connection(ctx->req) == evcon) {
		log_msg(LOG_INFO, ctx->reqid, "client went away before the answer");
		ctx->req = NULL;
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_ctx *ctx = arg;

	log_msg(LOG_WARN, ctx->reqid, "request timed out after %d ms",
		ctx->h ? ctx->h->cfg->http_request_timeout_ms : -1);
	ctx->refs++;	/* http_reply may otherwise free ctx under us */
	http_reply_error(ctx, 503, "request timed out, please try again");
	http_ctx_release(ctx);
}

static bool reqid_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n >= 64 || !(isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '_' || s[n] == '.'))
			return false;
	return n > 0;
}

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	default: return "OTHER";
	}
}

static void gen_cb(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	struct http_ctx *ctx = xcalloc(1, sizeof(*ctx));
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *hdr_id = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int ms = h->cfg->http_request_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const struct http_route *rt = NULL;
	int mbit = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD ? HTTP_GET : cmd == EVHTTP_REQ_POST ? HTTP_POST : 0;

	ctx->h = h;
	ctx->req = req;
	ctx->start_us = util_now_us();
	ctx->route = h->nroutes;
	ctx->evcon = evhttp_request_get_connection(req);
	if (ctx->evcon) {
		char *addr = NULL;
		ev_uint16_t port = 0;

		evhttp_connection_get_peer(ctx->evcon, &addr, &port);
		snprintf(ctx->peer, sizeof(ctx->peer), "%s", addr ? addr : "");
	}
	ctx->deadline = evtimer_new(h->base, deadline_cb, ctx);
	snprintf(ctx->method, sizeof(ctx->method), "%s", method_name(cmd));
	snprintf(ctx->path, sizeof(ctx->path), "%s", path && *path ? path : "/");
	if (hdr_id && reqid_ok(hdr_id))
		snprintf(ctx->reqid, sizeof(ctx->reqid), "%s", hdr_id);
	else
		snprintf(ctx->reqid, sizeof(ctx->reqid), "%s-%06llx", h->idprefix, (unsigned long long)++h->seq);
	h->inflight++;
	if (ctx->evcon)
		evhttp_connection_set_closecb(ctx->evcon, conn_close_cb, ctx);
	evtimer_add(ctx->deadline, &tv);

	ctx->body_len = evbuffer_get_length(in);
	ctx->body = xmalloc(ctx->body_len + 1);
	evbuffer_copyout(in, ctx->body, ctx->body_len);
	ctx->body[ctx->body_len] = '\0';

	for (size_t i = 0; i < h->nroutes; i++) {
		if (path && !strcmp(path, h->routes[i].path)) {
			rt = &h->routes[i];
			ctx->route = i;
			ctx->route_data = rt->data;
			break;
		}
	}
	ctx->refs++;
	if (h->draining)
		http_reply_error(ctx, 503, "shutting down");
	else if (!rt)
		http_reply_error(ctx, 404, "no such route");
	else if (!(rt->methods & mbit))
		http_reply_error(ctx, 405, "method not allowed");
	else
		rt->fn(ctx);
	http_ctx_release(ctx);
}

struct httpd *httpd_new(struct event_base *base, const struct config *cfg, const struct http_route *routes,
			size_t nroutes, void *app, char *err, size_t errlen)
{
	struct httpd *h = xcalloc(1, sizeof(*h));
	char *host = NULL;
	int port;

	h->base = base;
	h->cfg = cfg;
	h->routes = routes;
	h->nroutes = nroutes;
	h->app = app;
	h->stats = xcalloc(nroutes + 1, sizeof(*h->stats));
	util_random_hex(h->idprefix, 4);
	h->http = evhttp_new(base);
	if (!h->http || util_parse_hostport(cfg->http_listen, &host, &port) < 0) {
		snprintf(err, errlen, "[http] listen: bad address \"%s\"", cfg->http_listen);
		goto fail;
	}
	h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
	if (!h->sock) {
		snprintf(err, errlen, "[http] listen: cannot bind %s", cfg->http_listen);
		goto fail;
	}
	free(host);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(h->http, 8192);
	evhttp_set_gencb(h->http, gen_cb, h);
	httpd_set_config(h, cfg);
	return h;
fail:
	free(host);
	if (h->http)
		evhttp_free(h->http);
	free(h->stats);
	free(h);
	return NULL;
}

void httpd_set_config(struct httpd *h, const struct config *cfg)
{
	h->cfg = cfg;
	evhttp_set_max_body_size(h->http, (ev_ssize_t)cfg->http_max_body);
	evhttp_set_timeout(h->http, cfg->http_idle_timeout_s);
}

void httpd_stop_accepting(struct httpd *h)
{
	h->draining = true;
	if (h->sock) {
		evhttp_del_accept_socket(h->http, h->sock);
		h->sock = NULL;
	}
}

int httpd_inflight(const struct httpd *h)
{
	return h->inflight + h->sending;
}

void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	evhttp_free(h->http);
	free(h->stats);
	free(h);
}

void httpd_metrics(const struct httpd *h, struct buf *out)
{
	buf_puts(out, "# HELP chamad_http_requests_total HTTP requests answered, by route and status.\n"
		      "# TYPE chamad_http_requests_total counter\n");
	for (size_t r = 0; r <= h->nroutes; r++) {
		const char *name = r < h->nroutes ? h->routes[r].name : "unmatched";

		for (int i = 0; i < MAX_CODES && h->stats[r].codes[i].code; i++)
			buf_printf(out, "chamad_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n", name,
				   h->stats[r].codes[i].code, (unsigned long long)h->stats[r].codes[i].n);
	}
	buf_puts(out, "# HELP chamad_http_request_duration_seconds Time from request to answer.\n"
		      "# TYPE chamad_http_request_duration_seconds histogram\n");
	for (size_t r = 0; r <= h->nroutes; r++) {
		const struct route_stats *s = &h->stats[r];
		const char *name = r < h->nroutes ? h->routes[r].name : "unmatched";
		uint64_t cum = 0;

		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += s->buckets[b];
			buf_printf(out, "chamad_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
				   name, lat_bounds[b], (unsigned long long)cum);
		}
		buf_printf(out, "chamad_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name,
			   (unsigned long long)s->count);
		buf_printf(out, "chamad_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
			   (double)s->sum_us / 1e6);
		buf_printf(out, "chamad_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
			   (unsigned long long)s->count);
	}
	buf_puts(out, "# HELP chamad_http_bad_input_total Requests refused at the boundary (bad encoding, length, "
		      "number), by route.\n# TYPE chamad_http_bad_input_total counter\n");
	for (size_t r = 0; r < h->nroutes; r++)
		if (h->stats[r].bad_input)
			buf_printf(out, "chamad_http_bad_input_total{route=\"%s\"} %llu\n", h->routes[r].name,
				   (unsigned long long)h->stats[r].bad_input);
	buf_printf(out, "# HELP chamad_http_inflight Requests being served.\n# TYPE chamad_http_inflight gauge\n"
			"chamad_http_inflight %d\n", h->inflight);
}

/* ---- callers we know: shared secrets and IP allow-lists ---- */

/* addr in "a.b.c.d/len" or equal to an entry of the comma list. */
static bool ip_allowed(const char *list, const char *addr)
{
	char buf[1024], *save = NULL, *tok;
	struct in_addr a;
	bool v4 = inet_pton(AF_INET, addr, &a) == 1;

	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *slash = strchr(tok, '/');
		struct in_addr net;
		long bits = 32;

		if (!strcmp(tok, addr))
			return true;
		if (!v4)
			continue;
		if (slash) {
			*slash = '\0';
			bits = strtol(slash + 1, NULL, 10);
		}
		if (bits < 0 || bits > 32 || inet_pton(AF_INET, tok, &net) != 1)
			continue;
		if (bits == 0 || ((ntohl(a.s_addr) ^ ntohl(net.s_addr)) >> (32 - bits)) == 0)
			return true;
	}
	return false;
}

bool http_guard(struct http_ctx *ctx, const char *secrets, const char *allow_ips, const char *name)
{
	char want[256], ips[1024], got[256] = "";
	const char *hdr;
	bool has_ips = util_list_entry(allow_ips, name, ips, sizeof(ips));
	bool has_secret = util_list_entry(secrets, name, want, sizeof(want));

	/* Fail closed: a caller we were told nothing about is served only from
	 * this machine (the tests, a local proxy that does its own checks).
	 * config_load refuses a non-loopback listen that leaves a caller in
	 * use unguarded; this keeps every other one shut. */
	if (!has_ips && !has_secret && !util_host_is_loopback(http_ctx_peer(ctx))) {
		log_msg(LOG_WARN, http_ctx_reqid(ctx), "%s: refused %s: no secret or allow-list is configured for it",
			name, http_ctx_peer(ctx));
		http_reply_error(ctx, 403, "forbidden");
		return false;
	}
	if (has_ips && !ip_allowed(ips, http_ctx_peer(ctx))) {
		log_msg(LOG_WARN, http_ctx_reqid(ctx), "%s: refused %s: not in the allow-list", name, http_ctx_peer(ctx));
		http_reply_error(ctx, 403, "forbidden");
		return false;
	}
	if (has_secret) {
		if ((hdr = http_ctx_header(ctx, "X-Chamad-Secret")))
			snprintf(got, sizeof(got), "%s", hdr);
		else
			http_ctx_query(ctx, "secret", got, sizeof(got));
		if (strlen(got) != strlen(want) || sodium_memcmp(got, want, strlen(want)) != 0) {
			log_msg(LOG_WARN, http_ctx_reqid(ctx), "%s: refused %s: wrong or missing secret", name,
				http_ctx_peer(ctx));
			http_reply_error(ctx, 403, "forbidden");
			return false;
		}
	}
	return true;
}
