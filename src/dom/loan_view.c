/*
 * loan_view: see loan_view.h.  The figures come from the views of
 * schema/76_loan_views.sql (loan_member_views, loan_schedule_views).
 */
#include "dom/loan_view.h"

DB_STMT(loan_view_mine, 2,
	"SELECT loan_id, status, principal_cents, balance_cents, coalesce(next_cents::text, ''), "
	"coalesce(to_char(next_due, 'DD Mon'), ''), coalesce(next_no::text, '') FROM loan_member_views "
	"WHERE user_id = $1::bigint AND chama_id = $2::bigint ORDER BY applied_at, loan_id LIMIT 20");

/* the loan is the member's own, in the chama they picked: a loan id typed
 * into a session is never enough to read someone else's */
#define SCHEDULE(loan)                                                                                        \
	"SELECT loan_id, installment_no, to_char(due_date, 'DD Mon'), due_cents, paid_cents, left_cents "     \
	"FROM loan_schedule_views WHERE user_id = $1::bigint AND chama_id = $2::bigint AND loan_id = " loan   \
	" ORDER BY installment_no LIMIT 200"

DB_STMT(loan_view_schedule, 3, SCHEDULE("$3::bigint"));
DB_STMT(loan_view_schedule_first, 2,
	SCHEDULE("(SELECT v.loan_id FROM loan_member_views v WHERE v.user_id = $1::bigint "
		 "AND v.chama_id = $2::bigint AND EXISTS (SELECT 1 FROM loan_schedules s WHERE s.loan_id = v.loan_id) "
		 "ORDER BY v.applied_at, v.loan_id LIMIT 1)"));

DB_STMT(loan_view_instalment, 4,
	"SELECT installment_no, (SELECT count(*) FROM loan_schedules c WHERE c.loan_id = v.loan_id), "
	"to_char(due_date, 'DD Mon YYYY'), principal_due_cents, interest_due_cents, fee_due_cents, "
	"penalty_due_cents, paid_cents, left_cents FROM loan_schedule_views v WHERE user_id = $1::bigint "
	"AND chama_id = $2::bigint AND loan_id = $3::bigint AND installment_no = $4::int");
