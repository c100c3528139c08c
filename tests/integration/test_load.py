"""Under load, nothing lost and nothing doubled: with both database queues
forced tiny, a burst of M-Pesa contributions over USSD and a burst of SMS
go through chamad at once.  Every member told "Check your phone" is pushed
exactly once and confirmed exactly once (the Daraja emulator counts the
pushes and the callbacks), every SMS reaches the AT emulator exactly once,
and the ledger verifies.  The figures of speed are in bench/, not here."""
import collections
import os
import random
import threading
import time

from harness import MPESA_SECRET
from mpesa_fixtures import DarajaEmulator
from sms_fixtures import ATEmulator
import test_mpesa as tm

# tests/run.py -j N: alone, after the others.  Load tests want the CPU to
# themselves, and one freezes the PostgreSQL postmaster every worker uses.
SERIAL = True

MEMBERS = 24
BULK = 400


def test_load_nothing_lost_nothing_doubled(env):
    url = env.fresh_db("chamasmart_load")
    env.migrate(url)
    daraja = DarajaEmulator(env, consumer_key="ck-load", consumer_secret="cs-load")
    at = ATEmulator(env, api_key="k-load")
    e = {"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": daraja.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-load",
         "CHAMAD_MPESA_CONSUMER_SECRET": "cs-load", "CHAMAD_MPESA_PASSKEY": daraja.passkey,
         "CHAMAD_MPESA_SHORTCODE": daraja.shortcode, "CHAMAD_MPESA_PUSH_DELAY_MS": "50",
         "CHAMAD_MPESA_QUERY_AFTER_S": "2", "CHAMAD_MPESA_QUERY_EVERY_S": "1",
         "CHAMAD_MPESA_CALLBACK_SECRET": MPESA_SECRET,
         "CHAMAD_SMS_PROVIDER": "africastalking", "CHAMAD_SMS_AT_BASE_URL": at.url, "CHAMAD_SMS_AT_API_KEY": "k-load",
         "CHAMAD_SMS_AT_USERNAME": "sandbox", "CHAMAD_SMS_RATE_PER_SEC": "5000", "CHAMAD_SMS_BATCH": "1000",
         "CHAMAD_SMS_LEASE_S": "30", "CHAMAD_SMS_RETRY_MIN_S": "1", "CHAMAD_SMS_RETRY_MAX_S": "2",
         # the room that interactive traffic fills, and the background pool's, both tiny
         "CHAMAD_DATABASE_POOL_SIZE": "2", "CHAMAD_DATABASE_QUEUE_MAX": "1",
         "CHAMAD_DATABASE_BACKGROUND_POOL_SIZE": "1", "CHAMAD_DATABASE_BACKGROUND_QUEUE_MAX": "1",
         "CHAMAD_USSD_HOP_TIMEOUT_MS": "8000", "CHAMAD_AUTH_QUEUE_MAX": "1000"}
    c = tm.start(env, e)
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Load Group', 'mixed', 50000, 'monthly') RETURNING id", url)
    members = [tm.add_member(env, url, cid, name="Load %d" % i) for i in range(MEMBERS)]

    # the SMS burst: one statement queues BULK messages, each with its own text
    env.psql("INSERT INTO notifications (channel, kind, recipient, body, priority, idempotency_key) "
             "SELECT 'sms', 'reminder', '+2547' || lpad(g::text, 8, '0'), 'Load reminder ' || g, 9, 'load:' || g "
             "FROM generate_series(1, %d) g" % BULK, url)

    # the contribution burst: every member at once, each twice
    told = collections.Counter()
    busy = []
    lock = threading.Lock()

    def member(phone, n):
        for k in range(2):
            amount = 100 + n * 10 + k
            screen = tm.contribute(c, phone, amount)
            with lock:
                if screen.startswith("END Check your phone"):
                    told[(phone, amount * 100)] += 1
                else:
                    busy.append(screen)

    threads = [threading.Thread(target=member, args=(phone, i)) for i, (phone, _, _) in enumerate(members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert told, "no contribution got through at all: %s" % busy[:3]

    # every request settles: confirmed, nothing left open
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        open_ = env.psql("SELECT count(*) FROM mpesa_requests WHERE status NOT IN ('confirmed', 'failed', "
                         "'push_failed', 'expired', 'mismatch')", url)[0][0]
        unsent = env.psql("SELECT count(*) FROM notifications WHERE status <> 'sent'", url)[0][0]
        if open_ == "0" and unsent == "0":
            break
        time.sleep(0.2)
    rows = env.psql("SELECT phone, amount_cents, status, checkout_request_id FROM mpesa_requests", url)
    assert collections.Counter((p, int(a)) for p, a, _, _ in rows) == told, (rows, told)
    assert all(st == "confirmed" for _, _, st, _ in rows), [r for r in rows if r[2] != "confirmed"]

    # Daraja saw each request pushed once, and each push is one contribution
    pushes = [r for r in daraja.requests() if r.get("path", "").endswith("/stkpush/v1/processrequest")]
    assert len(pushes) == len(rows), (len(pushes), len(rows))
    assert env.psql("SELECT count(*), count(DISTINCT external_reference), sum(amount_cents) FROM contributions "
                    "WHERE status = 'confirmed'", url) == \
        [[str(len(rows)), str(len(rows)), str(sum(a for _, a in told.elements()))]]
    # a callback stored but not yet settled would be money in limbo
    assert env.psql("SELECT count(*) FROM mpesa_callbacks WHERE status <> 'settled'", url) == [["0"]]

    # every SMS reached the provider once: the bulk, and a receipt per contribution
    sent = collections.Counter((m["to"], m["message"]) for m in at.messages())
    doubled = [k for k, n in sent.items() if n > 1]
    assert not doubled, doubled[:5]
    (total,), = env.psql("SELECT count(*) FROM notifications", url)
    assert len(sent) == int(total) == BULK + len(rows), (len(sent), total, len(rows))
    assert sum(1 for to, m in sent if m.startswith("Load reminder")) == BULK

    # and the tiny queues really were full: statements had to be retried
    m = c.get("/metrics").body
    retries = [line for line in m.splitlines() if line.startswith("chamad_dbbg_retries_total ")]
    assert retries and int(retries[0].split()[1]) > 0, retries
    tm.verify(env, url)
    c.stop()


def _money_daemon(env, name, extra=None):
    url, daraja, e = tm.setup(env, name, extra)
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    return url, daraja, c, phone, uid, cid


def test_load_push_answer_lost_then_callback_matched(env):
    """Daraja accepts the push but its answer never reaches us: the request
    is 'unknown' (never pushed again), and the callback that follows names a
    CheckoutRequestID we never recorded: it is kept and matched by phone and
    amount, and the member is credited once."""
    url, daraja, c, phone, uid, cid = _money_daemon(env, "lost", {"CHAMAD_MPESA_TIMEOUT_MS": "1500"})
    daraja.control(drop_after_accept=1, callback_delay_ms=2500)
    assert tm.contribute(c, phone, 700).startswith("END Check your phone")
    assert tm.wait_status(env, url, ["confirmed"], timeout=30) == ["confirmed"]
    assert len([r for r in daraja.requests() if r.get("path", "").endswith("/processrequest")]) == 1
    assert env.psql("SELECT status, outcome FROM mpesa_callbacks", url) == [["settled", "confirmed"]]
    assert env.psql("SELECT settled_by, push_attempts FROM mpesa_requests", url) == [["callback", "1"]]
    assert tm.balance(env, url, uid) == 70000
    tm.verify(env, url)
    c.stop()


def test_load_callback_before_push_recorded_is_kept(env):
    """A callback that overtakes the push's answer (or names a request not
    recorded yet) is stored and settled once the request is known, instead
    of being acknowledged and dropped."""
    url, daraja, c, phone, uid, cid = _money_daemon(env, "early")
    # a push Daraja really made (a success callback is credited only once
    # the STK push query agrees, issue 10); its own callback is lost
    daraja.control(callback="never", callback_count=1)
    st, pushed = daraja.stk_push(phone[1:], 300, "http://127.0.0.1:9/unused")
    assert st == 200, pushed
    early = pushed["CheckoutRequestID"]
    body = ('{"Body":{"stkCallback":{"MerchantRequestID":"m1","CheckoutRequestID":"%s","ResultCode":0,'
            '"ResultDesc":"ok","CallbackMetadata":{"Item":[{"Name":"Amount","Value":300.00},'
            '{"Name":"MpesaReceiptNumber","Value":"QKEARLY1"},{"Name":"PhoneNumber","Value":%s}]}}}}'
            % (early, phone[1:]))
    r = c.post("/mpesa/stk/callback/" + MPESA_SECRET, body.encode())
    assert r.status == 200, r.body
    time.sleep(1.5)
    assert env.psql("SELECT status FROM mpesa_callbacks", url) == [["received"]]
    assert env.psql("SELECT count(*) FROM contributions", url) == [["0"]]
    # the push's answer is recorded now (as a slow daemon would)
    env.psql("INSERT INTO mpesa_requests (chama_id, user_id, phone, amount_cents, account_ref, idempotency_key, "
             "status, checkout_request_id, pushed_at, next_query_at) VALUES (%s, %s, '%s', 30000, 'CHAMA1', "
             "'early:1', 'pushed', '%s', now(), now() + interval '1 hour')" % (cid, uid, phone, early), url)
    env.psql("UPDATE mpesa_callbacks SET next_try_at = now()", url)
    assert tm.wait_status(env, url, ["confirmed"]) == ["confirmed"]
    assert env.psql("SELECT status, outcome FROM mpesa_callbacks", url) == [["settled", "confirmed"]]
    assert tm.balance(env, url, uid) == 30000
    tm.verify(env, url)
    c.stop()


def test_load_callback_not_stored_is_not_acknowledged(env):
    """When the callback cannot be stored (the background pool's backend
    frozen), the answer is 503, not 200, and the body is in the log."""
    from test_daemon import frozen
    url, daraja, c, phone, uid, cid = _money_daemon(env, "nostore", {
        "CHAMAD_DATABASE_QUERY_TIMEOUT_MS": "400", "CHAMAD_HTTP_REQUEST_TIMEOUT_MS": "2000",
        "CHAMAD_DATABASE_BACKGROUND_POOL_SIZE": "1"})
    c.wait_health(200)
    (pid,), = env.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'chamad-dbbg' "
                       "AND datname = current_database()", url)
    (datadir,), = env.psql("SHOW data_directory", url)
    with open(os.path.join(datadir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    body = ('{"Body":{"stkCallback":{"MerchantRequestID":"m2","CheckoutRequestID":"ws_CO_frozen","ResultCode":1032,'
            '"ResultDesc":"Request cancelled by user"}}}')
    # the backend answers nothing, and no new connection can be made either
    with frozen(int(pid)), frozen(postmaster):
        r = c.post("/mpesa/stk/callback/" + MPESA_SECRET, body.encode())
    assert r.status == 503, (r.status, r.body)
    log = c.stop()
    assert "NOT stored" in log and "ws_CO_frozen" in log, log[-2000:]


def test_load_postings_do_not_notify_but_receipts_go_out(env):
    """A NOTIFY serialises the commits of every transaction that sends one,
    so chamad's postings no longer NOTIFY for their receipt SMS: only urgent
    rows (one-time codes, replies, alerts) and rows written by anything but
    chamad do.  The daemon that posted wakes its own sender, so the receipt
    still goes out at once even with the poll fallback ten minutes away."""
    url = env.fresh_db("chamasmart_load_notify")
    env.migrate(url)
    script = ("LISTEN chamad_sms;\n"
              "INSERT INTO notifications (channel, kind, recipient, body, priority, idempotency_key) "
              "VALUES ('sms', 't', '+254700000001', 'by psql', 5, 'n1');\n"
              "SELECT 'mark-1';\n"
              "BEGIN;\nSELECT audit_context('mpesa', NULL, NULL, NULL);\n"
              "INSERT INTO notifications (channel, kind, recipient, body, priority, idempotency_key) "
              "VALUES ('sms', 't', '+254700000001', 'a receipt', 5, 'n2');\nCOMMIT;\n"
              "SELECT 'mark-2';\n"
              "BEGIN;\nSELECT audit_context('ussd', NULL, NULL, NULL);\n"
              "INSERT INTO notifications (channel, kind, recipient, body, priority, idempotency_key) "
              "VALUES ('sms', 'otp', '+254700000001', 'a code', 0, 'n3');\nCOMMIT;\n")
    import subprocess as sp
    out = sp.run(["psql", "-X", "-q", url], input=script, capture_output=True, text=True).stdout
    parts = out.split("mark-")
    assert [p.count("Asynchronous notification") for p in parts] == [1, 0, 1], out

    at = ATEmulator(env, api_key="k-notify")
    url2, daraja, e = tm.setup(env, "notify")
    e.update({"CHAMAD_SMS_PROVIDER": "africastalking",
              "CHAMAD_SMS_AT_BASE_URL": at.url, "CHAMAD_SMS_AT_API_KEY": "k-notify",
              "CHAMAD_SMS_POLL_MS": "600000"})
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url2)
    time.sleep(0.5)  # the sender's first look (start-up) is done
    assert tm.contribute(c, phone, 250).startswith("END Check your phone")
    assert tm.wait_status(env, url2, ["confirmed"]) == ["confirmed"]
    msgs = at.wait_messages(1, timeout=10)
    assert any("received KES 250" in m["message"] for m in msgs), msgs
    c.stop()
