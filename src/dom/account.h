/*
 * account: what a member reads about their own money, the same on every
 * channel.  Each figure comes from the ledger (ledger_accounts and their
 * journal lines), the books every other figure must agree with: a USSD
 * screen and an SMS reply run the same statement, so they cannot disagree
 * (a reversed payment shows on both, as the reversal it is).
 *
 * The channels run these with db_run / act_run and read the columns by
 * the indexes below; money comes as cents (text), never formatted here.
 */
#ifndef CHAMAD_ACCOUNT_H
#define CHAMAD_ACCOUNT_H

#include "net/db.h"

/*
 * A member's balances, one row per chama they are an active member of,
 * by chama name.  $1 user id, $2 the chama (account_balance) or NULL
 * (account_balances: every chama), $3 "now" (timestamptz text,
 * clock_fixed()) or NULL, $4 time zone (for the arrears' due dates), $5
 * rows at most.
 */
extern const struct db_stmt account_balance;
extern const struct db_stmt account_balances;
enum {
	ACCOUNT_BAL_SAVINGS,	/* savings, cents */
	ACCOUNT_BAL_WELFARE,	/* welfare, cents */
	ACCOUNT_BAL_LOAN,	/* loans outstanding, cents */
	ACCOUNT_BAL_ARREARS,	/* contributions due and unpaid, cents */
	ACCOUNT_BAL_CHAMA,	/* the chama's name */
	ACCOUNT_BAL_CHAMA_ID,
};

/*
 * A member's movements, newest first: one row per journal line on one of
 * their accounts (savings, welfare, shares, loans).  $1 user id, $2 the
 * chama (account_statement) or NULL (account_statements: every chama), $3
 * time zone (for the date), $4 rows at most.
 */
extern const struct db_stmt account_statement;
extern const struct db_stmt account_statements;
enum {
	ACCOUNT_STMT_LINE_ID,	/* the journal line */
	ACCOUNT_STMT_DATE,	/* "DD Mon" in $3 */
	ACCOUNT_STMT_WHAT,	/* in, reversed, repaid, loan, out, adjusted (the entry's kind, as a word key) */
	ACCOUNT_STMT_CREDIT,	/* "t": the line credits the account (shown +), else debits it (-) */
	ACCOUNT_STMT_CENTS,	/* the line's amount, cents, > 0 */
	ACCOUNT_STMT_CHAMA,	/* the chama's name */
	ACCOUNT_STMT_REF,	/* the payment's reference (M-Pesa receipt), else its method, "reversal", or the kind */
};

/*
 * A member's loans that have not ended (applied .. active, defaulted), in
 * every chama, by chama name then oldest first, with what the ledger says
 * is owed and the next instalment still owed (loan_view.h has the same for
 * one chama).  $1 user id, $2 rows at most.
 */
extern const struct db_stmt account_loans;
enum {
	ACCOUNT_LOAN_CHAMA,		/* the chama's name */
	ACCOUNT_LOAN_ID,		/* the loan's id (#12 to the member) */
	ACCOUNT_LOAN_STATUS,		/* loans.status */
	ACCOUNT_LOAN_PRINCIPAL,		/* the amount applied for, cents */
	ACCOUNT_LOAN_BALANCE,		/* owed by the ledger, cents */
	ACCOUNT_LOAN_NEXT,		/* the next instalment's amount still owed, cents ("": none) */
	ACCOUNT_LOAN_DATE,		/* its due date, "DD Mon" ("": none) */
};

#endif
