"""One domain under two channels: a member reads the same money on USSD and
by SMS, because both run the same statements (src/dom/account.c) on the
ledger.  The test that shows it: a payment reversed by the treasurer is on
the USSD statement and in the SMS STMT reply as the same movements with the
same amounts, and the balance is the same on both."""
import random
import re
import subprocess
import time
import urllib.parse

from harness import ROOT
from notify_fixtures import outbox_texts
from ussd_fixtures import ussd

PIN = "4827"


def setup(env, name):
    url = env.fresh_db("chamasmart_channels_" + name)
    env.migrate(url)
    return url, env.chamad({"CHAMAD_DATABASE_URL": url})


def add_member(env, url, cid, name, role="member"):
    h = subprocess.run([env.bin, "hash-pin"], input=PIN + "\n", capture_output=True, text=True,
                       cwd=ROOT).stdout.strip()
    phone = "+2547%08d" % random.randrange(10 ** 8)
    (uid,), = env.psql("INSERT INTO users (phone, full_name, pin_hash) VALUES ('%s', '%s', '%s') RETURNING id"
                       % (phone, name, h), url)
    env.psql("INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, '%s')" % (uid, cid, role), url)
    return phone, uid


def contribute(env, url, cid, uid, cents, purpose, method, ref):
    (k,), = env.psql("SELECT contribution_id FROM post_contribution(%s, %s, %d, '%s', '%s', %s, 'test:%s:%d', NULL, "
                     "'mpesa', NULL, 'test', NULL)"
                     % (cid, uid, cents, purpose, method, "'%s'" % ref if ref else "NULL", method,
                        random.randrange(10 ** 9)), url)[0:1]
    return k



def sms(env, url, c, phone, text):
    """Sends one SMS command; returns the reply the outbox holds for it."""
    msg_id = "ch-%d" % random.randrange(10 ** 12)
    body = urllib.parse.urlencode({"from": phone, "to": "40404", "text": text, "date": "2026-11-25 10:00:00",
                                   "id": msg_id}).encode()
    r = c.post("/sms/africastalking/inbound", body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, r.body
    deadline = time.monotonic() + 5
    while True:
        # the reply as the sender renders it (a queued row holds its
        # template and variables)
        rows = outbox_texts(env, url, "kind = 'sms_reply' AND idempotency_key = 'sms_in:africastalking:%s'"
                            % msg_id)
        if rows or time.monotonic() > deadline:
            assert rows, "no reply to %r" % text
            return rows[0]
        time.sleep(0.05)


def ussd_movements(screen):
    """'1. 25 Nov -1,500 reversal' -> [('-', '1,500', 'reversal'), ...]"""
    return [(m.group(1), m.group(2), m.group(3))
            for m in re.finditer(r"^\d+\. \d\d \w{3} ([+-])([\d,.]+) (\S+)$", screen, re.M)]


# the SMS words of the ledger's directions, as the member reads them
SMS_SIGN = {"paid in": "+", "reversed": "-"}
# (a reply's {lines} is one variable, cut at 120 septets by the menu
# renderer: the chama's name is short so that every line fits)


def sms_movements(reply, chama):
    """'25 Nov reversed KES 1,500 Tumaini Group reversal' -> [('-', '1,500', 'reversal'), ...]"""
    got = []
    for line in reply.split("\n")[1:]:
        m = re.match(r"^\d\d \w{3} (.+?) KES ([\d,.]+) %s (\S+)$" % re.escape(chama), line)
        assert m, (line, reply)
        assert m.group(1) in SMS_SIGN, (line, reply)
        got.append((SMS_SIGN[m.group(1)], m.group(2), m.group(3)))
    return got


def seed(env, url, name):
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % name, url)
    phone, uid = add_member(env, url, cid, "Channel Member")
    _, tid = add_member(env, url, cid, "Channel Treasurer", "treasurer")
    return cid, phone, uid, tid


def reverse(env, url, k, tid, reason):
    """The treasurer reverses a payment: a new entry; the old one stands."""
    env.psql("SELECT * FROM reverse_contribution(%s, '%s', %s, 'ussd', NULL, 'test', NULL)" % (k, reason, tid), url)


def balances(env, url, c, phone, lang):
    """(savings, welfare, loan, arrears) on the USSD balance screen and in the BAL / SALIO reply."""
    if lang == "en":
        screen_re = r"Savings: KES ([\d,.]+)\nWelfare: KES ([\d,.]+)\nLoan: KES ([\d,.]+)\nArrears: KES ([\d,.]+)"
        sms_re = r"ChamaSmart balance:\n.+?: savings KES ([\d,.]+), welfare KES ([\d,.]+), loan KES ([\d,.]+), " \
                 r"arrears KES ([\d,.]+)"
        word = "BAL "
    else:
        screen_re = r"Akiba: KES ([\d,.]+)\nUstawi: KES ([\d,.]+)\nMkopo: KES ([\d,.]+)\nDeni: KES ([\d,.]+)"
        sms_re = r"Salio la ChamaSmart:\n.+?: akiba KES ([\d,.]+), ustawi KES ([\d,.]+), mkopo KES ([\d,.]+), " \
                 r"deni KES ([\d,.]+)"
        word = "SALIO "
    screen = ussd(c, phone, [PIN, "1"])
    m = re.search(screen_re, screen)
    assert m, screen
    reply = sms(env, url, c, phone, word + PIN)
    n = re.fullmatch(sms_re, reply)
    assert n, reply
    return m.groups(), n.groups()


def test_channels_statement_and_balance_agree_after_a_reversal(env):
    url, c = setup(env, "parity")
    cid, phone, uid, tid = seed(env, url, "Umoja")
    contribute(env, url, cid, uid, 250000, "savings", "mpesa", "QKX1")
    cash = contribute(env, url, cid, uid, 150000, "savings", "cash", None)
    reverse(env, url, cash, tid, "counted twice")

    # USSD: Balance (1), then Statement (1)
    screen = ussd(c, phone, [PIN, "1", "1"])
    on_ussd = ussd_movements(screen)
    assert on_ussd == [("-", "1,500", "reversal"), ("+", "1,500", "cash"), ("+", "2,500", "QKX1")], screen
    # SMS: STMT with the PIN: the same movements, the same amounts, newest first
    reply = sms(env, url, c, phone, "STMT " + PIN)
    assert reply.startswith("Last transactions:\n"), reply
    on_sms = sms_movements(reply, "Umoja")
    assert on_sms == on_ussd, (on_sms, on_ussd)

    # the balance: the same figures on both channels
    on_ussd, on_sms = balances(env, url, c, phone, "en")
    assert on_ussd == on_sms == ("2,500", "0", "0", "0"), (on_ussd, on_sms)
    c.stop()


def test_channels_agree_in_swahili(env):
    """The same in the member's other language: TAARIFA's words for money
    in and its reversal, and SALIO with welfare."""
    url, c = setup(env, "sw")
    cid, phone, uid, tid = seed(env, url, "Umoja")
    env.psql("UPDATE users SET preferred_language = 'sw' WHERE id = %s" % uid, url)
    contribute(env, url, cid, uid, 20000, "welfare", "mpesa", "QKX2")
    cash = contribute(env, url, cid, uid, 70000, "savings", "cash", None)
    reverse(env, url, cash, tid, "makosa")
    reply = sms(env, url, c, phone, "TAARIFA " + PIN)
    lines = reply.split("\n")
    assert lines[0] == "Miamala ya mwisho:" and len(lines) == 4, reply
    assert lines[1].endswith(" imerudishwa KES 700 Umoja reversal") and \
        lines[2].endswith(" umechanga KES 700 Umoja cash") and lines[3].endswith(" umechanga KES 200 Umoja QKX2"), reply
    screen = ussd(c, phone, [PIN, "1", "1"])
    assert ussd_movements(screen) == [("-", "700", "reversal"), ("+", "700", "cash"), ("+", "200", "QKX2")], screen
    on_ussd, on_sms = balances(env, url, c, phone, "sw")
    # (arrears: the month's 500 is due, nothing counts towards it after the reversal)
    assert on_ussd == on_sms and on_ussd[:3] == ("0", "200", "0"), (on_ussd, on_sms)
    c.stop()
