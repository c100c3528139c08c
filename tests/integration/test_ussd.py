"""The USSD engine end to end over HTTP: a running chamad with the real
PostgreSQL and Redis, driven like Africa's Talking and Hubtel drive it.

Every test uses phone numbers of its own, so tests share the database."""
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

from harness import MPESA_SECRET, ROOT, http
from notify_fixtures import outbox_texts

# tests/run.py -j N: these run alone, nothing else in flight.  Three stop
# the PostgreSQL or Redis every worker shares; the other two time each
# hop (a slow Redis proxy's round trips, the busy hold under 40 logins),
# so they need the CPU to themselves.
SERIAL = {"test_ussd_redis_stopped_mid_session", "test_ussd_postgres_down_is_polite",
          "test_ussd_navigation_needs_no_postgres", "test_ussd_navigation_waits_for_one_redis_round_trip",
          "test_ussd_overload_refusals_are_held"}

PIN = "4827"
_pin_hash = {}


def pin_hash(env, pin=PIN, extra_env=None):
    key = (pin, tuple(sorted((extra_env or {}).items())))
    if key not in _pin_hash:
        e = dict(os.environ)
        e.update(extra_env or {})
        p = subprocess.run([env.bin, "hash-pin"], input=pin + "\n", capture_output=True, text=True, env=e, cwd=ROOT)
        assert p.returncode == 0 and p.stdout.startswith("$argon2id$"), p.stderr
        _pin_hash[key] = p.stdout.strip()
    return _pin_hash[key]


def new_phone():
    return "+2547%08d" % random.randrange(10 ** 8)


def q(env, sql):
    return env.psql(sql)


def seed_chama(env, name=None, members=()):
    """Creates a chama; members is a list of (phone, name, role); returns
    (chama_id, [user ids])."""
    name = name or "Test Chama %d" % random.randrange(10 ** 9)
    (cid,), = q(env, "INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                     "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % name)
    ids = []
    for phone, full, role in members:
        ids.append(seed_user(env, phone, full))
        q(env, "INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, '%s')" % (ids[-1], cid, role))
    return cid, ids


def seed_user(env, phone, name="Test Member", lang="en", with_pin=True):
    h = "'%s'" % pin_hash(env) if with_pin else "NULL"
    (uid,), = q(env, "INSERT INTO users (phone, full_name, preferred_language, pin_hash, phone_verified) "
                     "VALUES ('%s', '%s', '%s', %s, true) RETURNING id" % (phone, name, lang, h))
    return uid


def post_contribution(env, chama, user, cents, purpose="savings", method="cash", url=None):
    env.psql("SELECT post_contribution(%s, %s, %d, '%s', '%s', NULL, 'test:%d', NULL, 'admin', NULL, 'test', NULL)"
             % (chama, user, cents, purpose, method, random.randrange(10 ** 15)), url)


def septets(s):
    return len(s) + sum(s.count(c) for c in "^{}\\[]~|")


class AT:
    """One Africa's Talking session: text accumulates every input joined by '*'."""

    def __init__(self, c, phone, session=None, code="*384*1234#", headers=None, path="/ussd/africastalking"):
        self.c, self.phone, self.code, self.headers, self.path = c, phone, code, headers, path
        self.sid = session or "ATUid_%032x" % random.getrandbits(128)
        self.inputs = []

    def post_text(self, text, c=None):
        body = urllib.parse.urlencode({"sessionId": self.sid, "serviceCode": self.code, "phoneNumber": self.phone,
                                       "networkCode": "63902", "text": text}).encode()
        r = (c or self.c).post(self.path, body, headers=dict({"Content-Type": "application/x-www-form-urlencoded; "
                                                                      "charset=UTF-8"}, **(self.headers or {})))
        return r

    def hop(self, text, c=None):
        r = self.post_text(text, c)
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), (r.status, r.body)
        assert r.body.startswith("CON ") or r.body.startswith("END "), r.body
        screen = r.body[4:]
        assert septets(screen) <= 160, (septets(screen), screen)
        return r.body.startswith("END "), screen

    def dial(self, c=None):
        self.inputs = []
        return self.hop("", c)

    def send(self, inp, c=None):
        self.inputs.append(inp)
        return self.hop("*".join(self.inputs), c)

    def login(self, pin=PIN):
        end, s = self.dial()
        assert not end and "PIN" in s, s
        end, s = self.send(pin)
        assert not end and "Main menu" in s, s
        return s


def latest_code(env, phone):
    rows = q(env, "SELECT vars->>'code' FROM notifications WHERE recipient = '%s' AND kind = 'otp' "
                  "ORDER BY id DESC LIMIT 1" % phone)
    return rows[0][0] if rows else None


def redis_cli(env, *args):
    return subprocess.run(["redis-cli", "-p", str(env.redis_port), "-n", str(env.redis_db)] + list(args),
                          capture_output=True, text=True).stdout.strip()


# -- sign-up and log-in ----------------------------------------------------

def test_ussd_signup_with_code_and_pin(env):
    c = env.chamad()
    phone = new_phone()
    s = AT(c, phone)
    end, screen = s.dial()
    assert not end and "Choose your language" in screen and "1. English" in screen and "2. Kiswahili" in screen
    end, screen = s.send("1")
    assert "full name" in screen
    # a '*' typed inside an answer stays part of it
    end, screen = s.send("Amina *Star* Otieno")
    assert screen.startswith("Code sent by SMS.") and "6-digit code" in screen, screen
    code = latest_code(env, phone)
    assert code and re.fullmatch(r"\d{6}", code)
    row = q(env, "SELECT priority, channel, status FROM notifications WHERE recipient = '%s'" % phone)
    assert row[0][:3] == ["0", "sms", "queued"] and code in outbox_texts(env, None, "recipient = '%s'" % phone)[0]
    wrong = "%06d" % ((int(code) + 1) % 10 ** 6)
    end, screen = s.send(wrong)
    assert screen.startswith("Wrong code, 2 left."), screen
    end, screen = s.send(code)
    assert "4-digit PIN" in screen
    end, screen = s.send("1234")
    assert screen.startswith("PIN too easy to guess."), screen
    end, screen = s.send(PIN)
    end, screen = s.send("9052")  # a different second entry: back to the first
    assert screen.startswith("PINs did not match.") and "4-digit PIN" in screen, screen
    end, screen = s.send(PIN)
    end, screen = s.send(PIN)
    assert not end and screen.startswith("Welcome to ChamaSmart!") and "Main menu" in screen, screen
    (uid, name, lang, h, verified), = q(env, "SELECT id, full_name, preferred_language, pin_hash, phone_verified "
                                             "FROM users WHERE phone = '%s'" % phone)
    assert name == "Amina *Star* Otieno" and lang == "en" and verified == "t"
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), h
    assert q(env, "SELECT status FROM signup_sessions WHERE phone = '%s'" % phone) == [["completed"]]
    # every change is audited with the channel, the phone and the session
    audit = q(env, "SELECT entity_type, action, channel, request_id FROM audit_logs WHERE msisdn = '%s' "
                   "ORDER BY id" % phone)
    assert ["users", "insert", "ussd", "africastalking:" + s.sid] in audit, audit
    assert ["signup_sessions", "insert", "ussd", "africastalking:" + s.sid] in audit, audit
    assert not any("argon2" in json.dumps(r) for r in q(env, "SELECT after FROM audit_logs WHERE entity_type = "
                                                             "'users' AND entity_id = %s" % uid))
    # the PIN never reaches Redis, not even inside the stored path
    for key in redis_cli(env, "KEYS", "ussd:s:*%s" % s.sid).split():
        assert PIN not in redis_cli(env, "GET", key)
    # the new member logs in with that PIN from a new session
    AT(c, phone).login()
    c.stop()


def test_ussd_code_limits(env):
    c = env.chamad({"CHAMAD_AUTH_OTP_MAX_PER_HOUR": "2"})
    phone = new_phone()
    for _ in range(2):
        s = AT(c, phone)
        s.dial()
        s.send("2")
        end, screen = s.send("Baraka")
        assert screen.startswith("Nambari imetumwa kwa SMS."), screen  # Swahili chosen
    # the code is kept (as a digest) for 5 minutes
    ttl = int(redis_cli(env, "TTL", "otp:signup:" + phone))
    assert 290 <= ttl <= 300, ttl
    assert latest_code(env, phone) not in redis_cli(env, "GET", "otp:signup:" + phone)
    # three wrong codes void it
    for tries_left in ("2", "1"):
        end, screen = s.send("000000")
        assert not end and "zimebaki %s" % tries_left in screen, screen
    end, screen = s.send("000000")
    assert end and "Nambari zisizo sahihi" in screen, screen
    # a third code within the hour is refused
    s = AT(c, phone)
    s.dial()
    s.send("1")
    end, screen = s.send("Baraka")
    assert end and "Too many codes" in screen, screen
    assert q(env, "SELECT count(*) FROM notifications WHERE recipient = '%s'" % phone) == [["2"]]
    c.stop()


def test_ussd_login_navigation_and_balance(env):
    c = env.chamad()
    phone = new_phone()
    cid, (uid,) = seed_chama(env, members=[(phone, "Wanjiru Test", "member")])
    # posted as the money flows post them (balances come from the ledger)
    post_contribution(env, cid, uid, 150050, "savings")
    post_contribution(env, cid, uid, 10000, "welfare")
    q(env, "INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status) VALUES "
           "(%s, %s, 99900, 'savings', 'cash', 'pending')" % (cid, uid))
    s = AT(c, phone)
    end, screen = s.dial()
    assert "Welcome Wanjiru Test. Enter your PIN:" in screen and "9. Forgot PIN" in screen
    end, screen = s.send(PIN)
    assert "Main menu" in screen and "1. Balance" in screen and "Officials" not in screen
    end, screen = s.send("1")
    assert "Savings: KES 1,500.50" in screen and "Welfare: KES 100" in screen and "0. Back 00. Menu" in screen
    end, screen = s.send("0")
    assert "Main menu" in screen
    end, screen = s.send("5")
    assert "My chama: Test Chama" in screen
    end, screen = s.send("3")
    assert "Type: mixed" in screen and "Contribution: KES 500 monthly" in screen and "Members: 1" in screen
    end, screen = s.send("0")
    assert "My chama" in screen
    end, screen = s.send("00")
    assert "Main menu" in screen
    # an invalid choice re-shows the screen with a short error, the session goes on
    end, screen = s.send("7777")
    assert not end and screen.startswith("Invalid choice.\nMain menu"), screen
    end, screen = s.send("9")
    assert end and "Thank you" in screen
    # the log-in reached the audit trail (batched, see test_ussd_login_writes_only_what_changed)
    assert wait_login_audited(env, uid) >= 1
    assert q(env, "SELECT failed_pin_attempts FROM users WHERE id = %s" % uid) == [["0"]]
    m = c.get("/metrics").body
    assert 'chamad_ussd_hops_total{outcome="screen"} 9' in m and 'chamad_ussd_hops_total{outcome="end"} 1' in m, m
    assert "chamad_auth_jobs_total 1" in m and 'route="ussd_africastalking",code="200"} 10' in m
    c.stop()


def wait_login_audited(env, uid, at_least=1, timeout=5.0):
    """The count of user.login audit rows of a user, once it reaches
    at_least (they are written in batches, about once a second)."""
    until = time.monotonic() + timeout
    while True:
        (n,), = q(env, "SELECT count(*) FROM audit_logs WHERE action = 'user.login' AND entity_id = %s" % uid)
        if int(n) >= at_least or time.monotonic() > until:
            return int(n)
        time.sleep(0.1)


def test_ussd_login_writes_only_what_changed(env):
    """A log-in with nothing to change on the user's row does not rewrite
    it (the row version, xmin, stays) and leaves no update audit row; the
    log-in still reaches audit_logs, in a batch.  A wrong PIN still counts
    at once and the next right one clears it."""
    c = env.chamad()
    phone = new_phone()
    cid, (uid,) = seed_chama(env, members=[(phone, "Quiet Login", "member")])

    def row():
        return q(env, "SELECT xmin, failed_pin_attempts, locked_until IS NULL FROM users WHERE id = %s" % uid)[0]

    def audit_rows():
        return q(env, "SELECT action FROM audit_logs WHERE entity_type = 'users' AND entity_id = %s "
                      "AND action <> 'user.login' ORDER BY id" % uid)

    before, audit_before = row(), audit_rows()
    AT(c, phone).login()
    # the PIN hop is one statement: the user, their hash and their chamas
    queries = lambda: int(re.search(r"^chamad_db_queries_total (\d+)", c.get("/metrics").body, re.M).group(1))
    s = AT(c, phone)
    s.dial()
    n0 = queries()
    assert "Main menu" in s.send(PIN)[1]
    assert queries() - n0 == 1, queries() - n0
    assert row() == before and audit_rows() == audit_before
    assert wait_login_audited(env, uid, 2) == 2
    (ch, msisdn, actor, req), = q(env, "SELECT DISTINCT channel, msisdn, actor_user_id, request_id LIKE "
                                       "'africastalking:%%' FROM audit_logs WHERE action = 'user.login' "
                                       "AND entity_id = %s" % uid)
    assert (ch, msisdn, actor, req) == ("ussd", phone, str(uid), "t")
    # a wrong PIN is written at once; the next right PIN clears it (a write)
    s = AT(c, phone)
    s.dial()
    end, screen = s.send("1111")
    assert screen.startswith("Wrong PIN, 2 left."), screen
    assert row()[1:] == ["1", "t"]
    s2 = AT(c, phone)
    s2.dial()
    end, screen = s2.send(PIN)
    assert "Main menu" in screen, screen
    after = row()
    assert after[1:] == ["0", "t"] and after[0] != before[0]
    assert wait_login_audited(env, uid, 3) == 3
    c.stop()


def test_ussd_wrong_pins_lock_the_account(env):
    c = env.chamad()
    phone = new_phone()
    seed_chama(env, members=[(phone, "Lock Test", "member")])
    s = AT(c, phone)
    s.dial()
    end, screen = s.send("1111")
    assert not end and screen.startswith("Wrong PIN, 2 left."), screen
    end, screen = s.send("2222")
    assert screen.startswith("Wrong PIN, 1 left."), screen
    end, screen = s.send("3333")
    assert end and "locked until" in screen, screen
    (locked, attempts), = q(env, "SELECT locked_until > now() + interval '29 minutes', failed_pin_attempts FROM users "
                                 "WHERE phone = '%s'" % phone)
    assert locked == "t" and attempts == "3"
    # the member is told by SMS
    assert q(env, "SELECT kind, priority FROM notifications WHERE recipient = '%s'" % phone) == [["pin_locked", "1"]]
    # even the right PIN is refused while locked: a new dial ends at once
    end, screen = AT(c, phone).dial()
    assert end and "locked until" in screen
    # once the lock has passed, the right PIN works and clears the count
    q(env, "UPDATE users SET locked_until = now() - interval '1 second' WHERE phone = '%s'" % phone)
    AT(c, phone).login()
    assert q(env, "SELECT failed_pin_attempts, locked_until FROM users WHERE phone = '%s'" % phone) == [["0", ""]]
    c.stop()


def test_ussd_forgot_pin_and_rehash(env):
    c = env.chamad()
    phone = new_phone()
    cid, (uid,) = seed_chama(env, members=[(phone, "Forgetful", "member")])
    s = AT(c, phone)
    s.dial()
    end, screen = s.send("9")
    assert "new PIN" in screen and "1. Send the code" in screen, screen
    end, screen = s.send("1")
    assert screen.startswith("Code sent by SMS."), screen
    s.send(latest_code(env, phone))
    s.send("9052")
    end, screen = s.send("9052")
    assert screen.startswith("PIN changed.") and "Main menu" in screen, screen
    end, screen = AT(c, phone).dial()
    s2 = AT(c, phone)
    s2.dial()
    end, screen = s2.send(PIN)
    assert screen.startswith("Wrong PIN"), screen
    s2.login("9052")
    # a hash made with older (cheaper) parameters is re-made at log-in
    weak = pin_hash(env, PIN, {"CHAMAD_AUTH_PIN_MEMLIMIT_KIB": "8192", "CHAMAD_AUTH_PIN_OPSLIMIT": "1"})
    assert "m=8192,t=1" in weak
    q(env, "UPDATE users SET pin_hash = '%s' WHERE id = %s" % (weak, uid))
    AT(c, phone).login()
    (h,), = q(env, "SELECT pin_hash FROM users WHERE id = %s" % uid)
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and h != weak
    # a member an official added without a PIN sets one through a code
    phone2 = new_phone()
    uid2 = seed_user(env, phone2, "No Pin Yet", with_pin=False)
    s = AT(c, phone2)
    end, screen = s.dial()
    assert "To set your PIN" in screen, screen
    s.send("1")
    s.send(latest_code(env, phone2))
    s.send("7319")
    end, screen = s.send("7319")
    assert "Main menu" in screen
    assert q(env, "SELECT pin_hash IS NOT NULL FROM users WHERE id = %s" % uid2) == [["t"]]
    c.stop()


# -- navigation, lists, resends, sessions -------------------------------------

def test_ussd_long_list_paginates(env):
    c = env.chamad()
    phone = new_phone()
    members = [(phone, "Viewer", "member")] + [(new_phone(), "Member %02d Longname" % i, "member") for i in range(30)]
    seed_chama(env, members=members)
    s = AT(c, phone)
    s.login()
    s.send("5")
    end, screen = s.send("1")
    pages = [screen]
    while "98. More" in screen:
        end, screen = s.send("98")
        pages.append(screen)
    seen = []
    for p in pages:
        items = re.findall(r"^(\d+)\. (.+)$", p, re.M)
        items = [(n, label) for n, label in items if n not in ("0", "98")]  # navigation lines
        nums = [int(n) for n, _ in items]
        assert nums == list(range(1, len(nums) + 1)), p  # 1.. on every page
        seen += [label for _, label in items]
    assert len(pages) >= 4 and len(seen) == 31 and len(set(seen)) == 31, pages
    # back walks the pages, then leaves the list
    end, screen = s.send("0")
    assert screen == pages[-2]
    # choosing an item on this page opens it
    end, screen = s.send("2")
    assert "Joined" in screen and "+2547" in screen, screen
    c.stop()


def test_ussd_resent_hop_runs_its_action_once(env):
    c = env.chamad()
    phone = new_phone()
    seed_chama(env, members=[(phone, "Founder", "member")])
    s = AT(c, phone)
    s.login()
    for inp in ("7", "Resend Savers", "2", "1000", "3"):
        s.send(inp)
    end, screen = s.send("1")
    assert end and "Resend Savers is created" in screen and "Invite code for members:" in screen, screen
    # the aggregator resends the same hop: same reply, nothing runs again
    again = s.post_text("*".join(s.inputs))
    assert again.body == "END " + screen
    assert q(env, "SELECT count(*), min(member_count), min(contribution_amount_cents) FROM chamas "
                  "WHERE name = 'Resend Savers'") == [["1", "1", "100000"]]
    (cid, role), = q(env, "SELECT m.chama_id, m.role FROM memberships m JOIN chamas c ON c.id = m.chama_id "
                          "WHERE c.name = 'Resend Savers'")
    assert role == "chairperson"
    code = re.search(r"Invite code for members: ([A-Z0-9]+)", screen).group(1)
    assert q(env, "SELECT chama_id FROM invites WHERE code = '%s'" % code) == [[cid]]
    # a resent middle hop also replays
    s2 = AT(c, phone)
    s2.dial()
    end, screen = s2.send(PIN)
    assert "Choose a chama" in screen and "1. Resend Savers" in screen  # now in two chamas
    first = s2.send("1")
    assert s2.post_text("*".join(s2.inputs)).body[4:] == first[1]
    c.stop()


def test_ussd_expired_and_lost_sessions(env):
    c = env.chamad()
    phone = new_phone()
    seed_chama(env, members=[(phone, "Expiry", "member")])
    s = AT(c, phone)
    s.login()
    # Redis lost the session (expiry, flush): a clear END, not a wrong screen
    assert redis_cli(env, "DEL", "ussd:s:africastalking:" + s.sid) == "1"
    end, screen = s.send("1")
    assert end and screen == "Session expired, please dial again.", screen
    # a continuing hop for a session never seen
    end, screen = AT(c, phone).hop("1*2")
    assert end and "Session expired" in screen
    # the session key has a TTL, renewed on each hop
    s = AT(c, phone)
    s.login()
    ttl = int(redis_cli(env, "TTL", "ussd:s:africastalking:" + s.sid))
    assert 170 <= ttl <= 180, ttl
    c.stop()


def test_ussd_dial_string_shortcut(env):
    c = env.chamad({"CHAMAD_USSD_SERVICE_CODE": "*384*1234#"})
    phone = new_phone()
    seed_chama(env, members=[(phone, "Shortcut", "member")])
    # *384*1234*1# : the PIN is still asked (never taken from a dial string),
    # then the pre-filled "1" (Balance) is applied
    s = AT(c, phone, code="*384*1234*1#")
    end, screen = s.hop("1")
    assert not end and "Enter your PIN" in screen, screen
    end, screen = s.hop("1*" + PIN)
    assert "Savings: KES" in screen, screen
    c.stop()


def test_ussd_two_daemons_share_a_session(env):
    a = env.chamad()
    b = env.chamad()
    phone = new_phone()
    seed_chama(env, members=[(phone, "Roaming", "member")])
    s = AT(a, phone)
    assert "PIN" in s.dial(a)[1]
    assert "Main menu" in s.send(PIN, b)[1]
    assert "My chama" in s.send("5", a)[1]
    assert "Members:" in s.send("1", b)[1]
    assert "My chama" in s.send("0", a)[1]
    assert "Main menu" in s.send("00", b)[1]
    end, screen = s.send("9", a)
    assert end and "Thank you" in screen
    a.stop()
    b.stop()


def test_ussd_waits_for_a_held_session(env):
    """A hop that finds the session held (the trailing save of the hop
    before it, or a resent copy still running) waits a moment for it
    instead of answering "busy" at once: the next hop may reach another
    daemon before this one's save is done."""
    c = env.chamad()
    phone = new_phone()
    seed_chama(env, members=[(phone, "Held", "member")])
    s = AT(c, phone)
    s.login()
    lock = "ussd:l:africastalking:" + s.sid
    # held for 150 ms by someone else, as a save in flight would
    assert redis_cli(env, "SET", lock, "someone-else", "PX", "150").strip() == "OK"
    end, screen = s.send("5")
    assert not end and "My chama" in screen, screen
    # held past the wait: "busy", and the session is left alone
    assert redis_cli(env, "SET", lock, "someone-else", "PX", "5000").strip() == "OK"
    r = s.post_text("*".join(s.inputs + ["1"]))
    assert r.body == "END Service busy, please try again.", r.body
    redis_cli(env, "DEL", lock)
    end, screen = s.send("0")
    assert not end and "Main menu" in screen, screen
    c.stop()


def test_ussd_redis_stopped_mid_session(env):
    c = env.chamad({"CHAMAD_REDIS_RECONNECT_MIN_MS": "50", "CHAMAD_REDIS_RECONNECT_MAX_MS": "200"})
    phone = new_phone()
    seed_chama(env, members=[(phone, "Outage", "member")])
    s = AT(c, phone)
    s.login()
    env.services("redis-stop")
    try:
        end, screen = s.send("1")
        assert end and screen == "Service busy, please try again.", screen
    finally:
        env.services("redis-start")
    c.wait_health(200)
    AT(c, phone).login()
    c.stop()


def test_ussd_postgres_down_is_polite(env):
    c = env.chamad()
    phone = new_phone()
    env.services("pg-stop")
    try:
        end, screen = AT(c, phone).dial()
        assert end and screen == "Service busy, please try again.", screen
    finally:
        env.services("pg-start")
    c.wait_health(200)
    end, screen = AT(c, phone).dial()
    assert not end and "Choose your language" in screen
    c.stop()


def test_ussd_bad_requests(env):
    c = env.chamad({"CHAMAD_HTTP_MAX_BODY": "4096"})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        (b"sessionId=x&text=", 400, "missing phoneNumber"),
        (b"phoneNumber=%2B254712345678&text=", 400, "missing sessionId"),
        (b"sessionId=x&phoneNumber=1&text=%FF%FE", 400, "text is not UTF-8"),
        (b"sessionId=x&phoneNumber=1&text=%G1", 400, "malformed form body"),
        (b"sessionId=x&phoneNumber=1&text=" + b"1" * 1200, 400, "text too long"),
        (b"sessionId=../../etc&phoneNumber=1&text=", 400, "bad sessionId"),
    ]
    for body, code, msg in cases:
        r = c.post("/ussd/africastalking", body, headers=form)
        assert r.status == code and r.json() == {"error": msg}, (body[:40], r.status, r.body)
    r = c.post("/ussd/africastalking", b"text=" + b"1" * 5000, headers=form)
    assert r.status == 413
    r = c.get("/ussd/africastalking")
    assert r.status == 405
    r = c.post("/ussd/nosuch", b"x")
    assert r.status == 404
    for body in (b"{", b"[]", b'{"Type": 3}', b'{"Type":"Response","Mobile":"1","SessionId":"s","Message":7}'):
        r = c.post("/ussd/hubtel", body, headers={"Content-Type": "application/json"})
        assert r.status == 400, (body, r.body)
    # a number no network has: a polite END
    r = c.post("/ussd/africastalking", b"sessionId=x1&phoneNumber=12&text=", headers=form)
    assert r.status == 200 and r.body == "END Invalid phone number."
    assert c.get("/healthz").status == 200
    c.stop()


def test_ussd_secret_and_allow_list(env):
    c = env.chamad({"CHAMAD_USSD_SECRETS": "africastalking:%s hubtel:%s" % (MPESA_SECRET, MPESA_SECRET[::-1])})
    phone = new_phone()
    r = AT(c, phone).post_text("")
    assert r.status == 403 and r.json() == {"error": "forbidden"}
    r = AT(c, phone, headers={"X-Chamad-Secret": "wrong"}).post_text("")
    assert r.status == 403
    assert AT(c, phone, headers={"X-Chamad-Secret": MPESA_SECRET}).post_text("").status == 200
    assert AT(c, phone, path="/ussd/africastalking?secret=" + MPESA_SECRET).post_text("").status == 200
    c.stop()
    assert "refused 127.0.0.1: wrong or missing secret" in c.log()
    c = env.chamad({"CHAMAD_USSD_ALLOW_IPS": "africastalking:10.0.0.0/8"})
    assert AT(c, phone).post_text("").status == 403
    c.stop()
    c = env.chamad({"CHAMAD_USSD_ALLOW_IPS": "africastalking:10.0.0.0/8,127.0.0.0/8"})
    assert AT(c, phone).post_text("").status == 200
    c.stop()


def hubtel(c, sid, phone, typ, msg, seq, code="714"):
    body = json.dumps({"Type": typ, "Mobile": phone.lstrip("+"), "SessionId": sid, "ServiceCode": code,
                       "Message": msg, "Operator": "mtn", "Sequence": seq, "ClientState": "cs-%d" % seq}).encode()
    r = c.post("/ussd/hubtel", body, headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.headers["Content-Type"] == "application/json", (r.status, r.body)
    return r.json()


def test_ussd_hubtel(env):
    c = env.chamad({"CHAMAD_USSD_COUNTRY_CODE": "254"})
    phone = new_phone()
    seed_chama(env, members=[(phone, "Hubtel User", "member")])
    sid = "hub-%d" % random.randrange(10 ** 9)
    r = hubtel(c, sid, phone, "Initiation", "*714#", 1)
    assert r["Type"] == "Response" and "Enter your PIN" in r["Message"] and r["ClientState"] == "cs-1", r
    r = hubtel(c, sid, phone, "Response", PIN, 2)
    assert "Main menu" in r["Message"]
    # only the newest input is sent; the path lives in our session
    r = hubtel(c, sid, phone, "Response", "1", 3)
    assert "Savings: KES" in r["Message"]
    # a resend of sequence 3 replays
    assert hubtel(c, sid, phone, "Response", "1", 3) == r
    r = hubtel(c, sid, phone, "Response", "0", 4)
    assert "Main menu" in r["Message"]
    r = hubtel(c, sid, phone, "Response", "9", 5)
    assert r["Type"] == "Release" and "Thank you" in r["Message"]
    # a dial string with extra segments: *714*1# then PIN lands on Balance
    sid2 = sid + "b"
    r = hubtel(c, sid2, phone, "Initiation", "*714*1#", 1)
    assert "Enter your PIN" in r["Message"]
    r = hubtel(c, sid2, phone, "Response", PIN, 2)
    assert "Savings: KES" in r["Message"], r
    r = hubtel(c, sid2, phone, "Release", "", 3)
    assert r["Type"] == "Release"
    r = hubtel(c, sid2, phone, "Response", "0", 4)
    assert r["Type"] == "Release" and "Session expired" in r["Message"]
    c.stop()


def test_ussd_end_of_session_event(env):
    c = env.chamad()
    phone = new_phone()
    s = AT(c, phone)
    s.dial()
    key = "ussd:s:africastalking:" + s.sid
    assert redis_cli(env, "EXISTS", key) == "1"
    body = urllib.parse.urlencode({"sessionId": s.sid, "status": "Incomplete", "phoneNumber": phone,
                                   "serviceCode": "*384*1234#", "networkCode": "63902", "durationInMillis": "5120",
                                   "hopsCount": "1", "input": "", "lastAppResponse": "CON Welcome",
                                   "cost": "KES 0.10", "date": "2026-11-25 10:00:00"}).encode()
    for _ in range(2):  # delivered twice: recorded once
        r = c.post("/ussd/africastalking/events", body)
        assert r.status == 200 and r.body == "OK"
    assert q(env, "SELECT status, duration_ms, hops, phone FROM ussd_session_events WHERE session_id = '%s'"
             % s.sid) == [["incomplete", "5120", "1", phone]]
    assert redis_cli(env, "EXISTS", key) == "0"
    r = c.post("/ussd/africastalking/events", b"sessionId=x&status=Exploded")
    assert r.status == 400
    c.stop()


# -- chamas: join, officials, language ------------------------------------------

def test_ussd_join_and_officials(env):
    c = env.chamad()
    chair, member, newcomer = new_phone(), new_phone(), new_phone()
    cid, (chair_id, member_id) = seed_chama(env, members=[(chair, "Chair Person", "chairperson"),
                                                           (member, "Plain Member", "member")])
    # a member does not see, and cannot reach, the officials' menu
    s = AT(c, member)
    s.login()
    end, screen = s.send("10")
    assert screen.startswith("Invalid choice."), screen
    # the chairperson makes an invite code
    s = AT(c, chair)
    screen = s.login()
    assert "10. Officials" in screen
    s.send("10")
    end, screen = s.send("2")
    assert end and "New invite code:" in screen
    code = re.search(r"code: ([A-Z0-9]+)", screen).group(1)
    # a newcomer joins with it (lower case typed is fine)
    seed_user(env, newcomer, "New Comer")
    s = AT(c, newcomer)
    screen = s.login()
    s.send("6")
    end, screen = s.send(code.lower())
    assert end and "request to join Test Chama" in screen, screen
    s = AT(c, newcomer)
    s.login()
    s.send("6")
    end, screen = s.send(code)
    assert end and "waiting for the officials" in screen, screen
    (req_id, status), = q(env, "SELECT id, status FROM join_requests WHERE chama_id = %s" % cid)
    assert status == "pending"
    # the chairperson approves it
    s = AT(c, chair)
    s.login()
    s.send("10")
    queries = lambda: int(re.search(r"^chamad_db_queries_total (\d+)", c.get("/metrics").body, re.M).group(1))
    before = queries()
    end, screen = s.send("1")
    assert "1. New Comer " + newcomer in screen, screen
    # an officials' list is one statement: the role check is in it
    assert queries() - before == 1, queries() - before
    end, screen = s.send("1")
    assert "1. Approve" in screen and "2. Reject" in screen
    end, screen = s.send("1")
    assert screen.startswith("Request approved.") and "No pending join requests." in screen, screen
    assert q(env, "SELECT m.role, m.status FROM memberships m JOIN users u ON u.id = m.user_id "
                  "WHERE u.phone = '%s' AND m.chama_id = %s" % (newcomer, cid)) == [["member", "active"]]
    assert q(env, "SELECT kind FROM notifications WHERE recipient = '%s' AND kind = 'join_approved'" % newcomer) == \
        [["join_approved"]]
    assert q(env, "SELECT status, decided_by_user_id FROM join_requests WHERE id = %s" % req_id) == \
        [["approved", str(chair_id)]]
    # the handler checks the role itself: a secretary demoted while looking
    # at a request decides nothing
    sec, late = new_phone(), new_phone()
    sec_id = seed_user(env, sec, "Secretary")
    q(env, "INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, 'secretary')" % (sec_id, cid))
    late_id = seed_user(env, late, "Late Comer")
    q(env, "INSERT INTO join_requests (chama_id, user_id) VALUES (%s, %s)" % (cid, late_id))
    s = AT(c, sec)
    s.login()
    s.send("10")
    s.send("1")
    end, screen = s.send("1")
    assert "1. Approve" in screen
    q(env, "UPDATE memberships SET role = 'member' WHERE user_id = %s" % sec_id)
    end, screen = s.send("1")
    assert end and screen == "Only officials can do this.", screen
    assert q(env, "SELECT status FROM join_requests WHERE user_id = %s" % late_id) == [["pending"]]
    c.stop()


def test_ussd_language_and_chama_switch(env):
    c = env.chamad()
    phone = new_phone()
    cid1, (uid,) = seed_chama(env, "Alpha Group %d" % random.randrange(10 ** 6), members=[(phone, "Two Chamas", "member")])
    cid2, _ = seed_chama(env, "Beta Group %d" % random.randrange(10 ** 6))
    q(env, "INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, 'treasurer')" % (uid, cid2))
    s = AT(c, phone)
    s.dial()
    end, screen = s.send(PIN)
    assert "Choose a chama" in screen and "1. Alpha Group" in screen and "2. Beta Group" in screen
    end, screen = s.send("2")
    assert "Main menu" in screen and "10. Officials" in screen  # treasurer there
    end, screen = s.send("8")
    end, screen = s.send("2")
    assert screen.startswith("Lugha imehifadhiwa.\nMenyu kuu") and "1. Salio" in screen, screen
    assert q(env, "SELECT preferred_language FROM users WHERE id = %s" % uid) == [["sw"]]
    end, screen = AT(c, phone).dial()
    assert "Weka PIN yako" in screen
    c.stop()


def test_ussd_every_screen_fits_in_both_languages(env):
    """Walks every menu screen reachable without side effects, in English and
    Swahili, and checks the cap on what was actually sent."""
    c = env.chamad()
    for lang in ("en", "sw"):
        phone = new_phone()
        cid, (uid,) = seed_chama(env, members=[(phone, "Walker " + lang, "chairperson")])
        q(env, "UPDATE users SET preferred_language = '%s' WHERE id = %s" % (lang, uid))
        q(env, "INSERT INTO meetings (chama_id, title, scheduled_at, location, agenda) VALUES "
               "(%s, 'Annual general meeting of the group', now() + interval '3 days', 'Community hall', "
               "'Elections, share-out and the constitution')" % cid)
        for path in (["1"], ["2"], ["3"], ["4", "1"], ["5", "1", "1"], ["5", "2"], ["5", "3"], ["6"], ["7", "Xy"],
                     ["8"], ["10", "1"]):
            s = AT(c, phone)
            s.login() if lang == "en" else (s.dial(), s.send(PIN))
            for inp in path:
                end, screen = s.send(inp)  # hop() asserts <= 160 septets
                assert not end, (lang, path, screen)
    c.stop()


def test_ussd_menus_reload_and_refusal(env):
    d = tempfile.mkdtemp()
    menus = os.path.join(d, "menus")
    shutil.copytree(os.path.join(ROOT, "menus"), menus)
    c = env.chamad({"CHAMAD_USSD_MENUS_DIR": menus})
    phone = new_phone()
    assert "Choose your language" in AT(c, phone).dial()[1]
    core = os.path.join(menus, "10_core.json")
    good = open(core).read()
    # a broken set (missing Swahili) is refused; the running menus stay
    doc = json.loads(good)
    del doc["screens"]["start_new"]["text"]["sw"]
    open(core, "w").write(json.dumps(doc))
    c.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "Choose your language" in AT(c, phone).dial()[1]
    # --check-config names the file and the screen
    e = dict(os.environ, CHAMAD_USSD_MENUS_DIR=menus)
    p = subprocess.run([env.bin, "--check-config"], capture_output=True, text=True, env=e)
    assert p.returncode == 1 and "10_core.json: start_new: text: missing translation (sw)" in p.stderr, p.stderr
    # a good change is taken
    doc = json.loads(good)
    doc["screens"]["start_new"]["text"]["en"] = "Hello from the reloaded menus. Choose your language:"
    open(core, "w").write(json.dumps(doc))
    c.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "reloaded menus" in AT(c, phone).dial()[1]
    log = c.stop()
    assert "menus refused, keeping the running ones" in log
    # refused at start-up: chamad does not start on bad menus
    doc["screens"]["start_new"]["options"][0]["next"] = "nowhere"
    open(core, "w").write(json.dumps(doc))
    p = subprocess.run([env.bin], capture_output=True, text=True, env=dict(e, CHAMAD_HTTP_LISTEN="127.0.0.1:1"),
                       timeout=20)
    assert p.returncode == 1 and "start_new" in p.stderr and "dangling link" in p.stderr, p.stderr
    shutil.rmtree(d)


def test_ussd_invite_by_phone(env):
    c = env.chamad()
    chair, invitee, stranger = new_phone(), new_phone(), new_phone()
    cid, _ = seed_chama(env, members=[(chair, "Inviting Chair", "chairperson")])
    s = AT(c, chair)
    s.login()
    s.send("10")
    end, screen = s.send("3")
    assert "Phone number to invite" in screen
    end, screen = s.send("12")  # not a phone number: the same screen, with why
    assert not end and screen.startswith("Invalid phone number.\nPhone number to invite"), screen
    national = "0" + invitee[4:]  # written as members write it: 07...
    end, screen = s.send(national)
    assert end and ("sent by SMS to %s" % invitee) in screen, screen
    code = re.search(r"with code ([A-Z0-9]+)", screen).group(1)
    assert q(env, "SELECT invitee_phone, max_uses FROM invites WHERE code = '%s'" % code) == [[invitee, "1"]]
    body, = outbox_texts(env, None, "recipient = '%s' AND kind = 'invite'" % invitee)
    assert code in body and "Test Chama" in body
    # the code works for that number only
    seed_user(env, stranger, "Stranger")
    s = AT(c, stranger)
    s.login()
    s.send("6")
    end, screen = s.send(code)
    assert not end and screen.startswith("Invalid or expired code."), screen
    seed_user(env, invitee, "Invitee")
    s = AT(c, invitee)
    s.login()
    s.send("6")
    end, screen = s.send(code)
    assert end and "request to join" in screen, screen
    c.stop()


def test_ussd_pepper_guards_pins(env):
    """A PIN hash made under one pepper does not open the account under
    another: the pepper is really mixed in."""
    c = env.chamad({"CHAMAD_AUTH_PIN_PEPPER": "another-installation"})
    phone = new_phone()
    seed_chama(env, members=[(phone, "Peppered", "member")])  # hashed with the default (empty) pepper
    s = AT(c, phone)
    s.dial()
    end, screen = s.send(PIN)
    assert screen.startswith("Wrong PIN"), screen
    c.stop()
    peppered = pin_hash(env, PIN, {"CHAMAD_AUTH_PIN_PEPPER": "another-installation"})
    assert peppered != pin_hash(env)
    q(env, "UPDATE users SET pin_hash = '%s' WHERE phone = '%s'" % (peppered, phone))
    c = env.chamad({"CHAMAD_AUTH_PIN_PEPPER": "another-installation"})
    AT(c, phone).login()
    c.stop()


def test_ussd_simulator_script(env):
    c = env.chamad()
    phone = new_phone()
    seed_chama(env, members=[(phone, "Sim User", "member")])
    p = subprocess.run([os.path.join(ROOT, "scripts", "ussd-sim"), "--url", c.url + "/ussd/africastalking",
                        "--phone", phone, "--script", PIN + ",1,0,9", "--json"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    hops = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert [h["end"] for h in hops] == [False, False, False, False, True], hops
    assert "PIN" in hops[0]["screen"] and "Savings: KES" in hops[2]["screen"] and "Thank you" in hops[4]["screen"]
    assert hops[2]["text"] == PIN + "*1"
    c.stop()


def test_ussd_navigation_needs_no_postgres(env):
    """Menus, Back, and Back to a data screen the session holds: shown with
    PostgreSQL stopped, and without a single statement (the daemon's query
    counter does not move); a resent navigation hop is still replayed."""
    c = env.chamad()
    phone = new_phone()
    cid, (uid,) = seed_chama(env, members=[(phone, "Navigator", "member")])
    post_contribution(env, cid, uid, 20000, "savings")
    s = AT(c, phone)
    s.login()
    end, balance = s.send("1")
    assert "Savings: KES 200" in balance, balance
    end, screen = s.send("1")
    assert "Statement" in screen and "+200" in screen, screen

    def db_queries():
        m = re.search(r"^chamad_db_queries_total (\d+)$", c.get("/metrics").body, re.M)
        return int(m.group(1))

    before = db_queries()
    env.services("pg-stop")
    try:
        end, screen = s.send("0")       # Back to Balance: from the session
        assert not end and screen == balance, screen
        for inp, want in (("0", "Main menu"), ("5", "My chama"), ("0", "Main menu"), ("3", "Loans"),
                          ("0", "Main menu"), ("5", "My chama"), ("00", "Main menu")):
            end, screen = s.send(inp)
            assert not end and want in screen, (inp, screen)
        # a resent hop gets the same reply (the save trails the reply on the
        # same Redis connection, so it is there before the resend's load)
        again = s.post_text("*".join(s.inputs))
        assert again.body == "CON " + screen, again.body
        assert db_queries() == before
        # a data screen needs PostgreSQL: polite, and counted
        end, screen = s.send("4")
        assert end and screen == "Service busy, please try again.", screen
    finally:
        env.services("pg-start")
    c.wait_health(200)
    s = AT(c, phone)
    s.login()
    assert "Savings: KES 200" in s.send("1")[1]
    c.stop()


def test_ussd_overload_refusals_are_held(env):
    """With more logins than the PIN workers can answer within the hop, the
    ones refused for want of capacity get "Service busy" only after
    [ussd] busy_hold_ms, so a gateway that redials at once cannot turn
    refusals into a storm; the admitted ones log in.  (A behaviour, not a
    speed: the hold is a deliberate lower bound.)"""
    import threading
    slow = {"CHAMAD_AUTH_PIN_OPSLIMIT": "20"}
    c = env.chamad(dict(slow, CHAMAD_AUTH_WORKERS="1", CHAMAD_USSD_HOP_TIMEOUT_MS="2000",
                        CHAMAD_USSD_BUSY_HOLD_MS="1000", CHAMAD_HTTP_REQUEST_TIMEOUT_MS="8000"))
    h = pin_hash(env, extra_env=slow)
    phones = [new_phone() for _ in range(41)]
    cid, _ = seed_chama(env)
    for p in phones:
        (uid,), = q(env, "INSERT INTO users (phone, full_name, pin_hash, phone_verified) VALUES ('%s', 'Busy', "
                         "'%s', true) RETURNING id" % (p, h))
        q(env, "INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s)" % (uid, cid))
    # one login first: the workers' service time is measured
    s = AT(c, phones[0])
    s.dial()
    assert "Main menu" in s.send(PIN)[1]
    results = []
    lock = threading.Lock()

    def login(p):
        s = AT(c, p)
        s.dial()
        t0 = time.monotonic()
        end, screen = s.send(PIN)
        with lock:
            results.append((screen, time.monotonic() - t0))

    ts = [threading.Thread(target=login, args=(p,)) for p in phones[1:]]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    busy = [dt for screen, dt in results if screen == "Service busy, please try again."]
    ok = [dt for screen, dt in results if "Main menu" in screen]
    assert len(busy) + len(ok) == 40, results
    assert busy and ok, results
    assert min(busy) >= 0.9, sorted(busy)[:5]
    # and the log says so in a line a second, not a line a refusal
    log = c.stop()
    assert len(busy) < 3 or log.count("cannot serve") < len(busy), (log.count("cannot serve"), len(busy))


class _SlowRedis:
    """A TCP proxy in front of Redis that holds every answer DELAY seconds
    (order kept), so the number of Redis round trips a hop waits for shows
    as a multiple of DELAY in its latency."""
    DELAY = 0.4

    def __init__(self, target_port):
        import socket
        import threading
        self.target = target_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while not self.stopping:
            try:
                cl, _ = self.ls.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(cl, up, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, cl, self.DELAY), daemon=True).start()

    def _pipe(self, src, dst, delay):
        import queue
        import threading
        q = queue.Queue()

        def writer():
            while True:
                at, data = q.get()
                if data is None:
                    return
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    return
        threading.Thread(target=writer, daemon=True).start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                q.put((0, None))
                return
            q.put((time.monotonic() + delay, data))

    def stop(self):
        self.stopping = True
        self.ls.close()


def test_ussd_navigation_waits_for_one_redis_round_trip(env):
    """A menu hop waits for one Redis round trip (lock and load); the save
    goes out after the reply.  With every Redis answer held 0.4 s, a menu
    hop takes about one hold, a hop with a write (the PIN) about two.  This
    counts round trips, it does not measure speed."""
    proxy = _SlowRedis(env.redis_port)
    try:
        c = env.chamad({"CHAMAD_REDIS_URL": env.redis_url(port=proxy.port),
                        "CHAMAD_REDIS_COMMAND_TIMEOUT_MS": "5000", "CHAMAD_USSD_HOP_TIMEOUT_MS": "8000",
                        "CHAMAD_HTTP_REQUEST_TIMEOUT_MS": "10000"})
        phone = new_phone()
        seed_chama(env, members=[(phone, "Slow Redis", "member")])
        c.wait_health(200)
        s = AT(c, phone)
        end, screen = s.dial()
        assert "Enter your PIN" in screen, screen
        t0 = time.monotonic()
        end, screen = s.send(PIN)
        login = time.monotonic() - t0
        assert "Main menu" in screen, screen
        menus = []
        for inp in ("5", "0", "3", "0"):
            t0 = time.monotonic()
            end, screen = s.send(inp)
            menus.append(time.monotonic() - t0)
            assert not end, screen
        d = _SlowRedis.DELAY
        assert all(d * 0.9 <= m < d * 1.7 for m in menus), menus
        assert login >= 2 * d * 0.9, login
        c.stop()
    finally:
        proxy.stop()
