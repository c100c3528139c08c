/*
 * ledger_check: the statements `chamad verify-ledger` (ops/verify.c) checks
 * the books with.  Each check's rows are problems: none means it holds.
 * The hashes themselves are recomputed in C (libsodium), independently of
 * the SQL that wrote them; here is only what to read.
 */
#ifndef CHAMAD_LEDGER_CHECK_H
#define CHAMAD_LEDGER_CHECK_H

#include "net/db.h"

/* The checks whose every row is a problem, with no parameter (NULL stmt
 * ends it): unbalanced entries, account balances that are not the sum of
 * their lines, member accounts that disagree with the contributions (and
 * payouts and loans), contributions without their entries, payouts
 * without their one entry, and the loans' (024): each member's
 * loans_receivable against their loans, each loan against its entries,
 * its schedule against its columns, allocations against repayments and
 * instalments, and each repayment against its entry. */
struct ledger_check {
	const char *what;	/* "unbalanced entry", ... */
	const struct db_stmt *stmt;
};
extern const struct ledger_check ledger_checks[];

/*
 * The legacy global audit chain (rows from before per-chama chains), in
 * chain order: id, canonical text, prev_hash (hex), row_hash (hex), and
 * whether a row without a hash comes after the chain began.
 */
extern const struct db_stmt ledger_legacy_chain;

/* The chamas whose chain does not start from the legacy chain's end $1
 * (hex) although they posted on it: chama, starts_from, legacy_end. */
extern const struct db_stmt ledger_legacy_sealed;

/*
 * Every chama's chain rows in order, with its head: chama, row id,
 * chama_seq, canonical text, prev_hash, row_hash, head seq, head hash,
 * genesis (hex); a head without rows comes as one row with a NULL id.
 */
extern const struct db_stmt ledger_chama_chains;

/* entries, lines, accounts: how much was checked */
extern const struct db_stmt ledger_counts;

#endif
