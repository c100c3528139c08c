-- 003_contributions_loans: money in (contributions), loans, their schedules,
-- repayments and guarantors.  All foreign keys RESTRICT: history stays.

CREATE TABLE contributions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id            bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    purpose             text NOT NULL CHECK (purpose IN ('savings', 'welfare', 'rosca', 'shares', 'fine')),
    method              text NOT NULL CHECK (method IN ('mpesa', 'cash', 'bank')),
    external_reference  text CHECK (length(btrim(external_reference)) BETWEEN 1 AND 100),
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'failed', 'reversed')),
    contributed_at      timestamptz NOT NULL DEFAULT now(),
    confirmed_at        timestamptz,
    reversed_at         timestamptz,
    reversal_reason     text,
    notes               text,
    rosca_cycle_id      bigint REFERENCES rosca_cycles (id) ON DELETE RESTRICT,
    asca_cycle_id       bigint REFERENCES asca_cycles (id) ON DELETE RESTRICT,
    recorded_by_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- money that was received is corrected by a reversal, never hidden
    CONSTRAINT contributions_confirmed_not_deleted CHECK (deleted_at IS NULL OR status <> 'confirmed')
);
COMMENT ON COLUMN contributions.external_reference IS 'M-Pesa receipt / bank reference; unique when present, so a replayed callback cannot record money twice.';
CREATE UNIQUE INDEX contributions_external_reference_key ON contributions (external_reference)
    WHERE external_reference IS NOT NULL;
-- hot lookup: one member's contributions in one chama over a date range
CREATE INDEX contributions_member_history_idx ON contributions (chama_id, user_id, contributed_at DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX contributions_chama_id_idx ON contributions (chama_id, contributed_at DESC);
CREATE INDEX contributions_user_id_idx ON contributions (user_id, contributed_at DESC);
CREATE INDEX contributions_recorded_by_user_id_idx ON contributions (recorded_by_user_id);
CREATE INDEX contributions_rosca_cycle_id_idx ON contributions (rosca_cycle_id);
CREATE INDEX contributions_asca_cycle_id_idx ON contributions (asca_cycle_id);
CREATE INDEX contributions_pending_idx ON contributions (created_at) WHERE status = 'pending';
CREATE TRIGGER contributions_set_updated_at BEFORE UPDATE ON contributions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE loans (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id               bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id                bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    asca_cycle_id          bigint REFERENCES asca_cycles (id) ON DELETE RESTRICT,
    purpose                text,
    principal_cents        bigint NOT NULL CHECK (principal_cents > 0),
    -- 1000 bp = 10 %; the rate applies per interest_rate_period
    interest_rate_bp       integer NOT NULL CHECK (interest_rate_bp BETWEEN 0 AND 100000),
    interest_rate_period   text NOT NULL DEFAULT 'month' CHECK (interest_rate_period IN ('month', 'year', 'term')),
    interest_method        text NOT NULL CHECK (interest_method IN ('flat', 'reducing_balance', 'reducing_equal_principal')),
    term_periods           integer NOT NULL CHECK (term_periods BETWEEN 1 AND 600),
    repayment_frequency    text NOT NULL CHECK (repayment_frequency IN ('weekly', 'biweekly', 'monthly', 'lump_sum')),
    status                 text NOT NULL DEFAULT 'applied'
                           CHECK (status IN ('applied', 'under_review', 'approved', 'rejected', 'disbursed', 'active',
                                             'closed', 'defaulted', 'written_off', 'cancelled')),
    amount_disbursed_cents bigint NOT NULL DEFAULT 0 CHECK (amount_disbursed_cents >= 0),
    total_interest_cents   bigint NOT NULL DEFAULT 0 CHECK (total_interest_cents >= 0),
    penalties_cents        bigint NOT NULL DEFAULT 0 CHECK (penalties_cents >= 0),
    amount_repaid_cents    bigint NOT NULL DEFAULT 0 CHECK (amount_repaid_cents >= 0),
    outstanding_balance_cents bigint GENERATED ALWAYS AS
                           (amount_disbursed_cents + total_interest_cents + penalties_cents - amount_repaid_cents) STORED
                           CONSTRAINT loans_no_overpayment CHECK (outstanding_balance_cents >= 0),
    approved_by_user_id    bigint REFERENCES users (id) ON DELETE RESTRICT,
    disbursed_by_user_id   bigint REFERENCES users (id) ON DELETE RESTRICT,
    applied_at             timestamptz NOT NULL DEFAULT now(),
    reviewed_at            timestamptz,
    approved_at            timestamptz,
    rejected_at            timestamptz,
    disbursed_at           timestamptz,
    first_due_date         date,
    maturity_date          date CHECK (maturity_date >= first_due_date),
    closed_at              timestamptz,
    defaulted_at           timestamptz,
    written_off_at         timestamptz,
    cancelled_at           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT loans_disbursed_within_principal CHECK (amount_disbursed_cents <= principal_cents),
    -- nothing moves before disbursement
    CONSTRAINT loans_no_money_before_disbursal CHECK (
        status NOT IN ('applied', 'under_review', 'approved', 'rejected', 'cancelled')
        OR (amount_disbursed_cents = 0 AND amount_repaid_cents = 0 AND penalties_cents = 0)),
    CONSTRAINT loans_disbursed_has_money CHECK (
        status NOT IN ('disbursed', 'active', 'closed', 'defaulted', 'written_off') OR amount_disbursed_cents > 0),
    -- maker-checker: a borrower never approves their own loan
    CONSTRAINT loans_not_self_approved CHECK (approved_by_user_id <> user_id)
);
COMMENT ON COLUMN loans.outstanding_balance_cents IS 'disbursed + interest + penalties - repaid; set total_interest_cents at disbursement.';
CREATE INDEX loans_chama_id_idx ON loans (chama_id, status);
CREATE INDEX loans_user_id_idx ON loans (user_id, status);
CREATE INDEX loans_asca_cycle_id_idx ON loans (asca_cycle_id);
CREATE INDEX loans_approved_by_user_id_idx ON loans (approved_by_user_id);
CREATE INDEX loans_disbursed_by_user_id_idx ON loans (disbursed_by_user_id);
CREATE INDEX loans_open_idx ON loans (chama_id, user_id) WHERE status IN ('disbursed', 'active', 'defaulted');
CREATE TRIGGER loans_set_updated_at BEFORE UPDATE ON loans
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE loan_schedules (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id              bigint NOT NULL REFERENCES loans (id) ON DELETE RESTRICT,
    installment_no       integer NOT NULL CHECK (installment_no > 0),
    due_date             date NOT NULL,
    principal_due_cents  bigint NOT NULL DEFAULT 0 CHECK (principal_due_cents >= 0),
    interest_due_cents   bigint NOT NULL DEFAULT 0 CHECK (interest_due_cents >= 0),
    penalty_due_cents    bigint NOT NULL DEFAULT 0 CHECK (penalty_due_cents >= 0),
    principal_paid_cents bigint NOT NULL DEFAULT 0 CHECK (principal_paid_cents >= 0),
    interest_paid_cents  bigint NOT NULL DEFAULT 0 CHECK (interest_paid_cents >= 0),
    penalty_paid_cents   bigint NOT NULL DEFAULT 0 CHECK (penalty_paid_cents >= 0),
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'partially_paid', 'paid', 'overdue', 'waived')),
    paid_at              timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT loan_schedules_loan_installment_key UNIQUE (loan_id, installment_no),
    CONSTRAINT loan_schedules_paid_within_due CHECK (principal_paid_cents <= principal_due_cents
        AND interest_paid_cents <= interest_due_cents AND penalty_paid_cents <= penalty_due_cents)
);
CREATE INDEX loan_schedules_due_idx ON loan_schedules (due_date) WHERE status IN ('pending', 'partially_paid', 'overdue');
CREATE TRIGGER loan_schedules_set_updated_at BEFORE UPDATE ON loan_schedules
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE loan_repayments (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id             bigint NOT NULL REFERENCES loans (id) ON DELETE RESTRICT,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    principal_cents     bigint NOT NULL DEFAULT 0 CHECK (principal_cents >= 0),
    interest_cents      bigint NOT NULL DEFAULT 0 CHECK (interest_cents >= 0),
    penalty_cents       bigint NOT NULL DEFAULT 0 CHECK (penalty_cents >= 0),
    method              text NOT NULL CHECK (method IN ('mpesa', 'cash', 'bank', 'savings_offset', 'guarantor_call')),
    external_reference  text CHECK (length(btrim(external_reference)) BETWEEN 1 AND 100),
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'failed', 'reversed')),
    paid_at             timestamptz NOT NULL DEFAULT now(),
    confirmed_at        timestamptz,
    reversed_at         timestamptz,
    recorded_by_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT loan_repayments_split_check CHECK (principal_cents + interest_cents + penalty_cents = amount_cents)
);
CREATE UNIQUE INDEX loan_repayments_external_reference_key ON loan_repayments (external_reference)
    WHERE external_reference IS NOT NULL;
CREATE INDEX loan_repayments_loan_id_idx ON loan_repayments (loan_id, paid_at);
CREATE INDEX loan_repayments_user_id_idx ON loan_repayments (user_id);
CREATE INDEX loan_repayments_recorded_by_user_id_idx ON loan_repayments (recorded_by_user_id);
CREATE TRIGGER loan_repayments_set_updated_at BEFORE UPDATE ON loan_repayments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE loan_guarantors (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id           bigint NOT NULL REFERENCES loans (id) ON DELETE RESTRICT,
    guarantor_user_id bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    pledged_cents     bigint NOT NULL CHECK (pledged_cents > 0),
    released_cents    bigint NOT NULL DEFAULT 0 CHECK (released_cents >= 0),
    called_cents      bigint NOT NULL DEFAULT 0 CHECK (called_cents >= 0),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'accepted', 'declined', 'released', 'called')),
    responded_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT loan_guarantors_loan_guarantor_key UNIQUE (loan_id, guarantor_user_id),
    CONSTRAINT loan_guarantors_within_pledge CHECK (released_cents + called_cents <= pledged_cents)
);
CREATE INDEX loan_guarantors_guarantor_user_id_idx ON loan_guarantors (guarantor_user_id, status);
CREATE TRIGGER loan_guarantors_set_updated_at BEFORE UPDATE ON loan_guarantors
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
