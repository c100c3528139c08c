#!/usr/bin/env bash
# Private PostgreSQL and Redis instances for development and tests.
#
#   scripts/services.sh start|stop|status|env   [INSTANCE]
#   scripts/services.sh pg-start|pg-stop|redis-start|redis-stop [INSTANCE]
#
# INSTANCE is "run" (make run) or "test" (make test); each has its own
# folder under .run/ (ignored by git) and its own ports, so both can run at
# once.  Ports come from CHAMASMART_PG_PORT / CHAMASMART_REDIS_PORT, else:
#   run:  PostgreSQL 25432, Redis 26379      test: 25433, 26380
# Works as root too: PostgreSQL refuses to run as root, so then the server
# runs as the "postgres" system user that Debian's package creates.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-status}
inst=${2:-run}
case "$inst" in
  # below Linux's ephemeral range (32768-60999): an outgoing connection can
  # never be holding our port while a server restarts
  run)  def_pg=25432; def_rd=26379 ;;
  test) def_pg=25433; def_rd=26380 ;;
  bench) def_pg=25435; def_rd=26382 ;;
  *)    def_pg=25434; def_rd=26381 ;;
esac
PG_PORT=${CHAMASMART_PG_PORT:-$def_pg}
RD_PORT=${CHAMASMART_REDIS_PORT:-$def_rd}
BASE="$ROOT/.run/$inst"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGUSER_DB=chamasmart

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The folder the server writes to.  As root it must be reachable by the
# postgres user; a clone under a private (0700) folder is not, so then the
# data lives under /var/tmp and .run/<inst>/pg is a link to it.
pg_dir() {
  local want="$BASE/pg"
  if [ "$(id -u)" -eq 0 ] && [ ! -e "$want" ]; then
    mkdir -p "$BASE"
    if ! runuser -u postgres -- test -x "$BASE" 2>/dev/null; then
      local alt="/var/tmp/chamasmart-$(echo "$ROOT/$inst" | sha1sum | cut -c1-12)"
      mkdir -p "$alt"; chown postgres: "$alt"
      ln -sfn "$alt" "$want"
    fi
  fi
  # the real path: going through the link would cross the private folder
  mkdir -p "$want"
  readlink -f "$want"
}

pg_url() { echo "postgresql://$PGUSER_DB@127.0.0.1:$PG_PORT/$PGUSER_DB"; }
redis_url() { echo "redis://127.0.0.1:$RD_PORT/0"; }

pg_start() {
  local d; d=$(pg_dir)
  mkdir -p "$d"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$d"
  if [ ! -f "$d/data/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$d/data" -U "$PGUSER_DB" --auth=trust -E UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
      || { cat "$BASE/initdb.log" >&2; exit 1; }
  fi
  if as_pg "$PGBIN/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then return 0; fi
  local extra=""
  [ "$inst" = test ] && extra="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$d -c max_connections=200 $extra" \
    start >/dev/null || { tail -20 "$d/server.log" >&2; exit 1; }
  for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1
  done
  psql -q -h 127.0.0.1 -p "$PG_PORT" -U "$PGUSER_DB" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='$PGUSER_DB'" | grep -q 1 \
    || psql -q -h 127.0.0.1 -p "$PG_PORT" -U "$PGUSER_DB" -d postgres -c "CREATE DATABASE $PGUSER_DB" >/dev/null
}

pg_stop() {
  [ -e "$BASE/pg" ] || return 0
  local d; d=$(readlink -f "$BASE/pg")
  [ -f "$d/data/PG_VERSION" ] || return 0
  as_pg "$PGBIN/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
}

redis_start() {
  local d="$BASE/redis"
  mkdir -p "$d"
  if redis-cli -p "$RD_PORT" ping >/dev/null 2>&1; then return 0; fi
  # 64 databases: each worker of a parallel test run (tests/run.py -j N)
  # has its own database index
  redis-server --port "$RD_PORT" --bind 127.0.0.1 --daemonize yes --pidfile "$d/redis.pid" \
    --dir "$d" --logfile "$d/redis.log" --save '' --appendonly no --databases 64 >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$RD_PORT" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.05
  done
  echo "services: redis did not start; see $d/redis.log" >&2; exit 1
}

redis_stop() {
  local d="$BASE/redis"
  if [ -f "$d/redis.pid" ]; then
    redis-cli -p "$RD_PORT" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$d/redis.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do
      redis-cli -p "$RD_PORT" ping >/dev/null 2>&1 || break; sleep 0.05
    done
    rm -f "$d/redis.pid"
  fi
}

case "$cmd" in
  start) pg_start; redis_start
         echo "services: PostgreSQL $(pg_url)  Redis $(redis_url)" ;;
  stop) redis_stop; pg_stop ;;
  pg-start) pg_start ;;
  pg-stop) pg_stop ;;
  redis-start) redis_start ;;
  redis-stop) redis_stop ;;
  env) echo "export CHAMAD_DATABASE_URL='$(pg_url)'"; echo "export CHAMAD_REDIS_URL='$(redis_url)'"
       echo "export CHAMASMART_PG_PORT=$PG_PORT CHAMASMART_REDIS_PORT=$RD_PORT" ;;
  status) pg_isready -h 127.0.0.1 -p "$PG_PORT" || true
          redis-cli -p "$RD_PORT" ping 2>&1 || true ;;
  *) echo "usage: $0 start|stop|status|env|pg-start|pg-stop|redis-start|redis-stop [run|test]" >&2; exit 2 ;;
esac
