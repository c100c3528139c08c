/*
 * sms_loan_guar: loan guarantors by SMS (dom/loan_guar.h).
 *
 *   YES / NDIO <code> <PIN>       a guarantor accepts a request
 *   NO / HAPANA <code> <PIN>      ... or declines it
 *   GUAR / DHAMANA <PIN>          what I guarantee, released, at risk
 *
 * Declining needs the PIN too: it moves no money, but a spoofed sender's
 * NO would throw away a pledge the guarantor meant to give and send the
 * applicant looking for another, so it is signed like the YES.  The code
 * is matched among the sender's own requests only; the statement takes
 * the hold only when the sender's free savings cover it (under the lock of
 * their savings).  The reply is sms_lguar_<outcome> with the request's
 * code, the borrower, the amount and the free savings left.
 */
#include "sms/sms_cmd.h"
#include "app.h"
#include "base/clock.h"
#include "base/log.h"
#include "dom/loan_guar.h"
#include "net/db.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

static void answered(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;
	char key[64];

	if (r->status != DB_OK || PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, LOAN_GUAR_A_OUTCOME)) {
		log_msg(LOG_WARN, sms_cmd_reqid(c), "sms guarantor answer: %s", r->error ? r->error : "no outcome row");
		sms_reply(c, "sms_busy");
		return;
	}
	sms_cmd_set_var(c, "code", PQgetisnull(r->res, 0, LOAN_GUAR_A_CODE) ? sms_cmd_arg(c)
									     : PQgetvalue(r->res, 0, LOAN_GUAR_A_CODE));
	sms_cmd_set_var(c, "borrower", PQgetvalue(r->res, 0, LOAN_GUAR_A_BORROWER));
	sms_cmd_set_var(c, "amount", PQgetvalue(r->res, 0, LOAN_GUAR_A_AMOUNT));
	sms_cmd_set_var(c, "free", PQgetvalue(r->res, 0, LOAN_GUAR_A_FREE));
	snprintf(key, sizeof(key), "sms_lguar_%s", PQgetvalue(r->res, 0, LOAN_GUAR_A_OUTCOME));
	sms_reply(c, key);
}

static void answer(struct sms_cmd *c, const char *yes)
{
	struct app *app = sms_cmd_app(c);
	char at[CLOCK_TEXT_MAX];
	const char *p[7] = { sms_cmd_phone(c), sms_cmd_reqid(c), sms_cmd_user(c), "sms", sms_cmd_arg(c), yes,
			     clock_p_at(at) };

	if (!*sms_cmd_arg(c)) {
		sms_reply(c, "sms_guar_answer_usage");
		return;
	}
	db_run(app->db, &loan_guar_answer, p, answered, c);
}

static void cmd_yes(struct sms_cmd *c)
{
	answer(c, "yes");
}

static void cmd_no(struct sms_cmd *c)
{
	answer(c, "no");
}

static void listed(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;
	int n;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, sms_cmd_reqid(c), "sms GUAR: %s", r->error);
		sms_reply(c, "sms_busy");
		return;
	}
	n = PQntuples(r->res);
	if (n == 0) {
		sms_reply(c, "sms_guar_none");
		return;
	}
	sms_cmd_set_var(c, "pledged", PQgetvalue(r->res, 0, LOAN_GUAR_M_TOTAL_PLEDGED));
	sms_cmd_set_var(c, "released", PQgetvalue(r->res, 0, LOAN_GUAR_M_TOTAL_RELEASED));
	sms_cmd_set_var(c, "held", PQgetvalue(r->res, 0, LOAN_GUAR_M_TOTAL_HELD));
	for (int i = 0; i < n; i++)
		sms_cmd_add_line(c, "sms_guar_mine_line",
				 json_pack("{ssssssss}", "chama", PQgetvalue(r->res, i, LOAN_GUAR_M_CHAMA), "borrower",
					   PQgetvalue(r->res, i, LOAN_GUAR_M_BORROWER), "pledged",
					   PQgetvalue(r->res, i, LOAN_GUAR_M_PLEDGED), "held",
					   PQgetvalue(r->res, i, LOAN_GUAR_M_HELD)));
	sms_reply(c, "sms_guar_mine");
}

static void cmd_guar(struct sms_cmd *c)
{
	const char *p[1] = { sms_cmd_user(c) };

	db_run(sms_cmd_app(c)->db, &loan_guar_mine, p, listed, c);
}

/* The commands this module speaks, registered by main.c; keys are every
 * reply each can send (checked when the menus load). */
#define ANSWER_KEYS                                                                                           \
	"sms_guar_answer_usage", "sms_lguar_err_loan_guar_no_request", "sms_lguar_err_loan_guar_answered",    \
		"sms_lguar_err_loan_guar_expired", "sms_lguar_err_loan_guar_loan_gone",                       \
		"sms_lguar_err_loan_guar_not_member"
const struct sms_command sms_loan_guar_commands[] = {
	{ "guar_yes", { "YES", "NDIO" }, true, cmd_yes,
	  { ANSWER_KEYS, "sms_lguar_ok_loan_guar_accepted", "sms_lguar_err_loan_guar_short" } },
	{ "guar_no", { "NO", "HAPANA" }, true, cmd_no, { ANSWER_KEYS, "sms_lguar_ok_loan_guar_declined" } },
	{ "guar", { "GUAR", "DHAMANA" }, true, cmd_guar, { "sms_guar_mine", "sms_guar_mine_line", "sms_guar_none" } },
	{ NULL },
};
