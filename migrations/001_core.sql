-- 001_core: shared trigger functions, users, chamas, memberships.
--
-- Conventions for every migration (see docs/schema.md):
--   * primary keys are bigint GENERATED ALWAYS AS IDENTITY;
--   * money is bigint cents in columns named *_cents, with a CHECK (> 0, or
--     >= 0 for running totals); no float/real/numeric/money anywhere;
--   * references to users are user_id or <role>_user_id, to chamas chama_id;
--     every foreign key names its ON DELETE rule and has an index that starts
--     with the foreign key column;
--   * statuses are text with a CHECK list;
--   * users and chamas are soft-deleted (deleted_at); financial history is
--     never removed by a cascade (ON DELETE RESTRICT).
-- The runner wraps each file in one transaction: no BEGIN/COMMIT here.

-- Shared BEFORE UPDATE trigger for every table with an updated_at column.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Shared trigger for rows that must never change once written.
CREATE FUNCTION refuse_change() RETURNS trigger
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
CREATE FUNCTION constitution_is_valid(c jsonb) RETURNS boolean
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

CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone               text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    full_name           text NOT NULL CHECK (length(btrim(full_name)) BETWEEN 1 AND 200),
    email               text CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    preferred_language  text NOT NULL DEFAULT 'en' CHECK (preferred_language IN ('en', 'sw')),
    auth_method         text NOT NULL DEFAULT 'pin' CHECK (auth_method IN ('pin', 'google', 'pin_and_google')),
    pin_hash            text,
    failed_pin_attempts integer NOT NULL DEFAULT 0 CHECK (failed_pin_attempts >= 0),
    locked_until        timestamptz,
    google_id           text CHECK (length(google_id) BETWEEN 1 AND 255),
    phone_verified      boolean NOT NULL DEFAULT false,
    phone_verified_at   timestamptz,
    id_verified         boolean NOT NULL DEFAULT false,
    id_verified_at      timestamptz,
    last_login_at       timestamptz,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (auth_method = 'pin' OR google_id IS NOT NULL)
);
COMMENT ON TABLE users IS 'People, identified by E.164 phone; soft-deleted (deleted_at), never hard-deleted once they have history.';
COMMENT ON COLUMN users.pin_hash IS 'Password-hash string of the USSD/app PIN; never copied into audit_logs.';
-- A phone is unique among live accounts only: Safaricom recycles numbers, so
-- a deleted account must not block the next owner of the number.
CREATE UNIQUE INDEX users_phone_live_key ON users (phone) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_google_id_key ON users (google_id) WHERE google_id IS NOT NULL;
CREATE UNIQUE INDEX users_email_live_key ON users (lower(email)) WHERE email IS NOT NULL AND deleted_at IS NULL;
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE chamas (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                      text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description               text,
    type                      text NOT NULL CHECK (type IN ('rosca', 'asca', 'welfare', 'investment', 'mixed')),
    currency                  text NOT NULL DEFAULT 'KES' CHECK (currency ~ '^[A-Z]{3}$'),
    contribution_amount_cents bigint NOT NULL CHECK (contribution_amount_cents > 0),
    contribution_frequency    text NOT NULL CHECK (contribution_frequency IN ('weekly', 'biweekly', 'monthly', 'custom')),
    constitution              jsonb NOT NULL DEFAULT '{}'
                              CHECK (jsonb_typeof(constitution) = 'object')
                              CONSTRAINT chamas_constitution_values_check CHECK (constitution_is_valid(constitution)),
    member_count              integer NOT NULL DEFAULT 0 CHECK (member_count >= 0),
    last_member_number        integer NOT NULL DEFAULT 0 CHECK (last_member_number >= 0),
    status                    text NOT NULL DEFAULT 'active' CHECK (status IN ('pending', 'active', 'suspended', 'dissolved')),
    created_by_user_id        bigint REFERENCES users (id) ON DELETE RESTRICT,
    deleted_at                timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE chamas IS 'Groups; soft-deleted. member_count (active memberships) and last_member_number are kept by triggers on memberships.';
COMMENT ON COLUMN chamas.constitution IS 'Rules as a JSON object, e.g. {"loan_multiplier_bp": 30000 (3x savings), "loan_interest_rate_bp": 1000, "quorum_percent": 67, "late_penalty_cents": 5000}; *_cents/_bp/_percent/_days/_periods/_count keys must be integers.';
CREATE INDEX chamas_created_by_user_id_idx ON chamas (created_by_user_id);
CREATE INDEX chamas_constitution_gin ON chamas USING gin (constitution);
CREATE INDEX chamas_live_name_idx ON chamas (lower(name)) WHERE deleted_at IS NULL;
CREATE TRIGGER chamas_set_updated_at BEFORE UPDATE ON chamas
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE memberships (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    chama_id      bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    role          text NOT NULL DEFAULT 'member' CHECK (role IN ('chairperson', 'treasurer', 'secretary', 'member')),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'left', 'removed')),
    member_number integer NOT NULL CHECK (member_number > 0),
    joined_at     timestamptz NOT NULL DEFAULT now(),
    left_at       timestamptz CHECK (left_at >= joined_at),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memberships_user_chama_key UNIQUE (user_id, chama_id),
    CONSTRAINT memberships_chama_member_number_key UNIQUE (chama_id, member_number),
    -- at most one active chairperson, treasurer and secretary per chama;
    -- deferred so a hand-over can be done in one transaction in any order
    CONSTRAINT memberships_one_official_per_role EXCLUDE USING btree (chama_id WITH =, role WITH =)
        WHERE (role <> 'member' AND status = 'active') DEFERRABLE INITIALLY DEFERRED
);
COMMENT ON COLUMN memberships.member_number IS 'Per-chama number; when NULL on insert it is taken from chamas.last_member_number (race-free).';
-- hot lookup: the active memberships of a user
CREATE INDEX memberships_user_active_idx ON memberships (user_id, chama_id) WHERE status = 'active';
CREATE INDEX memberships_chama_active_idx ON memberships (chama_id, role) WHERE status = 'active';
CREATE TRIGGER memberships_set_updated_at BEFORE UPDATE ON memberships
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- member_number: taken from a per-chama counter so two concurrent joins
-- never pick the same number (the UPDATE locks the chama row).
CREATE FUNCTION memberships_assign_number() RETURNS trigger
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
CREATE TRIGGER memberships_assign_number BEFORE INSERT ON memberships
    FOR EACH ROW EXECUTE FUNCTION memberships_assign_number();

-- chamas.member_count = number of active memberships, kept with increments
-- (member_count = member_count + delta) so concurrent changes add up.
CREATE FUNCTION memberships_maintain_member_count() RETURNS trigger
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
CREATE TRIGGER memberships_maintain_member_count AFTER INSERT OR UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION memberships_maintain_member_count();
