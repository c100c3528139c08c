"""Messages by key (issue 9, point 4): every outbox row is a template key and
its variables, rendered once, by the sender, when it sends, in the
recipient's language at that moment.  End to end against the real
PostgreSQL and Redis, the Africa's Talking SMS emulator (what members
receive) and the Daraja emulator (STK pushes, paybill payments).

The expected texts are the menus' own templates (menus/40_sms.json) filled
here with the values the event had: chama name, amount, receipt."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

from approval_fixtures import approve, open_code
from harness import MPESA_SECRET, ROOT, free_port
from mpesa_fixtures import DarajaEmulator
from notify_fixtures import outbox_rows
from sms_fixtures import ATEmulator
from ussd_fixtures import ussd

PIN = "4827"
CHAMA = "Tumaini Wanawake"


def templates():
    with open(os.path.join(ROOT, "menus", "40_sms.json")) as f:
        return json.load(f)["sms"]


def expected(key, lang, **values):
    """The template's text in lang with every {name} replaced: what the member must read."""
    t = templates()[key][lang]
    for name, value in values.items():
        t = t.replace("{%s}" % name, value)
    assert "{" not in t and "}" not in t, (key, lang, t)
    return t


def setup(env, name, mpesa=True):
    """A fresh database, the SMS emulator and (mpesa) the Daraja one; the
    environment of a chamad that sends SMS and takes M-Pesa."""
    url = env.fresh_db("chamasmart_notify_" + name)
    env.migrate(url)
    at = ATEmulator(env, api_key="k-" + name)
    port = free_port()
    e = {"CHAMAD_DATABASE_URL": url, "CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port,
         "CHAMAD_SMS_PROVIDER": "africastalking", "CHAMAD_SMS_AT_BASE_URL": at.url, "CHAMAD_SMS_AT_API_KEY": "k-" + name,
         "CHAMAD_SMS_AT_USERNAME": "sandbox", "CHAMAD_SMS_RATE_PER_SEC": "200", "CHAMAD_SMS_RETRY_MIN_S": "1",
         "CHAMAD_SMS_RETRY_MAX_S": "2", "CHAMAD_SMS_TIMEOUT_MS": "2000"}
    daraja = None
    if mpesa:
        daraja = DarajaEmulator(env, consumer_key="ck-" + name, consumer_secret="cs-" + name)
        e.update({"CHAMAD_MPESA_BASE_URL": daraja.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-" + name,
                  "CHAMAD_MPESA_CONSUMER_SECRET": "cs-" + name, "CHAMAD_MPESA_PASSKEY": daraja.passkey,
                  "CHAMAD_MPESA_SHORTCODE": daraja.shortcode, "CHAMAD_MPESA_PUSH_DELAY_MS": "100",
                  "CHAMAD_MPESA_QUERY_AFTER_S": "1", "CHAMAD_MPESA_QUERY_EVERY_S": "1",
                  "CHAMAD_MPESA_CALLBACK_SECRET": MPESA_SECRET, "CHAMAD_MPESA_PUBLIC_URL": "http://127.0.0.1:%d" % port,
                  # paybill payments are credited once the Transaction Status query verifies them (issue 10)
                  "CHAMAD_MPESA_INITIATOR_NAME": daraja.initiator_name,
                  "CHAMAD_MPESA_SECURITY_CREDENTIAL": daraja.security_credential})
    return url, at, daraja, e


_hash = {}


def add_member(env, url, cid, name, lang, role="member"):
    if "h" not in _hash:
        _hash["h"] = subprocess.run([env.bin, "hash-pin"], input=PIN + "\n", capture_output=True, text=True,
                                    cwd=ROOT).stdout.strip()
    phone = "+2547%08d" % random.randrange(10 ** 8)
    (uid,), = env.psql("INSERT INTO users (phone, full_name, preferred_language, pin_hash) VALUES ('%s', '%s', '%s', "
                       "'%s') RETURNING id" % (phone, name, lang, _hash["h"]), url)
    (num,), = env.psql("INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, '%s') RETURNING member_number"
                       % (uid, cid, role), url)
    return phone, uid, num



def wait_for(what, fn, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            assert v, "timed out waiting for " + what
            return v
        time.sleep(0.05)


def received(at, phone):
    """What the SMS emulator accepted for phone, oldest first."""
    return [m["message"] for m in at.messages() if m["to"].lstrip("+") == phone.lstrip("+")]


def verified(env, url, trans):
    """A paybill payment is posted once its Transaction Status result agrees
    (issue 10): wait for that."""
    wait_for("paybill %s verified" % trans, lambda: env.psql(
        "SELECT 1 FROM mpesa_c2b WHERE trans_id = '%s' AND status = 'verified'" % trans, url))


def money_flows(env, url, c, daraja, cid, tphone, phone, uid, num, officials):
    """The five money messages of one member, caused the way members cause
    them; returns the values each must carry, as (template, values)."""
    want = []
    # cash handed to the treasurer, then reversed by them with a reason
    assert ussd(c, tphone, [PIN, "10", "4", "1", str(num), "1500", "1"]).startswith("END Recorded KES 1500")
    want.append(("sms_cash_receipt", dict(chama=CHAMA, amount="1,500")))
    # reversed once two other officials approve it (dual control)
    assert ussd(c, tphone, [PIN, "10", "4", "3", "1", "counted twice", "1"]).startswith("END Request ")
    (k,), = env.psql("SELECT id FROM contributions WHERE user_id = %s AND method = 'cash'" % uid, url)
    code = open_code(env, url, "payment_reverse", k)
    for official in officials:
        approve(c, official, code)
    assert env.psql("SELECT status FROM contributions WHERE id = %s" % k, url) == [["reversed"]]
    want.append(("sms_reversed", dict(chama=CHAMA, amount="1,500", reason="counted twice")))
    # a paybill payment with the member's account number
    trans = daraja.c2b(amount=700, bill_ref="%s-%s" % (cid, num))["trans_id"]
    verified(env, url, trans)
    want.append(("sms_mpesa_receipt", dict(chama=CHAMA, amount="700", receipt=trans)))
    # a paybill payment to a wrong member number: suspense, then allocated to them
    lost = daraja.c2b(amount=1200, bill_ref="%s-999" % cid)["trans_id"]
    verified(env, url, lost)
    assert env.psql("SELECT outcome FROM mpesa_c2b WHERE trans_id = '%s'" % lost, url) == [["suspense"]]
    assert ussd(c, tphone, [PIN, "10", "4", "2", "1", str(num)]).startswith("END Allocated to member %s" % num)
    want.append(("sms_allocated", dict(chama=CHAMA, amount="1,200", receipt=lost)))
    # a contribution on USSD: the STK push, its callback, the receipt
    assert ussd(c, phone, [PIN, "2", "500", "1"]).startswith("END ")
    receipt = wait_for("the STK push to settle", lambda: env.psql(
        "SELECT mpesa_receipt FROM mpesa_requests WHERE user_id = %s AND status = 'confirmed'" % uid, url))[0][0]
    want.append(("sms_mpesa_receipt", dict(chama=CHAMA, amount="500", receipt=receipt)))
    return want


def test_notify_money_messages_in_each_members_language(env):
    url, at, daraja, e = setup(env, "money")
    c = env.chamad(e)
    base = c.url + "/payments/c2b/%s/" + MPESA_SECRET
    daraja.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % CHAMA, url)
    tphone, tid, _ = add_member(env, url, cid, "Mweka Hazina", "en", "treasurer")
    # the two officials who approve the treasurer's reversal
    officials = [add_member(env, url, cid, "Mwenyekiti", "sw", "chairperson")[0],
                 add_member(env, url, cid, "Katibu", "en", "secretary")[0]]
    for lang, name in (("sw", "Wanjiku"), ("en", "Akinyi")):
        phone, uid, num = add_member(env, url, cid, name, lang)
        want = money_flows(env, url, c, daraja, cid, tphone, phone, uid, num, officials)
        texts = [expected(key, lang, **values) for key, values in want]
        other = "en" if lang == "sw" else "sw"
        got = wait_for("%s's five messages" % name, lambda: len(received(at, phone)) >= 5 and received(at, phone))
        time.sleep(0.3)
        got = received(at, phone)
        # exactly these five, each filled, in the member's language
        assert sorted(got) == sorted(texts), (lang, got, texts)
        for key, values in want:
            assert expected(key, lang, **values) != expected(key, other, **values)
        for t in got:
            assert CHAMA in t and not re.search(r"[{}\[\]]", t) and "  " not in t and " ." not in t, t
        # the outbox row records what went out, in the language it went out in
        rows = env.psql("SELECT template, language, status, body FROM notifications WHERE user_id = %s ORDER BY id"
                        % uid, url)
        assert [r[0] for r in rows] == [k for k, _ in want], rows
        assert all(r[1] == lang and r[2] == "sent" for r in rows), rows
        assert [r[3] for r in rows] == texts
    # the treasurer, who only acted, got none of the money messages: only
    # the officials' decisions on the reversals they asked for
    assert {r[0] for r in env.psql("SELECT DISTINCT template FROM notifications WHERE user_id = %s" % tid, url)} \
        <= {"sms_approval_voted", "sms_approval_approved"}
    c.stop()


def test_notify_language_is_read_when_the_message_is_sent(env):
    """A member who switches to Swahili after a message was queued reads it
    in Swahili: the language is the recipient's when it is sent."""
    url, at, _, e = setup(env, "lang", mpesa=False)
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % CHAMA, url)
    phone, uid, num = add_member(env, url, cid, "Baraka", "en")
    # a cash receipt, queued while no daemon runs
    env.psql("SELECT post_contribution(%s, %s, 250000, 'savings', 'cash', NULL, 'test:lang', NULL, 'ussd', NULL, "
             "'t', 'sms_cash_receipt')" % (cid, uid), url)
    assert env.psql("SELECT language, body IS NULL, template FROM notifications", url) == \
        [["en", "t", "sms_cash_receipt"]]
    env.psql("UPDATE users SET preferred_language = 'sw' WHERE id = %s" % uid, url)
    c = env.chamad(e)
    want = expected("sms_cash_receipt", "sw", chama=CHAMA, amount="2,500")
    assert wait_for("the receipt", lambda: received(at, phone)) == [want]
    wait_for("the outcome recorded", lambda: env.psql("SELECT 1 FROM notifications WHERE status = 'sent'", url))
    assert env.psql("SELECT language, body FROM notifications", url) == [["sw", want]]
    c.stop()


def test_notify_a_row_with_a_hole_is_failed_not_sent(env):
    url, at, _, e = setup(env, "hole", mpesa=False)
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % CHAMA, url)
    phone, uid, _ = add_member(env, url, cid, "Chebet", "sw")
    # no receipt among its variables; a template nobody defined; then a good one
    (hole,), = env.psql("SELECT notify(%s, 'receipt', 'sms_mpesa_receipt', jsonb_build_object('chama', '%s', "
                        "'amount', '500'), 5, 'test:hole')" % (uid, CHAMA), url)
    (empty,), = env.psql("SELECT notify(%s, 'receipt', 'sms_mpesa_receipt', jsonb_build_object('chama', '%s', "
                         "'amount', '500', 'receipt', ''), 5, 'test:empty')" % (uid, CHAMA), url)
    (unknown,), = env.psql("SELECT notify(%s, 'receipt', 'sms_no_such_template', '{}', 5, 'test:unknown')" % uid,
                           url)
    (good,), = env.psql("SELECT notify(%s, 'receipt', 'sms_mpesa_receipt', jsonb_build_object('chama', '%s', "
                        "'amount', '500', 'receipt', 'QGOOD1'), 5, 'test:good')" % (uid, CHAMA), url)
    # what the rows say before any sender looks at them
    rows = {r["id"]: r for r in outbox_rows(env, url, "true")}
    assert rows[int(hole)]["error"] == "template sms_mpesa_receipt: variable {receipt} is missing"
    assert rows[int(unknown)]["error"] == 'unknown SMS template "sms_no_such_template"'
    c = env.chamad(e)
    want = expected("sms_mpesa_receipt", "sw", chama=CHAMA, amount="500", receipt="QGOOD1")
    assert wait_for("the good one", lambda: received(at, phone)) == [want]
    wait_for("every outcome recorded", lambda: env.psql(
        "SELECT 1 FROM notifications WHERE status IN ('queued', 'sending') HAVING count(*) = 0", url))
    got = {r[0]: r[1:] for r in env.psql("SELECT id, status, body IS NULL, last_error, attempts FROM notifications",
                                         url)}
    assert got[hole] == ["failed", "t", "template sms_mpesa_receipt: variable {receipt} is missing", "1"], got
    assert got[empty] == ["failed", "t", "template sms_mpesa_receipt: variable {receipt} is missing", "1"], got
    assert got[unknown] == ["failed", "t", 'unknown SMS template "sms_no_such_template"', "1"], got
    assert got[good][:2] == ["sent", "f"]
    time.sleep(0.3)
    assert received(at, phone) == [want]
    m = c.get("/metrics").body
    assert 'chamad_sms_sends_total{outcome="unrendered"} 3' in m and 'chamad_sms_sends_total{outcome="sent"} 1' in m
    log = c.stop()
    assert "outbox row %s (test:hole) not sent: template sms_mpesa_receipt: variable {receipt} is missing" % hole \
        in log, log[-2000:]


def test_notify_menus_refuse_a_template_with_a_missing_variable(env):
    """--check-config and a SIGHUP reload use the same loader: a template
    whose text uses a variable it does not declare, or that its writer does
    not supply, or that lacks a language, is refused with its key named."""
    def check(d):
        p = subprocess.run([env.bin, "--check-config"], capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, CHAMAD_USSD_MENUS_DIR=d))
        return p.returncode, p.stdout + p.stderr

    def edited(d, key, change):
        path = os.path.join(d, "40_sms.json")
        with open(os.path.join(ROOT, "menus", "40_sms.json")) as f:
            doc = json.load(f)
        change(doc["sms"][key])
        with open(path, "w") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)

    with tempfile.TemporaryDirectory() as d:
        for f in os.listdir(os.path.join(ROOT, "menus")):
            if f.endswith(".json"):
                shutil.copy(os.path.join(ROOT, "menus", f), d)
        assert check(d)[0] == 0
        # a typo in one language
        edited(d, "sms_mpesa_receipt", lambda t: t.update(sw=t["sw"].replace("{receipt}", "{reciept}")))
        rc, out = check(d)
        assert rc == 1 and "40_sms.json: sms_mpesa_receipt: sw text uses {reciept}, which \"vars\" does not declare" \
            in out, out
        # declared, but nothing that writes the receipt supplies it
        edited(d, "sms_mpesa_receipt", lambda t: (t["vars"].append("date"), t.update(en=t["en"] + " {date}")))
        rc, out = check(d)
        assert rc == 1 and "sms_mpesa_receipt: declares {date}, which the code that writes it does not supply" in out, \
            out
        # a language missing
        edited(d, "sms_reversed", lambda t: t.pop("sw"))
        rc, out = check(d)
        assert rc == 1 and "40_sms.json: sms_reversed: text: missing translation (sw)" in out, out
        # a template the code writes, gone
        with open(os.path.join(ROOT, "menus", "40_sms.json")) as f:
            doc = json.load(f)
        del doc["sms"]["sms_allocated"]
        with open(os.path.join(d, "40_sms.json"), "w") as f:
            json.dump(doc, f)
        rc, out = check(d)
        assert rc == 1 and "sms_allocated: SMS template is missing (the code writes it)" in out, out

        # SIGHUP: the broken set is refused and the running one kept, so
        # messages still go out whole
        shutil.copy(os.path.join(ROOT, "menus", "40_sms.json"), d)
        url, at, _, e = setup(env, "reload", mpesa=False)
        e["CHAMAD_USSD_MENUS_DIR"] = d
        (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                           "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % CHAMA, url)
        phone, uid, _ = add_member(env, url, cid, "Njeri", "en")
        c = env.chamad(e)
        edited(d, "sms_cash_receipt", lambda t: t.update(en=t["en"].replace("{amount}", "{amout}")))
        c.signal(signal.SIGHUP)
        wait_for("the reload refused", lambda: "menus refused" in c.log())
        assert "sms_cash_receipt: en text uses {amout}" in c.log()
        env.psql("SELECT post_contribution(%s, %s, 30000, 'savings', 'cash', NULL, 'test:reload', NULL, 'ussd', NULL, "
                 "'t', 'sms_cash_receipt')" % (cid, uid), url)
        assert wait_for("the receipt", lambda: received(at, phone)) == \
            [expected("sms_cash_receipt", "en", chama=CHAMA, amount="300")]
        c.stop()


def test_notify_old_senders_skip_rows_they_cannot_render(env):
    """During a rolling upgrade a sender older than 018 reads body only: its
    claim (no chamad.renders) skips the rows that hold a template, so it
    never sends them empty, and still sends rows that carry their text; an
    older daemon's finished text passed where a template key now goes is
    stored as the body and sent as is."""
    url = env.fresh_db("chamasmart_notify_old")
    env.migrate(url)
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % CHAMA, url)
    phone, uid, _ = add_member(env, url, cid, "Old", "en")
    env.psql("SELECT notify(%s, 'receipt', 'sms_cash_receipt', jsonb_build_object('chama', 'X', 'amount', '1'), 5, "
             "'test:new')" % uid, url)
    # what a 016-era daemon passed: the text itself
    env.psql("SELECT post_contribution(%s, %s, 100, 'savings', 'cash', NULL, 'test:old', NULL, 'ussd', NULL, 't', "
             "'ChamaSmart: old daemon text.')" % (cid, uid), url)
    assert env.psql("SELECT template IS NULL, body FROM notifications ORDER BY id", url) == \
        [["f", ""], ["t", "ChamaSmart: old daemon text."]]
    old_claim = ("UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1, claimed_by = 'old', "
                 "lease_until = now() + interval '30 seconds' FROM (SELECT id FROM notifications WHERE channel = 'sms' "
                 "AND status IN ('queued', 'retry') ORDER BY id FOR UPDATE SKIP LOCKED) due WHERE n.id = due.id "
                 "RETURNING n.body")
    assert env.psql(old_claim, url) == [["ChamaSmart: old daemon text."]]
    assert env.psql("SELECT template, status FROM notifications ORDER BY id", url) == \
        [["sms_cash_receipt", "queued"], ["", "sending"]]
    # a row holds a template or a text
    err = env.psql_error("INSERT INTO notifications (channel, kind, recipient, priority, idempotency_key) "
                         "VALUES ('sms', 'test', '%s', 5, 'test:neither')" % phone, url)
    assert "notifications_template_or_body" in err
