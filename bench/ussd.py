#!/usr/bin/env python3
"""bench/ussd.py: many concurrent USSD sessions against chamad's Africa's
Talking endpoint.  Figures are printed, never asserted.

Every worker is a thread with one keep-alive HTTP connection and its own
share of the phones (a phone is never in two sessions at once).  It plays
whole AT sessions back to back (text = every input so far joined by "*"):

  nav worker:    dial, PIN, then --nav-hops menu hops cycling 1,0,4,0,5,0
                 (Balance, Back, Meetings, Back, My chama, Back), then 9 (Exit)
  login worker:  dial, PIN, 9

Each hop is timed from sending the request to reading the whole reply, and
counted in its class:

  dial   the first hop (text ""): new session, user lookup, PIN prompt
  login  the PIN hop: PIN check (a password hash) and loading the chama
  nav    a menu hop of a logged-in session: state from Redis, a screen
         (Balance and Meetings query PostgreSQL)
  exit   9 on the main menu: the closing END

For each class: hops, hops/s over the run's wall time, latency p50/p90/p99/
max in ms (answered hops only), and errors: no answer, not 200, a body that
is not CON/END, or a screen the flow does not expect (an END such as "busy"
or "locked" in mid-session).  A session with an error is dropped and the
worker goes on with its next phone.

Wrong PINs are never sent (three lock an account): only --pin is sent, and
a phone whose PIN hop does not answer with the main menu (--menu-match) is
retired for the rest of the run, so inputs meant for a menu never reach a
PIN prompt.  The client is Python: when "client CPU" nears 100% of one
core, the figures measure the client, not chamad.

  bench/ussd.py --phones-file phones.txt [--url URL] [--mix nav|login|both]
                [--concurrency C] [--login-workers L] [--duration S]
                [--sessions N] [--nav-hops K] [--pin 1234]
"""
import argparse
import collections
import http.client
import math
import os
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse

CLASSES = ("dial", "login", "nav", "exit")
NAV_CYCLE = ("1", "0", "4", "0", "5", "0")


class Run:
    """What all workers share: settings, the deadline, the session budget."""

    def __init__(self, args):
        self.args = args
        u = urllib.parse.urlsplit(args.url)
        self.host, self.port = u.hostname, u.port or 80
        self.path = (u.path or "/") + ("?" + u.query if u.query else "")
        self.menu_re = re.compile(args.menu_match)
        self.lock = threading.Lock()
        self.started = 0
        self.deadline = 0.0

    def claim_session(self):
        """True if a worker may start one more session."""
        if time.monotonic() >= self.deadline:
            return False
        with self.lock:
            if self.args.sessions and self.started >= self.args.sessions:
                return False
            self.started += 1
            return True


class HopFailed(Exception):
    pass


class Worker(threading.Thread):
    def __init__(self, run, kind, phones):
        super().__init__(daemon=True)
        self.run_, self.kind, self.phones = run, kind, list(phones)
        self.conn = None
        self.lat = {c: [] for c in CLASSES}          # ms of answered hops
        self.errors = {c: collections.Counter() for c in CLASSES}
        self.sessions = 0                             # completed without error
        self.retired = []

    # -- one hop -----------------------------------------------------------
    def hop(self, cls, phone, sid, text, expect_end=False, check=None):
        """Sends one hop; returns the screen, or raises HopFailed (counted)."""
        r, a = self.run_, self.run_.args
        body = urllib.parse.urlencode({"sessionId": sid, "serviceCode": a.code,
                                       "phoneNumber": phone, "networkCode": a.network,
                                       "text": text})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if a.secret:
            headers["X-Chamad-Secret"] = a.secret
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(r.host, r.port, timeout=a.timeout)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn.request("POST", r.path, body=body, headers=headers)
            resp = self.conn.getresponse()
            reply = resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            time.sleep(0.05)   # a refused connect must not spin
            self.fail(cls, f"no answer: {type(e).__name__}")
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            self.fail(cls, f"HTTP {resp.status}")
        kind, screen = reply[:4], reply[4:]
        if kind not in ("CON ", "END "):
            self.fail(cls, f"bad body {reply[:40]!r}")
        if (kind == "END ") != expect_end:
            self.fail(cls, f"unexpected {kind}{screen[:50]!r}")
        if check and not check(screen):
            self.fail(cls, f"unexpected screen {screen[:50]!r}")
        self.lat[cls].append(ms)
        return screen

    def fail(self, cls, why):
        self.errors[cls][why] += 1
        raise HopFailed(why)

    # -- one session ---------------------------------------------------------
    def session(self, phone):
        a = self.run_.args
        sid = "ATUid_" + secrets.token_hex(16)
        on_menu = lambda s: self.run_.menu_re.search(s) is not None  # noqa: E731
        self.hop("dial", phone, sid, "", check=lambda s: "PIN" in s)
        try:
            self.hop("login", phone, sid, a.pin, check=on_menu)
        except HopFailed as e:
            why = str(e)
            if why.startswith("unexpected screen") or \
                    (why.startswith("unexpected END") and re.search(r"PIN|lock|block", why, re.I)):
                # the PIN was refused, or the main menu is not what we expect:
                # with the same PIN again the next session would be one more
                # wrong attempt, so this phone is not used again
                self.phones.remove(phone)
                self.retired.append(phone)
                if len(self.retired) == 1:
                    print(f"ussd.py: {phone} retired: PIN hop gave {e}", file=sys.stderr, flush=True)
            raise
        path = [a.pin]
        if self.kind == "nav":
            for k in range(a.nav_hops):
                key = NAV_CYCLE[k % len(NAV_CYCLE)]
                path.append(key)
                self.hop("nav", phone, sid, "*".join(path),
                         check=on_menu if key == "0" else None)
            if a.nav_hops and path[-1] != "0":   # not back on the main menu yet
                path.append("00")
                self.hop("nav", phone, sid, "*".join(path), check=on_menu)
        path.append("9")
        self.hop("exit", phone, sid, "*".join(path), expect_end=True)
        self.sessions += 1

    def run(self):
        i = 0
        while self.phones and self.run_.claim_session():
            phone = self.phones[i % len(self.phones)]
            i += 1
            try:
                self.session(phone)
            except HopFailed:
                pass
        if self.conn is not None:
            self.conn.close()


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def report(workers, wall, cpu):
    sessions = collections.Counter()
    for w in workers:
        sessions[w.kind] += w.sessions
    print(f"  {wall:.1f} s, sessions completed: "
          + ", ".join(f"{k} {n}" for k, n in sorted(sessions.items())))
    print(f"  {'class':<6} {'hops':>7} {'hops/s':>8} {'p50':>7} {'p90':>7} {'p99':>7} "
          f"{'max':>7} {'errors':>6}   (latency in ms)")
    reasons = []
    for c in CLASSES:
        lat = sorted(x for w in workers for x in w.lat[c])
        errs = collections.Counter()
        for w in workers:
            errs.update(w.errors[c])
        if not lat and not errs:
            continue
        print(f"  {c:<6} {len(lat):>7} {len(lat) / wall:>8.1f} {pct(lat, 50):>7.1f} "
              f"{pct(lat, 90):>7.1f} {pct(lat, 99):>7.1f} {(lat[-1] if lat else math.nan):>7.1f} "
              f"{sum(errs.values()):>6}")
        reasons += [(n, c, why) for why, n in errs.items()]
    for n, c, why in sorted(reasons, reverse=True)[:8]:
        print(f"    error {c}: {why} x{n}")
    retired = [p for w in workers for p in w.retired]
    if retired:
        print(f"  phones retired (PIN hop did not reach the main menu): {len(retired)}")
    print(f"  client CPU: {cpu / wall * 100:.0f}% of one core")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:18090/ussd/africastalking")
    ap.add_argument("--phones-file", required=True, help="one E.164 phone per line, all with --pin")
    ap.add_argument("--mix", choices=("nav", "login", "both"), default="nav")
    ap.add_argument("--concurrency", "-c", type=int, default=16,
                    help="nav workers (login workers for --mix login)")
    ap.add_argument("--login-workers", type=int, help="login workers with --mix both (default C)")
    ap.add_argument("--duration", type=float, default=10, help="seconds to start sessions for")
    ap.add_argument("--sessions", type=int, default=0, help="stop after N sessions (0: no limit)")
    ap.add_argument("--nav-hops", type=int, default=20)
    ap.add_argument("--pin", default="1234")
    ap.add_argument("--code", default="*384*1234#")
    ap.add_argument("--network", default="63902")
    ap.add_argument("--secret", help="sent as X-Chamad-Secret")
    ap.add_argument("--timeout", type=float, default=15, help="seconds per hop")
    ap.add_argument("--menu-match", default=r"Balance|Salio",
                    help="regex that the main menu (after the PIN, after 0) matches")
    args = ap.parse_args()
    if not re.fullmatch(r"[0-9]{4}", args.pin):
        ap.error("--pin must be 4 digits")

    with open(args.phones_file, encoding="utf-8") as f:
        phones = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    nav = args.concurrency if args.mix in ("nav", "both") else 0
    login = (args.concurrency if args.mix == "login"
             else (args.login_workers if args.login_workers is not None else args.concurrency)
             if args.mix == "both" else 0)
    kinds = ["nav"] * nav + ["login"] * login
    if not kinds:
        ap.error("no workers")
    if len(phones) < len(kinds):
        ap.error(f"{len(phones)} phones for {len(kinds)} workers: each worker needs its own")

    run = Run(args)
    workers = [Worker(run, k, phones[i::len(kinds)]) for i, k in enumerate(kinds)]
    print(f"mix {args.mix}: {nav} nav workers"
          + (f" ({args.nav_hops} nav hops a session)" if nav else "")
          + f", {login} login workers, {len(phones)} phones, {args.duration:g} s"
          + (f" or {args.sessions} sessions" if args.sessions else "") + f", {args.url}",
          flush=True)
    cpu0, t0 = sum(os.times()[:2]), time.monotonic()
    run.deadline = t0 + args.duration
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.monotonic() - t0
    report(workers, wall, sum(os.times()[:2]) - cpu0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
