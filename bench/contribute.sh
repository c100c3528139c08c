#!/usr/bin/env bash
# Contributions under load, end to end; figures go into the issue notes,
# never into tests.
#
#   ../shared/bench's ussdload (C, keep-alive, validates every answer) runs
#   Africa's Talking sessions "dial, PIN, 2 Contribute, amount, 1 Pay" at
#   each concurrency for DURATION_S against chamad, which pushes every
#   request to the Daraja emulator (scripts/daraja-emulator, Python: it also
#   posts each success callback back to chamad).  Since issue 10 chamad
#   credits a success callback only after the STK push query for its
#   CheckoutRequestID agrees: one more round trip to the emulator per
#   payment, which answers it from the push it made.  After the run, once
#   every request has settled (or 120 s passed), it reports:
#     sessions/s and hop p99 (ussdload), "busy" answers,
#     told   = sessions that ended "Check your phone",
#     pushed = pushes Daraja accepted (its /_pushes),
#     lost   = pushed but not confirmed,  doubled = pushes beyond requests,
#     the STK push queries the emulator answered in the run (its /_stats).
#
#   bench/contribute.sh [DURATION_S] [CONCURRENCIES]   (defaults 20 "32 128")
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-20}
concs=${2:-32 128}
nphones=400

bash scripts/deps.sh
make -s bin/chamad
make -s -C ../shared/bench OUT="$PWD/.run/tools" >/dev/null 2>&1
eval "$(bash scripts/services.sh env bench)"
pid=
emu=
phones=$(mktemp)
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "$emu" ] && { kill "$emu" 2>/dev/null || true; wait "$emu" 2>/dev/null || true; }
  rm -f "$phones"
  bash scripts/services.sh stop bench
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null

port=18094
dport=18095
scripts/daraja-emulator --port $dport --consumer-key bench-ck --consumer-secret bench-cs \
  --callback-delay-ms 200 >/tmp/daraja-contribute-bench.log 2>&1 &
emu=$!
for _ in $(seq 1 100); do curl -sf "localhost:$dport/healthz" >/dev/null 2>&1 && break; sleep 0.05; done

for conc in $concs; do
  psql -X -q "$CHAMAD_DATABASE_URL" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
  bin/chamad migrate >/dev/null
  pin_hash=$(echo 1234 | bin/chamad hash-pin)
  psql -X -q -v ON_ERROR_STOP=1 -v n=$nphones -v pin_hash="$pin_hash" "$CHAMAD_DATABASE_URL" >/dev/null <<'SQL'
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
VALUES ('Bench Group', 'mixed', 50000, 'monthly');
INSERT INTO users (phone, full_name, pin_hash, phone_verified, phone_verified_at)
SELECT format('+2547131%s', lpad(i::text, 5, '0')), 'Bench Member ' || i, :'pin_hash', true, now()
  FROM generate_series(1, :n) AS i;
INSERT INTO memberships (user_id, chama_id) SELECT u.id, c.id FROM users u, chamas c;
SQL
  psql -X -q -tA "$CHAMAD_DATABASE_URL" -c "SELECT phone FROM users ORDER BY phone" >"$phones"
  npush() { curl -s "localhost:$dport/_pushes" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d, list) else d.get("pushes", [])))'; }
  nquery() { curl -s "localhost:$dport/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queries"])'; }
  before=$(npush)
  qbefore=$(nquery)
  CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn CHAMAD_MPESA_BASE_URL=http://127.0.0.1:$dport \
    CHAMAD_MPESA_CONSUMER_KEY=bench-ck CHAMAD_MPESA_CONSUMER_SECRET=bench-cs \
    CHAMAD_MPESA_PASSKEY=bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919 \
    CHAMAD_MPESA_PUBLIC_URL=http://127.0.0.1:$port CHAMAD_MPESA_CALLBACK_SECRET=bench-callback-secret-0123456789 \
    CHAMAD_MPESA_ALLOW_IPS=safaricom:127.0.0.1 \
    CHAMAD_MPESA_PUSH_DELAY_MS=200 CHAMAD_MPESA_QUERY_AFTER_S=20 CHAMAD_MPESA_QUERY_EVERY_S=2 \
    CHAMAD_MPESA_DAILY_LIMIT=1000000 CHAMAD_AUTH_QUEUE_MAX=100000 \
    bin/chamad >/tmp/chamad-contribute-bench.log 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.05; done
  echo "== concurrency $conc, $dur s, $(nproc) cores, $nphones members"
  json=$(.run/tools/ussdload --url "http://127.0.0.1:$port/ussd/africastalking" -c "$conc" -d "$dur" -q \
    --phones "$phones" --define 'pay=|1234|1234*2|1234*2*10|1234*2*10*1=END Check your phone' --script pay)
  echo "ussdload: $json"
  for _ in $(seq 1 1200); do
    open_=$(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM mpesa_requests WHERE status IN ('created', 'pushed', 'unknown')")
    [ "$open_" -eq 0 ] && break
    sleep 0.1
  done
  told=$(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM mpesa_requests")
  confirmed=$(psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT count(*) FROM mpesa_requests WHERE status = 'confirmed'")
  pushed=$(( $(npush) - before ))
  echo "told (requests) $told, pushed (Daraja accepted) $pushed, confirmed $confirmed," \
    "lost $(( pushed - confirmed )), doubled $(( pushed > told ? pushed - told : 0 )), still open $open_"
  echo "STK push queries the emulator answered: $(( $(nquery) - qbefore ))"
  psql -X -tA "$CHAMAD_DATABASE_URL" -c "SELECT 'request states: ' || string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM mpesa_requests GROUP BY 1) s"
  echo "CPU seconds: chamad $(awk '{print ($14+$15)/100}' /proc/$pid/stat), daraja-emulator $(awk '{print ($14+$15)/100}' /proc/$emu/stat)"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
