/*
 * approval: dual control, as the channels ask for it (schema/85_approvals.sql
 * holds the rule and the lifecycle; migration 020 the tables).
 *
 * A request needs N distinct officials of its chama (the constitution's
 * approvals_count, default 2), never the one who asked, never the one it
 * is for.  Officials see the requests waiting for them (USSD Officials >
 * Requests to approve) and decide each by its code with their PIN (USSD,
 * or SMS APPROVE/KUBALI, REJECT/KATAA <code> <PIN>); members stop a large
 * payout in its veto window (STOP/SIMAMISHA <code> <PIN>).  Each write is
 * one statement calling one schema function that answers an outcome row
 * (its first column a menu string key); writes take the audit context
 * first ($1 MSISDN, $2 request id, $3 user, $4 channel: act_audit_params).
 */
#ifndef CHAMAD_APPROVAL_H
#define CHAMAD_APPROVAL_H

#include "net/db.h"

/* The requests the user may decide in the chama, oldest first: pending,
 * not theirs, not for them, not voted on by them in this round
 * (POLICY_LIST of approvals.decide: allowed, approval id, "CODE KES n
 * name"). */
extern const struct db_stmt approval_requests;

/* One request for an official of its chama: $1 user, $2 chama, $3 time
 * zone, $4 approval id -> one row (none when it is not theirs to see). */
extern const struct db_stmt approval_details;
enum {
	APPROVAL_D_KIND,	/* payment_reverse | payout | cash_payout */
	APPROVAL_D_CODE,
	APPROVAL_D_AMOUNT,	/* formatted KES, "1,500" */
	APPROVAL_D_MAKER,	/* who asked */
	APPROVAL_D_FOR,		/* the beneficiary's name, or "" */
	APPROVAL_D_VARS,	/* JSON object: the kind's words' variables */
	APPROVAL_D_YES,
	APPROVAL_D_NO,
	APPROVAL_D_NEED,
	APPROVAL_D_STATUS,
};

/* An official's vote: $1..$4 audit, $5 code, $6 'approve' | 'reject', $7
 * p_at -> outcome (ok_vote_counted, ok_reject_counted, ok_approval_done,
 * ok_approval_waiting, ok_approval_rejected, err_no_approval,
 * err_approval_closed, err_not_official, err_own_request,
 * err_beneficiary, err_already_voted), then the columns below. */
extern const struct db_stmt approval_vote;
enum {
	APPROVAL_V_OUTCOME,
	APPROVAL_V_ID,
	APPROVAL_V_STATUS,
	APPROVAL_V_YES,
	APPROVAL_V_NO,
	APPROVAL_V_NEED,
	APPROVAL_V_CODE,
	APPROVAL_V_CHAMA,
};

/* A member's STOP: $1..$4 audit, $5 code, $6 p_at -> outcome
 * (ok_veto_counted, ok_veto_frozen, err_no_veto, err_already_vetoed),
 * approval id, vetoes so far, vetoes needed, code. */
extern const struct db_stmt approval_veto;
enum {
	APPROVAL_X_OUTCOME,
	APPROVAL_X_ID,
	APPROVAL_X_COUNT,
	APPROVAL_X_NEED,
	APPROVAL_X_CODE,
};

/* The job: $1 p_at, $2 [approvals] expire_hours -> the requests decided
 * (expired, or carried out when their veto window closed), -1 when
 * another run holds the lock. */
extern const struct db_stmt approvals_expire;

/* policy money.payment_reverse: an official asks to reverse a payment;
 * two other officials (the chama's rule) decide.  $1..$4 audit, $5 chama,
 * $6 contribution, $7 reason, $8 the member's notice once reversed (an
 * SMS template key), $9 p_at -> outcome (ok_approval_opened,
 * err_not_official, err_no_contribution, err_already_reversed,
 * err_approval_pending, err_approvers_too_few), approval id, code. */
extern const struct db_stmt approval_payment_reverse;

#endif
