/*
 * loan: applying for a loan and the member's limit (schema/71_loans.sql),
 * as USSD (src/ussd/act_loan.c) and SMS (src/sms/sms_loan.c) ask.
 *
 * The schedule a member sees before committing is computed here in C
 * (base/loansched, from the product's terms the quote statement returns);
 * the same rows go to loan_apply, whose loan_schedule_record recomputes
 * them from the terms it holds and refuses any difference.  So the C code
 * computes what the member is shown, and the database decides.
 *
 * Parameters are text; p_at is clock_p_at's, tz [ussd] timezone.  Columns
 * are listed in order.
 */
#ifndef CHAMAD_LOAN_H
#define CHAMAD_LOAN_H

#include "base/loansched.h"
#include "net/db.h"

/* The chama's loan products, in the constitution's order: $1 chama ->
 * key, name_en, name_sw, max_term, frequency. */
extern const struct db_stmt loan_products_list;
enum { LOAN_PROD_KEY, LOAN_PROD_NAME_EN, LOAN_PROD_NAME_SW, LOAN_PROD_MAX_TERM, LOAN_PROD_FREQUENCY };

/* The rules checked as loan_apply will, with no write, and the terms to
 * build the schedule from: $1 chama, $2 user, $3 product key ("" for the
 * chama's first), $4 amount in cents, $5 term, $6 p_at, $7 tz -> one row. */
extern const struct db_stmt loan_quote_stmt;
enum {
	LOAN_Q_OUTCOME,		/* ok_loan_quote | err_loan_* */
	LOAN_Q_KEY,		/* the product's key (NULL when none) */
	LOAN_Q_RATE_BP, LOAN_Q_PER, LOAN_Q_METHOD, LOAN_Q_FREQUENCY, LOAN_Q_GRACE, LOAN_Q_GRACE_KIND,
	LOAN_Q_FEE_CENTS,
	LOAN_Q_START,		/* YYYY-MM-DD: the day of p_at in tz */
	LOAN_Q_LIMIT_CENTS, LOAN_Q_SELF_COVER_CENTS,
	LOAN_Q_MAX_TERM,
};

/* The application: $1..$4 audit (MSISDN, request id, user, channel), $5
 * chama, $6 product key, $7 amount in cents, $8 term, $9 the schedule
 * (loan_plan_json), $10 the idempotency key (the USSD session, the SMS),
 * $11 p_at (the quote's), $12 tz -> outcome (ok_loan_cover | ok_loan_review
 * | ok_loan_queued | ok_loan_applied | err_...), loan_id, cover_needed_cents,
 * queue_place (NULL unless queued). */
extern const struct db_stmt loan_apply_stmt;
enum { LOAN_A_OUTCOME, LOAN_A_LOAN, LOAN_A_COVER, LOAN_A_PLACE };

/* How much the member can borrow today: $1 user, $2 chama, $3 p_at, $4 tz
 * -> one row (none when not a member). */
extern const struct db_stmt loan_limit_stmt;
/* The same for each of the member's chamas (SMS LIMIT): $1 user, $2 p_at,
 * $3 tz -> rows of the columns below. */
extern const struct db_stmt loan_limits_all;
enum {
	LOAN_L_OUTCOME,		/* ok_loan_limit | err_loan_* */
	LOAN_L_LIMIT, LOAN_L_SAVINGS, LOAN_L_OWED, LOAN_L_OPEN, LOAN_L_OPEN_MAX, LOAN_L_SELF_COVER,
	LOAN_L_GUAR_MIN, LOAN_L_GUAR_MAX, LOAN_L_ARREARS, LOAN_L_MIN_DAYS,
	LOAN_L_CHAMA,		/* the chama's name */
	LOAN_L_CHAMA_ID,
};

/* The member's active chamas, at most two (SMS BORROW applies in the only
 * one): $1 user -> chama id, name. */
extern const struct db_stmt loan_member_chamas;

/* ---- the schedule, pure ---------------------------------------------------- */

/* The quote's terms, as text columns (the LOAN_Q_* ones). */
struct loan_terms_text {
	const char *rate_bp, *per, *method, *frequency, *grace, *grace_kind, *fee_cents, *start;
};

/* The terms of row `row` of a loan_quote result (borrowed from res): what
 * USSD and SMS both build their plan from. */
void loan_quote_terms(const PGresult *res, int row, struct loan_terms_text *out);

struct loan_plan {
	int n;
	long long principal_cents, fee_cents;
	long long first_cents;		/* the first instalment, the fee with it */
	long long interest_cents;	/* the whole term's */
	long long total_cents;		/* principal + interest + fee */
	struct loansched_row rows[LOANSCHED_MAX_TERM];
};

/* Builds the schedule of principal_cents over term instalments on the
 * terms.  Returns 0, or -1 when the terms cannot be read or loansched
 * refuses them (the statement's rules make that a bug: the caller ends
 * the hop as unavailable). */
int loan_plan_build(const struct loan_terms_text *t, long long principal_cents, int term, struct loan_plan *out);

/* The rows as loan_schedule_record reads them:
 * [{"n":1,"due":"YYYY-MM-DD","principal":c,"interest":c,"fee":c}, ...].
 * Returns a new string. */
char *loan_plan_json(const struct loan_plan *p);

#endif
