-- 024_loans: the life of a chama loan on the tables of 003, which no code
-- wrote until now.  The functions are in schema/71_loans.sql (apply,
-- limits, the lifecycle), 72_loan_guarantors.sql, 73_loan_approvals.sql
-- (approval, disbursement, pledges called, write-off), 74_loan_repay.sql
-- (allocation, reversal), 75_loan_penalties.sql (the daily job) and
-- 76_loan_views.sql (what members see).
--
--   applied      --every pledge the product needs accepted--> (advance)
--   (advance)    --the chama's free pool covers it--> under_review (approval open)
--                --the pool is short--> queued (first come, first served)
--   queued       --the pool covers the first in line--> under_review
--   under_review --approved (N officials, never the borrower or a guarantor)--> approved
--                --rejected / expired--> rejected
--   approved     --the payout was paid (B2C result, status query, cash)--> active
--                  (schedule dates fixed from that day, interest posted)
--                --the payout failed--> approved (officials may send it again) or cancelled
--   active       --N days overdue (constitution)--> defaulted
--   active | defaulted --paid in full--> closed (every hold released)
--                      --written off by approval--> written_off
--   applied | queued --the borrower cancels, a pledge cannot be found--> cancelled
-- 'disbursed' (003) is never used: a loan is active from the day it is paid.
--
-- The books: the member's loans_receivable account holds what they owe:
--   disbursed  Dr loans_receivable / Cr mpesa_float | cash_on_hand  (payout_post, 'loan_disbursement')
--   at pay-out Dr loans_receivable / Cr interest_income, fee_income ('loan_interest')
--   penalty    Dr loans_receivable / Cr penalty_income               ('loan_penalty')
--   repayment  Dr mpesa_float | cash_on_hand | member_savings / Cr loans_receivable
--              (+ Cr member_savings for an overpayment, kept as the member's credit) ('loan_repayment')
--   reversal   the repayment's lines the other way                   ('loan_repayment_reversal')
--   pledge called Dr member_savings[guarantor] / Cr loans_receivable ('loan_guarantor_call')
--   write-off  Dr expenses / Cr loans_receivable                     ('loan_write_off')
-- so for every member: loans_receivable = the sum of loan_balance_cents of
-- their loans (chamad verify-ledger checks it).

ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check,
    ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN (
        'member_savings', 'member_welfare', 'member_shares', 'loans_receivable',
        'mpesa_float', 'cash_on_hand', 'bank', 'welfare_fund', 'interest_income',
        'penalty_income', 'fines_income', 'fee_income', 'suspense', 'expenses'));

ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_check,
    ADD CONSTRAINT journal_entries_kind_check CHECK (kind IN (
        'contribution', 'contribution_reversal', 'c2b_unmatched', 'suspense_allocation',
        'loan_disbursement', 'loan_repayment', 'payout', 'welfare_claim', 'adjustment',
        'loan_interest', 'loan_penalty', 'loan_repayment_reversal', 'loan_guarantor_call', 'loan_write_off'));

ALTER TABLE loans DROP CONSTRAINT loans_status_check,
    ADD CONSTRAINT loans_status_check CHECK (status IN (
        'applied', 'queued', 'under_review', 'approved', 'rejected', 'disbursed', 'active',
        'closed', 'defaulted', 'written_off', 'cancelled')),
    DROP CONSTRAINT loans_no_money_before_disbursal,
    ADD CONSTRAINT loans_no_money_before_disbursal CHECK (
        status NOT IN ('applied', 'queued', 'under_review', 'approved', 'rejected', 'cancelled')
        OR (amount_disbursed_cents = 0 AND amount_repaid_cents = 0 AND penalties_cents = 0)),
    -- the product as it was when the member applied: its key in the
    -- constitution's loan_products, and every rule the loan lives by
    -- (rate, method, frequency, grace, fee, guarantor rule, penalty rule),
    -- copied so that a later change of the constitution never changes a
    -- loan already made
    ADD COLUMN product_key text CHECK (product_key ~ '^[a-z0-9_]{1,20}$'),
    ADD COLUMN terms jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(terms) = 'object'),
    ADD COLUMN grace_periods integer NOT NULL DEFAULT 0 CHECK (grace_periods BETWEEN 0 AND 600),
    ADD COLUMN grace_kind text CHECK (grace_kind IN ('principal', 'interest_free')),
    -- a processing fee, due with the first instalment (0: none)
    ADD COLUMN fees_cents bigint NOT NULL DEFAULT 0 CHECK (fees_cents >= 0),
    ADD COLUMN fees_paid_cents bigint NOT NULL DEFAULT 0 CHECK (fees_paid_cents >= 0),
    ADD COLUMN written_off_cents bigint NOT NULL DEFAULT 0 CHECK (written_off_cents >= 0),
    -- the application is idempotent by this key (the USSD hop, the SMS)
    ADD COLUMN application_key text CHECK (length(application_key) BETWEEN 1 AND 255),
    ADD COLUMN channel text CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system')),
    ADD COLUMN queued_at timestamptz,
    ADD COLUMN approval_id bigint REFERENCES approvals (id) ON DELETE RESTRICT,
    ADD COLUMN payout_id bigint REFERENCES payouts (id) ON DELETE RESTRICT,
    ADD CONSTRAINT loans_fees_within CHECK (fees_paid_cents <= fees_cents),
    ADD CONSTRAINT loans_grace_kind CHECK ((grace_periods = 0) = (grace_kind IS NULL)),
    ADD CONSTRAINT loans_application_key_key UNIQUE (application_key);
COMMENT ON COLUMN loans.terms IS 'The product as applied for: {"rate_bp","per","method","frequency","grace","grace_kind","fee_cents","guarantors":{...},"penalty":{...}}; fixed for the life of the loan.';
COMMENT ON COLUMN loans.written_off_cents IS 'What a write-off took off the books; loan_balance_cents = outstanding_balance_cents + fees_cents - fees_paid_cents - written_off_cents.';
CREATE INDEX loans_queue_idx ON loans (chama_id, queued_at, id) WHERE status = 'queued';
CREATE INDEX loans_approval_id_idx ON loans (approval_id);
CREATE INDEX loans_payout_id_idx ON loans (payout_id);

ALTER TABLE loan_schedules
    ADD COLUMN fee_due_cents bigint NOT NULL DEFAULT 0 CHECK (fee_due_cents >= 0),
    ADD COLUMN fee_paid_cents bigint NOT NULL DEFAULT 0 CHECK (fee_paid_cents >= 0),
    ADD CONSTRAINT loan_schedules_fee_within CHECK (fee_paid_cents <= fee_due_cents);

-- a pledge is a hold on the guarantor's savings while it is accepted:
-- held = pledged - released - called; the borrower's own cover is a row
-- with guarantor = borrower (accepted at once)
ALTER TABLE loan_guarantors DROP CONSTRAINT loan_guarantors_status_check,
    ADD CONSTRAINT loan_guarantors_status_check CHECK (status IN (
        'pending', 'accepted', 'declined', 'expired', 'cancelled', 'released', 'called')),
    -- the six characters of YES <code> <PIN> (no look-alikes)
    ADD COLUMN code text CHECK (code ~ '^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$'),
    ADD COLUMN requested_at timestamptz,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN channel text CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system'));
CREATE UNIQUE INDEX loan_guarantors_open_code_key ON loan_guarantors (code) WHERE status = 'pending';
CREATE INDEX loan_guarantors_expiry_idx ON loan_guarantors (expires_at) WHERE status = 'pending';

ALTER TABLE loan_repayments DROP CONSTRAINT loan_repayments_split_check,
    ADD COLUMN fee_cents bigint NOT NULL DEFAULT 0 CHECK (fee_cents >= 0),
    -- an overpayment: credited to the member's savings, never dropped
    ADD COLUMN credit_cents bigint NOT NULL DEFAULT 0 CHECK (credit_cents >= 0),
    ADD COLUMN idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    ADD COLUMN channel text CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system')),
    -- what brought the money: mpesa_requests, mpesa_c2b, approvals (savings offset, pledge called)
    ADD COLUMN ref_table text CHECK (length(ref_table) BETWEEN 1 AND 64),
    ADD COLUMN ref_id bigint,
    ADD COLUMN journal_entry_id bigint REFERENCES journal_entries (id) ON DELETE RESTRICT,
    ADD COLUMN reversal_entry_id bigint REFERENCES journal_entries (id) ON DELETE RESTRICT,
    ADD CONSTRAINT loan_repayments_split_check
        CHECK (principal_cents + interest_cents + penalty_cents + fee_cents + credit_cents = amount_cents),
    ADD CONSTRAINT loan_repayments_idempotency_key_key UNIQUE (idempotency_key);
CREATE INDEX loan_repayments_journal_entry_id_idx ON loan_repayments (journal_entry_id);
CREATE INDEX loan_repayments_reversal_entry_id_idx ON loan_repayments (reversal_entry_id);

-- One row per penalty levied: an instalment overdue past its grace gets
-- at most one per penalty period (period_no 1, 2, ... counted from the
-- end of the grace); reversed by a correcting entry, never deleted.
CREATE TABLE loan_penalties (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id          bigint NOT NULL REFERENCES loans (id) ON DELETE RESTRICT,
    schedule_id      bigint NOT NULL REFERENCES loan_schedules (id) ON DELETE RESTRICT,
    period_no        integer NOT NULL CHECK (period_no BETWEEN 1 AND 10000),
    amount_cents     bigint NOT NULL CHECK (amount_cents > 0),
    -- what it was levied on (the overdue amount, for a percent penalty)
    basis_cents      bigint NOT NULL CHECK (basis_cents >= 0),
    levied_on        date NOT NULL,
    journal_entry_id bigint NOT NULL REFERENCES journal_entries (id) ON DELETE RESTRICT,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT loan_penalties_once_per_period UNIQUE (schedule_id, period_no)
);
CREATE INDEX loan_penalties_loan_id_idx ON loan_penalties (loan_id);
CREATE INDEX loan_penalties_journal_entry_id_idx ON loan_penalties (journal_entry_id);

-- How each repayment was spread over the instalments (penalty, fee,
-- interest, principal; oldest instalment first): what a reversal undoes.
CREATE TABLE loan_allocations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repayment_id bigint NOT NULL REFERENCES loan_repayments (id) ON DELETE RESTRICT,
    schedule_id  bigint NOT NULL REFERENCES loan_schedules (id) ON DELETE RESTRICT,
    component    text NOT NULL CHECK (component IN ('penalty', 'fee', 'interest', 'principal')),
    cents        bigint NOT NULL CHECK (cents > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT loan_allocations_key UNIQUE (repayment_id, schedule_id, component)
);
CREATE INDEX loan_allocations_schedule_id_idx ON loan_allocations (schedule_id);

ALTER TABLE approvals DROP CONSTRAINT approvals_kind_check,
    ADD CONSTRAINT approvals_kind_check CHECK (kind IN (
        'payment_reverse', 'payout', 'cash_payout',
        'loan', 'loan_offset', 'loan_call', 'loan_write_off', 'loan_repay_reverse')),
    -- who may not approve besides the maker and the beneficiary (a loan's guarantors)
    ADD COLUMN excluded_user_ids bigint[] NOT NULL DEFAULT '{}';

-- an STK push, or a paybill payment, for a loan
ALTER TABLE mpesa_requests DROP CONSTRAINT mpesa_requests_purpose_check,
    ADD CONSTRAINT mpesa_requests_purpose_check CHECK (purpose IN ('savings', 'welfare', 'shares', 'loan')),
    ADD COLUMN loan_id bigint REFERENCES loans (id) ON DELETE RESTRICT,
    ADD CONSTRAINT mpesa_requests_loan CHECK ((purpose = 'loan') = (loan_id IS NOT NULL));
CREATE INDEX mpesa_requests_loan_id_idx ON mpesa_requests (loan_id);
ALTER TABLE mpesa_c2b DROP CONSTRAINT mpesa_c2b_outcome_check,
    ADD CONSTRAINT mpesa_c2b_outcome_check CHECK (outcome IN ('contribution', 'suspense', 'unassigned', 'loan')),
    ADD COLUMN loan_id bigint REFERENCES loans (id) ON DELETE RESTRICT,
    ADD COLUMN repayment_id bigint REFERENCES loan_repayments (id) ON DELETE RESTRICT,
    ADD CONSTRAINT mpesa_c2b_loan CHECK ((outcome = 'loan') = (loan_id IS NOT NULL));
CREATE INDEX mpesa_c2b_loan_id_idx ON mpesa_c2b (loan_id);
CREATE INDEX mpesa_c2b_repayment_id_idx ON mpesa_c2b (repayment_id);
-- The policy rows (who may do what with loans) come with the menus that
-- offer them, in the migrations after this one.
