-- 022_mpesa_verify: credit only what M-Pesa confirmed to us.
--
-- STK: a success callback is posted only once the STK push query for its
-- CheckoutRequestID agrees.  A query that says otherwise leaves the request
-- 'contradicted' (nothing posted); a success whose amount is past the
-- configured limit is 'flagged' (nothing posted).
--
-- Paybill (C2B): a confirmation is recorded 'unverified' (who it is for is
-- worked out at once: outcome), then verified with the Transaction Status
-- query; only a result whose amount, receipt, shortcode and account agree
-- makes it 'verified' and posts it (the member's contribution, the chama's
-- suspense, or nothing for an unassigned one).  One that disagrees, that
-- M-Pesa does not know, or that never verifies in time is 'flagged', never
-- posted.  Rows from before this migration were posted on receipt: they are
-- 'verified'.
--
-- Every contradiction and flag is an alert row: the officials' SMS is
-- written with it (schema/50_mpesa.sql mpesa_alert), and a daemon logs and
-- counts it once (logged_at).  The functions are in schema/40_money.sql and
-- schema/50_mpesa.sql.

ALTER TABLE mpesa_requests
    DROP CONSTRAINT mpesa_requests_status_check,
    ADD CONSTRAINT mpesa_requests_status_check
        CHECK (status IN ('created', 'pushed', 'push_failed', 'confirmed', 'failed', 'expired', 'mismatch',
                          'unknown', 'contradicted', 'flagged'));
CREATE INDEX mpesa_requests_to_check_idx ON mpesa_requests (completed_at) WHERE status IN ('contradicted', 'flagged');

ALTER TABLE mpesa_c2b
    ADD COLUMN status text NOT NULL DEFAULT 'verified' CHECK (status IN ('unverified', 'verified', 'flagged')),
    -- the shortcode the confirmation named (one of ours: checked before it is recorded)
    ADD COLUMN business_shortcode text CHECK (length(business_shortcode) <= 20),
    -- the receipt SMS's template, sent when it is verified and credited
    ADD COLUMN receipt_template text CHECK (receipt_template ~ '^sms_[a-z0-9_]{1,60}$'),
    ADD COLUMN flag_reason text CHECK (flag_reason IN ('amount', 'receipt', 'shortcode', 'account', 'not_found',
                                                       'unanswered', 'unverified', 'over_limit')),
    ADD COLUMN flag_detail text CHECK (length(flag_detail) <= 300),
    ADD COLUMN status_query_id bigint,
    ADD COLUMN verified_at timestamptz,
    ADD COLUMN flagged_at timestamptz;
ALTER TABLE mpesa_c2b ALTER COLUMN status SET DEFAULT 'unverified';
ALTER TABLE mpesa_c2b ADD CONSTRAINT mpesa_c2b_flag_reason CHECK ((status = 'flagged') = (flag_reason IS NOT NULL));
COMMENT ON COLUMN mpesa_c2b.status IS 'unverified: recorded, not posted, waiting for the Transaction Status result; verified: the result agreed and it was posted as outcome says; flagged: it disagreed, M-Pesa did not know it, or it never verified in time: never posted.';
COMMENT ON COLUMN mpesa_c2b.outcome IS 'Where the money goes once verified: the member''s contribution, the chama''s suspense, or unassigned (no chama).';
CREATE INDEX mpesa_c2b_to_check_idx ON mpesa_c2b (received_at) WHERE status <> 'verified';

CREATE TABLE mpesa_alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('stk_contradicted', 'stk_over_limit', 'c2b_flagged', 'c2b_replay')),
    chama_id    bigint REFERENCES chamas (id) ON DELETE RESTRICT,
    ref_table   text NOT NULL CHECK (ref_table IN ('mpesa_requests', 'mpesa_c2b')),
    ref_id      bigint NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- set by the daemon that wrote the alert's log line and counted it
    logged_at   timestamptz,
    CONSTRAINT mpesa_alerts_once UNIQUE (kind, ref_table, ref_id)
);
COMMENT ON TABLE mpesa_alerts IS 'Operator alerts about M-Pesa money: a callback the query contradicted, a paybill payment that did not verify, a replayed TransID. The officials'' SMS is written with the row; a daemon logs and counts each once.';
CREATE INDEX mpesa_alerts_unlogged_idx ON mpesa_alerts (id) WHERE logged_at IS NULL;
CREATE INDEX mpesa_alerts_chama_id_idx ON mpesa_alerts (chama_id);

INSERT INTO policy_actions (action, roles, description) VALUES
    ('payments.check_view', '{treasurer,chairperson}',
     'See M-Pesa payments not credited yet (unverified, contradicted, flagged): Payments to check');
