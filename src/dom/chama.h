/*
 * chama: the member's chamas and what a member reads of one (meetings,
 * members, officials, the chama itself); creating one; the officials'
 * invite codes and join-request list.
 *
 * Every read is scoped to a chama the user is an active member of, checked
 * in the statement; every protected action checks policy_allows() in the
 * statement that does it (policy.h), whatever the menu showed.
 *
 * Parameter conventions: lists take $1 user, $2 chama, $3 time zone and
 * return (value, label) rows; details take the same and $4 the chosen item,
 * and return one row of named columns (cents_* are money in cents); writes
 * take the audit context first (member.h: $1..$4).
 */
#ifndef CHAMAD_CHAMA_H
#define CHAMAD_CHAMA_H

#include "net/db.h"

/* A chama as picked: columns chama_id, name, role, allowed (the actions
 * the role may do, policy_allowed()). */

/* $1 user -> the user's active chamas, by name: chama_id, name, role, allowed. */
extern const struct db_stmt chama_mine;
/* $1 user, $2 chama -> that one, if the user is an active member of it. */
extern const struct db_stmt chama_pick;
/* $1..$4 audit, $5 name, $6 type, $7 amount in KES, $8 frequency, $9 the
 * first invite code -> chama_id, name, role (chairperson), allowed,
 * invite_code. */
extern const struct db_stmt chama_new;

/* Lists ($1 user, $2 chama, $3 time zone -> value, label). */
extern const struct db_stmt chama_meetings;	/* scheduled, from yesterday on */
extern const struct db_stmt chama_members;	/* officials first */

/* Details ($1 user, $2 chama, $3 time zone, $4 item -> one row). */
extern const struct db_stmt chama_meeting;	/* $4 meeting: m_title, m_when, m_where, m_agenda */
extern const struct db_stmt chama_member;	/* $4 user: p_name, p_phone, p_role, p_joined */
extern const struct db_stmt chama_officials;	/* $4 unused: officials ("role: name" lines) */
extern const struct db_stmt chama_about;	/* $4 unused: c_name, c_type, cents_c_amount, c_freq, c_members */

/* Officials (policy chama.invite_create): $1..$4 audit, $5 chama, $6 the
 * code -> outcome (ok_invite_created, err_not_official), code. */
extern const struct db_stmt chama_invite_new;
/* Officials (policy chama.invite_phone): a single-use invite for one phone,
 * 7 days, and its SMS (sms_invite, in the invitee's language if they are a
 * member already, else $8's).  $1..$4 audit, $5 chama, $6 the code, $7 the
 * invitee's phone, $8 the inviter's language -> outcome (ok_invite_sent,
 * err_not_official), messages queued. */
extern const struct db_stmt chama_invite_phone;
/* The pending join requests, for chama.join_decide (POLICY_LIST columns:
 * allowed, request id, "name phone"). */
extern const struct db_stmt chama_join_requests;
/* policy chama.join_decide: $1..$4 audit, $5 chama, $6 the request, $7
 * 'approved' | 'rejected' -> outcome (ok_approved, ok_rejected,
 * err_already_decided (decided by someone else meanwhile),
 * end_not_allowed (the role was taken away)), messages queued.  Approving
 * makes (or re-activates) the membership and tells the member by SMS. */
extern const struct db_stmt chama_join_decide;

#endif
