"""The command line (README.md, "Command line") and the server's life."""
import argparse
import signal
import sys
import threading
import time

from .common import MODES, SANDBOX_PASSKEY
from .poster import Poster
from .server import Handler, Server
from .state import State


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="daraja-emulator: a loopback stand-in for Safaricom's Daraja M-Pesa API "
                    "(scripts/daraja/README.md)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--consumer-key", default="test-consumer-key")
    ap.add_argument("--consumer-secret", default="test-consumer-secret")
    ap.add_argument("--shortcode", default="174379", help="the paybill (STK, C2B)")
    ap.add_argument("--b2c-shortcode", help="the B2C shortcode (PartyA); default --shortcode")
    ap.add_argument("--passkey", default=SANDBOX_PASSKEY)
    ap.add_argument("--callback-delay-ms", type=int, default=300)
    ap.add_argument("--late-ms", type=int, default=5000, help='when a "late" callback is posted')
    ap.add_argument("--token-ttl", type=int, default=3599, help="seconds")
    ap.add_argument("--result-code", type=int, default=0, help="default outcome of a push")
    ap.add_argument("--callback", default="normal", choices=MODES, help="default callback mode")
    ap.add_argument("--result-delay-ms", type=int, default=200,
                    help="when an organisation API's Result is posted")
    ap.add_argument("--initiator-name", default="testapi")
    ap.add_argument("--security-credential", default="test-security-credential")
    ap.add_argument("--org-name", default="ChamaSmart", help="the organisation's public name")
    ap.add_argument("--opening-working", type=int, default=1000000,
                    help="Working Account opening balance, KES (B2C pays from it)")
    ap.add_argument("--opening-utility", type=int, default=0,
                    help="Utility Account opening balance, KES (STK and C2B land in it)")
    ap.add_argument("--b2c-min", type=int, default=10, help="smallest B2C amount, KES")
    ap.add_argument("--b2c-max", type=int, default=250000, help="largest B2C amount, KES")
    ap.add_argument("--log", help="append one line per event to this file")
    args = ap.parse_args(argv)
    args.b2c_shortcode = args.b2c_shortcode or args.shortcode
    return args


def main(argv=None):
    args = parse_args(argv)
    state = State(args)
    logf = open(args.log, "a", buffering=1, encoding="utf-8") if args.log else None
    loglock = threading.Lock()

    def logline(text):
        if logf:
            with loglock:
                logf.write("%s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), text))

    Handler.state = state
    Handler.logline = staticmethod(logline)
    Handler.poster = Poster(state, logline)
    srv = Server((args.host, args.port), Handler)
    port = srv.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host = args.host if ":" not in args.host else "[%s]" % args.host
    sys.stdout.write("daraja-emulator listening on http://%s:%d\n" % (host, port))
    sys.stdout.flush()
    logline("START listening on http://%s:%d (shortcode %s, B2C %s)" % (
        host, port, args.shortcode, args.b2c_shortcode))
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()
    logline("STOP")
    return 0
