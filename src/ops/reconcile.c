/*
 * reconcile: see reconcile.h.
 */
#include "ops/reconcile.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/util.h"
#include "dom/reconcile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* how long a requested run may wait for a daemon to take it */
#define UNCLAIMED_MAX_S 60
#define POLL_MS 250

static bool is_day(const char *s)
{
	return s && strlen(s) == 10 && strspn(s, "0123456789-") == 10 && s[4] == '-' && s[7] == '-';
}

static PGresult *run_stmt(PGconn *pg, const struct db_stmt *st, const char *const *p, FILE *err)
{
	PGresult *r = PQexecParams(pg, st->sql, st->nparams, NULL, p, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "reconcile: %s", PQresultErrorMessage(r));
		PQclear(r);
		return NULL;
	}
	return r;
}

static void print_kes(FILE *out, const char *cents)
{
	long long c = atoll(cents);

	if (c % 100)
		fprintf(out, "KES %lld.%02lld", c / 100, c % 100);
	else
		fprintf(out, "KES %lld", c / 100);
}

/* The report of a finished run: a summary, then one line per difference. */
static int report(PGconn *pg, const char *run, const PGresult *rr, FILE *out, FILE *err)
{
	const char *p[1] = { run };
	PGresult *items;
	int n;

	if (!strcmp(PQgetvalue(rr, 0, RECONCILE_RUN_STATUS), "failed")) {
		fprintf(out, "run %s failed: %s\n", run, PQgetvalue(rr, 0, RECONCILE_RUN_ERROR));
		return 2;
	}
	fprintf(out, "run %s: %s .. %s: %s difference(s) (%s new); ledger float ", run,
		PQgetvalue(rr, 0, RECONCILE_RUN_FROM), PQgetvalue(rr, 0, RECONCILE_RUN_TO),
		PQgetvalue(rr, 0, RECONCILE_RUN_DIFFERENCES), PQgetvalue(rr, 0, RECONCILE_RUN_NEW));
	print_kes(out, PQgetvalue(rr, 0, RECONCILE_RUN_FLOAT));
	fprintf(out, ", M-Pesa balance ");
	if (*PQgetvalue(rr, 0, RECONCILE_RUN_BALANCE))
		print_kes(out, PQgetvalue(rr, 0, RECONCILE_RUN_BALANCE));
	else
		fprintf(out, "unknown");
	fprintf(out, "\n");
	items = run_stmt(pg, &reconcile_run_items, p, err);
	if (!items)
		return 2;
	n = PQntuples(items);
	for (int i = 0; i < n; i++) {
		fprintf(out, "%s chama=%s receipt=%s amount=", PQgetvalue(items, i, RECONCILE_ITEM_KIND),
			*PQgetvalue(items, i, RECONCILE_ITEM_CHAMA) ? PQgetvalue(items, i, RECONCILE_ITEM_CHAMA) : "-",
			*PQgetvalue(items, i, RECONCILE_ITEM_RECEIPT) ? PQgetvalue(items, i, RECONCILE_ITEM_RECEIPT) : "-");
		if (*PQgetvalue(items, i, RECONCILE_ITEM_CENTS))
			print_kes(out, PQgetvalue(items, i, RECONCILE_ITEM_CENTS));
		else
			fprintf(out, "-");
		fprintf(out, " %s %s %s\n", PQgetvalue(items, i, RECONCILE_ITEM_NEW)[0] == 't' ? "new" : "again",
			PQgetvalue(items, i, RECONCILE_ITEM_HANDLED), PQgetvalue(items, i, RECONCILE_ITEM_DETAILS));
	}
	PQclear(items);
	return n > 0 ? 1 : 0;
}

int reconcile_cli(const struct config *cfg, const char *from, const char *to, bool wait, FILE *out, FILE *err)
{
	char by[160], host[64] = "?", at[CLOCK_TEXT_MAX], run[24];
	const char *user = getenv("USER");
	const char *p[5] = { by, from, to, cfg->ussd_timezone, clock_p_at(at) };
	PGconn *pg;
	PGresult *r;
	uint64_t started;
	int waited_max = cfg->mpesa_reconcile_balance_wait_s + 600, rc = 2;

	if ((from && !is_day(from)) || (to && !is_day(to)) || (to && !from)) {
		fprintf(err, "reconcile: --from and --to are days, YYYY-MM-DD (--to needs --from)\n");
		return 2;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(by, sizeof(by), "cli:%.60s@%.60s", user ? user : "?", host);
	pg = PQconnectdb(cfg->database_url);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(err, "reconcile: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 2;
	}
	r = run_stmt(pg, &reconcile_request_days, p, err);
	if (!r)
		goto out;
	snprintf(run, sizeof(run), "%s", PQgetvalue(r, 0, 0));
	fprintf(out, "reconcile: run %s requested for %s .. %s (%s)\n", run, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
		cfg->ussd_timezone);
	PQclear(r);
	if (!wait) {
		rc = 0;
		goto out;
	}
	fflush(out);
	started = util_now_ms();
	for (;;) {
		const char *pr[1] = { run };
		const char *status;
		uint64_t waited = (util_now_ms() - started) / 1000;
		struct timespec ts = { 0, POLL_MS * 1000000L };

		r = run_stmt(pg, &reconcile_run_report, pr, err);
		if (!r)
			goto out;
		status = PQgetvalue(r, 0, RECONCILE_RUN_STATUS);
		if (!strcmp(status, "done") || !strcmp(status, "failed")) {
			rc = report(pg, run, r, out, err);
			PQclear(r);
			goto out;
		}
		if (!strcmp(status, "requested") && waited >= UNCLAIMED_MAX_S) {
			fprintf(err, "reconcile: no daemon took run %s within %d s: it needs a running chamad with "
				     "[mpesa] configured (the run stays requested; the next such daemon does it)\n",
				run, UNCLAIMED_MAX_S);
			PQclear(r);
			goto out;
		}
		if (waited >= (uint64_t)waited_max) {
			fprintf(err, "reconcile: run %s not finished after %d s (still %s)\n", run, waited_max, status);
			PQclear(r);
			goto out;
		}
		PQclear(r);
		nanosleep(&ts, NULL);
	}
out:
	PQfinish(pg);
	return rc;
}
