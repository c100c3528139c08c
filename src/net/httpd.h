/*
 * httpd: the HTTP front (libevent evhttp) and the life of one request.
 *
 * Each request gets a struct http_ctx: its request id (from a sane
 * X-Request-Id header, else made up), a deadline timer, the route, and a
 * reference count.  Handlers run on the loop and usually answer later,
 * from a database or Redis callback; they take a reference with
 * http_ctx_hold() for each piece of async work and drop it with
 * http_ctx_release() in its completion.  The context is freed when it was
 * answered (by the handler, by the deadline, or because the client went
 * away) and no reference is left.
 *
 * libevent 2.1.12 frees a request whose client disconnects; we learn of it
 * through the connection's close callback and from then on never touch the
 * request: http_reply on such a context only counts and logs.
 */
#ifndef CHAMAD_HTTPD_H
#define CHAMAD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct event_base;
struct config;
struct httpd;
struct http_ctx;
struct evhttp_request;

typedef void (*http_handler)(struct http_ctx *ctx);

#define HTTP_GET  0x01
#define HTTP_POST 0x02

struct http_route {
	const char *path;	/* exact path */
	int methods;		/* HTTP_GET | HTTP_POST */
	http_handler fn;
	const char *name;	/* metrics label */
	const void *data;	/* handed to the handler via http_ctx_route_data */
};

/* Binds [http] listen.  routes must outlive the server.  app is handed to
 * handlers through http_ctx_app().  Returns NULL with err filled. */
struct httpd *httpd_new(struct event_base *base, const struct config *cfg, const struct http_route *routes,
			size_t nroutes, void *app, char *err, size_t errlen);
/* Applies reloadable limits from cfg (borrowed). */
void httpd_set_config(struct httpd *h, const struct config *cfg);
/* Closes the listening socket; requests still arriving on open keep-alive
 * connections are answered 503 with Connection: close. */
void httpd_stop_accepting(struct httpd *h);
/* Requests being served (not yet answered, or answered with work pending). */
int httpd_inflight(const struct httpd *h);
/* Closes every connection and frees the server; in-flight contexts are
 * released as their work completes. */
void httpd_free(struct httpd *h);
/* Appends the request metrics in Prometheus text format. */
void httpd_metrics(const struct httpd *h, struct buf *out);

void *http_ctx_app(const struct http_ctx *ctx);
const void *http_ctx_route_data(const struct http_ctx *ctx);
/* The client's address (numeric), or "" once the client is gone. */
const char *http_ctx_peer(const struct http_ctx *ctx);
/* A request header or a query parameter of the live request, or NULL. */
const char *http_ctx_header(const struct http_ctx *ctx, const char *name);
/* The raw query string of the live request ("" if none). */
const char *http_ctx_query_raw(const struct http_ctx *ctx);
/* Copies query parameter `name` into out; returns 0 if present. */
int http_ctx_query(const struct http_ctx *ctx, const char *name, char *out, size_t outlen);
const char *http_ctx_reqid(const struct http_ctx *ctx);
/* The live request, or NULL once answered or the client went away. */
struct evhttp_request *http_ctx_req(const struct http_ctx *ctx);
/* Request body (NUL-terminated copy, owned by ctx) and its length. */
const char *http_ctx_body(struct http_ctx *ctx, size_t *len);
bool http_ctx_answered(const struct http_ctx *ctx);
void http_ctx_hold(struct http_ctx *ctx);
void http_ctx_release(struct http_ctx *ctx);

/*
 * For callers that are known parties (aggregators, SMS providers):
 * secrets and allow_ips are "name:value name2:value2" lists ([ussd]
 * secrets, [sms] allow_ips...).  If `name` has an allow-list the client's
 * address must be in it (addresses or IPv4 CIDR, comma-separated); if it has
 * a secret the request must carry it as X-Chamad-Secret or ?secret=.  If
 * it has neither, only a loopback client is served (fail closed: see
 * README "Callback secrets and allow-lists").  Otherwise answers 403, logs,
 * and returns false.
 */
bool http_guard(struct http_ctx *ctx, const char *secrets, const char *allow_ips, const char *name);

/* Answers once; later calls are ignored.  body is copied. */
void http_reply(struct http_ctx *ctx, int code, const char *content_type, const char *body, size_t len);
/*
 * Input refused at the boundary, before PostgreSQL or Redis saw it: logs
 * why, counts it (chamad_http_bad_input_total{route}) and answers 400
 * {"error": why}, or 200 "OK" for a caller that would resend a message
 * that can never succeed (each route says which, and why).
 */
void http_reply_bad_input(struct http_ctx *ctx, int code, const char *why);
/* Answers {"error": msg} as application/json. */
void http_reply_error(struct http_ctx *ctx, int code, const char *msg);

#endif
