/*
 * member: the acting member and their way into a chama.
 *
 * Statements that write take the audit context as their first four
 * parameters, in this order: $1 the member's MSISDN, $2 the request id,
 * $3 the acting user (decimal, '' for none), $4 the channel ('ussd',
 * 'sms', ...): DOM_AUDIT_CTE sets them for the statement's writes, so the
 * row-change audit names who, where and how.
 */
#ifndef CHAMAD_MEMBER_H
#define CHAMAD_MEMBER_H

#include "net/db.h"

/* "WITH audit_ctx AS MATERIALIZED (...)": the statement must read
 * audit_ctx (FROM audit_ctx) in each write, so it runs first. */
#define DOM_AUDIT_CTE \
	"WITH audit_ctx AS MATERIALIZED (SELECT audit_context($4::text, $1::text, $2::text, "   \
	"nullif($3::text, '')::bigint) AS a) "

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
