#!/usr/bin/env python3
"""bench/verify.py: how long a payment waits between its callback and its
credit now that chamad credits only what M-Pesa confirmed (issue 10).

  STK  N contributions on USSD, one after the other, through the Daraja
       emulator: from the STK callback stored (mpesa_callbacks.received_at)
       to the contribution posted (contributions.contributed_at), which now
       includes the STK push query that confirms it.
  C2B  N paybill payments: from the confirmation recorded (mpesa_c2b.
       received_at, unverified) to the contribution posted once the
       Transaction Status result agreed (the status rail's send, the
       emulator's asynchronous Result to our ResultURL, c2b_on_status).

Both ends are PostgreSQL's clock (now() of each transaction), so the
figures are the daemon's own.  Prints min / median / p90 / max in ms;
figures go into the issue notes, never into tests.

    bench/verify.py --bin bin/chamad [--n 20]     (bench/verify.sh runs it)
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402
import test_mpesa as tm  # noqa: E402


def stats(name, ms):
    if not ms:
        print("%s: no samples" % name)
        return
    ms = sorted(ms)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    print("%s: n=%d  min %.0f ms  median %.0f ms  p90 %.0f ms  max %.0f ms" % (
        name, len(ms), ms[0], pick(0.5), pick(0.9), ms[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin", "chamad"))
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    env = harness.Env(os.path.abspath(a.bin))
    try:
        # the status query job far away: the STK figure is the callback's
        # own confirmation, not the job's
        url, daraja, e = tm.setup(env, "bench_verify", {"CHAMAD_MPESA_QUERY_AFTER_S": "600",
                                                         "CHAMAD_LOG_LEVEL": "warn"})
        c = tm.start(env, e)
        phone, uid, cid = tm.seed(env, url)
        (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
        for i in range(a.n):
            tm.contribute(c, phone, 100 + i)
            tm.wait_status(env, url, ["confirmed"] * (i + 1), timeout=30)
        stk = [float(r[0]) for r in env.psql(
            "SELECT extract(epoch FROM k.contributed_at - min(b.received_at)) * 1000 FROM mpesa_requests r "
            "JOIN contributions k ON k.id = r.contribution_id JOIN mpesa_callbacks b ON "
            "b.checkout_request_id = r.checkout_request_id GROUP BY k.id, k.contributed_at", url)]
        base = c.url + "/payments/c2b/%s/" + harness.MPESA_SECRET
        daraja.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")
        for i in range(a.n):
            t = daraja.c2b(amount=200 + i, bill_ref="%s-%s" % (cid, num))["trans_id"]
            deadline = time.monotonic() + 60
            while env.psql("SELECT status FROM mpesa_c2b WHERE trans_id = '%s'" % t, url) != [["verified"]]:
                if time.monotonic() > deadline:
                    print("C2B %s never verified: %s" % (
                        t, env.psql("SELECT status, flag_reason FROM mpesa_c2b WHERE trans_id = '%s'" % t, url)))
                    break
                time.sleep(0.02)
        c2b = [float(r[0]) for r in env.psql(
            "SELECT extract(epoch FROM k.contributed_at - x.received_at) * 1000 FROM mpesa_c2b x "
            "JOIN contributions k ON k.id = x.contribution_id", url)]
        print("chamad %s, %d cores; the Daraja emulator on loopback (callback delay %s)" % (
            os.path.basename(a.bin), os.cpu_count(), "300 ms"))
        stats("STK callback stored -> credited (STK push query confirms it)", stk)
        stats("C2B confirmation recorded -> credited (Transaction Status result agrees)", c2b)
        tm.verify(env, url)
        c.stop()
    finally:
        env.cleanup()


if __name__ == "__main__":
    main()
