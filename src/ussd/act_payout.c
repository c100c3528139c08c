/*
 * act_payout: officials asking for a payout to a member on USSD (Officials
 * > Payouts: member number, amount, reason, PIN) and seeing the chama's
 * payouts and their state.  The PIN is checked on the shared path (pin.c,
 * lock-out included) before the one statement that asks: payout_request
 * (dom/payout) checks the policy itself, refuses what the member's
 * savings or the chama's float cannot cover, and opens the approval (two
 * other officials, helper E); the money moves only when they approve.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/util.h"
#include "dom/payout.h"
#include "dom/pin.h"
#include "dom/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void payout_asked(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_outcome(hop, r))
		return;
	hop_set_var(hop, "payout_id", PQgetvalue(r->res, 0, 1));
	hop_set_var(hop, "approval_code", PQgetisnull(r->res, 0, 2) ? "-" : PQgetvalue(r->res, 0, 2));
	hop_done(hop, NULL);
}

static void pin_checked(const struct pin_result *pr, void *arg)
{
	struct ussd_hop *hop = arg;
	const char *c;
	const char *method = hop_var(hop, "payout_method");
	char at[CLOCK_TEXT_MAX];
	const char *p[10];

	if (!act_pin_ok(hop, pr))
		return;
	c = act_chama(hop);
	if (!c)
		return;
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "payout_member_no");
	p[6] = hop_var(hop, "payout_amount");
	p[7] = hop_var(hop, "payout_reason");
	p[8] = clock_p_at(at);
	p[9] = method && !strcmp(method, "cash") ? "cash" : "mpesa";
	act_run(hop, &payout_request_refund, p, payout_asked);
}

/* The official's PIN confirms the request (money out asks for it, as
 * approving does). */
static void act_payout_request(struct ussd_hop *hop)
{
	if (act_may(hop, "money.payout_request"))
		act_pin_check(hop, pin_checked);
}

static void act_payout_list_load(struct ussd_hop *hop)
{
	act_list_for(hop, "money.payout_list", &payout_list);
}

/* The actions the menus name (menus/55_payouts.json), registered by main.c. */
const struct ussd_action act_payout_actions[] = {
	{ "payout_request", act_payout_request },
	{ "payout_list_load", act_payout_list_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ NULL, NULL },
};
