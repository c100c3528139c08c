/*
 * The PostgreSQL pool (src/db.c) driven directly against the real server
 * that the test scripts started: results, errors, transactions, lost
 * connections, timeouts, the wait queue and shutdown.  Needs
 * CHAMAD_DATABASE_URL; prints "N passed, N failed".
 */
#include "t.h"
#include "base/config.h"
#include "net/db.h"
#include "base/log.h"
#include "base/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

int t_checks, t_failed_checks;

static struct event_base *base;
static struct config *cfg;
static bool in_api_call;	/* set around API calls: callbacks must not see it */
static int sync_callbacks;

struct res {
	int done;
	enum db_status status;
	char value[128];
	char sqlstate[8];
	char error[256];
	struct db_tx *tx;
	int order;
};
static int order_seq;

static void on_result(const struct db_result *r, void *arg)
{
	struct res *o = arg;

	if (in_api_call)
		sync_callbacks++;
	o->done++;
	o->status = r->status;
	o->order = ++order_seq;
	if (r->res && PQntuples(r->res) > 0)
		snprintf(o->value, sizeof(o->value), "%s", PQgetvalue(r->res, 0, 0));
	if (r->sqlstate)
		snprintf(o->sqlstate, sizeof(o->sqlstate), "%s", r->sqlstate);
	if (r->error)
		snprintf(o->error, sizeof(o->error), "%s", r->error);
}

static void on_begin(struct db_tx *tx, const struct db_result *r, void *arg)
{
	struct res *o = arg;

	on_result(r, arg);
	o->tx = tx;
}

/* Runs the loop until *flag reaches n or ms pass; returns true if reached. */
static bool run_until(int *flag, int n, int ms)
{
	uint64_t end = util_now_ms() + (uint64_t)ms;

	while (*flag < n && util_now_ms() < end) {
		struct timeval tv = { 0, 10000 };

		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	return *flag >= n;
}

static void q(struct db_pool *p, const char *sql, int n, const char *const *params, struct res *o)
{
	in_api_call = true;
	db_query(p, sql, n, params, on_result, o);
	in_api_call = false;
}

static struct db_pool *pool_up(void)
{
	char err[256];
	struct db_pool *p = db_pool_new(base, cfg, err, sizeof(err));
	struct db_stats st;
	uint64_t end = util_now_ms() + 5000;

	if (!p) {
		fprintf(stderr, "pool: %s\n", err);
		exit(1);
	}
	do {
		struct timeval tv = { 0, 10000 };

		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
		db_pool_stats(p, &st);
	} while (st.connected < st.size && util_now_ms() < end);
	return p;
}

static void test_query_and_errors(void)
{
	struct db_pool *p = pool_up();
	const char *params[1] = { "41" };
	struct res a = { 0 }, b = { 0 }, c = { 0 };

	q(p, "SELECT $1::int + 1", 1, params, &a);
	q(p, "SELEC nonsense", 0, NULL, &b);
	params[0] = "not a number";
	q(p, "SELECT $1::int", 1, params, &c);
	T_CHECK(run_until(&a.done, 1, 3000) && run_until(&b.done, 1, 3000) && run_until(&c.done, 1, 3000));
	T_CHECK(a.status == DB_OK);
	T_STREQ(a.value, "42");
	T_CHECK(b.status == DB_ERROR);
	T_STREQ(b.sqlstate, "42601");
	T_CHECK(c.status == DB_ERROR);
	T_STREQ(c.sqlstate, "22P02");
	/* parameters are data, never SQL */
	params[0] = "'); DROP TABLE pool_test; --";
	memset(&a, 0, sizeof(a));
	q(p, "SELECT $1::text", 1, params, &a);
	T_CHECK(run_until(&a.done, 1, 3000) && a.status == DB_OK);
	T_STREQ(a.value, params[0]);
	/* the server-side statement_timeout is set from query_timeout_ms */
	memset(&a, 0, sizeof(a));
	q(p, "SHOW statement_timeout", 0, NULL, &a);
	T_CHECK(run_until(&a.done, 1, 3000));
	T_STREQ(a.value, "3s");
	db_pool_free(p);
}

static void count_rows(struct db_pool *p, const char *key, char *out)
{
	struct res r = { 0 };
	const char *params[1] = { key };

	q(p, "SELECT count(*) FROM pool_test WHERE k = $1", 1, params, &r);
	run_until(&r.done, 1, 3000);
	snprintf(out, 16, "%.15s", r.value);
}

static void tx_insert(struct db_pool *p, struct res *b, struct res *ins, const char *key)
{
	const char *params[1] = { key };

	in_api_call = true;
	db_tx_begin(p, on_begin, b);
	in_api_call = false;
	T_CHECK(run_until(&b->done, 1, 3000) && b->status == DB_OK && b->tx);
	in_api_call = true;
	db_tx_query(b->tx, "INSERT INTO pool_test (k, v) VALUES ($1, 1)", 1, params, on_result, ins);
	in_api_call = false;
	T_CHECK(run_until(&ins->done, 1, 3000) && ins->status == DB_OK);
}

static void test_transactions(void)
{
	struct db_pool *p = pool_up();
	struct res drop = { 0 }, mk = { 0 }, b = { 0 }, ins = { 0 }, end = { 0 }, bad = { 0 };
	char n[16];

	q(p, "DROP TABLE IF EXISTS pool_test", 0, NULL, &drop);
	T_CHECK(run_until(&drop.done, 1, 3000) && drop.status == DB_OK);
	q(p, "CREATE TABLE pool_test (k text PRIMARY KEY, v int)", 0, NULL, &mk);
	T_CHECK(run_until(&mk.done, 1, 3000) && mk.status == DB_OK);

	/* commit: visible afterwards */
	tx_insert(p, &b, &ins, "committed");
	db_tx_commit(b.tx, on_result, &end);
	T_CHECK(run_until(&end.done, 1, 3000) && end.status == DB_OK);
	count_rows(p, "committed", n);
	T_STREQ(n, "1");

	/* rollback: not visible */
	memset(&b, 0, sizeof(b)); memset(&ins, 0, sizeof(ins)); memset(&end, 0, sizeof(end));
	tx_insert(p, &b, &ins, "rolled-back");
	db_tx_rollback(b.tx, on_result, &end);
	T_CHECK(run_until(&end.done, 1, 3000) && end.status == DB_OK);
	count_rows(p, "rolled-back", n);
	T_STREQ(n, "0");

	/* an error inside: COMMIT reports it and nothing is kept */
	memset(&b, 0, sizeof(b)); memset(&ins, 0, sizeof(ins)); memset(&end, 0, sizeof(end));
	tx_insert(p, &b, &ins, "aborted");
	db_tx_query(b.tx, "INSERT INTO pool_test (k, v) VALUES ('committed', 2)", 0, NULL, on_result, &bad);
	T_CHECK(run_until(&bad.done, 1, 3000) && bad.status == DB_ERROR);
	T_STREQ(bad.sqlstate, "23505");
	db_tx_commit(b.tx, on_result, &end);
	T_CHECK(run_until(&end.done, 1, 3000) && end.status == DB_ERROR && strstr(end.error, "rolled back"));
	count_rows(p, "aborted", n);
	T_STREQ(n, "0");

	/* COMMIT issued while a statement runs waits for it, in order */
	memset(&b, 0, sizeof(b)); memset(&ins, 0, sizeof(ins)); memset(&end, 0, sizeof(end));
	in_api_call = true;
	db_tx_begin(p, on_begin, &b);
	in_api_call = false;
	T_CHECK(run_until(&b.done, 1, 3000) && b.tx);
	db_tx_query(b.tx, "INSERT INTO pool_test (k, v) SELECT 'queued-commit', 1 FROM pg_sleep(0.1)", 0, NULL,
		    on_result, &ins);
	db_tx_commit(b.tx, on_result, &end);
	T_CHECK(run_until(&end.done, 1, 3000) && end.status == DB_OK && ins.status == DB_OK);
	T_CHECK(ins.order < end.order);
	count_rows(p, "queued-commit", n);
	T_STREQ(n, "1");
	db_pool_free(p);
}

static void test_tx_connection_lost(void)
{
	struct db_pool *p = pool_up();
	struct res b = { 0 }, pid = { 0 }, kill = { 0 }, after = { 0 }, end = { 0 }, ok = { 0 };
	const char *params[1];
	char n[16];

	in_api_call = true;
	db_tx_begin(p, on_begin, &b);
	in_api_call = false;
	T_CHECK(run_until(&b.done, 1, 3000) && b.tx);
	db_tx_query(b.tx, "INSERT INTO pool_test (k, v) VALUES ('lost', 1) RETURNING pg_backend_pid()", 0, NULL,
		    on_result, &pid);
	T_CHECK(run_until(&pid.done, 1, 3000) && pid.status == DB_OK);
	params[0] = pid.value;
	q(p, "SELECT pg_terminate_backend($1::int)", 1, params, &kill);
	T_CHECK(run_until(&kill.done, 1, 3000) && kill.status == DB_OK);
	/* give the pool a moment to see the connection close */
	run_until(&after.done, 1, 200);
	in_api_call = true;
	db_tx_query(b.tx, "SELECT 1", 0, NULL, on_result, &after);
	in_api_call = false;
	T_CHECK(run_until(&after.done, 1, 3000) && after.status == DB_UNAVAILABLE);
	db_tx_commit(b.tx, on_result, &end);
	T_CHECK(run_until(&end.done, 1, 3000) && end.status == DB_UNAVAILABLE);
	count_rows(p, "lost", n);
	T_STREQ(n, "0");
	/* the pool replaced the connection */
	q(p, "SELECT 7", 0, NULL, &ok);
	T_CHECK(run_until(&ok.done, 1, 3000) && ok.status == DB_OK);
	db_pool_free(p);
}

static void qp(struct db_pool *p, const char *name, const char *sql, int n, const char *const *params, struct res *o)
{
	in_api_call = true;
	db_query_prepared(p, name, sql, n, params, on_result, o);
	in_api_call = false;
}

/* db_query_prepared: prepared once per connection, again after a reconnect */
static void test_prepared_across_reconnect(void)
{
	int size = cfg->database_pool_size;
	struct db_pool *p;
	struct res a = { 0 }, b = { 0 }, has = { 0 }, pid = { 0 }, kill = { 0 }, wait = { 0 }, c = { 0 },
		   has2 = { 0 }, pid2 = { 0 }, bad = { 0 }, after = { 0 };
	const char *params[1] = { "41" };
	char first_pid[128];
	static const char ADD[] = "SELECT $1::int + 1";
	static const char HAS[] = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'chamad_t_add' "
				  "AND statement = 'SELECT $1::int + 1'";

	cfg->database_pool_size = 1;	/* every statement on the same connection */
	p = pool_up();
	cfg->database_pool_size = size;
	qp(p, "t_add", ADD, 1, params, &a);
	params[0] = "1";
	qp(p, "t_add", ADD, 1, params, &b);	/* queued behind the first use */
	T_CHECK(run_until(&a.done, 1, 3000) && run_until(&b.done, 1, 3000));
	T_CHECK(a.status == DB_OK && b.status == DB_OK && a.done == 1 && b.done == 1);
	T_STREQ(a.value, "42");
	T_STREQ(b.value, "2");
	q(p, HAS, 0, NULL, &has);
	T_CHECK(run_until(&has.done, 1, 3000) && has.status == DB_OK);
	T_STREQ(has.value, "1");
	/* the server ends the connection: the new one has nothing prepared */
	qp(p, "t_pid", "SELECT pg_backend_pid()", 0, NULL, &pid);
	T_CHECK(run_until(&pid.done, 1, 3000) && pid.status == DB_OK);
	snprintf(first_pid, sizeof(first_pid), "%s", pid.value);
	params[0] = first_pid;
	{
		/* from a second pool: this one's only connection is the victim */
		struct db_pool *killer = pool_up();

		in_api_call = true;
		db_query(killer, "SELECT pg_terminate_backend($1::int)", 1, params, on_result, &kill);
		in_api_call = false;
		T_CHECK(run_until(&kill.done, 1, 3000) && kill.status == DB_OK);
		db_pool_free(killer);
	}
	/* the backend exits a moment after, and an idle connection's loss
	 * shows on its next uses: poll until a new connection answers */
	{
		struct db_stats st;
		uint64_t end = util_now_ms() + 5000;

		do {
			memset(&wait, 0, sizeof(wait));
			run_until(&wait.done, 1, 50);
			q(p, "SELECT 1", 0, NULL, &wait);
			run_until(&wait.done, 1, 3000);
			db_pool_stats(p, &st);
		} while (!(st.reconnects >= 1 && wait.status == DB_OK) && util_now_ms() < end);
		T_CHECK(st.reconnects >= 1 && wait.status == DB_OK);
	}
	params[0] = "9";
	qp(p, "t_add", ADD, 1, params, &c);
	T_CHECK(run_until(&c.done, 1, 3000) && c.status == DB_OK && c.done == 1);
	T_STREQ(c.value, "10");
	qp(p, "t_pid", "SELECT pg_backend_pid()", 0, NULL, &pid2);
	T_CHECK(run_until(&pid2.done, 1, 3000) && pid2.status == DB_OK);
	T_CHECK(strcmp(pid2.value, first_pid) != 0);
	q(p, HAS, 0, NULL, &has2);
	T_CHECK(run_until(&has2.done, 1, 3000));
	T_STREQ(has2.value, "1");
	/* a statement the server cannot parse: its error, once; the pool goes on */
	qp(p, "t_bad", "SELEC nonsense", 0, NULL, &bad);
	T_CHECK(run_until(&bad.done, 1, 3000) && bad.status == DB_ERROR && bad.done == 1);
	T_STREQ(bad.sqlstate, "42601");
	params[0] = "0";
	qp(p, "t_add", ADD, 1, params, &after);
	T_CHECK(run_until(&after.done, 1, 3000) && after.status == DB_OK);
	T_STREQ(after.value, "1");
	db_pool_free(p);
}

static void test_timeout_and_queue(void)
{
	int saved_size = cfg->database_pool_size, saved_q = cfg->database_queue_max;
	struct db_pool *p;
	struct res slow = { 0 }, a = { 0 }, b = { 0 }, c = { 0 }, ok = { 0 };
	struct db_stats st;

	cfg->database_query_timeout_ms = 400;
	p = pool_up();
	q(p, "SELECT pg_sleep(3)", 0, NULL, &slow);
	T_CHECK(run_until(&slow.done, 1, 2000) && slow.status == DB_TIMEOUT);
	q(p, "SELECT 1", 0, NULL, &ok);
	T_CHECK(run_until(&ok.done, 1, 3000) && ok.status == DB_OK);
	db_pool_stats(p, &st);
	T_CHECK(st.timeouts == 1);
	db_pool_free(p);
	cfg->database_query_timeout_ms = 3000;

	/* one connection, room for one waiter: FIFO, then busy at once */
	cfg->database_pool_size = 1;
	cfg->database_queue_max = 1;
	p = pool_up();
	q(p, "SELECT 'a' FROM pg_sleep(0.2)", 0, NULL, &a);
	q(p, "SELECT 'b'", 0, NULL, &b);
	q(p, "SELECT 'c'", 0, NULL, &c);
	db_pool_stats(p, &st);
	T_CHECK(st.busy == 1 && st.queued == 1);
	T_CHECK(run_until(&c.done, 1, 100) && c.status == DB_BUSY);
	T_CHECK(run_until(&b.done, 1, 3000) && a.status == DB_OK && b.status == DB_OK && a.order < b.order);
	db_pool_free(p);
	cfg->database_pool_size = saved_size;
	cfg->database_queue_max = saved_q;
}

/*
 * Admission by deadline: with one connection and the time a query keeps
 * it measured (s), a query behind a running one finishes after about 2s,
 * the next after 3s: with 3.5s to go two are admitted and the third is
 * refused at once (DB_BUSY, delivered from the loop); before anything was
 * measured (warm-up) a query is admitted, and one whose deadline passed
 * while it waited is not run.
 */
static void test_admission_by_deadline(void)
{
	int saved_size = cfg->database_pool_size;
	struct db_pool *p;
	struct res warm = { 0 }, hold = { 0 }, a = { 0 }, b = { 0 }, c = { 0 }, w1 = { 0 }, w2 = { 0 };
	struct db_stats st;
	uint64_t now;
	double s;

	cfg->database_pool_size = 1;
	p = pool_up();
	/* warm-up: nothing measured; a query with 1 ms to go still waits,
	 * and is dropped unrun when its turn comes too late */
	q(p, "SELECT 'w' FROM pg_sleep(0.1)", 0, NULL, &w1);
	in_api_call = true;
	db_query_by(p, util_now_ms() + 1, "SELECT 'never'", 0, NULL, on_result, &w2);
	in_api_call = false;
	db_pool_stats(p, &st);
	T_CHECK(st.queued == 1 && st.service_ms == 0);
	T_CHECK(run_until(&w2.done, 1, 3000) && w2.status == DB_BUSY && !*w2.value);
	T_CHECK(run_until(&w1.done, 1, 3000) && w1.status == DB_OK);

	q(p, "SELECT 'x' FROM pg_sleep(0.1)", 0, NULL, &warm);
	T_CHECK(run_until(&warm.done, 1, 3000) && warm.status == DB_OK);
	db_pool_stats(p, &st);
	s = st.service_ms;
	T_CHECK(s >= 99);
	q(p, "SELECT 'h' FROM pg_sleep(0.1)", 0, NULL, &hold);
	now = util_now_ms();
	in_api_call = true;
	db_query_by(p, now + (uint64_t)(3.5 * s), "SELECT 'a'", 0, NULL, on_result, &a);
	db_query_by(p, now + (uint64_t)(3.5 * s), "SELECT 'b'", 0, NULL, on_result, &b);
	db_query_by(p, now + (uint64_t)(3.5 * s), "SELECT 'c'", 0, NULL, on_result, &c);
	in_api_call = false;
	db_pool_stats(p, &st);
	T_CHECK(st.queued == 2 && st.refused == 2 && c.done == 0);
	T_CHECK(run_until(&c.done, 1, 1000) && c.status == DB_BUSY && strstr(c.error, "in time"));
	T_CHECK(run_until(&b.done, 1, 3000) && a.status == DB_OK && b.status == DB_OK);
	T_CHECK(!strcmp(a.value, "a") && !strcmp(b.value, "b"));
	T_CHECK(sync_callbacks == 0);
	db_pool_free(p);
	cfg->database_pool_size = saved_size;
}

static void test_many_concurrent(void)
{
	int saved_q = cfg->database_queue_max;
	struct db_pool *p;
	static struct res r[300];
	int done = 0, ok = 0, busy = 0;
	char v[300][12];

	cfg->database_queue_max = 256;	/* the memory cap (nothing measured yet: no deadline refusals) */
	p = pool_up();

	memset(r, 0, sizeof(r));
	for (int i = 0; i < 300; i++) {
		const char *params[1] = { v[i] };

		snprintf(v[i], sizeof(v[i]), "%d", i);
		q(p, "SELECT $1::int * 2", 1, params, &r[i]);
	}
	for (uint64_t end = util_now_ms() + 10000; util_now_ms() < end;) {
		done = 0;
		for (int i = 0; i < 300; i++)
			done += r[i].done;
		if (done == 300)
			break;
		run_until(&done, 1000000, 10);
	}
	/* 4 connections + 256 queue slots: exactly 40 are refused as busy,
	 * the rest all answer right, each exactly once */
	for (int i = 0; i < 300; i++) {
		ok += r[i].done == 1 && r[i].status == DB_OK && atoi(r[i].value) == 2 * i;
		busy += r[i].done == 1 && r[i].status == DB_BUSY;
	}
	T_CHECK(ok == 260);
	T_CHECK(busy == 40);
	db_pool_free(p);
	cfg->database_queue_max = saved_q;
}

static void test_unavailable_and_shutdown(void)
{
	char *saved = cfg->database_url;
	struct db_pool *p;
	struct res a = { 0 }, b = { 0 }, s = { 0 };
	uint64_t t0;

	/* nothing listens there: queries fail fast, they do not wait */
	cfg->database_url = "host=127.0.0.1 port=1 dbname=x connect_timeout=1";
	p = db_pool_new(base, cfg, (char[256]){ 0 }, 256);
	t0 = util_now_ms();
	q(p, "SELECT 1", 0, NULL, &a);
	T_CHECK(run_until(&a.done, 1, 2000) && a.status == DB_UNAVAILABLE);
	T_CHECK(util_now_ms() - t0 < 1000);
	db_pool_free(p);
	cfg->database_url = saved;

	/* freeing the pool answers queued and running queries exactly once */
	p = pool_up();
	q(p, "SELECT pg_sleep(1)", 0, NULL, &s);
	q(p, "SELECT 1", 0, NULL, &b);
	db_pool_free(p);
	T_CHECK(s.done == 1 && s.status == DB_CANCELLED);
	T_CHECK(b.done == 1);
}

int main(void)
{
	static const struct { const char *name; t_fn fn; } tests[] = {
		{ "query_and_errors", test_query_and_errors },
		{ "transactions", test_transactions },
		{ "tx_connection_lost", test_tx_connection_lost },
		{ "prepared_across_reconnect", test_prepared_across_reconnect },
		{ "timeout_and_queue", test_timeout_and_queue },
		{ "admission_by_deadline", test_admission_by_deadline },
		{ "many_concurrent", test_many_concurrent },
		{ "unavailable_and_shutdown", test_unavailable_and_shutdown },
	};
	const char *url = getenv("CHAMAD_DATABASE_URL");
	int passed = 0, failed = 0;

	if (!url) {
		fprintf(stderr, "CHAMAD_DATABASE_URL is not set\n");
		return 2;
	}
	log_setup(stderr, LOG_ERROR, LOG_FMT_TEXT);
	base = event_base_new();
	cfg = config_new();
	free(cfg->database_url);
	cfg->database_url = xstrdup(url);
	cfg->database_query_timeout_ms = 3000;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = t_failed_checks, checks = t_checks;

		tests[i].fn();
		if (t_failed_checks == before && t_checks > checks) {
			passed++;
			printf("ok   db/%s\n", tests[i].name);
		} else {
			failed++;
			printf("FAIL db/%s\n", tests[i].name);
		}
	}
	if (sync_callbacks) {
		failed++;
		printf("FAIL db/callbacks_never_synchronous (%d ran inside the call)\n", sync_callbacks);
	} else {
		passed++;
		printf("ok   db/callbacks_never_synchronous\n");
	}
	config_free(cfg);
	event_base_free(base);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
