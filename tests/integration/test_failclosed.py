"""Fail closed: a daemon whose callbacks anyone could call does not start,
and a forged callback of any kind, at any path, moves no money.

The rule (config_validate, README "Callback secrets and allow-lists"):
with [mpesa] consumer_key set, [mpesa] callback_secret has at least 32
characters of [A-Za-z0-9_-] and [mpesa] allow_ips a "safaricom:" entry;
on a non-loopback [http] listen, some USSD aggregator and the SMS provider
in use have a secret (>= 32 characters) or an allow-list, and a caller with
neither is served only from loopback."""
import json
import os
import socket
import subprocess

from harness import MPESA_SECRET, ROOT, free_port, http
import test_mpesa as tm

S32 = "A" * 16 + "b-_" + "9" * 13          # 32 characters, all allowed
MPESA_ON = {"CHAMAD_MPESA_CONSUMER_KEY": "ck-x", "CHAMAD_MPESA_CALLBACK_SECRET": S32,
            "CHAMAD_MPESA_ALLOW_IPS": "safaricom:196.201.214.0/24"}
OPEN = {"CHAMAD_HTTP_LISTEN": "0.0.0.0:8080", "CHAMAD_USSD_ALLOW_IPS": "africastalking:196.201.214.0/24"}


def check_config(env, extra, conf=None):
    """chamad --check-config with only these keys set (the shipped
    etc/chamad.conf when conf is given); returns (exit code, output)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CHAMAD_")}
    e.update(env.base_env())
    for k in ("CHAMAD_MPESA_CALLBACK_SECRET", "CHAMAD_MPESA_ALLOW_IPS"):
        e.pop(k)
    e.update(extra)
    args = [env.bin, "--check-config"] + (["-c", conf] if conf else [])
    p = subprocess.run(args, capture_output=True, text=True, env=e, cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


def test_failclosed_check_config_names_the_key(env):
    shipped = os.path.join(ROOT, "etc", "chamad.conf")
    refused = [
        # M-Pesa on: the path secret, then Safaricom's addresses
        ({"CHAMAD_MPESA_CONSUMER_KEY": "ck-x"}, "[mpesa] callback_secret"),
        (dict(MPESA_ON, CHAMAD_MPESA_CALLBACK_SECRET=S32[:31]), "[mpesa] callback_secret"),
        (dict(MPESA_ON, CHAMAD_MPESA_CALLBACK_SECRET=S32[:31] + "/"), "[mpesa] callback_secret"),
        (dict(MPESA_ON, CHAMAD_MPESA_CALLBACK_SECRET=S32[:31] + "="), "[mpesa] callback_secret"),
        (dict(MPESA_ON, CHAMAD_MPESA_ALLOW_IPS=""), "[mpesa] allow_ips"),
        (dict(MPESA_ON, CHAMAD_MPESA_ALLOW_IPS="kannel:1.2.3.4"), "[mpesa] allow_ips"),
        # a non-loopback listen: USSD, SMS, and every secret's length
        ({"CHAMAD_HTTP_LISTEN": "0.0.0.0:8080"}, "[ussd] secrets"),
        ({"CHAMAD_HTTP_LISTEN": "[::]:8080"}, "[ussd] secrets"),
        ({"CHAMAD_HTTP_LISTEN": "0.0.0.0:8080", "CHAMAD_USSD_SECRETS": "africastalking:short"}, "[ussd] secrets"),
        (dict(OPEN, CHAMAD_SMS_PROVIDER="africastalking"), "[sms] secrets"),
        (dict(OPEN, CHAMAD_SMS_PROVIDER="kannel", CHAMAD_SMS_ALLOW_IPS="africastalking:1.2.3.4"), "[sms] secrets"),
        (dict(OPEN, CHAMAD_SMS_SECRETS="kannel:" + S32[:20]), "[sms] secrets"),
    ]
    for extra, key in refused:
        for conf in (None, shipped):
            rc, out = check_config(env, extra, conf)
            assert rc == 1 and ("configuration error: " + key) in out, (extra, conf, rc, out)
    accepted = [
        {},
        {"CHAMAD_MPESA_CALLBACK_SECRET": "short"},      # M-Pesa off: no M-Pesa route at all
        MPESA_ON,
        dict(MPESA_ON, CHAMAD_HTTP_LISTEN="0.0.0.0:8080", CHAMAD_USSD_SECRETS="hubtel:" + S32),
        dict(OPEN, CHAMAD_SMS_PROVIDER="kannel", CHAMAD_SMS_ALLOW_IPS="kannel:127.0.0.1"),
        dict(OPEN, CHAMAD_SMS_PROVIDER="africastalking", CHAMAD_SMS_SECRETS="africastalking:" + S32),
        {"CHAMAD_SMS_PROVIDER": "africastalking", "CHAMAD_SMS_SECRETS": "africastalking:x"},   # loopback
    ]
    for extra in accepted:
        for conf in (None, shipped):
            rc, out = check_config(env, extra, conf)
            assert rc == 0, (extra, conf, out)


def test_failclosed_daemon_refuses_to_start(env):
    """M-Pesa configured without a secret: chamad run exits 1 naming the
    key, before it listens."""
    e = dict(os.environ)
    e.update(env.base_env())
    port = free_port()
    e.update({"CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port, "CHAMAD_MPESA_CONSUMER_KEY": "ck-x",
              "CHAMAD_MPESA_CALLBACK_SECRET": ""})
    p = subprocess.run([env.bin], capture_output=True, text=True, env=e, cwd=ROOT, timeout=30)
    assert p.returncode == 1 and "[mpesa] callback_secret" in p.stderr, (p.returncode, p.stderr)
    e["CHAMAD_MPESA_CALLBACK_SECRET"] = S32
    e["CHAMAD_MPESA_ALLOW_IPS"] = ""
    p = subprocess.run([env.bin], capture_output=True, text=True, env=e, cwd=ROOT, timeout=30)
    assert p.returncode == 1 and "[mpesa] allow_ips" in p.stderr, (p.returncode, p.stderr)


def _stk_body(phone, checkout="ws_CO_forged"):
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "m-forged", "CheckoutRequestID": checkout, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 5000}, {"Name": "MpesaReceiptNumber",
                                                                          "Value": "QFORGED01"},
                                      {"Name": "TransactionDate", "Value": 20260101120000},
                                      {"Name": "PhoneNumber", "Value": int(phone.lstrip("+"))}]}}}}).encode()


def _c2b_body(shortcode, bill_ref, phone, trans="QFORGEDC2B"):
    return json.dumps({"TransactionType": "Pay Bill", "TransID": trans, "TransTime": "20260101120000",
                       "TransAmount": "5000.00", "BusinessShortCode": shortcode, "BillRefNumber": bill_ref,
                       "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
                       "MSISDN": phone.lstrip("+"), "FirstName": "Mallory"}).encode()


def _no_money(env, url):
    """Nothing was credited, recorded or announced."""
    assert env.psql("SELECT count(*) FROM journal_entries", url) == [["0"]]
    assert env.psql("SELECT count(*) FROM notifications WHERE template LIKE 'sms_mpesa%'", url) == [["0"]]
    assert env.psql("SELECT count(*) FROM mpesa_c2b", url) == [["0"]]
    assert env.psql("SELECT count(*) FROM mpesa_callbacks", url) == [["0"]]
    assert env.psql("SELECT count(*) FROM contributions", url) == [["0"]]


def _forge(c, phone, bill_ref, shortcode, secret_paths, want_secret):
    """Posts a well-formed STK callback and C2B confirmation to the
    guessable paths (404: no such route) and to the secret ones (want_secret)."""
    hdr = {"Content-Type": "application/json"}
    for path in ("/payments/c2b/confirmation", "/payments/c2b/validation", "/mpesa/stk/callback",
                 "/mpesa/stk/callback/", "/payments/c2b/confirmation/" + S32):
        for body in (_c2b_body(shortcode, bill_ref, phone), _stk_body(phone)):
            r = c.post(path, body, headers=hdr)
            assert r.status == 404, (path, r.status, r.body)
    if secret_paths:
        r = c.post("/payments/c2b/confirmation/" + MPESA_SECRET, _c2b_body(shortcode, bill_ref, phone),
                   headers=hdr)
        assert r.status == want_secret, r.body
        r = c.post("/mpesa/stk/callback/" + MPESA_SECRET, _stk_body(phone), headers=hdr)
        assert r.status == want_secret, r.body


def test_failclosed_forged_callbacks_move_no_money(env):
    """M-Pesa off (the shipped etc/chamad.conf): no M-Pesa route exists.
    M-Pesa on: only the secret paths exist, and a peer outside [mpesa]
    allow_ips is refused there (403)."""
    url = env.fresh_db("chamasmart_failclosed")
    env.migrate(url)
    phone, uid, cid = tm.seed(env, url)
    (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
    bill_ref = "%s-%s" % (cid, num)
    # as shipped: M-Pesa off
    c = env.chamad({"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_CONSUMER_KEY": ""})
    _forge(c, phone, bill_ref, "174379", False, None)
    r = c.post("/payments/c2b/confirmation/" + MPESA_SECRET, _c2b_body("174379", bill_ref, phone))
    assert r.status == 404
    c.stop()
    _no_money(env, url)
    # on, the tests' caller (127.0.0.1) not in Safaricom's allow-list
    daraja = tm.DarajaEmulator(env, consumer_key="ck-fc", consumer_secret="cs-fc")
    port = free_port()
    c = env.chamad({"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": daraja.url,
                    "CHAMAD_MPESA_CONSUMER_KEY": "ck-fc", "CHAMAD_MPESA_CONSUMER_SECRET": "cs-fc",
                    "CHAMAD_MPESA_PASSKEY": daraja.passkey, "CHAMAD_MPESA_SHORTCODE": daraja.shortcode,
                    "CHAMAD_MPESA_ALLOW_IPS": "safaricom:196.201.214.0/24",
                    "CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port,
                    "CHAMAD_MPESA_PUBLIC_URL": "http://127.0.0.1:%d" % port})
    _forge(c, phone, bill_ref, daraja.shortcode, True, 403)
    c.stop()
    assert "safaricom: refused 127.0.0.1: not in the allow-list" in c.log()
    _no_money(env, url)
    # the same daemon with its own caller allowed credits the same bytes:
    # the refusals above are the guard's, not a bad body
    c = env.chamad({"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": daraja.url,
                    "CHAMAD_MPESA_CONSUMER_KEY": "ck-fc", "CHAMAD_MPESA_CONSUMER_SECRET": "cs-fc",
                    "CHAMAD_MPESA_PASSKEY": daraja.passkey, "CHAMAD_MPESA_SHORTCODE": daraja.shortcode,
                    "CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port,
                    "CHAMAD_MPESA_PUBLIC_URL": "http://127.0.0.1:%d" % port})
    r = c.post("/payments/c2b/confirmation/" + MPESA_SECRET, _c2b_body(daraja.shortcode, bill_ref, phone),
               headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body
    assert env.psql("SELECT count(*) FROM mpesa_c2b", url) == [["1"]]
    c.stop()


def _own_address():
    """An address of this machine that is not loopback."""
    for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split():
        if ":" not in a and not a.startswith("127."):
            return a
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("192.0.2.1", 9))      # no packet is sent: picks the outgoing address
    a = s.getsockname()[0]
    s.close()
    assert not a.startswith("127."), a
    return a


def test_failclosed_unguarded_callers_only_from_loopback(env):
    """On a non-loopback listen a caller with neither a secret nor an
    allow-list (here Hubtel, and Kannel while Africa's Talking is the SMS
    provider) answers 403 to anyone but this machine; the guarded one is
    served."""
    addr = _own_address()
    port = free_port()
    url = env.fresh_db("chamasmart_failclosed_open")
    env.migrate(url)
    c = env.chamad({"CHAMAD_DATABASE_URL": url, "CHAMAD_HTTP_LISTEN": "0.0.0.0:%d" % port,
                    "CHAMAD_USSD_ALLOW_IPS": "africastalking:%s" % addr,
                    "CHAMAD_SMS_PROVIDER": "africastalking", "CHAMAD_SMS_SECRETS": "africastalking:" + MPESA_SECRET})
    base = "http://%s:%d" % (addr, port)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    hub = json.dumps({"Type": "Initiation", "Mobile": "254712345670", "SessionId": "fc1", "ServiceCode": "714",
                      "Message": "*714#", "Operator": "mtn", "Sequence": 1}).encode()
    assert http("POST", base + "/ussd/hubtel", hub, {"Content-Type": "application/json"}).status == 403
    assert http("POST", base + "/sms/kannel/inbound", b"from=%2B254712345670&text=BAL+1234&id=k1", form).status == 403
    assert http("GET", base + "/sms/kannel/dlr?id=1&status=1").status == 403
    assert http("POST", base + "/sms/africastalking/inbound", b"from=%2B254712345670&text=HELP&id=a1",
                form).status == 403      # guarded by its secret, which this lacks
    # the guarded aggregator is served from its allowed address
    r = http("POST", base + "/ussd/africastalking", b"sessionId=fc2&phoneNumber=%2B254712345670&text=", form)
    assert r.status == 200 and r.body.startswith("CON "), (r.status, r.body)
    # and from loopback the unguarded one still answers (tests, a local proxy)
    r = c.post("/ussd/hubtel", hub, headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body
    log = c.stop()
    assert "hubtel: refused %s: no secret or allow-list is configured for it" % addr in log
    assert env.psql("SELECT count(*) FROM sms_inbound", url) == [["0"]]
