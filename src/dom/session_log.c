/*
 * session_log: see session_log.h.
 */
#include "dom/session_log.h"

DB_STMT(session_log_record, 11,
	"INSERT INTO ussd_session_events (aggregator, session_id, phone, service_code, network_code, status, "
	"duration_ms, hops, last_response, error_message, cost) VALUES ($1, $2, $3, left($4, 64), left($5, 32), "
	"$6, $7::bigint, $8::int, left($9, 400), left($10, 400), left($11, 32)) "
	"ON CONFLICT (aggregator, session_id) DO NOTHING");
