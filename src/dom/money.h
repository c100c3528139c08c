/*
 * money: money moving through a chama's books, as the channels ask for it:
 * an official recording cash, allocating money that landed in suspense,
 * reversing a payment; a member asking for an M-Pesa payment request.
 *
 * Each write is one statement calling one schema function
 * (schema/40_money.sql) that checks the policy itself, posts through
 * ledger_post (one transaction, idempotent, audited, dated p_at from
 * base/clock) and returns an outcome row: its first column is a menu
 * string key (ok_..., err_...), which the channel shows in the member's
 * language.  Writes take the audit context first (member.h: $1..$4).
 */
#ifndef CHAMAD_MONEY_H
#define CHAMAD_MONEY_H

#include "net/db.h"

/* policy money.cash_record: $1..$4 audit, $5 chama, $6 member number, $7
 * amount in KES, $8 idempotency key, $9 the receipt's SMS template (a key), $10 p_at ->
 * outcome (ok_cash_recorded, err_not_official, err_member_number),
 * contribution_id, payer_name. */
extern const struct db_stmt money_cash_record;

/* The chama's unallocated suspense entries, for money.suspense_allocate
 * (POLICY_LIST columns: allowed, entry id, "KES n ref date"). */
extern const struct db_stmt money_suspense_list;
/* policy money.suspense_allocate: $1..$4 audit, $5 chama, $6 suspense
 * entry, $7 member number, $8 the notice's SMS template, $9 p_at -> outcome
 * (ok_allocated, err_not_official, err_no_suspense, err_member_number,
 * err_already_allocated), contribution_id. */
extern const struct db_stmt money_suspense_allocate;

/* The chama's confirmed payments, newest first, for money.payment_reverse
 * (POLICY_LIST columns: allowed, contribution id, "date KES n name"). */
extern const struct db_stmt money_reversible_list;
/* policy money.payment_reverse: $1..$4 audit, $5 chama, $6 contribution,
 * $7 reason, $8 the notice's SMS template, $9 p_at -> outcome (ok_reversed,
 * err_not_official, err_no_contribution, err_not_posted,
 * err_already_reversed), entry_id. */
extern const struct db_stmt money_payment_reverse;

/* A member's M-Pesa payment request, the row that is the push (due
 * $10 ms from now, for any daemon): $1..$3 audit (channel $11), $4 chama,
 * $5 amount in KES, $6 account reference, $7 idempotency key, $8 the daily
 * limit in KES (requests still open count), $9 time zone of the day.
 * One row (id) when recorded; none over the daily limit or for a repeat
 * of the key. */
extern const struct db_stmt money_mpesa_request;

#endif
