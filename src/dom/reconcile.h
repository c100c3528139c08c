/*
 * reconcile: the statements of reconciliation (schema/95_reconcile.sql):
 * the books against M-Pesa's statement (Pull Transactions) and its Account
 * Balance.  Run by src/mpesa/reconcile.c (the job, the claimed runs, the
 * balance result routes) and by `chamad reconcile` (src/ops/reconcile.c).
 *
 * A run's life (reconcile_runs.status): requested -> running (claimed
 * under a lease by a daemon with M-Pesa configured) -> done | failed.
 * The claimant's statements name the run, the claimant (host:pid:random)
 * and the attempt: a daemon whose lease ended and whose run another took
 * changes nothing.  Each one is harmless when repeated (durable).
 *
 * Parameters are text; "s" means whole seconds, ids are bigint text.
 */
#ifndef CHAMAD_RECONCILE_H
#define CHAMAD_RECONCILE_H

#include "net/db.h"

/* How far the statement is pulled beyond each end of the period: a payment
 * posted just across midnight from its M-Pesa time is still matched. */
#define RECONCILE_MARGIN_S 3600

/* `chamad reconcile`: $1 requested by (user@host), $2 first day
 * (YYYY-MM-DD, or NULL: yesterday), $3 last day (inclusive; NULL: the
 * first), $4 time zone, $5 "now" (clock_p_at).  The daemons find it within
 * seconds (they poll; it also NOTIFYs chamad_reconcile).  -> run id,
 * period_from, period_to (text). */
extern const struct db_stmt reconcile_request_days;

/* The daily job: $1 "now" (clock_p_at), $2 time zone, $3 every (s), $4 by
 * (the daemon).  Under an advisory lock, once per period.  -> the new run
 * id, or NULL (none made: another daemon did, or holds the lock). */
extern const struct db_stmt reconcile_job_request_stmt;

/* Claims one run (SKIP LOCKED): $1 claimant, $2 lease (s), $3 margin (s).
 * -> run_id, attempt, time_zone, pull_from, pull_to (local
 * "YYYY-MM-DD HH:MM:SS"); no row when none is waiting. */
extern const struct db_stmt reconcile_claim_stmt;
enum { RECONCILE_CLAIM_RUN, RECONCILE_CLAIM_ATTEMPT, RECONCILE_CLAIM_TZ, RECONCILE_CLAIM_FROM, RECONCILE_CLAIM_TO };

/* One statement page: $1 run, $2 claimant, $3 attempt, $4 OffSetValue,
 * $5 lines (JSON array of {transaction_id, trx_date, msisdn,
 * transaction_type, bill_ref, amount_cents}).  -> lines added, -1 when the
 * run is no longer this claimant's. */
extern const struct db_stmt reconcile_statement_add_stmt;

/* The statement is all in: $1 run, $2 claimant, $3 attempt, $4 our
 * OriginatorConversationID for the Account Balance.  -> 'asked' (send it),
 * 'reported' (a balance came in an earlier attempt: finish now), NULL (no
 * longer ours). */
extern const struct db_stmt reconcile_statement_done_stmt;

/* The balance query's acknowledgement: $1 run, $2 claimant, $3 attempt,
 * $4 accepted ('t'/'f'), $5 ack OriginatorConversationID, $6 ack
 * ConversationID, $7 why (refused).  -> still ours ('t'/'f'). */
extern const struct db_stmt reconcile_balance_acked_stmt;

/* The Account Balance Result, from any daemon's route: $1
 * OriginatorConversationID, $2 ConversationID, $3 ResultCode, $4
 * ResultDesc, $5 the reconciled account's funds in cents (-1: absent), $6
 * AccountBalance raw, $7 timeout ('t': QueueTimeOutURL), $8 the account's
 * name, $9 "now".  -> run_id, differences (NULL: not compared by this
 * call); no row: no run of ours asked it. */
extern const struct db_stmt reconcile_balance_result_stmt;

/* The claimant's wait is over: $1 run, $2 claimant, $3 attempt, $4 wait
 * (s), $5 "now".  -> differences, NULL (not ours, or compared already). */
extern const struct db_stmt reconcile_finish_stmt;

/* The statement could not be had: $1 run, $2 claimant, $3 attempt, $4 why.
 * -> 't' when it was ours. */
extern const struct db_stmt reconcile_fail_stmt;

/* A run's report: $1 run.  -> status, differences, new_differences, error,
 * ledger_float_cents, balance_state, balance_reported_cents,
 * balance_detail, period_from, period_to (text, in the run's zone); no
 * row for no such run. */
extern const struct db_stmt reconcile_run_report;
enum {
	RECONCILE_RUN_STATUS,
	RECONCILE_RUN_DIFFERENCES,
	RECONCILE_RUN_NEW,
	RECONCILE_RUN_ERROR,
	RECONCILE_RUN_FLOAT,
	RECONCILE_RUN_BALANCE_STATE,
	RECONCILE_RUN_BALANCE,
	RECONCILE_RUN_BALANCE_DETAIL,
	RECONCILE_RUN_FROM,
	RECONCILE_RUN_TO,
};

/* A run's differences, in order: $1 run.  -> kind, chama_id, receipt,
 * amount_cents, is_new ('t'/'f'), handled, details (JSON); "" for absent. */
extern const struct db_stmt reconcile_run_items;
enum {
	RECONCILE_ITEM_KIND,
	RECONCILE_ITEM_CHAMA,
	RECONCILE_ITEM_RECEIPT,
	RECONCILE_ITEM_CENTS,
	RECONCILE_ITEM_NEW,
	RECONCILE_ITEM_HANDLED,
	RECONCILE_ITEM_DETAILS,
};

#endif
