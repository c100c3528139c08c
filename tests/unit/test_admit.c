/*
 * Admission by deadline: the estimator (admit.c) from tables, and the PIN
 * workpool admitting what fits a deadline and refusing the rest before any
 * work.  Logic only: the measured service time is read back from the pool
 * and every deadline is set in multiples of it, with half a service time
 * of slack at each boundary.
 */
#include "t.h"
#include "base/admit.h"
#include "base/util.h"
#include "base/workpool.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

void test_admit_estimator(void);
void test_workpool_admission(void);

void test_admit_estimator(void)
{
	static const struct {
		double samples[4];	/* observed service times, 0 = none */
		int ahead, running, servers;
		double expect_ms;	/* admit_expected_ms */
		uint64_t budget_ms;	/* deadline - now */
		bool admit;
	} cases[] = {
		/* warm-up: nothing measured, everything admitted */
		{ { 0 }, 500, 2, 2, 0, 1, true },
		/* a free server: just the service time */
		{ { 20 }, 0, 1, 2, 20, 20, true },
		{ { 20 }, 0, 1, 2, 20, 19, false },
		/* every server busy: wait for one to end, then the jobs ahead */
		{ { 20 }, 0, 2, 2, 30, 30, true },
		{ { 20 }, 9, 2, 2, 120, 119, false },
		{ { 20 }, 9, 2, 2, 120, 4000, true },
		/* 4 s at 20 ms on 2 servers: about 400 fit, not 64 */
		{ { 20 }, 396, 2, 2, 3990, 4000, true },
		{ { 20 }, 400, 2, 2, 4030, 4000, false },
		/* no server up: never */
		{ { 20 }, 0, 0, 0, -1, 100000, false },
		/* the EWMA: 10, then 20 weighs 0.2 -> 12 */
		{ { 10, 20 }, 0, 0, 1, 12, 12, true },
		{ { 10, 20, 20 }, 0, 0, 1, 13.6, 13, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct admit a;
		double e;

		admit_init(&a);
		for (int k = 0; k < 4 && cases[i].samples[k] > 0; k++)
			admit_observe(&a, cases[i].samples[k]);
		e = admit_expected_ms(&a, cases[i].ahead, cases[i].running, cases[i].servers);
		T_CHECK(e > cases[i].expect_ms - 0.001 && e < cases[i].expect_ms + 0.001);
		T_CHECK(admit_ok(&a, cases[i].ahead, cases[i].running, cases[i].servers, 1000,
				 1000 + cases[i].budget_ms) == cases[i].admit);
	}
	/* a deadline already past is never met, even at no cost */
	{
		struct admit a;

		admit_init(&a);
		admit_observe(&a, 0);
		T_CHECK(!admit_ok(&a, 0, 0, 1, 1000, 1000));
		T_CHECK(admit_ok(&a, 0, 0, 1, 1000, 1001));
	}
}

/* ---- the workpool ---- */

static atomic_int gate_open, gate_entered;
static atomic_int ran;

struct wjob {
	int kind;	/* 0 sleep, 1 gate, 2 nothing */
	int done;
	enum work_status st;
};

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void work(void *arg)
{
	struct wjob *j = arg;

	atomic_fetch_add(&ran, 1);
	if (j->kind == 0)
		sleep_ms(40);
	if (j->kind == 1) {
		atomic_store(&gate_entered, 1);
		while (!atomic_load(&gate_open))
			sleep_ms(1);
	}
}

static void done(void *arg, enum work_status st)
{
	struct wjob *j = arg;

	j->st = st;
	j->done++;
}

/* Runs the loop until every job in js has its answer (or 10 s pass). */
static bool run_until_done(struct event_base *base, struct wjob *js, int n)
{
	for (int t = 0; t < 10000; t++) {
		int left = 0;

		for (int i = 0; i < n; i++)
			left += !js[i].done;
		if (!left)
			return true;
		event_base_loop(base, EVLOOP_NONBLOCK);
		sleep_ms(1);
	}
	return false;
}

static void wait_gate_entered(void)
{
	for (int t = 0; t < 10000 && !atomic_load(&gate_entered); t++)
		sleep_ms(1);
}

void test_workpool_admission(void)
{
	struct event_base *base = event_base_new();
	char err[256];
	struct workpool *p = workpool_new(base, 1, 100, 60000, err, sizeof(err));
	struct workpool_stats st;
	struct wjob warm = { 0 }, gate = { 1 }, js[5] = { { 2 }, { 2 }, { 2 }, { 2 }, { 2 } };
	struct wjob gate2 = { 1 }, late = { 2 };
	uint64_t now, deadline;
	double s;
	int ok = 0, busy = 0;

	T_CHECK(p != NULL);
	if (!p)
		return;
	/* warm-up: nothing measured yet, so even a 1 ms deadline is admitted */
	workpool_stats(p, &st);
	T_CHECK(st.service_ms == 0);
	T_CHECK(workpool_admits(p, util_now_ms() + 1));
	workpool_submit(p, work, done, &warm, util_now_ms() + 60000);
	T_CHECK(run_until_done(base, &warm, 1) && warm.st == WORK_OK);
	workpool_stats(p, &st);
	s = st.service_ms;
	T_CHECK(s >= 39);

	/* the one thread held by a gate job: a job now waits one service time
	 * for it, then takes one: 2s for the first, 3s for the second, 4s for
	 * the third.  With 3.5s to go, two are admitted, the rest refused. */
	atomic_store(&gate_open, 0);
	atomic_store(&gate_entered, 0);
	workpool_submit(p, work, done, &gate, util_now_ms() + 60000);
	wait_gate_entered();
	now = util_now_ms();
	deadline = now + (uint64_t)(3.5 * s);
	T_CHECK(!workpool_admits(p, now + (uint64_t)(1.5 * s)));
	T_CHECK(workpool_admits(p, deadline));
	atomic_store(&ran, 0);
	for (int i = 0; i < 5; i++)
		workpool_submit(p, work, done, &js[i], deadline);
	workpool_stats(p, &st);
	T_CHECK(st.queued == 2 && st.rejected == 3);
	/* refusals are answered on the loop, never inside submit */
	T_CHECK(js[2].done == 0 && js[3].done == 0 && js[4].done == 0);
	/* without a deadline the default budget (60 s) applies: admitted */
	T_CHECK(workpool_admits(p, 0));
	atomic_store(&gate_open, 1);
	T_CHECK(run_until_done(base, js, 5) && run_until_done(base, &gate, 1));
	for (int i = 0; i < 5; i++) {
		ok += js[i].st == WORK_OK;
		busy += js[i].st == WORK_BUSY;
	}
	T_CHECK(ok == 2 && busy == 3);
	T_CHECK(js[0].st == WORK_OK && js[1].st == WORK_OK);
	/* the refused ones cost nothing: only the admitted two ran */
	T_CHECK(atomic_load(&ran) == 2);

	/* admitted, but the thread stays busy past its deadline: not run */
	atomic_store(&gate_open, 0);
	atomic_store(&gate_entered, 0);
	workpool_submit(p, work, done, &gate2, util_now_ms() + 60000);
	wait_gate_entered();
	workpool_stats(p, &st);
	s = st.service_ms;
	atomic_store(&ran, 0);
	workpool_submit(p, work, done, &late, util_now_ms() + (uint64_t)(2.5 * s) + 1);
	workpool_stats(p, &st);
	T_CHECK(st.queued == 1);
	sleep_ms((int)(3 * s) + 20);
	atomic_store(&gate_open, 1);
	T_CHECK(run_until_done(base, &late, 1) && run_until_done(base, &gate2, 1));
	T_CHECK(late.st == WORK_BUSY && atomic_load(&ran) == 0);
	workpool_stats(p, &st);
	T_CHECK(st.expired == 1);

	workpool_free(p);
	event_base_free(base);
}
