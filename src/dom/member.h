/*
 * member: a member's way into a chama.
 *
 * Statements that write take the audit context as their first four
 * parameters, in this order: $1 the member's MSISDN, $2 the request id,
 * $3 the acting user (decimal, '' for none), $4 the channel ('ussd',
 * 'sms', ...): AUDIT_CTE (dom/audit.h) sets them for the statement's
 * writes, so the row-change audit names who, where and how.  (The same
 * order in dom/chama.h and dom/money.h.)
 */
#ifndef CHAMAD_MEMBER_H
#define CHAMAD_MEMBER_H

#include "net/db.h"

/* The audit context with the channel as the fourth parameter. */
#define MEMBER_AUDIT_CTE AUDIT_CTE("$4")

/*
 * Joining with an invite code, in one statement: the code is looked up
 * (live chama, not revoked, not expired, not used up, for this phone if it
 * names one), a use is counted and the join request written.
 * $1..$4 audit ($1 is also the phone the invite may be for), $5 the code.
 * One row: outcome, chama name (NULL without a valid code).  Outcomes:
 * end_join_sent, end_join_pending, end_already_member, err_code.
 */
extern const struct db_stmt member_join_by_invite;

#endif
