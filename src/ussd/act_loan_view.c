/*
 * act_loan_view: a member's own loans on USSD (menus/76_loans_view.json):
 * Loans > My loans (each loan with what the ledger says is owed and its
 * next instalment, or where the application stands), a loan's schedule
 * (paged by the list engine: number, due date, instalment, paid or left)
 * and one instalment in detail.  Reads only (dom/loan_view.h); each row's
 * words are menu strings in the member's language, filled from scratch
 * session variables that are removed again.
 */
#include "ussd/act.h"
#include "base/util.h"
#include "dom/loan_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_money_var(struct ussd_hop *hop, const char *name, const char *cents)
{
	char out[40];

	util_format_cents(atoll(cents), out, sizeof(out));
	hop_set_var(hop, name, out);
}

/* One list item: the string key filled from the lv_* variables set, which
 * are then removed (they are this row's, not the session's). */
static void add_item(struct ussd_hop *hop, const char *key, const char *value, const char *const *vars)
{
	char *label = hop_text(hop, key);

	hop_add_item(hop, label, value);
	free(label);
	for (; *vars; vars++)
		hop_del_var(hop, *vars);
}

static bool paid_out(const char *status)
{
	return !strcmp(status, "active") || !strcmp(status, "defaulted") || !strcmp(status, "disbursed");
}

static void mine_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	static const char *const vars[] = { "lv_id", "lv_bal", "lv_next", "lv_date", "lv_amt", "lv_status", NULL };

	if (act_db_failed(hop, r))
		return;
	for (int i = 0; i < PQntuples(r->res); i++) {
		const char *status = PQgetvalue(r->res, i, LOAN_V_STATUS);
		const char *key;
		char skey[48], *words;

		hop_set_var(hop, "lv_id", PQgetvalue(r->res, i, LOAN_V_ID));
		if (!paid_out(status)) {
			snprintf(skey, sizeof(skey), "loan_status_%s", status);
			words = hop_text(hop, skey);
			hop_set_var(hop, "lv_status", words);
			free(words);
			set_money_var(hop, "lv_amt", PQgetvalue(r->res, i, LOAN_V_PRINCIPAL));
			key = "loan_mine_wait";
		} else {
			set_money_var(hop, "lv_bal", PQgetvalue(r->res, i, LOAN_V_BALANCE));
			if (!*PQgetvalue(r->res, i, LOAN_V_NEXT_CENTS)) {
				key = "loan_mine_owed";
			} else {
				set_money_var(hop, "lv_next", PQgetvalue(r->res, i, LOAN_V_NEXT_CENTS));
				hop_set_var(hop, "lv_date", PQgetvalue(r->res, i, LOAN_V_NEXT_DATE));
				key = strcmp(status, "defaulted") ? "loan_mine_item" : "loan_mine_late";
			}
		}
		add_item(hop, key, PQgetvalue(r->res, i, LOAN_V_ID), vars);
	}
	hop_done(hop, NULL);
}

/* Loans > My loans: the member's loans in the chama picked. */
static void act_loan_mine_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[2];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	act_run(hop, &loan_view_mine, p, mine_loaded);
}

static void schedule_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	static const char *const vars[] = { "lv_n", "lv_date", "lv_due", "lv_left", NULL };

	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) > 0)	/* the loan it is, when the member came by Loans > Schedule */
		hop_set_var(hop, "lv_loan", PQgetvalue(r->res, 0, LOAN_S_LOAN));
	for (int i = 0; i < PQntuples(r->res); i++) {
		bool paid = atoll(PQgetvalue(r->res, i, LOAN_S_LEFT)) == 0;

		hop_set_var(hop, "lv_n", PQgetvalue(r->res, i, LOAN_S_NO));
		hop_set_var(hop, "lv_date", PQgetvalue(r->res, i, LOAN_S_DATE));
		set_money_var(hop, "lv_due", PQgetvalue(r->res, i, LOAN_S_DUE));
		set_money_var(hop, "lv_left", PQgetvalue(r->res, i, LOAN_S_LEFT));
		add_item(hop, paid ? "loan_sched_paid" : "loan_sched_left", PQgetvalue(r->res, i, LOAN_S_NO), vars);
	}
	hop_done(hop, NULL);
}

/* A loan's schedule: the one chosen in My loans (lv_loan), or the member's
 * oldest loan with a schedule when they came by Loans > Schedule (which
 * sets lv_loan to 0). */
static void act_loan_schedule_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *loan = hop_var(hop, "lv_loan");
	const char *p[3];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = loan;
	if (!loan || !strcmp(loan, "0"))
		act_run(hop, &loan_view_schedule_first, p, schedule_loaded);
	else
		act_run(hop, &loan_view_schedule, p, schedule_loaded);
}

static void instalment_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_loan_view_none"))
		return;
	hop_set_var(hop, "li_n", PQgetvalue(r->res, 0, LOAN_I_NO));
	hop_set_var(hop, "li_of", PQgetvalue(r->res, 0, LOAN_I_OF));
	hop_set_var(hop, "li_date", PQgetvalue(r->res, 0, LOAN_I_DATE));
	set_money_var(hop, "li_p", PQgetvalue(r->res, 0, LOAN_I_PRINCIPAL));
	set_money_var(hop, "li_i", PQgetvalue(r->res, 0, LOAN_I_INTEREST));
	set_money_var(hop, "li_f", PQgetvalue(r->res, 0, LOAN_I_FEE));
	set_money_var(hop, "li_pen", PQgetvalue(r->res, 0, LOAN_I_PENALTY));
	set_money_var(hop, "li_paid", PQgetvalue(r->res, 0, LOAN_I_PAID));
	set_money_var(hop, "li_left", PQgetvalue(r->res, 0, LOAN_I_LEFT));
	hop_done(hop, NULL);
}

/* One instalment of the schedule shown (lv_loan, lv_inst). */
static void act_loan_inst_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[4];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_var(hop, "lv_loan");
	p[3] = hop_var(hop, "lv_inst");
	if (!p[2] || !p[3]) {
		hop_fail(hop, "err_loan_view_none");
		return;
	}
	act_run(hop, &loan_view_instalment, p, instalment_loaded);
}

/* The actions the menus name (menus/76_loans_view.json). */
const struct ussd_action act_loan_view_actions[] = {
	{ "loan_mine_load", act_loan_mine_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_schedule_load", act_loan_schedule_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_inst_load", act_loan_inst_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ NULL, NULL },
};
