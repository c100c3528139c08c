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
