#!/usr/bin/env bash
# Benchmarks the SMS outbox; figures go into the issue notes, never into tests.
#
#   fan-out: one statement queues a meeting reminder to N members (default
#            10,000, priority 9); measured from the INSERT until every row is
#            'sent', through chamad's sender (claim with FOR UPDATE SKIP
#            LOCKED, send over keep-alive HTTP, record each batch's outcomes
#            in one statement) to a loopback Africa's Talking stand-in: by
#            default ../shared/bench's at-sms-sink (C, near free, so the
#            figure is chamad's), or scripts/at-sms-emulator (Python).
#   rate:    messages per second over that run, and how many TCP
#            connections chamad opened to the provider (keep-alive reuse).
#   doubles: provider sends minus messages (0: none sent twice).
#
#   bench/sms.sh [N] [RATE_PER_SEC] [BATCH] [sink|emulator]
#                (defaults 10000 5000 200 sink)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
rate=${2:-5000}
batch=${3:-200}
stand_in=${4:-sink}

bash scripts/deps.sh
make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
pid=
emu=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "$emu" ] && kill "$emu" 2>/dev/null && wait "$emu" 2>/dev/null || true
  bash scripts/services.sh stop bench || true
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
psql -X -q "$CHAMAD_DATABASE_URL" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
bin/chamad migrate >/dev/null

port=18701
if [ "$stand_in" = sink ]; then
  make -s -C ../shared/bench OUT="$PWD/.run/tools" >/dev/null 2>&1
  .run/tools/at-sms-sink $port >/tmp/at-sms-sink-bench.log 2>&1 &
else
  scripts/at-sms-emulator --port $port --api-key bench-key >/tmp/at-sms-emulator-bench.log 2>&1 &
fi
emu=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/_stats" >/dev/null && break; sleep 0.05; done

CHAMAD_DATABASE_URL="${SMS_BENCH_DB_URL:-$CHAMAD_DATABASE_URL}" CHAMAD_HTTP_LISTEN=127.0.0.1:18091 CHAMAD_LOG_LEVEL=warn CHAMAD_SMS_PROVIDER=africastalking \
  CHAMAD_SMS_AT_BASE_URL=http://127.0.0.1:$port CHAMAD_SMS_AT_API_KEY=bench-key \
  CHAMAD_SMS_RATE_PER_SEC=$rate CHAMAD_SMS_BATCH=$batch \
  bin/chamad >/tmp/chamad-sms-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf localhost:18091/healthz >/dev/null && break; sleep 0.05; done

echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores; rate_per_sec $rate, batch $batch; $n recipients; provider stand-in: $stand_in"
t0=$(date +%s%N)
psql -X -q "$CHAMAD_DATABASE_URL" -c "INSERT INTO notifications (channel, kind, recipient, body, priority, idempotency_key)
  SELECT 'sms', 'meeting_reminder', '+2547' || lpad(g::text, 8, '0'),
         'Umoja Savings Group: monthly meeting on Saturday 14:00 at the community hall.', 9,
         'meeting:bench:reminder:' || g FROM generate_series(1, $n) g"
t1=$(date +%s%N)
while :; do
  left=$(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM notifications WHERE status <> 'sent'")
  [ "$left" -eq 0 ] && break
  sleep 0.1
done
t2=$(date +%s%N)
ms_queue=$(( (t1 - t0) / 1000000 ))
ms_all=$(( (t2 - t0) / 1000000 ))
echo "queued in ${ms_queue} ms; all $n sent ${ms_all} ms after the INSERT began"
echo "throughput: $(( n * 1000 / (ms_all > 0 ? ms_all : 1) )) messages/s"
accepted=$(curl -s "localhost:$port/_stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("accepted", d))')
echo "provider accepted: $accepted sends for $n messages (doubles: $(( accepted - n )))"
curl -s localhost:18091/metrics | grep -E '^chamad_sms_(sends_total|http_requests_total|http_connects_total|claimed_total|outcome_flushes_total)'
echo "CPU seconds: chamad $(awk '{print ($14+$15)/100}' /proc/$pid/stat), stand-in $(awk '{print ($14+$15)/100}' /proc/$emu/stat)"
echo "chamad peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2" "$3}')"
