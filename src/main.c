/*
 * main: command line, the fixed start-up order, signals, the loop, and the
 * drain on SIGTERM/SIGINT.
 *
 * Start-up order (each step may use the ones before it):
 *   config -> logging -> libsodium -> event_base -> PostgreSQL pool ->
 *   Redis client -> HTTP front -> signals -> "process up" line -> loop.
 * Host names in [database] url and [redis] url are resolved here, before
 * the loop, because libpq and hiredis would otherwise resolve them with
 * blocking calls on it.
 */
#include "app.h"
#include "ussd/act.h"
#include "base/clock.h"
#include "dom/auth.h"
#include "base/config.h"
#include "net/db.h"
#include "net/httpd.h"
#include "base/log.h"
#include "dom/loginlog.h"
#include "ops/loan_schedule.h"
#include "ops/migrate.h"
#include "ops/money_check.h"
#include "ops/outbox.h"
#include "ops/reconcile.h"
#include "net/redis.h"
#include "base/menu.h"
#include "ops/jobs.h"
#include "mpesa/mpesa.h"
#include "sms/sms.h"
#include "sms/sms_cmd.h"
#include "sms/sms_http.h"
#include "ops/status.h"
#include "ussd/ussd.h"
#include "base/util.h"
#include "ops/verify.h"

#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#define CHAMAD_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/chamad/chamad.conf"

static struct http_route routes[32];
static size_t nroutes;

/* Adds a module's routes table (NULL path ends it). */
static void add_routes(const struct http_route *table)
{
	for (; table->path; table++) {
		xassert(nroutes < ARRAY_LEN(routes));
		routes[nroutes++] = *table;
	}
}

/* Every module's routes, one line each.  M-Pesa's paths carry the
 * configured callback secret, so its table is made from the configuration. */
static size_t build_routes(const struct config *cfg)
{
	nroutes = 0;
	add_routes(status_routes);
	add_routes(ussd_routes);
	nroutes += mpesa_routes(cfg, routes + nroutes, ARRAY_LEN(routes) - nroutes);
	add_routes(sms_routes);
	return nroutes;
}

/* The menus, checked by every module that reads strings from them: the
 * engine's screens and handlers (ussd_menus_load), the SMS commands' texts. */
static struct menu_set *menus_load(const struct config *cfg, char *err, size_t errlen)
{
	struct menu_set *m = ussd_menus_load(cfg, err, errlen);

	if (m && sms_commands_check(m, err, errlen) < 0) {
		menu_set_unref(m);
		return NULL;
	}
	return m;
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: chamad [options] [command]\n"
		"\n"
		"ChamaSmart's USSD/SMS daemon for chamas (savings groups).\n"
		"\n"
		"Commands:\n"
		"  run             serve HTTP on [http] listen (the default)\n"
		"  migrate         apply new migrations/NNN_name.sql to [database] url, then every\n"
		"                  schema/NN_name.sql that changed, then exit\n"
		"  verify-ledger   check the books: entries balance, account balances equal their\n"
		"                  lines, every chama's audit hash chain holds, domain tables agree;\n"
		"                  exit 0/1\n"
		"  hash-pin        read a PIN on stdin, print its hash as chamad stores it\n"
		"                  (with [auth] pin_pepper and the cost parameters), then exit\n"
		"  outbox-text ID...  print what each outbox row says (as sent, or as it would\n"
		"                  be sent now from the menus), one JSON line each; exit 0/1\n"
		"  reconcile [--from YYYY-MM-DD [--to YYYY-MM-DD]] [--wait]\n"
		"                  ask for a reconciliation of those days (default: yesterday):\n"
		"                  M-Pesa's statement and Account Balance against the books.  A\n"
		"                  running chamad with [mpesa] configured does it; --wait waits\n"
		"                  for it and prints each difference; exit 0 none, 1 some, 2 failed\n"
		"  money-to-check [--json]  list the M-Pesa payments not credited (unverified,\n"
		"                  contradicted, flagged) with ids, amounts, receipts, age;\n"
		"                  exit 0 when there are none, 1 when there are\n"
		"  loan-schedule --principal KES --rate-bp N --per month|year|term\n"
		"                  --method flat|reducing|equal_principal --term N\n"
		"                  --frequency weekly|biweekly|monthly [--grace N\n"
		"                  --grace-kind principal|interest_free] [--start YYYY-MM-DD]\n"
		"                  print a loan's schedule as CSV, to the cent (needs no\n"
		"                  configuration; loan-schedule --help says more); exit 0/2\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE   configuration file (default: $CHAMAD_CONFIG, else\n"
		"                      " DEFAULT_CONFIG " if it exists, else built-in defaults)\n"
		"      --check-config  validate the configuration, print the problem, exit 0 or 1\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"\n"
		"Every key can be overridden by the environment variable CHAMAD_<SECTION>_<KEY>.\n"
		"Keys:\n");
	config_print_keys(out);
	fprintf(out,
		"\n"
		"Signals: SIGTERM/SIGINT stop accepting, let in-flight requests finish within\n"
		"[daemon] shutdown_timeout_ms, close the pools and exit 0; SIGHUP re-reads the\n"
		"configuration and applies the keys marked (SIGHUP reloads).\n"
		"Endpoints: GET /healthz (200 or 503 naming what is down), GET /metrics (Prometheus),\n"
		"POST /ussd/africastalking, /ussd/africastalking/events, /ussd/hubtel (aggregators).\n"
		"SIGHUP also re-reads [ussd] menus_dir; menus that do not validate are refused\n"
		"and the running ones kept.  --check-config validates the menus too.\n");
}

static void apply_logging(const struct config *cfg)
{
	enum log_level lvl = LOG_INFO;
	enum log_format fmt = LOG_FMT_TEXT;

	log_level_parse(cfg->log_level, &lvl);
	log_format_parse(cfg->log_format, &fmt);
	log_setup(stderr, lvl, fmt);
}

/* Frees what sits between the HTTP front and the loop, users before what
 * they use: jobs, M-Pesa and the SMS sender (they use both pools and the
 * PIN workers), the PIN workers (their completions use both pools), then
 * the pools.  Their callbacks (cancelled) still answer any request that
 * was waiting.  Safe on a half-built app. */
static void app_free_services(struct app *app)
{
	jobs_free(app->jobs);
	app->jobs = NULL;
	mpesa_free(app->mpesa);
	app->mpesa = NULL;
	sms_sender_free(app->sms);
	app->sms = NULL;
	auth_free(app->auth);
	app->auth = NULL;
	db_pool_free(app->db);
	app->db = NULL;
	db_pool_free(app->dbbg);
	app->dbbg = NULL;
	loginlog_free(app->logins);	/* after the pool: its cancelled callback reaches the log */
	app->logins = NULL;
	redis_free(app->redis);
	app->redis = NULL;
}

static void app_stop(struct app *app)
{
	/* services first, while the HTTP server is alive to carry answers */
	app_free_services(app);
	httpd_free(app->httpd);
	app->httpd = NULL;
	event_base_loopbreak(app->base);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	/* requests in flight, and outcomes (SMS sent, pushes answered, login
	 * audit rows) that PostgreSQL does not have yet */
	int left = httpd_inflight(app->httpd) + sms_sender_unrecorded(app->sms) + mpesa_unrecorded(app->mpesa) +
		   (loginlog_drain(app->logins) > 0);
	uint64_t waited = util_now_ms() - app->drain_started_ms;

	if (left > 0 && waited < (uint64_t)app->cfg->daemon_shutdown_timeout_ms)
		return;
	if (left > 0)
		log_warn("shutdown: %d request(s) or outcome(s) still in flight after %llu ms; cancelling them", left,
			 (unsigned long long)waited);
	else
		log_info("shutdown: drained in %llu ms", (unsigned long long)waited);
	event_del(app->drain_timer);
	app_stop(app);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	struct app *app = arg;
	struct timeval tick = { 0, 20000 };

	if (app->draining) {
		log_warn("shutdown: second signal, stopping now");
		event_del(app->drain_timer);
		app_stop(app);
		return;
	}
	app->draining = true;
	app->drain_started_ms = util_now_ms();
	log_info("shutdown: signal %d, no longer accepting; %d request(s) in flight", (int)sig,
		 httpd_inflight(app->httpd));
	httpd_stop_accepting(app->httpd);
	sms_sender_quiesce(app->sms);
	mpesa_quiesce(app->mpesa);
	app->drain_timer = event_new(app->base, -1, EV_PERSIST, drain_cb, app);
	event_add(app->drain_timer, &tick);
	drain_cb(-1, 0, app);
}

/* Hops in flight keep the set they started with (reference counted). */
static void reload_menus(struct app *app)
{
	char err[512];
	struct menu_set *m = menus_load(app->cfg, err, sizeof(err));

	if (!m) {
		log_error("reload: menus refused, keeping the running ones: %s", err);
		return;
	}
	menu_set_unref(app->menus);
	app->menus = m;
	log_info("reload: %zu menu screens loaded from %s", menu_screen_count(m), app->cfg->ussd_menus_dir);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct app *app = arg;
	struct config *next = config_new();
	char err[512];

	if (config_load(next, app->config_path, app->config_required, err, sizeof(err)) < 0) {
		log_error("reload refused, keeping the running configuration: %s", err);
		config_free(next);
		return;
	}
	log_info("reload: %d key(s) applied", config_apply_reload(app->cfg, next));
	config_free(next);
	apply_logging(app->cfg);
	clock_set(app->cfg->jobs_now);
	httpd_set_config(app->httpd, app->cfg);
	auth_set_config(app->auth, app->cfg);
	reload_menus(app);
}

static int run_daemon(struct app *app)
{
	char err[512];

	/* Each PIN check takes [auth] pin_memlimit_kib (19 MiB by default).
	 * Left to glibc, that block is mmapped or trimmed away after every
	 * check and its pages faulted in again for the next: keep such blocks
	 * in the workers' arenas instead (sizes up to 32 MiB, glibc's cap). */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);

	signal(SIGPIPE, SIG_IGN);
	app->started_ms = util_now_ms();
	app->base = event_base_new();
	if (!app->base) {
		log_error("cannot create the event loop");
		return 1;
	}
	app->db = db_pool_new(app->base, app->cfg, err, sizeof(err));
	if (!app->db)
		goto fail;
	/* background work has connections of its own: interactive hops cannot
	 * fill its queue, and a burst of it cannot starve the hops */
	app->dbbg = db_pool_new_sized(app->base, app->cfg, "dbbg", app->cfg->database_background_pool_size,
				      app->cfg->database_background_queue_max, err, sizeof(err));
	if (!app->dbbg)
		goto fail;
	app->logins = loginlog_new(app->base, app->dbbg);
	app->redis = redis_new(app->base, app->cfg, err, sizeof(err));
	if (!app->redis)
		goto fail;
	app->menus = menus_load(app->cfg, err, sizeof(err));
	if (!app->menus)
		goto fail;
	app->auth = auth_new(app->base, app->cfg, err, sizeof(err));
	if (!app->auth)
		goto fail;
	app->mpesa = mpesa_new(app);
	app->mpesa_requested = mpesa_push_soon;
	app->jobs = jobs_new(app);
	app->sms = sms_sender_new(app, err, sizeof(err));
	if (!app->sms && strcmp(app->cfg->sms_provider, "none"))
		goto fail;
	if (!*app->cfg->auth_pin_pepper)
		log_warn("[auth] pin_pepper is empty: set it in production (PIN hashes then need the configuration too)");
	app->httpd = httpd_new(app->base, app->cfg, routes, build_routes(app->cfg), app, err, sizeof(err));
	if (!app->httpd)
		goto fail;
	app->sig_term = evsignal_new(app->base, SIGTERM, on_term, app);
	app->sig_int = evsignal_new(app->base, SIGINT, on_term, app);
	app->sig_hup = evsignal_new(app->base, SIGHUP, on_hup, app);
	event_add(app->sig_term, NULL);
	event_add(app->sig_int, NULL);
	event_add(app->sig_hup, NULL);

	log_info("process up: chamad %s, libevent %s (%s), libpq %d, hiredis %d.%d.%d, libcurl %s, jansson %s, "
		 "libsodium %s; listening on http://%s",
		 CHAMAD_VERSION, event_get_version(), event_base_get_method(app->base), PQlibVersion(),
		 HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, curl_version_info(CURLVERSION_NOW)->version, JANSSON_VERSION,
		 sodium_version_string(), app->cfg->http_listen);
	event_base_dispatch(app->base);
	log_info("process down");
	menu_set_unref(app->menus);

	event_free(app->sig_term);
	event_free(app->sig_int);
	event_free(app->sig_hup);
	if (app->drain_timer)
		event_free(app->drain_timer);
	event_base_free(app->base);
	return 0;
fail:
	log_error("%s", err);
	app_free_services(app);
	menu_set_unref(app->menus);
	event_base_free(app->base);
	return 1;
}

/* chamad hash-pin: for seeding and operators; never part of the daemon. */
static int hash_pin(const struct config *cfg)
{
	char pin[64];
	char *h;

	if (!fgets(pin, sizeof(pin), stdin)) {
		fprintf(stderr, "chamad: hash-pin reads a PIN on stdin\n");
		return 2;
	}
	pin[strcspn(pin, "\r\n")] = '\0';
	if (strlen(pin) != 4 || strspn(pin, "0123456789") != 4) {
		fprintf(stderr, "chamad: a PIN is 4 digits\n");
		return 2;
	}
	h = auth_pin_hash_now(cfg, pin);
	sodium_memzero(pin, sizeof(pin));
	if (!h) {
		fprintf(stderr, "chamad: hashing failed (out of memory?)\n");
		return 1;
	}
	printf("%s\n", h);
	free(h);
	return 0;
}

/* Every module's tables, one line each: its USSD actions, its SMS
 * commands, its checks of configuration values.  Before the configuration
 * is read and the menus load (they refuse an action no table names, and
 * a string an SMS command needs that is missing). */
static void register_modules(void)
{
	act_register_all();
	sms_commands_register(sms_commands);
	sms_commands_register(sms_approve_commands);
	sms_commands_register(sms_loan_commands);
	sms_commands_register(sms_loan_guar_commands);
	config_add_check("sms", "provider", sms_provider_check);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'T' },
		{ "wait", no_argument, NULL, 'W' },
		{ "json", no_argument, NULL, 'J' },	/* money-to-check */
		{ NULL, 0, NULL, 0 },
	};
	struct app app;
	const char *cmd = "run";
	bool check_only = false, rc_wait = false, json = false;
	const char *rc_from = NULL, *rc_to = NULL;
	char err[512];
	int opt, rc;

	memset(&app, 0, sizeof(app));
	/* loan-schedule has options of its own and needs no configuration:
	 * it gets its arguments before the daemon's parser sees them */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			i++;
			continue;
		}
		if (argv[i][0] == '-')
			continue;
		if (!strcmp(argv[i], "loan-schedule"))
			return loan_schedule_cli(argc - i, argv + i, stdout, stderr);
		break;
	}
	while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			app.config_path = optarg;
			app.config_required = true;
			break;
		case 'C':
			check_only = true;
			break;
		case 'J':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("chamad %s\n", CHAMAD_VERSION);
			return 0;
		case 'F':	/* reconcile's options */
			rc_from = optarg;
			break;
		case 'T':
			rc_to = optarg;
			break;
		case 'W':
			rc_wait = true;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		cmd = argv[optind++];
	if ((optind < argc && strcmp(cmd, "outbox-text")) ||
	    (strcmp(cmd, "run") && strcmp(cmd, "migrate") && strcmp(cmd, "hash-pin") && strcmp(cmd, "verify-ledger") &&
	     strcmp(cmd, "outbox-text") && strcmp(cmd, "reconcile") && strcmp(cmd, "money-to-check"))) {
		fprintf(stderr, "chamad: unknown command \"%s\" (try --help)\n", optind < argc ? argv[optind] : cmd);
		return 2;
	}
	if (json && strcmp(cmd, "money-to-check")) {
		fprintf(stderr, "chamad: --json belongs to the money-to-check command\n");
		return 2;
	}
	if ((rc_from || rc_to || rc_wait) && strcmp(cmd, "reconcile")) {
		fprintf(stderr, "chamad: --from, --to and --wait belong to the reconcile command\n");
		return 2;
	}
	if (!app.config_path) {
		app.config_path = getenv("CHAMAD_CONFIG");
		app.config_required = app.config_path != NULL;
		if (!app.config_path)
			app.config_path = DEFAULT_CONFIG;
	}
	/* before any thread starts (the PIN workers): curl's global state */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (sodium_init() < 0) {
		fprintf(stderr, "chamad: libsodium failed to initialise\n");
		return 1;
	}
	register_modules();
	app.cfg = config_new();
	if (config_load(app.cfg, app.config_path, app.config_required, err, sizeof(err)) < 0) {
		fprintf(stderr, "chamad: configuration error: %s\n", err);
		config_free(app.cfg);
		return 1;
	}
	if (check_only) {
		struct menu_set *m = menus_load(app.cfg, err, sizeof(err));

		if (!m) {
			fprintf(stderr, "chamad: menus error: %s\n", err);
			config_free(app.cfg);
			return 1;
		}
		printf("chamad: configuration OK (%s), %zu menu screens\n", app.config_path, menu_screen_count(m));
		menu_set_unref(m);
		config_free(app.cfg);
		return 0;
	}
	apply_logging(app.cfg);
	clock_set(app.cfg->jobs_now);
	if (!strcmp(cmd, "migrate"))
		rc = migrate_run(app.cfg, stdout, stderr);
	else if (!strcmp(cmd, "hash-pin"))
		rc = hash_pin(app.cfg);
	else if (!strcmp(cmd, "verify-ledger"))
		rc = verify_ledger(app.cfg, stdout, stderr);
	else if (!strcmp(cmd, "outbox-text"))
		rc = outbox_text(app.cfg, argc - optind, argv + optind, stdout, stderr);
	else if (!strcmp(cmd, "reconcile"))
		rc = reconcile_cli(app.cfg, rc_from, rc_to, rc_wait, stdout, stderr);
	else if (!strcmp(cmd, "money-to-check"))
		rc = money_check(app.cfg, json, stdout, stderr);
	else
		rc = run_daemon(&app);
	config_free(app.cfg);
	curl_global_cleanup();
	return rc;
}
