/*
 * mpesa_status: the statements of the Transaction Status rail
 * (mpesa_status_queries; functions in schema/55_mpesa_status.sql), run by
 * src/mpesa/status.c.  A query is a claimed row:
 *
 *   open --claim (attempt n, leased)--> send --ack--> sent (due again after
 *   [mpesa] status_timeout_s) --claim--> ... --result--> answered
 *   attempts spent, no result --give-up--> unknown (p_found NULL)
 *
 * Questions are opened in SQL by the purposes (mpesa_status_open); every
 * statement here is harmless when repeated (durable statements may run
 * twice): the sends are guarded by the claim's holder and the state, and
 * recording a result answers a query once.
 *
 * Parameters are text; ids are bigint text, "s" whole seconds.
 */
#ifndef CHAMAD_DOM_MPESA_STATUS_H
#define CHAMAD_DOM_MPESA_STATUS_H

#include "net/db.h"

/* Queries one claim takes at most (a full batch claims again at once). */
#define MPESA_STATUS_BATCH 20

/* Claims the due queries (SKIP LOCKED) under a lease; each claim counts an
 * attempt.  $1 claimed_by, $2 lease (s), $3 [mpesa] status_max_attempts.
 * -> one row per claimed query, or one row with NULL query_id when none
 * was due: query_id, originator_id, transaction_id (NULL: ask by
 * original_originator), original_originator, attempt, next_ms (ms until
 * the next is due, NULL when none waits). */
extern const struct db_stmt mpesa_status_claim_due;
enum { MST_CLAIM_ID, MST_CLAIM_ORIGINATOR, MST_CLAIM_TXN, MST_CLAIM_ORIGINAL, MST_CLAIM_ATTEMPT, MST_CLAIM_NEXT_MS };

/* What came of one send.  $1 query_id, $2 claimed_by, $3 outcome
 * ('accepted', 'unanswered', 'refused', 'unsent'), $4 ConversationID or
 * NULL, $5 detail or NULL, $6 [mpesa] status_timeout_s.
 * -> recorded (boolean: false when no longer ours or already answered). */
extern const struct db_stmt mpesa_status_record_send;

/* A Result posted to /mpesa/status/{result,timeout}: recorded, then handed
 * to <purpose>_on_status in the same transaction.  $1 OriginatorConversationID,
 * $2 ConversationID, $3 ResultCode, $4 the result (jsonb text: result_code,
 * desc, amount_cents, receipt, status, debit_party, credit_party, reason,
 * originator_id, conversation_id, transaction_id, completed), $5 'true'
 * when posted to the QueueTimeOutURL, $6 p_at.
 * -> outcome ('answered', 'duplicate', 'retry', 'unmatched'), query_id,
 * purpose, ref_id, found. */
extern const struct db_stmt mpesa_status_record_result;
enum { MST_RES_OUTCOME, MST_RES_ID, MST_RES_PURPOSE, MST_RES_REF, MST_RES_FOUND };

/* Gives up the queries whose attempts are spent (p_found NULL to the
 * purpose).  $1 [mpesa] status_max_attempts, $2 p_at.
 * -> query_id, purpose, ref_id, given_up (false: the purpose failed; kept
 * for the next pass). */
extern const struct db_stmt mpesa_status_give_up_spent;

#endif
