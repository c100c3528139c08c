/*
 * app: the daemon's one top-level object, built in main.c in a fixed order
 * and handed to HTTP handlers through http_ctx_app().
 */
#ifndef CHAMAD_APP_H
#define CHAMAD_APP_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct event;
struct config;
struct db_pool;
struct redis_client;
struct httpd;
struct menu_set;
struct auth;
struct sms_sender;
struct mpesa;
struct jobs;
struct loginlog;

struct app {
	struct event_base *base;
	struct config *cfg;		/* owned; reloadable keys change in place */
	const char *config_path;	/* NULL when running on defaults */
	bool config_required;
	struct db_pool *db;		/* interactive: USSD hops, SMS commands */
	struct db_pool *dbbg;		/* background: sender, M-Pesa, callbacks, jobs */
	struct redis_client *redis;
	struct httpd *httpd;
	struct menu_set *menus;		/* reference; replaced on SIGHUP if the new set validates */
	struct auth *auth;		/* PIN workers */
	struct sms_sender *sms;		/* outbox sender, or NULL for [sms] provider = none */
	struct mpesa *mpesa;		/* Daraja client, or NULL when M-Pesa is not configured */
	/* A payment request row was just written (due [mpesa] push_delay_ms
	 * from now): wakes this daemon's M-Pesa push job then.  A hook set by
	 * main.c, because ussd never includes mpesa; losing the call (a
	 * crash) loses nothing, since the row is the push and any daemon's
	 * push job finds it (mpesa.c says how). */
	void (*mpesa_requested)(struct app *app);
	struct jobs *jobs;		/* scheduled reminders */
	struct loginlog *logins;	/* batched log-in audit rows */
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *drain_timer;
	uint64_t drain_started_ms;
	bool draining;
	uint64_t started_ms;
};

/* Something on this daemon queued outbox rows: wakes its sender (sms.c). */
void app_outbox_queued(struct app *app);

#endif
