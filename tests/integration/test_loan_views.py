"""What a member sees of their loans (issue 11 point 7): USSD Loans > My
loans (each loan with what the ledger says is owed and the next instalment,
or where the application stands), Loans > Schedule (paged: number, due
date, instalment, paid or left), one instalment in detail, and SMS LOAN /
MKOPO with the same figures, in English and Swahili.  The loans are written
here directly in SQL by 024's recipes (the loan row, its schedule, and each
posting through ledger_post), so these tests need no other part of the
loans work.  One book: a loan whose cached columns are changed without a
posting is still shown with the ledger's balance, and `chamad
verify-ledger` names it; so does every other kind of loan row that
disagrees with the books (its schedule, its allocations, a repayment's
entry)."""
import json
import re

from test_ledger import verify
from test_mpesa import add_member, PIN
from test_sms import setup as sms_setup, inbound, replies
from test_ussd import AT

AT_ = "'2026-01-05 09:00:00+03'"


AUDIT = {"loan_disbursement": ("loan_disbursed", "out"), "loan_interest": ("adjustment", "internal"),
         "loan_repayment": ("loan_repaid", "in"), "adjustment": ("adjustment", "internal")}


def post(env, url, cid, kind, key, lines, ref_table, ref_id):
    action, direction = AUDIT[kind]
    audit = {"action": action, "direction": direction, "key": key, "method": "mpesa"}
    (e,), = env.psql("SELECT entry_id FROM ledger_post(%s, '%s', '%s', '%s'::jsonb, %s, %s, NULL, "
                     "'%s'::jsonb, NULL, 'system', 'test', %s)"
                     % (cid, kind, key, json.dumps(lines), "'%s'" % ref_table if ref_table else "NULL",
                        ref_id or "NULL", json.dumps(audit), AT_), url)
    return e


def seed_float(env, url, cid, uid, kes):
    env.psql("SELECT post_contribution(%s, %s, %d, 'savings', 'mpesa', 'FLOAT%s', 'float:%s', NULL, 'admin', NULL, "
             "'test', NULL)" % (cid, uid, kes * 100, cid, cid), url)


def make_loan(env, url, cid, uid, principal, interest, dues, status="active", paid_out=True):
    """A loan as the lifecycle leaves it once paid out (024's recipes): the
    row, its schedule (dues: [(date, principal, interest)]), the
    disbursement (Dr loans_receivable / Cr mpesa_float) and the interest
    posted at pay-out (Dr loans_receivable / Cr interest_income)."""
    (lid,), = env.psql(
        "INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_rate_period, "
        "interest_method, term_periods, repayment_frequency, status, amount_disbursed_cents, total_interest_cents, "
        "product_key, applied_at, disbursed_at, first_due_date, maturity_date) VALUES (%s, %s, %d, 1000, 'term', "
        "'flat', %d, 'monthly', '%s', %d, %d, 'standard', %s, %s, %s, %s) RETURNING id"
        % (cid, uid, principal, len(dues), status, principal if paid_out else 0,
           interest if paid_out else 0, "clock_timestamp()",
           "now()" if paid_out else "NULL", "'%s'" % dues[0][0], "'%s'" % dues[-1][0]), url)
    for n, (due, p, i) in enumerate(dues, 1):
        env.psql("INSERT INTO loan_schedules (loan_id, installment_no, due_date, principal_due_cents, "
                 "interest_due_cents) VALUES (%s, %d, '%s', %d, %d)" % (lid, n, due, p, i), url)
    if paid_out:
        post(env, url, cid, "loan_disbursement", "test:loan:%s:out" % lid,
             [{"kind": "loans_receivable", "user": int(uid), "side": "debit", "cents": principal},
              {"kind": "mpesa_float", "side": "credit", "cents": principal}], "loans", lid)
        post(env, url, cid, "loan_interest", "test:loan:%s:interest" % lid,
             [{"kind": "loans_receivable", "user": int(uid), "side": "debit", "cents": interest},
              {"kind": "interest_income", "side": "credit", "cents": interest}], "loans", lid)
    return lid


def repay(env, url, cid, uid, lid, parts):
    """A repayment by M-Pesa as loan_repay leaves it: the row with its split,
    its allocations (parts: [(instalment, component, cents)]), the
    instalments' paid parts, the loan's repaid, and its entry (Dr
    mpesa_float / Cr loans_receivable)."""
    total = sum(c for _, _, c in parts)
    split = {k: sum(c for _, comp, c in parts if comp == k) for k in ("principal", "interest", "penalty", "fee")}
    (rid,), = env.psql("INSERT INTO loan_repayments (loan_id, user_id, amount_cents, principal_cents, interest_cents, "
                       "penalty_cents, fee_cents, method, status, confirmed_at) VALUES (%s, %s, %d, %d, %d, %d, %d, "
                       "'mpesa', 'confirmed', now()) RETURNING id"
                       % (lid, uid, total, split["principal"], split["interest"], split["penalty"], split["fee"]), url)
    for n, comp, c in parts:
        (sid,), = env.psql("SELECT id FROM loan_schedules WHERE loan_id = %s AND installment_no = %d" % (lid, n), url)
        env.psql("INSERT INTO loan_allocations (repayment_id, schedule_id, component, cents) VALUES (%s, %s, '%s', %d)"
                 % (rid, sid, comp, c), url)
        env.psql("UPDATE loan_schedules SET %s_paid_cents = %s_paid_cents + %d WHERE id = %s" % (comp, comp, c, sid),
                 url)
    env.psql("UPDATE loans SET amount_repaid_cents = amount_repaid_cents + %d WHERE id = %s"
             % (total - split["fee"], lid), url)
    e = post(env, url, cid, "loan_repayment", "test:repay:%s" % rid,
             [{"kind": "mpesa_float", "side": "debit", "cents": total},
              {"kind": "loans_receivable", "user": int(uid), "side": "credit", "cents": total}], "loan_repayments", rid)
    env.psql("UPDATE loan_repayments SET journal_entry_id = %s WHERE id = %s" % (e, rid), url)
    return rid


def seed(env, url, lang="en"):
    """A chama, a saver whose M-Pesa savings are the float, and a borrower
    with one loan paid out (12,000 + 1,200 interest over three months),
    one instalment and a part of the next repaid, and a second application
    waiting in the queue."""
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Upendo', 'mixed', 50000, 'monthly') RETURNING id", url)
    saver = add_member(env, url, cid, "member", "Saver")
    phone, uid, _ = add_member(env, url, cid, "member", "Borrower")
    env.psql("UPDATE users SET preferred_language = '%s' WHERE id = %s" % (lang, uid), url)
    seed_float(env, url, cid, saver[1], 50000)
    lid = make_loan(env, url, cid, uid, 1200000, 120000,
                    [("2026-02-05", 400000, 40000), ("2026-03-05", 400000, 40000), ("2026-04-05", 400000, 40000)])
    repay(env, url, cid, uid, lid, [(1, "interest", 40000), (1, "principal", 400000)])
    repay(env, url, cid, uid, lid, [(2, "interest", 40000), (2, "principal", 60000)])
    queued = make_loan(env, url, cid, uid, 500000, 0, [("2026-05-05", 500000, 0)], status="queued", paid_out=False)
    return {"chama": cid, "phone": phone, "user": uid, "loan": lid, "queued": queued, "saver": saver}


def option(screen, label):
    """The number of the option labelled label on a menu screen."""
    m = re.search(r"^(\d+)\. %s$" % re.escape(label), screen, re.M)
    assert m, (label, screen)
    return m.group(1)


def loans_screen(c, phone, lang="en"):
    s = AT(c, phone)
    s.dial()
    end, screen = s.send(PIN)
    assert not end and ("Main menu" in screen or "Menyu kuu" in screen), screen
    end, screen = s.send(option(screen, "Loans" if lang == "en" else "Mikopo"))
    assert not end, screen
    return s, screen


def all_items(s, screen):
    """Every item of a paged list (following 98), with the screens seen."""
    items, screens = [], [screen]
    while True:
        items += [l for l in screen.split("\n") if re.match(r"^\d+\. ", l) and not re.match(r"^(0|98|00)\. ", l)]
        if "\n98. " not in screen:
            return items, screens
        end, screen = s.send("98")
        assert not end, screen
        screens.append(screen)


def test_loan_views_ussd_and_sms_from_the_ledger(env):
    url, emu, e = sms_setup(env, "loanviews")
    c = env.chamad(e)
    k = seed(env, url)
    assert verify(env, url)[0] == 0, verify(env, url)[1]
    # My loans: the ledger's balance (13,200 - 4,400 - 1,000), the next
    # instalment (#2, 4,400 less the 1,000 paid), and the queued one
    s, screen = loans_screen(c, k["phone"])
    end, screen = s.send(option(screen, "My loans"))
    assert not end and screen.startswith("My loans (KES):"), screen
    assert "1. #%s owe 7,800, next 3,400 05 Mar" % k["loan"] in screen, screen
    assert "2. #%s 5,000 in the queue" % k["queued"] in screen, screen
    # the loan chosen: its schedule, instalment by instalment
    end, screen = s.send("1")
    assert not end and screen.startswith("Loan #%s (KES):" % k["loan"]), screen
    items, _ = all_items(s, screen)
    assert items == ["1. #1 05 Feb 4,400 paid", "2. #2 05 Mar 4,400 left 3,400", "3. #3 05 Apr 4,400 left 4,400"], \
        items
    # one instalment in detail
    s2, screen = loans_screen(c, k["phone"])
    s2.send(option(screen, "My loans"))
    s2.send("1")
    end, screen = s2.send("2")
    assert not end and screen.startswith("#2 of 3 due 05 Mar 2026\nPrincipal 4,000\nInterest 400\nFee 0\nPenalty 0\n"
                                         "Paid 1,000, left 3,400"), screen
    # Loans > Schedule: the member's oldest loan with a schedule
    s3, screen = loans_screen(c, k["phone"])
    end, screen = s3.send(option(screen, "Schedule"))
    assert not end and screen.startswith("Loan #%s (KES):" % k["loan"]), screen
    # SMS LOAN: the same lines
    inbound(c, k["phone"], "LOAN " + PIN, "lv1")
    # Balance agrees: the ledger's loans_receivable
    got = replies(env, url, k["phone"])
    assert got == ["Your loans:\nUpendo loan #%s: KES 7,800 to repay, next KES 3,400 by 05 Mar\n"
                   "Upendo loan #%s: KES 5,000, in the queue for the chama's funds" % (k["loan"], k["queued"])], got
    inbound(c, k["phone"], "BAL " + PIN, "lv2")
    assert "loan KES 7,800" in replies(env, url, k["phone"])[1]
    # another member's loan is never shown, even by its number
    other = add_member(env, url, k["chama"], "member", "Other")
    s4, screen = loans_screen(c, other[0])
    end, screen = s4.send(option(screen, "My loans"))
    assert screen.startswith("You have no loans in Upendo."), screen
    c.stop()
    emu.stop()


def test_loan_views_swahili_and_paging(env):
    url, emu, e = sms_setup(env, "loanviews_sw")
    c = env.chamad(e)
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Tumaini', 'mixed', 50000, 'monthly') RETURNING id", url)
    saver = add_member(env, url, cid, "member", "Saver")
    phone, uid, _ = add_member(env, url, cid, "member", "Mkopaji")
    env.psql("UPDATE users SET preferred_language = 'sw' WHERE id = %s" % uid, url)
    seed_float(env, url, cid, saver[1], 50000)
    # twelve weekly instalments of 1,000 + 50: more than one screen holds
    dues = [("2026-%02d-%02d" % (1 + (d // 28), 1 + d % 28), 100000, 5000) for d in range(0, 84, 7)]
    lid = make_loan(env, url, cid, uid, 1200000, 60000, dues)
    repay(env, url, cid, uid, lid, [(1, "interest", 5000), (1, "principal", 100000), (2, "interest", 5000)])
    s, screen = loans_screen(c, phone, "sw")
    end, screen = s.send(option(screen, "Mikopo yangu"))
    assert not end and screen.startswith("Mikopo yangu (KES):") and \
        "1. #%s deni 11,500, ijayo 1,000 08 Jan" % lid in screen, screen
    end, screen = s.send("1")
    items, screens = all_items(s, screen)
    assert len(screens) > 1 and all(sc.startswith("Mkopo #%s (KES):" % lid) for sc in screens), screens
    # each page numbers from 1; the instalments' own numbers run on
    labels = [re.sub(r"^\d+\. ", "", i) for i in items]
    assert labels[0] == "#1 01 Jan 1,050 imelipwa" and labels[1] == "#2 08 Jan 1,050 baki 1,000", labels
    assert [int(re.match(r"#(\d+) ", l).group(1)) for l in labels] == list(range(1, 13)), labels
    inbound(c, phone, "MKOPO " + PIN, "sw1")
    assert replies(env, url, phone) == ["Mikopo yako:\nTumaini mkopo #%s: KES 11,500 kulipa, ijayo KES 1,000 kufikia "
                                        "08 Jan" % lid]
    assert verify(env, url)[0] == 0
    c.stop()
    emu.stop()


def test_loan_views_cached_columns_are_not_the_balance(env):
    """A loan's cached columns changed without a posting: the member is still
    shown what the ledger says, and verify-ledger names the loan."""
    url, emu, e = sms_setup(env, "loanviews_cache")
    c = env.chamad(e)
    k = seed(env, url)
    env.psql("UPDATE loans SET amount_repaid_cents = amount_repaid_cents + 300000 WHERE id = %s" % k["loan"], url)
    s, screen = loans_screen(c, k["phone"])
    end, screen = s.send(option(screen, "My loans"))
    assert "1. #%s owe 7,800," % k["loan"] in screen, screen
    inbound(c, k["phone"], "LOAN " + PIN, "cache1")
    assert "KES 7,800 to repay" in replies(env, url, k["phone"])[0]
    rc, out = verify(env, url)
    assert rc == 1, out
    assert re.search(r"BAD loan vs its entries: loan=%s status=active ledger=780000 columns=480000" % k["loan"], out), \
        out
    assert "BAD member loans_receivable vs their loans: chama=%s member=%s ledger=780000 loans=480000" \
        % (k["chama"], k["user"]) in out, out
    assert "BAD loan schedule vs the loan: loan=%s status=active what=repaid loan_cents=840000 schedule_cents=540000" \
        % k["loan"] in out, out
    c.stop()
    emu.stop()


def test_loan_verify_ledger_names_each_disagreement(env):
    """Each kind of loan row that disagrees with the books, one at a time on a
    fresh copy of the same books, is named by verify-ledger."""
    cases = [
        # the schedule's interest parts are not the loan's interest
        ("UPDATE loan_schedules SET interest_due_cents = interest_due_cents + 1 WHERE loan_id = {loan} "
         "AND installment_no = 3", ["BAD loan schedule vs the loan: loan={loan} status=active what=interest "
                                    "loan_cents=120000 schedule_cents=120001"]),
        # an instalment's paid part without the allocation that paid it
        ("UPDATE loan_schedules SET principal_paid_cents = principal_paid_cents + 100 WHERE loan_id = {loan} "
         "AND installment_no = 3", ["BAD loan allocations: of=instalment", "component=principal parts=100 allocated=0",
                                    "BAD loan schedule vs the loan: loan={loan} status=active what=repaid"]),
        # an allocation that is not its repayment's
        ("INSERT INTO loan_allocations (repayment_id, schedule_id, component, cents) SELECT r.id, s.id, 'fee', 5 "
         "FROM loan_repayments r, loan_schedules s WHERE r.loan_id = {loan} AND s.loan_id = {loan} "
         "AND s.installment_no = 3 ORDER BY r.id LIMIT 1",
         ["BAD loan allocations: of=repayment", "component=fee parts=0 allocated=5",
          "BAD loan allocations: of=instalment", "component=fee parts=0 allocated=5"]),
        # a repayment split differently from what its entry took off the loan
        ("ALTER TABLE loan_repayments DROP CONSTRAINT loan_repayments_split_check; "
         "UPDATE loan_repayments SET amount_cents = amount_cents + 7 WHERE loan_id = {loan} AND amount_cents = 100000",
         ["BAD loan repayment vs its entry:", "paid_on_loan=100007 entry_cents=100000"]),
        # a fee charged on the row and never posted
        ("UPDATE loans SET fees_cents = 2500 WHERE id = {loan}",
         ["BAD loan vs its entries: loan={loan} status=active ledger=780000 columns=782500",
          "BAD loan schedule vs the loan: loan={loan} status=active what=fees loan_cents=2500 schedule_cents=0",
          "BAD member loans_receivable vs their loans"]),
        # an overpayment kept as savings with no line to the member's savings
        ("ALTER TABLE loan_repayments DROP CONSTRAINT loan_repayments_split_check; "
         "UPDATE loan_repayments SET credit_cents = 50 WHERE loan_id = {loan} AND amount_cents = 100000",
         ["BAD member account vs contributions:", "kind=member_savings",
          "BAD loan repayment vs its entry:", "paid_on_loan=99950 entry_cents=100000"]),
        # a posting on the borrower's loan account that is no loan's
        (lambda env, url, k: post(env, url, k["chama"], "adjustment", "test:stray",
                                  [{"kind": "loans_receivable", "user": int(k["user"]), "side": "debit", "cents": 999},
                                   {"kind": "mpesa_float", "side": "credit", "cents": 999}], None, None),
         ["BAD member loans_receivable vs their loans: chama={chama} member={user} ledger=780999 loans=780000"]),
    ]
    for i, (sql, wants) in enumerate(cases):
        url = env.fresh_db("chamasmart_loanverify_%d" % i)
        env.migrate(url)
        k = seed(env, url)
        rc, out = verify(env, url)
        assert rc == 0, out
        if callable(sql):
            sql(env, url, k)
        else:
            env.psql(sql.format(**k), url)
        rc, out = verify(env, url)
        assert rc == 1, (sql, out)
        for w in wants:
            assert w.format(**k) in out, (w.format(**k), out)
