/*
 * mpesa_status: see mpesa_status.h.
 */
#include "dom/mpesa_status.h"

#define STR_(x) #x
#define STR(x) STR_(x)

DB_STMT(mpesa_status_claim_due, 3,
	"SELECT query_id, originator_id, transaction_id, original_originator, attempt, next_ms "
	"FROM mpesa_status_claim($1, $2::int, $3::int, " STR(MPESA_STATUS_BATCH) ")");

DB_STMT(mpesa_status_record_send, 6,
	"SELECT mpesa_status_sent($1::bigint, $2, $3, $4, $5, $6::int)");

DB_STMT(mpesa_status_record_result, 6,
	"SELECT outcome, query_id, purpose, ref_id, found "
	"FROM mpesa_status_record($1, $2, $3::int, $4::jsonb, $5::boolean, $6::timestamptz)");

DB_STMT(mpesa_status_give_up_spent, 2,
	"SELECT query_id, purpose, ref_id, given_up FROM mpesa_status_give_up($1::int, $2::timestamptz)");
