"""The loans' jobs (schema/75_loan_penalties.sql, run by src/ops/jobs.c):
late penalties once per instalment and penalty period (flat, or a
percent rounded HALF_EVEN, compounding only when the terms say so), none
for an instalment paid within its grace; reminders 3 days and 1 day
before each due date and once when overdue, in each member's language;
a loan defaulted after its default_days, the borrower and the officials
told; a repayment and the penalty job racing on one loan decided one after
the other.  Each job is idempotent across runs, daemons and restarts, and
the ledger balances after each step.

The loans are made here with SQL, as migration 024's recipes post them
(disbursement Dr loans_receivable / Cr mpesa_float, interest Dr
loans_receivable / Cr interest_income): this part only needs an active
loan with its schedule.  Money comes back through the real loan_repay
(schema/74_loan_repay.sql): its allocations, repayment rows and postings
are what verify-ledger checks, and its lock on the loan is what the race
test races the penalty job against."""
import json
import subprocess
import time

from notify_fixtures import outbox_texts
from test_ledger import verify

TZ = "Africa/Nairobi"
PAYBILL = "174379"


def lp_db(env, name):
    url = env.fresh_db("chamasmart_lpen_" + name)
    env.migrate(url)
    return url


def one(env, url, sql):
    (v,), = env.psql(sql, url)
    return v


def seed(env, url, langs=("en",)):
    """A chama, its chairperson and treasurer, and one borrower per language;
    the chairperson's savings fund the loans (the float they go out of)."""
    cid = one(env, url, "INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                        "VALUES ('Tujenge', 'asca', 50000, 'monthly') RETURNING id")
    users = {}
    for i, (who, role, lang) in enumerate([("Chair", "chairperson", "en"), ("Treasurer", "treasurer", "sw")] +
                                          [("Borrower %s" % l, "member", l) for l in langs]):
        uid = one(env, url, "INSERT INTO users (phone, full_name, preferred_language) VALUES "
                            "('+25472%07d', '%s', '%s') RETURNING id" % (i, who, lang))
        env.psql("INSERT INTO memberships (user_id, chama_id, role, joined_at) VALUES (%s, %s, '%s', "
                 "'2025-01-01 09:00+03')" % (uid, cid, role), url)
        users[who if role == "member" else role] = uid
    env.psql("SELECT post_contribution(%s, %s, 100000000, 'savings', 'mpesa', 'QSEED', 'test:seed', NULL, 'mpesa', "
             "NULL, 't', NULL, '2026-01-01 09:00+03')" % (cid, users["chairperson"]), url)
    return cid, users


def make_loan(env, url, cid, uid, rows, terms, frequency="weekly", at="2026-02-20 10:00+03"):
    """An active loan of chama cid for uid: rows [(due 'YYYY-MM-DD', principal
    cents, interest cents, fee cents)], its terms, and its disbursement and
    interest posted as 024's recipes say.  Returns the loan id."""
    principal = sum(r[1] for r in rows)
    interest = sum(r[2] for r in rows)
    fees = sum(r[3] for r in rows)
    lid = one(env, url,
              "INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_rate_period, "
              "interest_method, term_periods, repayment_frequency, status, amount_disbursed_cents, "
              "total_interest_cents, fees_cents, terms, disbursed_at, first_due_date, maturity_date, channel, "
              "product_key) VALUES (%s, %s, %d, 100, 'month', 'flat', %d, '%s', 'active', %d, %d, %d, '%s', '%s', "
              "'%s', '%s', 'system', 'standard') RETURNING id"
              % (cid, uid, principal, len(rows), frequency, principal, interest, fees, json.dumps(terms), at,
                 rows[0][0], rows[-1][0]))
    for n, (due, p, i, f) in enumerate(rows, 1):
        env.psql("INSERT INTO loan_schedules (loan_id, installment_no, due_date, principal_due_cents, "
                 "interest_due_cents, fee_due_cents) VALUES (%s, %d, '%s', %d, %d, %d)" % (lid, n, due, p, i, f), url)

    def post(kind, key, lines, action, direction):
        env.psql("SELECT ledger_post(%s, '%s', '%s', '%s', 'loans', %s, NULL, '%s', NULL, 'system', 'test', '%s')"
                 % (cid, kind, key, json.dumps(lines), lid,
                    json.dumps({"action": action, "user": uid, "direction": direction, "method": "internal",
                                "key": key}), at), url)
    post("loan_disbursement", "test:disb:%s" % lid,
         [{"kind": "loans_receivable", "user": uid, "side": "debit", "cents": principal},
          {"kind": "mpesa_float", "side": "credit", "cents": principal}], "loan_disbursed", "out")
    if interest + fees:
        post("loan_interest", "test:int:%s" % lid,
             [{"kind": "loans_receivable", "user": uid, "side": "debit", "cents": interest + fees}] +
             ([{"kind": "interest_income", "side": "credit", "cents": interest}] if interest else []) +
             ([{"kind": "fee_income", "side": "credit", "cents": fees}] if fees else []), "adjustment", "internal")
    return lid


def owed(env, url, lid, n):
    """What instalments 1..n of the loan owe now (penalties, fee, interest,
    principal): what pays instalment n in full, since loan_repay allocates
    from the oldest instalment."""
    return int(one(env, url, "SELECT coalesce(sum(principal_due_cents - principal_paid_cents + interest_due_cents "
                             "- interest_paid_cents + penalty_due_cents - penalty_paid_cents + fee_due_cents "
                             "- fee_paid_cents), 0) FROM loan_schedules WHERE loan_id = %s AND installment_no <= %d"
                   % (lid, n)))


def repay_sql(lid, n, cents, at):
    """loan_repay of cents by M-Pesa (Dr mpesa_float), keyed test:repay:<loan>:<n>."""
    return ("SELECT outcome FROM loan_repay(%s, %d, 'mpesa', '{\"kind\": \"mpesa_float\"}', 'test:repay:%s:%d', "
            "NULL, NULL, NULL, 'mpesa', '%s')" % (lid, cents, lid, n, at))


def repay(env, url, lid, n, at):
    """The borrower pays what instalments 1..n owe now, through loan_repay."""
    assert one(env, url, repay_sql(lid, n, owed(env, url, lid, n), at)) in ("ok_loan_repaid", "ok_loan_closed")
    assert one(env, url, "SELECT status FROM loan_schedules WHERE loan_id = %s AND installment_no = %d"
               % (lid, n)) == "paid"


def penalties(env, url, at):
    return int(one(env, url, "SELECT loan_penalties_run('%s', '%s', '%s')" % (at, TZ, PAYBILL)))


def reminders(env, url, at):
    return int(one(env, url, "SELECT loan_reminders_run('%s', '%s', '%s')" % (at, TZ, PAYBILL)))


def defaults(env, url, at):
    return int(one(env, url, "SELECT loan_defaults_run('%s', '%s', '%s')" % (at, TZ, PAYBILL)))


def levied(env, url, lid):
    """[(instalment, period, cents, basis, levied_on)] of the loan."""
    return [(int(a), int(b), int(c), int(d), e) for a, b, c, d, e in env.psql(
        "SELECT s.installment_no, p.period_no, p.amount_cents, p.basis_cents, p.levied_on FROM loan_penalties p "
        "JOIN loan_schedules s ON s.id = p.schedule_id WHERE p.loan_id = %s ORDER BY 1, 2" % lid, url)]


def books_hold(env, url, cid):
    """The ledger balances, verify-ledger passes, and the loans' rows agree
    with it: every borrower's loans_receivable is what their loans say they
    owe, penalty_income is the penalties levied, and each loan's penalties
    are its instalments' and its rows'."""
    rc, out = verify(env, url)
    assert rc == 0, out
    assert env.psql("SELECT coalesce(sum(amount_cents) FILTER (WHERE side = 'debit'), 0) = "
                    "coalesce(sum(amount_cents) FILTER (WHERE side = 'credit'), 0) FROM journal_lines", url) == [["t"]]
    bad = env.psql("SELECT a.user_id, a.balance_cents, (SELECT coalesce(sum(l.outstanding_balance_cents + l.fees_cents "
                   "- l.fees_paid_cents - l.written_off_cents), 0) FROM loans l WHERE l.user_id = a.user_id AND "
                   "l.chama_id = a.chama_id) FROM ledger_accounts a WHERE a.chama_id = %s AND a.kind = "
                   "'loans_receivable' AND a.balance_cents <> (SELECT coalesce(sum(l.outstanding_balance_cents + "
                   "l.fees_cents - l.fees_paid_cents - l.written_off_cents), 0) FROM loans l WHERE l.user_id = "
                   "a.user_id AND l.chama_id = a.chama_id)" % cid, url)
    assert bad == [], bad
    assert env.psql("SELECT coalesce((SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = "
                    "'penalty_income'), 0) = (SELECT coalesce(sum(p.amount_cents), 0) FROM loan_penalties p JOIN "
                    "loans l ON l.id = p.loan_id WHERE l.chama_id = %s)" % (cid, cid), url) == [["t"]]
    bad = env.psql("SELECT l.id FROM loans l WHERE l.chama_id = %s AND (l.penalties_cents <> (SELECT coalesce(sum("
                   "amount_cents), 0) FROM loan_penalties WHERE loan_id = l.id) OR l.penalties_cents <> (SELECT "
                   "coalesce(sum(penalty_due_cents), 0) FROM loan_schedules WHERE loan_id = l.id))" % cid, url)
    assert bad == [], bad
    # each penalty is one posting of its own amount, keyed by its instalment and period
    bad = env.psql("SELECT p.id FROM loan_penalties p JOIN journal_entries j ON j.id = p.journal_entry_id "
                   "WHERE j.kind <> 'loan_penalty' OR j.idempotency_key <> 'loan_penalty:' || p.schedule_id || ':' "
                   "|| p.period_no OR (SELECT sum(amount_cents) FROM journal_lines WHERE entry_id = j.id AND "
                   "side = 'debit') <> p.amount_cents", url)
    assert bad == [], bad


def run_daemons(env, url, now, daemons=1):
    """Daemons whose jobs timer runs every second at the injected now; a few
    runs each, then they stop."""
    cs = [env.chamad({"CHAMAD_DATABASE_URL": url, "CHAMAD_JOBS_NOW": now, "CHAMAD_JOBS_EVERY_S": "1",
                      "CHAMAD_MPESA_SHORTCODE": PAYBILL}) for _ in range(daemons)]
    time.sleep(2.5)
    for c in cs:
        c.stop()


FLAT = {"penalty": {"kind": "flat", "cents": 10000, "grace_days": 2}}
WEEKLY = [("2026-03-02", 100000, 10000, 0), ("2026-03-09", 100000, 10000, 0), ("2026-03-16", 100000, 10000, 0)]


def test_flat_penalty_once_per_instalment_and_period(env):
    url = lp_db(env, "flat")
    cid, u = seed(env, url)
    lid = make_loan(env, url, cid, u["Borrower en"], WEEKLY, FLAT)
    books_hold(env, url, cid)
    # due 2 Mar, grace 2 days: nothing on the 2nd, 3rd and 4th
    for day in ("02", "03", "04"):
        assert penalties(env, url, "2026-03-%s 23:00+03" % day) == 0
    # 5 Mar, the first day after the grace: period 1 of instalment 1, from
    # two daemons at once, then a restart: levied once
    run_daemons(env, url, "2026-03-05 08:00+03", daemons=2)
    assert levied(env, url, lid) == [(1, 1, 10000, 110000, "2026-03-05")]
    run_daemons(env, url, "2026-03-05 20:00+03")
    assert penalties(env, url, "2026-03-05 21:00+03") == 0
    assert levied(env, url, lid) == [(1, 1, 10000, 110000, "2026-03-05")]
    assert env.psql("SELECT penalties_cents, outstanding_balance_cents FROM loans WHERE id = %s" % lid, url) == \
        [["10000", "340000"]]
    books_hold(env, url, cid)
    # the borrower told once, with how to pay
    assert outbox_texts(env, url, "kind = 'loan_penalty'") == [
        "ChamaSmart: a late penalty of KES 100 was added to your Tujenge loan L%s (instalment due 02 Mar). Now due: "
        "KES 1,200. Pay: M-Pesa paybill %s, account L%s." % (lid, PAYBILL, lid)]
    # a week is a period: nothing more until 12 Mar (the day after the 11th
    # also ends instalment 2's grace)
    assert penalties(env, url, "2026-03-11 23:59+03") == 0
    assert penalties(env, url, "2026-03-12 00:01+03") == 2
    assert penalties(env, url, "2026-03-12 18:00+03") == 0
    assert levied(env, url, lid) == [(1, 1, 10000, 110000, "2026-03-05"), (1, 2, 10000, 110000, "2026-03-12"),
                                     (2, 1, 10000, 110000, "2026-03-12")]
    books_hold(env, url, cid)
    # two weeks without a run: each missed period levied once, dated its day
    assert penalties(env, url, "2026-03-26 09:00+03") == 6
    assert levied(env, url, lid) == [
        (1, 1, 10000, 110000, "2026-03-05"), (1, 2, 10000, 110000, "2026-03-12"),
        (1, 3, 10000, 110000, "2026-03-19"), (1, 4, 10000, 110000, "2026-03-26"),
        (2, 1, 10000, 110000, "2026-03-12"), (2, 2, 10000, 110000, "2026-03-19"),
        (2, 3, 10000, 110000, "2026-03-26"),
        (3, 1, 10000, 110000, "2026-03-19"), (3, 2, 10000, 110000, "2026-03-26")]
    assert one(env, url, "SELECT penalties_cents FROM loans WHERE id = %s" % lid) == "90000"
    books_hold(env, url, cid)
    # a paid instalment gets no more: instalment 1 paid (its penalties too)
    repay(env, url, lid, 1, "2026-03-27 10:00+03")
    assert penalties(env, url, "2026-04-02 09:00+03") == 2  # instalments 2 and 3, period 4 and 3
    assert [x[:2] for x in levied(env, url, lid) if x[0] == 1] == [(1, 1), (1, 2), (1, 3), (1, 4)]
    books_hold(env, url, cid)


def test_percent_penalty_half_even_and_compounding(env):
    url = lp_db(env, "percent")
    cid, u = seed(env, url)
    monthly = lambda p, i: [("2026-01-31", p, i, 0), ("2026-02-28", p, i, 0)]
    pct = {"penalty": {"kind": "percent", "bp": 500, "grace_days": 2}}
    # 5 % of the unpaid instalment: 20,210 -> 1,010.5 -> 1,010 (even);
    # 20,230 -> 1,011.5 -> 1,012; 20,215 -> 1,010.75 -> 1,011
    a = make_loan(env, url, cid, u["Borrower en"], monthly(20000, 210), pct, "monthly")
    b = make_loan(env, url, cid, u["Borrower en"], monthly(20000, 230), pct, "monthly")
    c = make_loan(env, url, cid, u["Borrower en"], monthly(20000, 215), pct, "monthly")
    # compounding, as its terms say: period 2 counts period 1's penalty
    d = make_loan(env, url, cid, u["Borrower en"], monthly(20000, 210),
                  {"penalty": {"kind": "percent", "bp": 500, "grace_days": 2, "compound": True}}, "monthly")
    # a fee is part of what is overdue: 20,000 + 200 + 10 -> 1,010.5 -> 1,010
    e = make_loan(env, url, cid, u["Borrower en"], [("2026-01-31", 20000, 200, 10), ("2026-02-28", 20000, 200, 0)],
                  pct, "monthly")
    books_hold(env, url, cid)
    # due 31 Jan, grace to 2 Feb: period 1 on 3 Feb, period 2 on 3 Mar
    assert penalties(env, url, "2026-02-02 12:00+03") == 0
    assert penalties(env, url, "2026-02-03 12:00+03") == 5
    assert penalties(env, url, "2026-03-02 12:00+03") == 0  # 28 Feb's grace runs to 2 Mar
    assert [levied(env, url, x) for x in (a, b, c, d, e)] == [
        [(1, 1, 1010, 20210, "2026-02-03")], [(1, 1, 1012, 20230, "2026-02-03")],
        [(1, 1, 1011, 20215, "2026-02-03")], [(1, 1, 1010, 20210, "2026-02-03")],
        [(1, 1, 1010, 20210, "2026-02-03")]]
    books_hold(env, url, cid)
    assert penalties(env, url, "2026-03-03 12:00+03") == 10
    # no compounding: the basis stays the instalment's own dues
    assert levied(env, url, a) == [(1, 1, 1010, 20210, "2026-02-03"), (1, 2, 1010, 20210, "2026-03-03"),
                                   (2, 1, 1010, 20210, "2026-03-03")]
    # compounding: 20,210 + 1,010 = 21,220 -> 1,061
    assert levied(env, url, d) == [(1, 1, 1010, 20210, "2026-02-03"), (1, 2, 1061, 21220, "2026-03-03"),
                                   (2, 1, 1010, 20210, "2026-03-03")]
    books_hold(env, url, cid)
    # a calendar month: nothing more until 3 Apr
    assert penalties(env, url, "2026-04-02 12:00+03") == 0
    assert penalties(env, url, "2026-04-03 12:00+03") == 10
    assert [x[:3] for x in levied(env, url, d)][2:] == [(1, 3, 1114), (2, 1, 1010), (2, 2, 1061)]
    books_hold(env, url, cid)


def test_paid_within_grace_is_never_penalised(env):
    url = lp_db(env, "grace")
    cid, u = seed(env, url)
    lid = make_loan(env, url, cid, u["Borrower en"], WEEKLY, FLAT)
    other = make_loan(env, url, cid, u["Borrower en"], WEEKLY, {"penalty": {"kind": "flat", "cents": 5000}})
    assert penalties(env, url, "2026-03-03 09:00+03") == 0
    # paid on the last day of its grace
    repay(env, url, lid, 1, "2026-03-04 18:00+03")
    repay(env, url, other, 1, "2026-03-04 18:00+03")
    # the other instalments' turn comes; instalment 1 never
    assert penalties(env, url, "2026-03-05 09:00+03") == 0
    assert penalties(env, url, "2026-03-30 09:00+03") == 2 * (3 + 2)
    assert [x for x in levied(env, url, lid) if x[0] == 1] == []
    assert [x for x in levied(env, url, other) if x[0] == 1] == []
    # the default grace is 2 days when the terms do not say
    assert [x[:2] + x[4:] for x in levied(env, url, other)][:1] == [(2, 1, "2026-03-12")]
    books_hold(env, url, cid)
    # a loan with no penalty rule gets none, and no notice
    none = make_loan(env, url, cid, u["Borrower en"], WEEKLY, {})
    assert penalties(env, url, "2026-04-30 09:00+03") == 2 * (5 + 5)
    assert levied(env, url, none) == []
    books_hold(env, url, cid)


def test_reminders_3_days_1_day_and_overdue_once_each(env):
    url = lp_db(env, "remind")
    cid, u = seed(env, url, langs=("en", "sw"))
    rows = [("2026-03-10", 100000, 10000, 0), ("2026-03-17", 100000, 10000, 0)]
    en = make_loan(env, url, cid, u["Borrower en"], rows, FLAT)
    sw = make_loan(env, url, cid, u["Borrower sw"], rows, FLAT)

    def texts(what):
        return outbox_texts(env, url, "kind = 'loan_reminder' AND idempotency_key LIKE '%%:1:%s'" % what)
    assert reminders(env, url, "2026-03-06 09:00+03") == 0
    # 3 days before, from two daemons at once: one each, in each one's language
    run_daemons(env, url, "2026-03-07 09:00+03", daemons=2)
    assert texts("due3") == [
        "ChamaSmart: your Tujenge loan L%s instalment of KES 1,100 is due on 10 Mar, in 3 days. Pay: M-Pesa paybill "
        "%s, account L%s." % (en, PAYBILL, en),
        "ChamaSmart: rejesho la mkopo L%s wa Tujenge la KES 1,100 linatakiwa 10 Mar, baada ya siku 3. Lipa: M-Pesa "
        "paybill %s, akaunti L%s." % (sw, PAYBILL, sw)]
    assert reminders(env, url, "2026-03-07 18:00+03") == 0
    assert reminders(env, url, "2026-03-08 09:00+03") == 0
    # the day before
    assert reminders(env, url, "2026-03-09 09:00+03") == 2
    assert texts("due1") == [
        "ChamaSmart: your Tujenge loan L%s instalment of KES 1,100 is due on 10 Mar. Please pay on time. Pay: M-Pesa "
        "paybill %s, account L%s." % (en, PAYBILL, en),
        "ChamaSmart: rejesho la mkopo L%s wa Tujenge la KES 1,100 linatakiwa 10 Mar. Tafadhali lipa kwa wakati. "
        "Lipa: M-Pesa paybill %s, akaunti L%s." % (sw, PAYBILL, sw)]
    assert reminders(env, url, "2026-03-10 09:00+03") == 0
    # the Swahili borrower pays on the day; the other is overdue the day after
    repay(env, url, sw, 1, "2026-03-10 12:00+03")
    assert reminders(env, url, "2026-03-11 09:00+03") == 1
    assert texts("overdue") == [
        "ChamaSmart: your Tujenge loan L%s instalment of KES 1,100 was due on 10 Mar and is not paid. Pay now to "
        "avoid a penalty. Pay: M-Pesa paybill %s, account L%s." % (en, PAYBILL, en)]
    # restarted, later days: nothing twice
    run_daemons(env, url, "2026-03-12 09:00+03")
    assert reminders(env, url, "2026-03-13 09:00+03") == 0
    # a daemon down on the 3-day day still reminds the day after
    assert reminders(env, url, "2026-03-15 09:00+03") == 2  # instalment 2, both
    assert sorted(r[0] for r in env.psql("SELECT idempotency_key FROM notifications WHERE kind = 'loan_reminder'",
                                         url)) == sorted(
        ["loan:%s:1:due3" % en, "loan:%s:1:due3" % sw, "loan:%s:1:due1" % en, "loan:%s:1:due1" % sw,
         "loan:%s:1:overdue" % en, "loan:%s:2:due3" % en, "loan:%s:2:due3" % sw])
    # without a paybill the notice still says how to pay
    assert reminders(env, url, "2026-03-16 09:00+03") == 2
    env.psql("SELECT loan_reminders_run('2026-03-18 09:00+03', '%s')" % TZ, url)
    assert outbox_texts(env, url, "idempotency_key = 'loan:%s:2:overdue'" % en) == [
        "ChamaSmart: your Tujenge loan L%s instalment of KES 1,100 was due on 17 Mar and is not paid. Pay now to "
        "avoid a penalty. Pay: M-Pesa paybill, account L%s, or dial Loans > Repay." % (en, en)]


def test_default_after_its_days_borrower_and_officials_told(env):
    url = lp_db(env, "default")
    cid, u = seed(env, url, langs=("en",))
    short = make_loan(env, url, cid, u["Borrower en"], WEEKLY, dict(FLAT, default_days=10))
    usual = make_loan(env, url, cid, u["Borrower en"], WEEKLY, {})
    assert defaults(env, url, "2026-03-12 12:00+03") == 0   # 10 days after 2 Mar
    assert defaults(env, url, "2026-03-13 12:00+03") == 1
    assert env.psql("SELECT status, defaulted_at = '2026-03-13 12:00+03' FROM loans WHERE id = %s" % short, url) == \
        [["defaulted", "t"]]
    assert defaults(env, url, "2026-03-13 13:00+03") == 0
    assert outbox_texts(env, url, "kind = 'loan_default' AND user_id = %s" % u["Borrower en"]) == [
        "ChamaSmart: your Tujenge loan L%s is in default: KES 2,200 unpaid since 02 Mar. Your guarantors may be "
        "called to pay. Pay now. Pay: M-Pesa paybill %s, account L%s." % (short, PAYBILL, short)]
    assert outbox_texts(env, url, "kind = 'loan_default' AND user_id <> %s" % u["Borrower en"]) == [
        "ChamaSmart: Borrower en's Tujenge loan L%s is in default: KES 2,200 unpaid since 02 Mar (11 days). "
        "Officials may call the guarantors or write it off." % short,
        "ChamaSmart: mkopo L%s wa Borrower en katika Tujenge umeshindwa kulipwa: KES 2,200 tangu 02 Mar (siku 11). "
        "Viongozi wanaweza kudai wadhamini au kuufuta." % short]
    # the usual 30 days, from the daemons' timer (twice, and after a restart)
    run_daemons(env, url, "2026-04-01 12:00+03", daemons=2)
    assert one(env, url, "SELECT status FROM loans WHERE id = %s" % usual) == "active"
    run_daemons(env, url, "2026-04-02 12:00+03", daemons=2)
    run_daemons(env, url, "2026-04-02 13:00+03")
    assert one(env, url, "SELECT status FROM loans WHERE id = %s" % usual) == "defaulted"
    assert one(env, url, "SELECT count(*) FROM notifications WHERE kind = 'loan_default'") == "6"
    # a defaulted loan still gets its penalties
    n = len(levied(env, url, short))
    assert penalties(env, url, "2026-04-09 12:00+03") > 0 and len(levied(env, url, short)) > n
    books_hold(env, url, cid)
    # a loan paid up in time is not defaulted: its first instalment paid
    # (loan_repay would close a loan paid in full: a second one keeps it
    # active, 26 days late on 1 Jun, within its 30)
    paid = make_loan(env, url, cid, u["Borrower en"], [("2026-04-06", 100000, 0, 0), ("2026-05-06", 100000, 0, 0)],
                     {}, "monthly")
    repay(env, url, paid, 1, "2026-04-07 12:00+03")
    assert defaults(env, url, "2026-06-01 12:00+03") == 0
    assert one(env, url, "SELECT status FROM loans WHERE id = %s" % paid) == "active"


def race(env, url, first_sql, second_sql):
    """first_sql holds the loan (it pauses inside its transaction); second_sql
    starts while it does.  Returns how long second_sql took."""
    p = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", url, "-c", first_sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    t = time.monotonic()
    env.psql(second_sql, url)
    took = time.monotonic() - t
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return took


def test_repayment_and_penalty_racing_are_decided_one_after_the_other(env):
    url = lp_db(env, "race")
    cid, u = seed(env, url)
    at = "2026-03-05 09:00+03"
    # the repayment first (it holds the loan): the job waits, then sees the
    # instalment paid: no penalty
    a = make_loan(env, url, cid, u["Borrower en"], WEEKLY, FLAT)
    took = race(env, url, "BEGIN; %s; SELECT pg_sleep(3); COMMIT;" % repay_sql(a, 1, owed(env, url, a, 1), at),
                "SELECT loan_penalties_run('%s', '%s', '%s')" % (at, TZ, PAYBILL))
    assert took > 1, took  # it waited for the repayment
    assert levied(env, url, a) == []
    assert one(env, url, "SELECT status FROM loan_schedules WHERE loan_id = %s AND installment_no = 1" % a) == "paid"
    books_hold(env, url, cid)
    # the job first (it holds the loan until it commits): the repayment
    # waits, then pays the penalty with the instalment: the borrower pays
    # the instalment and the flat penalty the job is levying (what its
    # notice says is due); allocated from the loan as the job left it, the
    # penalty first, it pays instalment 1 in full
    b = make_loan(env, url, cid, u["Borrower en"], WEEKLY, FLAT)
    took = race(env, url, "BEGIN; SELECT loan_penalties_run('%s', '%s', '%s'); SELECT pg_sleep(2); COMMIT;"
                % (at, TZ, PAYBILL), repay_sql(b, 1, owed(env, url, b, 1) + FLAT["penalty"]["cents"], at))
    assert took > 1, took
    assert levied(env, url, b) == [(1, 1, 10000, 110000, "2026-03-05")]
    assert env.psql("SELECT penalty_due_cents, penalty_paid_cents, status FROM loan_schedules WHERE loan_id = %s "
                    "AND installment_no = 1" % b, url) == [["10000", "10000", "paid"]]
    assert one(env, url, "SELECT x.amount_cents FROM loan_repayments r JOIN journal_lines x ON x.entry_id = "
                         "r.journal_entry_id WHERE r.idempotency_key = 'test:repay:%s:1' AND x.side = 'debit'"
               % b) == "120000"
    assert env.psql("SELECT penalty_cents, interest_cents, principal_cents, credit_cents FROM loan_repayments "
                    "WHERE idempotency_key = 'test:repay:%s:1'" % b, url) == [["10000", "10000", "100000", "0"]]
    books_hold(env, url, cid)
    # a second run while the first holds the job's lock answers 0 at once
    took = race(env, url, "BEGIN; SELECT loan_penalties_run('2026-03-12 09:00+03', '%s'); SELECT pg_sleep(2); "
                "COMMIT;" % TZ, "SELECT loan_penalties_run('2026-03-12 09:00+03', '%s')" % TZ)
    assert took < 1, took
    assert one(env, url, "SELECT count(*) FROM loan_penalties WHERE levied_on = '2026-03-12'") == "2"
    books_hold(env, url, cid)
