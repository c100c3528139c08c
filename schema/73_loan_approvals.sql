-- schema/73_loan_approvals.sql: a loan's approval, its money out, and the
-- officials' decisions on a loan in default (pledges called, write-off).
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions.  The tables are migrations 003 and 024's;
-- the lifecycle and the ledger recipes are 024's header.
--
--   loan_approval_open    under_review: an approval of kind 'loan' for N
--                         officials (constitution approvals_count), never
--                         the borrower (maker and beneficiary) nor any
--                         guarantor (approvals.excluded_user_ids)
--   loan_on_approval      approved: an M-Pesa payout to the borrower's
--                         registered phone, written already approved by
--                         this approval (payout_request_approved: no second
--                         round); rejected / expired: holds ended, the
--                         queue moves on
--   loan_disburse         an approved loan whose payout failed or could not
--                         be asked for: send it again (M-Pesa, the same
--                         approval), or the treasurer records the cash
--                         handed over and a second official confirms it
--                         (a cash_payout approval: its confirmation posts)
--   loan_approved_cancel           an approved loan with no live payout: cancelled
--   loan_on_paid          payout_post of a loan's payout: active, the
--                         recorded schedule re-dated from the day paid
--                         (amounts never change), interest and fee posted
--   loan_call_request / loan_call_on_approval
--                         a defaulted loan: each pledge's held amount moves
--                         from the guarantor's savings to the loan through
--                         loan_repay (method guarantor_call)
--   loan_write_off_request / loan_write_off_on_approval
--                         a defaulted loan: what is left goes to expenses
--
-- A failed payout never cancels the loan by itself: the loan stays
-- approved (its principal still reserved in the pool) and the officials
-- are told they may send it again, pay it in cash or cancel the loan; a
-- loan is cancelled only by an official (loan_approved_cancel), and only while no
-- payout of it is live (one being sent may still be paid).
--
-- Every writer of a loan's money locks the loan row first (FOR UPDATE).

-- The day a loan is paid, and its due dates, are dates in Kenya: M-Pesa
-- and every chama this serves keep East Africa Time (no daylight saving).
CREATE OR REPLACE FUNCTION loan_tz() RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'Africa/Nairobi'::text
$$;

-- Who pledged for the loan and may not decide about it: the accepted,
-- called or released guarantors other than the borrower (whose own cover
-- is a row with guarantor = borrower; the borrower is excluded as maker).
CREATE OR REPLACE FUNCTION loan_guarantor_ids(p_loan bigint) RETURNS bigint[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(g.guarantor_user_id ORDER BY g.guarantor_user_id), '{}')
      FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id
     WHERE g.loan_id = p_loan AND g.guarantor_user_id <> l.user_id
       AND g.status IN ('accepted', 'called', 'released')
$$;

-- The officials: active members in an officials' role.
CREATE OR REPLACE FUNCTION loan_tell_officials(l loans, p_template text, p_vars jsonb, p_event text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o record;
BEGIN
    FOR o IN SELECT m.user_id FROM memberships m
              WHERE m.chama_id = l.chama_id AND m.status = 'active'
                AND m.role IN ('chairperson', 'treasurer', 'secretary') ORDER BY m.user_id LOOP
        PERFORM notify(o.user_id, 'loan', p_template, p_vars, 4, 'loan:' || l.id || ':' || p_event || ':' || o.user_id,
                       l.chama_id);
    END LOOP;
END
$$;

-- What the officials read about an application (the words
-- approval_what_loan and sms_approval_what_loan): the borrower, the
-- instalments, the guarantees, the chama's free pool, the borrower's
-- history here (their other loans, and how many of those instalments were
-- penalised for lateness).  Plain values only (text): the words are the
-- menus'.
CREATE OR REPLACE FUNCTION loan_approval_vars(l loans) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'member', (SELECT full_name FROM users WHERE id = l.user_id),
        'loan', l.id::text,
        'term', l.term_periods::text,
        'inst', format_kes(coalesce((SELECT s.principal_due_cents + s.interest_due_cents + s.fee_due_cents
                                       FROM loan_schedules s WHERE s.loan_id = l.id ORDER BY s.installment_no
                                      LIMIT 1), 0)),
        'guars', (SELECT count(*) FROM loan_guarantors g
                   WHERE g.loan_id = l.id AND g.status = 'accepted' AND g.guarantor_user_id <> l.user_id)::text,
        'cover', format_kes((SELECT coalesce(sum(g.pledged_cents), 0) FROM loan_guarantors g
                              WHERE g.loan_id = l.id AND g.status = 'accepted')::bigint),
        'pool', format_kes(loan_pool_cents(l.chama_id)),
        'past', (SELECT count(*) FROM loans o WHERE o.chama_id = l.chama_id AND o.user_id = l.user_id
                    AND o.id <> l.id AND o.status IN ('active', 'closed', 'defaulted', 'written_off'))::text,
        'late', (SELECT count(DISTINCT p.schedule_id) FROM loan_penalties p JOIN loans o ON o.id = p.loan_id
                  WHERE o.chama_id = l.chama_id AND o.user_id = l.user_id AND o.id <> l.id)::text);
END
$$;

-- Contract 6 (called by loan_advance, schema/71_loans.sql, when the cover
-- is complete and the pool covers it): the loan goes under review with an
-- approval of kind 'loan' (maker and beneficiary the borrower, the
-- guarantors excluded).  Returns approval_open's outcome:
-- ok_approval_opened (the loan is under_review, approval_id set),
-- err_approval_pending (one is open: nothing changes), or
-- err_approvers_too_few (too few officials who are neither the borrower
-- nor a guarantor: the loan stays where it was, the caller decides).
CREATE OR REPLACE FUNCTION loan_approval_open(p_loan bigint, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    a record;
BEGIN
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan_approval_open: no loan %', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    IF l.status NOT IN ('applied', 'queued', 'under_review') THEN
        RAISE EXCEPTION 'loan_approval_open: loan % is %', p_loan, l.status USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO a FROM approval_open(l.chama_id, 'loan', l.id, l.principal_cents, l.user_id, l.user_id,
                                       loan_approval_vars(l), coalesce(l.channel, 'system'), p_at,
                                       loan_guarantor_ids(l.id)) o;
    IF a.outcome = 'ok_approval_opened' THEN
        UPDATE loans SET status = 'under_review', approval_id = a.approval_id, reviewed_at = p_at WHERE id = l.id;
    END IF;
    RETURN a.outcome;
END
$$;

-- An approved loan's money by M-Pesa, already approved by the loan's
-- approval.  Refused (the float, the limit, the member): the loan stays
-- approved and the officials are told why and what they may do.  Returns
-- the outcome (ok_payout_approved or the refusal) and the payout.
CREATE OR REPLACE FUNCTION loan_payout_send(l loans, p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, payout_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM payout_request_approved(l.chama_id, l.user_id, 'loan', l.principal_cents, 'loans_receivable',
                                                 'loans', l.id, l.approval_id, 'Loan ' || l.id, p_channel, p_at) x;
    IF r.outcome = 'ok_payout_approved' THEN
        UPDATE loans SET payout_id = r.payout_id WHERE id = l.id;
    ELSE
        PERFORM loan_tell_officials(l, 'sms_loanoff_waiting_officials',
                                    jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = l.chama_id),
                                                       'member', (SELECT full_name FROM users WHERE id = l.user_id),
                                                       'amount', format_kes(l.principal_cents),
                                                       'reason', jsonb_build_object('template',
                                                           'sms_loanoff_why_' || substr(r.outcome, 5))),
                                    'waiting:' || (SELECT count(*) FROM payouts x WHERE x.ref_table = 'loans'
                                                                                    AND x.ref_id = l.id));
    END IF;
    RETURN QUERY SELECT r.outcome::text, r.payout_id::bigint;
END
$$;

-- The loan's approval decided (approval_dispatch, schema/85_approvals.sql).
-- Approved: status approved (by the last official to approve), its payout
-- asked for.  Rejected or expired: status rejected, every hold ended, the
-- next in the queue looked at (the maker, the borrower, hears the decision
-- from the approval itself).  Returns the loan's status.
CREATE OR REPLACE FUNCTION loan_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
                                            p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
BEGIN
    -- the chama first, then the loan (loan_advance's order): a rejection
    -- moves the chama's queue
    PERFORM 1 FROM chamas WHERE id = (SELECT chama_id FROM loans WHERE id = p_ref_id) FOR UPDATE;
    SELECT * INTO l FROM loans WHERE id = p_ref_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan_on_approval: no loan %', p_ref_id USING ERRCODE = 'no_data_found';
    END IF;
    IF l.status <> 'under_review' THEN
        RETURN l.status;	-- decided before: a repeat changes nothing
    END IF;
    IF p_decision <> 'approved' THEN
        UPDATE loans SET status = 'rejected', rejected_at = p_at, approval_id = coalesce(approval_id, p_approval_id)
         WHERE id = l.id;
        PERFORM loan_holds_end(l.id, 'cancelled', p_at);
        PERFORM loan_queue_advance(l.chama_id, p_at);
        RETURN 'rejected';
    END IF;
    UPDATE loans SET status = 'approved', approved_at = p_at, approval_id = p_approval_id,
           approved_by_user_id = (SELECT v.official_user_id FROM approval_votes v JOIN approvals a ON a.id = v.approval_id
                                   WHERE v.approval_id = p_approval_id AND v.vote = 'approve' AND v.round = a.round
                                   ORDER BY v.id DESC LIMIT 1)
     WHERE id = l.id RETURNING * INTO l;
    PERFORM loan_payout_send(l, coalesce(audit_setting('chamad.channel'), 'system'), p_at);
    RETURN 'approved';
END
$$;

-- Contract 6: the loan's payout was paid (payout_post, in its
-- transaction).  The loan becomes active from that day: the schedule
-- recorded at application (loan_schedule_record) is re-dated with the
-- rule of src/base/loansched.c (instalment k falls k periods after the
-- day paid: +7k or +14k days, or k calendar months on the same day or the
-- month's last), its amounts untouched; the interest and fee are posted
-- (Dr loans_receivable / Cr interest_income, fee_income), so the
-- borrower's receivable is what they owe; the borrower is told the first
-- instalment.  Anything but an approved loan with this payout is a bug.
CREATE OR REPLACE FUNCTION loan_on_paid(p_loan bigint, p_payout bigint, p_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    p payouts%ROWTYPE;
    paid date := (p_at AT TIME ZONE loan_tz())::date;
    interest bigint;
    fees bigint;
    lines jsonb;
    first loan_schedules%ROWTYPE;
BEGIN
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    SELECT * INTO STRICT p FROM payouts WHERE id = p_payout;
    IF l.id IS NULL OR l.status <> 'approved' OR p.ref_table IS DISTINCT FROM 'loans' OR p.ref_id <> l.id
       OR p.amount_cents <> l.principal_cents THEN
        RAISE EXCEPTION 'loan_on_paid: payout % does not pay out loan % (%)', p_payout, p_loan, l.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF l.repayment_frequency NOT IN ('weekly', 'biweekly', 'monthly') THEN
        RAISE EXCEPTION 'loan_on_paid: loan % is repaid %', l.id, l.repayment_frequency
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(sum(interest_due_cents), 0), coalesce(sum(fee_due_cents), 0) INTO interest, fees
      FROM loan_schedules WHERE loan_id = l.id;
    IF NOT EXISTS (SELECT 1 FROM loan_schedules WHERE loan_id = l.id) OR fees <> l.fees_cents
       OR (SELECT count(*) FROM loan_schedules WHERE loan_id = l.id) <> l.term_periods THEN
        RAISE EXCEPTION 'loan_on_paid: loan % has no schedule of its terms', l.id USING ERRCODE = 'check_violation';
    END IF;
    UPDATE loan_schedules SET due_date = CASE l.repayment_frequency
               WHEN 'weekly' THEN paid + 7 * installment_no
               WHEN 'biweekly' THEN paid + 14 * installment_no
               ELSE (paid + make_interval(months => installment_no))::date END
     WHERE loan_id = l.id;
    SELECT * INTO first FROM loan_schedules WHERE loan_id = l.id ORDER BY installment_no LIMIT 1;
    UPDATE loans SET status = 'active', amount_disbursed_cents = principal_cents, total_interest_cents = interest,
           disbursed_at = p_at, payout_id = p.id,
           disbursed_by_user_id = CASE p.method WHEN 'cash' THEN p.maker_user_id END,
           first_due_date = first.due_date,
           maturity_date = (SELECT max(due_date) FROM loan_schedules WHERE loan_id = l.id)
     WHERE id = l.id RETURNING * INTO l;
    IF interest + fees > 0 THEN
        lines := jsonb_build_array(jsonb_build_object('kind', 'loans_receivable', 'user', l.user_id, 'side', 'debit',
                                                      'cents', interest + fees));
        IF interest > 0 THEN
            lines := lines || jsonb_build_object('kind', 'interest_income', 'side', 'credit', 'cents', interest);
        END IF;
        IF fees > 0 THEN
            lines := lines || jsonb_build_object('kind', 'fee_income', 'side', 'credit', 'cents', fees);
        END IF;
        PERFORM ledger_post(l.chama_id, 'loan_interest', 'loan:' || l.id || ':interest', lines, 'loans', l.id, NULL,
                            -- part of the disbursement in the audit trail's words
                            jsonb_build_object('action', 'loan_disbursed', 'user', l.user_id, 'entity_type', 'loans',
                                               'entity_id', l.id, 'direction', 'internal',
                                               'key', 'loan:' || l.id || ':interest',
                                               'details', jsonb_build_object('interest_cents', interest,
                                                                             'fee_cents', fees, 'payout_id', p.id)),
                            NULL, 'system', 'Loan ' || l.id || ' interest', p_at);
    END IF;
    PERFORM notify(l.user_id, 'loan', 'sms_loanoff_active',
                   jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = l.chama_id),
                                      'amount', format_kes(l.principal_cents),
                                      'first', format_kes(first.principal_due_cents + first.interest_due_cents
                                                          + first.fee_due_cents),
                                      'date', to_char(first.due_date, 'DD/MM/YYYY'),
                                      'count', l.term_periods,
                                      'total', format_kes(l.principal_cents + interest + fees)),
                   3, 'loan:' || l.id || ':active', l.chama_id);
END
$$;

-- The loan an official acts on: theirs to act on (policy), of this chama.
-- -> the loan row locked, or the refusal.
CREATE OR REPLACE FUNCTION loan_for_official(p_actor bigint, p_chama bigint, p_loan bigint, p_action text)
RETURNS TABLE (outcome text, loan loans)
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
BEGIN
    IF NOT policy_allows(p_actor, p_chama, p_action) THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::loans;
        RETURN;
    END IF;
    SELECT * INTO l FROM loans WHERE id = p_loan AND chama_id = p_chama FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_loanoff_none'::text, NULL::loans;
        RETURN;
    END IF;
    IF l.user_id = p_actor THEN
        RETURN QUERY SELECT 'err_loanoff_own'::text, NULL::loans;
        RETURN;
    END IF;
    RETURN QUERY SELECT NULL::text, l;
END
$$;

-- An official (policy loans.disburse) pays out an approved loan that has
-- no live payout (its B2C failed, or could not be asked for): p_method
-- 'mpesa' sends it again under the loan's approval; 'cash' records that
-- the official handed the cash over, and a second official confirms it
-- (payout_request: a cash_payout approval, never the borrower or a
-- guarantor; its confirmation posts the payout and makes the loan
-- active).  Outcome: ok_loanoff_sent, ok_loanoff_cash (with the
-- confirmation's code), err_not_official, err_loanoff_none, err_loanoff_own,
-- err_loanoff_not_approved, err_loanoff_payout_live (one is on its way), or the
-- payout's refusal (err_float_short, err_cash_short, ...).
CREATE OR REPLACE FUNCTION loan_disburse(p_actor bigint, p_chama bigint, p_loan bigint, p_method text,
                                         p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, payout_id bigint, code text)
LANGUAGE plpgsql AS $$
DECLARE
    f record;
    l loans%ROWTYPE;
    r record;
BEGIN
    IF p_method NOT IN ('mpesa', 'cash') THEN
        RAISE EXCEPTION 'loan_disburse: method %', p_method USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO f FROM loan_for_official(p_actor, p_chama, p_loan, 'loans.disburse');
    IF f.outcome IS NOT NULL THEN
        RETURN QUERY SELECT f.outcome, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    l := f.loan;
    IF l.status <> 'approved' THEN
        RETURN QUERY SELECT 'err_loanoff_not_approved'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM payouts x WHERE x.ref_table = 'loans' AND x.ref_id = l.id
                                         AND x.status NOT IN ('failed', 'cancelled')) THEN
        RETURN QUERY SELECT 'err_loanoff_payout_live'::text, (SELECT x.id FROM payouts x WHERE x.ref_table = 'loans'
                               AND x.ref_id = l.id AND x.status NOT IN ('failed', 'cancelled')), NULL::text;
        RETURN;
    END IF;
    IF p_method = 'mpesa' THEN
        SELECT * INTO r FROM loan_payout_send(l, p_channel, p_at) x;
        RETURN QUERY SELECT CASE r.outcome WHEN 'ok_payout_approved' THEN 'ok_loanoff_sent' ELSE r.outcome END,
                            r.payout_id, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO r FROM payout_request(l.chama_id, l.user_id, 'loan', l.principal_cents, 'cash', 'loans_receivable',
                                        'loans', l.id, p_actor, 'Loan ' || l.id, p_channel, p_at) x;
    IF r.outcome = 'ok_payout_requested' THEN
        UPDATE loans SET payout_id = r.payout_id WHERE id = l.id;
        RETURN QUERY SELECT 'ok_loanoff_cash'::text, r.payout_id, r.approval_code;
        RETURN;
    END IF;
    RETURN QUERY SELECT r.outcome::text, r.payout_id, NULL::text;
END
$$;

-- An official (policy loans.disburse) cancels an approved loan that was
-- never paid and has no payout on its way: the holds end, the pool it
-- reserved goes to the next in the queue, the borrower is told.  Outcome:
-- ok_loanoff_cancelled, or loan_for_official's refusal,
-- err_loanoff_not_approved, err_loanoff_payout_live.
CREATE OR REPLACE FUNCTION loan_approved_cancel(p_actor bigint, p_chama bigint, p_loan bigint, p_at timestamptz)
RETURNS TABLE (outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    f record;
    l loans%ROWTYPE;
BEGIN
    PERFORM 1 FROM chamas WHERE id = p_chama FOR UPDATE;	-- the queue moves: loan_advance's order
    SELECT * INTO f FROM loan_for_official(p_actor, p_chama, p_loan, 'loans.disburse');
    IF f.outcome IS NOT NULL THEN
        RETURN QUERY SELECT f.outcome;
        RETURN;
    END IF;
    l := f.loan;
    IF l.status <> 'approved' THEN
        RETURN QUERY SELECT 'err_loanoff_not_approved'::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM payouts x WHERE x.ref_table = 'loans' AND x.ref_id = l.id
                                         AND x.status NOT IN ('failed', 'cancelled')) THEN
        RETURN QUERY SELECT 'err_loanoff_payout_live'::text;
        RETURN;
    END IF;
    UPDATE loans SET status = 'cancelled', cancelled_at = p_at WHERE id = l.id;
    PERFORM loan_holds_end(l.id, 'cancelled', p_at);
    PERFORM notify(l.user_id, 'loan', 'sms_loanoff_cancelled',
                   jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = l.chama_id),
                                      'amount', format_kes(l.principal_cents)),
                   4, 'loan:' || l.id || ':cancelled', l.chama_id);
    PERFORM loan_queue_advance(l.chama_id, p_at);
    RETURN QUERY SELECT 'ok_loanoff_cancelled'::text;
END
$$;

-- What each pledge of a loan still holds (pledged - released - called),
-- accepted pledges with something held, the borrower's own cover first
-- (their own savings answer for their loan before anyone else's), then
-- the guarantors in the order they pledged.
CREATE OR REPLACE FUNCTION loan_pledges_held(p_loan bigint)
RETURNS TABLE (guarantor_id bigint, user_id bigint, held_cents bigint)
LANGUAGE sql STABLE AS $$
    SELECT g.id, g.guarantor_user_id, g.pledged_cents - g.released_cents - g.called_cents
      FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id
     WHERE g.loan_id = p_loan AND g.status = 'accepted' AND g.pledged_cents - g.released_cents - g.called_cents > 0
     ORDER BY (g.guarantor_user_id = l.user_id) DESC, g.id
$$;

-- An official (policy loans.call_pledges) asks to call the pledges of a
-- defaulted loan: an approval of kind loan_call for the amount the
-- pledges hold (at most what is owed), never decided by the borrower or a
-- guarantor.  Outcome: ok_approval_opened (with its code),
-- loan_for_official's refusal, err_loanoff_not_defaulted, err_loanoff_no_pledges,
-- err_approval_pending, err_approvers_too_few.
CREATE OR REPLACE FUNCTION loan_call_request(p_actor bigint, p_chama bigint, p_loan bigint, p_channel text,
                                             p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, code text)
LANGUAGE plpgsql AS $$
DECLARE
    f record;
    l loans%ROWTYPE;
    held bigint;
BEGIN
    SELECT * INTO f FROM loan_for_official(p_actor, p_chama, p_loan, 'loans.call_pledges');
    IF f.outcome IS NOT NULL THEN
        RETURN QUERY SELECT f.outcome, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    l := f.loan;
    IF l.status <> 'defaulted' THEN
        RETURN QUERY SELECT 'err_loanoff_not_defaulted'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    SELECT coalesce(sum(h.held_cents), 0) INTO held FROM loan_pledges_held(l.id) h;
    IF held = 0 THEN
        RETURN QUERY SELECT 'err_loanoff_no_pledges'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT o.outcome, o.approval_id, o.code
                   FROM approval_open(l.chama_id, 'loan_call', l.id, least(held, loan_balance_cents(l)), p_actor,
                                      l.user_id,
                                      jsonb_build_object('member', (SELECT full_name FROM users WHERE id = l.user_id),
                                                         'loan', l.id::text,
                                                         'guars', (SELECT count(*) FROM loan_pledges_held(l.id))::text,
                                                         'held', format_kes(held),
                                                         'left', format_kes(loan_balance_cents(l))),
                                      p_channel, p_at, loan_guarantor_ids(l.id)) o;
END
$$;

-- The pledges called (approved): in loan_pledges_held's order, each
-- pledge gives what it holds, at most what is still owed, from the
-- guarantor's savings, through loan_repay (method guarantor_call: Dr
-- member_savings of the guarantor / Cr loans_receivable, allocated as any
-- repayment); the pledge records it as called first (so a loan that
-- closes on this payment ends its other holds around it), and each
-- guarantor is told.  Rejected or expired: nothing was held by the
-- request.  Returns the outcome (ok_loanoff_called, or
-- err_loanoff_not_defaulted when it no longer is).
CREATE OR REPLACE FUNCTION loan_call_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
                                                 p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    h record;
    amt bigint;
    r record;
    cname text;
BEGIN
    IF p_decision <> 'approved' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO STRICT l FROM loans WHERE id = p_ref_id FOR UPDATE;
    IF l.status <> 'defaulted' THEN
        RETURN 'err_loanoff_not_defaulted';
    END IF;
    SELECT name INTO cname FROM chamas WHERE id = l.chama_id;
    FOR h IN SELECT * FROM loan_pledges_held(l.id) LOOP
        SELECT * INTO STRICT l FROM loans WHERE id = l.id;
        amt := least(h.held_cents, loan_balance_cents(l),
                     payout_balance(l.chama_id, 'member_savings', h.user_id));
        EXIT WHEN loan_balance_cents(l) <= 0;
        CONTINUE WHEN amt <= 0;
        UPDATE loan_guarantors SET called_cents = called_cents + amt, status = 'called' WHERE id = h.guarantor_id;
        SELECT * INTO r FROM loan_repay(l.id, amt, 'guarantor_call',
                                        jsonb_build_object('kind', 'member_savings', 'user', h.user_id),
                                        'loan:' || l.id || ':call:' || p_approval_id || ':' || h.guarantor_id,
                                        'approvals', p_approval_id, NULL,
                                        coalesce(audit_setting('chamad.channel'), 'system'), p_at) x;
        IF r.outcome NOT LIKE 'ok%' THEN
            RAISE EXCEPTION 'loan_call_on_approval: loan_repay refused % of loan %: %', amt, l.id, r.outcome;
        END IF;
        PERFORM notify(h.user_id, 'loan', 'sms_loanoff_pledge_called',
                       jsonb_build_object('chama', cname, 'member', (SELECT full_name FROM users WHERE id = l.user_id),
                                          'amount', format_kes(amt)),
                       3, 'loan:' || l.id || ':called:' || h.guarantor_id, l.chama_id);
    END LOOP;
    RETURN 'ok_loanoff_called';
END
$$;

-- An official (policy loans.write_off) asks to write off what is left of a
-- defaulted loan: an approval of kind loan_write_off for that amount,
-- never decided by the borrower or a guarantor.  Outcome:
-- ok_approval_opened (with its code), loan_for_official's refusal,
-- err_loanoff_not_defaulted, err_approval_pending, err_approvers_too_few.
CREATE OR REPLACE FUNCTION loan_write_off_request(p_actor bigint, p_chama bigint, p_loan bigint, p_channel text,
                                                  p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, code text)
LANGUAGE plpgsql AS $$
DECLARE
    f record;
    l loans%ROWTYPE;
BEGIN
    SELECT * INTO f FROM loan_for_official(p_actor, p_chama, p_loan, 'loans.write_off');
    IF f.outcome IS NOT NULL THEN
        RETURN QUERY SELECT f.outcome, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    l := f.loan;
    IF l.status <> 'defaulted' OR loan_balance_cents(l) <= 0 THEN
        RETURN QUERY SELECT 'err_loanoff_not_defaulted'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT o.outcome, o.approval_id, o.code
                   FROM approval_open(l.chama_id, 'loan_write_off', l.id, loan_balance_cents(l), p_actor, l.user_id,
                                      jsonb_build_object('member', (SELECT full_name FROM users WHERE id = l.user_id),
                                                         'loan', l.id::text,
                                                         'left', format_kes(loan_balance_cents(l))),
                                      p_channel, p_at, loan_guarantor_ids(l.id)) o;
END
$$;

-- Written off (approved): what is left leaves the books (Dr expenses / Cr
-- loans_receivable), the loan is written_off with that amount, its holds
-- end (released: nothing more is asked of the guarantors), the borrower is
-- told.  Returns ok_loanoff_written_off, or err_loanoff_not_defaulted when it no
-- longer is (repaid meanwhile).
CREATE OR REPLACE FUNCTION loan_write_off_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
                                                      p_at timestamptz)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    left_cents bigint;
BEGIN
    IF p_decision <> 'approved' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO STRICT l FROM loans WHERE id = p_ref_id FOR UPDATE;
    left_cents := loan_balance_cents(l);
    IF l.status <> 'defaulted' OR left_cents <= 0 THEN
        RETURN 'err_loanoff_not_defaulted';
    END IF;
    PERFORM ledger_post(l.chama_id, 'loan_write_off', 'loan:' || l.id || ':write_off',
                        jsonb_build_array(
                            jsonb_build_object('kind', 'expenses', 'side', 'debit', 'cents', left_cents),
                            jsonb_build_object('kind', 'loans_receivable', 'user', l.user_id, 'side', 'credit',
                                               'cents', left_cents)),
                        'loans', l.id, NULL,
                        jsonb_build_object('action', 'loan_written_off', 'user', l.user_id, 'entity_type', 'loans',
                                           'entity_id', l.id, 'direction', 'internal',
                                           'key', 'loan:' || l.id || ':write_off',
                                           'details', jsonb_build_object('approval_id', p_approval_id)),
                        (SELECT maker_user_id FROM approvals WHERE id = p_approval_id),
                        coalesce(audit_setting('chamad.channel'), 'system'), 'Loan ' || l.id || ' written off', p_at);
    UPDATE loans SET written_off_cents = written_off_cents + left_cents, status = 'written_off', written_off_at = p_at
     WHERE id = l.id;
    PERFORM loan_holds_end(l.id, 'released', p_at);
    PERFORM notify(l.user_id, 'loan', 'sms_loanoff_written_off',
                   jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = l.chama_id),
                                      'amount', format_kes(left_cents)),
                   4, 'loan:' || l.id || ':written_off', l.chama_id);
    RETURN 'ok_loanoff_written_off';
END
$$;
