# Sourced by the USSD benches (ussd.sh, login.sh, nav.sh), after
# `eval "$(bash scripts/services.sh env bench)"` and the services' start.
#
#   bench_books NAME N PREFIX MEMBER_NAME
#     empty books (another bench may have left its members here), the
#     migrations, the demo chama (scripts/demo_seed.sql) and N members
#     PREFIX<5 digits> named "MEMBER_NAME <i>" with PIN 1234 in it
#     (bench/seed_members.sql); sets pin_hash.  NAME is for messages.
bench_books() {
  local name=$1 n=$2 prefix=$3 member=$4
  psql -X -q "$CHAMAD_DATABASE_URL" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
  bin/chamad migrate >/dev/null
  pin_hash=$(echo 1234 | bin/chamad hash-pin)
  [ -n "$pin_hash" ] || { echo "$name bench: chamad hash-pin printed nothing" >&2; exit 1; }
  export PGOPTIONS='--client-min-messages=warning'
  psql -X -q -v ON_ERROR_STOP=1 -v pin_hash="$pin_hash" "$CHAMAD_DATABASE_URL" -f scripts/demo_seed.sql
  psql -X -q -v ON_ERROR_STOP=1 -v n="$n" -v prefix="$prefix" -v name="$member" -v pin_hash="$pin_hash" \
    -v tag="bench-$name" "$CHAMAD_DATABASE_URL" -f bench/seed_members.sql >/dev/null
}
