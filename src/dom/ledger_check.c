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
	/* loans (024): an overpayment is kept as the borrower's savings; a
	 * repayment from their own savings, and a guarantor's pledge called,
	 * come out of savings */
	"UNION ALL SELECT l.chama_id, l.user_id, 'member_savings', sum(r.credit_cents) "
	"- coalesce(sum(r.amount_cents) FILTER (WHERE r.method = 'savings_offset'), 0) FROM loan_repayments r "
	"JOIN loans l ON l.id = r.loan_id WHERE r.status = 'confirmed' GROUP BY 1, 2, 3 "
	"UNION ALL SELECT l.chama_id, g.guarantor_user_id, 'member_savings', -sum(g.called_cents) "
	"FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id WHERE g.called_cents > 0 GROUP BY 1, 2, 3), "
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

/* What a loan owes by its own columns (024: loan_balance_cents), written
 * out here rather than called, so that the check does not lean on the
 * code it checks.  Only loans that were paid out owe anything. */
#define LOAN_OWED "(l.outstanding_balance_cents + l.fees_cents - l.fees_paid_cents - l.written_off_cents)"
#define LOAN_PAID_OUT "l.status IN ('disbursed', 'active', 'defaulted', 'closed', 'written_off')"

/* Every member's loans_receivable is the sum of what their loans owe. */
DB_STMT(ledger_loan_receivable, 0,
	"WITH o AS (SELECT l.chama_id, l.user_id, sum(" LOAN_OWED ") AS cents FROM loans l WHERE " LOAN_PAID_OUT
	" GROUP BY 1, 2), a AS (SELECT chama_id, user_id, balance_cents FROM ledger_accounts "
	"WHERE kind = 'loans_receivable') "
	"SELECT coalesce(a.chama_id, o.chama_id) AS chama, coalesce(a.user_id, o.user_id) AS member, "
	"coalesce(a.balance_cents, 0) AS ledger, coalesce(o.cents, 0) AS loans FROM a FULL JOIN o "
	"ON a.chama_id = o.chama_id AND a.user_id = o.user_id WHERE coalesce(a.balance_cents, 0) <> "
	"coalesce(o.cents, 0) ORDER BY 1, 2");

/* Each loan owes what its own entries put on the borrower's account
 * (loan_ledger_cents, schema/76_loan_views.sql: what the member is shown);
 * a loan's columns changed without a posting show here by name. */
DB_STMT(ledger_loan_entries, 0,
	"SELECT l.id AS loan, l.status, loan_ledger_cents(l.id) AS ledger, " LOAN_OWED " AS columns "
	"FROM loans l WHERE (" LOAN_PAID_OUT " AND loan_ledger_cents(l.id) <> " LOAN_OWED ") "
	"OR (NOT " LOAN_PAID_OUT " AND loan_ledger_cents(l.id) <> 0) ORDER BY l.id");

/* Each loan's schedule agrees with its columns: the principal parts are
 * the principal (what was paid out, once it was), the interest, fee and
 * penalty parts the loan's totals, and what the instalments were paid the
 * loan's repaid (principal, interest, penalties) and fees paid; before
 * pay-out nothing is paid or levied. */
DB_STMT(ledger_loan_schedules, 0,
	"WITH s AS (SELECT loan_id, sum(principal_due_cents) AS principal, sum(interest_due_cents) AS interest, "
	"sum(fee_due_cents) AS fees, sum(penalty_due_cents) AS penalties, sum(principal_paid_cents "
	"+ interest_paid_cents + penalty_paid_cents) AS repaid, sum(fee_paid_cents) AS fees_paid "
	"FROM loan_schedules GROUP BY loan_id) "
	"SELECT l.id AS loan, l.status, x.what, x.loan_cents, x.schedule_cents FROM loans l JOIN s ON s.loan_id = l.id "
	"CROSS JOIN LATERAL (VALUES "
	"('principal', CASE WHEN " LOAN_PAID_OUT " THEN l.amount_disbursed_cents ELSE l.principal_cents END, "
	"s.principal), "
	"('interest', CASE WHEN " LOAN_PAID_OUT " THEN l.total_interest_cents ELSE s.interest END, s.interest), "
	"('fees', CASE WHEN " LOAN_PAID_OUT " THEN l.fees_cents ELSE s.fees END, s.fees), "
	"('penalties', l.penalties_cents, s.penalties), ('repaid', l.amount_repaid_cents, s.repaid), "
	"('fees_paid', l.fees_paid_cents, s.fees_paid)) x(what, loan_cents, schedule_cents) "
	"WHERE x.loan_cents <> x.schedule_cents ORDER BY l.id, x.what");

/* Each repayment's allocations add up to its parts (penalty, fee,
 * interest, principal), and each instalment's paid parts are the
 * allocations of the repayments that stand (a reversed one was undone). */
DB_STMT(ledger_loan_allocations, 0,
	"WITH a AS (SELECT repayment_id, component, sum(cents) AS cents FROM loan_allocations GROUP BY 1, 2) "
	"SELECT 'repayment' AS of, r.id, c.component, c.cents AS parts, coalesce(a.cents, 0) AS allocated "
	"FROM loan_repayments r CROSS JOIN LATERAL (VALUES ('penalty', r.penalty_cents), ('fee', r.fee_cents), "
	"('interest', r.interest_cents), ('principal', r.principal_cents)) c(component, cents) "
	"LEFT JOIN a ON a.repayment_id = r.id AND a.component = c.component "
	"WHERE r.status IN ('confirmed', 'reversed') AND c.cents <> coalesce(a.cents, 0) "
	"UNION ALL SELECT 'instalment', s.id, c.component, c.cents, coalesce(k.cents, 0) FROM loan_schedules s "
	"CROSS JOIN LATERAL (VALUES ('penalty', s.penalty_paid_cents), ('fee', s.fee_paid_cents), "
	"('interest', s.interest_paid_cents), ('principal', s.principal_paid_cents)) c(component, cents) "
	"LEFT JOIN LATERAL (SELECT sum(x.cents) AS cents FROM loan_allocations x JOIN loan_repayments r "
	"ON r.id = x.repayment_id WHERE x.schedule_id = s.id AND x.component = c.component "
	"AND r.status = 'confirmed') k ON true WHERE c.cents <> coalesce(k.cents, 0) ORDER BY 1, 2, 3");

/* A repayment that stands has its entry, one that was reversed its
 * reversal too, and each took off the borrower's loans_receivable what it
 * paid on the loan (all but the credit kept as savings). */
DB_STMT(ledger_loan_repayment_entries, 0,
	"SELECT r.id AS repayment, r.status, r.amount_cents - r.credit_cents AS paid_on_loan, "
	"(SELECT coalesce(sum(CASE jl.side WHEN 'credit' THEN jl.amount_cents ELSE -jl.amount_cents END), 0) "
	"FROM journal_lines jl JOIN ledger_accounts a ON a.id = jl.account_id WHERE jl.entry_id = r.journal_entry_id "
	"AND a.kind = 'loans_receivable' AND a.user_id = l.user_id) AS entry_cents, r.reversal_entry_id AS reversal "
	"FROM loan_repayments r JOIN loans l ON l.id = r.loan_id WHERE r.status IN ('confirmed', 'reversed') "
	"AND (r.journal_entry_id IS NULL OR (r.status = 'reversed') <> (r.reversal_entry_id IS NOT NULL) "
	"OR r.amount_cents - r.credit_cents <> (SELECT coalesce(sum(CASE jl.side WHEN 'credit' THEN jl.amount_cents "
	"ELSE -jl.amount_cents END), 0) FROM journal_lines jl JOIN ledger_accounts a ON a.id = jl.account_id "
	"WHERE jl.entry_id = r.journal_entry_id AND a.kind = 'loans_receivable' AND a.user_id = l.user_id)) "
	"ORDER BY r.id");

const struct ledger_check ledger_checks[] = {
	{ "unbalanced entry", &ledger_unbalanced_entries },
	{ "account balance", &ledger_account_balances },
	{ "member account vs contributions", &ledger_member_accounts },
	{ "contribution without its entries", &ledger_contribution_entries },
	{ "payout without its one entry", &ledger_payout_entries },
	{ "member loans_receivable vs their loans", &ledger_loan_receivable },
	{ "loan vs its entries", &ledger_loan_entries },
	{ "loan schedule vs the loan", &ledger_loan_schedules },
	{ "loan allocations", &ledger_loan_allocations },
	{ "loan repayment vs its entry", &ledger_loan_repayment_entries },
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
