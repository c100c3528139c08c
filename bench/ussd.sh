#!/usr/bin/env bash
# USSD benchmark: many concurrent Africa's Talking sessions through chamad's
# /ussd/africastalking, driven by bench/ussd.py (which says what each hop
# class measures).  Figures go into the issue notes, never into tests.
#
#   nav:    C workers; a session is dial, PIN, 20 menu hops (Balance, Back,
#           Meetings, Back, My chama, Back, ...), 9 Exit
#   login:  C workers; a session is dial, PIN, 9: PIN hashing bound
#   both:   the two at once: does log-in load slow the menu hops down?
#   memory: chamad's resident set idle and its peak (VmHWM) after each phase
#
# The bench instance (PostgreSQL + Redis, scripts/services.sh) gets the demo
# chama and 400 more members +254713000001..+254713000400 with PIN 1234.
#
#   bench/ussd.sh [DURATION_S] [CONCURRENCY]      (defaults 10 and 16)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
conc=${2:-16}
nphones=400
[ $((2 * conc)) -le $nphones ] || { echo "ussd bench: at most $((nphones / 2)) workers a class" >&2; exit 2; }

bash scripts/deps.sh
make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
pid=
phones=$(mktemp)
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -f "$phones"
  bash scripts/services.sh stop bench
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
. bench/common.sh
bench_books ussd "$nphones" +2547130 'Bench Member'
psql -X -q -tA "$CHAMAD_DATABASE_URL" >"$phones" -c "
    SELECT u.phone FROM users u JOIN memberships m ON m.user_id = u.id AND m.status = 'active'
     WHERE u.phone LIKE '+2547130%' AND u.deleted_at IS NULL ORDER BY u.phone"
[ "$(wc -l <"$phones")" -ge $((2 * conc)) ] || { echo "ussd bench: too few bench members" >&2; exit 1; }

port=18090
CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn bin/chamad >/tmp/chamad-ussd-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/healthz)" = 200 ] && break; sleep 0.05
done
[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/healthz)" = 200 ] \
  || { echo "ussd bench: chamad not healthy; see /tmp/chamad-ussd-bench.log" >&2; exit 1; }

hwm() { grep VmHWM /proc/$pid/status | awk '{print $2" "$3}'; }
phase() {
  echo
  python3 bench/ussd.py --url "http://127.0.0.1:$port/ussd/africastalking" --phones-file "$phones" \
    --duration "$dur" --concurrency "$conc" "$@"
  echo "  chamad peak RSS so far: $(hwm)"
}
echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, $(wc -l <"$phones") bench phones"
echo "idle RSS: $(grep VmRSS /proc/$pid/status | awk '{print $2" "$3}')"
phase --mix nav
phase --mix login
phase --mix both
echo
echo "peak RSS after load: $(hwm)"
curl -s localhost:$port/metrics | grep -E '^chamad_(ussd|http_requests_total|db_queries_total|db_timeouts|redis_timeouts)' || true
