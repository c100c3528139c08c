-- schema/50_mpesa.sql: mpesa: settling an STK push from its callback.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- Settles one STK push, once: whoever comes first (callback, resent
-- callback, status query) decides; later reports change nothing.  Success
-- with the right amount and phone posts the contribution (receipt SMS in the
-- outbox); a wrong amount or phone goes to suspense and the request is
-- marked mismatch; a failure code marks it failed and queues the member's
-- notice.  The money is posted dated p_at.  Returns the request's final
-- status and whether this call set it.
-- the signature before ledger_post (without p_at)
DROP FUNCTION IF EXISTS mpesa_settle(text, integer, text, text, bigint, text, text, text, text);
CREATE OR REPLACE FUNCTION mpesa_settle(p_checkout text, p_result_code integer, p_result_desc text, p_receipt text,
                             p_amount_cents bigint, p_phone text, p_source text,
                             p_receipt_body text, p_failure_body text, p_at timestamptz)
RETURNS TABLE (status text, settled_now boolean, contribution_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r mpesa_requests%ROWTYPE;
    k bigint;
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
    PERFORM audit_context('mpesa', r.phone, p_checkout, NULL);
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
