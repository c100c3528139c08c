-- schema/10_core.sql: core: updated_at, immutability, constitutions, memberships, chama creation, formatting.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- Shared BEFORE UPDATE trigger for every table with an updated_at column.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Shared trigger for rows that must never change once written.
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %: rows are immutable', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'write a new row (a reversal or correction) instead';
END
$$;

-- Constitution values are JSON numbers; keys named *_cents, *_bp, *_percent,
-- *_days, *_periods or *_count must hold non-negative integers (money and
-- rates stay integral even inside JSON), *_percent at most 100.
CREATE OR REPLACE FUNCTION constitution_is_valid(c jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF jsonb_typeof(c) <> 'object' THEN
        RETURN false;
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(c) LOOP
        IF k ~ '_(cents|bp|percent|days|periods|count)$' THEN
            IF jsonb_typeof(v) <> 'number' OR v::text !~ '^[0-9]+$' THEN
                RETURN false;
            END IF;
            IF k ~ '_percent$' AND v::text::bigint > 100 THEN
                RETURN false;
            END IF;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

-- member_number: taken from a per-chama counter so two concurrent joins
-- never pick the same number (the UPDATE locks the chama row).
CREATE OR REPLACE FUNCTION memberships_assign_number() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.member_number IS NULL THEN
        UPDATE chamas SET last_member_number = last_member_number + 1
         WHERE id = NEW.chama_id
        RETURNING last_member_number INTO NEW.member_number;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'chama % does not exist', NEW.chama_id USING ERRCODE = 'foreign_key_violation';
        END IF;
    ELSE
        UPDATE chamas SET last_member_number = greatest(last_member_number, NEW.member_number)
         WHERE id = NEW.chama_id AND last_member_number < NEW.member_number;
    END IF;
    RETURN NEW;
END
$$;

-- chamas.member_count = number of active memberships, kept with increments
-- (member_count = member_count + delta) so concurrent changes add up.
CREATE OR REPLACE FUNCTION memberships_maintain_member_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_active boolean := TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'active';
    new_active boolean := TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'active';
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.chama_id IS DISTINCT FROM NEW.chama_id THEN
        IF old_active THEN
            UPDATE chamas SET member_count = member_count - 1 WHERE id = OLD.chama_id;
        END IF;
        IF new_active THEN
            UPDATE chamas SET member_count = member_count + 1 WHERE id = NEW.chama_id;
        END IF;
    ELSIF new_active AND NOT old_active THEN
        UPDATE chamas SET member_count = member_count + 1 WHERE id = NEW.chama_id;
    ELSIF old_active AND NOT new_active THEN
        UPDATE chamas SET member_count = member_count - 1 WHERE id = OLD.chama_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chama_create(p_channel text, p_msisdn text, p_request_id text, p_actor bigint,
                             p_name text, p_type text, p_amount_cents bigint, p_frequency text, p_code text)
RETURNS TABLE (chama_id bigint, name text, role text, invite_code text)
LANGUAGE plpgsql AS $$
DECLARE
    c bigint;
BEGIN
    PERFORM set_config('chamad.channel', p_channel, true), set_config('chamad.msisdn', p_msisdn, true),
            set_config('chamad.request_id', p_request_id, true),
            set_config('chamad.actor_user_id', p_actor::text, true);
    INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency, created_by_user_id)
    VALUES (p_name, p_type, p_amount_cents, p_frequency, p_actor)
    RETURNING id INTO c;
    INSERT INTO memberships (user_id, chama_id, role) VALUES (p_actor, c, 'chairperson');
    INSERT INTO invites (chama_id, created_by_user_id, code, max_uses, expires_at)
    VALUES (c, p_actor, p_code, 50, now() + interval '30 days');
    RETURN QUERY SELECT c, p_name, 'chairperson'::text, p_code;
END
$$;

CREATE OR REPLACE FUNCTION format_kes(cents bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(cents / 100, 'FM999,999,999,990') ||
           CASE WHEN cents % 100 <> 0 THEN '.' || lpad((abs(cents) % 100)::text, 2, '0') ELSE '' END
$$;

-- The n-th due date (n >= 0) of a schedule starting on `first`.
CREATE OR REPLACE FUNCTION due_date(first date, frequency text, period_days int, n int) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE frequency
        WHEN 'monthly' THEN (first + make_interval(months => n))::date
        WHEN 'weekly' THEN first + 7 * n
        WHEN 'biweekly' THEN first + 14 * n
        ELSE first + coalesce(period_days, 30) * n END
$$;
