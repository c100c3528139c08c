"""The double-entry ledger against the real PostgreSQL: postings are one
transaction and idempotent, entries must balance, lines are append-only, the
audit chain is tamper-evident, and `chamad verify-ledger` checks it all.  A
randomized property test interleaves thousands of postings, duplicates,
reversals and failures from two sessions at once and compares every
member's balance with a model."""
import os
import random
import subprocess
import threading

from harness import ROOT


def ledger_db(env, name):
    url = env.fresh_db("chamasmart_ledger_" + name)
    env.migrate(url)
    return url


def verify(env, url):
    e = dict(os.environ, CHAMAD_DATABASE_URL=url)
    p = subprocess.run([env.bin, "verify-ledger"], capture_output=True, text=True, env=e, cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


def seed(env, url, members=3):
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('Ledger Group', 'mixed', 50000, 'monthly') RETURNING id", url)
    ids = []
    for i in range(members):
        (uid,), = env.psql("INSERT INTO users (phone, full_name) VALUES ('+25471%07d', 'Member %d') RETURNING id"
                           % (i, i), url)
        env.psql("INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s)" % (uid, cid), url)
        ids.append(uid)
    return cid, ids


def post(env, url, cid, uid, cents, key, purpose="savings", method="mpesa", ref="NULL", check=True):
    return env.psql("SELECT contribution_id, created FROM post_contribution(%s, %s, %d, '%s', '%s', %s, '%s', NULL, "
                    "'mpesa', NULL, 'test', 'Receipt') " % (cid, uid, cents, purpose, method, ref, key), url, check)


def test_ledger_postings(env):
    url = ledger_db(env, "post")
    cid, (a, b, c) = seed(env, url)
    (k1, created), = post(env, url, cid, a, 50000, "mpesa:ws_CO_1", ref="'QKA1'")
    assert created == "t"
    # the same event again: nothing new
    assert post(env, url, cid, a, 50000, "mpesa:ws_CO_1", ref="'QKA1'") == [[k1, "f"]]
    # the same receipt under another key (a callback racing the status query)
    assert post(env, url, cid, a, 50000, "mpesa:query:ws_CO_1", ref="'QKA1'") == [[k1, "f"]]
    post(env, url, cid, b, 10000, "cash:1", purpose="welfare", method="cash")
    rows = env.psql("SELECT kind, user_id, balance_cents FROM ledger_accounts ORDER BY kind, user_id", url)
    assert rows == [["cash_on_hand", "", "10000"], ["member_savings", a, "50000"], ["member_welfare", b, "10000"],
                    ["mpesa_float", "", "50000"]], rows
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'receipt'", url) == [["2"]]
    assert env.psql("SELECT count(*) FROM financial_audit_logs", url) == [["2"]]
    # a reversal mirrors the entry; twice is once
    for _ in range(2):
        env.psql("SELECT reverse_contribution(%s, 'paid to the wrong chama', NULL, 'admin', NULL, 't', 'Reversed')"
                 % k1, url)
    assert env.psql("SELECT status FROM contributions WHERE id = %s" % k1, url) == [["reversed"]]
    assert env.psql("SELECT balance_cents FROM ledger_accounts WHERE user_id = %s" % a, url) == [["0"]]
    assert env.psql("SELECT count(*) FROM journal_entries", url) == [["3"]]
    assert verify(env, url)[0] == 0
    # entries must balance (checked at commit), lines never change
    p = env.psql("BEGIN; INSERT INTO journal_entries (chama_id, kind, idempotency_key) VALUES (%s, 'adjustment', 'x');"
                 "INSERT INTO journal_lines (entry_id, account_id, side, amount_cents) SELECT currval("
                 "pg_get_serial_sequence('journal_entries', 'id')), id, 'debit', 100 FROM ledger_accounts "
                 "WHERE kind = 'cash_on_hand'; COMMIT;" % cid, url, check=False)
    assert p.returncode != 0 and "does not balance" in p.stderr, p.stderr
    for sql in ("UPDATE journal_lines SET amount_cents = 1", "DELETE FROM journal_lines",
                "DELETE FROM journal_entries", "TRUNCATE journal_lines"):
        assert "rows are immutable" in env.psql_error(sql, url)
    # no account goes below zero
    assert "ledger_accounts_not_negative" in env.psql_error(
        "SELECT reverse_contribution(id, 'x', NULL, 'admin', NULL, 't', NULL) FROM contributions "
        "WHERE status = 'confirmed'; UPDATE ledger_accounts SET balance_cents = -1", url)
    # tampering shows
    env.psql("ALTER TABLE financial_audit_logs DISABLE TRIGGER financial_audit_logs_append_only;"
             "UPDATE financial_audit_logs SET amount_cents = 999999 WHERE id = (SELECT min(id) FROM "
             "financial_audit_logs);"
             "ALTER TABLE financial_audit_logs ENABLE TRIGGER financial_audit_logs_append_only;"
             "ALTER TABLE ledger_accounts DISABLE TRIGGER ALL;"
             "UPDATE ledger_accounts SET balance_cents = balance_cents + 5 WHERE kind = 'mpesa_float';"
             "ALTER TABLE ledger_accounts ENABLE TRIGGER ALL;", url)
    rc, out = verify(env, url)
    assert rc == 1 and "content does not match its hash" in out and "BAD account balance" in out, out


def test_ledger_property_interleaved(env):
    """Two sessions at once, 1,500 operations each, over shared keys: every
    entry balances, balances equal line sums, the chain verifies, and each
    member's balances equal the model's."""
    url = ledger_db(env, "prop")
    cid, members = seed(env, url, members=8)
    rnd = random.Random(20261125)
    keys = []
    for i in range(600):  # every key is one event: the same member, amount and purpose whoever posts it
        keys.append({"key": "ev:%d" % i, "member": rnd.choice(members), "cents": rnd.randrange(1, 500000),
                     "purpose": rnd.choice(["savings", "savings", "welfare", "shares"]),
                     "method": rnd.choice(["mpesa", "cash", "bank"]),
                     "ref": "'R%06d'" % i if rnd.random() < 0.5 else "NULL"})
    posted, reversed_ = set(), set()
    scripts = []
    for w in range(2):
        lines, mine = [], []
        for _ in range(1500):
            r = rnd.random()
            if r < 0.6:
                ev = rnd.choice(keys)
                lines.append("SELECT post_contribution(%s, %s, %d, '%s', '%s', %s, '%s', NULL, 'mpesa', NULL, 't', "
                             "'Receipt');" % (cid, ev["member"], ev["cents"], ev["purpose"], ev["method"], ev["ref"],
                                              ev["key"]))
                posted.add(ev["key"])
                mine.append(ev["key"])
            elif r < 0.75 and mine:
                k = rnd.choice(mine)  # only what this session already posted
                lines.append("SELECT reverse_contribution((SELECT ref_id FROM journal_entries WHERE "
                             "idempotency_key = '%s'), 'test', NULL, 'admin', NULL, 't', 'Reversed');" % k)
                reversed_.add(k)
            elif r < 0.85:  # failures: nothing may stick
                lines.append("SELECT post_contribution(%s, %s, 0, 'savings', 'cash', NULL, 'bad:%d', NULL, 'mpesa', "
                             "NULL, 't', NULL);" % (cid, rnd.choice(members), rnd.randrange(10 ** 9)))
            elif r < 0.9:
                lines.append("SELECT reverse_contribution(-1, 'none', NULL, 'admin', NULL, 't', NULL);")
            else:  # a duplicate of something already posted, under its receipt
                ev = rnd.choice(keys)
                lines.append("SELECT post_contribution(%s, %s, %d, '%s', '%s', %s, '%s', NULL, 'mpesa', NULL, 't', "
                             "'Receipt');" % (cid, ev["member"], ev["cents"], ev["purpose"], ev["method"], ev["ref"],
                                              ev["key"]))
                posted.add(ev["key"])
                mine.append(ev["key"])
        scripts.append("\n".join(lines) + "\n")

    def run(script):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", url], input=script, capture_output=True,
                       text=True)

    threads = [threading.Thread(target=run, args=(s,)) for s in scripts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    # the model
    want = {}
    by_key = {ev["key"]: ev for ev in keys}
    for k in posted - reversed_:
        ev = by_key[k]
        acct = {"welfare": "member_welfare", "shares": "member_shares"}.get(ev["purpose"], "member_savings")
        want[(ev["member"], acct)] = want.get((ev["member"], acct), 0) + ev["cents"]
    got = {(u, kind): int(cents) for u, kind, cents in env.psql(
        "SELECT user_id, kind, balance_cents FROM ledger_accounts WHERE user_id IS NOT NULL", url)}
    got = {k: v for k, v in got.items() if v}
    assert got == want, (sorted(got.items())[:5], sorted(want.items())[:5])
    assert env.psql("SELECT count(*) FROM contributions WHERE status = 'confirmed'", url) == \
        [[str(len(posted - reversed_))]]
    assert env.psql("SELECT count(*) FROM journal_entries WHERE kind = 'contribution'", url) == [[str(len(posted))]]
    rc, out = verify(env, url)
    assert rc == 0, out
    print(out.strip())
