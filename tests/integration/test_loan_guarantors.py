"""Loan guarantors (issue 11, point 2, and the release of holds point 5
uses): a pledge is a hold on the guarantor's free savings (savings less the
holds for other loans) and never exceeds them, also when two pledges race
for the same savings; the applicant names guarantors by member number or
phone, repeated until covered; a guarantor answers YES/NDIO or NO/HAPANA
<code> <PIN> by SMS or from USSD (Requests for me) after seeing the
borrower's record; a decline or a timeout lets the applicant name another;
GUAR/DHAMANA and My guarantees say what is guaranteed, released, at risk;
the holds are released pro rata to principal repaid, to the cent.

Loans are rows of the loans table (status 'applied', or 'active' for the
release), inserted here as the application (helper A) and the disbursement
(helper C) would leave them; the functions under test are
schema/72_loan_guarantors.sql's."""
import random
import re
import subprocess
import threading
import time

from approval_fixtures import sms
from notify_fixtures import outbox_texts
from test_ussd import AT, PIN, new_phone, pin_hash

CODE = re.compile(r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$")
ALIVE = "('closed', 'cancelled', 'rejected', 'written_off')"


class Chama:
    """A fresh database with one chama and its members (all with the PIN):
    name -> user id, phone, member number; savings in KES by cash."""

    def __init__(self, env, name, members, constitution="{}", langs=None):
        self.env = env
        self.url = env.fresh_db("chamasmart_guar_" + name)
        env.migrate(self.url)
        (self.cid,), = self.q("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency, "
                              "constitution) VALUES ('Umoja %s', 'mixed', 50000, 'monthly', '%s') RETURNING id"
                              % (name, constitution))
        self.name = "Umoja " + name
        self.uid, self.phone, self.number = {}, {}, {}
        for i, who in enumerate(members):
            self.phone[who] = new_phone()
            (self.uid[who],), = self.q(
                "INSERT INTO users (phone, full_name, preferred_language, pin_hash, phone_verified) VALUES "
                "('%s', '%s', '%s', '%s', true) RETURNING id"
                % (self.phone[who], who.title(), (langs or {}).get(who, "en"), pin_hash(env)))
            (self.number[who],), = self.q(
                "INSERT INTO memberships (user_id, chama_id, role, joined_at) VALUES (%s, %s, '%s', "
                "now() - interval '1 year') RETURNING member_number"
                % (self.uid[who], self.cid, "chairperson" if i == 0 else "member"))

    def q(self, sql):
        return self.env.psql(sql, self.url)

    def save(self, who, kes):
        self.q("SELECT post_contribution(%s, %s, %d, 'savings', 'cash', NULL, 'save:%s:%s', NULL, 'admin', NULL, "
               "'test', NULL)" % (self.cid, self.uid[who], kes * 100, who, random.getrandbits(48)))

    def loan(self, who, kes, status="applied", terms="{}"):
        disbursed = kes * 100 if status not in ("applied", "queued", "under_review", "approved") else 0
        (lid,), = self.q("INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_method, "
                         "term_periods, repayment_frequency, status, amount_disbursed_cents, terms, product_key) "
                         "VALUES (%s, %s, %d, 100, 'flat', 6, 'monthly', '%s', %d, '%s', 'standard') RETURNING id"
                         % (self.cid, self.uid[who], kes * 100, status, disbursed, terms))
        return lid

    def go(self, lid, *path):
        """Moves the loan along its lifecycle (A's trigger holds each move),
        as the approval and the payout (helper C) would: active is paid."""
        for st in path:
            self.q("UPDATE loans SET status = '%s'%s WHERE id = %s"
                   % (st, ", amount_disbursed_cents = principal_cents" if st == "active" else "", lid))

    def add(self, lid, applicant, who, kes, at="now()"):
        """loan_guarantor_add: (outcome, guarantor id, code, still to ask, name)."""
        (row,) = self.q("SELECT outcome, guarantor_id, code, cover_needed_cents, name FROM loan_guarantor_add("
                        "%s, %s, '%s', %d, 'ussd', %s)" % (lid, self.uid[applicant], who, kes * 100, at))
        return row

    def answer(self, who, code, yes=True, at="now()"):
        (row,) = self.q("SELECT outcome, pledged_cents, free_cents, cover_needed_cents FROM loan_guarantor_answer("
                        "%s, '%s', %s, 'sms', %s)" % (self.uid[who], code, "true" if yes else "false", at))
        return row

    def free(self, who):
        return int(self.q("SELECT member_free_savings_cents(%s, %s)" % (self.cid, self.uid[who]))[0][0])

    def pledges(self, lid):
        """[name, status, pledged, released] of the loan's rows, by id."""
        names = {str(v): k for k, v in self.uid.items()}
        return [[names[r[0]]] + r[1:] for r in self.q(
            "SELECT guarantor_user_id, status, pledged_cents, released_cents FROM loan_guarantors "
            "WHERE loan_id = %s ORDER BY id" % lid)]

    def templates(self, who, like="sms\\_loan\\_guar\\_%%"):
        return [r[0] for r in self.q("SELECT template FROM notifications WHERE user_id = %s AND template LIKE '%s' "
                                     "ORDER BY id" % (self.uid[who], like))]

    def texts(self, who, template):
        return outbox_texts(self.env, self.url, "user_id = %s AND template = '%s'" % (self.uid[who], template))


def invariants(ch):
    """Holds never above savings (free savings never below zero), pledges
    never released or called beyond themselves, for every member: one
    statement."""
    (row,) = ch.q("SELECT (SELECT count(*) FROM memberships m WHERE m.chama_id = %s "
                  "AND member_free_savings_cents(m.chama_id, m.user_id) < 0), "
                  "(SELECT count(*) FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id WHERE l.chama_id = %s "
                  "AND g.pledged_cents < g.released_cents + g.called_cents)" % (ch.cid, ch.cid))
    assert row == ["0", "0"], row


def test_loan_guar_over_pledge_refused_then_what_fits(env):
    """A guarantor cannot pledge more than their free savings; a second
    loan sees the first one's hold; the refused pledge stays open."""
    ch = Chama(env, "over", ["amina", "baraka", "chege", "dora"])
    ch.save("dora", 5000)
    l1 = ch.loan("amina", 20000)
    o, gid, code, need, name = ch.add(l1, "amina", ch.number["dora"], 6000)
    assert o == "ok_loan_guar_asked" and CODE.match(code) and name == "Dora" and need == "1400000", (o, code, need)
    # the request SMS names the borrower, the amount, the code and how to answer
    assert ch.texts("dora", "sms_loan_guar_request") == [
        "ChamaSmart %s: Amina asks you to guarantee KES 6,000 of a KES 20,000 loan. Reply YES %s PIN or NO %s PIN "
        "within 48h." % (ch.name, code, code)]
    # 6,000 on 5,000 of savings: refused, nothing held, still pending
    assert ch.answer("dora", code) == ["err_loan_guar_short", "600000", "500000", "2000000"]
    assert ch.pledges(l1) == [["dora", "pending", "600000", "0"]] and ch.free("dora") == 500000
    # another loan asks for 3,000: it fits, and is held
    l2 = ch.loan("baraka", 10000)
    o, _, code2, _, _ = ch.add(l2, "baraka", ch.phone["dora"], 3000)
    assert ch.answer("dora", code2)[:3] == ["ok_loan_guar_accepted", "300000", "200000"]
    assert ch.free("dora") == 200000
    # a third for 2,000.01 no longer fits in what is left
    l3 = ch.loan("chege", 10000)
    (o,), = ch.q("SELECT outcome FROM loan_guarantor_add(%s, %s, '%s', 200001, 'ussd', now())"
                 % (l3, ch.uid["chege"], ch.number["dora"]))
    code3 = ch.q("SELECT code FROM loan_guarantors WHERE loan_id = %s" % l3)[0][0]
    assert ch.answer("dora", code3)[0] == "err_loan_guar_short"
    # the savings grow: now it fits
    ch.save("dora", 1)
    assert ch.answer("dora", code3)[0] == "ok_loan_guar_accepted" and ch.free("dora") == 99
    # the first request is still short (5,001 - 3,000 - 2,000.01 free)
    assert ch.answer("dora", code)[0] == "err_loan_guar_short"
    invariants(ch)
    # every change of a pledge is in the audit trail
    assert ch.q("SELECT count(*) FROM audit_logs WHERE entity_type = 'loan_guarantors'")[0][0] == "5"


def test_loan_guar_two_pledges_race_for_the_same_savings(env):
    """Two acceptances at once on 5,000 of savings, 3,000 each: one is held,
    the other waits for it and is refused (never both)."""
    ch = Chama(env, "race", ["amina", "baraka", "dora"])
    ch.save("dora", 5000)
    codes = []
    for who in ("amina", "baraka"):
        lid = ch.loan(who, 10000)
        codes.append(ch.add(lid, who, ch.number["dora"], 3000)[2])
    first = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", ch.url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first.stdin.write("BEGIN;\nSELECT outcome FROM loan_guarantor_answer(%s, '%s', true, 'sms', now());\n"
                      "SELECT pg_sleep(1.5);\nCOMMIT;\n" % (ch.uid["dora"], codes[0]))
    first.stdin.flush()
    time.sleep(0.5)
    t0 = time.monotonic()
    second = ch.answer("dora", codes[1])
    waited = time.monotonic() - t0
    out, err = first.communicate(timeout=20)
    assert first.returncode == 0, err
    assert out.split() == ["ok_loan_guar_accepted"], out
    assert second[0] == "err_loan_guar_short" and second[2] == "200000", second
    assert waited > 0.5, "the second answer did not wait for the first (%.2fs)" % waited
    assert ch.q("SELECT status, count(*) FROM loan_guarantors GROUP BY status ORDER BY status") == \
        [["accepted", "1"], ["pending", "1"]]
    invariants(ch)


def test_loan_guar_decline_timeout_then_another(env):
    """NO tells the applicant they can name another; a request unanswered in
    loan_guarantor_hours expires (the job), the applicant told; a declined or
    expired guarantor may be asked again, and someone else can be named."""
    ch = Chama(env, "decline", ["amina", "baraka", "chege", "dora"], constitution='{"loan_guarantor_hours": 24}',
               langs={"amina": "sw"})
    for who in ("baraka", "chege", "dora"):
        ch.save(who, 10000)
    lid = ch.loan("amina", 9000)
    at = "'2027-03-01 09:00:00+03'"
    o, gid, code, need, _ = ch.add(lid, "amina", ch.number["baraka"], 4000, at)
    assert need == "500000"
    assert ch.q("SELECT expires_at = %s::timestamptz + interval '24 hours' FROM loan_guarantors WHERE id = %s"
                % (at, gid)) == [["t"]]
    assert ch.answer("baraka", code, yes=False, at=at)[0] == "ok_loan_guar_declined"
    assert ch.answer("baraka", code, at=at)[0] == "err_loan_guar_answered"
    # the applicant (Swahili) hears it and that they can name another
    assert ch.texts("amina", "sms_loan_guar_declined") == [
        "ChamaSmart %s: Baraka amekataa kudhamini KES 4,000. Bado: KES 9,000. Taja mwingine kwa Mikopo > "
        "Dhamana zangu." % ch.name]
    # the still-to-ask amount is back; Chege is asked and never answers
    o, gid2, code2, need, _ = ch.add(lid, "amina", ch.number["chege"], 9000, at)
    assert o == "ok_loan_guar_asked" and need == "0"
    (n,), = ch.q("SELECT loan_guarantors_expire(%s::timestamptz + interval '23 hours')" % at)
    assert n == "0"
    (n,), = ch.q("SELECT loan_guarantors_expire(%s::timestamptz + interval '24 hours')" % at)
    assert n == "1" and ch.pledges(lid)[1] == ["chege", "expired", "900000", "0"]
    assert ch.texts("amina", "sms_loan_guar_expired") == [
        "ChamaSmart %s: Chege hakujibu kwa wakati kwa KES 9,000. Bado: KES 9,000. Taja mwingine kwa Mikopo > "
        "Dhamana zangu." % ch.name]
    assert ch.answer("chege", code2, at=at)[0] == "err_loan_guar_expired"
    # an answer past the time expires it even before the job comes by
    o, gid3, code3, _, _ = ch.add(lid, "amina", ch.number["dora"], 2000, at)
    assert ch.answer("dora", code3, at="%s::timestamptz + interval '25 hours'" % at)[0] == "err_loan_guar_expired"
    assert ch.templates("amina") == ["sms_loan_guar_declined", "sms_loan_guar_expired", "sms_loan_guar_expired"]
    # Baraka asked again on his row, with a new code: he accepts this time
    o, gid4, code4, _, _ = ch.add(lid, "amina", ch.phone["baraka"], 4000, at)
    assert o == "ok_loan_guar_asked" and gid4 == gid and code4 != code
    assert ch.answer("baraka", code4, at=at)[:2] == ["ok_loan_guar_accepted", "400000"]
    assert ch.templates("amina")[-1] == "sms_loan_guar_accepted"
    assert ch.texts("amina", "sms_loan_guar_accepted") == [
        "ChamaSmart %s: Baraka amedhamini KES 4,000 ya mkopo wako. Bado kudhaminiwa: KES 5,000." % ch.name]
    assert ch.q("SELECT loan_cover_needed_cents(%s), loan_cover_complete(%s)" % (lid, lid)) == [["500000", "f"]]
    invariants(ch)


def test_loan_guar_naming_rules(env):
    """Who may be named, and how much: an active member of the same chama
    (by number or phone), never the borrower, once, at most max_count,
    never more than the loan still needs; the borrower's own cover first."""
    ch = Chama(env, "rules", ["amina", "baraka", "chege", "dora", "esther"])
    for who in ("amina", "baraka", "chege", "dora", "esther"):
        ch.save(who, 10000)
    # a member of another chama (same database) is no one here
    (zawadi,), = ch.q("INSERT INTO users (phone, full_name) VALUES ('%s', 'Zawadi') RETURNING id" % new_phone())
    ch.q("WITH c AS (INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) VALUES "
         "('Other', 'mixed', 100, 'monthly') RETURNING id) INSERT INTO memberships (user_id, chama_id) "
         "SELECT %s, id FROM c" % zawadi)
    terms = '{"guarantors": {"self_cover_bp": 5000, "max_count": 2, "min_count": 1}}'
    lid = ch.loan("amina", 20000, terms=terms)
    # the borrower's own cover: half of her free savings, accepted at once
    assert ch.q("SELECT loan_guarantor_self(%s, now()), loan_guarantor_self(%s, now())" % (lid, lid)) == \
        [["500000", "500000"]]
    assert ch.pledges(lid) == [["amina", "accepted", "500000", "0"]]
    assert ch.free("amina") == 500000
    assert ch.add(lid, "amina", ch.number["amina"], 100)[0] == "err_loan_guar_self"
    assert ch.add(lid, "amina", ch.phone["amina"], 100)[0] == "err_loan_guar_self"
    assert ch.add(lid, "amina", "99", 100)[0] == "err_loan_guar_who"
    assert ch.add(lid, "amina", ch.q("SELECT phone FROM users WHERE id = %s" % zawadi)[0][0], 100)[0] == \
        "err_loan_guar_who"
    ch.q("UPDATE memberships SET status = 'left', left_at = now() WHERE user_id = %s" % ch.uid["esther"])
    assert ch.add(lid, "amina", ch.number["esther"], 100)[0] == "err_loan_guar_who"
    assert ch.add(lid, "baraka", ch.number["chege"], 100)[0] == "err_loan_guar_no_loan"
    assert ch.add(lid, "amina", ch.number["chege"], 15001)[0] == "err_loan_guar_over"
    assert ch.add(lid, "amina", ch.number["chege"], 0)[0] == "err_loan_guar_amount"
    o, _, code, need, name = ch.add(lid, "amina", ch.number["chege"], 10000)
    assert (o, need, name) == ("ok_loan_guar_asked", "500000", "Chege")
    assert ch.add(lid, "amina", ch.number["chege"], 100)[0] == "err_loan_guar_twice"
    o, _, code2, need, _ = ch.add(lid, "amina", ch.number["dora"], 5000)
    assert (o, need) == ("ok_loan_guar_asked", "0")
    assert ch.add(lid, "amina", ch.number["baraka"], 100)[0] == "err_loan_guar_max"
    # cover is what is accepted: the self cover alone is not complete
    assert ch.q("SELECT loan_cover_needed_cents(%s), loan_cover_complete(%s)" % (lid, lid)) == [["1500000", "f"]]
    assert ch.answer("chege", code)[0] == "ok_loan_guar_accepted"
    assert ch.q("SELECT loan_cover_needed_cents(%s)" % lid) == [["500000"]]
    # a loan past the application takes no guarantors
    ch.q("UPDATE loans SET status = 'cancelled' WHERE id = %s" % lid)
    assert ch.answer("dora", code2)[0] == "err_loan_guar_loan_gone"
    # loan_guarantor_find: who before the amount
    l2 = ch.loan("baraka", 1000)
    assert ch.q("SELECT outcome, name, cover_needed_cents FROM loan_guarantor_find(%s, %s, '%s')"
                % (l2, ch.uid["baraka"], ch.number["dora"])) == [["ok_loan_guar_found", "Dora", "100000"]]
    assert ch.q("SELECT outcome, name FROM loan_guarantor_find(%s, %s, '%s')"
                % (l2, ch.uid["baraka"], ch.number["baraka"])) == [["err_loan_guar_self", ""]]


def test_loan_guar_min_count_needs_a_guarantor_beyond_self_cover(env):
    ch = Chama(env, "mincount", ["amina", "baraka"])
    ch.save("amina", 10000)
    ch.save("baraka", 10000)
    lid = ch.loan("amina", 5000, terms='{"guarantors": {"min_count": 1}}')
    assert ch.q("SELECT loan_guarantor_self(%s, now())" % lid) == [["500000"]]
    assert ch.q("SELECT loan_cover_needed_cents(%s), loan_cover_complete(%s)" % (lid, lid)) == [["0", "f"]]
    # nothing left to cover, but the rule wants one guarantor: up to the principal
    assert ch.add(lid, "amina", ch.number["baraka"], 5001)[0] == "err_loan_guar_over"
    o, _, code, need, _ = ch.add(lid, "amina", ch.number["baraka"], 1000)
    assert (o, need) == ("ok_loan_guar_asked", "0")


# (principal KES, pledges [(who, cents)], steps [("release"|"rehold", principal cents)],
#  released cents of each pledge after each step), worked out by hand from
#  released total = floor(principal repaid x total pledged / principal),
#  all of it at the last cent, externals first (oldest first) then self,
#  and a re-hold taking it back self first, newest first
RELEASE_CASES = [
    (1000, [("baraka", 30000), ("chege", 30000), ("amina", 40000)],
     [("release", 33333, [30000, 3333, 0]), ("release", 33333, [30000, 30000, 6666]),
      ("release", 33334, [30000, 30000, 40000])]),
    # half covered: floor halves the cents, the last cent releases the rest
    (1000, [("baraka", 25000), ("chege", 25000)],
     [("release", 1, [0, 0]), ("release", 1, [1, 0]), ("release", 33331, [16666, 0]),
      ("release", 66666, [25000, 24999]), ("release", 1, [25000, 25000])]),
    # a third: 33,333 x 33,334 / 100,000 = 11,111.2222
    (1000, [("baraka", 33333), ("amina", 1)],
     [("release", 33333, [11111, 0]), ("release", 66666, [33333, 0]), ("release", 1, [33333, 1])]),
    # more principal than is left counts as the whole of it
    (700, [("amina", 60000), ("baraka", 10000)],
     [("release", 10000, [0, 10000]), ("release", 59999, [59999, 10000]), ("release", 5000, [60000, 10000])]),
    # a reversal holds again what it had released, self first
    (1000, [("baraka", 50000), ("amina", 50000)],
     [("release", 60000, [50000, 10000]), ("rehold", 20000, [40000, 0]), ("rehold", 40000, [0, 0]),
      ("release", 30000, [30000, 0]), ("release", 0, [30000, 0]), ("rehold", 99999, [0, 0])]),
    # pledges above the principal (min_count): the same formula on the total
    (100, [("baraka", 7000), ("chege", 7000)],
     [("release", 3333, [4666, 0]), ("release", 3333, [7000, 2332]), ("release", 3334, [7000, 7000])]),
]


def test_loan_guar_release_pro_rata_to_the_cent(env):
    ch = Chama(env, "release", ["amina", "baraka", "chege"])
    for who in ("amina", "baraka", "chege"):
        ch.save(who, 1000)
    for principal, pledges, steps in RELEASE_CASES:
        lid = ch.loan("amina", principal, status="active")
        for who, cents in pledges:
            ch.q("INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status) "
                 "VALUES (%s, %s, %d, 'accepted')" % (lid, ch.uid[who], cents))
        for kind, cents, want in steps:
            before = sum(int(r[3]) for r in ch.pledges(lid))
            (moved,), = ch.q("SELECT loan_holds_%s(%s, %d, now())" % (kind, lid, cents))
            got = [int(r[3]) for r in ch.pledges(lid)]
            assert got == want, (principal, pledges, kind, cents, got, want)
            assert int(moved) == abs(sum(got) - before), (moved, got, before)
            statuses = [r[1] for r in ch.pledges(lid)]
            assert statuses == ["released" if g == p[1] else "accepted" for g, p in zip(got, pledges)], statuses
        invariants(ch)
        ch.q("UPDATE loans SET status = 'closed', closed_at = now(), amount_repaid_cents = 0 WHERE id = %s" % lid)


def test_loan_guar_rehold_never_above_free_savings(env):
    """A guarantor released by a repayment pledges the freed savings to
    another loan; the repayment is then reversed: what they no longer have
    free is not held again (cover lost, never a negative free balance)."""
    ch = Chama(env, "rehold", ["amina", "baraka", "chege"])
    ch.save("baraka", 1000)
    ch.save("chege", 1000)
    l1 = ch.loan("amina", 1000, status="active")
    ch.q("INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status) VALUES "
         "(%s, %s, 100000, 'accepted')" % (l1, ch.uid["baraka"]))
    assert ch.free("baraka") == 0
    assert ch.q("SELECT loan_holds_release(%s, 60000, now())" % l1) == [["60000"]]
    assert ch.free("baraka") == 60000
    l2 = ch.loan("chege", 600)
    code = ch.add(l2, "chege", ch.number["baraka"], 500)[2]
    assert ch.answer("baraka", code)[0] == "ok_loan_guar_accepted" and ch.free("baraka") == 10000
    assert ch.q("SELECT loan_holds_rehold(%s, 60000, now())" % l1) == [["10000"]]
    assert ch.free("baraka") == 0 and ch.pledges(l1) == [["baraka", "accepted", "100000", "50000"]]
    invariants(ch)


def test_loan_guar_holds_end(env):
    ch = Chama(env, "end", ["amina", "baraka", "chege", "dora"])
    for who in ("amina", "baraka", "chege", "dora"):
        ch.save(who, 1000)
    lid = ch.loan("amina", 2000)
    ch.q("SELECT loan_guarantor_self(%s, now())" % lid)
    code_b = ch.add(lid, "amina", ch.number["baraka"], 500)[2]
    ch.answer("baraka", code_b)
    code_c = ch.add(lid, "amina", ch.number["chege"], 200)[2]
    assert ch.free("amina") == 0 and ch.free("baraka") == 50000
    # rejected: the holds were never used, the open request withdrawn
    ch.go(lid, "under_review", "rejected")
    assert ch.q("SELECT loan_holds_end(%s, 'cancelled', now())" % lid) == [["3"]]
    assert [r[1] for r in ch.pledges(lid)] == ["cancelled", "cancelled", "cancelled"]
    assert ch.free("amina") == 100000 and ch.free("baraka") == 100000
    assert ch.templates("baraka") == ["sms_loan_guar_request", "sms_loan_guar_cancelled"]
    assert ch.texts("chege", "sms_loan_guar_withdrawn") == [
        "ChamaSmart %s: request %s from Amina is closed; your guarantee is not needed." % (ch.name, code_c)]
    assert ch.answer("chege", code_c)[0] == "err_loan_guar_answered"
    # closed: every hold left goes back, each external guarantor told
    l2 = ch.loan("amina", 1000, status="active")
    ch.q("INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status) VALUES "
         "(%s, %s, 40000, 'accepted'), (%s, %s, 60000, 'accepted')" % (l2, ch.uid["dora"], l2, ch.uid["amina"]))
    ch.q("SELECT loan_holds_release(%s, 30000, now())" % l2)
    assert ch.pledges(l2) == [["dora", "accepted", "40000", "30000"], ["amina", "accepted", "60000", "0"]]
    assert ch.q("SELECT loan_holds_end(%s, 'released', now())" % l2) == [["2"]]
    assert ch.pledges(l2) == [["dora", "released", "40000", "40000"], ["amina", "released", "60000", "60000"]]
    assert ch.texts("dora", "sms_loan_guar_released") == [
        "ChamaSmart %s: Amina's loan is settled; the KES 400 you guaranteed is free again." % ch.name]
    assert ch.templates("amina", "sms\\_loan\\_guar\\_released") == []
    assert ch.free("dora") == 100000
    assert "not released or cancelled" in env.psql_error("SELECT loan_holds_end(%s, 'called', now())" % l2, ch.url)


def test_loan_guar_free_savings_never_below_zero_property(env):
    """Random pledges, answers, releases and reversals across guarantors and
    loans (seeded): after every step, no member's holds exceed their
    savings, no pledge is released beyond itself, and the released total of
    each active loan is the formula's."""
    rnd = random.Random(11)
    people = ["amina", "baraka", "chege", "dora", "esther"]
    ch = Chama(env, "prop", people)
    for who in people:
        ch.save(who, rnd.randrange(1, 40) * 100)
    loans = []
    for step in range(80):
        op = rnd.random()
        if op < 0.25 or not loans:
            who = rnd.choice(people)
            lid = ch.loan(who, rnd.randrange(5, 60) * 100)
            ch.q("SELECT loan_guarantor_self(%s, now())" % lid)
            loans.append(lid)
        elif op < 0.55:
            lid = rnd.choice(loans)
            borrower = ch.q("SELECT u.full_name FROM loans l JOIN users u ON u.id = l.user_id WHERE l.id = %s"
                            % lid)[0][0].lower()
            g = rnd.choice(people)
            o = ch.add(lid, borrower, ch.number[g], rnd.randrange(1, 3000))
            if o[0] == "ok_loan_guar_asked":
                ch.answer(g, o[2], yes=rnd.random() < 0.8)
        elif op < 0.7:
            # the loan goes out (as C's payout would leave it)
            lid = rnd.choice(loans)
            if ch.q("SELECT status FROM loans WHERE id = %s" % lid)[0][0] == "applied":
                ch.go(lid, "under_review", "approved", "active")
        else:
            lid = rnd.choice(loans)
            if ch.q("SELECT status FROM loans WHERE id = %s" % lid)[0][0] == "active":
                kind = "release" if rnd.random() < 0.7 else "rehold"
                ch.q("SELECT loan_holds_%s(%s, %d, now())" % (kind, lid, rnd.randrange(0, 3000) * 100))
        if rnd.random() < 0.1:
            ch.save(rnd.choice(people), rnd.randrange(1, 10) * 100)
        invariants(ch)
    # with no reversal capped, the released total is the formula's
    rows = ch.q("SELECT l.id, l.principal_cents, l.holds_principal_cents, sum(g.pledged_cents), sum(g.released_cents) "
                "FROM loans l JOIN loan_guarantors g ON g.loan_id = l.id AND g.status IN ('accepted', 'released') "
                "WHERE l.status = 'active' GROUP BY l.id")
    assert rows, "the walk made no active loan with pledges"
    for lid, p, c, t, r in rows:
        p, c, t, r = int(p), int(c), int(t), int(r)
        want = t if c >= p else c * t // p
        assert r <= want, (lid, p, c, t, r)


def replies(env, ch, who):
    return outbox_texts(env, ch.url, "kind = 'sms_reply' AND recipient = '%s'" % ch.phone[who])


def test_loan_guar_by_sms_with_the_pin_in_both_languages(env):
    ch = Chama(env, "sms", ["amina", "baraka", "chege", "dora"], langs={"chege": "sw"})
    ch.save("baraka", 5000)
    ch.save("chege", 5000)
    c = env.chamad({"CHAMAD_DATABASE_URL": ch.url})
    lid = ch.loan("amina", 20000)
    code_b = ch.add(lid, "amina", ch.number["baraka"], 3000)[2]
    code_c = ch.add(lid, "amina", ch.number["chege"], 6000)[2]
    # the Swahili guarantor's request is in Swahili
    assert ch.texts("chege", "sms_loan_guar_request") == [
        "ChamaSmart %s: Amina anakuomba udhamini KES 6,000 ya mkopo wa KES 20,000. Jibu NDIO %s PIN au HAPANA %s "
        "PIN ndani ya saa 48." % (ch.name, code_c, code_c)]
    # the PIN is needed for YES and for NO, and a wrong one does nothing
    sms(c, ch.phone["baraka"], "YES %s" % code_b)
    sms(c, ch.phone["baraka"], "NO %s" % code_b)
    assert replies(env, ch, "baraka") == ["Add your PIN after the command, for example: BAL 1234"] * 2
    sms(c, ch.phone["baraka"], "YES %s 0000" % code_b)
    assert replies(env, ch, "baraka")[-1].startswith("Wrong PIN"), replies(env, ch, "baraka")
    assert ch.pledges(lid)[0][1] == "pending"
    assert ch.q("SELECT text_masked FROM sms_inbound ORDER BY id DESC LIMIT 1") == [["YES %s ****" % code_b]]
    # YES with the PIN, in English
    sms(c, ch.phone["baraka"], "yes %s %s" % (code_b.lower(), PIN))
    assert replies(env, ch, "baraka")[-1] == \
        "ChamaSmart: you guarantee KES 3,000 of Amina's loan (%s). Your free savings: KES 2,000." % code_b
    sms(c, ch.phone["baraka"], "NO %s %s" % (code_b, PIN))
    assert replies(env, ch, "baraka")[-1] == "ChamaSmart: you already answered %s." % code_b
    # NDIO in Swahili: 6,000 on 5,000 of savings is refused, then HAPANA
    sms(c, ch.phone["chege"], "NDIO %s %s" % (code_c, PIN))
    assert replies(env, ch, "chege")[-1] == (
        "ChamaSmart: akiba yako huru KES 5,000 haitoshi KES 6,000 kwa %s. Weka akiba zaidi ujibu tena, au tuma "
        "HAPANA %s PIN." % (code_c, code_c))
    sms(c, ch.phone["chege"], "HAPANA %s %s" % (code_c, PIN))
    assert replies(env, ch, "chege")[-1] == "ChamaSmart: umekataa %s ya Amina; ataarifiwa." % code_c
    assert [r[1] for r in ch.pledges(lid)] == ["accepted", "declined"]
    assert ch.q("SELECT channel, action FROM audit_logs WHERE entity_type = 'loan_guarantors' AND action = 'update' "
                "ORDER BY id") == [["sms", "update"], ["sms", "update"]]
    # someone else's code, and an unknown one
    sms(c, ch.phone["dora"], "YES %s %s" % (code_b, PIN))
    assert replies(env, ch, "dora")[-1] == "ChamaSmart: no guarantee request %s for you." % code_b
    sms(c, ch.phone["dora"], "YES %s" % PIN)
    assert replies(env, ch, "dora")[-1] == \
        "ChamaSmart: send YES CODE PIN to guarantee a loan, or NO CODE PIN to decline."
    # GUAR and DHAMANA
    sms(c, ch.phone["dora"], "GUAR %s" % PIN)
    assert replies(env, ch, "dora")[-1] == "ChamaSmart: you have not guaranteed any loan."
    ch.go(lid, "under_review", "approved", "active")
    ch.q("SELECT loan_holds_release(%s, 500000, now())" % lid)
    sms(c, ch.phone["baraka"], "GUAR %s" % PIN)
    assert replies(env, ch, "baraka")[-1] == ("ChamaSmart guarantees: KES 3,000 pledged, KES 750 released, KES 2,250 "
                                              "at risk.\nAmina (%s): KES 2,250 of 3,000 held" % ch.name)
    l2 = ch.loan("dora", 1000)
    code = ch.add(l2, "dora", ch.number["chege"], 600)[2]
    sms(c, ch.phone["chege"], "NDIO %s %s" % (code, PIN))
    sms(c, ch.phone["chege"], "DHAMANA %s" % PIN)
    assert replies(env, ch, "chege")[-1] == ("Dhamana za ChamaSmart: KES 600 zimeahidiwa, KES 0 zimeachiliwa, "
                                             "KES 600 hatarini.\nDora (%s): KES 600 kati ya 600 zimeshikiliwa"
                                             % ch.name)


def test_loan_guar_cover_complete_takes_the_loan_on(env):
    """The acceptance that completes the cover calls A's loan_advance: the
    pool covers it, so it goes to the officials (C's loan_approval_open),
    never the borrower nor the guarantor among them."""
    ch = Chama(env, "complete", ["amina", "baraka", "chege", "dora"])
    ch.q("UPDATE memberships SET role = 'treasurer' WHERE user_id = %s" % ch.uid["chege"])
    ch.q("UPDATE memberships SET role = 'secretary' WHERE user_id = %s" % ch.uid["dora"])
    ch.save("amina", 1000)
    ch.save("baraka", 29000)
    lid = ch.loan("amina", 30000)
    assert ch.q("SELECT loan_guarantor_self(%s, now())" % lid) == [["100000"]]
    code = ch.add(lid, "amina", ch.number["baraka"], 29000)[2]
    assert ch.q("SELECT status FROM loans WHERE id = %s" % lid) == [["applied"]]
    assert ch.answer("baraka", code) == ["ok_loan_guar_accepted", "2900000", "0", "0"]
    assert ch.q("SELECT status FROM loans WHERE id = %s" % lid) == [["under_review"]]
    assert ch.q("SELECT kind, status, excluded_user_ids @> ARRAY[%s]::bigint[] FROM approvals WHERE ref_id = %s"
                % (ch.uid["baraka"], lid)) == [["loan", "pending", "t"]]
    invariants(ch)


def option(screen, label):
    """The number of the option whose label is label on screen."""
    m = re.search(r"(?m)^(\d+)\. %s$" % re.escape(label), screen)
    assert m, (label, screen)
    return m.group(1)


def test_loan_guar_ussd_name_answer_and_my_guarantees(env):
    """On USSD: the applicant names a guarantor (member number, amount,
    PIN) from Loans > My guarantees; the guarantor finds the request under
    Loans > Requests for me with the borrower's record and their own free
    savings, accepts with the PIN; a Swahili guarantor declines; My
    guarantees shows what is guaranteed, released and at risk."""
    ch = Chama(env, "ussd", ["amina", "baraka", "chege"], langs={"chege": "sw"})
    ch.save("amina", 2000)
    ch.save("baraka", 5000)
    ch.save("chege", 5000)
    lid = ch.loan("amina", 20000)
    ch.q("SELECT loan_guarantor_self(%s, now())" % lid)
    c = env.chamad({"CHAMAD_DATABASE_URL": ch.url})
    s = AT(c, ch.phone["amina"])
    s.login()
    end, screen = s.send("3")
    end, screen = s.send(option(screen, "My guarantees"))
    assert screen.startswith("Guaranteed: KES 0 (0 loans)\nReleased: KES 0\nAt risk: KES 0\nRequests for you: 0"), \
        screen
    s.send("1")
    end, screen = s.send("9")
    assert screen.startswith("No such member here."), screen
    end, screen = s.send(ch.number["baraka"])
    assert screen.startswith("Baraka: amount to guarantee, in KES (still to cover: 18,000):"), screen
    end, screen = s.send("3000")
    assert screen.startswith("Ask Baraka to guarantee KES 3000. Enter your PIN:"), screen
    end, screen = s.send(PIN)
    code = ch.q("SELECT code FROM loan_guarantors WHERE loan_id = %s AND guarantor_user_id = %s"
                % (lid, ch.uid["baraka"]))[0][0]
    assert not end and screen.startswith("Baraka asked by SMS (code %s).\nStill to ask for: KES 15,000" % code), \
        screen
    # repeated until covered: Chege by phone (0 7.. as typed on a phone)
    s.send("1")
    end, screen = s.send("0" + ch.phone["chege"][4:])
    assert screen.startswith("Chege: amount"), screen
    s.send("16000")
    end, screen = s.send(PIN)
    assert screen.startswith("More than the loan needs."), screen
    s.send("6000")
    end, screen = s.send(PIN)
    assert "Still to ask for: KES 9,000" in screen, screen
    code_c = ch.q("SELECT code FROM loan_guarantors WHERE loan_id = %s AND guarantor_user_id = %s"
                  % (lid, ch.uid["chege"]))[0][0]
    # Baraka: Requests for me, the borrower's record, his free savings
    s = AT(c, ch.phone["baraka"])
    s.login()
    end, screen = s.send("3")
    end, screen = s.send(option(screen, "Requests for me"))
    assert screen.startswith("Guarantee requests:\n1. %s Amina KES 3,000" % code), screen
    end, screen = s.send("1")
    assert screen.startswith("Amina asks KES 3,000 of KES 20,000\nSavings 2,000, repaid 0, open 0, arrears 0\n"
                             "Your free savings: 5,000\n1. Accept\n2. Decline"), screen
    s.send("1")
    end, screen = s.send("0000")
    assert not end and screen.startswith("Wrong PIN"), screen
    end, screen = s.send(PIN)
    assert end and screen == "%s: You guarantee this loan.\nYour free savings: KES 2,000" % code, screen
    assert ch.pledges(lid)[1] == ["baraka", "accepted", "300000", "0"]
    # Chege, in Swahili, declines
    s = AT(c, ch.phone["chege"])
    s.dial()
    end, screen = s.send(PIN)
    assert screen.startswith("Menyu kuu"), screen
    end, screen = s.send("3")
    end, screen = s.send(option(screen, "Maombi kwangu"))
    end, screen = s.send("1")
    assert screen.startswith("Amina aomba KES 6,000 ya KES 20,000\nAkiba 2,000"), screen
    s.send("2")
    end, screen = s.send(PIN)
    assert end and screen == "%s: Umekataa ombi hili.\nAkiba yako huru: KES 5,000" % code_c, screen
    assert ch.texts("amina", "sms_loan_guar_declined")
    # My guarantees, once half the principal is repaid: half of the 5,000
    # pledged (Amina's own 2,000 and Baraka's 3,000) is released, Baraka's
    # first
    ch.go(lid, "under_review", "approved", "active")
    ch.q("SELECT loan_holds_release(%s, 1000000, now())" % lid)
    s = AT(c, ch.phone["baraka"])
    s.login()
    end, screen = s.send("3")
    end, screen = s.send(option(screen, "My guarantees"))
    assert screen.startswith("Guaranteed: KES 3,000 (1 loans)\nReleased: KES 2,500\nAt risk: KES 500\n"
                             "Requests for you: 0"), screen
