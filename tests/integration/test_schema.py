"""The database schema against the real PostgreSQL: the table set, money
types, foreign keys and their indexes, constraints, triggers, views, the
migration runner, the plans of the hot lookups, and the demo seed.

Behaviour checks run inside a transaction that is rolled back, in a database
of their own, so they leave nothing behind for other tests."""
import difflib
import hashlib
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
SCHEMA_DIR = os.path.join(ROOT, "schema")
SCHEMA_FILES = sorted(f for f in os.listdir(SCHEMA_DIR) if f.endswith(".sql"))

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
    # beyond the 27: the runner's two tables, votes, the USSD session log,
    # inbound SMS, the ledger and its audit chains' heads, the policy, the
    # approvals (dual control: requests, votes, members' vetoes), loans'
    # penalties and how each repayment was allocated
    assert tables - TABLES == {"schema_migrations", "schema_files", "proposal_votes", "ussd_session_events", "sms_inbound",
                               "ledger_accounts", "journal_entries", "journal_lines", "mpesa_requests",
                               "mpesa_c2b", "mpesa_callbacks", "audit_chain_heads", "policy_actions",
                               "mpesa_status_queries", "approvals", "approval_votes", "approval_vetoes",
                               "reconcile_runs", "reconcile_statement_lines", "reconcile_items",
                               "mpesa_alerts", "loan_penalties", "loan_allocations"}, \
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
    # (a status change is the lifecycle trigger's first: schema/71_loans.sql;
    # the constraint holds what is written whatever the status)
    refused(env, "", loan.replace("'active'", "'applied'"), r"loans_no_money_before_disbursal")
    refused(env, loan, "UPDATE loans SET status = 'applied';", r"active -> applied is not a move of its lifecycle")
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
                       "mpesa_requests", "policy_actions", "approvals", "approval_votes", "approval_vetoes",
                       "loan_penalties", "loan_allocations", "loan_guarantors"}, audited
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


def copy_schema(dst):
    for f in SCHEMA_FILES:
        shutil.copy(os.path.join(SCHEMA_DIR, f), dst)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def summary(p):
    """((applied, up to date) of the migrations, the same of the schema
    files) from chamad migrate's output."""
    m = re.search(r"^migrate: (\d+) applied, (\d+) already up to date$", p.stdout, re.M)
    s = re.search(r"^migrate: schema files: (\d+) applied, (\d+) already up to date$", p.stdout, re.M)
    assert m and s, p.stdout + p.stderr
    return (int(m.group(1)), int(m.group(2))), (int(s.group(1)), int(s.group(2)))


def schema_applied(p):
    return re.findall(r"^migrate: applied schema file (\S+) ", p.stdout, re.M)


def schema_log(env, url):
    return {r[0]: (r[1], r[2]) for r in env.psql("SELECT name, checksum, applied_at FROM schema_files", url)}


def test_migrate_runner(env):
    url = env.fresh_db("chamasmart_migrate")
    p = env.migrate(url)
    assert "%d applied, 0 already up to date" % len(MIGRATIONS) in p.stdout, p.stdout
    assert summary(p) == ((len(MIGRATIONS), 0), (len(SCHEMA_FILES), 0)), p.stdout
    assert schema_applied(p) == SCHEMA_FILES, p.stdout
    p = env.migrate(url)
    assert "0 applied, %d already up to date" % len(MIGRATIONS) in p.stdout, p.stdout
    assert summary(p) == ((0, len(MIGRATIONS)), (0, len(SCHEMA_FILES))), p.stdout
    rows = env.psql("SELECT version, name, length(checksum) FROM schema_migrations ORDER BY version", url)
    assert [r[1] for r in rows] == MIGRATIONS and all(r[2] == "64" for r in rows), rows
    rows = env.psql("SELECT name, checksum FROM schema_files ORDER BY name", url)
    assert rows == [[f, sha256_of(os.path.join(SCHEMA_DIR, f))] for f in SCHEMA_FILES], rows

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
    # the schema files too: the runner that applied the migrations applied
    # them, the others found them up to date
    assert sum(summary(p)[1][0] for p in results) == len(SCHEMA_FILES), [p.stdout for p in results]


# -- schema/: repeatable files for functions and views -------------------------

def strip_sql_comments(text):
    return re.sub(r"--[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


DEFINES = re.compile(r"\bCREATE\s+OR\s+REPLACE\s+(FUNCTION|PROCEDURE|VIEW)\s+(?:public\.)?\"?([a-z_][a-z0-9_]*)", re.I)


def schema_definitions(folder=SCHEMA_DIR):
    """{name: file} of the functions (and procedures) and of the views the
    schema files define."""
    funcs, views = {}, {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".sql"):
            for kind, name in DEFINES.findall(strip_sql_comments(open(os.path.join(folder, f)).read())):
                (views if kind.upper() == "VIEW" else funcs)[name.lower()] = f
    return funcs, views


def a_function_body(folder):
    """(file, function, offset just inside its body) of post_contribution,
    else of the first function of the schema files."""
    first = None
    for f in SCHEMA_FILES:
        text = open(os.path.join(folder, f)).read()
        for m in re.finditer(r"^CREATE OR REPLACE FUNCTION (\w+)\s*\(.*?(\$\w*\$)", text, re.M | re.S):
            if m.group(1) == "post_contribution":
                return f, m.group(1), m.end()
            first = first or (f, m.group(1), m.end())
    assert first, "no function in schema/"
    return first


def test_schema_file_change_applies_that_file(env):
    """A function body changed in its schema file: chamad migrate applies that
    file and only that one; again, nothing; the new body is the live one."""
    url = env.fresh_db("chamasmart_schema_change")
    env.migrate(url)
    before = schema_log(env, url)
    with tempfile.TemporaryDirectory() as d:
        copy_schema(d)
        fname, fn, at = a_function_body(d)
        path = os.path.join(d, fname)
        text = open(path).read()
        marker = "-- body changed by test_schema_file_change_applies_that_file"
        with open(path, "w") as f:
            f.write(text[:at] + "\n" + marker + text[at:])
        p = env.migrate(url, schema_dir=d)
        assert schema_applied(p) == [fname], p.stdout
        assert "applied schema file %s (changed)" % fname in p.stdout, p.stdout
        assert summary(p) == ((0, len(MIGRATIONS)), (1, len(SCHEMA_FILES) - 1)), p.stdout
        assert env.psql("SELECT bool_and(strpos(pg_get_functiondef(oid), '%s') > 0) FROM pg_proc "
                        "WHERE proname = '%s'" % (marker, fn), url) == [["t"]]
        after = schema_log(env, url)
        assert after[fname][0] == sha256_of(path) != before[fname][0], (before[fname], after[fname])
        assert {k: v for k, v in after.items() if k != fname} == {k: v for k, v in before.items() if k != fname}
        p = env.migrate(url, schema_dir=d)
        assert summary(p) == ((0, len(MIGRATIONS)), (0, len(SCHEMA_FILES))), p.stdout
    # the file as it is in the tree again: that file again, the old body back
    p = env.migrate(url)
    assert schema_applied(p) == [fname], p.stdout
    assert env.psql("SELECT bool_or(strpos(pg_get_functiondef(oid), '%s') > 0) FROM pg_proc "
                    "WHERE proname = '%s'" % (marker, fn), url) == [["f"]]


def test_schema_files_run_again_after_a_migration(env):
    """A migration may drop a view (one in the way of an ALTER COLUMN TYPE,
    say): every schema file runs again after a run that applied a
    migration, so the view is back though its file did not change."""
    url = env.fresh_db("chamasmart_schema_after")
    env.migrate(url)
    _, views = schema_definitions()
    assert views, "no view in schema/"
    view = sorted(views)[0]
    with tempfile.TemporaryDirectory() as d:
        copy_migrations(d)
        with open(os.path.join(d, "900_drop_a_view.sql"), "w") as f:
            f.write("DROP VIEW %s CASCADE;\n" % view)
        p = env.migrate(url, migrations_dir=d)
    assert summary(p) == ((1, len(MIGRATIONS)), (len(SCHEMA_FILES), 0)), p.stdout
    assert "applied schema file %s (again, after new migrations)" % views[view] in p.stdout, p.stdout
    assert env.psql("SELECT count(*) FROM pg_views WHERE schemaname = 'public' AND viewname = ANY('{%s}')"
                    % ",".join(views), url) == [[str(len(views))]]


def test_schema_file_failure_rolls_back(env):
    """A schema file that fails is rolled back whole, named with the error,
    migrate exits non-zero, and the files after it are not applied."""
    assert len(SCHEMA_FILES) >= 2
    url = env.fresh_db("chamasmart_schema_broken")
    env.migrate(url)
    before = schema_log(env, url)
    broken, later = SCHEMA_FILES[0], SCHEMA_FILES[-1]
    with tempfile.TemporaryDirectory() as d:
        copy_schema(d)
        good = open(os.path.join(d, broken)).read()
        with open(os.path.join(d, broken), "a") as f:
            f.write("\nCREATE OR REPLACE FUNCTION half_done() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
                    "SELECT no_such_function();\n")
        with open(os.path.join(d, later), "a") as f:
            f.write("\n-- changed too\n")
        p = env.migrate(url, check=False, schema_dir=d)
        assert p.returncode != 0, p.stdout + p.stderr
        assert "%s/%s: ERROR:" % (d, broken) in p.stderr and "no_such_function" in p.stderr, p.stderr
        assert "schema file %s/%s was rolled back" % (d, broken) in p.stderr, p.stderr
        assert schema_applied(p) == [], p.stdout
        assert env.psql("SELECT to_regproc('half_done') IS NULL", url) == [["t"]]
        assert schema_log(env, url) == before
        # once fixed, it and the later one apply
        with open(os.path.join(d, broken), "w") as f:
            f.write(good + "\n-- fixed\n")
        p = env.migrate(url, schema_dir=d)
        assert schema_applied(p) == [broken, later], p.stdout


def test_migrate_refuses_an_edited_migration(env):
    """An applied migration that was edited is refused with its name, and
    nothing else is applied: no new migration, no changed schema file."""
    url = env.fresh_db("chamasmart_migrate_edited")
    env.migrate(url)
    before = schema_log(env, url)
    edited = MIGRATIONS[3]
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as sd:
        copy_migrations(d)
        copy_schema(sd)
        with open(os.path.join(d, edited), "a") as f:
            f.write("\n-- fixed a typo in a comment\n")
        with open(os.path.join(d, "900_new.sql"), "w") as f:
            f.write("CREATE TABLE not_applied (id int);\n")
        with open(os.path.join(sd, SCHEMA_FILES[0]), "a") as f:
            f.write("\n-- changed\n")
        p = env.migrate(url, check=False, migrations_dir=d, schema_dir=sd)
    assert p.returncode != 0, p.stdout
    assert "migrate: %s/%s was edited after it was applied" % (d, edited) in p.stderr, p.stderr
    assert "write a new migration instead" in p.stderr, p.stderr
    assert "applied" not in p.stdout, p.stdout
    assert env.psql("SELECT to_regclass('not_applied') IS NULL, count(*) FROM schema_migrations", url) == \
        [["t", str(len(MIGRATIONS))]]
    assert schema_log(env, url) == before


# The release before schema/: a database it created upgrades with one
# chamad migrate to exactly what a fresh install gets.
RELEASE = "b272346"


def git(*args):
    return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True)


def release_file(path):
    p = git("cat-file", "blob", "%s:%s" % (RELEASE, path))
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def schema_dump(url):
    p = subprocess.run(["pg_dump", "--schema-only", url], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    db = url.rsplit("/", 1)[1]
    # \restrict and \unrestrict carry a random key; comments may name the
    # database
    return [line for line in p.stdout.splitlines()
            if not line.startswith(("\\restrict", "\\unrestrict")) and not (line.startswith("--") and db in line)]


def test_upgrade_from_release_matches_a_fresh_install(env):
    p = git("cat-file", "-e", RELEASE + "^{commit}")
    # never a silent skip: without that commit this test cannot hold its rule
    assert p.returncode == 0, ("commit %s (the release before schema/) is not in this clone; the upgrade test "
                               "needs it (a shallow clone? git fetch --unshallow): %s" % (RELEASE, p.stderr.decode()))
    names = [os.path.basename(n) for n in git("ls-tree", "--name-only", RELEASE, "migrations/").stdout.decode().split()]
    names = sorted(n for n in names if re.match(r"^\d{3}_[a-z0-9_]+\.sql$", n))
    assert names and set(names) <= set(MIGRATIONS), names
    old, new = env.fresh_db("chamasmart_upgrade_old"), env.fresh_db("chamasmart_upgrade_new")
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as no_schema:
        for n in names:
            with open(os.path.join(d, n), "wb") as f:
                f.write(release_file("migrations/" + n))
        # that release's chamad migrate: its migrations, no schema/ step, and
        # only schema_migrations for its records
        p = env.migrate(old, migrations_dir=d, schema_dir=no_schema)
        assert summary(p)[0] == (len(names), 0), p.stdout
        env.psql("DROP TABLE schema_files", old)
        seed = os.path.join(d, "demo_seed.sql")
        with open(seed, "wb") as f:
            f.write(release_file("scripts/demo_seed.sql"))
        # with that release's demo rows in it, as a live database would have
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", old, "-f", seed], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    # one chamad migrate
    p = env.migrate(old)
    assert summary(p) == ((len(MIGRATIONS) - len(names), len(names)), (len(SCHEMA_FILES), 0)), p.stdout
    env.migrate(new)
    a, b = schema_dump(old), schema_dump(new)
    assert a == b, "upgraded (-) and fresh (+) schemas differ:\n" + "\n".join(
        list(difflib.unified_diff(a, b, "upgraded", "fresh", lineterm=""))[:200])
    for sql in ("SELECT version, name, checksum FROM schema_migrations ORDER BY version",
                "SELECT name, checksum FROM schema_files ORDER BY name"):
        assert env.psql(sql, old) == env.psql(sql, new), sql


def migration_violations(name, text, schema_functions):
    """Why a migration numbered 017 or later breaks the rule that functions
    and views live in schema/ and that no migration calls one of them."""
    code = strip_sql_comments(text)
    bad = []
    if re.search(r"\bCREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\b", code, re.I):
        bad.append("%s creates a function: put it in schema/" % name)
    if re.search(r"\bCREATE\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+)?(RECURSIVE\s+)?VIEW\b", code, re.I):
        bad.append("%s creates a view: put it in schema/" % name)
    for m in re.finditer(r"\bCREATE\s+(OR\s+REPLACE\s+)?(CONSTRAINT\s+)?TRIGGER\b[^;]*?\bEXECUTE\s+"
                         r"(?:FUNCTION|PROCEDURE)\s+(?:public\.)?(\w+)", code, re.I | re.S):
        if m.group(3).lower() in schema_functions:
            bad.append("%s binds a trigger to %s: bind it in its schema file (CREATE OR REPLACE TRIGGER)"
                       % (name, m.group(3)))
    for fn in sorted(schema_functions):
        if re.search(r"\b%s\s*\(" % fn, code, re.I) or re.search(r"\bFUNCTION\s+(?:public\.)?%s\b" % fn, code, re.I):
            bad.append("%s calls or names %s(), a schema function" % (name, fn))
    return bad


def db_functions_and_views(env, url):
    """The names of the functions (extensions' left out) and of the views of
    the public schema."""
    funcs = env.psql("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
                     "AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass "
                     "AND e.objid = p.oid AND e.deptype = 'e')", url)
    views = env.psql("SELECT viewname FROM pg_views WHERE schemaname = 'public'", url)
    return {r[0] for r in funcs}, {r[0] for r in views}


def test_functions_and_views_live_in_schema(env):
    """Every function and view of a fresh database is defined in a schema
    file, and no migration from 017 on defines one or calls a schema
    function (its meaning would change whenever the function does)."""
    funcs, views = schema_definitions()
    assert funcs and views
    # a file the runner would ignore is a file that is never applied
    assert [f for f in SCHEMA_FILES if not re.match(r"^\d{2}_[a-z0-9_]+\.sql$", f)] == []
    url = env.fresh_db("chamasmart_schema_defs")
    with tempfile.TemporaryDirectory() as d:
        copy_migrations(d)
        env.migrate(url)
        fdb, vdb = db_functions_and_views(env, url)
        assert sorted(fdb - set(funcs)) == [], "functions not defined in schema/: %s" % sorted(fdb - set(funcs))
        assert sorted(vdb - set(views)) == [], "views not defined in schema/: %s" % sorted(vdb - set(views))
        assert sorted(set(funcs) - fdb) == [] and sorted(set(views) - vdb) == []
        # the check sees a function a migration adds
        with open(os.path.join(d, "900_stray.sql"), "w") as f:
            f.write("CREATE FUNCTION stray_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
                    "CREATE VIEW stray_view AS SELECT 1 AS one;\n")
        env.migrate(url, migrations_dir=d)
        fdb, vdb = db_functions_and_views(env, url)
        assert fdb - set(funcs) == {"stray_fn"} and vdb - set(views) == {"stray_view"}, (fdb, vdb)

    bad = []
    for m in MIGRATIONS:
        if int(m[:3]) >= 17:
            bad += migration_violations(m, open(os.path.join(ROOT, "migrations", m)).read(), set(funcs))
    assert bad == [], "\n".join(bad)
    # the check itself, on migrations that break the rule and one that keeps it
    fn = "post_contribution" if "post_contribution" in funcs else sorted(funcs)[0]
    for text in ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
                 "create or replace view v as select 1;",
                 "UPDATE t SET x = 1 WHERE %s (1) IS NULL;" % fn,
                 "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION %s();" % fn,
                 "DROP FUNCTION %s;" % fn):
        assert migration_violations("900_x.sql", text, set(funcs)), text
    assert migration_violations("900_x.sql", "-- %s() lives in schema/\nCREATE TABLE t (%s_at date);\n"
                                "CREATE MATERIALIZED VIEW mv AS SELECT 1;\nDROP VIEW %s;" % (fn, fn, sorted(views)[0]),
                                set(funcs)) == []


def manifest():
    """{file: SHA-256} of migrations/SHA256SUMS (sha256sum's format)."""
    entries = {}
    with open(os.path.join(ROOT, "migrations", "SHA256SUMS")) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]{64})  (\d{3}_[a-z0-9_]+\.sql)$", line.rstrip("\n"))
            assert m, "migrations/SHA256SUMS: not a sha256sum line: %r" % line
            assert m.group(2) not in entries, "migrations/SHA256SUMS lists %s twice" % m.group(2)
            entries[m.group(2)] = m.group(1)
    return entries


def manifest_mismatches(folder, entries):
    bad = []
    for name, digest in sorted(entries.items()):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            bad.append("%s is in migrations/SHA256SUMS but not in migrations/" % name)
        elif sha256_of(path) != digest:
            bad.append("%s was edited after it was released (SHA-256 %s, released %s): write a new migration"
                       % (name, sha256_of(path)[:12], digest[:12]))
    return bad


def test_released_migrations_are_never_edited(env):
    """migrations/SHA256SUMS holds the checksum of every released migration:
    an edit is caught here, before any database refuses it."""
    entries = manifest()
    released = [f for f in MIGRATIONS if int(f[:3]) <= 16]
    assert [f for f in released if f not in entries] == [], "not in migrations/SHA256SUMS"
    bad = manifest_mismatches(os.path.join(ROOT, "migrations"), entries)
    assert bad == [], "\n".join(bad)
    # the runner records the same checksums
    rows = env.psql("SELECT name, checksum FROM schema_migrations", env.db_url)
    assert [r for r in rows if r[0] in entries and entries[r[0]] != r[1]] == [] and len(rows) >= len(released)
    # and the check sees an edit
    with tempfile.TemporaryDirectory() as d:
        copy_migrations(d)
        with open(os.path.join(d, released[0]), "a") as f:
            f.write("\n")
        assert manifest_mismatches(d, entries) == [
            "%s was edited after it was released (SHA-256 %s, released %s): write a new migration"
            % (released[0], sha256_of(os.path.join(d, released[0]))[:12], entries[released[0]][:12])]


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
