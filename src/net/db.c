/*
 * db: the pool.  Objects and who owns them:
 *
 *   struct db_pool  owns its connections, the wait queue and the "done" list
 *                   of jobs whose callbacks are still to be delivered.
 *   struct db_conn  one slot of the pool: a PGconn (or none while down), its
 *                   io event and a timer used both as connect timeout and as
 *                   reconnect delay.  Points to the job it runs (borrowed)
 *                   and to a pinned transaction, if any.
 *   struct db_job   one call of the API.  Lives in exactly one place at a
 *                   time: the queue, a connection, or the done list; freed
 *                   right after its callback returns.
 *   struct db_tx    a transaction handle.  The caller holds it from BEGIN's
 *                   callback to db_tx_commit/rollback, which free it.
 *
 * The one rule that keeps callbacks safe: a connection's state is brought
 * up to date (and the next queued job started on it) before a callback is
 * called, and nothing touches the connection after the callback returns.
 */
#include "net/db.h"
#include "base/admit.h"
#include "base/config.h"
#include "base/defer.h"
#include "base/log.h"
#include "base/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

enum conn_state { C_DOWN, C_CONNECTING, C_SETUP, C_IDLE, C_BUSY, C_TX };
enum job_kind { J_QUERY, J_BEGIN, J_TXQUERY, J_COMMIT, J_ROLLBACK };

struct db_job {
	struct db_pool *pool;
	enum job_kind kind;
	char *sql;
	int nparams;
	char **params;
	db_cb cb;
	db_tx_cb txcb;
	void *arg;
	struct db_tx *tx;	/* transaction kinds; J_BEGIN once it succeeded */
	struct db_conn *conn;	/* while running */
	struct event *timer;	/* deadline: queue wait plus execution */
	PGresult *res;		/* first error result, else the last result */
	enum db_status status;	/* for deferred delivery */
	char *error;
	struct defer_node dnode;
	struct db_job *next, *prev;	/* wait queue or retry list links */
	bool queued;
	uint64_t deadline_ms;	/* admission: the answer is of use until then */
	uint64_t run_us;	/* when it went to a connection (J_QUERY), for the estimator */
	/* db_query_durable: transient failures are retried, not delivered */
	bool durable, waiting_retry;
	int attempts;
	uint64_t durable_until_ms;	/* 0: no limit */
	struct event *retry_ev;
	char *stmt;		/* db_query_prepared: the statement's name, else NULL */
	bool preparing;		/* its Parse is running on conn (first use there) */
};

struct db_tx {
	struct db_pool *pool;
	struct db_conn *conn;	/* NULL once the connection was lost */
	bool busy;		/* a statement is running */
	bool failed;		/* a statement failed: COMMIT will roll back */
	struct db_job *end_job;	/* COMMIT/ROLLBACK waiting for a running statement */
};

struct db_conn {
	struct db_pool *pool;
	int idx;
	PGconn *pg;
	enum conn_state state;
	struct event *io;
	int io_fd;
	short io_what;
	struct event *timer;
	int failures;
	bool attempted;
	struct db_job *job;
	struct db_tx *tx;
	bool listening;		/* LISTEN sent on this connection */
	char **prepared;	/* names of the statements prepared on pg */
	int nprepared, capprepared;
};

struct db_pool {
	struct event_base *base;
	const struct config *cfg;
	PQconninfoOption *opts;	/* owns the keyword strings in kw */
	const char **kw;
	const char **vals;
	char *hostaddr;		/* resolved before the loop; owned */
	char name[16];		/* "db" or "dbbg": in log lines */
	int nconn;
	int queue_max;
	struct db_conn *conns;
	struct db_job *qhead, *qtail;
	int qlen;
	struct db_job *rhead;		/* durable jobs waiting to be sent again */
	int rlen;
	uint64_t retries;
	struct defer_queue done;	/* failed jobs whose callbacks are due */
	bool closing;
	int in_call;		/* > 0 while a job is being submitted (db_query...) */
	uint64_t reconnects, queries, timeouts, refused;
	struct admit admit;	/* how long a query keeps a connection */
	char *listen_channel;	/* LISTENed on every connection, or NULL */
	db_notify_cb notify_cb;
	void *notify_arg;
};

static void conn_connect(struct db_conn *c);
static void conn_down(struct db_conn *c, const char *why);
static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void start_job(struct db_conn *c, struct db_job *j);
static void job_arm(struct db_job *j);

const char *db_status_name(enum db_status s)
{
	static const char *const names[] = { "ok", "error", "unavailable", "busy", "timeout", "cancelled" };

	return names[s];
}

/* ---- jobs ---- */

static void job_timeout_cb(evutil_socket_t fd, short what, void *arg);

static struct db_job *job_new(struct db_pool *p, enum job_kind kind, const char *sql, int nparams,
			      const char *const *params)
{
	struct db_job *j = xcalloc(1, sizeof(*j));

	j->pool = p;
	j->kind = kind;
	j->sql = xstrdup(sql);
	j->nparams = nparams;
	if (nparams > 0) {
		j->params = xcalloc((size_t)nparams, sizeof(char *));
		for (int i = 0; i < nparams; i++)
			j->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	}
	j->timer = evtimer_new(p->base, job_timeout_cb, j);
	return j;
}

static void job_free(struct db_job *j)
{
	for (int i = 0; i < j->nparams; i++)
		free(j->params[i]);
	free(j->params);
	free(j->sql);
	free(j->stmt);
	free(j->error);
	if (j->res)
		PQclear(j->res);
	event_free(j->timer);
	if (j->retry_ev)
		event_free(j->retry_ev);
	free(j);
}

static void queue_remove(struct db_pool *p, struct db_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		p->qhead = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		p->qtail = j->prev;
	j->next = j->prev = NULL;
	j->queued = false;
	p->qlen--;
}

/*
 * Calls the job's callback and frees it.  A transaction that ends here
 * (COMMIT, ROLLBACK, or a failed BEGIN) is freed before the callback, so
 * the caller's handle is dead by the time it hears the outcome.
 */
static bool job_retry_later(struct db_job *j, enum db_status st, const char *error);

static void job_deliver(struct db_job *j, enum db_status st, const char *error)
{
	struct db_result r = { st, NULL, error, NULL };
	struct db_tx *tx = j->tx;

	/* the contract: never from inside the call that made the job (only a
	 * pool being freed answers at once, with DB_CANCELLED) */
	xassert(!j->pool->in_call || j->pool->closing);
	evtimer_del(j->timer);
	if (j->durable && job_retry_later(j, st, error))
		return;
	if (j->res) {
		r.res = j->res;
		r.sqlstate = PQresultErrorField(j->res, PG_DIAG_SQLSTATE);
	}
	j->pool->queries++;
	if (j->kind == J_COMMIT || j->kind == J_ROLLBACK) {
		free(tx);
		tx = NULL;
	}
	if (j->kind == J_BEGIN) {
		if (j->txcb)
			j->txcb(st == DB_OK ? tx : NULL, &r, j->arg);
	} else if (j->cb) {
		j->cb(&r, j->arg);
	}
	job_free(j);
}

static void job_deferred(struct defer_node *n)
{
	struct db_job *j = (struct db_job *)((char *)n - offsetof(struct db_job, dnode));

	job_deliver(j, j->status, j->error);
}

/* Completes a job later, from the loop, so no callback runs inside an API
 * call or in the middle of a state change. */
static void job_fail_later(struct db_job *j, enum db_status st, const char *error)
{
	struct db_pool *p = j->pool;

	if (j->queued)
		queue_remove(p, j);
	evtimer_del(j->timer);
	j->conn = NULL;
	j->status = st;
	free(j->error);
	j->error = error ? xstrdup(error) : NULL;
	if (p->closing) {
		job_deliver(j, st, j->error);
		return;
	}
	defer_push(&p->done, &j->dnode, job_deferred);
}

/* ---- connections ---- */

static bool conn_alive(const struct db_conn *c)
{
	return c->state != C_DOWN;
}

static bool pool_any_alive(const struct db_pool *p)
{
	for (int i = 0; i < p->nconn; i++)
		if (conn_alive(&p->conns[i]))
			return true;
	return false;
}

static void conn_arm(struct db_conn *c, short what)
{
	int fd = PQsocket(c->pg);

	/* libpq may change the socket between PQconnectPoll calls: re-read it
	 * every time and rebuild the event when it or the wanted events differ. */
	if (!c->io || fd != c->io_fd || what != c->io_what) {
		if (c->io)
			event_free(c->io);
		c->io = event_new(c->pool->base, fd, what, conn_io_cb, c);
		c->io_fd = fd;
		c->io_what = what;
	}
	event_add(c->io, NULL);
}

static void conn_close(struct db_conn *c)
{
	if (c->io) {
		event_free(c->io);
		c->io = NULL;
	}
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->io_fd = -1;
	c->listening = false;	/* a new connection LISTENs again */
	/* and starts with no prepared statements */
	for (int i = 0; i < c->nprepared; i++)
		free(c->prepared[i]);
	free(c->prepared);
	c->prepared = NULL;
	c->nprepared = c->capprepared = 0;
}

static bool conn_prepared(const struct db_conn *c, const char *name)
{
	for (int i = 0; i < c->nprepared; i++)
		if (!strcmp(c->prepared[i], name))
			return true;
	return false;
}

static void conn_add_prepared(struct db_conn *c, const char *name)
{
	if (c->nprepared == c->capprepared) {
		c->capprepared = c->capprepared ? 2 * c->capprepared : 16;
		c->prepared = xrealloc(c->prepared, (size_t)c->capprepared * sizeof(*c->prepared));
	}
	c->prepared[c->nprepared++] = xstrdup(name);
}

/*
 * Takes a connection down: what ran on it fails with DB_UNAVAILABLE, a
 * pinned transaction loses its connection, a reconnect is scheduled.  When
 * no connection is left up or coming up, the queue is failed too: nobody
 * should wait for a timeout when PostgreSQL is plainly gone.
 */
static void conn_down(struct db_conn *c, const char *why)
{
	struct db_pool *p = c->pool;
	struct db_job *j = c->job;
	struct db_tx *tx = c->tx;
	bool was_up = c->state >= C_IDLE;
	char reason[512];
	int delay;

	snprintf(reason, sizeof(reason), "%s", why && *why ? why : "connection lost");
	util_trim(reason);
	conn_close(c);
	c->state = C_DOWN;
	c->job = NULL;
	c->tx = NULL;
	if (tx) {
		tx->conn = NULL;
		tx->busy = false;
	}
	delay = was_up ? p->cfg->database_reconnect_min_ms : util_backoff_ms(p->cfg->database_reconnect_min_ms, p->cfg->database_reconnect_max_ms, c->failures);
	if (!was_up)
		c->failures++;
	if (!p->closing) {
		struct timeval tv = { delay / 1000, (delay % 1000) * 1000 };

		log_msg(was_up ? LOG_WARN : LOG_INFO, NULL, "%s[%d]: %s: %s; retrying in %d ms", p->name, c->idx,
			was_up ? "connection lost" : "cannot connect", reason, delay);
		evtimer_add(c->timer, &tv);
	}
	if (j)
		job_fail_later(j, DB_UNAVAILABLE, reason);
	if (tx && tx->end_job) {
		struct db_job *e = tx->end_job;

		tx->end_job = NULL;
		job_fail_later(e, DB_UNAVAILABLE, reason);
	}
	if (!pool_any_alive(p))
		while (p->qhead)
			job_fail_later(p->qhead, DB_UNAVAILABLE, reason);
}

static void notice_cb(void *arg, const char *msg)
{
	struct db_conn *c = arg;
	char line[512];

	snprintf(line, sizeof(line), "%s", msg);
	log_debug("%s[%d]: notice: %s", c->pool->name, c->idx, util_trim(line));
}

static void conn_connect(struct db_conn *c)
{
	struct db_pool *p = c->pool;
	int ms = p->cfg->database_connect_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (c->attempted)
		p->reconnects++;
	c->attempted = true;
	c->pg = PQconnectStartParams(p->kw, p->vals, 0);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_down(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(c->pg, notice_cb, c);
	c->state = C_CONNECTING;
	evtimer_add(c->timer, &tv);
	/* "behave as if PQconnectPoll had last returned PGRES_POLLING_WRITING" */
	conn_arm(c, EV_WRITE);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	if (c->state == C_DOWN)
		conn_connect(c);
	else if (c->state == C_CONNECTING || c->state == C_SETUP)
		conn_down(c, "connect timeout");
}

/* Notes when a plain query went to a connection: its service time feeds
 * the pool's admission estimate. */
static void stamp_run(struct db_job *j)
{
	if (j->kind == J_QUERY)
		j->run_us = util_now_us();
}

/* Starts queued jobs while this connection is idle. */
static void conn_dispatch(struct db_conn *c)
{
	struct db_pool *p = c->pool;

	while (c->state == C_IDLE && p->qhead) {
		struct db_job *j = p->qhead;

		if (util_now_ms() >= j->deadline_ms) {	/* its answer would come too late */
			p->refused++;
			job_fail_later(j, DB_BUSY, "database busy: could not start in time");
			continue;
		}
		queue_remove(p, j);
		stamp_run(j);
		start_job(c, j);
	}
}

static void conn_send_setup(struct db_conn *c)
{
	char ms[32], app[32];
	const char *params[2] = { ms, app };

	snprintf(ms, sizeof(ms), "%d", c->pool->cfg->database_query_timeout_ms);
	/* "chamad" for the interactive pool, "chamad-dbbg" for the background one */
	snprintf(app, sizeof(app), "chamad%s%s", strcmp(c->pool->name, "db") ? "-" : "",
		 strcmp(c->pool->name, "db") ? c->pool->name : "");
	if (PQsetnonblocking(c->pg, 1) != 0 ||
	    !PQsendQueryParams(c->pg, "SELECT set_config('statement_timeout', $1, false),"
				      " set_config('application_name', $2, false)",
			       2, NULL, params, NULL, NULL, 0)) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	c->state = C_SETUP;
	conn_arm(c, PQflush(c->pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* Hands NOTIFYs to the pool's listener.  Every connection LISTENs, so
 * whichever is idle first reports; the listener de-duplicates. */
static void drain_notifies(struct db_conn *c)
{
	struct db_pool *p = c->pool;
	PGnotify *n;

	while ((n = PQnotifies(c->pg)) != NULL) {
		if (p->notify_cb && !p->closing)
			p->notify_cb(n->relname, n->extra, p->notify_arg);
		PQfreemem(n);
	}
}

/*
 * Reads what the server sent for the running statement.  Returns 1 when the
 * statement is complete, 0 to wait for more, -1 when the connection failed.
 */
static int conn_read_results(struct db_conn *c, short what, PGresult **keep)
{
	int rc;

	if ((what & EV_READ) && !PQconsumeInput(c->pg))
		return -1;
	rc = PQflush(c->pg);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		conn_arm(c, EV_READ | EV_WRITE);
		return 0;
	}
	while (!PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);

		if (!r)
			return 1;
		/* Keep the first error, otherwise the last result. */
		if (*keep && PQresultStatus(*keep) != PGRES_COMMAND_OK && PQresultStatus(*keep) != PGRES_TUPLES_OK) {
			PQclear(r);
		} else {
			if (*keep)
				PQclear(*keep);
			*keep = r;
		}
	}
	if (PQstatus(c->pg) == CONNECTION_BAD)
		return -1;
	conn_arm(c, EV_READ);
	return 0;
}

static enum db_status result_status(const PGresult *r, const char **err)
{
	ExecStatusType st;

	*err = NULL;
	if (!r)
		return DB_OK;
	st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)
		return DB_OK;
	*err = PQresultErrorMessage(r);
	if (!*err || !**err)
		*err = PQresStatus(st);
	/* the server's statement_timeout (the same limit as our client-side
	 * timer, so either may fire first) is a timeout, not an SQL error */
	{
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		if (state && !strcmp(state, "57014") && strstr(*err, "statement timeout"))
			return DB_TIMEOUT;
	}
	return DB_ERROR;
}

/* The running job has its full answer: bring the connection (and a
 * transaction) up to date, start the next work on it, then deliver. */
static void conn_job_done(struct db_conn *c)
{
	struct db_job *j = c->job;
	struct db_tx *tx;
	const char *err;
	enum db_status st = result_status(j->res, &err);
	char *errcopy;

	if (j->preparing && st == DB_OK) {
		/* the Parse is done: now the statement itself, same connection */
		j->preparing = false;
		PQclear(j->res);
		j->res = NULL;
		conn_add_prepared(c, j->stmt);
		start_job(c, j);
		return;
	}
	errcopy = err ? xstrdup(err) : NULL;

	if (st == DB_TIMEOUT)	/* the server's statement_timeout beat our timer */
		c->pool->timeouts++;
	if (j->run_us)
		admit_observe(&c->pool->admit, (double)(util_now_us() - j->run_us) / 1000.0);
	c->job = NULL;
	j->conn = NULL;
	switch (j->kind) {
	case J_QUERY:
		c->state = C_IDLE;
		break;
	case J_BEGIN:
		if (st == DB_OK) {
			tx = xcalloc(1, sizeof(*tx));
			tx->pool = c->pool;
			tx->conn = c;
			c->tx = tx;
			c->state = C_TX;
			j->tx = tx;
		} else {
			c->state = C_IDLE;
		}
		break;
	case J_TXQUERY:
		j->tx->busy = false;
		if (st != DB_OK)
			j->tx->failed = true;
		if (j->tx->end_job) {
			struct db_job *e = j->tx->end_job;

			j->tx->end_job = NULL;
			job_arm(e);
			start_job(c, e);
		}
		break;
	case J_COMMIT:
		/* COMMIT of an aborted transaction "succeeds" with tag ROLLBACK. */
		if (st == DB_OK && j->res && !strcmp(PQcmdStatus(j->res), "ROLLBACK")) {
			st = DB_ERROR;
			free(errcopy);
			errcopy = xstrdup("transaction was aborted by an earlier error and rolled back");
		}
		__attribute__((fallthrough));
	case J_ROLLBACK:
		c->tx = NULL;
		c->state = C_IDLE;
		break;
	}
	if (c->state == C_IDLE)
		conn_dispatch(c);
	job_deliver(j, st, errcopy);
	free(errcopy);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	const char *err;
	int rc;

	switch (c->state) {
	case C_CONNECTING:
		switch (PQconnectPoll(c->pg)) {
		case PGRES_POLLING_READING:
			conn_arm(c, EV_READ);
			break;
		case PGRES_POLLING_WRITING:
			conn_arm(c, EV_WRITE);
			break;
		case PGRES_POLLING_OK:
			conn_send_setup(c);
			break;
		default:
			conn_down(c, PQerrorMessage(c->pg));
		}
		return;
	case C_SETUP: {
		PGresult *res = NULL;

		rc = conn_read_results(c, what, &res);
		if (rc == 1 && result_status(res, &err) == DB_OK && c->pool->listen_channel && !c->listening) {
			/* one more setup step: LISTEN, then idle */
			char *sql = xasprintf("LISTEN %s", c->pool->listen_channel);

			c->listening = true;
			if (!PQsendQuery(c->pg, sql))
				conn_down(c, PQerrorMessage(c->pg));
			else
				conn_arm(c, PQflush(c->pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
			free(sql);
		} else if (rc == 1 && result_status(res, &err) == DB_OK) {
			evtimer_del(c->timer);
			c->state = C_IDLE;
			c->failures = 0;
			log_info("%s[%d]: connected (server %d)", c->pool->name, c->idx, PQserverVersion(c->pg));
			conn_arm(c, EV_READ);
			conn_dispatch(c);
		} else if (rc != 0) {
			conn_down(c, rc < 0 ? PQerrorMessage(c->pg) : err);
		}
		if (res)
			PQclear(res);
		return;
	}
	case C_BUSY:
	case C_TX:
		if (c->job) {
			rc = conn_read_results(c, what, &c->job->res);
			if (rc < 0) {
				conn_down(c, PQerrorMessage(c->pg));
			} else if (rc == 1) {
				drain_notifies(c);	/* they may arrive with results */
				conn_job_done(c);
			}
			return;
		}
		/* a transaction with nothing running: same as idle */
		__attribute__((fallthrough));
	case C_IDLE:
		/* Nothing is expected; this is the server closing on us (restart,
		 * pg_terminate_backend) or a notification. */
		if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
			conn_down(c, PQerrorMessage(c->pg));
			return;
		}
		drain_notifies(c);
		conn_arm(c, EV_READ);
		return;
	case C_DOWN:
		return;
	}
}

static void start_job(struct db_conn *c, struct db_job *j)
{
	int rc;

	j->conn = c;
	c->job = j;
	if (c->state == C_IDLE)
		c->state = C_BUSY;
	if (j->stmt && !conn_prepared(c, j->stmt)) {
		/* first use on this connection: Parse first (conn_job_done then
		 * sends the statement); parameter types are inferred, as for
		 * PQsendQueryParams */
		j->preparing = true;
		rc = PQsendPrepare(c->pg, j->stmt, j->sql, j->nparams, NULL);
	} else if (j->stmt) {
		rc = PQsendQueryPrepared(c->pg, j->stmt, j->nparams, (const char *const *)j->params, NULL, NULL, 0);
	} else {
		rc = PQsendQueryParams(c->pg, j->sql, j->nparams, NULL, (const char *const *)j->params, NULL, NULL, 0);
	}
	if (!rc) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	rc = PQflush(c->pg);
	if (rc < 0) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	conn_arm(c, rc == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static void job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_job *j = arg;
	struct db_pool *p = j->pool;
	struct db_conn *c = j->conn;

	p->timeouts++;
	if (j->queued) {
		job_fail_later(j, DB_TIMEOUT, "timed out waiting for a database connection");
		return;
	}
	if (c) {
		/* libpq 15 cannot cancel without blocking: drop the connection. */
		c->job = NULL;
		j->conn = NULL;
		if (j->kind == J_TXQUERY)
			j->tx->busy = false;
		conn_down(c, "query timeout");
	}
	job_fail_later(j, DB_TIMEOUT, "query timed out");
}

static void job_arm(struct db_job *j)
{
	int ms = j->pool->cfg->database_query_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(j->timer, &tv);
}

/*
 * Admission: a job that finds an idle connection runs at once; else it
 * waits only if the pool can still answer it by its deadline (default:
 * query_timeout_ms from now), judged from the measured time a query keeps
 * a connection and the jobs already waiting (admit.h).  queue_max is a
 * memory cap.
 */
static void submit_job(struct db_pool *p, struct db_job *j)
{
	uint64_t now = util_now_ms();
	int alive = 0, busy = 0;

	if (p->closing) {
		job_fail_later(j, DB_CANCELLED, "shutting down");
		return;
	}
	if (!j->deadline_ms)
		j->deadline_ms = now + (uint64_t)p->cfg->database_query_timeout_ms;
	job_arm(j);
	for (int i = 0; i < p->nconn; i++) {
		if (p->conns[i].state == C_IDLE && !p->qhead) {
			stamp_run(j);
			start_job(&p->conns[i], j);
			return;
		}
	}
	for (int i = 0; i < p->nconn; i++) {
		alive += conn_alive(&p->conns[i]);
		busy += p->conns[i].state == C_BUSY || p->conns[i].state == C_TX;
	}
	if (!alive) {
		job_fail_later(j, DB_UNAVAILABLE, "no connection to PostgreSQL");
		return;
	}
	if (p->qlen >= p->queue_max) {
		p->refused++;
		job_fail_later(j, DB_BUSY, "database queue full");
		return;
	}
	if (!admit_ok(&p->admit, p->qlen, busy, alive, now, j->deadline_ms)) {
		p->refused++;
		job_fail_later(j, DB_BUSY, "database busy: cannot answer in time");
		return;
	}
	j->queued = true;
	j->prev = p->qtail;
	if (p->qtail)
		p->qtail->next = j;
	else
		p->qhead = j;
	p->qtail = j;
	p->qlen++;
}

/* ---- durable statements ---- */

/* Failures that say nothing about the statement itself: no room, no
 * connection, no time, or a conflict PostgreSQL asks us to retry. */
static bool transient(enum db_status st, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (st == DB_BUSY || st == DB_UNAVAILABLE || st == DB_TIMEOUT)
		return true;
	if (st != DB_ERROR || !state)
		return false;
	return !strcmp(state, "40001") || !strcmp(state, "40P01") || !strncmp(state, "08", 2) ||
	       !strcmp(state, "57P01") || !strcmp(state, "55P03");
}

static void retry_unlink(struct db_pool *p, struct db_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		p->rhead = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->next = j->prev = NULL;
	j->waiting_retry = false;
	p->rlen--;
}

static void submit(struct db_pool *p, struct db_job *j)
{
	p->in_call++;
	submit_job(p, j);
	p->in_call--;
}

static void job_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_job *j = arg;

	retry_unlink(j->pool, j);
	/* a fresh admission deadline per attempt (submit sets the default) */
	j->deadline_ms = j->durable_until_ms;
	submit(j->pool, j);
}

/*
 * A durable job that failed for a transient reason goes on the retry list
 * and is sent again after a backoff, unless the pool is closing or its
 * deadline would pass first.  Returns false when it must be delivered.
 */
static bool job_retry_later(struct db_job *j, enum db_status st, const char *error)
{
	struct db_pool *p = j->pool;
	int delay;
	struct timeval tv;

	if (p->closing || !transient(st, j->res))
		return false;
	delay = util_backoff_ms(20, 2000, j->attempts);
	if (j->durable_until_ms && util_now_ms() + (uint64_t)delay >= j->durable_until_ms)
		return false;
	j->attempts++;
	p->retries++;
	if (j->attempts == 1 || j->attempts % 20 == 0)
		log_msg(j->attempts == 1 ? LOG_DEBUG : LOG_WARN, NULL, "%s: %s; retrying a durable statement (%d)",
			p->name, error ? error : db_status_name(st), j->attempts);
	if (j->res) {
		PQclear(j->res);
		j->res = NULL;
	}
	if (!j->retry_ev)
		j->retry_ev = evtimer_new(p->base, job_retry_cb, j);
	j->waiting_retry = true;
	j->prev = NULL;
	j->next = p->rhead;
	if (p->rhead)
		p->rhead->prev = j;
	p->rhead = j;
	p->rlen++;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(j->retry_ev, &tv);
	return true;
}

/* ---- public API ---- */

/* A durable statement, prepared under name when there is one. */
static void submit_durable(struct db_pool *p, const char *name, const char *sql, int nparams,
			   const char *const *params, uint64_t deadline_ms, db_cb cb, void *arg)
{
	struct db_job *j = job_new(p, J_QUERY, sql, nparams, params);

	if (name)
		j->stmt = xasprintf("chamad_%s", name);
	j->cb = cb;
	j->arg = arg;
	j->durable = true;
	j->durable_until_ms = deadline_ms;
	j->deadline_ms = deadline_ms;
	submit(p, j);
}

void db_query_durable(struct db_pool *p, const char *sql, int nparams, const char *const *params,
		      uint64_t deadline_ms, db_cb cb, void *arg)
{
	submit_durable(p, NULL, sql, nparams, params, deadline_ms, cb, arg);
}

void db_ping(struct db_pool *p, db_cb cb, void *arg)
{
	db_query(p, "SELECT 1", 0, NULL, cb, arg);
}

void db_query(struct db_pool *p, const char *sql, int nparams, const char *const *params, db_cb cb, void *arg)
{
	db_query_by(p, 0, sql, nparams, params, cb, arg);
}

void db_query_by(struct db_pool *p, uint64_t deadline_ms, const char *sql, int nparams, const char *const *params,
		 db_cb cb, void *arg)
{
	struct db_job *j = job_new(p, J_QUERY, sql, nparams, params);

	j->cb = cb;
	j->arg = arg;
	j->deadline_ms = deadline_ms;
	submit(p, j);
}

void db_query_prepared_by(struct db_pool *p, uint64_t deadline_ms, const char *name, const char *sql, int nparams,
			  const char *const *params, db_cb cb, void *arg)
{
	struct db_job *j = job_new(p, J_QUERY, sql, nparams, params);

	j->stmt = xasprintf("chamad_%s", name);
	j->cb = cb;
	j->arg = arg;
	j->deadline_ms = deadline_ms;
	submit(p, j);
}

void db_query_prepared(struct db_pool *p, const char *name, const char *sql, int nparams, const char *const *params,
		       db_cb cb, void *arg)
{
	db_query_prepared_by(p, 0, name, sql, nparams, params, cb, arg);
}

void db_run(struct db_pool *p, const struct db_stmt *s, const char *const *params, db_cb cb, void *arg)
{
	db_query_prepared_by(p, 0, s->name, s->sql, s->nparams, params, cb, arg);
}

void db_run_by(struct db_pool *p, uint64_t deadline_ms, const struct db_stmt *s, const char *const *params,
	       db_cb cb, void *arg)
{
	db_query_prepared_by(p, deadline_ms, s->name, s->sql, s->nparams, params, cb, arg);
}

void db_run_durable(struct db_pool *p, const struct db_stmt *s, const char *const *params, uint64_t deadline_ms,
		    db_cb cb, void *arg)
{
	submit_durable(p, s->name, s->sql, s->nparams, params, deadline_ms, cb, arg);
}

void db_tx_begin(struct db_pool *p, db_tx_cb cb, void *arg)
{
	struct db_job *j = job_new(p, J_BEGIN, "BEGIN", 0, NULL);

	j->txcb = cb;
	j->arg = arg;
	submit(p, j);
}

static void tx_submit_job(struct db_tx *tx, struct db_job *j);

static void tx_submit(struct db_tx *tx, struct db_job *j)
{
	struct db_pool *p = tx->pool;

	p->in_call++;
	tx_submit_job(tx, j);
	p->in_call--;
}

static void tx_submit_job(struct db_tx *tx, struct db_job *j)
{
	j->tx = tx;
	if (tx->pool->closing) {
		job_fail_later(j, DB_CANCELLED, "shutting down");
		return;
	}
	if (!tx->conn) {
		job_fail_later(j, DB_UNAVAILABLE, "transaction lost its connection");
		return;
	}
	if (j->kind == J_TXQUERY) {
		if (tx->busy) {
			job_fail_later(j, DB_ERROR, "transaction busy: one statement at a time");
			return;
		}
		tx->busy = true;
	} else if (tx->busy) {
		/* Runs (and its deadline starts) when the statement in flight
		 * ends, which has its own deadline. */
		tx->end_job = j;
		return;
	}
	job_arm(j);
	start_job(tx->conn, j);
}

void db_tx_query(struct db_tx *tx, const char *sql, int nparams, const char *const *params, db_cb cb, void *arg)
{
	struct db_job *j = job_new(tx->pool, J_TXQUERY, sql, nparams, params);

	j->cb = cb;
	j->arg = arg;
	tx_submit(tx, j);
}

void db_tx_commit(struct db_tx *tx, db_cb cb, void *arg)
{
	struct db_job *j = job_new(tx->pool, J_COMMIT, "COMMIT", 0, NULL);

	j->cb = cb;
	j->arg = arg;
	tx_submit(tx, j);
}

void db_tx_rollback(struct db_tx *tx, db_cb cb, void *arg)
{
	struct db_job *j = job_new(tx->pool, J_ROLLBACK, "ROLLBACK", 0, NULL);

	j->cb = cb;
	j->arg = arg;
	tx_submit(tx, j);
}

struct db_pool *db_pool_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen)
{
	return db_pool_new_sized(base, cfg, "db", cfg->database_pool_size, cfg->database_queue_max, err, errlen);
}

struct db_pool *db_pool_new_sized(struct event_base *base, const struct config *cfg, const char *name, int size,
				  int queue_max, char *err, size_t errlen)
{
	struct db_pool *p = xcalloc(1, sizeof(*p));
	char *perr = NULL;
	const char *host = NULL;
	bool has_hostaddr = false;
	int n = 0;

	p->base = base;
	p->cfg = cfg;
	p->opts = PQconninfoParse(cfg->database_url, &perr);
	if (!p->opts) {
		snprintf(err, errlen, "[database] url: %s", perr ? util_trim(perr) : "cannot parse");
		PQfreemem(perr);
		free(p);
		return NULL;
	}
	for (PQconninfoOption *o = p->opts; o->keyword; o++)
		n++;
	p->kw = xcalloc((size_t)n + 2, sizeof(char *));
	p->vals = xcalloc((size_t)n + 2, sizeof(char *));
	n = 0;
	for (PQconninfoOption *o = p->opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "host"))
			host = o->val;
		if (!strcmp(o->keyword, "hostaddr"))
			has_hostaddr = true;
		p->kw[n] = o->keyword;
		p->vals[n] = o->val;
		n++;
	}
	/* PQconnectPoll would do a blocking DNS lookup on the loop for a host
	 * name: resolve it once here, before the loop runs, into hostaddr. */
	if (host && !has_hostaddr && host[0] != '/' && !strchr(host, ',')) {
		char why[256];

		p->hostaddr = util_resolve_host(host, why, sizeof(why));
		if (!p->hostaddr) {
			snprintf(err, errlen, "[database] url: %s", why);
			free(p->kw);
			free(p->vals);
			PQconninfoFree(p->opts);
			free(p);
			return NULL;
		}
		p->kw[n] = "hostaddr";
		p->vals[n] = p->hostaddr;
	}
	defer_init(&p->done, base);
	admit_init(&p->admit);
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->queue_max = queue_max;
	p->nconn = size;
	p->conns = xcalloc((size_t)p->nconn, sizeof(*p->conns));
	for (int i = 0; i < p->nconn; i++) {
		struct db_conn *c = &p->conns[i];

		c->pool = p;
		c->idx = i;
		c->io_fd = -1;
		c->state = C_DOWN;
		c->timer = evtimer_new(base, conn_timer_cb, c);
		conn_connect(c);
	}
	return p;
}

int db_pool_listen(struct db_pool *p, const char *channel, db_notify_cb cb, void *arg)
{
	size_t n = strlen(channel);

	/* an identifier we can put in LISTEN as it is */
	if (n < 1 || n > 63 || strspn(channel, "abcdefghijklmnopqrstuvwxyz_") != n)
		return -1;
	free(p->listen_channel);
	p->listen_channel = xstrdup(channel);
	p->notify_cb = cb;
	p->notify_arg = arg;
	return 0;
}

void db_pool_set_config(struct db_pool *p, const struct config *cfg)
{
	p->cfg = cfg;
}

void db_pool_stats(const struct db_pool *p, struct db_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->size = p->nconn;
	for (int i = 0; i < p->nconn; i++) {
		enum conn_state s = p->conns[i].state;

		if (s == C_IDLE || s == C_BUSY || s == C_TX)
			out->connected++;
		if (s == C_BUSY || s == C_TX)
			out->busy++;
	}
	out->queued = p->qlen;
	out->retrying = p->rlen;
	out->retries = p->retries;
	out->reconnects = p->reconnects;
	out->queries = p->queries;
	out->timeouts = p->timeouts;
	out->refused = p->refused;
	out->service_ms = p->admit.service_ms;
}

void db_pool_free(struct db_pool *p)
{
	if (!p)
		return;
	/* From here every callback is delivered at once with DB_CANCELLED, and
	 * calls made from those callbacks are answered the same way. */
	p->closing = true;
	for (int i = 0; i < p->nconn; i++) {
		struct db_conn *c = &p->conns[i];
		struct db_job *j = c->job;
		struct db_tx *tx = c->tx;

		c->job = NULL;
		c->tx = NULL;
		if (tx) {
			tx->conn = NULL;
			tx->busy = false;
			if (tx->end_job) {
				struct db_job *e = tx->end_job;

				tx->end_job = NULL;
				job_fail_later(e, DB_CANCELLED, "shutting down");
			}
		}
		if (j)
			job_fail_later(j, DB_CANCELLED, "shutting down");
	}
	while (p->qhead)
		job_fail_later(p->qhead, DB_CANCELLED, "shutting down");
	while (p->rhead) {
		struct db_job *j = p->rhead;

		retry_unlink(p, j);
		evtimer_del(j->retry_ev);
		job_fail_later(j, DB_CANCELLED, "shutting down");
	}
	defer_free(&p->done);
	for (int i = 0; i < p->nconn; i++) {
		conn_close(&p->conns[i]);
		event_free(p->conns[i].timer);
	}
	free(p->conns);
	free(p->kw);
	free(p->vals);
	free(p->hostaddr);
	free(p->listen_channel);
	PQconninfoFree(p->opts);
	free(p);
}
