"""A loan's approval and its money out (issue 11 part C,
schema/73_loan_approvals.sql): N officials approve, never the borrower nor
a guarantor of the loan; the approval is the payout's (no second round):
B2C to the borrower's registered phone, posted only when paid; then the
loan is active, its recorded schedule dated from the day paid (amounts
unchanged) and its interest and fee posted.  A failed B2C leaves the loan
approved for the officials: cash handed over, confirmed by a second
official.  On default the pledges are called (loan_repay, guarantor_call)
and the rest written off, each by approval.  Every test ends with
`chamad verify-ledger`.

The loan rows are written here as loan_apply (part A) and the guarantors'
answers (part B) leave them: an applied loan with its schedule recorded
and its pledges accepted."""
import datetime

from notify_fixtures import outbox_texts
from test_payouts import setup, verify, wait, payout, entries
from test_mpesa import add_member

PRINCIPAL = 1000000          # KES 10,000
ROWS = [(333300, 30000, 5000), (333300, 30000, 0), (333400, 30000, 0)]   # principal, interest, fee
INTEREST, FEE = 90000, 5000


def q(env, url, sql):
    return env.psql(sql, url)


def seed(env, url, float_kes=20000, guarantor_role="secretary"):
    """Three officials, the borrower (a member) and the guarantor (the
    secretary, or a member of guarantor_role), and savings: the float holds
    float_kes, the guarantor saved KES 5,000 of it."""
    (cid,), = q(env, url, "INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                          "VALUES ('Umoja', 'mixed', 50000, 'monthly') RETURNING id")
    s = {"chama": cid}
    people = [("chair", "chairperson", "Amina Chair"), ("treasurer", "treasurer", "Baraka Treasurer"),
              ("borrower", "member", "Dora Member")]
    if guarantor_role == "secretary":
        people.append(("guarantor", "secretary", "Chege Secretary"))
    else:
        people += [("secretary", "secretary", "Chege Secretary"), ("guarantor", "member", "Esther Member")]
    for key, role, name in people:
        phone, uid, num = add_member(env, url, cid, role, name)
        s[key] = {"phone": phone, "id": uid, "number": num}
    q(env, url, "SELECT post_contribution(%s, %s, %d, 'savings', 'mpesa', 'SEEDA%s', 'seed:a:%s', NULL, 'admin', "
                "NULL, 'test', NULL)" % (cid, s["borrower"]["id"], float_kes * 100 - 500000, cid, cid))
    q(env, url, "SELECT post_contribution(%s, %s, 500000, 'savings', 'mpesa', 'SEEDG%s', 'seed:g:%s', NULL, 'admin', "
                "NULL, 'test', NULL)" % (cid, s["guarantor"]["id"], cid, cid))
    return s


def apply(env, url, s, freq="monthly", who="borrower"):
    """An applied loan of KES 10,000 over three instalments, its schedule
    recorded (dated from the application), KES 5,000 pledged by the secretary."""
    (lid,), = q(env, url, "INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_method, "
                          "term_periods, repayment_frequency, total_interest_cents, fees_cents, product_key, terms, "
                          "channel, applied_at) VALUES (%s, %s, %d, 300, 'flat', 3, '%s', %d, %d, 'standard', "
                          "'{\"key\": \"standard\"}', 'ussd', now() - interval '3 days') RETURNING id"
                          % (s["chama"], s[who]["id"], PRINCIPAL, freq, INTEREST, FEE))
    for n, (p, i, f) in enumerate(ROWS, 1):
        q(env, url, "INSERT INTO loan_schedules (loan_id, installment_no, due_date, principal_due_cents, "
                    "interest_due_cents, fee_due_cents) VALUES (%s, %d, current_date - 3 + %d * 30, %d, %d, %d)"
                    % (lid, n, n, p, i, f))
    q(env, url, "INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status, responded_at) "
                "VALUES (%s, %s, 500000, 'accepted', now())" % (lid, s["guarantor"]["id"]))
    return lid


def loan(env, url, lid):
    (row,), = [q(env, url, "SELECT status, amount_disbursed_cents, coalesce(first_due_date::text, ''), "
                           "coalesce(maturity_date::text, ''), coalesce(payout_id::text, ''), written_off_cents "
                           "FROM loans WHERE id = %s" % lid)]
    return row


def vote(env, url, who, code, how="approve"):
    (o,), = q(env, url, "SELECT outcome FROM approval_vote(%s, '%s', '%s', 'ussd', now())" % (who["id"], code, how))
    return o


def opened(env, url, lid):
    assert q(env, url, "SELECT loan_approval_open(%s, now())" % lid) == [["ok_approval_opened"]]
    (code, excl), = q(env, url, "SELECT code, excluded_user_ids FROM approvals WHERE kind = 'loan' AND ref_id = %s"
                                % lid)
    return code, excl


def receivable(env, url, s):
    return int(q(env, url, "SELECT coalesce(sum(balance_cents), 0) FROM ledger_accounts WHERE chama_id = %s AND "
                           "kind = 'loans_receivable' AND user_id = %s" % (s["chama"], s["borrower"]["id"]))[0][0])


def months_after(d, k):
    """The date rule of src/base/loansched.c: k calendar months on, clamped."""
    y, m = divmod(d.month - 1 + k, 12)
    y, m = d.year + y, m + 1
    for day in (d.day, 30, 29, 28):
        try:
            return datetime.date(y, m, day)
        except ValueError:
            continue


def test_loan_two_officials_approve_b2c_paid_active_and_posted(env):
    url, daraja, e = setup(env, "loanok")
    c = env.chamad(e)
    s = seed(env, url)
    lid = apply(env, url, s)
    code, excl = opened(env, url, lid)
    assert excl == "{%s}" % s["guarantor"]["id"], excl
    assert loan(env, url, lid)[0] == "under_review"
    # the guarantor and the borrower were never asked, and never decide it
    asked = {r[0] for r in q(env, url, "SELECT user_id FROM notifications WHERE template = 'sms_approval_request'")}
    assert asked == {str(s[k]["id"]) for k in ("chair", "treasurer")}, asked
    assert vote(env, url, s["guarantor"], code) == "err_guarantor"
    assert vote(env, url, s["borrower"], code) == "err_not_official"
    # and the officials' list does not offer it to the guarantor
    assert q(env, url, "SELECT count(*) FROM approvals a WHERE a.id = (SELECT approval_id FROM loans WHERE id = %s) "
                       "AND %s <> ALL (a.excluded_user_ids)" % (lid, s["guarantor"]["id"])) == [["0"]]
    assert vote(env, url, s["treasurer"], code) == "ok_vote_counted"
    assert loan(env, url, lid)[0] == "under_review"
    assert vote(env, url, s["chair"], code) == "ok_approval_done"
    # no second approval round: the payout is written approved by the loan's
    (pid,), = q(env, url, "SELECT id FROM payouts WHERE ref_table = 'loans' AND ref_id = %s" % lid)[0:1]
    assert q(env, url, "SELECT count(*) FROM approvals WHERE kind IN ('payout', 'cash_payout')") == [["0"]]
    assert q(env, url, "SELECT p.approval_id = l.approval_id, p.phone FROM payouts p JOIN loans l ON l.id = p.ref_id "
                       "WHERE p.id = %s" % pid) == [["t", s["borrower"]["phone"]]]
    assert wait(env, url, pid, ("paid",)) == "paid"
    st, disbursed, first, maturity, payout_id, _ = loan(env, url, lid)
    assert (st, disbursed, payout_id) == ("active", str(PRINCIPAL), str(pid)), (st, disbursed, payout_id)
    # the schedule is dated from the day paid (Nairobi), its amounts as recorded
    (paid,), = q(env, url, "SELECT (completed_at AT TIME ZONE 'Africa/Nairobi')::date FROM payouts WHERE id = %s" % pid)
    paid = datetime.date.fromisoformat(paid[0] if isinstance(paid, list) else paid)
    rows = q(env, url, "SELECT installment_no, due_date, principal_due_cents, interest_due_cents, fee_due_cents "
                       "FROM loan_schedules WHERE loan_id = %s ORDER BY installment_no" % lid)
    assert rows == [[str(n), months_after(paid, n).isoformat(), str(p), str(i), str(f)]
                    for n, (p, i, f) in enumerate(ROWS, 1)], rows
    assert (first, maturity) == (months_after(paid, 1).isoformat(), months_after(paid, 3).isoformat())
    # Dr loans receivable / Cr float at pay-out; interest and fee posted
    assert entries(env, url, pid) == "1"
    lines = q(env, url, "SELECT a.kind, l.side, l.amount_cents FROM journal_entries j JOIN journal_lines l ON "
                        "l.entry_id = j.id JOIN ledger_accounts a ON a.id = l.account_id WHERE j.kind = 'loan_interest' "
                        "AND j.ref_id = %s ORDER BY l.id" % lid)
    assert lines == [["loans_receivable", "debit", str(INTEREST + FEE)], ["interest_income", "credit", str(INTEREST)],
                     ["fee_income", "credit", str(FEE)]], lines
    assert receivable(env, url, s) == PRINCIPAL + INTEREST + FEE
    told = outbox_texts(env, url, "template = 'sms_loanoff_active'")
    assert told == ["ChamaSmart Umoja: your loan of KES 10,000 is paid out. First instalment KES 3,683 due %s; "
                    "3 instalments, KES 10,950 in all." % months_after(paid, 1).strftime("%d/%m/%Y")], told
    verify(env, url)
    c.stop()


def test_loan_rejected_ends_the_holds(env):
    url, daraja, e = setup(env, "loanrej")
    s = seed(env, url)
    lid = apply(env, url, s)
    code, _ = opened(env, url, lid)
    # two eligible officials, two needed: the first "no" decides
    assert vote(env, url, s["treasurer"], code, "reject") == "ok_approval_rejected"
    assert loan(env, url, lid)[0] == "rejected"
    assert q(env, url, "SELECT status FROM loan_guarantors WHERE loan_id = %s" % lid) == [["cancelled"]]
    assert q(env, url, "SELECT count(*) FROM payouts") == [["0"]]
    assert outbox_texts(env, url, "template = 'sms_approval_rejected'")   # the borrower hears it
    rc, out = __import__("test_ledger").verify(env, url)
    assert rc == 0, out


def test_loan_b2c_failed_then_cash_confirmed_by_a_second_official(env):
    url, daraja, e = setup(env, "loancash")
    c = env.chamad(e)
    s = seed(env, url, guarantor_role="member")
    # cash on hand for the loan
    q(env, url, "SELECT post_contribution(%s, %s, 1200000, 'savings', 'cash', NULL, 'seed:cash', NULL, 'admin', "
                "NULL, 't', NULL)" % (s["chama"], s["borrower"]["id"]))
    daraja.result_code("b2c", 1)
    lid = apply(env, url, s)
    code, _ = opened(env, url, lid)
    vote(env, url, s["treasurer"], code)
    assert vote(env, url, s["chair"], code) == "ok_approval_done"
    (pid,), = q(env, url, "SELECT id FROM payouts WHERE ref_table = 'loans' AND ref_id = %s" % lid)
    assert wait(env, url, pid, ("failed",)) == "failed"
    # the loan stays approved, nothing posted, the officials told what they may do
    assert loan(env, url, lid)[0] == "approved" and entries(env, url, pid) == "0"
    told = outbox_texts(env, url, "template = 'sms_loanoff_failed_officials'")
    assert len(told) == 3 and all("To pay out: send again, cash or cancel." in t for t in told), told
    # a member who is no official cannot pay it out
    assert q(env, url, "SELECT outcome FROM loan_disburse(%s, %s, %s, 'cash', 'ussd', now())"
                       % (s["borrower"]["id"], s["chama"], lid)) == [["err_not_official"]]
    (o, cpid, ccode), = q(env, url, "SELECT outcome, payout_id, code FROM loan_disburse(%s, %s, %s, 'cash', 'ussd', "
                                    "now())" % (s["treasurer"]["id"], s["chama"], lid))
    assert o == "ok_loanoff_cash" and ccode, (o, ccode)
    assert loan(env, url, lid)[0] == "approved"
    assert vote(env, url, s["treasurer"], ccode) == "err_own_request"
    assert vote(env, url, s["chair"], ccode) == "ok_vote_counted"
    assert payout(env, url, cpid)[0] == "requested" and loan(env, url, lid)[0] == "approved"
    assert vote(env, url, s["secretary"], ccode) == "ok_approval_done"
    assert payout(env, url, cpid)[0] == "paid"
    assert loan(env, url, lid)[0] == "active" and receivable(env, url, s) == PRINCIPAL + INTEREST + FEE
    assert q(env, url, "SELECT disbursed_by_user_id FROM loans WHERE id = %s" % lid) == [[str(s["treasurer"]["id"])]]
    verify(env, url)
    c.stop()


def active_loan(env, url, s):
    """A loan approved and paid (the cash path: no daemon needed), then in default."""
    q(env, url, "SELECT post_contribution(%s, %s, 1200000, 'savings', 'cash', NULL, 'seed:cash', NULL, 'admin', "
                "NULL, 't', NULL)" % (s["chama"], s["borrower"]["id"]))
    lid = apply(env, url, s)
    code, _ = opened(env, url, lid)
    vote(env, url, s["treasurer"], code)
    vote(env, url, s["chair"], code)
    q(env, url, "UPDATE payouts SET status = 'failed' WHERE ref_table = 'loans' AND ref_id = %s AND status = 'approved'"
          % lid)
    (o, _, ccode), = q(env, url, "SELECT * FROM loan_disburse(%s, %s, %s, 'cash', 'ussd', now())"
                                 % (s["treasurer"]["id"], s["chama"], lid))
    assert o == "ok_loanoff_cash", o
    vote(env, url, s["chair"], ccode)
    vote(env, url, s["secretary"], ccode)
    assert loan(env, url, lid)[0] == "active"
    q(env, url, "UPDATE loans SET status = 'defaulted', defaulted_at = now() WHERE id = %s" % lid)
    return lid


def test_loan_pledges_called_then_written_off_by_approval(env):
    url, daraja, e = setup(env, "loancall")
    s = seed(env, url, guarantor_role="member")
    lid = active_loan(env, url, s)
    g = s["guarantor"]
    sav = lambda: int(q(env, url, "SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND "
                                  "kind = 'member_savings' AND user_id = %s" % (s["chama"], g["id"]))[0][0])
    assert sav() == 500000
    (o, aid, code), = q(env, url, "SELECT * FROM loan_call_request(%s, %s, %s, 'ussd', now())"
                                  % (s["treasurer"]["id"], s["chama"], lid))
    assert o == "ok_approval_opened", o
    assert q(env, url, "SELECT excluded_user_ids FROM approvals WHERE id = %s" % aid) == [["{%s}" % g["id"]]]
    vote(env, url, s["chair"], code)
    assert vote(env, url, s["secretary"], code) == "ok_approval_done"
    assert sav() == 0
    assert q(env, url, "SELECT called_cents, status FROM loan_guarantors WHERE loan_id = %s" % lid) == \
        [["500000", "called"]]
    assert receivable(env, url, s) == PRINCIPAL + INTEREST + FEE - 500000
    assert q(env, url, "SELECT method, amount_cents FROM loan_repayments WHERE loan_id = %s" % lid) == \
        [["guarantor_call", "500000"]]
    rc, out = __import__("test_ledger").verify(env, url)   # the pledge called, before the write-off
    assert rc == 0, out
    told = outbox_texts(env, url, "template = 'sms_loanoff_pledge_called'")
    assert told == ["ChamaSmart Umoja: Dora Member's loan is in default. KES 5,000 you pledged was taken from your "
                    "savings to repay it."], told
    # what is left is written off, by approval
    left = PRINCIPAL + INTEREST + FEE - 500000
    (o, _, code), = q(env, url, "SELECT * FROM loan_write_off_request(%s, %s, %s, 'ussd', now())"
                                % (s["treasurer"]["id"], s["chama"], lid))
    assert o == "ok_approval_opened", o
    assert vote(env, url, s["treasurer"], code) == "err_own_request"
    vote(env, url, s["chair"], code)
    assert vote(env, url, s["secretary"], code) == "ok_approval_done"
    st, _, _, _, _, wo = loan(env, url, lid)
    assert (st, wo) == ("written_off", str(left)), (st, wo)
    assert receivable(env, url, s) == 0
    assert q(env, url, "SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'expenses'"
                       % s["chama"]) == [[str(left)]]
    # the books balance, every account is the sum of its lines, and the
    # borrower's receivable is what the loan says is owed: chamad
    # verify-ledger counts a pledge called against the guarantor's savings
    # (loan_guarantors.called_cents), so it finds nothing wrong
    rc, out = __import__("test_ledger").verify(env, url)
    assert rc == 0 and [ln for ln in out.splitlines() if "BAD" in ln] == [], out
    assert q(env, url, "SELECT sum(amount_cents) FILTER (WHERE side = 'debit') = sum(amount_cents) FILTER "
                       "(WHERE side = 'credit') FROM journal_lines") == [["t"]]
    assert q(env, url, "SELECT count(*) FROM ledger_accounts a WHERE a.balance_cents <> coalesce((SELECT "
                       "sum(CASE WHEN l.side = a.normal_side THEN l.amount_cents ELSE -l.amount_cents END) "
                       "FROM journal_lines l WHERE l.account_id = a.id), 0)") == [["0"]]
    assert q(env, url, "SELECT loan_balance_cents(l) FROM loans l WHERE id = %s" % lid) == [["0"]]


def test_loan_borrower_official_never_decides_it(env):
    """The treasurer borrows, the secretary guarantees: only the
    chairperson is left to decide, so with the default rule (two) the
    request cannot open; with a rule of one the chairperson decides and
    the borrower's vote is refused as their own request."""
    url, daraja, e = setup(env, "loanown")
    s = seed(env, url)
    lid = apply(env, url, s, who="treasurer")
    assert q(env, url, "SELECT loan_approval_open(%s, now())" % lid) == [["err_approvers_too_few"]]
    assert loan(env, url, lid)[0] == "applied"
    q(env, url, "UPDATE chamas SET constitution = constitution || '{\"approvals_count\": 1}' WHERE id = %s"
          % s["chama"])
    code, excl = opened(env, url, lid)
    assert vote(env, url, s["treasurer"], code) == "err_own_request"
    assert vote(env, url, s["guarantor"], code) == "err_guarantor"
    assert loan(env, url, lid)[0] == "under_review"
