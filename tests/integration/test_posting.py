"""One posting primitive: ledger_post() is the only code that writes the
journal (entries, lines) and the financial audit trail, every posting
function takes its time as p_at, and posting one idempotency key any
number of times, from two sessions at once, gives one entry: the first
call's, whatever the repeats say."""
import os
import random
import re
import subprocess
import threading

from harness import ROOT
from test_ledger import add_chama, verify

BOOKS = r"\binsert\s+into\s+(journal_entries|journal_lines|financial_audit_logs)\b"
PG_BOOKS = BOOKS.replace(r"\b", r"\y")  # PostgreSQL spells a word boundary \y
# the functions that move money (and every function calling one of them);
# each takes its time as p_at and never reads now() for what it records
POSTING = {"ledger_post", "post_contribution", "reverse_contribution", "post_suspense", "suspense_allocate",
           "cash_record", "payment_reverse", "c2b_confirm", "mpesa_settle",
           "payout_post", "reconcile_compare", "c2b_credit", "loan_penalty_levy",
           "loan_on_paid", "loan_write_off_on_approval", "loan_repay", "loan_repayment_reverse"}


def posting_db(env, name):
    url = env.fresh_db("chamasmart_posting_" + name)
    env.migrate(url)
    return url


def test_posting_only_ledger_post_writes_the_books(env):
    url = posting_db(env, "only")
    # in the database: every function's source
    writers = env.psql("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
                       "AND p.prosrc ~* '%s' ORDER BY 1" % PG_BOOKS, url)
    assert writers == [["ledger_post"]], writers
    # in the tree: the schema files and the C sources (the migrations are
    # history, applied once, and may hold the old copies)
    found = []
    for top in ("schema", "src"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".sql", ".c", ".h")):
                    text = open(os.path.join(d, f), encoding="utf-8").read()
                    found += ["%s/%s" % (os.path.relpath(d, ROOT), f)] * len(re.findall(BOOKS, text, re.I))
    assert found == ["schema/30_ledger.sql"] * 3, found
    # whoever calls ledger_post is a posting function, and each takes p_at
    callers = {r[0] for r in env.psql("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = "
                                      "'public'::regnamespace AND p.prosrc ~* '\\m(ledger_post|post_contribution|"
                                      "post_suspense|reverse_contribution)\\s*\\(' ", url)}
    assert callers | {"ledger_post"} <= POSTING, callers - POSTING
    rows = env.psql("SELECT p.proname, 'p_at' = ANY (p.proargnames), p.prosrc ~* 'now\\(\\)' FROM pg_proc p "
                    "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY ('{%s}') ORDER BY 1"
                    % ",".join(sorted(POSTING)), url)
    assert sorted(r[0] for r in rows) == sorted(POSTING), rows
    assert all(r[1] == "t" for r in rows), [r[0] for r in rows if r[1] != "t"]
    # mpesa_settle stamps its request's completed_at (the request's own
    # bookkeeping, not the books); everything else records p_at only
    assert [r[0] for r in rows if r[2] == "t"] == ["mpesa_settle"], rows
    # a posting dated p_at: the contribution, the entry and its audit row
    cid, (uid,) = add_chama(env, url, "Dated", members=1, first=10)
    (k, _), = env.psql("SELECT * FROM post_contribution(%s, %s, 4200, 'savings', 'cash', NULL, 'dated:1', NULL, "
                       "'admin', NULL, 't', NULL, '2027-03-01 09:00+03')" % (cid, uid), url)
    assert env.psql("SELECT k.contributed_at = t, k.confirmed_at = t, e.created_at = t, f.occurred_at = t "
                    "FROM contributions k, journal_entries e, financial_audit_logs f, "
                    "(SELECT '2027-03-01 09:00+03'::timestamptz AS t) x "
                    "WHERE k.id = %s AND e.ref_id = k.id AND f.entity_id = k.id" % k, url) == [["t"] * 4]
    (r,), = env.psql("SELECT outcome FROM reverse_contribution(%s, 'test', NULL, 'admin', NULL, 't', NULL, "
                     "'2027-03-02 10:00+03')" % k, url)
    assert r == "ok_reversed"
    assert env.psql("SELECT reversed_at = '2027-03-02 10:00+03' FROM contributions WHERE id = %s" % k, url) == [["t"]]
    assert env.psql("SELECT count(*) FROM journal_entries WHERE created_at = '2027-03-02 10:00+03' "
                    "AND kind = 'contribution_reversal'", url) == [["1"]]
    assert verify(env, url)[0] == 0


def test_posting_refusals_are_outcome_rows(env):
    """What a caller can meet comes back as a row, not as an error."""
    url = posting_db(env, "outcomes")
    cid, (uid,) = add_chama(env, url, "Outcomes", members=1, first=20)
    at = "'2027-01-05 10:00+03'"
    (e,), = env.psql("SELECT post_suspense(%s, 900, 'QS1', 'c2b:QS1', 'mpesa', 'QS1', 'memo', %s)" % (cid, at), url)
    (k, _), = env.psql("SELECT * FROM post_contribution(%s, %s, 1000, 'savings', 'cash', NULL, 'o:1', NULL, "
                       "'admin', NULL, 't', NULL, %s)" % (cid, uid, at), url)
    (pending,), = env.psql("INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status) "
                           "VALUES (%s, %s, 500, 'savings', 'mpesa', 'pending') RETURNING id" % (cid, uid), url)
    rev = "SELECT outcome FROM reverse_contribution(%s, 'r', NULL, 'admin', NULL, 't', NULL, " + at + ")"
    assert env.psql(rev % -1, url) == [["err_no_contribution"]]
    assert env.psql(rev % pending, url) == [["err_not_posted"]]
    assert env.psql(rev % k, url) == [["ok_reversed"]]
    assert env.psql(rev % k, url) == [["err_already_reversed"]]
    (num,), = env.psql("SELECT member_number FROM memberships WHERE user_id = %s" % uid, url)
    env.psql("UPDATE memberships SET role = 'treasurer' WHERE user_id = %s" % uid, url)
    alloc = ("SELECT outcome FROM suspense_allocate(%s, %%s, %%s, %s, 'ussd', NULL, 't', 'x', %s)" % (cid, uid, at))
    assert env.psql(alloc % (e, 999), url) == [["err_member_number"]]
    assert env.psql(alloc % (-5, num), url) == [["err_no_suspense"]]
    assert env.psql(alloc % (e, num), url) == [["ok_allocated"]]
    assert env.psql(alloc % (e, num), url) == [["err_already_allocated"]]
    env.psql("UPDATE memberships SET role = 'member' WHERE user_id = %s" % uid, url)
    assert env.psql(alloc % (e, num), url) == [["err_not_official"]]
    assert verify(env, url)[0] == 0


def lines_for(rnd, members):
    """A balanced set of 2 to 4 lines that takes no account below zero:
    debits on accounts whose normal side is debit, credits on the others
    (none on the members' savings or loans, which verify-ledger holds to
    their contributions and their loans)."""
    total = rnd.randrange(2, 300000)
    cut = rnd.randrange(1, total) if rnd.random() < 0.4 else total
    debits = [("cash_on_hand", None, cut)] + ([("bank", None, total - cut)] if cut < total else [])
    cut = rnd.randrange(1, total) if rnd.random() < 0.4 else total
    credits = [("fines_income", None, cut)] + ([("suspense", None, total - cut)] if cut < total else [])
    return [(k, u, "debit", c) for k, u, c in debits] + [(k, u, "credit", c) for k, u, c in credits]


def lines_json(lines):
    return "jsonb_build_array(%s)" % ", ".join(
        "jsonb_build_object('kind', '%s', %s'side', '%s', 'cents', %d)" % (k, "'user', %s, " % u if u else "", s, c)
        for k, u, s, c in lines)


def test_posting_one_key_one_entry_property(env):
    """Two sessions at once, 700 calls each over 150 shared keys; every
    repeat brings other lines, another amount and another date.  Each key
    has one entry (the lines, total and date of the call that made it), one
    audit row, and every call for it answered that entry, exactly one of
    them as created.  Unbalanced calls leave nothing, so their key stays
    free."""
    url = posting_db(env, "prop")
    cid, members = add_chama(env, url, "Posting Property", members=6, first=40)
    rnd = random.Random(20270105)
    keys = ["pk:%d" % i for i in range(150)]
    payload = {}  # call tag -> (key, lines, at)
    scripts = []
    n = 0
    for w in range(2):
        out = []
        for _ in range(700):
            n += 1
            tag = "c%d" % n
            if rnd.random() < 0.08:  # unbalanced: refused at commit, nothing stays
                key = "bad:%d" % n
                lines = lines_for(rnd, members)
                k, u, s, c = lines[-1]
                lines[-1] = (k, u, s, c + 1)
            else:
                key = rnd.choice(keys)
                lines = lines_for(rnd, members)
            at = "2027-%02d-%02d %02d:00+03" % (rnd.randrange(1, 13), rnd.randrange(1, 29), rnd.randrange(24))
            payload[tag] = (key, lines, at)
            out.append("SELECT '%s', lp.entry_id, lp.created FROM ledger_post(%s, 'adjustment', '%s', %s, 'test', "
                       "%d, NULL, jsonb_build_object('action', 'adjustment', 'entity_type', 'test', 'entity_id', %d, "
                       "'direction', 'internal', 'key', 'audit:' || '%s', 'request_id', '%s'), NULL, 'admin', "
                       "'property', '%s') lp;" % (tag, cid, key, lines_json(lines), n, n, key, tag, at))
        scripts.append("\n".join(out) + "\n")
    results = [None, None]

    def run(i):
        p = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=0", url], input=scripts[i],
                           capture_output=True, text=True)
        results[i] = p

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    answered = {}
    errors = []
    for p in results:
        for line in p.stdout.splitlines():
            tag, entry, created = line.split("|")
            answered[tag] = (entry, created == "t")
        errors += [l for l in p.stderr.splitlines() if l.startswith("psql:") or "ERROR" in l]
    bad = {t for t, (k, _, _) in payload.items() if k.startswith("bad:")}
    # only the unbalanced calls failed, each with the balance check
    assert len(errors) == len(bad) and all("does not balance" in e for e in errors), errors[:5]
    assert set(answered) == set(payload) - bad
    by_key = {}
    for tag, (entry, created) in answered.items():
        by_key.setdefault(payload[tag][0], []).append((tag, entry, created))
    stored = {r[0]: r[1:] for r in env.psql(
        "SELECT idempotency_key, id, to_char(created_at AT TIME ZONE 'Africa/Nairobi', 'YYYY-MM-DD HH24') "
        "FROM journal_entries", url)}
    lines_of = {}
    for entry, kind, user, side, cents in env.psql(
            "SELECT l.entry_id, a.kind, coalesce(a.user_id::text, ''), l.side, l.amount_cents FROM journal_lines l "
            "JOIN ledger_accounts a ON a.id = l.account_id", url):
        lines_of.setdefault(entry, []).append((kind, user, side, cents))
    assert set(stored) == set(by_key), (len(stored), len(by_key))
    for key, calls in by_key.items():
        entries = {e for _, e, _ in calls}
        makers = [t for t, _, c in calls if c]
        assert len(entries) == 1 and len(makers) == 1, (key, calls)
        entry, = entries
        assert stored[key][0] == entry
        _, lines, at = payload[makers[0]]
        assert stored[key][1] == at[:13], (key, stored[key], at)
        got = sorted(lines_of[entry])
        want = sorted((k, str(u) if u else "", s, str(c)) for k, u, s, c in lines)
        assert got == want, (key, got, want)
    # one audit row per entry, for the entry's total, dated like it, from its maker
    rows = env.psql("SELECT e.idempotency_key, count(f.id), min(f.amount_cents), bool_and(f.occurred_at = e.created_at), "
                    "min(f.request_id) FROM journal_entries e LEFT JOIN financial_audit_logs f "
                    "ON (f.details ->> 'journal_entry_id')::bigint = e.id GROUP BY e.idempotency_key", url)
    for key, count, amount, same_time, req in rows:
        _, lines, _ = payload[req]
        assert count == "1" and same_time == "t" and payload[req][0] == key, (key, count, req)
        assert int(amount) == sum(c for _, _, s, c in lines if s == "debit"), (key, amount)
    assert env.psql("SELECT count(*) FROM financial_audit_logs", url) == [[str(len(by_key))]]
    # the books add up and the chain verifies
    rc, out = verify(env, url)
    assert rc == 0, out
    # a key an unbalanced call left free takes a good posting later
    key = payload[sorted(bad)[0]][0]
    lines = lines_for(rnd, members)
    assert env.psql("SELECT created FROM ledger_post(%s, 'adjustment', '%s', %s, 'test', 1, NULL, "
                    "jsonb_build_object('action', 'adjustment', 'entity_type', 'test', 'entity_id', 1, 'direction', "
                    "'internal', 'key', 'audit:%s'), NULL, 'admin', NULL, now())" % (cid, key, lines_json(lines), key),
                    url) == [["t"]]
