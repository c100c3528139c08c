/*
 * payment: see payment.h.
 */
#include "dom/payment.h"
#include "dom/policy.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The push window: a request not pushed within five minutes of its push_at
 * is no longer pushed (the member has long given up on the prompt); the
 * M-Pesa query job closes it and tells them (mpesa.c). */
DB_STMT(payment_push_claim, 2,
	"WITH due AS (SELECT id FROM mpesa_requests WHERE status = 'created' AND push_attempts = 0 "
	"AND push_at <= now() AND push_at > now() - interval '5 minutes' ORDER BY push_at "
	"LIMIT " STR(PAYMENT_PUSH_BATCH) " FOR UPDATE SKIP LOCKED), "
	"c AS (UPDATE mpesa_requests q SET push_attempts = 1, claimed_by = $1, "
	"lease_until = now() + make_interval(secs => $2::int) FROM due WHERE q.id = due.id "
	"RETURNING q.id, q.phone, q.amount_cents, q.account_ref), "
	"n AS (SELECT ceil(extract(epoch FROM min(push_at) - now()) * 1000)::bigint AS next_ms "
	"FROM mpesa_requests WHERE status = 'created' AND push_attempts = 0 AND push_at > now()) "
	"SELECT c.id, c.phone, c.amount_cents, c.account_ref, n.next_ms FROM n LEFT JOIN c ON true");

DB_STMT(payment_push_accepted, 4,
	"UPDATE mpesa_requests SET status = 'pushed', checkout_request_id = $2, "
	"merchant_request_id = $3, pushed_at = now(), lease_until = NULL, "
	"next_query_at = now() + make_interval(secs => $4::int) "
	"WHERE id = $1::bigint AND status = 'created'");

DB_STMT(payment_push_unsent, 1,
	"UPDATE mpesa_requests SET push_attempts = 0, claimed_by = NULL, lease_until = NULL, "
	"push_at = now() + interval '5 seconds' WHERE id = $1::bigint AND status = 'created'");

DB_STMT(payment_push_unknown, 2,
	"UPDATE mpesa_requests SET status = 'unknown', result_desc = left($2, 300), "
	"lease_until = NULL WHERE id = $1::bigint AND status = 'created'");

DB_STMT(payment_push_orphans, 0,
	"UPDATE mpesa_requests SET status = 'unknown', lease_until = NULL, "
	"result_desc = 'its daemon stopped while pushing' "
	"WHERE status = 'created' AND push_attempts = 1 AND lease_until < now()");

DB_STMT(payment_query_claim, 2,
	"UPDATE mpesa_requests q SET query_attempts = q.query_attempts + 1, "
	"next_query_at = now() + make_interval(secs => $1::int), "
	"status = CASE WHEN q.query_attempts + 1 > $2::int THEN 'expired' ELSE q.status END, "
	"completed_at = CASE WHEN q.query_attempts + 1 > $2::int THEN now() ELSE q.completed_at END "
	"FROM (SELECT id FROM mpesa_requests WHERE status = 'pushed' AND next_query_at <= now() "
	"ORDER BY next_query_at LIMIT 50 FOR UPDATE SKIP LOCKED) due WHERE q.id = due.id "
	"RETURNING q.id, q.checkout_request_id, q.status = 'expired'");

DB_STMT(payment_request_by_checkout, 1,
	"SELECT r.amount_cents, u.preferred_language, c.name FROM mpesa_requests r "
	"JOIN users u ON u.id = r.user_id JOIN chamas c ON c.id = r.chama_id "
	"WHERE r.checkout_request_id = $1");

DB_STMT(payment_callback_store, 9,
	"INSERT INTO mpesa_callbacks (checkout_request_id, result_code, result_desc, mpesa_receipt, "
	"amount_cents, phone, body, remote_addr, http_request_id) VALUES ($1, $2::bigint, left($3, 300), "
	"left($4, 32), $5::bigint, left($6, 20), $7, left($8, 64), left($9, 64)) RETURNING id");

DB_STMT(payment_callbacks_claim, 0,
	"WITH c AS (UPDATE mpesa_callbacks k SET attempts = k.attempts + 1, "
	"lease_until = now() + interval '60 seconds' FROM (SELECT id FROM mpesa_callbacks "
	"WHERE status = 'received' AND next_try_at <= now() AND (lease_until IS NULL OR lease_until < now()) "
	"ORDER BY next_try_at LIMIT " STR(PAYMENT_CALLBACK_BATCH) " FOR UPDATE SKIP LOCKED) due "
	"WHERE k.id = due.id RETURNING k.*) "
	"SELECT c.id, c.checkout_request_id, c.result_code, c.result_desc, c.mpesa_receipt, c.amount_cents, "
	"c.phone, r.amount_cents, u.preferred_language, ch.name FROM c "
	"LEFT JOIN mpesa_requests r ON r.checkout_request_id = c.checkout_request_id "
	"LEFT JOIN users u ON u.id = r.user_id LEFT JOIN chamas ch ON ch.id = r.chama_id");

DB_STMT(payment_settle, 13,
	"WITH s AS (SELECT * FROM mpesa_settle($1, $2::int, $3, $4, $5::bigint, $6, $7, $8, $9, $11::timestamptz, "
	"$12::int, $13::bigint)), "
	"k AS (UPDATE mpesa_callbacks SET status = 'settled', settled_at = now(), lease_until = NULL, "
	"outcome = (SELECT s.status || CASE WHEN s.settled_now THEN '' ELSE ' before' END FROM s), "
	"request_id = (SELECT id FROM mpesa_requests WHERE checkout_request_id = $1) "
	"WHERE id = $10::bigint) "
	"SELECT status, settled_now FROM s");

DB_STMT(payment_callback_match, 6,
	"WITH m AS (SELECT id FROM mpesa_requests WHERE status = 'unknown' AND checkout_request_id IS NULL "
	"AND $3::bigint = 0 AND phone = $4 AND amount_cents = $5::bigint ORDER BY id LIMIT 2), "
	"one AS (SELECT id FROM m WHERE (SELECT count(*) FROM m) = 1), "
	"q AS (UPDATE mpesa_requests r SET status = 'pushed', checkout_request_id = $2, "
	"pushed_at = coalesce(r.pushed_at, now()), next_query_at = now() + interval '1 minute' "
	"FROM one WHERE r.id = one.id RETURNING r.id) "
	"UPDATE mpesa_callbacks k SET lease_until = NULL, "
	"status = CASE WHEN EXISTS (SELECT 1 FROM q) OR k.attempts < $6::int THEN 'received' "
	"ELSE 'unmatched' END, "
	"outcome = CASE WHEN EXISTS (SELECT 1 FROM q) THEN 'matched by phone' "
	"WHEN k.attempts < $6::int THEN 'waiting' ELSE 'no such request' END, "
	"next_try_at = CASE WHEN EXISTS (SELECT 1 FROM q) THEN now() "
	"ELSE now() + make_interval(secs => least(60, power(2, k.attempts))::int) END "
	"WHERE k.id = $1::bigint RETURNING k.status, EXISTS (SELECT 1 FROM q)");

DB_STMT(payment_callback_later, 1,
	"UPDATE mpesa_callbacks SET lease_until = NULL, outcome = 'confirming', "
	"next_try_at = now() + make_interval(secs => least(60, power(2, attempts))::int) "
	"WHERE id = $1::bigint AND status = 'received'");

DB_STMT(payment_c2b_confirm, 9,
	"SELECT * FROM c2b_confirm($1, $2::bigint, $3, $4, $5, $6, $7::timestamptz, $8, $9::bigint)");

DB_STMT(payment_c2b_flag_overdue, 2, "SELECT c2b_flag_overdue($1::int, $2::timestamptz)");

DB_STMT(payment_alerts_claim, 0,
	"SELECT id, kind, coalesce(chama_id::text, '-'), ref_table, ref_id, details::text "
	"FROM mpesa_alerts_claim(50)");

/* What is not credited, oldest first: paybill payments unverified or
 * flagged, STK requests contradicted or flagged. */
#define TO_CHECK                                                                                        \
	"SELECT 'c2b' AS kind, c.id, c.status, c.amount_cents, c.trans_id AS receipt, c.chama_id, "      \
	"coalesce(c.flag_reason, 'unverified') AS reason, c.bill_ref AS account, c.received_at AS at "    \
	"FROM mpesa_c2b c WHERE c.status <> 'verified' "                                                \
	"UNION ALL SELECT 'stk', r.id, r.status, r.amount_cents, coalesce(k.mpesa_receipt, r.checkout_request_id), " \
	"r.chama_id, r.status, r.account_ref, coalesce(r.completed_at, r.created_at) FROM mpesa_requests r " \
	"LEFT JOIN LATERAL (SELECT mpesa_receipt FROM mpesa_callbacks WHERE checkout_request_id = "          \
	"r.checkout_request_id AND result_code = 0 ORDER BY id DESC LIMIT 1) k ON true "                    \
	"WHERE r.status IN ('contradicted', 'flagged')"

DB_STMT(payment_money_to_check, 0,
	"SELECT t.kind, t.id, t.status, t.amount_cents, t.receipt, coalesce(t.chama_id::text, ''), t.reason, "
	"t.account, floor(extract(epoch FROM now() - t.at))::bigint, "
	"to_char(t.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM (" TO_CHECK ") t "
	"ORDER BY t.at, t.kind, t.id");

DB_STMT(payment_check_list, 3,
	POLICY_LIST("payments.check_view",
		    "SELECT t.kind || ':' || t.id, 'KES ' || (t.amount_cents / 100) || ' ' || t.receipt || ' ' || "
		    "to_char(t.at, 'DD Mon') FROM (" TO_CHECK ") t "
		    "WHERE t.chama_id = $2::bigint ORDER BY t.at DESC LIMIT 30"));

/* After "WITH r AS (UPDATE mpesa_requests ... RETURNING *)": the member's
 * notice that the payment never started (no prompt, no money moved), as
 * the statement's last SELECT (so it runs for every row of r). */
#define PUSH_FAILED_NOTICE                                                                                      \
	"SELECT notify(r.user_id, 'mpesa_failed', 'sms_mpesa_push_failed', jsonb_build_object('amount', "        \
	"format_kes(r.amount_cents), 'chama', c.name), 3, 'mpesa:request:' || r.id || ':push_failed', "         \
	"r.chama_id) FROM r JOIN chamas c ON c.id = r.chama_id"

DB_STMT(payment_push_refused, 2,
	"WITH r AS (UPDATE mpesa_requests SET status = 'push_failed', result_desc = left($2, 300), "
	"completed_at = now(), lease_until = NULL WHERE id = $1::bigint AND status = 'created' "
	"RETURNING *) " PUSH_FAILED_NOTICE);

DB_STMT(payment_close_unpushed, 1,
	"WITH r AS (UPDATE mpesa_requests SET status = 'push_failed', completed_at = now(), "
	"result_desc = CASE WHEN status = 'unknown' THEN 'push outcome unknown, no callback' "
	"ELSE 'never pushed (no daemon could)' END, lease_until = NULL "
	"WHERE (status = 'created' AND push_attempts = 0 AND coalesce(push_at, created_at) < now() - interval "
	"'5 minutes') OR (status = 'unknown' AND created_at < now() - make_interval(secs => $1::int)) "
	"RETURNING *) " PUSH_FAILED_NOTICE);
