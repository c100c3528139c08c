/*
 * httpc: outgoing HTTP on the event loop.  Objects and who owns them:
 *
 *   struct httpc   owns the CURLM (and through it curl's connection cache
 *                  and DNS cache), one evtimer for curl's timeout, the list
 *                  of socket watchers and the list of requests in curl.
 *   struct hsock   one socket curl asked us to watch: an event with
 *                  EV_PERSIST, remembered in curl with curl_multi_assign.
 *                  Freed on CURL_POLL_REMOVE, or in httpc_free for those
 *                  curl never removed (it may close pooled sockets in
 *                  curl_multi_cleanup and call us then, or not at all).
 *   struct hreq    one request: its easy handle, header list, bounded body
 *                  buffer and the caller's callback.  It is either in the
 *                  multi (on the c->reqs list) or parked on the defer queue
 *                  to fail on the next loop pass, never both.
 *
 * Which code runs where:
 *   - curl calls sock_cb and timer_cb from inside curl_multi_* calls.  They
 *     only (re)arm libevent events; neither calls back into curl (the
 *     CURLMOPT_TIMERFUNCTION docs forbid it) nor into the caller.
 *   - libevent calls sock_event_cb and timer_event_cb; they drive curl with
 *     curl_multi_socket_action and then deliver what finished in
 *     check_multi_info.  Caller callbacks run only there, from the defer
 *     queue, or from httpc_free.
 *   - A caller callback may call httpc_request (added to the multi at once:
 *     we are not inside curl then) but not httpc_free: c->in_cb catches it.
 */
#include "net/httpc.h"
#include "base/defer.h"
#include "base/log.h"
#include "base/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#define HTTPC_DEF_CONNECT_MS	2000
#define HTTPC_DEF_TIMEOUT_MS	10000
#define HTTPC_DEF_MAX_BODY	((size_t)1 << 20)

struct hsock {
	struct httpc *c;
	curl_socket_t fd;
	struct event *ev;
	struct hsock *next, *prev;
};

struct hreq {
	struct httpc *c;
	CURL *easy;
	struct curl_slist *headers;	/* must outlive the transfer */
	httpc_cb cb;
	void *arg;
	struct buf body;
	bool too_large;			/* the write callback hit max_body */
	uint64_t start_us;
	char errbuf[CURL_ERROR_SIZE];	/* curl's detail for the last error */
	enum httpc_status fail_status;	/* for deferred failures */
	const char *fail_error;		/* static strings only */
	struct defer_node dnode;
	struct hreq *next, *prev;	/* c->reqs: requests in the multi */
};

struct httpc {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;		/* armed by timer_cb for curl */
	struct httpc_opts opts;
	struct hsock *socks;
	struct hreq *reqs;
	struct defer_queue later;
	int inflight;			/* callbacks still owed */
	int in_cb;			/* > 0 while a caller callback runs */
	bool in_call;			/* inside httpc_request */
	bool closing;
	uint64_t requests, errors, timeouts, connects;
};

/* ---- curl -> libevent ---- */

static void check_multi_info(struct httpc *c);

static void hsock_free(struct hsock *s)
{
	struct httpc *c = s->c;

	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	/* Safe even when this is the event whose callback is running: libevent
	 * copied what it needs before calling us (hiperfifo does the same). */
	event_free(s->ev);
	free(s);
}

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	/* s may be freed inside curl_multi_socket_action (CURL_POLL_REMOVE):
	 * only c is used afterwards. */
	struct hsock *s = arg;
	struct httpc *c = s->c;
	int flags = 0, running;
	CURLMcode mc;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	mc = curl_multi_socket_action(c->multi, fd, flags, &running);
	if (mc != CURLM_OK)
		log_warn("httpc: curl_multi_socket_action(fd %d): %s", (int)fd, curl_multi_strerror(mc));
	check_multi_info(c);
}

/* CURLMOPT_SOCKETFUNCTION: curl tells us what to wait for on s. */
static int sock_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *sockp)
{
	struct httpc *c = userp;
	struct hsock *s = sockp;
	short events = EV_PERSIST;

	if (action == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(c->multi, fd, NULL);
			hsock_free(s);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->c = c;
		s->fd = fd;
		s->ev = event_new(c->base, fd, 0, sock_event_cb, s);
		s->next = c->socks;
		if (c->socks)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
	}
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		events |= EV_READ;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		events |= EV_WRITE;
	/* event_assign only on a non-pending event: delete first. */
	event_del(s->ev);
	event_assign(s->ev, c->base, fd, events, sock_event_cb, s);
	if (event_add(s->ev, NULL) < 0)
		log_warn("httpc: cannot watch fd %d", (int)fd);
	return 0;
}

static void timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *c = arg;
	int running;
	CURLMcode mc;

	mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	if (mc != CURLM_OK)
		log_warn("httpc: curl_multi_socket_action(timeout): %s", curl_multi_strerror(mc));
	check_multi_info(c);
}

/* CURLMOPT_TIMERFUNCTION: only arm our timer.  Calling curl from here is
 * forbidden (and would recurse), and returning -1 would abort every
 * transfer.  0 ms becomes a zero timeout: the next loop pass. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct httpc *c = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(c->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	return 0;
}

/* ---- requests ---- */

static void req_link(struct httpc *c, struct hreq *r)
{
	r->prev = NULL;
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
}

static void req_unlink(struct httpc *c, struct hreq *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
}

/* The easy handle must be out of the multi. */
static void req_free(struct hreq *r)
{
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	buf_free(&r->body);
	free(r);
}

/* Calls the caller once, counts, and frees r.  The response (body, content
 * type from the easy handle, error text in r) is valid during the call
 * only: the easy handle is cleaned up after it. */
static void req_deliver(struct hreq *r, enum httpc_status st, long code, const char *ctype, const char *error)
{
	struct httpc *c = r->c;
	struct httpc_response resp;

	if (st == HTTPC_ERROR)
		c->errors++;
	else if (st == HTTPC_TIMEOUT)
		c->timeouts++;
	c->inflight--;
	memset(&resp, 0, sizeof(resp));
	resp.status = st;
	resp.code = st == HTTPC_OK ? code : 0;
	resp.body = st == HTTPC_OK && r->body.data ? r->body.data : "";
	resp.body_len = st == HTTPC_OK ? r->body.len : 0;
	resp.content_type = st == HTTPC_OK ? ctype : NULL;
	resp.error = st == HTTPC_OK ? NULL : error;
	resp.total_s = (double)(util_now_us() - r->start_us) / 1e6;
	/* the contract: once (the request goes with it), never from inside
	 * httpc_request */
	xassert(!c->in_call);
	c->in_cb++;
	if (r->cb)
		r->cb(&resp, r->arg);
	c->in_cb--;
	req_free(r);
}

static void req_deferred(struct defer_node *n)
{
	struct hreq *r = (struct hreq *)((char *)n - offsetof(struct hreq, dnode));

	req_deliver(r, r->fail_status, 0, NULL, r->fail_error);
}

/* Fails r on a later loop pass, so no callback runs inside httpc_request.
 * r is not in the multi. */
static void req_fail_later(struct hreq *r, enum httpc_status st, const char *error)
{
	r->fail_status = st;
	r->fail_error = error;
	defer_push(&r->c->later, &r->dnode, req_deferred);
}

/* One finished transfer: map curl's result to ours. */
static void req_done(struct hreq *r, CURLcode res)
{
	struct httpc *c = r->c;
	long code = 0, nconn = 0;
	char *ctype = NULL;
	enum httpc_status st;
	const char *error = NULL;

	if (curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
		c->connects += (uint64_t)nconn;
	if (r->too_large || res == CURLE_FILESIZE_EXCEEDED) {
		/* FILESIZE_EXCEEDED: curl saw a Content-Length over the cap
		 * (CURLOPT_MAXFILESIZE) before any body arrived. */
		st = HTTPC_ERROR;
		snprintf(r->errbuf, sizeof(r->errbuf), "response larger than %zu bytes", c->opts.max_body);
		error = r->errbuf;
	} else if (res == CURLE_OK) {
		st = HTTPC_OK;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
	} else {
		st = res == CURLE_OPERATION_TIMEDOUT ? HTTPC_TIMEOUT : HTTPC_ERROR;
		error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
	}
	req_deliver(r, st, code, ctype, error);
}

/* Delivers every finished transfer.  CURLMsg belongs to curl and is
 * invalid after curl_multi_remove_handle, so copy what we need first. */
static void check_multi_info(struct httpc *c)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		CURL *easy = msg->easy_handle;
		CURLcode res = msg->data.result;
		void *priv = NULL;
		struct hreq *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		r = priv;
		curl_multi_remove_handle(c->multi, easy);
		req_unlink(c, r);
		req_done(r, res);
	}
}

/* CURLOPT_WRITEFUNCTION: append to the bounded buffer; past the cap,
 * returning short makes curl abort with CURLE_WRITE_ERROR. */
static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct hreq *r = userdata;
	size_t n = size * nmemb;

	if (buf_append(&r->body, ptr, n) < 0) {
		r->too_large = true;
		return 0;
	}
	return n;
}

static int ms_or(int v, int def)
{
	return v > 0 ? v : def;
}

/* Builds the easy handle; returns a static reason on failure. */
static const char *req_setup(struct httpc *c, struct hreq *r, const struct httpc_request *req)
{
	CURL *e;
	bool ok = true;

	if (!req->url || !req->method)
		return "request without a URL or method";
	e = r->easy = curl_easy_init();
	if (!e)
		return "curl_easy_init failed";
	for (const char *const *h = req->headers; h && *h; h++) {
		struct curl_slist *l = curl_slist_append(r->headers, *h);

		if (!l)
			return "out of memory for headers";
		r->headers = l;
	}
	/* Every setopt below can only fail for lack of memory or an option the
	 * library lacks; check them all at once. */
	ok &= curl_easy_setopt(e, CURLOPT_URL, req->url) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, r) == CURLE_OK;
	/* No signals: curl's SIGALRM resolver timeout is unsafe next to our
	 * worker threads, and Debian's libcurl resolves on a thread anyway. */
	ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->opts.connect_timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ms_or(req->timeout_ms, c->opts.timeout_ms)) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) == CURLE_OK;
	/* Refuse early when Content-Length already says too much; the write
	 * callback catches chunked bodies. */
	ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->opts.max_body) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
	if (req->once) {
		ok &= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) == CURLE_OK;
	}
	/* A URL from config must not reach file:// or anything but HTTP. */
	ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	if (r->headers)
		ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK;
	/* A body goes with POST (even an empty one) and with custom methods;
	 * a GET's body is ignored: POSTFIELDS would turn it into a POST. */
	if (!strcasecmp(req->method, "POST") || (req->body && strcasecmp(req->method, "GET"))) {
		/* Size first: COPYPOSTFIELDS then copies that many bytes, so
		 * the body may hold NULs and the caller's copy may go. */
		ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(req->body ? req->body_len : 0)) == CURLE_OK;
		ok &= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "") == CURLE_OK;
	}
	if (strcasecmp(req->method, "GET") && strcasecmp(req->method, "POST"))
		ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
	return ok ? NULL : "curl_easy_setopt failed";
}

static void request_start(struct httpc *c, struct hreq *r, const struct httpc_request *req);

void httpc_request(struct httpc *c, const struct httpc_request *req, httpc_cb cb, void *arg)
{
	struct hreq *r = xcalloc(1, sizeof(*r));

	c->in_call = true;
	r->c = c;
	r->cb = cb;
	r->arg = arg;
	request_start(c, r, req);
	c->in_call = false;
}

static void request_start(struct httpc *c, struct hreq *r, const struct httpc_request *req)
{
	const char *why;
	CURLMcode mc;

	r->start_us = util_now_us();
	buf_init(&r->body, c->opts.max_body);
	c->requests++;
	c->inflight++;
	if (c->closing) {
		/* a CANCELLED callback in httpc_free asked again */
		req_fail_later(r, HTTPC_CANCELLED, "http client is shutting down");
		return;
	}
	why = req_setup(c, r, req);
	if (why) {
		log_warn("httpc: %s %s: %s", req->method ? req->method : "?", req->url ? req->url : "?", why);
		req_fail_later(r, HTTPC_ERROR, why);
		return;
	}
	/* curl only arms its timer here (timer_cb); the transfer starts on
	 * the next loop pass. */
	mc = curl_multi_add_handle(c->multi, r->easy);
	if (mc != CURLM_OK) {
		log_warn("httpc: curl_multi_add_handle: %s", curl_multi_strerror(mc));
		req_fail_later(r, HTTPC_ERROR, "curl_multi_add_handle failed");
		return;
	}
	req_link(c, r);
}

/* ---- client ---- */

struct httpc *httpc_new(struct event_base *base, const struct httpc_opts *opts)
{
	struct httpc *c = xcalloc(1, sizeof(*c));

	c->base = base;
	if (opts)
		c->opts = *opts;
	c->opts.connect_timeout_ms = ms_or(c->opts.connect_timeout_ms, HTTPC_DEF_CONNECT_MS);
	c->opts.timeout_ms = ms_or(c->opts.timeout_ms, HTTPC_DEF_TIMEOUT_MS);
	if (c->opts.max_body == 0)
		c->opts.max_body = HTTPC_DEF_MAX_BODY;
	c->multi = curl_multi_init();
	if (!c->multi) {
		/* only out of memory: fatal, as in xmalloc */
		log_error("httpc: curl_multi_init failed");
		abort();
	}
	c->timer = evtimer_new(base, timer_event_cb, c);
	defer_init(&c->later, base);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	if (c->opts.max_host_connections > 0)
		curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->opts.max_host_connections);
	return c;
}

void httpc_free(struct httpc *c)
{
	if (!c)
		return;
	if (c->in_cb) {
		/* Freeing here would pull the client out from under the loop
		 * that is delivering to this callback. */
		log_error("httpc: httpc_free called from an httpc callback");
		abort();
	}
	c->closing = true;
	/* Requests in curl: out of the multi first (curl may call sock_cb and
	 * timer_cb here, both still valid), then the caller hears once. */
	while (c->reqs) {
		struct hreq *r = c->reqs;

		curl_multi_remove_handle(c->multi, r->easy);
		req_unlink(c, r);
		req_deliver(r, HTTPC_CANCELLED, 0, NULL, "http client is shutting down");
	}
	/* Failures already parked, and whatever those callbacks asked for
	 * meanwhile (failed as CANCELLED above, in httpc_request). */
	defer_free(&c->later);
	/* Closes the pooled connections; may still call sock_cb/timer_cb. */
	curl_multi_cleanup(c->multi);
	while (c->socks)
		hsock_free(c->socks);
	event_free(c->timer);
	free(c);
}

void httpc_get_stats(const struct httpc *c, struct httpc_stats *out)
{
	out->inflight = c->inflight;
	out->requests = c->requests;
	out->errors = c->errors;
	out->timeouts = c->timeouts;
	out->connects = c->connects;
}
