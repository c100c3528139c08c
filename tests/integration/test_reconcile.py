"""Reconciliation: the books against M-Pesa's own word.  A daemon with
M-Pesa configured runs each reconcile run (asked by `chamad reconcile` or
by its daily job) against the Daraja emulator: the statement (Pull
Transactions) and the Account Balance, compared with the journal.  Each
test has its own database and emulator, and ends with verify-ledger.

The comparison itself (schema/95_reconcile.sql) is also driven directly
in SQL, on a statement written by hand."""
import os
import re
import subprocess
import time

from harness import ROOT, free_port
from mpesa_fixtures import DarajaEmulator
from notify_fixtures import outbox_texts
from test_mpesa import PIN, add_member, verify
from ussd_fixtures import ussd

TZ = "Africa/Nairobi"


def setup(env, name, extra=None):
    url = env.fresh_db("chamasmart_reconcile_" + name)
    env.migrate(url)
    mp = DarajaEmulator(env, consumer_key="ck-" + name, consumer_secret="cs-" + name)
    e = {"CHAMAD_DATABASE_URL": url, "CHAMAD_MPESA_BASE_URL": mp.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-" + name,
         "CHAMAD_MPESA_CONSUMER_SECRET": "cs-" + name, "CHAMAD_MPESA_PASSKEY": mp.passkey,
         "CHAMAD_MPESA_SHORTCODE": mp.shortcode, "CHAMAD_MPESA_INITIATOR_NAME": mp.initiator_name,
         "CHAMAD_MPESA_SECURITY_CREDENTIAL": mp.security_credential,
         "CHAMAD_MPESA_CALLBACK_SECRET": "rc-" + "s3cret" * 6, "CHAMAD_MPESA_RECONCILE_EVERY_S": "0",
         "CHAMAD_MPESA_RECONCILE_BALANCE_WAIT_S": "5"}
    e.update(extra or {})
    return url, mp, e


def start(env, e):
    port = free_port()
    return env.chamad(dict(e, CHAMAD_HTTP_LISTEN="127.0.0.1:%d" % port,
                           CHAMAD_MPESA_PUBLIC_URL="http://127.0.0.1:%d" % port))


def seed(env, url, name="Umoja"):
    """A chama with a treasurer (Swahili), a chairperson (English) and a
    member; returns (chama, {role: (phone, user, number)})."""
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % name, url)
    people = {r: add_member(env, url, cid, r, name="%s %s" % (name, r)) for r in ("treasurer", "chairperson", "member")}
    env.psql("UPDATE users SET preferred_language = 'sw' WHERE id = %s" % people["treasurer"][1], url)
    return cid, people


def reconcile(env, url, *args, extra=None):
    """`chamad reconcile ARGS`: (exit code, stdout)."""
    e = dict(os.environ, CHAMAD_DATABASE_URL=url, CHAMAD_USSD_TIMEZONE=TZ, **(extra or {}))
    p = subprocess.run([env.bin, "reconcile"] + list(args), capture_output=True, text=True, env=e, cwd=ROOT,
                       timeout=120)
    assert "runtime error" not in p.stderr and "Sanitizer" not in p.stderr, p.stderr
    return p.returncode, p.stdout + p.stderr


def today(env, url):
    (d,), = env.psql("SELECT (now() AT TIME ZONE '%s')::date" % TZ, url)
    return d


def paid(env, url, cid, uid, cents, receipt, key):
    """A member's M-Pesa contribution as the books record one (the receipt
    in its audit row), dated now."""
    env.psql("SELECT * FROM post_contribution(%s, %s, %s, 'savings', 'mpesa', %s, '%s', NULL, 'mpesa', NULL, "
             "'t', NULL, now())" % (cid, uid, cents, "'%s'" % receipt if receipt else "NULL", key), url)


def officials_texts(env, url, people, template):
    return {role: outbox_texts(env, url, "template = '%s' AND user_id = %s" % (template, people[role][1]))
            for role in ("treasurer", "chairperson", "member")}


def test_reconcile_lost_confirmation_is_offered_once_then_allocated(env):
    """A paybill payment reached M-Pesa but its confirmation never reached
    us: the run finds it in the statement, posts it to its chama's suspense
    (once: a second run finds nothing new) and tells the officials, in
    their language; the treasurer allocates it from USSD."""
    url, mp, e = setup(env, "lost")
    c = start(env, e)
    cid, people = seed(env, url)
    tphone, tid, _ = people["treasurer"]
    _, mid, mnum = people["member"]
    # a payment the books have, with its receipt
    known = mp.add_book_entry(500, type="c2b", bill_ref="%s-%s" % (cid, mnum))
    paid(env, url, cid, mid, 50000, known["receipt"], "known:1")
    base = c.url + "/payments/c2b/%s/" + e["CHAMAD_MPESA_CALLBACK_SECRET"]
    mp.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")
    # the payment whose confirmation was lost: in M-Pesa's book, not in ours
    lost = mp.c2b(amount=700, bill_ref="%s-%s" % (cid, mnum), lose_confirmation=True)
    assert lost["confirmation_lost"] and lost["confirmation"] is None, lost
    assert env.psql("SELECT count(*) FROM mpesa_c2b", url) == [["0"]]
    day = today(env, url)
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 1, out
    lines = out.splitlines()
    assert re.search(r"1 difference\(s\) \(1 new\); ledger float KES 1200, M-Pesa balance KES 1200", out), out
    assert [l for l in lines if l.startswith("receipt_missing_in_books chama=%s receipt=%s amount=KES 700 new offered"
                                             % (cid, lost["trans_id"]))], out
    assert env.psql("SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'suspense'" % cid,
                    url) == [["70000"]]
    texts = officials_texts(env, url, people, "sms_reconcile_offered")
    assert len(texts["treasurer"]) == 1 and "Pesa za kugawa" in texts["treasurer"][0] and \
        lost["trans_id"] in texts["treasurer"][0] and "KES 700" in texts["treasurer"][0], texts
    assert len(texts["chairperson"]) == 1 and "Money to allocate" in texts["chairperson"][0], texts
    assert texts["member"] == [], texts
    # the daemon logged it and counts it
    assert "difference: receipt_missing_in_books" in c.log()
    assert 'chamad_reconcile_differences_total{kind="receipt_missing_in_books"} 1' in c.get("/metrics").body
    # a second run: nothing new, nothing posted twice, nobody told twice
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 0 and "0 difference(s)" in out, out
    assert env.psql("SELECT count(*) FROM journal_entries WHERE kind = 'c2b_unmatched'", url) == [["1"]]
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'reconcile'", url) == [["2"]]
    # the confirmation turns up after all: nothing is credited twice
    body = ('{"TransactionType":"Pay Bill","TransID":"%s","TransTime":"20260101000000","TransAmount":"700",'
            '"BusinessShortCode":"%s","BillRefNumber":"%s-%s","MSISDN":"2547***","FirstName":"J"}'
            % (lost["trans_id"], mp.shortcode, cid, mnum))
    r = c.post("/payments/c2b/confirmation/" + e["CHAMAD_MPESA_CALLBACK_SECRET"], body.encode(),
               headers={"Content-Type": "application/json"})
    assert r.status in (200, 400), r.status
    assert env.psql("SELECT coalesce(sum(balance_cents), 0) FROM ledger_accounts WHERE kind = 'mpesa_float'",
                    url) == [["120000"]]
    # the treasurer allocates it to the member who paid, from USSD
    screen = ussd(c, tphone, [PIN, "10", "4", "2"])
    assert "Pesa za kugawa:" in screen and "KES 700 %s" % lost["trans_id"] in screen, screen
    screen = ussd(c, tphone, [PIN, "10", "4", "2", "1", str(mnum)])
    assert screen.startswith("END Imegawiwa mwanachama %s" % mnum), screen
    assert env.psql("SELECT savings_cents FROM member_balances WHERE user_id = %s" % mid, url) == [["120000"]]
    verify(env, url)
    c.stop()


def test_reconcile_credit_without_receipt_is_reported(env):
    """Credits in the books that M-Pesa's statement does not list (one with
    no receipt at all, one with a receipt M-Pesa never issued) are reported
    to the operator and to the chama's officials; nothing is posted."""
    url, mp, e = setup(env, "forged")
    c = start(env, e)
    cid, people = seed(env, url)
    _, mid, _ = people["member"]
    paid(env, url, cid, mid, 40000, None, "forged:1")
    paid(env, url, cid, mid, 25000, "QZZFORGED1", "forged:2")
    # the float agrees (as an attacker who also faked the balance would
    # want): only the receipts give it away
    mp.set_balance(utility=650)
    day = today(env, url)
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 1, out
    missing = [l for l in out.splitlines() if l.startswith("entry_missing_in_statement chama=%s" % cid)]
    assert len(missing) == 2 and any("receipt=QZZFORGED1 amount=KES 250 new open" in l for l in missing) and \
        any("receipt=- amount=KES 400 new open" in l for l in missing), out
    assert "float_mismatch" not in out and "2 difference(s)" in out, out
    texts = officials_texts(env, url, people, "sms_reconcile_unlisted")
    assert len(texts["treasurer"]) == 2 and all("taarifa ya M-Pesa haionyeshi" in t for t in texts["treasurer"]), texts
    assert len(texts["chairperson"]) == 2 and any("QZZFORGED1" in t and "KES 250" in t
                                                  for t in texts["chairperson"]), texts
    assert texts["member"] == []
    assert env.psql("SELECT count(*) FROM journal_entries WHERE kind = 'c2b_unmatched'", url) == [["0"]]
    verify(env, url)
    c.stop()


def test_reconcile_float_against_the_account_balance(env):
    """The books' M-Pesa float against the Account Balance: equal, then
    different (reported to the operator only: the paybill is every
    chama's), then a balance that never answers (the run still finishes:
    balance unknown)."""
    url, mp, e = setup(env, "float")
    c = start(env, e)
    cid, people = seed(env, url)
    _, mid, mnum = people["member"]
    entry = mp.add_book_entry(500, type="c2b", bill_ref="%s-%s" % (cid, mnum))
    paid(env, url, cid, mid, 50000, entry["receipt"], "float:1")
    day = today(env, url)
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 0 and "0 difference(s)" in out and "ledger float KES 500, M-Pesa balance KES 500" in out, out
    mp.set_balance(utility=650)
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 1 and "float_mismatch chama=- receipt=- amount=KES 150 new open" in out, out
    assert '"ledger_cents": 50000' in out and '"reported_cents": 65000' in out, out
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'reconcile'", url) == [["0"]]
    assert "difference: float_mismatch" in c.log()
    # the same difference again is not new
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 1 and "float_mismatch chama=- receipt=- amount=KES 150 again open" in out, out
    # the balance result is lost: after the wait, balance unknown
    mp.result_lost("balance")
    t0 = time.monotonic()
    rc, out = reconcile(env, url, "--from", day, "--to", day, "--wait")
    assert rc == 1 and "balance_unknown" in out and "M-Pesa balance unknown" in out, out
    assert time.monotonic() - t0 >= 4, "finished before the balance wait"
    assert "no Account Balance result within 5 s" in out, out
    assert 'chamad_reconcile_runs_total{status="done"} 4' in c.get("/metrics").body
    verify(env, url)
    c.stop()


def test_reconcile_cli_exit_codes(env):
    """0 none, 1 some (above), 2 failed: the statement could not be had; a
    bad day is refused; without --wait the run is only asked for."""
    url, mp, e = setup(env, "cli")
    rc, out = reconcile(env, url, "--from", "2026-13-01x")
    assert rc == 2 and "YYYY-MM-DD" in out, out
    rc, out = reconcile(env, url, "--to", "2026-01-01")
    assert rc == 2 and "--to needs --from" in out, out
    # no daemon yet: asked for (yesterday, by the domain clock), left requested
    rc, out = reconcile(env, url, extra={"CHAMAD_JOBS_NOW": "2027-03-02 09:00+03"})
    assert rc == 0 and "2027-03-01 00:00 .. 2027-03-02 00:00" in out, out
    assert env.psql("SELECT status, origin, period_from = '2027-03-01 00:00+03', period_to = '2027-03-02 00:00+03' "
                    "FROM reconcile_runs", url) == [["requested", "cli", "t", "t"]], out
    env.psql("DELETE FROM reconcile_runs", url)
    c = start(env, e)
    mp.sync_error("pull", count=1)
    rc, out = reconcile(env, url, "--from", today(env, url), "--wait")
    assert rc == 2 and "failed: the statement" in out, out
    rc, out = reconcile(env, url, "--from", today(env, url), "--wait")
    assert rc == 0, out
    rc, out = reconcile(env, url, "--from", today(env, url))
    assert rc == 0 and re.search(r"run \d+ requested", out), out
    c.stop()


def test_reconcile_job_once_per_period_across_daemons(env):
    """Two daemons with the same injected clock and a 2 s period: the job
    asks for the period's run from both, one run is made and done, and the
    emulator sees one statement and one balance query."""
    now = "2027-03-01 10:00:00+03"
    url, mp, e = setup(env, "job", {"CHAMAD_JOBS_NOW": now, "CHAMAD_MPESA_RECONCILE_EVERY_S": "2"})
    a, b = start(env, e), start(env, e)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if env.psql("SELECT count(*) FROM reconcile_runs WHERE status = 'done'", url) == [["1"]]:
            break
        time.sleep(0.2)
    time.sleep(5)  # both daemons ask again, twice at least
    rows = env.psql("SELECT origin, status, period_from = '2027-03-01 09:59:58+03', "
                    "period_to = '2027-03-01 10:00:00+03' FROM reconcile_runs", url)
    assert rows == [["job", "done", "t", "t"]], rows
    assert len(mp.calls("pull")) == 1 and len(mp.calls("balance")) == 1, (mp.calls("pull"), mp.calls("balance"))
    # one of them did it: the log says which
    assert ("run 1 compared" in a.log()) != ("run 1 compared" in b.log()), (a.log()[-2000:], b.log()[-2000:])
    a.stop()
    b.stop()


def script(env, url, sql):
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t", url], input=sql,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return [l.split("\t") for l in p.stdout.splitlines() if l]


def test_reconcile_compare_in_sql(env):
    """The comparison on a statement written by hand: a receipt in the
    books twice, one whose account names no chama, one a push still open
    may be, one lost; a stale claimant changes nothing; a repeated page
    adds nothing; the same difference next run is not new."""
    url = env.fresh_db("chamasmart_reconcile_sql")
    env.migrate(url)
    cid, people = seed(env, url, "Sql")
    _, mid, mnum = people["member"]
    at = "'2027-03-01 10:00+03'"
    # RDUP carried by two entries: the paybill's suspense and a contribution
    env.psql("SELECT post_suspense(%s, 900, 'RDUP', 'c2b:RDUP', 'mpesa', 'RDUP', 'memo', %s)" % (cid, at), url)
    env.psql("SELECT * FROM post_contribution(%s, %s, 900, 'savings', 'mpesa', 'RDUP', 'dup:2', NULL, 'mpesa', NULL, "
             "'t', NULL, %s)" % (cid, mid, at), url)
    # an STK push of 300 still open: a 300 receipt may be its payment
    env.psql("INSERT INTO mpesa_requests (chama_id, user_id, phone, amount_cents, account_ref, status, idempotency_key) "
             "SELECT %s, %s, phone, 30000, 'C%s', 'pushed', 'open:1' FROM users WHERE id = %s" % (cid, mid, cid, mid), url)
    lines = ('[{"transaction_id":"RDUP","trx_date":"2027-03-01T09:00:00+03:00","bill_ref":"%(c)s","amount_cents":900},'
             '{"transaction_id":"RNOCHAMA","trx_date":"2027-03-01 11:00:00","bill_ref":"HELLO","amount_cents":1000},'
             '{"transaction_id":"ROPEN","trx_date":"2027-03-01 11:30:00","bill_ref":"%(c)s-%(n)s","amount_cents":30000},'
             '{"transaction_id":"RLOST","trx_date":"2027-03-01 12:00:00","bill_ref":"%(c)s-%(n)s","amount_cents":70000},'
             '{"transaction_id":"RLATE","trx_date":"2027-03-02 00:30:00","bill_ref":"%(c)s","amount_cents":5000}]'
             % {"c": cid, "n": mnum})
    run = """
SELECT reconcile_request('test', '2027-03-01 00:00+03', '2027-03-02 00:00+03', '%(tz)s');
SELECT run_id, attempt FROM reconcile_claim('me', 60, 3600);
SELECT reconcile_statement_add(%(r)s, 'me', 1, 0, '%(lines)s');
SELECT reconcile_statement_add(%(r)s, 'me', 1, 0, '%(lines)s');
SELECT reconcile_statement_add(%(r)s, 'other', 1, 5, '%(lines)s');
SELECT reconcile_statement_done(%(r)s, 'me', 1, 'reconcile-%(r)s-1');
SELECT reconcile_balance_acked(%(r)s, 'me', 1, true, 'AG_1', 'CONV%(r)s', NULL);
SELECT run_id, differences FROM reconcile_balance_result('xx', 'CONV%(r)s', 0, 'ok', %(bal)s, 'raw', false,
                                                        'Utility Account', '2027-03-02 01:00+03');
SELECT kind || ' ' || coalesce(receipt, '-') || ' ' || is_new || ' ' || handled || ' ' ||
       coalesce(details ->> 'why_not_offered', '') FROM reconcile_items WHERE run_id = %(r)s ORDER BY kind, receipt;
"""
    out = script(env, url, run % {"tz": TZ, "r": 1, "lines": lines, "bal": 1800 + 70000})
    assert out[:6] == [["1"], ["1", "1"], ["5"], ["0"], ["-1"], ["asked"]], out
    assert out[7] == ["1", "4"], out
    assert [r[0] for r in out[8:]] == [
        "receipt_duplicated RDUP true open ",
        "receipt_missing_in_books RLOST true offered ",
        "receipt_missing_in_books RNOCHAMA true open its account number names no chama",
        "receipt_missing_in_books ROPEN true open an STK push of that amount is still open"], out
    # RLATE is past the period: not this run's; the float matched after the offer
    assert env.psql("SELECT ledger_float_cents, balance_state FROM reconcile_runs WHERE id = 1", url) == \
        [["71800", "reported"]]
    # a result for no run of ours changes nothing
    assert env.psql("SELECT count(*) FROM reconcile_balance_result('nobody', 'nothing', 0, 'ok', 5, 'raw', false, "
                    "'Utility Account', now())", url) == [["0"]]
    # the next run: the same differences are not new, RLOST is in the books
    out = script(env, url, run % {"tz": TZ, "r": 2, "lines": lines, "bal": 1800 + 70000})
    assert [r[0] for r in out[8:]] == [
        "receipt_duplicated RDUP false open ",
        "receipt_missing_in_books RNOCHAMA false open its account number names no chama",
        "receipt_missing_in_books ROPEN false open an STK push of that amount is still open"], out
    assert env.psql("SELECT count(*) FROM journal_entries WHERE idempotency_key = 'c2b:RLOST'", url) == [["1"]]
    # each official heard of RLOST and RDUP once, whatever the runs
    assert env.psql("SELECT template, count(*) FROM notifications WHERE kind = 'reconcile' GROUP BY 1 ORDER BY 1",
                    url) == [["sms_reconcile_duplicated", "2"], ["sms_reconcile_offered", "2"]]
    # a run whose claimant stopped: claimed again after its lease, started over
    env.psql("SELECT reconcile_request('test', '2027-03-01 00:00+03', '2027-03-02 00:00+03', '%s')" % TZ, url)
    assert env.psql("SELECT run_id, attempt FROM reconcile_claim('gone', 60, 3600)", url) == [["3", "1"]]
    env.psql("SELECT reconcile_statement_add(3, 'gone', 1, 0, '%s')" % lines, url)
    assert env.psql("SELECT run_id FROM reconcile_claim('next', 60, 3600)", url) == []
    env.psql("UPDATE reconcile_runs SET lease_until = now() - interval '1 s' WHERE id = 3", url)
    assert env.psql("SELECT run_id, attempt FROM reconcile_claim('next', 60, 3600)", url) == [["3", "2"]]
    assert env.psql("SELECT count(*) FROM reconcile_statement_lines WHERE run_id = 3", url) == [["0"]]
    assert env.psql("SELECT reconcile_finish(3, 'gone', 1, 5, now())", url) == []
    # the job: one run per period, whoever asks
    j = "SELECT reconcile_job_request('2027-03-02 09:00+03', '%s', 86400, 'd%%d')" % TZ
    assert env.psql(j % 1, url) != [] and env.psql(j % 2, url) == []
    assert env.psql("SELECT period_from = '2027-03-01 00:00+03', period_to = '2027-03-02 00:00+03' "
                    "FROM reconcile_runs WHERE origin = 'job'", url) == [["t", "t"]]
    verify(env, url)
