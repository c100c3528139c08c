/*
 * act_money: officials' money actions on USSD: recording cash a member
 * handed over, allocating money that landed in suspense, reversing a
 * payment.  Each is one statement that checks the official's role in the
 * database (treasurer or chairperson), whatever the menu showed, and posts
 * through the ledger functions (post_contribution, suspense_allocate,
 * reverse_contribution): one transaction, idempotent, audited, with the
 * member's SMS in the outbox.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/config.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MONEY_OFFICIAL(u, c) \
	"EXISTS (SELECT 1 FROM memberships WHERE user_id = " u " AND chama_id = " c " AND status = 'active' " \
	"AND role IN ('treasurer', 'chairperson'))"

/* Ends the hop for the errors the ledger functions raise on purpose. */
static bool money_refused(struct ussd_hop *hop, const struct db_result *r)
{
	if (r->status == DB_ERROR && r->sqlstate && !strcmp(r->sqlstate, "42501")) {
		hop_end(hop, "end_not_allowed");
		return true;
	}
	if (r->status == DB_ERROR && r->sqlstate && !strcmp(r->sqlstate, "P0002")) {
		hop_fail(hop, "err_member_number");
		return true;
	}
	return act_db_failed(hop, r);
}

/* ---- cash ---- */

static void cash_recorded(struct ussd_hop *hop, const struct db_result *r)
{
	if (money_refused(hop, r))
		return;
	if (PQntuples(r->res) != 1) {
		hop_fail(hop, "err_member_number");
		return;
	}
	if (strcmp(PQgetvalue(r->res, 0, 0), "t")) {
		hop_end(hop, "end_not_allowed");
		return;
	}
	hop_set_var(hop, "payer_name", PQgetvalue(r->res, 0, 1));
	hop_done(hop, NULL);
}

static void act_cash_record(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char key[128];
	const char *p[8];

	if (!c)
		return;
	snprintf(key, sizeof(key), "ussd:%s:cash", hop_session_id(hop));
	hop_audit_params(hop, p);
	p[3] = c;
	p[4] = hop_var(hop, "member_no");
	p[5] = hop_var(hop, "cash_amount");
	p[6] = key;
	p[7] = "sms_cash_receipt";	/* the member's receipt, by key */
	act_query(hop,
		  "SELECT " MONEY_OFFICIAL("$3::bigint", "$4::bigint") ", mb.full_name, "
		  "CASE WHEN " MONEY_OFFICIAL("$3::bigint", "$4::bigint") " THEN (SELECT pc.contribution_id FROM "
		  "post_contribution($4::bigint, mb.user_id, $6::bigint * 100, 'savings', 'cash', NULL, $7, $3::bigint, "
		  "'ussd', $1, $2, $8) pc) END FROM (SELECT m.user_id, u.full_name FROM memberships m "
		  "JOIN users u ON u.id = m.user_id WHERE m.chama_id = $4::bigint AND m.member_number = $5::int "
		  "AND m.status = 'active') mb",
		  8, p, cash_recorded);
}

/* ---- suspense ---- */

static void act_suspense_load(struct ussd_hop *hop)
{
	act_list_for_officials(hop, "suspense",
		  "SELECT e.id, 'KES ' || (l.amount_cents / 100) || ' ' || coalesce(f.external_reference, '') || ' ' || "
		  "to_char(e.created_at, 'DD Mon') FROM journal_entries e "
		  "JOIN journal_lines l ON l.entry_id = e.id AND l.side = 'credit' "
		  "LEFT JOIN financial_audit_logs f ON f.idempotency_key = 'suspense:' || e.idempotency_key "
		  "WHERE e.chama_id = $2::bigint AND e.kind = 'c2b_unmatched' AND NOT EXISTS (SELECT 1 FROM "
		  "journal_entries a WHERE a.idempotency_key = 'suspense:' || e.id || ':allocated') ORDER BY e.id LIMIT 100");
}

static void allocated(struct ussd_hop *hop, const struct db_result *r)
{
	if (money_refused(hop, r))
		return;
	hop_done(hop, NULL);
}

static void act_suspense_allocate(struct ussd_hop *hop)
{
	const char *p[6];

	hop_audit_params(hop, p);
	p[3] = hop_var(hop, "suspense_id");
	p[4] = hop_var(hop, "member_no");
	p[5] = "sms_allocated";	/* the member's notice, by key */
	act_query(hop, "SELECT * FROM suspense_allocate($4::bigint, $5::int, $3::bigint, 'ussd', $1, $2, $6)", 6, p,
		  allocated);
}

/* ---- reversals ---- */

static void act_reverse_load(struct ussd_hop *hop)
{
	act_list_for_officials(hop, "reversible",
		  "SELECT k.id, to_char(k.contributed_at, 'DD Mon') || ' KES ' || (k.amount_cents / 100) || "
		  "CASE WHEN k.amount_cents % 100 <> 0 THEN '.' || lpad((k.amount_cents % 100)::text, 2, '0') ELSE '' END "
		  "|| ' ' || u.full_name FROM contributions k JOIN users u ON u.id = k.user_id "
		  "WHERE k.chama_id = $2::bigint AND k.status = 'confirmed' AND k.deleted_at IS NULL "
		  "ORDER BY k.contributed_at DESC, k.id DESC LIMIT 30");
}

static void reversed(struct ussd_hop *hop, const struct db_result *r)
{
	if (money_refused(hop, r))
		return;
	if (PQgetisnull(r->res, 0, 0)) {
		hop_end(hop, "end_not_allowed");
		return;
	}
	hop_done(hop, NULL);
}

static void act_contribution_reverse(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[7];

	if (!c)
		return;
	hop_audit_params(hop, p);
	p[3] = hop_var(hop, "contribution_id");
	p[4] = hop_var(hop, "reason");
	p[5] = "sms_reversed";	/* the member's notice, by key */
	p[6] = c;
	act_query(hop,
		  "SELECT CASE WHEN " MONEY_OFFICIAL("$3::bigint", "$7::bigint") " AND EXISTS (SELECT 1 FROM contributions "
		  "WHERE id = $4::bigint AND chama_id = $7::bigint) THEN (SELECT r.entry_id FROM reverse_contribution("
		  "$4::bigint, $5, $3::bigint, 'ussd', $1, $2, $6) r) END",
		  7, p, reversed);
}

/* The actions the menus name (menus/NN_x.json), registered by main.c. */
const struct ussd_action act_money_actions[] = {
	{ "cash_record", act_cash_record },
	{ "suspense_load", act_suspense_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "suspense_allocate", act_suspense_allocate },
	{ "reverse_load", act_reverse_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "contribution_reverse", act_contribution_reverse },
	{ NULL, NULL },
};
