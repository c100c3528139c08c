-- schema/55_mpesa_status.sql: the Transaction Status rail (see migration
-- 019_mpesa_status and src/mpesa/status.c).
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.
--
-- A purpose ('c2b', 'payout': the CHECK of mpesa_status_queries.purpose)
-- is answered by <purpose>_on_status(p_query_id bigint, p_ref_id bigint,
-- p_found boolean, p_result jsonb, p_at timestamptz), written by the part
-- that owns the purpose.  p_found: true when the transaction exists and
-- completed, false when M-Pesa says otherwise, NULL when no answer came
-- after every attempt (unknown).  A result that comes after the give-up is
-- handed over too (the truth came late).  This file works without those
-- functions: only a result for a purpose whose function is missing fails.

-- Opens a question about (p_purpose, p_ref_id), by receipt (p_transaction_id)
-- or by the original request's OriginatorConversationID; idempotent while
-- one is open (returns it).  Due at once.  Wakes the job of every daemon
-- when written by anything but chamad (psql, a tool); chamad's own writer
-- wakes its job itself (a NOTIFY serialises commits: migration 016).
CREATE OR REPLACE FUNCTION mpesa_status_open(p_purpose text, p_ref_id bigint, p_transaction_id text,
                                             p_original_originator text, p_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q bigint;
BEGIN
    SELECT id INTO q FROM mpesa_status_queries
     WHERE purpose = p_purpose AND ref_id = p_ref_id AND status IN ('open', 'sent');
    IF FOUND THEN
        RETURN q;
    END IF;
    q := nextval(pg_get_serial_sequence('mpesa_status_queries', 'id'));
    INSERT INTO mpesa_status_queries (id, purpose, ref_id, transaction_id, original_originator, originator_id,
                                      opened_at)
    VALUES (q, p_purpose, p_ref_id, nullif(p_transaction_id, ''), nullif(p_original_originator, ''),
            -- unguessable: a forged result cannot name a query it never saw
            'st-' || q || '-' || substr(md5(random()::text || clock_timestamp()::text), 1, 16), p_at)
    ON CONFLICT (purpose, ref_id) WHERE status IN ('open', 'sent') DO NOTHING;
    IF NOT FOUND THEN   -- a concurrent open won
        SELECT id INTO q FROM mpesa_status_queries
         WHERE purpose = p_purpose AND ref_id = p_ref_id AND status IN ('open', 'sent');
        RETURN q;
    END IF;
    IF coalesce(current_setting('chamad.channel', true), '') = '' THEN
        PERFORM pg_notify('chamad_mpesa_status', '');
    END IF;
    RETURN q;
END
$$;

-- Hands the query's outcome to its purpose (EXECUTE: the function is the
-- purpose's own; the purpose is one of the CHECKed list).
CREATE OR REPLACE FUNCTION mpesa_status_dispatch(p_query_id bigint, p_purpose text, p_ref_id bigint,
                                                 p_found boolean, p_result jsonb, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_purpose NOT IN ('c2b', 'payout') THEN
        RAISE EXCEPTION 'mpesa_status_dispatch: unknown purpose %', p_purpose;
    END IF;
    EXECUTE format('SELECT %I($1, $2, $3, $4, $5)', p_purpose || '_on_status')
      USING p_query_id, p_ref_id, p_found, p_result, p_at;
END
$$;

-- Claims the queries due now (SKIP LOCKED: several daemons share them)
-- under a lease; each claim counts one attempt.  Returns one row per
-- claimed query, or one row with NULL query_id when none was due; next_ms
-- (on every row) is the milliseconds until the next one is due (NULL: none
-- waiting).  A query whose attempts are spent is left to
-- mpesa_status_give_up.
CREATE OR REPLACE FUNCTION mpesa_status_claim(p_me text, p_lease_s integer, p_max_attempts integer,
                                              p_batch integer)
RETURNS TABLE (query_id bigint, originator_id text, transaction_id text, original_originator text,
               attempt integer, next_ms bigint)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT q.id FROM mpesa_status_queries q
         WHERE q.status IN ('open', 'sent') AND q.next_at <= now() AND q.attempts < p_max_attempts
           AND (q.lease_until IS NULL OR q.lease_until < now())
         ORDER BY q.next_at LIMIT p_batch FOR UPDATE SKIP LOCKED),
    c AS (
        UPDATE mpesa_status_queries q SET attempts = q.attempts + 1, claimed_by = p_me,
               lease_until = now() + make_interval(secs => p_lease_s)
          FROM due WHERE q.id = due.id
        RETURNING q.id, q.originator_id, q.transaction_id, q.original_originator, q.attempts),
    n AS (
        SELECT greatest(0, ceil(extract(epoch FROM min(coalesce(greatest(q.next_at, q.lease_until), q.next_at))
                                          - now()) * 1000))::bigint AS ms
          FROM mpesa_status_queries q
         WHERE q.status IN ('open', 'sent') AND q.id NOT IN (SELECT id FROM c)
           -- spent ones wake the job when they are due for the give-up
           AND (q.attempts < p_max_attempts OR q.next_at > now()))
    SELECT c.id, c.originator_id, c.transaction_id, c.original_originator, c.attempts, n.ms
      FROM n LEFT JOIN c ON true
$$;

-- What came of one send.  p_outcome: 'accepted' (queued: the result will
-- come, p_conversation_id names it), 'unanswered' (no answer: it may be
-- queued), 'refused' (Daraja did not queue it), 'unsent' (it never left:
-- the attempt does not count).  Due again after p_timeout_s (unsent: in
-- five seconds).  Only the claim's holder records, and never over a result.
CREATE OR REPLACE FUNCTION mpesa_status_sent(p_query_id bigint, p_me text, p_outcome text,
                                             p_conversation_id text, p_detail text, p_timeout_s integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mpesa_status_queries q
       SET status = CASE WHEN p_outcome IN ('accepted', 'unanswered') THEN 'sent' ELSE q.status END,
           attempts = CASE WHEN p_outcome = 'unsent' THEN greatest(q.attempts - 1, 0) ELSE q.attempts END,
           conversation_ids = CASE WHEN p_conversation_id IS NOT NULL AND p_conversation_id <> ''
                                   THEN q.conversation_ids || p_conversation_id ELSE q.conversation_ids END,
           sent_at = CASE WHEN p_outcome IN ('accepted', 'unanswered') THEN now() ELSE q.sent_at END,
           last_error = CASE WHEN p_outcome = 'accepted' THEN NULL ELSE left(p_detail, 300) END,
           next_at = now() + CASE WHEN p_outcome = 'unsent' THEN interval '5 seconds'
                                  ELSE make_interval(secs => p_timeout_s) END,
           claimed_by = NULL, lease_until = NULL
     WHERE q.id = p_query_id AND q.claimed_by = p_me AND q.status IN ('open', 'sent');
    RETURN FOUND;
END
$$;

-- Result codes that say nothing about the transaction asked about (our
-- initiator or Daraja failed): the question stays open, asked again.
CREATE OR REPLACE FUNCTION mpesa_status_code_is_answer(p_code integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    -- 17 internal failure, 20 unresolved initiator, 2001 initiator
    -- information invalid, 8006 security credential locked, 1037 timeout
    SELECT p_code IS NOT NULL AND p_code NOT IN (17, 20, 1037, 2001, 8006)
$$;

-- A Result posted to our status ResultURL (p_timeout false) or
-- QueueTimeOutURL (true), matched by our OriginatorConversationID (asked
-- by receipt), else by the ConversationID of a send (asked by the original
-- request's OriginatorConversationID, which the Result then carries: that
-- id is never enough, as it is guessable and a "not found" could make a
-- payout go twice).  A Result that overtakes the record of its send is
-- unmatched and the query is asked again after status_timeout_s.
-- Recorded once, then handed to the purpose in the same transaction.
-- outcome: 'answered' (recorded and dispatched now), 'duplicate' (answered
-- before: nothing changes), 'retry' (the queue timed out, or a code that
-- says nothing: asked again), 'unmatched' (no query of ours: ignored).
CREATE OR REPLACE FUNCTION mpesa_status_record(p_originator_id text, p_conversation_id text, p_result_code integer,
                                               p_result jsonb, p_timeout boolean, p_at timestamptz)
RETURNS TABLE (outcome text, query_id bigint, purpose text, ref_id bigint, found boolean)
LANGUAGE plpgsql AS $$
DECLARE
    q mpesa_status_queries%ROWTYPE;
    f boolean;
BEGIN
    SELECT * INTO q FROM mpesa_status_queries s WHERE s.originator_id = p_originator_id FOR UPDATE;
    IF NOT FOUND AND coalesce(p_conversation_id, '') <> '' THEN
        SELECT * INTO q FROM mpesa_status_queries s WHERE s.conversation_ids @> ARRAY[p_conversation_id]
         ORDER BY s.id DESC LIMIT 1 FOR UPDATE;
    END IF;
    IF q.id IS NULL THEN
        RETURN QUERY SELECT 'unmatched'::text, NULL::bigint, NULL::text, NULL::bigint, NULL::boolean;
        RETURN;
    END IF;
    IF q.status = 'answered' THEN
        RETURN QUERY SELECT 'duplicate'::text, q.id, q.purpose, q.ref_id, q.found;
        RETURN;
    END IF;
    IF p_timeout OR NOT mpesa_status_code_is_answer(p_result_code) THEN
        -- no answer about the transaction: ask again now (the give-up
        -- counts the attempts); an unknown one stays unknown
        UPDATE mpesa_status_queries s SET next_at = now(), last_error = left(coalesce(p_result->>'desc', ''), 300)
         WHERE s.id = q.id AND s.status = 'sent';
        RETURN QUERY SELECT 'retry'::text, q.id, q.purpose, q.ref_id, NULL::boolean;
        RETURN;
    END IF;
    f := p_result_code = 0 AND coalesce(p_result->>'status', '') = 'Completed';
    UPDATE mpesa_status_queries s
       SET status = 'answered', result_code = p_result_code, found = f, result = p_result, answered_at = now(),
           claimed_by = NULL, lease_until = NULL
     WHERE s.id = q.id;
    PERFORM mpesa_status_dispatch(q.id, q.purpose, q.ref_id, f, p_result, p_at);
    RETURN QUERY SELECT 'answered'::text, q.id, q.purpose, q.ref_id, f;
END
$$;

-- Queries whose attempts are spent and whose last send had its time: the
-- outcome is unknown (p_found NULL to the purpose).  Each in its own
-- subtransaction: a purpose whose function fails (or is missing) leaves
-- its query for the next pass and the others go on.
CREATE OR REPLACE FUNCTION mpesa_status_give_up(p_max_attempts integer, p_at timestamptz)
RETURNS TABLE (query_id bigint, purpose text, ref_id bigint, given_up boolean)
LANGUAGE plpgsql AS $$
DECLARE
    q record;
BEGIN
    FOR q IN SELECT s.id, s.purpose, s.ref_id FROM mpesa_status_queries s
              WHERE s.status IN ('open', 'sent') AND s.attempts >= p_max_attempts AND s.next_at <= now()
                AND (s.lease_until IS NULL OR s.lease_until < now())
              ORDER BY s.next_at LIMIT 100 FOR UPDATE SKIP LOCKED LOOP
        BEGIN
            UPDATE mpesa_status_queries s SET status = 'unknown', claimed_by = NULL, lease_until = NULL
             WHERE s.id = q.id;
            PERFORM mpesa_status_dispatch(q.id, q.purpose, q.ref_id, NULL, NULL, p_at);
            RETURN QUERY SELECT q.id, q.purpose, q.ref_id, true;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'mpesa_status_give_up: query %: %', q.id, SQLERRM;
            RETURN QUERY SELECT q.id, q.purpose, q.ref_id, false;
        END;
    END LOOP;
END
$$;
