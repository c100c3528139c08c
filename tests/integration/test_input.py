"""Bad input never becomes a retry loop: every route checks encoding,
lengths and numbers before PostgreSQL sees them (base/input, sms_parse).

A USSD hop or end-of-session notification that cannot be read gets 400 (a
session has nothing to resend); a delivery report or inbound SMS gets 200
and a log line (the provider would resend it forever, and it can never
succeed), counted in chamad_http_bad_input_total.  503 stays for a
database that is really down."""
import json
import re

# tests/run.py -j N: alone, nothing else in flight: it stops the
# PostgreSQL every worker shares.
SERIAL = {"test_input_database_down_is_still_503"}

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _daemon(env, name):
    url = env.fresh_db("chamasmart_input_" + name)
    env.migrate(url)
    return url, env.chamad({"CHAMAD_DATABASE_URL": url})


def _bad_input_total(c):
    text = c.get("/metrics").body
    return sum(int(n) for n in re.findall(r"^chamad_http_bad_input_total\{[^}]*\} (\d+)$", text, re.M))


def test_input_bad_bytes_lengths_numbers(env):
    url, c = _daemon(env, "bad")
    long_id = b"A" * 200
    cases = [
        # (path, body, content type, status)
        # USSD hops: 400
        ("/ussd/africastalking", b"sessionId=i1&phoneNumber=%2B254712345678&text=%FF%FE", FORM, 400),
        ("/ussd/africastalking", b"sessionId=i1&phoneNumber=%2B254712345678&text=&serviceCode=" + b"9" * 80,
         FORM, 400),
        ("/ussd/africastalking", b"sessionId=i1&phoneNumber=%2B254712345678&text=1%01", FORM, 400),
        ("/ussd/hubtel", b'{"Type":"Initiation","Mobile":"233246912184","SessionId":"h1","Message":"\xff\xfe"}',
         {"Content-Type": "application/json"}, 400),
        ("/ussd/hubtel", json.dumps({"Type": "Initiation", "Mobile": "233246912184", "SessionId": "h1",
                                     "Message": "*714#\u0001"}).encode(), {"Content-Type": "application/json"}, 400),
        ("/ussd/hubtel", json.dumps({"Type": "Initiation", "Mobile": "233246912184", "SessionId": "h1",
                                     "Message": "1" * 1200}).encode(), {"Content-Type": "application/json"}, 400),
        # AT's end-of-session notification: 400 (it reports a session that is over)
        ("/ussd/africastalking/events", b"sessionId=e1&status=Success&lastAppResponse=END+%C3%28", FORM, 400),
        ("/ussd/africastalking/events", b"sessionId=e2&status=Success&hopsCount=99999999999", FORM, 400),
        ("/ussd/africastalking/events", b"sessionId=e3&status=Success&durationInMillis=12s", FORM, 400),
        ("/ussd/africastalking/events", b"sessionId=e4&status=Failed&errorMessage=" + b"x" * 1200, FORM, 400),
        # delivery reports: 200 and logged
        ("/sms/africastalking/dlr", b"id=%FF%FE&status=Success", FORM, 200),
        ("/sms/africastalking/dlr", b"id=ATXid_1&status=Failed&failureReason=%C3%28", FORM, 200),
        ("/sms/africastalking/dlr", b"id=" + long_id + b"&status=Success", FORM, 200),
        ("/sms/africastalking/dlr", b"id=ATXid_1&status=" + b"S" * 40, FORM, 200),
        ("/sms/kannel/dlr?id=12x&status=1", b"", FORM, 200),
        ("/sms/kannel/dlr?id=99999999999999999999999&status=1", b"", FORM, 200),
        ("/sms/kannel/dlr?id=1&status=%FF", b"", FORM, 200),
        # inbound messages: 200 and logged
        ("/sms/africastalking/inbound", b"from=%2B254712345678&text=BAL+%FF%FE&id=in1", FORM, 200),
        ("/sms/africastalking/inbound", b"from=%2B254712345678&text=HELP&id=%FF", FORM, 200),
        ("/sms/africastalking/inbound", b"from=%2B254712345678&text=HELP&id=" + long_id, FORM, 200),
        ("/sms/africastalking/inbound", b"from=%2B254712345678&text=" + b"x" * 1100 + b"&id=in2", FORM, 200),
        ("/sms/africastalking/inbound", b"from=Safaricom&text=HELP&id=in3", FORM, 200),
        ("/sms/africastalking/inbound", b"from=%2B2547%FF&text=HELP&id=in4", FORM, 200),
        ("/sms/kannel/inbound?from=%2B254712345678&text=BAL%00x&id=k1", b"", FORM, 200),
        ("/sms/kannel/inbound?from=%2B254712345678&text=%81&charset=WINDOWS-1252&id=k2", b"", FORM, 200),
        ("/sms/kannel/inbound?from=%2B254712345678&text=%00B%00&charset=UTF-16BE&id=k3", b"", FORM, 200),
        ("/sms/kannel/inbound?from=%2B254712345678&text=HELP&charset=KOI8-R&id=k4", b"", FORM, 200),
    ]
    before = _bad_input_total(c)
    for path, body, headers, status in cases:
        r = c.post(path, body, headers=headers)
        assert r.status == status, (path, body[:60], r.status, r.body)
        assert c.get("/healthz").status == 200, path      # and it keeps serving
    assert _bad_input_total(c) - before == len(cases)
    assert env.psql("SELECT count(*) FROM sms_inbound", url) == [["0"]]
    assert env.psql("SELECT count(*) FROM ussd_session_events", url) == [["0"]]
    # a good one of each still goes through
    r = c.post("/ussd/africastalking/events", b"sessionId=e9&status=Success&hopsCount=3&durationInMillis=900",
               headers=FORM)
    assert r.status == 200 and r.body == "OK"
    assert env.psql("SELECT hops, duration_ms FROM ussd_session_events", url) == [["3", "900"]]
    log = c.stop()
    assert "bad input, answered 200 so it is not sent again: text is not UTF-8" in log, log[-3000:]
    assert "bad input, answered 400: hopsCount too long" in log


def test_input_declared_charsets_are_read(env):
    """Kannel may name the text's charset (charset=%C): UTF-16BE and
    WINDOWS-1252 texts are recoded to UTF-8 and served."""
    url, c = _daemon(env, "charset")
    texts = [
        ("%00H%00E%00L%00P%00+%00%E9", "UTF-16BE", "HELP \u00e9"),
        ("HELP+%80", "WINDOWS-1252", "HELP \u20ac"),
        ("HELP+caf%E9", "ISO-8859-1", "HELP caf\u00e9"),
        ("HELP+%E2%82%AC", "UTF-8", "HELP \u20ac"),
    ]
    for i, (raw, cs, want) in enumerate(texts):
        r = c.get("/sms/kannel/inbound?from=%%2B254712345678&text=%s&charset=%s&id=cs%d" % (raw, cs, i))
        assert r.status == 200, (cs, r.body)
    rows = env.psql("SELECT provider_message_id, text_masked FROM sms_inbound ORDER BY provider_message_id", url)
    assert rows == [["cs%d" % i, want] for i, (_, _, want) in enumerate(texts)], rows
    c.stop()


def test_input_database_down_is_still_503(env):
    """A good report or message when PostgreSQL is really down: 503, so
    the provider tries again later (and nothing is counted as bad input)."""
    url, c = _daemon(env, "down")
    before = _bad_input_total(c)
    env.services("pg-stop")
    try:
        r = c.post("/sms/africastalking/dlr", b"id=ATXid_1&status=Success", headers=FORM)
        assert r.status == 503, (r.status, r.body)
        r = c.post("/sms/africastalking/inbound", b"from=%2B254712345678&text=HELP&id=down1", headers=FORM)
        assert r.status == 503, (r.status, r.body)
        r = c.post("/ussd/africastalking/events", b"sessionId=d1&status=Success", headers=FORM)
        assert r.status == 503, (r.status, r.body)
    finally:
        env.services("pg-start")
    c.wait_health(200)
    assert _bad_input_total(c) == before
    c.stop()
