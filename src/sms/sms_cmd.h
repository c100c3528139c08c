/*
 * sms_cmd: the SMS commands members send, as tables.
 *
 * A module that speaks SMS exports a NULL-terminated table of commands
 * (struct sms_command) and main.c registers it with one line; the inbound
 * path (sms_cmd.c) records each message once, finds the command by its
 * word in either language, checks the PIN for the commands that reveal
 * money (the same path and lock-out as USSD, dom/pin.h), and then runs the
 * command, which answers with exactly one sms_reply / sms_reply_text.
 * Every reply is an SMS template key and its variables (dom/notify.h),
 * rendered by the sender in the member's language; the templates a command
 * names in `keys` are checked when the menus load, so a missing one
 * refuses the menus instead of sending its key.
 */
#ifndef CHAMAD_SMS_CMD_H
#define CHAMAD_SMS_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "base/menu.h"

#include <jansson.h>

struct app;
struct menu_set;
struct sms_cmd;

#define SMS_COMMAND_KEYS 12

struct sms_command {
	const char *name;		/* sms_inbound.command ([a-z_]{1,16}) and log lines */
	const char *word[LANG_COUNT];	/* what a member types, per language (any case) */
	bool pin;			/* "<word> <PIN>": reveals money, so the PIN is checked first */
	void (*run)(struct sms_cmd *c);	/* answers with exactly one sms_reply* */
	const char *keys[SMS_COMMAND_KEYS];	/* the menu strings it replies with */
};

/* Adds a module's table (kept by reference; NULL name ends it).  Before
 * the menus load and the first message arrives. */
void sms_commands_register(const struct sms_command *table);
/* Every string the inbound path and the registered commands need exists
 * in m (both languages: the loader already insists on both).  Returns 0,
 * or -1 with the missing key in err. */
int sms_commands_check(const struct menu_set *m, char *err, size_t errlen);

/* The money and help commands (BAL, STMT, LOAN, HELP, DISPUTE). */
extern const struct sms_command sms_commands[];
/* Dual control: APPROVE, REJECT, STOP (sms_approve.c). */
extern const struct sms_command sms_approve_commands[];
/* Loans: LIMIT, BORROW (sms_loan.c). */
extern const struct sms_command sms_loan_commands[];
/* Loan guarantors: YES, NO, GUAR (sms_loan_guar.c). */
extern const struct sms_command sms_loan_guar_commands[];

/* What a command sees of the message it answers. */
struct app *sms_cmd_app(struct sms_cmd *c);
const char *sms_cmd_user(const struct sms_cmd *c);	/* decimal user id (the sender is a member) */
const char *sms_cmd_reqid(const struct sms_cmd *c);
const char *sms_cmd_phone(const struct sms_cmd *c);	/* the sender, E.164 */
/* The word after the command when a PIN or nothing follows it ("APPROVE
 * <code> <PIN>": the code), else "". */
const char *sms_cmd_arg(const struct sms_cmd *c);
/* {name} for the reply's template; value copied. */
void sms_cmd_set_var(struct sms_cmd *c, const char *name, const char *value);
/* Appends a line to the reply's {lines}: the template `key` rendered with
 * vars (taken over), in the member's language, when the reply is sent. */
void sms_cmd_add_line(struct sms_cmd *c, const char *key, json_t *vars);
/* The reply: the SMS template `key` with the variables set.  Ends the
 * command. */
void sms_reply(struct sms_cmd *c, const char *key);

#endif
