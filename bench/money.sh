#!/usr/bin/env bash
# Benchmarks money in; figures go into the issue notes, never into tests.
#
#   callbacks: N pending STK requests (1,000 members spread over CHAMAS
#              chamas, default 64), then N success callbacks at
#              POST /mpesa/stk/callback/<secret> from 16 keep-alive clients:
#              each is stored (and only then answered), then confirmed and
#              settled from the table.  Since issue 10 a success callback is
#              credited only once the STK push query for its
#              CheckoutRequestID agrees, so chamad talks to the Daraja
#              emulator (scripts/daraja-emulator, Python): before the run
#              each request is put in the emulator's book as the STK payment
#              it stands for (POST /_book type "stk", not timed), and the
#              emulator's STK query answers those made-up checkouts from
#              the book.  Confirming one = token (cached) + one STK push
#              query round trip to the emulator, then one statement: its
#              request and a contribution (domain row, journal entry + 2
#              lines, the chama's hash-chained audit row, receipt SMS in the
#              outbox).  Reports callbacks/s (stored and answered), and
#              confirmed contributions/s from the first callback to the last
#              confirmation (so it includes the query round trips, and the
#              emulator's own speed bounds it: its CPU seconds are shown),
#              and the STK queries the emulator answered.
#   pgbench:   the same cluster's one-row-insert transaction, 16 clients,
#              10 s: the ceiling a posting path is compared with.
#   verify:    `chamad verify-ledger` over those books, then over 1,000,000
#              journal lines bulk-loaded (500,000 balanced entries; the audit
#              chain is the callbacks' only), and its wall time.
#
#   bench/money.sh [N] [CHAMAS]       (default 5000 64)
#   env: PORT (chamad, 18093), BG (background_pool_size, 4),
#        WAIT_S (give up waiting for the confirmations, 120 + N/20)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
chamas=${2:-64}

bash scripts/deps.sh
make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
pid=
emu=
tmp=$(mktemp -d)
reqs=$tmp/requests.tsv
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "$emu" ] && { kill "$emu" 2>/dev/null || true; wait "$emu" 2>/dev/null || true; }
  rm -rf "$tmp"
  bash scripts/services.sh stop bench || true
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
psql -X -q "$CHAMAD_DATABASE_URL" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
bin/chamad migrate >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$CHAMAD_DATABASE_URL" <<SQL
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
SELECT 'Bench Group ' || g, 'mixed', 50000, 'monthly' FROM generate_series(1, $chamas) g;
INSERT INTO users (phone, full_name) SELECT '+254713' || lpad(g::text, 6, '0'), 'Bench ' || g FROM generate_series(0, 999) g;
INSERT INTO memberships (user_id, chama_id)
SELECT u.id, c.id FROM users u JOIN chamas c ON c.name = 'Bench Group ' || (1 + (u.id - 1) % $chamas) ORDER BY u.id;
INSERT INTO mpesa_requests (chama_id, user_id, phone, amount_cents, account_ref, idempotency_key, status,
                            checkout_request_id, pushed_at, next_query_at)
SELECT m.chama_id, u.id, u.phone, 50000, 'CHAMA' || m.chama_id, 'bench:' || g, 'pushed', 'ws_BENCH_' || g, now(),
       now() + interval '1 day'
  FROM generate_series(0, $n - 1) g JOIN users u ON u.phone = '+254713' || lpad((g % 1000)::text, 6, '0')
  JOIN memberships m ON m.user_id = u.id;
SQL

psql -X -q -tA -F $'\t' "$CHAMAD_DATABASE_URL" \
  -c "SELECT checkout_request_id, amount_cents, phone, account_ref FROM mpesa_requests ORDER BY id" >"$reqs"

# the Daraja emulator on a free port (its first line says which)
scripts/daraja-emulator --port 0 --consumer-key bench-ck --consumer-secret bench-cs \
  >"$tmp/daraja.out" 2>/tmp/daraja-money-bench.log &
emu=$!
for _ in $(seq 1 100); do grep -q listening "$tmp/daraja.out" 2>/dev/null && break; sleep 0.05; done
daraja=$(sed -n 's/^daraja-emulator listening on //p' "$tmp/daraja.out")
[ -n "$daraja" ] || { echo "money bench: the Daraja emulator did not start" >&2; cat /tmp/daraja-money-bench.log >&2; exit 1; }

port=${PORT:-18093}
secret=bench-callback-secret-0123456789abcdef
# the status query job and the reconciliation stay out of the way (the
# requests are due for their query only in a day): what is measured is the
# callback path, its STK push query included
CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn \
  CHAMAD_MPESA_BASE_URL=$daraja CHAMAD_MPESA_CONSUMER_KEY=bench-ck CHAMAD_MPESA_CONSUMER_SECRET=bench-cs \
  CHAMAD_MPESA_PASSKEY=bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919 \
  CHAMAD_MPESA_PUBLIC_URL=http://127.0.0.1:$port CHAMAD_MPESA_CALLBACK_SECRET=$secret \
  CHAMAD_MPESA_ALLOW_IPS=safaricom:127.0.0.1 \
  CHAMAD_MPESA_INITIATOR_NAME=testapi CHAMAD_MPESA_SECURITY_CREDENTIAL=test-security-credential \
  CHAMAD_MPESA_QUERY_EVERY_S=3600 CHAMAD_MPESA_RECONCILE_EVERY_S=0 CHAMAD_DATABASE_POOL_SIZE=8 \
  CHAMAD_DATABASE_BACKGROUND_POOL_SIZE=${BG:-4} \
  bin/chamad >/tmp/chamad-money-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.05; done
echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, pool_size 8, background_pool_size ${BG:-4}; $n callbacks over $chamas chamas; Daraja emulator at $daraja"
python3 bench/money.py --port "$port" --path /mpesa/stk/callback/$secret --requests "$reqs" --book "$daraja"
t0=$(date +%s%N)
python3 bench/money.py --port "$port" --path /mpesa/stk/callback/$secret --requests "$reqs"
deadline=$(( $(date +%s) + ${WAIT_S:-$(( 120 + n / 20 ))} ))
while :; do
  done_=$(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM contributions WHERE status = 'confirmed'")
  [ "$done_" -ge "$n" ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "money bench: only $done_ of $n confirmed after ${WAIT_S:-$(( 120 + n / 20 ))} s; see /tmp/chamad-money-bench.log" >&2
    psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT 'requests: ' || string_agg(status || ' ' || c, ', ') FROM (SELECT status, count(*) c FROM mpesa_requests GROUP BY 1) s" >&2
    psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT 'callbacks: ' || string_agg(status || ' ' || c, ', ') FROM (SELECT status, count(*) c FROM mpesa_callbacks GROUP BY 1) s" >&2
    exit 1
  fi
  sleep 0.05
done
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "confirmed contributions: $done_ in $ms ms = $(( done_ * 1000 / (ms > 0 ? ms : 1) ))/s (first callback to last confirmation, STK push query included)"
echo "lost (callback answered 200 but not confirmed): $(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM mpesa_callbacks WHERE status <> 'settled'")"
echo "STK push queries the emulator answered: $(curl -s "$daraja/_stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("%d (decided %d, pending %d, unknown %d, errors %d)" % (s["queries"], s["queries_decided"], s["queries_pending"], s["queries_unknown"], s["query_errors"]))')"
echo "CPU seconds: chamad $(awk '{print ($14+$15)/100}' /proc/$pid/stat), daraja-emulator $(awk '{print ($14+$15)/100}' /proc/$emu/stat)"
echo "chamad peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2" "$3}')"

# the same cluster's ceiling: one-row-insert transactions, 16 clients
psql -X -q "$CHAMAD_DATABASE_URL" -c "CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, v bigint)"
echo 'INSERT INTO bench_insert (v) VALUES (1);' >/tmp/chamad-bench-insert.sql
pgbench -n -c 16 -j 2 -T 10 -f /tmp/chamad-bench-insert.sql "$CHAMAD_DATABASE_URL" 2>/dev/null | grep -E '^tps' | sed 's/^/pgbench one-row insert: /'
kill $pid; wait $pid 2>/dev/null || true; pid=
kill $emu; wait $emu 2>/dev/null || true; emu=

t0=$(date +%s%N); bin/chamad verify-ledger | tail -1; t1=$(date +%s%N)
echo "verify-ledger over the callbacks' books: $(( (t1 - t0) / 1000000 )) ms"

# 500,000 balanced entries (1,000,000 lines) loaded in bulk (triggers off),
# balances then set from the lines so the books hold
psql -X -q -v ON_ERROR_STOP=1 "$CHAMAD_DATABASE_URL" <<'SQL'
SET session_replication_role = replica;
INSERT INTO journal_entries (chama_id, kind, idempotency_key, channel)
SELECT 1, 'adjustment', 'bulk:' || g, 'system' FROM generate_series(1, 500000) g;
SQL
psql -X -q -v ON_ERROR_STOP=1 "$CHAMAD_DATABASE_URL" <<'SQL'
SET session_replication_role = replica;
INSERT INTO ledger_accounts (chama_id, kind, normal_side) VALUES (1, 'expenses', 'debit'), (1, 'suspense', 'credit')
ON CONFLICT DO NOTHING;
INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
SELECT e.id, a.id, a.side, 100 FROM journal_entries e
  CROSS JOIN (SELECT id, 'debit' AS side FROM ledger_accounts WHERE kind = 'expenses' AND chama_id = 1
              UNION ALL SELECT id, 'credit' FROM ledger_accounts WHERE kind = 'suspense' AND chama_id = 1) a
 WHERE e.kind = 'adjustment';
UPDATE ledger_accounts a SET balance_cents = s.b FROM (
  SELECT l.account_id, sum(CASE WHEN l.side = a2.normal_side THEN l.amount_cents ELSE -l.amount_cents END) b
    FROM journal_lines l JOIN ledger_accounts a2 ON a2.id = l.account_id GROUP BY l.account_id) s
 WHERE a.id = s.account_id;
ANALYZE;
SQL
echo "lines now: $(psql -X -tA "$CHAMAD_DATABASE_URL" -c 'SELECT count(*) FROM journal_lines')"
t0=$(date +%s%N); bin/chamad verify-ledger | tail -1; t1=$(date +%s%N)
echo "verify-ledger over 1M+ lines: $(( (t1 - t0) / 1000000 )) ms"
