/*
 * clock: the one clock of domain time.
 *
 * Every posting function and every dated read takes its time from here
 * (the SQL parameter p_at), never from now() inside PostgreSQL, so a test
 * or a drill can set "now" ([jobs] now, reloadable) and play a whole loan
 * term in seconds.  Timeouts, leases and deadlines are not domain time:
 * they stay on the monotonic clock (util_now_ms).
 */
#ifndef CHAMAD_CLOCK_H
#define CHAMAD_CLOCK_H

#include <stdint.h>

/* Room for any value clock_p_at writes. */
#define CLOCK_TEXT_MAX 48

/* Sets the fixed "now" (a timestamp PostgreSQL reads, e.g.
 * "2027-03-01 09:00:00+03"), or the real clock for NULL or "".  Called at
 * start and on every reload, on the loop thread. */
void clock_set(const char *fixed);
/* The fixed "now", or NULL while the real clock runs. */
const char *clock_fixed(void);
/* "now" as timestamptz text for a p_at parameter: the fixed value, else
 * the real time in UTC to the microsecond.  Returns buf. */
const char *clock_p_at(char buf[CLOCK_TEXT_MAX]);

#endif
