/*
 * audit: the audit context a domain statement carries into the audit
 * trail.  The audit triggers (schema/20_audit.sql) read chamad.channel,
 * chamad.msisdn, chamad.request_id and chamad.actor_user_id from the
 * transaction; a statement sets them first, in a CTE the rest of it reads
 * (FROM audit_ctx, or CROSS JOIN), so the settings exist before any row is
 * written and end with the statement's transaction.
 *
 * AUDIT_CTE(channel) takes the channel as an SQL literal ("'ussd'") and
 * uses $1 MSISDN, $2 request id, $3 actor user id (decimal, "" for none):
 * the statement's first three parameters.  AUDIT_CTE_USSD is the one every
 * USSD statement uses (hop_audit_params fills those three).
 */
#ifndef CHAMAD_AUDIT_H
#define CHAMAD_AUDIT_H

#define AUDIT_CTE(channel)                                                                            \
	"WITH audit_ctx AS MATERIALIZED (SELECT set_config('chamad.channel', " channel ", true) AS a1, " \
	"set_config('chamad.msisdn', $1, true) AS a2, set_config('chamad.request_id', $2, true) AS a3, "  \
	"set_config('chamad.actor_user_id', $3, true) AS a4) "
#define AUDIT_CTE_USSD AUDIT_CTE("'ussd'")

#endif
