#!/usr/bin/env bash
# Payout latency, B2C request to ledger entry; figures go into the issue
# notes, never into tests.
#
#   N payouts of one chama (whose float covers them all) are approved at
#   once (payout_on_approval, as the approvals do); chamad's B2C job claims
#   and sends each to the Daraja emulator, which posts its Result after
#   RESULT_DELAY_MS (Safaricom: seconds; 0 shows our own share).  Reported
#   from PostgreSQL, per payout: sent_at (claimed, just before the HTTP
#   request) to its journal entry's created_at (posted: the Result
#   recorded), p50 / p90 / p99 / max in ms, and how many were paid, how
#   many entries exist (must equal), and the emulator's book count.
#
#   bench/payout.sh [N] [RESULT_DELAY_MS]   (defaults 200 0)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
delay=${2:-0}

make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
pid=
emu=
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "$emu" ] && { kill "$emu" 2>/dev/null || true; wait "$emu" 2>/dev/null || true; }
  bash scripts/services.sh stop bench
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null

port=18096
dport=18097
secret=bench-payout-secret-0123456789abcdefghij
scripts/daraja-emulator --port $dport --consumer-key bench-ck --consumer-secret bench-cs \
  --result-delay-ms "$delay" --opening-working 100000000 >/tmp/daraja-payout-bench.log 2>&1 &
emu=$!
for _ in $(seq 1 100); do curl -sf "localhost:$dport/healthz" >/dev/null 2>&1 && break; sleep 0.05; done

psql -X -q "$CHAMAD_DATABASE_URL" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
bin/chamad migrate >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -v n="$n" "$CHAMAD_DATABASE_URL" >/dev/null <<'SQL'
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
VALUES ('Bench Group', 'mixed', 50000, 'monthly');
INSERT INTO users (phone, full_name, phone_verified, phone_verified_at)
SELECT format('+2547132%s', lpad(i::text, 5, '0')), 'Bench Member ' || i, true, now()
  FROM generate_series(1, :n) AS i;
INSERT INTO memberships (user_id, chama_id) SELECT u.id, c.id FROM users u, chamas c;
-- each member saved KES 1,000 by M-Pesa: the float holds it all
SELECT post_contribution(1, u.id, 100000, 'savings', 'mpesa', 'BENCH' || u.id, 'bench:' || u.id, NULL, 'admin',
                         NULL, 'bench', NULL) FROM users u;
-- one KES 500 refund each, asked for (the approvals are helper E's; here
-- they are decided at once below)
INSERT INTO payouts (chama_id, user_id, kind, amount_cents, method, status, phone, debit_kind, memo, channel)
SELECT 1, u.id, 'refund', 50000, 'mpesa', 'requested', u.phone, 'member_savings', 'bench', 'admin' FROM users u;
SQL

CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_MPESA_PUBLIC_URL=http://127.0.0.1:$port \
CHAMAD_MPESA_BASE_URL=http://127.0.0.1:$dport CHAMAD_MPESA_CONSUMER_KEY=bench-ck CHAMAD_MPESA_CONSUMER_SECRET=bench-cs \
CHAMAD_MPESA_CALLBACK_SECRET=$secret CHAMAD_MPESA_ALLOW_IPS=safaricom:127.0.0.1 \
CHAMAD_MPESA_INITIATOR_NAME=testapi CHAMAD_MPESA_SECURITY_CREDENTIAL=test-security-credential \
CHAMAD_LOG_LEVEL=warn bin/chamad >/tmp/chamad-payout-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done

start=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 "$CHAMAD_DATABASE_URL" -c \
  "SELECT count(payout_on_approval(NULL, id, 'approved', now())) FROM payouts" >/dev/null
for _ in $(seq 1 1200); do
  left=$(psql -X -q -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM payouts WHERE status NOT IN ('paid', 'failed')")
  [ "$left" = 0 ] && break
  sleep 0.1
done
end=$(date +%s.%N)

psql -X -q -tA -F ' ' "$CHAMAD_DATABASE_URL" <<'SQL'
WITH l AS (SELECT extract(epoch FROM e.created_at - p.sent_at) * 1000 AS ms
             FROM payouts p JOIN journal_entries e ON e.id = p.journal_entry_id)
SELECT 'request->ledger ms: p50', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       'p90', round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       'p99', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       'max', round(max(ms)::numeric, 1) FROM l;
SELECT 'paid', count(*) FILTER (WHERE status = 'paid'), 'failed', count(*) FILTER (WHERE status = 'failed'),
       'entries', (SELECT count(*) FROM journal_entries WHERE ref_table = 'payouts') FROM payouts;
SQL
book=$(curl -s "localhost:$dport/_book" | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["entries"] if e.get("type") == "b2c"))')
echo "emulator book: $book B2C payments for $n payouts; all done in $(echo "$end - $start" | bc) s (result delay ${delay} ms)"
bin/chamad verify-ledger | tail -1
