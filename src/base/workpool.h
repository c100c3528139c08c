/*
 * workpool: a few threads for work that must not run on the event loop
 * (argon2id PIN hashing).  The loop submits a job; a worker runs work(arg);
 * the loop gets done(arg, status) through a pipe it watches (Redis bio.c's
 * pattern), so only the loop thread ever touches events or app state.
 *
 * Admission by deadline (admit.h): every job comes with the monotonic
 * millisecond (util_now_ms) by which its answer is still of use.  The pool
 * measures how long a job keeps a thread busy and refuses, at once and
 * before any work, a job that cannot finish by then behind the jobs already
 * queued; a queued job whose deadline has passed when a thread picks it up
 * is not run either.  queue_max is only a memory cap.
 *
 * Contract: done is called exactly once per submit, on the loop, never from
 * inside workpool_submit: WORK_OK after work ran, WORK_BUSY when it could
 * not be done in time or the queue was at its cap (work not run),
 * WORK_CANCELLED for jobs still queued when the pool is freed (work not run).
 */
#ifndef CHAMAD_WORKPOOL_H
#define CHAMAD_WORKPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct workpool;

enum work_status { WORK_OK, WORK_BUSY, WORK_CANCELLED };

typedef void (*work_fn)(void *arg);
typedef void (*work_done_fn)(void *arg, enum work_status st);

struct workpool_stats {
	int threads;
	int queued;		/* waiting for a thread */
	int running;
	uint64_t done;		/* jobs run */
	uint64_t rejected;	/* refused as busy (late or at the cap) */
	uint64_t expired;	/* of those: admitted, but past the deadline when a thread was free */
	double service_ms;	/* measured time one job keeps a thread busy (EWMA), 0 until measured */
};

/* Starts threads now.  Returns NULL with err filled on failure.  A job
 * submitted without a deadline (0) gets now + default_budget_ms. */
struct workpool *workpool_new(struct event_base *base, int threads, int queue_max, int default_budget_ms, char *err,
			      size_t errlen);
void workpool_set_budget(struct workpool *p, int default_budget_ms);
void workpool_submit(struct workpool *p, work_fn work, work_done_fn done, void *arg, uint64_t deadline_ms);
/* Would a job with this deadline (0: the default) be admitted now?  For a
 * caller that wants to refuse before doing its own work first. */
bool workpool_admits(struct workpool *p, uint64_t deadline_ms);
void workpool_stats(struct workpool *p, struct workpool_stats *out);
/* Cancels queued jobs, waits for running ones, delivers every done, joins
 * the threads.  Must not be called from a done callback. */
void workpool_free(struct workpool *p);

#endif
