/*
 * workpool: a few threads for work that must not run on the event loop
 * (argon2id PIN hashing).  The loop submits a job; a worker runs work(arg);
 * the loop gets done(arg, status) through a pipe it watches (Redis bio.c's
 * pattern), so only the loop thread ever touches events or app state.
 *
 * Contract: done is called exactly once per submit, on the loop, never from
 * inside workpool_submit: WORK_OK after work ran, WORK_BUSY when the queue
 * was full (work not run), WORK_CANCELLED for jobs still queued when the
 * pool is freed (work not run).
 */
#ifndef CHAMAD_WORKPOOL_H
#define CHAMAD_WORKPOOL_H

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
	uint64_t rejected;	/* refused as busy */
};

/* Starts threads now.  Returns NULL with err filled on failure. */
struct workpool *workpool_new(struct event_base *base, int threads, int queue_max, char *err, size_t errlen);
void workpool_submit(struct workpool *p, work_fn work, work_done_fn done, void *arg);
void workpool_stats(struct workpool *p, struct workpool_stats *out);
/* Cancels queued jobs, waits for running ones, delivers every done, joins
 * the threads.  Must not be called from a done callback. */
void workpool_free(struct workpool *p);

#endif
