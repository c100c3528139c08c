#!/usr/bin/env bash
# Benchmarks money in; figures go into the issue notes, never into tests.
#
#   callbacks: N pending STK requests (1,000 members spread over CHAMAS
#              chamas, default 64), then N success callbacks at
#              POST /mpesa/stk/callback/<secret> from 16 keep-alive clients:
#              each is stored, then settled from the table: its request and
#              a contribution (domain row, journal entry + 2 lines, the
#              chama's hash-chained audit row, receipt SMS in the outbox) in
#              one statement.  Reports callbacks/s, and confirmed
#              contributions/s from the first callback to the last
#              confirmation.
#   pgbench:   the same cluster's one-row-insert transaction, 16 clients,
#              10 s: the ceiling a posting path is compared with.
#   verify:    `chamad verify-ledger` over those books, then over 1,000,000
#              journal lines bulk-loaded (500,000 balanced entries; the audit
#              chain is the callbacks' only), and its wall time.
#
#   bench/money.sh [N] [CHAMAS]       (default 5000 64)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
chamas=${2:-64}

bash scripts/deps.sh
make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
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

port=18093
CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn CHAMAD_MPESA_CONSUMER_KEY=bench \
  CHAMAD_MPESA_CALLBACK_SECRET=bench-callback-secret-0123456789 CHAMAD_MPESA_ALLOW_IPS=safaricom:127.0.0.1 \
  CHAMAD_MPESA_QUERY_EVERY_S=3600 CHAMAD_DATABASE_POOL_SIZE=8 \
  CHAMAD_DATABASE_BACKGROUND_POOL_SIZE=${BG:-4} \
  bin/chamad >/tmp/chamad-money-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.05; done
echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, pool_size 8, background_pool_size 4; $n callbacks over $chamas chamas"
t0=$(date +%s%N)
python3 bench/money.py --port $port --n "$n" --path /mpesa/stk/callback/bench-callback-secret-0123456789
while :; do
  done_=$(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM contributions WHERE status = 'confirmed'")
  [ "$done_" -ge "$n" ] && break
  sleep 0.05
done
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "confirmed contributions: $done_ in $ms ms = $(( done_ * 1000 / (ms > 0 ? ms : 1) ))/s (first callback to last confirmation)"
echo "lost (callback answered 200 but not confirmed): $(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM mpesa_callbacks WHERE status <> 'settled'")"
echo "CPU seconds: chamad $(awk '{print ($14+$15)/100}' /proc/$pid/stat)"
echo "chamad peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2" "$3}')"

# the same cluster's ceiling: one-row-insert transactions, 16 clients
psql -X -q "$CHAMAD_DATABASE_URL" -c "CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, v bigint)"
echo 'INSERT INTO bench_insert (v) VALUES (1);' >/tmp/chamad-bench-insert.sql
pgbench -n -c 16 -j 2 -T 10 -f /tmp/chamad-bench-insert.sql "$CHAMAD_DATABASE_URL" 2>/dev/null | grep -E '^tps' | sed 's/^/pgbench one-row insert: /'
kill $pid; wait $pid 2>/dev/null || true; pid=

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
