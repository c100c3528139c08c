/*
 * sms_approve: dual control by SMS (dom/approval.h).
 *
 *   APPROVE / KUBALI <code> <PIN>     an official approves a request
 *   REJECT / KATAA <code> <PIN>       an official rejects it
 *   STOP / SIMAMISHA <code> <PIN>     a member objects in a payout's veto window
 *
 * Every one needs the sender's PIN, checked first by the inbound path (the
 * same path and lock-out as USSD, dom/pin).  A STOP moves no money, but a
 * spoofed sender's STOP would hold a payout the members wanted and count
 * for a member who never objected: it is a member's vote, so it is signed
 * like one.  The code is matched in the sender's own chamas only; the
 * statement checks the rule itself (officials, never the maker or the
 * beneficiary, once each) and carries the request out when it is met.
 * The reply is sms_appr_<outcome> with the request's code and counts.
 */
#include "sms/sms_cmd.h"
#include "app.h"
#include "base/clock.h"
#include "base/log.h"
#include "dom/approval.h"
#include "net/db.h"

#include <stdio.h>
#include <string.h>

static void replied_with(struct sms_cmd *c, const struct db_result *r, const char *fallback_code)
{
	char key[64];

	if (r->status != DB_OK || PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, 0)) {
		log_msg(LOG_WARN, sms_cmd_reqid(c), "sms approval: %s", r->error ? r->error : "no outcome row");
		sms_reply(c, "sms_busy");
		return;
	}
	sms_cmd_set_var(c, "code", fallback_code);
	snprintf(key, sizeof(key), "sms_appr_%s", PQgetvalue(r->res, 0, 0));
	sms_reply(c, key);
}

static void voted(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;

	if (r->status == DB_OK && PQntuples(r->res) == 1) {
		sms_cmd_set_var(c, "yes", PQgetvalue(r->res, 0, APPROVAL_V_YES));
		sms_cmd_set_var(c, "need", PQgetvalue(r->res, 0, APPROVAL_V_NEED));
	}
	replied_with(c, r, sms_cmd_arg(c));
}

static void vote(struct sms_cmd *c, const char *how, const char *usage)
{
	struct app *app = sms_cmd_app(c);
	char at[CLOCK_TEXT_MAX];
	const char *p[7] = { sms_cmd_phone(c), sms_cmd_reqid(c), sms_cmd_user(c), "sms", sms_cmd_arg(c), how,
			     clock_p_at(at) };

	if (!*sms_cmd_arg(c)) {
		sms_reply(c, usage);
		return;
	}
	db_run(app->db, &approval_vote, p, voted, c);
}

static void cmd_approve(struct sms_cmd *c)
{
	vote(c, "approve", "sms_approve_usage");
}

static void cmd_reject(struct sms_cmd *c)
{
	vote(c, "reject", "sms_approve_usage");
}

static void vetoed(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;

	if (r->status == DB_OK && PQntuples(r->res) == 1) {
		sms_cmd_set_var(c, "count", PQgetvalue(r->res, 0, APPROVAL_X_COUNT));
		sms_cmd_set_var(c, "need", PQgetvalue(r->res, 0, APPROVAL_X_NEED));
	}
	replied_with(c, r, sms_cmd_arg(c));
}

static void cmd_stop(struct sms_cmd *c)
{
	struct app *app = sms_cmd_app(c);
	char at[CLOCK_TEXT_MAX];
	const char *p[6] = { sms_cmd_phone(c), sms_cmd_reqid(c), sms_cmd_user(c), "sms", sms_cmd_arg(c),
			     clock_p_at(at) };

	if (!*sms_cmd_arg(c)) {
		sms_reply(c, "sms_stop_usage");
		return;
	}
	db_run(app->db, &approval_veto, p, vetoed, c);
}

/* The commands this module speaks, registered by main.c; keys are every
 * reply each can send (checked when the menus load). */
const struct sms_command sms_approve_commands[] = {
	{ "approve", { "APPROVE", "KUBALI" }, true, cmd_approve,
	  { "sms_approve_usage", "sms_appr_ok_vote_counted", "sms_appr_ok_approval_done",
	    "sms_appr_ok_approval_waiting", "sms_appr_ok_approval_rejected", "sms_appr_err_no_approval",
	    "sms_appr_err_approval_closed", "sms_appr_err_not_official", "sms_appr_err_own_request",
	    "sms_appr_err_beneficiary", "sms_appr_err_guarantor", "sms_appr_err_already_voted" } },
	{ "reject", { "REJECT", "KATAA" }, true, cmd_reject,
	  { "sms_approve_usage", "sms_appr_ok_reject_counted", "sms_appr_ok_approval_rejected",
	    "sms_appr_err_no_approval", "sms_appr_err_approval_closed", "sms_appr_err_not_official",
	    "sms_appr_err_own_request", "sms_appr_err_beneficiary", "sms_appr_err_guarantor", "sms_appr_err_already_voted" } },
	{ "stop", { "STOP", "SIMAMISHA" }, true, cmd_stop,
	  { "sms_stop_usage", "sms_appr_ok_veto_counted", "sms_appr_ok_veto_frozen", "sms_appr_err_no_veto",
	    "sms_appr_err_already_vetoed" } },
	{ NULL },
};
