/*
 * payout: see payout.h.
 */
#include "dom/payout.h"
#include "dom/audit.h"
#include "dom/policy.h"

#define STR_(x) #x
#define STR(x) STR_(x)

DB_STMT(payout_claim_due, 4,
	"SELECT id, action, originator_id, phone, amount_cents, remarks, occasion, next_ms "
	"FROM payout_claim($1, $2::int, $3::bigint, " STR(PAYOUT_CLAIM_BATCH) ", $4::timestamptz)");

DB_STMT(payout_answered, 7,
	"SELECT payout_answer($1, $2, $3, $4, $5, $6::int, $7::timestamptz)");

DB_STMT(payout_sweep_due, 1, "SELECT moved, unknown FROM payout_sweep($1::timestamptz)");

DB_STMT(payout_result_record, 8,
	"SELECT outcome, payout_id FROM payout_result($1, $2, $3::bigint, $4, $5, $6::bigint, $7, $8::timestamptz)");

/* The member by their number in the chama: one that is not an active
 * member is refused by payout_request (err_member_inactive).  A refund
 * comes out of the member's savings. */
DB_STMT(payout_request_refund, 10,
	AUDIT_CTE("$4")
	"SELECT r.outcome, r.payout_id, r.approval_code FROM audit_ctx, "
	"payout_request($5::bigint, (SELECT m.user_id FROM memberships m WHERE m.chama_id = $5::bigint "
	"AND m.member_number = $6::int), 'refund', $7::bigint * 100, $10, 'member_savings', NULL, NULL, "
	"nullif($3::text, '')::bigint, $8, $4, $9::timestamptz) r");

DB_STMT(payout_list, 3,
	POLICY_LIST("money.payout_list",
		    "SELECT p.id, '#' || p.id || ' ' || left(u.full_name, 12) || ' KES ' || format_kes(p.amount_cents) "
		    "|| ' ' || p.status FROM payouts p JOIN users u ON u.id = p.user_id "
		    "WHERE p.chama_id = $2::bigint ORDER BY p.id DESC LIMIT 30"));
