-- schema/40_money.sql: money: contributions, reversals, suspense and its allocation, paybill, arrears.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- Records money a member paid in, once per idempotency key (and once per
-- external reference, e.g. an M-Pesa receipt): the contribution (confirmed),
-- its journal entry (debit M-Pesa float / cash / bank, or p_from_account
-- such as suspense; credit the member's savings or welfare account), its
-- financial audit row and its SMS receipt.
-- Returns the contribution and whether this call created it.
CREATE OR REPLACE FUNCTION post_contribution(
    p_chama bigint, p_user bigint, p_amount_cents bigint, p_purpose text, p_method text, p_external_ref text,
    p_idempotency_key text, p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
    p_receipt_body text, p_at timestamptz DEFAULT now(), p_from_account text DEFAULT NULL)
RETURNS TABLE (contribution_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
    e bigint;
    member_acct bigint;
    cash_acct bigint;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    -- one event, one posting: a repeat returns what the first one made
    SELECT ref_id INTO k FROM journal_entries WHERE idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN QUERY SELECT k, false;
        RETURN;
    END IF;
    IF p_external_ref IS NOT NULL THEN
        SELECT id INTO k FROM contributions WHERE external_reference = p_external_ref;
        IF FOUND THEN
            RETURN QUERY SELECT k, false;
            RETURN;
        END IF;
    END IF;
    INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, external_reference, status,
                               contributed_at, confirmed_at, recorded_by_user_id)
    VALUES (p_chama, p_user, p_amount_cents, p_purpose, p_method, p_external_ref, 'confirmed', p_at, now(), p_actor)
    RETURNING id INTO k;
    member_acct := ledger_account(p_chama, CASE p_purpose WHEN 'welfare' THEN 'member_welfare'
                                                          WHEN 'shares' THEN 'member_shares'
                                                          ELSE 'member_savings' END, p_user);
    -- the money came in through M-Pesa, cash or the bank; or it was already
    -- on the books (suspense) and is only now known to be this member's
    cash_acct := ledger_account(p_chama, coalesce(p_from_account,
                                                  CASE p_method WHEN 'mpesa' THEN 'mpesa_float'
                                                                WHEN 'cash' THEN 'cash_on_hand' ELSE 'bank' END), NULL);
    INSERT INTO journal_entries (chama_id, kind, ref_table, ref_id, idempotency_key, actor_user_id, channel)
    VALUES (p_chama, 'contribution', 'contributions', k, p_idempotency_key, p_actor, p_channel)
    RETURNING id INTO e;
    INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
    VALUES (e, cash_acct, 'debit', p_amount_cents), (e, member_acct, 'credit', p_amount_cents);
    INSERT INTO financial_audit_logs (chama_id, user_id, actor_user_id, action, entity_type, entity_id,
                                      amount_cents, direction, method, external_reference, idempotency_key, channel,
                                      request_id, details)
    VALUES (p_chama, p_user, p_actor, 'contribution_received', 'contributions', k, p_amount_cents, 'in', p_method,
            p_external_ref, 'contribution:' || k || ':received', p_channel, left(p_request_id, 64),
            jsonb_build_object('journal_entry_id', e, 'purpose', p_purpose));
    -- p_receipt_body names the receipt's SMS template (sms_cash_receipt,
    -- sms_mpesa_receipt, ...), or NULL for none
    IF p_receipt_body IS NOT NULL THEN
        PERFORM notify(p_user, 'receipt', p_receipt_body,
                       jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = p_chama),
                                          'amount', format_kes(p_amount_cents), 'receipt', p_external_ref),
                       5, 'contribution:' || k || ':receipt', p_chama);
    END IF;
    RETURN QUERY SELECT k, true;
END
$$;

-- Takes a confirmed contribution back out of the books: the contribution is
-- marked reversed (never deleted), a reversal entry mirrors its lines, an
-- audit row and an SMS notice are written.  Once per contribution.
CREATE OR REPLACE FUNCTION reverse_contribution(
    p_contribution bigint, p_reason text, p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
    p_notice_body text)
RETURNS TABLE (entry_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    orig journal_entries%ROWTYPE;
    k contributions%ROWTYPE;
    e bigint;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    SELECT * INTO k FROM contributions WHERE id = p_contribution FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contribution % does not exist', p_contribution USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO orig FROM journal_entries WHERE ref_table = 'contributions' AND ref_id = p_contribution
                                              AND kind = 'contribution';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contribution % was never posted', p_contribution USING ERRCODE = 'no_data_found';
    END IF;
    SELECT id INTO e FROM journal_entries WHERE reverses_entry_id = orig.id;
    IF FOUND THEN
        RETURN QUERY SELECT e, false;
        RETURN;
    END IF;
    UPDATE contributions SET status = 'reversed', reversed_at = now(), reversal_reason = left(p_reason, 500)
     WHERE id = p_contribution;
    INSERT INTO journal_entries (chama_id, kind, ref_table, ref_id, idempotency_key, reverses_entry_id,
                                 actor_user_id, channel, memo)
    VALUES (orig.chama_id, 'contribution_reversal', 'contributions', p_contribution,
            'contribution:' || p_contribution || ':reversal', orig.id, p_actor, p_channel, left(p_reason, 200))
    RETURNING id INTO e;
    INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
    SELECT e, account_id, CASE side WHEN 'debit' THEN 'credit' ELSE 'debit' END, amount_cents
      FROM journal_lines WHERE journal_lines.entry_id = orig.id;
    INSERT INTO financial_audit_logs (chama_id, user_id, actor_user_id, action, entity_type, entity_id,
                                      amount_cents, direction, method, idempotency_key, reverses_id, channel,
                                      request_id, details)
    SELECT k.chama_id, k.user_id, p_actor, 'contribution_reversed', 'contributions', k.id, k.amount_cents, 'out',
           k.method, 'contribution:' || k.id || ':reversed',
           (SELECT f.id FROM financial_audit_logs f WHERE f.idempotency_key = 'contribution:' || k.id || ':received'),
           p_channel, left(p_request_id, 64), jsonb_build_object('journal_entry_id', e, 'reason', p_reason);
    -- p_notice_body names the notice's SMS template (sms_reversed), or NULL
    IF p_notice_body IS NOT NULL THEN
        PERFORM notify(k.user_id, 'reversal', p_notice_body,
                       jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = k.chama_id),
                                          'amount', format_kes(k.amount_cents), 'reason', p_reason),
                       5, 'contribution:' || k.id || ':reversal', k.chama_id);
    END IF;
    RETURN QUERY SELECT e, true;
END
$$;

-- Money whose owner is not known yet (a wrong amount, a paybill account
-- number that names no member): debit the float, credit the chama's
-- suspense, for the treasurer to allocate.
CREATE OR REPLACE FUNCTION post_suspense(p_chama bigint, p_cents bigint, p_ref text, p_key text, p_channel text,
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

-- The treasurer (or chairperson) says whose money a suspense entry was: it
-- becomes the member's contribution, moved out of suspense, once.
CREATE OR REPLACE FUNCTION suspense_allocate(p_entry bigint, p_member_number int, p_actor bigint, p_channel text,
                                  p_msisdn text, p_request_id text, p_receipt_body text)
RETURNS TABLE (contribution_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e journal_entries%ROWTYPE;
    member bigint;
    cents bigint;
    ref text;
    made record;
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
    SELECT * INTO made FROM post_contribution(e.chama_id, member, cents, 'savings', 'mpesa', NULL,
                                              'suspense:' || e.id || ':allocated', p_actor, p_channel, p_msisdn,
                                              p_request_id, NULL, now(), 'suspense');
    -- the notice (p_receipt_body names its template, sms_allocated) carries
    -- the M-Pesa receipt the money came with
    IF made.created AND p_receipt_body IS NOT NULL THEN
        PERFORM notify(member, 'receipt', p_receipt_body,
                       jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = e.chama_id),
                                          'amount', format_kes(cents), 'receipt', ref),
                       5, 'contribution:' || made.contribution_id || ':receipt', e.chama_id);
    END IF;
    RETURN QUERY SELECT made.contribution_id, made.created;
END
$$;

-- "12-3" -> chama 12, member number 3; "12" -> chama 12 only.
CREATE OR REPLACE FUNCTION c2b_confirm(p_trans_id text, p_amount_cents bigint, p_bill_ref text, p_payer text, p_msisdn text,
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

CREATE OR REPLACE FUNCTION member_arrears(p_user bigint, p_chama bigint, p_at timestamptz, p_tz text)
RETURNS TABLE (expected_cents bigint, paid_cents bigint, arrears_cents bigint, periods int, next_due date,
               period_start date)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c chamas%ROWTYPE;
    first date;
    today date := (p_at AT TIME ZONE p_tz)::date;
    pd int;
    n int := 0;
BEGIN
    SELECT * INTO c FROM chamas WHERE id = p_chama;
    SELECT (m.joined_at AT TIME ZONE p_tz)::date INTO first FROM memberships m
     WHERE m.user_id = p_user AND m.chama_id = p_chama;
    IF first IS NULL OR c.id IS NULL THEN
        RETURN;
    END IF;
    pd := CASE WHEN c.constitution ? 'contribution_period_days'
               THEN (c.constitution ->> 'contribution_period_days')::int END;
    -- due dates on or before today (a few years of weeks at most)
    WHILE due_date(first, c.contribution_frequency, pd, n) <= today AND n < 10000 LOOP
        n := n + 1;
    END LOOP;
    RETURN QUERY
    SELECT n * c.contribution_amount_cents,
           coalesce((SELECT sum(k.amount_cents) FROM contributions k WHERE k.user_id = p_user AND k.chama_id = p_chama
                      AND k.purpose = 'savings' AND k.status = 'confirmed' AND k.deleted_at IS NULL
                      AND k.contributed_at <= p_at), 0)::bigint,
           greatest(n * c.contribution_amount_cents -
                    coalesce((SELECT sum(k.amount_cents) FROM contributions k WHERE k.user_id = p_user
                               AND k.chama_id = p_chama AND k.purpose = 'savings' AND k.status = 'confirmed'
                               AND k.deleted_at IS NULL AND k.contributed_at <= p_at), 0), 0)::bigint,
           n, due_date(first, c.contribution_frequency, pd, n),
           CASE WHEN n > 0 THEN due_date(first, c.contribution_frequency, pd, n - 1) END;
END
$$;
