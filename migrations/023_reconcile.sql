-- 023_reconcile: the books against M-Pesa's own word.
--
--   reconcile_runs             one comparison of a period: requested by the
--                              daily job or by `chamad reconcile`, run by
--                              any daemon with M-Pesa configured (a claimed
--                              row under a lease), finished done or failed
--   reconcile_statement_lines  the organisation's statement for the run
--                              (Pull Transactions), as M-Pesa listed it
--   reconcile_items            each difference the run found, with what was
--                              done about it
-- The comparison itself, the claim and the offers to suspense are in
-- schema/95_reconcile.sql.

CREATE TABLE reconcile_runs (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin                text NOT NULL CHECK (origin IN ('job', 'cli')),
    -- the daemon (host:pid:random) whose job asked, or the CLI's user@host
    requested_by          text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 120),
    requested_at          timestamptz NOT NULL DEFAULT now(),
    -- the period compared: journal entries dated [period_from, period_to)
    period_from           timestamptz NOT NULL,
    period_to             timestamptz NOT NULL,
    -- the zone the statement's local times and the messages' dates are in
    -- ([ussd] timezone of whoever asked)
    time_zone             text NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    status                text NOT NULL DEFAULT 'requested'
                          CHECK (status IN ('requested', 'running', 'done', 'failed')),
    claimed_by            text CHECK (length(claimed_by) <= 120),
    lease_until           timestamptz,
    attempts              integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- statement lines recorded; NULL until the whole statement is in
    statement_lines       integer CHECK (statement_lines >= 0),
    -- the Account Balance query: our OriginatorConversationID, and what
    -- Daraja's acknowledgement called it
    balance_originator    text CHECK (length(balance_originator) <= 100),
    balance_ack_originator text CHECK (length(balance_ack_originator) <= 100),
    balance_conversation  text CHECK (length(balance_conversation) <= 100),
    balance_asked_at      timestamptz,
    balance_state         text NOT NULL DEFAULT 'unasked'
                          CHECK (balance_state IN ('unasked', 'asked', 'reported', 'unknown')),
    balance_reported_cents bigint CHECK (balance_reported_cents >= 0),
    balance_detail        text CHECK (length(balance_detail) <= 1000),
    -- the sum of every chama's mpesa_float account when the run compared
    ledger_float_cents    bigint CHECK (ledger_float_cents >= 0),
    differences           integer CHECK (differences >= 0),
    new_differences       integer CHECK (new_differences >= 0),
    error                 text CHECK (length(error) <= 500),
    finished_at           timestamptz,
    CONSTRAINT reconcile_runs_period CHECK (period_to > period_from),
    CONSTRAINT reconcile_runs_reported CHECK ((balance_state = 'reported') = (balance_reported_cents IS NOT NULL))
);
COMMENT ON TABLE reconcile_runs IS 'One reconciliation of a period: the statement and the Account Balance against the journal. Claimed like every sent thing (claimed_by, lease_until); the job asks once per period.';
-- the daily job asks once per period, whichever daemon asks first
CREATE UNIQUE INDEX reconcile_runs_job_period_key ON reconcile_runs (period_from, period_to) WHERE origin = 'job';
CREATE INDEX reconcile_runs_open_idx ON reconcile_runs (id) WHERE status IN ('requested', 'running');
CREATE INDEX reconcile_runs_balance_idx ON reconcile_runs (balance_originator) WHERE status = 'running';

CREATE TABLE reconcile_statement_lines (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           bigint NOT NULL REFERENCES reconcile_runs (id) ON DELETE RESTRICT,
    -- the line's place in the statement (OffSetValue + its index)
    seq              integer NOT NULL CHECK (seq >= 0),
    transaction_id   text NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 40),
    trx_date_text    text CHECK (length(trx_date_text) <= 40),
    -- trx_date_text read in the run's time zone; NULL when unreadable
    trx_at           timestamptz,
    msisdn           text CHECK (length(msisdn) <= 80),
    transaction_type text CHECK (length(transaction_type) <= 80),
    bill_ref         text CHECK (length(bill_ref) <= 100),
    -- NULL: not whole shillings, or absent
    amount_cents     bigint CHECK (amount_cents >= 0),
    CONSTRAINT reconcile_statement_lines_seq_key UNIQUE (run_id, seq)
);
-- a receipt M-Pesa listed in any run's statement is M-Pesa's (an entry the
-- run posts itself, dated after its period, is found in an earlier statement)
CREATE INDEX reconcile_statement_lines_receipt_idx ON reconcile_statement_lines (transaction_id);

CREATE TABLE reconcile_items (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES reconcile_runs (id) ON DELETE RESTRICT,
    kind         text NOT NULL CHECK (kind IN ('float_mismatch', 'balance_unknown', 'receipt_missing_in_books',
                                               'entry_missing_in_statement', 'receipt_duplicated')),
    -- the same difference found again by a later run has the same key
    diff_key     text NOT NULL CHECK (length(diff_key) BETWEEN 1 AND 200),
    is_new       boolean NOT NULL,
    chama_id     bigint REFERENCES chamas (id) ON DELETE RESTRICT,
    receipt      text CHECK (length(receipt) <= 40),
    entry_id     bigint REFERENCES journal_entries (id) ON DELETE RESTRICT,
    amount_cents bigint CHECK (amount_cents >= 0),
    details      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    -- open: reported; offered: posted to the chama's suspense for its
    -- officials to allocate (entry_id is that posting); handled: an
    -- operator or official dealt with it
    handled      text NOT NULL DEFAULT 'open' CHECK (handled IN ('open', 'offered', 'handled')),
    handled_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reconcile_items_once UNIQUE (run_id, diff_key)
);
COMMENT ON TABLE reconcile_items IS 'Differences between the books and M-Pesa found by a reconcile run; reported to operators and, when they name a chama, to its officials.';
CREATE INDEX reconcile_items_diff_key_idx ON reconcile_items (diff_key);
CREATE INDEX reconcile_items_chama_id_idx ON reconcile_items (chama_id);
CREATE INDEX reconcile_items_entry_id_idx ON reconcile_items (entry_id);

-- A receipt's journal entry is found through its financial audit row (every
-- posting has exactly one, written by ledger_post, naming the entry in
-- details.journal_entry_id and the receipt in external_reference): the
-- lookups both ways.
CREATE INDEX financial_audit_logs_external_reference_idx ON financial_audit_logs (external_reference)
    WHERE external_reference IS NOT NULL;
CREATE INDEX financial_audit_logs_entry_idx ON financial_audit_logs (((details ->> 'journal_entry_id')));
-- the entries of a period, across chamas (created_at follows insertion
-- closely: a BRIN index costs the postings almost nothing)
CREATE INDEX journal_entries_created_at_brin ON journal_entries USING brin (created_at);
