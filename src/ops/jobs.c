/*
 * jobs: the scheduled work (see jobs.h): one timer, and at each tick one
 * statement per job, each job never run twice at once in one daemon (a
 * run still in flight at the next tick is let be).  Across daemons each
 * statement's own advisory lock and keys keep the work from being done
 * twice.
 *   reminders      send_reminders() (schema/60_notify.sql): contribution
 *                  due dates and arrears (sms_due_reminder, sms_arrears)
 *   approvals      approvals_expire() (schema/85_approvals.sql): requests
 *                  undecided after [approvals] expire_hours, veto windows
 *                  that closed
 *   loan penalties, loan defaults, loan reminders
 *                  schema/75_loan_penalties.sql (src/dom/loan_jobs.h)
 *   loan guarantors loan_guarantors_expire() (schema/72_loan_guarantors.sql):
 *                  guarantors' requests left unanswered
 * Each queues its messages through notify(); the sender renders them in
 * each member's language.
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
#include "dom/loan_jobs.h"
#include "dom/notify.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

enum job_kind {
	JOB_REMINDERS,
	JOB_APPROVALS,
	JOB_LOAN_PENALTIES,
	JOB_LOAN_DEFAULTS,
	JOB_LOAN_REMINDERS,
	JOB_LOAN_GUARANTORS,
	JOB_COUNT
};

static const struct job_def {
	const char *name;
	const struct db_stmt *stmt;
	const char *counted;	/* what its count is, for the log */
} job_defs[JOB_COUNT] = {
	[JOB_REMINDERS] = { "reminders", &dom_send_reminders, "message(s) queued" },
	[JOB_APPROVALS] = { "approvals", &approvals_expire, "request(s) expired or carried out" },
	[JOB_LOAN_PENALTIES] = { "loan penalties", &loan_jobs_penalties, "penalty(ies) levied" },
	[JOB_LOAN_DEFAULTS] = { "loan defaults", &loan_jobs_defaults, "loan(s) defaulted" },
	[JOB_LOAN_REMINDERS] = { "loan reminders", &loan_jobs_reminders, "message(s) queued" },
	[JOB_LOAN_GUARANTORS] = { "loan guarantors", &loan_guar_expire, "request(s) expired" },
};

struct jobs;

struct job_slot {
	struct jobs *j;
	enum job_kind kind;
	bool running;
};

struct jobs {
	struct app *app;
	struct event *ev;
	struct job_slot slot[JOB_COUNT];
	bool orphaned;	/* jobs_free came while a run was in flight: the last callback frees */
};

static bool any_running(const struct jobs *j)
{
	for (int i = 0; i < JOB_COUNT; i++)
		if (j->slot[i].running)
			return true;
	return false;
}

static void ran(const struct db_result *r, void *arg)
{
	struct job_slot *s = arg;
	struct jobs *j = s->j;
	const struct job_def *d = &job_defs[s->kind];

	s->running = false;
	if (j->orphaned) {	/* the daemon is going: its pool cancelled the run */
		if (!any_running(j))
			free(j);
		return;
	}
	if (r->status != DB_OK)
		log_warn("jobs: %s: %s", d->name, r->error);
	else if (atoi(PQgetvalue(r->res, 0, 0)) > 0) {
		log_info("jobs: %s: %s %s", d->name, PQgetvalue(r->res, 0, 0), d->counted);
		app_outbox_queued(j->app);
	}
}

static void run(struct jobs *j, enum job_kind kind)
{
	struct app *app = j->app;
	struct job_slot *s = &j->slot[kind];
	char num[16], at[CLOCK_TEXT_MAX];
	const char *p[3] = { clock_p_at(at), NULL, NULL };

	if (s->running)
		return;
	switch (kind) {
	case JOB_REMINDERS:
		snprintf(num, sizeof(num), "%d", app->cfg->jobs_reminder_lead_days);
		p[1] = app->cfg->ussd_timezone;
		p[2] = num;
		break;
	case JOB_APPROVALS:
		snprintf(num, sizeof(num), "%d", app->cfg->approvals_expire_hours);
		p[1] = num;
		break;
	case JOB_LOAN_GUARANTORS:	/* the clock only */
		break;
	default:	/* the loan jobs: the chamas' day, the paybill their notices name */
		p[1] = app->cfg->ussd_timezone;
		p[2] = app->cfg->mpesa_shortcode ? app->cfg->mpesa_shortcode : "";
		break;
	}
	s->running = true;
	db_run(app->dbbg, job_defs[kind].stmt, p, ran, s);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct jobs *j = arg;

	(void)fd;
	(void)what;
	for (int k = 0; k < JOB_COUNT; k++)
		run(j, (enum job_kind)k);
}

struct jobs *jobs_new(struct app *app)
{
	struct jobs *j = xcalloc(1, sizeof(*j));
	struct timeval every = { app->cfg->jobs_every_s, 0 };

	j->app = app;
	for (int k = 0; k < JOB_COUNT; k++) {
		j->slot[k].j = j;
		j->slot[k].kind = (enum job_kind)k;
	}
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
	if (any_running(j)) {
		j->orphaned = true;
		return;
	}
	free(j);
}
