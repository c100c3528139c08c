"""Dual control (issue 10, point 5): one approval mechanism.  A request
needs N distinct officials of its chama (the constitution's approvals_count,
default 2), never the one who asked, never the one it is for; officials
decide with their PIN on USSD (Officials > Requests to approve) or by SMS
(APPROVE/KUBALI, REJECT/KATAA <code> <PIN>); undecided requests expire by
the job; a large payout waits in the members' veto window, where STOP
<code> <PIN> from enough members freezes it for the officials to decide
again.  Reversing a member's payment goes through it.

The SQL-level tests stand in for a kind's function with one the test
defines in its own database (the payout's is helper F's), which records
each call, so "ran once" is counted, not assumed."""
import random
import re
import time

from approval_fixtures import approve, open_code, sms, vote_sql
from notify_fixtures import outbox_texts
from test_ussd import AT, PIN, new_phone, pin_hash

CODE = re.compile(r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$")

TEST_KINDS = """
DROP FUNCTION IF EXISTS payout_on_approval(bigint, bigint, text, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS cash_payout_on_approval(bigint, bigint, text, timestamptz) CASCADE;
CREATE TABLE test_kind_calls (kind text, approval_id bigint, ref_id bigint, decision text, at timestamptz);
CREATE FUNCTION payout_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text, p_at timestamptz)
RETURNS text LANGUAGE sql AS $$
    INSERT INTO test_kind_calls VALUES ('payout', p_approval_id, p_ref_id, p_decision, p_at) RETURNING 'ok_test_ran'
$$;
CREATE FUNCTION cash_payout_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text, p_at timestamptz)
RETURNS text LANGUAGE sql AS $$
    INSERT INTO test_kind_calls VALUES ('cash_payout', p_approval_id, p_ref_id, p_decision, p_at)
    RETURNING 'ok_test_ran'
$$;
"""


class Chama:
    """A fresh database with one chama: chairperson, treasurer, secretary
    and three members, each with the PIN (phone, user id by role/name)."""

    def __init__(self, env, name, constitution="{}", langs=None):
        self.env = env
        self.url = env.fresh_db("chamasmart_appr_" + name)
        env.migrate(self.url)
        env.psql(TEST_KINDS, self.url)
        (self.cid,), = self.q("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency, "
                              "constitution) VALUES ('Umoja %s', 'mixed', 50000, 'monthly', '%s') RETURNING id"
                              % (name, constitution))
        self.name = "Umoja " + name
        self.phone, self.uid = {}, {}
        for who, role in (("chair", "chairperson"), ("treasurer", "treasurer"), ("secretary", "secretary"),
                          ("m1", "member"), ("m2", "member"), ("m3", "member")):
            self.phone[who] = new_phone()
            (self.uid[who],), = self.q(
                "INSERT INTO users (phone, full_name, preferred_language, pin_hash, phone_verified) VALUES "
                "('%s', '%s', '%s', '%s', true) RETURNING id"
                % (self.phone[who], who.title(), (langs or {}).get(who, "en"), pin_hash(env)))
            self.q("INSERT INTO memberships (user_id, chama_id, role) VALUES (%s, %s, '%s') RETURNING id"
                   % (self.uid[who], self.cid, role))

    def q(self, sql):
        return self.env.psql(sql, self.url)

    def open(self, kind="payout", ref=None, cents=150000, maker="treasurer", beneficiary="m1", at="now()"):
        ref = ref or random.randrange(10 ** 9)
        row, = self.q("SELECT outcome, approval_id, code FROM approval_open(%s, '%s', %s, %s, %s, %s, "
                         "'{\"member\": \"M One\", \"memo\": \"School fees\"}', 'ussd', %s)"
                         % (self.cid, kind, ref, cents, self.uid[maker],
                            self.uid[beneficiary] if beneficiary else "NULL", at))
        return row[0], row[1], row[2]

    def vote(self, who, code, vote="approve", at="now()"):
        return vote_sql(self.env, self.url, self.uid[who], code, vote, at)

    def calls(self, aid):
        return self.q("SELECT kind, decision FROM test_kind_calls WHERE approval_id = %s ORDER BY at" % aid)

    def templates(self, who):
        """The approval messages who got (the daemon's reminder job may send others)."""
        return [r[0] for r in self.q("SELECT template FROM notifications WHERE user_id = %s AND template LIKE "
                                     "'sms\\_approval\\_%%' ORDER BY id" % self.uid[who])]


def test_approvals_two_distinct_officials_run_the_kind_once(env):
    ch = Chama(env, "rule")
    outcome, aid, code = ch.open()
    assert outcome == "ok_approval_opened" and CODE.match(code), (outcome, code)
    assert ch.q("SELECT status, required, round FROM approvals WHERE id = %s" % aid) == [["pending", "2", "1"]]
    # the two officials who may decide are told, with the code; nobody else
    for who in ("chair", "secretary"):
        assert ch.templates(who) == ["sms_approval_request"], who
        assert code in outbox_texts(env, ch.url, "user_id = %s" % ch.uid[who])[0]
    assert all(ch.templates(w) == [] for w in ("treasurer", "m1", "m2"))
    # the maker, the beneficiary, a plain member and a stranger cannot approve
    assert ch.vote("treasurer", code)["outcome"] == "err_own_request"
    assert ch.vote("m2", code)["outcome"] == "err_not_official"
    stranger = env.psql("INSERT INTO users (phone, full_name) VALUES ('%s', 'Stranger') RETURNING id" % new_phone(),
                        ch.url)[0][0]
    assert vote_sql(env, ch.url, stranger, code)["outcome"] == "err_no_approval"
    # the same official twice counts once
    assert ch.vote("chair", code.lower()) == dict(outcome="ok_vote_counted", id=aid, status="pending", yes="1",
                                                    no="0", need="2")
    assert ch.vote("chair", code)["outcome"] == "err_already_voted"
    assert ch.q("SELECT count(*) FROM approval_votes WHERE approval_id = %s" % aid) == [["1"]]
    assert ch.calls(aid) == []
    # the maker hears each decision
    assert ch.templates("treasurer") == ["sms_approval_voted"]
    assert outbox_texts(env, ch.url, "user_id = %s" % ch.uid["treasurer"]) == \
        ["ChamaSmart %s: Chair approved your request %s. Approvals: 1 of 2." % (ch.name, code)]
    # the second official: the kind's function runs, once
    v = ch.vote("secretary", code)
    assert v["outcome"] == "ok_approval_done" and v["status"] == "executed", v
    assert ch.calls(aid) == [["payout", "approved"]]
    assert ch.q("SELECT status, result, decided_at IS NOT NULL FROM approvals WHERE id = %s" % aid) == \
        [["executed", "ok_test_ran", "t"]]
    assert ch.vote("secretary", code)["outcome"] == "err_approval_closed"
    assert ch.vote("chair", code)["outcome"] == "err_approval_closed"
    assert ch.calls(aid) == [["payout", "approved"]]
    assert ch.templates("treasurer") == ["sms_approval_voted", "sms_approval_approved"]
    # every step is in the audit trail, by whom
    assert ch.q("SELECT entity_type, action FROM audit_logs WHERE entity_type LIKE 'approval%%' ORDER BY id") == \
        [["approvals", "insert"], ["approval_votes", "insert"], ["approval_votes", "insert"], ["approvals", "update"],
         ["approvals", "update"]]
    # a second request for the same thing while one is open is that one
    outcome, aid2, code2 = ch.open(ref=777)
    assert ch.open(ref=777) == ("err_approval_pending", aid2, code2)


def test_approvals_beneficiary_too_few_officials_and_the_chamas_rule(env):
    ch = Chama(env, "few")
    # a payout to the secretary asked by the treasurer: only the chair is
    # left to decide, and the rule needs two: refused at opening
    assert ch.open(beneficiary="secretary") == ("err_approvers_too_few", "", "")
    assert ch.q("SELECT count(*) FROM approvals") == [["0"]]
    # a chama whose constitution asks for one approval
    ch.q("UPDATE chamas SET constitution = '{\"approvals_count\": 1}' WHERE id = %s" % ch.cid)
    outcome, aid, code = ch.open(beneficiary="secretary")
    assert outcome == "ok_approval_opened", outcome
    assert ch.q("SELECT required FROM approvals WHERE id = %s" % aid) == [["1"]]
    assert ch.templates("secretary") == [] and ch.templates("chair") == ["sms_approval_request"]
    assert ch.vote("secretary", code)["outcome"] == "err_beneficiary"
    assert ch.vote("chair", code)["outcome"] == "ok_approval_done"
    assert ch.calls(aid) == [["payout", "approved"]]
    # an unknown kind, or a kind without its function, is a bug: it raises
    assert "no approval kind" in env.psql_error(
        "SELECT * FROM approval_open(%s, 'welfare', 1, 1, %s, NULL, '{}', 'ussd', now())" % (ch.cid, ch.uid["chair"]),
        ch.url)
    ch.q("DROP FUNCTION cash_payout_on_approval(bigint, bigint, text, timestamptz)")
    assert "has no function" in env.psql_error(
        "SELECT * FROM approval_open(%s, 'cash_payout', 1, 1, %s, NULL, '{}', 'ussd', now())"
        % (ch.cid, ch.uid["chair"]), ch.url)


def test_approvals_reject(env):
    ch = Chama(env, "reject")
    # three officials, the maker out: both others must approve, so the
    # first rejection decides
    outcome, aid, code = ch.open()
    v = ch.vote("chair", code, "reject")
    assert v["outcome"] == "ok_approval_rejected" and v["status"] == "rejected", v
    assert ch.calls(aid) == [["payout", "rejected"]]
    assert ch.vote("secretary", code)["outcome"] == "err_approval_closed"
    assert ch.calls(aid) == [["payout", "rejected"]]
    assert ch.templates("treasurer") == ["sms_approval_rejected"]
    assert ch.templates("m1") == ["sms_approval_rejected_for"]
    # a rule that a rejection leaves reachable: counted, and the request
    # still passes
    ch.q("UPDATE chamas SET constitution = '{\"approvals_count\": 1}' WHERE id = %s" % ch.cid)
    outcome, aid, code = ch.open()
    assert ch.vote("chair", code, "reject")["outcome"] == "ok_reject_counted"
    assert ch.calls(aid) == []
    assert ch.vote("secretary", code)["outcome"] == "ok_approval_done"
    assert ch.calls(aid) == [["payout", "approved"]]


def test_approvals_expire_by_the_job_with_its_clock(env):
    ch = Chama(env, "expire")
    outcome, aid, code = ch.open(at="'2026-12-01 08:00+03'")
    ch.vote("chair", code, at="'2026-12-01 09:00+03'")
    # the function the job calls: not before expire_hours, then once
    assert ch.q("SELECT approvals_expire('2026-12-04 07:59+03', 72)") == [["0"]]
    # the daemon's job, its clock set past the 72 hours
    c = env.chamad({"CHAMAD_DATABASE_URL": ch.url, "CHAMAD_JOBS_NOW": "2026-12-04 08:01+03",
                    "CHAMAD_JOBS_EVERY_S": "1"})
    deadline = time.monotonic() + 15
    while ch.q("SELECT status FROM approvals WHERE id = %s" % aid) != [["expired"]]:
        assert time.monotonic() < deadline, ch.q("SELECT status FROM approvals")
        time.sleep(0.1)
    c.stop()
    assert ch.calls(aid) == [["payout", "expired"]]
    assert ch.q("SELECT decided_at = '2026-12-04 08:01+03' FROM approvals WHERE id = %s" % aid) == [["t"]]
    assert ch.templates("treasurer") == ["sms_approval_voted", "sms_approval_expired"]
    assert ch.templates("m1") == ["sms_approval_expired_for"]
    assert ch.vote("secretary", code)["outcome"] == "err_approval_closed"
    assert ch.q("SELECT approvals_expire('2026-12-09 08:00+03', 72)") == [["0"]]
    assert ch.calls(aid) == [["payout", "expired"]]


def test_approvals_members_veto_window(env):
    rule = '{"veto_threshold_cents": 1000000, "veto_hours": 24, "veto_count": 2}'
    ch = Chama(env, "veto", constitution=rule)
    t0 = "'2026-12-01 08:00+03'"
    # at or under the threshold: no window
    outcome, aid, code = ch.open(cents=1000000, at=t0)
    ch.vote("chair", code, at=t0)
    assert ch.vote("secretary", code, at=t0)["outcome"] == "ok_approval_done"
    # above it: approved, then waiting; every member gets the code
    outcome, aid, code = ch.open(cents=1000100, at=t0)
    ch.vote("chair", code, at=t0)
    v = ch.vote("secretary", code, at=t0)
    assert v["outcome"] == "ok_approval_waiting" and v["status"] == "waiting", v
    assert ch.calls(aid) == []
    assert ch.q("SELECT veto_until = '2026-12-02 08:00+03', veto_count FROM approvals WHERE id = %s" % aid) == \
        [["t", "2"]]
    veto = outbox_texts(env, ch.url, "template = 'sms_approval_veto'")
    assert len(veto) == 6 and all(("STOP %s PIN" % code) in t for t in veto), veto
    # one STOP is counted, twice is once; the second member's freezes it
    r, = ch.q("SELECT outcome, vetoes, needed FROM approval_veto(%s, '%s', 'sms', '2026-12-01 10:00+03')"
                 % (ch.uid["m2"], code))
    assert r == ["ok_veto_counted", "1", "2"], r
    assert ch.q("SELECT outcome FROM approval_veto(%s, '%s', 'sms', '2026-12-01 10:01+03')" % (ch.uid["m2"], code)) \
        == [["err_already_vetoed"]]
    assert ch.q("SELECT outcome FROM approval_veto(%s, '%s', 'sms', '2026-12-01 10:02+03')" % (ch.uid["m3"], code)) \
        == [["ok_veto_frozen"]]
    assert ch.q("SELECT status, round, frozen_at IS NOT NULL, veto_until FROM approvals WHERE id = %s" % aid) == \
        [["pending", "2", "t", ""]]
    # the officials (and the one who asked) are told to decide again; the
    # window's job does not run a frozen request
    for who in ("chair", "secretary", "treasurer"):
        assert ch.templates(who)[-1] == "sms_approval_frozen", who
    assert ch.q("SELECT approvals_expire('2026-12-02 09:00+03', 72)") == [["0"]]
    assert ch.calls(aid) == []
    # their earlier votes no longer count: two approvals again, and this
    # decision is final (no second window)
    assert ch.vote("chair", code, at="'2026-12-02 10:00+03'")["outcome"] == "ok_vote_counted"
    assert ch.vote("secretary", code, at="'2026-12-02 10:00+03'")["outcome"] == "ok_approval_done"
    assert ch.calls(aid) == [["payout", "approved"]]
    # not frozen: when the window closes the job carries it out, once
    outcome, aid, code = ch.open(kind="cash_payout", cents=2000000, at=t0)
    ch.vote("chair", code, at=t0)
    assert ch.vote("secretary", code, at=t0)["outcome"] == "ok_approval_waiting"
    ch.q("SELECT approval_veto(%s, '%s', 'sms', '2026-12-01 12:00+03')" % (ch.uid["m1"], code))
    assert ch.q("SELECT approvals_expire('2026-12-02 07:59+03', 72)") == [["0"]]
    assert ch.calls(aid) == []
    assert ch.q("SELECT approvals_expire('2026-12-02 08:00+03', 72)") == [["1"]]
    assert ch.calls(aid) == [["cash_payout", "approved"]]
    assert ch.q("SELECT status FROM approvals WHERE id = %s" % aid) == [["executed"]]
    # too late to stop
    assert ch.q("SELECT outcome FROM approval_veto(%s, '%s', 'sms', '2026-12-02 09:00+03')" % (ch.uid["m2"], code)) \
        == [["err_no_veto"]]
    assert ch.q("SELECT approvals_expire('2026-12-03 08:00+03', 72)") == [["0"]]
    assert ch.calls(aid) == [["cash_payout", "approved"]]


def cash(ch, who="m1", cents=150000):
    """A cash payment recorded for the member; its contribution id."""
    key = "t:%d" % random.randrange(10 ** 12)
    ch.q("SELECT post_contribution(%s, %s, %d, 'savings', 'cash', NULL, '%s', %s, 'ussd', NULL, 't', NULL)"
         % (ch.cid, ch.uid[who], cents, key, ch.uid["treasurer"]))
    return ch.q("SELECT ref_id FROM journal_entries WHERE idempotency_key = '%s'" % key)[0][0]


def savings(ch, who="m1"):
    return int(ch.q("SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'member_savings' "
                    "AND user_id = %s" % (ch.cid, ch.uid[who]))[0][0])


def test_approvals_payment_reversal_needs_two_officials_ussd_en_sw(env):
    """The treasurer alone no longer reverses a payment: on USSD the
    reversal becomes a request; the chairperson (English) and the secretary
    (Swahili) find it under Officials > Requests to approve, see what it is,
    approve it with their PIN, and only then is it reversed, once."""
    ch = Chama(env, "ussd", langs={"secretary": "sw"})
    k = cash(ch)
    assert savings(ch) == 150000
    c = env.chamad({"CHAMAD_DATABASE_URL": ch.url})
    s = AT(c, ch.phone["treasurer"])
    s.login()
    for inp in ("10", "4", "3"):
        end, screen = s.send(inp)
    assert "1. " in screen and "KES 1500 M1" in screen, screen
    s.send("1")
    s.send("counted twice")
    end, screen = s.send("1")
    code = open_code(env, ch.url, "payment_reverse", k)
    assert end and screen == ("Request %s sent to the other officials. Once they approve, the payment is reversed "
                              "and the member told by SMS." % code), screen
    # nothing moved yet
    assert ch.q("SELECT status FROM contributions WHERE id = %s" % k) == [["confirmed"]] and savings(ch) == 150000
    # the treasurer cannot approve their own request: it is not in their list
    s = AT(c, ch.phone["treasurer"])
    s.login()
    s.send("10")
    end, screen = s.send("5")
    assert screen.startswith("No requests waiting for you."), screen
    # the chairperson, in English: the list, the details, a wrong PIN, the PIN
    s = AT(c, ch.phone["chair"])
    s.login()
    end, screen = s.send("10")
    assert "5. Requests to approve" in screen, screen
    end, screen = s.send("5")
    assert screen.startswith("Requests to approve:") and ("1. %s KES 1,500 Treasurer" % code) in screen, screen
    end, screen = s.send("1")
    assert screen.startswith("Reverse M1's payment of ") and ": counted twice" in screen, screen
    assert "KES 1,500 by Treasurer, for M1" in screen and "Yes 0/2, no 0" in screen and "1. Approve" in screen \
        and "2. Reject" in screen, screen
    end, screen = s.send("1")
    assert not end and screen.startswith("%s: enter your PIN to confirm:" % code), screen
    end, screen = s.send("0000")
    assert not end and screen.startswith("Wrong PIN, 2 left."), screen
    assert ch.q("SELECT count(*) FROM approval_votes") == [["0"]]
    end, screen = s.send(PIN)
    assert end and screen == "Request %s: Counted: 1 of 2." % code, screen
    assert ch.q("SELECT status FROM contributions WHERE id = %s" % k) == [["confirmed"]] and savings(ch) == 150000
    # the secretary, in Swahili
    s = AT(c, ch.phone["secretary"])
    end, screen = s.dial()
    end, screen = s.send(PIN)
    end, screen = s.send("10")
    assert "5. Maombi ya kuidhinisha" in screen, screen
    end, screen = s.send("5")
    assert screen.startswith("Maombi ya kuidhinisha:") and code in screen, screen
    end, screen = s.send("1")
    assert screen.startswith("Rudisha malipo ya M1 ya ") and "Ndiyo 1/2, hapana 0" in screen \
        and "1. Kubali" in screen, screen
    s.send("1")
    end, screen = s.send(PIN)
    assert end and screen == "Ombi %s: Imekubaliwa na kutekelezwa." % code, screen
    # reversed, once, by the books' own operation, with the member's notice
    assert ch.q("SELECT status, reversal_reason FROM contributions WHERE id = %s" % k) == \
        [["reversed", "counted twice"]]
    assert savings(ch) == 0
    assert ch.q("SELECT count(*) FROM journal_entries WHERE kind = 'contribution_reversal'") == [["1"]]
    assert "reversed a payment recorded for you: counted twice" in \
        outbox_texts(env, ch.url, "user_id = %s AND kind = 'reversal'" % ch.uid["m1"])[0]
    assert ch.q("SELECT status, result FROM approvals WHERE ref_id = %s" % k) == [["executed", "ok_reversed"]]
    # asked again: nothing left to reverse
    (r,), = ch.q("SELECT outcome FROM payment_reverse_request(%s, %s, 'again', %s, 'ussd', NULL, 't', "
                 "'sms_reversed', now())" % (ch.cid, k, ch.uid["chair"]))
    assert r == "err_already_reversed", r
    c.stop()


def replies(env, ch, who):
    return outbox_texts(env, ch.url, "kind = 'sms_reply' AND recipient = '%s'" % ch.phone[who])


def test_approvals_by_sms_with_the_pin(env):
    ch = Chama(env, "sms", langs={"secretary": "sw"})
    c = env.chamad({"CHAMAD_DATABASE_URL": ch.url})
    outcome, aid, code = ch.open()
    # a wrong PIN decides nothing and counts as a miss
    approve(c, ch.phone["chair"], code, pin="0000")
    assert replies(env, ch, "chair")[-1].startswith("Wrong PIN"), replies(env, ch, "chair")
    assert ch.q("SELECT count(*) FROM approval_votes") == [["0"]]
    # the PIN never reaches the stored message, wherever it stands
    assert ch.q("SELECT text_masked FROM sms_inbound ORDER BY id DESC LIMIT 1") == [["APPROVE %s ****" % code]]
    # APPROVE with the PIN: counted; the maker cannot
    approve(c, ch.phone["chair"], code.lower())
    assert replies(env, ch, "chair")[-1] == "ChamaSmart: your approval of %s is counted: 1 of 2." % code.lower()
    approve(c, ch.phone["treasurer"], code)
    assert replies(env, ch, "treasurer")[-1] == "ChamaSmart: you asked for %s, so other officials decide it." % code
    # a plain member is refused
    approve(c, ch.phone["m2"], code)
    assert replies(env, ch, "m2")[-1] == "ChamaSmart: only the chama's officials decide requests."
    # KUBALI in Swahili: the second approval carries it out
    approve(c, ch.phone["secretary"], code, word="KUBALI")
    assert replies(env, ch, "secretary")[-1] == "ChamaSmart: %s imeidhinishwa na kutekelezwa." % code
    assert ch.calls(aid) == [["payout", "approved"]]
    assert ch.q("SELECT channel FROM approval_votes WHERE approval_id = %s" % aid) == [["sms"], ["sms"]]
    # REJECT and KATAA
    outcome, aid, code = ch.open()
    approve(c, ch.phone["secretary"], code, word="KATAA")
    assert replies(env, ch, "secretary")[-1] == "ChamaSmart: %s imekataliwa." % code
    assert ch.calls(aid) == [["payout", "rejected"]]
    approve(c, ch.phone["chair"], code, word="REJECT")
    assert replies(env, ch, "chair")[-1] == "ChamaSmart: request %s is already decided." % code
    approve(c, ch.phone["chair"], "ZZZZZZ")
    assert replies(env, ch, "chair")[-1] == "ChamaSmart: no open request ZZZZZZ in your chamas."
    sms(c, ch.phone["chair"], "APPROVE %s" % PIN)
    assert replies(env, ch, "chair")[-1].startswith("ChamaSmart: send APPROVE CODE PIN")
    # STOP in a veto window, with the PIN
    ch.q("UPDATE chamas SET constitution = '{\"veto_threshold_cents\": 0, \"veto_count\": 2}' WHERE id = %s" % ch.cid)
    outcome, aid, code = ch.open()
    approve(c, ch.phone["chair"], code)
    approve(c, ch.phone["secretary"], code)
    assert ch.q("SELECT status FROM approvals WHERE id = %s" % aid) == [["waiting"]]
    sms(c, ch.phone["m2"], "STOP %s 0000" % code)
    assert ch.q("SELECT count(*) FROM approval_vetoes") == [["0"]]
    sms(c, ch.phone["m2"], "STOP %s %s" % (code, PIN))
    assert replies(env, ch, "m2")[-1] == \
        "ChamaSmart: your STOP for %s is counted: 1 of 2 needed to hold it." % code
    sms(c, ch.phone["m3"], "SIMAMISHA %s %s" % (code, PIN))
    assert replies(env, ch, "m3")[-1] == "ChamaSmart: %s is held. The officials will decide again." % code
    assert ch.q("SELECT status, round FROM approvals WHERE id = %s" % aid) == [["pending", "2"]]
    assert ch.calls(aid) == []
    c.stop()
