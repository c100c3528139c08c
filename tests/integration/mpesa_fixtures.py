"""M-Pesa test fixture: the Safaricom Daraja emulator (scripts/daraja-emulator).

    from mpesa_fixtures import DarajaEmulator

    mp = DarajaEmulator(env)                   # free port; env.cleanup() stops it
    chamad = env.chamad({"CHAMAD_MPESA_BASE_URL": mp.url,
                         "CHAMAD_MPESA_CONSUMER_KEY": mp.consumer_key, ...})
    mp.control(result_code=1032)               # every push from now: cancelled by user
    mp.control(callback="never")               # decided, but the callback is lost
    cbs = mp.wait_callbacks(1)                 # [{"kind":"stk","url","body","raw","http","answer",...}]
    mp.c2b(amount=500, bill_ref="UMOJA-12", first_name="Jane")   # a paybill payment
    mp.fail("b2c", result="never")             # the next B2C Result is lost (any failure mode)
    mp.result_lost("b2c"); mp.contradict("status", "amount"); mp.hang("b2c", after=True)
    mp.book(type="b2c", originator_id=oc)      # the transaction book: "paid exactly once"
    mp.calls("status"); mp.results("b2c")      # requests received; Results posted
    mp.stop()

With env (tests/integration/harness.py Env) it joins env's process list, so
env.cleanup() stops it after the test, pass or fail, and prints its log tail
on failure.  Without env, call stop() (or use it as a context manager);
anything left is stopped at interpreter exit.

scripts/daraja/README.md documents every control key and failure mode.
"""
import base64
import json
import os
import time
import urllib.parse

from emulator_proc import EmulatorProcess, request as _request

SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


class DarajaEmulator(EmulatorProcess):
    """scripts/daraja-emulator as a subprocess on a free loopback port.

    url            http://127.0.0.1:PORT  (chamad's Daraja base URL)
    oauth_url, stkpush_url, query_url, register_url   the API endpoints
    consumer_key, consumer_secret, shortcode, passkey  what it accepts
    logpath        its --log file (one line per event); stderr in logpath + ".err"
    """

    def __init__(self, env=None, consumer_key="test-consumer-key",
                 consumer_secret="test-consumer-secret", shortcode="174379",
                 passkey=SANDBOX_PASSKEY, callback_delay_ms=None, token_ttl=None,
                 args=(), timeout=10, b2c_shortcode=None, initiator_name="testapi",
                 security_credential="test-security-credential", result_delay_ms=None,
                 opening_working=None, opening_utility=None):
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.shortcode = str(shortcode)
        self.b2c_shortcode = str(b2c_shortcode or shortcode)
        self.passkey = passkey
        self.initiator_name = initiator_name
        self.security_credential = security_credential
        args = ["--consumer-key", consumer_key, "--consumer-secret", consumer_secret, "--shortcode", self.shortcode,
                "--passkey", passkey, "--b2c-shortcode", self.b2c_shortcode,
                "--initiator-name", initiator_name, "--security-credential", security_credential] + \
            (["--result-delay-ms", str(result_delay_ms)] if result_delay_ms is not None else []) + \
            (["--opening-working", str(opening_working)] if opening_working is not None else []) + \
            (["--opening-utility", str(opening_utility)] if opening_utility is not None else []) + \
            (["--callback-delay-ms", str(callback_delay_ms)] if callback_delay_ms is not None else []) + \
            (["--token-ttl", str(token_ttl)] if token_ttl is not None else []) + list(args)
        self.spawn(None, "daraja-emulator", "daraja-emulator", args, timeout)
        self.oauth_url = self.url + "/oauth/v1/generate?grant_type=client_credentials"
        self.stkpush_url = self.url + "/mpesa/stkpush/v1/processrequest"
        self.query_url = self.url + "/mpesa/stkpushquery/v1/query"
        self.register_url = self.url + "/mpesa/c2b/v1/registerurl"
        self.b2c_url = self.url + "/mpesa/b2c/v3/paymentrequest"
        self.status_url = self.url + "/mpesa/transactionstatus/v1/query"
        self.balance_url = self.url + "/mpesa/accountbalance/v1/query"
        self.reversal_url = self.url + "/mpesa/reversal/v1/request"
        self.pull_url = self.url + "/pulltransactions/v1/query"
        if env is not None:
            env._procs.append(self)

    # -- the control API --
    def _post_json(self, path, obj):
        return _request("POST", self.url + path, json.dumps(obj).encode(),
                        {"Content-Type": "application/json"})

    def control(self, **kw):
        """POST /_control; returns the new state.  Keys: result_code,
        result_desc, result_count, number_result, callback (normal | twice |
        late | never | wrong_amount | pending), callback_count,
        callback_delay_ms, late_ms, twice_gap_ms, balance_item, decide,
        decide_callback, push_error, push_error_code, push_error_message,
        push_error_http, lock_subscriber, drop, drop_after_accept,
        query_error, slow_ms, token_ttl, expire_tokens, c2b_validation,
        msisdn_format, result_delay_ms, initiator_name, security_credential,
        pull_page_size, names, opening, set_balance, and one failure-mode
        spec per API (oauth, stk_push, stk_query, c2b, b2c, status, balance,
        reversal, pull, registerurl), reset (scripts/daraja/README.md).
        result_code and callback hold until reset unless result_count /
        callback_count say."""
        st, body = self._post_json("/_control", kw)
        assert st == 200, "control %r -> %s %s" % (kw, st, body)
        return json.loads(body)

    def reset(self):
        return self.control(reset=True)

    # -- failure modes per API (api: "b2c", "status", "balance", "reversal",
    #    "stk_query", "stk_push", "pull", "oauth", "registerurl", "c2b").
    #    Each holds for the next `count` requests to that API (-1: until
    #    reset or changed) and replaces the API's previous spec. --
    def fail(self, api, count=1, **spec):
        """Any spec (README.md "Failure modes per API"); fail(api, None)
        style clearing: clear_fail(api)."""
        return self.control(**{api: dict(spec, count=count)})

    def clear_fail(self, api):
        return self.control(**{api: None})

    def result_lost(self, api, count=1):
        """The request is carried out; its Result is never posted."""
        return self.fail(api, count, result="never")

    def result_twice(self, api, count=1):
        return self.fail(api, count, result="twice")

    def result_late(self, api, late_ms, count=1):
        return self.fail(api, count, result="late", late_ms=late_ms)

    def result_timeout(self, api, count=1):
        """Not carried out; a timeout Result goes to QueueTimeOutURL."""
        return self.fail(api, count, result="timeout")

    def result_code(self, api, code, count=1, desc=None):
        """The Result fails with code (1 insufficient funds, 2001 initiator,
        8006 credential locked, 17, "R000001"...); nothing is carried out."""
        return self.fail(api, count, result_code=code, **({"result_desc": desc} if desc else {}))

    def initiator_error(self, api, code=2001, count=1):
        return self.result_code(api, code, count)

    def contradict(self, api, how, count=1):
        """status: "amount" | "account" | "shortcode" | "failed" | "not_found";
        stk_query: "failed" | "not_found"."""
        return self.fail(api, count, contradict=how)

    def sync_error(self, api, code="500.003.02", count=1, http=None, message=None):
        """An HTTP error body instead of the acknowledgement; nothing done."""
        spec = {"sync_error": code}
        if http is not None:
            spec["sync_http"] = http
        if message is not None:
            spec["sync_message"] = message
        return self.fail(api, count, **spec)

    def hang(self, api, after=False, hang_s=30, count=1):
        """No HTTP answer for hang_s seconds, then the connection closes;
        after=True: the request was carried out first (its Result is
        posted), only the answer is lost."""
        return self.fail(api, count, hang="after" if after else "before", hang_s=hang_s)

    def drop(self, api, after=False, count=1):
        """The connection closes at once, no answer (after=True: carried out)."""
        return self.fail(api, count, drop="after" if after else "before")

    def lose_confirmation(self, count=1):
        """The next C2B payments are in the book and the statement, but their
        confirmation is never posted (mp.c2b(..., lose_confirmation=True)
        does it for one)."""
        return self.fail("c2b", count, confirmation="lost")

    def set_balance(self, working=None, utility=None):
        """Makes the account balance this many KES now (moves the opening)."""
        b = {k: v for k, v in (("working", working), ("utility", utility)) if v is not None}
        return self.control(set_balance=b)

    def set_initiator(self, name=None, credential=None):
        """What the emulator expects from now (a wrong one gets 2001)."""
        c = {}
        if name is not None:
            c["initiator_name"] = name
        if credential is not None:
            c["security_credential"] = credential
        return self.control(**c)

    # -- the book and what was received / posted --
    def book(self, **match):
        """Book entries (oldest first) whose fields equal match, e.g.
        book(type="b2c", originator_id=oc): receipt, type, amount, shortcode,
        bill_ref, msisdn, name, originator_id, conversation_id, time,
        trx_date, status ("Completed" | "Reversed"), reverses, reversed_by,
        source ("stk" | "c2b" | "api" | "injected"), confirmation_posted."""
        return [e for e in self._get("/_book")["entries"]
                if all(e.get(k) == v for k, v in match.items())]

    def balances(self):
        """{"Working Account": KES, "Utility Account": KES, "Charges Paid Account": 0}."""
        return self._get("/_book")["balances"]

    def paid_b2c(self, originator_id):
        """How many B2C payments the book holds for this OriginatorConversationID."""
        return len(self.book(type="b2c", originator_id=originator_id))

    def add_book_entry(self, amount, **kw):
        """A transaction nobody was told about (POST /_book): type ("c2b",
        "stk", "b2c"), bill_ref, msisdn, name, shortcode, receipt, time,
        originator_id, conversation_id, trans_type.  Returns the entry."""
        kw["amount"] = amount
        st, body = self._post_json("/_book", kw)
        assert st == 200, "_book %r -> %s %s" % (kw, st, body)
        return json.loads(body)

    def calls(self, api=None):
        """Requests received for api ("b2c", "status", "balance", "reversal",
        "pull", "stk_push", "stk_query", "oauth", "registerurl")."""
        return [r for r in self.requests() if api is None or r.get("api") == api]

    def results(self, api=None, timeout=False):
        """Results posted for api (kind "<api>_result", or "<api>_timeout"
        with timeout=True): {kind, url, body, raw, http, answer, time,
        originator_id, conversation_id, copy}."""
        suffix = "_timeout" if timeout else "_result"
        return [c for c in self.callbacks() if c["kind"].endswith(suffix) and
                (api is None or c["kind"] == api + suffix)]

    def expire_tokens(self):
        return self.control(expire_tokens=True)

    def requests(self):
        """Every API call received: {seq, time, method, path, auth_ok, body,
        http, error, response}."""
        return self._get("/_requests")

    def callbacks(self, kind=None):
        """Every callback posted, oldest first: {kind, url, body, raw, http,
        answer, time, copy, checkout_request_id | trans_id}; kind filters
        ("stk", "c2b_validation", "c2b_confirmation")."""
        cbs = self._get("/_callbacks")
        return [c for c in cbs if kind is None or c["kind"] == kind]

    def pushes(self):
        """Every accepted STK push and its fate (receipt, result, decided...)."""
        return self._get("/_pushes")

    def stats(self):
        return self._get("/_stats")

    def clear(self):
        """Forgets requests and callbacks (pushes stay queryable)."""
        st, body = _request("DELETE", self.url + "/_requests")
        assert st == 200, body

    def wait_callbacks(self, n, timeout=10, kind=None):
        """Waits until at least n callbacks (of kind, if given) were posted
        and answered; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.callbacks(kind)
            if len(c) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(c) >= n, "expected %d callbacks from the Daraja emulator, got %d: %r" % (
            n, len(c), c)
        return c

    def c2b(self, amount, bill_ref="", **kw):
        """A customer pays the paybill (POST /_c2b): first_name, middle_name,
        last_name, msisdn, trans_id, twice, shortcode, trans_type,
        msisdn_format, timeout_s.  Returns {"trans_id", "accepted",
        "validation", "confirmation", "confirmations"}; each posted body
        with the HTTP status and body chamad answered."""
        kw.update(amount=amount, bill_ref=bill_ref)
        st, body = self._post_json("/_c2b", kw)
        assert st == 200, "c2b %r -> %s %s" % (kw, st, body)
        return json.loads(body)

    # -- the Daraja API, as a client would call it (for testing the emulator
    #    itself, or for a test that needs a token or a push of its own) --
    def password(self, timestamp):
        return base64.b64encode(("%s%s%s" % (self.shortcode, self.passkey, timestamp))
                                .encode()).decode()

    @staticmethod
    def timestamp():
        return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 3 * 3600))

    def token(self, key=None, secret=None, grant_type="client_credentials"):
        """(status, parsed body) of GET /oauth/v1/generate."""
        auth = base64.b64encode(("%s:%s" % (key or self.consumer_key,
                                            secret or self.consumer_secret)).encode()).decode()
        st, body = _request("GET", self.url + "/oauth/v1/generate?grant_type=" + grant_type,
                            headers={"Authorization": "Basic " + auth})
        return st, json.loads(body)

    def _api(self, url, obj, token):
        if token is None:
            st, t = self.token()
            assert st == 200, t
            token = t["access_token"]
        st, body = _request("POST", url, json.dumps(obj).encode(), {
            "Content-Type": "application/json", "Authorization": "Bearer " + token})
        return st, json.loads(body)

    def stk_push(self, phone, amount, callback_url, account_reference="CHAMA",
                 token=None, **override):
        """(status, parsed body) of an STK push built like chamad's; override
        replaces or adds fields (None drops one)."""
        ts = self.timestamp()
        req = {"BusinessShortCode": self.shortcode, "Password": self.password(ts),
               "Timestamp": ts, "TransactionType": "CustomerPayBillOnline",
               "Amount": amount, "PartyA": phone, "PartyB": self.shortcode,
               "PhoneNumber": phone, "CallBackURL": callback_url,
               "AccountReference": account_reference, "TransactionDesc": "Contribution"}
        req.update(override)
        req = {k: v for k, v in req.items() if v is not None}
        return self._api(self.stkpush_url, req, token)

    def query(self, checkout_request_id, token=None):
        ts = self.timestamp()
        return self._api(self.query_url, {
            "BusinessShortCode": self.shortcode, "Password": self.password(ts),
            "Timestamp": ts, "CheckoutRequestID": checkout_request_id}, token)

    def register_c2b(self, confirmation_url, validation_url=None, response_type="Completed",
                     shortcode=None, token=None):
        return self._api(self.register_url, {
            "ShortCode": shortcode or self.shortcode, "ResponseType": response_type,
            "ConfirmationURL": confirmation_url, "ValidationURL": validation_url or ""}, token)

