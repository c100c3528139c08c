/*
 * notify: see notify.h.
 */
#include "dom/notify.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdlib.h>

#include <jansson.h>

/*
 * The writers and what they supply.  Each line names where the message is
 * written, so a translator adding a variable to a template sees at once
 * whether anything fills it (the loader says so too).
 */
const struct menu_sms_need notify_templates[] = {
	/* post_contribution (schema/40_money.sql): chama, amount, receipt
	 * (its external reference; cash has none) */
	{ "sms_cash_receipt", "chama amount" },
	{ "sms_mpesa_receipt", "chama amount receipt" },
	/* suspense_allocate: the M-Pesa receipt the money came with */
	{ "sms_allocated", "chama amount receipt" },
	/* reverse_contribution */
	{ "sms_reversed", "chama amount reason" },
	/* mpesa_settle (schema/50_mpesa.sql), the code's own text if any */
	{ "sms_mpesa_failed", "amount chama desc" },
	{ "sms_mpesa_failed_*", "amount chama desc" },
	/* mpesa.c: a push that never started */
	{ "sms_mpesa_push_failed", "amount chama" },
	/* send_reminders (schema/60_notify.sql) */
	{ "sms_due_reminder", "chama amount date" },
	{ "sms_arrears", "chama amount date" },
	/* act_auth.c: codes; pin.c: the lock-out alert */
	{ "sms_otp", "code minutes" },
	{ "sms_pin_locked", "minutes" },
	/* act_chama.c */
	{ "sms_invite", "chama code" },
	{ "sms_join_approved", "chama" },
	/* sms_cmd.c: replies, the lines they list, and the dispute */
	{ "sms_help", "" },
	{ "sms_unknown", "" },
	{ "sms_signup_hint", "" },
	{ "sms_need_pin", "" },
	{ "sms_pin_wrong", "tries" },
	{ "sms_locked", "until" },
	{ "sms_no_pin", "" },
	{ "sms_busy", "" },
	{ "sms_no_chama", "" },
	{ "sms_no_transactions", "" },
	{ "sms_no_loans", "" },
	{ "sms_bal", "lines" },
	{ "sms_bal_line", "chama savings welfare loan arrears" },
	{ "sms_stmt", "lines" },
	{ "sms_stmt_line", "date what amount chama ref" },
	{ "sms_what_*", "" },
	{ "sms_loan", "lines" },
	{ "sms_loan_line", "chama outstanding next date" },
	{ "sms_dispute_sent", "" },
	{ "sms_dispute_none", "" },
	{ "sms_dispute_officials", "member amount date" },
	{ NULL, NULL },
};

DB_STMT(dom_notify, 8,
	"SELECT notify_phone($1, $2, $3, $4, $5::jsonb, $6::int, $7, $8::bigint)");

/* The language a row is rendered in: the recipient's preference now, so a
 * change made after the row was queued applies to it. */
#define OUTBOX_LANG "coalesce((SELECT u.preferred_language FROM users u WHERE u.id = n.user_id), n.language)"

/* chamad.renders: this claimer renders templates (the claim guard, 018,
 * makes any other skip the rows whose text is not written yet). */
DB_STMT(dom_outbox_claim, 3,
	"WITH me AS MATERIALIZED (SELECT set_config('chamad.renders', 'on', true) AS renders) "
	"UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1, claimed_by = $1, "
	"lease_until = now() + make_interval(secs => $3::int) "
	"FROM me, (SELECT id FROM notifications WHERE channel = 'sms' AND "
	"((status IN ('queued', 'retry') AND next_attempt_at <= now()) OR "
	"(status = 'sending' AND lease_until < now())) "
	"ORDER BY priority, next_attempt_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED) due "
	"WHERE n.id = due.id RETURNING n.id, n.recipient, n.body, n.idempotency_key, n.template, n.vars, "
	OUTBOX_LANG);

DB_STMT(dom_outbox_record, 6,
	"UPDATE notifications n SET "
	"status = CASE WHEN v.ok THEN 'sent' WHEN v.verdict = 'retry' AND n.attempts < $2::int THEN 'retry' "
	"ELSE 'failed' END, "
	"sent_at = CASE WHEN v.ok THEN now() ELSE n.sent_at END, "
	"provider = CASE WHEN v.ok THEN $3 ELSE n.provider END, "
	"provider_message_id = CASE WHEN v.ok THEN v.provider_id ELSE n.provider_message_id END, "
	"provider_cost = CASE WHEN v.ok THEN left(v.cost, 32) ELSE n.provider_cost END, "
	"cost_cents = CASE WHEN v.ok THEN v.cost_cents ELSE n.cost_cents END, "
	"segments = CASE WHEN v.ok THEN v.segments::smallint ELSE n.segments END, "
	"coding = CASE WHEN v.ok THEN v.coding ELSE n.coding END, "
	/* the text rendered for this attempt: the record of what went out */
	"body = coalesce(left(v.body, 2000), n.body), language = coalesce(v.lang, n.language), "
	"lease_until = NULL, "
	"last_error = CASE WHEN v.ok THEN NULL ELSE left(v.error, 500) END, "
	"failure_reason = CASE WHEN v.ok OR (v.verdict = 'retry' AND n.attempts < $2::int) THEN n.failure_reason "
	"ELSE left(v.error, 200) END, "
	/* min * 2^(attempts-1), capped, minus up to a quarter at random */
	"next_attempt_at = CASE WHEN v.ok THEN n.next_attempt_at ELSE now() + make_interval(secs => "
	"least($5::float8, $4::float8 * power(2, greatest(n.attempts - 1, 0))) * (1 - random() / 4)) END "
	"FROM jsonb_to_recordset($1::jsonb) AS v(id bigint, ok boolean, verdict text, provider_id text, cost text, "
	"cost_cents bigint, segments int, coding text, error text, body text, lang text) "
	"WHERE n.id = v.id AND n.claimed_by = $6 AND n.status = 'sending'");

DB_STMT(dom_outbox_rows, 1,
	"SELECT n.id, n.status, n.body, n.template, n.vars, " OUTBOX_LANG " FROM notifications n "
	"WHERE n.id = ANY ($1::bigint[]) ORDER BY n.id");

DB_STMT(dom_send_reminders, 3, "SELECT send_reminders($1::timestamptz, $2, $3::int)");

char *notify_vars(const char *name, ...)
{
	json_t *o = json_object();
	const char *k = name;
	va_list ap;
	char *s;

	va_start(ap, name);
	while (k) {
		const char *v = va_arg(ap, const char *);

		if (v)
			json_object_set_new(o, k, json_string(v));
		k = va_arg(ap, const char *);
	}
	va_end(ap);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s ? s : xstrdup("{}");
}
