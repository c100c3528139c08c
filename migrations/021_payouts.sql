-- 021_payouts: money out.  The payouts table of 004 (never written by any
-- code until now) becomes the one rail every later module pays through:
-- a payout is a row with a lifecycle, sent by B2C as a claimed row, posted
-- to the ledger only when M-Pesa says it was paid.
--
--   requested --approvals (two officials, helper E's approval_open)--> approved
--   approved  --claim (float covers it)--> sending      (attempt + 1, originator_id)
--   approved  --claim (float short, over max)--> failed
--   sending   --Daraja accepted--> sent  | --refused--> failed
--             --no answer, or the daemon died--> unknown
--             --never reached Daraja (no token)--> approved (due again)
--   sent      --result: paid--> paid (posted once) | --result: failed--> failed
--             --no result within [mpesa] b2c_result_timeout_s--> unknown
--   unknown   --Transaction Status: completed--> paid (posted once)
--             --Transaction Status: no such payment--> approved (re-sent with a new originator id)
--             --Transaction Status: failed--> failed
--   requested --rejected or expired--> cancelled
--   cash: requested --approved by a second official--> paid (posted at once)
--
-- "resolved" is a marker, not a state: a payout whose outcome was unknown
-- ends paid, failed or re-sent like any other, and resolved_at/resolution
-- say that the status query decided it (the state always says where the
-- money is).  The transitions are held by payout_move (schema/57_payouts.sql);
-- each is audited by the row's audit trigger (006).
--
-- The phone is the member's registered phone when the payout was asked
-- for, and only ever that: payout_request copies it, nothing else writes it.
-- An OriginatorConversationID is "payout:<id>:<attempt>", so an id of an
-- earlier attempt is recognised as ours without a table of attempts.

ALTER TABLE payouts
    DROP CONSTRAINT payouts_kind_reference,
    DROP CONSTRAINT payouts_kind_check,
    DROP CONSTRAINT payouts_status_check,
    DROP CONSTRAINT payouts_method_check;
DROP INDEX payouts_one_live_per_welfare_claim, payouts_one_live_per_loan, payouts_one_live_per_rosca_member,
    payouts_one_live_per_shareout_member, payouts_in_flight_idx, payouts_approved_by_user_id_idx,
    payouts_idempotency_key_key;
-- what the rows of 004 would mean now (no code wrote any)
UPDATE payouts SET kind = CASE kind WHEN 'rosca' THEN 'rotation' WHEN 'shareout' THEN 'share_out'
                                    WHEN 'loan_disbursement' THEN 'loan' ELSE kind END,
                   status = CASE status WHEN 'pending' THEN 'requested' WHEN 'processing' THEN 'unknown'
                                        WHEN 'completed' THEN 'paid' WHEN 'reversed' THEN 'paid' ELSE status END,
                   method = CASE method WHEN 'bank' THEN 'cash' ELSE method END;
ALTER TABLE payouts
    -- what it pays for is ref_table/ref_id, whatever the module
    DROP COLUMN rosca_cycle_id,
    DROP COLUMN asca_cycle_id,
    DROP COLUMN welfare_claim_id,
    DROP COLUMN loan_id,
    -- several officials approve (approval_votes), not one
    DROP COLUMN approved_by_user_id,
    DROP COLUMN idempotency_key;
ALTER TABLE payouts RENAME COLUMN recorded_by_user_id TO maker_user_id;
ALTER INDEX payouts_recorded_by_user_id_idx RENAME TO payouts_maker_user_id_idx;
ALTER TABLE payouts RENAME COLUMN external_reference TO mpesa_receipt;
ALTER INDEX payouts_external_reference_key RENAME TO payouts_mpesa_receipt_key;
ALTER TABLE payouts RENAME COLUMN failure_reason TO result_desc;
ALTER TABLE payouts
    ADD CONSTRAINT payouts_kind_check CHECK (kind IN ('loan', 'rotation', 'welfare', 'share_out', 'refund')),
    ADD CONSTRAINT payouts_method_check CHECK (method IN ('mpesa', 'cash')),
    ALTER COLUMN status SET DEFAULT 'requested',
    ADD CONSTRAINT payouts_status_check CHECK (status IN ('requested', 'approved', 'sending', 'sent', 'paid', 'failed',
                                                          'unknown', 'cancelled')),
    ADD CONSTRAINT payouts_result_desc_length CHECK (length(result_desc) <= 300),
    ADD COLUMN phone text CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    -- the ledger account debited: the member's side of what is paid
    ADD COLUMN debit_kind text CHECK (debit_kind IN ('member_savings', 'member_shares', 'welfare_fund',
                                                     'loans_receivable')),
    ADD COLUMN ref_table text CHECK (length(ref_table) BETWEEN 1 AND 64),
    ADD COLUMN ref_id bigint,
    ADD COLUMN memo text CHECK (length(memo) <= 100),
    ADD COLUMN channel text CHECK (length(channel) <= 16),
    ADD COLUMN approval_id bigint,
    ADD COLUMN attempt integer NOT NULL DEFAULT 0 CHECK (attempt BETWEEN 0 AND 9),
    ADD COLUMN originator_id text CHECK (originator_id ~ '^payout:[0-9]+:[0-9]+$'),
    ADD COLUMN conversation_id text CHECK (length(conversation_id) <= 64),
    ADD COLUMN result_code bigint,
    ADD COLUMN claimed_by text CHECK (length(claimed_by) <= 64),
    ADD COLUMN lease_until timestamptz,
    -- approved: when it may be claimed; sent: when its result is overdue
    ADD COLUMN next_at timestamptz,
    ADD COLUMN status_query_id bigint,
    ADD COLUMN journal_entry_id bigint REFERENCES journal_entries (id) ON DELETE RESTRICT,
    ADD COLUMN approved_at timestamptz,
    ADD COLUMN sent_at timestamptz,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolution text CHECK (resolution IN ('paid', 'failed', 'not_found', 'unknown')),
    ADD CONSTRAINT payouts_originator_id_key UNIQUE (originator_id),
    ADD CONSTRAINT payouts_journal_entry_key UNIQUE (journal_entry_id),
    -- M-Pesa moves whole shillings
    ADD CONSTRAINT payouts_mpesa_whole_shillings CHECK (method <> 'mpesa' OR amount_cents % 100 = 0),
    -- paid means posted, and only paid is posted
    ADD CONSTRAINT payouts_paid_posted CHECK ((status = 'paid') = (journal_entry_id IS NOT NULL)),
    -- from 021 on every row has these (payout_request writes them)
    ADD CONSTRAINT payouts_requested_fully CHECK (status IN ('paid', 'failed', 'cancelled', 'unknown')
        OR (phone IS NOT NULL AND debit_kind IS NOT NULL));
COMMENT ON TABLE payouts IS 'Money out (B2C or cash), one row per payout with its lifecycle (see migration 021); written only by the functions of schema/57_payouts.sql.';
COMMENT ON COLUMN payouts.phone IS 'The beneficiary''s registered phone when the payout was requested: the only number it is ever sent to.';
COMMENT ON COLUMN payouts.originator_id IS 'Our OriginatorConversationID of the current attempt, payout:<id>:<attempt>.';
COMMENT ON COLUMN payouts.resolution IS 'Set when the Transaction Status query decided an unknown outcome (resolved_at says when).';
-- one live payout for the same thing: a module asking twice gets the first
CREATE UNIQUE INDEX payouts_one_live_per_ref ON payouts (ref_table, ref_id, user_id)
    WHERE ref_table IS NOT NULL AND status NOT IN ('failed', 'cancelled');
-- the claim: approved M-Pesa payouts that are due
CREATE INDEX payouts_due_idx ON payouts (next_at) WHERE status = 'approved' AND method = 'mpesa';
-- the sweeps: sending (lease), sent (result overdue); the float in flight
CREATE INDEX payouts_in_flight_idx ON payouts (chama_id) WHERE status IN ('sending', 'sent', 'unknown');
CREATE INDEX payouts_overdue_idx ON payouts (next_at) WHERE status IN ('sending', 'sent');
CREATE INDEX payouts_approval_id_idx ON payouts (approval_id);

-- Who may ask for a payout (the approvals themselves come from the chama's
-- constitution through approval_open: two distinct officials by default,
-- never the maker nor the beneficiary).
INSERT INTO policy_actions (action, roles, approvals, description) VALUES
    ('money.payout_request', '{treasurer,chairperson}', 2, 'Ask for a payout or refund to a member (M-Pesa or cash)'),
    ('money.payout_list', '{treasurer,chairperson,secretary}', 1, 'See the chama''s payouts and their state');
