/*
 * act_loan_repay: repaying a loan on USSD (Loans > Repay): the loan (picked
 * when there are several), then the next instalment or another amount by
 * M-Pesa (an STK push, credited once the STK query agrees: mpesa_settle ->
 * loan_repay), or from the member's savings (a request two officials
 * approve: loan_offset); the paybill account number L<loan id> is shown
 * for paying without the prompt.  Officials (Money > Loan repayments):
 * cash the treasurer received, and a request to reverse a repayment.  Each
 * write is one dom/loan_repay statement whose schema function checks the
 * loan and the policy itself and answers an outcome row.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/util.h"
#include "dom/loan_repay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The screen vars of the loan being repaid, from a loan_repay_open_list /
 * loan_repay_one row. */
static void set_loan_vars(struct ussd_hop *hop, const struct db_result *r, int row)
{
	const char *paybill = hop_app(hop)->cfg->mpesa_shortcode;

	hop_set_var(hop, "repay_loan", PQgetvalue(r->res, row, LREPAY_ID));
	hop_set_var(hop, "repay_ref", PQgetvalue(r->res, row, LREPAY_REF));
	hop_set_var(hop, "repay_balance", PQgetvalue(r->res, row, LREPAY_BALANCE));
	hop_set_var(hop, "repay_next", PQgetvalue(r->res, row, LREPAY_NEXT));
	hop_set_var(hop, "paybill", paybill && *paybill ? paybill : "-");
}

/* Several loans: the list; one: straight to it (nothing to pick). */
static void open_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) == 1) {
		set_loan_vars(hop, r, 0);
		hop_goto(hop, "loan_repay_how", NULL);
		return;
	}
	for (int i = 0; i < PQntuples(r->res); i++)
		hop_add_item(hop, PQgetvalue(r->res, i, LREPAY_LABEL), PQgetvalue(r->res, i, LREPAY_ID));
	hop_done(hop, NULL);
}

static void act_loan_repay_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[3];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	act_run(hop, &loan_repay_open_list, p, open_loaded);
}

static void one_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_repay_no_loan"))
		return;
	set_loan_vars(hop, r, 0);
	hop_done(hop, NULL);
}

/* The loan picked from the list (the one-loan path set its vars already,
 * and loads it again the same way: what it owes now). */
static void act_loan_repay_show(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[3];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_var(hop, "repay_loan");
	if (!p[2]) {
		hop_fail(hop, "err_repay_no_loan");
		return;
	}
	act_run(hop, &loan_repay_one, p, one_loaded);
}

/* What the confirmation pays: the next instalment (option 1) or the
 * amount typed (option 2 sets repay_pick "typed"). */
static void act_loan_repay_prepare(struct ussd_hop *hop)
{
	const char *pick = hop_var(hop, "repay_pick");
	const char *amount = pick && !strcmp(pick, "typed") ? hop_var(hop, "repay_amount") : hop_var(hop, "repay_next");

	if (!amount || !strcmp(amount, "0")) {
		hop_fail(hop, "err_repay_nothing_due");
		return;
	}
	hop_set_var(hop, "repay_pay", amount);
	hop_done(hop, NULL);
}

static void pushed(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_daily_limit"))
		return;
	/* as a contribution's push (act_chama.c): due push_delay_ms from now,
	 * after this session has ended; this daemon's push job wakes then */
	if (hop_app(hop)->mpesa_requested)
		hop_app(hop)->mpesa_requested(hop_app(hop));
	hop_done(hop, NULL);
}

/* The END screen of an M-Pesa repayment: the request row is the push.
 * Limits from [mpesa] as for a contribution. */
static void act_loan_repay_push(struct ussd_hop *hop)
{
	const struct config *cfg = hop_app(hop)->cfg;
	const char *c = act_chama(hop), *amount = hop_var(hop, "repay_pay");
	char key[128], daily[16], delay[16];
	const char *p[11];
	long long kes;

	if (!c)
		return;
	if (!hop_app(hop)->mpesa) {
		hop_fail(hop, "err_mpesa_off");
		return;
	}
	if (!amount || util_parse_ll(amount, cfg->mpesa_min_amount, cfg->mpesa_max_amount, &kes) < 0) {
		hop_fail(hop, "err_amount_limit");
		return;
	}
	snprintf(key, sizeof(key), "ussd:%s:loan_repay", hop_session_id(hop));
	snprintf(daily, sizeof(daily), "%d", cfg->mpesa_daily_limit);
	snprintf(delay, sizeof(delay), "%d", cfg->mpesa_push_delay_ms);
	hop_audit_params(hop, p);
	p[3] = c;
	p[4] = amount;
	p[5] = hop_var(hop, "repay_loan");
	p[6] = key;
	p[7] = daily;
	p[8] = cfg->ussd_timezone;
	p[9] = delay;
	p[10] = "ussd";
	act_run(hop, &loan_repay_mpesa_request, p, pushed);
}

/* An outcome row whose columns 1, 2 are an approval's id and code: the
 * code is the screen's (also when one is pending already). */
static void approval_asked(struct ussd_hop *hop, const struct db_result *r)
{
	if (r->status == DB_OK && PQntuples(r->res) == 1 && !PQgetisnull(r->res, 0, 2))
		hop_set_var(hop, "approval_code", PQgetvalue(r->res, 0, 2));
	if (!act_outcome(hop, r))
		return;
	hop_done(hop, NULL);
}

static void act_loan_offset_request(struct ussd_hop *hop)
{
	char at[CLOCK_TEXT_MAX];
	const char *p[7];

	act_audit_params(hop, p);
	p[4] = hop_var(hop, "repay_loan");
	p[5] = hop_var(hop, "offset_amount");
	p[6] = clock_p_at(at);
	act_run(hop, &loan_repay_offset_request, p, approval_asked);
}

/* ---- officials ---- */

static void cash_recorded(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_outcome(hop, r))
		return;
	hop_set_var(hop, "payer_name", PQgetvalue(r->res, 0, LCASH_PAYER));
	hop_set_var(hop, "loan_ref", PQgetvalue(r->res, 0, LCASH_REF));
	hop_set_var(hop, "loan_balance", PQgetvalue(r->res, 0, LCASH_BALANCE));
	hop_done(hop, NULL);
}

static void act_loan_cash_record(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char key[128], at[CLOCK_TEXT_MAX];
	const char *p[9];

	if (!c || !act_may(hop, "loans.repay_cash"))
		return;
	snprintf(key, sizeof(key), "ussd:%s:loan_cash", hop_session_id(hop));
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "loan_member_no");
	p[6] = hop_var(hop, "loan_cash_amount");
	p[7] = key;
	p[8] = clock_p_at(at);
	act_run(hop, &loan_repay_cash, p, cash_recorded);
}

static void act_loan_rev_load(struct ussd_hop *hop)
{
	act_list_for(hop, "loans.repay_reverse", &loan_repay_reversible_list);
}

static void act_loan_rev_request(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char at[CLOCK_TEXT_MAX];
	const char *p[8];

	if (!c || !act_may(hop, "loans.repay_reverse"))
		return;
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "loan_repayment_id");
	p[6] = hop_var(hop, "loan_rev_reason");
	p[7] = clock_p_at(at);
	act_run(hop, &loan_repay_reverse_request, p, approval_asked);
}

/* The actions the menus name (menus/74_loan_repay.json), registered by
 * act_register_all. */
const struct ussd_action act_loan_repay_actions[] = {
	{ "loan_repay_load", act_loan_repay_load, ACT_NO_EFFECT },
	{ "loan_repay_show", act_loan_repay_show, ACT_NO_EFFECT },
	{ "loan_repay_prepare", act_loan_repay_prepare, ACT_NO_EFFECT },
	{ "loan_repay_push", act_loan_repay_push },
	{ "loan_offset_request", act_loan_offset_request },
	{ "loan_cash_record", act_loan_cash_record },
	{ "loan_rev_load", act_loan_rev_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_rev_request", act_loan_rev_request },
	{ NULL, NULL },
};
