/*
 * money: see money.h.
 */
#include "dom/money.h"
#include "dom/audit.h"
#include "dom/member.h"
#include "dom/policy.h"

DB_STMT(money_cash_record, 10,
	"SELECT outcome, contribution_id, payer_name FROM cash_record($5::bigint, $6::int, $7::bigint * 100, $8, "
	"nullif($3::text, '')::bigint, $4, $1, $2, $9, $10::timestamptz)");

DB_STMT(money_suspense_list, 3,
	POLICY_LIST("money.suspense_allocate",
		    "SELECT e.id, 'KES ' || (l.amount_cents / 100) || ' ' || coalesce(f.external_reference, '') || ' ' || "
		    "to_char(e.created_at, 'DD Mon') FROM journal_entries e "
		    "JOIN journal_lines l ON l.entry_id = e.id AND l.side = 'credit' "
		    "LEFT JOIN financial_audit_logs f ON f.idempotency_key = 'suspense:' || e.idempotency_key "
		    "WHERE e.chama_id = $2::bigint AND e.kind = 'c2b_unmatched' AND NOT EXISTS (SELECT 1 FROM "
		    "journal_entries a WHERE a.idempotency_key = 'suspense:' || e.id || ':allocated') "
		    "ORDER BY e.id LIMIT 100"));

DB_STMT(money_suspense_allocate, 9,
	"SELECT outcome, contribution_id FROM suspense_allocate($5::bigint, $6::bigint, $7::int, "
	"nullif($3::text, '')::bigint, $4, $1, $2, $8, $9::timestamptz)");

DB_STMT(money_reversible_list, 3,
	POLICY_LIST("money.payment_reverse",
		    "SELECT k.id, to_char(k.contributed_at, 'DD Mon') || ' KES ' || (k.amount_cents / 100) || "
		    "CASE WHEN k.amount_cents % 100 <> 0 THEN '.' || lpad((k.amount_cents % 100)::text, 2, '0') "
		    "ELSE '' END || ' ' || u.full_name FROM contributions k JOIN users u ON u.id = k.user_id "
		    "WHERE k.chama_id = $2::bigint AND k.status = 'confirmed' AND k.deleted_at IS NULL "
		    "ORDER BY k.contributed_at DESC, k.id DESC LIMIT 30"));

DB_STMT(money_payment_reverse, 9,
	"SELECT outcome, entry_id FROM payment_reverse($5::bigint, $6::bigint, $7, nullif($3::text, '')::bigint, $4, "
	"$1, $2, $8, $9::timestamptz)");

DB_STMT(money_mpesa_request, 11,
	AUDIT_CTE("$11")
	"INSERT INTO mpesa_requests (chama_id, user_id, phone, amount_cents, account_ref, "
	"idempotency_key, push_at) SELECT $4::bigint, $3::bigint, $1, $5::bigint * 100, $6, $7, "
	"now() + make_interval(secs => $10::int / 1000.0) FROM audit_ctx "
	"WHERE (SELECT coalesce(sum(amount_cents), 0) FROM mpesa_requests WHERE user_id = $3::bigint "
	"AND status IN ('created', 'pushed', 'confirmed', 'unknown') "
	"AND created_at >= (date_trunc('day', now() AT TIME ZONE $9) AT TIME ZONE $9)) "
	"+ $5::bigint * 100 <= $8::bigint * 100 "
	"ON CONFLICT (idempotency_key) DO NOTHING RETURNING id");
