/*
 * member: see member.h.
 */
#include "dom/member.h"
#include "dom/audit.h"

DB_STMT(member_join_by_invite, 5,
	MEMBER_AUDIT_CTE
	", inv AS (SELECT i.id, i.chama_id, c.name, "
	"EXISTS (SELECT 1 FROM memberships m WHERE m.chama_id = i.chama_id AND m.user_id = $3::bigint "
	"AND m.status = 'active') AS member, "
	"EXISTS (SELECT 1 FROM join_requests j WHERE j.chama_id = i.chama_id AND j.user_id = $3::bigint "
	"AND j.status = 'pending') AS pending "
	"FROM invites i JOIN chamas c ON c.id = i.chama_id AND c.deleted_at IS NULL AND c.status = 'active' "
	"WHERE i.code = $5 AND i.revoked_at IS NULL AND i.expires_at > now() AND i.uses < i.max_uses "
	"AND (i.invitee_phone IS NULL OR i.invitee_phone = $1)), "
	/* counted under the invite's row lock: the last use goes to one member */
	"used AS (UPDATE invites SET uses = uses + 1 FROM audit_ctx, inv WHERE invites.id = inv.id "
	"AND NOT inv.member AND NOT inv.pending AND invites.uses < invites.max_uses "
	"AND invites.revoked_at IS NULL AND invites.expires_at > now() RETURNING invites.id, invites.chama_id), "
	"jr AS (INSERT INTO join_requests (chama_id, user_id, invite_id) SELECT chama_id, $3::bigint, id FROM used "
	"RETURNING id) "
	"SELECT CASE WHEN inv.id IS NULL THEN 'err_code' WHEN inv.member THEN 'end_already_member' "
	"WHEN inv.pending THEN 'end_join_pending' WHEN EXISTS (SELECT 1 FROM jr) THEN 'end_join_sent' "
	/* used up between the look-up and the count */
	"ELSE 'err_code' END, inv.name FROM (SELECT 1) one LEFT JOIN inv ON true");
