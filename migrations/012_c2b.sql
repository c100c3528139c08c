-- 012_c2b: paybill (C2B) confirmations, matched on the account number the
-- payer typed (BillRefNumber: "<chama id>-<member number>"; the payer's
-- phone is masked by Safaricom), and the treasurer's allocation of money
-- that landed in a chama's suspense account.

CREATE TABLE mpesa_c2b (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trans_id        text NOT NULL CHECK (length(trans_id) BETWEEN 1 AND 32),
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0 AND amount_cents % 100 = 0),
    bill_ref        text NOT NULL CHECK (length(bill_ref) <= 40),
    payer_name      text CHECK (length(payer_name) <= 120),
    msisdn_masked   text CHECK (length(msisdn_masked) <= 80),
    chama_id        bigint REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id         bigint REFERENCES users (id) ON DELETE RESTRICT,
    outcome         text NOT NULL CHECK (outcome IN ('contribution', 'suspense', 'unassigned')),
    contribution_id bigint REFERENCES contributions (id) ON DELETE RESTRICT,
    entry_id        bigint REFERENCES journal_entries (id) ON DELETE RESTRICT,
    received_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mpesa_c2b_trans_id_key UNIQUE (trans_id)
);
COMMENT ON TABLE mpesa_c2b IS 'Every paybill confirmation, once per TransID. unassigned: the account number named no chama; an operator must look at it.';
CREATE INDEX mpesa_c2b_chama_id_idx ON mpesa_c2b (chama_id, received_at DESC);
CREATE INDEX mpesa_c2b_user_id_idx ON mpesa_c2b (user_id);
CREATE INDEX mpesa_c2b_contribution_id_idx ON mpesa_c2b (contribution_id);
CREATE INDEX mpesa_c2b_entry_id_idx ON mpesa_c2b (entry_id);
CREATE INDEX mpesa_c2b_unassigned_idx ON mpesa_c2b (received_at) WHERE outcome = 'unassigned';

-- "12-3" -> chama 12, member number 3; "12" -> chama 12 only.
CREATE FUNCTION c2b_confirm(p_trans_id text, p_amount_cents bigint, p_bill_ref text, p_payer text, p_msisdn text,
                            p_receipt_body text)
RETURNS TABLE (outcome text, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    ref text := upper(btrim(p_bill_ref));
    m text[];
    chama bigint;
    member bigint;
    k bigint;
    e bigint;
    prior mpesa_c2b%ROWTYPE;
BEGIN
    SELECT * INTO prior FROM mpesa_c2b WHERE trans_id = p_trans_id;
    IF FOUND THEN
        RETURN QUERY SELECT prior.outcome, false;
        RETURN;
    END IF;
    m := regexp_match(ref, '^(\d{1,12})(?:[- ]+(\d{1,9}))?$');
    IF m IS NOT NULL THEN
        SELECT id INTO chama FROM chamas WHERE id = m[1]::bigint AND deleted_at IS NULL;
        IF chama IS NOT NULL AND m[2] IS NOT NULL THEN
            SELECT user_id INTO member FROM memberships
             WHERE chama_id = chama AND member_number = m[2]::int AND status = 'active';
        END IF;
    END IF;
    IF member IS NOT NULL THEN
        SELECT pc.contribution_id INTO k
          FROM post_contribution(chama, member, p_amount_cents, 'savings', 'mpesa', p_trans_id, 'c2b:' || p_trans_id,
                                 NULL, 'mpesa', NULL, p_trans_id, p_receipt_body) pc;
        INSERT INTO mpesa_c2b (trans_id, amount_cents, bill_ref, payer_name, msisdn_masked, chama_id, user_id,
                               outcome, contribution_id)
        VALUES (p_trans_id, p_amount_cents, left(p_bill_ref, 40), left(p_payer, 120), left(p_msisdn, 80), chama,
                member, 'contribution', k);
        RETURN QUERY SELECT 'contribution'::text, true;
    ELSIF chama IS NOT NULL THEN
        e := post_suspense(chama, p_amount_cents, p_trans_id, 'c2b:' || p_trans_id, 'mpesa', p_trans_id,
                           format('paybill %s from %s, account "%s"', p_trans_id, p_payer, p_bill_ref));
        INSERT INTO mpesa_c2b (trans_id, amount_cents, bill_ref, payer_name, msisdn_masked, chama_id, outcome,
                               entry_id)
        VALUES (p_trans_id, p_amount_cents, left(p_bill_ref, 40), left(p_payer, 120), left(p_msisdn, 80), chama,
                'suspense', e);
        RETURN QUERY SELECT 'suspense'::text, true;
    ELSE
        INSERT INTO mpesa_c2b (trans_id, amount_cents, bill_ref, payer_name, msisdn_masked, outcome)
        VALUES (p_trans_id, p_amount_cents, left(p_bill_ref, 40), left(p_payer, 120), left(p_msisdn, 80),
                'unassigned');
        RETURN QUERY SELECT 'unassigned'::text, true;
    END IF;
END
$$;

-- The treasurer (or chairperson) says whose money a suspense entry was: it
-- becomes the member's contribution, moved out of suspense, once.
CREATE FUNCTION suspense_allocate(p_entry bigint, p_member_number int, p_actor bigint, p_channel text,
                                  p_msisdn text, p_request_id text, p_receipt_body text)
RETURNS TABLE (contribution_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e journal_entries%ROWTYPE;
    member bigint;
    cents bigint;
    ref text;
BEGIN
    SELECT * INTO e FROM journal_entries WHERE id = p_entry AND kind = 'c2b_unmatched';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no suspense entry %', p_entry USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memberships WHERE user_id = p_actor AND chama_id = e.chama_id AND status = 'active'
                   AND role IN ('treasurer', 'chairperson')) THEN
        RAISE EXCEPTION 'only the treasurer or chairperson allocates suspense' USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT user_id INTO member FROM memberships
     WHERE chama_id = e.chama_id AND member_number = p_member_number AND status = 'active';
    IF member IS NULL THEN
        RAISE EXCEPTION 'no member number % in chama %', p_member_number, e.chama_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT amount_cents INTO cents FROM journal_lines WHERE entry_id = e.id AND side = 'credit';
    SELECT external_reference INTO ref FROM financial_audit_logs WHERE idempotency_key = 'suspense:' || e.idempotency_key;
    RETURN QUERY SELECT * FROM post_contribution(e.chama_id, member, cents, 'savings', 'mpesa', NULL,
                                                 'suspense:' || e.id || ':allocated', p_actor, p_channel, p_msisdn,
                                                 p_request_id, replace(p_receipt_body, '{receipt}', coalesce(ref, '')),
                                                 now(), 'suspense');
END
$$;
