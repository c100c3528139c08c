-- schema/80_governance.sql: governance: proposals and votes.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- A vote is cast once, while the proposal is open, by an active member of
-- its chama; it is never changed or withdrawn afterwards.
CREATE OR REPLACE FUNCTION proposal_votes_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p proposals%ROWTYPE;
BEGIN
    SELECT * INTO p FROM proposals WHERE id = NEW.proposal_id;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key reports it
    END IF;
    IF p.status <> 'open' OR NEW.cast_at < p.opens_at OR NEW.cast_at >= p.closes_at THEN
        RAISE EXCEPTION 'proposal % is not open for voting', p.id USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memberships m
                    WHERE m.chama_id = p.chama_id AND m.user_id = NEW.user_id AND m.status = 'active') THEN
        RAISE EXCEPTION 'user % is not an active member of chama % and cannot vote', NEW.user_id, p.chama_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
