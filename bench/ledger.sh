#!/usr/bin/env bash
# Benchmarks the ledger's posting path against PostgreSQL's own commit rate;
# figures go into the issue notes, never into tests.
#
# On a throwaway "bench" instance with PostgreSQL's stock durability
# (fsync, synchronous_commit and full_page_writes on: what production runs,
# not the test instance's fsync=off), seeded with CHAMAS chamas of 20
# members each, pgbench runs at one client count (-c CLIENTS -j 2 -T SECONDS):
#
#   insert:  pgbench's one-row INSERT transaction on the same cluster (the
#            ceiling: one commit, one WAL flush per transaction);
#   spread:  post_contribution() for a random member of a random chama, each
#            a fresh idempotency key and M-Pesa receipt (contribution, journal
#            entry + 2 lines, hash-chained audit row, receipt SMS: one
#            statement, one transaction);
#   one:     the same with every posting in ONE chama (its chain serialises).
#   nosms:   spread without the receipt SMS: no notifications row, so no
#            NOTIFY chamad_sms, whose commit takes a lock of the whole database
#            (PostgreSQL serialises the commits of notifying transactions).
#
# Prints the tps figures, postings/inserts ratios, and checks that the
# books hold afterwards (chamad verify-ledger).
#
#   bench/ledger.sh [CLIENTS] [SECONDS] [CHAMAS]      (defaults 16, 10, 64)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-16}
secs=${2:-10}
chamas=${3:-64}

bash scripts/deps.sh
make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
  bash scripts/services.sh stop bench || true
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
url=$CHAMAD_DATABASE_URL
psql -X -q "$url" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
bin/chamad migrate >/dev/null
# chama c's member m is user (c - 1) * 20 + m: the scripts pick one directly
psql -X -q -v ON_ERROR_STOP=1 "$url" <<SQL
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
SELECT 'Bench ' || c, 'mixed', 50000, 'monthly' FROM generate_series(1, $chamas) c;
INSERT INTO users (phone, full_name)
SELECT '+254713' || lpad(g::text, 6, '0'), 'Bench ' || g FROM generate_series(1, $chamas * 20) g ORDER BY g;
INSERT INTO memberships (user_id, chama_id) SELECT id, (id - 1) / 20 + 1 FROM users ORDER BY id;
CREATE TABLE bench_insert (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, client int NOT NULL,
                           at timestamptz NOT NULL DEFAULT now());
ANALYZE;
SQL
[ "$(psql -X -tA "$url" -c "SELECT count(*) FROM memberships m JOIN chamas c ON c.id = m.chama_id
                             WHERE m.user_id = (c.id - 1) * 20 + (m.user_id - 1) % 20 + 1")" = $((chamas * 20)) ] \
  || { echo "ledger bench: the seed is not laid out as the scripts expect" >&2; exit 1; }

cat >"$work/insert.sql" <<'SQL'
INSERT INTO bench_insert (client) VALUES (:client_id);
SQL
posting() {  # posting FILE CHAMA RECEIPT: a pgbench script of one post_contribution
  cat >"$1" <<SQL
\\set c $2
\\set m random(1, 20)
SELECT post_contribution(:c, (:c - 1) * 20 + :m, 50000, 'savings', 'mpesa', r, 'mpesa:' || r, NULL, 'mpesa', NULL,
                         'bench', $3) FROM (SELECT gen_random_uuid()::text AS r) k;
SQL
}
posting "$work/spread.sql" "random(1, $chamas)" "'Received KES 500.00'"
posting "$work/one.sql" 1 "'Received KES 500.00'"
posting "$work/nosms.sql" "random(1, $chamas)" NULL

settings=$(psql -X -tA "$url" -c "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
  FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers',
                                  'max_wal_size', 'commit_delay', 'wal_sync_method')")
echo "PostgreSQL $(psql -X -tA "$url" -c 'SHOW server_version'), $(nproc) cores; stock settings: $settings"
echo "pgbench -n -c $clients -j 2 -T $secs; $chamas chamas x 20 members"

run() {  # run NAME SCRIPT: prints NAME's tps (without the initial connection time)
  psql -X -q "$url" -c CHECKPOINT
  pgbench -n -c "$clients" -j 2 -T "$secs" -f "$2" "$url" >"$work/$1.out" 2>"$work/$1.err" \
    || { cat "$work/$1.err" >&2; exit 1; }
  grep -q "number of failed transactions: 0 " "$work/$1.out" \
    || { echo "ledger bench: $1 had failed transactions" >&2; cat "$work/$1.out" >&2; exit 1; }
  sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/$1.out"
}
before=$(psql -X -tA "$url" -c "SELECT count(*) FROM contributions")
ins=$(run insert "$work/insert.sql")
spread=$(run spread "$work/spread.sql")
one=$(run one "$work/one.sql")
nosms=$(run nosms "$work/nosms.sql")
posted=$(psql -X -tA "$url" -c "SELECT count(*) FROM contributions WHERE status = 'confirmed'")
lat() { sed -n 's/^latency average = \(.*\)$/\1/p' "$work/$1.out"; }
printf '  one-row INSERT:                       %10.1f tps  (latency %s)\n' "$ins" "$(lat insert)"
printf '  post_contribution over %3d chamas:    %10.1f tps  (latency %s)  = %.2f x the inserts\n' \
  "$chamas" "$spread" "$(lat spread)" "$(echo "$spread / $ins" | bc -l)"
printf '  post_contribution in one chama:       %10.1f tps  (latency %s)  = %.2f x the inserts\n' \
  "$one" "$(lat one)" "$(echo "$one / $ins" | bc -l)"
printf '  ... over %3d chamas, no receipt SMS: %10.1f tps  (latency %s)  = %.2f x the inserts\n' \
  "$chamas" "$nosms" "$(lat nosms)" "$(echo "$nosms / $ins" | bc -l)"
printf '  spread / one chama:                   %10.2f\n' "$(echo "$spread / $one" | bc -l)"
echo "  confirmed contributions: $((posted - before)) new; audit rows: $(psql -X -tA "$url" -c \
  'SELECT count(*) FROM financial_audit_logs')"
bin/chamad verify-ledger | tail -1
