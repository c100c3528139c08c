/*
 * loan_guar: see loan_guar.h.
 */
#include "dom/loan_guar.h"
#include "dom/audit.h"

DB_STMT(loan_guar_requests, 3,
	"SELECT g.id, g.code || ' ' || u.full_name || ' KES ' || format_kes(g.pledged_cents) "
	"FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id JOIN users u ON u.id = l.user_id "
	"WHERE g.guarantor_user_id = $1::bigint AND l.chama_id = $2::bigint AND g.status = 'pending' "
	"AND l.status = 'applied' AND $3::text IS NOT NULL ORDER BY g.requested_at, g.id LIMIT 100");

DB_STMT(loan_guar_request, 5,
	"SELECT g.code, g.status, u.full_name, format_kes(g.pledged_cents), format_kes(l.principal_cents), "
	"format_kes(r.savings_cents), r.repaid_count, r.open_count, format_kes(r.arrears_cents), "
	"format_kes(greatest(member_free_savings_cents(l.chama_id, $1::bigint), 0)) "
	"FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id JOIN users u ON u.id = l.user_id "
	"CROSS JOIN LATERAL loan_guar_record(l.chama_id, l.user_id, $5::timestamptz, $3) r "
	"WHERE g.id = $4::bigint AND g.guarantor_user_id = $1::bigint AND l.chama_id = $2::bigint");

/* The channel comes from audit_ctx (set_config returns the value it set):
 * the function depends on the CTE, so the context is set before it runs. */
DB_STMT(loan_guar_answer, 7,
	AUDIT_CTE("$4")
	"SELECT a.outcome, a.loan_id, a.guarantor_id, a.code, a.borrower, format_kes(a.pledged_cents), "
	"format_kes(greatest(a.free_cents, 0)), format_kes(a.cover_needed_cents) FROM audit_ctx "
	"CROSS JOIN LATERAL loan_guarantor_answer(nullif($3::text, '')::bigint, $5, $6 = 'yes', audit_ctx.a1, "
	"$7::timestamptz) a");

DB_STMT(loan_guar_find, 3,
	"SELECT f.outcome, f.name, format_kes(f.cover_needed_cents) "
	"FROM loan_guarantor_find(loan_guar_applicant_loan($2::bigint, $1::bigint), $1::bigint, $3) f");

DB_STMT(loan_guar_add, 8,
	AUDIT_CTE("$4")
	"SELECT a.outcome, a.code, format_kes(a.cover_needed_cents), a.name FROM audit_ctx "
	"CROSS JOIN LATERAL loan_guarantor_add(loan_guar_applicant_loan($5::bigint, nullif($3::text, '')::bigint), "
	"nullif($3::text, '')::bigint, $6, $7::bigint, audit_ctx.a1, $8::timestamptz) a");

DB_STMT(loan_guar_summary, 2,
	"SELECT s.loan_count, format_kes(s.pledged_cents), format_kes(s.released_cents), format_kes(s.held_cents), "
	"s.pending FROM loan_guar_summary($2::bigint, $1::bigint) s");

DB_STMT(loan_guar_mine, 1,
	"WITH mine AS (SELECT g.id, g.pledged_cents, g.released_cents, l.chama_id, l.user_id AS borrower, "
	"loan_guar_at_risk(g, l) AS held FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id "
	"WHERE g.guarantor_user_id = $1::bigint AND l.user_id <> $1::bigint "
	"AND g.status IN ('accepted', 'released', 'called')) "
	"SELECT c.name, u.full_name, format_kes(m.pledged_cents), format_kes(m.held), format_kes(t.pledged), "
	"format_kes(t.released), format_kes(t.held) FROM mine m JOIN chamas c ON c.id = m.chama_id "
	"JOIN users u ON u.id = m.borrower CROSS JOIN (SELECT sum(pledged_cents)::bigint AS pledged, "
	"sum(released_cents)::bigint AS released, sum(held)::bigint AS held FROM mine) t "
	"ORDER BY m.held > 0 DESC, m.id DESC LIMIT 5");

DB_STMT(loan_guar_expire, 1, "SELECT loan_guarantors_expire($1::timestamptz)");
