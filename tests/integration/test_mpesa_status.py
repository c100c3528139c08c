"""The Transaction Status rail (PROTOCOLS.md 4.8; schema/55_mpesa_status.sql,
src/mpesa/status.c) against the Daraja emulator: a question opened in SQL
(mpesa_status_open) is sent once, its result recorded and handed to its
purpose once, re-sent while no result comes and then given up (p_found
NULL), finished by the next daemon after a SIGKILL, and a forged result
changes nothing.

The purposes' own functions (c2b_on_status, payout_on_status) belong to
other parts: each test defines a recording one in its own fresh database
(never a fake in the product)."""
import json
import signal
import time
import urllib.request

from harness import free_port
from mpesa_fixtures import DarajaEmulator

SECRET = "st-s3cret-0123456789abcdefghijklmnop"

RECORDER = """
CREATE TABLE test_status_calls (n bigserial, purpose text, query_id bigint, ref_id bigint, found boolean,
                                result jsonb, at timestamptz);
DROP FUNCTION IF EXISTS {p}_on_status(bigint, bigint, boolean, jsonb, timestamptz);
CREATE FUNCTION {p}_on_status(p_query_id bigint, p_ref_id bigint, p_found boolean, p_result jsonb,
                              p_at timestamptz) RETURNS void LANGUAGE sql AS $$
    INSERT INTO test_status_calls (purpose, query_id, ref_id, found, result, at)
    VALUES ('{p}', p_query_id, p_ref_id, p_found, p_result, p_at)
$$;
"""


def setup(env, name, extra=None, purpose="c2b"):
    url = env.fresh_db("chamasmart_mpst_" + name)
    env.migrate(url)
    env.psql(RECORDER.format(p=purpose), url)
    mp = DarajaEmulator(env, consumer_key="ck-" + name, consumer_secret="cs-" + name, result_delay_ms=50)
    port = free_port()
    e = {"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": mp.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-" + name,
         "CHAMAD_MPESA_CONSUMER_SECRET": "cs-" + name, "CHAMAD_MPESA_PASSKEY": mp.passkey,
         "CHAMAD_MPESA_SHORTCODE": mp.shortcode, "CHAMAD_MPESA_INITIATOR_NAME": mp.initiator_name,
         "CHAMAD_MPESA_SECURITY_CREDENTIAL": mp.security_credential,
         "CHAMAD_MPESA_CALLBACK_SECRET": SECRET, "CHAMAD_MPESA_STATUS_TIMEOUT_S": "30",
         # only the NOTIFY (or the job's own due times) wakes the job in these tests
         "CHAMAD_MPESA_QUERY_EVERY_S": "3600",
         "CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port, "CHAMAD_MPESA_PUBLIC_URL": "http://127.0.0.1:%d" % port}
    e.update(extra or {})
    return url, mp, e


def open_query(env, url, ref, receipt=None, original=None, purpose="c2b"):
    (q,), = env.psql("SELECT mpesa_status_open('%s', %d, %s, %s, now())" % (
        purpose, ref, "'%s'" % receipt if receipt else "NULL", "'%s'" % original if original else "NULL"), url)
    return int(q)


def calls(env, url):
    return env.psql("SELECT purpose, query_id, ref_id, found, result FROM test_status_calls ORDER BY n", url)


def wait_for(fn, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def metric(c, name):
    with urllib.request.urlopen(c.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith('chamad_mpesa_status_total{event="%s"}' % name):
            return int(line.split()[-1])
    raise AssertionError("no metric %s" % name)


def test_status_sent_once_and_dispatched_once(env):
    url, mp, e = setup(env, "once")
    entry = mp.add_book_entry(500, type="c2b", bill_ref="ACC42", msisdn="254712345678", name="Jane")
    c = env.chamad(e)
    t0 = time.monotonic()
    # idempotent while open (both in one transaction: the job answers fast)
    (q, again), = env.psql("SELECT mpesa_status_open('c2b', 7, '%s', NULL, now()), "
                           "mpesa_status_open('c2b', 7, '%s', NULL, now())" % (entry["receipt"], entry["receipt"]), url)
    assert q == again
    q = int(q)
    got = wait_for(lambda: calls(env, url), timeout=5)
    # woken by the NOTIFY (the periodic pass is an hour away)
    assert got and time.monotonic() - t0 < 5, got
    (purpose, qid, ref, found, result), = got
    result = json.loads(result)
    assert (purpose, int(qid), int(ref), found) == ("c2b", q, 7, "t"), got
    assert result["amount_cents"] == 50000 and result["receipt"] == entry["receipt"] and \
        result["status"] == "Completed" and result["result_code"] == 0 and result["reason"] == "ACC42", result
    sent = mp.calls("status")
    assert len(sent) == 1, sent
    body = sent[0]["body"]
    (originator,), = env.psql("SELECT originator_id FROM mpesa_status_queries WHERE id = %d" % q, url)
    assert body["CommandID"] == "TransactionStatusQuery" and body["TransactionID"] == entry["receipt"] and \
        body["Initiator"] == mp.initiator_name and body["SecurityCredential"] == mp.security_credential and \
        body["IdentifierType"] == "4" and str(body["PartyA"]) == mp.shortcode and \
        body["OriginatorConversationID"] == originator and \
        body["ResultURL"] == e["CHAMAD_MPESA_PUBLIC_URL"] + "/mpesa/status/result/" + SECRET and \
        body["QueueTimeOutURL"] == e["CHAMAD_MPESA_PUBLIC_URL"] + "/mpesa/status/timeout/" + SECRET, body
    assert env.psql("SELECT status, attempts, found FROM mpesa_status_queries WHERE id = %d" % q, url) == \
        [["answered", "1", "t"]]

    # the result delivered twice: handed over once
    mp.result_twice("status")
    q2 = open_query(env, url, 8, receipt="NOTAREAL01")
    assert wait_for(lambda: len(mp.results("status")) >= 3, timeout=10)
    time.sleep(0.5)
    rows = [r for r in calls(env, url) if int(r[1]) == q2]
    assert len(rows) == 1 and rows[0][3] == "f" and json.loads(rows[0][4])["result_code"] == 2032, rows
    assert len(mp.calls("status")) == 2
    assert metric(c, "status_queries_sent") == 2 and metric(c, "status_results") == 3
    c.stop()


def test_status_by_originator_matched_by_conversation(env):
    """A payout asked about by its OriginatorConversationID: the Result
    carries the B2C's id, matched by the ConversationID of the send."""
    url, mp, e = setup(env, "orig", purpose="payout")
    mp.add_book_entry(1000, type="b2c", msisdn="254712345678", name="Jane", originator_id="payout:3:1")
    c = env.chamad(e)
    q = open_query(env, url, 3, original="payout:3:1", purpose="payout")
    got = wait_for(lambda: calls(env, url), timeout=10)
    assert len(got) == 1 and got[0][0] == "payout" and int(got[0][1]) == q and got[0][3] == "t", got
    body = mp.calls("status")[0]["body"]
    assert body.get("TransactionID", "") == "" and body["OriginatorConversationID"] == "payout:3:1", body
    assert json.loads(got[0][4])["amount_cents"] == 100000
    c.stop()


def test_status_resent_then_given_up(env):
    url, mp, e = setup(env, "lost", {"CHAMAD_MPESA_STATUS_TIMEOUT_S": "1", "CHAMAD_MPESA_STATUS_MAX_ATTEMPTS": "3"})
    entry = mp.add_book_entry(200, type="c2b", bill_ref="ACC1")
    mp.result_lost("status", count=3)
    c = env.chamad(e)
    t0 = time.monotonic()
    q = open_query(env, url, 11, receipt=entry["receipt"])
    # no result, three times (status_timeout_s apart): then unknown, once
    got = wait_for(lambda: calls(env, url), timeout=20)
    assert len(got) == 1 and int(got[0][1]) == q and got[0][3] == "" and got[0][4] == "", got
    assert time.monotonic() - t0 >= 3   # three sends, a timeout after each
    assert len(mp.calls("status")) == 3
    assert env.psql("SELECT status, attempts FROM mpesa_status_queries WHERE id = %d" % q, url) == \
        [["unknown", "3"]]
    time.sleep(1.5)
    assert len(mp.calls("status")) == 3 and len(calls(env, url)) == 1   # given up once, never re-sent

    # a timeout posted to the QueueTimeOutURL is no answer: asked again at once
    mp.result_timeout("status", count=1)
    q2 = open_query(env, url, 12, receipt=entry["receipt"])
    got = wait_for(lambda: [r for r in calls(env, url) if int(r[1]) == q2], timeout=10)
    assert len(got) == 1 and got[0][3] == "t", got
    assert len(mp.calls("status")) == 5 and len(mp.results("status", timeout=True)) == 1
    assert env.psql("SELECT status, attempts FROM mpesa_status_queries WHERE id = %d" % q2, url) == \
        [["answered", "2"]]
    c.stop()


def test_status_killed_after_sending(env):
    url, mp, e = setup(env, "kill", {"CHAMAD_MPESA_STATUS_TIMEOUT_S": "2"})
    entry = mp.add_book_entry(300, type="c2b", bill_ref="ACC9")
    mp.result_lost("status", count=1)
    a = env.chamad(e)
    q = open_query(env, url, 21, receipt=entry["receipt"])
    assert wait_for(lambda: env.psql("SELECT status FROM mpesa_status_queries WHERE id = %d" % q, url) ==
                    [["sent"]], timeout=10)
    a.signal(signal.SIGKILL)
    a.proc.wait()
    a.stop(expect_rc=None)
    assert len(mp.calls("status")) == 1 and calls(env, url) == []
    b = env.chamad(e)
    got = wait_for(lambda: calls(env, url), timeout=15)
    assert len(got) == 1 and int(got[0][1]) == q and got[0][3] == "t", got
    assert len(mp.calls("status")) == 2
    b.stop()


def test_status_forged_result_changes_nothing(env):
    url, mp, e = setup(env, "forged")
    mp.result_lost("status", count=5)
    c = env.chamad(e)
    q = open_query(env, url, 31, receipt="RKTQDM7W6S")
    assert wait_for(lambda: env.psql("SELECT status FROM mpesa_status_queries WHERE id = %d" % q, url) ==
                    [["sent"]], timeout=10)
    before = env.psql("SELECT status, attempts, conversation_ids, result FROM mpesa_status_queries", url)
    forged = {"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok",
                         "OriginatorConversationID": "st-%d-0000000000000000" % q,
                         "ConversationID": "AG_20250101_forged", "TransactionID": "RKTQDM7W6S",
                         "ResultParameters": {"ResultParameter": [
                             {"Key": "Amount", "Value": 100000}, {"Key": "TransactionStatus", "Value": "Completed"},
                             {"Key": "ReceiptNo", "Value": "RKTQDM7W6S"}]}}}
    for path in ("result", "timeout"):
        req = urllib.request.Request(c.url + "/mpesa/status/%s/%s" % (path, SECRET), json.dumps(forged).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and json.loads(r.read()) == {"ResultCode": 0, "ResultDesc": "Accepted"}
    # without the secret: not even read
    req = urllib.request.Request(c.url + "/mpesa/status/result", json.dumps(forged).encode(),
                                 {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("served without the secret")
    except urllib.error.HTTPError as err:
        assert err.code == 404, err.code
    assert env.psql("SELECT status, attempts, conversation_ids, result FROM mpesa_status_queries", url) == before
    assert calls(env, url) == [] and metric(c, "status_unmatched") == 2
    c.stop()
