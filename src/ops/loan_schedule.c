/*
 * loan_schedule: `chamad loan-schedule` (see loan_schedule.h).  Parses the
 * options into loansched terms, lets loansched_build refuse what it
 * refuses, and prints the rows.  Amounts stay in cents on output so the
 * CSV is exact and can be compared or summed as it is.
 */
#include "ops/loan_schedule.h"
#include "base/loansched.h"
#include "base/util.h"

#include <getopt.h>
#include <string.h>
#include <time.h>

static void loan_schedule_usage(FILE *f)
{
	fprintf(f,
		"Usage: chamad loan-schedule --principal KES --rate-bp N --per month|year|term\n"
		"         --method flat|reducing|equal_principal --term N\n"
		"         --frequency weekly|biweekly|monthly\n"
		"         [--grace N --grace-kind principal|interest_free] [--start YYYY-MM-DD]\n"
		"\n"
		"Prints the loan's schedule as CSV, to the cent:\n"
		"  n,due_date,principal_cents,interest_cents,instalment_cents,balance_cents\n"
		"--principal in shillings (\"5000\", \"7500.50\"); --rate-bp in basis points\n"
		"(200 = 2%%) per month, year or the whole term; --term instalments, grace\n"
		"included.  A grace of N instalments repays no principal: kind principal pays\n"
		"the interest, kind interest_free pays nothing and no interest accrues.\n"
		"Instalment k falls k periods after --start (default today).  Weekly rates are\n"
		"yearly/52 or monthly x 12/52, biweekly yearly/26 or monthly x 12/26.\n"
		"Exit 0, or 2 with a line naming the option at fault.\n");
}

/* The option a refusal names, as the user typed it. */
static const char *option_of(enum loansched_err e)
{
	switch (e) {
	case LOANSCHED_E_PRINCIPAL: return "--principal";
	case LOANSCHED_E_TERM: return "--term";
	case LOANSCHED_E_RATE: return "--rate-bp";
	case LOANSCHED_E_GRACE: return "--grace";
	case LOANSCHED_E_START: return "--start";
	default: return "an option";
	}
}

static void today(struct loansched_date *d)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	d->y = tm.tm_year + 1900;
	d->m = tm.tm_mon + 1;
	d->d = tm.tm_mday;
}

int loan_schedule_cli(int argc, char **argv, FILE *out, FILE *err)
{
	enum { O_PRINCIPAL = 1, O_RATE, O_PER, O_METHOD, O_TERM, O_FREQ, O_GRACE, O_KIND, O_START, O_HELP };
	static const struct option longopts[] = {
		{ "principal", required_argument, NULL, O_PRINCIPAL },
		{ "rate-bp", required_argument, NULL, O_RATE },
		{ "per", required_argument, NULL, O_PER },
		{ "method", required_argument, NULL, O_METHOD },
		{ "term", required_argument, NULL, O_TERM },
		{ "frequency", required_argument, NULL, O_FREQ },
		{ "grace", required_argument, NULL, O_GRACE },
		{ "grace-kind", required_argument, NULL, O_KIND },
		{ "start", required_argument, NULL, O_START },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const names[] = { "", "--principal", "--rate-bp", "--per", "--method", "--term",
					     "--frequency", "--grace", "--grace-kind", "--start" };
	static struct loansched_row rows[LOANSCHED_MAX_TERM];
	struct loansched_terms t;
	unsigned seen = 0;
	long long v = 0;
	enum loansched_err e;
	int opt, bad;

	memset(&t, 0, sizeof(t));
	today(&t.start);
	opterr = 0;	/* our own message, naming the command */
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		if (opt == O_HELP) {
			loan_schedule_usage(out);
			return 0;
		}
		if (opt < O_PRINCIPAL || opt > O_START) {
			fprintf(err, "chamad: loan-schedule: unknown option or missing value \"%s\" (try --help)\n",
				argv[optind - 1]);
			return 2;
		}
		switch (opt) {
		case O_PRINCIPAL: bad = loansched_parse_kes(optarg, &t.principal_cents); break;
		case O_RATE: bad = util_parse_ll(optarg, -1000000000L, 1000000000L, &v); t.rate_bp = (long)v; break;
		case O_PER: bad = loansched_parse_per(optarg, &t.per); break;
		case O_METHOD: bad = loansched_parse_method(optarg, &t.method); break;
		case O_TERM: bad = util_parse_ll(optarg, -100000, 100000, &v); t.term = (int)v; break;
		case O_FREQ: bad = loansched_parse_freq(optarg, &t.freq); break;
		case O_GRACE: bad = util_parse_ll(optarg, -100000, 100000, &v); t.grace = (int)v; break;
		case O_KIND: bad = loansched_parse_grace_kind(optarg, &t.grace_kind); break;
		default: bad = loansched_parse_date(optarg, &t.start); break;
		}
		if (bad < 0 || (opt == O_KIND && t.grace_kind == LOANSCHED_GRACE_NONE)) {
			fprintf(err, "chamad: loan-schedule: %s \"%s\" is not valid (try --help)\n", names[opt], optarg);
			return 2;
		}
		seen |= 1u << opt;
	}
	if (optind < argc) {
		fprintf(err, "chamad: loan-schedule: unexpected \"%s\" (try --help)\n", argv[optind]);
		return 2;
	}
	for (int o = O_PRINCIPAL; o <= O_FREQ; o++)
		if (!(seen & (1u << o))) {
			fprintf(err, "chamad: loan-schedule: %s is required (try --help)\n", names[o]);
			return 2;
		}
	if ((seen & (1u << O_KIND)) && !(seen & (1u << O_GRACE))) {
		fprintf(err, "chamad: loan-schedule: --grace-kind needs --grace N\n");
		return 2;
	}
	if ((e = loansched_build(&t, rows)) != LOANSCHED_OK) {
		fprintf(err, "chamad: loan-schedule: %s: %s\n", option_of(e), loansched_err_text(e));
		return 2;
	}
	fprintf(out, "n,due_date,principal_cents,interest_cents,instalment_cents,balance_cents\n");
	for (int i = 0; i < t.term; i++)
		fprintf(out, "%d,%04d-%02d-%02d,%lld,%lld,%lld,%lld\n", rows[i].n, rows[i].due.y, rows[i].due.m,
			rows[i].due.d, rows[i].principal_cents, rows[i].interest_cents, rows[i].instalment_cents,
			rows[i].balance_cents);
	return fflush(out) == 0 && !ferror(out) ? 0 : 1;
}
