"""The Daraja emulator itself (scripts/daraja/, issue 10): every API's
happy path and failure modes, the transaction book and the balances that
follow from it, the token and initiator checks.  Python against the
running emulator; no chamad.  Results go to a small sink here that
answers {"ResultCode":0,"ResultDesc":"Accepted"} as chamad would."""
import http.client
import http.server
import json
import threading
import time
import urllib.parse

from mpesa_fixtures import DarajaEmulator

PHONE = "254712345678"


class Sink:
    """A loopback receiver for Results and callbacks: records every body."""

    def __init__(self, env):
        sink = self
        self.got = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                sink.got.append((self.path, json.loads(self.rfile.read(n) or b"null")))
                out = b'{"ResultCode":0,"ResultDesc":"Accepted"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        # env.cleanup() stops what env._procs holds: this joins them
        self.proc, self.logpath, self.running = self, "(result sink)", True
        env._procs.append(self)

    def poll(self):
        return None if self.running else 0

    def stop(self, expect_rc=None):
        self.running = False
        self.srv.shutdown()
        self.srv.server_close()

    def log(self):
        return "%d bodies: %r" % (len(self.got), self.got[-5:])

    def wait(self, path, n=1, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [b for p, b in self.got if p == path]
            if len(got) >= n:
                return got
            time.sleep(0.02)
        raise AssertionError("%d bodies at %s expected, got %r" % (n, path, self.got))

    def at(self, path):
        return [b for p, b in self.got if p == path]


def emulator(env, **kw):
    kw.setdefault("result_delay_ms", 20)
    return DarajaEmulator(env, consumer_key="ck-emu", consumer_secret="cs-emu", **kw), Sink(env)


def params(result):
    """{Key: Value} of a Result's ResultParameters."""
    return {p["Key"]: p.get("Value") for p in
            result["Result"].get("ResultParameters", {}).get("ResultParameter", [])}


def b2c(mp, sink, oc, amount=500, phone=PHONE, token=None, v1=False, **override):
    req = {"OriginatorConversationID": oc, "InitiatorName": mp.initiator_name,
           "SecurityCredential": mp.security_credential, "CommandID": "BusinessPayment",
           "Amount": amount, "PartyA": mp.b2c_shortcode, "PartyB": phone, "Remarks": "Loan 42",
           "QueueTimeOutURL": sink.url + "/b2c/timeout", "ResultURL": sink.url + "/b2c/result",
           "Occasion": "loan"}
    req.update(override)
    req = {k: v for k, v in req.items() if v is not None}
    url = mp.b2c_url.replace("/v3/", "/v1/") if v1 else mp.b2c_url
    return mp._api(url, req, token)


def status(mp, sink, transaction_id=None, originator=None, token=None, **override):
    req = {"Initiator": mp.initiator_name, "SecurityCredential": mp.security_credential,
           "CommandID": "TransactionStatusQuery", "TransactionID": transaction_id,
           "OriginatorConversationID": originator, "PartyA": mp.shortcode, "IdentifierType": "4",
           "ResultURL": sink.url + "/status/result", "QueueTimeOutURL": sink.url + "/status/timeout",
           "Remarks": "verify", "Occasion": "c2b"}
    req.update(override)
    return mp._api(mp.status_url, {k: v for k, v in req.items() if v is not None}, token)


def test_daraja_emulator_b2c_pays_from_the_working_account(env):
    mp, sink = emulator(env, opening_working=10000)
    st, ack = b2c(mp, sink, "payout:1:1", amount=700)
    assert st == 200 and ack["ResponseCode"] == "0", ack
    assert ack["OriginatorConversationID"] == "payout:1:1" and ack["ConversationID"].startswith("AG_")
    r = sink.wait("/b2c/result")[0]["Result"]
    assert r["ResultCode"] == 0 and r["OriginatorConversationID"] == "payout:1:1"
    assert r["ConversationID"] == ack["ConversationID"]
    p = params({"Result": r})
    assert p["TransactionAmount"] == 700 and p["TransactionReceipt"] == r["TransactionID"]
    assert p["ReceiverPartyPublicName"] == PHONE + " - John Doe"
    assert p["B2CWorkingAccountAvailableFunds"] == 9300
    assert mp.paid_b2c("payout:1:1") == 1
    e = mp.book(type="b2c")[0]
    assert (e["receipt"], e["amount"], e["msisdn"], e["shortcode"]) == (
        r["TransactionID"], 700, PHONE, mp.b2c_shortcode)
    assert mp.balances()["Working Account"] == 9300
    # v1: Daraja gives the OriginatorConversationID
    st, ack = b2c(mp, sink, None, amount=100, v1=True)
    assert st == 200 and ack["OriginatorConversationID"], ack
    assert mp.paid_b2c(ack["OriginatorConversationID"]) == 1
    assert mp.balances()["Working Account"] == 9200
    assert [c["api"] for c in mp.calls("b2c")] == ["b2c", "b2c"]


def test_daraja_emulator_b2c_refusals(env):
    mp, sink = emulator(env)
    st, body = b2c(mp, sink, "x:1", token="not-a-token")
    assert st == 404 and body["errorCode"] == "404.001.03"
    for field, value in (("Amount", "10.5"), ("PartyA", "999999"), ("PartyB", "0712345678"),
                         ("CommandID", "Gift"), ("ResultURL", "nope"),
                         ("OriginatorConversationID", "")):
        st, body = b2c(mp, sink, "x:1", **{field: value})
        assert st == 400 and body["errorMessage"] == "Bad Request - Invalid " + field, (field, body)
    # a wrong initiator or credential: accepted, the Result says 2001, nothing paid
    b2c(mp, sink, "x:2", InitiatorName="mallory")
    b2c(mp, sink, "x:3", SecurityCredential="guess")
    mp.set_balance(working=300)
    b2c(mp, sink, "x:4", amount=301)        # insufficient funds
    b2c(mp, sink, "x:5", amount=5)          # below the minimum
    got = {r["Result"]["OriginatorConversationID"]: r["Result"] for r in sink.wait("/b2c/result", 4)}
    assert {k: got[k]["ResultCode"] for k in got} == {"x:2": 2001, "x:3": 2001, "x:4": 1, "x:5": 2}
    assert got["x:2"]["ResultDesc"] == "The initiator information is invalid."
    assert all("ResultParameters" not in r for r in got.values())
    assert mp.book() == [] and mp.balances()["Working Account"] == 300
    b2c(mp, sink, "x:6", amount=300)
    assert sink.wait("/b2c/result", 5)[-1]["Result"]["ResultCode"] == 0
    assert mp.balances()["Working Account"] == 0


def test_daraja_emulator_b2c_result_failure_modes(env):
    mp, sink = emulator(env)
    mp.result_lost("b2c")
    b2c(mp, sink, "never:1")
    mp.result_twice("b2c")
    b2c(mp, sink, "twice:1")
    mp.result_timeout("b2c")
    b2c(mp, sink, "timeout:1")
    mp.result_code("b2c", 8006)
    b2c(mp, sink, "locked:1")
    mp.result_late("b2c", late_ms=600)
    t0 = time.monotonic()
    b2c(mp, sink, "late:1")
    ocs = lambda path: [b["Result"]["OriginatorConversationID"] for b in sink.at(path)]
    sink.wait("/b2c/result", 4)
    assert time.monotonic() - t0 >= 0.55
    assert sorted(ocs("/b2c/result")) == ["late:1", "locked:1", "twice:1", "twice:1"]
    t = sink.wait("/b2c/timeout")[0]["Result"]
    assert t["OriginatorConversationID"] == "timeout:1" and t["ResultCode"] != 0
    # paid: never (result lost), twice (once), late; not: timeout, 8006
    assert {e["originator_id"] for e in mp.book(type="b2c")} == {"never:1", "twice:1", "late:1"}
    assert mp.paid_b2c("twice:1") == 1 and mp.paid_b2c("timeout:1") == 0
    assert len(mp.results("b2c")) == 4 and len(mp.results("b2c", timeout=True)) == 1
    # counts ran out: normal again; the same OriginatorConversationID is paid again
    b2c(mp, sink, "never:1")
    sink.wait("/b2c/result", 5)
    assert mp.paid_b2c("never:1") == 2


def test_daraja_emulator_transaction_status_from_the_book(env):
    mp, sink = emulator(env)
    b2c(mp, sink, "payout:7:1", amount=1200)
    rec = sink.wait("/b2c/result")[0]["Result"]["TransactionID"]
    # by OriginatorConversationID (no receipt known)
    st, ack = status(mp, sink, originator="payout:7:1")
    assert st == 200 and ack["ResponseCode"] == "0", ack
    r = sink.wait("/status/result")[0]["Result"]
    p = params({"Result": r})
    assert r["ResultCode"] == 0 and r["ConversationID"] == ack["ConversationID"]
    assert p["ReceiptNo"] == rec and p["Amount"] == 1200 and p["TransactionStatus"] == "Completed"
    assert p["DebitPartyName"] == "%s - ChamaSmart" % mp.b2c_shortcode
    assert p["CreditPartyName"] == PHONE + " - John Doe"
    assert p["OriginatorConversationID"] == "payout:7:1"
    # unknown: non-zero, no parameters
    status(mp, sink, originator="payout:8:1")
    status(mp, sink, transaction_id="TXX0000000")
    for body in sink.wait("/status/result", 3)[1:]:
        assert body["Result"]["ResultCode"] == 2032 and "ResultParameters" not in body["Result"]
    # a wrong initiator: 2001 even for a transaction that exists
    status(mp, sink, transaction_id=rec, Initiator="mallory")
    assert sink.wait("/status/result", 4)[-1]["Result"]["ResultCode"] == 2001


def org_req(mp, sink, api, **fields):
    """An Account Balance or Reversal request with the right initiator."""
    req = {"Initiator": mp.initiator_name, "SecurityCredential": mp.security_credential,
           "QueueTimeOutURL": sink.url + "/%s/timeout" % api, "ResultURL": sink.url + "/%s/result" % api,
           "Remarks": "ops"}
    req.update(fields)
    return {k: v for k, v in req.items() if v is not None}


def balance(mp, sink, token=None, **override):
    return mp._api(mp.balance_url, org_req(mp, sink, "balance", **dict(dict(
        CommandID="AccountBalance", PartyA=mp.shortcode, IdentifierType="4"), **override)), token)


def reversal(mp, sink, receipt, amount, token=None, **override):
    return mp._api(mp.reversal_url, org_req(mp, sink, "reversal", **dict(dict(
        CommandID="TransactionReversal", TransactionID=receipt, Amount=amount,
        ReceiverParty=mp.shortcode, RecieverIdentifierType="11"), **override)), token)


def pull(mp, start, end, offset="0", token=None, shortcode=None):
    return mp._api(mp.pull_url, {"ShortCode": shortcode or mp.shortcode, "StartDate": start,
                                 "EndDate": end, "OffSetValue": offset}, token)


def eat(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + 3 * 3600))


def paid_c2b(mp, sink, amount, bill_ref, **kw):
    mp.register_c2b(confirmation_url=sink.url + "/c2b/confirmation")
    return mp.c2b(amount=amount, bill_ref=bill_ref, msisdn=PHONE, first_name="Jane",
                  last_name="Doe", **kw)


def test_daraja_emulator_status_of_a_paybill_payment_and_its_contradictions(env):
    mp, sink = emulator(env)
    tid = paid_c2b(mp, sink, 500, "UMOJA-12")["trans_id"]
    assert sink.wait("/c2b/confirmation")[0]["TransID"] == tid
    status(mp, sink, transaction_id=tid, OriginatorConversationID="q:1")
    r = sink.wait("/status/result")[0]["Result"]
    p = params({"Result": r})
    assert r["OriginatorConversationID"] == "q:1" and r["TransactionID"] == tid
    assert (p["Amount"], p["ReceiptNo"], p["TransactionReason"], p["TransactionStatus"]) == (
        500, tid, "UMOJA-12", "Completed")
    assert p["DebitPartyName"] == PHONE + " - Jane Doe"
    assert p["CreditPartyName"] == mp.shortcode + " - ChamaSmart"
    for i, how in enumerate(("amount", "account", "shortcode", "failed", "not_found")):
        mp.contradict("status", how)
        status(mp, sink, transaction_id=tid)
        # its result before the next query: the emulator posts each result
        # from a thread of its own, so two in flight may land in either order
        sink.wait("/status/result", i + 2)
    got = [b["Result"] for b in sink.wait("/status/result", 6)[1:]]
    ps = [params({"Result": x}) for x in got]
    assert ps[0]["Amount"] == 501 and ps[1]["TransactionReason"] != "UMOJA-12"
    assert not ps[2]["CreditPartyName"].startswith(mp.shortcode + " ")
    assert ps[3]["TransactionStatus"] != "Completed"
    assert got[4]["ResultCode"] == 2032 and ps[4] == {}
    assert mp.book(receipt=tid)[0]["amount"] == 500     # the book never changes
    # the count ran out: the truth again, as numbers or (strings) as text
    mp.fail("status", strings=True)
    status(mp, sink, transaction_id=tid)
    last = sink.wait("/status/result", 7)[-1]["Result"]
    assert last["ResultCode"] == "0" and params({"Result": last})["Amount"] == "500"


def test_daraja_emulator_lost_confirmation_and_unknown_entries(env):
    mp, sink = emulator(env)
    out = paid_c2b(mp, sink, 800, "UMOJA-3", lose_confirmation=True)
    assert out["accepted"] and out["confirmation_lost"] and out["confirmations"] == []
    mp.lose_confirmation()
    tid2 = paid_c2b(mp, sink, 900, "UMOJA-4")["trans_id"]
    tid3 = paid_c2b(mp, sink, 100, "UMOJA-5")["trans_id"]   # count ran out: posted
    time.sleep(0.1)
    assert [b["TransID"] for b in sink.at("/c2b/confirmation")] == [tid3]
    assert len(mp.callbacks("c2b_confirmation")) == 1
    e = mp.add_book_entry(250, bill_ref="NOBODY-1", msisdn="254700000001")
    assert e["source"] == "injected" and e["type"] == "c2b"
    book = mp.book(type="c2b")
    assert [(x["receipt"], x["confirmation_posted"]) for x in book] == [
        (out["trans_id"], False), (tid2, False), (tid3, True), (e["receipt"], False)]
    assert mp.balances()["Utility Account"] == 800 + 900 + 100 + 250
    # Transaction Status and the statement know them all
    status(mp, sink, transaction_id=e["receipt"])
    assert params(sink.wait("/status/result")[0])["TransactionReason"] == "NOBODY-1"
    now = time.time()
    st, body = pull(mp, eat(now - 60), eat(now + 60))
    assert st == 200 and body["ResponseCode"] == "1000", body
    rows = body["Response"][0]
    assert [r["transactionId"] for r in rows] == [x["receipt"] for x in book]
    assert rows[-1]["msisdn"] == 254700000001 and rows[-1]["amount"] == "250.0"
    assert rows[0]["billreference"] == "UMOJA-3" and rows[0]["transactiontype"] == "c2b-pay-bill-debit"


def test_daraja_emulator_balance_and_reversal_follow_the_book(env):
    mp, sink = emulator(env, opening_working=5000)
    tid = paid_c2b(mp, sink, 700, "UMOJA-9")["trans_id"]
    b2c(mp, sink, "payout:3:1", amount=1000)
    b2c_receipt = sink.wait("/b2c/result")[0]["Result"]["TransactionID"]
    st, ack = balance(mp, sink)
    assert st == 200 and ack["ResponseCode"] == "0", ack
    p = params(sink.wait("/balance/result")[0])
    assert p["AccountBalance"] == ("Working Account|KES|4000.00|4000.00|0.00|0.00&"
                                   "Utility Account|KES|700.00|700.00|0.00|0.00&"
                                   "Charges Paid Account|KES|0.00|0.00|0.00|0.00")
    # reverse the paybill payment: it leaves the Utility account
    reversal(mp, sink, tid, 700)
    r = sink.wait("/reversal/result")[0]["Result"]
    assert r["ResultCode"] == 0 and params({"Result": r})["OriginalTransactionID"] == tid
    assert mp.book(receipt=tid)[0]["status"] == "Reversed"
    assert mp.book(type="reversal")[0]["reverses"] == tid
    # each result before the next request: the emulator posts each from a
    # thread of its own, so two in flight may land in either order
    reversal(mp, sink, tid, 700)                 # again
    sink.wait("/reversal/result", 2)
    reversal(mp, sink, b2c_receipt, 999)         # wrong amount
    sink.wait("/reversal/result", 3)
    reversal(mp, sink, "TXX0000000", 5)          # unknown
    codes = [b["Result"]["ResultCode"] for b in sink.wait("/reversal/result", 4)[1:]]
    assert codes == ["R000001", "R000002", "R000002"]
    reversal(mp, sink, b2c_receipt, 1000)        # a payout comes back
    sink.wait("/reversal/result", 5)
    assert mp.balances() == {"Working Account": 5000, "Utility Account": 0, "Charges Paid Account": 0}
    status(mp, sink, transaction_id=tid)
    assert params(sink.wait("/status/result")[0])["TransactionStatus"] == "Reversed"
    balance(mp, sink, SecurityCredential="guess")
    sink.wait("/balance/result", 2)              # in order (as above)
    mp.result_code("balance", 8006)
    balance(mp, sink)
    assert [b["Result"]["ResultCode"] for b in sink.wait("/balance/result", 3)[1:]] == [2001, 8006]


def test_daraja_emulator_stk_payments_are_in_the_book_and_the_query_can_contradict(env):
    mp, sink = emulator(env, callback_delay_ms=50)
    mp.control(callback="never", callback_count=1)
    st, ack = mp.stk_push(PHONE, 300, sink.url + "/stk", account_reference="UMOJA-7")
    assert st == 200, ack
    cid = ack["CheckoutRequestID"]
    time.sleep(0.15)
    st, q = mp.query(cid)
    assert st == 200 and q["ResultCode"] == "0", q
    e = mp.book(type="stk")
    assert len(e) == 1 and (e[0]["conversation_id"], e[0]["amount"], e[0]["bill_ref"]) == (cid, 300, "UMOJA-7")
    assert sink.at("/stk") == []                 # never posted, but paid
    mp.contradict("stk_query", "failed")
    st, q = mp.query(cid)
    assert st == 200 and q["ResultCode"] == "1032", q
    mp.contradict("stk_query", "not_found")
    st, q = mp.query(cid)
    assert st == 400 and q["errorMessage"] == "Bad Request - Invalid CheckoutRequestID", q
    st, q = mp.query(cid)                        # counts ran out
    assert q["ResultCode"] == "0"
    # a cancelled push is no payment; a pending one only once decided
    mp.control(result_code=1032, result_count=1)
    mp.stk_push(PHONE, 10, sink.url + "/stk")
    mp.control(callback="pending", callback_count=1)
    pid = mp.stk_push(PHONE, 20, sink.url + "/stk")[1]["CheckoutRequestID"]
    time.sleep(0.15)
    assert len(mp.book(type="stk")) == 1
    mp.control(decide=pid)
    assert [x["amount"] for x in mp.book(type="stk")] == [300, 20]
    status(mp, sink, transaction_id=e[0]["receipt"])
    p = params(sink.wait("/status/result")[0])
    assert p["ReasonType"] == "Pay Bill Online" and p["TransactionReason"] == "UMOJA-7"
    assert mp.balances()["Utility Account"] == 320


def test_daraja_emulator_stk_query_answers_a_booked_checkout_it_never_pushed(env):
    # bench/money.sh posts callbacks for checkouts it made up; chamad
    # credits them only once the STK query agrees, so the book must answer
    mp, sink = emulator(env)
    st, q = mp.query("ws_BENCH_1")
    assert st == 400 and q["errorMessage"] == "Bad Request - Invalid CheckoutRequestID", q
    e = mp.add_book_entry(500, type="stk", conversation_id="ws_BENCH_1", receipt="BENCH00001",
                          msisdn="254713000001", bill_ref="CHAMA1", merchant_request_id="b-1")
    assert (e["type"], e["conversation_id"], e["merchant_request_id"]) == ("stk", "ws_BENCH_1", "b-1")
    st, q = mp.query("ws_BENCH_1")
    assert st == 200 and (q["ResultCode"], q["CheckoutRequestID"], q["MerchantRequestID"]) == (
        "0", "ws_BENCH_1", "b-1"), q
    assert q["ResultDesc"] == "The service request is processed successfully."
    # only an STK entry is a checkout; another CheckoutRequestID stays unknown
    mp.add_book_entry(300, type="c2b", conversation_id="ws_BENCH_2")
    assert mp.query("ws_BENCH_2")[0] == 400
    assert mp.query("ws_BENCH_3")[0] == 400
    # the query's contradict modes hold for a booked checkout too
    mp.contradict("stk_query", "failed", count=1)
    st, q = mp.query("ws_BENCH_1")
    assert st == 200 and q["ResultCode"] == "1032", q
    mp.contradict("stk_query", "not_found", count=1)
    assert mp.query("ws_BENCH_1")[0] == 400
    assert mp.query("ws_BENCH_1")[1]["ResultCode"] == "0"
    assert mp.balances()["Utility Account"] == 800     # both entries are collections
    assert sink.got == []                              # nothing was posted anywhere

def test_daraja_emulator_statement_window_pages_and_refusals(env):
    mp, sink = emulator(env)
    t0 = time.time()
    old = mp.add_book_entry(111, time=eat(t0 - 7200), bill_ref="OLD")
    new = [mp.add_book_entry(100 + i, bill_ref="N%d" % i) for i in range(3)]
    mp.add_book_entry(999, type="b2c", shortcode="600000")     # another shortcode
    st, body = pull(mp, eat(t0 - 60), eat(t0 + 60))
    assert [r["transactionId"] for r in body["Response"][0]] == [e["receipt"] for e in new]
    st, body = pull(mp, eat(t0 - 7300), eat(t0 - 7100))
    assert [r["transactionId"] for r in body["Response"][0]] == [old["receipt"]]
    assert body["Response"][0][0]["trxDate"].endswith("+03:00")
    mp.control(pull_page_size=2)
    pages = [pull(mp, eat(t0 - 9000), eat(t0 + 60), offset=o)[1]["Response"][0] for o in ("0", "2", "4")]
    assert [len(p) for p in pages] == [2, 2, 0]
    for kw, field in ((dict(start="2025-13-01 00:00:00", end=eat(t0)), "StartDate"),
                      (dict(start=eat(t0), end=eat(t0 - 60)), "EndDate"),
                      (dict(start=eat(t0), end=eat(t0), offset="x"), "OffSetValue"),
                      (dict(start=eat(t0), end=eat(t0), shortcode="999999"), "ShortCode")):
        st, body = pull(mp, **kw)
        assert st == 400 and body["errorMessage"] == "Bad Request - Invalid " + field, (kw, body)


def _raw_post(url, obj, token, timeout):
    """(status, body) or the exception a client sees (timeout, closed)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("POST", u.path, json.dumps(obj), {"Content-Type": "application/json",
                                                    "Authorization": "Bearer " + token})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, None
    finally:
        c.close()


def test_daraja_emulator_tokens_sync_errors_and_hangs_per_api(env):
    mp, sink = emulator(env)
    tok = mp.token()[1]["access_token"]
    t0 = time.time()
    calls = {
        "b2c": lambda oc: (mp.b2c_url, {"OriginatorConversationID": oc, "InitiatorName": mp.initiator_name,
                                        "SecurityCredential": mp.security_credential,
                                        "CommandID": "BusinessPayment", "Amount": 100,
                                        "PartyA": mp.b2c_shortcode, "PartyB": PHONE, "Remarks": "r",
                                        "QueueTimeOutURL": sink.url + "/t", "ResultURL": sink.url + "/b2c/result"}),
        "status": lambda oc: (mp.status_url, org_req(mp, sink, "status", CommandID="TransactionStatusQuery",
                                                     TransactionID="TXX0000000", PartyA=mp.shortcode,
                                                     IdentifierType="4")),
        "balance": lambda oc: (mp.balance_url, org_req(mp, sink, "balance", CommandID="AccountBalance",
                                                       PartyA=mp.shortcode, IdentifierType="4")),
        "reversal": lambda oc: (mp.reversal_url, org_req(mp, sink, "reversal", CommandID="TransactionReversal",
                                                         TransactionID="TXX0000000", Amount=1,
                                                         ReceiverParty=mp.shortcode, RecieverIdentifierType="11")),
        "pull": lambda oc: (mp.pull_url, {"ShortCode": mp.shortcode, "StartDate": eat(t0 - 60),
                                          "EndDate": eat(t0 + 60), "OffSetValue": "0"}),
    }
    for api, make in calls.items():
        url, body = make("%s:1" % api)
        assert _raw_post(url, body, "bad-token", 5)[1]["errorCode"] == "404.001.03", api
        mp.sync_error(api)
        st, out = _raw_post(url, body, tok, 5)
        assert (st, out["errorCode"], out["errorMessage"]) == (
            500, "500.003.02", "System is busy. Please try again in few minutes."), (api, out)
        mp.hang(api, hang_s=1.5)
        t = time.monotonic()
        assert _raw_post(url, body, tok, 0.5)[0] in ("timeout", "TimeoutError"), api
        assert time.monotonic() - t < 1.2
        mp.drop(api)
        assert _raw_post(url, body, tok, 5)[0] in ("RemoteDisconnected", "ConnectionResetError"), api
        st, out = _raw_post(url, body, tok, 5)
        assert st == 200, (api, out)
    assert [c["http"] for c in mp.calls("pull")] == [404, 500, "hung", "dropped", 200]
    # nothing was done by the refused, hung and dropped ones: one B2C paid
    assert mp.paid_b2c("b2c:1") == 1
    # "after": carried out, the answer lost
    url, body = calls["b2c"]("b2c:2")
    mp.hang("b2c", after=True, hang_s=1.5)
    assert _raw_post(url, body, tok, 0.5)[0] in ("timeout", "TimeoutError")
    assert mp.paid_b2c("b2c:2") == 1
    assert [b["Result"]["OriginatorConversationID"] for b in sink.wait("/b2c/result", 2)] == ["b2c:1", "b2c:2"]
    mp.sync_error("oauth", "500.003.03")
    st, out = mp.token()
    assert st == 500 and out["errorCode"] == "500.003.03", out
    # a changed initiator: the old one is refused from now
    mp.set_initiator(name="chamad", credential="c2VjcmV0")
    b2c(mp, sink, "b2c:3")
    assert sink.wait("/b2c/result", 3)[-1]["Result"]["ResultCode"] == 2001
    b2c(mp, sink, "b2c:4", InitiatorName="chamad", SecurityCredential="c2VjcmV0")
    assert sink.wait("/b2c/result", 4)[-1]["Result"]["ResultCode"] == 0


def test_daraja_emulator_control_refuses_unknown_modes(env):
    mp, sink = emulator(env)
    for spec in ({"result": "sometimes"}, {"colour": 1}, {"hang_s": "x"}, {"contradict": "mood"}):
        st, body = mp._post_json("/_control", {"b2c": spec})
        assert st == 400, (spec, body)
    st, body = mp._post_json("/_control", {"ledger": {}})
    assert st == 400 and "unknown control keys: ledger" in body
    v = mp.fail("status", count=2, result="late", late_ms=100)
    assert v["specs"]["status"] == {"result": "late", "late_ms": 100, "count": 2}
    assert "status" not in mp.reset()["specs"]
