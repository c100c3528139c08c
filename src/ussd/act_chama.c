/*
 * act_chama: picking a chama, balance, meetings, members, officials, chama
 * info, joining with an invite code, creating a chama, and the officials'
 * actions (invite codes, deciding join requests).
 *
 * The statements are dom/chama's and dom/member's: every read is scoped to
 * a chama the user is an active member of, checked in the statement; every
 * official's action checks the policy in the statement itself, whatever
 * the menu showed (and act_may first, against the session's policy).
 */
#include "ussd/act.h"
#include "app.h"
#include "base/config.h"
#include "base/clock.h"
#include "base/util.h"
#include "dom/account.h"
#include "dom/chama.h"
#include "dom/member.h"
#include "dom/money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void set_money_var(struct ussd_hop *hop, const char *name, const char *cents)
{
	char out[40];

	util_format_cents(atoll(cents), out, sizeof(out));
	hop_set_var(hop, name, out);
}

/* The chama picked, the role in it and what the role may do (dom/policy.h:
 * the session keeps the policy with the role it goes with). */
static void pick_chama(struct ussd_hop *hop, const char *id, const char *name, const char *role, const char *allowed)
{
	hop_set_var(hop, "chama_id", id);
	hop_set_var(hop, "chama_name", name);
	hop_set_var(hop, "role", role);
	hop_set_var(hop, "allowed", allowed);
}

/* A row of (chama_id, name, role, allowed). */
static void pick(struct ussd_hop *hop, const PGresult *res, int row)
{
	pick_chama(hop, PQgetvalue(res, row, 0), PQgetvalue(res, row, 1), PQgetvalue(res, row, 2),
		   PQgetvalue(res, row, 3));
}

/* ---- choosing the chama ---- */

/* One chama: it is picked; none: no chama; more: the list to choose from.
 * col(src, i, c) gives column c (id, name, role, allowed) of row i. */
static void chamas_shown(struct ussd_hop *hop, int n, const char *(*col)(const void *src, int i, int c),
			 const void *src)
{
	if (n <= 1) {		/* nothing to choose */
		if (n == 1)
			pick_chama(hop, col(src, 0, 0), col(src, 0, 1), col(src, 0, 2), col(src, 0, 3));
		else {
			hop_del_var(hop, "chama_id");
			hop_del_var(hop, "role");
			hop_del_var(hop, "allowed");
			hop_set_var(hop, "chama_name", "");
		}
		hop_goto(hop, "main", NULL);
		return;
	}
	for (int i = 0; i < n; i++)
		hop_add_item(hop, col(src, i, 1), col(src, i, 0));
	hop_done(hop, NULL);
}

static const char *pg_col(const void *src, int i, int c)
{
	return PQgetvalue(src, i, c);
}

/* [[id, name, role, allowed], ...] as the PIN check left it */
static const char *json_col(const void *src, int i, int c)
{
	const char *v = json_string_value(json_array_get(json_array_get(src, (size_t)i), (size_t)c));

	return v ? v : "";
}

static void chamas_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	chamas_shown(hop, PQntuples(r->res), pg_col, r->res);
}

static void act_chamas_load(struct ussd_hop *hop)
{
	const char *p[1] = { hop_user(hop) };
	const char *pre = hop_prefetched(hop, "chamas");
	json_t *list = pre ? json_loads(pre, 0, NULL) : NULL;

	/* right after a log-in the PIN check brought the list along */
	if (json_is_array(list)) {
		chamas_shown(hop, (int)json_array_size(list), json_col, list);
		json_decref(list);
		return;
	}
	json_decref(list);

	act_run(hop, &chama_mine, p, chamas_loaded);
}

static void chama_selected(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_not_member"))
		return;
	pick(hop, r->res, 0);
	hop_done(hop, NULL);
}

static void act_chama_select(struct ussd_hop *hop)
{
	const char *p[2] = { hop_user(hop), hop_var(hop, "pick_id") };

	act_run(hop, &chama_pick, p, chama_selected);
}

/* ---- reading ---- */

static void balance_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_not_member"))
		return;
	set_money_var(hop, "savings", PQgetvalue(r->res, 0, ACCOUNT_BAL_SAVINGS));
	set_money_var(hop, "welfare", PQgetvalue(r->res, 0, ACCOUNT_BAL_WELFARE));
	set_money_var(hop, "loan", PQgetvalue(r->res, 0, ACCOUNT_BAL_LOAN));
	set_money_var(hop, "arrears", PQgetvalue(r->res, 0, ACCOUNT_BAL_ARREARS));
	hop_done(hop, NULL);
}

static void act_balance_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[5];

	if (!c)
		return;
	/* the statement SMS BAL runs too, for one chama (dom/account.h) */
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = clock_fixed();
	p[3] = hop_app(hop)->cfg->ussd_timezone;
	p[4] = "1";
	act_run(hop, &account_balance, p, balance_loaded);
}

static void act_meetings_load(struct ussd_hop *hop)
{
	act_list_run(hop, &chama_meetings);
}

static void act_members_load(struct ussd_hop *hop)
{
	act_list_run(hop, &chama_members);
}

/* One row of named columns into session variables. */
static void row_to_vars(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_not_found"))
		return;
	for (int i = 0; i < PQnfields(r->res); i++) {
		const char *name = PQfname(r->res, i);

		if (!strncmp(name, "cents_", 6))
			set_money_var(hop, name + 6, PQgetvalue(r->res, 0, i));
		else
			hop_set_var(hop, name, PQgetvalue(r->res, 0, i));
	}
	hop_done(hop, NULL);
}

/* A detail statement: $1 user, $2 chama, $3 time zone, $4 the chosen item. */
static void load_row(struct ussd_hop *hop, const struct db_stmt *s, const char *item_var)
{
	const char *c = act_chama(hop);
	const char *p[4];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	p[3] = item_var ? hop_var(hop, item_var) : "0";
	act_run(hop, s, p, row_to_vars);
}

static void act_meeting_show(struct ussd_hop *hop)
{
	load_row(hop, &chama_meeting, "meeting_id");
}

static void act_member_show(struct ussd_hop *hop)
{
	load_row(hop, &chama_member, "member_id");
}

static void act_officials_load(struct ussd_hop *hop)
{
	load_row(hop, &chama_officials, NULL);
}

static void act_chama_info_load(struct ussd_hop *hop)
{
	load_row(hop, &chama_about, NULL);
}

/* ---- joining with an invite code ---- */

/* Outcome: end_join_sent, end_join_pending, end_already_member (their
 * texts name the chama), or err_code. */
static void join_requested(struct ussd_hop *hop, const struct db_result *r)
{
	if (r->status == DB_OK && PQntuples(r->res) == 1 && !PQgetisnull(r->res, 0, 1))
		hop_set_var(hop, "join_chama", PQgetvalue(r->res, 0, 1));
	if (act_outcome(hop, r))
		hop_done(hop, NULL);
}

static void act_join_request(struct ussd_hop *hop)
{
	const char *p[5];

	act_audit_params(hop, p);
	p[4] = hop_var(hop, "invite_code");
	act_run(hop, &member_join_by_invite, p, join_requested);
}

/* ---- creating a chama ---- */

static void chama_created(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	pick(hop, r->res, 0);
	hop_set_var(hop, "invite_code", PQgetvalue(r->res, 0, 4));
	hop_done(hop, NULL);
}

static void act_create_chama(struct ussd_hop *hop)
{
	char code[9];
	const char *p[9];

	util_random_code(code, 8);
	act_audit_params(hop, p);
	p[4] = hop_var(hop, "create_name");
	p[5] = hop_var(hop, "create_type");
	p[6] = hop_var(hop, "create_amount");
	p[7] = hop_var(hop, "create_freq");
	p[8] = code;
	if (!p[4] || !p[5] || !p[6] || !p[7]) {
		hop_end(hop, "expired");
		return;
	}
	act_run(hop, &chama_new, p, chama_created);
}

/* ---- officials ---- */

static void invite_made(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_outcome(hop, r))
		return;
	hop_set_var(hop, "invite_code", PQgetvalue(r->res, 0, 1));
	hop_done(hop, NULL);
}

static void invite_made_phone(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_outcome(hop, r))
		hop_done(hop, NULL);
}

/* The policy check is in the statement (chama.invite_create). */
static void act_invite_create(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char code[9];
	const char *p[6];

	if (!c)
		return;
	util_random_code(code, 8);
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = code;
	act_run(hop, &chama_invite_new, p, invite_made);
}

/* An invite for one number (single use, 7 days) and its SMS, together;
 * the policy check in the statement (chama.invite_phone). */
static void act_invite_phone(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	char code[9];
	const char *p[8];

	if (!c)
		return;
	if (!act_may(hop, "chama.invite_phone"))
		return;
	util_random_code(code, 8);
	hop_set_var(hop, "invite_code", code);
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = code;
	p[6] = hop_var(hop, "invitee_phone");
	p[7] = menu_lang_code(hop_lang(hop));
	act_run(hop, &chama_invite_phone, p, invite_made_phone);
}

static void act_join_requests_load(struct ussd_hop *hop)
{
	act_list_for(hop, "chama.join_decide", &chama_join_requests);
}

/* Decided (by this official, or by another meanwhile): on to the list,
 * refreshed, with the outcome's words; the role taken away: the END. */
static void join_decided(struct ussd_hop *hop, const struct db_result *r)
{
	const char *key;

	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, 0)) {
		hop_unavailable(hop, "no outcome row");
		return;
	}
	key = PQgetvalue(r->res, 0, 0);
	if (!strncmp(key, "end_", 4))
		hop_end(hop, key);
	else
		hop_done(hop, key);
}

static void act_join_decide(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[7];

	if (!c)
		return;
	if (!act_may(hop, "chama.join_decide"))
		return;
	act_audit_params(hop, p);
	p[4] = c;
	p[5] = hop_var(hop, "request_id");
	p[6] = hop_var(hop, "decision");
	act_run(hop, &chama_join_decide, p, join_decided);
}

/* ---- contributing by M-Pesa ---- */

static void mpesa_requested(struct ussd_hop *hop, const struct db_result *r)
{
	if (!act_one_row(hop, r, "err_daily_limit"))
		return;
	/* the prompt reaches the phone only once this session has ended: the
	 * row is due push_delay_ms from now, and this daemon's push job wakes
	 * then (a hook in struct app: ussd never calls into mpesa) */
	if (hop_app(hop)->mpesa_requested)
		hop_app(hop)->mpesa_requested(hop_app(hop));
	hop_done(hop, NULL);
}

/*
 * The END screen of a contribution: a payment request, pushed a moment
 * after the session closes.  Limits from [mpesa]: per transaction here, per
 * day in the statement (requests still open count).
 */
static void act_mpesa_contribute(struct ussd_hop *hop)
{
	const struct config *cfg = hop_app(hop)->cfg;
	const char *c = act_chama(hop), *amount = hop_var(hop, "amount");
	char ref[16], key[128], daily[16], delay[16];
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
	snprintf(ref, sizeof(ref), "CHAMA%.7s", c);
	snprintf(key, sizeof(key), "ussd:%s:contribute", hop_session_id(hop));
	snprintf(daily, sizeof(daily), "%d", cfg->mpesa_daily_limit);
	hop_audit_params(hop, p);
	p[3] = c;
	p[4] = amount;
	p[5] = ref;
	p[6] = key;
	p[7] = daily;
	p[8] = cfg->ussd_timezone;
	snprintf(delay, sizeof(delay), "%d", cfg->mpesa_push_delay_ms);
	p[9] = delay;
	p[10] = "ussd";
	/* the row is the push: due push_delay_ms from now, for any daemon */
	act_run(hop, &money_mpesa_request, p, mpesa_requested);
}

/* The member's last movements in this chama, newest first: the ledger
 * lines SMS STMT shows too (dom/account.h), as "DD Mon +1,500 QKX1". */
static void statement_loaded(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	for (int i = 0; i < PQntuples(r->res); i++) {
		char money[40], *label;

		util_format_cents(atoll(PQgetvalue(r->res, i, ACCOUNT_STMT_CENTS)), money, sizeof(money));
		label = xasprintf("%s %s%s %s", PQgetvalue(r->res, i, ACCOUNT_STMT_DATE),
				  strcmp(PQgetvalue(r->res, i, ACCOUNT_STMT_CREDIT), "t") ? "-" : "+", money,
				  PQgetvalue(r->res, i, ACCOUNT_STMT_REF));
		hop_add_item(hop, label, PQgetvalue(r->res, i, ACCOUNT_STMT_LINE_ID));
		free(label);
	}
	hop_done(hop, NULL);
}

static void act_statement_load(struct ussd_hop *hop)
{
	const char *c = act_chama(hop);
	const char *p[4];

	if (!c)
		return;
	p[0] = hop_user(hop);
	p[1] = c;
	p[2] = hop_app(hop)->cfg->ussd_timezone;
	p[3] = "50";
	act_run(hop, &account_statement, p, statement_loaded);
}

/* The actions the menus name (menus/NN_x.json), registered by main.c. */
const struct ussd_action act_chama_actions[] = {
	{ "chamas_load", act_chamas_load, ACT_NO_EFFECT },
	{ "chama_select", act_chama_select, ACT_NO_EFFECT },
	{ "balance_load", act_balance_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "meetings_load", act_meetings_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "meeting_show", act_meeting_show, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "members_load", act_members_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "member_show", act_member_show, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "officials_load", act_officials_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "chama_info_load", act_chama_info_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "join_request", act_join_request },
	{ "create_chama", act_create_chama },
	{ "invite_create", act_invite_create },
	{ "invite_phone", act_invite_phone },
	{ "join_requests_load", act_join_requests_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ "join_decide", act_join_decide },
	{ "mpesa_contribute", act_mpesa_contribute },
	{ "statement_load", act_statement_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ NULL, NULL },
};
