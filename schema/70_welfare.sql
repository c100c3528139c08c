-- schema/70_welfare.sql: welfare: the fund and its claims.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- payout_amounts_cents: {"<event_type>": <cents>, ...}; keys are known event
-- types, values positive integers.
CREATE OR REPLACE FUNCTION welfare_payouts_are_valid(p jsonb) RETURNS boolean
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

-- An approver is never the claimant; new decisions only on open claims.
CREATE OR REPLACE FUNCTION welfare_claim_approvals_check() RETURNS trigger
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

-- welfare_fund_apply(chama, delta): adds delta to the chama's fund, creating
-- the row on the first credit.  A debit on a missing fund or below zero fails.
CREATE OR REPLACE FUNCTION welfare_fund_apply(p_chama_id bigint, p_delta bigint) RETURNS void
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
CREATE OR REPLACE FUNCTION welfare_fund_effect(tbl name, r jsonb) RETURNS bigint
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
CREATE OR REPLACE FUNCTION maintain_welfare_fund() RETURNS trigger
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
