"""Loan repayment (issue 11, point 5) against the real PostgreSQL: the
allocation table (tests/data/loan_allocations/, expected splits computed
without the SQL), overpayment kept as credit, two repayments at once on one
loan, the same M-Pesa receipt twice, STK and paybill L<id> through the
Daraja emulator (credited only once the status query agreed), cash by the
treasurer, a savings offset through approval, reversal, and a seeded
property test over random loans and payment streams.

Loans are made here the way 024's header says a paid-out loan looks: an
active loans row, its instalments, and the ledger's disbursement (Dr
loans_receivable / Cr mpesa_float) and interest (Dr loans_receivable / Cr
interest_income, fee_income) entries; penalties as the daily job levies
them (Dr loans_receivable / Cr penalty_income, the instalment's
penalty_due_cents)."""
import json
import os
import random
import subprocess
import threading
import time

from approval_fixtures import vote_sql
from harness import MPESA_SECRET, ROOT
from notify_fixtures import outbox_texts
from test_ledger import verify
import test_mpesa as tm
from ussd_fixtures import ussd

DATA = os.path.join(ROOT, "tests", "data", "loan_allocations")
COMPONENTS = ("penalty", "fee", "interest", "principal")
_n = [0]


def uniq():
    _n[0] += 1
    return "%d%06d" % (_n[0], random.randrange(10 ** 6))


def repay_db(env, name):
    url = env.fresh_db("chamasmart_loanrepay_" + name)
    env.migrate(url)
    return url


def chama(env, url, members=2, roles=None):
    """A chama with members (roles: a list, default all 'member') who have
    saved nothing yet; returns (chama id, [user ids])."""
    sql = ("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
           "VALUES ('Repay %s', 'mixed', 50000, 'monthly') RETURNING id;\n" % uniq())
    for i in range(members):
        sql += ("WITH u AS (INSERT INTO users (phone, full_name) VALUES ('+2547%08d', 'Borrower %d') RETURNING id) "
                "INSERT INTO memberships (user_id, chama_id, role) SELECT u.id, currval(pg_get_serial_sequence("
                "'chamas', 'id')), '%s' FROM u RETURNING user_id;\n"
                % (random.randrange(10 ** 8), i, roles[i] if roles else "member"))
    rows = script(env, url, sql)
    return int(rows[0][0]), [int(r[0]) for r in rows[1:]]


def script(env, url, sql, one=True):
    """Runs several statements in one psql (one transaction, unless not
    one: then each its own), returning every statement's rows in order
    (env.psql prints only the last statement's)."""
    p = subprocess.run(["psql", "-X", "-q"] + (["-1"] if one else []) + ["-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t",
                                                                       url or env.db_url],
                       input=sql, capture_output=True, text=True)
    assert p.returncode == 0, "psql failed: %s\n%s" % (sql[:300], p.stderr)
    return [line.split("\t") for line in p.stdout.splitlines() if line != ""]


def save_sql(cid, uid, cents, method="mpesa"):
    return ("SELECT 1 FROM post_contribution(%s, %s, %d, 'savings', '%s', NULL, 'save:%s', NULL, 'admin', NULL, "
            "'t', NULL);\n" % (cid, uid, cents, method, uniq()))


def save(env, url, cid, uid, cents, method="mpesa"):
    script(env, url, save_sql(cid, uid, cents, method))


LOAN = "currval(pg_get_serial_sequence('loans', 'id'))"


def make_loan(env, url, cid, uid, schedule, status="active", start="2026-01-05"):
    """An active (paid out) loan of the instalments given ({principal,
    interest, fee, penalty} each; monthly from start), with its ledger
    entries as 024 says; penalties levied as the job does.  The float is
    topped up first (a deposit of the principal by the borrower).  One
    psql, one transaction."""
    p = sum(r["principal"] for r in schedule)
    i = sum(r["interest"] for r in schedule)
    f = sum(r.get("fee", 0) for r in schedule)
    money = status not in ("applied", "queued", "under_review", "approved", "rejected", "cancelled")
    sql = save_sql(cid, uid, p)
    sql += ("INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_method, term_periods, "
            "repayment_frequency, status, amount_disbursed_cents, total_interest_cents, fees_cents, disbursed_at, "
            "first_due_date, maturity_date, product_key, terms) VALUES (%s, %s, %d, 1000, 'flat', %d, 'monthly', "
            "'%s', %d, %d, %d, %s, %s, %s, 'standard', '{}');\n"
            % (cid, uid, p, len(schedule), status, p if money else 0, i if money else 0, f if money else 0,
               "'%s'" % start if money else "NULL",
               "date '%s' + interval '1 month'" % start if money else "NULL",
               "date '%s' + make_interval(months => %d)" % (start, len(schedule)) if money else "NULL"))
    sql += ("INSERT INTO loan_schedules (loan_id, installment_no, due_date, principal_due_cents, interest_due_cents, "
            "fee_due_cents) VALUES %s;\n"
            % ", ".join("(%s, %d, date '%s' + make_interval(months => %d), %d, %d, %d)"
                        % (LOAN, n, start, n, r["principal"], r["interest"], r.get("fee", 0))
                        for n, r in enumerate(schedule, 1)))
    if money:
        sql += ("SELECT 1 FROM ledger_post(%s, 'loan_disbursement', 'test:disb:%s', jsonb_build_array("
                "jsonb_build_object('kind', 'loans_receivable', 'user', %s, 'side', 'debit', 'cents', %d), "
                "jsonb_build_object('kind', 'mpesa_float', 'side', 'credit', 'cents', %d)), 'loans', %s, NULL, "
                "jsonb_build_object('action', 'loan_disbursed', 'user', %s, 'direction', 'out', 'method', 'mpesa', "
                "'key', 'test:disb:' || %s), NULL, 'system', NULL, '%s');\n"
                % (cid, uniq(), uid, p, p, LOAN, uid, LOAN, start))
    if money and i + f:
        lines = ["jsonb_build_object('kind', 'loans_receivable', 'user', %s, 'side', 'debit', 'cents', %d)"
                 % (uid, i + f)]
        if i:
            lines.append("jsonb_build_object('kind', 'interest_income', 'side', 'credit', 'cents', %d)" % i)
        if f:
            lines.append("jsonb_build_object('kind', 'fee_income', 'side', 'credit', 'cents', %d)" % f)
        sql += ("SELECT 1 FROM ledger_post(%s, 'loan_interest', 'test:int:%s', jsonb_build_array(%s), 'loans', %s, "
                "NULL, jsonb_build_object('action', 'adjustment', 'user', %s, 'direction', 'internal', "
                "'key', 'test:int:' || %s), NULL, 'system', NULL, '%s');\n"
                % (cid, uniq(), ", ".join(lines), LOAN, uid, LOAN, start))
    for n, r in enumerate(schedule, 1):
        if money and r.get("penalty"):
            sql += levy_sql(LOAN, n, r["penalty"])
    sql += "SELECT %s;\n" % LOAN
    return int(script(env, url, sql)[-1][0])


def levy_sql(lid, n, cents):
    """A penalty as the daily job levies it: under the loan's lock, the
    instalment overdue, its penalty due, the loan's penalties, the entry."""
    return ("DO $$ DECLARE l loans%%ROWTYPE; BEGIN "
            "SELECT * INTO l FROM loans WHERE id = %s FOR UPDATE; "
            "UPDATE loan_schedules SET penalty_due_cents = penalty_due_cents + %d, status = 'overdue' "
            "WHERE loan_id = l.id AND installment_no = %d; "
            "UPDATE loans SET penalties_cents = penalties_cents + %d WHERE id = l.id; "
            "PERFORM ledger_post(l.chama_id, 'loan_penalty', 'test:pen:%s', jsonb_build_array("
            "jsonb_build_object('kind', 'loans_receivable', 'user', l.user_id, 'side', 'debit', 'cents', %d), "
            "jsonb_build_object('kind', 'penalty_income', 'side', 'credit', 'cents', %d)), 'loans', l.id, NULL, "
            "jsonb_build_object('action', 'loan_penalty', 'user', l.user_id, 'direction', 'internal', "
            "'key', 'test:pen:%s'), NULL, 'system', NULL, now()); END $$;\n"
            % (lid, cents, n, cents, uniq(), cents, cents, uniq()))


def levy(env, url, lid, n, cents):
    script(env, url, levy_sql(lid, n, cents))


REPAY_COLS = ("outcome", "repayment_id", "penalty", "fee", "interest", "principal", "credit", "balance")


def repay_sql(lid, cents, key=None, method="cash", debit=None, at="now()"):
    debit = debit or {"mpesa": {"kind": "mpesa_float"}, "cash": {"kind": "cash_on_hand"}}[method]
    return ("SELECT * FROM loan_repay(%s, %d, '%s', '%s', '%s', 'test', NULL, NULL, 'admin', %s);\n"
            % (lid, cents, method, json.dumps(debit), key or "test:pay:" + uniq(), at))


def repay(env, url, lid, cents, key=None, method="cash", debit=None, at="now()"):
    (row,) = env.psql(repay_sql(lid, cents, key, method, debit, at), url)
    return dict(zip(REPAY_COLS, row))


def paid_parts(env, url, lid):
    rows = env.psql("SELECT penalty_paid_cents, fee_paid_cents, interest_paid_cents, principal_paid_cents, status "
                    "FROM loan_schedules WHERE loan_id = %s ORDER BY installment_no" % lid, url)
    return [{c: int(v) for c, v in zip(COMPONENTS, r[:4])} for r in rows], [r[4] for r in rows]


def check_books(env, url):
    """The invariants after any step: every loan's totals agree with its
    instalments and repayments, each repayment's allocations sum to its
    split, every member's loans_receivable is the sum of their loans'
    balances, holds never above savings, and verify-ledger passes."""
    bad = env.psql(
        "SELECT l.id FROM loans l LEFT JOIN LATERAL (SELECT coalesce(sum(principal_due_cents), 0) pd, "
        "coalesce(sum(principal_paid_cents + interest_paid_cents + penalty_paid_cents), 0) pip, "
        "coalesce(sum(fee_paid_cents), 0) fp, coalesce(sum(penalty_due_cents), 0) pen, "
        "coalesce(sum(interest_due_cents), 0) i, coalesce(sum(fee_due_cents), 0) f, "
        "bool_and(principal_paid_cents <= principal_due_cents AND interest_paid_cents <= interest_due_cents "
        "AND fee_paid_cents <= fee_due_cents AND penalty_paid_cents <= penalty_due_cents) in_due "
        "FROM loan_schedules s WHERE s.loan_id = l.id) s ON true "
        "LEFT JOIN LATERAL (SELECT coalesce(sum(principal_cents + interest_cents + penalty_cents), 0) rp, "
        "coalesce(sum(fee_cents), 0) rf FROM loan_repayments r WHERE r.loan_id = l.id AND r.status = 'confirmed') r "
        "ON true WHERE l.status NOT IN ('applied', 'queued', 'under_review', 'approved', 'rejected', 'cancelled') "
        "AND (l.amount_repaid_cents <> s.pip OR l.fees_paid_cents <> s.fp OR l.penalties_cents <> s.pen "
        "OR l.total_interest_cents <> s.i OR l.fees_cents <> s.f OR l.amount_disbursed_cents <> s.pd "
        "OR NOT s.in_due OR l.amount_repaid_cents <> r.rp OR l.fees_paid_cents <> r.rf "
        "OR l.outstanding_balance_cents < 0 OR (l.status = 'closed') <> (l.outstanding_balance_cents + l.fees_cents "
        "- l.fees_paid_cents = 0))", url)
    assert not bad, ("loan totals disagree", bad)
    bad = env.psql(
        "SELECT r.id FROM loan_repayments r LEFT JOIN LATERAL (SELECT "
        "coalesce(sum(cents) FILTER (WHERE component = 'penalty'), 0) p, "
        "coalesce(sum(cents) FILTER (WHERE component = 'fee'), 0) f, "
        "coalesce(sum(cents) FILTER (WHERE component = 'interest'), 0) i, "
        "coalesce(sum(cents) FILTER (WHERE component = 'principal'), 0) pr FROM loan_allocations a "
        "WHERE a.repayment_id = r.id) a ON true WHERE a.p <> r.penalty_cents OR a.f <> r.fee_cents "
        "OR a.i <> r.interest_cents OR a.pr <> r.principal_cents "
        "OR r.penalty_cents + r.fee_cents + r.interest_cents + r.principal_cents + r.credit_cents <> r.amount_cents",
        url)
    assert not bad, ("allocations disagree with their repayment", bad)
    # a reversed repayment's allocations stay (what it did), so the
    # instalments' paid parts are the confirmed repayments' allocations
    bad = env.psql(
        "SELECT s.id FROM loan_schedules s LEFT JOIN LATERAL (SELECT "
        "coalesce(sum(a.cents) FILTER (WHERE component = 'penalty'), 0) p, "
        "coalesce(sum(a.cents) FILTER (WHERE component = 'fee'), 0) f, "
        "coalesce(sum(a.cents) FILTER (WHERE component = 'interest'), 0) i, "
        "coalesce(sum(a.cents) FILTER (WHERE component = 'principal'), 0) pr FROM loan_allocations a "
        "JOIN loan_repayments r ON r.id = a.repayment_id AND r.status = 'confirmed' WHERE a.schedule_id = s.id) a "
        "ON true WHERE a.p <> s.penalty_paid_cents OR a.f <> s.fee_paid_cents OR a.i <> s.interest_paid_cents "
        "OR a.pr <> s.principal_paid_cents", url)
    assert not bad, ("instalments' paid parts disagree with the allocations", bad)
    bad = env.psql(
        "SELECT a.chama_id, a.user_id, a.balance_cents, b.owed FROM ledger_accounts a JOIN LATERAL ("
        "SELECT coalesce(sum(l.outstanding_balance_cents + l.fees_cents - l.fees_paid_cents - l.written_off_cents), 0) "
        "owed FROM loans l WHERE l.chama_id = a.chama_id AND l.user_id = a.user_id) b ON true "
        "WHERE a.kind = 'loans_receivable' AND a.balance_cents <> b.owed", url)
    assert not bad, ("loans_receivable is not the sum of the loans' balances", bad)
    bad = env.psql(
        "SELECT g.guarantor_user_id FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id "
        "WHERE g.status = 'accepted' GROUP BY l.chama_id, g.guarantor_user_id HAVING "
        "sum(g.pledged_cents - g.released_cents - g.called_cents) > coalesce((SELECT balance_cents FROM "
        "ledger_accounts a WHERE a.chama_id = l.chama_id AND a.kind = 'member_savings' "
        "AND a.user_id = g.guarantor_user_id), 0)", url)
    assert not bad, ("holds above savings", bad)
    rc, out = verify(env, url)
    assert rc == 0, out


# -- the allocation table ------------------------------------------------------

def table_cases():
    out = []
    for f in ("hand.json", "generated.json"):
        for c in json.load(open(os.path.join(DATA, f)))["cases"]:
            out.append((f, c))
    return out


def test_loan_repay_allocation_table(env):
    """Every case of tests/data/loan_allocations (hand-worked and gen.py's,
    both computed without the SQL) run against loan_repay: each payment's
    split, the instalments' paid parts and statuses, closed or not."""
    url = repay_db(env, "table")
    assert len(table_cases()) >= 40
    for f, c in table_cases():
        cid, (uid, _) = chama(env, url)
        lid = make_loan(env, url, cid, uid, c["schedule"])
        # each payment its own transaction, as the channels make them
        rows = [dict(zip(REPAY_COLS, r)) for r in
                script(env, url, "".join(repay_sql(lid, a) for a in c["payments"]), one=False)]
        for amount, want, got in zip(c["payments"], c["expected"], rows):
            assert got["outcome"] in ("ok_loan_repaid", "ok_loan_closed"), (f, c["name"], got)
            assert {k: int(got[k]) for k in want} == want, (f, c["name"], amount, got, want)
        paid, status = paid_parts(env, url, lid)
        assert paid == c["paid_after"], (f, c["name"], paid)
        assert status == c["status_after"], (f, c["name"], status)
        (st,), = env.psql("SELECT status FROM loans WHERE id = %s" % lid, url)
        assert (st == "closed") == bool(c.get("closed")), (f, c["name"], st)
    check_books(env, url)


def test_loan_repay_overpayment_is_savings_and_receipt(env):
    """An overpayment closes the loan and the rest is the member's savings
    (never dropped); the ledger: Dr cash / Cr loans_receivable, Cr
    member_savings; the receipt SMS says what went where, in their
    language."""
    url = repay_db(env, "over")
    cid, (uid, _) = chama(env, url)
    env.psql("UPDATE users SET preferred_language = 'sw' WHERE id = %s" % uid, url)
    lid = make_loan(env, url, cid, uid, [{"principal": 40000, "interest": 2000, "fee": 500, "penalty": 0}])
    (before,), = env.psql("SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'member_savings' "
                          "AND user_id = %s" % (cid, uid), url)
    got = repay(env, url, lid, 50000)
    assert got["outcome"] == "ok_loan_closed" and int(got["credit"]) == 7500 and int(got["balance"]) == 0, got
    (after,), = env.psql("SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'member_savings' "
                         "AND user_id = %s" % (cid, uid), url)
    assert int(after) - int(before) == 7500
    lines = env.psql("SELECT a.kind, l.side, l.amount_cents FROM journal_lines l JOIN ledger_accounts a ON "
                     "a.id = l.account_id JOIN loan_repayments r ON r.journal_entry_id = l.entry_id WHERE r.id = %s "
                     "ORDER BY l.id" % got["repayment_id"], url)
    assert lines == [["cash_on_hand", "debit", "50000"], ["loans_receivable", "credit", "42500"],
                     ["member_savings", "credit", "7500"]], lines
    assert env.psql("SELECT status, closed_at IS NOT NULL FROM loans WHERE id = %s" % lid, url) == [["closed", "t"]]
    rows = env.psql("SELECT template, language, vars ->> 'credit', vars ->> 'loan' FROM notifications "
                    "WHERE idempotency_key = 'loan_repayment:%s:receipt'" % got["repayment_id"], url)
    assert rows == [["sms_loan_closed_credit", "sw", "75", "L%s" % lid]], rows
    # money that comes in after the loan closed is kept too: all credit
    late = repay(env, url, lid, 1234, method="mpesa")
    assert late["outcome"] == "ok_loan_repaid" and int(late["credit"]) == 1234, late
    check_books(env, url)


def test_loan_repay_refusals_and_repeats(env):
    """A loan never paid out is refused (every status before active); the
    same key twice is one repayment (the first one's split again); a
    non-positive amount is refused; nothing is written for a refusal."""
    url = repay_db(env, "refuse")
    cid, (uid, _) = chama(env, url)
    for st in ("applied", "queued", "under_review", "approved", "rejected", "cancelled"):
        lid = make_loan(env, url, cid, uid, [{"principal": 10000, "interest": 0, "fee": 0}], status=st)
        got = repay(env, url, lid, 5000)
        assert got["outcome"] == "err_repay_not_active", (st, got)
    assert repay(env, url, 999999999, 5000)["outcome"] == "err_repay_no_loan"
    # (another chama: loan_queue_advance, A's, is called where loans wait)
    cid, (uid, _) = chama(env, url)
    lid = make_loan(env, url, cid, uid, [{"principal": 10000, "interest": 1000, "fee": 0}])
    assert repay(env, url, lid, 0)["outcome"] == "err_amount"
    assert env.psql("SELECT count(*) FROM loan_repayments", url) == [["0"]]
    first = repay(env, url, lid, 3000, key="mpesa:SAME")
    again = repay(env, url, lid, 3000, key="mpesa:SAME")
    assert first == again and first["outcome"] == "ok_loan_repaid", (first, again)
    assert env.psql("SELECT count(*), sum(amount_cents) FROM loan_repayments WHERE loan_id = %s" % lid, url) == \
        [["1", "3000"]]
    check_books(env, url)


def test_loan_repay_two_at_once(env):
    """Two sessions repaying one loan at once, many times: each waits for
    the loan's lock, so every cent is allocated once and the totals are
    exact; a penalty levied meanwhile (the job's lock) is allocated too."""
    url = repay_db(env, "race")
    cid, (uid, _) = chama(env, url)
    sched = [{"principal": 100000, "interest": 7000, "fee": 1000 if n == 0 else 0, "penalty": 0} for n in range(6)]
    lid = make_loan(env, url, cid, uid, sched)
    total = sum(r["principal"] + r["interest"] + r["fee"] for r in sched) + 3 * 1111
    errors = []

    def payer(seed):
        rng = random.Random(seed)
        try:
            for _ in range(25):
                repay(env, url, lid, rng.randint(1000, 9000), method=rng.choice(["cash", "mpesa"]))
        except Exception as e:  # reported below, with the thread's seed
            errors.append((seed, e))

    def penaliser():
        try:
            for n in (1, 2, 3):
                levy(env, url, lid, n, 1111)
        except Exception as e:
            errors.append(("levy", e))

    ts = [threading.Thread(target=payer, args=(s,)) for s in (1, 2)] + [threading.Thread(target=penaliser)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    (paid, n, credit), = env.psql("SELECT sum(amount_cents - credit_cents), count(*), sum(credit_cents) "
                                  "FROM loan_repayments WHERE loan_id = %s" % lid, url)
    assert n == "50"
    (bal,), = env.psql("SELECT outstanding_balance_cents + fees_cents - fees_paid_cents FROM loans WHERE id = %s"
                       % lid, url)
    assert int(paid) + int(bal) == total, (paid, bal, total)
    assert int(credit) == 0 or int(bal) == 0
    check_books(env, url)


def test_loan_repay_reversal(env):
    """A reversal undoes exactly that repayment's allocations (the
    instalments as they were before it when it is the last), the reverse
    entry mirrors its lines, once; a credit comes back out of savings; a
    closed loan's repayment is refused."""
    url = repay_db(env, "reverse")
    cid, (uid, _) = chama(env, url)
    lid = make_loan(env, url, cid, uid, [{"principal": 50000, "interest": 5000, "fee": 1000, "penalty": 700},
                                         {"principal": 50000, "interest": 5000, "fee": 0, "penalty": 0}])
    repay(env, url, lid, 10000)
    before = paid_parts(env, url, lid)
    (bal0,), = env.psql("SELECT outstanding_balance_cents FROM loans WHERE id = %s" % lid, url)
    r = repay(env, url, lid, 60000)
    assert paid_parts(env, url, lid) != before
    out = env.psql("SELECT * FROM loan_repayment_reverse(%s, 'bounced', NULL, 'admin', now())"
                   % r["repayment_id"], url)
    assert out[0][0] == "ok_repayment_reversed", out
    assert paid_parts(env, url, lid) == before
    assert env.psql("SELECT outstanding_balance_cents FROM loans WHERE id = %s" % lid, url) == [[bal0]]
    again = env.psql("SELECT outcome FROM loan_repayment_reverse(%s, 'bounced', NULL, 'admin', now())"
                     % r["repayment_id"], url)
    assert again == [["err_already_reversed"]]
    # the reverse entry is the first one's lines the other way
    mirror = env.psql("SELECT a.account_id, a.side, b.side, a.amount_cents = b.amount_cents FROM loan_repayments r "
                      "JOIN journal_lines a ON a.entry_id = r.journal_entry_id JOIN journal_lines b ON "
                      "b.entry_id = r.reversal_entry_id AND b.account_id = a.account_id WHERE r.id = %s"
                      % r["repayment_id"], url)
    assert len(mirror) == 2 and all(m[1] != m[2] and m[3] == "t" for m in mirror), mirror
    check_books(env, url)
    # an overpayment's credit comes back out of savings on reversal; a
    # closed loan's repayment is not reversed
    r2 = repay(env, url, lid, 200000)
    assert r2["outcome"] == "ok_loan_closed"
    assert env.psql("SELECT outcome FROM loan_repayment_reverse(%s, 'x', NULL, 'admin', now())"
                    % r2["repayment_id"], url) == [["err_repay_loan_closed"]]
    late = repay(env, url, lid, 5000)
    assert env.psql("SELECT outcome FROM loan_repayment_reverse(%s, 'x', NULL, 'admin', now())"
                    % late["repayment_id"], url) == [["ok_repayment_reversed"]]
    check_books(env, url)


def test_loan_repay_reversal_order(env):
    """The undo runs from the last instalment back, principal, interest,
    fee, penalty: read from the order the instalments were written back
    (the audit trigger's rows when bound, else the statements' order seen
    through a trigger of this test's own)."""
    url = repay_db(env, "revorder")
    cid, (uid, _) = chama(env, url)
    lid = make_loan(env, url, cid, uid, [{"principal": 20000, "interest": 2000, "fee": 300, "penalty": 400},
                                         {"principal": 20000, "interest": 2000, "fee": 0, "penalty": 0},
                                         {"principal": 20000, "interest": 2000, "fee": 0, "penalty": 0}])
    r = repay(env, url, lid, 30000)
    env.psql("CREATE TABLE undo_seen (n serial, installment_no int)", url)
    env.psql("CREATE FUNCTION undo_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "INSERT INTO undo_seen (installment_no) VALUES (NEW.installment_no); RETURN NEW; END $$", url)
    env.psql("CREATE TRIGGER undo_seen AFTER UPDATE ON loan_schedules FOR EACH ROW EXECUTE FUNCTION undo_seen()",
             url)
    env.psql("SELECT loan_repayment_reverse(%s, 'order', NULL, 'admin', now())" % r["repayment_id"], url)
    seen = [int(x[0]) for x in env.psql("SELECT installment_no FROM undo_seen ORDER BY n", url)]
    # instalment 2 first (its interest 2000, principal 5300), then 1
    firsts = []
    for s in seen:
        if s not in firsts:
            firsts.append(s)
    assert firsts == [2, 1], seen
    check_books(env, url)


def pledge(env, url, lid, guarantor, cents):
    """An accepted pledge (B's loan_guarantors row as an answered YES leaves it)."""
    env.psql("INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status, responded_at) "
             "VALUES (%s, %s, %d, 'accepted', now())" % (lid, guarantor, cents), url)


def holds(env, url, lid):
    return env.psql("SELECT guarantor_user_id, released_cents, status FROM loan_guarantors WHERE loan_id = %s "
                    "ORDER BY id" % lid, url)


def test_loan_repay_releases_guarantors(env):
    """The guarantors' holds follow the principal repaid (B's
    loan_holds_release, pro rata, the external guarantor first); a reversal
    holds them again (loan_holds_rehold); the loan paid off releases every
    hold and is closed."""
    url = repay_db(env, "guar")
    cid, (uid, gid) = chama(env, url)
    save(env, url, cid, gid, 300000)
    lid = make_loan(env, url, cid, uid, [{"principal": 100000, "interest": 5000, "fee": 0},
                                         {"principal": 100000, "interest": 5000, "fee": 0}])
    pledge(env, url, lid, gid, 120000)
    pledge(env, url, lid, uid, 80000)
    # 5000 interest, then 50000 of principal: a quarter of 200000 -> 50000 of
    # the 200000 pledged released, the external guarantor first
    r = repay(env, url, lid, 55000)
    assert int(r["principal"]) == 50000
    assert holds(env, url, lid) == [[str(gid), "50000", "accepted"], [str(uid), "0", "accepted"]]
    check_books(env, url)
    env.psql("SELECT loan_repayment_reverse(%s, 'bounced', NULL, 'admin', now())" % r["repayment_id"], url)
    assert holds(env, url, lid) == [[str(gid), "0", "accepted"], [str(uid), "0", "accepted"]]
    r = repay(env, url, lid, 300000)
    assert r["outcome"] == "ok_loan_closed" and int(r["credit"]) == 90000, r
    assert holds(env, url, lid) == [[str(gid), "120000", "released"], [str(uid), "80000", "released"]]
    check_books(env, url)


# -- the property test ---------------------------------------------------------

def test_loan_repay_property_random_streams(env):
    """Random loans, random payment streams with penalties and reversals
    between them (seeded): after every step the books hold (check_books),
    and each loan's paid plus outstanding is what it ever owed."""
    url = repay_db(env, "prop")
    seed = int(os.environ.get("LOAN_REPAY_SEED", "20261201"))
    rng = random.Random(seed)
    cid, ids = chama(env, url, members=4)
    loans = []
    for k in range(8):
        uid = ids[k % len(ids)]
        sched = [{"principal": rng.randint(100, 300000), "interest": rng.choice([0, rng.randint(1, 30000)]),
                  "fee": rng.choice([0, rng.randint(1, 2000)]) if n == 0 else 0,
                  "penalty": rng.choice([0, 0, rng.randint(1, 2500)])} for n in range(rng.randint(1, 6))]
        lid = make_loan(env, url, cid, uid, sched)
        loans.append(lid)
        # a pledge by another member, within their free savings
        g = rng.choice([i for i in ids if i != uid])
        (free,) = env.psql("SELECT member_free_savings_cents(%s, %s)" % (cid, g), url)[0]
        if int(free) > 0:
            pledge(env, url, lid, g, rng.randint(1, min(int(free), sum(r["principal"] for r in sched))))
    reps = []
    for step in range(150):
        lid = rng.choice(loans)
        what = rng.random()
        (st, who), = env.psql("SELECT status, user_id FROM loans WHERE id = %s" % lid, url)
        if what < 0.1 and st == "active":
            levy(env, url, lid, rng.randint(1, 1 + int(env.psql(
                "SELECT count(*) - 1 FROM loan_schedules WHERE loan_id = %s" % lid, url)[0][0])),
                rng.randint(1, 1500))
        elif 0.1 <= what < 0.15 and st in ("active", "defaulted"):
            # from the borrower's savings, as an approved offset does
            got = repay(env, url, lid, rng.randint(1, 100000), method="savings_offset",
                        debit={"kind": "member_savings", "user": int(who)})
            assert got["outcome"] in ("ok_loan_repaid", "ok_loan_closed", "err_repay_savings_short"), (seed, step, got)
            if got["repayment_id"]:
                reps.append(got["repayment_id"])
        elif 0.15 <= what < 0.25 and reps:
            rid = rng.choice(reps)
            out = env.psql("SELECT outcome FROM loan_repayment_reverse(%s, 'prop', NULL, 'admin', now())" % rid,
                           url)[0][0]
            assert out in ("ok_repayment_reversed", "err_already_reversed", "err_repay_loan_closed",
                           "err_repay_savings_short"), (seed, step, out)
        else:
            got = repay(env, url, lid, rng.choice([rng.randint(1, 3000), rng.randint(1, 200000)]),
                        method=rng.choice(["cash", "mpesa"]))
            assert got["outcome"] in ("ok_loan_repaid", "ok_loan_closed"), (seed, step, got)
            assert int(got["balance"]) >= 0
            reps.append(got["repayment_id"])
        if step % 10 == 9:
            check_books(env, url)
    check_books(env, url)


# -- the channels: USSD, M-Pesa (the emulator), officials --------------------

def menu_number(screen, target):
    """The option number that leads to target on a menu of the real menus."""
    screens = {}
    for f in sorted(os.listdir(os.path.join(ROOT, "menus"))):
        if f.endswith(".json"):
            screens.update(json.load(open(os.path.join(ROOT, "menus", f))).get("screens", {}))
    return str(1 + [o["next"] for o in screens[screen]["options"]].index(target))


def repay_path():
    return [tm.PIN, menu_number("main", "loans"), menu_number("loans", "loan_repay")]


def mpesa_loan(env, name, extra=None):
    """A daemon with M-Pesa on the emulator and a borrower (with a PIN) owing
    two instalments of KES 1,100 on an active loan."""
    url, daraja, e = tm.setup(env, name, extra)
    c = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    lid = make_loan(env, url, cid, uid, [{"principal": 100000, "interest": 10000, "fee": 0},
                                         {"principal": 100000, "interest": 10000, "fee": 0}])
    return url, daraja, c, phone, uid, cid, lid


def loan_state(env, url, lid):
    return env.psql("SELECT status, outstanding_balance_cents, (SELECT count(*) FROM loan_repayments r "
                    "WHERE r.loan_id = l.id) FROM loans l WHERE id = %s" % lid, url)[0]


def test_loan_repay_stk_credited_once_the_query_agrees(env):
    """Loans > Repay, the one loan, its next instalment by M-Pesa: the push
    names account L<id>; the callback comes twice and the STK query is busy
    at first: nothing is credited until the query agrees, then once (one
    repayment, the receipt its reference, one SMS receipt with the split)."""
    url, daraja, c, phone, uid, cid, lid = mpesa_loan(env, "loan_stk", {"CHAMAD_MPESA_QUERY_AFTER_S": "600"})
    daraja.control(query_error=2, callback="twice")
    screen = ussd(c, phone, repay_path())
    assert ("L%s: KES 2,200 owed, next KES 1100. Paybill 174379 account L%s." % (lid, lid)) in screen and \
        "1. Pay the next instalment" in screen, screen
    screen = ussd(c, phone, repay_path() + ["1"])
    assert "Pay KES 1100 to loan L%s by M-Pesa?" % lid in screen, screen
    screen = ussd(c, phone, repay_path() + ["1", "1"])
    assert screen.startswith("END Check your phone for the M-Pesa prompt of KES 1100"), screen
    daraja.wait_callbacks(2, kind="stk")
    push = [r for r in daraja.requests() if r.get("path", "").endswith("/stkpush/v1/processrequest")][0]
    assert (push.get("body") or push.get("json"))["AccountReference"] == "L%s" % lid, push
    # stored, waiting for the query: nothing credited yet
    assert env.psql("SELECT count(*) FROM loan_repayments", url) == [["0"]]
    assert tm.wait_status(env, url, ["confirmed"], timeout=25) == ["confirmed"]
    (receipt, purpose, loan), = env.psql("SELECT mpesa_receipt, purpose, loan_id FROM mpesa_requests", url)
    assert purpose == "loan" and int(loan) == lid
    assert env.psql("SELECT amount_cents, interest_cents, principal_cents, method, external_reference, ref_table "
                    "FROM loan_repayments", url) == [["110000", "10000", "100000", "mpesa", receipt, "mpesa_requests"]]
    assert loan_state(env, url, lid) == ["active", "110000", "1"]
    texts = outbox_texts(env, url, "kind = 'receipt'")
    assert texts == ["ChamaSmart: KES 1,100 paid to loan L%s (Pesa Group): penalty 0, fee 0, interest 100, "
                     "principal 1,000. Balance KES 1,100." % lid], texts
    check_books(env, url)
    c.stop()


def test_loan_repay_paybill_account_l_id(env):
    """Paybill with account " l<id> " (any case, spaces): recorded unverified
    as the loan's, credited only when the Transaction Status result agrees,
    once though the confirmation comes twice; an account L<id> of a loan
    not owed is the chama's suspense."""
    url, daraja, c, phone, uid, cid, lid = mpesa_loan(env, "loan_c2b")
    base = c.url + "/payments/c2b/%s/" + MPESA_SECRET
    daraja.register_c2b(confirmation_url=base % "confirmation", validation_url=base % "validation")
    daraja.result_late("status", 2500)
    trans = daraja.c2b(amount=500, bill_ref=" l %s " % lid, twice=True)["trans_id"]
    assert env.psql("SELECT status, outcome, loan_id FROM mpesa_c2b", url) == [["unverified", "loan", str(lid)]]
    assert env.psql("SELECT count(*) FROM loan_repayments", url) == [["0"]]
    deadline = time.monotonic() + 20
    while env.psql("SELECT status FROM mpesa_c2b", url) != [["verified"]] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.psql("SELECT status, repayment_id IS NOT NULL FROM mpesa_c2b", url) == [["verified", "t"]]
    assert env.psql("SELECT amount_cents, interest_cents, principal_cents, external_reference, ref_table "
                    "FROM loan_repayments", url) == [["50000", "10000", "40000", trans, "mpesa_c2b"]]
    # a loan that owes nothing: the money is the chama's suspense, never dropped
    other = make_loan(env, url, cid, uid, [{"principal": 1000, "interest": 0, "fee": 0}])
    repay(env, url, other, 1000)
    trans2 = daraja.c2b(amount=300, bill_ref="L%s" % other)["trans_id"]
    assert env.psql("SELECT outcome, loan_id IS NULL, chama_id FROM mpesa_c2b WHERE trans_id = '%s'" % trans2, url) == \
        [["suspense", "t", str(cid)]]
    deadline = time.monotonic() + 20
    while env.psql("SELECT status FROM mpesa_c2b WHERE trans_id = '%s'" % trans2, url) != [["verified"]] and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.psql("SELECT count(*) FROM loan_repayments WHERE loan_id = %s" % other, url) == [["1"]]
    check_books(env, url)
    c.stop()


def test_loan_repay_cash_by_the_treasurer(env):
    """Officials > Money > Repayments > Record cash: the treasurer records
    the borrower's cash by member number; the loan is repaid (Dr cash / Cr
    loans_receivable), the borrower receipted; a member's number with no
    loan owing and a secretary are refused."""
    url, daraja, c, phone, uid, cid, lid = mpesa_loan(env, "loan_cash")
    tphone, tid, _ = tm.add_member(env, url, cid, "treasurer")
    (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
    path = [tm.PIN, menu_number("main", "officials_menu"), menu_number("officials_menu", "money_menu"),
            menu_number("money_menu", "loan_off_repay"), menu_number("loan_off_repay", "loan_cash_member")]
    screen = ussd(c, tphone, path + [str(num), "1500", "1"])
    assert screen.startswith("END Recorded KES 1500 from Payer for L%s. Balance KES 700." % lid), screen
    assert env.psql("SELECT method, amount_cents, recorded_by_user_id FROM loan_repayments", url) == \
        [["cash", "150000", str(tid)]]
    assert env.psql("SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'cash_on_hand'" % cid,
                    url) == [["150000"]]
    # the same session's key again would be one repayment; another member has no loan
    mphone, muid, mnum = tm.add_member(env, url, cid, "member", "Saver")
    screen = ussd(c, tphone, path + [str(mnum), "100", "1"])
    assert "Member has no loan owing." in screen, screen
    sphone, sid_, _ = tm.add_member(env, url, cid, "secretary")
    (out,), = env.psql("SELECT outcome FROM loan_repay_cash(%s, %s, 10000, 'k:sec', %s, 'ussd', NULL, 't', now())"
                       % (cid, num, sid_), url)
    assert out == "err_not_official"
    check_books(env, url)
    c.stop()


def test_loan_repay_savings_offset_with_approval(env):
    """Loans > Repay > From my savings: refused beyond the free savings (a
    pledge's hold counts), else a request two officials approve; approved,
    the savings pay the loan (Dr member_savings / Cr loans_receivable); the
    holds stay within the savings."""
    url, daraja, c, phone, uid, cid, lid = mpesa_loan(env, "loan_offset")
    officials = [tm.add_member(env, url, cid, r)[1] for r in ("chairperson", "treasurer", "secretary")]
    # savings: the principal deposit 200,000 cents (make_loan's) + 50,000
    save(env, url, cid, uid, 50000)
    # a pledge of 230,000 on someone else's loan holds most of it
    other_uid = officials[2]
    other = make_loan(env, url, cid, other_uid, [{"principal": 500000, "interest": 0, "fee": 0}])
    env.psql("INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status) "
             "VALUES (%s, %s, 230000, 'accepted')" % (other, uid), url)
    path = repay_path() + [menu_number("loan_repay_how", "loan_offset_amount")]
    screen = ussd(c, phone, path + ["300", "1"])
    assert "Not enough free savings." in screen, screen
    # asked within the free savings, but another pledge holds them before
    # the officials approve: checked again then, nothing taken
    screen = ussd(c, phone, path + ["200", "1"])
    assert screen.startswith("END Request ") and "sent to the officials" in screen, screen
    (aid, code), = env.psql("SELECT id, code FROM approvals WHERE kind = 'loan_offset'", url)
    env.psql("INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status) "
             "VALUES (%s, %s, 10000, 'accepted')" % (make_loan(env, url, cid, officials[1], [
                 {"principal": 10000, "interest": 0, "fee": 0}]), uid), url)
    vote_sql(env, url, officials[0], code)
    vote_sql(env, url, officials[1], code)
    assert env.psql("SELECT status, result FROM approvals WHERE id = %s" % aid, url) == \
        [["executed", "err_repay_savings_short"]]
    assert env.psql("SELECT count(*) FROM loan_repayments", url) == [["0"]]
    assert env.psql("SELECT count(*) FROM notifications WHERE template = 'sms_loan_offset_refused' "
                    "AND user_id = %s" % uid, url) == [["1"]]
    env.psql("UPDATE loan_guarantors SET status = 'declined' WHERE pledged_cents = 10000", url)
    screen = ussd(c, phone, path + ["200", "1"])
    assert screen.startswith("END Request ") and "sent to the officials" in screen, screen
    (aid, code, amount), = env.psql("SELECT id, code, amount_cents FROM approvals WHERE kind = 'loan_offset' "
                                    "AND status = 'pending'", url)
    assert amount == "20000"
    assert env.psql("SELECT count(*) FROM loan_repayments", url) == [["0"]]
    assert vote_sql(env, url, officials[0], code)["outcome"] != "ok_approval_done"
    assert vote_sql(env, url, officials[1], code)["outcome"] == "ok_approval_done"
    assert env.psql("SELECT method, amount_cents, interest_cents, principal_cents FROM loan_repayments", url) == \
        [["savings_offset", "20000", "10000", "10000"]]
    assert env.psql("SELECT result FROM approvals WHERE id = %s" % aid, url) == [["ok_loan_repaid"]]
    (sav,), = env.psql("SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'member_savings' "
                       "AND user_id = %s" % (cid, uid), url)
    assert sav == "230000"
    check_books(env, url)
    c.stop()


def test_loan_repay_reversal_through_approval(env):
    """Officials > Money > Repayments > Reverse: the treasurer asks, two
    other officials approve, the repayment is reversed and the borrower
    told; the borrower is never an approver."""
    url, daraja, c, phone, uid, cid, lid = mpesa_loan(env, "loan_rev")
    tphone, tid, _ = tm.add_member(env, url, cid, "treasurer")
    others = [tm.add_member(env, url, cid, r)[1] for r in ("chairperson", "secretary")]
    r = repay(env, url, lid, 50000)
    path = [tm.PIN, menu_number("main", "officials_menu"), menu_number("officials_menu", "money_menu"),
            menu_number("money_menu", "loan_off_repay"), menu_number("loan_off_repay", "loan_rev_list")]
    screen = ussd(c, tphone, path)
    assert ("1. L%s KES 500 " % lid) in screen and "Payer" in screen, screen
    screen = ussd(c, tphone, path + ["1", "entered twice", "1"])
    (code,), = env.psql("SELECT code FROM approvals WHERE kind = 'loan_repay_reverse'", url)
    assert screen.startswith("END Request %s sent to the other officials." % code), screen
    for o in others:
        vote_sql(env, url, o, code)
    assert env.psql("SELECT status FROM loan_repayments WHERE id = %s" % r["repayment_id"], url) == [["reversed"]]
    assert env.psql("SELECT outstanding_balance_cents FROM loans WHERE id = %s" % lid, url) == [["220000"]]
    assert outbox_texts(env, url, "template = 'sms_loan_repay_reversed'") == \
        ["ChamaSmart: your KES 500 repayment to loan L%s (Pesa Group) was reversed: entered twice. "
         "Balance KES 2,200." % lid]
    check_books(env, url)
    c.stop()
