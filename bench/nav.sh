#!/usr/bin/env bash
# Navigation benchmark: how many non-PIN USSD hops/s chamad serves, against
# the bare HTTP ceiling of this machine.  Figures go into the issue notes,
# never into tests.
#
#   menus: dial, PIN, then 13 menu hops that show no new data (My chama,
#          Back, Loans, Back, Language, Back, ...): state from Redis only
#   data:  dial, PIN, then 13 hops of which 5 are data screens (Balance,
#          Meetings, Members: one prepared statement each) and the rest
#          menus and Back
#   floor: shared/bench's bare libevent responder, the same load tool
#
# ussdload (shared/bench: C, keep-alive, checks every answer) runs each
# script; the PIN hop (step 1) is left out of the figures (--exclude-steps).
# A session logs in once per 15 hops (ussdload's scripts have 16 steps at
# most), so the PIN hash would bound the run: the bench members' PIN hash
# and chamad's [auth] use argon2id at its cheapest (1 pass, 64 KiB).  PIN
# hops are measured by the login benchmarks, not here.
#
# Prints, per phase: non-PIN hops/s, p50/p99 (ms), errors, and the CPU
# seconds each process used (chamad, PostgreSQL, Redis, the load tool).
#
#   bench/nav.sh [DURATION_S] [CONCURRENCY]      (defaults 10 and 64)
# Uses the "bench" services instance (its ports, or CHAMASMART_PG_PORT /
# CHAMASMART_REDIS_PORT) and HTTP ports NAV_PORT (18091) and FLOOR_PORT (18092).
set -euo pipefail
[ -n "${NAV_DEBUG:-}" ] && set -x
cd "$(dirname "$0")/.."
dur=${1:-10}
conc=${2:-64}
port=${NAV_PORT:-18091}
fport=${FLOOR_PORT:-18092}
nphones=400

bash scripts/deps.sh
make -s bin/chamad
tools=$PWD/.run/tools
make -s -C ../shared/bench OUT="$tools" >/dev/null 2>&1 || make -s -C /work/shared/bench OUT="$tools" >/dev/null
eval "$(bash scripts/services.sh env bench)"
export CHAMAD_AUTH_PIN_OPSLIMIT=1 CHAMAD_AUTH_PIN_MEMLIMIT_KIB=64
pid= fpid=
tmp=$(mktemp -d)
cleanup() {
  for p in $pid $fpid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
  bash scripts/services.sh stop bench
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
. bench/common.sh
bench_books nav "$nphones" +2547140 'Nav Member'
psql -X -q -tA "$CHAMAD_DATABASE_URL" >"$tmp/phones" -c "
    SELECT u.phone FROM users u JOIN memberships m ON m.user_id = u.id AND m.status = 'active'
     WHERE u.phone LIKE '+2547140%' AND u.deleted_at IS NULL ORDER BY u.phone"
[ "$(wc -l <"$tmp/phones")" -ge 32 ] || { echo "nav bench: too few bench members" >&2; exit 1; }

CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn \
  bin/chamad >/tmp/chamad-nav-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/healthz)" = 200 ] && break; sleep 0.05
done
[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/healthz)" = 200 ] \
  || { echo "nav bench: chamad not healthy; see /tmp/chamad-nav-bench.log" >&2; exit 1; }
"$tools/floor" "$fport" >/dev/null 2>&1 &
fpid=$!

# CPU seconds (user+system) of a process and all its threads, or of a list
pg_main=$(head -1 "$(readlink -f .run/bench/pg)/data/postmaster.pid")
rd_pid=$(cat .run/bench/redis/redis.pid)
ticks=$(getconf CLK_TCK)
cpu_of() {  # pids... -> clock ticks
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $t
}
pg_pids() { echo "$pg_main"; ps -o pid= --ppid "$pg_main"; }
snap() { echo "$(cpu_of $pid) $(cpu_of $(pg_pids)) $(cpu_of $rd_pid) $(cpu_of $fpid)"; }

# ussdload SCRIPT-NAME DEFINITION URL [EXCLUDE] -> prints the figures
run() {
  local name=$1 def=$2 url=$3 before after
  before=$(snap)
  "$tools/ussdload" --url "$url" --phones "$tmp/phones" -c "$conc" -d "$dur" --warmup 1 \
    --service-code '*384*123#' --define "$def" --script "$name" ${4:+--exclude-steps "$name:$4"} \
    --label "$name" >"$tmp/$name.json" 2>"$tmp/$name.txt" || true
  after=$(snap)
  [ -s "$tmp/$name.json" ] || { tail -5 "$tmp/$name.txt" >&2; exit 1; }
  grep -m2 '^ussdload: error' "$tmp/$name.txt" | sed 's/^/    /' || true
  python3 - "$tmp/$name.json" "$before" "$after" "$ticks" "$dur" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
b = [int(x) for x in sys.argv[2].split()]; a = [int(x) for x in sys.argv[3].split()]
hz, dur = int(sys.argv[4]), float(sys.argv[5])
s = j["per_script"][j["label"]]
rest = s.get("rest") or j
print("  %-6s %s hops/s %8.0f   p50 %.3f ms  p99 %.3f ms   (all hops %.0f/s, errors %d %s)"
      % (j["label"], "non-PIN" if s.get("rest") else "all", rest["hops_per_s"], rest["p50_ms"], rest["p99_ms"],
         j["hops_per_s"], j["errors"], {k: v for k, v in j["error_breakdown"].items() if v}))
if s.get("rest"):
    print("         per step p50/p99 ms: " + "  ".join("%s %.2f/%.2f" % ((st["text"].rsplit("*", 1)[-1] or "dial")
          if i != 1 else "PIN", st["p50_ms"], st["p99_ms"]) for i, st in enumerate(s["steps"])))
names = ("chamad", "postgres", "redis", "floor")
cpu = ["%s %.1f s" % (n, (a[i] - b[i]) / hz) for i, n in enumerate(names) if a[i] - b[i] > 0]
print("         CPU (%.0f s + 1 s warm-up): %s, ussdload %.1f s" % (dur, ", ".join(cpu), j["loadgen_cpu_s"]))
PY
}

menus='menus=|1234|1234*5|1234*5*0|1234*5*0*3|1234*5*0*3*0|1234*5*0*3*0*8|1234*5*0*3*0*8*0|1234*5*0*3*0*8*0*5|1234*5*0*3*0*8*0*5*0|1234*5*0*3*0*8*0*5*0*3|1234*5*0*3*0*8*0*5*0*3*0|1234*5*0*3*0*8*0*5*0*3*0*5|1234*5*0*3*0*8*0*5*0*3*0*5*0|1234*5*0*3*0*8*0*5*0*3*0*5*0*9=END'
data='data=|1234|1234*1|1234*1*0|1234*1*0*4|1234*1*0*4*0|1234*1*0*4*0*5|1234*1*0*4*0*5*1|1234*1*0*4*0*5*1*0|1234*1*0*4*0*5*1*0*0|1234*1*0*4*0*5*1*0*0*1|1234*1*0*4*0*5*1*0*0*1*0|1234*1*0*4*0*5*1*0*0*1*0*4|1234*1*0*4*0*5*1*0*0*1*0*4*0|1234*1*0*4*0*5*1*0*0*1*0*4*0*9=END'

echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, $conc connections, ${dur} s a phase"
echo "floor: the bare libevent HTTP path (every answer END ok)"
run floor 'floor==END ok' "http://127.0.0.1:$fport/ussd"
echo "menus: log in once, then menu and Back hops only"
run menus "$menus" "http://127.0.0.1:$port/ussd/africastalking" 1
echo "data: log in once, then Balance, Meetings, Members among menu and Back hops"
run data "$data" "http://127.0.0.1:$port/ussd/africastalking" 1
curl -s localhost:$port/metrics | grep -E '^chamad_(ussd_hops_total|db_queries_total|db_timeouts|redis_timeouts)' || true
