/*
 * approval: see approval.h.
 */
#include "dom/approval.h"
#include "dom/audit.h"
#include "dom/policy.h"

DB_STMT(approval_requests, 3,
	POLICY_LIST("approvals.decide",
		    "SELECT a.id, a.code || ' KES ' || format_kes(a.amount_cents) || ' ' || u.full_name "
		    "FROM approvals a JOIN users u ON u.id = a.maker_user_id "
		    "WHERE a.chama_id = $2::bigint AND a.status = 'pending' AND a.maker_user_id <> $1::bigint "
		    "AND a.beneficiary_user_id IS DISTINCT FROM $1::bigint "
		    "AND $1::bigint <> ALL (a.excluded_user_ids) AND NOT EXISTS (SELECT 1 FROM "
		    "approval_votes v WHERE v.approval_id = a.id AND v.round = a.round "
		    "AND v.official_user_id = $1::bigint) ORDER BY a.created_at, a.id LIMIT 100"));

DB_STMT(approval_details, 4,
	"SELECT a.kind, a.code, format_kes(a.amount_cents), m.full_name, coalesce(b.full_name, ''), a.vars::text, "
	"(SELECT count(*) FROM approval_votes v WHERE v.approval_id = a.id AND v.round = a.round "
	"AND v.vote = 'approve'), (SELECT count(*) FROM approval_votes v WHERE v.approval_id = a.id "
	"AND v.round = a.round AND v.vote = 'reject'), a.required, a.status "
	"FROM approvals a JOIN users m ON m.id = a.maker_user_id LEFT JOIN users b ON b.id = a.beneficiary_user_id "
	"WHERE a.id = $4::bigint AND a.chama_id = $2::bigint AND $3::text IS NOT NULL "
	"AND policy_allows($1::bigint, $2::bigint, 'approvals.decide')");

/* The channel comes from audit_ctx (set_config returns the value it set):
 * the function depends on the CTE, so the context is set before it runs. */
DB_STMT(approval_vote, 7,
	AUDIT_CTE("$4")
	"SELECT v.* FROM audit_ctx CROSS JOIN LATERAL approval_vote(nullif($3::text, '')::bigint, $5, $6, "
	"audit_ctx.a1, $7::timestamptz) v");

DB_STMT(approval_veto, 6,
	AUDIT_CTE("$4")
	"SELECT v.* FROM audit_ctx CROSS JOIN LATERAL approval_veto(nullif($3::text, '')::bigint, $5, audit_ctx.a1, "
	"$6::timestamptz) v");

DB_STMT(approvals_expire, 2, "SELECT approvals_expire($1::timestamptz, $2::int)");

DB_STMT(approval_payment_reverse, 9,
	"SELECT outcome, approval_id, code FROM payment_reverse_request($5::bigint, $6::bigint, $7, "
	"nullif($3::text, '')::bigint, $4, $1, $2, $8, $9::timestamptz)");
