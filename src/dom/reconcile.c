/*
 * reconcile: see reconcile.h.
 */
#include "dom/reconcile.h"

DB_STMT(reconcile_request_days, 5,
	"WITH d AS (SELECT coalesce($2::date, ($5::timestamptz AT TIME ZONE $4)::date - 1) AS first), "
	"p AS (SELECT (d.first::timestamp AT TIME ZONE $4) AS f, "
	"((coalesce($3::date, d.first) + 1)::timestamp AT TIME ZONE $4) AS t FROM d) "
	"SELECT reconcile_request($1, p.f, p.t, $4), to_char(p.f AT TIME ZONE $4, 'YYYY-MM-DD HH24:MI'), "
	"to_char(p.t AT TIME ZONE $4, 'YYYY-MM-DD HH24:MI') FROM p");

DB_STMT(reconcile_job_request_stmt, 4, "SELECT reconcile_job_request($1::timestamptz, $2, $3::int, $4)");

DB_STMT(reconcile_claim_stmt, 3,
	"SELECT run_id, attempt, time_zone, pull_from, pull_to FROM reconcile_claim($1, $2::int, $3::int)");

DB_STMT(reconcile_statement_add_stmt, 5,
	"SELECT reconcile_statement_add($1::bigint, $2, $3::int, $4::int, $5::jsonb)");

DB_STMT(reconcile_statement_done_stmt, 4, "SELECT reconcile_statement_done($1::bigint, $2, $3::int, $4)");

DB_STMT(reconcile_balance_acked_stmt, 7,
	"SELECT reconcile_balance_acked($1::bigint, $2, $3::int, $4::boolean, $5, $6, $7)");

DB_STMT(reconcile_balance_result_stmt, 9,
	"SELECT run_id, differences FROM reconcile_balance_result($1, $2, $3::bigint, $4, $5::bigint, $6, "
	"$7::boolean, $8, $9::timestamptz)");

DB_STMT(reconcile_finish_stmt, 5, "SELECT reconcile_finish($1::bigint, $2, $3::int, $4::int, $5::timestamptz)");

DB_STMT(reconcile_fail_stmt, 4, "SELECT reconcile_fail($1::bigint, $2, $3::int, $4)");

DB_STMT(reconcile_run_report, 1,
	"SELECT status, coalesce(differences::text, ''), coalesce(new_differences::text, ''), coalesce(error, ''), "
	"coalesce(ledger_float_cents::text, ''), balance_state, coalesce(balance_reported_cents::text, ''), "
	"coalesce(balance_detail, ''), to_char(period_from AT TIME ZONE time_zone, 'YYYY-MM-DD HH24:MI'), "
	"to_char(period_to AT TIME ZONE time_zone, 'YYYY-MM-DD HH24:MI') FROM reconcile_runs WHERE id = $1::bigint");

DB_STMT(reconcile_run_items, 1,
	"SELECT kind, coalesce(chama_id::text, ''), coalesce(receipt, ''), coalesce(amount_cents::text, ''), "
	"CASE WHEN is_new THEN 't' ELSE 'f' END, handled, details::text FROM reconcile_items "
	"WHERE run_id = $1::bigint ORDER BY id");
