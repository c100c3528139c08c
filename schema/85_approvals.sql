-- schema/85_approvals.sql: approvals: dual control (requests several officials decide), the members' veto window.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views, the triggers of
-- its tables.  Migrations never call what is defined here.
--
-- The tables are migration 020's.  The rule: a request of chama C needs
-- `required` distinct officials of C (the roles of policy approvals.decide,
-- active members), never the maker, never the beneficiary.  required is the
-- constitution's approvals_count, else the approvals of the kind's policy
-- row (money.payment_reverse: 2), else 2; a chama with fewer eligible
-- officials than that is refused at opening (err_approvers_too_few).
--
-- Rejection: a request is rejected as soon as enough officials rejected it
-- that the approvals can no longer be reached (eligible - rejections <
-- required).  In a chama of three officials with the default rule that is
-- the first reject (the maker cannot vote, so both others must approve); a
-- constitution asking for 2 of a larger body lets one official's "no" be
-- outvoted.  Either way nobody waits for the expiry of a request that can
-- no longer pass.
--
-- Once decided, the kind's function runs once, in the same transaction:
-- <kind>_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text
-- ('approved' | 'rejected' | 'expired'), p_at timestamptz) RETURNS text (an
-- outcome key, kept in approvals.result, or NULL).  On 'approved' it does
-- the thing and tells the beneficiary what happened (a reversal notice, a
-- payment); on 'rejected' and 'expired' it releases what it held, and this
-- file tells the maker and the beneficiary.
--
-- The members' veto window (constitution, off by default): a payout or cash
-- payout above veto_threshold_cents, once approved, waits veto_hours
-- (default 24; status waiting) and every active member gets an SMS with its
-- code; STOP <code> <PIN> from veto_count members (default 1) freezes it:
-- its votes no longer count (kept, as round 1), the officials are told and
-- decide again (round 2, pending), and that decision is final.  When the
-- window closes unfrozen the job runs the kind's function.
--
-- A loan's request (kind 'loan', and calling its pledges, writing it off)
-- is decided by neither the borrower nor any guarantor of that loan: the
-- request carries them in excluded_user_ids (migration 024), and every
-- count of eligible officials leaves them out with the maker and the
-- beneficiary.
--
-- Every step is audited: the rows of the three tables carry the audit
-- trigger (audit_row_change, with the actor and channel the caller's
-- audit_context set), so the opening, each vote, each STOP and each change
-- of status is an audit_logs row.

-- The signatures before the excluded officials (issue 11): the new ones
-- take them as a last parameter with a default, so every caller reads the
-- same; the old ones would make such calls ambiguous.
DROP FUNCTION IF EXISTS approval_officials(bigint, bigint, bigint);
DROP FUNCTION IF EXISTS approval_open(bigint, text, bigint, bigint, bigint, bigint, jsonb, text, timestamptz);

CREATE OR REPLACE TRIGGER approvals_set_updated_at BEFORE UPDATE ON approvals
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE OR REPLACE TRIGGER approvals_audit AFTER INSERT OR UPDATE OR DELETE ON approvals
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE OR REPLACE TRIGGER approval_votes_audit AFTER INSERT OR UPDATE OR DELETE ON approval_votes
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE OR REPLACE TRIGGER approval_vetoes_audit AFTER INSERT OR UPDATE OR DELETE ON approval_vetoes
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();

-- A whole number of the constitution within [lo, hi], else def (a value
-- that is not an integer is a rule nobody can read: the default stands).
CREATE OR REPLACE FUNCTION approval_rule(c jsonb, k text, def bigint, lo bigint, hi bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c -> k) = 'number' AND (c ->> k) ~ '^[0-9]{1,15}$'
                     AND (c ->> k)::bigint BETWEEN lo AND hi
                THEN (c ->> k)::bigint ELSE def END
$$;

-- The kinds and their functions: a fixed list, so a kind is never a name
-- taken from input.  Raises for anything else (a bug).
CREATE OR REPLACE FUNCTION approval_kind_function(p_kind text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('payment_reverse', 'payout', 'cash_payout', 'loan', 'loan_call',
                                        'loan_write_off', 'loan_offset', 'loan_repay_reverse') THEN
        RAISE EXCEPTION 'no approval kind "%"', p_kind USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_kind || '_on_approval';
END
$$;

-- The officials who may decide a request of the chama: active members in a
-- role of approvals.decide, never the maker, never the beneficiary, never
-- one of p_excluded (a loan's guarantors).
CREATE OR REPLACE FUNCTION approval_officials(p_chama bigint, p_maker bigint, p_beneficiary bigint,
                                              p_excluded bigint[] DEFAULT '{}')
RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id AND u.deleted_at IS NULL
     WHERE m.chama_id = p_chama AND m.status = 'active'
       AND m.role = ANY ((SELECT roles FROM policy_actions WHERE action = 'approvals.decide')::text[])
       AND m.user_id <> p_maker AND m.user_id IS DISTINCT FROM p_beneficiary
       AND m.user_id <> ALL (coalesce(p_excluded, '{}'))
     ORDER BY m.user_id
$$;

-- Six characters of A-Z and 2-9 without I, L, O, 0 and 1 (read aloud and
-- typed on a phone keypad without doubt).  Not a secret: the PIN is.
CREATE OR REPLACE FUNCTION approval_new_code() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('ABCDEFGHJKMNPQRSTUVWXYZ23456789', 1 + floor(random() * 31)::int, 1), '')
      FROM generate_series(1, 6)
$$;

-- The words of a request for the officials' SMS: {"template", "vars"},
-- rendered in each recipient's language by the sender.
CREATE OR REPLACE FUNCTION approval_what(a approvals) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('template', 'sms_approval_what_' || a.kind, 'vars', a.vars)
$$;

-- Opens a request.  Outcome: ok_approval_opened (with its id and code);
-- err_approval_pending (one is open already for the same kind and ref: its
-- id and code); err_approvers_too_few (the chama has fewer eligible
-- officials than its rule needs).  The eligible officials get an SMS with
-- the code.  The caller checks its own policy and sets the audit context.
-- p_excluded: who else may not decide it (a loan's guarantors), kept in
-- approvals.excluded_user_ids.
CREATE OR REPLACE FUNCTION approval_open(p_chama bigint, p_kind text, p_ref_id bigint, p_amount_cents bigint,
                                         p_maker bigint, p_beneficiary bigint, p_vars jsonb, p_channel text,
                                         p_at timestamptz, p_excluded bigint[] DEFAULT '{}')
RETURNS TABLE (outcome text, approval_id bigint, code text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    fn text := approval_kind_function(p_kind);
    ch chamas%ROWTYPE;
    a approvals%ROWTYPE;
    need int;
    n int;
    o bigint;
BEGIN
    IF to_regprocedure(fn || '(bigint, bigint, text, timestamptz)') IS NULL THEN
        RAISE EXCEPTION 'approval kind "%" has no function %(bigint, bigint, text, timestamptz)', p_kind, fn
            USING ERRCODE = 'undefined_function';
    END IF;
    -- the chama's row lock: two requests for one thing open one
    SELECT * INTO ch FROM chamas WHERE id = p_chama FOR UPDATE;
    SELECT * INTO a FROM approvals x WHERE x.kind = p_kind AND x.ref_id = p_ref_id AND x.status IN ('pending', 'waiting');
    IF FOUND THEN
        RETURN QUERY SELECT 'err_approval_pending'::text, a.id, a.code;
        RETURN;
    END IF;
    need := approval_rule(ch.constitution, 'approvals_count',
                          coalesce((SELECT pa.approvals FROM policy_actions pa
                                     WHERE pa.action = CASE p_kind WHEN 'payment_reverse' THEN 'money.payment_reverse'
                                                                   WHEN 'loan_call' THEN 'loans.call_pledges'
                                                                   WHEN 'loan_write_off' THEN 'loans.write_off'
                                                                   ELSE 'money.' || p_kind END), 2), 1, 9);
    SELECT count(*) INTO n FROM approval_officials(p_chama, p_maker, p_beneficiary, p_excluded);
    IF n < need THEN
        RETURN QUERY SELECT 'err_approvers_too_few'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    LOOP
        BEGIN
            INSERT INTO approvals (chama_id, kind, ref_id, amount_cents, maker_user_id, beneficiary_user_id, vars,
                                   required, code, round_at, channel, created_at, excluded_user_ids)
            VALUES (p_chama, p_kind, p_ref_id, p_amount_cents, p_maker, p_beneficiary, coalesce(p_vars, '{}'), need,
                    approval_new_code(), p_at, p_channel, p_at, coalesce(p_excluded, '{}'))
            RETURNING * INTO a;
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            -- a code an open request holds: draw again (the ref is locked
            -- by the chama's row, so this is the code's index)
            NULL;
        END;
    END LOOP;
    FOR o IN SELECT * FROM approval_officials(p_chama, p_maker, p_beneficiary, p_excluded) LOOP
        PERFORM notify(o, 'approval', 'sms_approval_request',
                       jsonb_build_object('chama', ch.name, 'maker', (SELECT full_name FROM users WHERE id = p_maker),
                                          'what', approval_what(a), 'amount', format_kes(p_amount_cents),
                                          'code', a.code),
                       3, 'approval:' || a.id || ':request:' || o, p_chama);
    END LOOP;
    RETURN QUERY SELECT 'ok_approval_opened'::text, a.id, a.code;
END
$$;

-- Runs the kind's function (the list is fixed: approval_kind_function) and
-- returns its answer.  The function may set the audit context to its own
-- actor (payment_reverse does, to the official who asked); the rest of
-- the statement is the deciding official's (or the job's) again.
CREATE OR REPLACE FUNCTION approval_dispatch(a approvals, p_decision text, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r text;
    chan text := audit_setting('chamad.channel');
    phone text := audit_setting('chamad.msisdn');
    req text := audit_setting('chamad.request_id');
    actor bigint := audit_actor();
BEGIN
    EXECUTE format('SELECT %I($1, $2, $3, $4)::text', approval_kind_function(a.kind))
       INTO r USING a.id, a.ref_id, p_decision, p_at;
    PERFORM audit_context(chan, phone, req, actor);
    RETURN left(r, 64);
END
$$;

-- The maker (and, when the request went against them or ran out, the
-- beneficiary) hear how a request ended.
CREATE OR REPLACE FUNCTION approval_tell_decided(a approvals, p_decision text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = a.chama_id), 'code', a.code,
                                  'what', approval_what(a), 'amount', format_kes(a.amount_cents));
BEGIN
    PERFORM notify(a.maker_user_id, 'approval', 'sms_approval_' || p_decision, v, 4,
                   'approval:' || a.id || ':' || p_decision || ':maker', a.chama_id);
    IF a.beneficiary_user_id IS NOT NULL AND a.beneficiary_user_id <> a.maker_user_id
       AND p_decision IN ('rejected', 'expired') THEN
        PERFORM notify(a.beneficiary_user_id, 'approval', 'sms_approval_' || p_decision || '_for', v, 4,
                       'approval:' || a.id || ':' || p_decision || ':beneficiary', a.chama_id);
    END IF;
END
$$;

-- Approved and past any veto window: the kind's function runs, once (the
-- caller holds the row's lock and saw it open).
CREATE OR REPLACE FUNCTION approval_execute(p_id bigint, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    a approvals%ROWTYPE;
    r text;
BEGIN
    UPDATE approvals SET status = 'executed', decided_at = p_at, veto_until = NULL WHERE id = p_id
       AND status IN ('pending', 'waiting') RETURNING * INTO a;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'approval % is not open', p_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := approval_dispatch(a, 'approved', p_at);
    UPDATE approvals SET result = r WHERE id = p_id;
    PERFORM approval_tell_decided(a, 'approved');
    RETURN r;
END
$$;

-- Rejected or expired: the kind's function hears it (to release what it
-- held), the maker and the beneficiary are told.
CREATE OR REPLACE FUNCTION approval_close(p_id bigint, p_decision text, p_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    a approvals%ROWTYPE;
BEGIN
    UPDATE approvals SET status = p_decision, decided_at = p_at, veto_until = NULL WHERE id = p_id
       AND status IN ('pending', 'waiting') RETURNING * INTO a;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'approval % is not open', p_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE approvals SET result = approval_dispatch(a, p_decision, p_at) WHERE id = p_id;
    PERFORM approval_tell_decided(a, p_decision);
END
$$;

-- Approved: the veto window opens if the chama's rule says so, else the
-- kind's function runs.  Returns the outcome key.
CREATE OR REPLACE FUNCTION approval_approved(p_id bigint, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    a approvals%ROWTYPE;
    c jsonb;
    hrs bigint;
    m record;
BEGIN
    SELECT * INTO a FROM approvals WHERE id = p_id;
    SELECT constitution INTO c FROM chamas WHERE id = a.chama_id;
    IF a.kind IN ('payout', 'cash_payout') AND a.round = 1 AND approval_rule(c, 'veto_threshold_cents', -1, 0,
                                                                                9000000000000000) >= 0
       AND a.amount_cents > approval_rule(c, 'veto_threshold_cents', -1, 0, 9000000000000000) THEN
        hrs := approval_rule(c, 'veto_hours', 24, 1, 720);
        UPDATE approvals SET status = 'waiting', veto_until = p_at + make_interval(hours => hrs::int),
                             veto_count = approval_rule(c, 'veto_count', 1, 1, 1000)
         WHERE id = p_id RETURNING * INTO a;
        FOR m IN SELECT ms.user_id FROM memberships ms JOIN users u ON u.id = ms.user_id AND u.deleted_at IS NULL
                  WHERE ms.chama_id = a.chama_id AND ms.status = 'active' ORDER BY ms.user_id LOOP
            PERFORM notify(m.user_id, 'approval', 'sms_approval_veto',
                           jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = a.chama_id),
                                              'what', approval_what(a), 'amount', format_kes(a.amount_cents),
                                              'code', a.code, 'hours', hrs),
                           5, 'approval:' || a.id || ':veto:' || m.user_id, a.chama_id);
        END LOOP;
        PERFORM notify(a.maker_user_id, 'approval', 'sms_approval_waiting',
                       jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = a.chama_id), 'code', a.code,
                                          'what', approval_what(a), 'amount', format_kes(a.amount_cents),
                                          'hours', hrs),
                       4, 'approval:' || a.id || ':waiting:maker', a.chama_id);
        RETURN 'ok_approval_waiting';
    END IF;
    PERFORM approval_execute(p_id, p_at);
    RETURN 'ok_approval_done';
END
$$;

-- An official decides a request by its code (p_vote 'approve' or
-- 'reject'), dated p_at.  Outcome: ok_vote_counted (more approvals needed),
-- ok_reject_counted (the request can still pass), ok_approval_done (the
-- last approval: the kind's function ran), ok_approval_waiting (approved,
-- in the members' veto window), ok_approval_rejected; err_no_approval (no
-- request with that code in the official's chamas), err_approval_closed
-- (decided, expired or in its veto window), err_not_official,
-- err_own_request (the maker), err_beneficiary, err_guarantor (one of the
-- request's excluded officials: a guarantor of the loan), err_already_voted.  With
-- the request's id, status, approvals, rejections and required count, code
-- and chama name.
CREATE OR REPLACE FUNCTION approval_vote(p_user bigint, p_code text, p_vote text, p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, status text, approvals int, rejections int, required int,
               code text, chama text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a approvals%ROWTYPE;
    ayes int;
    nays int;
    eligible int;
    o text;
    cname text;
BEGIN
    IF p_vote IS NULL OR p_vote NOT IN ('approve', 'reject') THEN
        RAISE EXCEPTION 'a vote is approve or reject, not %', p_vote USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x.* INTO a FROM approvals x JOIN memberships m ON m.chama_id = x.chama_id AND m.user_id = p_user
                                                          AND m.status = 'active'
     WHERE x.code = upper(btrim(p_code)) AND x.status IN ('pending', 'waiting')
       FOR UPDATE OF x;
    IF NOT FOUND THEN
        SELECT x.* INTO a FROM approvals x JOIN memberships m ON m.chama_id = x.chama_id AND m.user_id = p_user
                                                              AND m.status = 'active'
         WHERE x.code = upper(btrim(p_code)) ORDER BY x.id DESC LIMIT 1;
        RETURN QUERY SELECT CASE WHEN FOUND THEN 'err_approval_closed' ELSE 'err_no_approval' END, a.id, a.status,
                            NULL::int, NULL::int, a.required, a.code, (SELECT name FROM chamas WHERE id = a.chama_id);
        RETURN;
    END IF;
    SELECT name INTO cname FROM chamas WHERE id = a.chama_id;
    o := CASE WHEN a.status <> 'pending' THEN 'err_approval_closed'
              WHEN NOT policy_allows(p_user, a.chama_id, 'approvals.decide') THEN 'err_not_official'
              WHEN p_user = a.maker_user_id THEN 'err_own_request'
              WHEN p_user = a.beneficiary_user_id THEN 'err_beneficiary'
              WHEN p_user = ANY (a.excluded_user_ids) THEN 'err_guarantor' END;
    IF o IS NULL THEN
        INSERT INTO approval_votes (approval_id, round, official_user_id, vote, channel, at)
        VALUES (a.id, a.round, p_user, p_vote, p_channel, p_at)
        ON CONFLICT ON CONSTRAINT approval_votes_once DO NOTHING;
        IF NOT FOUND THEN
            o := 'err_already_voted';
        END IF;
    END IF;
    SELECT count(*) FILTER (WHERE v.vote = 'approve'), count(*) FILTER (WHERE v.vote = 'reject')
      INTO ayes, nays FROM approval_votes v WHERE v.approval_id = a.id AND v.round = a.round;
    IF o IS NOT NULL THEN
        RETURN QUERY SELECT o, a.id, a.status, ayes, nays, a.required, a.code, cname;
        RETURN;
    END IF;
    SELECT count(*) INTO eligible FROM approval_officials(a.chama_id, a.maker_user_id, a.beneficiary_user_id,
                                                          a.excluded_user_ids);
    IF ayes >= a.required THEN
        o := approval_approved(a.id, p_at);
    ELSIF eligible - nays < a.required THEN
        PERFORM approval_close(a.id, 'rejected', p_at);
        o := 'ok_approval_rejected';
    ELSE
        o := CASE p_vote WHEN 'approve' THEN 'ok_vote_counted' ELSE 'ok_reject_counted' END;
        -- the maker hears each official's decision as it comes
        PERFORM notify(a.maker_user_id, 'approval', 'sms_approval_voted',
                       jsonb_build_object('chama', cname, 'code', a.code,
                                          'official', (SELECT full_name FROM users WHERE id = p_user),
                                          'vote', jsonb_build_object('template', 'sms_approval_word_' || p_vote),
                                          'yes', ayes, 'need', a.required),
                       5, 'approval:' || a.id || ':vote:' || a.round || ':' || p_user, a.chama_id);
    END IF;
    RETURN QUERY SELECT o, a.id, (SELECT x.status FROM approvals x WHERE x.id = a.id), ayes, nays, a.required, a.code,
                        cname;
END
$$;

-- A member says STOP to a request in its veto window.  Outcome:
-- ok_veto_counted, ok_veto_frozen (this STOP reached veto_count: the
-- request is pending again, its officials told to decide again),
-- err_no_veto (no request with that code in its window in the member's
-- chamas), err_already_vetoed.  With the id, the STOPs so far, the STOPs
-- needed and the code.
CREATE OR REPLACE FUNCTION approval_veto(p_user bigint, p_code text, p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, vetoes int, needed int, code text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a approvals%ROWTYPE;
    n int;
    o bigint;
BEGIN
    SELECT x.* INTO a FROM approvals x JOIN memberships m ON m.chama_id = x.chama_id AND m.user_id = p_user
                                                          AND m.status = 'active'
     WHERE x.code = upper(btrim(p_code)) AND x.status = 'waiting' AND x.veto_until > p_at
       FOR UPDATE OF x;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_no_veto'::text, NULL::bigint, NULL::int, NULL::int, upper(btrim(p_code));
        RETURN;
    END IF;
    INSERT INTO approval_vetoes (approval_id, member_user_id, channel, at) VALUES (a.id, p_user, p_channel, p_at)
    ON CONFLICT ON CONSTRAINT approval_vetoes_once DO NOTHING;
    IF NOT FOUND THEN
        SELECT count(*) INTO n FROM approval_vetoes v WHERE v.approval_id = a.id;
        RETURN QUERY SELECT 'err_already_vetoed'::text, a.id, n, a.veto_count, a.code;
        RETURN;
    END IF;
    SELECT count(*) INTO n FROM approval_vetoes v WHERE v.approval_id = a.id;
    IF n < a.veto_count THEN
        RETURN QUERY SELECT 'ok_veto_counted'::text, a.id, n, a.veto_count, a.code;
        RETURN;
    END IF;
    -- frozen: the officials decide again, and that decision is final
    UPDATE approvals SET status = 'pending', round = 2, round_at = p_at, frozen_at = p_at, veto_until = NULL
     WHERE id = a.id RETURNING * INTO a;
    FOR o IN SELECT * FROM approval_officials(a.chama_id, a.maker_user_id, a.beneficiary_user_id,
                                              a.excluded_user_ids)
             UNION SELECT a.maker_user_id LOOP
        PERFORM notify(o, 'approval', 'sms_approval_frozen',
                       jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = a.chama_id), 'code', a.code,
                                          'what', approval_what(a), 'amount', format_kes(a.amount_cents),
                                          'count', n),
                       3, 'approval:' || a.id || ':frozen:' || o, a.chama_id);
    END LOOP;
    RETURN QUERY SELECT 'ok_veto_frozen'::text, a.id, n, a.veto_count, a.code;
END
$$;

-- The job, at p_at: a request still pending p_hours after its round began
-- expires; one whose veto window closed unfrozen is carried out.  Each is
-- decided once (its row locked, its status re-checked); the advisory lock
-- keeps two runs from working at once.  Returns the requests decided, or
-- -1 when another run holds the lock.
CREATE OR REPLACE FUNCTION approvals_expire(p_at timestamptz, p_hours int) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100085) THEN
        RETURN -1;
    END IF;
    PERFORM audit_context('system', NULL, 'job:approvals', NULL);
    FOR r IN SELECT id, status FROM approvals
              WHERE (status = 'pending' AND round_at <= p_at - make_interval(hours => p_hours))
                 OR (status = 'waiting' AND veto_until <= p_at)
              ORDER BY id FOR UPDATE SKIP LOCKED LOOP
        IF r.status = 'waiting' THEN
            PERFORM approval_execute(r.id, p_at);
        ELSE
            PERFORM approval_close(r.id, 'expired', p_at);
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- ---- reversing a member's payment ----------------------------------------

-- An official asks to reverse a payment of their chama (policy
-- money.payment_reverse): a request of kind payment_reverse for two other
-- officials (the chama's rule), the payment's owner never among them.
-- Outcome: ok_approval_opened (with its code), err_not_official,
-- err_no_contribution (none in this chama), err_already_reversed,
-- err_approval_pending (asked already: that request's code),
-- err_approvers_too_few.  p_notice_body names the member's notice
-- (sms_reversed) that the reversal sends once approved.
CREATE OR REPLACE FUNCTION payment_reverse_request(p_chama bigint, p_contribution bigint, p_reason text,
                                                   p_actor bigint, p_channel text, p_msisdn text,
                                                   p_request_id text, p_notice_body text, p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, code text)
LANGUAGE plpgsql AS $$
DECLARE
    k contributions%ROWTYPE;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    IF NOT policy_allows(p_actor, p_chama, 'money.payment_reverse') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO k FROM contributions WHERE id = p_contribution AND chama_id = p_chama;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_no_contribution'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF k.status = 'reversed' THEN
        RETURN QUERY SELECT 'err_already_reversed'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT o.outcome, o.approval_id, o.code
                   FROM approval_open(p_chama, 'payment_reverse', p_contribution, k.amount_cents, p_actor, k.user_id,
                                      jsonb_build_object('member', (SELECT full_name FROM users WHERE id = k.user_id),
                                                         'date', to_char(k.contributed_at, 'DD Mon'),
                                                         'reason', p_reason, 'notice', p_notice_body),
                                      p_channel, p_at) o;
END
$$;

-- Decided: when approved, the payment is reversed by the books' own
-- operation for officials (payment_reverse, schema/40_money.sql), as the
-- official who asked, with the member's notice; otherwise nothing was held.
CREATE OR REPLACE FUNCTION payment_reverse_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
                                                       p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    a approvals%ROWTYPE;
    r text;
BEGIN
    IF p_decision <> 'approved' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO STRICT a FROM approvals WHERE id = p_approval_id;
    SELECT pr.outcome INTO r
      FROM payment_reverse(a.chama_id, p_ref_id, a.vars ->> 'reason', a.maker_user_id,
                           coalesce(audit_setting('chamad.channel'), a.channel), audit_setting('chamad.msisdn'),
                           'approval:' || a.id, a.vars ->> 'notice', p_at) pr;
    RETURN r;
END
$$;
