/*
 * jobs: scheduled work inside chamad (contribution reminders and arrears
 * notices, approvals' expiry, loan penalties, defaults and reminders).
 * Every daemon runs the timer; the work itself takes a
 * PostgreSQL advisory lock and queues messages under idempotency keys, so
 * several daemons never do one run twice.
 */
#ifndef CHAMAD_JOBS_H
#define CHAMAD_JOBS_H

struct app;
struct jobs;

struct jobs *jobs_new(struct app *app);
void jobs_free(struct jobs *j);

#endif
