#!/usr/bin/env bash
# make run: installs what is missing, builds, starts a private PostgreSQL and
# Redis (the "run" instance), migrates (migrations/, then the schema/ files
# that changed), seeds the demo chama, starts the loopback Africa's Talking
# SMS emulator as the SMS sandbox (every SMS chamad sends lands in
# .run/run/sms.log, one-time codes included) and runs chamad in the
# foreground.  Ctrl-C stops chamad (it drains first) and the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
make -s -j2 bin/chamad
eval "$(bash scripts/services.sh env run)"
emu=
cleanup() {
  [ -n "$emu" ] && kill $emu 2>/dev/null || true
  bash scripts/services.sh stop run
}
trap cleanup EXIT
bash scripts/services.sh start run
export CHAMAD_HTTP_LISTEN=${CHAMAD_HTTP_LISTEN:-127.0.0.1:8080}
bin/chamad -c etc/chamad.conf migrate
psql -X -q -v ON_ERROR_STOP=1 -v pin_hash="$(echo 1234 | bin/chamad -c etc/chamad.conf hash-pin)" \
  "$CHAMAD_DATABASE_URL" -f scripts/demo_seed.sql

# The SMS sandbox, unless the operator configured a provider of their own.
if [ -z "${CHAMAD_SMS_PROVIDER:-}" ]; then
  sms_port=18700
  touch .run/run/sms.log
  scripts/at-sms-emulator --port $sms_port --api-key run-sandbox-key --username sandbox \
    --log .run/run/sms.log --dlr-url "http://$CHAMAD_HTTP_LISTEN/sms/africastalking/dlr" \
    > .run/run/at-sms-emulator.out 2>&1 &
  emu=$!
  for _ in $(seq 1 50); do curl -sf "localhost:$sms_port/healthz" >/dev/null && break; sleep 0.1; done
  export CHAMAD_SMS_PROVIDER=africastalking CHAMAD_SMS_AT_BASE_URL=http://127.0.0.1:$sms_port \
    CHAMAD_SMS_AT_USERNAME=sandbox CHAMAD_SMS_AT_API_KEY=run-sandbox-key
fi

# The M-Pesa sandbox: a loopback Daraja emulator (pushes and callbacks in .run/run/mpesa.log).
if [ -z "${CHAMAD_MPESA_CONSUMER_KEY:-}" ]; then
  mpesa_port=18701
  # the sandbox's API initiator (B2C payouts, Transaction Status, Account
  # Balance): chamad is given the same name and SecurityCredential below
  scripts/daraja-emulator --port $mpesa_port --consumer-key run-key --consumer-secret run-secret \
    --initiator-name run-initiator --security-credential run-security-credential \
    --log .run/run/mpesa.log > .run/run/daraja-emulator.out 2>&1 &
  emu="$emu $!"
  for _ in $(seq 1 50); do curl -sf "localhost:$mpesa_port/healthz" >/dev/null && break; sleep 0.1; done
  # chamad refuses M-Pesa without a path secret nobody can guess (32
  # characters of A-Z a-z 0-9 _ -) and Safaricom's addresses: here a fresh
  # secret per run, and the emulator's loopback address
  mpesa_secret=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
  export CHAMAD_MPESA_BASE_URL=http://127.0.0.1:$mpesa_port CHAMAD_MPESA_CONSUMER_KEY=run-key \
    CHAMAD_MPESA_CONSUMER_SECRET=run-secret \
    CHAMAD_MPESA_CALLBACK_SECRET=$mpesa_secret CHAMAD_MPESA_ALLOW_IPS=safaricom:127.0.0.1 \
    CHAMAD_MPESA_PASSKEY=bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919 \
    CHAMAD_MPESA_PUBLIC_URL=http://$CHAMAD_HTTP_LISTEN \
    CHAMAD_MPESA_INITIATOR_NAME=run-initiator CHAMAD_MPESA_SECURITY_CREDENTIAL=run-security-credential
fi

echo "run: demo chama seeded; chamad listens on http://$CHAMAD_HTTP_LISTEN"
echo "run: try  curl http://$CHAMAD_HTTP_LISTEN/healthz   (Ctrl-C to stop)"
echo "run: be a member: scripts/ussd-sim --url http://$CHAMAD_HTTP_LISTEN/ussd/africastalking --phone +254712000002  (PIN 1234)"
echo "run: every SMS sent (one-time codes too): tail -f .run/run/sms.log"
echo "run: contribute on USSD (2 on the main menu); the M-Pesa sandbox logs to .run/run/mpesa.log"
[ -n "${mpesa_secret:-}" ] && echo "run: M-Pesa callbacks: http://$CHAMAD_HTTP_LISTEN/mpesa/stk/callback/<secret> (secret in CHAMAD_MPESA_CALLBACK_SECRET, made for this run; Safaricom's allow-list: 127.0.0.1)"
echo "run: text a command: curl http://$CHAMAD_HTTP_LISTEN/sms/africastalking/inbound -d from=%2B254712000002 -d id=1 --data-urlencode 'text=BAL 1234'"
bin/chamad -c etc/chamad.conf || true
