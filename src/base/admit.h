/*
 * admit: admission by deadline for a queue served by a few servers (the
 * PIN workers, a database pool's connections).
 *
 * The queue measures how long one job keeps a server busy (an EWMA of the
 * service times it observed) and admits a new job only when it can still
 * finish by the deadline its caller gave: with `ahead` jobs waiting before
 * it and every server busy, it starts after about (ahead + 1) x service /
 * servers and ends one service time later.  Work that cannot be answered in
 * time is refused at once, before anything is spent on it.  Until the first
 * measurement (warm-up) everything is admitted; count limits remain only as
 * memory caps, checked by the queue itself.
 *
 * Pure arithmetic, no locking: the owner serialises calls (workpool under
 * its mutex, db on the loop).
 */
#ifndef CHAMAD_ADMIT_H
#define CHAMAD_ADMIT_H

#include <stdbool.h>
#include <stdint.h>

struct admit {
	double service_ms;	/* EWMA of one job's service time; 0 until measured */
	uint64_t samples;
};

/* Weight of the newest sample in the average. */
#define ADMIT_EWMA_ALPHA 0.2

void admit_init(struct admit *a);
/* Records that one job kept a server busy for ms. */
void admit_observe(struct admit *a, double ms);
/*
 * Milliseconds until a job submitted now would be finished, with `ahead`
 * jobs waiting before it, `running` jobs on servers and `servers` servers
 * (0 when none is up: the answer is then "never", a negative number).
 * 0 during warm-up.
 */
double admit_expected_ms(const struct admit *a, int ahead, int running, int servers);
/* True when that job can be finished by deadline_ms (monotonic ms, see
 * util_now_ms) seen at now_ms.  Always true during warm-up. */
bool admit_ok(const struct admit *a, int ahead, int running, int servers, uint64_t now_ms, uint64_t deadline_ms);

#endif
