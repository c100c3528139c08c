/*
 * act_approve: Officials > Requests to approve on USSD (menus/50_approvals.json).
 *
 * The list of requests waiting for this official (dom/approval: pending,
 * not theirs, not for them, not yet voted on by them), one request's
 * details (what, amount, who asked, for whom, the votes so far), Approve or
 * Reject, then the official's PIN, checked by the one PIN path (dom/pin:
 * the lock-out included, the hash on the auth workers), then the vote: one
 * statement (approval_vote in schema/85_approvals.sql) that checks the
 * rule itself and, when the rule is met, carries the request out.
 */
#include "ussd/act.h"
#include "app.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/util.h"
#include "dom/approval.h"
#include "dom/auth.h"
#include "dom/pin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void act_approvals_load(struct ussd_hop *hop)
{
	act_list_for(hop, "approvals.decide", &approval_requests);
}

/* The kind's words (strings approval_what_<kind>) are filled from the
 * request's vars, each as the session variable appr_v_<name>. */
static void set_what(struct ussd_hop *hop, const char *kind, const char *vars_json)
{
	json_t *vars = json_loads(vars_json, 0, NULL);
	const char *k;
	json_t *v;
	char key[64], *what;

	json_object_foreach(vars, k, v) {
		if (json_is_string(v) && strlen(k) < 40) {
			snprintf(key, sizeof(key), "appr_v_%s", k);
			hop_set_var(hop, key, json_string_value(v));
		}
	}
	json_decref(vars);
	snprintf(key, sizeof(key), "approval_what_%s", kind);
	what = hop_text(hop, key);
	hop_set_var(hop, "appr_what", what);
	free(what);
}

static void shown(struct ussd_hop *hop, const struct db_result *r)
{
	const char *for_whom;

	if (!act_one_row(hop, r, "err_no_approval"))
		return;
	if (strcmp(PQgetvalue(r->res, 0, APPROVAL_D_STATUS), "pending")) {
		hop_fail(hop, "err_approval_closed");
		return;
	}
	for_whom = PQgetvalue(r->res, 0, APPROVAL_D_FOR);
	hop_set_var(hop, "appr_code", PQgetvalue(r->res, 0, APPROVAL_D_CODE));
	hop_set_var(hop, "appr_amount", PQgetvalue(r->res, 0, APPROVAL_D_AMOUNT));
	hop_set_var(hop, "appr_maker", PQgetvalue(r->res, 0, APPROVAL_D_MAKER));
	hop_set_var(hop, "appr_for", *for_whom ? for_whom : "-");
	hop_set_var(hop, "appr_yes", PQgetvalue(r->res, 0, APPROVAL_D_YES));
	hop_set_var(hop, "appr_no", PQgetvalue(r->res, 0, APPROVAL_D_NO));
	hop_set_var(hop, "appr_need", PQgetvalue(r->res, 0, APPROVAL_D_NEED));
	set_what(hop, PQgetvalue(r->res, 0, APPROVAL_D_KIND), PQgetvalue(r->res, 0, APPROVAL_D_VARS));
	hop_done(hop, NULL);
}

static void act_approval_show(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[4];

	if (!c || !act_may(hop, "approvals.decide"))
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	p[3] = hop_var(hop, "approval_id");
	act_run(hop, &approval_details, p, shown);
}

/* The vote's outcome: ok_* goes on to the END screen with its words
 * (appr_result); a refusal (decided meanwhile, voted already, the role
 * taken away) ends the session with its words: there is nothing to retry. */
static void voted(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key;
	char *words;

	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, APPROVAL_V_OUTCOME)) {
		hop_unavailable(hop, "no outcome row");
		return;
	}
	key = PQgetvalue(r->res, 0, APPROVAL_V_OUTCOME);
	hop_set_var(hop, "appr_yes", PQgetvalue(r->res, 0, APPROVAL_V_YES));
	hop_set_var(hop, "appr_no", PQgetvalue(r->res, 0, APPROVAL_V_NO));
	hop_set_var(hop, "appr_need", PQgetvalue(r->res, 0, APPROVAL_V_NEED));
	if (strncmp(key, "ok_", 3)) {
		hop_end(hop, key);
		return;
	}
	words = hop_text(hop, key);
	hop_set_var(hop, "appr_result", words);
	free(words);
	hop_done(hop, NULL);
}

static void pin_checked(const struct pin_result *r, void *arg)
{
	struct ussd_hop *hop = arg;
	const char *c = hop_var(hop, "chama_id");
	char at[CLOCK_TEXT_MAX];
	const char *p[7];

	if (!act_pin_ok(hop, r))
		return;
	act_audit_params(hop, p);
	p[4] = hop_var(hop, "appr_code");
	p[5] = hop_var(hop, "decision");
	p[6] = clock_p_at(at);
	if (!c || !p[4] || !p[5]) {
		hop_end(hop, "expired");
		return;
	}
	act_run(hop, &approval_vote, p, voted);
}

/* Approve or Reject was chosen and the PIN typed: the PIN first (the same
 * path as the log-in), then the vote. */
static void act_approval_decide(struct ussd_hop *hop)
{
	if (act_may(hop, "approvals.decide"))
		act_pin_check(hop, pin_checked);
}

/* The actions the menus name (menus/50_approvals.json), registered by main.c. */
const struct ussd_action act_approve_actions[] = {
	{ "approvals_load", act_approvals_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "approval_show", act_approval_show, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "approval_decide", act_approval_decide },
	{ NULL, NULL },
};
