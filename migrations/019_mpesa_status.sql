-- 019_mpesa_status: the Transaction Status rail (PROTOCOLS.md 4.8).
--
-- One row per question "did this M-Pesa transaction happen?", asked for a
-- purpose (a paybill payment to verify, a payout whose outcome we do not
-- know) about one row of that purpose (ref_id).  A row is a claimed row:
-- any daemon sends it when due (next_at), under a lease, and sends it
-- again when no result comes within [mpesa] status_timeout_s, up to
-- [mpesa] status_max_attempts; then its outcome is unknown.  A status
-- query moves no money, so sending one twice (a daemon died after sending)
-- is harmless.  The result, matched by our OriginatorConversationID or
-- the ConversationID Daraja gave us, is recorded once and handed to
-- <purpose>_on_status (schema/55_mpesa_status.sql).
CREATE TABLE mpesa_status_queries (
    id                  bigserial PRIMARY KEY,
    purpose             text NOT NULL CHECK (purpose IN ('c2b', 'payout')),
    ref_id              bigint NOT NULL,
    transaction_id      text CHECK (transaction_id ~ '^[A-Za-z0-9]{1,40}$'),
    original_originator text CHECK (length(original_originator) BETWEEN 1 AND 100),
    originator_id       text NOT NULL UNIQUE CHECK (length(originator_id) BETWEEN 1 AND 100),
    status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'sent', 'answered', 'unknown')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at             timestamptz NOT NULL DEFAULT now(),
    claimed_by          text,
    lease_until         timestamptz,
    conversation_ids    text[] NOT NULL DEFAULT '{}',
    last_error          text,
    result_code         integer,
    found               boolean,
    result              jsonb CHECK (result IS NULL OR jsonb_typeof(result) = 'object'),
    opened_at           timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    answered_at         timestamptz,
    CHECK (transaction_id IS NOT NULL OR original_originator IS NOT NULL),
    CHECK ((status = 'answered') = (answered_at IS NOT NULL))
);
COMMENT ON TABLE mpesa_status_queries IS 'Transaction Status queries (claimed rows): open -> sent (re-sent while no result) -> answered | unknown.';
COMMENT ON COLUMN mpesa_status_queries.originator_id IS 'Our OriginatorConversationID for this query (unguessable).';
COMMENT ON COLUMN mpesa_status_queries.conversation_ids IS 'The ConversationID of each accepted send: a result is matched by any of them.';
COMMENT ON COLUMN mpesa_status_queries.found IS 'result_code 0 and TransactionStatus Completed; NULL until answered (and when given up).';

-- one question at a time per purpose and row (mpesa_status_open is idempotent)
CREATE UNIQUE INDEX mpesa_status_queries_one_open ON mpesa_status_queries (purpose, ref_id)
    WHERE status IN ('open', 'sent');
-- the job: what is due
CREATE INDEX mpesa_status_queries_due ON mpesa_status_queries (next_at) WHERE status IN ('open', 'sent');
-- a result by the ConversationID of any send
CREATE INDEX mpesa_status_queries_conversations ON mpesa_status_queries USING gin (conversation_ids);
CREATE INDEX mpesa_status_queries_ref ON mpesa_status_queries (purpose, ref_id);
