/*
 * ledger_check: see ledger_check.h.
 */
#include "dom/ledger_check.h"

DB_STMT(ledger_unbalanced_entries, 0,
	"SELECT e.id AS entry, coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'debit'), 0) AS debits, "
	"coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'credit'), 0) AS credits, count(l.id) AS lines "
	"FROM journal_entries e LEFT JOIN journal_lines l ON l.entry_id = e.id GROUP BY e.id "
	"HAVING coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'debit'), 0) <> "
	"coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'credit'), 0) OR count(l.id) < 2 ORDER BY e.id");

DB_STMT(ledger_account_balances, 0,
	"SELECT a.id AS account, a.kind, a.balance_cents AS stored, coalesce(sum(CASE WHEN l.side = a.normal_side "
	"THEN l.amount_cents ELSE -l.amount_cents END), 0) AS lines FROM ledger_accounts a "
	"LEFT JOIN journal_lines l ON l.account_id = a.id GROUP BY a.id "
	"HAVING a.balance_cents <> coalesce(sum(CASE WHEN l.side = a.normal_side THEN l.amount_cents "
	"ELSE -l.amount_cents END), 0) ORDER BY a.id");

DB_STMT(ledger_member_accounts, 0,
	"WITH k0 AS (SELECT chama_id, user_id, CASE purpose WHEN 'welfare' THEN 'member_welfare' "
	"WHEN 'shares' THEN 'member_shares' ELSE 'member_savings' END AS kind, sum(amount_cents) AS cents "
	"FROM contributions WHERE status = 'confirmed' AND deleted_at IS NULL GROUP BY 1, 2, 3 "
	/* less what was paid out of the member's side (payouts) */
	"UNION ALL SELECT chama_id, user_id, debit_kind, -sum(amount_cents) FROM payouts WHERE status = 'paid' "
	"AND debit_kind IN ('member_savings', 'member_shares') GROUP BY 1, 2, 3 "
	/* loan repayments standing (schema/74_loan_repay.sql): an
	 * overpayment is the borrower's savings, a savings offset is taken
	 * from them; a pledge called from the guarantor its entry debits
	 * (loan_repayments names no payer) */
	"UNION ALL SELECT l.chama_id, l.user_id, 'member_savings', sum(CASE r.method WHEN 'savings_offset' "
	"THEN -r.amount_cents ELSE r.credit_cents END) FROM loan_repayments r JOIN loans l ON l.id = r.loan_id "
	"WHERE r.status = 'confirmed' AND r.method <> 'guarantor_call' GROUP BY 1, 2, 3 "
	"UNION ALL SELECT a.chama_id, a.user_id, 'member_savings', -sum(r.amount_cents) FROM loan_repayments r "
	"JOIN journal_lines jl ON jl.entry_id = r.journal_entry_id AND jl.side = 'debit' "
	"JOIN ledger_accounts a ON a.id = jl.account_id AND a.kind = 'member_savings' "
	"WHERE r.status = 'confirmed' AND r.method = 'guarantor_call' GROUP BY 1, 2, 3), "
	"k AS (SELECT chama_id, user_id, kind, sum(cents) AS cents FROM k0 GROUP BY 1, 2, 3), "
	"a AS (SELECT chama_id, user_id, kind, balance_cents FROM ledger_accounts "
	"WHERE kind IN ('member_savings', 'member_welfare', 'member_shares')) "
	"SELECT coalesce(a.chama_id, k.chama_id) AS chama, coalesce(a.user_id, k.user_id) AS member, "
	"coalesce(a.kind, k.kind) AS kind, coalesce(a.balance_cents, 0) AS ledger, coalesce(k.cents, 0) AS domain "
	"FROM a FULL JOIN k ON a.chama_id = k.chama_id AND a.user_id = k.user_id AND a.kind = k.kind "
	"WHERE coalesce(a.balance_cents, 0) <> coalesce(k.cents, 0) ORDER BY 1, 2, 3");

DB_STMT(ledger_contribution_entries, 0,
	"SELECT k.id AS contribution, k.status FROM contributions k WHERE k.status IN ('confirmed', 'reversed') "
	"AND k.deleted_at IS NULL AND (NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.ref_table = "
	"'contributions' AND e.ref_id = k.id AND e.kind = 'contribution') OR (k.status = 'reversed') <> "
	"EXISTS (SELECT 1 FROM journal_entries e WHERE e.ref_table = 'contributions' AND e.ref_id = k.id "
	"AND e.kind = 'contribution_reversal')) ORDER BY k.id");

/* A paid payout has exactly its one entry, and a payout's entry belongs to
 * a paid payout (money out is posted once, and only when paid). */
DB_STMT(ledger_payout_entries, 0,
	"SELECT p.id AS payout, p.status, count(e.id) AS entries FROM payouts p LEFT JOIN journal_entries e "
	"ON e.ref_table = 'payouts' AND e.ref_id = p.id GROUP BY p.id "
	"HAVING count(e.id) <> CASE WHEN p.status = 'paid' THEN 1 ELSE 0 END ORDER BY p.id");

const struct ledger_check ledger_checks[] = {
	{ "unbalanced entry", &ledger_unbalanced_entries },
	{ "account balance", &ledger_account_balances },
	{ "member account vs contributions", &ledger_member_accounts },
	{ "contribution without its entries", &ledger_contribution_entries },
	{ "payout without its one entry", &ledger_payout_entries },
	{ NULL, NULL },
};

DB_STMT(ledger_legacy_chain, 0,
	"SELECT id, financial_audit_canonical(f), encode(prev_hash, 'hex'), "
	"encode(row_hash, 'hex'), row_hash IS NULL AND id > (SELECT min(id) FROM "
	"financial_audit_logs WHERE row_hash IS NOT NULL) FROM financial_audit_logs f "
	"WHERE chama_seq IS NULL ORDER BY chain_seq NULLS FIRST, id");

DB_STMT(ledger_legacy_sealed, 1,
	"SELECT DISTINCT f.chama_id AS chama, encode(h.genesis, 'hex') AS starts_from, "
	"$1 AS legacy_end FROM financial_audit_logs f LEFT JOIN audit_chain_heads h "
	"ON h.chama_id = f.chama_id WHERE f.chain_seq IS NOT NULL "
	"AND h.genesis IS DISTINCT FROM decode($1, 'hex') ORDER BY 1");

DB_STMT(ledger_chama_chains, 0,
	"SELECT coalesce(f.chama_id, h.chama_id), f.id, f.chama_seq, "
	"financial_audit_canonical(f), encode(f.prev_hash, 'hex'), encode(f.row_hash, 'hex'), "
	"h.seq, encode(h.hash, 'hex'), encode(h.genesis, 'hex') FROM financial_audit_logs f "
	"FULL JOIN audit_chain_heads h ON h.chama_id = f.chama_id AND f.chama_seq IS NOT NULL "
	"WHERE f.id IS NULL OR f.chama_seq IS NOT NULL ORDER BY 1, f.chama_seq NULLS FIRST");

DB_STMT(ledger_counts, 0,
	"SELECT (SELECT count(*) FROM journal_entries), (SELECT count(*) FROM journal_lines), "
	"(SELECT count(*) FROM ledger_accounts)");
