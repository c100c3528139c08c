/*
 * httpc: outgoing HTTP on the event loop (libcurl multi driven by libevent:
 * CURLMOPT_SOCKETFUNCTION + CURLMOPT_TIMERFUNCTION, curl's multi-event.c
 * shape).  One CURLM per client; connections are kept alive and reused
 * between requests to the same host.
 *
 * Contract: the callback of httpc_request is called exactly once, never
 * from inside httpc_request itself, including when the client is freed
 * (HTTPC_CANCELLED).  The response is borrowed for the duration of the
 * callback.  Every handle has CURLOPT_NOSIGNAL, a connect timeout and a
 * total timeout; response bodies are capped (past the cap: HTTPC_ERROR).
 */
#ifndef CHAMAD_HTTPC_H
#define CHAMAD_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct httpc;

enum httpc_status {
	HTTPC_OK,		/* a complete HTTP response arrived (any status code) */
	HTTPC_ERROR,		/* transport error: refused, reset, DNS, TLS, body too large */
	HTTPC_TIMEOUT,		/* connect or total timeout */
	HTTPC_CANCELLED,	/* the client is being freed */
};

struct httpc_response {
	enum httpc_status status;
	long code;		/* HTTP status code, 0 unless HTTPC_OK */
	const char *body;	/* NUL-terminated, may be "" */
	size_t body_len;
	const char *content_type;	/* or NULL */
	const char *error;	/* curl's message when not HTTPC_OK, else NULL */
	double total_s;		/* wall time of the transfer */
};

typedef void (*httpc_cb)(const struct httpc_response *r, void *arg);

struct httpc_opts {
	int connect_timeout_ms;	/* default 2000 */
	int timeout_ms;		/* whole transfer; default 10000 */
	size_t max_body;	/* default 1 MiB */
	int max_host_connections;	/* per host, 0 = curl's default */
};

struct httpc_request {
	const char *method;	/* "GET" or "POST" */
	const char *url;
	const char *const *headers;	/* NULL-terminated "Name: value" lines, or NULL */
	const char *body;	/* POST body, or NULL */
	size_t body_len;
	int timeout_ms;		/* 0 = the client's default */
	/* A request that must never reach the server twice (an STK push, a
	 * payout): sent on a fresh connection.  On a reused keep-alive
	 * connection that dies before any answer, libcurl silently sends the
	 * request again on a new one, and Daraja would prompt the member twice. */
	bool once;
};

struct httpc_stats {
	int inflight;
	uint64_t requests, errors, timeouts;
	uint64_t connects;	/* new TCP connections (the rest reused one) */
};

struct httpc *httpc_new(struct event_base *base, const struct httpc_opts *opts);
/* Fails every request in flight with HTTPC_CANCELLED, then frees.  Must not
 * be called from an httpc callback. */
void httpc_free(struct httpc *c);
/* Everything in req is copied. */
void httpc_request(struct httpc *c, const struct httpc_request *req, httpc_cb cb, void *arg);
void httpc_get_stats(const struct httpc *c, struct httpc_stats *out);

#endif
