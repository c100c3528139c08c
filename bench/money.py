#!/usr/bin/env python3
"""bench/money.py: fires STK success callbacks at chamad as fast as 16
keep-alive clients can, one per pending mpesa_requests row listed in
--requests (TSV: checkout_request_id, amount_cents, phone, account_ref,
as bench/money.sh writes it), and reports how many were answered per
second.

chamad credits a success callback only once the STK push query for its
CheckoutRequestID agrees, so first (a run with --book) every request is put in the
Daraja emulator's book as the STK payment it stands for (POST /_book,
type "stk", conversation_id = the CheckoutRequestID, the callback's
receipt, amount, phone and account): the emulator never pushed these, and
its STK query answers them from the book.  That setup is timed apart and
is not part of the figures.  Both runs give each request the same receipt
(BENCH<index>).  The caller then counts the confirmed
contributions in the database.  Figures are printed, never asserted."""
import argparse
import http.client
import json
import threading
import time
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--path", default="/mpesa/stk/callback/bench")
ap.add_argument("--requests", required=True, help="TSV: checkout, amount_cents, phone, account_ref")
ap.add_argument("--book", metavar="URL", help="only put every request in the book of the emulator at URL")
ap.add_argument("--concurrency", type=int, default=16)
a = ap.parse_args()

reqs = []
with open(a.requests) as f:
    for line in f:
        if line.strip():
            cid, cents, phone, ref = line.rstrip("\n").split("\t")
            reqs.append((cid, int(cents), phone.lstrip("+"), ref))


def receipt(i):
    return "BENCH%05d" % i


def run(n, conn_of, one):
    """one(conn, i) for i in 0..n-1 from a.concurrency keep-alive clients;
    (latencies in ms, wall seconds)."""
    lat, lock, nxt = [], threading.Lock(), [0]

    def worker():
        conn = conn_of()
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                break
            t0 = time.monotonic()
            one(conn, i)
            with lock:
                lat.append((time.monotonic() - t0) * 1000)

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sorted(lat), time.monotonic() - t0


errors = []


def post(conn, path, text):
    conn.request("POST", path, text, {"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        errors.append("POST %s -> %d %s" % (path, r.status, body[:200]))


if a.book:
    u = urllib.parse.urlsplit(a.book)

    def book(conn, i):
        cid, cents, phone, ref = reqs[i]
        post(conn, "/_book", json.dumps({
            "type": "stk", "amount": cents // 100, "conversation_id": cid, "receipt": receipt(i),
            "msisdn": phone, "bill_ref": ref, "merchant_request_id": "b-%d" % i}))

    _, wall = run(len(reqs), lambda: http.client.HTTPConnection(u.hostname, u.port, timeout=30), book)
    if errors:
        raise SystemExit("booking failed (%d): %s" % (len(errors), errors[0]))
    print("setup: %d STK payments put in the emulator's book in %.2f s (not measured)" % (len(reqs), wall))
    raise SystemExit(0)


def callback(i):
    cid, cents, phone, ref = reqs[i]
    # Amount with two decimals, as Daraja writes it
    return ('{"Body":{"stkCallback":{"MerchantRequestID":"b-%d","CheckoutRequestID":%s,"ResultCode":0,'
            '"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{"Item":['
            '{"Name":"Amount","Value":%d.%02d},{"Name":"MpesaReceiptNumber","Value":"%s"},'
            '{"Name":"TransactionDate","Value":20261125120000},{"Name":"PhoneNumber","Value":%s}]}}}}'
            % (i, json.dumps(cid), cents // 100, cents % 100, receipt(i), phone))


lat, wall = run(len(reqs), lambda: http.client.HTTPConnection("127.0.0.1", a.port, timeout=30),
                lambda conn, i: post(conn, a.path, callback(i)))
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print("callbacks: %d in %.2f s = %.0f/s; latency p50 %.1f p99 %.1f max %.1f ms (concurrency %d)"
      % (len(lat), wall, len(lat) / wall, pct(0.5), pct(0.99), lat[-1], a.concurrency))
if errors:
    print("callbacks not answered 200: %d, first: %s" % (len(errors), errors[0]))
