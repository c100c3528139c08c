/*
 * account: see account.h.
 */
#include "dom/account.h"

/* from the ledger (member_balances sums the member's accounts); arrears
 * against the chama's schedule, as of the domain clock.  One chama or
 * every chama is two statements, not "$2 IS NULL OR chama_id = $2": a
 * prepared statement soon runs a generic plan, and that OR makes it read
 * every account of the member's chamas (0.50 ms against 0.09 ms a call,
 * pgbench -M prepared). */
#define BALANCE(chama)                                                                                       \
	"SELECT b.savings_cents, b.welfare_cents, b.loan_cents, coalesce(a.arrears_cents, 0), b.chama_name, "  \
	"b.chama_id FROM member_balances b LEFT JOIN LATERAL member_arrears(b.user_id, b.chama_id, "            \
	"coalesce($3::timestamptz, now()), $4) a ON true "                                                     \
	"WHERE b.user_id = $1::bigint AND " chama " ORDER BY b.chama_name, b.chama_id LIMIT $5::int"

DB_STMT(account_balance, 5, BALANCE("b.chama_id = $2::bigint"));
DB_STMT(account_balances, 5, BALANCE("$2::bigint IS NULL"));

/* every line on the member's own accounts: money in, its reversal (a new
 * entry, never an edit), loans out and back; one chama or all, as above */
#define STATEMENT(chama)                                                                                     \
	"SELECT l.id, to_char(e.created_at AT TIME ZONE $3, 'DD Mon'), "                                      \
	"CASE e.kind WHEN 'contribution' THEN 'in' WHEN 'suspense_allocation' THEN 'in' "                     \
	"WHEN 'contribution_reversal' THEN 'reversed' WHEN 'loan_repayment' THEN 'repaid' "                   \
	"WHEN 'loan_disbursement' THEN 'loan' WHEN 'payout' THEN 'out' WHEN 'welfare_claim' THEN 'out' "      \
	"ELSE 'adjusted' END, l.side = 'credit', l.amount_cents, c.name, "                                    \
	"coalesce(k.external_reference, CASE WHEN e.kind = 'contribution_reversal' THEN 'reversal' "          \
	"ELSE k.method END, e.kind) "                                                                         \
	"FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id "                                   \
	"JOIN ledger_accounts a ON a.id = l.account_id JOIN chamas c ON c.id = a.chama_id "                   \
	"LEFT JOIN contributions k ON e.ref_table = 'contributions' AND k.id = e.ref_id "                     \
	"WHERE a.user_id = $1::bigint AND " chama " ORDER BY l.id DESC LIMIT $4::int"

DB_STMT(account_statement, 4, STATEMENT("a.chama_id = $2::bigint"));
DB_STMT(account_statements, 4, STATEMENT("$2::bigint IS NULL"));

/* the loans' figures are the ledger's (loan_member_views, schema/76_loan_views.sql:
 * the balance is the loan's lines on loans_receivable), the rows USSD Loans >
 * My loans lists for one chama */
DB_STMT(account_loans, 2,
	"SELECT chama_name, loan_id, status, principal_cents, balance_cents, coalesce(next_cents::text, ''), "
	"coalesce(to_char(next_due, 'DD Mon'), '') FROM loan_member_views WHERE user_id = $1::bigint "
	"ORDER BY chama_name, applied_at, loan_id LIMIT $2::int");
