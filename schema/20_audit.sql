-- schema/20_audit.sql: audit: who did it (audit_context), row-change audit, the per-chama hash chains.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- current_setting(name, true) is NULL or '' when unset; a malformed value
-- must not make the audited write fail, so bad values read as NULL.
CREATE OR REPLACE FUNCTION audit_setting(name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting(name, true), '')
$$;

CREATE OR REPLACE FUNCTION audit_actor() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN audit_setting('chamad.actor_user_id') ~ '^[0-9]{1,18}$'
                THEN audit_setting('chamad.actor_user_id')::bigint END
$$;

CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger
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

CREATE OR REPLACE FUNCTION audit_context(p_channel text, p_msisdn text, p_request_id text, p_actor bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('chamad.channel', p_channel, true), set_config('chamad.msisdn', coalesce(p_msisdn, ''), true),
           set_config('chamad.request_id', coalesce(p_request_id, ''), true),
           set_config('chamad.actor_user_id', coalesce(p_actor::text, ''), true);
$$;

-- The exact text the hash covers; chamad verify-ledger hashes the same text.
-- Legacy rows: the text of 010, unchanged, so their hashes still verify.
-- Chama-chain rows: tagged, with the chama and the row's place in its chain.
-- (PL/pgSQL rather than SQL: the trigger calls it once per transaction, and
-- a SQL function called so is planned again each time, a PL/pgSQL one once
-- per session.)
CREATE OR REPLACE FUNCTION financial_audit_canonical(r financial_audit_logs) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF r.chama_seq IS NULL THEN
        RETURN concat_ws('|', r.chain_seq, r.id, (extract(epoch FROM r.occurred_at) * 1000000)::bigint, r.chama_id,
                         coalesce(r.user_id::text, '-'), coalesce(r.actor_user_id::text, '-'), r.action,
                         r.entity_type, r.entity_id, r.amount_cents, r.direction, r.currency, coalesce(r.method, '-'),
                         coalesce(r.external_reference, '-'), r.idempotency_key, coalesce(r.reverses_id::text, '-'));
    END IF;
    RETURN concat_ws('|', 'chama', r.chama_id, r.chama_seq, r.id, (extract(epoch FROM r.occurred_at) * 1000000)::bigint,
                     coalesce(r.user_id::text, '-'), coalesce(r.actor_user_id::text, '-'), r.action, r.entity_type,
                     r.entity_id, r.amount_cents, r.direction, r.currency, coalesce(r.method, '-'),
                     coalesce(r.external_reference, '-'), r.idempotency_key, coalesce(r.reverses_id::text, '-'));
END
$$;

-- Links the new row to the end of its chama's chain and moves the head.
CREATE OR REPLACE FUNCTION financial_audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    h audit_chain_heads%ROWTYPE;
BEGIN
    -- the chama's chain lock, held to commit
    SELECT * INTO h FROM audit_chain_heads WHERE chama_id = NEW.chama_id FOR UPDATE;
    IF NOT FOUND THEN  -- the chama's first posting
        INSERT INTO audit_chain_heads (chama_id, seq, hash, genesis)
        VALUES (NEW.chama_id, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
                '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        ON CONFLICT (chama_id) DO NOTHING;
        SELECT * INTO STRICT h FROM audit_chain_heads WHERE chama_id = NEW.chama_id FOR UPDATE;
    END IF;
    NEW.chain_seq := NULL;
    NEW.chama_seq := h.seq + 1;
    NEW.prev_hash := h.hash;
    NEW.occurred_at := date_trunc('microseconds', NEW.occurred_at);
    NEW.row_hash := sha256(NEW.prev_hash || convert_to(financial_audit_canonical(NEW), 'UTF8'));
    UPDATE audit_chain_heads SET seq = NEW.chama_seq, hash = NEW.row_hash WHERE chama_id = NEW.chama_id;
    RETURN NEW;
END
$$;

-- A head is born empty (seq 0, hash = genesis) and moves forward one row at
-- a time; it is never deleted or moved to another chama.
CREATE OR REPLACE FUNCTION audit_chain_head_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND (NEW.seq <> 0 OR NEW.hash <> NEW.genesis) THEN
        RAISE EXCEPTION 'a new audit chain head starts empty (seq 0, hash = genesis)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'audit_chain_head_forward';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.chama_id <> OLD.chama_id OR NEW.genesis <> OLD.genesis OR NEW.seq <> OLD.seq + 1) THEN
        RAISE EXCEPTION 'the audit chain head of chama % moves forward one row at a time', OLD.chama_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'audit_chain_head_forward';
    END IF;
    RETURN NEW;
END
$$;
