/*
 * sms_cmd: SMS commands from members without data bundles (see sms_cmd.h).
 *
 *   BAL / SALIO <PIN>      savings and loan balance per chama
 *   STMT / TAARIFA <PIN>   the last five movements
 *   LOAN / MKOPO <PIN>     my loans: owed (the ledger's), the next instalment
 *   HELP / MSAADA          the commands
 *   DISPUTE / PINGA        the last cash entry is wrong
 *
 * Case-insensitive.  A command that reveals money needs the PIN, checked by
 * the same path and lock-out as USSD (pin.c).  Each message is recorded
 * once per provider id in sms_inbound with the PIN masked (a resent
 * callback is answered and otherwise ignored), a flood from one number is
 * cut at [sms] inbound_per_hour, and every reply goes through the outbox
 * with the idempotency key sms_in:<provider>:<id>, never echoing the PIN.
 * A reply is a template key and its variables (dom/notify.h): the sender
 * renders it from the menus' SMS templates in the member's language when
 * it sends.  The figures come from the same statements the USSD screens
 * run (dom/account.h).
 */
#include "sms/sms_cmd.h"
#include "sms/sms_http.h"
#include "sms/sms_parse.h"
#include "app.h"
#include "base/config.h"
#include "net/db.h"
#include "net/httpd.h"
#include "base/log.h"
#include "base/menu.h"
#include "base/phone.h"
#include "dom/account.h"
#include "dom/inbox.h"
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

/* rows a reply lists at most: a few SMS parts, not a page */
#define MAX_LINES "5"

struct cmd {
	struct app *app;
	struct http_ctx *ctx;
	struct menu_set *menus;	/* reference held */
	const struct sms_command *command;	/* NULL: not a command we know */
	enum menu_lang lang;
	char provider[16], msg_id[130], phone[20], pin[8], user_id[24];
	char arg[16];		/* the word between the command and the PIN ("APPROVE <code> <PIN>"), or "" */
	char *masked;
	json_t *vars;		/* the reply's variables */
	bool replied;		/* the one reply is on its way (sms_reply*) */
};

/* the registered tables (one per module that speaks SMS) */
static const struct sms_command *command_tables[8];
static size_t n_command_tables;

/* What the inbound path itself replies with, whatever the command. */
static const char *const engine_keys[] = {
	"sms_signup_hint", "sms_unknown", "sms_need_pin", "sms_pin_wrong", "sms_locked", "sms_no_pin", "sms_busy",
	"sms_pin_locked", NULL,
};

void sms_commands_register(const struct sms_command *table)
{
	for (size_t i = 0; i < n_command_tables; i++)
		if (command_tables[i] == table)
			return;
	xassert(n_command_tables < ARRAY_LEN(command_tables));
	command_tables[n_command_tables++] = table;
}

int sms_commands_check(const struct menu_set *m, char *err, size_t errlen)
{
	for (const char *const *k = engine_keys; *k; k++) {
		if (!menu_sms_exists(m, *k)) {
			snprintf(err, errlen, "the SMS commands need the string \"%s\"", *k);
			return -1;
		}
	}
	for (size_t t = 0; t < n_command_tables; t++) {
		for (const struct sms_command *cmd = command_tables[t]; cmd->name; cmd++) {
			for (size_t i = 0; i < SMS_COMMAND_KEYS && cmd->keys[i]; i++) {
				if (!menu_sms_exists(m, cmd->keys[i])) {
					snprintf(err, errlen, "SMS command %s needs the string \"%s\"", cmd->name,
						 cmd->keys[i]);
					return -1;
				}
			}
		}
	}
	return 0;
}

static void cmd_free(struct cmd *c)
{
	/* every message is answered, once: the provider must hear 200 or 503 */
	xassert(c->replied);
	sodium_memzero(c->pin, sizeof(c->pin));
	json_decref(c->vars);
	free(c->masked);
	menu_set_unref(c->menus);
	http_ctx_release(c->ctx);
	free(c);
}

/* The provider's request is answered without a reply SMS (a resend, a
 * flood, a bad number): 200, or 503 so that it tries again. */
static void answer_only(struct cmd *c, int code)
{
	xassert(!c->replied);
	c->replied = true;
	if (code == 200)
		http_reply(c->ctx, 200, "text/plain", "OK", 2);
	else
		http_reply_error(c->ctx, code, "try again later");
	cmd_free(c);
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
 * number (rendered in their language when it is sent). */
static void reply(struct cmd *c, const char *key)
{
	char idem[200], *vars = json_dumps(c->vars, JSON_COMPACT);
	const char *p[8] = { c->phone, menu_lang_code(c->lang), "sms_reply", key, vars ? vars : "{}", "1", idem, NULL };

	/* one reply per message */
	xassert(!c->replied);
	c->replied = true;
	snprintf(idem, sizeof(idem), "sms_in:%s:%s", c->provider, c->msg_id);
	db_run(c->app->db, &dom_notify, p, reply_queued, c);
	free(vars);
}

/* ---- what a command sees (sms_cmd.h) ---- */

struct app *sms_cmd_app(struct sms_cmd *sc)
{
	return ((struct cmd *)sc)->app;
}

const char *sms_cmd_user(const struct sms_cmd *sc)
{
	return ((const struct cmd *)sc)->user_id;
}

const char *sms_cmd_reqid(const struct sms_cmd *sc)
{
	return http_ctx_reqid(((const struct cmd *)sc)->ctx);
}

const char *sms_cmd_phone(const struct sms_cmd *sc)
{
	return ((const struct cmd *)sc)->phone;
}

const char *sms_cmd_arg(const struct sms_cmd *sc)
{
	return ((const struct cmd *)sc)->arg;
}

void sms_cmd_set_var(struct sms_cmd *sc, const char *name, const char *value)
{
	set_var((struct cmd *)sc, name, value);
}

void sms_cmd_add_line(struct sms_cmd *sc, const char *key, json_t *vars)
{
	struct cmd *c = (struct cmd *)sc;
	json_t *lines = json_object_get(c->vars, "lines");

	if (!lines) {
		lines = json_array();
		json_object_set_new(c->vars, "lines", lines);
	}
	json_array_append_new(lines, json_pack("{s:s, s:o}", "template", key, "vars", vars));
}

void sms_reply(struct sms_cmd *sc, const char *key)
{
	reply((struct cmd *)sc, key);
}

/* ---- the money commands, after the PIN ---- */

/* False (and the reply sent) when the statement could not be answered. */
static bool lines_read(struct sms_cmd *c, const struct db_result *r)
{
	if (r->status == DB_OK)
		return true;
	log_msg(LOG_WARN, sms_cmd_reqid(c), "sms command query failed: %s", r->error);
	sms_reply(c, "sms_busy");
	return false;
}

static void set_money(json_t *v, const char *name, const char *cents)
{
	char money[40];

	util_format_cents(atoll(cents), money, sizeof(money));
	json_object_set_new(v, name, json_string(money));
}

/* The reply: head with {lines} (one line template per row, each rendered
 * in the member's language), or empty when there were none. */
static void reply_lines(struct sms_cmd *c, int rows, const char *head, const char *empty)
{
	sms_reply(c, rows ? head : empty);
}

static void balance_read(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;

	if (!lines_read(c, r))
		return;
	for (int i = 0; i < PQntuples(r->res); i++) {
		json_t *v = json_pack("{s:s}", "chama", PQgetvalue(r->res, i, ACCOUNT_BAL_CHAMA));

		set_money(v, "savings", PQgetvalue(r->res, i, ACCOUNT_BAL_SAVINGS));
		set_money(v, "welfare", PQgetvalue(r->res, i, ACCOUNT_BAL_WELFARE));
		set_money(v, "loan", PQgetvalue(r->res, i, ACCOUNT_BAL_LOAN));
		set_money(v, "arrears", PQgetvalue(r->res, i, ACCOUNT_BAL_ARREARS));
		sms_cmd_add_line(c, "sms_bal_line", v);
	}
	reply_lines(c, PQntuples(r->res), "sms_bal", "sms_no_chama");
}

/* BAL: every chama's balance, the statement the USSD balance screen runs */
static void cmd_balance(struct sms_cmd *c)
{
	struct app *app = sms_cmd_app(c);
	const char *p[5] = { sms_cmd_user(c), NULL, clock_fixed(), app->cfg->ussd_timezone, MAX_LINES };

	db_run(app->db, &account_balances, p, balance_read, c);
}

static void statement_read(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;

	if (!lines_read(c, r))
		return;
	for (int i = 0; i < PQntuples(r->res); i++) {
		char key[48];
		json_t *v;

		/* the statement's word is itself translated; its keys are few
		 * and listed in the table */
		snprintf(key, sizeof(key), "sms_what_%s", PQgetvalue(r->res, i, ACCOUNT_STMT_WHAT));
		v = json_pack("{s:{s:s}, s:s, s:s, s:s}", "what", "template", key, "date",
			      PQgetvalue(r->res, i, ACCOUNT_STMT_DATE), "chama", PQgetvalue(r->res, i, ACCOUNT_STMT_CHAMA),
			      "ref", PQgetvalue(r->res, i, ACCOUNT_STMT_REF));
		set_money(v, "amount", PQgetvalue(r->res, i, ACCOUNT_STMT_CENTS));
		sms_cmd_add_line(c, "sms_stmt_line", v);
	}
	reply_lines(c, PQntuples(r->res), "sms_stmt", "sms_no_transactions");
}

/* STMT: the newest movements in every chama, the ledger lines the USSD
 * statement lists */
static void cmd_statement(struct sms_cmd *c)
{
	struct app *app = sms_cmd_app(c);
	const char *p[4] = { sms_cmd_user(c), NULL, app->cfg->ussd_timezone, MAX_LINES };

	db_run(app->db, &account_statements, p, statement_read, c);
}

/* The line of one loan, the words of USSD Loans > My loans: what the ledger
 * says is owed and the next instalment once paid out, else the amount
 * applied for and where the application stands. */
static void loan_line(struct sms_cmd *c, PGresult *res, int i)
{
	const char *status = PQgetvalue(res, i, ACCOUNT_LOAN_STATUS);
	const char *next = PQgetvalue(res, i, ACCOUNT_LOAN_NEXT);
	bool paid_out = !strcmp(status, "active") || !strcmp(status, "defaulted") || !strcmp(status, "disbursed");
	json_t *v = json_pack("{s:s, s:s}", "chama", PQgetvalue(res, i, ACCOUNT_LOAN_CHAMA), "loan",
			      PQgetvalue(res, i, ACCOUNT_LOAN_ID));
	char key[48];

	if (!paid_out) {
		snprintf(key, sizeof(key), "sms_loan_status_%s", status);
		json_object_set_new(v, "status", json_pack("{s:s}", "template", key));
		set_money(v, "amount", PQgetvalue(res, i, ACCOUNT_LOAN_PRINCIPAL));
		sms_cmd_add_line(c, "sms_loan_view_wait", v);
		return;
	}
	set_money(v, "balance", PQgetvalue(res, i, ACCOUNT_LOAN_BALANCE));
	if (!*next) {
		sms_cmd_add_line(c, "sms_loan_view_owed", v);
		return;
	}
	set_money(v, "next", next);
	json_object_set_new(v, "date", json_string(PQgetvalue(res, i, ACCOUNT_LOAN_DATE)));
	sms_cmd_add_line(c, strcmp(status, "defaulted") ? "sms_loan_view_line" : "sms_loan_view_late", v);
}

static void loans_read(const struct db_result *r, void *arg)
{
	struct sms_cmd *c = arg;

	if (!lines_read(c, r))
		return;
	for (int i = 0; i < PQntuples(r->res); i++)
		loan_line(c, r->res, i);
	reply_lines(c, PQntuples(r->res), "sms_loan", "sms_no_loans");
}

/* LOAN: the member's loans, from the ledger (the statement over the view
 * USSD Loans > My loans reads) */
static void cmd_loans(struct sms_cmd *c)
{
	struct app *app = sms_cmd_app(c);
	const char *p[2] = { sms_cmd_user(c), MAX_LINES };

	db_run(app->db, &account_loans, p, loans_read, c);
}

static void cmd_help(struct sms_cmd *c)
{
	sms_reply(c, "sms_help");
}

static void pin_checked(const struct pin_result *r, void *arg)
{
	struct cmd *c = arg;
	char n[16];

	menu_lang_parse(r->lang, &c->lang);
	switch (r->outcome) {
	case PIN_OK:
		c->command->run((struct sms_cmd *)c);
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
	const char *p[4] = { c->user_id, c->phone, key, c->masked };

	snprintf(key, sizeof(key), "sms_in:%s:%s", c->provider, c->msg_id);
	db_run(c->app->db, &inbox_dispute, p, disputed, c);
}

static void cmd_dispute(struct sms_cmd *c)
{
	dispute((struct cmd *)c);
}

/* ---- the message, recorded once ---- */

static void recorded(const struct db_result *r, void *arg)
{
	struct cmd *c = arg;
	char req[180];
	struct pin_check_args a;
	struct pin_env env;

	if (r->status != DB_OK) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms inbound not recorded: %s", r->error);
		answer_only(c, 503);
		return;
	}
	if (PQntuples(r->res) == 0) {	/* the provider resent it */
		log_msg(LOG_INFO, http_ctx_reqid(c->ctx), "sms inbound %s:%s seen before; not answered again",
			c->provider, c->msg_id);
		answer_only(c, 200);
		return;
	}
	snprintf(c->user_id, sizeof(c->user_id), "%s", PQgetvalue(r->res, 0, INBOX_USER_ID));
	if (!*c->user_id) {
		reply(c, "sms_signup_hint");
		return;
	}
	menu_lang_parse(PQgetvalue(r->res, 0, INBOX_LANG), &c->lang);
	if (!c->command) {
		reply(c, "sms_unknown");
		return;
	}
	if (!c->command->pin) {
		c->command->run((struct sms_cmd *)c);
		return;
	}
	if (!*c->pin) {
		reply(c, "sms_need_pin");
		return;
	}
	snprintf(req, sizeof(req), "sms:%s:%s", c->provider, c->msg_id);
	a = (struct pin_check_args){ c->phone, c->pin, "sms", req };
	env = (struct pin_env){ c->app->db, c->app->auth, c->app->logins, c->app->cfg };
	pin_check(&env, &a, pin_checked, c);
}

static void record(struct cmd *c)
{
	const char *p[5] = { c->provider, c->msg_id, c->phone, c->masked, c->command ? c->command->name : "unknown" };

	db_run(c->app->db, &inbox_record, p, recorded, c);
}

static void flood_checked(const struct redis_result *r, void *arg)
{
	struct cmd *c = arg;

	if (r->status == REDIS_S_OK && r->reply && r->reply->type == REDIS_REPLY_INTEGER &&
	    r->reply->integer > c->app->cfg->sms_inbound_per_hour) {
		log_msg(LOG_WARN, http_ctx_reqid(c->ctx), "sms inbound from %s: over %d an hour, dropped", c->phone,
			c->app->cfg->sms_inbound_per_hour);
		answer_only(c, 200);
		return;
	}
	/* Redis down: serve it; the outbox and the PIN lock-out still bound it */
	record(c);
}

/* The command whose word (in any language) is `word`, or NULL. */
static const struct sms_command *find_command(const char *word, enum menu_lang *lang)
{
	for (size_t t = 0; t < n_command_tables; t++) {
		for (const struct sms_command *cmd = command_tables[t]; cmd->name; cmd++) {
			for (int l = 0; l < LANG_COUNT; l++) {
				if (cmd->word[l] && !strcasecmp(word, cmd->word[l])) {
					*lang = (enum menu_lang)l;
					return cmd;
				}
			}
		}
	}
	return NULL;
}

/* The command, its argument and its PIN (sms_words_split: "bal 4821",
 * "approve K7PM2X 4821"); the stored text has the PIN replaced by ****. */
static void parse(struct cmd *c, const char *textin)
{
	struct sms_words w;

	sms_words_split(textin, &w);
	/* the word's language, until we know the member's own */
	c->command = find_command(w.word, &c->lang);
	memcpy(c->pin, w.pin, sizeof(w.pin));
	memcpy(c->arg, w.arg, sizeof(w.arg));
	c->masked = w.masked;
	sodium_memzero(w.pin, sizeof(w.pin));
}

void sms_inbound(struct http_ctx *ctx, const char *provider, const struct sms_in *in)
{
	struct app *app = http_ctx_app(ctx);
	struct cmd *c;
	char key[64], rnd[33];
	static const char LUA_COUNT[] =
		"local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], 3600) end return n";
	const char *argv[4] = { "EVAL", LUA_COUNT, "1", key };

	c = xcalloc(1, sizeof(*c));
	c->app = app;
	c->ctx = ctx;
	http_ctx_hold(ctx);
	c->menus = menu_set_ref(app->menus);
	c->vars = json_object();
	snprintf(c->provider, sizeof(c->provider), "%s", provider);
	if (!*in->id) {	/* Kannel without %I: nothing to de-duplicate on */
		util_random_hex(rnd, 16);
		snprintf(c->msg_id, sizeof(c->msg_id), "%s", rnd);
	} else {
		snprintf(c->msg_id, sizeof(c->msg_id), "%s", in->id);
	}
	/* sender and text were checked at the boundary (sms_in_read) */
	snprintf(c->phone, sizeof(c->phone), "%s", in->phone);
	parse(c, in->text);
	snprintf(key, sizeof(key), "sms:in:%s", c->phone);
	redis_cmd(app->redis, flood_checked, c, 4, argv, NULL);
}

/* The commands this module speaks, registered by main.c. */
const struct sms_command sms_commands[] = {
	{ "bal", { "BAL", "SALIO" }, true, cmd_balance, { "sms_bal", "sms_bal_line", "sms_no_chama" } },
	{ "stmt", { "STMT", "TAARIFA" }, true, cmd_statement,
	  { "sms_stmt", "sms_stmt_line", "sms_no_transactions", "sms_what_in", "sms_what_reversed",
	    "sms_what_repaid", "sms_what_loan", "sms_what_out", "sms_what_adjusted" } },
	{ "loan", { "LOAN", "MKOPO" }, true, cmd_loans,
	  { "sms_loan", "sms_no_loans", "sms_loan_view_line", "sms_loan_view_late", "sms_loan_view_owed",
	    "sms_loan_view_wait", "sms_loan_status_applied", "sms_loan_status_queued", "sms_loan_status_under_review",
	    "sms_loan_status_approved" } },
	{ "help", { "HELP", "MSAADA" }, false, cmd_help, { "sms_help" } },
	{ "dispute", { "DISPUTE", "PINGA" }, false, cmd_dispute,
	  { "sms_dispute_sent", "sms_dispute_none", "sms_dispute_officials" } },
	{ NULL },
};
