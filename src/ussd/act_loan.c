/*
 * act_loan: Loans > Apply and Loans > My limit on USSD (menus/70_loans.json).
 *
 * Apply: the product (a list only when the chama lends by several), the
 * amount, the term; then the quote statement checks every rule loan_apply
 * will (so a refusal comes on the term screen, in one line saying why) and
 * returns the product's terms, from which base/loansched builds the
 * schedule here: the confirmation screen shows its first instalment, the
 * whole interest and the total to repay.  The member's PIN commits: the
 * quote runs again (the rules and terms as they are now) with the time the
 * application takes, the same rows go to loan_apply, and its
 * loan_schedule_record recomputes them from the terms in the database and
 * refuses any difference.  The application is keyed on the session: a
 * resent hop answers the loan it made.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/loan.h"
#include "dom/pin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_kes(struct ussd_hop *hop, const char *var, long long cents)
{
	char buf[32];

	util_format_cents(cents, buf, sizeof(buf));
	hop_set_var(hop, var, buf);
}

static void set_kes_text(struct ussd_hop *hop, const char *var, const char *cents)
{
	set_kes(hop, var, cents && *cents ? atoll(cents) : 0);
}

/* The product picked: its key, longest term and the word for its period
 * (months, weeks, fortnights) in the member's language. */
static void product_set(struct ussd_hop *hop, const char *key, const char *max_term, const char *freq)
{
	char name[40];
	char *word;

	hop_set_var(hop, "loan_product", key);
	hop_set_var(hop, "loan_max_term", max_term);
	snprintf(name, sizeof(name), "loan_per_%s", freq);
	word = hop_text(hop, name);
	hop_set_var(hop, "loan_period", word);
	free(word);
}

/* ---- the product ---- */

static void products_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	int n;

	if (act_db_failed(hop, r))
		return;
	n = PQntuples(r->res);
	if (n == 0) {
		hop_fail(hop, "err_loan_product");
		return;
	}
	if (n == 1) {
		product_set(hop, PQgetvalue(r->res, 0, LOAN_PROD_KEY), PQgetvalue(r->res, 0, LOAN_PROD_MAX_TERM),
			    PQgetvalue(r->res, 0, LOAN_PROD_FREQUENCY));
		hop_goto(hop, "loan_amount", NULL);
		return;
	}
	for (int i = 0; i < n; i++) {
		char value[64];

		/* the item carries what the next screens need: key|max_term|frequency */
		snprintf(value, sizeof(value), "%s|%s|%s", PQgetvalue(r->res, i, LOAN_PROD_KEY),
			 PQgetvalue(r->res, i, LOAN_PROD_MAX_TERM), PQgetvalue(r->res, i, LOAN_PROD_FREQUENCY));
		hop_add_item(hop,
			     PQgetvalue(r->res, i, hop_lang(hop) == LANG_SW ? LOAN_PROD_NAME_SW : LOAN_PROD_NAME_EN),
			     value);
	}
	hop_done(hop, NULL);
}

static void act_loan_products_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[1];

	if (!c)
		return;
	p[0] = c;
	act_run(hop, &loan_products_list, p, products_loaded);
}

static void act_loan_product_pick(struct ussd_hop *hop)
{
	const char *v = hop_var(hop, "loan_pick");
	char buf[64], *max, *freq;

	snprintf(buf, sizeof(buf), "%s", v ? v : "");
	max = strchr(buf, '|');
	freq = max ? strchr(max + 1, '|') : NULL;
	if (!freq) {
		hop_fail(hop, "err_loan_product");
		return;
	}
	*max++ = '\0';
	*freq++ = '\0';
	product_set(hop, buf, max, freq);
	hop_done(hop, NULL);
}

/* ---- the quote ---- */

static void quote_params(struct ussd_hop *hop, const char *chama, char cents[24], const char *at, const char *p[7])
{
	snprintf(cents, 24, "%lld", atoll(hop_var(hop, "loan_amount") ? hop_var(hop, "loan_amount") : "0") * 100);
	p[0] = chama;
	p[1] = hop_user(hop);
	p[2] = hop_var(hop, "loan_product") ? hop_var(hop, "loan_product") : "";
	p[3] = cents;
	p[4] = hop_var(hop, "loan_term");
	p[5] = at;
	p[6] = hop_app(hop)->cfg->ussd_timezone;
}

/* The schedule of the quote row's terms; NULL (the hop ended) when the
 * rules refused or the terms cannot be built (a bug: the statement checks
 * what loansched would refuse). */
static struct loan_plan *quoted_plan(struct ussd_hop *hop, const struct db_result *r)
{
	struct loan_terms_text t;
	struct loan_plan *plan;

	if (!act_outcome(hop, r))
		return NULL;
	loan_quote_terms(r->res, 0, &t);
	plan = xmalloc(sizeof(*plan));
	if (loan_plan_build(&t, atoll(hop_var(hop, "loan_amount")) * 100, atoi(hop_var(hop, "loan_term")), plan)) {
		free(plan);
		hop_unavailable(hop, "loan terms loansched refuses");
		return NULL;
	}
	return plan;
}

static void quoted(struct ussd_hop *hop, const struct db_result *r)
{
	struct loan_plan *plan = quoted_plan(hop, r);

	if (!plan)
		return;
	set_kes(hop, "loan_kes", plan->principal_cents);
	set_kes(hop, "loan_first", plan->first_cents);
	set_kes(hop, "loan_interest", plan->interest_cents);
	set_kes(hop, "loan_total", plan->total_cents);
	free(plan);
	hop_done(hop, NULL);
}

static void act_loan_quote(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char cents[24], at[CLOCK_TEXT_MAX];
	const char *p[7];

	if (!c)
		return;
	quote_params(hop, c, cents, clock_p_at(at), p);
	act_run(hop, &loan_quote_stmt, p, quoted);
}

/* ---- applying ---- */

static void applied(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key = act_outcome(hop, r);

	if (!key)
		return;
	hop_set_var(hop, "loan_id", PQgetvalue(r->res, 0, LOAN_A_LOAN));
	set_kes_text(hop, "loan_cover", PQgetvalue(r->res, 0, LOAN_A_COVER));
	hop_set_var(hop, "loan_place", PQgetisnull(r->res, 0, LOAN_A_PLACE) ? "-" : PQgetvalue(r->res, 0, LOAN_A_PLACE));
	if (!strcmp(key, "ok_loan_cover"))
		hop_goto(hop, "loan_cover", NULL);
	else if (!strcmp(key, "ok_loan_review"))
		hop_goto(hop, "loan_review", NULL);
	else if (!strcmp(key, "ok_loan_queued"))
		hop_goto(hop, "loan_queued", NULL);
	else
		hop_goto(hop, "loan_waiting", NULL);
}

static void requoted(struct ussd_hop *hop, const struct db_result *r)
{
	struct loan_plan *plan = quoted_plan(hop, r);
	const char *c = act_chama(hop);
	char cents[24], key[160];
	char *rows;
	const char *p[12];

	if (!plan || !c) {
		free(plan);
		return;
	}
	rows = loan_plan_json(plan);
	snprintf(cents, sizeof(cents), "%lld", plan->principal_cents);
	snprintf(key, sizeof(key), "ussd:%s:loan", hop_session_id(hop));
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = PQgetvalue(r->res, 0, LOAN_Q_KEY);
	p[6] = cents;
	p[7] = hop_var(hop, "loan_term");
	p[8] = rows;
	p[9] = key;
	p[10] = hop_var(hop, "loan_at");
	p[11] = hop_app(hop)->cfg->ussd_timezone;
	act_run(hop, &loan_apply_stmt, p, applied);
	free(rows);
	free(plan);
}

static void pin_checked(const struct pin_result *pr, void *arg)
{
	struct ussd_hop *hop = arg;
	const char *c;
	char cents[24], at[CLOCK_TEXT_MAX];
	const char *p[7];

	if (!act_pin_ok(hop, pr))
		return;
	c = act_chama(hop);
	if (!c)
		return;
	/* one time for the quote and the application: the schedule starts on
	 * the day loan_apply dates it */
	hop_set_var(hop, "loan_at", clock_p_at(at));
	quote_params(hop, c, cents, hop_var(hop, "loan_at"), p);
	act_run(hop, &loan_quote_stmt, p, requoted);
}

static void act_loan_apply(struct ussd_hop *hop)
{
	act_pin_check(hop, pin_checked);
}

/* ---- my limit ---- */

static void limit_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	const char *o;

	if (!act_one_row(hop, r, "err_loan_not_member"))
		return;
	o = PQgetvalue(r->res, 0, LOAN_L_OUTCOME);
	if (strcmp(o, "ok_loan_limit")) {
		char *why = hop_text(hop, o);

		hop_set_var(hop, "lim_why", why);
		hop_set_var(hop, "lim_days", PQgetvalue(r->res, 0, LOAN_L_MIN_DAYS));
		free(why);
		hop_goto(hop, "loan_limit_no", NULL);
		return;
	}
	set_kes_text(hop, "lim_max", PQgetvalue(r->res, 0, LOAN_L_LIMIT));
	set_kes_text(hop, "lim_savings", PQgetvalue(r->res, 0, LOAN_L_SAVINGS));
	set_kes_text(hop, "lim_owed", PQgetvalue(r->res, 0, LOAN_L_OWED));
	set_kes_text(hop, "lim_self", PQgetvalue(r->res, 0, LOAN_L_SELF_COVER));
	hop_set_var(hop, "lim_gmin", PQgetvalue(r->res, 0, LOAN_L_GUAR_MIN));
	hop_set_var(hop, "lim_gmax", PQgetvalue(r->res, 0, LOAN_L_GUAR_MAX));
	hop_done(hop, NULL);
}

static void act_loan_limit_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char at[CLOCK_TEXT_MAX];
	const char *p[4];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = clock_p_at(at);
	p[3] = hop_app(hop)->cfg->ussd_timezone;
	act_run(hop, &loan_limit_stmt, p, limit_loaded);
}

/* The actions menus/70_loans.json names, registered by act_register_all. */
const struct ussd_action act_loan_actions[] = {
	{ "loan_products_load", act_loan_products_load, ACT_NO_EFFECT },
	{ "loan_product_pick", act_loan_product_pick, ACT_NO_EFFECT },
	{ "loan_quote", act_loan_quote, ACT_NO_EFFECT },
	{ "loan_apply", act_loan_apply },
	{ "loan_limit_load", act_loan_limit_load, ACT_NO_EFFECT },
	{ NULL, NULL },
};
