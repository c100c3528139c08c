/*
 * loan_off: the officials' loan book (schema/73_loan_approvals.sql holds
 * the rules; Officials > Loans on USSD, src/ussd/act_loan_off.c).
 *
 * Approving a loan is a request of kind 'loan' in Requests to approve
 * (dom/approval), never decided by the borrower or a guarantor.  Here the
 * officials see the applications, pay out an approved loan whose M-Pesa
 * payout failed (again by M-Pesa under the same approval, or in cash that
 * a second official confirms), cancel it, and ask to call the pledges of
 * a defaulted loan or to write it off (requests other officials decide).
 * Lists are POLICY_LIST statements ($1 user, $2 chama, $3 time zone ->
 * allowed, loan id, label); writes take the audit context first ($1
 * MSISDN, $2 request id, $3 user, $4 channel: act_audit_params) and answer
 * an outcome row, its first column a menu string key.
 */
#ifndef CHAMAD_LOAN_OFF_H
#define CHAMAD_LOAN_OFF_H

#include "net/db.h"

/* Loans applied for, queued or under review, under review first, then
 * the queue in its order (loans.book): "#id KES n name". */
extern const struct db_stmt loan_off_apps;

/* One of them for loans.book: $1 user, $2 chama, $3 time zone, $4 loan
 * id -> one row (none when it is not the chama's or not allowed). */
extern const struct db_stmt loan_off_app;
enum {
	LOAN_OFF_A_STATUS,	/* applied | queued | under_review */
	LOAN_OFF_A_AMOUNT,	/* formatted KES */
	LOAN_OFF_A_NAME,	/* the borrower */
	LOAN_OFF_A_TERM,	/* instalments */
	LOAN_OFF_A_COVER,	/* accepted pledges, formatted KES */
	LOAN_OFF_A_GUARS,	/* accepted guarantors besides the borrower */
	LOAN_OFF_A_CODE,	/* the approval's code while under review, else "" */
};

/* Approved loans not paid yet (loans.disburse): "#id KES n name". */
extern const struct db_stmt loan_off_topay;
/* Defaulted loans whose pledges still hold money (loans.call_pledges)
 * and defaulted loans with money left (loans.write_off): "#id KES left
 * name". */
extern const struct db_stmt loan_off_to_call;
extern const struct db_stmt loan_off_to_write_off;

/* $1..$4 audit, $5 chama, $6 loan, $7 'mpesa' | 'cash', $8 p_at ->
 * outcome (ok_loanoff_sent, ok_loanoff_cash, err_not_official,
 * err_loanoff_none, err_loanoff_own, err_loanoff_not_approved,
 * err_loanoff_payout_live, or the payout's refusal), payout id, the cash
 * confirmation's approval code. */
extern const struct db_stmt loan_off_disburse;

/* $1..$4 audit, $5 chama, $6 loan, $7 p_at -> outcome
 * (ok_loanoff_cancelled, err_not_official, err_loanoff_none,
 * err_loanoff_own, err_loanoff_not_approved, err_loanoff_payout_live). */
extern const struct db_stmt loan_off_cancel;

/* Requests: $1..$4 audit, $5 chama, $6 loan, $7 p_at -> outcome
 * (ok_approval_opened, err_not_official, err_loanoff_none,
 * err_loanoff_own, err_loanoff_not_defaulted, err_loanoff_no_pledges (the
 * call only), err_approval_pending, err_approvers_too_few), approval id,
 * code. */
extern const struct db_stmt loan_off_call;
extern const struct db_stmt loan_off_write_off;
enum { LOAN_OFF_R_OUTCOME, LOAN_OFF_R_ID, LOAN_OFF_R_CODE };

#endif
