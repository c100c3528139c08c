-- schema/40_money.sql: money: contributions, reversals, suspense and its allocation, paybill, arrears.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- Records money a member paid in, once per idempotency key (and once per
-- external reference, e.g. an M-Pesa receipt): the contribution (confirmed),
-- its journal entry through ledger_post (debit M-Pesa float / cash / bank,
-- or p_from_account such as suspense; credit the member's savings or
-- welfare account) with its financial audit row, and its SMS receipt.
-- Dated p_at (the DEFAULT is for psql and test fixtures; chamad always
-- passes its clock).  Returns the contribution and whether this call
-- created it.
CREATE OR REPLACE FUNCTION post_contribution(
    p_chama bigint, p_user bigint, p_amount_cents bigint, p_purpose text, p_method text, p_external_ref text,
    p_idempotency_key text, p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
    p_receipt_body text, p_at timestamptz DEFAULT now(), p_from_account text DEFAULT NULL)
RETURNS TABLE (contribution_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
    posted boolean;
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
    VALUES (p_chama, p_user, p_amount_cents, p_purpose, p_method, p_external_ref, 'confirmed', p_at, p_at, p_actor)
    RETURNING id INTO k;
    -- the money came in through M-Pesa, cash or the bank; or it was already
    -- on the books (suspense) and is only now known to be this member's
    SELECT lp.created INTO posted
      FROM ledger_post(p_chama, 'contribution', p_idempotency_key,
                       jsonb_build_array(
                           jsonb_build_object('kind', coalesce(p_from_account,
                                                               CASE p_method WHEN 'mpesa' THEN 'mpesa_float'
                                                                             WHEN 'cash' THEN 'cash_on_hand'
                                                                             ELSE 'bank' END),
                                              'side', 'debit', 'cents', p_amount_cents),
                           jsonb_build_object('kind', CASE p_purpose WHEN 'welfare' THEN 'member_welfare'
                                                                     WHEN 'shares' THEN 'member_shares'
                                                                     ELSE 'member_savings' END,
                                              'user', p_user, 'side', 'credit', 'cents', p_amount_cents)),
                       'contributions', k, NULL,
                       jsonb_build_object('action', 'contribution_received', 'user', p_user,
                                          'entity_type', 'contributions', 'entity_id', k, 'direction', 'in',
                                          'method', p_method, 'external_ref', p_external_ref,
                                          'key', 'contribution:' || k || ':received', 'request_id', p_request_id,
                                          'details', jsonb_build_object('purpose', p_purpose)),
                       p_actor, p_channel, NULL, p_at) lp;
    IF NOT posted THEN
        -- the same key committed by another call since the check above:
        -- this contribution row must not stay (a race, not a refusal)
        RAISE EXCEPTION 'contribution key % was posted meanwhile', p_idempotency_key
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'journal_entries_idempotency_key_key';
    END IF;
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
-- marked reversed (never deleted), a reversal entry mirrors its lines (one
-- ledger_post, with its audit row), an SMS notice is written.  Once per
-- contribution.  Outcome: ok_reversed, or err_no_contribution,
-- err_not_posted, err_already_reversed (with the reversal made before).
-- No role check: this is the books' operation; officials come through
-- payment_reverse.
-- the signature before ledger_post (without an outcome row and p_at)
DROP FUNCTION IF EXISTS reverse_contribution(bigint, text, bigint, text, text, text, text);
CREATE OR REPLACE FUNCTION reverse_contribution(
    p_contribution bigint, p_reason text, p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
    p_notice_body text, p_at timestamptz DEFAULT now())
RETURNS TABLE (outcome text, entry_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    orig journal_entries%ROWTYPE;
    k contributions%ROWTYPE;
    e bigint;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    SELECT * INTO k FROM contributions WHERE id = p_contribution FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_no_contribution'::text, NULL::bigint, false;
        RETURN;
    END IF;
    SELECT * INTO orig FROM journal_entries WHERE ref_table = 'contributions' AND ref_id = p_contribution
                                              AND kind = 'contribution';
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_not_posted'::text, NULL::bigint, false;
        RETURN;
    END IF;
    SELECT j.id INTO e FROM journal_entries j WHERE j.reverses_entry_id = orig.id;
    IF FOUND THEN
        RETURN QUERY SELECT 'err_already_reversed'::text, e, false;
        RETURN;
    END IF;
    UPDATE contributions SET status = 'reversed', reversed_at = p_at, reversal_reason = left(p_reason, 500)
     WHERE id = p_contribution;
    SELECT lp.entry_id INTO e
      FROM ledger_post(orig.chama_id, 'contribution_reversal', 'contribution:' || p_contribution || ':reversal',
                       (SELECT jsonb_agg(jsonb_build_object('account', l.account_id,
                                                            'side', CASE l.side WHEN 'debit' THEN 'credit'
                                                                                ELSE 'debit' END,
                                                            'cents', l.amount_cents) ORDER BY l.id)
                          FROM journal_lines l WHERE l.entry_id = orig.id),
                       'contributions', p_contribution, orig.id,
                       jsonb_build_object('action', 'contribution_reversed', 'user', k.user_id,
                                          'entity_type', 'contributions', 'entity_id', k.id, 'direction', 'out',
                                          'method', k.method, 'key', 'contribution:' || k.id || ':reversed',
                                          'reverses_key', 'contribution:' || k.id || ':received',
                                          'request_id', p_request_id, 'details', jsonb_build_object('reason', p_reason)),
                       p_actor, p_channel, p_reason, p_at) lp;
    -- p_notice_body names the notice's SMS template (sms_reversed), or NULL
    IF p_notice_body IS NOT NULL THEN
        PERFORM notify(k.user_id, 'reversal', p_notice_body,
                       jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = k.chama_id),
                                          'amount', format_kes(k.amount_cents), 'reason', p_reason),
                       5, 'contribution:' || k.id || ':reversal', k.chama_id);
    END IF;
    RETURN QUERY SELECT 'ok_reversed'::text, e, true;
END
$$;

-- An official reverses a payment of their chama (policy
-- money.payment_reverse), in one statement with the check.  Outcome as
-- reverse_contribution's, or err_not_official, or err_no_contribution for
-- a payment of another chama.
CREATE OR REPLACE FUNCTION payment_reverse(p_chama bigint, p_contribution bigint, p_reason text, p_actor bigint,
                                           p_channel text, p_msisdn text, p_request_id text, p_notice_body text,
                                           p_at timestamptz)
RETURNS TABLE (outcome text, entry_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT policy_allows(p_actor, p_chama, 'money.payment_reverse') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM contributions WHERE id = p_contribution AND chama_id = p_chama) THEN
        RETURN QUERY SELECT 'err_no_contribution'::text, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT r.outcome, r.entry_id
                   FROM reverse_contribution(p_contribution, p_reason, p_actor, p_channel, p_msisdn, p_request_id,
                                             p_notice_body, p_at) r;
END
$$;

-- An official records cash a member handed over (policy money.cash_record):
-- the member by their number in the chama, then post_contribution, in one
-- statement.  Outcome: ok_cash_recorded (with the payer's name),
-- err_not_official, err_member_number.
CREATE OR REPLACE FUNCTION cash_record(p_chama bigint, p_member_number int, p_amount_cents bigint, p_key text,
                                       p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
                                       p_receipt_body text, p_at timestamptz)
RETURNS TABLE (outcome text, contribution_id bigint, payer_name text)
LANGUAGE plpgsql AS $$
DECLARE
    member bigint;
    who text;
    k bigint;
BEGIN
    IF NOT policy_allows(p_actor, p_chama, 'money.cash_record') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    SELECT m.user_id, u.full_name INTO member, who FROM memberships m JOIN users u ON u.id = m.user_id
     WHERE m.chama_id = p_chama AND m.member_number = p_member_number AND m.status = 'active';
    IF member IS NULL THEN
        RETURN QUERY SELECT 'err_member_number'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    SELECT pc.contribution_id INTO k
      FROM post_contribution(p_chama, member, p_amount_cents, 'savings', 'cash', NULL, p_key, p_actor, p_channel,
                             p_msisdn, p_request_id, p_receipt_body, p_at) pc;
    RETURN QUERY SELECT 'ok_cash_recorded'::text, k, who;
END
$$;

-- Money whose owner is not known yet (a wrong amount, a paybill account
-- number that names no member): debit the float, credit the chama's
-- suspense, for the treasurer to allocate.  One ledger_post, dated p_at.
-- the signature before ledger_post (without p_at)
DROP FUNCTION IF EXISTS post_suspense(bigint, bigint, text, text, text, text, text);
CREATE OR REPLACE FUNCTION post_suspense(p_chama bigint, p_cents bigint, p_ref text, p_key text, p_channel text,
                                         p_request_id text, p_memo text, p_at timestamptz)
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
    SELECT lp.entry_id INTO e
      FROM ledger_post(p_chama, 'c2b_unmatched', p_key,
                       jsonb_build_array(jsonb_build_object('kind', 'mpesa_float', 'side', 'debit', 'cents', p_cents),
                                         jsonb_build_object('kind', 'suspense', 'side', 'credit', 'cents', p_cents)),
                       'mpesa', NULL, NULL,
                       jsonb_build_object('action', 'suspense_received', 'direction', 'in', 'method', 'mpesa',
                                          'external_ref', p_ref, 'key', 'suspense:' || p_key,
                                          'request_id', p_request_id, 'details', jsonb_build_object('memo', p_memo)),
                       NULL, p_channel, p_memo, p_at) lp;
    RETURN e;
END
$$;

-- The treasurer (or chairperson: policy money.suspense_allocate) says whose
-- money a suspense entry of their chama was: it becomes the member's
-- contribution, moved out of suspense, once.  The entry is locked, so two
-- officials allocating it at once decide once.  Outcome: ok_allocated,
-- err_not_official, err_no_suspense, err_member_number,
-- err_already_allocated.
-- the signature before ledger_post (without the chama, an outcome row and p_at)
DROP FUNCTION IF EXISTS suspense_allocate(bigint, integer, bigint, text, text, text, text);
CREATE OR REPLACE FUNCTION suspense_allocate(p_chama bigint, p_entry bigint, p_member_number int, p_actor bigint,
                                             p_channel text, p_msisdn text, p_request_id text, p_receipt_body text,
                                             p_at timestamptz)
RETURNS TABLE (outcome text, contribution_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e journal_entries%ROWTYPE;
    member bigint;
    cents bigint;
    ref text;
    k bigint;
    made boolean;
BEGIN
    IF NOT policy_allows(p_actor, p_chama, 'money.suspense_allocate') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint, false;
        RETURN;
    END IF;
    SELECT * INTO e FROM journal_entries WHERE id = p_entry AND kind = 'c2b_unmatched' AND chama_id = p_chama
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_no_suspense'::text, NULL::bigint, false;
        RETURN;
    END IF;
    SELECT user_id INTO member FROM memberships
     WHERE chama_id = e.chama_id AND member_number = p_member_number AND status = 'active';
    IF member IS NULL THEN
        RETURN QUERY SELECT 'err_member_number'::text, NULL::bigint, false;
        RETURN;
    END IF;
    SELECT amount_cents INTO cents FROM journal_lines WHERE entry_id = e.id AND side = 'credit';
    SELECT external_reference INTO ref FROM financial_audit_logs WHERE idempotency_key = 'suspense:' || e.idempotency_key;
    SELECT pc.contribution_id, pc.created INTO k, made
      FROM post_contribution(e.chama_id, member, cents, 'savings', 'mpesa', NULL,
                             'suspense:' || e.id || ':allocated', p_actor, p_channel, p_msisdn,
                             p_request_id, NULL, p_at, 'suspense') pc;
    -- the notice (p_receipt_body names its template, sms_allocated) carries
    -- the M-Pesa receipt the money came with
    IF made AND p_receipt_body IS NOT NULL THEN
        PERFORM notify(member, 'receipt', p_receipt_body,
                       jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = e.chama_id),
                                          'amount', format_kes(cents), 'receipt', ref),
                       5, 'contribution:' || k || ':receipt', e.chama_id);
    END IF;
    RETURN QUERY SELECT CASE WHEN made THEN 'ok_allocated' ELSE 'err_already_allocated' END, k, made;
END
$$;

-- A paybill confirmation, recorded once per M-Pesa transaction and never
-- posted here: whose it is is worked out now (outcome: "12-3" -> chama 12,
-- member number 3, a contribution; "L45" -> loan 45 while it is owed, a
-- repayment; "12" or an unknown number -> chama 12's suspense; anything else unassigned, for an operator), but the money is
-- posted only when the Transaction Status query agrees (c2b_on_status ->
-- c2b_credit).  The row is 'unverified' and its status query opened
-- (mpesa_status_open, purpose 'c2b').  p_shortcode is the BusinessShortCode
-- it named (the caller checked it is ours); an amount past p_max_cents
-- ([mpesa] max_amount) is recorded 'flagged' at once, never queried, never
-- posted.  The same TransID again with the same amount and account is the
-- same payment (Safaricom resending): nothing new.  With another amount or
-- account it is a replay: nothing recorded, an alert raised.  Returns where
-- the money would go (or 'replay'), whether this call recorded it, and the
-- row's status.
-- the signatures before ledger_post (without p_at) and before issue 10
-- (posted on receipt)
DROP FUNCTION IF EXISTS c2b_confirm(text, bigint, text, text, text, text);
DROP FUNCTION IF EXISTS c2b_confirm(text, bigint, text, text, text, text, timestamptz);
CREATE OR REPLACE FUNCTION c2b_confirm(p_trans_id text, p_amount_cents bigint, p_bill_ref text, p_payer text,
                                       p_msisdn text, p_receipt_body text, p_at timestamptz, p_shortcode text,
                                       p_max_cents bigint)
RETURNS TABLE (outcome text, created boolean, status text)
LANGUAGE plpgsql AS $$
DECLARE
    ref text := upper(btrim(p_bill_ref));
    m text[];
    lm text[];
    loan bigint;
    owed boolean;
    chama bigint;
    member bigint;
    goes text;
    id_ bigint;
    q bigint;
    prior mpesa_c2b%ROWTYPE;
BEGIN
    SELECT * INTO prior FROM mpesa_c2b c WHERE c.trans_id = p_trans_id;
    IF FOUND THEN
        IF prior.amount_cents = p_amount_cents AND prior.bill_ref = left(p_bill_ref, 40) THEN
            RETURN QUERY SELECT prior.outcome, false, prior.status;
            RETURN;
        END IF;
        PERFORM mpesa_alert('c2b_replay', prior.chama_id, 'mpesa_c2b', prior.id,
                            jsonb_build_object('trans_id', p_trans_id, 'amount_cents', p_amount_cents,
                                               'bill_ref', p_bill_ref, 'first_amount_cents', prior.amount_cents,
                                               'first_bill_ref', prior.bill_ref),
                            'sms_mpesa_alert_c2b',
                            jsonb_build_object('amount', format_kes(p_amount_cents), 'ref', p_trans_id,
                                               'why', jsonb_build_object('template', 'sms_mpesa_why_replay')),
                            p_at);
        RETURN QUERY SELECT 'replay'::text, false, prior.status;
        RETURN;
    END IF;
    m := regexp_match(ref, '^(\d{1,12})(?:[- ]+(\d{1,9}))?$');
    -- L<loan id> (any case, spaces anywhere around the number): a loan
    -- still owed is repaid once verified (loan_repay); a loan not owed
    -- (closed, or never paid out) is its chama's suspense
    lm := regexp_match(ref, '^L *(\d{1,12})$');
    IF lm IS NOT NULL THEN
        SELECT l.id, l.chama_id, l.user_id, l.status IN ('active', 'defaulted')
          INTO loan, chama, member, owed
          FROM loans l WHERE l.id = lm[1]::bigint;
        IF NOT coalesce(owed, false) THEN
            loan := NULL;
            member := NULL;
        END IF;
    ELSIF m IS NOT NULL THEN
        SELECT c.id INTO chama FROM chamas c WHERE c.id = m[1]::bigint AND c.deleted_at IS NULL;
        IF chama IS NOT NULL AND m[2] IS NOT NULL THEN
            SELECT ms.user_id INTO member FROM memberships ms
             WHERE ms.chama_id = chama AND ms.member_number = m[2]::int AND ms.status = 'active';
        END IF;
    END IF;
    goes := CASE WHEN loan IS NOT NULL THEN 'loan' WHEN member IS NOT NULL THEN 'contribution'
                 WHEN chama IS NOT NULL THEN 'suspense' ELSE 'unassigned' END;
    -- received_at is p_at, the clock c2b_flag_overdue ages it by: dated by
    -- the database's clock while an injected one ran ahead, a payment
    -- looked hours old the moment it came and was flagged before its
    -- status result verified it
    INSERT INTO mpesa_c2b (trans_id, amount_cents, bill_ref, payer_name, msisdn_masked, chama_id, user_id, outcome,
                           status, business_shortcode, receipt_template, loan_id, received_at)
    VALUES (p_trans_id, p_amount_cents, left(p_bill_ref, 40), left(p_payer, 120), left(p_msisdn, 80), chama, member,
            goes, 'unverified', left(p_shortcode, 20), p_receipt_body, loan, p_at)
    ON CONFLICT ON CONSTRAINT mpesa_c2b_trans_id_key DO NOTHING
    RETURNING mpesa_c2b.id INTO id_;
    IF id_ IS NULL THEN
        -- the same TransID recorded by another call since the check above
        SELECT * INTO prior FROM mpesa_c2b c WHERE c.trans_id = p_trans_id;
        RETURN QUERY SELECT prior.outcome, false, prior.status;
        RETURN;
    END IF;
    IF p_max_cents IS NOT NULL AND p_amount_cents > p_max_cents THEN
        PERFORM c2b_flag(id_, 'over_limit', format('%s cents, the limit is %s', p_amount_cents, p_max_cents), p_at);
        RETURN QUERY SELECT goes, true, 'flagged'::text;
        RETURN;
    END IF;
    q := mpesa_status_open('c2b', id_, p_trans_id, NULL, p_at);
    UPDATE mpesa_c2b c SET status_query_id = q WHERE c.id = id_;
    RETURN QUERY SELECT goes, true, 'unverified'::text;
END
$$;

-- A paybill payment that is not credited, and why: 'flagged' (once; a row
-- already verified or flagged stays as it is) with the officials' alert.
CREATE OR REPLACE FUNCTION c2b_flag(p_id bigint, p_reason text, p_detail text, p_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    c mpesa_c2b%ROWTYPE;
BEGIN
    UPDATE mpesa_c2b x SET status = 'flagged', flag_reason = p_reason, flag_detail = left(p_detail, 300),
           flagged_at = p_at
     WHERE x.id = p_id AND x.status = 'unverified'
    RETURNING x.* INTO c;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM mpesa_alert('c2b_flagged', c.chama_id, 'mpesa_c2b', c.id,
                        jsonb_build_object('trans_id', c.trans_id, 'amount_cents', c.amount_cents,
                                           'bill_ref', c.bill_ref, 'reason', p_reason, 'detail', p_detail),
                        'sms_mpesa_alert_c2b',
                        jsonb_build_object('amount', format_kes(c.amount_cents), 'ref', c.trans_id,
                                           'why', jsonb_build_object('template', 'sms_mpesa_why_' || p_reason)),
                        p_at);
    RETURN true;
END
$$;

-- Posts a verified paybill payment, once, dated p_at, as its outcome says:
-- the member's contribution (receipt SMS by its receipt_template), a
-- loan's repayment (loan_repay, its own receipt SMS), the chama's
-- suspense, or nothing (unassigned: an operator must look at it).
CREATE OR REPLACE FUNCTION c2b_credit(p_id bigint, p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    c mpesa_c2b%ROWTYPE;
    k bigint;
    e bigint;
    rp bigint;
BEGIN
    SELECT * INTO c FROM mpesa_c2b x WHERE x.id = p_id FOR UPDATE;
    IF NOT FOUND OR c.status <> 'unverified' THEN
        RETURN c.status;
    END IF;
    IF c.outcome = 'loan' THEN
        SELECT x.repayment_id INTO rp
          FROM loan_repay(c.loan_id, c.amount_cents, 'mpesa', '{"kind": "mpesa_float"}', 'c2b:' || c.trans_id,
                          'mpesa_c2b', c.id, NULL, 'mpesa', p_at) x;
        IF rp IS NULL THEN
            -- the loan took nothing (not a loan paid out: a bug): the
            -- money waits in suspense, never dropped
            e := post_suspense(c.chama_id, c.amount_cents, c.trans_id, 'c2b:' || c.trans_id, 'mpesa', c.trans_id,
                               format('paybill %s for loan %s not taken', c.trans_id, c.loan_id), p_at);
        END IF;
        UPDATE loan_repayments x SET external_reference = c.trans_id
         WHERE x.id = rp AND NOT EXISTS (SELECT 1 FROM loan_repayments y WHERE y.external_reference = c.trans_id);
    ELSIF c.outcome = 'contribution' THEN
        SELECT pc.contribution_id INTO k
          FROM post_contribution(c.chama_id, c.user_id, c.amount_cents, 'savings', 'mpesa', c.trans_id,
                                 'c2b:' || c.trans_id, NULL, 'mpesa', NULL, c.trans_id, c.receipt_template, p_at) pc;
    ELSIF c.outcome = 'suspense' THEN
        e := post_suspense(c.chama_id, c.amount_cents, c.trans_id, 'c2b:' || c.trans_id, 'mpesa', c.trans_id,
                           format('paybill %s from %s, account "%s"', c.trans_id, c.payer_name, c.bill_ref), p_at);
    END IF;
    UPDATE mpesa_c2b x SET status = 'verified', verified_at = p_at, contribution_id = k, entry_id = e,
                           repayment_id = rp
     WHERE x.id = p_id;
    RETURN 'verified';
END
$$;

-- The Transaction Status result for a paybill payment (the status rail's
-- dispatch, purpose 'c2b'; p_ref_id is the mpesa_c2b row).  Credited only
-- when M-Pesa found it (p_found) and its amount, receipt, shortcode
-- (CreditPartyName begins with the shortcode the confirmation named) and
-- account (TransactionReason is the BillRefNumber the payer typed) agree;
-- a field the result leaves out is a disagreement (we credit what was
-- confirmed, and an absent field confirms nothing).  Not found, no answer
-- after the rail's attempts (p_found NULL), or a disagreement: flagged,
-- alerted, not credited.  A row no longer unverified (flagged meanwhile, or
-- a repeated result) is left as it is.  Returns the row's status.
CREATE OR REPLACE FUNCTION c2b_on_status(p_query_id bigint, p_ref_id bigint, p_found boolean, p_result jsonb,
                                         p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    c mpesa_c2b%ROWTYPE;
    why text;
    said text;
BEGIN
    SELECT * INTO c FROM mpesa_c2b x WHERE x.id = p_ref_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF c.status <> 'unverified' THEN
        RETURN c.status;
    END IF;
    PERFORM audit_context('mpesa', NULL, c.trans_id, NULL);
    IF p_found IS NULL THEN
        why := 'unanswered';
    ELSIF NOT p_found THEN
        why := 'not_found';
    ELSIF p_result ->> 'receipt' IS DISTINCT FROM c.trans_id THEN
        why := 'receipt';
        said := p_result ->> 'receipt';
    ELSIF (p_result ->> 'amount_cents') IS NULL OR (p_result ->> 'amount_cents')::bigint <> c.amount_cents THEN
        why := 'amount';
        said := p_result ->> 'amount_cents';
    ELSIF c.business_shortcode IS NULL OR coalesce(p_result ->> 'credit_party', '') !~
          ('^' || c.business_shortcode || '(\D|$)') THEN
        why := 'shortcode';
        said := p_result ->> 'credit_party';
    ELSIF upper(btrim(coalesce(p_result ->> 'reason', ''))) IS DISTINCT FROM upper(btrim(c.bill_ref))
          OR p_result ->> 'reason' IS NULL THEN
        why := 'account';
        said := p_result ->> 'reason';
    END IF;
    IF why IS NOT NULL THEN
        PERFORM c2b_flag(c.id, why, format('status query %s: %s (M-Pesa said %s, result %s %s)', p_query_id, why,
                                           coalesce(said, 'nothing'), p_result ->> 'result_code',
                                           p_result ->> 'desc'), p_at);
        RETURN 'flagged';
    END IF;
    RETURN c2b_credit(c.id, p_at);
END
$$;

-- Paybill payments still unverified past p_after_s ([mpesa]
-- verify_flag_after_s) are flagged, never credited.  Aged by p_at, the
-- clock c2b_confirm dated them by (base/clock: an injected clock moves
-- them too; a fixed one holds them until it is moved).
-- Returns how many it flagged.
CREATE OR REPLACE FUNCTION c2b_flag_overdue(p_after_s int, p_at timestamptz)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int := 0;
    r record;
BEGIN
    FOR r IN SELECT x.id FROM mpesa_c2b x
              WHERE x.status = 'unverified'
                AND x.received_at < p_at - make_interval(secs => p_after_s)
              ORDER BY x.id LIMIT 100 FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM audit_context('mpesa', NULL, 'job:c2b_verify', NULL);
        IF c2b_flag(r.id, 'unverified', format('no verified status within %s s', p_after_s), p_at) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
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
