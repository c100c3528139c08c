"""Money in by M-Pesa, end to end over HTTP: a member contributes on USSD,
chamad pushes an STK request to a loopback Daraja emulator
(scripts/daraja-emulator), the callback (or the status query) settles it
once, the ledger and the receipt SMS follow.  Each test has its own
database, and ends with `chamad verify-ledger`."""
import os
import random
import subprocess
import time
import urllib.parse

from approval_fixtures import approve, open_code
from harness import MPESA_SECRET, ROOT
from mpesa_fixtures import DarajaEmulator
from notify_fixtures import outbox_texts
from ussd_fixtures import ussd

PIN = "4827"


def setup(env, name, extra=None):
    url = env.fresh_db("chamasmart_mpesa_" + name)
    env.migrate(url)
    daraja = DarajaEmulator(env, consumer_key="ck-" + name, consumer_secret="cs-" + name)
    e = {"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": daraja.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-" + name,
         "CHAMAD_MPESA_CONSUMER_SECRET": "cs-" + name, "CHAMAD_MPESA_PASSKEY": daraja.passkey,
         "CHAMAD_MPESA_SHORTCODE": daraja.shortcode, "CHAMAD_MPESA_PUSH_DELAY_MS": "100",
         "CHAMAD_MPESA_QUERY_AFTER_S": "1", "CHAMAD_MPESA_QUERY_EVERY_S": "1", "CHAMAD_MPESA_CALLBACK_SECRET": MPESA_SECRET,
         # the Transaction Status query that verifies a paybill payment before it is credited (issue 10)
         "CHAMAD_MPESA_INITIATOR_NAME": daraja.initiator_name,
         "CHAMAD_MPESA_SECURITY_CREDENTIAL": daraja.security_credential}
    e.update(extra or {})
    return url, daraja, e


def start(env, e):
    # the callback URL must name the daemon's own port
    from harness import free_port
    port = free_port()
    e = dict(e, CHAMAD_HTTP_LISTEN="127.0.0.1:%d" % port, CHAMAD_MPESA_PUBLIC_URL="http://127.0.0.1:%d" % port)
    return env.chamad(e)


def seed(env, url):
    """A chama and one paying member; returns (phone, user id, chama id)."""
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Pesa Group', 'mixed', 50000, 'monthly') RETURNING id", url)
    phone, uid, _ = add_member(env, url, cid, name="Payer")
    return phone, uid, cid


def contribute(c, phone, amount):
    """Log in, Contribute (2), the amount, Pay (1); returns the last screen."""
    return ussd(c, phone, [PIN, "2", str(amount), "1"])


def wait_status(env, url, want, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        rows = env.psql("SELECT status FROM mpesa_requests ORDER BY id", url)
        if [r[0] for r in rows] == want or time.monotonic() > deadline:
            return [r[0] for r in rows]
        time.sleep(0.05)


def verify(env, url):
    p = subprocess.run([env.bin, "verify-ledger"], capture_output=True, text=True,
                       env=dict(os.environ, CHAMAD_DATABASE_URL=url), cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr


def balance(env, url, uid):
    rows = env.psql("SELECT savings_cents FROM member_balances WHERE user_id = %s" % uid, url)
    return int(rows[0][0])


def test_mpesa_contribute_by_ussd_to_receipt(env):
    url, daraja, e = setup(env, "ok")
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    screen = contribute(c, phone, 500)
    assert screen.startswith("END Check your phone for the M-Pesa prompt") and "KES 500" in screen, screen
    assert wait_status(env, url, ["confirmed"]) == ["confirmed"]
    push = [r for r in daraja.requests() if r.get("path", "").endswith("/stkpush/v1/processrequest")][0]
    body = push.get("body") or push.get("json")
    assert body["Amount"] == 500 and str(body["PhoneNumber"]) == phone[1:] and \
        body["CallBackURL"].endswith("/mpesa/stk/callback/" + MPESA_SECRET) and len(body["AccountReference"]) <= 12, push
    (receipt, settled, k), = env.psql("SELECT mpesa_receipt, settled_by, contribution_id FROM mpesa_requests", url)
    assert settled == "callback" and env.psql("SELECT amount_cents, method, external_reference, status FROM "
                                              "contributions WHERE id = %s" % k, url) == \
        [["50000", "mpesa", receipt, "confirmed"]]
    body = outbox_texts(env, url, "kind = 'receipt'")[0]
    assert body == "ChamaSmart: received KES 500 for Pesa Group. M-Pesa ref %s. Thank you." % receipt
    assert balance(env, url, uid) == 50000
    assert env.psql("SELECT count(*) FROM financial_audit_logs WHERE action = 'contribution_received'", url) == [["1"]]
    verify(env, url)
    c.stop()


def test_mpesa_failure_codes(env):
    url, daraja, e = setup(env, "fail")
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    want = []
    for code, words in ((1032, "you cancelled"), (1037, "could not reach your phone"), (2001, "wrong M-Pesa PIN"),
                        (1, "balance was not enough"), (1019, "did not go through")):
        daraja.control(result_code=code, result_count=1)
        contribute(c, phone, 100)
        want.append("failed")
        assert wait_status(env, url, want) == want, code
        body = outbox_texts(env, url, "kind = 'mpesa_failed'")[-1]
        assert words in body, (code, body)
    assert env.psql("SELECT count(*) FROM contributions", url) == [["0"]] and balance(env, url, uid) == 0
    assert [r[0] for r in env.psql("SELECT result_code FROM mpesa_requests ORDER BY id", url)] == \
        ["1032", "1037", "2001", "1", "1019"]
    verify(env, url)
    c.stop()


def test_mpesa_duplicate_late_missing_and_wrong_callbacks(env):
    url, daraja, e = setup(env, "odd")
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    # delivered twice: one contribution
    daraja.control(callback="twice", callback_count=1)
    contribute(c, phone, 200)
    assert wait_status(env, url, ["confirmed"]) == ["confirmed"]
    daraja.wait_callbacks(2, kind="stk")
    time.sleep(0.3)
    assert env.psql("SELECT count(*) FROM contributions", url) == [["1"]]
    # never delivered: the status query settles it
    daraja.control(callback="never", callback_count=1)
    contribute(c, phone, 300)
    assert wait_status(env, url, ["confirmed", "confirmed"]) == ["confirmed", "confirmed"]
    assert env.psql("SELECT settled_by FROM mpesa_requests ORDER BY id DESC LIMIT 1", url) == [["query"]]
    # late: the query settles first, the callback then changes nothing
    daraja.control(callback="late", callback_count=1, late_ms=3500)
    contribute(c, phone, 400)
    assert wait_status(env, url, ["confirmed"] * 3) == ["confirmed"] * 3
    daraja.wait_callbacks(3, kind="stk", timeout=15)  # twice: 2, never: 0, late: 1
    time.sleep(0.3)
    assert env.psql("SELECT count(*), sum(amount_cents) FROM contributions", url) == [["3", "90000"]]
    # a wrong amount: not the member's contribution; the money goes to suspense
    daraja.control(callback="wrong_amount", callback_count=1)
    contribute(c, phone, 500)
    assert wait_status(env, url, ["confirmed"] * 3 + ["mismatch"]) == ["confirmed"] * 3 + ["mismatch"]
    assert env.psql("SELECT balance_cents FROM ledger_accounts WHERE kind = 'suspense'", url) == [["50100"]]
    assert balance(env, url, uid) == 90000
    verify(env, url)
    c.stop()


def test_mpesa_push_refused_and_token_renewed(env):
    url, daraja, e = setup(env, "push")
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    daraja.control(push_error=1)
    contribute(c, phone, 100)
    assert wait_status(env, url, ["push_failed"]) == ["push_failed"]
    assert "could not start the M-Pesa payment" in outbox_texts(env, url, "kind = 'mpesa_failed'")[0]
    # a request its daemon never pushed (it stopped first) is closed by the
    # job after five minutes, and the member is told: nothing was charged
    env.psql("INSERT INTO mpesa_requests (chama_id, user_id, phone, amount_cents, account_ref, idempotency_key, "
             "created_at) VALUES (%s, %s, '%s', 10000, 'CHAMA1', 'stale:1', now() - interval '10 minutes')"
             % (cid, uid, phone), url)
    assert wait_status(env, url, ["push_failed", "push_failed"]) == ["push_failed", "push_failed"]
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'mpesa_failed'", url) == [["2"]]
    # an expired token is fetched again, transparently
    daraja.expire_tokens()
    contribute(c, phone, 100)
    assert wait_status(env, url, ["push_failed", "push_failed", "confirmed"]) == \
        ["push_failed", "push_failed", "confirmed"]
    verify(env, url)
    c.stop()


def test_mpesa_limits_and_bad_callbacks(env):
    url, daraja, e = setup(env, "limits", {"CHAMAD_MPESA_DAILY_LIMIT": "700", "CHAMAD_MPESA_MAX_AMOUNT": "600"})
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    assert "Amount outside the limits." in contribute(c, phone, 601)
    contribute(c, phone, 600)
    assert "Daily M-Pesa limit reached." in contribute(c, phone, 200)
    assert wait_status(env, url, ["confirmed"]) == ["confirmed"]
    # callbacks: a wrong secret is no route; garbage is refused; an unknown id is acknowledged and ignored
    assert c.post("/mpesa/stk/callback/wrong", b"{}").status == 404
    assert c.post("/mpesa/stk/callback/" + MPESA_SECRET, b"not json").status == 400
    r = c.post("/mpesa/stk/callback/" + MPESA_SECRET,
               b'{"Body":{"stkCallback":{"MerchantRequestID":"1","CheckoutRequestID":"ws_CO_nope","ResultCode":0,'
               b'"ResultDesc":"ok","CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.00}]}}}}')
    assert r.status == 200 and r.json()["ResultCode"] == 0
    assert env.psql("SELECT count(*) FROM contributions", url) == [["1"]]
    verify(env, url)
    c.stop()



def add_member(env, url, cid, role="member", name=None):
    h = subprocess.run([env.bin, "hash-pin"], input=PIN + "\n", capture_output=True, text=True, cwd=ROOT).stdout.strip()
    phone = "+2547%08d" % random.randrange(10 ** 8)
    (uid,), = env.psql("INSERT INTO users (phone, full_name, pin_hash) VALUES ('%s', '%s', '%s') RETURNING id"
                       % (phone, name or "Member " + role, h), url)
    (num,), = env.psql("INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, '%s') RETURNING member_number"
                       % (uid, cid, role), url)
    return phone, uid, num


def test_mpesa_paybill_matched_unmatched_and_allocated(env):
    url, daraja, e = setup(env, "c2b")
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
    tphone, tid, _ = add_member(env, url, cid, "treasurer")
    base = c.url + "/payments/c2b/%s/" + MPESA_SECRET
    r = daraja.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")
    # matched: "<chama>-<member number>", delivered twice, recorded once
    daraja.c2b(amount=700, bill_ref="%s-%s" % (cid, num), twice=True)
    # unmatched member: into the chama's suspense
    daraja.c2b(amount=1200, bill_ref="%s-999" % cid)
    # no such chama at all: kept for an operator
    daraja.c2b(amount=300, bill_ref="HELLO")
    # each is posted once its Transaction Status result agrees (issue 10)
    deadline = time.monotonic() + 15
    while env.psql("SELECT count(*) FROM mpesa_c2b WHERE status = 'verified'", url) != [["3"]] and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert env.psql("SELECT outcome, count(*) FROM mpesa_c2b GROUP BY outcome ORDER BY outcome", url) == \
        [["contribution", "1"], ["suspense", "1"], ["unassigned", "1"]]
    assert balance(env, url, uid) == 70000
    assert env.psql("SELECT balance_cents FROM ledger_accounts WHERE kind = 'suspense'", url) == [["120000"]]
    # the treasurer allocates the suspense money to the member from USSD
    screen = ussd(c, tphone, [PIN, "10", "4", "2"])
    assert "Money to allocate:" in screen and "KES 1200" in screen, screen
    screen = ussd(c, tphone, [PIN, "10", "4", "2", "1", str(num)])
    assert screen.startswith("END Allocated to member %s" % num), screen
    assert balance(env, url, uid) == 190000
    assert env.psql("SELECT balance_cents FROM ledger_accounts WHERE kind = 'suspense'", url) == [["0"]]
    # a plain member cannot, even by typing the path: the handler checks the role
    screen = ussd(c, phone, [PIN, "10"])
    assert screen.startswith("CON Invalid choice."), screen
    verify(env, url)
    c.stop()


def test_mpesa_cash_entry_and_reversal(env):
    url, daraja, e = setup(env, "cash")
    c = start(env, e)
    phone, uid, cid = seed(env, url)
    (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
    tphone, tid, _ = add_member(env, url, cid, "treasurer")
    sphone, sid_, _ = add_member(env, url, cid, "secretary")
    screen = ussd(c, tphone, [PIN, "10", "4", "1", str(num), "1500", "1"])
    assert screen.startswith("END Recorded KES 1500 from Payer."), screen
    assert balance(env, url, uid) == 150000
    (k, method, by), = env.psql("SELECT id, method, recorded_by_user_id FROM contributions", url)
    assert method == "cash" and by == tid
    assert "recorded KES 1,500 cash from you" in outbox_texts(env, url, "kind = 'receipt' AND user_id = %s" % uid)[0]
    # a secretary is an official but not a money official: Money is not
    # offered (the policy), typing its number anyway records nothing (the
    # handler's own refusal: test_policy.py)
    screen = ussd(c, sphone, [PIN, "10"])
    assert "Join requests" in screen and "Money" not in screen, screen
    screen = ussd(c, sphone, [PIN, "10", "4", "1", str(num), "900", "1"])
    assert "Recorded" not in screen, screen
    assert balance(env, url, uid) == 150000
    # the member replies DISPUTE to the receipt: the treasurer is told, the entry stands
    r = c.post("/sms/africastalking/inbound", urllib.parse.urlencode(
        {"from": phone, "to": "40404", "text": "dispute", "id": "d1", "date": "2026-11-25"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    assert env.psql("SELECT recipient FROM notifications WHERE kind = 'dispute'", url) == [[tphone]]
    assert outbox_texts(env, url, "kind = 'dispute'") == \
        ["ChamaSmart: Payer disputes the cash entry of KES 1,500 on %s. Check it and reverse it if wrong."
          % env.psql("SELECT to_char(contributed_at, 'DD Mon') FROM contributions", url)[0][0]]
    assert outbox_texts(env, url, "kind = 'sms_reply' AND recipient = '%s'" % phone) == \
        ["Your dispute was sent to your chama's treasurer and chairperson."]
    assert env.psql("SELECT count(*) FROM audit_logs WHERE action = 'contribution.disputed'", url) == [["1"]]
    # the treasurer reverses it with a reason: nothing deleted, a reversal
    # posted once two other officials approved (dual control)
    cphone, _, _ = add_member(env, url, cid, "chairperson")
    screen = ussd(c, tphone, [PIN, "10", "4", "3", "1", "counted twice", "1"])
    code = open_code(env, url, "payment_reverse", k)
    assert screen.startswith("END Request %s sent to the other officials." % code), screen
    approve(c, cphone, code)
    assert env.psql("SELECT status FROM contributions WHERE id = %s" % k, url) == [["confirmed"]]
    approve(c, sphone, code)
    assert env.psql("SELECT status, reversal_reason FROM contributions WHERE id = %s" % k, url) == \
        [["reversed", "counted twice"]]
    assert balance(env, url, uid) == 0
    assert env.psql("SELECT kind FROM journal_entries ORDER BY id", url) == [["contribution"],
                                                                           ["contribution_reversal"]]
    assert "reversed a payment recorded for you: counted twice" in outbox_texts(env, url, "kind = 'reversal'")[0]
    # the member's statement on USSD (Balance, 1) shows both movements, newest first
    screen = ussd(c, phone, [PIN, "1", "1"])
    assert "Statement:" in screen and "1. " in screen and "-1,500 reversal" in screen and "+1,500 cash" in screen, \
        screen
    assert screen.index("-1,500 reversal") < screen.index("+1,500 cash")
    verify(env, url)
    c.stop()
