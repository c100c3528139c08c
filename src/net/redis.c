/*
 * redis: the client.  Objects and who owns them:
 *
 *   struct redis_client  owns the redisAsyncContext while it is up (hiredis
 *                        frees it itself after a disconnect callback), the
 *                        reconnect/connect-timeout timer and the list of
 *                        commands in flight.
 *   struct rcmd          one command: caller's callback, a deadline timer.
 *                        hiredis holds it as privdata until it calls back
 *                        (with a reply, or NULL when the context goes), and
 *                        the rcmd is freed then.  A command that timed out is
 *                        answered to the caller at once and marked done; the
 *                        later hiredis callback only frees it.
 */
#include "net/redis.h"
#include "base/config.h"
#include "base/defer.h"
#include "base/log.h"
#include "net/redis_ev.h"
#include "base/util.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <hiredis/async.h>

enum rstate { R_DOWN, R_CONNECTING, R_HANDSHAKE, R_UP };

struct rcmd {
	struct redis_client *client;	/* NULL once the client is gone */
	redis_cb cb;
	void *arg;
	struct event *timer;
	bool done;			/* caller already answered */
	enum redis_status fail_status;	/* for deferred failures */
	const char *fail_error;
	struct defer_node dnode;
	struct rcmd *next, *prev;	/* in-flight list */
};

struct redis_client {
	struct event_base *base;
	const struct config *cfg;
	struct redis_url url;
	char *addr;			/* resolved host address */
	redisAsyncContext *ac;		/* NULL while down */
	enum rstate state;
	struct event *timer;		/* connect timeout, then reconnect delay */
	int failures;
	bool attempted;
	bool closing;
	bool in_call;			/* inside redis_cmd */
	struct rcmd *inflight;
	int pending;
	struct defer_queue later;
	uint64_t reconnects, commands, timeouts;
};

static void client_connect(struct redis_client *r);

const char *redis_status_name(enum redis_status s)
{
	static const char *const names[] = { "ok", "error", "unavailable", "busy", "timeout", "cancelled" };

	return names[s];
}

/* ---- commands ---- */

static void rcmd_unlink(struct rcmd *c)
{
	struct redis_client *r = c->client;

	if (!r)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		r->inflight = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	r->pending--;
	c->client = NULL;
}

static void rcmd_free(struct rcmd *c)
{
	/* every command is answered (exactly once: rcmd_answer) before it goes */
	xassert(c->done);
	rcmd_unlink(c);
	event_free(c->timer);
	free(c);
}

/* Answers the caller once; the rcmd itself may live on in hiredis. */
static void rcmd_answer(struct rcmd *c, enum redis_status st, redisReply *reply, const char *error)
{
	struct redis_result res = { st, reply, error };

	if (c->done)
		return;
	/* the contract: never from inside redis_cmd itself */
	xassert(!c->client || !c->client->in_call);
	c->done = true;
	evtimer_del(c->timer);
	if (c->cb)
		c->cb(&res, c->arg);
}

static void rcmd_deferred(struct defer_node *n)
{
	struct rcmd *c = (struct rcmd *)((char *)n - offsetof(struct rcmd, dnode));

	rcmd_answer(c, c->fail_status, NULL, c->fail_error);
	rcmd_free(c);
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rcmd *c = privdata;
	redisReply *rep = reply;

	if (!c)
		return;
	if (!rep)
		rcmd_answer(c, c->client && c->client->closing ? REDIS_S_CANCELLED : REDIS_S_UNAVAILABLE, NULL,
			    ac->errstr[0] ? ac->errstr : "connection lost");
	else if (rep->type == REDIS_REPLY_ERROR)
		rcmd_answer(c, REDIS_S_ERROR, rep, rep->str);
	else
		rcmd_answer(c, REDIS_S_OK, rep, NULL);
	rcmd_free(c);
}

static void drop_connection(struct redis_client *r, const char *why);

static void rcmd_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rcmd *c = arg;
	struct redis_client *r = c->client;

	rcmd_answer(c, REDIS_S_TIMEOUT, NULL, "redis command timed out");
	if (r) {
		r->timeouts++;
		/* An unanswered command means a stuck server or connection. */
		drop_connection(r, "command timeout");
	}
}

static struct rcmd *rcmd_new(struct redis_client *r, redis_cb cb, void *arg)
{
	struct rcmd *c = xcalloc(1, sizeof(*c));

	c->client = r;
	c->cb = cb;
	c->arg = arg;
	c->timer = evtimer_new(r->base, rcmd_timeout_cb, c);
	c->next = r->inflight;
	if (r->inflight)
		r->inflight->prev = c;
	r->inflight = c;
	r->pending++;
	return c;
}

static void rcmd_fail_later(struct redis_client *r, struct rcmd *c, enum redis_status st, const char *error)
{
	c->fail_status = st;
	c->fail_error = error;	/* static strings only */
	defer_push(&r->later, &c->dnode, rcmd_deferred);
}

/* Sends on the live context; returns the rcmd or NULL if hiredis refused. */
static int send_argv(struct redis_client *r, struct rcmd *c, int argc, const char **argv, const size_t *argvlen)
{
	int ms = r->cfg->redis_command_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (redisAsyncCommandArgv(r->ac, reply_cb, c, argc, argv, argvlen) != REDIS_OK)
		return -1;
	evtimer_add(c->timer, &tv);
	r->commands++;
	return 0;
}

void redis_cmd(struct redis_client *r, redis_cb cb, void *arg, int argc, const char **argv, const size_t *argvlen)
{
	bool full = r->pending >= r->cfg->redis_max_pending;
	struct rcmd *c = rcmd_new(r, cb, arg);

	r->in_call = true;
	if (r->closing)
		rcmd_fail_later(r, c, REDIS_S_CANCELLED, "shutting down");
	else if (r->state != R_UP)
		rcmd_fail_later(r, c, REDIS_S_UNAVAILABLE, "redis is not connected");
	else if (full)
		rcmd_fail_later(r, c, REDIS_S_BUSY, "too many redis commands in flight");
	else if (send_argv(r, c, argc, argv, argvlen) < 0)
		rcmd_fail_later(r, c, REDIS_S_UNAVAILABLE, "redis refused the command");
	r->in_call = false;
}

/* ---- connection ---- */

/* Marks the client down and schedules the next attempt.  The context is
 * already gone or about to be freed by the caller. */
static void client_down(struct redis_client *r, const char *why)
{
	bool was_up = r->state == R_UP;
	int delay;
	struct timeval tv;

	r->ac = NULL;
	r->state = R_DOWN;
	if (r->closing)
		return;
	delay = was_up ? r->cfg->redis_reconnect_min_ms : util_backoff_ms(r->cfg->redis_reconnect_min_ms, r->cfg->redis_reconnect_max_ms, r->failures);
	if (!was_up)
		r->failures++;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	log_msg(was_up ? LOG_WARN : LOG_INFO, NULL, "redis: %s: %s; retrying in %d ms",
		was_up ? "connection lost" : "cannot connect", why, delay);
	evtimer_del(r->timer);
	evtimer_add(r->timer, &tv);
}

/* We give up on the live context ourselves (timeouts, shutdown).  Safe only
 * outside hiredis callbacks: here redisAsyncFree frees at once, calling
 * every pending reply callback with NULL. */
static void drop_connection(struct redis_client *r, const char *why)
{
	redisAsyncContext *ac = r->ac;

	if (!ac)
		return;
	client_down(r, why);
	ac->data = NULL;	/* its disconnect callback must not touch us */
	redisAsyncFree(ac);
}

/* A failed AUTH or SELECT drops the connection.  This runs inside a hiredis
 * reply callback, so hiredis frees the context only after we return, and
 * our adapter's re-entrancy guard frees its own state after that. */
static bool handshake_failed(struct redis_client *r, const struct redis_result *res)
{
	char why[256];

	if (r->state != R_HANDSHAKE)
		return true;
	if (res->status == REDIS_S_OK)
		return false;
	snprintf(why, sizeof(why), "handshake failed: %s", res->error ? res->error : "?");
	drop_connection(r, why);
	return true;
}

static void auth_cb(const struct redis_result *res, void *arg)
{
	handshake_failed(arg, res);
}

static void select_cb(const struct redis_result *res, void *arg)
{
	struct redis_client *r = arg;

	if (handshake_failed(r, res))
		return;
	r->state = R_UP;
	r->failures = 0;
	log_info("redis: connected to %s", r->url.path ? r->url.path : r->addr);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_client *r = ac->data;
	char db[8];
	const char *sel[2] = { "SELECT", db };

	if (!r || r->ac != ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		client_down(r, ac->errstr[0] ? ac->errstr : "connect failed");
		return;
	}
	evtimer_del(r->timer);
	r->state = R_HANDSHAKE;
	if (r->url.password) {
		const char *auth[2] = { "AUTH", r->url.password };

		send_argv(r, rcmd_new(r, auth_cb, r), 2, auth, NULL);
	}
	snprintf(db, sizeof(db), "%d", r->url.db);
	if (send_argv(r, rcmd_new(r, select_cb, r), 2, sel, NULL) < 0)
		log_warn("redis: could not send SELECT");
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_client *r = ac->data;

	if (!r || r->ac != ac)
		return;
	/* hiredis frees the context after this callback */
	client_down(r, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "connection error"));
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct redis_client *r = arg;

	if (r->state == R_DOWN)
		client_connect(r);
	else if (r->state == R_CONNECTING || r->state == R_HANDSHAKE)
		drop_connection(r, "connect timeout");
}

static void client_connect(struct redis_client *r)
{
	int ms = r->cfg->redis_connect_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	redisAsyncContext *ac;

	if (r->attempted)
		r->reconnects++;
	r->attempted = true;
	/* Connect by address only: hiredis would resolve a name with a
	 * blocking getaddrinfo on the loop. */
	ac = r->url.path ? redisAsyncConnectUnix(r->url.path) : redisAsyncConnect(r->addr, r->url.port);
	if (!ac) {
		client_down(r, "out of memory");
		return;
	}
	if (ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		client_down(r, why);
		return;
	}
	ac->data = r;
	redis_ev_attach(ac, r->base);
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	r->ac = ac;
	r->state = R_CONNECTING;
	evtimer_add(r->timer, &tv);
}

struct redis_client *redis_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen)
{
	struct redis_client *r = xcalloc(1, sizeof(*r));
	char why[256];

	r->base = base;
	r->cfg = cfg;
	if (redis_url_parse(cfg->redis_url, &r->url, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "[redis] url: %s", why);
		free(r);
		return NULL;
	}
	if (r->url.host) {
		/* hiredis would resolve a name with a blocking getaddrinfo on
		 * every reconnect: resolve once, before the loop runs. */
		r->addr = util_resolve_host(r->url.host, why, sizeof(why));
		if (!r->addr) {
			snprintf(err, errlen, "[redis] url: %s", why);
			redis_url_free(&r->url);
			free(r);
			return NULL;
		}
	}
	defer_init(&r->later, base);
	r->timer = evtimer_new(base, timer_cb, r);
	client_connect(r);
	return r;
}

void redis_set_config(struct redis_client *r, const struct config *cfg)
{
	r->cfg = cfg;
}

void redis_get_stats(const struct redis_client *r, struct redis_stats *out)
{
	out->up = r->state == R_UP;
	out->pending = r->pending;
	out->reconnects = r->reconnects;
	out->commands = r->commands;
	out->timeouts = r->timeouts;
}

void redis_free(struct redis_client *r)
{
	if (!r)
		return;
	r->closing = true;
	/* Pending replies come back NULL from redisAsyncFree: CANCELLED. */
	drop_connection(r, "shutting down");
	defer_free(&r->later);
	/* Commands that timed out were answered but hiredis never called
	 * back for them before the context went: free what is left. */
	while (r->inflight) {
		struct rcmd *c = r->inflight;

		rcmd_answer(c, REDIS_S_CANCELLED, NULL, "shutting down");
		rcmd_free(c);
	}
	event_free(r->timer);
	redis_url_free(&r->url);
	free(r->addr);
	free(r);
}
