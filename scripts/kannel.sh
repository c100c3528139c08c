#!/usr/bin/env bash
# Debian's real Kannel on loopback, for tests and make run: bearerbox, smsbox
# and an SMSC of type "fake" driven by fakesmsc (package kannel-extras).
#
#   scripts/kannel.sh start|stop|restart|status|env   [INSTANCE]
#
# INSTANCE is "run", "test", "bench" or anything else; each has its folder
# .run/<instance>/kannel/ (config, logs, pid files, fakesmsc FIFO and output)
# and its own ports, from a base (CHAMASMART_KANNEL_PORT overrides it):
#            base   admin  smsbox-port  fake smsc  sendsms
#   test     23000  23000  23001        23010      23013
#   run      23100  23100  23101        23110      23113
#   bench    23200  ...    (base+1)     (base+10)  (base+13)
#   other    23300
# All below Linux's ephemeral range and bound to 127.0.0.1.
#
# Environment read by start (the config is written anew by every start; if it
# changed while Kannel runs, start restarts it):
#   CHAMAD_INBOUND_URL  get-url of the catch-all sms-service, i.e. where an MO
#       (inbound) SMS goes.  Kannel escapes: %p sender, %P receiver (short
#       code), %a all words, spaces squeezed, %b the text exactly (URL-encoded
#       bytes), %I Kannel's message id, %t time, %c coding.  Default:
#       http://127.0.0.1:8080/sms/kannel/inbound?from=%p&to=%P&text=%a&id=%I
#   KANNEL_USER / KANNEL_PASS  the sendsms-user (default chamad / chamad-kannel)
#   KANNEL_LOG_LEVEL    0 debug .. 4 panic for bearerbox.log/smsbox.log (1)
# stop (and restart) read KANNEL_STOP_WAIT: seconds between TERM and KILL
# (default 5; a clean stop takes about 1 s; 0 = KILL at once, ~0.05 s: nothing
# of a test instance outlives it anyway, DLRs are kept in memory only).
#
# start takes about 0.25 s; it returns once bearerbox runs, fakesmsc is
# connected (admin status says "online"), smsbox is connected to bearerbox
# and sendsms answers.  Binaries used: /usr/sbin/bearerbox, /usr/sbin/smsbox
# (package kannel), /usr/lib/kannel/test/fakesmsc (package kannel-extras).
#
# The sms-service has max-messages = 0 and omit-empty = true: Kannel never
# turns the get-url's answer into a reply SMS; chamad replies through its own
# outbox (sendsms).  The reply-* texts are empty too, so when the get-url
# fails Kannel sends no "Request Failed" SMS of its own either.
#
# fakesmsc is the "phone network": every MT message it receives appears in
# .run/<instance>/kannel/fakesmsc.out as a log line
#   2024-01-01 12:00:00 [pid] [0] DEBUG: Got message 1: <SENDER RECEIVER text THE TEXT>
# 8-bit: "data URLENCODED"; coding=2: "ucs-2 URLENCODED" (bytes in sendsms's
# charset: UTF-8 by default, UTF-16BE with charset=UTF-16BE); a long text:
# one line per part, "udh URLENCODED-UDH data URLENCODED"; a 7-bit text with a
# newline shows as two lines; a character outside GSM-7 in a 7-bit text
# arrives as "?" (send coding=2).  Sender: from=, else "CHAMASMART".
# An MO message is one line written to the FIFO .run/<instance>/kannel/fakesmsc.in:
#   SENDER RECEIVER text THE TEXT        e.g.  +254712345678 12345 text BAL 4821
# (also "SENDER RECEIVER data URLENCODED" and "... ucs2 URLENCODED-UTF-16BE";
# mo-recode turns UCS-2 into UTF-8 before the get-url).  fakesmsc reads at
# most 255 bytes per line.  It holds the FIFO open for writing itself, so it
# never sees EOF and a writer never waits for a reader while it runs (open the
# FIFO with O_NONBLOCK to fail fast when it does not).
#
# What Kannel calls (all GET):
#   get-url, per MO: the escapes above, URL-encoded.  Several MOs are fetched
#     concurrently, so their order is not kept.  A get-url that cannot be
#     reached is logged in smsbox.log ("Couldn't fetch") and not retried.
#   dlr-url, per MT sent with dlr-mask (1|8 or 31) and dlr-url: first %d=8
#     (delivered to SMSC, %A="ACK/", %F empty), at once followed by %d=1
#     (delivered to phone, %A empty, %F a uuid).  In a DLR %p is the phone the
#     MT went to and %P the MT's sender; %I differs between the two DLRs, so
#     put chamad's own id in the dlr-url.  The fake SMSC never produces 2, 4
#     or 16 (16 only if writing to fakesmsc fails).
# sendsms takes its parameters in the query string (GET); a form-encoded POST
# gets 400 "Invalid content-type".  Success: 202 "0: Accepted for delivery";
# a wrong password: 403 "Authorization failed for sendsms".
#
# status prints each process and whether sendsms answers; exits 1 unless all
# is up.  env prints the exports (works before start too).
# Installs kannel and kannel-extras with apt when missing (sudo if not root).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-status}
inst=${2:-run}
case "$inst" in
  test)  def_base=23000 ;;
  run)   def_base=23100 ;;
  bench) def_base=23200 ;;
  *)     def_base=23300 ;;
esac
BASE_PORT=${CHAMASMART_KANNEL_PORT:-$def_base}
ADMIN_PORT=$BASE_PORT
BOX_PORT=$((BASE_PORT + 1))
FAKE_PORT=$((BASE_PORT + 10))
SENDSMS_PORT=$((BASE_PORT + 13))
D="$ROOT/.run/$inst/kannel"
CONF="$D/kannel.conf"
FIFO="$D/fakesmsc.in"
OUT="$D/fakesmsc.out"
K_USER=${KANNEL_USER:-chamad}
K_PASS=${KANNEL_PASS:-chamad-kannel}
ADMIN_PASS=chamad-admin
INBOUND_URL=${CHAMAD_INBOUND_URL:-'http://127.0.0.1:8080/sms/kannel/inbound?from=%p&to=%P&text=%a&id=%I'}
LOG_LEVEL=${KANNEL_LOG_LEVEL:-1}
BEARERBOX=/usr/sbin/bearerbox
SMSBOX=/usr/sbin/smsbox
FAKESMSC=/usr/lib/kannel/test/fakesmsc
SENDSMS_URL="http://127.0.0.1:$SENDSMS_PORT/cgi-bin/sendsms"
STATUS_URL="http://127.0.0.1:$ADMIN_PORT/status.txt?password=$ADMIN_PASS"

say() { echo "kannel: $*" >&2; }
die() { say "$*"; exit 1; }

install_kannel() {
  [ -x "$BEARERBOX" ] && [ -x "$SMSBOX" ] && [ -x "$FAKESMSC" ] && return 0
  local sudo=
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install kannel kannel-extras"
    sudo=sudo
  fi
  say "installing kannel kannel-extras"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    kannel kannel-extras >/dev/null
  [ -x "$FAKESMSC" ] || die "no $FAKESMSC after installing kannel-extras"
}

# Kannel's config strings are in double quotes; refuse what would break them
q() {
  case "$1" in *'"'*|*$'\n'*) die "a config value may not hold a double quote or newline: $1" ;; esac
  printf '"%s"' "$1"
}

write_conf() {
  mkdir -p "$D"
  cat >"$CONF.new" <<EOF
# written by scripts/kannel.sh start $inst; edits are lost at the next start
group = core
admin-port = $ADMIN_PORT
admin-interface = 127.0.0.1
admin-password = $(q "$ADMIN_PASS")
admin-allow-ip = "127.0.0.1"
smsbox-port = $BOX_PORT
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = $(q "$D/bearerbox.log")
log-level = $LOG_LEVEL
access-log = $(q "$D/access.log")
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = $FAKE_PORT
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $BOX_PORT
sendsms-port = $SENDSMS_PORT
sendsms-interface = 127.0.0.1
log-file = $(q "$D/smsbox.log")
log-level = $LOG_LEVEL
access-log = $(q "$D/smsbox-access.log")
mo-recode = true
reply-couldnotfetch = ""
reply-couldnotrepresent = ""
reply-requestfailed = ""
reply-emptymessage = ""

group = sendsms-user
username = $(q "$K_USER")
password = $(q "$K_PASS")
max-messages = 10
concatenation = true
default-sender = "CHAMASMART"

group = sms-service
keyword = default
catch-all = true
get-url = $(q "$INBOUND_URL")
max-messages = 0
omit-empty = true
EOF
  if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then rm -f "$CONF.new"; return 1; fi
  mv "$CONF.new" "$CONF"
  return 0
}

running() { # pid: alive and not a zombie waiting for a reaper
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$st" != Z ]
}

pid_of() { # name -> pid when that process is alive
  local f="$D/$1.pid" p
  [ -f "$f" ] || return 1
  p=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$p" ] && running "$p" && echo "$p"
}

alive() { pid_of "$1" >/dev/null; }

sendsms_answers() { # any HTTP answer from smsbox's sendsms (no params: 4xx)
  local code
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$SENDSMS_URL" 2>/dev/null) || true
  [ -n "$code" ] && [ "$code" != 000 ]
}

admin_status() { curl -s -m 2 "$STATUS_URL" 2>/dev/null || true; }

wait_for() { # seconds process command... ; polls every 0.05 s, gives up
  local secs=$1 proc=$2; shift 2   # at once when the process has died
  local n=$((secs * 20))
  for _ in $(seq 1 "$n"); do
    "$@" && return 0
    alive "$proc" || { say "$proc exited"; return 1; }
    sleep 0.05
  done
  return 1
}

fake_listed() { admin_status | grep -q "FAKE:$FAKE_PORT"; }
fake_online() { admin_status | grep -q "FAKE:$FAKE_PORT.*(online"; }
smsbox_connected() { admin_status | grep -q 'smsbox:'; }

start_bg() { # name command... ; runs detached, pid in $D/name.pid
  local name=$1; shift
  setsid "$@" </dev/null >>"$D/$name-console.log" 2>&1 &
  echo $! >"$D/$name.pid"
}

k_start() {
  install_kannel
  local changed=0
  write_conf && changed=1
  if alive bearerbox && alive smsbox && alive fakesmsc && sendsms_answers; then
    [ $changed -eq 0 ] && return 0
    say "config changed; restarting"
  fi
  k_stop
  local t0; t0=$(date +%s%N)

  start_bg bearerbox "$BEARERBOX" -v 4 "$CONF"
  wait_for 15 bearerbox fake_listed \
    || { tail -n 20 "$D/bearerbox.log" "$D/bearerbox-console.log" >&2 || true; k_stop; die "bearerbox did not come up"; }

  # fakesmsc: debug level (its MT lines are debug output) to fakesmsc.out,
  # stdin from the FIFO opened read-write (<>) so there is always a writer,
  # unbuffered stdin (stdbuf -i0) so each line is seen as soon as it arrives
  rm -f "$FIFO"; mkfifo -m 0600 "$FIFO"
  : >"$OUT"
  setsid stdbuf -i0 "$FAKESMSC" -H 127.0.0.1 -r "$FAKE_PORT" -i 0 -v 0 <>"$FIFO" >>"$OUT" 2>&1 &
  echo $! >"$D/fakesmsc.pid"
  wait_for 10 fakesmsc fake_online \
    || { tail -n 20 "$OUT" >&2; k_stop; die "fakesmsc did not connect to bearerbox"; }

  start_bg smsbox "$SMSBOX" -v 4 "$CONF"
  wait_for 15 smsbox sendsms_answers \
    || { tail -n 20 "$D/smsbox.log" "$D/smsbox-console.log" >&2 || true; k_stop; die "smsbox sendsms did not answer"; }
  wait_for 10 smsbox smsbox_connected \
    || { k_stop; die "smsbox did not connect to bearerbox"; }
  say "up in $(( ($(date +%s%N) - t0) / 1000000 )) ms: sendsms $SENDSMS_URL  MO: write lines to $FIFO  MT: $OUT"
}

k_stop() { # TERM to all three at once (one by one takes 5 s), KILL after
  [ -d "$D" ] || return 0   # KANNEL_STOP_WAIT seconds (5; 0 = KILL at once)
  local pids=() n p sig=TERM wait=${KANNEL_STOP_WAIT:-5}
  [ "$wait" = 0 ] && sig=KILL
  for n in smsbox fakesmsc bearerbox; do
    if p=$(pid_of $n); then kill -$sig "$p" 2>/dev/null || true; pids+=("$p"); fi
  done
  for _ in $(seq 1 $((wait * 20 + 20))); do
    p=
    for n in ${pids[@]+"${pids[@]}"}; do running "$n" && p=1; done
    [ -z "$p" ] && break
    sleep 0.05
  done
  for n in ${pids[@]+"${pids[@]}"}; do kill -KILL "$n" 2>/dev/null || true; done
  rm -f "$D"/{bearerbox,fakesmsc,smsbox}.pid "$FIFO"
}

k_status() {
  local rc=0 n
  for n in bearerbox fakesmsc smsbox; do
    if p=$(pid_of $n); then echo "$n: running (pid $p)"; else echo "$n: not running"; rc=1; fi
  done
  if sendsms_answers; then echo "sendsms: answers at $SENDSMS_URL"; else echo "sendsms: no answer"; rc=1; fi
  return $rc
}

case "$cmd" in
  start) k_start ;;
  stop) k_stop ;;
  restart) k_stop; k_start ;;
  status) k_status ;;
  env) echo "export KANNEL_SENDSMS_URL='$SENDSMS_URL'"
       echo "export KANNEL_USER='$K_USER' KANNEL_PASS='$K_PASS'"
       echo "export KANNEL_FAKESMSC_IN='$FIFO' KANNEL_FAKESMSC_OUT='$OUT'"
       echo "export KANNEL_ADMIN_URL='http://127.0.0.1:$ADMIN_PORT' KANNEL_ADMIN_PASS='$ADMIN_PASS'"
       echo "export CHAMASMART_KANNEL_PORT=$BASE_PORT" ;;
  *) echo "usage: $0 start|stop|restart|status|env [run|test|INSTANCE]" >&2; exit 2 ;;
esac
