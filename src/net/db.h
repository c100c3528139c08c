/*
 * db: a PostgreSQL connection pool on the event loop.
 *
 * Every connection is opened with PQconnectStartParams/PQconnectPoll and
 * driven by one libevent event re-armed on PQsocket() after each step;
 * queries go out with PQsendQueryParams and results are read when the
 * socket is readable.  Nothing here can block the loop: host names in the
 * conninfo are resolved once, before the loop starts, into hostaddr.
 *
 * Contract (the hiredis one): for every db_query/db_tx_* call the callback
 * is called exactly once, never from inside the call itself, including
 * when the pool is freed (status DB_CANCELLED).  The PGresult in a
 * db_result is borrowed: it is freed when the callback returns.
 *
 * Limits: a query waits for a free connection in a FIFO queue only when the
 * pool can still answer it by its deadline, judged from the measured time
 * a query keeps a connection (admit.h); otherwise, or past the memory cap
 * [database] queue_max, it gets DB_BUSY at once, and a queued query whose
 * deadline passed before a connection was free is not run (DB_BUSY).  As a
 * whole a query may take [database] query_timeout_ms (DB_TIMEOUT).  A query that times out while
 * running drops its connection, since libpq 15 has no non-blocking cancel;
 * the server also enforces the same statement_timeout.  When no connection
 * is up or coming up, queries fail at once with DB_UNAVAILABLE.
 */
#ifndef CHAMAD_DB_H
#define CHAMAD_DB_H

#include <stdint.h>
#include <libpq-fe.h>

struct event_base;
struct config;
struct db_pool;
struct db_tx;

enum db_status {
	DB_OK,		/* the server ran it; res holds the (last) result */
	DB_ERROR,	/* the server refused it (SQL error, constraint, aborted tx) */
	DB_UNAVAILABLE,	/* no connection to PostgreSQL (down, lost mid-query) */
	DB_BUSY,	/* cannot be answered by its deadline, or the queue is at its cap */
	DB_TIMEOUT,	/* query_timeout_ms passed */
	DB_CANCELLED,	/* the pool is shutting down */
};

struct db_result {
	enum db_status status;
	PGresult *res;		/* borrowed; NULL unless the server answered */
	const char *error;	/* borrowed; NULL when status is DB_OK */
	const char *sqlstate;	/* borrowed; server error code, or NULL */
};

typedef void (*db_cb)(const struct db_result *r, void *arg);
typedef void (*db_tx_cb)(struct db_tx *tx, const struct db_result *r, void *arg);

struct db_stats {
	int size;		/* configured connections */
	int connected;		/* connections up (idle, busy or in a transaction) */
	int busy;		/* connections running a query or pinned by a transaction */
	int queued;		/* queries waiting for a connection */
	uint64_t reconnects;	/* connection attempts after the first one per slot */
	uint64_t queries;	/* queries completed, any status */
	uint64_t timeouts;
	int retrying;		/* durable statements waiting to be sent again */
	uint64_t retries;	/* durable statements sent again */
	uint64_t refused;	/* DB_BUSY answers: late or at the cap */
	double service_ms;	/* measured time a query keeps a connection (EWMA), 0 until measured */
};

/* Creates the pool and starts connecting.  Returns NULL with err filled if
 * the conninfo is unusable or its host cannot be resolved. */
struct db_pool *db_pool_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen);
/* The same with its own name (log lines), connection count and queue bound:
 * the background pool ([database] background_pool_size) is one of these. */
struct db_pool *db_pool_new_sized(struct event_base *base, const struct config *cfg, const char *name, int size,
				  int queue_max, char *err, size_t errlen);
/* Fails every pending and queued query with DB_CANCELLED, closes the
 * connections and frees the pool.  Must not be called from a db callback. */
void db_pool_free(struct db_pool *p);
/* Picks up reloadable timeouts from cfg (borrowed, may change later). */
void db_pool_set_config(struct db_pool *p, const struct config *cfg);
void db_pool_stats(const struct db_pool *p, struct db_stats *out);
const char *db_status_name(enum db_status s);

/*
 * NOTIFYs: every connection LISTENs on channel (also after a reconnect) and
 * cb(channel, payload, arg) runs on the loop for each notification, from
 * inside the pool: it should only note the wake-up.  Call before the loop
 * runs.  Returns -1 for a channel that is not [a-z_]{1,63}.
 */
typedef void (*db_notify_cb)(const char *channel, const char *payload, void *arg);
int db_pool_listen(struct db_pool *p, const char *channel, db_notify_cb cb, void *arg);

/* A round trip that reads nothing: whether the pool can reach PostgreSQL
 * now (a health check).  Contract and statuses as db_query. */
void db_ping(struct db_pool *p, db_cb cb, void *arg);

/* Runs one statement with text parameters (params[i] NULL means SQL NULL).
 * sql and params are copied.  Its deadline is query_timeout_ms from now. */
void db_query(struct db_pool *p, const char *sql, int nparams, const char *const *params, db_cb cb, void *arg);
/* The same with the caller's deadline (monotonic ms, util_now_ms; 0 = the
 * default): a USSD hop passes hop_deadline_ms(). */
void db_query_by(struct db_pool *p, uint64_t deadline_ms, const char *sql, int nparams, const char *const *params,
		 db_cb cb, void *arg);

/*
 * The same for a statement whose outcome must be recorded (an SMS sent, a
 * push accepted): a failure that says nothing about the statement (DB_BUSY,
 * DB_UNAVAILABLE, DB_TIMEOUT, serialization failure, deadlock, a lost
 * connection) is not delivered but retried with backoff (20 ms doubling to
 * 2 s, jittered), through reconnects, until PostgreSQL answers it, until
 * deadline_ms (util_now_ms() clock; 0 = no limit) would pass, or until the
 * pool closes (DB_CANCELLED).  The statement must be harmless when repeated:
 * one that timed out may have been applied.
 */
void db_query_durable(struct db_pool *p, const char *sql, int nparams, const char *const *params,
		      uint64_t deadline_ms, db_cb cb, void *arg);

/*
 * The same as db_query, as a statement prepared once per connection: name
 * (an identifier, [a-z0-9_]) stands for sql, and one name always means
 * one SQL text.  The first use on a connection sends a Parse and then
 * the statement (one more round trip, once); later uses send only the
 * parameters, so the server neither parses nor plans the text again.  A
 * connection that is re-made starts with nothing prepared.  The contract,
 * limits and statuses are those of db_query; a Parse that fails reports
 * its error as the statement's (DB_ERROR).
 */
void db_query_prepared(struct db_pool *p, const char *name, const char *sql, int nparams, const char *const *params,
		       db_cb cb, void *arg);
/* The same with a deadline, as db_query_by. */
void db_query_prepared_by(struct db_pool *p, uint64_t deadline_ms, const char *name, const char *sql, int nparams,
			  const char *const *params, db_cb cb, void *arg);

/* A named statement.  Every SQL text lives in the domain layer
 * (src/dom/), which defines each one with DB_STMT; the channels run them by
 * reference and read the columns the dom header documents.  A statement is
 * prepared once per connection under its name. */
struct db_stmt {
	const char *name;	/* unique: the C identifier */
	const char *sql;
	int nparams;
};
#define DB_STMT(id, n, text) const struct db_stmt id = { #id, text, n }

/* db_query_prepared[_by] and db_query_durable for a named statement;
 * params must hold s->nparams values. */
void db_run(struct db_pool *p, const struct db_stmt *s, const char *const *params, db_cb cb, void *arg);
void db_run_by(struct db_pool *p, uint64_t deadline_ms, const struct db_stmt *s, const char *const *params,
	       db_cb cb, void *arg);
void db_run_durable(struct db_pool *p, const struct db_stmt *s, const char *const *params, uint64_t deadline_ms,
		    db_cb cb, void *arg);

/*
 * Transactions pin one connection from BEGIN to COMMIT/ROLLBACK.  cb gets the
 * transaction handle when BEGIN succeeded (tx is NULL otherwise).  Inside,
 * one statement at a time.  db_tx_commit and db_tx_rollback end the handle:
 * it is freed before their callback returns.  A commit of a transaction
 * that had an error reports DB_ERROR (PostgreSQL rolled it back).  If the
 * connection is lost, every later call on the handle fails with
 * DB_UNAVAILABLE and nothing was committed.
 */
void db_tx_begin(struct db_pool *p, db_tx_cb cb, void *arg);
void db_tx_query(struct db_tx *tx, const char *sql, int nparams, const char *const *params, db_cb cb, void *arg);
void db_tx_commit(struct db_tx *tx, db_cb cb, void *arg);
void db_tx_rollback(struct db_tx *tx, db_cb cb, void *arg);

#endif
