/*
 * payout: the statements of money out (payouts, schema/57_payouts.sql),
 * run by src/mpesa/b2c.c (the B2C job and its result routes) and
 * src/ussd/act_payout.c (officials asking for a payout, the list).
 *
 * The lifecycle is migration 021's comment; every move is a schema
 * function that locks the payout and decides once, so each statement is
 * harmless when repeated (a durable statement that timed out may have
 * been applied): an answer or a result for a payout that has moved on
 * changes nothing, and the money is posted once, keyed on the payout.
 *
 * Parameters are text; "s" means a whole number of seconds, ids are
 * bigint text.  Columns are listed in order.
 */
#ifndef CHAMAD_PAYOUT_H
#define CHAMAD_PAYOUT_H

#include "net/db.h"

/* Payouts one claim takes at most (a full batch claims again at once). */
#define PAYOUT_CLAIM_BATCH 20

/* Claims the approved M-Pesa payouts that are due (SKIP LOCKED), each
 * checked against the chama's float (less what is already going out) and
 * [mpesa] max_payout, then 'sending' under a lease with a new attempt and
 * OriginatorConversationID.  $1 claimed_by, $2 lease (s), $3 max payout
 * (cents, 0: none), $4 p_at.  One row per payout looked at, and a last
 * row with NULL id carrying next_ms. */
extern const struct db_stmt payout_claim_due;
enum { PAYOUT_CLAIM_ID, PAYOUT_CLAIM_ACTION /* send | failed */, PAYOUT_CLAIM_ORIGINATOR, PAYOUT_CLAIM_PHONE,
       PAYOUT_CLAIM_CENTS, PAYOUT_CLAIM_REMARKS, PAYOUT_CLAIM_OCCASION,
       PAYOUT_CLAIM_NEXT_MS /* ms until the next is due, NULL: none */ };

/* Daraja's synchronous answer to one B2C request: $1 our
 * OriginatorConversationID, $2 accepted | refused | unanswered | unsent,
 * $3 ConversationID (or NULL), $4 error code (or NULL), $5 detail (or
 * NULL), $6 [mpesa] b2c_result_timeout_s, $7 p_at.  -> status after. */
extern const struct db_stmt payout_answered;

/* The sweep: payouts whose daemon stopped while sending and sent ones with
 * no result in time become 'unknown', each with its status query.  $1
 * p_at.  -> moved, unknown (how many stay unknown). */
extern const struct db_stmt payout_sweep_due;

/* A B2C Result (ResultURL or QueueTimeOutURL): $1 OriginatorConversationID,
 * $2 ConversationID, $3 ResultCode, $4 ResultDesc, $5 receipt (or NULL),
 * $6 amount cents (or NULL), $7 'result' | 'timeout', $8 p_at.
 * -> outcome (paid, failed, duplicate, ignored, stale, mismatch), payout_id. */
extern const struct db_stmt payout_result_record;

/* policy money.payout_request, from USSD: a refund from the member's
 * savings.  $1..$4 audit, $5 chama, $6 member number, $7 amount in KES,
 * $8 reason (the memo), $9 p_at, $10 method (mpesa | cash).  -> outcome
 * (ok_payout_requested, err_..., or approval_open's refusal), payout_id,
 * approval_code. */
extern const struct db_stmt payout_request_refund;

/* The chama's payouts, newest first, for money.payout_list (POLICY_LIST
 * columns: allowed, payout id, "#id name KES n state"). */
extern const struct db_stmt payout_list;

#endif
