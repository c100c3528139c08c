#!/usr/bin/env bash
# Benchmarks chamad; figures go into the issue notes, never into tests.
#
#   healthz: wrk against GET /healthz, which costs one PostgreSQL round trip
#            (SELECT 1 through the pool) and one Redis PING per request, so it
#            measures the HTTP front + both async clients on one loop.
#   memory:  chamad's resident set (VmRSS) idle and its peak (VmHWM) after load.
#
#   bench/run.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 64)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
conns=${2:-64}

bash scripts/deps.sh
command -v wrk >/dev/null || { [ "$(id -u)" -eq 0 ] && S= || S=sudo
  $S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait $pid 2>/dev/null; bash scripts/services.sh stop bench' EXIT
bash scripts/services.sh start bench >/dev/null
port=18089
CHAMAD_HTTP_LISTEN=127.0.0.1:$port CHAMAD_LOG_LEVEL=warn bin/chamad >/tmp/chamad-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.05; done
echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, pool_size 4"
echo "idle RSS: $(grep VmRSS /proc/$pid/status | awk '{print $2" "$3}')"
wrk -t2 -c"$conns" -d"${dur}s" --latency "http://127.0.0.1:$port/healthz"
echo "peak RSS after load: $(grep VmHWM /proc/$pid/status | awk '{print $2" "$3}')"
curl -s localhost:$port/metrics | grep -E '^chamad_http_requests_total|^chamad_db_queries_total|^chamad_db_timeouts|^chamad_redis_timeouts'
