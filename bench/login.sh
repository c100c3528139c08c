#!/usr/bin/env bash
# Login benchmark: USSD log-ins per second against the raw argon2id rate of
# the same cores.  Figures go into the issue notes, never into tests.
#
#   raw KDF:  ../shared/bench kdfrate, [auth] workers threads, chamad's
#             pin_memlimit_kib and pin_opslimit: the most PIN checks per
#             second these cores can do; measured for 5 s before and after each
#             run too, and each ratio is against the mean of those two
#   logins:   ../shared/bench ussdload, Africa's Talking sessions "dial,
#             PIN" ending on the logged-in main menu, at 32, 128 and 512
#             concurrent connections (512 is about 4x what the KDF rate can
#             answer within one hop deadline); per concurrency: logins/s
#             (goodput), goodput / raw KDF rate, "busy" answers, other
#             errors, PIN-hop p50/p99, and the CPU each process used
#
# The bench instance (PostgreSQL + Redis, scripts/services.sh; ports from
# CHAMASMART_PG_PORT / CHAMASMART_REDIS_PORT when set) gets the demo chama
# and NPHONES members +254713000001.. with PIN 1234.
#
#   bench/login.sh [DURATION_S] [CONCURRENCIES]     (defaults 10 and "32 128 512")
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
concs=${2:-32 128 512}
nphones=${NPHONES:-4000}
port=${LOGIN_BENCH_PORT:-18091}
tools=$PWD/.run/tools

bash scripts/deps.sh
make -s bin/chamad
make -s -C ../shared/bench OUT="$tools" >/dev/null 2>&1 || make -s -C /work/shared/bench OUT="$tools" >/dev/null
eval "$(bash scripts/services.sh env bench)"
pid=
log=$(mktemp /tmp/chamad-login-bench.XXXXXX.log)
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  bash scripts/services.sh stop bench
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
. bench/common.sh
bench_books login "$nphones" +2547130 'Bench Member'

CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn bin/chamad >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/healthz)" = 200 ] && break; sleep 0.05
done
[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/healthz)" = 200 ] \
  || { echo "login bench: chamad not healthy; see $log" >&2; exit 1; }

# chamad's defaults (src/base/config.c) unless the environment sets them
workers=${CHAMAD_AUTH_WORKERS:-2} mem=${CHAMAD_AUTH_PIN_MEMLIMIT_KIB:-19456}
ops=${CHAMAD_AUTH_PIN_OPSLIMIT:-2} hop=${CHAMAD_USSD_HOP_TIMEOUT_MS:-4000}

# CPU seconds (user+system) of a process, and of every process of a command
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
ticks_of() { local t=0 p; for p in $(pgrep -x "$1" || true); do t=$((t + $(ticks "$p"))); done; echo $t; }
hz=$(getconf CLK_TCK)
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz}'; }

echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, $nphones bench phones, ${dur}s per run"
echo "[auth] workers=$workers pin_memlimit_kib=$mem pin_opslimit=$ops; [ussd] hop_timeout_ms=$hop"
raw=$("$tools/kdfrate" "$workers" "$dur" "$mem" "$ops")
rate=$(echo "$raw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hashes_per_s"])')
echo "raw argon2id: $rate verifications/s on $workers threads ($raw)"
echo
printf '%6s %9s %7s %7s %7s %8s %8s | %s\n' conc logins/s ratio busy errors p50_ms p99_ms "CPU s: chamad postgres redis ussdload"

# chamad's own count of "Service busy" answers (outcome busy or timeout)
busy_count() {
  curl -s localhost:$port/metrics |
    awk '/^chamad_ussd_hops_total\{outcome="(busy|timeout)"\}/ {n += $2} END {print n + 0}'
}

# The session: dial, the PIN (answered by the logged-in main menu), 9 (Exit).
# A "busy" END on the PIN hop is a flow error for ussdload.
script='login=|1234|1234*9'
kdf() { "$tools/kdfrate" "$workers" 5 "$mem" "$ops" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hashes_per_s"])'; }
for c in $concs; do
  out=$(mktemp)
  # the raw rate of these cores right before and after each run (its speed
  # drifts between runs on a shared host): the ratio is against their mean
  k0=$(kdf)
  b0=$(busy_count)
  c0=$(ticks "$pid"); p0=$(ticks_of postgres); r0=$(ticks_of redis-server)
  "$tools/ussdload" -q --url "http://127.0.0.1:$port/ussd/africastalking" -c "$c" -d "$dur" --warmup 2 \
      --phone-range "254713000001:$nphones" --define "$script" --script login --label "c$c" >"$out" 2>"$out.err" || true
  c1=$(ticks "$pid"); p1=$(ticks_of postgres); r1=$(ticks_of redis-server)
  b1=$(busy_count)
  k1=$(kdf)
  rate=$(python3 -c "print(($k0 + $k1) / 2)")
  echo "  (raw argon2id around this run: $k0 and $k1 /s)"
  python3 - "$out" "$rate" "$c" "$((b1 - b0))" "$(secs $((c1 - c0)))" "$(secs $((p1 - p0)))" "$(secs $((r1 - r0)))" <<'PY'
import json, sys
path, rate, conc, busy, cc, cp, cr = sys.argv[1:]
d = json.loads(open(path).read().strip().splitlines()[-1])
s = d["sessions_per_s"]
steps = d["per_script"]["login"]["steps"]
pin = steps[1]
print("%6s %9.1f %6.0f%% %7s %7d %8.0f %8.0f | %s %s %s %.1f" % (conc, s, 100.0 * s / float(rate), busy,
      d["errors"], pin["p50_ms"], pin["p99_ms"], cc, cp, cr, d["loadgen_cpu_s"]))
PY
  cp "$out" "/tmp/login-bench-c$c.json"; cp "$out.err" "/tmp/login-bench-c$c.err"
  rm -f "$out" "$out.err"
done
echo
echo "busy: chamad's \"Service busy\" answers during the run (warm-up included); errors: ussdload's"
echo "(any answer other than the expected screen, busy ones included); p50/p99: the PIN hop"
curl -s localhost:$port/metrics | grep -E '^chamad_(auth|ussd_hops_total|db_queries_total|db_timeouts)' || true
echo "(raw JSON per run in /tmp/login-bench-c*.json; chamad log in $log)"
