/*
 * loansched: a loan's repayment schedule to the cent, from its terms.
 *
 * Pure arithmetic (no I/O, no clock, no floating point): the schedule a
 * chama fixes at disbursement, `chamad loan-schedule` prints, and the SQL
 * that records a schedule re-checks.  The rules (DOMAIN.md 2.2-2.6, with
 * Fineract as the reference) are set down once, with the choices made
 * where DOMAIN.md leaves one open, in tests/data/loan_schedules/README.md;
 * the comments in loansched.c name the rule each step follows.
 *
 * Every schedule holds: principal parts sum to the principal; instalments
 * sum to principal + interest; no balance below 0; the last balance 0.
 */
#ifndef CHAMAD_LOANSCHED_H
#define CHAMAD_LOANSCHED_H

#include <stdbool.h>

#define LOANSCHED_MAX_TERM 520			/* instalments: 10 years weekly */
#define LOANSCHED_MAX_CENTS 10000000000000LL	/* KES 100,000,000,000.00 */

enum loansched_method {
	LOANSCHED_FLAT,			/* interest on the original principal */
	LOANSCHED_REDUCING,		/* on the balance, equal instalments (annuity) */
	LOANSCHED_EQUAL_PRINCIPAL,	/* on the balance, equal principal parts */
};

/* What the rate is quoted per. */
enum loansched_per { LOANSCHED_PER_MONTH, LOANSCHED_PER_YEAR, LOANSCHED_PER_TERM };

enum loansched_freq { LOANSCHED_WEEKLY, LOANSCHED_BIWEEKLY, LOANSCHED_MONTHLY };

enum loansched_grace {
	LOANSCHED_GRACE_NONE,
	LOANSCHED_GRACE_PRINCIPAL,	/* grace instalments pay interest only */
	LOANSCHED_GRACE_INTEREST_FREE,	/* grace instalments pay nothing; no interest accrues */
};

/* Why terms are refused (0 = accepted). */
enum loansched_err {
	LOANSCHED_OK = 0,
	LOANSCHED_E_PRINCIPAL,	/* not 1 .. LOANSCHED_MAX_CENTS */
	LOANSCHED_E_TERM,	/* not 1 .. LOANSCHED_MAX_TERM */
	LOANSCHED_E_RATE,	/* below 0 or above the limit for its `per` */
	LOANSCHED_E_GRACE,	/* below 0, or not shorter than the term */
	LOANSCHED_E_START,	/* not a calendar date in 1970 .. 2999 */
	LOANSCHED_E_ARG,	/* an enum out of range (a caller's bug) */
};

struct loansched_date { int y, m, d; };

struct loansched_terms {
	long long principal_cents;
	long rate_bp;			/* basis points per `per` */
	enum loansched_per per;
	enum loansched_method method;
	int term;			/* instalments, grace included */
	enum loansched_freq freq;
	int grace;			/* the first `grace` instalments repay no principal */
	enum loansched_grace grace_kind;	/* ignored when grace is 0 */
	struct loansched_date start;	/* disbursement: instalment k is due k periods later */
};

struct loansched_row {
	int n;				/* 1 .. term */
	struct loansched_date due;
	long long principal_cents, interest_cents, instalment_cents, balance_cents;
};

/* Fills rows[0 .. t->term - 1] (the caller's array, at least t->term
 * rows; LOANSCHED_MAX_TERM always suffices).  Returns LOANSCHED_OK, or why
 * the terms are refused (then rows is untouched).  The checks run in the
 * order enums, principal, term, rate, grace, start (a grace without a
 * kind last), so one refusal names the first fault. */
enum loansched_err loansched_build(const struct loansched_terms *t, struct loansched_row *rows);

/* The refused input's short name ("principal", "term", "rate", "grace",
 * "start", "argument") and a sentence saying what is allowed; static. */
const char *loansched_err_name(enum loansched_err e);
const char *loansched_err_text(enum loansched_err e);

/* The option words, as `chamad loan-schedule` and the case files spell
 * them: "flat" | "reducing" | "equal_principal"; "month" | "year" |
 * "term"; "weekly" | "biweekly" | "monthly"; "principal" |
 * "interest_free" (and "none").  Each returns 0, or -1 for another word. */
int loansched_parse_method(const char *s, enum loansched_method *out);
int loansched_parse_per(const char *s, enum loansched_per *out);
int loansched_parse_freq(const char *s, enum loansched_freq *out);
int loansched_parse_grace_kind(const char *s, enum loansched_grace *out);
/* Shillings with at most two decimals ("2500", "0.07", "7500.50"), no
 * sign, no separators, to cents; -1 when not that, or more than 15 digits
 * before the point.  The range (0 and above the maximum refused) is the
 * build's check. */
int loansched_parse_kes(const char *s, long long *cents);
/* "YYYY-MM-DD" with those digit counts; the calendar check is the build's.
 * Returns 0 or -1. */
int loansched_parse_date(const char *s, struct loansched_date *out);
/* Whether d is a calendar date (any year 1 .. 9999). */
bool loansched_date_valid(struct loansched_date d);

#endif
