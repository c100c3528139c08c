/*
 * jobs: the reminder job (see jobs.h and send_reminders() in
 * schema/60_notify.sql): a timer, one statement per run.  The statement
 * queues its messages by key (sms_due_reminder, sms_arrears) through
 * notify(); the sender renders them in each member's language.  The same
 * timer runs the approvals' expiry (approvals_expire() in
 * schema/85_approvals.sql: requests undecided after [approvals]
 * expire_hours, veto windows that closed), also one statement, and the
 * guarantors' requests left unanswered (loan_guarantors_expire() in
 * schema/72_loan_guarantors.sql), one more.
 */
#include "ops/jobs.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "net/db.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/approval.h"
#include "dom/loan_guar.h"
#include "dom/notify.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

struct jobs {
	struct app *app;
	struct event *ev;
	bool running;
	bool approvals_running;
	bool guar_running;
	bool orphaned;	/* jobs_free came while a run was in flight: the last callback frees */
};

static void ran(const struct db_result *r, void *arg)
{
	struct jobs *j = arg;

	j->running = false;
	if (j->orphaned) {	/* the daemon is going: its pool cancelled the run */
		if (!j->approvals_running && !j->guar_running)
			free(j);
		return;
	}
	if (r->status != DB_OK)
		log_warn("jobs: reminders: %s", r->error);
	else if (atoi(PQgetvalue(r->res, 0, 0)) > 0) {
		log_info("jobs: reminders: %s message(s) queued", PQgetvalue(r->res, 0, 0));
		app_outbox_queued(j->app);
	}
}

static void approvals_ran(const struct db_result *r, void *arg)
{
	struct jobs *j = arg;

	j->approvals_running = false;
	if (j->orphaned) {
		if (!j->running && !j->guar_running)
			free(j);
		return;
	}
	if (r->status != DB_OK)
		log_warn("jobs: approvals: %s", r->error);
	else if (atoi(PQgetvalue(r->res, 0, 0)) > 0) {
		log_info("jobs: approvals: %s request(s) expired or carried out", PQgetvalue(r->res, 0, 0));
		app_outbox_queued(j->app);
	}
}

static void approvals_tick(struct jobs *j)
{
	struct app *app = j->app;
	char hours[16], at[CLOCK_TEXT_MAX];
	const char *p[2] = { clock_p_at(at), hours };

	if (j->approvals_running)
		return;
	j->approvals_running = true;
	snprintf(hours, sizeof(hours), "%d", app->cfg->approvals_expire_hours);
	db_run(app->dbbg, &approvals_expire, p, approvals_ran, j);
}

static void guar_ran(const struct db_result *r, void *arg)
{
	struct jobs *j = arg;

	j->guar_running = false;
	if (j->orphaned) {
		if (!j->running && !j->approvals_running)
			free(j);
		return;
	}
	if (r->status != DB_OK)
		log_warn("jobs: loan guarantors: %s", r->error);
	else if (atoi(PQgetvalue(r->res, 0, 0)) > 0) {
		log_info("jobs: loan guarantors: %s request(s) expired", PQgetvalue(r->res, 0, 0));
		app_outbox_queued(j->app);
	}
}

static void guar_tick(struct jobs *j)
{
	char at[CLOCK_TEXT_MAX];
	const char *p[1] = { clock_p_at(at) };

	if (j->guar_running)
		return;
	j->guar_running = true;
	db_run(j->app->dbbg, &loan_guar_expire, p, guar_ran, j);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct jobs *j = arg;
	struct app *app = j->app;
	char lead[16], at[CLOCK_TEXT_MAX];
	const char *p[3] = { clock_p_at(at), app->cfg->ussd_timezone, lead };

	(void)fd;
	(void)what;
	approvals_tick(j);
	guar_tick(j);
	if (j->running)
		return;
	j->running = true;
	snprintf(lead, sizeof(lead), "%d", app->cfg->jobs_reminder_lead_days);
	db_run(app->dbbg, &dom_send_reminders, p, ran, j);
}

struct jobs *jobs_new(struct app *app)
{
	struct jobs *j = xcalloc(1, sizeof(*j));
	struct timeval every = { app->cfg->jobs_every_s, 0 };

	j->app = app;
	j->ev = event_new(app->base, -1, EV_PERSIST, tick, j);
	event_add(j->ev, &every);
	return j;
}

void jobs_free(struct jobs *j)
{
	if (!j)
		return;
	event_free(j->ev);
	/* a run still in flight answers later (the pool cancels it when it is
	 * freed): its callback owns the struct then */
	if (j->running || j->approvals_running || j->guar_running) {
		j->orphaned = true;
		return;
	}
	free(j);
}
