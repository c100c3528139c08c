/*
 * loan_view: what a member reads about their own loans on USSD (Loans >
 * My loans, Schedule, one instalment); SMS LOAN runs account_loans
 * (dom/account.h) over the same view.  A loan's balance is the ledger's
 * (loan_ledger_cents in schema/76_loan_views.sql: the lines of the loan's
 * entries on the borrower's loans_receivable account), never the loan
 * row's cached columns: those are checked against it by verify-ledger.
 * Money comes as cents (text), dates as "DD Mon", never formatted words.
 */
#ifndef CHAMAD_LOAN_VIEW_H
#define CHAMAD_LOAN_VIEW_H

#include "net/db.h"

/*
 * The member's loans in one chama that have not ended (applied, queued,
 * under review, approved, active, defaulted), oldest first.  $1 user id,
 * $2 chama id.
 */
extern const struct db_stmt loan_view_mine;
enum {
	LOAN_V_ID,		/* the loan's id (its number for the member: #12) */
	LOAN_V_STATUS,		/* loans.status */
	LOAN_V_PRINCIPAL,	/* the amount applied for, cents */
	LOAN_V_BALANCE,		/* what the ledger says is owed on it, cents */
	LOAN_V_NEXT_CENTS,	/* the next instalment's amount still owed, cents ("" when none) */
	LOAN_V_NEXT_DATE,	/* its due date, "DD Mon" ("" when none) */
	LOAN_V_NEXT_NO,		/* its number ("" when none) */
};

/*
 * A loan's schedule, by instalment (at most 200 rows, a list's most).
 * loan_view_schedule: $1 user id, $2 chama id, $3 loan id (the member's
 * own, else no rows); loan_view_schedule_first: $1, $2, the member's
 * oldest loan in the chama that has a schedule and has not ended.
 */
extern const struct db_stmt loan_view_schedule;
extern const struct db_stmt loan_view_schedule_first;
enum {
	LOAN_S_LOAN,	/* the loan's id */
	LOAN_S_NO,	/* the instalment's number, 1.. */
	LOAN_S_DATE,	/* due, "DD Mon" */
	LOAN_S_DUE,	/* the instalment in all (principal, interest, fee, penalties), cents */
	LOAN_S_PAID,	/* paid of it, cents */
	LOAN_S_LEFT,	/* left of it, cents */
};

/*
 * One instalment of one of the member's loans.  $1 user id, $2 chama id,
 * $3 loan id, $4 instalment number.
 */
extern const struct db_stmt loan_view_instalment;
enum {
	LOAN_I_NO,		/* its number */
	LOAN_I_OF,		/* how many instalments the loan has */
	LOAN_I_DATE,		/* due, "DD Mon YYYY" */
	LOAN_I_PRINCIPAL,	/* cents */
	LOAN_I_INTEREST,	/* cents */
	LOAN_I_FEE,		/* cents */
	LOAN_I_PENALTY,		/* penalties levied on it, cents */
	LOAN_I_PAID,		/* cents */
	LOAN_I_LEFT,		/* cents */
};

#endif
