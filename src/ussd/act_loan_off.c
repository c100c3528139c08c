/*
 * act_loan_off: Officials > Loans on USSD (menus/73_loans_officials.json).
 *
 * The applications (what each is waiting for), the approved loans to pay
 * out (send again by M-Pesa, cash handed over, cancel), and the defaulted
 * loans whose pledges may be called or whose rest may be written off
 * (each a request other officials decide in Requests to approve).  Each
 * write is one dom/loan_off statement whose schema function checks the
 * policy itself and answers an outcome row (act_outcome).
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "dom/loan_off.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void act_apps_load(struct ussd_hop *hop)
{
	act_list_for(hop, "loans.book", &loan_off_apps);
}

static void act_topay_load(struct ussd_hop *hop)
{
	act_list_for(hop, "loans.disburse", &loan_off_topay);
}

static void act_call_load(struct ussd_hop *hop)
{
	act_list_for(hop, "loans.call_pledges", &loan_off_to_call);
}

static void act_write_off_load(struct ussd_hop *hop)
{
	act_list_for(hop, "loans.write_off", &loan_off_to_write_off);
}

/* One application: its state in words (loanoff_status_<status>), the
 * amount, the borrower, the term and the cover, and the approval's code
 * while the officials decide it. */
static void app_shown(struct ussd_hop *hop, const struct db_result *r)
{
	char key[64], *words;

	if (!act_one_row(hop, r, "err_loanoff_none"))
		return;
	snprintf(key, sizeof(key), "loanoff_status_%s", PQgetvalue(r->res, 0, LOAN_OFF_A_STATUS));
	words = hop_text(hop, key);
	hop_set_var(hop, "loanoff_status", words);
	free(words);
	hop_set_var(hop, "loanoff_amount", PQgetvalue(r->res, 0, LOAN_OFF_A_AMOUNT));
	hop_set_var(hop, "loanoff_name", PQgetvalue(r->res, 0, LOAN_OFF_A_NAME));
	hop_set_var(hop, "loanoff_term", PQgetvalue(r->res, 0, LOAN_OFF_A_TERM));
	hop_set_var(hop, "loanoff_cover", PQgetvalue(r->res, 0, LOAN_OFF_A_COVER));
	hop_set_var(hop, "loanoff_guars", PQgetvalue(r->res, 0, LOAN_OFF_A_GUARS));
	hop_set_var(hop, "loanoff_code", *PQgetvalue(r->res, 0, LOAN_OFF_A_CODE) ?
		    PQgetvalue(r->res, 0, LOAN_OFF_A_CODE) : "-");
	hop_done(hop, NULL);
}

static void act_app_show(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[4];

	if (!c || !act_may(hop, "loans.book"))
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	p[3] = hop_var(hop, "loan_id");
	act_run(hop, &loan_off_app, p, app_shown);
}

/* ok_*: the END screen says it (loanoff_result, the key's words, and the
 * request's code when there is one); a refusal: the screen again with its
 * words (act_outcome). */
static void decided(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key = act_outcome(hop, r);
	char *words;

	if (!key)
		return;
	if (PQnfields(r->res) > LOAN_OFF_R_CODE && !PQgetisnull(r->res, 0, LOAN_OFF_R_CODE))
		hop_set_var(hop, "approval_code", PQgetvalue(r->res, 0, LOAN_OFF_R_CODE));
	words = hop_text(hop, key);
	hop_set_var(hop, "loanoff_result", words);
	free(words);
	hop_done(hop, NULL);
}

/* The audit context, the chama, the picked loan, then extra (or NULL) and
 * the clock. */
static void run_on_loan(struct ussd_hop *hop, const char *action, const struct db_stmt *s, const char *extra)
{
	const char *c = act_chama(hop);
	char at[CLOCK_TEXT_MAX];
	const char *p[8];
	int n = 6;

	if (!c || !act_may(hop, action))
		return;
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "loan_id");
	if (extra)
		p[n++] = extra;
	p[n] = clock_p_at(at);
	if (!p[5]) {
		hop_end(hop, "expired");
		return;
	}
	act_run(hop, s, p, decided);
}

static void act_disburse(struct ussd_hop *hop)
{
	const char *m = hop_var(hop, "loanoff_method");

	if (!m || (strcmp(m, "mpesa") && strcmp(m, "cash"))) {
		hop_end(hop, "expired");
		return;
	}
	run_on_loan(hop, "loans.disburse", &loan_off_disburse, m);
}

static void act_cancel(struct ussd_hop *hop)
{
	run_on_loan(hop, "loans.disburse", &loan_off_cancel, NULL);
}

static void act_call(struct ussd_hop *hop)
{
	run_on_loan(hop, "loans.call_pledges", &loan_off_call, NULL);
}

static void act_write_off(struct ussd_hop *hop)
{
	run_on_loan(hop, "loans.write_off", &loan_off_write_off, NULL);
}

/* The actions the menus name (menus/73_loans_officials.json), registered
 * by act_register_all. */
const struct ussd_action act_loan_off_actions[] = {
	{ "loan_off_apps_load", act_apps_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_off_app_show", act_app_show, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_off_topay_load", act_topay_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_off_call_load", act_call_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_off_wo_load", act_write_off_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_off_disburse", act_disburse },
	{ "loan_off_cancel", act_cancel },
	{ "loan_off_call", act_call },
	{ "loan_off_write_off", act_write_off },
	{ NULL, NULL },
};
