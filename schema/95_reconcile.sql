-- schema/95_reconcile.sql: reconciliation: the books against M-Pesa's
-- statement (Pull Transactions) and its Account Balance.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.
--
-- A run (reconcile_runs, migration 023) is a claimed row:
--   requested   by the daily job (reconcile_job_request: once per period)
--               or by `chamad reconcile` (reconcile_request, with a NOTIFY)
--   running     a daemon claimed it (reconcile_claim) under a lease, pulls
--               the statement page by page (reconcile_statement_add), then
--               asks the Account Balance (reconcile_statement_done,
--               reconcile_balance_acked)
--   done        the balance result came (reconcile_balance_result, on any
--               daemon: the route that received it) or did not come in
--               time (reconcile_finish, on the claimant): reconcile_compare
--   failed      the statement could not be had (reconcile_fail), or the
--               run was claimed three times without finishing
-- A daemon that dies mid-run leaves its lease to expire; the next claim
-- starts the run again from the statement.
--
-- Receipts and the journal.  Every posting has one financial audit row
-- (ledger_post) naming its entry (details.journal_entry_id) and, for money
-- that came or went by M-Pesa, the receipt (external_reference): a
-- contribution's M-Pesa receipt, a suspense posting's TransID.  That row is
-- the one join from a receipt to its entry, whatever posted it.

-- A statement's date: with a zone as written, without one in the run's
-- zone (Daraja writes local time); NULL when it is not a time at all.
CREATE OR REPLACE FUNCTION reconcile_read_time(p_text text, p_tz text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_text IS NULL OR p_text !~ '^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}' THEN
        RETURN NULL;
    END IF;
    IF p_text ~ '\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$' THEN
        RETURN p_text::timestamptz;
    END IF;
    RETURN p_text::timestamp AT TIME ZONE p_tz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- `chamad reconcile`: a run of [p_from, p_to), woken on every daemon by a
-- NOTIFY (any daemon with M-Pesa configured may take it).  Returns its id.
CREATE OR REPLACE FUNCTION reconcile_request(p_by text, p_from timestamptz, p_to timestamptz, p_tz text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r bigint;
BEGIN
    INSERT INTO reconcile_runs (origin, requested_by, period_from, period_to, time_zone)
    VALUES ('cli', left(p_by, 120), p_from, p_to, p_tz)
    RETURNING id INTO r;
    PERFORM pg_notify('chamad_reconcile', r::text);
    RETURN r;
END
$$;

-- The daily job's run: the last whole period of p_every_s seconds before
-- p_at, periods counted from midnight in p_tz (86400: yesterday, local).
-- Once per period, whichever daemon asks first: the advisory lock keeps two
-- from deciding at once and the unique index keeps a second one out.
-- Returns the new run, or NULL (another daemon has it, or it exists).
CREATE OR REPLACE FUNCTION reconcile_job_request(p_at timestamptz, p_tz text, p_every_s integer, p_by text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    upto timestamp := date_bin(make_interval(secs => p_every_s), p_at AT TIME ZONE p_tz, timestamp '2000-01-01');
    r bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100095) THEN
        RETURN NULL;
    END IF;
    INSERT INTO reconcile_runs (origin, requested_by, period_from, period_to, time_zone)
    VALUES ('job', left(p_by, 120), (upto - make_interval(secs => p_every_s)) AT TIME ZONE p_tz, upto AT TIME ZONE p_tz,
            p_tz)
    ON CONFLICT (period_from, period_to) WHERE origin = 'job' DO NOTHING
    RETURNING id INTO r;
    RETURN r;
END
$$;

-- Claims one run to do (requested, or running under a lease that ended:
-- its daemon stopped), SKIP LOCKED, for p_lease_s seconds.  A run claimed a
-- third time without finishing is failed instead.  The claim starts the
-- run over: the statement is pulled again (the balance already reported is
-- kept).  Returns the run, this attempt, its zone, and the statement
-- window to pull in that zone ("YYYY-MM-DD HH24:MI:SS"): the period widened by p_margin_s each
-- side, so a payment posted just across midnight from its M-Pesa time is
-- still found.
CREATE OR REPLACE FUNCTION reconcile_claim(p_me text, p_lease_s integer, p_margin_s integer)
RETURNS TABLE (run_id bigint, attempt integer, time_zone text, pull_from text, pull_to text)
LANGUAGE plpgsql AS $$
DECLARE
    r reconcile_runs%ROWTYPE;
BEGIN
    LOOP
        SELECT * INTO r FROM reconcile_runs x
         WHERE x.status = 'requested' OR (x.status = 'running' AND x.lease_until < now())
         ORDER BY x.id LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        IF r.attempts >= 3 THEN
            UPDATE reconcile_runs SET status = 'failed', finished_at = now(), lease_until = NULL,
                   error = 'claimed three times without finishing (its daemons stopped mid-run)'
             WHERE id = r.id;
            CONTINUE;
        END IF;
        DELETE FROM reconcile_statement_lines WHERE reconcile_statement_lines.run_id = r.id;
        UPDATE reconcile_runs
           SET status = 'running', claimed_by = left(p_me, 120), lease_until = now() + make_interval(secs => p_lease_s),
               attempts = r.attempts + 1, statement_lines = NULL, balance_ack_originator = NULL,
               balance_conversation = NULL,
               balance_originator = CASE WHEN r.balance_state = 'reported' THEN r.balance_originator END,
               balance_asked_at = CASE WHEN r.balance_state = 'reported' THEN r.balance_asked_at END,
               balance_state = CASE WHEN r.balance_state = 'reported' THEN 'reported' ELSE 'unasked' END,
               balance_detail = CASE WHEN r.balance_state = 'reported' THEN r.balance_detail END
         WHERE id = r.id;
        RETURN QUERY SELECT r.id, r.attempts + 1, r.time_zone,
                            to_char((r.period_from - make_interval(secs => p_margin_s)) AT TIME ZONE r.time_zone,
                                    'YYYY-MM-DD HH24:MI:SS'),
                            to_char((r.period_to + make_interval(secs => p_margin_s)) AT TIME ZONE r.time_zone,
                                    'YYYY-MM-DD HH24:MI:SS');
        RETURN;
    END LOOP;
END
$$;

-- Whether p_me still holds run p_run in attempt p_attempt (a daemon whose
-- lease ended and whose run another daemon took must not touch it).
CREATE OR REPLACE FUNCTION reconcile_holds(p_run bigint, p_me text, p_attempt integer) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM reconcile_runs WHERE id = p_run AND status = 'running' AND claimed_by = p_me
                                                  AND attempts = p_attempt)
$$;

-- One page of the statement, at OffSetValue p_offset: p_lines is
-- [{"transaction_id", "trx_date", "msisdn", "transaction_type", "bill_ref",
-- "amount_cents" (-1: not whole shillings)}, ...].  Harmless when repeated
-- (a line is its run and place).  Returns the lines added, -1 when the run
-- is no longer this claimant's.
CREATE OR REPLACE FUNCTION reconcile_statement_add(p_run bigint, p_me text, p_attempt integer, p_offset integer,
                                                   p_lines jsonb)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    tz text := (SELECT r.time_zone FROM reconcile_runs r WHERE r.id = p_run);
BEGIN
    IF NOT reconcile_holds(p_run, p_me, p_attempt) THEN
        RETURN -1;
    END IF;
    INSERT INTO reconcile_statement_lines (run_id, seq, transaction_id, trx_date_text, trx_at, msisdn,
                                           transaction_type, bill_ref, amount_cents)
    SELECT p_run, p_offset + (x.ord - 1)::integer, left(btrim(x.v ->> 'transaction_id'), 40),
           left(x.v ->> 'trx_date', 40), reconcile_read_time(x.v ->> 'trx_date', tz), left(x.v ->> 'msisdn', 80),
           left(x.v ->> 'transaction_type', 80), left(x.v ->> 'bill_ref', 100),
           CASE WHEN (x.v ->> 'amount_cents') ~ '^\d{1,15}$' THEN (x.v ->> 'amount_cents')::bigint END
      FROM jsonb_array_elements(p_lines) WITH ORDINALITY x(v, ord)
     WHERE coalesce(btrim(x.v ->> 'transaction_id'), '') <> ''
    ON CONFLICT ON CONSTRAINT reconcile_statement_lines_seq_key DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- The whole statement is in: the Account Balance is asked next, under our
-- OriginatorConversationID p_originator (unless a balance is already
-- reported from an earlier attempt).  Returns the balance state then:
-- 'asked' (send the query), 'reported' (compare now), or NULL when the run
-- is no longer this claimant's.
CREATE OR REPLACE FUNCTION reconcile_statement_done(p_run bigint, p_me text, p_attempt integer, p_originator text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    IF NOT reconcile_holds(p_run, p_me, p_attempt) THEN
        RETURN NULL;
    END IF;
    UPDATE reconcile_runs
       SET statement_lines = (SELECT count(*) FROM reconcile_statement_lines l WHERE l.run_id = p_run),
           balance_originator = CASE WHEN balance_state = 'reported' THEN balance_originator ELSE p_originator END,
           balance_asked_at = CASE WHEN balance_state = 'reported' THEN balance_asked_at ELSE now() END,
           balance_state = CASE WHEN balance_state = 'reported' THEN 'reported' ELSE 'asked' END
     WHERE id = p_run
    RETURNING balance_state INTO st;
    RETURN st;
END
$$;

-- Daraja's acknowledgement of the Account Balance query.  Accepted: the
-- names it gave the query (its result may carry either).  Otherwise the
-- balance is unknown (p_detail says why) and the claimant compares now;
-- an unanswered query may still be processed, so the claimant waits for
-- its result as for an accepted one (it calls this only when refused or
-- unsent).  Returns whether the run is still this claimant's.
CREATE OR REPLACE FUNCTION reconcile_balance_acked(p_run bigint, p_me text, p_attempt integer, p_accepted boolean,
                                                   p_ack_originator text, p_conversation text, p_detail text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT reconcile_holds(p_run, p_me, p_attempt) THEN
        RETURN false;
    END IF;
    IF p_accepted THEN
        UPDATE reconcile_runs SET balance_ack_originator = left(nullif(p_ack_originator, ''), 100),
                                  balance_conversation = left(nullif(p_conversation, ''), 100)
         WHERE id = p_run AND balance_state = 'asked';
    ELSE
        UPDATE reconcile_runs SET balance_state = 'unknown', balance_detail = left(p_detail, 1000)
         WHERE id = p_run AND balance_state = 'asked';
    END IF;
    RETURN true;
END
$$;

-- One difference of run p_run (once per run and key).  is_new: no earlier
-- run found the same one.
CREATE OR REPLACE FUNCTION reconcile_item(p_run bigint, p_kind text, p_key text, p_chama bigint, p_receipt text,
                                          p_entry bigint, p_cents bigint, p_handled text, p_details jsonb,
                                          p_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    fresh boolean := NOT EXISTS (SELECT 1 FROM reconcile_items i WHERE i.diff_key = p_key AND i.run_id <> p_run);
BEGIN
    INSERT INTO reconcile_items (run_id, kind, diff_key, is_new, chama_id, receipt, entry_id, amount_cents, details,
                                 handled, handled_at, created_at)
    VALUES (p_run, p_kind, p_key, fresh, p_chama, left(p_receipt, 40), p_entry, p_cents,
            coalesce(jsonb_strip_nulls(p_details), '{}'), p_handled, CASE WHEN p_handled <> 'open' THEN p_at END, p_at)
    ON CONFLICT ON CONSTRAINT reconcile_items_once DO NOTHING;
    RETURN fresh;
END
$$;

-- A difference that names a chama, told to its treasurer and chairperson
-- once (the key names the difference, not the run).
CREATE OR REPLACE FUNCTION reconcile_tell_officials(p_chama bigint, p_template text, p_vars jsonb, p_key text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    o record;
BEGIN
    FOR o IN SELECT m.user_id FROM memberships m
              WHERE m.chama_id = p_chama AND m.status = 'active' AND m.role IN ('treasurer', 'chairperson')
              ORDER BY m.user_id LOOP
        PERFORM notify(o.user_id, 'reconcile', p_template,
                       p_vars || jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = p_chama)),
                       4, 'reconcile:' || p_key || ':' || o.user_id, p_chama);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The comparison, once per run, dated p_at; the run becomes done.
--   float          the ledger's M-Pesa float (every chama's mpesa_float:
--                  the paybill is shared) against the reported balance;
--                  a balance never reported is a difference too
--   statement      every receipt the statement lists for the period has
--                  exactly one journal entry; one with none is a payment
--                  that reached the paybill but whose confirmation was
--                  lost: posted to the chama its account number names, in
--                  suspense (post_suspense, keyed c2b:<receipt> as the
--                  paybill's own suspense posting is, so a confirmation
--                  that comes after all posts nothing twice), for the
--                  officials to allocate; unless our own records know the
--                  receipt (a paybill confirmation kept unposted: it is
--                  reported) or money of that chama and amount is still
--                  open or was posted without a receipt (it may be this
--                  payment: reported, not posted)
--   journal        every entry of the period on an M-Pesa float (not a
--                  reversal) has its receipt in a statement; one without is
--                  reported
-- Differences naming a chama are told to its officials by SMS (once per
-- difference); operators read the run's items (log, metric, the CLI).
-- Returns the number of differences, NULL when the run is not ready (not
-- running, or its statement is not all in).
CREATE OR REPLACE FUNCTION reconcile_compare(p_run bigint, p_at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r reconcile_runs%ROWTYPE;
    lf bigint;
    s record;
    m text[];
    chama bigint;
    known text;
    e bigint;
    total integer;
    fresh integer;
BEGIN
    SELECT * INTO r FROM reconcile_runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND OR r.status <> 'running' OR r.statement_lines IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM audit_context('system', NULL, 'reconcile:' || p_run, NULL);

    -- the statement's receipts of the period that no entry carries
    FOR s IN
        SELECT DISTINCT ON (l.transaction_id) l.transaction_id, l.amount_cents, l.bill_ref, l.trx_at,
               l.trx_date_text, l.transaction_type
          FROM reconcile_statement_lines l
         WHERE l.run_id = p_run AND (l.trx_at IS NULL OR (l.trx_at >= r.period_from AND l.trx_at < r.period_to))
           AND NOT EXISTS (SELECT 1 FROM financial_audit_logs f WHERE f.external_reference = l.transaction_id)
         ORDER BY l.transaction_id, l.seq
    LOOP
        chama := NULL;
        known := NULL;
        e := NULL;
        m := regexp_match(upper(btrim(coalesce(s.bill_ref, ''))), '^(\d{1,12})(?:[- ]+(\d{1,9}))?$');
        IF m IS NOT NULL THEN
            SELECT c.id INTO chama FROM chamas c WHERE c.id = m[1]::bigint AND c.deleted_at IS NULL;
        END IF;
        IF EXISTS (SELECT 1 FROM mpesa_c2b c WHERE c.trans_id = s.transaction_id) THEN
            known := 'a paybill confirmation of ours holds it, unposted';
        ELSIF EXISTS (SELECT 1 FROM mpesa_requests q WHERE q.mpesa_receipt = s.transaction_id) THEN
            known := 'an STK push of ours holds it, unposted';
        ELSIF chama IS NULL THEN
            known := 'its account number names no chama';
        ELSIF s.amount_cents IS NULL OR s.amount_cents <= 0 THEN
            known := 'its amount is not whole shillings';
        ELSIF EXISTS (SELECT 1 FROM mpesa_requests q WHERE q.chama_id = chama AND q.amount_cents = s.amount_cents
                                                       AND q.status IN ('created', 'pushed', 'unknown')) THEN
            known := 'an STK push of that amount is still open';
        ELSIF EXISTS (SELECT 1 FROM journal_entries j
                        JOIN journal_lines jl ON jl.entry_id = j.id AND jl.side = 'debit'
                                             AND jl.amount_cents = s.amount_cents
                        JOIN ledger_accounts a ON a.id = jl.account_id AND a.kind = 'mpesa_float'
                        LEFT JOIN financial_audit_logs f ON f.details ->> 'journal_entry_id' = j.id::text
                       WHERE j.chama_id = chama AND j.reverses_entry_id IS NULL
                         AND j.created_at >= r.period_from AND j.created_at < r.period_to
                         AND f.external_reference IS NULL) THEN
            known := 'money of that amount was posted without a receipt: it may be this payment';
        END IF;
        IF known IS NULL THEN
            e := post_suspense(chama, s.amount_cents, s.transaction_id, 'c2b:' || s.transaction_id, 'system',
                               'reconcile:' || p_run,
                               format('reconcile %s: paybill %s, account "%s", confirmation never received', p_run,
                                      s.transaction_id, s.bill_ref), p_at);
        END IF;
        IF reconcile_item(p_run, 'receipt_missing_in_books', 'receipt:' || s.transaction_id, chama,
                          s.transaction_id, e, s.amount_cents, CASE WHEN e IS NULL THEN 'open' ELSE 'offered' END,
                          jsonb_build_object('bill_ref', s.bill_ref, 'date', s.trx_date_text,
                                             'type', s.transaction_type, 'why_not_offered', known), p_at)
           AND e IS NOT NULL THEN
            PERFORM reconcile_tell_officials(chama, 'sms_reconcile_offered',
                                             jsonb_build_object('receipt', s.transaction_id,
                                                                'amount', format_kes(s.amount_cents),
                                                                'date', coalesce(to_char(s.trx_at AT TIME ZONE r.time_zone, 'DD Mon'), '-')),
                                             'receipt:' || s.transaction_id);
        END IF;
    END LOOP;

    -- receipts carried by more than one live entry (statement's or period's)
    FOR s IN
        SELECT f.external_reference AS receipt, count(DISTINCT j.id)::integer AS n, min(j.chama_id) AS chama_id,
               max(f.amount_cents) AS cents, min(j.id) AS first_entry
          FROM financial_audit_logs f
          JOIN journal_entries j ON j.id = (f.details ->> 'journal_entry_id')::bigint
         WHERE f.external_reference IS NOT NULL AND j.reverses_entry_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM journal_entries x WHERE x.reverses_entry_id = j.id)
           AND (f.external_reference IN (SELECT l.transaction_id FROM reconcile_statement_lines l WHERE l.run_id = p_run)
                OR (j.created_at >= r.period_from AND j.created_at < r.period_to))
         GROUP BY f.external_reference
        HAVING count(DISTINCT j.id) > 1
    LOOP
        IF reconcile_item(p_run, 'receipt_duplicated', 'dup:' || s.receipt, s.chama_id, s.receipt, s.first_entry,
                          s.cents, 'open', jsonb_build_object('entries', s.n), p_at) THEN
            PERFORM reconcile_tell_officials(s.chama_id, 'sms_reconcile_duplicated',
                                             jsonb_build_object('receipt', s.receipt, 'amount', format_kes(s.cents),
                                                                'count', s.n),
                                             'dup:' || s.receipt);
        END IF;
    END LOOP;

    -- the period's M-Pesa entries whose receipt no statement lists
    FOR s IN
        SELECT j.id, j.chama_id, j.kind, j.created_at, jl.side, jl.amount_cents, f.external_reference AS receipt
          FROM journal_entries j
          JOIN journal_lines jl ON jl.entry_id = j.id
          JOIN ledger_accounts a ON a.id = jl.account_id AND a.kind = 'mpesa_float'
          LEFT JOIN financial_audit_logs f ON f.details ->> 'journal_entry_id' = j.id::text
         WHERE j.created_at >= r.period_from AND j.created_at < r.period_to AND j.reverses_entry_id IS NULL
           AND (f.external_reference IS NULL
                OR NOT EXISTS (SELECT 1 FROM reconcile_statement_lines l WHERE l.transaction_id = f.external_reference))
         ORDER BY j.id
    LOOP
        IF reconcile_item(p_run, 'entry_missing_in_statement', 'entry:' || s.id, s.chama_id, s.receipt, s.id,
                          s.amount_cents, 'open',
                          jsonb_build_object('entry_kind', s.kind, 'side', s.side,
                                             'date', to_char(s.created_at AT TIME ZONE r.time_zone, 'YYYY-MM-DD HH24:MI:SS')), p_at) THEN
            PERFORM reconcile_tell_officials(s.chama_id, 'sms_reconcile_unlisted',
                                             jsonb_build_object('receipt', coalesce(s.receipt, '-'),
                                                                'amount', format_kes(s.amount_cents),
                                                                'date', to_char(s.created_at AT TIME ZONE r.time_zone, 'DD Mon')),
                                             'entry:' || s.id);
        END IF;
    END LOOP;

    -- the float after the offers above: what the books hold now
    SELECT coalesce(sum(a.balance_cents), 0) INTO lf FROM ledger_accounts a WHERE a.kind = 'mpesa_float';
    IF r.balance_state = 'reported' AND r.balance_reported_cents <> lf THEN
        PERFORM reconcile_item(p_run, 'float_mismatch', 'float:' || lf || ':' || r.balance_reported_cents, NULL,
                               NULL, NULL, abs(r.balance_reported_cents - lf), 'open',
                               jsonb_build_object('ledger_cents', lf, 'reported_cents', r.balance_reported_cents),
                               p_at);
    ELSIF r.balance_state <> 'reported' THEN
        PERFORM reconcile_item(p_run, 'balance_unknown', 'balance:' || p_run, NULL, NULL, NULL, NULL, 'open',
                               jsonb_build_object('ledger_cents', lf,
                                                  'detail', coalesce(r.balance_detail, 'no Account Balance result')),
                               p_at);
    END IF;

    SELECT count(*), count(*) FILTER (WHERE i.is_new) INTO total, fresh FROM reconcile_items i WHERE i.run_id = p_run;
    UPDATE reconcile_runs SET status = 'done', ledger_float_cents = lf, differences = total, new_differences = fresh,
                              finished_at = p_at, lease_until = NULL
     WHERE id = p_run;
    RETURN total;
END
$$;

-- The Account Balance result (or its timeout, p_timeout), as any daemon's
-- route received it, matched to its run by any of the names the query had.
-- p_cents: the reconciled account's available funds from the result (-1:
-- not in it).  Recorded once; then, if the run's statement is in, the run
-- is compared.  Returns the run and its differences (NULL: not compared by
-- this call); no row for a result of no run of ours (ignored).
CREATE OR REPLACE FUNCTION reconcile_balance_result(p_originator text, p_conversation text, p_result_code bigint,
                                                    p_desc text, p_cents bigint, p_raw text, p_timeout boolean,
                                                    p_account text, p_at timestamptz)
RETURNS TABLE (run_id bigint, differences integer)
LANGUAGE plpgsql AS $$
DECLARE
    r reconcile_runs%ROWTYPE;
BEGIN
    SELECT * INTO r FROM reconcile_runs x
     WHERE x.status = 'running' AND x.balance_state IN ('asked', 'unknown')
       AND (x.balance_originator = p_originator OR x.balance_ack_originator = p_originator
            OR x.balance_conversation = p_conversation)
     ORDER BY x.id DESC LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF NOT p_timeout AND p_result_code = 0 AND p_cents >= 0 THEN
        UPDATE reconcile_runs SET balance_state = 'reported', balance_reported_cents = p_cents,
                                  balance_detail = left(p_raw, 1000)
         WHERE id = r.id;
    ELSE
        UPDATE reconcile_runs
           SET balance_state = 'unknown',
               balance_detail = left(CASE WHEN p_timeout THEN 'the query timed out in the queue: ' || coalesce(p_desc, '')
                                          WHEN p_result_code <> 0 THEN 'ResultCode ' || p_result_code || ': '
                                                                       || coalesce(p_desc, '')
                                          ELSE 'no "' || p_account || '" in AccountBalance: ' || coalesce(p_raw, '')
                                     END, 1000)
         WHERE id = r.id;
    END IF;
    RETURN QUERY SELECT r.id, reconcile_compare(r.id, p_at);
END
$$;

-- The claimant's wait for the balance is over (or the query was refused):
-- a balance not reported by now is unknown, and the run is compared.
-- Returns the differences, NULL when the run is no longer this claimant's
-- or was compared already.
CREATE OR REPLACE FUNCTION reconcile_finish(p_run bigint, p_me text, p_attempt integer, p_wait_s integer,
                                            p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM reconcile_runs WHERE id = p_run FOR UPDATE;
    IF NOT reconcile_holds(p_run, p_me, p_attempt) THEN
        RETURN NULL;
    END IF;
    UPDATE reconcile_runs
       SET balance_state = 'unknown',
           balance_detail = coalesce(balance_detail, 'no Account Balance result within ' || p_wait_s || ' s')
     WHERE id = p_run AND balance_state <> 'reported';
    RETURN reconcile_compare(p_run, p_at);
END
$$;

-- The statement could not be had: the run failed (p_error says why).
CREATE OR REPLACE FUNCTION reconcile_fail(p_run bigint, p_me text, p_attempt integer, p_error text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE reconcile_runs SET status = 'failed', error = left(p_error, 500), finished_at = now(), lease_until = NULL
     WHERE id = p_run AND status = 'running' AND claimed_by = p_me AND attempts = p_attempt;
    RETURN FOUND;
END
$$;
