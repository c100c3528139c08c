"""Arrears and reminders over a simulated month: the clock is injected with
[jobs] now, the reminder job runs every second, and each run queues its
messages once per member and period, however often it runs and however
many daemons run it."""
import random
import subprocess
import time
import urllib.parse

from harness import ROOT
from notify_fixtures import outbox_texts

PIN = "4827"


def setup(env):
    url = env.fresh_db("chamasmart_arrears")
    env.migrate(url)
    h = subprocess.run([env.bin, "hash-pin"], input=PIN + "\n", capture_output=True, text=True, cwd=ROOT).stdout.strip()
    phone = "+2547%08d" % random.randrange(10 ** 8)
    (uid,), = env.psql("INSERT INTO users (phone, full_name, pin_hash) VALUES ('%s', 'Akinyi', '%s') RETURNING id"
                       % (phone, h), url)
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Mwezi Group', 'asca', 50000, 'monthly') RETURNING id", url)
    env.psql("INSERT INTO memberships (user_id, chama_id, joined_at) VALUES (%s, %s, '2026-11-01 09:00+03')"
             % (uid, cid), url)
    return url, phone, uid, cid


def run_jobs(env, url, now, daemons=1):
    cs = [env.chamad({"CHAMAD_DATABASE_URL": url, "CHAMAD_JOBS_NOW": now, "CHAMAD_JOBS_EVERY_S": "1"})
          for _ in range(daemons)]
    time.sleep(2.5)  # a few runs each
    return cs


def messages(env, url):
    kinds = [r[0] for r in env.psql("SELECT kind FROM notifications ORDER BY id", url)]
    return list(zip(kinds, [t.replace("\n", " ") for t in outbox_texts(env, url, "true")]))


def balance_screen(c, phone):
    sid = "ATUid_%032x" % random.getrandbits(128)
    done, body = [], ""
    for inp in (None, PIN, "1"):
        if inp is not None:
            done.append(inp)
        r = c.post("/ussd/africastalking", urllib.parse.urlencode(
            {"sessionId": sid, "serviceCode": "*384#", "phoneNumber": phone, "text": "*".join(done)}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = r.body
    return body


def test_arrears_and_reminders_over_a_month(env):
    url, phone, uid, cid = setup(env)
    # 30 Nov: the 1 Nov contribution is missing, 1 Dec is tomorrow
    cs = run_jobs(env, url, "2026-11-30 10:00+03", daemons=2)
    got = messages(env, url)
    assert sorted(k for k, _ in got) == ["arrears", "due_reminder"], got
    assert ("due_reminder", "ChamaSmart: your Mwezi Group contribution of KES 500 is due on 01 Dec. Dial the "
                            "ChamaSmart code to pay by M-Pesa.") in got
    assert ("arrears", "ChamaSmart: you are behind with Mwezi Group by KES 500. Please pay before 01 Dec.") in got
    assert "Arrears: KES 500" in balance_screen(cs[0], phone)
    for c in cs:
        c.stop()
    # she pays for November
    env.psql("SELECT post_contribution(%s, %s, 50000, 'savings', 'mpesa', 'QNOV1', 'test:nov', NULL, 'mpesa', NULL, "
             "'t', NULL, '2026-11-30 12:00+03')" % (cid, uid), url)
    # 2 Dec: December is due and unpaid: one new notice for the new period
    cs = run_jobs(env, url, "2026-12-02 10:00+03")
    got = messages(env, url)
    assert [k for k, _ in got] == ["due_reminder", "arrears", "arrears"] or \
        sorted(k for k, _ in got) == ["arrears", "arrears", "due_reminder"], got
    assert "Arrears: KES 500" in balance_screen(cs[0], phone)
    cs[0].stop()
    # she pays December; 31 Dec: reminded of 1 Jan, nothing owed
    env.psql("SELECT post_contribution(%s, %s, 50000, 'savings', 'mpesa', 'QDEC1', 'test:dec', NULL, 'mpesa', NULL, "
             "'t', NULL, '2026-12-05 12:00+03')" % (cid, uid), url)
    cs = run_jobs(env, url, "2026-12-31 10:00+03")
    got = messages(env, url)
    assert len(got) == 4 and got[-1][0] == "due_reminder" and "due on 01 Jan" in got[-1][1], got
    assert "Arrears: KES 0" in balance_screen(cs[0], phone)
    cs[0].stop()
    # every message once: reruns and the second daemon queued nothing more
    assert env.psql("SELECT count(*), count(DISTINCT idempotency_key) FROM notifications", url) == [["4", "4"]]
