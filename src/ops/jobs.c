/*
 * jobs: the reminder job (see jobs.h and send_reminders() in migration
 * 013): a timer, one statement per run.
 */
#include "ops/jobs.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "net/db.h"
#include "base/log.h"
#include "base/menu.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

struct jobs {
	struct app *app;
	struct event *ev;
	bool running;
};

static void ran(const struct db_result *r, void *arg)
{
	struct jobs *j = arg;

	j->running = false;
	if (r->status != DB_OK)
		log_warn("jobs: reminders: %s", r->error);
	else if (atoi(PQgetvalue(r->res, 0, 0)) > 0) {
		log_info("jobs: reminders: %s message(s) queued", PQgetvalue(r->res, 0, 0));
		app_outbox_queued(j->app);
	}
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct jobs *j = arg;
	struct app *app = j->app;
	char lead[16];
	/* the templates keep their {chama}, {amount} and {date}: the
	 * statement fills them per member */
	const char *p[7] = { clock_fixed(), app->cfg->ussd_timezone, lead,
			     menu_string(app->menus, "sms_due_reminder", LANG_EN),
			     menu_string(app->menus, "sms_due_reminder", LANG_SW),
			     menu_string(app->menus, "sms_arrears", LANG_EN), menu_string(app->menus, "sms_arrears", LANG_SW) };

	(void)fd;
	(void)what;
	if (j->running || !p[3] || !p[5])
		return;
	j->running = true;
	snprintf(lead, sizeof(lead), "%d", app->cfg->jobs_reminder_lead_days);
	db_query(app->dbbg,
		 "SELECT send_reminders(coalesce($1::timestamptz, now()), $2, $3::int, $4, $5, $6, $7)", 7, p, ran, j);
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
	free(j);
}
