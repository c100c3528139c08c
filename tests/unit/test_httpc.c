/*
 * httpc against an evhttp server on 127.0.0.1 (port 0) in the same
 * event_base: each test runs the loop until its callbacks have arrived or
 * a deadline passes.  The server's routes:
 *
 *   /echo       records method, X-Test and body; replies 200 text/plain
 *               with "METHOD:" + body
 *   /fail       500 "boom"
 *   /slow       answers "late" after srv.delay_ms (an evtimer)
 *   /big?n=N[&chunked=1]  N bytes of 'x', with Content-Length or chunked
 */
#include "t.h"
#include "net/httpc.h"
#include "base/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

void test_httpc_get_post(void);
void test_httpc_http_500(void);
void test_httpc_refused(void);
void test_httpc_timeout(void);
void test_httpc_max_body(void);
void test_httpc_keepalive_reuse(void);
void test_httpc_concurrent(void);
void test_httpc_free_cancels(void);
void test_httpc_callback_requests(void);

/* ---- server ---- */

struct slow;

struct srv {
	struct event_base *base;
	struct evhttp *http;
	int port;
	int hits;
	int delay_ms;
	char method[8];
	char xtest[64];
	char body[256];
	size_t body_len;
	struct slow *slows;	/* replies waiting on a timer */
};

struct slow {
	struct srv *s;
	struct evhttp_request *req;
	struct event *timer;
	struct slow *next, *prev;
};

static void slow_free(struct slow *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->s->slows = w->next;
	if (w->next)
		w->next->prev = w->prev;
	event_free(w->timer);
	free(w);
}

/* The client gave up (timeout, cancel) or the server is going: the
 * request is about to be freed by evhttp, so never answer it. */
static void slow_closed(struct evhttp_connection *evcon, void *arg)
{
	slow_free(arg);
}

static void slow_fire(evutil_socket_t fd, short what, void *arg)
{
	struct slow *w = arg;
	struct evbuffer *out = evbuffer_new();

	evhttp_connection_set_closecb(evhttp_request_get_connection(w->req), NULL, NULL);
	evbuffer_add_printf(out, "late");
	evhttp_send_reply(w->req, 200, "OK", out);
	evbuffer_free(out);
	slow_free(w);
}

static void h_slow(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	struct slow *w = calloc(1, sizeof(*w));
	struct timeval tv = { s->delay_ms / 1000, (s->delay_ms % 1000) * 1000 };

	s->hits++;
	w->s = s;
	w->req = req;
	w->timer = evtimer_new(s->base, slow_fire, w);
	w->next = s->slows;
	if (s->slows)
		s->slows->prev = w;
	s->slows = w;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), slow_closed, w);
	evtimer_add(w->timer, &tv);
}

static void h_echo(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evbuffer *out = evbuffer_new();
	const char *x = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Test");
	const char *m = evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST"
		: evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "OTHER";

	s->hits++;
	snprintf(s->method, sizeof(s->method), "%s", m);
	snprintf(s->xtest, sizeof(s->xtest), "%s", x ? x : "");
	s->body_len = evbuffer_get_length(in);
	if (s->body_len > sizeof(s->body))
		s->body_len = sizeof(s->body);
	evbuffer_copyout(in, s->body, s->body_len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; charset=utf-8");
	evbuffer_add_printf(out, "%s:", m);
	evbuffer_add_buffer(out, in);
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void h_fail(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	struct evbuffer *out = evbuffer_new();

	s->hits++;
	evbuffer_add_printf(out, "boom");
	evhttp_send_reply(req, 500, "Internal Server Error", out);
	evbuffer_free(out);
}

static void h_big(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	struct evkeyvalq q;
	const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *v;
	size_t n = 0;
	bool chunked;
	char block[1000];

	s->hits++;
	memset(block, 'x', sizeof(block));
	evhttp_parse_query_str(qs ? qs : "", &q);
	v = evhttp_find_header(&q, "n");
	n = v ? (size_t)atol(v) : 0;
	chunked = evhttp_find_header(&q, "chunked") != NULL;
	evhttp_clear_headers(&q);
	if (chunked) {
		evhttp_send_reply_start(req, 200, "OK");
		while (n > 0) {
			struct evbuffer *out = evbuffer_new();
			size_t k = n < sizeof(block) ? n : sizeof(block);

			evbuffer_add(out, block, k);
			evhttp_send_reply_chunk(req, out);
			evbuffer_free(out);
			n -= k;
		}
		evhttp_send_reply_end(req);
	} else {
		struct evbuffer *out = evbuffer_new();

		while (n > 0) {
			size_t k = n < sizeof(block) ? n : sizeof(block);

			evbuffer_add(out, block, k);
			n -= k;
		}
		evhttp_send_reply(req, 200, "OK", out);
		evbuffer_free(out);
	}
}

static int srv_start(struct srv *s, struct event_base *base)
{
	struct evhttp_bound_socket *h;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(s, 0, sizeof(*s));
	s->base = base;
	s->http = evhttp_new(base);
	evhttp_set_cb(s->http, "/echo", h_echo, s);
	evhttp_set_cb(s->http, "/fail", h_fail, s);
	evhttp_set_cb(s->http, "/slow", h_slow, s);
	evhttp_set_cb(s->http, "/big", h_big, s);
	h = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
	if (!h || getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sin, &len) < 0)
		return -1;
	s->port = ntohs(sin.sin_port);
	return 0;
}

static void srv_stop(struct srv *s)
{
	/* frees the connections, whose close callbacks free pending slows */
	evhttp_free(s->http);
	while (s->slows)
		slow_free(s->slows);
}

/* ---- client side ---- */

struct got {
	int calls;
	enum httpc_status status;
	long code;
	char body[2048];
	size_t body_len;
	char ctype[64];
	bool has_ctype;
	char error[256];
	double total_s;
	/* optional follow-up issued from inside the callback */
	struct httpc *c;
	const struct httpc_request *next_req;
	struct got *next_got;
};

struct fx {
	struct event_base *base;
	struct srv srv;
	struct httpc *c;
	char url[128];
};

static bool in_request;		/* set around every httpc_request call */
static bool sync_callback;	/* a callback ran inside httpc_request */

static void got_cb(const struct httpc_response *r, void *arg);

static void request(struct httpc *c, const struct httpc_request *req, struct got *g)
{
	in_request = true;
	httpc_request(c, req, got_cb, g);
	in_request = false;
}

static void got_cb(const struct httpc_response *r, void *arg)
{
	struct got *g = arg;

	if (in_request)
		sync_callback = true;
	g->calls++;
	g->status = r->status;
	g->code = r->code;
	g->body_len = r->body_len;
	memcpy(g->body, r->body, r->body_len < sizeof(g->body) - 1 ? r->body_len + 1 : sizeof(g->body) - 1);
	g->body[sizeof(g->body) - 1] = '\0';
	g->has_ctype = r->content_type != NULL;
	snprintf(g->ctype, sizeof(g->ctype), "%s", r->content_type ? r->content_type : "");
	snprintf(g->error, sizeof(g->error), "%s", r->error ? r->error : "");
	g->total_s = r->total_s;
	if (g->next_req)
		request(g->c, g->next_req, g->next_got);
}

static int fx_init(struct fx *f, const struct httpc_opts *o)
{
	static bool curl_ready;

	if (!curl_ready) {
		/* main.c does this before any thread starts */
		curl_global_init(CURL_GLOBAL_DEFAULT);
		curl_ready = true;
	}
	sync_callback = false;
	f->base = event_base_new();
	if (srv_start(&f->srv, f->base) < 0)
		return -1;
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->srv.port);
	f->c = httpc_new(f->base, o);
	return f->c ? 0 : -1;
}

static void fx_done(struct fx *f)
{
	httpc_free(f->c);
	srv_stop(&f->srv);
	event_base_free(f->base);
	T_CHECK(!sync_callback);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until *n >= want or ms pass; a 10 ms tick bounds each
 * EVLOOP_ONCE wait so the deadline is noticed. */
static void run_until(struct event_base *base, const int *n, int want, int ms)
{
	uint64_t deadline = util_now_ms() + (uint64_t)ms;
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 10000 };

	evtimer_add(t, &tv);
	while ((!n || *n < want) && util_now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

static char *url(struct fx *f, const char *path)
{
	static char u[256];

	snprintf(u, sizeof(u), "%s%s", f->url, path);
	return u;
}

/* ---- tests ---- */

void test_httpc_get_post(void)
{
	struct fx f;
	struct got g = { 0 }, p = { 0 };
	const char *gh[] = { "X-Test: get-hdr", NULL };
	const char *ph[] = { "X-Test: post-hdr", "Content-Type: application/octet-stream", NULL };
	static const char pbody[] = { 'a', '\0', 'b', '=', '1' };
	struct httpc_request req = { .method = "GET", .headers = gh };
	struct httpc_stats st;

	T_CHECK(fx_init(&f, NULL) == 0);
	req.url = url(&f, "/echo");
	request(f.c, &req, &g);
	T_CHECK(g.calls == 0);
	run_until(f.base, &g.calls, 1, 5000);
	T_CHECK(g.calls == 1);
	T_CHECK(g.status == HTTPC_OK);
	T_CHECK(g.code == 200);
	T_STREQ(g.body, "GET:");
	T_CHECK(g.body_len == 4);
	T_STREQ(g.ctype, "text/plain; charset=utf-8");
	T_STREQ(g.error, "");
	T_STREQ(f.srv.method, "GET");
	T_STREQ(f.srv.xtest, "get-hdr");
	T_CHECK(f.srv.body_len == 0);

	/* POST: the body has a NUL, so only its length counts; the request
	 * struct and body may go once httpc_request returns (copied). */
	{
		char *body = malloc(sizeof(pbody));
		struct httpc_request *pr = calloc(1, sizeof(*pr));

		memcpy(body, pbody, sizeof(pbody));
		pr->method = "POST";
		pr->url = url(&f, "/echo");
		pr->headers = ph;
		pr->body = body;
		pr->body_len = sizeof(pbody);
		request(f.c, pr, &p);
		memset(body, '?', sizeof(pbody));
		free(body);
		free(pr);
	}
	run_until(f.base, &p.calls, 1, 5000);
	T_CHECK(p.calls == 1);
	T_CHECK(p.status == HTTPC_OK);
	T_CHECK(p.code == 200);
	T_CHECK(p.body_len == 5 + sizeof(pbody));
	T_CHECK(memcmp(p.body, "POST:", 5) == 0 && memcmp(p.body + 5, pbody, sizeof(pbody)) == 0);
	T_STREQ(p.ctype, "text/plain; charset=utf-8");
	T_STREQ(f.srv.method, "POST");
	T_STREQ(f.srv.xtest, "post-hdr");
	T_CHECK(f.srv.body_len == sizeof(pbody) && memcmp(f.srv.body, pbody, sizeof(pbody)) == 0);

	httpc_get_stats(f.c, &st);
	T_CHECK(st.requests == 2);
	T_CHECK(st.inflight == 0);
	T_CHECK(st.errors == 0 && st.timeouts == 0);
	fx_done(&f);
}

void test_httpc_http_500(void)
{
	struct fx f;
	struct got g = { 0 };
	struct httpc_request req = { .method = "GET" };
	struct httpc_stats st;

	T_CHECK(fx_init(&f, NULL) == 0);
	req.url = url(&f, "/fail");
	request(f.c, &req, &g);
	run_until(f.base, &g.calls, 1, 5000);
	T_CHECK(g.calls == 1);
	T_CHECK(g.status == HTTPC_OK);
	T_CHECK(g.code == 500);
	T_STREQ(g.body, "boom");
	T_STREQ(g.error, "");
	httpc_get_stats(f.c, &st);
	T_CHECK(st.errors == 0);
	fx_done(&f);
}

void test_httpc_refused(void)
{
	struct fx f;
	struct got g = { 0 };
	struct httpc_request req = { .method = "GET" };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char u[128];
	struct httpc_stats st;

	/* A port that was just free and is closed again: nothing listens. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	T_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	T_CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(sin.sin_port));

	T_CHECK(fx_init(&f, NULL) == 0);
	req.url = u;
	request(f.c, &req, &g);
	run_until(f.base, &g.calls, 1, 5000);
	T_CHECK(g.calls == 1);
	T_CHECK(g.status == HTTPC_ERROR);
	T_CHECK(g.code == 0);
	T_CHECK(g.error[0] != '\0');
	T_STREQ(g.body, "");
	T_CHECK(!g.has_ctype);
	httpc_get_stats(f.c, &st);
	T_CHECK(st.errors == 1 && st.inflight == 0);
	fx_done(&f);
}

void test_httpc_timeout(void)
{
	struct fx f;
	struct got g = { 0 }, d = { 0 };
	struct httpc_request req = { .method = "GET", .timeout_ms = 200 };
	struct httpc_opts o = { .timeout_ms = 300 };
	struct httpc_stats st;

	T_CHECK(fx_init(&f, &o) == 0);
	f.srv.delay_ms = 1500;
	req.url = url(&f, "/slow");
	request(f.c, &req, &g);
	/* the client's default timeout applies when the request has none */
	req.timeout_ms = 0;
	request(f.c, &req, &d);
	run_until(f.base, &d.calls, 1, 5000);
	T_CHECK(g.calls == 1 && d.calls == 1);
	T_CHECK(g.status == HTTPC_TIMEOUT && d.status == HTTPC_TIMEOUT);
	T_CHECK(g.code == 0);
	T_CHECK(g.error[0] != '\0');
	T_CHECK(g.total_s >= 0.15 && g.total_s < 1.0);
	T_CHECK(d.total_s >= 0.25 && d.total_s < 1.0);
	httpc_get_stats(f.c, &st);
	T_CHECK(st.timeouts == 2 && st.errors == 0 && st.inflight == 0);
	fx_done(&f);
}

void test_httpc_max_body(void)
{
	struct fx f;
	struct got exact = { 0 }, cl = { 0 }, ch = { 0 };
	struct httpc_request req = { .method = "GET" };
	struct httpc_opts o = { .max_body = 1000 };
	struct httpc_stats st;

	T_CHECK(fx_init(&f, &o) == 0);
	/* httpc copies the URL: url()'s static buffer may change after */
	req.url = url(&f, "/big?n=1000");
	request(f.c, &req, &exact);
	/* Content-Length says too much: curl refuses before the body */
	req.url = url(&f, "/big?n=5000");
	request(f.c, &req, &cl);
	/* chunked: only the write callback can tell */
	req.url = url(&f, "/big?n=5000&chunked=1");
	request(f.c, &req, &ch);
	run_until(f.base, &f.srv.hits, 3, 5000);
	run_until(f.base, &ch.calls, 1, 5000);
	run_until(f.base, &cl.calls, 1, 5000);
	run_until(f.base, &exact.calls, 1, 5000);
	T_CHECK(exact.calls == 1 && exact.status == HTTPC_OK && exact.body_len == 1000);
	T_CHECK(cl.calls == 1 && cl.status == HTTPC_ERROR);
	T_STREQ(cl.error, "response larger than 1000 bytes");
	T_CHECK(ch.calls == 1 && ch.status == HTTPC_ERROR);
	T_STREQ(ch.error, "response larger than 1000 bytes");
	T_CHECK(ch.body_len == 0);
	httpc_get_stats(f.c, &st);
	T_CHECK(st.errors == 2);
	fx_done(&f);
}

/* Each callback issues the next request: sequential, so one kept-alive
 * connection carries them all. */
void test_httpc_keepalive_reuse(void)
{
	enum { N = 20 };
	struct fx f;
	struct got g[N];
	struct httpc_request req = { .method = "GET" };
	struct httpc_stats st;
	int ok = 0;

	memset(g, 0, sizeof(g));
	T_CHECK(fx_init(&f, NULL) == 0);
	req.url = url(&f, "/echo");
	for (int i = 0; i < N - 1; i++) {
		g[i].c = f.c;
		g[i].next_req = &req;
		g[i].next_got = &g[i + 1];
	}
	request(f.c, &req, &g[0]);
	run_until(f.base, &g[N - 1].calls, 1, 10000);
	for (int i = 0; i < N; i++)
		ok += g[i].calls == 1 && g[i].status == HTTPC_OK && g[i].code == 200;
	T_CHECK(ok == N);
	T_CHECK(f.srv.hits == N);
	httpc_get_stats(f.c, &st);
	T_CHECK(st.requests == N);
	T_CHECK(st.connects >= 1 && st.connects <= 2);
	T_CHECK(st.inflight == 0);
	fx_done(&f);
}

void test_httpc_concurrent(void)
{
	enum { N = 50 };
	struct fx f;
	struct got *g = calloc(N, sizeof(*g));
	struct httpc_request req = { .method = "POST", .body = "hi", .body_len = 2 };
	struct httpc_stats st;
	int done = 0, ok = 0, once = 0;

	T_CHECK(fx_init(&f, NULL) == 0);
	req.url = url(&f, "/echo");
	for (int i = 0; i < N; i++)
		request(f.c, &req, &g[i]);
	httpc_get_stats(f.c, &st);
	T_CHECK(st.inflight == N);
	for (uint64_t end = util_now_ms() + 10000; util_now_ms() < end;) {
		done = 0;
		for (int i = 0; i < N; i++)
			done += g[i].calls > 0;
		if (done == N)
			break;
		run_until(f.base, NULL, 0, 20);
	}
	/* a little more loop: nothing may arrive twice */
	run_until(f.base, NULL, 0, 100);
	for (int i = 0; i < N; i++) {
		once += g[i].calls == 1;
		ok += g[i].status == HTTPC_OK && g[i].code == 200 && !strcmp(g[i].body, "POST:hi");
	}
	T_CHECK(once == N);
	T_CHECK(ok == N);
	T_CHECK(f.srv.hits == N);
	httpc_get_stats(f.c, &st);
	T_CHECK(st.inflight == 0 && st.requests == N && st.errors == 0);
	fx_done(&f);
	free(g);
}

void test_httpc_free_cancels(void)
{
	enum { N = 5 };
	struct fx f;
	struct got g[N], late = { 0 }, retry = { 0 }, bad = { 0 }, retry2 = { 0 };
	struct httpc_request req = { .method = "GET" };
	struct httpc_request noreq = { .method = "GET", .url = NULL };
	struct httpc_stats st;
	int once = 0;

	memset(g, 0, sizeof(g));
	T_CHECK(fx_init(&f, NULL) == 0);
	f.srv.delay_ms = 5000;
	req.url = url(&f, "/slow");
	for (int i = 0; i < N; i++)
		request(f.c, &req, &g[i]);
	/* the server holds all N: they are on the wire */
	run_until(f.base, &f.srv.hits, N, 5000);
	T_CHECK(f.srv.hits == N);
	/* the first cancelled callback asks again: that one is cancelled too */
	g[0].c = f.c;
	g[0].next_req = &req;
	g[0].next_got = &retry;
	/* not started yet, and a failure still parked on the defer queue */
	request(f.c, &req, &late);
	request(f.c, &noreq, &bad);
	/* ... whose callback, run from httpc_free, asks again too */
	bad.c = f.c;
	bad.next_req = &req;
	bad.next_got = &retry2;
	httpc_get_stats(f.c, &st);
	T_CHECK(st.inflight == N + 2);
	httpc_free(f.c);
	f.c = NULL;
	for (int i = 0; i < N; i++)
		once += g[i].calls == 1 && g[i].status == HTTPC_CANCELLED;
	T_CHECK(once == N);
	T_CHECK(g[0].error[0] != '\0');
	T_CHECK(late.calls == 1 && late.status == HTTPC_CANCELLED);
	T_CHECK(retry.calls == 1 && retry.status == HTTPC_CANCELLED);
	T_CHECK(bad.calls == 1 && bad.status == HTTPC_ERROR);
	T_CHECK(retry2.calls == 1 && retry2.status == HTTPC_CANCELLED);
	fx_done(&f);
}

void test_httpc_callback_requests(void)
{
	struct fx f;
	struct got first = { 0 }, second = { 0 }, bad = { 0 };
	struct httpc_request req = { .method = "GET" };
	struct httpc_request post = { .method = "POST", .body = "again", .body_len = 5 };
	struct httpc_request noreq = { .method = "GET", .url = NULL };
	char u[256];

	T_CHECK(fx_init(&f, NULL) == 0);
	req.url = url(&f, "/fail");
	snprintf(u, sizeof(u), "%s/echo", f.url);
	post.url = u;	/* used later, from the callback */
	first.c = f.c;
	first.next_req = &post;
	first.next_got = &second;
	request(f.c, &req, &first);
	/* a request that fails at once still answers on a later pass */
	request(f.c, &noreq, &bad);
	T_CHECK(bad.calls == 0);
	run_until(f.base, &second.calls, 1, 5000);
	T_CHECK(first.calls == 1 && first.code == 500);
	T_CHECK(second.calls == 1 && second.status == HTTPC_OK);
	T_STREQ(second.body, "POST:again");
	T_CHECK(bad.calls == 1 && bad.status == HTTPC_ERROR && bad.error[0] != '\0');
	fx_done(&f);
}
