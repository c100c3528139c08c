/*
 * clock: see clock.h.
 */
#include "base/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static char fixed_now[CLOCK_TEXT_MAX];

void clock_set(const char *fixed)
{
	if (!fixed || !*fixed || strlen(fixed) >= sizeof(fixed_now)) {
		fixed_now[0] = '\0';
		return;
	}
	memcpy(fixed_now, fixed, strlen(fixed) + 1);
}

const char *clock_fixed(void)
{
	return fixed_now[0] ? fixed_now : NULL;
}

const char *clock_p_at(char buf[CLOCK_TEXT_MAX])
{
	struct timespec ts;
	struct tm tm;

	if (fixed_now[0]) {
		memcpy(buf, fixed_now, strlen(fixed_now) + 1);
		return buf;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, CLOCK_TEXT_MAX, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + strlen(buf), CLOCK_TEXT_MAX - strlen(buf), ".%06d+00", (int)(ts.tv_nsec / 1000) % 1000000);
	return buf;
}
