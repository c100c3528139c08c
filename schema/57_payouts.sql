-- schema/57_payouts.sql: payouts: money out by M-Pesa B2C or cash, never twice.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views, the triggers of
-- its tables.  Migrations never call what is defined here.
--
-- The lifecycle is migration 021's comment.  payout_transition_allowed is
-- the one place that says which moves exist; a trigger holds every UPDATE
-- of payouts.status to it (a forbidden move is a bug: it raises), and the
-- audit trigger of 006 records each.  Money is posted in one place,
-- payout_post, through ledger_post keyed 'payout:<id>:paid', so whichever
-- report comes first (the result, a repeat of it, the status query) posts
-- and the others find the payout paid.

-- The moves of the lifecycle.  Cash is approved and paid in one step (the
-- second official's approval is the confirmation that it was handed over).
CREATE OR REPLACE FUNCTION payout_transition_allowed(p_from text, p_to text, p_method text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_from
        WHEN 'requested' THEN p_to IN ('approved', 'cancelled') OR (p_method = 'cash' AND p_to = 'paid')
        WHEN 'approved'  THEN p_to IN ('sending', 'failed', 'cancelled', 'paid') AND p_method = 'mpesa'
        WHEN 'sending'   THEN p_to IN ('sent', 'failed', 'unknown', 'approved', 'paid')
        WHEN 'sent'      THEN p_to IN ('paid', 'failed', 'unknown')
        WHEN 'unknown'   THEN p_to IN ('paid', 'failed', 'approved')
        ELSE false END
$$;

CREATE OR REPLACE FUNCTION payouts_check_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NOT payout_transition_allowed(OLD.status, NEW.status, OLD.method) THEN
        RAISE EXCEPTION 'payout %: % -> % is not a move of its lifecycle', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_lifecycle';
    END IF;
    -- the registered phone it was asked for, and what it pays, never change
    IF NEW.phone IS DISTINCT FROM OLD.phone OR NEW.amount_cents <> OLD.amount_cents
       OR NEW.user_id <> OLD.user_id OR NEW.chama_id <> OLD.chama_id THEN
        RAISE EXCEPTION 'payout %: its beneficiary, phone and amount are fixed', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_lifecycle';
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER payouts_check_transition BEFORE UPDATE ON payouts
    FOR EACH ROW EXECUTE FUNCTION payouts_check_transition();

-- The ledger account a kind of payout takes the money from (the member's
-- side): a refund or a share-out from the member's savings (share-out also
-- from their shares), welfare from the welfare fund, a loan is the member's
-- new debt (loans receivable), a merry-go-round pot from the savings the
-- rotation module credited the recipient with before paying it out.
CREATE OR REPLACE FUNCTION payout_debit_allowed(p_kind text, p_debit_kind text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_kind
        WHEN 'refund'    THEN p_debit_kind = 'member_savings'
        WHEN 'share_out' THEN p_debit_kind IN ('member_savings', 'member_shares')
        WHEN 'welfare'   THEN p_debit_kind = 'welfare_fund'
        WHEN 'loan'      THEN p_debit_kind = 'loans_receivable'
        WHEN 'rotation'  THEN p_debit_kind = 'member_savings'
        ELSE false END
$$;

-- The balance of a ledger account of the chama (0 before its first line).
CREATE OR REPLACE FUNCTION payout_balance(p_chama bigint, p_kind text, p_user bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT balance_cents FROM ledger_accounts
                      WHERE chama_id = p_chama AND kind = p_kind AND user_id IS NOT DISTINCT FROM p_user), 0)
$$;

-- M-Pesa money already promised: payouts on their way out of the float
-- (with p_pending, also those asked for or approved and not sent yet: a
-- request must leave room for them; the claim counts only what is out).
CREATE OR REPLACE FUNCTION payout_float_in_flight(p_chama bigint, p_pending boolean) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount_cents), 0)::bigint FROM payouts
     WHERE chama_id = p_chama AND method = 'mpesa'
       AND (status IN ('sending', 'sent', 'unknown') OR (p_pending AND status IN ('requested', 'approved')))
$$;

-- The names of the officials who approved it (helper E's approval_votes,
-- the round that decided), for the members' announcement.  PL/pgSQL: the
-- approvals tables are only read when it runs.
CREATE OR REPLACE FUNCTION payout_approvers(p_approval bigint) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(string_agg(u.full_name, ', ' ORDER BY v.id), '-')
              FROM approval_votes v JOIN users u ON u.id = v.official_user_id
             WHERE v.approval_id = p_approval AND v.vote = 'approve'
               AND v.round = (SELECT max(w.round) FROM approval_votes w WHERE w.approval_id = p_approval));
END
$$;

-- Messages: the beneficiary, every member, the officials.  Variables are
-- what the templates of menus/55_payouts.json declare; the kind is a
-- translated word (sms_payout_kind_<kind>), a reason a translated line.
CREATE OR REPLACE FUNCTION payout_vars(p payouts) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('chama', c.name, 'member', u.full_name, 'amount', format_kes(p.amount_cents),
                              'kind', jsonb_build_object('template', 'sms_payout_kind_' || p.kind),
                              'memo', coalesce(nullif(btrim(p.memo), ''), '-'),
                              'receipt', coalesce(p.mpesa_receipt, '-'))
      FROM chamas c, users u WHERE c.id = p.chama_id AND u.id = p.user_id
$$;

CREATE OR REPLACE FUNCTION payout_tell_officials(p payouts, p_template text, p_reason jsonb, p_event text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o record;
BEGIN
    FOR o IN SELECT m.user_id FROM memberships m
              WHERE m.chama_id = p.chama_id AND m.status = 'active'
                AND m.role IN ('chairperson', 'treasurer', 'secretary') LOOP
        PERFORM notify(o.user_id, 'payout', p_template, payout_vars(p) || jsonb_build_object('reason', p_reason), 4,
                       'payout:' || p.id || ':' || p_event || ':' || o.user_id, p.chama_id);
    END LOOP;
END
$$;

-- The reason of a failure, as a translated line: the float, the limit, or
-- M-Pesa's code (its description is English only).
CREATE OR REPLACE FUNCTION payout_reason(p_why text, p_code bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_why IN ('float', 'limit', 'timeout', 'attempts')
                THEN jsonb_build_object('template', 'sms_payout_reason_' || p_why)
                ELSE jsonb_build_object('template', 'sms_payout_reason_mpesa',
                                        'vars', jsonb_build_object('code', coalesce(p_code::text, '-'))) END
$$;

-- A payout fails (nothing was paid, nothing is posted): the beneficiary
-- and the officials are told.  A loan's payout leaves the loan approved
-- (schema/73_loan_approvals.sql): its officials' words say they may send it
-- again, pay it in cash or cancel the loan (Officials > Loans > To pay out).
CREATE OR REPLACE FUNCTION payout_fail(p_id bigint, p_why text, p_code bigint, p_desc text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p payouts%ROWTYPE;
BEGIN
    UPDATE payouts SET status = 'failed', result_code = p_code, result_desc = left(p_desc, 300),
           completed_at = now(), lease_until = NULL, next_at = NULL
     WHERE id = p_id RETURNING * INTO p;
    PERFORM notify(p.user_id, 'payout', 'sms_payout_failed', payout_vars(p), 4, 'payout:' || p.id || ':failed',
                   p.chama_id);
    PERFORM payout_tell_officials(p, CASE p.ref_table WHEN 'loans' THEN 'sms_loanoff_failed_officials'
                                                      ELSE 'sms_payout_failed_officials' END,
                                  payout_reason(p_why, p_code), 'failed');
END
$$;

-- Paid: posted once (Dr the member's side, Cr the float or the cash), the
-- payout marked paid with its entry, the beneficiary told, and every
-- member told who got how much, why, approved by whom.  A loan's payout
-- makes the loan active, in the same transaction (loan_on_paid: its
-- schedule dated from this day, its interest posted).
CREATE OR REPLACE FUNCTION payout_post(p_id bigint, p_receipt text, p_at timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    p payouts%ROWTYPE;
    e bigint;
    v jsonb;
    m record;
BEGIN
    SELECT * INTO STRICT p FROM payouts WHERE id = p_id;
    -- M-Pesa's report is the event; a cash payout keeps the context of the
    -- approval that confirmed it (the second official)
    IF p.method = 'mpesa' THEN
        PERFORM audit_context('mpesa', p.phone, p.originator_id, NULL);
    END IF;
    SELECT lp.entry_id INTO e
      FROM ledger_post(p.chama_id, CASE p.kind WHEN 'loan' THEN 'loan_disbursement' ELSE 'payout' END,
                       'payout:' || p.id || ':paid',
                       jsonb_build_array(
                           jsonb_strip_nulls(jsonb_build_object(
                               'kind', p.debit_kind, 'side', 'debit', 'cents', p.amount_cents,
                               'user', CASE WHEN p.debit_kind <> 'welfare_fund' THEN p.user_id END)),
                           jsonb_build_object('kind', CASE p.method WHEN 'mpesa' THEN 'mpesa_float'
                                                                    ELSE 'cash_on_hand' END,
                                              'side', 'credit', 'cents', p.amount_cents)),
                       'payouts', p.id, NULL,
                       jsonb_build_object('action', CASE p.kind WHEN 'loan' THEN 'loan_disbursed'
                                                                WHEN 'share_out' THEN 'shareout_paid'
                                                                WHEN 'welfare' THEN 'welfare_claim_paid'
                                                                ELSE 'payout_sent' END,
                                          'user', p.user_id, 'entity_type', 'payouts', 'entity_id', p.id,
                                          'direction', 'out', 'method', p.method, 'external_ref', p_receipt,
                                          'key', 'payout:' || p.id || ':paid', 'request_id', p.originator_id,
                                          'details', jsonb_build_object('kind', p.kind, 'memo', p.memo,
                                                                        'approval_id', p.approval_id)),
                       CASE p.method WHEN 'cash' THEN p.maker_user_id END,
                       CASE p.method WHEN 'mpesa' THEN 'mpesa' ELSE coalesce(p.channel, 'system') END,
                       coalesce(p.memo, p.kind), p_at) lp;
    UPDATE payouts SET status = 'paid', journal_entry_id = e, mpesa_receipt = coalesce(p_receipt, mpesa_receipt),
           completed_at = p_at, lease_until = NULL, next_at = NULL
     WHERE id = p.id RETURNING * INTO p;
    IF p.ref_table = 'loans' THEN
        PERFORM loan_on_paid(p.ref_id, p.id, p_at);
    END IF;
    v := payout_vars(p);
    PERFORM notify(p.user_id, 'payout', CASE p.method WHEN 'mpesa' THEN 'sms_payout_paid' ELSE 'sms_payout_paid_cash' END,
                   v, 4, 'payout:' || p.id || ':paid', p.chama_id);
    v := v || jsonb_build_object('approvers', payout_approvers(p.approval_id));
    FOR m IN SELECT ms.user_id FROM memberships ms WHERE ms.chama_id = p.chama_id AND ms.status = 'active' LOOP
        PERFORM notify(m.user_id, 'payout_announce', 'sms_payout_announce', v, 6,
                       'payout:' || p.id || ':announce:' || m.user_id, p.chama_id);
    END LOOP;
    RETURN e;
END
$$;

-- An outcome we do not know (our call got no answer, the daemon died
-- while sending, no result in time): 'unknown', and the Transaction Status
-- query by our OriginatorConversationID (helper C's rail) decides.  It is
-- never re-sent before that query says the payment does not exist.
CREATE OR REPLACE FUNCTION payout_unknown(p_id bigint, p_why text, p_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p payouts%ROWTYPE;
BEGIN
    UPDATE payouts SET status = 'unknown', result_desc = left(p_why, 300), lease_until = NULL, next_at = NULL
     WHERE id = p_id RETURNING * INTO p;
    UPDATE payouts SET status_query_id = mpesa_status_open('payout', p.id, NULL, p.originator_id, p_at)
     WHERE id = p.id;
END
$$;

-- What every payout must pass before it is written (the caller has checked
-- its policy and its idempotency): the member active (their registered
-- phone is the one it goes to), the amount (whole shillings by M-Pesa),
-- the chama's limit, the member's side (loans: none: the debt is new),
-- the float or the cash.  The chama's float (or cash) account row is
-- locked while it is counted: two requests at once are decided one after
-- the other.  -> (NULL, phone) when it may be asked for, else (outcome,
-- NULL).
CREATE OR REPLACE FUNCTION payout_check(p_chama bigint, p_user bigint, p_amount_cents bigint, p_method text,
                                        p_debit_kind text)
RETURNS TABLE (outcome text, phone text)
LANGUAGE plpgsql AS $$
DECLARE
    ph text;
    lim bigint;
    side bigint;
BEGIN
    SELECT u.phone INTO ph FROM memberships m JOIN users u ON u.id = m.user_id
     WHERE m.chama_id = p_chama AND m.user_id = p_user AND m.status = 'active' AND u.deleted_at IS NULL;
    IF ph IS NULL THEN
        RETURN QUERY SELECT 'err_member_inactive'::text, NULL::text;
        RETURN;
    END IF;
    IF p_amount_cents IS NULL OR p_amount_cents <= 0 OR (p_method = 'mpesa' AND p_amount_cents % 100 <> 0) THEN
        RETURN QUERY SELECT 'err_payout_amount'::text, NULL::text;
        RETURN;
    END IF;
    SELECT (c.constitution ->> 'payout_max_cents')::bigint INTO lim FROM chamas c WHERE c.id = p_chama;
    IF lim IS NOT NULL AND p_amount_cents > lim THEN
        RETURN QUERY SELECT 'err_payout_limit'::text, NULL::text;
        RETURN;
    END IF;
    -- (SELECT ...): ledger_account is volatile (it may create the account);
    -- compared as it is, it would be called once per row of ledger_accounts
    PERFORM 1 FROM ledger_accounts WHERE id = (SELECT ledger_account(p_chama, CASE p_method WHEN 'mpesa' THEN 'mpesa_float'
                                                                                ELSE 'cash_on_hand' END, NULL)) FOR UPDATE;
    IF p_debit_kind <> 'loans_receivable' THEN
        side := payout_balance(p_chama, p_debit_kind, CASE WHEN p_debit_kind <> 'welfare_fund' THEN p_user END)
                - coalesce((SELECT sum(x.amount_cents) FROM payouts x
                             WHERE x.chama_id = p_chama AND x.debit_kind = p_debit_kind
                               AND (p_debit_kind = 'welfare_fund' OR x.user_id = p_user)
                               AND x.status IN ('requested', 'approved', 'sending', 'sent', 'unknown')), 0);
        IF side < p_amount_cents THEN
            RETURN QUERY SELECT 'err_payout_balance'::text, NULL::text;
            RETURN;
        END IF;
    END IF;
    IF p_method = 'mpesa'
       AND payout_balance(p_chama, 'mpesa_float', NULL) - payout_float_in_flight(p_chama, true) < p_amount_cents THEN
        RETURN QUERY SELECT 'err_float_short'::text, NULL::text;
        RETURN;
    END IF;
    IF p_method = 'cash' AND payout_balance(p_chama, 'cash_on_hand', NULL) < p_amount_cents THEN
        RETURN QUERY SELECT 'err_cash_short'::text, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT NULL::text, ph;
END
$$;

-- Contract 6: the one entry every module pays through.  p_user is the
-- beneficiary, paid only to their registered phone; p_maker the official
-- asking (NULL: a module's own decision, already approved where it was
-- taken; the approvals below are still asked for).  Opens the approval
-- (kind 'payout', or 'cash_payout' for cash) through approval_open; a
-- loan's (ref_table 'loans') is never decided by its guarantors.
-- Outcome: ok_payout_requested (payout id, approval code), or
-- err_not_official, err_member_inactive, err_payout_amount,
-- err_payout_limit, err_payout_balance (the member's side cannot give
-- it), err_float_short (the M-Pesa float, less what is already going out,
-- cannot cover it), err_cash_short, or approval_open's refusal.  A second
-- request for the same ref_table/ref_id/member returns the live one.
CREATE OR REPLACE FUNCTION payout_request(p_chama bigint, p_user bigint, p_kind text, p_amount_cents bigint,
                                          p_method text, p_debit_kind text, p_ref_table text, p_ref_id bigint,
                                          p_maker bigint, p_memo text, p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, payout_id bigint, approval_code text)
LANGUAGE plpgsql AS $$
DECLARE
    ck record;
    p payouts%ROWTYPE;
    a record;
BEGIN
    IF NOT payout_debit_allowed(p_kind, p_debit_kind) OR p_method NOT IN ('mpesa', 'cash') THEN
        RAISE EXCEPTION 'payout_request: a % payout by % is not paid from %', p_kind, p_method, p_debit_kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_maker IS NOT NULL AND NOT policy_allows(p_maker, p_chama, 'money.payout_request') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF p_ref_table IS NOT NULL THEN
        SELECT * INTO p FROM payouts x WHERE x.ref_table = p_ref_table AND x.ref_id = p_ref_id
                                         AND x.user_id = p_user AND x.status NOT IN ('failed', 'cancelled');
        IF FOUND THEN
            RETURN QUERY SELECT 'ok_payout_requested'::text, p.id, NULL::text;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO ck FROM payout_check(p_chama, p_user, p_amount_cents, p_method, p_debit_kind);
    IF ck.outcome IS NOT NULL THEN
        RETURN QUERY SELECT ck.outcome, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    INSERT INTO payouts (chama_id, user_id, kind, amount_cents, method, status, phone, debit_kind, ref_table, ref_id,
                         memo, channel, maker_user_id, requested_at)
    VALUES (p_chama, p_user, p_kind, p_amount_cents, p_method, 'requested', ck.phone, p_debit_kind, p_ref_table,
            p_ref_id, left(btrim(p_memo), 100), p_channel, p_maker, p_at)
    RETURNING * INTO p;
    SELECT * INTO a FROM approval_open(p_chama, CASE p_method WHEN 'cash' THEN 'cash_payout' ELSE 'payout' END, p.id,
                                       p_amount_cents, p_maker, p_user,
                                       -- the officials' words: approval_what_payout (plain text only)
                                       payout_vars(p) - 'kind' - 'receipt', p_channel, p_at,
                                       CASE p_ref_table WHEN 'loans' THEN loan_guarantor_ids(p_ref_id)
                                                        ELSE '{}'::bigint[] END) o;
    IF a.outcome NOT LIKE 'ok%' THEN
        -- no approval could be opened: the request goes no further
        UPDATE payouts SET status = 'cancelled', result_desc = a.outcome, completed_at = now() WHERE id = p.id;
        RETURN QUERY SELECT a.outcome::text, p.id, NULL::text;
        RETURN;
    END IF;
    UPDATE payouts SET approval_id = a.approval_id WHERE id = p.id;
    RETURN QUERY SELECT 'ok_payout_requested'::text, p.id, a.code::text;
END
$$;

-- A payout a module's own approval decided already (a loan: N officials,
-- never the borrower or a guarantor, approved it; schema/73_loan_approvals.sql):
-- by M-Pesa only (cash needs a second official to say it was handed
-- over: payout_request), written approved with that approval (an executed
-- one of the chama: anything else is a bug, it raises), and due at once
-- for the B2C job.  The same checks as payout_request; the same
-- idempotency (a live payout for the ref is returned).  Outcome:
-- ok_payout_approved (payout id), or payout_check's refusal.
CREATE OR REPLACE FUNCTION payout_request_approved(p_chama bigint, p_user bigint, p_kind text, p_amount_cents bigint,
                                                   p_debit_kind text, p_ref_table text, p_ref_id bigint,
                                                   p_approval bigint, p_memo text, p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, payout_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    ck record;
    p payouts%ROWTYPE;
BEGIN
    IF NOT payout_debit_allowed(p_kind, p_debit_kind) OR p_ref_table IS NULL THEN
        RAISE EXCEPTION 'payout_request_approved: a % payout is not paid from %', p_kind, p_debit_kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM approvals x WHERE x.id = p_approval AND x.chama_id = p_chama
                                               AND x.status = 'executed') THEN
        RAISE EXCEPTION 'payout_request_approved: approval % is not an executed approval of chama %', p_approval,
            p_chama USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO p FROM payouts x WHERE x.ref_table = p_ref_table AND x.ref_id = p_ref_id
                                     AND x.user_id = p_user AND x.status NOT IN ('failed', 'cancelled');
    IF FOUND THEN
        RETURN QUERY SELECT 'ok_payout_approved'::text, p.id;
        RETURN;
    END IF;
    SELECT * INTO ck FROM payout_check(p_chama, p_user, p_amount_cents, 'mpesa', p_debit_kind);
    IF ck.outcome IS NOT NULL THEN
        RETURN QUERY SELECT ck.outcome, NULL::bigint;
        RETURN;
    END IF;
    INSERT INTO payouts (chama_id, user_id, kind, amount_cents, method, status, phone, debit_kind, ref_table, ref_id,
                         memo, channel, approval_id, requested_at, approved_at, next_at)
    VALUES (p_chama, p_user, p_kind, p_amount_cents, 'mpesa', 'approved', ck.phone, p_debit_kind, p_ref_table,
            p_ref_id, left(btrim(p_memo), 100), p_channel, p_approval, p_at, p_at, now())
    RETURNING * INTO p;
    PERFORM pg_notify('chamad_payouts', p.id::text);
    RETURN QUERY SELECT 'ok_payout_approved'::text, p.id;
END
$$;

-- Helper E's approvals decided (kinds 'payout' and 'cash_payout').  An
-- M-Pesa payout becomes due (any daemon's B2C job is woken); a cash one is
-- posted at once (the second official confirms it was handed over);
-- rejected or expired: cancelled.  Returns the payout's status.
CREATE OR REPLACE FUNCTION payout_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
                                              p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    p payouts%ROWTYPE;
BEGIN
    SELECT * INTO p FROM payouts WHERE id = p_ref_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout_on_approval: no payout %', p_ref_id USING ERRCODE = 'no_data_found';
    END IF;
    IF p.status <> 'requested' THEN
        RETURN p.status;	-- decided before: a repeat changes nothing
    END IF;
    UPDATE payouts SET approval_id = coalesce(approval_id, p_approval_id) WHERE id = p.id;
    IF p_decision <> 'approved' THEN
        UPDATE payouts SET status = 'cancelled', result_desc = p_decision, completed_at = now() WHERE id = p.id;
        RETURN 'cancelled';
    END IF;
    IF p.method = 'cash' THEN
        PERFORM payout_post(p.id, NULL, p_at);
        RETURN 'paid';
    END IF;
    UPDATE payouts SET status = 'approved', approved_at = p_at, next_at = now() WHERE id = p.id;
    PERFORM pg_notify('chamad_payouts', p.id::text);
    RETURN 'approved';
END
$$;

-- Approvals dispatch by kind (<kind>_on_approval): a cash payout's
-- approval is the same decision.
CREATE OR REPLACE FUNCTION cash_payout_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
                                                   p_at timestamptz)
RETURNS text
LANGUAGE sql AS $$
    SELECT payout_on_approval(p_approval_id, p_ref_id, p_decision, p_at)
$$;

-- The B2C job's claim: approved M-Pesa payouts that are due, SKIP LOCKED
-- (several daemons share them), one by one with the chama's float locked:
-- the float (ledger mpesa_float) less what is already sending, sent or
-- unknown must cover it, and it must be within [mpesa] max_payout
-- (p_max_cents), else it fails here (nothing is sent) and the officials
-- are told.  A claimed one is 'sending' under a lease with attempt + 1 and
-- its OriginatorConversationID "payout:<id>:<attempt>".
-- -> one row per payout looked at: id (NULL on the last row, which only
-- carries next_ms), action ('send' | 'failed'), originator_id, phone,
-- amount_cents, remarks, occasion; next_ms on every row: milliseconds
-- until the next approved payout is due (NULL: none waiting).
CREATE OR REPLACE FUNCTION payout_claim(p_me text, p_lease_s int, p_max_cents bigint, p_limit int, p_at timestamptz)
RETURNS TABLE (id bigint, action text, originator_id text, phone text, amount_cents bigint, remarks text,
               occasion text, next_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    d record;
    p payouts%ROWTYPE;
    nx bigint;
BEGIN
    FOR d IN SELECT x.id FROM payouts x
              WHERE x.status = 'approved' AND x.method = 'mpesa' AND x.next_at <= now()
              ORDER BY x.next_at LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
        SELECT * INTO p FROM payouts x WHERE x.id = d.id;
        PERFORM 1 FROM ledger_accounts WHERE ledger_accounts.id = (SELECT ledger_account(p.chama_id, 'mpesa_float', NULL))
           FOR UPDATE;	-- one call, not one per row (ledger_account is volatile)
        IF p_max_cents > 0 AND p.amount_cents > p_max_cents THEN
            PERFORM payout_fail(p.id, 'limit', NULL, 'over [mpesa] max_payout');
            RETURN QUERY SELECT p.id, 'failed'::text, NULL::text, NULL::text, p.amount_cents, NULL::text, NULL::text,
                                NULL::bigint;
        ELSIF payout_balance(p.chama_id, 'mpesa_float', NULL) - payout_float_in_flight(p.chama_id, false)
              < p.amount_cents THEN
            PERFORM payout_fail(p.id, 'float', NULL, 'the M-Pesa float cannot cover it');
            RETURN QUERY SELECT p.id, 'failed'::text, NULL::text, NULL::text, p.amount_cents, NULL::text, NULL::text,
                                NULL::bigint;
        ELSE
            UPDATE payouts x SET status = 'sending', attempt = x.attempt + 1,
                   originator_id = 'payout:' || x.id || ':' || (x.attempt + 1), conversation_id = NULL,
                   claimed_by = p_me, lease_until = now() + make_interval(secs => p_lease_s), next_at = NULL,
                   sent_at = now()
             WHERE x.id = p.id RETURNING * INTO p;
            RETURN QUERY SELECT p.id, 'send'::text, p.originator_id, p.phone, p.amount_cents,
                                left(initcap(replace(p.kind, '_', ' ')) || ' ' || p.id, 100),
                                left(coalesce(nullif(btrim(p.memo), ''), p.kind), 100), NULL::bigint;
        END IF;
    END LOOP;
    SELECT ceil(extract(epoch FROM min(x.next_at) - now()) * 1000)::bigint INTO nx
      FROM payouts x WHERE x.status = 'approved' AND x.method = 'mpesa';
    RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text,
                        greatest(nx, 0);
END
$$;

-- Daraja's synchronous answer to a B2C request (p_answer: 'accepted' with
-- its ConversationID, 'refused' (an error body: it was not queued),
-- 'unanswered' (it may have been processed), 'unsent' (it never reached
-- Daraja: due again)).  Only for the attempt still sending: an answer for
-- an earlier attempt changes nothing.  Returns the status after.
CREATE OR REPLACE FUNCTION payout_answer(p_originator text, p_answer text, p_conversation text, p_code text,
                                         p_why text, p_result_timeout_s int, p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    p payouts%ROWTYPE;
BEGIN
    SELECT * INTO p FROM payouts WHERE originator_id = p_originator FOR UPDATE;
    IF NOT FOUND OR p.status <> 'sending' THEN
        RETURN coalesce(p.status, 'none');	-- the result overtook the answer, or a repeat
    END IF;
    CASE p_answer
        WHEN 'accepted' THEN
            UPDATE payouts SET status = 'sent', conversation_id = left(p_conversation, 64), lease_until = NULL,
                   next_at = now() + make_interval(secs => p_result_timeout_s)
             WHERE id = p.id;
            RETURN 'sent';
        WHEN 'refused' THEN
            PERFORM payout_fail(p.id, 'mpesa', NULL, format('B2C refused: %s %s', p_code, p_why));
            RETURN 'failed';
        WHEN 'unsent' THEN
            UPDATE payouts SET status = 'approved', claimed_by = NULL, lease_until = NULL,
                   next_at = now() + interval '5 seconds'
             WHERE id = p.id;
            RETURN 'approved';
        ELSE
            PERFORM payout_unknown(p.id, 'B2C unanswered: ' || coalesce(p_why, ''), p_at);
            RETURN 'unknown';
    END CASE;
END
$$;

-- The periodic sweep: payouts whose daemon stopped while sending (the
-- lease ended) and sent ones with no result within [mpesa]
-- b2c_result_timeout_s: 'unknown', each with its status query.  Returns
-- how many it moved, and how many stay unknown (for the operators' log).
CREATE OR REPLACE FUNCTION payout_sweep(p_at timestamptz)
RETURNS TABLE (moved int, unknown int)
LANGUAGE plpgsql AS $$
DECLARE
    d record;
    n int := 0;
BEGIN
    FOR d IN SELECT x.id, x.status FROM payouts x
              WHERE (x.status = 'sending' AND x.lease_until < now()) OR (x.status = 'sent' AND x.next_at < now())
              ORDER BY x.id FOR UPDATE SKIP LOCKED LOOP
        PERFORM payout_unknown(d.id, CASE d.status WHEN 'sending' THEN 'its daemon stopped while sending'
                                                   ELSE 'no result in time' END, p_at);
        n := n + 1;
    END LOOP;
    RETURN QUERY SELECT n, (SELECT count(*)::int FROM payouts WHERE status = 'unknown');
END
$$;

-- A B2C Result (p_source 'result': ResultURL; 'timeout': QueueTimeOutURL,
-- the request expired in Safaricom's queue: not paid).  Found by our
-- OriginatorConversationID: success posts once (payout_post), a failure
-- code fails it.  Outcome: 'paid', 'failed', 'duplicate' (decided before:
-- nothing changes), 'ignored' (an id we never used: nothing), 'stale' (an
-- earlier attempt's result after it was re-sent: nothing moves; a success
-- here is a double payment for an operator), 'mismatch' (paid another
-- amount than asked: unknown, for the status query and an operator).
CREATE OR REPLACE FUNCTION payout_result(p_originator text, p_conversation text, p_code bigint, p_desc text,
                                         p_receipt text, p_amount_cents bigint, p_source text, p_at timestamptz)
RETURNS TABLE (outcome text, payout_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    m text[] := regexp_match(coalesce(p_originator, ''), '^payout:([0-9]{1,18}):([0-9]{1,2})$');
    p payouts%ROWTYPE;
BEGIN
    IF m IS NOT NULL THEN
        SELECT * INTO p FROM payouts WHERE id = m[1]::bigint FOR UPDATE;
    END IF;
    IF p.id IS NULL OR p.method <> 'mpesa' OR m[2]::int < 1 OR m[2]::int > p.attempt THEN
        RETURN QUERY SELECT 'ignored'::text, NULL::bigint;
        RETURN;
    END IF;
    IF p.status IN ('paid', 'failed', 'cancelled') THEN
        RETURN QUERY SELECT 'duplicate'::text, p.id;
        RETURN;
    END IF;
    IF p.originator_id <> p_originator THEN
        -- an earlier attempt answers while a later one is out
        RETURN QUERY SELECT 'stale'::text, p.id;
        RETURN;
    END IF;
    -- the current attempt (also while 'approved' for a re-send the status
    -- query asked for: this result says the first one did arrive)
    IF p_source = 'timeout' OR p_code IS DISTINCT FROM 0 THEN
        IF p.status = 'approved' THEN
            -- the re-send stands: the status query said it does not exist
            RETURN QUERY SELECT 'duplicate'::text, p.id;
            RETURN;
        END IF;
        PERFORM payout_fail(p.id, CASE p_source WHEN 'timeout' THEN 'timeout' ELSE 'mpesa' END, p_code, p_desc);
        RETURN QUERY SELECT 'failed'::text, p.id;
        RETURN;
    END IF;
    IF p_amount_cents IS NOT NULL AND p_amount_cents >= 0 AND p_amount_cents <> p.amount_cents THEN
        UPDATE payouts SET conversation_id = coalesce(conversation_id, left(p_conversation, 64)),
               mpesa_receipt = left(p_receipt, 100) WHERE id = p.id;
        IF p.status <> 'unknown' THEN
            PERFORM payout_unknown(p.id, format('paid %s cents, asked %s', p_amount_cents, p.amount_cents), p_at);
        END IF;
        RETURN QUERY SELECT 'mismatch'::text, p.id;
        RETURN;
    END IF;
    UPDATE payouts SET conversation_id = coalesce(conversation_id, left(p_conversation, 64)), result_code = 0,
           result_desc = left(p_desc, 300),
           resolved_at = CASE WHEN status IN ('unknown', 'approved') THEN now() ELSE resolved_at END,
           resolution = CASE WHEN status IN ('unknown', 'approved') THEN 'paid' ELSE resolution END
     WHERE id = p.id;
    PERFORM payout_post(p.id, left(p_receipt, 100), p_at);
    RETURN QUERY SELECT 'paid'::text, p.id;
END
$$;

-- Helper C's Transaction Status rail answers for a payout whose outcome
-- was unknown (p_found: completed; false: not completed; NULL: no answer
-- after the rail's attempts).  Completed: paid and posted once.  No such
-- payment (a non-zero result code): re-sent with a new originator id, at
-- most three attempts in all; found but not completed: failed.  No answer:
-- it stays unknown and the officials are told (money may have left: only
-- an operator, with the statement, can say).  Returns the status after.
CREATE OR REPLACE FUNCTION payout_on_status(p_query_id bigint, p_ref_id bigint, p_found boolean, p_result jsonb,
                                            p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    p payouts%ROWTYPE;
    code bigint := (p_result ->> 'result_code')::bigint;
    cents bigint := (p_result ->> 'amount_cents')::bigint;
BEGIN
    SELECT * INTO p FROM payouts WHERE id = p_ref_id FOR UPDATE;
    IF NOT FOUND OR p.status NOT IN ('unknown', 'sent', 'sending') THEN
        RETURN coalesce(p.status, 'none');	-- decided meanwhile (its result came): nothing to do
    END IF;
    IF p_found IS NULL THEN
        UPDATE payouts SET resolution = 'unknown', resolved_at = now() WHERE id = p.id RETURNING * INTO p;
        PERFORM payout_tell_officials(p, 'sms_payout_unknown_officials', NULL, 'unknown:' || coalesce(p_query_id, 0));
        RETURN p.status;
    END IF;
    IF p_found AND (cents IS NULL OR cents < 0 OR cents = p.amount_cents) THEN
        UPDATE payouts SET resolution = 'paid', resolved_at = now(), result_code = 0,
               result_desc = left(p_result ->> 'desc', 300) WHERE id = p.id;
        PERFORM payout_post(p.id, left(p_result ->> 'receipt', 100), p_at);
        RETURN 'paid';
    END IF;
    IF p_found THEN
        -- completed with another amount: the books wait for an operator
        UPDATE payouts SET resolution = 'unknown', resolved_at = now(),
               result_desc = left(format('status query: paid %s cents, asked %s', cents, p.amount_cents), 300)
         WHERE id = p.id RETURNING * INTO p;
        PERFORM payout_tell_officials(p, 'sms_payout_unknown_officials', NULL, 'mismatch');
        RETURN p.status;
    END IF;
    IF code IS NOT NULL AND code <> 0 THEN
        IF p.attempt >= 3 THEN
            UPDATE payouts SET resolution = 'not_found', resolved_at = now() WHERE id = p.id;
            PERFORM payout_fail(p.id, 'attempts', code, 'not found after three attempts');
            RETURN 'failed';
        END IF;
        -- the payment does not exist: sent again, with a new originator id
        UPDATE payouts SET status = 'approved', resolution = 'not_found', resolved_at = now(), claimed_by = NULL,
               lease_until = NULL, next_at = now(), result_code = code, result_desc = left(p_result ->> 'desc', 300)
         WHERE id = p.id;
        PERFORM pg_notify('chamad_payouts', p.id::text);
        RETURN 'approved';
    END IF;
    UPDATE payouts SET resolution = 'failed', resolved_at = now() WHERE id = p.id;
    PERFORM payout_fail(p.id, 'mpesa', code, coalesce(p_result ->> 'status', p_result ->> 'desc'));
    RETURN 'failed';
END
$$;
