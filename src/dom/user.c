/*
 * user: see user.h.
 */
#include "dom/user.h"
#include "dom/audit.h"

DB_STMT(user_by_phone, 2,
	"SELECT id, preferred_language, full_name, pin_hash IS NULL, coalesce(locked_until > now(), false), "
	"coalesce(to_char(locked_until AT TIME ZONE $2, 'HH24:MI'), '') "
	"FROM users WHERE phone = $1 AND deleted_at IS NULL");

DB_STMT(user_signup_verified, 3,
	AUDIT_CTE_USSD "UPDATE signup_sessions SET status = 'verified', verified_at = now() "
	"FROM audit_ctx WHERE phone = $1 AND status = 'pending'");

DB_STMT(user_signup_finish, 6,
	AUDIT_CTE_USSD ", u AS (INSERT INTO users (phone, full_name, preferred_language, pin_hash, "
	"phone_verified, phone_verified_at) SELECT $1, $4, $5, $6, true, now() FROM audit_ctx RETURNING id), "
	"s AS (UPDATE signup_sessions SET status = 'completed', user_id = u.id, completed_at = now(), "
	"verified_at = coalesce(verified_at, now()) FROM u WHERE phone = $1 AND status IN ('pending', "
	"'verified')) SELECT id FROM u");

DB_STMT(user_pin_reset, 4,
	AUDIT_CTE_USSD "UPDATE users SET pin_hash = $4, failed_pin_attempts = 0, locked_until = NULL, "
	"phone_verified = true, phone_verified_at = coalesce(phone_verified_at, now()), last_login_at = now() "
	"FROM audit_ctx WHERE phone = $1 AND deleted_at IS NULL RETURNING id");

DB_STMT(user_set_language, 4,
	AUDIT_CTE_USSD "UPDATE users SET preferred_language = $4 FROM audit_ctx WHERE id = $3::bigint");

DB_STMT(user_signup_start, 8,
	AUDIT_CTE_USSD ", s AS (INSERT INTO signup_sessions AS ss (phone, channel, full_name, language, "
	"expires_at, otp_sends) SELECT $1, 'ussd', $4, $5, now() + make_interval(secs => $6::int), 1 "
	"FROM audit_ctx ON CONFLICT (phone) WHERE status IN ('pending', 'verified') DO UPDATE SET "
	"full_name = EXCLUDED.full_name, language = EXCLUDED.language, expires_at = EXCLUDED.expires_at, "
	"otp_sends = ss.otp_sends + 1, status = 'pending' RETURNING id) "
	"SELECT notify_phone($1, $5, 'otp', 'sms_otp', $7::jsonb, 0, 'otp:signup:' || $1 || ':' || $8) FROM s");
