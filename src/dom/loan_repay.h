/*
 * loan_repay: the statements of repaying a loan (schema/74_loan_repay.sql):
 * the member's open loans and what each owes, an M-Pesa push for a loan
 * (mpesa_requests purpose 'loan', account L<loan id>, settled by
 * mpesa_settle through loan_repay once the STK query agrees), a savings
 * offset (approval kind loan_offset), the treasurer's cash, an official's
 * request to reverse a repayment (approval kind loan_repay_reverse).
 *
 * What a loan owes next is the oldest instalment's unpaid parts; on USSD
 * it is shown and pushed in whole KES, rounded up (M-Pesa takes whole
 * shillings; the cents over go to the next instalment, or are credit).
 * Parameters are text; amounts typed on USSD are whole KES.
 */
#ifndef CHAMAD_DOM_LOAN_REPAY_H
#define CHAMAD_DOM_LOAN_REPAY_H

#include "net/db.h"

/* The member's loans still owed (active, defaulted) in the chama, oldest
 * first.  $1 user, $2 chama, $3 time zone (unused: the list contract).
 * -> loan id, label ("L12 KES 4,500"), ref ("L12"), balance KES (text,
 * formatted), next instalment KES (whole, rounded up), next due date
 * ("05 Feb", '' when nothing is due). */
extern const struct db_stmt loan_repay_open_list;
enum { LREPAY_ID, LREPAY_LABEL, LREPAY_REF, LREPAY_BALANCE, LREPAY_NEXT, LREPAY_DUE };

/* One of the member's loans still owed, the same columns.  $1 user, $2
 * chama, $3 loan id.  No row: not theirs, or not owed. */
extern const struct db_stmt loan_repay_one;

/* An M-Pesa payment request for the member's loan, the row that is the
 * push (due $10 ms from now): $1..$3 audit (channel $11), $4 chama, $5
 * amount in KES, $6 loan id, $7 idempotency key, $8 the daily limit in KES
 * (requests still open count), $9 time zone of the day.  One row (id) when
 * recorded; none over the daily limit, for a loan not theirs or not owed,
 * or for a repeat of the key. */
extern const struct db_stmt loan_repay_mpesa_request;

/* The borrower asks to repay from their savings (loan_offset_request):
 * $1..$4 audit (MSISDN, request id, user, channel), $5 loan id, $6 amount
 * in KES, $7 p_at.  -> outcome (ok_approval_opened, err_repay_no_loan,
 * err_amount, err_repay_savings_short, err_approval_pending,
 * err_approvers_too_few), approval_id, code. */
extern const struct db_stmt loan_repay_offset_request;

/* policy loans.repay_cash (loan_repay_cash): $1..$4 audit, $5 chama, $6
 * member number, $7 amount in KES, $8 idempotency key, $9 p_at.
 * -> outcome (ok_loan_repaid, ok_loan_closed, err_not_official,
 * err_member_number, err_repay_no_open_loan, err_amount), repayment_id, payer
 * name, loan ref, balance (KES, formatted). */
extern const struct db_stmt loan_repay_cash;
enum { LCASH_OUTCOME, LCASH_REPAYMENT, LCASH_PAYER, LCASH_REF, LCASH_BALANCE };

/* The chama's repayments that may be reversed, newest first, for
 * loans.repay_reverse (POLICY_LIST columns: allowed, repayment id,
 * "L12 KES 500 05 Feb Name"). */
extern const struct db_stmt loan_repay_reversible_list;

/* policy loans.repay_reverse (loan_repay_reverse_request): $1..$4 audit,
 * $5 chama, $6 repayment id, $7 reason, $8 p_at.  -> outcome
 * (ok_approval_opened, err_not_official, err_repay_none,
 * err_already_reversed, err_approval_pending, err_approvers_too_few),
 * approval_id, code. */
extern const struct db_stmt loan_repay_reverse_request;

#endif
