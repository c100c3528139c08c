/*
 * chama: see chama.h.
 */
#include "dom/chama.h"
#include "dom/audit.h"
#include "dom/member.h"
#include "dom/policy.h"

/* "AND the user ($U) is an active member of the chama ($C)" */
#define MEMBER_OF(u, c) \
	" EXISTS (SELECT 1 FROM memberships me WHERE me.user_id = " u " AND me.chama_id = " c \
	" AND me.status = 'active') "

/* The user's ($1) active memberships in live chamas, with what the role
 * may do: the pick and the policy in one row (policy.h). */
#define MY_CHAMAS \
	"SELECT m.chama_id, c.name, m.role, policy_allowed(m.role) AS allowed FROM memberships m " \
	"JOIN chamas c ON c.id = m.chama_id AND c.deleted_at IS NULL WHERE m.user_id = $1 AND m.status = 'active' "

DB_STMT(chama_mine, 1, MY_CHAMAS "ORDER BY lower(c.name), c.id LIMIT 200");
DB_STMT(chama_pick, 2, MY_CHAMAS "AND m.chama_id = $2::bigint");

DB_STMT(chama_new, 9,
	"SELECT n.chama_id, n.name, n.role, policy_allowed(n.role), n.invite_code FROM chama_create($4, $1, $2, "
	"$3::bigint, $5, $6, $7::bigint * 100, $8, $9) n");

DB_STMT(chama_meetings, 3,
	"SELECT id, to_char(scheduled_at AT TIME ZONE $3, 'DD Mon HH24:MI') || ' ' || title "
	"FROM meetings WHERE chama_id = $2::bigint AND status = 'scheduled' "
	"AND scheduled_at >= now() - interval '1 day' AND" MEMBER_OF("$1", "$2::bigint")
	"ORDER BY scheduled_at LIMIT 100");

DB_STMT(chama_members, 3,
	"SELECT u.id, u.full_name || CASE WHEN m.role <> 'member' THEN ' (' || m.role || ')' "
	"ELSE '' END FROM memberships m JOIN users u ON u.id = m.user_id "
	"WHERE m.chama_id = $2::bigint AND m.status = 'active' AND $3::text IS NOT NULL AND"
	MEMBER_OF("$1", "$2::bigint")
	"ORDER BY m.role = 'member', m.member_number LIMIT 200");

DB_STMT(chama_meeting, 4,
	"SELECT title AS m_title, to_char(scheduled_at AT TIME ZONE $3, 'DD Mon YYYY HH24:MI') AS m_when, "
	"coalesce(location, '-') AS m_where, coalesce(left(agenda, 60), '-') AS m_agenda FROM meetings "
	"WHERE id = $4::bigint AND chama_id = $2::bigint AND" MEMBER_OF("$1", "$2::bigint"));

DB_STMT(chama_member, 4,
	"SELECT u.full_name AS p_name, u.phone AS p_phone, m.role AS p_role, "
	"to_char(m.joined_at AT TIME ZONE $3, 'DD Mon YYYY') AS p_joined FROM memberships m "
	"JOIN users u ON u.id = m.user_id WHERE m.user_id = $4::bigint AND m.chama_id = $2::bigint "
	"AND m.status = 'active' AND" MEMBER_OF("$1", "$2::bigint"));

DB_STMT(chama_officials, 4,
	"SELECT coalesce(string_agg(m.role || ': ' || u.full_name, E'\\n' ORDER BY m.role), '-') AS officials "
	"FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.chama_id = $2::bigint "
	"AND m.status = 'active' AND m.role <> 'member' AND $3::text IS NOT NULL AND $4::text IS NOT NULL "
	"AND" MEMBER_OF("$1", "$2::bigint"));

DB_STMT(chama_about, 4,
	"SELECT c.name AS c_name, c.type AS c_type, c.contribution_amount_cents AS cents_c_amount, "
	"c.contribution_frequency AS c_freq, c.member_count AS c_members FROM chamas c "
	"WHERE c.id = $2::bigint AND $3::text IS NOT NULL AND $4::text IS NOT NULL AND"
	MEMBER_OF("$1", "$2::bigint"));

/* the check and the code in one statement: no code for a non-official */
DB_STMT(chama_invite_new, 6,
	MEMBER_AUDIT_CTE
	", ok AS (SELECT policy_allows($3::bigint, $5::bigint, 'chama.invite_create') AS allowed), "
	"i AS (INSERT INTO invites (chama_id, created_by_user_id, code, max_uses, expires_at) "
	"SELECT $5::bigint, $3::bigint, $6, 50, now() + interval '30 days' FROM audit_ctx, ok WHERE ok.allowed "
	"RETURNING code) "
	"SELECT CASE WHEN ok.allowed THEN 'ok_invite_created' ELSE 'err_not_official' END, (SELECT code FROM i) "
	"FROM ok");

DB_STMT(chama_invite_phone, 8,
	MEMBER_AUDIT_CTE
	", ok AS (SELECT policy_allows($3::bigint, $5::bigint, 'chama.invite_phone') AS allowed), "
	"i AS (INSERT INTO invites (chama_id, created_by_user_id, code, invitee_phone, max_uses, expires_at) "
	"SELECT $5::bigint, $3::bigint, $6, $7, 1, now() + interval '7 days' FROM audit_ctx, ok WHERE ok.allowed "
	"RETURNING id, code), "
	"n AS (SELECT notify_phone($7, $8, 'invite', 'sms_invite', jsonb_build_object('chama', c.name, 'code', i.code), "
	"5, 'invite:' || i.id, $5::bigint) FROM i JOIN chamas c ON c.id = $5::bigint) "
	/* n is read, so it runs (a SELECT in WITH runs only as far as it is read) */
	"SELECT CASE WHEN ok.allowed THEN 'ok_invite_sent' ELSE 'err_not_official' END, (SELECT count(*) FROM n) "
	"FROM ok");

/* the check, the decision, the membership and the member's SMS in one
 * statement: an official whose role was taken a second ago decides nothing */
DB_STMT(chama_join_decide, 7,
	MEMBER_AUDIT_CTE
	", ok AS (SELECT policy_allows($3::bigint, $5::bigint, 'chama.join_decide') AS allowed), "
	"jr AS (UPDATE join_requests SET status = $7, decided_by_user_id = $3::bigint, decided_at = now() "
	"FROM audit_ctx, ok WHERE ok.allowed AND id = $6::bigint AND chama_id = $5::bigint AND status = 'pending' "
	"AND $7 IN ('approved', 'rejected') RETURNING user_id, chama_id), "
	"mb AS (INSERT INTO memberships (user_id, chama_id) SELECT user_id, chama_id FROM jr "
	"WHERE $7 = 'approved' ON CONFLICT (user_id, chama_id) DO UPDATE SET status = 'active', left_at = NULL "
	"RETURNING id), "
	"sms AS (SELECT notify(jr.user_id, 'join_approved', 'sms_join_approved', jsonb_build_object('chama', "
	"c.name), 5, 'join_request:' || $6 || ':approved', jr.chama_id) FROM jr JOIN chamas c ON c.id = jr.chama_id "
	"WHERE $7 = 'approved') "
	"SELECT CASE WHEN NOT ok.allowed THEN 'end_not_allowed' WHEN NOT EXISTS (SELECT 1 FROM jr) "
	"THEN 'err_already_decided' WHEN $7 = 'approved' THEN 'ok_approved' ELSE 'ok_rejected' END, "
	"(SELECT count(*) FROM sms) FROM ok");

DB_STMT(chama_join_requests, 3,
	POLICY_LIST("chama.join_decide",
		    "SELECT j.id, u.full_name || ' ' || u.phone FROM join_requests j "
		    "JOIN users u ON u.id = j.user_id WHERE j.chama_id = $2::bigint AND j.status = 'pending' "
		    "ORDER BY j.created_at LIMIT 200"));
