-- schema/50_mpesa.sql: mpesa: settling an STK push from its callback.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- An operator alert about M-Pesa money, once per (kind, row): the row (a
-- daemon logs and counts it, mpesa.c), and when it names a chama an SMS to
-- its treasurer and chairperson in their language (p_vars: the template's
-- variables; p_template: sms_mpesa_alert_stk or sms_mpesa_alert_c2b, with
-- "why" a translated part).  Returns the alert's id, NULL when it was raised
-- before.
CREATE OR REPLACE FUNCTION mpesa_alert(p_kind text, p_chama bigint, p_ref_table text, p_ref_id bigint,
                                       p_details jsonb, p_template text, p_vars jsonb, p_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a bigint;
    o record;
BEGIN
    INSERT INTO mpesa_alerts (kind, chama_id, ref_table, ref_id, details)
    VALUES (p_kind, p_chama, p_ref_table, p_ref_id, coalesce(p_details, '{}') || jsonb_build_object('at', p_at))
    ON CONFLICT ON CONSTRAINT mpesa_alerts_once DO NOTHING
    RETURNING id INTO a;
    IF a IS NULL OR p_chama IS NULL THEN
        RETURN a;
    END IF;
    FOR o IN SELECT m.user_id FROM memberships m
              WHERE m.chama_id = p_chama AND m.status = 'active' AND m.role IN ('treasurer', 'chairperson')
              ORDER BY m.user_id
    LOOP
        -- priority 2: someone should look this minute (wakes every sender)
        PERFORM notify(o.user_id, 'mpesa_alert', p_template,
                       p_vars || jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = p_chama)),
                       2, 'mpesa_alert:' || a || ':' || o.user_id, p_chama);
    END LOOP;
    RETURN a;
END
$$;

-- Settles one STK push, once: whoever comes first (a confirmed callback,
-- the status query) decides; later reports change nothing.
--
-- Credit only what M-Pesa confirmed: a success callback (p_source
-- 'callback', p_result_code 0) is posted only with p_confirm_code 0, the
-- ResultCode the STK push query gave for the same CheckoutRequestID.  A
-- query that says otherwise (p_confirm_code <> 0), or the status query job
-- reporting a failure while a success callback waits for its confirmation,
-- posts nothing: the request is 'contradicted' and the officials alerted.
-- A success callback without a confirmation is a caller's bug: nothing is
-- decided ('unconfirmed').  While a success callback waits for its own
-- query, the job's success answer leaves the decision to it (the callback
-- carries the receipt the member's SMS names).
--
-- Success with an amount past p_max_cents ([mpesa] max_amount) posts
-- nothing: 'flagged', alerted.  Success with another amount or phone goes to
-- suspense ('mismatch'); the right one posts the contribution (receipt SMS
-- in the outbox), or for purpose 'loan' the loan's repayment (loan_repay,
-- its own receipt SMS); a failure code marks it failed and queues the member's
-- notice.  The money is posted dated p_at.  Returns the request's final
-- status and whether this call set it.
-- the signatures before ledger_post (without p_at) and before issue 10
-- (without the confirmation and the limit)
DROP FUNCTION IF EXISTS mpesa_settle(text, integer, text, text, bigint, text, text, text, text);
DROP FUNCTION IF EXISTS mpesa_settle(text, integer, text, text, bigint, text, text, text, text, timestamptz);
CREATE OR REPLACE FUNCTION mpesa_settle(p_checkout text, p_result_code integer, p_result_desc text, p_receipt text,
                             p_amount_cents bigint, p_phone text, p_source text,
                             p_receipt_body text, p_failure_body text, p_at timestamptz,
                             p_confirm_code integer, p_max_cents bigint)
RETURNS TABLE (status text, settled_now boolean, contribution_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r mpesa_requests%ROWTYPE;
    k bigint;
    cb mpesa_callbacks%ROWTYPE;
    why text;
BEGIN
    SELECT * INTO r FROM mpesa_requests WHERE checkout_request_id = p_checkout FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, false, NULL::bigint;
        RETURN;
    END IF;
    IF r.status NOT IN ('created', 'pushed') THEN
        RETURN QUERY SELECT r.status, false, r.contribution_id;
        RETURN;
    END IF;
    IF p_source = 'callback' AND p_result_code = 0 AND p_confirm_code IS NULL THEN
        RETURN QUERY SELECT 'unconfirmed'::text, false, NULL::bigint;
        RETURN;
    END IF;
    PERFORM audit_context('mpesa', r.phone, p_checkout, NULL);
    -- the newest success callback still waiting for its confirmation
    SELECT * INTO cb FROM mpesa_callbacks c
     WHERE c.checkout_request_id = p_checkout AND c.result_code = 0 AND c.status = 'received'
     ORDER BY c.id DESC LIMIT 1;
    IF p_source = 'query' AND p_result_code = 0 AND cb.id IS NOT NULL THEN
        RETURN QUERY SELECT r.status, false, NULL::bigint;
        RETURN;
    END IF;
    IF (p_source = 'callback' AND p_result_code = 0 AND p_confirm_code <> 0)
       OR (p_source = 'query' AND p_result_code <> 0 AND cb.id IS NOT NULL) THEN
        UPDATE mpesa_requests SET status = 'contradicted',
               result_code = coalesce(p_confirm_code, p_result_code),
               result_desc = left('callback said paid; the query: ' || coalesce(p_result_desc, ''), 300),
               settled_by = p_source, completed_at = now()
         WHERE id = r.id;
        PERFORM mpesa_alert('stk_contradicted', r.chama_id, 'mpesa_requests', r.id,
                            jsonb_build_object('checkout', p_checkout, 'query_code', coalesce(p_confirm_code, p_result_code),
                                               'query_desc', p_result_desc,
                                               'callback_receipt', coalesce(p_receipt, cb.mpesa_receipt),
                                               'callback_amount_cents', coalesce(p_amount_cents, cb.amount_cents)),
                            'sms_mpesa_alert_stk',
                            jsonb_build_object('amount', format_kes(r.amount_cents),
                                               'member', (SELECT u.full_name FROM users u WHERE u.id = r.user_id),
                                               'ref', coalesce(nullif(coalesce(p_receipt, cb.mpesa_receipt), ''),
                                                               p_checkout),
                                               'why', jsonb_build_object('template', 'sms_mpesa_why_contradicted')),
                            p_at);
        RETURN QUERY SELECT 'contradicted'::text, true, NULL::bigint;
        RETURN;
    END IF;
    IF p_result_code = 0 AND p_max_cents IS NOT NULL AND coalesce(p_amount_cents, r.amount_cents) > p_max_cents THEN
        UPDATE mpesa_requests SET status = 'flagged', result_code = 0,
               result_desc = left(format('paid %s cents: past the limit of %s', p_amount_cents, p_max_cents), 300),
               settled_by = p_source, completed_at = now()
         WHERE id = r.id;
        PERFORM mpesa_alert('stk_over_limit', r.chama_id, 'mpesa_requests', r.id,
                            jsonb_build_object('checkout', p_checkout, 'amount_cents', p_amount_cents,
                                               'receipt', p_receipt, 'max_cents', p_max_cents),
                            'sms_mpesa_alert_stk',
                            jsonb_build_object('amount', format_kes(p_amount_cents),
                                               'member', (SELECT u.full_name FROM users u WHERE u.id = r.user_id),
                                               'ref', coalesce(nullif(p_receipt, ''), p_checkout),
                                               'why', jsonb_build_object('template', 'sms_mpesa_why_over_limit')),
                            p_at);
        RETURN QUERY SELECT 'flagged'::text, true, NULL::bigint;
        RETURN;
    END IF;
    IF p_result_code = 0 AND (p_amount_cents IS DISTINCT FROM r.amount_cents
                              OR (p_phone IS NOT NULL AND p_phone <> r.phone)) THEN
        PERFORM post_suspense(r.chama_id, p_amount_cents, p_receipt, 'mpesa:' || p_checkout || ':mismatch', 'mpesa',
                              p_checkout, format('STK %s: paid %s cents from %s, expected %s from %s', p_checkout,
                                                 p_amount_cents, p_phone, r.amount_cents, r.phone), p_at);
        UPDATE mpesa_requests SET status = 'mismatch', result_code = 0, result_desc = left(p_result_desc, 300),
               mpesa_receipt = p_receipt, settled_by = p_source, completed_at = now()
         WHERE id = r.id;
        RETURN QUERY SELECT 'mismatch'::text, true, NULL::bigint;
        RETURN;
    END IF;
    IF p_result_code = 0 AND r.purpose = 'loan' THEN
        -- a loan's repayment (schema/74_loan_repay.sql), with its own
        -- receipt SMS; the M-Pesa receipt is its external reference
        SELECT x.repayment_id INTO k
          FROM loan_repay(r.loan_id, r.amount_cents, 'mpesa', '{"kind": "mpesa_float"}', 'mpesa:' || p_checkout,
                          'mpesa_requests', r.id, NULL, 'mpesa', p_at) x;
        IF k IS NULL THEN
            -- the loan took nothing (a bug: a request is made only for a
            -- loan paid out): the money waits in suspense, never dropped
            PERFORM post_suspense(r.chama_id, r.amount_cents, p_receipt, 'mpesa:' || p_checkout || ':loan', 'mpesa',
                                  p_checkout, format('STK %s for loan %s not taken', p_checkout, r.loan_id), p_at);
        END IF;
        UPDATE loan_repayments x SET external_reference = left(nullif(btrim(p_receipt), ''), 100)
         WHERE x.id = k AND NOT EXISTS (SELECT 1 FROM loan_repayments y WHERE y.external_reference = btrim(p_receipt));
        UPDATE mpesa_requests SET status = 'confirmed', result_code = 0, result_desc = left(p_result_desc, 300),
               mpesa_receipt = p_receipt, settled_by = p_source, completed_at = now()
         WHERE id = r.id;
        RETURN QUERY SELECT 'confirmed'::text, true, NULL::bigint;
        RETURN;
    END IF;
    IF p_result_code = 0 THEN
        SELECT pc.contribution_id INTO k
          FROM post_contribution(r.chama_id, r.user_id, r.amount_cents, r.purpose, 'mpesa', p_receipt,
                                 'mpesa:' || p_checkout, NULL, 'mpesa', r.phone, p_checkout,
                                 p_receipt_body, p_at) pc;  -- the receipt's template: receipt = p_receipt
        UPDATE mpesa_requests SET status = 'confirmed', result_code = 0, result_desc = left(p_result_desc, 300),
               mpesa_receipt = p_receipt, contribution_id = k, settled_by = p_source, completed_at = now()
         WHERE id = r.id;
        RETURN QUERY SELECT 'confirmed'::text, true, k;
        RETURN;
    END IF;
    UPDATE mpesa_requests SET status = 'failed', result_code = p_result_code, result_desc = left(p_result_desc, 300),
           settled_by = p_source, completed_at = now()
     WHERE id = r.id;
    -- p_failure_body names the notice's SMS template (sms_mpesa_failed_<code>)
    IF p_failure_body IS NOT NULL THEN
        PERFORM notify(r.user_id, 'mpesa_failed', p_failure_body,
                       jsonb_build_object('amount', format_kes(r.amount_cents),
                                          'chama', (SELECT c.name FROM chamas c WHERE c.id = r.chama_id),
                                          'desc', p_result_desc),
                       3, 'mpesa:' || p_checkout || ':failed', r.chama_id);
    END IF;
    RETURN QUERY SELECT 'failed'::text, true, NULL::bigint;
END
$$;

-- The alerts no daemon has logged yet, claimed for logging (one daemon logs
-- each: SKIP LOCKED, and logged_at set in the same statement).
CREATE OR REPLACE FUNCTION mpesa_alerts_claim(p_limit int)
RETURNS TABLE (id bigint, kind text, chama_id bigint, ref_table text, ref_id bigint, details jsonb)
LANGUAGE sql AS $$
    UPDATE mpesa_alerts a SET logged_at = now()
      FROM (SELECT x.id FROM mpesa_alerts x WHERE x.logged_at IS NULL ORDER BY x.id
            LIMIT p_limit FOR UPDATE SKIP LOCKED) due
     WHERE a.id = due.id
    RETURNING a.id, a.kind, a.chama_id, a.ref_table, a.ref_id, a.details
$$;
