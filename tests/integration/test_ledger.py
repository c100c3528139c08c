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


# -- one audit chain per chama -------------------------------------------------

def add_chama(env, url, name, members=2, first=100):
    (cid,), = env.psql("INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency) "
                       "VALUES ('%s', 'mixed', 50000, 'monthly') RETURNING id" % name, url)
    ids = []
    for i in range(first, first + members):
        (uid,), = env.psql("INSERT INTO users (phone, full_name) VALUES ('+25472%07d', 'Member %d') RETURNING id"
                           % (i, i), url)
        env.psql("INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s)" % (uid, cid), url)
        ids.append(uid)
    return cid, ids


def chain_of(env, url, cid):
    """The chama's chain: its rows' places in order, and its head's place."""
    seqs = [int(r[0]) for r in env.psql("SELECT chama_seq FROM financial_audit_logs WHERE chama_id = %s "
                                        "ORDER BY chama_seq" % cid, url)]
    head = env.psql("SELECT seq FROM audit_chain_heads WHERE chama_id = %s" % cid, url)
    return seqs, int(head[0][0]) if head else None


def tamper(env, url, sql):
    """sql run as the owner with the audit trail's append-only triggers off."""
    env.psql("ALTER TABLE financial_audit_logs DISABLE TRIGGER financial_audit_logs_append_only; %s; "
             "ALTER TABLE financial_audit_logs ENABLE TRIGGER financial_audit_logs_append_only;" % sql, url)


def test_ledger_chains_interleaved(env):
    """Two sessions post for two chamas in turn, with rolled-back postings in
    between: each chama has its own chain, gapless (1..n, the head at n),
    and verify-ledger checks both."""
    url = ledger_db(env, "chains")
    a, ma = add_chama(env, url, "Chain A", first=100)
    b, mb = add_chama(env, url, "Chain B", first=200)
    scripts = []
    for w in range(2):
        lines = []
        for i in range(200):
            cid, members = (a, ma) if (i + w) % 2 == 0 else (b, mb)
            call = ("SELECT post_contribution(%s, %s, %d, 'savings', 'mpesa', NULL, 'w%d:%d', NULL, 'mpesa', NULL, "
                    "'t', 'Receipt');" % (cid, members[i % 2], 100 + i, w, i))
            # every fifth posting is rolled back after its audit row moved the head
            lines.append("BEGIN; %s ROLLBACK;" % call.replace("'w%d:%d'" % (w, i), "'rb%d:%d'" % (w, i))
                         if i % 5 == 4 else call)
        scripts.append("\n".join(lines) + "\n")

    def run(s):
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url], input=s, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr

    threads = [threading.Thread(target=run, args=(s,)) for s in scripts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for cid in (a, b):
        seqs, head = chain_of(env, url, cid)
        assert seqs == list(range(1, 161)) and head == 160, (cid, seqs[:5], len(seqs), head)
    # no row is on the legacy chain, none on another chama's
    assert env.psql("SELECT count(*) FROM financial_audit_logs WHERE chain_seq IS NOT NULL OR chama_seq IS NULL",
                    url) == [["0"]]
    # both start from zeros (new chamas), then every link is its own
    assert env.psql("SELECT count(DISTINCT row_hash), count(DISTINCT prev_hash), count(*) FILTER (WHERE prev_hash = "
                    "'\\x%s') FROM financial_audit_logs" % ("00" * 32), url) == [["320", "319", "2"]]
    rc, out = verify(env, url)
    assert rc == 0 and "320 in 2 chama chains, 0 legacy" in out, out


def test_ledger_chains_do_not_wait_on_each_other(env):
    """A posting of chama A left open holds A's chain only: chama B posts at
    once, and a second posting of A (another member, another account, so
    only the chain is shared) waits for it."""
    url = ledger_db(env, "nowait")
    a, ma = add_chama(env, url, "Wait A", members=3, first=300)
    b, mb = add_chama(env, url, "Wait B", first=400)
    post(env, url, a, ma[0], 100, "warm:a")  # both chains exist: no head is created under the test
    post(env, url, b, mb[0], 100, "warm:b")
    s1 = subprocess.Popen(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", url], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    try:
        s1.stdin.write("BEGIN;\nSELECT 'posted', created FROM post_contribution(%s, %s, 5000, 'savings', 'mpesa', "
                       "NULL, 'open:a', NULL, 'mpesa', NULL, 't', 'Receipt');\n" % (a, ma[0]))
        s1.stdin.flush()
        assert s1.stdout.readline().strip() == "posted|t"
        two = "SET lock_timeout = '2s'; "
        p = env.psql(two + "SELECT created FROM post_contribution(%s, %s, 7000, 'savings', 'mpesa', NULL, 'b:1', "
                     "NULL, 'mpesa', NULL, 't', 'Receipt')" % (b, mb[1]), url, check=False)
        assert p.returncode == 0 and p.stdout.strip() == "t", p.stderr
        p = env.psql(two + "SELECT created FROM post_contribution(%s, %s, 7000, 'shares', 'bank', NULL, 'a:2', "
                     "NULL, 'mpesa', NULL, 't', NULL)" % (a, ma[2]), url, check=False)
        assert p.returncode != 0 and "lock timeout" in p.stderr, (p.stdout, p.stderr)
        # the chain itself: a bare audit row of A waits, one of B does not
        row = ("INSERT INTO financial_audit_logs (chama_id, action, entity_type, entity_id, amount_cents, direction, "
               "idempotency_key) VALUES (%s, 'adjustment', 'test', 1, 100, 'internal', '%s') RETURNING chama_seq")
        p = env.psql(two + row % (b, "bare:b"), url, check=False)
        assert p.returncode == 0 and p.stdout.strip() == "3", (p.stdout, p.stderr)
        p = env.psql(two + row % (a, "bare:a"), url, check=False)
        assert p.returncode != 0 and "lock timeout" in p.stderr, (p.stdout, p.stderr)
        s1.stdin.write("COMMIT;\n")
        s1.stdin.flush()
    finally:
        s1.stdin.close()
        s1.wait(timeout=10)
    assert chain_of(env, url, a) == ([1, 2], 2) and chain_of(env, url, b) == ([1, 2, 3], 3)
    assert verify(env, url)[0] == 0


def test_ledger_chain_tampering(env):
    """A changed row of one chain, a row taken from the middle and rows taken
    from the end (which leave every link intact) all show, naming the chama;
    heads only move forward one row at a time."""
    url = ledger_db(env, "tamper")
    a, ma = add_chama(env, url, "Tamper A", first=500)
    b, mb = add_chama(env, url, "Tamper B", first=600)
    for i in range(4):
        post(env, url, a, ma[i % 2], 1000 + i, "ta:%d" % i)
        post(env, url, b, mb[i % 2], 2000 + i, "tb:%d" % i)
    assert verify(env, url)[0] == 0
    for sql in ("UPDATE audit_chain_heads SET seq = 0", "UPDATE audit_chain_heads SET seq = seq + 2",
                "UPDATE audit_chain_heads SET genesis = hash"):
        assert "moves forward one row at a time" in env.psql_error(sql, url)
    for sql in ("DELETE FROM audit_chain_heads", "TRUNCATE audit_chain_heads"):
        assert "rows are immutable" in env.psql_error(sql, url)

    # one row of A's chain changed
    tamper(env, url, "UPDATE financial_audit_logs SET amount_cents = 999999 WHERE chama_id = %s AND chama_seq = 2" % a)
    rc, out = verify(env, url)
    (rid,), = env.psql("SELECT id FROM financial_audit_logs WHERE chama_id = %s AND chama_seq = 2" % a, url)
    assert rc == 1 and "BAD audit chain of chama %s: row %s content does not match its hash" % (a, rid) in out, out
    assert "chama %s" % b not in out and "(1 problem)" in out, out
    tamper(env, url, "UPDATE financial_audit_logs SET amount_cents = 1001 WHERE id = %s" % rid)
    assert verify(env, url)[0] == 0

    # the last row of B's chain taken away: every remaining link holds
    tamper(env, url, "DELETE FROM financial_audit_logs WHERE chama_id = %s AND chama_seq = 4" % b)
    rc, out = verify(env, url)
    assert rc == 1 and ("BAD audit chain of chama %s: the chain ends at row 3 but its head is at row 4" % b) in out, out
    assert "chama %s" % a not in out and "(1 problem)" in out, out

    # a row from the middle of A's chain, and then all of it
    tamper(env, url, "DELETE FROM financial_audit_logs WHERE chama_id = %s AND chama_seq = 3" % a)
    rc, out = verify(env, url)
    assert rc == 1 and "BAD audit chain of chama %s: row" % a in out and "is at place 4, expected 3" in out, out
    assert "does not follow the row before it" in out, out
    tamper(env, url, "DELETE FROM financial_audit_logs WHERE chama_id = %s" % a)
    rc, out = verify(env, url)
    assert rc == 1 and "BAD audit chain of chama %s: the chain ends at row 0 but its head is at row 4" % a in out, out

    # a row slipped in past the chain (its trigger off): no hash, no place
    env.psql("ALTER TABLE financial_audit_logs DISABLE TRIGGER financial_audit_chain;"
             "INSERT INTO financial_audit_logs (chama_id, action, entity_type, entity_id, amount_cents, direction, "
             "idempotency_key) VALUES (%s, 'adjustment', 'test', 1, 100, 'internal', 'slipped');"
             "ALTER TABLE financial_audit_logs ENABLE TRIGGER financial_audit_chain;" % b, url)
    (sid,), = env.psql("SELECT id FROM financial_audit_logs WHERE idempotency_key = 'slipped'", url)
    rc, out = verify(env, url)
    assert rc == 1 and "BAD audit chain: row %s has no hash after the chain began" % sid in out, out


def test_ledger_chains_continue_the_legacy_chain(env):
    """A database whose rows were written on the global chain (migrations up
    to 013) keeps them verifiable after 015; the chamas of then continue
    from its last hash (so its end is sealed), a chama created later starts
    from zeros."""
    import shutil
    import tempfile
    url = env.fresh_db("chamasmart_ledger_legacy")
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as no_schema:
        for f in sorted(os.listdir(os.path.join(ROOT, "migrations"))):
            if f.endswith(".sql") and f < "014":
                shutil.copy(os.path.join(ROOT, "migrations", f), d)
        # the functions of then are those of 001-013: no schema/ files yet
        env.migrate(url, migrations_dir=d, schema_dir=no_schema)
    a, ma = add_chama(env, url, "Legacy A", first=700)
    b, mb = add_chama(env, url, "Legacy B", first=800)
    quiet, _ = add_chama(env, url, "Legacy Quiet", first=900)  # no postings before 015
    for i in range(3):
        post(env, url, a, ma[0], 100 + i, "la:%d" % i)
        post(env, url, b, mb[0], 200 + i, "lb:%d" % i)
    assert env.psql("SELECT max(chain_seq) FROM financial_audit_logs", url) == [["6"]]
    env.migrate(url)
    (tip,), = env.psql("SELECT encode(row_hash, 'hex') FROM financial_audit_logs WHERE chain_seq = 6", url)
    assert env.psql("SELECT chama_id, seq, encode(hash, 'hex') = '%s', encode(genesis, 'hex') = '%s' "
                    "FROM audit_chain_heads ORDER BY chama_id" % (tip, tip), url) == \
        [[a, "0", "t", "t"], [b, "0", "t", "t"], [quiet, "0", "t", "t"]]
    rc, out = verify(env, url)
    assert rc == 0 and "6 legacy" in out, out
    post(env, url, a, ma[1], 300, "new:a")
    post(env, url, quiet, _[0], 300, "new:q")
    c, mc = add_chama(env, url, "Legacy Later", first=950)
    post(env, url, c, mc[0], 400, "new:c")
    rows = env.psql("SELECT chama_id, chain_seq, chama_seq, encode(prev_hash, 'hex') FROM financial_audit_logs "
                    "WHERE chain_seq IS NULL ORDER BY id", url)
    assert rows == [[a, "", "1", tip], [quiet, "", "1", tip], [c, "", "1", "0" * 64]], rows
    rc, out = verify(env, url)
    assert rc == 0 and "3 in 4 chama chains, 6 legacy" in out, out
    # the legacy chain's last row taken away: every legacy link holds, but
    # the chains no longer start from its end
    tamper(env, url, "DELETE FROM financial_audit_logs WHERE chain_seq = 6")
    rc, out = verify(env, url)
    assert rc == 1 and "BAD audit chain sealing the legacy chain" in out, out
    assert "BAD audit chain of chama %s: it does not start from the end of the legacy chain" % a in out, out
    assert "chama %s:" % c not in out, out
