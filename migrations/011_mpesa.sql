-- 011_mpesa: M-Pesa Express (STK push) payment requests, and the one
-- function that settles one, whoever reports the outcome first (the
-- callback, a repeat of it, or the status query).

CREATE TABLE mpesa_requests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id            bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    phone               text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    -- whole shillings at the M-Pesa boundary
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0 AND amount_cents % 100 = 0),
    purpose             text NOT NULL DEFAULT 'savings' CHECK (purpose IN ('savings', 'welfare', 'shares')),
    account_ref         text NOT NULL CHECK (length(account_ref) BETWEEN 1 AND 12),
    idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    status              text NOT NULL DEFAULT 'created'
                        CHECK (status IN ('created', 'pushed', 'push_failed', 'confirmed', 'failed', 'expired',
                                          'mismatch')),
    merchant_request_id text CHECK (length(merchant_request_id) <= 64),
    checkout_request_id text CHECK (length(checkout_request_id) <= 64),
    result_code         integer,
    result_desc         text CHECK (length(result_desc) <= 300),
    mpesa_receipt       text CHECK (length(mpesa_receipt) <= 32),
    contribution_id     bigint REFERENCES contributions (id) ON DELETE RESTRICT,
    settled_by          text CHECK (settled_by IN ('callback', 'query')),
    query_attempts      integer NOT NULL DEFAULT 0 CHECK (query_attempts >= 0),
    next_query_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    pushed_at           timestamptz,
    completed_at        timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mpesa_requests_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT mpesa_requests_checkout_key UNIQUE (checkout_request_id),
    CONSTRAINT mpesa_requests_receipt_key UNIQUE (mpesa_receipt)
);
CREATE INDEX mpesa_requests_user_id_idx ON mpesa_requests (user_id, created_at DESC);
CREATE INDEX mpesa_requests_chama_id_idx ON mpesa_requests (chama_id, created_at DESC);
CREATE INDEX mpesa_requests_contribution_id_idx ON mpesa_requests (contribution_id);
-- the reconciliation job: pushed requests whose callback is overdue
CREATE INDEX mpesa_requests_query_due_idx ON mpesa_requests (next_query_at) WHERE status = 'pushed';
CREATE TRIGGER mpesa_requests_set_updated_at BEFORE UPDATE ON mpesa_requests
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER mpesa_requests_audit AFTER INSERT OR UPDATE OR DELETE ON mpesa_requests
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();

-- Money whose owner is not known yet (a wrong amount, a paybill account
-- number that names no member): debit the float, credit the chama's
-- suspense, for the treasurer to allocate.
CREATE FUNCTION post_suspense(p_chama bigint, p_cents bigint, p_ref text, p_key text, p_channel text,
                              p_request_id text, p_memo text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    e bigint;
BEGIN
    SELECT id INTO e FROM journal_entries WHERE idempotency_key = p_key;
    IF FOUND THEN
        RETURN e;
    END IF;
    PERFORM audit_context(p_channel, NULL, p_request_id, NULL);
    INSERT INTO journal_entries (chama_id, kind, ref_table, idempotency_key, channel, memo)
    VALUES (p_chama, 'c2b_unmatched', 'mpesa', p_key, p_channel, left(p_memo, 200))
    RETURNING id INTO e;
    INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
    VALUES (e, ledger_account(p_chama, 'mpesa_float', NULL), 'debit', p_cents),
           (e, ledger_account(p_chama, 'suspense', NULL), 'credit', p_cents);
    INSERT INTO financial_audit_logs (chama_id, action, entity_type, entity_id, amount_cents, direction, method,
                                      external_reference, idempotency_key, channel, request_id, details)
    VALUES (p_chama, 'suspense_received', 'journal_entries', e, p_cents, 'in', 'mpesa', p_ref,
            'suspense:' || p_key, p_channel, left(p_request_id, 64), jsonb_build_object('memo', p_memo));
    RETURN e;
END
$$;

-- Settles one STK push, once: whoever comes first (callback, resent
-- callback, status query) decides; later reports change nothing.  Success
-- with the right amount and phone posts the contribution (receipt SMS in the
-- outbox); a wrong amount or phone goes to suspense and the request is
-- marked mismatch; a failure code marks it failed and queues the member's
-- notice.  Returns the request's final status and whether this call set it.
CREATE FUNCTION mpesa_settle(p_checkout text, p_result_code integer, p_result_desc text, p_receipt text,
                             p_amount_cents bigint, p_phone text, p_source text,
                             p_receipt_body text, p_failure_body text)
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
                                                 p_amount_cents, p_phone, r.amount_cents, r.phone));
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
                                 replace(p_receipt_body, '{receipt}', coalesce(p_receipt, ''))) pc;
        UPDATE mpesa_requests SET status = 'confirmed', result_code = 0, result_desc = left(p_result_desc, 300),
               mpesa_receipt = p_receipt, contribution_id = k, settled_by = p_source, completed_at = now()
         WHERE id = r.id;
        RETURN QUERY SELECT 'confirmed'::text, true, k;
        RETURN;
    END IF;
    UPDATE mpesa_requests SET status = 'failed', result_code = p_result_code, result_desc = left(p_result_desc, 300),
           settled_by = p_source, completed_at = now()
     WHERE id = r.id;
    IF p_failure_body IS NOT NULL THEN
        INSERT INTO notifications (user_id, chama_id, channel, kind, recipient, body, language, priority,
                                   idempotency_key)
        SELECT r.user_id, r.chama_id, 'sms', 'mpesa_failed', r.phone, p_failure_body, u.preferred_language, 3,
               'mpesa:' || p_checkout || ':failed'
          FROM users u WHERE u.id = r.user_id
        ON CONFLICT (idempotency_key) DO NOTHING;
    END IF;
    RETURN QUERY SELECT 'failed'::text, true, NULL::bigint;
END
$$;
