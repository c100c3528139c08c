"""Loans, part A (schema/71_loans.sql, src/ussd/act_loan.c, src/sms/sms_loan.c):
applying on USSD (product, amount, term, the confirmation loansched
computes, the PIN) and by SMS (BORROW), every eligibility rule refused in
one line of its own, the member's limit (Loans > My limit, LIMIT) in both
languages, the first-come queue and each member's place, the application
idempotent by its key, the schedule recomputed in SQL and a wrong one
refused, the lifecycle held by its trigger.

The domain clock is fixed ([jobs] now): every chama here lends on
2027-03-01, so the schedules start that day."""
import glob
import json
import os
import random
import subprocess

from approval_fixtures import sms
from harness import ROOT
from notify_fixtures import outbox_texts
from test_ussd import AT, PIN, new_phone, q, seed_user

NOW = "2027-03-01 09:00:00+03"
AT_SQL = "'%s'::timestamptz" % NOW
FLAT = {"key": "flat", "name_en": "Flat loan", "name_sw": "Mkopo bapa", "rate_bp": 200, "per": "month",
        "method": "flat", "frequency": "monthly", "max_term": 12}
REDUCING = {"key": "reducing", "name_en": "Reducing loan", "name_sw": "Mkopo kupungua", "rate_bp": 100,
            "per": "month", "method": "reducing", "frequency": "monthly", "max_term": 12}


def screens():
    out = {}
    for f in sorted(glob.glob(os.path.join(ROOT, "menus", "*.json"))):
        out.update(json.load(open(f)).get("screens", {}))
    return out


def option(sid, nxt):
    """The number of the option of screen sid that leads to nxt (its place,
    so the test holds while the other parts add their options)."""
    return str(1 + [o["next"] for o in screens()[sid]["options"]].index(nxt))


def kes(cents):
    cents = int(cents)
    return "{:,}".format(cents // 100) + ("" if cents % 100 == 0 else ".%02d" % (cents % 100))


def daemon(env):
    return env.chamad({"CHAMAD_JOBS_NOW": NOW})


def new_chama(env, products=None, rules=None):
    """A chama lending by products (None: the default product), with its
    three officials (no savings), all members since 2026-11-01."""
    const = dict(rules or {})
    if products is not None:
        const["loan_products"] = products
    name = "Loan Chama %d" % random.randrange(10 ** 9)
    (cid,), = q(env, "INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency, "
                     "constitution) VALUES ('%s', 'mixed', 50000, 'monthly', '%s') RETURNING id"
                % (name, json.dumps(const)))
    for role in ("chairperson", "treasurer", "secretary"):
        uid = seed_user(env, new_phone(), "The " + role.title())
        q(env, "INSERT INTO memberships (user_id, chama_id, role, joined_at) VALUES (%s, %s, '%s', '2026-11-01')"
            % (uid, cid, role))
    return cid


def member(env, cid, savings_kes, lang="en", joined="2026-11-01", name="Wanjiru Borrower"):
    """A member with savings (cash: the chama's cash on hand, its pool)."""
    phone = new_phone()
    uid = seed_user(env, phone, name, lang=lang)
    q(env, "INSERT INTO memberships (user_id, chama_id, role, joined_at) VALUES (%s, %s, 'member', '%s')"
        % (uid, cid, joined))
    if savings_kes:
        q(env, "SELECT post_contribution(%s, %s, %d, 'savings', 'cash', NULL, 'loantest:%d', NULL, 'admin', NULL, "
               "'test', '2026-12-01 10:00+03')" % (cid, uid, savings_kes * 100, random.randrange(10 ** 15)))
    return phone, uid


def schedule_cli(principal_kes, p, term, start="2027-03-01"):
    """The schedule `chamad loan-schedule` prints for the product's terms."""
    out = subprocess.run([os.path.join(ROOT, "bin", "chamad"), "loan-schedule", "--principal", str(principal_kes),
                          "--rate-bp", str(p["rate_bp"]), "--per", p["per"], "--method", p["method"],
                          "--term", str(term), "--frequency", p["frequency"], "--start", start],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [line.split(",") for line in out.stdout.strip().splitlines()[1:]]
    return [{"n": int(r[0]), "due": r[1], "principal": int(r[2]), "interest": int(r[3]), "fee": 0} for r in rows]


def figures(rows):
    interest = sum(r["interest"] for r in rows)
    principal = sum(r["principal"] for r in rows)
    return kes(rows[0]["principal"] + rows[0]["interest"]), kes(interest), kes(principal + interest)


def to_loans(c, phone):
    s = AT(c, phone)
    end, screen = s.dial()
    assert not end and "PIN" in screen, screen
    end, screen = s.send(PIN)
    assert not end, screen
    end, screen = s.send(option("main", "loans"))
    assert not end and screen.startswith(("Loans:", "Mikopo:")), screen
    return s


def ussd_apply(c, phone, amount, term, product=None, pin=PIN):
    """Loans > Apply: [product,] amount, term (the confirmation), PIN.
    Returns (confirmation screen, (end, last screen))."""
    s = to_loans(c, phone)
    end, screen = s.send(option("loans", "loan_apply"))
    if product is not None:
        assert not end and ("%s. " % product) in screen, screen
        end, screen = s.send(str(product))
    assert not end and screen.startswith("Amount to borrow"), screen
    s.send(str(amount))
    end, confirm = s.send(str(term))
    if not confirm.startswith("Borrow KES"):
        return confirm, (end, confirm)
    return confirm, s.send(pin)


def apply_sql(env, cid, uid, kes_amount, term, p, key=None, start="2027-03-01", rows=None):
    """loan_apply directly, with the rows the CLI prints (a caller's
    rows when given): the outcome row, or the error text."""
    rows = rows if rows is not None else schedule_cli(kes_amount, p, term, start)
    sql = ("SELECT outcome, loan_id, cover_needed_cents, queue_place FROM loan_apply(%s, %s, %s, %d, %d, '%s', '%s', "
           "'ussd', %s)" % (cid, uid, "'%s'" % p["key"] if p.get("key") else "NULL", kes_amount * 100, term,
                            json.dumps(rows), key or "test:%d" % random.randrange(10 ** 15), AT_SQL))
    return q(env, sql)[0]


def test_loan_apply_ussd_confirmation_flat_and_reducing(env):
    """The confirmation's figures are loansched's for the product picked
    (a flat and a reducing one); the member's own savings cover the loan,
    so it goes to the officials at once, with its schedule recorded."""
    cid = new_chama(env, [FLAT, REDUCING])
    c = daemon(env)
    for n, prod in ((1, FLAT), (2, REDUCING)):
        phone, uid = member(env, cid, 12000)
        confirm, (end, done) = ussd_apply(c, phone, 10000, 6, product=n)
        rows = schedule_cli(10000, prod, 6)
        first, interest, total = figures(rows)
        assert confirm.startswith("Borrow KES 10,000 over 6 months\nFirst instalment KES %s\nInterest KES %s\n"
                                  "Total to repay KES %s\nPIN to apply:" % (first, interest, total)), confirm
        if prod is FLAT:  # DOMAIN.md 2.2's worked example: 1,200 interest, 1,866 and some cents a month
            assert (first, interest, total) == ("1,866.66", "1,200", "11,200"), confirm
        (lid, status, key, method), = q(env, "SELECT id, status, product_key, interest_method FROM loans "
                                             "WHERE user_id = %s" % uid)
        assert end and done == "Loan L%s of KES 10,000 is with the officials for approval. We will SMS you." % lid, \
            done
        assert status == "under_review" and key == prod["key"], (status, key)
        assert method == {"flat": "flat", "reducing": "reducing_balance"}[prod["method"]]
        got = q(env, "SELECT installment_no, due_date, principal_due_cents, interest_due_cents FROM loan_schedules "
                     "WHERE loan_id = %s ORDER BY installment_no" % lid)
        assert got == [[str(r["n"]), r["due"], str(r["principal"]), str(r["interest"])] for r in rows], got
        # the officials' approval is open (C), the member's savings hold the cover (B)
        assert q(env, "SELECT kind, status FROM approvals WHERE ref_id = %s AND kind = 'loan'" % lid) == \
            [["loan", "pending"]]
        assert q(env, "SELECT pledged_cents, status FROM loan_guarantors WHERE loan_id = %s" % lid) == \
            [["1000000", "accepted"]]
    c.stop()


def test_loan_apply_refusals_one_line_each(env):
    """Each eligibility rule refuses in its own line, on USSD (the screen
    again with why), by SQL for what the menus cannot send, and by SMS;
    nothing is written."""
    cid = new_chama(env)  # the default product: 3 x savings, 12 months at most
    c = daemon(env)
    # above 3 x savings less open loans (savings 5,000: limit 15,000)
    phone, uid = member(env, cid, 5000)
    confirm, _ = ussd_apply(c, phone, 15001, 6)
    assert confirm.startswith("Above your loan limit.\nRepay in how many months? (1-12)"), confirm
    # a term longer than the product's
    confirm, _ = ussd_apply(c, phone, 1000, 13)
    assert confirm.startswith("Term not allowed for it.\n"), confirm
    # at most one open loan (the default): the first is applied, the second refused
    confirm, (end, done) = ussd_apply(c, phone, 1000, 6)
    assert end and "is with the officials" in done, done
    confirm, _ = ussd_apply(c, phone, 1000, 6)
    assert confirm.startswith("Repay your open loan first.\n"), confirm
    # and what it owes counts against the limit, with loan_open_max_count 2
    q(env, "UPDATE chamas SET constitution = constitution || '{\"loan_open_max_count\": 2}' WHERE id = %s" % cid)
    confirm, _ = ussd_apply(c, phone, 14001, 6)
    assert confirm.startswith("Above your loan limit.\n"), confirm
    # arrears beyond the allowed (0): five months of KES 500 due, 1,000 paid
    phone2, uid2 = member(env, cid, 1000)
    confirm, _ = ussd_apply(c, phone2, 500, 2)
    assert confirm.startswith("Clear your arrears first.\n"), confirm
    q(env, "UPDATE chamas SET constitution = constitution || '{\"loan_arrears_max_cents\": 150000}' WHERE id = %s"
        % cid)
    confirm, (end, done) = ussd_apply(c, phone2, 500, 2)
    assert end and "is with the officials" in done, done
    # membership shorter than loan_membership_min_days (30)
    phone3, uid3 = member(env, cid, 5000, joined="2027-02-10")
    confirm, _ = ussd_apply(c, phone3, 1000, 6)
    assert confirm.startswith("Joined too recently to borrow\n"), confirm
    # the same by SMS, each with its line
    sms(c, phone3, "BORROW 1000*6 " + PIN)
    sms(c, phone, "BORROW 99000*6 " + PIN)
    sms(c, phone, "KOPA 15000 " + PIN)  # (a second word of four digits is read as the PIN)
    assert outbox_texts(env, None, "recipient = '%s' AND kind = 'sms_reply'" % phone3) == \
        ["ChamaSmart: no loan:\nyou joined too recently; members borrow after the days the rules set."]
    got = outbox_texts(env, None, "recipient = '%s' AND kind = 'sms_reply'" % phone)
    assert got == ["ChamaSmart: no loan:\nit is above your limit (LIMIT <PIN> tells it).",
                   "To borrow send BORROW <amount>*<instalments> <PIN>, e.g. BORROW 5000*6 1234. "
                   "See your limit first: LIMIT <PIN>."], got
    # no product: a chama whose every product is refused lends by none
    cid2 = new_chama(env, [{"key": "Bad Key"}])
    phone4, uid4 = member(env, cid2, 5000)
    s = to_loans(c, phone4)
    end, screen = s.send(option("loans", "loan_apply"))
    assert not end and screen.startswith("No such loan offered.\nLoans:"), screen
    # what the menus never send, refused the same way by the function
    assert apply_sql(env, cid, uid3, 1000, 6, {"key": "nosuch", **REDUCING})[0] == "err_loan_product"
    assert apply_sql(env, cid, uid3, 0, 6, {**REDUCING, "key": None}, rows=[])[0] == "err_loan_too_new"
    q(env, "UPDATE memberships SET joined_at = '2026-11-01' WHERE user_id = %s" % uid3)
    assert q(env, "SELECT outcome FROM loan_apply(%s, %s, NULL, 50, 6, '[]', 'test:a:%s', 'ussd', %s)"
             % (cid, uid3, uid3, AT_SQL)) == [["err_loan_amount"]]
    q(env, "UPDATE memberships SET status = 'left', left_at = now() WHERE user_id = %s" % uid3)
    assert q(env, "SELECT outcome FROM loan_apply(%s, %s, NULL, 100000, 6, '[]', 'test:b:%s', 'ussd', %s)"
             % (cid, uid3, uid3, AT_SQL)) == [["err_loan_not_member"]]
    assert q(env, "SELECT count(*) FROM loans WHERE user_id IN (%s, %s, %s)" % (uid3, uid4, uid2)) == [["1"]]
    assert q(env, "SELECT count(*) FROM loans WHERE user_id = %s" % uid) == [["1"]]
    c.stop()


def test_loan_limit_ussd_and_sms_in_both_languages(env):
    cid = new_chama(env, [dict(REDUCING, guarantors={"self_cover_bp": 5000, "min_count": 1, "max_count": 3})])
    c = daemon(env)
    for lang in ("en", "sw"):
        phone, uid = member(env, cid, 4000, lang=lang)
        s = to_loans(c, phone)
        end, screen = s.send(option("loans", "loan_limit"))
        if lang == "en":
            assert screen.startswith("You can borrow up to KES 12,000 today.\nSavings KES 4,000, owed KES 0.\n"
                                     "Your savings cover KES 2,000; guarantors (1-3) the rest."), screen
        else:
            assert screen.startswith("Unaweza kukopa hadi KES 12,000 leo.\nAkiba KES 4,000, deni KES 0.\n"
                                     "Akiba inadhamini KES 2,000; wadhamini (1-3) kilichobaki."), screen
        sms(c, phone, ("LIMIT " if lang == "en" else "KIKOMO ") + PIN)
        (name,), = q(env, "SELECT name FROM chamas WHERE id = %s" % cid)[0:1]
        got = outbox_texts(env, None, "recipient = '%s' AND kind = 'sms_reply'" % phone)
        want = {"en": "ChamaSmart loan limit:\n%s: up to KES 12,000 today. Your savings cover KES 2,000; "
                      "1-3 guarantors the rest." % name,
                "sw": "ChamaSmart kikomo cha mkopo:\n%s: hadi KES 12,000 leo. Akiba yako inadhamini KES 2,000; "
                      "wadhamini 1-3 kilichobaki." % name}[lang]
        assert got == [want], got
    # a member who may not borrow is told why, on both channels
    phone, uid = member(env, cid, 4000, lang="sw", joined="2027-02-20")
    s = to_loans(c, phone)
    end, screen = s.send(option("loans", "loan_limit"))
    assert screen.startswith("Huwezi kukopa leo:\nUmejiunga hivi karibuni mno.\n(Wanachama hukopa baada ya siku 30.)"), \
        screen
    sms(c, phone, "KIKOMO " + PIN)
    got = outbox_texts(env, None, "recipient = '%s' AND kind = 'sms_reply'" % phone)
    assert got[0].endswith(": hakuna mkopo leo: umejiunga hivi karibuni; wanachama hukopa baada ya siku za kanuni."), got
    # the limit counts what open loans owe
    phone, uid = member(env, cid, 4000)
    assert apply_sql(env, cid, uid, 3000, 3, REDUCING)[0] == "ok_loan_cover"
    (lim, owed, opened), = q(env, "SELECT limit_cents, owed_cents, open_loans FROM member_loan_limit(%s, %s, %s)"
                             % (cid, uid, AT_SQL))
    assert (lim, owed) == ("900000", "300000") and opened == "1", (lim, owed, opened)
    c.stop()


def test_loan_sms_borrow_answers_instalment_and_next_step(env):
    """BORROW <amount>*<instalments> <PIN>: applied on the chama's first
    product, the reply gives the figures loansched computes and what
    happens next; the message id is the key (a redelivery applies once)."""
    cid = new_chama(env, [REDUCING])
    c = daemon(env)
    phone, uid = member(env, cid, 2500)
    sms(c, phone, "BORROW 5000*6 " + PIN, msg_id="borrow-1")
    sms(c, phone, "BORROW 5000*6 " + PIN, msg_id="borrow-1")
    (lid,), = q(env, "SELECT id FROM loans WHERE user_id = %s" % uid)
    first, interest, total = figures(schedule_cli(5000, REDUCING, 6))
    (name,), = q(env, "SELECT name FROM chamas WHERE id = %s" % cid)
    got = outbox_texts(env, None, "recipient = '%s' AND kind = 'sms_reply'" % phone)
    assert got == ["ChamaSmart %s: loan L%s KES 5,000, 6 instalments. First KES %s, interest KES %s, total KES %s. "
                   "Name guarantors for KES 2,500 on USSD Loans." % (name, lid, first, interest, total)], got
    # in Swahili, a member covering their own loan: it goes to the officials
    phone2, uid2 = member(env, cid, 9000, lang="sw")
    sms(c, phone2, "KOPA 3000*3 " + PIN)
    (lid2, status), = q(env, "SELECT id, status FROM loans WHERE user_id = %s" % uid2)
    first, interest, total = figures(schedule_cli(3000, REDUCING, 3))
    got = outbox_texts(env, None, "recipient = '%s' AND kind = 'sms_reply'" % phone2)
    assert status == "under_review" and got == [
        "ChamaSmart %s: mkopo L%s KES 3,000, awamu 3. Ya kwanza KES %s, riba KES %s, jumla KES %s. Uko kwa viongozi."
        % (name, lid2, first, interest, total)], got
    c.stop()


def test_loan_queue_first_come_first_served(env):
    """The pool short: applications wait in order, each member told their
    place (SMS and screen); money freed moves the first in line while it
    fits, nobody passed over; a cancel makes room."""
    cid = new_chama(env, [REDUCING])
    c = daemon(env)
    members = [member(env, cid, 10000, name="Member %d" % i) for i in range(5)]
    (tre,), = q(env, "SELECT user_id FROM memberships WHERE chama_id = %s AND role = 'treasurer'" % cid)
    # another member's loan of 45,000 under review takes most of the 50,000
    (big,), = q(env, "INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_method, "
                     "term_periods, repayment_frequency) VALUES (%s, %s, 4500000, 100, 'reducing_balance', 6, "
                     "'monthly') RETURNING id" % (cid, tre))
    q(env, "UPDATE loans SET status = 'under_review' WHERE id = %s" % big)
    assert q(env, "SELECT loan_pool_cents(%s)" % cid) == [["500000"]]
    out = [apply_sql(env, cid, members[0][1], 4000, 3, REDUCING)]
    out.append(apply_sql(env, cid, members[1][1], 3000, 3, REDUCING))
    confirm, (end, done) = ussd_apply(c, members[2][0], 2000, 3)
    out.append(apply_sql(env, cid, members[3][1], 500, 3, REDUCING))
    assert out[0][0] == "ok_loan_review" and out[1][0] == out[2][0] == "ok_loan_queued", out
    assert (out[1][3], out[2][3]) == ("1", "3"), out  # the fourth fits the pool, but waits its turn
    (l1, l2, l3, l4), = [[r[0] for r in q(env, "SELECT id FROM loans WHERE chama_id = %s AND user_id <> %s "
                                           "ORDER BY id" % (cid, tre))]]
    assert end and done == ("Loan L%s applied. The chama's money is lent out: you are number 2 in the queue. "
                            "We will SMS you." % l3), done
    (name,), = q(env, "SELECT name FROM chamas WHERE id = %s" % cid)
    assert outbox_texts(env, None, "user_id = %s AND kind = 'loan'" % members[2][1]) == [
        "ChamaSmart %s: loan L%s of KES 2,000 waits for money to lend. You are number 2 in the queue; we will SMS you."
        % (name, l3)]
    # 3,500 paid in: the first in line (3,000) moves; the next (2,000) does not fit, and the one after waits
    q(env, "SELECT post_contribution(%s, %s, 350000, 'savings', 'cash', NULL, 'loantest:q:%s', NULL, 'admin', NULL, "
           "'test', '2026-12-01')" % (cid, members[4][1], cid))
    assert q(env, "SELECT loan_queue_advance(%s, %s)" % (cid, AT_SQL)) == [["1"]]
    assert q(env, "SELECT id, status, loan_queue_place(id) FROM loans WHERE id IN (%s, %s, %s) ORDER BY id"
             % (l2, l3, l4)) == [[l2, "under_review", ""], [l3, "queued", "1"], [l4, "queued", "2"]]
    assert outbox_texts(env, None, "user_id = %s AND kind = 'loan'" % members[1][1])[-1] == \
        "ChamaSmart %s: your loan L%s of KES 3,000 is now with the officials for approval." % (name, l2)
    assert outbox_texts(env, None, "user_id = %s AND kind = 'loan'" % members[2][1])[-1].endswith(
        "You are number 1 in the queue; we will SMS you.")
    # the borrower first in line cancels: the next moves up, and fits
    assert q(env, "SELECT loan_cancel(%s, %s, %s)" % (l3, members[2][1], AT_SQL)) == [["ok_loan_cancelled"]]
    assert q(env, "SELECT loan_cancel(%s, %s, %s)" % (l2, members[1][1], AT_SQL)) == [["err_loan_not_cancellable"]]
    assert q(env, "SELECT loan_cancel(%s, %s, %s)" % (l4, members[2][1], AT_SQL)) == [["err_loan_not_yours"]]
    assert q(env, "SELECT id, status FROM loans WHERE id IN (%s, %s) ORDER BY id" % (l3, l4)) == \
        [[l3, "cancelled"], [l4, "under_review"]]
    assert q(env, "SELECT status FROM loan_guarantors WHERE loan_id = %s" % l3) == [["cancelled"]]
    # approvals opened in the queue's order
    assert [r[0] for r in q(env, "SELECT ref_id FROM approvals WHERE kind = 'loan' AND chama_id = %s ORDER BY id"
                            % cid)] == [l1, l2, l4]
    c.stop()


def test_loan_apply_is_idempotent_by_its_key(env):
    cid = new_chama(env, [REDUCING])
    c = daemon(env)
    phone, uid = member(env, cid, 10000)
    # the PIN hop sent twice (the aggregator retries): one loan, the same answer
    s = to_loans(c, phone)
    s.send(option("loans", "loan_apply"))
    s.send("8000")
    s.send("4")
    first = s.send(PIN)
    again = s.hop("*".join(s.inputs))
    assert first == again and first[0] and "is with the officials" in first[1], (first, again)
    assert q(env, "SELECT count(*) FROM loans WHERE user_id = %s" % uid) == [["1"]]
    # the function itself: the same key answers the same loan as it stands now
    phone2, uid2 = member(env, cid, 3000)
    a = apply_sql(env, cid, uid2, 5000, 3, REDUCING, key="test:idem:%s" % uid2)
    b = apply_sql(env, cid, uid2, 5000, 3, REDUCING, key="test:idem:%s" % uid2)
    assert a == b and a[0] == "ok_loan_cover" and a[2] == "200000", (a, b)
    assert q(env, "SELECT count(*) FROM loans WHERE user_id = %s" % uid2) == [["1"]]
    # cover short: the screen says how much, and goes on to naming a guarantor (B's screen)
    phone3, uid3 = member(env, cid, 3000)
    s = to_loans(c, phone3)
    s.send(option("loans", "loan_apply"))
    s.send("5000")
    s.send("3")
    end, screen = s.send(PIN)
    (lid3,), = q(env, "SELECT id FROM loans WHERE user_id = %s" % uid3)
    assert not end and screen.startswith("Loan L%s applied. Guarantors must cover KES 2,000 of it.\n"
                                         "1. Name a guarantor" % lid3), screen
    end, screen = s.send("1")
    assert not end and screen.startswith("Guarantor's member number or phone:"), screen
    # another member's key is a bug, not their loan
    err = env.psql_error("SELECT loan_apply(%s, %s, 'reducing', 100000, 3, '[]', 'test:idem:%s', 'ussd', %s)"
                         % (cid, uid, uid2, AT_SQL))
    assert "is another application's" in err, err
    c.stop()


def test_loan_schedule_record_recomputes_and_refuses_a_wrong_schedule(env):
    """loan_schedule_record recomputes the schedule from the loan's terms:
    rows that differ by a cent, miss a row, or go back in time are refused
    (raised: the caller's bug) and the application with them; the 30-case
    table the C code passes is the SQL recomputation's too."""
    cid = new_chama(env, [FLAT, REDUCING])
    phone, uid = member(env, cid, 20000)
    rows = schedule_cli(10000, FLAT, 6)
    bad = [dict(r) for r in rows]
    bad[2]["interest"] += 1
    bad[5]["interest"] -= 1  # the total still right: the row is wrong
    err = env.psql_error("SELECT loan_apply(%s, %s, 'flat', 1000000, 6, '%s', 'test:bad:%s', 'ussd', %s)"
                         % (cid, uid, json.dumps(bad), uid, AT_SQL))
    assert "instalment 3: principal 166666, interest 20001, fee 0 where the terms give 166666, 20000, 0" in err, err
    for wrong, why in ((rows[:5], "the schedule has 5 rows, the term is 6"),
                       ([dict(r, due="2027-04-01") if r["n"] == 3 else r for r in rows], "instalment 3 is due"),
                       ([dict(r, principal=r["principal"] + (1 if r["n"] == 1 else 0)) for r in rows],
                        "instalment 1: principal 166667")):
        err = env.psql_error("SELECT loan_apply(%s, %s, 'flat', 1000000, 6, '%s', 'test:bad2:%s', 'ussd', %s)"
                             % (cid, uid, json.dumps(wrong), uid, AT_SQL))
        assert why in err, (why, err)
    assert q(env, "SELECT count(*) FROM loans WHERE user_id = %s" % uid) == [["0"]]
    # the right rows are recorded; recording them again (the dates of the
    # day paid) rewrites them while nothing is paid
    out = apply_sql(env, cid, uid, 10000, 6, FLAT)
    (lid,), = q(env, "SELECT id FROM loans WHERE user_id = %s" % uid)
    later = schedule_cli(10000, FLAT, 6, start="2027-03-10")
    assert q(env, "SELECT loan_schedule_record(%s, '%s', '2027-03-10')" % (lid, json.dumps(later))) == [["6"]]
    assert q(env, "SELECT min(due_date), sum(principal_due_cents), sum(interest_due_cents) FROM loan_schedules "
                  "WHERE loan_id = %s" % lid) == [["2027-04-10", "1000000", "120000"]], out
    # the 30-case table: the SQL recomputation agrees with every expected row
    cases = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "loan_schedules", "*.csv")))
    assert len(cases) >= 30
    for f in cases:
        t = dict(line.strip().split("=", 1) for line in open(f[:-4] + ".in") if "=" in line)
        cents = int(round(float(t["principal"]) * 100))
        terms = {"rate_bp": int(t["rate_bp"]), "per": t["per"], "method": t["method"], "frequency": t["frequency"],
                 "grace": int(t.get("grace", 0)), "grace_kind": t.get("grace_kind", "none"), "fee_cents": 0}
        got = q(env, "SELECT n, due, principal_cents, interest_cents FROM loan_schedule_expected(%d, '%s', %s, '%s')"
                % (cents, json.dumps(terms), t["term"], t["start"]))
        want = [line.strip().split(",")[:4] for line in open(f).read().strip().splitlines()[1:]]
        assert got == want, (f, got[:3], want[:3])


def test_loan_products_from_the_constitution(env):
    """No loan_products: the default product; a bad product is ignored
    with a log line (the others still lend); its defaults filled in."""
    cid = new_chama(env)
    (p,), = q(env, "SELECT loan_products(%s)" % cid)[0:1]
    p = json.loads(p)
    assert (p["key"], p["multiplier_bp"], p["guarantors"]["self_cover_bp"], p["penalty"]["grace_days"],
            p["default_days"]) == ("standard", 30000, 10000, 2, 30), p
    cid = new_chama(env, [FLAT, {"key": "bad", "rate_bp": "ten"}, dict(REDUCING, key="flat"),
                          dict(REDUCING, guarantors={"min_count": 2}, grace=1, grace_kind="principal")])
    got = [json.loads(r[0]) for r in q(env, "SELECT loan_products(%s)" % cid)]
    assert [g["key"] for g in got] == ["flat", "reducing"], got
    assert got[1]["guarantors"] == {"self_cover_bp": 10000, "min_count": 2, "max_count": 5}, got[1]
    assert q(env, "SELECT loan_product(%s, 'bad') IS NULL, loan_product(%s, 'reducing') ->> 'grace_kind'"
             % (cid, cid)) == [["t", "principal"]]
    faults = q(env, "SELECT loan_product_fault(loan_product_merge(p)) FROM (VALUES ('{\"key\": \"x\", \"rate_bp\": "
                    "20000}'::jsonb), ('{\"key\": \"x\", \"grace\": 2}'), ('{\"key\": \"x\", \"penalty\": "
                    "{\"kind\": \"daily\"}}')) v(p)")
    assert [f[0] for f in faults] == ["rate_bp is out of range for its per",
                                      "grace_kind is none exactly when grace is 0 (else principal or interest_free)",
                                      "penalty: kind flat|percent, cents, bp 0-10000, grace_days 0-365, "
                                      "compound true|false"], faults


def test_loan_lifecycle_is_held_by_its_trigger(env):
    cid = new_chama(env, [REDUCING])
    phone, uid = member(env, cid, 10000)
    apply_sql(env, cid, uid, 3000, 3, REDUCING)
    (lid, st), = q(env, "SELECT id, status FROM loans WHERE user_id = %s" % uid)
    assert st == "under_review"
    for to in ("applied", "queued", "active", "closed", "disbursed", "cancelled"):
        err = env.psql_error("UPDATE loans SET status = '%s' WHERE id = %s" % (to, lid))
        assert "under_review -> %s is not a move of its lifecycle" % to in err, err
    err = env.psql_error("UPDATE loans SET principal_cents = 1 WHERE id = %s" % lid)
    assert "its borrower, principal, term and terms are fixed" in err, err
    allowed = {(r[0], r[1]) for r in q(env, "SELECT f, t FROM unnest('{applied,queued,under_review,approved,"
                                            "rejected,disbursed,active,closed,defaulted,written_off,cancelled}'"
                                            "::text[]) f, unnest('{applied,queued,under_review,approved,rejected,"
                                            "disbursed,active,closed,defaulted,written_off,cancelled}'::text[]) t "
                                            "WHERE loan_transition_allowed(f, t)")}
    assert allowed == {("applied", "queued"), ("applied", "under_review"), ("applied", "cancelled"),
                       ("queued", "under_review"), ("queued", "cancelled"), ("under_review", "approved"),
                       ("under_review", "rejected"), ("approved", "active"), ("approved", "cancelled"),
                       ("active", "defaulted"), ("active", "closed"), ("active", "written_off"),
                       ("defaulted", "closed"), ("defaulted", "written_off")}, allowed
    q(env, "UPDATE loans SET status = 'rejected' WHERE id = %s" % lid)
    assert q(env, "SELECT count(*) FROM audit_logs WHERE entity_type = 'loans' AND entity_id = %s "
                  "AND action = 'update' AND after ->> 'status' = 'rejected'" % lid) == [["1"]]
