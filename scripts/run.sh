#!/usr/bin/env bash
# make run: installs what is missing, builds, starts a private PostgreSQL and
# Redis (the "run" instance), migrates, seeds the demo chama and runs chamad
# in the foreground.  Ctrl-C stops chamad (it drains first) and the services.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
make -s -j2 bin/chamad
eval "$(bash scripts/services.sh env run)"
trap 'bash scripts/services.sh stop run' EXIT
bash scripts/services.sh start run
export CHAMAD_HTTP_LISTEN=${CHAMAD_HTTP_LISTEN:-127.0.0.1:8080}
bin/chamad -c etc/chamad.conf migrate
psql -X -q -v ON_ERROR_STOP=1 -v pin_hash="$(echo 1234 | bin/chamad -c etc/chamad.conf hash-pin)" \
  "$CHAMAD_DATABASE_URL" -f scripts/demo_seed.sql
echo "run: demo chama seeded; chamad listens on http://$CHAMAD_HTTP_LISTEN"
echo "run: try  curl http://$CHAMAD_HTTP_LISTEN/healthz   (Ctrl-C to stop)"
echo "run: be a member: scripts/ussd-sim --url http://$CHAMAD_HTTP_LISTEN/ussd/africastalking --phone +254712000002  (PIN 1234)"
echo "run: SMS queued (one-time codes): psql \"$CHAMAD_DATABASE_URL\" -c \"SELECT recipient, body FROM notifications ORDER BY id DESC LIMIT 5\""
bin/chamad -c etc/chamad.conf || true
