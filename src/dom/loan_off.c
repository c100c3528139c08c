/*
 * loan_off: the statements of the officials' loan book (loan_off.h).
 */
#include "dom/loan_off.h"
#include "dom/audit.h"
#include "dom/policy.h"

#define LOAN_LABEL(amount) \
	"'#' || l.id || ' KES ' || format_kes(" amount ") || ' ' || u.full_name "

DB_STMT(loan_off_apps, 3,
	POLICY_LIST("loans.book",
		    "SELECT l.id, " LOAN_LABEL("l.principal_cents")
		    "FROM loans l JOIN users u ON u.id = l.user_id "
		    "WHERE l.chama_id = $2::bigint AND l.status IN ('applied', 'queued', 'under_review') "
		    "ORDER BY CASE l.status WHEN 'under_review' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END, "
		    "l.queued_at NULLS LAST, l.id LIMIT 100"));

DB_STMT(loan_off_app, 4,
	"SELECT l.status, format_kes(l.principal_cents), u.full_name, l.term_periods, "
	"format_kes((SELECT coalesce(sum(g.pledged_cents), 0) FROM loan_guarantors g "
	"WHERE g.loan_id = l.id AND g.status = 'accepted')::bigint), "
	"(SELECT count(*) FROM loan_guarantors g WHERE g.loan_id = l.id AND g.status = 'accepted' "
	"AND g.guarantor_user_id <> l.user_id), "
	"coalesce((SELECT a.code FROM approvals a WHERE a.id = l.approval_id AND l.status = 'under_review'), '') "
	"FROM loans l JOIN users u ON u.id = l.user_id "
	"WHERE l.id = $4::bigint AND l.chama_id = $2::bigint AND $3::text IS NOT NULL "
	"AND l.status IN ('applied', 'queued', 'under_review') "
	"AND policy_allows($1::bigint, $2::bigint, 'loans.book')");

DB_STMT(loan_off_topay, 3,
	POLICY_LIST("loans.disburse",
		    "SELECT l.id, " LOAN_LABEL("l.principal_cents")
		    "FROM loans l JOIN users u ON u.id = l.user_id "
		    "WHERE l.chama_id = $2::bigint AND l.status = 'approved' ORDER BY l.approved_at, l.id LIMIT 100"));

DB_STMT(loan_off_to_call, 3,
	POLICY_LIST("loans.call_pledges",
		    "SELECT l.id, " LOAN_LABEL("loan_balance_cents(l)")
		    "FROM loans l JOIN users u ON u.id = l.user_id "
		    "WHERE l.chama_id = $2::bigint AND l.status = 'defaulted' "
		    "AND EXISTS (SELECT 1 FROM loan_pledges_held(l.id)) ORDER BY l.defaulted_at, l.id LIMIT 100"));

DB_STMT(loan_off_to_write_off, 3,
	POLICY_LIST("loans.write_off",
		    "SELECT l.id, " LOAN_LABEL("loan_balance_cents(l)")
		    "FROM loans l JOIN users u ON u.id = l.user_id "
		    "WHERE l.chama_id = $2::bigint AND l.status = 'defaulted' AND loan_balance_cents(l) > 0 "
		    "ORDER BY l.defaulted_at, l.id LIMIT 100"));

DB_STMT(loan_off_disburse, 8,
	AUDIT_CTE("$4")
	"SELECT v.* FROM audit_ctx CROSS JOIN LATERAL loan_disburse(nullif($3::text, '')::bigint, $5::bigint, "
	"$6::bigint, $7, audit_ctx.a1, $8::timestamptz) v");

DB_STMT(loan_off_cancel, 7,
	AUDIT_CTE("$4")
	"SELECT v.* FROM audit_ctx CROSS JOIN LATERAL loan_approved_cancel(nullif($3::text, '')::bigint, "
	"$5::bigint, $6::bigint, $7::timestamptz) v");

DB_STMT(loan_off_call, 7,
	AUDIT_CTE("$4")
	"SELECT v.* FROM audit_ctx CROSS JOIN LATERAL loan_call_request(nullif($3::text, '')::bigint, $5::bigint, "
	"$6::bigint, audit_ctx.a1, $7::timestamptz) v");

DB_STMT(loan_off_write_off, 7,
	AUDIT_CTE("$4")
	"SELECT v.* FROM audit_ctx CROSS JOIN LATERAL loan_write_off_request(nullif($3::text, '')::bigint, "
	"$5::bigint, $6::bigint, audit_ctx.a1, $7::timestamptz) v");
