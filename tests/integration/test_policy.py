"""One policy: policy_actions says who may do each protected action; the
SQL check (policy_allows), the C check and what the menus offer all come
from it.  For every role: every option offered leads to an action the role
may do (and doing it works), and every action it may do is offered.  A
role taken away in the middle of a session decides nothing: the statement
itself refuses, with an outcome row the member reads in their language."""
import glob
import json
import os
import random
import re

from approval_fixtures import vote_sql
from harness import ROOT
from test_ussd import AT, PIN, new_phone, q, seed_chama, seed_user

ROLES = ("member", "secretary", "treasurer", "chairperson")


def menus():
    screens, strings = {}, {}
    for f in sorted(glob.glob(os.path.join(ROOT, "menus", "*.json"))):
        d = json.load(open(f))
        screens.update(d.get("screens", {}))
        strings.update(d.get("strings", {}))
    return screens, strings


def behind_screen(screens, sid, seen=frozenset()):
    """The protected actions a screen belongs to: its own "policy", or for a
    menu whose every option is protected, theirs; empty when anyone sees it."""
    sc = screens[sid]
    if sc.get("policy"):
        return {sc["policy"]}
    if sc["type"] != "menu" or sid in seen:
        return set()
    subs = [behind_option(screens, op, seen | {sid}) for op in sc["options"]]
    return set().union(*subs) if all(subs) else set()


def behind_option(screens, op, seen=frozenset()):
    return {op["policy"]} if op.get("policy") else behind_screen(screens, op["next"], seen)


def offered_numbers(screen):
    return {int(m.group(1)) for m in re.finditer(r"^(\d+)\. ", screen, re.M)}


def allowed_of(env, role):
    rows = q(env, "SELECT policy_allowed('%s')" % role)  # '' (no row printed) for none
    return set(rows[0][0].split()) if rows else set()


def chama_with_everyone(env):
    """A chama with its three officials, a paying member, a pending join
    request, money in suspense and a confirmed payment."""
    phones = {r: new_phone() for r in ROLES}
    cid, ids = seed_chama(env, "Policy Chama %d" % random.randrange(10 ** 9),
                          members=[(phones[r], "The " + r.title(), r) for r in ROLES])
    users = dict(zip(ROLES, ids))
    (num,), = q(env, "SELECT member_number FROM memberships WHERE user_id = %s" % users["member"])
    newcomer = seed_user(env, new_phone(), "New Comer")
    q(env, "INSERT INTO join_requests (chama_id, user_id) VALUES (%s, %s)" % (cid, newcomer))
    ref = "QP%08d" % random.randrange(10 ** 8)
    q(env, "SELECT post_suspense(%s, 120000, '%s', 'c2b:%s', 'mpesa', '%s', 'test', now())" % (cid, ref, ref, ref))
    q(env, "SELECT post_contribution(%s, %s, 30000, 'savings', 'cash', NULL, 'policy:%s', NULL, 'admin', NULL, 't', "
           "NULL)" % (cid, users["member"], ref))
    return {"cid": cid, "phones": phones, "users": users, "num": num, "newcomer": newcomer}


def reach(c, phone, path):
    s = AT(c, phone)
    screen = s.login()
    for inp in path:
        end, screen = s.send(inp)
        assert not end, (path, screen)
    return s, screen


def walk(c, phone, screens, allowed, path=(), sid="main", offered=None, problems=None):
    """Every protected option the role is shown from main: offered[action]
    is the path (option numbers) to it; problems lists what is offered but
    not allowed and what is allowed but hidden."""
    offered = {} if offered is None else offered
    problems = [] if problems is None else problems
    _, screen = reach(c, phone, path)
    shown = offered_numbers(screen)
    for i, op in enumerate(screens[sid]["options"]):
        b = behind_option(screens, op, frozenset({sid}))
        if not b:
            continue  # for everyone
        n = i + 1
        if n in shown and not b & allowed:
            problems.append("%s > %s offered, but %s allowed none of %s" % (sid, op["label"]["en"], sorted(allowed),
                                                                              sorted(b)))
        if n not in shown and b & allowed:
            problems.append("%s > %s hidden, but %s is allowed" % (sid, op["label"]["en"], sorted(b & allowed)))
        if n not in shown:
            continue
        own = op.get("policy") or screens[op["next"]].get("policy")
        if own:
            offered[own] = list(path) + [str(n)]
        else:
            walk(c, phone, screens, allowed, tuple(path) + (str(n),), op["next"], offered, problems)
    return offered, problems


def do(env, c, ch, role, action, path):
    """Does the action as the role, from the path to it; asserts it worked."""
    phone, cid = ch["phones"][role], ch["cid"]
    officials = ("chairperson", "treasurer", "secretary")
    if action == "approvals.decide":
        # a request of another official's for this one to decide: reversing
        # a payment of its own (the list's other payments stay as they are)
        maker = "chairperson" if role == "treasurer" else "treasurer"
        q(env, "SELECT post_contribution(%s, %s, 20000, 'savings', 'cash', NULL, 'policy:decide:%s', NULL, "
               "'admin', NULL, 't', NULL)" % (cid, ch["users"]["member"], role))
        (k,), = q(env, "SELECT ref_id FROM journal_entries WHERE idempotency_key = 'policy:decide:%s'" % role)
        (opened, code), = q(env, "SELECT outcome, code FROM payment_reverse_request(%s, %s, 'entered twice', %s, "
                                 "'ussd', NULL, 't', 'sms_reversed', now())" % (cid, k, ch["users"][maker]))
        assert opened == "ok_approval_opened", opened
    s, screen = reach(c, phone, path[:-1])
    end, screen = s.send(path[-1])
    if action == "chama.join_decide":
        assert "1. New Comer" in screen, screen
        end, screen = s.send("1")
        end, screen = s.send("1")
        assert screen.startswith("Request approved."), screen
        assert q(env, "SELECT status FROM join_requests WHERE user_id = %s" % ch["newcomer"]) == [["approved"]]
    elif action == "chama.invite_create":
        assert end and "New invite code:" in screen, screen
        code = re.search(r"code: ([A-Z0-9]+)", screen).group(1)
        assert q(env, "SELECT chama_id FROM invites WHERE code = '%s'" % code) == [[cid]]
    elif action == "chama.invite_phone":
        invitee = new_phone()
        end, screen = s.send("0" + invitee[4:])
        assert end and ("sent by SMS to %s" % invitee) in screen, screen
    elif action == "money.cash_record":
        s.send(str(ch["num"]))
        s.send("1500")
        end, screen = s.send("1")
        assert end and screen.startswith("Recorded KES 1500 from The Member."), screen
        assert q(env, "SELECT count(*) FROM contributions WHERE chama_id = %s AND method = 'cash' AND "
                      "amount_cents = 150000 AND recorded_by_user_id = %s" % (cid, ch["users"][role])) == [["1"]]
    elif action == "money.suspense_allocate":
        assert "1. KES 1200" in screen, screen
        s.send("1")
        end, screen = s.send(str(ch["num"]))
        assert end and screen.startswith("Allocated to member %s" % ch["num"]), screen
    elif action == "money.payment_reverse":
        assert "1. " in screen and "The Member" in screen, screen
        s.send("1")
        s.send("counted twice")
        end, screen = s.send("1")
        (code,), = q(env, "SELECT code FROM approvals WHERE chama_id = %s AND status = 'pending' AND "
                          "kind = 'payment_reverse' AND maker_user_id = %s" % (cid, ch["users"][role]))
        assert end and screen.startswith("Request %s sent to the other officials." % code), screen
        # reversed once the two other officials approve (dual control)
        before = q(env, "SELECT count(*) FROM contributions WHERE chama_id = %s AND status = 'reversed'" % cid)
        for other in officials:
            if other != role:
                vote_sql(env, None, ch["users"][other], code)
        after = q(env, "SELECT count(*) FROM contributions WHERE chama_id = %s AND status = 'reversed'" % cid)
        assert int(after[0][0]) == int(before[0][0]) + 1, (before, after)
    elif action == "approvals.decide":
        assert ("1. %s KES 200" % code) in screen, screen
        end, screen = s.send("1")
        assert not end and "Reverse The Member's payment" in screen and "1. Approve" in screen, screen
        s.send("1")
        end, screen = s.send(PIN)
        assert end and screen == "Request %s: Counted: 1 of 2." % code, screen
        third = [o for o in officials if o not in (role, maker)][0]
        assert vote_sql(env, None, ch["users"][third], code)["outcome"] == "ok_approval_done"
        assert q(env, "SELECT status FROM contributions WHERE id = %s" % k) == [["reversed"]]
    elif action == "payments.check_view":
        # a paybill payment not verified yet (issue 10): listed, looked at, never credited by looking
        ref = "QV%08d" % random.randrange(10 ** 8)
        q(env, "INSERT INTO mpesa_c2b (trans_id, amount_cents, bill_ref, chama_id, outcome, status) "
               "VALUES ('%s', 45000, '%s-1', %s, 'suspense', 'unverified')" % (ref, cid, cid))
        s, screen = reach(c, phone, path[:-1])
        end, screen = s.send(path[-1])
        assert screen.startswith("Payments to check:") and "1. KES 450 %s" % ref in screen, screen
        end, screen = s.send("1")
        assert not end and "Not credited" in screen and ref in screen, screen
        assert q(env, "SELECT status FROM mpesa_c2b WHERE trans_id = '%s'" % ref) == [["unverified"]]
    elif action == "money.payout_request":
        # the member has saved by M-Pesa and in cash: either payout can be asked for
        for method in ("mpesa", "cash"):
            q(env, "SELECT post_contribution(%s, %s, 200000, 'savings', '%s', %s, 'policy:payout:%s:%s', NULL, "
                   "'admin', NULL, 't', NULL)" % (cid, ch["users"]["member"], method,
                                                  "'QP%06d%s'" % (int(cid), role[0].upper()) if method == "mpesa"
                                                  else "NULL", role, method))
        assert screen.startswith("Member number to pay:"), screen
        s.send(str(ch["num"]))
        s.send("500")
        s.send("policy check")
        end, screen = s.send(PIN)
        (pid,), = q(env, "SELECT id FROM payouts WHERE chama_id = %s AND maker_user_id = %s "
                         "AND ref_table IS NULL" % (cid, ch["users"][role]))
        assert end and screen.startswith("Payout %s of KES 500 asked for." % pid), screen
    elif action == "money.payout_list":
        ids = [r[0] for r in q(env, "SELECT id FROM payouts WHERE chama_id = %s" % cid)]
        if ids:
            assert screen.startswith("Payouts:") and ("#%s " % ids[0]) in screen, screen
        else:
            assert "No payouts yet." in screen, screen
    elif action == "loans.repay_cash":
        # a borrower owing a loan (test_loan_repay's paid-out loan); cash for it
        from test_loan_repay import make_loan
        uid = seed_user(env, new_phone(), "The Borrower")
        (num,), = q(env, "INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s) RETURNING member_number"
                    % (uid, cid))
        lid = make_loan(env, None, cid, uid, [{"principal": 40000, "interest": 4000, "fee": 0}])
        assert screen.startswith("Member number of the borrower:"), screen
        s.send(num)
        s.send("100")
        end, screen = s.send("1")
        assert end and screen.startswith("Recorded KES 100 from The Borrower for L%s." % lid), screen
        assert q(env, "SELECT method, amount_cents, recorded_by_user_id FROM loan_repayments WHERE loan_id = %s"
                 % lid) == [["cash", "10000", str(ch["users"][role])]]
    elif action == "loans.repay_reverse":
        from test_loan_repay import make_loan, repay
        lid = make_loan(env, None, cid, ch["users"]["member"], [{"principal": 40000, "interest": 4000, "fee": 0}])
        rid = repay(env, None, lid, 5000)["repayment_id"]
        s, screen = reach(c, phone, path[:-1])
        end, screen = s.send(path[-1])
        assert screen.startswith("Repayment to reverse:") and ("1. L%s KES 50 " % lid) in screen, screen
        s.send("1")
        s.send("paid twice")
        end, screen = s.send("1")
        (code,), = q(env, "SELECT code FROM approvals WHERE kind = 'loan_repay_reverse' AND ref_id = %s" % rid)
        assert end and screen.startswith("Request %s sent to the other officials." % code), screen
        for other in officials:
            if other != role:
                vote_sql(env, None, ch["users"][other], code)
        assert q(env, "SELECT status FROM loan_repayments WHERE id = %s" % rid) == [["reversed"]]
    elif action.startswith("loans."):
        loan_flow(env, c, ch, role, action, path)
    else:
        raise AssertionError("no test flow for %s: add one here" % action)


def policy_loan(env, ch, status):
    """A KES 100 loan of the member's in the given status (as parts A-E
    leave one), for the officials' loan book."""
    paid = 10000 if status == "defaulted" else 0
    (lid,), = q(env, "INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_method, "
                     "term_periods, repayment_frequency, status, amount_disbursed_cents) VALUES (%s, %s, 10000, 0, "
                     "'flat', 1, 'monthly', '%s', %d) RETURNING id" % (ch["cid"], ch["users"]["member"], status, paid))
    if status == "defaulted":
        q(env, "INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status) VALUES (%s, %s, 5000, "
               "'accepted')" % (lid, ch["users"]["member"]))
    return lid


def loan_flow(env, c, ch, role, action, path):
    """Officials > Loans (menus/73_loans_officials.json)."""
    status = {"loans.book": "applied", "loans.disburse": "approved"}.get(action, "defaulted")
    lid = policy_loan(env, ch, status)
    s, screen = reach(c, ch["phones"][role], path[:-1])
    end, screen = s.send(path[-1])
    item = re.search(r"^(\d+)\. #%s KES [0-9,]+ The Member$" % lid, screen, re.M)
    assert not end and item, screen
    end, screen = s.send(item.group(1))
    if action == "loans.book":
        assert not end and "waiting for guarantors" in screen, screen
        return
    if action == "loans.disburse":
        # cash handed over: a second official confirms it (the chama holds KES 300 in cash)
        end, screen = s.send("2")
        (code,), = q(env, "SELECT a.code FROM approvals a JOIN payouts p ON p.id = a.ref_id WHERE a.kind = "
                          "'cash_payout' AND p.ref_table = 'loans' AND p.ref_id = %s" % lid)
        assert end and screen.startswith("Loan #%s: Cash recorded: %s." % (lid, code)), screen
        return
    end, screen = s.send("1")
    kind = {"loans.call_pledges": "loan_call", "loans.write_off": "loan_write_off"}[action]
    codes = q(env, "SELECT code FROM approvals WHERE kind = '%s' AND ref_id = %s AND status = 'pending'"
                   % (kind, lid))
    assert len(codes) == 1, (action, screen)
    code = codes[0][0]
    assert end and screen.startswith("Request %s sent to the other officials." % code), screen


def test_policy_rows_menus_and_sql_agree(env):
    screens, strings = menus()
    named = {sc["policy"] for sc in screens.values() if sc.get("policy")} | \
        {op["policy"] for sc in screens.values() for op in sc.get("options", []) if op.get("policy")}
    rows = {r[0]: set(r[1].strip("{}").split(",")) for r in q(env, "SELECT action, roles FROM policy_actions")}
    # every action the menus name is a row, every row is named by the menus
    assert named == set(rows), (named ^ set(rows))
    # the SQL check: exactly the roles of the row, for active members only
    ch = chama_with_everyone(env)
    for role in ROLES:
        uid = ch["users"][role]
        got = {a for a in rows if q(env, "SELECT policy_allows(%s, %s, '%s')" % (uid, ch["cid"], a)) == [["t"]]}
        assert got == {a for a, r in rows.items() if role in r} == allowed_of(env, role), (role, got)
    q(env, "UPDATE memberships SET status = 'left', left_at = now() WHERE user_id = %s" % ch["users"]["treasurer"])
    assert q(env, "SELECT policy_allows(%s, %s, 'money.cash_record')" % (ch["users"]["treasurer"], ch["cid"])) == \
        [["f"]]
    # an action with no row is a bug, not a refusal
    assert "no policy for action \"money.no_such\"" in env.psql_error(
        "SELECT policy_allows(1, 1, 'money.no_such')")
    # every outcome key a function or a dom statement can answer has its
    # words (both languages)
    keys = set()
    for (src,) in q(env, "SELECT translate(prosrc, E'\\t', ' ') FROM pg_proc "
                   "WHERE pronamespace = 'public'::regnamespace"):
        keys |= set(re.findall(r"'((?:ok|err|end)_[a-z_]+)'", src))
    for f in glob.glob(os.path.join(ROOT, "src", "dom", "*.c")):
        keys |= set(re.findall(r"'((?:ok|err|end)_[a-z_]+)'", open(f).read()))
    assert {"err_not_official", "err_member_number", "err_no_suspense", "err_already_allocated",
            "err_no_contribution", "err_not_posted", "err_already_reversed", "ok_cash_recorded",
            "end_join_pending", "ok_invite_sent", "err_already_decided"} <= keys, keys
    missing = {k for k in keys if not (strings.get(k, {}).get("en") and strings.get(k, {}).get("sw"))}
    assert not missing, missing


def test_policy_every_role_is_offered_exactly_what_it_may_do(env):
    """For each role: walking the menus from the main screen, every
    protected option shown leads to an action the role may do, every action
    it may do is shown, and doing each one shown works."""
    screens, _ = menus()
    c = env.chamad()
    for role in ROLES:
        ch = chama_with_everyone(env)
        allowed = allowed_of(env, role)
        offered, problems = walk(c, ch["phones"][role], screens, allowed)
        assert not problems, (role, problems)
        assert set(offered) == allowed, (role, sorted(offered), sorted(allowed))
        for action, path in sorted(offered.items()):
            do(env, c, ch, role, action, path)
    # the roles differ: a member is offered nothing, the money is the
    # treasurer's and the chairperson's
    assert allowed_of(env, "member") == set()
    assert {a for a in allowed_of(env, "secretary") if a.startswith("money.")} == set()
    assert {a for a in allowed_of(env, "treasurer") if a.startswith("money.")} == \
        {"money.cash_record", "money.suspense_allocate", "money.payment_reverse",
         "money.payout_request", "money.payout_list"}
    c.stop()


def test_policy_secretary_is_not_shown_money(env):
    """The bug: the secretary was shown Officials > Money and then refused on
    every item.  Now Money is not offered, what is offered works, and the
    Money number typed anyway is an invalid choice."""
    screens, _ = menus()
    c = env.chamad()
    ch = chama_with_everyone(env)
    phone = ch["phones"]["secretary"]
    main = screens["main"]["options"]
    officials = str(1 + [o["next"] for o in main].index("officials_menu"))
    s, screen = reach(c, phone, [officials])
    assert screen.startswith("Officials:") and "Join requests" in screen, screen
    assert "Money" not in screen, screen
    money = str(1 + [o["next"] for o in screens["officials_menu"]["options"]].index("money_menu"))
    end, screen = s.send(money)
    assert not end and screen.startswith("Invalid choice."), screen
    # and what is offered is not refused
    for n in sorted(offered_numbers(reach(c, phone, [officials])[1]) - {0}):
        s, screen = reach(c, phone, [officials])
        end, screen = s.send(str(n))
        assert "Only officials" not in screen and "cannot do this" not in screen, (n, screen)
    c.stop()


def test_policy_role_taken_away_mid_session(env):
    """The session still offers what the role allowed when the chama was
    picked; the statement checks the role it has now and answers an
    outcome row (err_not_official), shown in the member's language; nothing
    is written."""
    screens, strings = menus()
    c = env.chamad()
    ch = chama_with_everyone(env)
    treasurer, cid = ch["users"]["treasurer"], ch["cid"]
    phone = ch["phones"]["treasurer"]
    offered, problems = walk(c, phone, screens, allowed_of(env, "treasurer"))
    assert not problems, problems
    refused = strings["err_not_official"]["en"]

    def demoted_then(path, inputs, last):
        s, _ = reach(c, phone, path)
        for inp in inputs:
            s.send(inp)
        q(env, "UPDATE memberships SET role = 'member' WHERE user_id = %s" % treasurer)
        try:
            return s.send(last)
        finally:
            q(env, "UPDATE memberships SET role = 'treasurer' WHERE user_id = %s" % treasurer)

    end, screen = demoted_then(offered["money.cash_record"], [str(ch["num"]), "900"], "1")
    assert not end and screen.startswith(refused + "\nRecord KES 900"), screen
    assert q(env, "SELECT count(*) FROM contributions WHERE chama_id = %s AND method = 'cash' "
                  "AND amount_cents = 90000" % cid) == [["0"]]
    end, screen = demoted_then(offered["money.suspense_allocate"], ["1"], str(ch["num"]))
    assert not end and screen.startswith(refused), screen
    assert q(env, "SELECT balance_cents FROM ledger_accounts WHERE chama_id = %s AND kind = 'suspense'" % cid) == \
        [["120000"]]
    end, screen = demoted_then(offered["money.payment_reverse"], ["1", "not theirs"], "1")
    assert not end and screen.startswith(refused), screen
    assert q(env, "SELECT count(*) FROM contributions WHERE chama_id = %s AND status = 'reversed'" % cid) == [["0"]]
    # an officials' list and an invite, the same
    end, screen = demoted_then(offered["chama.join_decide"][:-1], [], offered["chama.join_decide"][-1])
    assert not end and screen.startswith(refused), screen
    before = q(env, "SELECT count(*) FROM invites WHERE chama_id = %s" % cid)
    end, screen = demoted_then(offered["chama.invite_create"][:-1], [], offered["chama.invite_create"][-1])
    assert not end and screen.startswith(refused), screen
    assert q(env, "SELECT count(*) FROM invites WHERE chama_id = %s" % cid) == before
    end, screen = demoted_then(offered["chama.invite_phone"], [], "0" + new_phone()[4:])
    assert not end and screen.startswith(refused), screen
    # in Swahili for a Swahili member
    q(env, "UPDATE users SET preferred_language = 'sw' WHERE id = %s" % treasurer)
    s = AT(c, phone)
    s.dial()
    s.send(PIN)
    for inp in offered["money.cash_record"]:
        s.send(inp)
    s.send(str(ch["num"]))
    s.send("900")
    q(env, "UPDATE memberships SET role = 'member' WHERE user_id = %s" % treasurer)
    end, screen = s.send("1")
    assert not end and screen.startswith(strings["err_not_official"]["sw"]), screen
    c.stop()
