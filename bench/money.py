#!/usr/bin/env python3
"""bench/money.py: fires STK callbacks at chamad as fast as C keep-alive
clients can, one per pending mpesa_requests row (ws_BENCH_<n>), and reports
how many were answered per second.  The caller then counts the confirmed
contributions in the database.  Figures are printed, never asserted."""
import argparse
import http.client
import json
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--path", default="/mpesa/stk/callback/bench")
ap.add_argument("--n", type=int, default=5000)
ap.add_argument("--concurrency", type=int, default=16)
ap.add_argument("--amount", type=int, default=500)
ap.add_argument("--phone-base", type=int, default=254713000000)
a = ap.parse_args()

lat = []
lock = threading.Lock()
nxt = [0]


def body(i):
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "b-%d" % i, "CheckoutRequestID": "ws_BENCH_%d" % i, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.", "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": a.amount}, {"Name": "MpesaReceiptNumber", "Value": "BENCH%05d" % i},
            {"Name": "TransactionDate", "Value": 20261125120000},
            {"Name": "PhoneNumber", "Value": a.phone_base + i % 1000}]}}}}).replace(
        '"Value": %d}' % a.amount, '"Value": %d.00}' % a.amount, 1)


def worker():
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    while True:
        with lock:
            i = nxt[0]
            nxt[0] += 1
        if i >= a.n:
            break
        t0 = time.monotonic()
        conn.request("POST", a.path, body(i), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        with lock:
            lat.append((time.monotonic() - t0) * 1000)


t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(a.concurrency)]
for t in ts:
    t.start()
for t in ts:
    t.join()
wall = time.monotonic() - t0
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print("callbacks: %d in %.2f s = %.0f/s; latency p50 %.1f p99 %.1f max %.1f ms (concurrency %d)"
      % (len(lat), wall, len(lat) / wall, pct(0.5), pct(0.99), lat[-1], a.concurrency))
