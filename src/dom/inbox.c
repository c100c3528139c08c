/*
 * inbox: see inbox.h.
 */
#include "dom/inbox.h"

DB_STMT(inbox_record, 5,
	"WITH u AS (SELECT id, preferred_language FROM users WHERE phone = $3 AND deleted_at IS NULL) "
	"INSERT INTO sms_inbound (provider, provider_message_id, sender, text_masked, command, user_id) "
	"SELECT $1, left($2, 128), $3, left($4, 1000), $5, (SELECT id FROM u) "
	"ON CONFLICT (provider, provider_message_id) DO NOTHING "
	"RETURNING id, coalesce(user_id::text, ''), coalesce((SELECT preferred_language FROM u), '')");

/* n is read in the last SELECT so that it runs: a SELECT in WITH runs only
 * as far as something reads it */
DB_STMT(inbox_dispute, 4,
	"WITH k AS (SELECT k.id, k.chama_id, k.amount_cents, k.contributed_at, u.full_name FROM contributions k "
	"JOIN users u ON u.id = k.user_id WHERE k.user_id = $1::bigint AND k.method = 'cash' "
	"AND k.status = 'confirmed' AND k.contributed_at > now() - interval '14 days' "
	"ORDER BY k.contributed_at DESC, k.id DESC LIMIT 1), "
	"a AS (INSERT INTO audit_logs (actor_user_id, chama_id, action, entity_type, entity_id, after, channel, "
	"msisdn, request_id) SELECT $1::bigint, k.chama_id, 'contribution.disputed', 'contributions', k.id, "
	"jsonb_build_object('message', $4::text), 'sms', $2, left($3, 64) FROM k RETURNING id), "
	"n AS (SELECT notify(o.user_id, 'dispute', 'sms_dispute_officials', jsonb_build_object('member', "
	"k.full_name, 'amount', format_kes(k.amount_cents), 'date', to_char(k.contributed_at, 'DD Mon')), 3, "
	"$3 || ':official:' || o.user_id, k.chama_id) FROM k JOIN memberships o ON o.chama_id = k.chama_id "
	"AND o.status = 'active' AND o.role IN ('treasurer', 'chairperson')) "
	"SELECT id, (SELECT count(*) FROM n) FROM k");
