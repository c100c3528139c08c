-- 015_audit_chains: one financial audit chain per chama, so that postings
-- of different chamas never wait on each other.
--
-- Until now every financial_audit_logs row joined one global chain
-- (chain_seq) under one advisory lock held to commit: every money posting
-- in the system waited for the one before it, WAL flush included.  From
-- here on each chama has its own chain:
--
--   audit_chain_heads   one row per chama: the chain's last position (seq)
--                       and hash, and the hash its first row links to
--                       (genesis).  The head row is the chain's lock: a
--                       posting locks it (SELECT ... FOR UPDATE), links its
--                       row to the head and moves the head, all in its own
--                       transaction, so two postings of one chama take turns
--                       and postings of two chamas never meet.  The lock
--                       lasts until commit because it must: a chain may only
--                       link to a committed row, or a rollback would leave a
--                       gap.  (A chama's postings already take turns on the
--                       row of its M-Pesa float / cash account.)
--   chama_seq           the row's position in its chama's chain, 1, 2, ...
--                       without gaps; UNIQUE (chama_id, chama_seq).
--
-- Rows written before this migration keep their place in the legacy global
-- chain (chain_seq), which chamad verify-ledger still walks.  The chains of
-- the chamas that exist now start from the legacy chain's last hash, so that
-- chain is sealed: a row taken from its end shows.  Chamas created later
-- start from 32 zero bytes (their rows' canonical text names the chama, so
-- no row can pass for another chama's).
--
-- A transaction that posts for two chamas takes their heads in the order it
-- posts; two such transactions in opposite orders can deadlock (PostgreSQL
-- then aborts one).  Every posting function posts for one chama.

-- No audit row is written while this runs: the chain is sealed on a stable
-- tip (ALTER TABLE would take this lock anyway; taken first, explicitly).
LOCK TABLE financial_audit_logs IN ACCESS EXCLUSIVE MODE;

CREATE TABLE audit_chain_heads (
    chama_id bigint PRIMARY KEY REFERENCES chamas (id) ON DELETE RESTRICT,
    seq      bigint NOT NULL CHECK (seq >= 0),
    hash     bytea NOT NULL CHECK (length(hash) = 32),
    genesis  bytea NOT NULL CHECK (length(genesis) = 32)
) WITH (fillfactor = 50);  -- every posting updates its head: room for HOT updates
COMMENT ON TABLE audit_chain_heads IS 'The end of each chama''s financial audit chain (seq, hash of its last row) and the hash its first row links to; moved one row at a time by financial_audit_chain(), never deleted.';

-- A head is born empty (seq 0, hash = genesis) and moves forward one row at
-- a time; it is never deleted or moved to another chama.
CREATE FUNCTION audit_chain_head_forward() RETURNS trigger
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
CREATE TRIGGER audit_chain_heads_forward BEFORE INSERT OR UPDATE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward();
CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

ALTER TABLE financial_audit_logs
    ADD COLUMN chama_seq bigint CHECK (chama_seq > 0),
    ADD CONSTRAINT financial_audit_logs_one_chain CHECK (chain_seq IS NULL OR chama_seq IS NULL),
    ADD CONSTRAINT financial_audit_logs_chama_seq_key UNIQUE (chama_id, chama_seq);
COMMENT ON COLUMN financial_audit_logs.chama_seq IS 'Position in the chama''s audit chain (audit_chain_heads); NULL for rows of the legacy global chain (chain_seq).';

-- The chamas of today continue from the legacy chain's last hash.
INSERT INTO audit_chain_heads (chama_id, seq, hash, genesis)
SELECT c.id, 0, t.tip, t.tip
  FROM chamas c,
       (SELECT coalesce((SELECT row_hash FROM financial_audit_logs WHERE chain_seq IS NOT NULL
                          ORDER BY chain_seq DESC LIMIT 1),
                        '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS tip) t;

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
