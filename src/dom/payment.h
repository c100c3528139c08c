/*
 * payment: the statements of money in by M-Pesa (mpesa_requests,
 * mpesa_callbacks, paybill C2B), run by src/mpesa/ with db_run /
 * db_run_durable.  Every one is harmless when repeated (a durable statement
 * that timed out may have been applied): each write is guarded by the
 * state it moves from, and settling is idempotent in mpesa_settle and
 * c2b_confirm (schema/50_mpesa.sql, schema/40_money.sql).
 *
 * The lifecycle of a request (mpesa_requests.status):
 *   created --claim--> (push_attempts 1, leased) --answer--> pushed | push_failed | unknown
 *   pushed --callback or status query--> confirmed | failed | mismatch | expired
 *   pushed --a success callback the STK push query contradicts--> contradicted
 *   pushed --a success past [mpesa] max_amount--> flagged
 * A success callback is posted only once the STK push query for its
 * CheckoutRequestID agrees (mpesa_settle's $12).
 *   unknown --a callback matched by phone and amount--> pushed ...
 * A created row is pushed only between its push_at and five minutes after
 * (the push window); past it, it is closed (push_failed) and the member told.
 *
 * Parameters are text; "s" means a whole number of seconds, ids are
 * bigint text.  Columns are listed in order.
 */
#ifndef CHAMAD_PAYMENT_H
#define CHAMAD_PAYMENT_H

#include "net/db.h"

/* Rows one push claim takes at most (a full batch claims again at once). */
#define PAYMENT_PUSH_BATCH 50
/* Stored callbacks one settling claim takes at most. */
#define PAYMENT_CALLBACK_BATCH 100

/* ---- the push job: a request is a claimed row ---- */

/* Claims the requests due now (push_at passed, still in the push window),
 * SKIP LOCKED so several daemons share them, under a lease: push_attempts
 * goes from 0 to 1, so a row is claimed once, ever.
 * $1 claimed_by (host:pid:random), $2 lease (s).
 * -> id, phone, amount_cents, account_ref, next_ms: one row per claimed
 * request, or a single row with NULL id when none was due; next_ms (on
 * every row) is the milliseconds until the next unclaimed request is due,
 * NULL when none is waiting. */
extern const struct db_stmt payment_push_claim;

/* Daraja accepted the push.  $1 id, $2 CheckoutRequestID,
 * $3 MerchantRequestID (or NULL), $4 the status query after (s).  No rows. */
extern const struct db_stmt payment_push_accepted;

/* The push never reached Daraja (no OAuth token): released, due again in
 * five seconds.  $1 id.  No rows. */
extern const struct db_stmt payment_push_unsent;

/* The push got no answer (Daraja may have prompted the member): 'unknown',
 * never pushed again; a callback is matched to it by phone and amount.
 * $1 id, $2 why.  No rows. */
extern const struct db_stmt payment_push_unknown;

/* Daraja refused the push: 'push_failed', and the member told by SMS
 * (sms_mpesa_push_failed: no prompt was sent, no money moved).  $1 id,
 * $2 why.  One row per notice queued. */
extern const struct db_stmt payment_push_refused;

/* Requests no daemon pushed in time (all were down: 'created', never
 * tried, past the five-minute window) and 'unknown' ones with no callback
 * after $1 seconds ([mpesa] unknown_close_s): 'push_failed', each member
 * told as for a refused push. */
extern const struct db_stmt payment_close_unpushed;

/* Claimed pushes whose daemon stopped before recording an answer (the
 * lease ended): maybe prompted, so 'unknown' like an unanswered push.
 * No parameters, no rows. */
extern const struct db_stmt payment_push_orphans;

/* ---- the status query job ---- */

/* Claims pushed requests whose status query is due (SKIP LOCKED), moving
 * each one's next query on; one asked more than $2 times is given up
 * ('expired').  $1 query every (s), $2 query max attempts.
 * -> id, checkout_request_id, expired ('t': given up, do not ask). */
extern const struct db_stmt payment_query_claim;

/* What settling a report needs of its request.  $1 CheckoutRequestID.
 * -> amount_cents, preferred_language, chama name (no row: unknown). */
extern const struct db_stmt payment_request_by_checkout;

/* ---- callbacks: stored, then settled from the table ---- */

/* Stores an STK callback as it came.  $1 CheckoutRequestID, $2 result code,
 * $3 description, $4 receipt (or NULL), $5 amount cents (or NULL), $6 phone
 * (or NULL), $7 the body, $8 remote address, $9 HTTP request id.  -> id. */
extern const struct db_stmt payment_callback_store;

/* Claims stored callbacks that are due (SKIP LOCKED, a 60 s lease), with
 * what settling needs of their request.  No parameters.
 * -> id, checkout_request_id, result_code, result_desc, mpesa_receipt,
 * amount_cents (NULL: not given), phone, and of the request with that
 * CheckoutRequestID (all NULL when there is none yet): amount_cents,
 * preferred_language, chama name. */
extern const struct db_stmt payment_callbacks_claim;

/* Settles one report (a stored callback or a status query's answer) in one
 * statement: mpesa_settle, and for a stored callback its row marked
 * settled.  $1..$6 CheckoutRequestID, result code, description, receipt
 * (or NULL), amount cents (or NULL), phone (or NULL); $7 source
 * ('callback' | 'query'), $8 the receipt SMS, $9 the failure SMS, $10 the
 * mpesa_callbacks id (or NULL), $11 p_at (base/clock: the posting's date),
 * $12 the STK push query's ResultCode confirming a success callback (NULL
 * from the status query job), $13 the most a success may be (cents,
 * [mpesa] max_amount).  A success callback without $12 is not settled
 * ('unconfirmed'); one $12 contradicts is 'contradicted', nothing posted.
 * -> status, settled_now. */
extern const struct db_stmt payment_settle;

/* A stored callback whose request is not known: a success is matched to
 * the one 'unknown' request with its phone and amount (which becomes
 * 'pushed' with this CheckoutRequestID); otherwise it waits with backoff,
 * and after $6 tries is left 'unmatched' for an operator.  $1 callback id,
 * $2 CheckoutRequestID, $3 result code, $4 phone (or NULL), $5 amount
 * cents, $6 tries.  -> status, matched. */
extern const struct db_stmt payment_callback_match;

/* A stored success callback whose STK push query could not answer yet
 * (still processing, Daraja busy, no answer): released, due again after a
 * backoff (2^attempts s, at most 60).  $1 callback id.  No rows. */
extern const struct db_stmt payment_callback_later;

/* ---- paybill (C2B) ---- */

/* Records a paybill confirmation once, unverified (c2b_confirm: nothing is
 * posted until the Transaction Status result agrees, c2b_on_status).
 * $1 TransID, $2 amount cents, $3 BillRefNumber, $4 payer's first name,
 * $5 MSISDN, $6 the receipt SMS (sent once verified), $7 p_at,
 * $8 BusinessShortCode (one of ours), $9 the most a payment may be (cents).
 * -> outcome (contribution | suspense | unassigned | replay), created,
 * status (unverified | verified | flagged). */
extern const struct db_stmt payment_c2b_confirm;

/* Flags paybill payments unverified for longer than $1 s ([mpesa]
 * verify_flag_after_s), $2 p_at.  -> how many. */
extern const struct db_stmt payment_c2b_flag_overdue;

/* ---- alerts and what is left to check ---- */

/* Claims alerts no daemon has logged (each is logged once).  No params.
 * -> id, kind, chama id ('-' for none), ref_table, ref_id, details (JSON). */
extern const struct db_stmt payment_alerts_claim;

/* Everything not credited, oldest first (`chamad money-to-check`).
 * No params.  -> kind (c2b | stk), id, status, amount_cents, receipt (the
 * TransID, the callback's receipt, or the CheckoutRequestID), chama id (''
 * for none), reason, account, age (s), when (UTC ISO 8601). */
extern const struct db_stmt payment_money_to_check;
enum { CHECK_KIND, CHECK_ID, CHECK_STATUS, CHECK_CENTS, CHECK_RECEIPT, CHECK_CHAMA, CHECK_REASON, CHECK_ACCOUNT,
       CHECK_AGE, CHECK_AT };

/* The chama's payments not credited, newest first, for payments.check_view
 * (POLICY_LIST columns: allowed, "kind:id", "KES n receipt DD Mon"). */
extern const struct db_stmt payment_check_list;

#endif
