-- 006_audit: audit_logs (who changed what, written by a trigger on the core
-- tables) and financial_audit_logs (one row per money movement, append-only).
--
-- chamad tags each transaction with who and where before it writes:
--   SELECT set_config('chamad.actor_user_id', '42', true),
--          set_config('chamad.channel', 'ussd', true),
--          set_config('chamad.msisdn', '+254712345678', true),
--          set_config('chamad.request_id', '...', true);
-- (is_local = true: the settings end with the transaction, so a pooled
-- connection never carries one request's identity into the next).

CREATE TABLE audit_logs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    actor_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    chama_id      bigint REFERENCES chamas (id) ON DELETE RESTRICT,
    action        text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    entity_type   text NOT NULL CHECK (length(entity_type) BETWEEN 1 AND 64),
    entity_id     bigint,
    before        jsonb,
    after         jsonb,
    channel       text NOT NULL DEFAULT 'system'
                  CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system')),
    ip            inet,
    user_agent    text CHECK (length(user_agent) <= 500),
    msisdn        text CHECK (msisdn ~ '^\+[1-9][0-9]{7,14}$'),
    request_id    text CHECK (length(request_id) <= 64)
);
COMMENT ON TABLE audit_logs IS 'Append-only. Core-table rows are written by audit_row_change(); the application adds its own (login, pin_locked, ...). users.pin_hash never appears here.';
CREATE INDEX audit_logs_entity_idx ON audit_logs (entity_type, entity_id, occurred_at DESC);
CREATE INDEX audit_logs_actor_user_id_idx ON audit_logs (actor_user_id, occurred_at DESC);
CREATE INDEX audit_logs_chama_id_idx ON audit_logs (chama_id, occurred_at DESC);
-- rows arrive in time order: a BRIN index serves time-range scans cheaply
CREATE INDEX audit_logs_occurred_at_brin ON audit_logs USING brin (occurred_at);
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- current_setting(name, true) is NULL or '' when unset; a malformed value
-- must not make the audited write fail, so bad values read as NULL.
CREATE FUNCTION audit_setting(name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting(name, true), '')
$$;

CREATE FUNCTION audit_actor() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN audit_setting('chamad.actor_user_id') ~ '^[0-9]{1,18}$'
                THEN audit_setting('chamad.actor_user_id')::bigint END
$$;

CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    row_chama bigint;
    chan text := coalesce(audit_setting('chamad.channel'), 'system');
    phone text := audit_setting('chamad.msisdn');
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_row := to_jsonb(OLD) - 'pin_hash';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_row := to_jsonb(NEW) - 'pin_hash';
    END IF;
    -- an UPDATE that changed nothing but updated_at or the counters that
    -- triggers keep (chamas.member_count, last_member_number) is not an
    -- event: the membership change that moved them is audited itself
    IF TG_OP = 'UPDATE' AND (old_row - '{updated_at,member_count,last_member_number}'::text[])
                          = (new_row - '{updated_at,member_count,last_member_number}'::text[]) THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'chamas' THEN
        -- a deleted chama cannot be referenced by its own deletion record
        row_chama := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.id END;
    ELSE
        row_chama := (coalesce(new_row, old_row) ->> 'chama_id')::bigint;
    END IF;
    IF chan NOT IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system') THEN
        chan := 'system';
    END IF;
    IF phone !~ '^\+[1-9][0-9]{7,14}$' THEN
        phone := NULL;
    END IF;
    INSERT INTO audit_logs (actor_user_id, chama_id, action, entity_type, entity_id, before, after,
                            channel, msisdn, request_id)
    VALUES (audit_actor(), row_chama, lower(TG_OP), TG_TABLE_NAME,
            (coalesce(new_row, old_row) ->> 'id')::bigint, old_row, new_row,
            chan, phone, left(audit_setting('chamad.request_id'), 64));
    RETURN NULL;
END
$$;

-- the core tables, and every table whose rows move money
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'chamas', 'memberships', 'contributions', 'loans', 'loan_repayments',
                             'payouts', 'welfare_claims'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION audit_row_change()', t || '_audit', t);
    END LOOP;
END
$$;

-- One row per money movement, written by the application in the same
-- transaction as the movement.  Never updated or deleted: a correction is
-- a new row (direction reversed, reverses_id set).
CREATE TABLE financial_audit_logs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    chama_id        bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id         bigint REFERENCES users (id) ON DELETE RESTRICT,
    actor_user_id   bigint REFERENCES users (id) ON DELETE RESTRICT,
    action          text NOT NULL CHECK (action IN (
                        'contribution_received', 'contribution_reversed', 'loan_disbursed', 'loan_repaid',
                        'loan_penalty', 'loan_written_off', 'guarantor_called', 'payout_sent', 'payout_reversed',
                        'welfare_claim_paid', 'shares_bought', 'shareout_paid', 'fine_charged', 'fine_paid',
                        'suspense_received', 'suspense_allocated', 'adjustment')),
    entity_type     text NOT NULL CHECK (length(entity_type) BETWEEN 1 AND 64),
    entity_id       bigint NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    direction       text NOT NULL CHECK (direction IN ('in', 'out', 'internal')),
    currency        text NOT NULL DEFAULT 'KES' CHECK (currency ~ '^[A-Z]{3}$'),
    method          text CHECK (method IN ('mpesa', 'cash', 'bank', 'internal')),
    external_reference text CHECK (length(external_reference) <= 100),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    reverses_id     bigint REFERENCES financial_audit_logs (id) ON DELETE RESTRICT,
    details         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    channel         text NOT NULL DEFAULT 'system'
                    CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system')),
    request_id      text CHECK (length(request_id) <= 64),
    CONSTRAINT financial_audit_logs_idempotency_key_key UNIQUE (idempotency_key)
);
COMMENT ON TABLE financial_audit_logs IS 'Append-only record of every money movement; UPDATE, DELETE and TRUNCATE are refused by triggers.';
CREATE INDEX financial_audit_logs_chama_id_idx ON financial_audit_logs (chama_id, occurred_at DESC);
CREATE INDEX financial_audit_logs_user_id_idx ON financial_audit_logs (user_id, occurred_at DESC);
CREATE INDEX financial_audit_logs_actor_user_id_idx ON financial_audit_logs (actor_user_id);
CREATE INDEX financial_audit_logs_entity_idx ON financial_audit_logs (entity_type, entity_id);
CREATE INDEX financial_audit_logs_reverses_id_idx ON financial_audit_logs (reverses_id);
CREATE INDEX financial_audit_logs_occurred_at_brin ON financial_audit_logs USING brin (occurred_at);
CREATE TRIGGER financial_audit_logs_append_only BEFORE UPDATE OR DELETE ON financial_audit_logs
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER financial_audit_logs_no_truncate BEFORE TRUNCATE ON financial_audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
