"""Issue 11's "Done means", end to end on a simulated term with the
injectable clock ([jobs] now = CHAMAD_JOBS_NOW; the daemon is restarted with
the next day of the term): a member applies by USSD (Loans > Apply, then
Name a guarantor), the guarantor accepts by SMS (YES <code> <PIN>), two
officials approve by SMS (APPROVE <code> <PIN>), the B2C payout goes out
through the Daraja emulator and the loan is active; then it is repaid over
the whole term by paybill (account L<loan id>), one instalment late and
penalised by the daily job, until it is closed and the guarantor released.
After every step both ledger checks run: `chamad verify-ledger` and
test_ledger's verify, and what the member is shown (Loans > My loans, SMS
LOAN) is the ledger's balance.  Also at the journey level: the refusal of
every eligibility rule on USSD, a guarantor pledging more than their free
savings, two repayments of one loan at once, and a repayment racing the
penalty job.

Every step is written against the shared contracts of the loans work
(docs in /work/notes/i11_common.md: A apply, B guarantors, C approval and
disbursement, D repayment, E penalties); a part that is not on the branch
fails the step that needs it by name (`needs`)."""
import os
import re
import subprocess
import threading
import time

from harness import MPESA_SECRET, ROOT, free_port
from mpesa_fixtures import DarajaEmulator
from notify_fixtures import outbox_texts
from sms_fixtures import ATEmulator
from test_ledger import verify as ledger_verify
from test_loan_views import option, loans_screen
from test_mpesa import add_member, PIN
from test_sms import inbound
from test_ussd import AT

DAY0 = "2027-01-04"


def needs(env, url, *functions):
    """The functions a step needs, from the parts that own them."""
    missing = [f for f in functions if not env.psql("SELECT 1 FROM pg_proc WHERE proname = '%s'" % f, url)]
    assert not missing, "not on this branch (its part has not landed): %s" % ", ".join(missing)


class Journey:
    def __init__(self, env, name):
        self.env, self.name = env, name
        self.url = env.fresh_db("chamasmart_loane2e_" + name)
        env.migrate(self.url)
        self.daraja = DarajaEmulator(env, consumer_key="ck-" + name, consumer_secret="cs-" + name)
        self.sms = ATEmulator(env, api_key="k-" + name)
        self.c = None
        self.steps = []

    def q(self, sql):
        return self.env.psql(sql, self.url)

    def start(self, day, hour="09:00:00"):
        """The daemon with its clock at day (the chamas' time zone)."""
        if self.c:
            self.c.stop()
        port = free_port()
        d = self.daraja
        self.now = "%sT%s+03:00" % (day, hour)
        self.c = self.env.chamad({
            "CHAMAD_DATABASE_URL": self.url, "CHAMAD_JOBS_NOW": self.now, "CHAMAD_JOBS_EVERY_S": "1",
            "CHAMAD_MPESA_BASE_URL": d.url, "CHAMAD_MPESA_CONSUMER_KEY": "ck-" + self.name,
            "CHAMAD_MPESA_CONSUMER_SECRET": "cs-" + self.name, "CHAMAD_MPESA_PASSKEY": d.passkey,
            "CHAMAD_MPESA_SHORTCODE": d.shortcode, "CHAMAD_MPESA_CALLBACK_SECRET": MPESA_SECRET,
            "CHAMAD_MPESA_ALLOW_IPS": "safaricom:127.0.0.1", "CHAMAD_MPESA_INITIATOR_NAME": d.initiator_name,
            "CHAMAD_MPESA_SECURITY_CREDENTIAL": d.security_credential, "CHAMAD_MPESA_QUERY_AFTER_S": "1",
            "CHAMAD_MPESA_QUERY_EVERY_S": "1", "CHAMAD_MPESA_STATUS_TIMEOUT_S": "5",
            "CHAMAD_MPESA_TIMEOUT_MS": "2000", "CHAMAD_HTTP_LISTEN": "127.0.0.1:%d" % port,
            "CHAMAD_MPESA_PUBLIC_URL": "http://127.0.0.1:%d" % port,
            "CHAMAD_SMS_PROVIDER": "africastalking", "CHAMAD_SMS_AT_BASE_URL": self.sms.url,
            "CHAMAD_SMS_AT_API_KEY": "k-" + self.name, "CHAMAD_SMS_AT_USERNAME": "sandbox"})
        base = self.c.url + "/payments/c2b/%s/" + MPESA_SECRET
        d.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")

    def books(self, step):
        """Both ledger checks, after every step."""
        p = subprocess.run([self.env.bin, "verify-ledger"], capture_output=True, text=True,
                           env=dict(os.environ, CHAMAD_DATABASE_URL=self.url), cwd=ROOT)
        assert p.returncode == 0, (step, p.stdout + p.stderr)
        rc, out = ledger_verify(self.env, self.url)
        assert rc == 0, (step, out)
        self.steps.append(step)

    def wait(self, sql, want, timeout=20, what=None):
        deadline = time.monotonic() + timeout
        while True:
            got = self.q(sql)
            if got == want:
                return
            assert time.monotonic() < deadline, (what or sql, got, want)
            time.sleep(0.1)

    def sms_in(self, phone, text):
        inbound(self.c, phone, text)

    def replies(self, phone):
        return outbox_texts(self.env, self.url, "recipient = '%s' AND kind = 'sms_reply'" % phone)

    def stop(self):
        if self.c:
            self.c.stop()
        self.daraja.stop()
        self.sms.stop()


def seed(j, savings=None, constitution=None):
    """A chama (officials chair, treasurer, secretary), a borrower and two
    possible guarantors, members for a year, whose M-Pesa savings are the
    chama's float."""
    (cid,), = j.q("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                  "VALUES ('Imani', 'mixed', 50000, 'monthly') RETURNING id")
    if constitution:
        j.q("UPDATE chamas SET constitution = constitution || '%s'::jsonb WHERE id = %s" % (constitution, cid))
    k = {"chama": cid}
    savings = savings or {"borrower": 10000, "guarantor": 20000, "guarantor2": 3000, "chairperson": 30000}
    for role, who in (("chairperson", "chairperson"), ("treasurer", "treasurer"), ("secretary", "secretary"),
                      ("member", "borrower"), ("member", "guarantor"), ("member", "guarantor2")):
        phone, uid, num = add_member(j.env, j.url, cid, role, who.capitalize())
        k[who] = {"phone": phone, "id": uid, "number": num}
        j.q("UPDATE memberships SET joined_at = '2026-01-04' WHERE user_id = %s" % uid)
        if savings.get(who):
            j.q("SELECT post_contribution(%s, %s, %d, 'savings', 'mpesa', 'SAV%s', 'seed:%s', NULL, 'admin', NULL, "
                "'test', NULL)" % (cid, uid, savings[who] * 100, uid, uid))
    return k


def apply_ussd(j, who, kes, term):
    """Loans > Apply: the product, the amount, the term, the quote, the PIN;
    returns the screen after the PIN (or the refusal shown on the way)."""
    s, screen = loans_screen(j.c, who["phone"])
    end, screen = s.send(option(screen, "Apply"))
    if not end and screen.startswith("Which loan?"):
        end, screen = s.send("1")
    assert not end and "Amount to borrow" in screen, screen
    end, screen = s.send(str(kes))
    if end or "Repay in how many" not in screen:
        return s, end, screen
    end, screen = s.send(str(term))
    if end or "PIN to apply" not in screen:
        return s, end, screen
    end, screen = s.send(PIN)
    return s, end, screen


def name_guarantor(j, s, screen, guarantor, kes):
    """After applying: Name a guarantor, their number, the amount, the PIN."""
    end, screen = s.send(option(screen, "Name a guarantor"))
    assert not end, screen
    end, screen = s.send(str(guarantor["number"]))
    assert not end and "amount to guarantee" in screen, screen
    end, screen = s.send(str(kes))
    assert not end and "Enter your PIN" in screen, screen
    return s.send(PIN)


def shown(j, who):
    """What the member is shown on USSD My loans, and by SMS LOAN."""
    s, screen = loans_screen(j.c, who["phone"])
    end, screen = s.send(option(screen, "My loans"))
    n = len(j.replies(who["phone"]))
    j.sms_in(who["phone"], "LOAN " + PIN)
    j.wait("SELECT count(*) >= %d FROM notifications WHERE recipient = '%s' AND kind = 'sms_reply'"
           % (n + 1, who["phone"]), [["t"]])
    return screen, j.replies(who["phone"])[-1]


def ledger_owed(j, who):
    rows = j.q("SELECT balance_cents FROM ledger_accounts WHERE chama_id = (SELECT chama_id FROM memberships "
               "WHERE user_id = %s) AND user_id = %s AND kind = 'loans_receivable'" % (who["id"], who["id"]))
    return int(rows[0][0]) if rows else 0


def kes(cents):
    return "{:,}".format(cents // 100) + ("" if cents % 100 == 0 else ".%02d" % (cents % 100))


def test_loan_journey_over_the_whole_term(env):
    j = Journey(env, "term")
    try:
        k = seed(j)
        b, g = k["borrower"], k["guarantor"]
        j.start(DAY0)
        needs(env, j.url, "loan_apply", "loan_guarantor_add", "loan_guarantor_answer")
        # 1. apply by USSD: 15,000 over 3 months; own savings cover 10,000
        s, end, screen = apply_ussd(j, b, 15000, 3)
        assert not end and "applied" in screen and "Name a guarantor" in screen, screen
        (lid, st), = j.q("SELECT id, status FROM loans WHERE user_id = %s" % b["id"])
        assert st == "applied"
        j.books("applied")
        # 2. a guarantor named for the rest, who accepts by SMS
        end, screen = name_guarantor(j, s, screen, g, 5000)
        assert "asked by SMS" in screen, screen
        (code,), = j.q("SELECT code FROM loan_guarantors WHERE loan_id = %s AND guarantor_user_id = %s"
                       % (lid, g["id"]))
        j.sms_in(g["phone"], "YES %s %s" % (code, PIN))
        j.wait("SELECT status FROM loan_guarantors WHERE loan_id = %s AND guarantor_user_id = %s" % (lid, g["id"]),
               [["accepted"]], what="the guarantor's YES")
        j.wait("SELECT status FROM loans WHERE id = %s" % lid, [["under_review"]], what="cover complete: approval")
        j.books("guaranteed")
        # 3. two officials approve by SMS; the borrower and the guarantor cannot
        needs(env, j.url, "loan_approval_open", "loan_on_paid")
        (acode,), = j.q("SELECT a.code FROM approvals a JOIN loans l ON l.approval_id = a.id WHERE l.id = %s" % lid)
        for who in ("chairperson", "treasurer"):
            j.sms_in(k[who]["phone"], "APPROVE %s %s" % (acode, PIN))
        # 4. B2C through the emulator: paid, the loan active, interest posted
        j.wait("SELECT status FROM loans WHERE id = %s" % lid, [["active"]], timeout=30, what="disbursed")
        principal, interest, fees = [int(x) for x in j.q(
            "SELECT amount_disbursed_cents, total_interest_cents, fees_cents FROM loans WHERE id = %s" % lid)[0]]
        assert principal == 1500000
        assert ledger_owed(j, b) == principal + interest + fees
        j.books("disbursed")
        screen, sms = shown(j, b)
        assert "#%s owe %s," % (lid, kes(principal + interest + fees)) in screen, screen
        assert "KES %s to repay" % kes(principal + interest + fees) in sms, sms
        # 5. repaid over the term by paybill, the second instalment late
        needs(env, j.url, "loan_repay", "loan_penalties_run")
        dues = j.q("SELECT installment_no, due_date, principal_due_cents + interest_due_cents + fee_due_cents "
                   "FROM loan_schedules WHERE loan_id = %s ORDER BY installment_no" % lid)
        assert len(dues) == 3
        released_before = int(j.q("SELECT released_cents FROM loan_guarantors WHERE loan_id = %s AND "
                                  "guarantor_user_id = %s" % (lid, g["id"]))[0][0])
        for n, due, cents in dues:
            n, cents = int(n), int(cents)
            late = n == 2
            if late:
                # the daily job, five days after the due date (grace 2 days)
                j.start(q_day(j, due, 5))
                j.wait("SELECT count(*) > 0 FROM loan_penalties WHERE loan_id = %s" % lid, [["t"]],
                       what="the late instalment penalised")
                j.books("penalised #%d" % n)
                pen = int(j.q("SELECT penalty_due_cents FROM loan_schedules WHERE loan_id = %s AND "
                              "installment_no = 2" % lid)[0][0])
                assert pen > 0
                cents += pen
            else:
                j.start(q_day(j, due, -1))
            paid_before = int(j.q("SELECT count(*) FROM loan_repayments WHERE loan_id = %s AND status = 'confirmed'"
                                  % lid)[0][0])
            assert cents % 100 == 0, cents     # M-Pesa moves whole shillings
            j.daraja.c2b(amount=cents // 100, bill_ref="L%s" % lid, msisdn=b["phone"][1:])
            j.wait("SELECT count(*) FROM loan_repayments WHERE loan_id = %s AND status = 'confirmed'" % lid,
                   [[str(paid_before + 1)]], timeout=30, what="repayment of #%d" % n)
            j.wait("SELECT principal_paid_cents = principal_due_cents AND interest_paid_cents = interest_due_cents "
                   "AND penalty_paid_cents = penalty_due_cents FROM loan_schedules WHERE loan_id = %s AND "
                   "installment_no = %d" % (lid, n), [["t"]], what="instalment #%d paid" % n)
            j.books("repaid #%d" % n)
            owed = ledger_owed(j, b)
            if n < 3:
                screen, sms = shown(j, b)
                assert "#%s owe %s," % (lid, kes(owed)) in screen and "KES %s to repay" % kes(owed) in sms, \
                    (screen, sms)
                released = int(j.q("SELECT released_cents FROM loan_guarantors WHERE loan_id = %s AND "
                                   "guarantor_user_id = %s" % (lid, g["id"]))[0][0])
                assert released > released_before, "holds released pro rata to principal repaid"
                released_before = released
        # 6. closed, guarantors released, nothing owed
        assert j.q("SELECT status FROM loans WHERE id = %s" % lid) == [["closed"]]
        assert ledger_owed(j, b) == 0
        assert j.q("SELECT status, pledged_cents - released_cents - called_cents FROM loan_guarantors "
                   "WHERE loan_id = %s ORDER BY guarantor_user_id" % lid) == [["released", "0"], ["released", "0"]]
        screen, sms = shown(j, b)
        assert screen.startswith("You have no loans in Imani.") and sms == "You have no open loans.", (screen, sms)
        j.books("closed")
    finally:
        print("steps checked:", ", ".join(j.steps))
        j.stop()


def q_day(j, due, days):
    (d,), = j.q("SELECT ('%s'::date + %d)::text" % (due, days))
    return d


def test_loan_journey_refusals(env):
    """Every eligibility rule refuses on USSD with its own words, and a
    guarantor cannot pledge above their free savings."""
    j = Journey(env, "refusals")
    try:
        k = seed(j, constitution='{"loan_open_max_count": 1, "loan_membership_min_days": 30}')
        b = k["borrower"]
        j.start(DAY0)
        needs(env, j.url, "loan_apply", "loan_guarantor_add")
        # above 3 x own savings (10,000)
        _, end, screen = apply_ussd(j, b, 30001, 3)
        assert "Above your loan limit." in screen, screen
        # a member too new
        j.q("UPDATE memberships SET joined_at = '%s'::date - 10 WHERE user_id = %s" % (DAY0, k["guarantor2"]["id"]))
        _, end, screen = apply_ussd(j, k["guarantor2"], 1000, 1)
        assert "Joined too recently to borrow" in screen, screen
        j.q("UPDATE memberships SET joined_at = '2026-01-04' WHERE user_id = %s" % k["guarantor2"]["id"])
        # a loan open already: 16,000 applied (6,000 to be covered), then another
        s, end, screen = apply_ussd(j, b, 16000, 3)
        assert "applied" in screen and "Name a guarantor" in screen, screen
        _, end2, screen2 = apply_ussd(j, b, 1000, 1)
        assert "Repay your open loan first." in screen2, screen2
        # the guarantor over-pledging: 3,000 of free savings, named for 3,500
        # and answering YES: never accepted, their savings not held
        (lid,), = j.q("SELECT id FROM loans WHERE user_id = %s" % b["id"])
        g2 = k["guarantor2"]
        end, screen = name_guarantor(j, s, screen, g2, 3500)
        rows = j.q("SELECT code FROM loan_guarantors WHERE loan_id = %s AND guarantor_user_id = %s AND "
                   "status = 'pending'" % (lid, g2["id"]))
        if rows:     # refused at the answer (else it was refused when named)
            j.sms_in(g2["phone"], "YES %s %s" % (rows[0][0], PIN))
            j.wait("SELECT count(*) > 0 FROM notifications WHERE recipient = '%s' AND kind = 'sms_reply'"
                   % g2["phone"], [["t"]])
        assert not j.q("SELECT 1 FROM loan_guarantors WHERE loan_id = %s AND guarantor_user_id = %s AND "
                       "status = 'accepted'" % (lid, g2["id"])), screen
        assert j.q("SELECT member_free_savings_cents(%s, %s)" % (k["chama"], g2["id"])) == [["300000"]]
        assert j.q("SELECT status FROM loans WHERE id = %s" % lid) == [["applied"]]
        j.books("refusals")
    finally:
        print("steps checked:", ", ".join(j.steps))
        j.stop()


def test_loan_journey_races(env):
    """Two repayments of one loan at once, and a repayment racing the penalty
    job: each lands once, the allocations add up, the books hold."""
    j = Journey(env, "races")
    try:
        k = seed(j)
        b = k["borrower"]
        j.start(DAY0)
        needs(env, j.url, "loan_apply", "loan_repay", "loan_penalties_run", "loan_on_paid")
        s, end, screen = apply_ussd(j, b, 9000, 3)     # within own cover: straight to the officials
        (lid,), = j.q("SELECT id FROM loans WHERE user_id = %s" % b["id"])
        j.wait("SELECT status FROM loans WHERE id = %s" % lid, [["under_review"]])
        (acode,), = j.q("SELECT a.code FROM approvals a JOIN loans l ON l.approval_id = a.id WHERE l.id = %s" % lid)
        for who in ("chairperson", "treasurer"):
            j.sms_in(k[who]["phone"], "APPROVE %s %s" % (acode, PIN))
        j.wait("SELECT status FROM loans WHERE id = %s" % lid, [["active"]], timeout=30)
        j.books("disbursed")
        (due,), = j.q("SELECT due_date FROM loan_schedules WHERE loan_id = %s AND installment_no = 1" % lid)
        # the penalty job's day, and two paybill payments arriving together
        j.start(q_day(j, due, 5))
        ts = [threading.Thread(target=j.daraja.c2b, kwargs=dict(amount=2000, bill_ref="L%s" % lid,
                                                               msisdn=b["phone"][1:])) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        j.wait("SELECT count(*) FROM loan_repayments WHERE loan_id = %s AND status = 'confirmed'" % lid, [["2"]],
               timeout=30)
        j.wait("SELECT count(*) > 0 FROM loan_penalties WHERE loan_id = %s" % lid, [["t"]])
        j.books("raced")
    finally:
        print("steps checked:", ", ".join(j.steps))
        j.stop()
