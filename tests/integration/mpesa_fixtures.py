"""M-Pesa test fixture: the Safaricom Daraja emulator (scripts/daraja-emulator).

    from mpesa_fixtures import DarajaEmulator

    mp = DarajaEmulator(env)                   # free port; env.cleanup() stops it
    chamad = env.chamad({"CHAMAD_MPESA_BASE_URL": mp.url,
                         "CHAMAD_MPESA_CONSUMER_KEY": mp.consumer_key, ...})
    mp.control(result_code=1032)               # every push from now: cancelled by user
    mp.control(callback="never")               # decided, but the callback is lost
    cbs = mp.wait_callbacks(1)                 # [{"kind":"stk","url","body","raw","http","answer",...}]
    mp.c2b(amount=500, bill_ref="UMOJA-12", first_name="Jane")   # a paybill payment
    mp.stop()

With env (tests/integration/harness.py Env) it joins env's process list, so
env.cleanup() stops it after the test, pass or fail, and prints its log tail
on failure.  Without env, call stop() (or use it as a context manager);
anything left is stopped at interpreter exit.

The emulator's header (scripts/daraja-emulator) documents every control key.
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
                 args=(), timeout=10):
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.shortcode = str(shortcode)
        self.passkey = passkey
        args = ["--consumer-key", consumer_key, "--consumer-secret", consumer_secret, "--shortcode", self.shortcode,
                "--passkey", passkey] + \
            (["--callback-delay-ms", str(callback_delay_ms)] if callback_delay_ms is not None else []) + \
            (["--token-ttl", str(token_ttl)] if token_ttl is not None else []) + list(args)
        self.spawn(None, "daraja-emulator", "daraja-emulator", args, timeout)
        self.oauth_url = self.url + "/oauth/v1/generate?grant_type=client_credentials"
        self.stkpush_url = self.url + "/mpesa/stkpush/v1/processrequest"
        self.query_url = self.url + "/mpesa/stkpushquery/v1/query"
        self.register_url = self.url + "/mpesa/c2b/v1/registerurl"
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
        msisdn_format, reset (see the script's header).  result_code and
        callback hold until reset unless result_count / callback_count say."""
        st, body = self._post_json("/_control", kw)
        assert st == 200, "control %r -> %s %s" % (kw, st, body)
        return json.loads(body)

    def reset(self):
        return self.control(reset=True)

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

