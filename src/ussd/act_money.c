/*
 * act_money: officials' money actions on USSD: recording cash a member
 * handed over, allocating money that landed in suspense, reversing a
 * payment.  Each is one dom/money statement whose schema function checks
 * the policy itself (whatever the menu showed), posts through ledger_post
 * (one transaction, idempotent, audited, dated by base/clock) with the
 * member's SMS in the outbox, and answers an outcome row (act_outcome).
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/util.h"
#include "dom/approval.h"
#include "dom/money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cash ---- */

static void cash_recorded(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_outcome(hop, r))
		return;
	hop_set_var(hop, "payer_name", PQgetvalue(r->res, 0, 2));
	hop_done(hop, NULL);
}

static void act_cash_record(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char key[128], at[CLOCK_TEXT_MAX];
	const char *p[10];

	if (!c)
		return;
	snprintf(key, sizeof(key), "ussd:%s:cash", hop_session_id(hop));
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "member_no");
	p[6] = hop_var(hop, "cash_amount");
	p[7] = key;
	p[8] = "sms_cash_receipt";	/* the member's receipt, by key */
	p[9] = clock_p_at(at);
	act_run(hop, &money_cash_record, p, cash_recorded);
}

/* ---- suspense ---- */

static void act_suspense_load(struct ussd_hop *hop)
{
	act_list_for(hop, "money.suspense_allocate", &money_suspense_list);
}

/* An official's money action on a picked row: the audit context, the
 * chama, two of the hop's variables, the member's notice (by key) and the
 * clock, in one statement that answers an outcome row. */
static void done(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_outcome(hop, r))
		return;
	hop_done(hop, NULL);
}

static void run_on_row(struct ussd_hop *hop, const struct db_stmt *s, const char *var1, const char *var2,
		       const char *notice, act_db_fn fn)
{
	const char *c = act_chama(hop);
	char at[CLOCK_TEXT_MAX];
	const char *p[9];

	if (!c)
		return;
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, var1);
	p[6] = hop_var(hop, var2);
	p[7] = notice;
	p[8] = clock_p_at(at);
	act_run(hop, s, p, fn);
}

static void act_suspense_allocate(struct ussd_hop *hop)
{
	run_on_row(hop, &money_suspense_allocate, "suspense_id", "member_no", "sms_allocated", done);
}

/* ---- reversals ---- */

static void act_reverse_load(struct ussd_hop *hop)
{
	act_list_for(hop, "money.payment_reverse", &money_reversible_list);
}

/* Dual control: the official asks, two other officials decide
 * (dom/approval); the reversal, and the member's notice, follow the last
 * approval.  The code names the request on both channels. */
static void reverse_requested(struct ussd_hop *hop, const struct db_result *r)
{
	if (r->status == DB_OK && PQntuples(r->res) == 1 && !PQgetisnull(r->res, 0, 2))
		hop_set_var(hop, "approval_code", PQgetvalue(r->res, 0, 2));
	done(hop, r);
}

static void act_contribution_reverse(struct ussd_hop *hop)
{
	run_on_row(hop, &approval_payment_reverse, "contribution_id", "reason", "sms_reversed", reverse_requested);
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
