"""Credit only what M-Pesa confirmed (issue 10, point 2, and the M-Pesa
checks of point 1).  Safaricom signs none of its callbacks, so a callback is
a claim, not money:

  STK   a success callback is posted only once the STK push query for its
        CheckoutRequestID agrees; a query that says otherwise posts nothing,
        leaves the request 'contradicted' and alerts (log, metric, SMS to the
        chama's treasurer and chairperson in their language).
  C2B   a paybill confirmation is recorded unverified, then checked with the
        Transaction Status query: amount, receipt, shortcode and account must
        agree before the member is credited and receipted; otherwise it is
        flagged, and one never verified in [mpesa] verify_flag_after_s too.
        Officials see what is left on USSD ("Payments to check"), operators with
        `chamad money-to-check`.

Everything over HTTP against the Daraja emulator; each test ends with
`chamad verify-ledger`."""
import json
import os
import re
import subprocess
import time

from harness import MPESA_SECRET, ROOT
from notify_fixtures import outbox_texts
import test_mpesa as tm
from ussd_fixtures import ussd

# tests/run.py -j N: alone: it reads the unverified state inside the 2.5 s
# the status result is held back, which a CPU shared with other tests can outlast.
SERIAL = {"test_verify_c2b_unverified_until_the_status_result_agrees"}

PIN = tm.PIN


def stk_callback(checkout, code=0, amount=None, receipt=None, phone=None, desc=None):
    """An STK callback body as Safaricom posts it (PROTOCOLS.md 4.3)."""
    cb = {"MerchantRequestID": "m-" + checkout, "CheckoutRequestID": checkout, "ResultCode": code,
          "ResultDesc": desc or ("The service request is processed successfully." if code == 0 else "failed")}
    if code == 0:
        cb["CallbackMetadata"] = {"Item": [{"Name": "Amount", "Value": amount},
                                           {"Name": "MpesaReceiptNumber", "Value": receipt},
                                           {"Name": "TransactionDate", "Value": 20261201120000},
                                           {"Name": "PhoneNumber", "Value": int(phone[1:])}]}
    return json.dumps({"Body": {"stkCallback": cb}}).encode()


def metric(c, name, **labels):
    want = name + ("{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}" if labels else "")
    for line in c.get("/metrics").body.splitlines():
        if line.startswith(want + " "):
            return int(line.split()[1])
    return None


def wait_for(fn, timeout=15, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def money_to_check(env, url, json_out=True):
    p = subprocess.run([env.bin, "money-to-check"] + (["--json"] if json_out else []), capture_output=True,
                       text=True, env=dict(os.environ, CHAMAD_DATABASE_URL=url), cwd=ROOT)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    if not json_out:
        return p.returncode, p.stdout
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines()]


def officials(env, url, cid):
    """A treasurer who reads Swahili and a chairperson who reads English."""
    tphone, tid, _ = tm.add_member(env, url, cid, "treasurer", name="Tresa")
    cphone, chid, _ = tm.add_member(env, url, cid, "chairperson", name="Chair")
    env.psql("UPDATE users SET preferred_language = 'sw' WHERE id = %s" % tid, url)
    return (tphone, tid), (cphone, chid)


def alert_texts(env, url, uid):
    return outbox_texts(env, url, "kind = 'mpesa_alert' AND user_id = %s" % uid)


def ledger_entries(env, url):
    return int(env.psql("SELECT count(*) FROM journal_entries", url)[0][0])


# -- STK -------------------------------------------------------------------

def test_verify_stk_success_posted_only_once_the_query_agrees(env):
    """The callback says paid; the STK push query is busy twice (HTTP 500):
    nothing is posted meanwhile, the callback waits (backoff), and once the
    query answers 0 the member is credited and receipted once."""
    url, daraja, e = tm.setup(env, "v_stk_ok", {"CHAMAD_MPESA_QUERY_AFTER_S": "600"})
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    daraja.control(query_error=2)
    assert tm.contribute(c, phone, 500).startswith("END Check your phone")
    daraja.wait_callbacks(1, kind="stk")
    # the callback is stored and waits for its confirmation: nothing posted
    assert wait_for(lambda: env.psql("SELECT outcome FROM mpesa_callbacks", url) == [["confirming"]], 5)
    assert env.psql("SELECT status FROM mpesa_requests", url) == [["pushed"]]
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert outbox_texts(env, url, "kind = 'receipt'") == []
    assert tm.wait_status(env, url, ["confirmed"], timeout=20) == ["confirmed"]
    (checkout, receipt, settled), = env.psql("SELECT checkout_request_id, mpesa_receipt, settled_by "
                                             "FROM mpesa_requests", url)
    queries = [r for r in daraja.requests() if r.get("path", "").endswith("/stkpushquery/v1/query")
               and (r.get("body") or r.get("json") or {}).get("CheckoutRequestID") == checkout]
    assert len(queries) == 3, queries  # two busy, one that agreed
    assert settled == "callback"
    assert tm.balance(env, url, uid) == 50000
    assert env.psql("SELECT count(*) FROM contributions", url) == [["1"]]
    assert outbox_texts(env, url, "kind = 'receipt'") == \
        ["ChamaSmart: received KES 500 for Pesa Group. M-Pesa ref %s. Thank you." % receipt]
    assert money_to_check(env, url)[0] == 0
    tm.verify(env, url)
    c.stop()


def test_verify_stk_callback_the_query_contradicts_posts_nothing(env):
    """The member cancelled (the query says 1032) but a success callback
    comes for the same CheckoutRequestID: nothing is posted, the request is
    'contradicted', the treasurer (Swahili) and the chairperson (English)
    are alerted by SMS, the log says so at ERROR and /metrics counts it."""
    url, daraja, e = tm.setup(env, "v_stk_contra", {"CHAMAD_MPESA_QUERY_AFTER_S": "600"})
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    (tphone, tid), (cphone, chid) = officials(env, url, cid)
    daraja.control(result_code=1032, callback="never")
    assert tm.contribute(c, phone, 500).startswith("END Check your phone")
    assert tm.wait_status(env, url, ["pushed"]) == ["pushed"]
    (checkout,), = env.psql("SELECT checkout_request_id FROM mpesa_requests", url)
    r = c.post("/mpesa/stk/callback/" + MPESA_SECRET, stk_callback(checkout, 0, 500.00, "QFORGED01", phone))
    assert r.status == 200, r.body
    assert tm.wait_status(env, url, ["contradicted"]) == ["contradicted"]
    assert env.psql("SELECT result_code, mpesa_receipt IS NULL, contribution_id IS NULL FROM mpesa_requests",
                    url) == [["1032", "t", "t"]]
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert env.psql("SELECT count(*) FROM contributions", url) == [["0"]]
    assert outbox_texts(env, url, "kind = 'receipt'") == []
    assert env.psql("SELECT status, outcome FROM mpesa_callbacks", url) == [["settled", "contradicted"]]
    # the officials, each in their language; no one else
    assert alert_texts(env, url, chid) == [
        "ChamaSmart ALERT: the KES 500 M-Pesa payment by Payer to Pesa Group (ref QFORGED01) was NOT credited: "
        "M-Pesa says it did not go through. Please check it."]
    assert alert_texts(env, url, tid) == [
        "ChamaSmart TAHADHARI: malipo ya M-Pesa ya KES 500 ya Payer kwa Pesa Group (kumb. QFORGED01) HAYAKUWEKWA: "
        "M-Pesa inasema hayakufanikiwa. Tafadhali kagua."]
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'mpesa_alert'", url) == [["2"]]
    assert wait_for(lambda: metric(c, "chamad_mpesa_contradictions_total", kind="stk_contradicted") == 1, 5)
    (rid,), = env.psql("SELECT id FROM mpesa_requests", url)
    rc, items = money_to_check(env, url)
    assert rc == 1 and [(i["kind"], i["id"], i["status"], i["amount_cents"], i["receipt"], i["chama"])
                        for i in items] == [("stk", int(rid), "contradicted", 50000, "QFORGED01", int(cid))], items
    # a second copy of the forged callback changes nothing
    r = c.post("/mpesa/stk/callback/" + MPESA_SECRET, stk_callback(checkout, 0, 500.00, "QFORGED01", phone))
    assert r.status == 200
    time.sleep(1.0)
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'mpesa_alert'", url) == [["2"]]
    assert ledger_entries(env, url) == 0
    tm.verify(env, url)
    log = c.stop()
    assert re.search(r"error +mpesa ALERT stk_contradicted: alert \d+, chama %s, mpesa_requests %s" % (cid, rid),
                     log), log[-3000:]


def test_verify_stk_emulator_query_says_cancelled_after_a_paid_callback(env):
    """Daraja's own callback says paid, its STK push query says cancelled
    (1032): nothing posted, contradicted, both officials alerted."""
    url, daraja, e = tm.setup(env, "v_stk_contra2", {"CHAMAD_MPESA_QUERY_AFTER_S": "600"})
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    (tphone, tid), (cphone, chid) = officials(env, url, cid)
    daraja.contradict("stk_query", "failed", count=-1)
    tm.contribute(c, phone, 300)
    assert tm.wait_status(env, url, ["contradicted"]) == ["contradicted"]
    assert daraja.callbacks("stk")[0]["body"]["Body"]["stkCallback"]["ResultCode"] == 0
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert outbox_texts(env, url, "kind = 'receipt'") == []
    assert len(alert_texts(env, url, tid)) == 1 and len(alert_texts(env, url, chid)) == 1
    assert "KES 300" in alert_texts(env, url, chid)[0] and "did not go through" in alert_texts(env, url, chid)[0]
    assert wait_for(lambda: metric(c, "chamad_mpesa_contradictions_total", kind="stk_contradicted") == 1, 5)
    tm.verify(env, url)
    c.stop()


def test_verify_stk_unknown_request_and_over_limit_never_credited(env):
    """A success callback for a CheckoutRequestID we never made is kept,
    counted, never credited; a success past [mpesa] max_amount is flagged."""
    url, daraja, e = tm.setup(env, "v_stk_limit", {"CHAMAD_MPESA_QUERY_AFTER_S": "600",
                                                   "CHAMAD_MPESA_MAX_AMOUNT": "1000"})
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    (tphone, tid), (cphone, chid) = officials(env, url, cid)
    r = c.post("/mpesa/stk/callback/" + MPESA_SECRET, stk_callback("ws_CO_never_made", 0, 700.00, "QNOPE0001", phone))
    assert r.status == 200
    # a real push of KES 900; its callback claims 5,000 (past the limit)
    daraja.control(callback="never")
    tm.contribute(c, phone, 900)
    assert tm.wait_status(env, url, ["pushed"]) == ["pushed"]
    (checkout,), = env.psql("SELECT checkout_request_id FROM mpesa_requests", url)
    wait_for(lambda: [p for p in daraja.pushes() if p["checkout_request_id"] == checkout and p["decided"]], 5)
    c.post("/mpesa/stk/callback/" + MPESA_SECRET, stk_callback(checkout, 0, 5000.00, "QBIG00001", phone))
    assert tm.wait_status(env, url, ["flagged"]) == ["flagged"]
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert "above the limit" in alert_texts(env, url, chid)[0]
    # the unknown one: waits for a request that never comes, never credited
    env.psql("UPDATE mpesa_callbacks SET attempts = 20, next_try_at = now() WHERE checkout_request_id = "
             "'ws_CO_never_made'", url)
    assert wait_for(lambda: env.psql("SELECT status FROM mpesa_callbacks WHERE checkout_request_id = "
                                     "'ws_CO_never_made'", url) == [["unmatched"]])
    assert wait_for(lambda: metric(c, "chamad_mpesa_callbacks_unmatched_total") == 1, 5)
    assert ledger_entries(env, url) == 0
    tm.verify(env, url)
    c.stop()


# -- C2B -------------------------------------------------------------------

def c2b_setup(env, name, extra=None):
    url, daraja, e = tm.setup(env, name, extra)
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
    base = c.url + "/payments/c2b/%s/" + MPESA_SECRET
    daraja.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")
    return url, daraja, c, phone, uid, cid, num


def c2b_rows(env, url):
    return env.psql("SELECT trans_id, status, coalesce(flag_reason, ''), outcome FROM mpesa_c2b ORDER BY id", url)


def test_verify_c2b_unverified_until_the_status_result_agrees(env):
    """A confirmation (delivered twice) is one record, unverified: no
    credit, no receipt, listed to check; the Transaction Status result
    comes late and agrees: credited and receipted once."""
    url, daraja, c, phone, uid, cid, num = c2b_setup(env, "v_c2b_ok")
    daraja.result_late("status", 2500)
    t0 = time.monotonic()
    trans = daraja.c2b(amount=700, bill_ref="%s-%s" % (cid, num), twice=True)["trans_id"]
    assert [x["http"] for x in daraja.callbacks("c2b_confirmation")] == [200, 200]
    assert c2b_rows(env, url) == [[trans, "unverified", "", "contribution"]]
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert outbox_texts(env, url, "kind = 'receipt'") == []
    rc, items = money_to_check(env, url)
    assert rc == 1 and [(i["kind"], i["status"], i["amount_cents"], i["receipt"], i["chama"]) for i in items] == \
        [("c2b", "unverified", 70000, trans, int(cid))], items
    assert wait_for(lambda: c2b_rows(env, url) == [[trans, "verified", "", "contribution"]], 20), c2b_rows(env, url)
    assert time.monotonic() - t0 >= 2.0  # it waited for the result
    assert tm.balance(env, url, uid) == 70000
    assert env.psql("SELECT count(*), min(external_reference) FROM contributions", url) == [["1", trans]]
    assert outbox_texts(env, url, "kind = 'receipt'") == \
        ["ChamaSmart: received KES 700 for Pesa Group. M-Pesa ref %s. Thank you." % trans]
    assert money_to_check(env, url)[0] == 0
    tm.verify(env, url)
    c.stop()


def test_verify_c2b_status_disagrees_or_does_not_know_it(env):
    """Another amount, another account, another shortcode, not found: each
    is flagged, never credited, and the officials alerted."""
    url, daraja, c, phone, uid, cid, num = c2b_setup(env, "v_c2b_bad")
    (tphone, tid), (cphone, chid) = officials(env, url, cid)
    want = []
    for how, reason in (("amount", "amount"), ("account", "account"), ("shortcode", "shortcode"),
                        ("not_found", "not_found")):
        daraja.contradict("status", how)
        trans = daraja.c2b(amount=300, bill_ref="%s-%s" % (cid, num))["trans_id"]
        want.append([trans, "flagged", reason, "contribution"])
        assert wait_for(lambda: c2b_rows(env, url) == want, 15), (how, c2b_rows(env, url))
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert outbox_texts(env, url, "kind = 'receipt'") == []
    assert alert_texts(env, url, chid) == [
        "ChamaSmart ALERT: the paybill payment of KES 300 to Pesa Group (ref %s) was NOT credited: %s. "
        "Please check it." % (w[0], why) for w, why in zip(want, (
            "M-Pesa reports another amount", "M-Pesa reports another account number",
            "it was not paid to our paybill", "M-Pesa does not know this payment"))]
    assert alert_texts(env, url, tid)[3] == \
        "ChamaSmart TAHADHARI: malipo ya paybill ya KES 300 kwa Pesa Group (kumb. %s) HAYAKUWEKWA: " \
        "M-Pesa haitambui malipo haya. Tafadhali kagua." % want[3][0]
    assert wait_for(lambda: metric(c, "chamad_mpesa_contradictions_total", kind="c2b_flagged") == 4, 5)
    rc, items = money_to_check(env, url)
    assert rc == 1 and [(i["receipt"], i["status"], i["reason"]) for i in items] == \
        [(w[0], "flagged", w[2]) for w in want], items
    rc, text = money_to_check(env, url, json_out=False)
    assert "4 not credited" in text and all(w[0] in text for w in want), text
    tm.verify(env, url)
    c.stop()


def test_verify_c2b_never_verified_is_flagged_and_shown_to_check(env):
    """The status result never comes: the payment stays unverified (shown in
    "Payments to check" on USSD and by the CLI), then after [mpesa]
    verify_flag_after_s it is flagged, never credited."""
    url, daraja, c, phone, uid, cid, num = c2b_setup(env, "v_c2b_lost", {
        "CHAMAD_MPESA_VERIFY_FLAG_AFTER_S": "4", "CHAMAD_MPESA_STATUS_TIMEOUT_S": "600"})
    (tphone, tid), (cphone, chid) = officials(env, url, cid)
    sphone, sid, _ = tm.add_member(env, url, cid, "secretary", name="Secre")
    daraja.result_lost("status", count=-1)
    trans = daraja.c2b(amount=1200, bill_ref="%s-%s" % (cid, num))["trans_id"]
    assert c2b_rows(env, url) == [[trans, "unverified", "", "contribution"]]
    # the treasurer and the chairperson see it (Officials > Money > Payments
    # to check); the secretary and a member are not offered it
    screen = ussd(c, cphone, [PIN, "10"])
    money = re.search(r"(\d+)\. Money\n", screen).group(1)
    screen = ussd(c, cphone, [PIN, "10", money])
    opt = re.search(r"(\d+)\. Payments to check", screen).group(1)
    path = [PIN, "10", money, opt]
    screen = ussd(c, cphone, path)
    assert screen.startswith("CON Payments to check:") and "KES 1200 %s" % trans in screen, screen
    screen = ussd(c, cphone, path + ["1"])
    assert "Not credited" in screen and trans in screen, screen
    assert "Payments to check" not in ussd(c, sphone, [PIN, "10", money])
    assert "KES 1200" not in ussd(c, sphone, path)
    screen = ussd(c, phone, [PIN, "10"])
    assert "Payments to check" not in screen and "Money" not in screen, screen
    assert tm.balance(env, url, uid) == 0
    assert wait_for(lambda: c2b_rows(env, url) == [[trans, "flagged", "unverified", "contribution"]], 20), \
        c2b_rows(env, url)
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert alert_texts(env, url, chid) == [
        "ChamaSmart ALERT: the paybill payment of KES 1,200 to Pesa Group (ref %s) was NOT credited: "
        "M-Pesa did not confirm it in time. Please check it." % trans]
    screen = ussd(c, tphone, path)
    assert "KES 1200 %s" % trans in screen, screen  # still to check
    rc, items = money_to_check(env, url)
    assert [(i["receipt"], i["status"], i["reason"]) for i in items] == [(trans, "flagged", "unverified")]
    assert items[0]["age_s"] >= 4
    tm.verify(env, url)
    c.stop()


def test_verify_c2b_forged_wrong_shortcode_replayed_and_limits(env):
    """Confirmations posted straight to chamad, as an attacker would: one
    for another shortcode is acknowledged and ignored (no record); one with
    a TransID M-Pesa never made is recorded, found unknown, never credited;
    the same TransID again with another amount is a replay, ignored; an
    amount past max_amount is flagged at once.  The validation refuses
    another shortcode and an amount past the limit."""
    url, daraja, c, phone, uid, cid, num = c2b_setup(env, "v_c2b_forged", {"CHAMAD_MPESA_MAX_AMOUNT": "5000"})
    (tphone, tid), (cphone, chid) = officials(env, url, cid)

    def confirmation(trans, amount, shortcode=daraja.shortcode, path="confirmation"):
        return c.post("/payments/c2b/%s/%s" % (path, MPESA_SECRET), json.dumps({
            "TransactionType": "Pay Bill", "TransID": trans, "TransTime": "20261201120000",
            "TransAmount": "%d.00" % amount, "BusinessShortCode": shortcode, "BillRefNumber": "%s-%s" % (cid, num),
            "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "", "MSISDN": "2547 ***** 126",
            "FirstName": "Eve", "MiddleName": "", "LastName": ""}).encode(),
            headers={"Content-Type": "application/json"})

    r = confirmation("QWRONGSC1", 500, shortcode="600999")
    assert r.status == 200 and r.json()["ResultCode"] == 0
    assert c2b_rows(env, url) == []
    assert metric(c, "chamad_mpesa_c2b_ignored_total", why="shortcode") == 1
    # the validation: another shortcode, or past the limit: rejected
    r = confirmation("QVALID001", 500, shortcode="600999", path="validation")
    assert r.json()["ResultCode"] == "C2B00013", r.body
    r = confirmation("QVALID002", 6000, path="validation")
    assert r.json()["ResultCode"] == "C2B00013", r.body
    r = confirmation("QVALID003", 500, path="validation")
    assert r.json()["ResultCode"] == "0", r.body
    # a TransID the emulator never made: recorded, never credited
    r = confirmation("QFORGED77", 500)
    assert r.status == 200
    assert wait_for(lambda: c2b_rows(env, url) == [["QFORGED77", "flagged", "not_found", "contribution"]], 15), \
        c2b_rows(env, url)
    # the same TransID again with another amount: one record, a replay alert
    r = confirmation("QFORGED77", 900)
    assert r.status == 200
    assert c2b_rows(env, url) == [["QFORGED77", "flagged", "not_found", "contribution"]]
    assert metric(c, "chamad_mpesa_c2b_ignored_total", why="replay") == 1
    # past the limit (a real payment; the validation would refuse it, so
    # Safaricom's external validation is off here): flagged at once
    daraja.control(c2b_validation=False)
    trans = daraja.c2b(amount=6000, bill_ref="%s-%s" % (cid, num))["trans_id"]
    assert c2b_rows(env, url)[-1] == [trans, "flagged", "over_limit", "contribution"]
    assert ledger_entries(env, url) == 0 and tm.balance(env, url, uid) == 0
    assert outbox_texts(env, url, "kind = 'receipt'") == []
    assert wait_for(lambda: metric(c, "chamad_mpesa_contradictions_total", kind="c2b_replay") == 1
                    and metric(c, "chamad_mpesa_contradictions_total", kind="c2b_flagged") == 2, 5)
    texts = alert_texts(env, url, chid)
    assert any("came again with other details" in t and "QFORGED77" in t for t in texts), texts
    assert any("above the limit" in t and trans in t for t in texts), texts
    tm.verify(env, url)
    c.stop()


def test_verify_c2b_aged_on_the_clock_it_is_flagged_by(env):
    """A payment recorded with an injected clock ([jobs] now: tests,
    drills) is as old as that clock says, not hours old at once: the
    overdue pass leaves it to its status result until verify_flag_after_s
    has passed on the same clock (c2b_confirm dates it p_at, as every
    posting function does)."""
    url = env.fresh_db("chamasmart_v_c2b_clock")
    env.migrate(url)
    at = "(now() + interval '60 days')"
    env.psql("SELECT * FROM c2b_confirm('UCLOCK0001', 120000, 'nobody', 'Payer', '2547 ***** 001', 'sms_mpesa_receipt', "
             "%s, '174379', NULL)" % at, url)
    assert env.psql("SELECT c2b_flag_overdue(3600, %s)" % at, url) == [["0"]]
    assert c2b_rows(env, url) == [["UCLOCK0001", "unverified", "", "unassigned"]]
    assert env.psql("SELECT c2b_flag_overdue(3600, %s + interval '2 hours')" % at, url) == [["1"]]
    assert c2b_rows(env, url) == [["UCLOCK0001", "flagged", "unverified", "unassigned"]]
    # and a clock behind the real one: aged by it too, not flagged at once
    past = "(now() - interval '60 days')"
    env.psql("SELECT * FROM c2b_confirm('UCLOCK0002', 120000, 'nobody', 'Payer', '2547 ***** 001', 'sms_mpesa_receipt', "
             "%s, '174379', NULL)" % past, url)
    assert env.psql("SELECT c2b_flag_overdue(3600, %s)" % past, url) == [["0"]]
    assert c2b_rows(env, url)[1] == ["UCLOCK0002", "unverified", "", "unassigned"]
