/*
 * outbox: see outbox.h.
 */
#include "dom/outbox.h"

/* chamad.renders: this claimer renders templates (the claim guard, 018,
 * makes any other skip the rows whose text is not written yet). */
DB_STMT(outbox_claim, 3,
	"WITH me AS MATERIALIZED (SELECT set_config('chamad.renders', 'on', true) AS renders) "
	"UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1, claimed_by = $1, "
	"lease_until = now() + make_interval(secs => $3::int) "
	"FROM me, (SELECT id FROM notifications WHERE channel = 'sms' AND "
	"((status IN ('queued', 'retry') AND next_attempt_at <= now()) OR "
	"(status = 'sending' AND lease_until < now())) "
	"ORDER BY priority, next_attempt_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED) due "
	"WHERE n.id = due.id RETURNING n.id, n.recipient, n.body, n.idempotency_key, n.template, n.vars, "
	OUTBOX_LANG);

DB_STMT(outbox_record, 6,
	"UPDATE notifications n SET "
	"status = CASE WHEN n.status <> 'sending' THEN n.status WHEN v.ok THEN 'sent' "
	"WHEN v.verdict = 'retry' AND n.attempts < $2::int THEN 'retry' ELSE 'failed' END, "
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
	/* a delivery report can come first (Kannel's names our row): the row
	 * keeps its final state and gets the send's details all the same */
	"WHERE n.id = v.id AND n.claimed_by = $6 AND (n.status = 'sending' OR (v.ok AND n.sent_at IS NULL "
	"AND n.status IN ('delivered', 'undeliverable')))");

#define OUTBOX_DLR(match)                                                                                  \
	"UPDATE notifications SET delivery_status = left($3, 32), "                                         \
	"status = CASE $4 WHEN 'delivered' THEN 'delivered' WHEN 'undeliverable' THEN 'undeliverable' "     \
	"ELSE status END, "                                                                                 \
	"delivered_at = CASE WHEN $4 = 'delivered' THEN now() ELSE delivered_at END, "                      \
	"failure_reason = coalesce(left($5, 200), failure_reason) "                                         \
	"WHERE channel = 'sms' AND " match " AND status IN ('sending', 'sent')"

DB_STMT(outbox_dlr_provider_id, 5, OUTBOX_DLR("provider = $1 AND provider_message_id = $2"));
DB_STMT(outbox_dlr_row, 5, OUTBOX_DLR("id = $2::bigint AND $1::text = 'kannel'"));
