"""Money out, end to end: an official asks for a payout (payout_request, or
USSD Officials > Payouts), two other officials approve it (helper E's
approval_vote), chamad sends it by B2C to a loopback Daraja emulator
(scripts/daraja), the Result (or the Transaction Status query, helper C's
rail) decides, the ledger posts it once (Dr the member's side, Cr the
M-Pesa float) and every member hears who got how much, why, approved by
whom.  The emulator's book counts the payments that really left: "paid
once" is one book entry and one journal entry.  Each test has its own
database and ends with `chamad verify-ledger`."""
import json
import os
import signal
import subprocess
import time

from harness import ROOT, free_port, http
from mpesa_fixtures import DarajaEmulator
from notify_fixtures import outbox_texts
from test_mpesa import add_member, PIN
from ussd_fixtures import ussd

# tests/run.py -j N: alone, nothing else in flight.  It polls for the
# payout's passing state "unknown" (between the status query's "not found"
# and the second send, well under a second), which a CPU shared with other
# tests makes it miss.
SERIAL = {"test_payout_unanswered_not_found_is_sent_again_once"}

SECRET = "payout-secret-0123456789-abcdefghijklmnop"
AT = "now()"


def setup(env, name, extra=None):
    url = env.fresh_db("chamasmart_payout_" + name)
    env.migrate(url)
    daraja = DarajaEmulator(env, consumer_key="ck-" + name, consumer_secret="cs-" + name)
    port = free_port()
    e = {"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": daraja.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-" + name,
         "CHAMAD_MPESA_CONSUMER_SECRET": "cs-" + name, "CHAMAD_MPESA_PASSKEY": daraja.passkey,
         "CHAMAD_MPESA_SHORTCODE": daraja.shortcode, "CHAMAD_MPESA_CALLBACK_SECRET": SECRET,
         "CHAMAD_MPESA_ALLOW_IPS": "safaricom:127.0.0.1", "CHAMAD_MPESA_INITIATOR_NAME": "testapi",
         "CHAMAD_MPESA_SECURITY_CREDENTIAL": "test-security-credential", "CHAMAD_MPESA_QUERY_EVERY_S": "1",
         "CHAMAD_MPESA_STATUS_TIMEOUT_S": "5", "CHAMAD_MPESA_TIMEOUT_MS": "2000",
         "CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port, "CHAMAD_MPESA_PUBLIC_URL": "http://127.0.0.1:%d" % port}
    e.update(extra or {})
    return url, daraja, e


def seed(env, url, float_kes=5000, lang="en"):
    """A chama with its three officials and a member who saved float_kes by
    M-Pesa (so the float holds it).  Returns a dict of ids and phones."""
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Umoja', 'mixed', 50000, 'monthly') RETURNING id", url)
    s = {"chama": cid}
    for role, name in (("chairperson", "Amina Chair"), ("treasurer", "Baraka Treasurer"),
                       ("secretary", "Chege Secretary"), ("member", "Dora Member")):
        phone, uid, num = add_member(env, url, cid, role, name)
        s[role] = {"phone": phone, "id": uid, "number": num}
    env.psql("UPDATE users SET preferred_language = '%s' WHERE id = %s" % (lang, s["member"]["id"]), url)
    if float_kes:
        env.psql("SELECT post_contribution(%s, %s, %d, 'savings', 'mpesa', 'SEED%s', 'seed:%s', NULL, 'admin', "
                 "NULL, 'test', NULL)" % (cid, s["member"]["id"], float_kes * 100, cid, cid), url)
    return s


def request(env, url, s, kes, method="mpesa", memo="school fees", maker="treasurer"):
    """payout_request as a module calls it: (outcome, payout id, code)."""
    rows = env.psql("SELECT outcome, payout_id, approval_code FROM payout_request(%s, %s, 'refund', %d, '%s', "
                    "'member_savings', NULL, NULL, %s, '%s', 'ussd', now())"
                    % (s["chama"], s["member"]["id"], kes * 100, method, s[maker]["id"], memo), url)
    return rows[0]


def approve(env, url, s, code, who=("chairperson", "secretary")):
    for w in who:
        (o,), = env.psql("SELECT outcome FROM approval_vote(%s, '%s', 'approve', 'ussd', now())"
                         % (s[w]["id"], code), url)
        assert o.startswith("ok"), o


def payout(env, url, pid):
    (row,) = env.psql("SELECT status, attempt, originator_id, coalesce(mpesa_receipt, ''), "
                      "coalesce(journal_entry_id::text, ''), coalesce(resolution, '') FROM payouts WHERE id = %s"
                      % pid, url)
    return row


def wait(env, url, pid, want, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        st = payout(env, url, pid)[0]
        if st in want or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def entries(env, url, pid):
    return env.psql("SELECT count(*) FROM journal_entries WHERE ref_table = 'payouts' AND ref_id = %s" % pid, url)[0][0]


def balances(env, url, s):
    """(member savings, chama M-Pesa float) in cents."""
    sav = env.psql("SELECT coalesce(sum(balance_cents), 0) FROM ledger_accounts WHERE chama_id = %s AND "
                   "kind = 'member_savings' AND user_id = %s" % (s["chama"], s["member"]["id"]), url)[0][0]
    flt = env.psql("SELECT coalesce(sum(balance_cents), 0) FROM ledger_accounts WHERE chama_id = %s AND "
                   "kind = 'mpesa_float'" % s["chama"], url)[0][0]
    return int(sav), int(flt)


def verify(env, url):
    p = subprocess.run([env.bin, "verify-ledger"], capture_output=True, text=True,
                       env=dict(os.environ, CHAMAD_DATABASE_URL=url), cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr


def b2c_calls(daraja):
    return [json.loads(c["body"]) if isinstance(c.get("body"), str) else c.get("body") for c in daraja.calls("b2c")]


def wait_for(pred, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def test_payout_requested_approved_sent_paid_posted_once(env):
    url, daraja, e = setup(env, "ok")
    c = env.chamad(e)
    s = seed(env, url)
    o, pid, code = request(env, url, s, 1500)
    assert o == "ok_payout_requested" and code, (o, code)
    assert payout(env, url, pid)[0] == "requested"
    # the maker cannot approve their own request; the beneficiary is not asked
    (o,), = env.psql("SELECT outcome FROM approval_vote(%s, '%s', 'approve', 'ussd', now())"
                     % (s["treasurer"]["id"], code), url)
    assert o == "err_own_request", o
    approve(env, url, s, code, ("chairperson",))
    assert payout(env, url, pid)[0] == "requested"     # one official is not enough
    approve(env, url, s, code, ("secretary",))
    assert wait(env, url, pid, ("paid",)) == "paid"
    st, attempt, oc, receipt, entry, _ = payout(env, url, pid)
    assert attempt == "1" and oc == "payout:%s:1" % pid and receipt and entry
    # the B2C request: our id, the member's registered phone, whole shillings, our URLs
    (b,) = b2c_calls(daraja)
    assert b["OriginatorConversationID"] == oc and str(b["PartyB"]) == s["member"]["phone"][1:] and \
        int(b["Amount"]) == 1500 and b["ResultURL"].endswith("/mpesa/b2c/result/" + SECRET) and \
        b["QueueTimeOutURL"].endswith("/mpesa/b2c/timeout/" + SECRET) and b["InitiatorName"] == "testapi", b
    assert daraja.paid_b2c(oc) == 1 and entries(env, url, pid) == "1"
    # Dr the member's savings, Cr the float
    assert env.psql("SELECT a.kind, l.side, l.amount_cents FROM journal_lines l JOIN ledger_accounts a ON "
                    "a.id = l.account_id WHERE l.entry_id = %s ORDER BY l.id" % entry, url) == \
        [["member_savings", "debit", "150000"], ["mpesa_float", "credit", "150000"]]
    assert balances(env, url, s) == (350000, 350000)
    assert env.psql("SELECT action, direction, method, external_reference FROM financial_audit_logs "
                    "WHERE entity_type = 'payouts'", url) == [["payout_sent", "out", "mpesa", receipt]]
    # the member is told, and every member hears who, how much, why, approved by whom
    mine = outbox_texts(env, url, "template = 'sms_payout_paid'")
    assert mine == ["ChamaSmart: Umoja sent you KES 1,500 by M-Pesa. Ref %s." % receipt], mine
    told = outbox_texts(env, url, "template = 'sms_payout_announce'")
    want = "ChamaSmart Umoja: KES 1,500 paid to Dora Member (refund: school fees). Approved by Amina Chair, " \
           "Chege Secretary."
    assert told == [want] * 4, told
    # every move of the lifecycle is in the audit trail
    moves = [r[0] for r in env.psql("SELECT after ->> 'status' FROM audit_logs WHERE entity_type = 'payouts' "
                                    "AND (before ->> 'status' IS DISTINCT FROM after ->> 'status') ORDER BY id", url)]
    assert moves == ["requested", "approved", "sending", "sent", "paid"] or \
        moves == ["requested", "approved", "sending", "paid"], moves
    verify(env, url)
    c.stop()


def test_payout_refused_when_the_float_cannot_cover_it(env):
    url, daraja, e = setup(env, "float")
    c = env.chamad(e)
    s = seed(env, url, float_kes=1000)
    # the member saved 1,000: asking more than the float holds is refused at once
    assert request(env, url, s, 1200)[0] in ("err_float_short", "err_payout_balance")
    # cash that came in raises the member's savings, not the M-Pesa float
    env.psql("SELECT post_contribution(%s, %s, 200000, 'savings', 'cash', NULL, 'cash:1', NULL, 'admin', NULL, 'x', "
             "NULL)" % (s["chama"], s["member"]["id"]), url)
    assert request(env, url, s, 1200)[0] == "err_float_short"
    o, pid, code = request(env, url, s, 800)
    assert o == "ok_payout_requested"
    # a second payout that, with the first, would exceed the float
    assert request(env, url, s, 300, memo="second")[0] == "err_float_short"
    # the float drops (a reversal) before the first is sent: it fails at the claim
    env.psql("SELECT reverse_contribution((SELECT id FROM contributions WHERE external_reference = 'SEED%s'), "
             "'test', NULL, 'admin', NULL, 'x', NULL)" % s["chama"], url)
    approve(env, url, s, code)
    assert wait(env, url, pid, ("failed",)) == "failed"
    time.sleep(0.5)
    assert daraja.calls("b2c") == [] and entries(env, url, pid) == "0"
    told = outbox_texts(env, url, "template = 'sms_payout_failed_officials'")
    assert len(told) == 3 and all("the M-Pesa float cannot cover it" in t for t in told), told
    verify(env, url)
    c.stop()


def test_payout_sigkill_after_sending_is_paid_exactly_once(env):
    # (the claim's lease, or the B2C's result timeout if the ack was recorded,
    # hands it to the status query)
    url, daraja, e = setup(env, "kill", {"CHAMAD_MPESA_B2C_RESULT_TIMEOUT_S": "10"})
    # the Result never comes (the daemon is dead when it would): the status query decides
    daraja.result_lost("b2c")
    c = env.chamad(e)
    s = seed(env, url)
    o, pid, code = request(env, url, s, 700)
    approve(env, url, s, code)
    wait_for(lambda: len(daraja.calls("b2c")) == 1, what="the B2C request")
    os.kill(c.proc.pid, signal.SIGKILL)
    c.proc.wait()
    oc = payout(env, url, pid)[2]
    assert daraja.paid_b2c(oc) == 1
    c = env.chamad(e)
    assert wait(env, url, pid, ("paid",), timeout=60) == "paid"
    time.sleep(1)
    assert payout(env, url, pid)[2] == oc and len(daraja.calls("b2c")) == 1
    assert daraja.paid_b2c(oc) == 1 and entries(env, url, pid) == "1"
    assert balances(env, url, s) == (430000, 430000)
    verify(env, url)
    c.stop()


def test_payout_result_lost_is_resolved_by_the_status_query(env):
    url, daraja, e = setup(env, "lost", {"CHAMAD_MPESA_B2C_RESULT_TIMEOUT_S": "10"})
    daraja.result_lost("b2c")
    c = env.chamad(e)
    s = seed(env, url)
    o, pid, code = request(env, url, s, 600)
    approve(env, url, s, code)
    assert wait(env, url, pid, ("sent",)) == "sent"
    assert wait(env, url, pid, ("paid",), timeout=60) == "paid"
    st, attempt, oc, receipt, entry, resolution = payout(env, url, pid)
    assert resolution == "paid" and attempt == "1" and receipt
    assert daraja.paid_b2c(oc) == 1 and len(daraja.calls("b2c")) == 1 and entries(env, url, pid) == "1"
    assert len(daraja.calls("status")) >= 1
    verify(env, url)
    c.stop()


def test_payout_result_twice_posts_once(env):
    url, daraja, e = setup(env, "twice")
    daraja.result_twice("b2c")
    c = env.chamad(e)
    s = seed(env, url)
    o, pid, code = request(env, url, s, 500)
    approve(env, url, s, code)
    assert wait(env, url, pid, ("paid",)) == "paid"
    wait_for(lambda: len(daraja.results("b2c")) >= 2, what="the second Result")
    assert [r["http"] for r in daraja.results("b2c")] == [200, 200]
    assert entries(env, url, pid) == "1" and balances(env, url, s) == (450000, 450000)
    assert len(outbox_texts(env, url, "template = 'sms_payout_paid'")) == 1
    verify(env, url)
    c.stop()


def test_payout_unanswered_not_found_is_sent_again_once(env):
    url, daraja, e = setup(env, "hang")
    # our call hangs and is never carried out; the status query says no such payment
    daraja.hang("b2c", after=False, hang_s=5)
    c = env.chamad(e)
    s = seed(env, url)
    o, pid, code = request(env, url, s, 900)
    approve(env, url, s, code)
    assert wait(env, url, pid, ("unknown",)) == "unknown"
    assert wait(env, url, pid, ("paid",), timeout=60) == "paid"
    st, attempt, oc, receipt, entry, resolution = payout(env, url, pid)
    assert attempt == "2" and oc == "payout:%s:2" % pid and resolution == "not_found", (attempt, oc, resolution)
    assert [b["OriginatorConversationID"] for b in b2c_calls(daraja)] == ["payout:%s:1" % pid, oc]
    assert daraja.paid_b2c("payout:%s:1" % pid) == 0 and daraja.paid_b2c(oc) == 1
    assert entries(env, url, pid) == "1"
    verify(env, url)
    c.stop()


def test_payout_failures_post_nothing_and_tell_the_officials(env):
    url, daraja, e = setup(env, "fail")
    c = env.chamad(e)
    s = seed(env, url)
    for n, (how, code_) in enumerate((("insufficient", 1), ("initiator", 2001))):
        if how == "insufficient":
            daraja.result_code("b2c", 1)
        else:
            daraja.initiator_error("b2c", 2001)
        o, pid, code = request(env, url, s, 100 + n, memo="try %d" % n)
        approve(env, url, s, code)
        assert wait(env, url, pid, ("failed",)) == "failed", how
        assert entries(env, url, pid) == "0"
        assert env.psql("SELECT result_code FROM payouts WHERE id = %s" % pid, url) == [[str(code_)]]
    told = outbox_texts(env, url, "template = 'sms_payout_failed_officials'")
    assert len(told) == 6 and sum("(code 1)" in t for t in told) == 3 and sum("(code 2001)" in t for t in told) == 3
    assert len(outbox_texts(env, url, "template = 'sms_payout_failed'")) == 2
    assert balances(env, url, s) == (500000, 500000)
    verify(env, url)
    c.stop()


def test_payout_forged_result_moves_nothing(env):
    url, daraja, e = setup(env, "forged")
    c = env.chamad(e)
    s = seed(env, url)
    o, pid, code = request(env, url, s, 400)   # requested, never approved: nothing sent
    base = "http://%s/mpesa/b2c/result/%s" % (e["CHAMAD_HTTP_LISTEN"], SECRET)

    def result(oc, code_=0):
        return {"Result": {"ResultType": 0, "ResultCode": code_, "ResultDesc": "ok", "OriginatorConversationID": oc,
                           "ConversationID": "AG_forged", "TransactionID": "FORGED1",
                           "ResultParameters": {"ResultParameter": [
                               {"Key": "TransactionAmount", "Value": 400},
                               {"Key": "TransactionReceipt", "Value": "FORGED1"}]}}}
    for oc in ("payout:%s:1" % pid, "payout:%s:7" % pid, "payout:999999:1", "someone-else"):
        r = http("POST", base, json.dumps(result(oc)).encode(), {"Content-Type": "application/json"})
        assert r.status == 200 and r.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}, (oc, r.status)
    # the wrong secret is not a route; a body that is not a Result is refused
    r = http("POST", base.replace(SECRET, "guess"), json.dumps(result("payout:%s:1" % pid)).encode())
    assert r.status == 404, r.status
    r = http("POST", base, b"{}", {"Content-Type": "application/json"})
    assert r.status == 400, r.status
    assert payout(env, url, pid)[0] == "requested" and entries(env, url, pid) == "0"
    assert env.psql("SELECT count(*) FROM journal_entries WHERE kind = 'payout'", url) == [["0"]]
    metrics = http("GET", "http://%s/metrics" % e["CHAMAD_HTTP_LISTEN"]).body
    assert 'chamad_mpesa_b2c_total{event="ignored"} 4' in metrics, metrics
    verify(env, url)
    c.stop()


def test_cash_payout_needs_a_second_official(env):
    url, daraja, e = setup(env, "cash")
    s = seed(env, url, float_kes=0)
    env.psql("SELECT post_contribution(%s, %s, 300000, 'savings', 'cash', NULL, 'cash:s', NULL, 'admin', NULL, 'x', "
             "NULL)" % (s["chama"], s["member"]["id"]), url)
    o, pid, code = request(env, url, s, 1000, method="cash", memo="burial help")
    assert o == "ok_payout_requested"
    assert env.psql("SELECT kind FROM approvals WHERE id = (SELECT approval_id FROM payouts WHERE id = %s)" % pid,
                    url) == [["cash_payout"]]
    assert entries(env, url, pid) == "0"   # the treasurer alone moves nothing
    approve(env, url, s, code)
    st, _, _, _, entry, _ = payout(env, url, pid)
    assert st == "paid" and entry
    assert env.psql("SELECT a.kind, l.side, l.amount_cents FROM journal_lines l JOIN ledger_accounts a ON "
                    "a.id = l.account_id WHERE l.entry_id = %s ORDER BY l.id" % entry, url) == \
        [["member_savings", "debit", "100000"], ["cash_on_hand", "credit", "100000"]]
    assert outbox_texts(env, url, "template = 'sms_payout_paid_cash'") == \
        ["ChamaSmart: Umoja recorded KES 1,000 paid to you in cash."]
    verify(env, url)


def test_payout_announcement_in_english_and_swahili(env):
    url, daraja, e = setup(env, "lang")
    s = seed(env, url, lang="sw", float_kes=0)
    env.psql("SELECT post_contribution(%s, %s, 300000, 'savings', 'cash', NULL, 'cash:s', NULL, 'admin', NULL, 'x', "
             "NULL)" % (s["chama"], s["member"]["id"]), url)
    o, pid, code = request(env, url, s, 1000, method="cash", memo="ada ya shule")
    approve(env, url, s, code)
    sw = "ChamaSmart Umoja: KES 1,000 zimelipwa kwa Dora Member (kurudishiwa: ada ya shule). Imeidhinishwa na " \
         "Amina Chair, Chege Secretary."
    en = "ChamaSmart Umoja: KES 1,000 paid to Dora Member (refund: ada ya shule). Approved by Amina Chair, " \
         "Chege Secretary."
    texts = outbox_texts(env, url, "template = 'sms_payout_announce' AND user_id = %s" % s["member"]["id"])
    assert texts == [sw], texts
    texts = outbox_texts(env, url, "template = 'sms_payout_announce' AND user_id = %s" % s["treasurer"]["id"])
    assert texts == [en], texts


def test_payout_lifecycle_refuses_other_moves(env):
    url, daraja, e = setup(env, "moves")
    s = seed(env, url)
    o, pid, code = request(env, url, s, 100)
    for bad in ("sent", "paid", "sending", "unknown"):
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                            "UPDATE payouts SET status = '%s' WHERE id = %s" % (bad, pid)],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "not a move of its lifecycle" in r.stderr, (bad, r.stderr)
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                        "UPDATE payouts SET phone = '+254700000999' WHERE id = %s" % pid],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "fixed" in r.stderr, r.stderr


def test_payout_by_ussd_officials_menu(env):
    url, daraja, e = setup(env, "ussd")
    c = env.chamad(e)
    s = seed(env, url)
    t = s["treasurer"]["phone"]
    # Main menu > 10 Officials > 5 Payouts
    screen = ussd(c, t, [PIN, "10", "4", "4"])
    assert "Pay a member by M-Pesa" in screen and "Payouts and their state" in screen, screen
    # more than the member saved: refused, the screen again with why
    screen = ussd(c, t, [PIN, "10", "4", "4", "1", str(s["member"]["number"]), "9000", "School fees", PIN])
    assert screen.startswith("CON Member's balance too low."), screen
    # a wrong PIN asks nothing
    screen = ussd(c, t, [PIN, "10", "4", "4", "1", str(s["member"]["number"]), "2000", "School fees", "0000"])
    assert "PIN" in screen and env.psql("SELECT count(*) FROM payouts", url) == [["0"]], screen
    screen = ussd(c, t, [PIN, "10", "4", "4", "1", str(s["member"]["number"]), "2000", "School fees", PIN])
    (pid, st, phone, memo, cents), = env.psql("SELECT id, status, phone, memo, amount_cents FROM payouts", url)
    assert screen.startswith("END Payout %s of KES 2000 asked for" % pid), screen
    assert st == "requested" and phone == s["member"]["phone"] and memo == "School fees" and cents == "200000"
    # the officials' list shows it and its state
    screen = ussd(c, t, [PIN, "10", "4", "4", "3"])
    assert "#%s Dora Member KES 2,000 requested" % pid in screen, screen
    # a plain member is offered no officials' menu at all
    screen = ussd(c, s["member"]["phone"], [PIN])
    assert "Officials" not in screen, screen
    verify(env, url)
    c.stop()
