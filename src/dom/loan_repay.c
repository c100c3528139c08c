/*
 * loan_repay: see loan_repay.h.
 */
#include "dom/loan_repay.h"
#include "dom/audit.h"
#include "dom/policy.h"

/* A loan still owed as the member's screens show it: what it owes, and
 * its oldest instalment's unpaid parts (whole KES, rounded up). */
#define OPEN_LOAN_COLUMNS                                                                                  \
	"SELECT l.id, 'L' || l.id || ' KES ' || format_kes(loan_balance_cents(l)), 'L' || l.id, "              \
	"format_kes(loan_balance_cents(l)), coalesce(ceil(n.owed / 100.0)::bigint, 0)::text, "                 \
	"coalesce(to_char(n.due_date, 'DD Mon'), '') FROM loans l LEFT JOIN LATERAL (SELECT s.due_date, "    \
	"s.principal_due_cents - s.principal_paid_cents + s.interest_due_cents - s.interest_paid_cents + "   \
	"s.fee_due_cents - s.fee_paid_cents + s.penalty_due_cents - s.penalty_paid_cents AS owed "          \
	"FROM loan_schedules s WHERE s.loan_id = l.id AND s.status <> 'paid' ORDER BY s.installment_no "    \
	"LIMIT 1) n ON true "

DB_STMT(loan_repay_open_list, 3,
	OPEN_LOAN_COLUMNS "WHERE l.user_id = $1::bigint AND l.chama_id = $2::bigint AND $3::text IS NOT NULL "
	"AND l.status IN ('active', 'defaulted') ORDER BY l.id LIMIT 20");

DB_STMT(loan_repay_one, 3,
	OPEN_LOAN_COLUMNS "WHERE l.user_id = $1::bigint AND l.chama_id = $2::bigint AND l.id = $3::bigint "
	"AND l.status IN ('active', 'defaulted')");

/* as money_mpesa_request (dom/money.c), for a loan of the member's own
 * still owed: purpose 'loan', the loan, account L<id> */
DB_STMT(loan_repay_mpesa_request, 11,
	AUDIT_CTE("$11")
	"INSERT INTO mpesa_requests (chama_id, user_id, phone, amount_cents, account_ref, "
	"idempotency_key, push_at, purpose, loan_id) SELECT l.chama_id, l.user_id, $1, $5::bigint * 100, "
	"'L' || l.id, $7, now() + make_interval(secs => $10::int / 1000.0), 'loan', l.id "
	"FROM audit_ctx, loans l WHERE l.id = $6::bigint AND l.user_id = $3::bigint AND l.chama_id = $4::bigint "
	"AND l.status IN ('active', 'defaulted') "
	"AND (SELECT coalesce(sum(amount_cents), 0) FROM mpesa_requests WHERE user_id = $3::bigint "
	"AND status IN ('created', 'pushed', 'confirmed', 'unknown') "
	"AND created_at >= (date_trunc('day', now() AT TIME ZONE $9) AT TIME ZONE $9)) "
	"+ $5::bigint * 100 <= $8::bigint * 100 "
	"ON CONFLICT (idempotency_key) DO NOTHING RETURNING id");

DB_STMT(loan_repay_offset_request, 7,
	"SELECT outcome, approval_id, code FROM loan_offset_request($5::bigint, nullif($3::text, '')::bigint, "
	"$6::bigint * 100, $4, $1, $2, $7::timestamptz)");

DB_STMT(loan_repay_cash, 9,
	"SELECT outcome, repayment_id, payer_name, loan_ref, format_kes(balance_cents) FROM loan_repay_cash("
	"$5::bigint, $6::int, $7::bigint * 100, $8, nullif($3::text, '')::bigint, $4, $1, $2, $9::timestamptz)");

DB_STMT(loan_repay_reversible_list, 3,
	POLICY_LIST("loans.repay_reverse",
		    "SELECT r.id, 'L' || r.loan_id || ' KES ' || format_kes(r.amount_cents) || ' ' || "
		    "to_char(r.paid_at, 'DD Mon') || ' ' || u.full_name FROM loan_repayments r "
		    "JOIN loans l ON l.id = r.loan_id JOIN users u ON u.id = r.user_id "
		    "WHERE l.chama_id = $2::bigint AND r.status = 'confirmed' AND l.status IN ('active', 'defaulted') "
		    "ORDER BY r.paid_at DESC, r.id DESC LIMIT 30"));

DB_STMT(loan_repay_reverse_request, 8,
	"SELECT outcome, approval_id, code FROM loan_repay_reverse_request($5::bigint, $6::bigint, $7, "
	"nullif($3::text, '')::bigint, $4, $1, $2, $8::timestamptz)");
