-- 004_welfare_payouts: welfare configuration, fund, claims and approvals;
-- payouts (money out) of every kind; the triggers that keep
-- welfare_fund.balance_cents in step with contributions and paid claims.

-- payout_amounts_cents: {"<event_type>": <cents>, ...}; keys are known event
-- types, values positive integers.
CREATE FUNCTION welfare_payouts_are_valid(p jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF jsonb_typeof(p) <> 'object' THEN
        RETURN false;
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(p) LOOP
        IF k NOT IN ('death_member', 'death_spouse', 'death_child', 'death_parent', 'hospitalization',
                     'wedding', 'birth', 'disaster', 'other')
           OR jsonb_typeof(v) <> 'number' OR v::text !~ '^[1-9][0-9]*$' THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

CREATE TABLE welfare_config (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id                  bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    contribution_amount_cents bigint NOT NULL CHECK (contribution_amount_cents > 0),
    contribution_frequency    text NOT NULL DEFAULT 'monthly'
                              CHECK (contribution_frequency IN ('weekly', 'biweekly', 'monthly', 'per_event', 'custom')),
    payout_amounts_cents      jsonb NOT NULL DEFAULT '{}'
                              CONSTRAINT welfare_config_payout_amounts_check CHECK (welfare_payouts_are_valid(payout_amounts_cents)),
    required_approvals        integer NOT NULL DEFAULT 2 CHECK (required_approvals >= 1),
    min_membership_days       integer NOT NULL DEFAULT 0 CHECK (min_membership_days >= 0),
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT welfare_config_chama_key UNIQUE (chama_id)
);
COMMENT ON COLUMN welfare_config.payout_amounts_cents IS 'Fixed payout per event type, e.g. {"death_parent": 5000000, "hospitalization": 3000000}.';
CREATE TRIGGER welfare_config_set_updated_at BEFORE UPDATE ON welfare_config
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE welfare_fund (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id      bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    balance_cents bigint NOT NULL DEFAULT 0 CONSTRAINT welfare_fund_balance_not_negative CHECK (balance_cents >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT welfare_fund_chama_key UNIQUE (chama_id)
);
COMMENT ON TABLE welfare_fund IS 'Cached balance, maintained only by triggers: + confirmed welfare contributions, - paid claims. Do not write balance_cents from the application.';
CREATE TRIGGER welfare_fund_set_updated_at BEFORE UPDATE ON welfare_fund
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE welfare_claims (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id               bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id                bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    event_type             text NOT NULL CHECK (event_type IN ('death_member', 'death_spouse', 'death_child',
                               'death_parent', 'hospitalization', 'wedding', 'birth', 'disaster', 'other')),
    event_date             date NOT NULL,
    beneficiary_name       text,
    description            text,
    amount_requested_cents bigint NOT NULL CHECK (amount_requested_cents > 0),
    amount_paid_cents      bigint NOT NULL DEFAULT 0 CHECK (amount_paid_cents >= 0),
    status                 text NOT NULL DEFAULT 'submitted'
                           CHECK (status IN ('submitted', 'approved', 'rejected', 'paid', 'cancelled')),
    decided_at             timestamptz,
    paid_at                timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT welfare_claims_paid_amount CHECK ((status = 'paid') = (amount_paid_cents > 0)),
    CONSTRAINT welfare_claims_paid_within_request CHECK (amount_paid_cents <= amount_requested_cents)
);
CREATE INDEX welfare_claims_chama_id_idx ON welfare_claims (chama_id, status);
CREATE INDEX welfare_claims_user_id_idx ON welfare_claims (user_id);
CREATE TRIGGER welfare_claims_set_updated_at BEFORE UPDATE ON welfare_claims
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE welfare_claim_approvals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claim_id         bigint NOT NULL REFERENCES welfare_claims (id) ON DELETE RESTRICT,
    approver_user_id bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    decision         text NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT welfare_claim_approvals_claim_approver_key UNIQUE (claim_id, approver_user_id)
);
CREATE INDEX welfare_claim_approvals_approver_user_id_idx ON welfare_claim_approvals (approver_user_id);

-- An approver is never the claimant; new decisions only on open claims.
CREATE FUNCTION welfare_claim_approvals_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    claimant bigint;
    claim_status text;
BEGIN
    SELECT user_id, status INTO claimant, claim_status FROM welfare_claims WHERE id = NEW.claim_id;
    IF claimant = NEW.approver_user_id THEN
        RAISE EXCEPTION 'welfare claim %: the claimant (user %) cannot approve their own claim',
            NEW.claim_id, claimant USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'INSERT' AND claim_status IS DISTINCT FROM 'submitted' THEN
        RAISE EXCEPTION 'welfare claim % is %, not open for decisions', NEW.claim_id, claim_status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER welfare_claim_approvals_check BEFORE INSERT OR UPDATE ON welfare_claim_approvals
    FOR EACH ROW EXECUTE FUNCTION welfare_claim_approvals_check();

-- welfare_fund_apply(chama, delta): adds delta to the chama's fund, creating
-- the row on the first credit.  A debit on a missing fund or below zero fails.
CREATE FUNCTION welfare_fund_apply(p_chama_id bigint, p_delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_delta > 0 THEN
        INSERT INTO welfare_fund AS f (chama_id, balance_cents) VALUES (p_chama_id, p_delta)
        ON CONFLICT (chama_id) DO UPDATE SET balance_cents = f.balance_cents + EXCLUDED.balance_cents;
    ELSIF p_delta < 0 THEN
        UPDATE welfare_fund SET balance_cents = balance_cents + p_delta WHERE chama_id = p_chama_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'chama % has no welfare fund to take % cents from', p_chama_id, -p_delta
                USING ERRCODE = 'check_violation', CONSTRAINT = 'welfare_fund_balance_not_negative';
        END IF;
    END IF;
END
$$;

-- What one row does to its chama's welfare fund while it stands: a
-- confirmed welfare contribution adds its amount, a paid claim takes its
-- paid amount; anything else (pending, failed, reversed, cancelled, other
-- purposes) counts 0.
CREATE FUNCTION welfare_fund_effect(tbl name, r jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN r IS NULL THEN 0
        WHEN tbl = 'contributions' AND r ->> 'purpose' = 'welfare' AND r ->> 'status' = 'confirmed'
            THEN (r ->> 'amount_cents')::bigint
        WHEN tbl = 'welfare_claims' AND r ->> 'status' = 'paid'
            THEN -(r ->> 'amount_paid_cents')::bigint
        ELSE 0
    END
$$;

-- One trigger for both tables: the fund moves by (effect of the new row) -
-- (effect of the old row), so every transition (confirm, reverse, pay,
-- cancel, delete) is covered without a case of its own.  The CHECK on
-- welfare_fund refuses paying more than the fund holds.
CREATE FUNCTION maintain_welfare_fund() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);  -- NULL on INSERT
    new_row jsonb := to_jsonb(NEW);  -- NULL on DELETE
    old_fx bigint := welfare_fund_effect(TG_TABLE_NAME, old_row);
    new_fx bigint := welfare_fund_effect(TG_TABLE_NAME, new_row);
    old_chama bigint := (old_row ->> 'chama_id')::bigint;
    new_chama bigint := (new_row ->> 'chama_id')::bigint;
BEGIN
    IF old_chama IS NULL OR new_chama IS NULL OR old_chama = new_chama THEN
        PERFORM welfare_fund_apply(coalesce(new_chama, old_chama), new_fx - old_fx);
    ELSIF new_fx >= -old_fx THEN  -- moved between chamas: credit before debit
        PERFORM welfare_fund_apply(new_chama, new_fx);
        PERFORM welfare_fund_apply(old_chama, -old_fx);
    ELSE
        PERFORM welfare_fund_apply(old_chama, -old_fx);
        PERFORM welfare_fund_apply(new_chama, new_fx);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER contributions_maintain_welfare_fund AFTER INSERT OR UPDATE OR DELETE ON contributions
    FOR EACH ROW EXECUTE FUNCTION maintain_welfare_fund();
CREATE TRIGGER welfare_claims_maintain_welfare_fund AFTER INSERT OR UPDATE OR DELETE ON welfare_claims
    FOR EACH ROW EXECUTE FUNCTION maintain_welfare_fund();

CREATE TABLE payouts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id            bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    kind                text NOT NULL CHECK (kind IN ('rosca', 'shareout', 'welfare', 'loan_disbursement', 'refund')),
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    method              text NOT NULL CHECK (method IN ('mpesa', 'cash', 'bank')),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'reversed', 'cancelled')),
    -- our id for the transfer (M-Pesa B2C OriginatorConversationID): a retry
    -- reuses it, so a payout is never sent twice
    idempotency_key     text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    external_reference  text CHECK (length(btrim(external_reference)) BETWEEN 1 AND 100),
    failure_reason      text,
    rosca_cycle_id      bigint REFERENCES rosca_cycles (id) ON DELETE RESTRICT,
    asca_cycle_id       bigint REFERENCES asca_cycles (id) ON DELETE RESTRICT,
    welfare_claim_id    bigint REFERENCES welfare_claims (id) ON DELETE RESTRICT,
    loan_id             bigint REFERENCES loans (id) ON DELETE RESTRICT,
    recorded_by_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    approved_by_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    requested_at        timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payouts_kind_reference CHECK (
        (kind <> 'rosca' OR rosca_cycle_id IS NOT NULL) AND
        (kind <> 'shareout' OR asca_cycle_id IS NOT NULL) AND
        (kind <> 'welfare' OR welfare_claim_id IS NOT NULL) AND
        (kind <> 'loan_disbursement' OR loan_id IS NOT NULL))
);
CREATE UNIQUE INDEX payouts_external_reference_key ON payouts (external_reference) WHERE external_reference IS NOT NULL;
CREATE UNIQUE INDEX payouts_idempotency_key_key ON payouts (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- the same money never goes out twice while a payout is live or done
CREATE UNIQUE INDEX payouts_one_live_per_welfare_claim ON payouts (welfare_claim_id)
    WHERE kind = 'welfare' AND status IN ('pending', 'processing', 'completed');
CREATE UNIQUE INDEX payouts_one_live_per_loan ON payouts (loan_id)
    WHERE kind = 'loan_disbursement' AND status IN ('pending', 'processing', 'completed');
CREATE UNIQUE INDEX payouts_one_live_per_rosca_member ON payouts (rosca_cycle_id, user_id)
    WHERE kind = 'rosca' AND status IN ('pending', 'processing', 'completed');
CREATE UNIQUE INDEX payouts_one_live_per_shareout_member ON payouts (asca_cycle_id, user_id)
    WHERE kind = 'shareout' AND status IN ('pending', 'processing', 'completed');
CREATE INDEX payouts_chama_id_idx ON payouts (chama_id, requested_at DESC);
CREATE INDEX payouts_user_id_idx ON payouts (user_id);
CREATE INDEX payouts_rosca_cycle_id_idx ON payouts (rosca_cycle_id);
CREATE INDEX payouts_asca_cycle_id_idx ON payouts (asca_cycle_id);
CREATE INDEX payouts_welfare_claim_id_idx ON payouts (welfare_claim_id);
CREATE INDEX payouts_loan_id_idx ON payouts (loan_id);
CREATE INDEX payouts_recorded_by_user_id_idx ON payouts (recorded_by_user_id);
CREATE INDEX payouts_approved_by_user_id_idx ON payouts (approved_by_user_id);
CREATE INDEX payouts_in_flight_idx ON payouts (requested_at) WHERE status IN ('pending', 'processing');
CREATE TRIGGER payouts_set_updated_at BEFORE UPDATE ON payouts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
