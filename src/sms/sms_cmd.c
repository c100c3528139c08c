/*
 * sms_cmd: SMS commands from members without data bundles.
 *
 *   BAL / SALIO <PIN>      savings and loan balance per chama
 *   STMT / TAARIFA <PIN>   the last five transactions
 *   LOAN / MKOPO <PIN>     open loans and the next instalment
 *   HELP / MSAADA          the commands
 *
 * Case-insensitive.  A command that reveals money needs the PIN, checked by
 * the same path and lock-out as USSD (pin.c).  Each message is recorded
 * once per provider id in sms_inbound with the PIN masked (a resent
 * callback is answered and otherwise ignored), a flood from one number is
 * cut at [sms] inbound_per_hour, and every reply goes through the outbox
 * with the idempotency key sms_in:<provider>:<id>, never echoing the PIN.
 * A reply is a template key and its variables (dom/notify.h); the sender
 * renders it from the menus' SMS templates in the member's language.
 */
#include "sms/sms_http.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "net/httpd.h"
#include "base/log.h"
#include "base/menu.h"
#include "base/phone.h"
#include "dom/notify.h"
#include "dom/pin.h"
#include "base/clock.h"
#include "net/redis.h"
#include "base/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

enum cmd_kind { CMD_BAL, CMD_STMT, CMD_LOAN, CMD_HELP, CMD_DISPUTE, CMD_UNKNOWN };

static const struct {
	const char *word;
	enum cmd_kind kind;
	enum menu_lang lang;
	const char *name;
} words[] = {
	{ "BAL", CMD_BAL, LANG_EN, "bal" },	   { "SALIO", CMD_BAL, LANG_SW, "bal" },
	{ "STMT", CMD_STMT, LANG_EN, "stmt" },	   { "TAARIFA", CMD_STMT, LANG_SW, "stmt" },
	{ "LOAN", CMD_LOAN, LANG_EN, "loan" },	   { "MKOPO", CMD_LOAN, LANG_SW, "loan" },
	{ "HELP", CMD_HELP, LANG_EN, "help" },	   { "MSAADA", CMD_HELP, LANG_SW, "help" },
	{ "DISPUTE", CMD_DISPUTE, LANG_EN, "dispute" }, { "PINGA", CMD_DISPUTE, LANG_SW, "dispute" },
};

struct cmd {
	struct app *app;
	struct http_ctx *ctx;
	enum cmd_kind kind;
	enum menu_lang lang;
	char provider[16], msg_id[130], phone[20], pin[8], user_id[24];
	char *masked;
	json_t *vars;		/* the reply's variables */
};

static void cmd_free(struct cmd *c)
{
	sodium_memzero(c->pin, sizeof(c->pin));
	json_decref(c->vars);
	free(c->masked);
	http_ctx_release(c->ctx);
	free(c);
}

static void set_var(struct cmd *c, const char *name, const char *val)
{
	json_object_set_new(c->vars, name, json_string(val));
}

/* ---- the end of every path: the reply into the outbox ---- */

static void reply_queued(const struct db_result *r, void *arg)
{
	struct cmd *c = arg;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms reply not queued: %s", r->error);
		http_reply_error(c->ctx, 503, "try again later");
	} else {
		http_reply(c->ctx, 200, "text/plain", "OK", 2);
	}
	cmd_free(c);
}

/* The reply: template key and the variables set so far, to the sender's
 * number (theirs: rendered in their language when it is sent). */
static void reply(struct cmd *c, const char *key)
{
	char idem[200], *vars = json_dumps(c->vars, JSON_COMPACT);
	const char *p[8] = { c->phone, menu_lang_code(c->lang), "sms_reply", key, vars ? vars : "{}", "1", idem, NULL };

	snprintf(idem, sizeof(idem), "sms_in:%s:%s", c->provider, c->msg_id);
	db_run(c->app->db, &dom_notify, p, reply_queued, c);
	free(vars);
}

/* ---- the money commands, after the PIN ---- */

static void money_lines(const struct db_result *r, void *arg)
{
	struct cmd *c = arg;
	static const char *const line_keys[] = { "sms_bal_line", "sms_stmt_line", "sms_loan_line" };
	static const char *const empty_keys[] = { "sms_no_chama", "sms_no_transactions", "sms_no_loans" };
	static const char *const head_keys[] = { "sms_bal", "sms_stmt", "sms_loan" };
	static const char *const cols[][5] = {
		{ "chama", "savings", "loan", "arrears", "welfare" },
		{ "date", "what", "amount", "chama", "ref" },
		{ "chama", "outstanding", "next", "date", NULL },
	};
	json_t *lines;
	char money[40];
	int k = (int)c->kind;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms command query failed: %s", r->error);
		reply(c, "sms_busy");
		return;
	}
	/* one line template per row, rendered in the member's language */
	lines = json_array();
	for (int i = 0; i < PQntuples(r->res); i++) {
		json_t *v = json_object();

		for (int f = 0; f < 5 && cols[k][f]; f++) {
			const char *val = PQgetvalue(r->res, i, f);

			/* money columns come as cents */
			if (!strcmp(cols[k][f], "savings") || !strcmp(cols[k][f], "loan") ||
			    !strcmp(cols[k][f], "amount") || !strcmp(cols[k][f], "outstanding") ||
			    !strcmp(cols[k][f], "next") || !strcmp(cols[k][f], "arrears") ||
			    !strcmp(cols[k][f], "welfare")) {
				util_format_cents(atoll(val), money, sizeof(money));
				json_object_set_new(v, cols[k][f], json_string(money));
			} else if (!strcmp(cols[k][f], "what")) {
				char wkey[32];

				/* a word that is itself translated */
				snprintf(wkey, sizeof(wkey), "sms_what_%s", val);
				json_object_set_new(v, "what", json_pack("{s:s}", "template", wkey));
			} else {
				json_object_set_new(v, cols[k][f], json_string(val));
			}
		}
		json_array_append_new(lines, json_pack("{s:s, s:o}", "template", line_keys[k], "vars", v));
	}
	json_object_set_new(c->vars, "lines", lines);
	reply(c, PQntuples(r->res) ? head_keys[k] : empty_keys[k]);
}

static void run_money(struct cmd *c)
{
	static const char *const sql[] = {
		/* BAL */
		"SELECT b.chama_name, b.savings_cents, b.loan_cents, coalesce(a.arrears_cents, 0), b.welfare_cents "
		"FROM member_balances b "
		"LEFT JOIN LATERAL member_arrears(b.user_id, b.chama_id, coalesce($3::timestamptz, now()), $2) a ON true "
		"WHERE b.user_id = $1 ORDER BY b.chama_name LIMIT 5",
		/* STMT: money in and out, newest first */
		"SELECT to_char(t AT TIME ZONE $2, 'DD Mon'), what, amount_cents, chama, ref FROM ("
		" SELECT k.contributed_at AS t, 'in' AS what, k.amount_cents, c.name AS chama,"
		" coalesce(k.external_reference, k.method) AS ref FROM contributions k"
		" JOIN chamas c ON c.id = k.chama_id WHERE k.user_id = $1 AND k.status = 'confirmed'"
		" AND k.deleted_at IS NULL AND ($3::text IS NULL OR true)"
		" UNION ALL SELECT r.paid_at, 'repaid', r.amount_cents, c.name, coalesce(r.external_reference, r.method)"
		" FROM loan_repayments r JOIN loans l ON l.id = r.loan_id JOIN chamas c ON c.id = l.chama_id"
		" WHERE r.user_id = $1 AND r.status = 'confirmed'"
		" UNION ALL SELECT coalesce(p.completed_at, p.requested_at), 'out', p.amount_cents, c.name,"
		" coalesce(p.external_reference, p.method)"
		" FROM payouts p JOIN chamas c ON c.id = p.chama_id WHERE p.user_id = $1 AND p.status = 'completed'"
		") x ORDER BY t DESC LIMIT 5",
		/* LOAN: open loans and their next instalment */
		"SELECT c.name, l.outstanding_balance_cents, coalesce(s.due, 0), "
		"coalesce(to_char(s.due_date, 'DD Mon'), '-') FROM loans l JOIN chamas c ON c.id = l.chama_id "
		"LEFT JOIN LATERAL (SELECT due_date, principal_due_cents + interest_due_cents + penalty_due_cents "
		"- principal_paid_cents - interest_paid_cents - penalty_paid_cents AS due FROM loan_schedules "
		"WHERE loan_id = l.id AND status IN ('pending', 'partially_paid', 'overdue') "
		"ORDER BY installment_no LIMIT 1) s ON true "
		"WHERE l.user_id = $1 AND l.status IN ('disbursed', 'active', 'defaulted') AND $2::text IS NOT NULL "
		"AND ($3::text IS NULL OR true) ORDER BY l.applied_at LIMIT 5",
	};
	const char *p[3] = { c->user_id, c->app->cfg->ussd_timezone, clock_fixed() };

	db_query(c->app->db, sql[c->kind], 3, p, money_lines, c);
}

static void pin_checked(const struct pin_result *r, void *arg)
{
	struct cmd *c = arg;
	char n[16];

	menu_lang_parse(r->lang, &c->lang);
	switch (r->outcome) {
	case PIN_OK:
		run_money(c);
		break;
	case PIN_WRONG:
		snprintf(n, sizeof(n), "%d", r->tries_left);
		set_var(c, "tries", n);
		reply(c, "sms_pin_wrong");
		break;
	case PIN_LOCKED:
		set_var(c, "until", r->until);
		reply(c, "sms_locked");
		break;
	case PIN_NO_PIN:
		reply(c, "sms_no_pin");
		break;
	case PIN_NO_USER:
		reply(c, "sms_signup_hint");
		break;
	case PIN_UNAVAILABLE:
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms command: PIN check unavailable: %s", r->error);
		reply(c, "sms_busy");
		break;
	}
}

/* ---- disputing a cash entry ---- */

static void disputed(const struct db_result *r, void *arg)
{
	struct cmd *c = arg;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms dispute not recorded: %s", r->error);
		reply(c, "sms_busy");
		return;
	}
	reply(c, PQntuples(r->res) ? "sms_dispute_sent" : "sms_dispute_none");
}

/*
 * DISPUTE (PINGA): the member says the last cash entry recorded for them
 * (within 14 days) is wrong.  The chama's treasurer and chairperson are told
 * by SMS and the dispute is in the audit trail; the entry itself stands
 * until an official reverses it.
 */
static void dispute(struct cmd *c)
{
	char key[200];
	const char *p[4];

	snprintf(key, sizeof(key), "sms_in:%s:%s", c->provider, c->msg_id);
	p[0] = c->user_id;
	p[1] = c->phone;
	p[2] = key;
	p[3] = c->masked;
	/* n is read in the last SELECT so that it runs: a SELECT in WITH runs
	 * only as far as something reads it */
	db_query(c->app->db,
		 "WITH k AS (SELECT k.id, k.chama_id, k.amount_cents, k.contributed_at, u.full_name FROM contributions k "
		 "JOIN users u ON u.id = k.user_id WHERE k.user_id = $1::bigint AND k.method = 'cash' "
		 "AND k.status = 'confirmed' AND k.contributed_at > now() - interval '14 days' "
		 "ORDER BY k.contributed_at DESC, k.id DESC LIMIT 1), "
		 "a AS (INSERT INTO audit_logs (actor_user_id, chama_id, action, entity_type, entity_id, after, channel, "
		 "msisdn, request_id) SELECT $1::bigint, k.chama_id, 'contribution.disputed', 'contributions', k.id, "
		 "jsonb_build_object('message', $4::text), 'sms', $2, left($3, 64) FROM k RETURNING id), "
		 "n AS (SELECT notify(o.user_id, 'dispute', 'sms_dispute_officials', jsonb_build_object('member', "
		 "k.full_name, 'amount', format_kes(k.amount_cents), 'date', to_char(k.contributed_at, 'DD Mon')), 3, "
		 "$3 || ':official:' || o.user_id, k.chama_id) FROM k JOIN memberships o ON o.chama_id = k.chama_id "
		 "AND o.status = 'active' AND o.role IN ('treasurer', 'chairperson')) "
		 "SELECT id, (SELECT count(*) FROM n) FROM k",
		 4, p, disputed, c);
}

/* ---- the message, recorded once ---- */

static void recorded(const struct db_result *r, void *arg)
{
	struct cmd *c = arg;
	char req[180];
	struct pin_check_args a;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms inbound not recorded: %s", r->error);
		http_reply_error(c->ctx, 503, "try again later");
		cmd_free(c);
		return;
	}
	if (PQntuples(r->res) == 0) {	/* the provider resent it */
		log_msg(LOG_INFO, http_ctx_reqid(c->ctx), "sms inbound %s:%s seen before; not answered again",
			c->provider, c->msg_id);
		http_reply(c->ctx, 200, "text/plain", "OK", 2);
		cmd_free(c);
		return;
	}
	snprintf(c->user_id, sizeof(c->user_id), "%s", PQgetvalue(r->res, 0, 1));
	if (!*c->user_id) {
		reply(c, "sms_signup_hint");
		return;
	}
	menu_lang_parse(PQgetvalue(r->res, 0, 2), &c->lang);
	if (c->kind == CMD_HELP) {
		reply(c, "sms_help");
		return;
	}
	if (c->kind == CMD_UNKNOWN) {
		reply(c, "sms_unknown");
		return;
	}
	if (c->kind == CMD_DISPUTE) {
		dispute(c);
		return;
	}
	if (!*c->pin) {
		reply(c, "sms_need_pin");
		return;
	}
	snprintf(req, sizeof(req), "sms:%s:%s", c->provider, c->msg_id);
	a = (struct pin_check_args){ c->phone, c->pin, "sms", req };
	pin_check(c->app, &a, pin_checked, c);
}

static void record(struct cmd *c)
{
	static const char *const names[] = { "bal", "stmt", "loan", "help", "dispute", "unknown" };
	const char *p[5] = { c->provider, c->msg_id, c->phone, c->masked, names[c->kind] };

	db_query(c->app->db,
		 "WITH u AS (SELECT id, preferred_language FROM users WHERE phone = $3 AND deleted_at IS NULL) "
		 "INSERT INTO sms_inbound (provider, provider_message_id, sender, text_masked, command, user_id) "
		 "SELECT $1, left($2, 128), $3, left($4, 1000), $5, (SELECT id FROM u) "
		 "ON CONFLICT (provider, provider_message_id) DO NOTHING "
		 "RETURNING id, coalesce(user_id::text, ''), coalesce((SELECT preferred_language FROM u), '')",
		 5, p, recorded, c);
}

static void flood_checked(const struct redis_result *r, void *arg)
{
	struct cmd *c = arg;

	if (r->status == REDIS_S_OK && r->reply && r->reply->type == REDIS_REPLY_INTEGER &&
	    r->reply->integer > c->app->cfg->sms_inbound_per_hour) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms inbound from %s: over %d an hour, dropped", c->phone,
			c->app->cfg->sms_inbound_per_hour);
		http_reply(c->ctx, 200, "text/plain", "OK", 2);
		cmd_free(c);
		return;
	}
	/* Redis down: serve it; the outbox and the PIN lock-out still bound it */
	record(c);
}

/* Splits "bal 4821" into the command and a 4-digit PIN; the stored text
 * has the PIN replaced by ****. */
static void parse(struct cmd *c, const char *textin)
{
	char first[16] = "", second[16] = "";
	const char *p = textin;
	size_t n;

	p += strspn(p, " \t\r\n");
	n = strcspn(p, " \t\r\n");
	if (n < sizeof(first))
		memcpy(first, p, n);
	p += n;
	p += strspn(p, " \t\r\n");
	n = strcspn(p, " \t\r\n");
	if (n < sizeof(second))
		memcpy(second, p, n);
	c->kind = CMD_UNKNOWN;
	for (size_t i = 0; i < ARRAY_LEN(words); i++) {
		if (!strcasecmp(first, words[i].word)) {
			c->kind = words[i].kind;
			c->lang = words[i].lang;	/* until we know the member's own */
		}
	}
	if (strlen(second) == 4 && strspn(second, "0123456789") == 4) {
		memcpy(c->pin, second, 5);
		c->masked = xstrdup(textin);
		{
			char *at = strstr(c->masked, second);

			if (at)
				memcpy(at, "****", 4);
		}
	} else {
		c->masked = xstrdup(textin);
	}
}

void sms_inbound(struct http_ctx *ctx, const char *provider)
{
	struct app *app = http_ctx_app(ctx);
	struct sms_params prm;
	const char *from, *txt, *id;
	struct cmd *c;
	char key[64], rnd[33];
	static const char LUA_COUNT[] =
		"local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], 3600) end return n";
	const char *argv[4] = { "EVAL", LUA_COUNT, "1", key };

	if (sms_params_read(ctx, &prm) < 0 || !(from = sms_param(&prm, "from")) || !(txt = sms_param(&prm, "text"))) {
		http_reply_error(ctx, 400, "need from and text");
		sms_params_free(&prm);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->app = app;
	c->ctx = ctx;
	http_ctx_hold(ctx);
	c->vars = json_object();
	snprintf(c->provider, sizeof(c->provider), "%s", provider);
	id = sms_param(&prm, "id");
	if (!id || !*id) {	/* Kannel without %I: nothing to de-duplicate on */
		util_random_hex(rnd, 16);
		id = rnd;
	}
	snprintf(c->msg_id, sizeof(c->msg_id), "%s", id);
	if (phone_normalise(from, app->cfg->ussd_country_code, c->phone, sizeof(c->phone)) < 0 ||
	    strlen(txt) > 1000) {
		log_msg(LOG_INFO, http_ctx_reqid(ctx), "sms inbound from a bad number or too long: ignored");
		http_reply(ctx, 200, "text/plain", "OK", 2);
		sms_params_free(&prm);
		cmd_free(c);
		return;
	}
	parse(c, txt);
	sms_params_free(&prm);
	snprintf(key, sizeof(key), "sms:in:%s", c->phone);
	redis_cmd(app->redis, flood_checked, c, 4, argv, NULL);
}
