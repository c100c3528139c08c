/*
 * sms_loan: loans by SMS (dom/loan.h).
 *
 *   LIMIT / KIKOMO <PIN>                       how much I can borrow today, per chama
 *   BORROW / KOPA <amount>*<instalments> <PIN> apply, on the chama's first product
 *
 * Both reveal money or move it, so the inbound path checks the PIN first.
 * The amount and the term are one word joined by '*' (the key every
 * keypad has): the command words are read as word, argument, PIN
 * (sms_parse), and a fourth word would be read as the PIN.  BORROW applies
 * in the member's only chama (in several, the reply says to use USSD): the
 * quote statement checks the rules, base/loansched builds the schedule,
 * loan_apply re-checks and records it, keyed on the message so a
 * redelivered SMS applies once; the reply gives the instalment, the
 * interest, the total, and what happens next (guarantors, the officials,
 * the queue).  A refusal says why in one line (sms_loanwhy_*).
 */
#include "sms/sms_cmd.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "dom/loan.h"
#include "net/db.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The refusals with a line of their own; any other (an approval that
 * cannot open now) reads as sms_loanwhy_other. */
static const char *const WHY[] = { "not_member", "product", "too_new", "term", "amount",
				   "over_limit", "open_max", "arrears", NULL };

static json_t *why_of(const char *outcome)
{
	char key[48];
	const char *w = "other";

	if (!strncmp(outcome, "err_loan_", 9))
		for (int i = 0; WHY[i]; i++)
			if (!strcmp(outcome + 9, WHY[i]))
				w = WHY[i];
	snprintf(key, sizeof(key), "sms_loanwhy_%s", w);
	return json_pack("{s:s}", "template", key);
}

static void set_kes(json_t *v, const char *name, long long cents)
{
	char money[32];

	util_format_cents(cents, money, sizeof(money));
	json_object_set_new(v, name, json_string(money));
}

static bool answered(struct sms_cmd *c, const struct db_result *r, const char *what)
{
	if (r->status == DB_OK)
		return true;
	log_msg(LOG_WARN, sms_cmd_reqid(c), "sms %s: %s", what, r->error ? r->error : "no answer");
	sms_reply(c, "sms_busy");
	return false;
}

/* ---- LIMIT ---- */

static void limits_read(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;

	if (!answered(c, r, "limit"))
		return;
	for (int i = 0; i < PQntuples(r->res); i++) {
		const char *o = PQgetvalue(r->res, i, LOAN_L_OUTCOME);
		json_t *v = json_pack("{s:s}", "chama", PQgetvalue(r->res, i, LOAN_L_CHAMA));

		if (strcmp(o, "ok_loan_limit")) {
			json_object_set_new(v, "why", why_of(o));
			sms_cmd_add_line(c, "sms_loanlim_no_line", v);
			continue;
		}
		set_kes(v, "limit", atoll(PQgetvalue(r->res, i, LOAN_L_LIMIT)));
		set_kes(v, "self", atoll(PQgetvalue(r->res, i, LOAN_L_SELF_COVER)));
		json_object_set_new(v, "gmin", json_string(PQgetvalue(r->res, i, LOAN_L_GUAR_MIN)));
		json_object_set_new(v, "gmax", json_string(PQgetvalue(r->res, i, LOAN_L_GUAR_MAX)));
		sms_cmd_add_line(c, "sms_loanlim_line", v);
	}
	sms_reply(c, PQntuples(r->res) ? "sms_loanlim" : "sms_no_chama");
}

static void cmd_limit(struct sms_cmd *c)
{
	struct app *app = sms_cmd_app(c);
	char at[CLOCK_TEXT_MAX];
	const char *p[3] = { sms_cmd_user(c), clock_p_at(at), app->cfg->ussd_timezone };

	db_run(app->db, &loan_limits_all, p, limits_read, c);
}

/* ---- BORROW ---- */

/* What one BORROW carries from statement to statement. */
struct borrow {
	struct sms_cmd *c;
	char chama[24], chama_name[128], at[CLOCK_TEXT_MAX];
	long long cents;
	int term;
	struct loan_plan plan;
};

/* "5000*6": whole shillings, '*', the instalments. */
static int borrow_parse(const char *arg, long long *cents, int *term)
{
	const char *star = strchr(arg, '*');
	long long kes = 0;
	int t = 0;

	if (!star || star == arg || !star[1] || star - arg > 9 || strlen(star + 1) > 3)
		return -1;
	for (const char *s = arg; s < star; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		kes = kes * 10 + (*s - '0');
	}
	for (const char *s = star + 1; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		t = t * 10 + (*s - '0');
	}
	if (kes < 1 || t < 1)
		return -1;
	*cents = kes * 100;
	*term = t;
	return 0;
}

static void borrow_end(struct borrow *b, const char *key)
{
	sms_reply(b->c, key);
	free(b);
}

/* The refusal's line is itself translated: the reply's one {lines} line. */
static void refuse(struct borrow *b, const char *outcome)
{
	json_t *why = why_of(outcome);

	sms_cmd_add_line(b->c, json_string_value(json_object_get(why, "template")), json_object());
	json_decref(why);
	borrow_end(b, "sms_borrow_refused");
}

static void applied(const struct db_result *r, void *arg)
{
	struct borrow *b = arg;
	struct sms_cmd *c = b->c;
	const char *o;
	char loan[32], n[16];

	if (!answered(c, r, "borrow")) {
		free(b);
		return;
	}
	if (PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, LOAN_A_OUTCOME)) {
		borrow_end(b, "sms_busy");
		return;
	}
	o = PQgetvalue(r->res, 0, LOAN_A_OUTCOME);
	if (strncmp(o, "ok_", 3)) {
		refuse(b, o);
		return;
	}
	snprintf(loan, sizeof(loan), "L%s", PQgetvalue(r->res, 0, LOAN_A_LOAN));
	snprintf(n, sizeof(n), "%d", b->term);
	sms_cmd_set_var(c, "chama", b->chama_name);
	sms_cmd_set_var(c, "loan", loan);
	sms_cmd_set_var(c, "term", n);
	{
		char money[32];

		util_format_cents(b->cents, money, sizeof(money));
		sms_cmd_set_var(c, "amount", money);
		util_format_cents(b->plan.first_cents, money, sizeof(money));
		sms_cmd_set_var(c, "first", money);
		util_format_cents(b->plan.interest_cents, money, sizeof(money));
		sms_cmd_set_var(c, "interest", money);
		util_format_cents(b->plan.total_cents, money, sizeof(money));
		sms_cmd_set_var(c, "total", money);
		util_format_cents(atoll(PQgetvalue(r->res, 0, LOAN_A_COVER)), money, sizeof(money));
		sms_cmd_set_var(c, "cover", money);
	}
	sms_cmd_set_var(c, "place", PQgetisnull(r->res, 0, LOAN_A_PLACE) ? "-" : PQgetvalue(r->res, 0, LOAN_A_PLACE));
	borrow_end(b, !strcmp(o, "ok_loan_cover")    ? "sms_borrow_cover"
		      : !strcmp(o, "ok_loan_review") ? "sms_borrow_review"
		      : !strcmp(o, "ok_loan_queued") ? "sms_borrow_queued"
						     : "sms_borrow_applied");
}

static void quoted(const struct db_result *r, void *arg)
{
	struct borrow *b = arg;
	struct sms_cmd *c = b->c;
	struct app *app = sms_cmd_app(c);
	struct loan_terms_text t;
	const char *o;
	char cents[24], term[16], key[200];
	char *rows;

	if (!answered(c, r, "borrow quote")) {
		free(b);
		return;
	}
	if (PQntuples(r->res) != 1) {
		borrow_end(b, "sms_busy");
		return;
	}
	o = PQgetvalue(r->res, 0, LOAN_Q_OUTCOME);
	if (strcmp(o, "ok_loan_quote")) {
		refuse(b, o);
		return;
	}
	loan_quote_terms(r->res, 0, &t);
	if (loan_plan_build(&t, b->cents, b->term, &b->plan)) {
		log_msg(LOG_ERROR, sms_cmd_reqid(c), "sms borrow: loansched refuses the quoted terms");
		borrow_end(b, "sms_busy");
		return;
	}
	rows = loan_plan_json(&b->plan);
	snprintf(cents, sizeof(cents), "%lld", b->cents);
	snprintf(term, sizeof(term), "%d", b->term);
	/* the message: a redelivery applies once */
	snprintf(key, sizeof(key), "sms:%s:loan", sms_cmd_reqid(c));
	{
		const char *p[12] = { sms_cmd_phone(c), sms_cmd_reqid(c), sms_cmd_user(c), "sms", b->chama,
				      PQgetvalue(r->res, 0, LOAN_Q_KEY), cents, term, rows, key, b->at,
				      app->cfg->ussd_timezone };

		db_run(app->db, &loan_apply_stmt, p, applied, b);
	}
	free(rows);
}

static void chamas_read(const struct db_result *r, void *arg)
{
	struct borrow *b = arg;
	struct sms_cmd *c = b->c;
	struct app *app = sms_cmd_app(c);
	char cents[24], term[16];

	if (!answered(c, r, "borrow chamas")) {
		free(b);
		return;
	}
	if (PQntuples(r->res) != 1) {
		borrow_end(b, PQntuples(r->res) ? "sms_borrow_which" : "sms_no_chama");
		return;
	}
	snprintf(b->chama, sizeof(b->chama), "%s", PQgetvalue(r->res, 0, 0));
	snprintf(b->chama_name, sizeof(b->chama_name), "%s", PQgetvalue(r->res, 0, 1));
	snprintf(cents, sizeof(cents), "%lld", b->cents);
	snprintf(term, sizeof(term), "%d", b->term);
	{
		const char *p[7] = { b->chama, sms_cmd_user(c), "", cents, term, b->at, app->cfg->ussd_timezone };

		db_run(app->db, &loan_quote_stmt, p, quoted, b);
	}
}

static void cmd_borrow(struct sms_cmd *c)
{
	struct app *app = sms_cmd_app(c);
	struct borrow *b;
	long long cents;
	int term;

	if (borrow_parse(sms_cmd_arg(c), &cents, &term)) {
		sms_reply(c, "sms_borrow_usage");
		return;
	}
	b = xcalloc(1, sizeof(*b));
	b->c = c;
	b->cents = cents;
	b->term = term;
	/* one time for the quote and the application (the schedule's day) */
	clock_p_at(b->at);
	{
		const char *p[1] = { sms_cmd_user(c) };

		db_run(app->db, &loan_member_chamas, p, chamas_read, b);
	}
}

/* The commands this module speaks, registered by main.c; keys are every
 * reply each can send (checked when the menus load; the sms_loanwhy_*
 * lines are notify_templates' in dom/notify.c). */
const struct sms_command sms_loan_commands[] = {
	{ "limit", { "LIMIT", "KIKOMO" }, true, cmd_limit,
	  { "sms_loanlim", "sms_loanlim_line", "sms_loanlim_no_line", "sms_no_chama" } },
	{ "borrow", { "BORROW", "KOPA" }, true, cmd_borrow,
	  { "sms_borrow_usage", "sms_borrow_which", "sms_no_chama", "sms_borrow_cover", "sms_borrow_review",
	    "sms_borrow_queued", "sms_borrow_applied", "sms_borrow_refused" } },
	{ NULL },
};
