/*
 * act_loan_guar: loan guarantors on USSD (menus/72_loan_guarantors.json).
 *
 * Loans > Requests for me: the requests waiting for this member's answer,
 * one request with the borrower's record (savings, loans repaid and open,
 * arrears) and the member's own free savings, Accept or Decline, the PIN
 * (the one PIN path, dom/pin), then the answer: one statement
 * (loan_guarantor_answer in schema/72_loan_guarantors.sql) that takes the
 * hold only if the free savings cover it, under the lock of the savings.
 * Loans > My guarantees: what the member guarantees, what is released, what
 * is at risk, and Name a guarantor for their own applied loan (member
 * number or phone, amount, PIN), repeated until the loan is covered.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/phone.h"
#include "base/util.h"
#include "dom/loan_guar.h"
#include "dom/pin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void act_requests_load(struct ussd_hop *hop)
{
	act_list_run(hop, &loan_guar_requests);
}

static void request_shown(struct ussd_hop *hop, const struct db_result *r)
{
	static const struct {
		const char *var;
		int col;
	} vars[] = {
		{ "guar_code", LOAN_GUAR_R_CODE },	   { "guar_borrower", LOAN_GUAR_R_BORROWER },
		{ "guar_amount", LOAN_GUAR_R_AMOUNT },	   { "guar_loan", LOAN_GUAR_R_LOAN },
		{ "guar_b_savings", LOAN_GUAR_R_SAVINGS }, { "guar_b_repaid", LOAN_GUAR_R_REPAID },
		{ "guar_b_open", LOAN_GUAR_R_OPEN },	   { "guar_b_arrears", LOAN_GUAR_R_ARREARS },
		{ "guar_free", LOAN_GUAR_R_FREE },
	};

	if (!act_one_row(hop, r, "err_loan_guar_no_request"))
		return;
	if (strcmp(PQgetvalue(r->res, 0, LOAN_GUAR_R_STATUS), "pending")) {
		hop_fail(hop, "err_loan_guar_answered");
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(vars); i++)
		hop_set_var(hop, vars[i].var, PQgetvalue(r->res, 0, vars[i].col));
	hop_done(hop, NULL);
}

static void act_request_show(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char at[CLOCK_TEXT_MAX];
	const char *p[5];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	p[3] = hop_var(hop, "guar_id");
	p[4] = clock_p_at(at);
	if (!p[3]) {
		hop_end(hop, "expired");
		return;
	}
	act_run(hop, &loan_guar_request, p, request_shown);
}

/* The answer's outcome: ok_* goes on to the END screen with its words; a
 * refusal (answered meanwhile, expired, savings short) ends the session
 * with its words: the request stays as it is, there is nothing to retry
 * on this screen. */
static void answered(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key;
	char *words;

	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, LOAN_GUAR_A_OUTCOME)) {
		hop_unavailable(hop, "no outcome row");
		return;
	}
	key = PQgetvalue(r->res, 0, LOAN_GUAR_A_OUTCOME);
	if (strncmp(key, "ok_", 3)) {
		hop_end(hop, key);
		return;
	}
	words = hop_text(hop, key);
	hop_set_var(hop, "guar_result", words);
	free(words);
	hop_set_var(hop, "guar_free", PQgetvalue(r->res, 0, LOAN_GUAR_A_FREE));
	hop_done(hop, NULL);
}

static void answer_pin_checked(const struct pin_result *pr, void *arg)
{
	struct ussd_hop *hop = arg;
	const char *answer = hop_var(hop, "guar_answer");
	char at[CLOCK_TEXT_MAX];
	const char *p[7];

	if (!act_pin_ok(hop, pr))
		return;
	act_audit_params(hop, p);
	p[4] = hop_var(hop, "guar_code");
	p[5] = answer && !strcmp(answer, "yes") ? "yes" : "no";
	p[6] = clock_p_at(at);
	if (!p[4] || !answer) {
		hop_end(hop, "expired");
		return;
	}
	act_run(hop, &loan_guar_answer, p, answered);
}

static void act_answer(struct ussd_hop *hop)
{
	act_pin_check(hop, answer_pin_checked);
}

static void summary_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_loan_guar_no_request"))
		return;
	hop_set_var(hop, "gm_loans", PQgetvalue(r->res, 0, LOAN_GUAR_S_LOANS));
	hop_set_var(hop, "gm_pledged", PQgetvalue(r->res, 0, LOAN_GUAR_S_PLEDGED));
	hop_set_var(hop, "gm_released", PQgetvalue(r->res, 0, LOAN_GUAR_S_RELEASED));
	hop_set_var(hop, "gm_held", PQgetvalue(r->res, 0, LOAN_GUAR_S_HELD));
	hop_set_var(hop, "gm_pending", PQgetvalue(r->res, 0, LOAN_GUAR_S_PENDING));
	hop_done(hop, NULL);
}

static void act_mine_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[2];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	act_run(hop, &loan_guar_summary, p, summary_loaded);
}

/* Who the applicant typed: a member number (up to 6 digits), else a phone
 * normalised to E.164 as the session's own; NULL when it is neither. */
static const char *who_of(struct ussd_hop *hop, char *buf, size_t len)
{
	const char *in = hop_var(hop, "guar_who");
	size_t n;

	if (!in)
		return NULL;
	n = strspn(in, "0123456789");
	if (n == strlen(in) && n >= 1 && n <= 6) {
		snprintf(buf, len, "%s", in);
		return buf;
	}
	if (phone_normalise(in, hop_app(hop)->cfg->ussd_country_code, buf, len) < 0)
		return NULL;
	return buf;
}

static void found(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_outcome(hop, r))
		return;
	hop_set_var(hop, "guar_name", PQgetvalue(r->res, 0, LOAN_GUAR_F_NAME));
	hop_set_var(hop, "guar_need", PQgetvalue(r->res, 0, LOAN_GUAR_F_NEED));
	hop_done(hop, NULL);
}

static void act_find(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char who[24];
	const char *p[3];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = who_of(hop, who, sizeof(who));
	if (!p[2]) {
		hop_fail(hop, "err_loan_guar_who");
		return;
	}
	hop_set_var(hop, "guar_who_e164", p[2]);
	act_run(hop, &loan_guar_find, p, found);
}

/* Asked: the screen that offers to name another.  A refusal of the amount
 * goes back to the amount; any other (the loan covered or gone meanwhile,
 * the rule's count reached) back to naming, with its words. */
static void added(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key;

	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, LOAN_GUAR_N_OUTCOME)) {
		hop_unavailable(hop, "no outcome row");
		return;
	}
	key = PQgetvalue(r->res, 0, LOAN_GUAR_N_OUTCOME);
	if (!strcmp(key, "err_loan_guar_over") || !strcmp(key, "err_loan_guar_amount")) {
		hop_set_var(hop, "guar_need", PQgetvalue(r->res, 0, LOAN_GUAR_N_NEED));
		hop_goto(hop, "loan_guar_add_amount", key);
		return;
	}
	if (strncmp(key, "ok_", 3)) {
		hop_goto(hop, "loan_guar_add", key);
		return;
	}
	hop_set_var(hop, "guar_code", PQgetvalue(r->res, 0, LOAN_GUAR_N_CODE));
	hop_set_var(hop, "guar_need", PQgetvalue(r->res, 0, LOAN_GUAR_N_NEED));
	hop_set_var(hop, "guar_name", PQgetvalue(r->res, 0, LOAN_GUAR_N_NAME));
	hop_done(hop, NULL);
}

static void add_pin_checked(const struct pin_result *pr, void *arg)
{
	struct ussd_hop *hop = arg;
	const char *c, *kes = hop_var(hop, "guar_kes");
	char at[CLOCK_TEXT_MAX], cents[32];
	const char *p[8];

	if (!act_pin_ok(hop, pr))
		return;
	c = act_chama(hop);
	if (!c)
		return;
	if (!kes || !hop_var(hop, "guar_who_e164")) {
		hop_end(hop, "expired");
		return;
	}
	/* whole KES (the amount input's own check): cents are two zeros more */
	snprintf(cents, sizeof(cents), "%s00", kes);
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "guar_who_e164");
	p[6] = cents;
	p[7] = clock_p_at(at);
	act_run(hop, &loan_guar_add, p, added);
}

static void act_add(struct ussd_hop *hop)
{
	act_pin_check(hop, add_pin_checked);
}

/* The actions the menus name (menus/72_loan_guarantors.json). */
const struct ussd_action act_loan_guar_actions[] = {
	{ "loan_guar_requests_load", act_requests_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_guar_request_show", act_request_show, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_guar_answer", act_answer },
	{ "loan_guar_mine_load", act_mine_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "loan_guar_find", act_find, ACT_NO_EFFECT },
	{ "loan_guar_add", act_add },
	{ NULL, NULL },
};
