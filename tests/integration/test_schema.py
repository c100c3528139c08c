"""The database schema against the real PostgreSQL: the table set, money
types, foreign keys and their indexes, constraints, triggers, views, the
migration runner, the plans of the hot lookups, and the demo seed.

Behaviour checks run inside a transaction that is rolled back, in a database
of their own, so they leave nothing behind for other tests."""
import os
import re
import shutil
import subprocess
import tempfile
import threading

from harness import ROOT

TABLES = {
    "users", "chamas", "memberships", "contributions", "loans", "loan_schedules", "loan_repayments",
    "loan_guarantors", "payouts", "rosca_cycles", "rosca_roster", "rosca_swap_requests", "asca_cycles",
    "asca_members", "welfare_config", "welfare_fund", "welfare_claims", "welfare_claim_approvals",
    "meetings", "proposals", "notifications", "join_requests", "invites", "refresh_tokens",
    "signup_sessions", "audit_logs", "financial_audit_logs",
}
# rows that record money, and memberships: never removed by a cascade
FINANCIAL = {
    "contributions", "loans", "loan_schedules", "loan_repayments", "loan_guarantors", "payouts",
    "welfare_fund", "welfare_claims", "welfare_claim_approvals", "asca_members", "rosca_roster",
    "financial_audit_logs", "memberships", "audit_chain_heads",
}
# credentials only: they may go with a hard-deleted user
MAY_CASCADE = {"refresh_tokens", "signup_sessions"}

MIGRATIONS = sorted(f for f in os.listdir(os.path.join(ROOT, "migrations")) if re.match(r"^\d{3}_.*\.sql$", f))

_db = {}


def schema_db(env):
    """One migrated database for this module's behaviour checks."""
    if "url" not in _db:
        _db["url"] = env.fresh_db("chamasmart_schema")
        env.migrate(_db["url"])
    return _db["url"]


def script(env, sql, url=None):
    """Runs a multi-statement script through psql; returns (rc, rows, stderr)
    where rows are the tab-separated result rows of every statement."""
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t",
                        url or schema_db(env)], input=sql, capture_output=True, text=True)
    rows = [line.split("\t") for line in p.stdout.splitlines() if line != ""]
    return p.returncode, rows, p.stderr


def U(n):
    return "(SELECT id FROM users WHERE phone = '+25470000000%d')" % n


C = "(SELECT id FROM chamas WHERE name = 'Fixture Chama')"

FIXTURE = """
INSERT INTO users (phone, full_name, pin_hash) VALUES
    ('+254700000001', 'Amina One', '$argon2id$secret-hash'),
    ('+254700000002', 'Baraka Two', NULL),
    ('+254700000003', 'Chege Three', NULL),
    ('+254700000004', 'Dama Four', NULL);
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
    VALUES ('Fixture Chama', 'mixed', 100000, 'monthly');
INSERT INTO memberships (user_id, chama_id, role) VALUES
    (%(u1)s, %(c)s, 'chairperson'), (%(u2)s, %(c)s, 'treasurer'), (%(u3)s, %(c)s, 'member');
""" % {"u1": U(1), "u2": U(2), "u3": U(3), "c": C}


def in_tx(env, sql):
    """FIXTURE + sql in one transaction that is rolled back."""
    return script(env, "BEGIN;\n%s\n%s\nROLLBACK;\n" % (FIXTURE, sql))


def rows_of(env, sql):
    rc, rows, err = in_tx(env, sql)
    assert rc == 0, err
    return rows


def refused(env, setup, bad, pattern):
    """setup alone succeeds; setup + bad fails with an error matching pattern."""
    rc, _, err = in_tx(env, setup)
    assert rc == 0, "setup failed on its own: %s" % err
    rc, _, err = in_tx(env, setup + "\n" + bad)
    assert rc != 0, "expected refusal of: %s" % bad
    assert re.search(pattern, err), "error %r does not match %r" % (err, pattern)


# -- structure ---------------------------------------------------------------

def test_schema_tables_and_money_types(env):
    tables = {r[0] for r in env.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")}
    missing = TABLES - tables
    assert not missing, "missing tables: %s" % sorted(missing)
    # beyond the 27: the runner's table, votes, the USSD session log, inbound
    # SMS, the ledger and its audit chains' heads, the policy
    assert tables - TABLES == {"schema_migrations", "proposal_votes", "ussd_session_events", "sms_inbound",
                               "ledger_accounts", "journal_entries", "journal_lines", "mpesa_requests",
                               "mpesa_c2b", "mpesa_callbacks", "audit_chain_heads", "policy_actions"}, \
        sorted(tables - TABLES)

    # no float, real, numeric or money column anywhere (tables, views and
    # the materialized view)
    bad = env.psql("""SELECT k.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                        FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid
                       WHERE k.relnamespace = 'public'::regnamespace AND k.relkind IN ('r', 'v', 'm')
                         AND a.attnum > 0 AND NOT a.attisdropped
                         AND a.atttypid IN ('real'::regtype, 'double precision'::regtype,
                                            'numeric'::regtype, 'money'::regtype)""")
    assert bad == [], bad
    # money is bigint cents, each with a CHECK on its sign
    cents = env.psql("""SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
                          JOIN information_schema.tables t USING (table_schema, table_name)
                         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
                           AND c.column_name LIKE '%\\_cents' ESCAPE '\\'""")
    assert len(cents) >= 30, len(cents)
    for table, col, typ in cents:
        if col == "payout_amounts_cents":
            assert typ == "jsonb"  # a map of event type to cents, validated by a CHECK
            continue
        assert typ == "bigint", (table, col, typ)
    unchecked = env.psql(r"""
        SELECT a.attrelid::regclass || '.' || a.attname
          FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid
         WHERE k.relnamespace = 'public'::regnamespace AND k.relkind = 'r'
           AND a.attname LIKE '%\_cents' AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT EXISTS (SELECT 1 FROM pg_constraint x
                            WHERE x.conrelid = a.attrelid AND x.contype = 'c' AND a.attnum = ANY (x.conkey))""")
    assert unchecked == [], "money columns without a CHECK: %s" % unchecked

    # every status column is constrained
    free = env.psql("""SELECT a.attrelid::regclass::text FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid
                        WHERE k.relnamespace = 'public'::regnamespace AND k.relkind = 'r' AND a.attname = 'status'
                          AND NOT EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conrelid = a.attrelid
                                             AND x.contype = 'c' AND a.attnum = ANY (x.conkey))""")
    assert free == [], "status columns without a CHECK: %s" % free

    # outstanding balance is computed by the database, not stored by hand
    gen = env.psql("""SELECT is_generated, generation_expression FROM information_schema.columns
                       WHERE table_name = 'loans' AND column_name = 'outstanding_balance_cents'""")
    assert gen[0][0] == "ALWAYS" and "amount_repaid_cents" in gen[0][1]


def test_schema_foreign_keys_named_indexed_and_restricted(env):
    fks = env.psql("""
        SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text, c.confdeltype,
               EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace""")
    assert len(fks) > 60, len(fks)
    for table, col, ref, deltype, indexed in fks:
        where = "%s.%s -> %s" % (table, col, ref)
        assert indexed == "t", "foreign key without an index: " + where
        # explicit rule: RESTRICT, CASCADE or SET NULL; never the silent default
        assert deltype in ("r", "c", "n"), "no explicit ON DELETE: %s (%s)" % (where, deltype)
        if ref == "users":
            assert col == "user_id" or col.endswith("_user_id"), "badly named: " + where
        elif ref == "chamas":
            assert col == "chama_id", "badly named: " + where
        else:
            assert col.endswith("_id"), where
        if table in FINANCIAL:
            assert deltype == "r", "financial history must RESTRICT: " + where
        if deltype == "c":
            assert table in MAY_CASCADE, "unexpected cascade: " + where
    # every table that has updated_at has the trigger that maintains it
    missing = env.psql("""
        SELECT c.table_name FROM information_schema.columns c
          JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.column_name = 'updated_at'
           AND NOT EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
                            WHERE g.tgrelid = (c.table_schema || '.' || c.table_name)::regclass
                              AND p.proname = 'set_updated_at')""")
    assert missing == [], missing
    # a user with money history cannot be hard-deleted; the cascade the
    # predecessor had is gone
    refused(env, "INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status) "
                 "VALUES (%s, %s, 5000, 'savings', 'cash', 'confirmed');" % (C, U(3)),
            "DELETE FROM memberships WHERE user_id = %s; DELETE FROM users WHERE id = %s;" % (U(3), U(3)),
            r"violates foreign key constraint .*contributions")


def test_schema_indexes(env):
    idx = {r[0]: r[1] for r in env.psql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")}
    assert "WHERE (deleted_at IS NULL)" in idx["users_phone_live_key"]
    assert "UNIQUE" in idx["users_phone_live_key"]
    assert "WHERE (status = 'active'::text)" in idx["memberships_user_active_idx"]
    assert "(chama_id, user_id, contributed_at DESC)" in idx["contributions_member_history_idx"]
    assert "USING gin (constitution)" in idx["chamas_constitution_gin"]
    assert "USING brin (occurred_at)" in idx["financial_audit_logs_occurred_at_brin"]
    assert "UNIQUE" in idx["chama_detailed_summary_chama_id_key"]


# -- constraints -------------------------------------------------------------

def test_schema_constraints_refuse_bad_rows(env):
    refused(env, "", "INSERT INTO users (phone, full_name) VALUES ('0712345678', 'Local Format');",
            r"users_phone_check")
    refused(env, "", "INSERT INTO users (phone, full_name) VALUES ('+254700000001', 'Same Phone');",
            r"users_phone_live_key")
    # a deleted account frees its number for the next owner
    rows = rows_of(env, "UPDATE users SET deleted_at = now() WHERE phone = '+254700000004';"
                        "INSERT INTO users (phone, full_name) VALUES ('+254700000004', 'New Owner');"
                        "SELECT count(*) FROM users WHERE phone = '+254700000004';")
    assert rows == [["2"]]
    refused(env, "", "INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method) "
                     "VALUES (%s, %s, 0, 'savings', 'cash');" % (C, U(1)), r"contributions_amount_cents_check")
    refused(env, "", "INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method) "
                     "VALUES (%s, %s, 100, 'savings', 'paypal');" % (C, U(1)), r"contributions_method_check")
    refused(env, "", "UPDATE chamas SET status = 'sleeping' WHERE id = %s;" % C, r"chamas_status_check")
    # constitution numbers are integers: no floating point money in JSON
    refused(env, "", "UPDATE chamas SET constitution = '{\"late_penalty_cents\": 50.5}' WHERE id = %s;" % C,
            r"chamas_constitution_values_check")
    refused(env, "", "UPDATE chamas SET constitution = '{\"quorum_percent\": 150}' WHERE id = %s;" % C,
            r"chamas_constitution_values_check")
    contrib = ("INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, external_reference) "
               "VALUES (%s, %s, 100, 'savings', 'mpesa', 'QKA12BC3D4');" % (C, U(1)))
    refused(env, contrib, contrib, r"contributions_external_reference_key")
    refused(env, "", "INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s);" % (U(1), C),
            r"memberships_user_chama_key")
    # one active chairperson per chama, checked at commit (hand-over in any order)
    rows = rows_of(env, "INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s);"
                        "UPDATE memberships SET role = 'chairperson' WHERE user_id = %s;"
                        "UPDATE memberships SET role = 'member' WHERE user_id = %s;"
                        "SET CONSTRAINTS ALL IMMEDIATE; SELECT 'ok';" % (U(4), C, U(4), U(1)))
    assert rows == [["ok"]]
    refused(env, "INSERT INTO memberships (user_id, chama_id) VALUES (%s, %s);" % (U(4), C),
            "UPDATE memberships SET role = 'chairperson' WHERE user_id = %s; SET CONSTRAINTS ALL IMMEDIATE;" % U(4),
            r"memberships_one_official_per_role")

    loan = ("INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_method, "
            "term_periods, repayment_frequency, status, amount_disbursed_cents, total_interest_cents) "
            "VALUES (%s, %s, 1000000, 1000, 'flat', 6, 'monthly', 'active', 1000000, 600000);" % (C, U(3)))
    rows = rows_of(env, loan + "UPDATE loans SET amount_repaid_cents = 400000;"
                               "SELECT outstanding_balance_cents FROM loans;")
    assert rows == [["1200000"]]
    refused(env, loan, "UPDATE loans SET amount_repaid_cents = 1600001;", r"loans_no_overpayment")
    refused(env, loan, "UPDATE loans SET approved_by_user_id = user_id;", r"loans_not_self_approved")
    refused(env, loan, "UPDATE loans SET status = 'applied';", r"loans_no_money_before_disbursal")
    refused(env, loan, "INSERT INTO loan_repayments (loan_id, user_id, amount_cents, principal_cents, "
                       "interest_cents, method) SELECT id, user_id, 1000, 600, 300, 'cash' FROM loans;",
            r"loan_repayments_split_check")


def test_schema_rosca_roster_and_swaps(env):
    cycle = ("INSERT INTO rosca_cycles (chama_id, cycle_no, contribution_amount_cents, frequency, start_date) "
             "VALUES (%s, 1, 100000, 'monthly', '2026-01-01');"
             "INSERT INTO rosca_roster (cycle_id, user_id, position) "
             "SELECT c.id, u.id, row_number() OVER (ORDER BY u.phone) FROM rosca_cycles c, users u "
             "WHERE u.phone IN ('+254700000001', '+254700000002', '+254700000003');" % C)
    # two members swap places in one transaction: the unique position is
    # checked at commit, not after the first UPDATE
    rows = rows_of(env, cycle +
                   "UPDATE rosca_roster SET position = 2 WHERE user_id = %s;"
                   "UPDATE rosca_roster SET position = 1 WHERE user_id = %s;"
                   "SET CONSTRAINTS ALL IMMEDIATE;"
                   "SELECT position FROM rosca_roster WHERE user_id = %s;" % (U(1), U(2), U(1)))
    assert rows == [["2"]]
    refused(env, cycle, "UPDATE rosca_roster SET position = 1 WHERE user_id = %s; SET CONSTRAINTS ALL IMMEDIATE;"
            % U(2), r"rosca_roster_cycle_position_key")
    swap = ("INSERT INTO rosca_swap_requests (cycle_id, requester_user_id, target_user_id, requester_position, "
            "target_position) SELECT id, %s, %s, 1, %s FROM rosca_cycles;")
    refused(env, cycle, swap % (U(1), U(1), 2), r"rosca_swap_requests_distinct_users")
    refused(env, cycle, swap % (U(1), U(2), 1), r"rosca_swap_requests_distinct_positions")
    refused(env, cycle + swap % (U(1), U(2), 2),
            "UPDATE rosca_swap_requests SET status = 'approved', approved_by_user_id = %s;" % U(1),
            r"rosca_swap_requests_approver_is_third_party")


# -- triggers ----------------------------------------------------------------

def test_schema_updated_at_and_member_count(env):
    rows = rows_of(env, """
        SELECT member_count FROM chamas WHERE id = %(c)s;
        INSERT INTO memberships (user_id, chama_id) VALUES (%(u4)s, %(c)s);
        SELECT member_count, last_member_number FROM chamas WHERE id = %(c)s;
        UPDATE memberships SET status = 'left', left_at = now() + interval '1 day' WHERE user_id = %(u3)s;
        UPDATE memberships SET status = 'suspended' WHERE user_id = %(u2)s;
        SELECT member_count FROM chamas WHERE id = %(c)s;
        UPDATE memberships SET status = 'active' WHERE user_id = %(u2)s;
        DELETE FROM memberships WHERE user_id = %(u4)s;
        SELECT member_count FROM chamas WHERE id = %(c)s;
        SELECT member_number FROM memberships WHERE chama_id = %(c)s ORDER BY member_number;
    """ % {"c": C, "u2": U(2), "u3": U(3), "u4": U(4)})
    assert rows == [["3"], ["4", "4"], ["2"], ["2"], ["1"], ["2"], ["3"]], rows
    # updated_at moves on UPDATE (now() is fixed inside one transaction, so
    # the row is backdated first and must come forward)
    rows = rows_of(env, """
        ALTER TABLE users DISABLE TRIGGER users_set_updated_at;
        UPDATE users SET updated_at = '2000-01-01' WHERE phone = '+254700000001';
        ALTER TABLE users ENABLE TRIGGER users_set_updated_at;
        UPDATE users SET full_name = 'Amina Renamed' WHERE phone = '+254700000001';
        SELECT updated_at > '2020-01-01' FROM users WHERE phone = '+254700000001';
    """)
    assert rows == [["t"]]


def test_schema_welfare_fund_follows_contributions_and_claims(env):
    welfare = ("INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status) "
               "VALUES (%s, %s, %%d, 'welfare', 'cash', '%%s');" % (C, U(1)))
    fund = "SELECT coalesce((SELECT balance_cents FROM welfare_fund WHERE chama_id = %s), -1);" % C
    rows = rows_of(env, welfare % (30000, "pending") + fund +
                   "UPDATE contributions SET status = 'confirmed';" + fund +
                   welfare % (20000, "confirmed") + fund +
                   # savings never touch the welfare fund
                   "INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status) "
                   "VALUES (%s, %s, 99900, 'savings', 'cash', 'confirmed');" % (C, U(2)) + fund +
                   "UPDATE contributions SET status = 'reversed' WHERE amount_cents = 20000;" + fund)
    assert rows == [["-1"], ["30000"], ["50000"], ["50000"], ["30000"]], rows
    claim = (welfare % (30000, "confirmed") +
             "INSERT INTO welfare_claims (chama_id, user_id, event_type, event_date, amount_requested_cents) "
             "VALUES (%s, %s, 'death_parent', '2026-11-01', 40000);" % (C, U(2)))
    rows = rows_of(env, claim + "UPDATE welfare_claims SET status = 'paid', amount_paid_cents = 25000;" + fund +
                   "UPDATE welfare_claims SET status = 'cancelled', amount_paid_cents = 0;" + fund)
    assert rows == [["5000"], ["30000"]], rows
    # paying more than the fund holds is refused by the database
    refused(env, claim, "UPDATE welfare_claims SET status = 'paid', amount_paid_cents = 30001;",
            r"welfare_fund_balance_not_negative")
    # approvals: never by the claimant, unique per approver
    refused(env, claim, "INSERT INTO welfare_claim_approvals (claim_id, approver_user_id, decision) "
                        "SELECT id, %s, 'approve' FROM welfare_claims;" % U(2),
            r"cannot approve their own claim")
    approve = ("INSERT INTO welfare_claim_approvals (claim_id, approver_user_id, decision) "
               "SELECT id, %s, 'approve' FROM welfare_claims;" % U(1))
    refused(env, claim + approve, approve, r"welfare_claim_approvals_claim_approver_key")


def test_schema_audit_trail(env):
    rows = rows_of(env, """
        DO $$ BEGIN
            PERFORM set_config('chamad.actor_user_id', %(u1)s::text, true),
                    set_config('chamad.channel', 'ussd', true),
                    set_config('chamad.msisdn', '+254700000001', true),
                    set_config('chamad.request_id', 'req-42', true);
        END $$;
        UPDATE users SET pin_hash = '$argon2id$new', failed_pin_attempts = 1 WHERE phone = '+254700000001';
        SELECT actor_user_id = %(u1)s, channel, msisdn, request_id, action,
               before ? 'pin_hash', after ? 'pin_hash', after ->> 'failed_pin_attempts'
          FROM audit_logs WHERE entity_type = 'users' AND action = 'update';
        SELECT count(*) FROM audit_logs WHERE after::text LIKE '%%argon2id%%' OR before::text LIKE '%%argon2id%%';
        SELECT count(*) FROM audit_logs WHERE entity_type = 'memberships' AND chama_id = %(c)s;
        -- counters kept by triggers are not events of their own
        SELECT count(*) FROM audit_logs WHERE entity_type = 'chamas' AND action = 'update';
        UPDATE users SET updated_at = now() WHERE phone = '+254700000002';
        SELECT count(*) FROM audit_logs WHERE entity_type = 'users' AND action = 'update';
    """ % {"u1": U(1), "c": C})
    assert rows == [["t", "ussd", "+254700000001", "req-42", "update", "f", "f", "1"],
                    ["0"], ["3"], ["0"], ["1"]], rows
    audited = {r[0] for r in env.psql("SELECT g.tgrelid::regclass::text FROM pg_trigger g "
                                      "JOIN pg_proc p ON p.oid = g.tgfoid WHERE p.proname = 'audit_row_change'")}
    assert audited == {"users", "chamas", "memberships", "contributions", "loans", "loan_repayments",
                       "payouts", "welfare_claims", "signup_sessions", "join_requests", "invites",
                       "mpesa_requests", "policy_actions"}, audited
    # the audit trail is append-only
    refused(env, "", "UPDATE audit_logs SET action = 'forged';", r"rows are immutable")
    refused(env, "", "DELETE FROM audit_logs;", r"rows are immutable")
    fin = ("INSERT INTO financial_audit_logs (chama_id, user_id, action, entity_type, entity_id, amount_cents, "
           "direction, idempotency_key) VALUES (%s, %s, 'contribution_received', 'contributions', 1, 5000, 'in', "
           "'contribution:1:received');" % (C, U(1)))
    refused(env, fin, "UPDATE financial_audit_logs SET amount_cents = 1;", r"UPDATE on financial_audit_logs")
    refused(env, fin, "DELETE FROM financial_audit_logs;", r"DELETE on financial_audit_logs")
    refused(env, fin, "TRUNCATE financial_audit_logs;", r"TRUNCATE on financial_audit_logs")
    refused(env, fin, fin, r"financial_audit_logs_idempotency_key_key")
    refused(env, "", fin.replace("5000", "-5000"), r"financial_audit_logs_amount_cents_check")


def test_schema_votes_are_once_and_final(env):
    prop = ("INSERT INTO proposals (chama_id, proposer_user_id, kind, title, eligible_voters, closes_at) "
            "VALUES (%s, %s, 'expense', 'Buy tents', 3, now() + interval '2 days');" % (C, U(1)))
    vote = "INSERT INTO proposal_votes (proposal_id, user_id, vote) SELECT id, %s, '%s' FROM proposals;"
    rows = rows_of(env, prop + vote % (U(1), "yes") + vote % (U(2), "no") +
                   "SELECT vote, count(*) FROM proposal_votes GROUP BY vote ORDER BY vote;")
    assert rows == [["no", "1"], ["yes", "1"]]
    refused(env, prop + vote % (U(1), "yes"), vote % (U(1), "no"), r"proposal_votes_proposal_user_key")
    refused(env, prop + vote % (U(1), "yes"), "UPDATE proposal_votes SET vote = 'no';", r"rows are immutable")
    refused(env, prop + vote % (U(1), "yes"), "DELETE FROM proposal_votes;", r"rows are immutable")
    refused(env, prop, vote % (U(4), "yes"), r"not an active member")
    refused(env, prop, "UPDATE proposals SET status = 'passed';" + vote % (U(1), "yes"), r"not open for voting")


# -- views -------------------------------------------------------------------

def test_schema_views(env):
    rows = rows_of(env, """
        INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status)
        VALUES (%(c)s, %(u1)s, 50000, 'savings', 'cash', 'confirmed'),
               (%(c)s, %(u1)s, 7000, 'savings', 'cash', 'pending'),
               (%(c)s, %(u1)s, 10000, 'welfare', 'cash', 'confirmed');
        SELECT role, savings_cents, welfare_contributed_cents, open_loans
          FROM user_membership_summary WHERE user_id = %(u1)s;
        SELECT refresh_chama_detailed_summary() > 0;
        SELECT member_count, total_savings_cents, welfare_fund_balance_cents, pending_contributions,
               officials -> 'chairperson' ->> 'name'
          FROM chama_detailed_summary WHERE chama_id = %(c)s;
    """ % {"c": C, "u1": U(1)})
    assert rows == [["chairperson", "50000", "10000", "0"], ["t"],
                    ["3", "50000", "10000", "1", "Amina One"]], rows
    assert env.psql("SELECT relkind FROM pg_class WHERE relname = 'chama_detailed_summary'") == [["m"]]

    # the refresh is CONCURRENT: a reader holding the view open does not
    # block it (a plain REFRESH would wait for the reader's lock)
    url = schema_db(env)
    reader = subprocess.Popen(["psql", "-X", "-q", "-tA", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        reader.stdin.write("BEGIN;\nSELECT 'reading', count(*) FROM chama_detailed_summary;\n")
        reader.stdin.flush()
        assert reader.stdout.readline().startswith("reading")
        rc, rows, err = script(env, "SET lock_timeout = '3s'; SELECT refresh_chama_detailed_summary() >= 0;")
        assert rc == 0 and rows == [["t"]], err
        rc, _, err = script(env, "SET lock_timeout = '1s'; REFRESH MATERIALIZED VIEW chama_detailed_summary;")
        assert rc != 0 and "lock timeout" in err, err
    finally:
        reader.stdin.write("ROLLBACK;\n")
        reader.stdin.close()
        reader.wait(timeout=10)


# -- migration runner ----------------------------------------------------------

def copy_migrations(dst):
    for f in MIGRATIONS:
        shutil.copy(os.path.join(ROOT, "migrations", f), dst)


def test_migrate_runner(env):
    url = env.fresh_db("chamasmart_migrate")
    p = env.migrate(url)
    assert "%d applied, 0 already up to date" % len(MIGRATIONS) in p.stdout, p.stdout
    p = env.migrate(url)
    assert "0 applied, %d already up to date" % len(MIGRATIONS) in p.stdout, p.stdout
    rows = env.psql("SELECT version, name, length(checksum) FROM schema_migrations ORDER BY version", url)
    assert [r[1] for r in rows] == MIGRATIONS and all(r[2] == "64" for r in rows), rows

    with tempfile.TemporaryDirectory() as d:
        copy_migrations(d)
        # an applied file that was edited is refused, naming the file
        with open(os.path.join(d, MIGRATIONS[2]), "a") as f:
            f.write("\n-- a harmless-looking edit\n")
        p = env.migrate(url, check=False, migrations_dir=d)
        assert p.returncode != 0 and "%s was edited after it was applied" % MIGRATIONS[2] in p.stderr, p.stderr
        copy_migrations(d)
        # a broken migration leaves nothing behind
        with open(os.path.join(d, "900_broken.sql"), "w") as f:
            f.write("CREATE TABLE half_done (id int);\nSELECT no_such_function();\n")
        p = env.migrate(url, check=False, migrations_dir=d)
        assert p.returncode != 0 and "900_broken.sql was rolled back" in p.stderr, p.stderr
        assert env.psql("SELECT to_regclass('half_done') IS NULL, max(version) FROM schema_migrations", url) == \
            [["t", str(len(MIGRATIONS))]]
        # once fixed it applies
        with open(os.path.join(d, "900_broken.sql"), "w") as f:
            f.write("CREATE TABLE half_done (id int);\n")
        p = env.migrate(url, migrations_dir=d)
        assert "1 applied" in p.stdout, p.stdout
        # a new file numbered below what is applied is refused
        with open(os.path.join(d, "899_late.sql"), "w") as f:
            f.write("SELECT 1;\n")
        p = env.migrate(url, check=False, migrations_dir=d)
        assert p.returncode != 0 and "899_late.sql is older than applied version 900" in p.stderr, p.stderr


def test_migrate_concurrent_runners(env):
    url = env.fresh_db("chamasmart_migrate_race")
    results = [None] * 4

    def run(i):
        results[i] = env.migrate(url, check=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    applied = 0
    for p in results:
        assert p.returncode == 0, p.stderr
        applied += int(re.search(r"(\d+) applied", p.stdout).group(1))
    # the advisory lock serialises them: every file applied exactly once
    assert applied == len(MIGRATIONS), [p.stdout for p in results]
    assert env.psql("SELECT count(*) FROM schema_migrations", url) == [[str(len(MIGRATIONS))]]


# -- hot lookups ---------------------------------------------------------------

HOT_LOOKUPS = {
    "user by phone": (
        "SELECT id, full_name, pin_hash FROM users WHERE phone = '+254711012345' AND deleted_at IS NULL",
        "users", {"users_phone_live_key"}),
    "active memberships of a user": (
        "SELECT chama_id, role FROM memberships WHERE user_id = 12345 AND status = 'active'",
        "memberships", {"memberships_user_active_idx", "memberships_user_chama_key"}),
    "contributions of a member in a chama by date": (
        "SELECT id, amount_cents, status, contributed_at FROM contributions "
        "WHERE chama_id = 243 AND user_id = 4242 AND contributed_at >= '2026-01-01' "
        "AND contributed_at < '2026-07-01' AND deleted_at IS NULL ORDER BY contributed_at DESC",
        "contributions", {"contributions_member_history_idx"}),
}

SEED_20K = """
SET session_replication_role = replica;  -- bulk load without per-row triggers
INSERT INTO users (phone, full_name) SELECT '+2547' || (11000000 + g)::text, 'Member ' || g
  FROM generate_series(1, 20000) g;
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
  SELECT 'Chama ' || g, 'mixed', 50000, 'monthly' FROM generate_series(1, 500) g;
INSERT INTO memberships (user_id, chama_id, member_number, status)
  SELECT u, 1 + (u + 250 * k) %% 500, u * 2 + k, CASE WHEN u %% 10 = 0 THEN 'left' ELSE 'active' END
    FROM generate_series(1, 20000) u, generate_series(0, 1) k;
INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, status, contributed_at)
  SELECT m.chama_id, m.user_id, 50000, 'savings', 'mpesa', 'confirmed',
         timestamptz '2025-06-01' + make_interval(days => 30 * n)
    FROM memberships m, generate_series(0, 9) n;
SET session_replication_role = origin;
ANALYZE;
"""


def explain(env, sql, url):
    return "\n".join(r[0] for r in env.psql("EXPLAIN " + sql, url))


def test_hot_lookups_use_indexes(env):
    url = env.fresh_db("chamasmart_explain")
    env.migrate(url)
    env.psql(SEED_20K % (), url)
    n = env.psql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM memberships), "
                 "(SELECT count(*) FROM contributions)", url)
    assert n == [["20000", "40000", "400000"]], n
    for what, (sql, table, indexes) in HOT_LOOKUPS.items():
        plan = explain(env, sql, url)
        assert "Seq Scan on %s" % table not in plan, "%s scans the table:\n%s" % (what, plan)
        used = set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using (\w+) on " + table, plan))
        used |= set(re.findall(r"Bitmap Index Scan on (\w+)", plan))
        assert used & indexes, "%s does not use %s:\n%s" % (what, indexes, plan)
        print("EXPLAIN %s\n%s" % (what, plan))


# -- demo seed -----------------------------------------------------------------

def test_demo_seed_is_idempotent(env):
    url = env.fresh_db("chamasmart_demo")
    env.migrate(url)
    for _ in range(2):
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f",
                            os.path.join(ROOT, "scripts", "demo_seed.sql")], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert "already present" in p.stderr
    rows = env.psql("""SELECT (SELECT count(*) FROM chamas), (SELECT count(*) FROM users),
                              (SELECT count(*) FROM memberships), (SELECT count(*) FROM contributions),
                              (SELECT count(*) FROM financial_audit_logs),
                              (SELECT balance_cents FROM welfare_fund), member_count, total_savings_cents,
                              officials ? 'treasurer'
                         FROM chama_detailed_summary""", url)
    assert rows == [["1", "5", "5", "30", "30", "150000", "5", "750000", "t"]], rows
