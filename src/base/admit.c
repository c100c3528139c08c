/*
 * admit: see admit.h.
 */
#include "base/admit.h"

#include <string.h>

void admit_init(struct admit *a)
{
	memset(a, 0, sizeof(*a));
}

void admit_observe(struct admit *a, double ms)
{
	if (ms < 0)
		ms = 0;
	if (a->samples++ == 0)
		a->service_ms = ms;
	else
		a->service_ms += ADMIT_EWMA_ALPHA * (ms - a->service_ms);
}

double admit_expected_ms(const struct admit *a, int ahead, int running, int servers)
{
	double wait = 0;

	if (a->samples == 0)
		return 0;
	if (servers <= 0)
		return -1;
	/* a free server takes it at once; else it waits for the jobs ahead
	 * of it and for one running job to end, spread over the servers */
	if (ahead > 0 || running >= servers)
		wait = (double)(ahead + 1) * a->service_ms / servers;
	return wait + a->service_ms;
}

bool admit_ok(const struct admit *a, int ahead, int running, int servers, uint64_t now_ms, uint64_t deadline_ms)
{
	double e;

	if (a->samples == 0)
		return true;
	e = admit_expected_ms(a, ahead, running, servers);
	if (e < 0 || deadline_ms <= now_ms)
		return false;
	return e <= (double)(deadline_ms - now_ms);
}
