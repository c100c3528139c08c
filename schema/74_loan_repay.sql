-- schema/74_loan_repay.sql: loans: repayment (allocation, overpayment, closing), its reversal, savings offset.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.
--
-- Allocation is computed here, in SQL, under the loan's row lock, not in
-- C: it acts on the state it has locked (what is due and paid on each
-- instalment now, penalties the daily job may have levied a moment ago),
-- so two repayments, or a repayment and a penalty, never allocate from a
-- stale picture.  Its table (tests/data/loan_allocations/) is run against
-- this function with expected splits computed independently.
--
-- The order (DOMAIN.md 2.7, Fineract's mifos-standard strategy): from the
-- oldest instalment with anything owed, on each instalment penalty, fee,
-- interest, principal; then the next instalment (paying ahead is allowed).
-- What is left once the loan owes nothing is the member's credit: posted
-- to their savings, never dropped.  A reversal undoes exactly that
-- repayment's allocations, in the reverse order (from the last instalment,
-- principal, interest, fee, penalty).
--
-- Who calls loan_repay: mpesa_settle (STK purpose 'loan'), c2b_credit
-- (paybill account L<loan id>, once the status query agreed), the
-- treasurer's cash (loan_repay_cash), a savings offset once approved
-- (loan_offset_on_approval), pledges called on default (C, method
-- guarantor_call).

-- An instalment's status from what is due and paid on it: paid when
-- nothing is owed; an overdue one stays overdue until paid (the daily job
-- marks it, and a part paid does not make it less late); else partly paid
-- or pending.
CREATE OR REPLACE FUNCTION loan_schedule_status(s loan_schedules) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN s.principal_paid_cents = s.principal_due_cents AND s.interest_paid_cents = s.interest_due_cents
                     AND s.penalty_paid_cents = s.penalty_due_cents AND s.fee_paid_cents = s.fee_due_cents
                THEN 'paid'
                WHEN s.status IN ('overdue', 'waived') THEN s.status
                WHEN s.principal_paid_cents + s.interest_paid_cents + s.penalty_paid_cents + s.fee_paid_cents > 0
                THEN 'partially_paid'
                ELSE 'pending' END
$$;

-- Repays a loan with p_amount_cents from p_debit ({"kind": "mpesa_float" |
-- "cash_on_hand" | "member_savings", "user": n}), once per p_key (the same
-- M-Pesa receipt twice is one repayment: a repeat answers the first one's
-- split).  The loan's row is locked first (every writer of a loan's money
-- does), then its instalments.  One ledger_post (Dr the p_debit account /
-- Cr the borrower's loans_receivable, + Cr their member_savings for an
-- overpayment), loan_allocations rows, the loan_repayments row, the loan's
-- totals; guarantors' holds released pro rata to the principal part
-- (loan_holds_release); at balance 0 the loan is closed and every hold
-- ended (loan_holds_end 'released'); the queue moves (loan_queue_advance:
-- the pool grew); the borrower's receipt SMS says what went to what and
-- the balance.
--
-- A pledge called (C, method guarantor_call) debits the savings of a
-- guarantor of this loan (p_debit's user); verify-ledger counts it
-- against them.
-- Money taken from savings (savings_offset, guarantor_call) is never more
-- than the loan owes: the amount is cut to the balance (the split says
-- what was taken), and a savings offset never more than the borrower's free
-- savings (err_repay_savings_short): their holds must stay within their savings.
-- Money that came in (mpesa, cash) is never refused once the loan was
-- paid out: a loan closed or written off meanwhile takes it all as credit.
-- A loan never paid out (applied, queued, under review, approved, rejected,
-- cancelled) is refused: err_repay_not_active.
-- Outcome: ok_loan_repaid (ok_loan_closed when this paid it off),
-- err_repay_no_loan, err_amount, err_repay_not_active, err_repay_savings_short.
CREATE OR REPLACE FUNCTION loan_repay(p_loan bigint, p_amount_cents bigint, p_method text, p_debit jsonb,
                                      p_key text, p_ref_table text, p_ref_id bigint, p_actor bigint,
                                      p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, repayment_id bigint, penalty_cents bigint, fee_cents bigint, interest_cents bigint,
               principal_cents bigint, credit_cents bigint, balance_cents bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    l loans%ROWTYPE;
    r loan_repayments%ROWTYPE;
    s loan_schedules%ROWTYPE;
    debit_kind text := p_debit ->> 'kind';
    debit_user bigint := (p_debit ->> 'user')::bigint;
    amount bigint := p_amount_cents;
    owed bigint;
    left_ bigint;
    take bigint;
    pen bigint := 0;
    fee bigint := 0;
    int_ bigint := 0;
    pri bigint := 0;
    credit bigint;
    rid bigint;
    comp text;
    due bigint;
    lines jsonb;
    e bigint;
    after_ bigint;
    sched_owed bigint;
    internal boolean := p_method IN ('savings_offset', 'guarantor_call');
BEGIN
    PERFORM audit_context(coalesce(p_channel, 'system'), NULL, left(p_key, 64), p_actor);
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_repay_no_loan'::text, NULL::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                            0::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- a repeat (checked under the lock: the first of two at once has
    -- committed by the time the second reads)
    SELECT * INTO r FROM loan_repayments x WHERE x.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN l.status = 'closed' AND r.loan_id = l.id THEN 'ok_loan_closed'
                                 ELSE 'ok_loan_repaid' END,
                            r.id, r.penalty_cents, r.fee_cents, r.interest_cents, r.principal_cents, r.credit_cents,
                            loan_balance_cents(l);
        RETURN;
    END IF;
    IF p_method NOT IN ('mpesa', 'cash', 'savings_offset', 'guarantor_call')
       OR debit_kind NOT IN ('mpesa_float', 'cash_on_hand', 'member_savings')
       OR ((debit_kind = 'member_savings') <> internal) OR (internal AND debit_user IS NULL)
       -- a pledge called is paid by a guarantor of this loan
       OR (p_method = 'guarantor_call' AND NOT EXISTS (
               SELECT 1 FROM loan_guarantors g WHERE g.loan_id = p_loan AND g.guarantor_user_id = debit_user)) THEN
        RAISE EXCEPTION 'loan_repay: method % with debit % is not a repayment', p_method, p_debit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF amount IS NULL OR amount <= 0 THEN
        RETURN QUERY SELECT 'err_amount'::text, NULL::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                            0::bigint, loan_balance_cents(l);
        RETURN;
    END IF;
    IF l.status NOT IN ('active', 'defaulted') AND (internal OR l.status NOT IN ('closed', 'written_off')) THEN
        RETURN QUERY SELECT 'err_repay_not_active'::text, NULL::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                            0::bigint, loan_balance_cents(l);
        RETURN;
    END IF;
    owed := CASE WHEN l.status IN ('active', 'defaulted') THEN loan_balance_cents(l) ELSE 0 END;
    IF internal THEN
        amount := least(amount, owed);
        IF amount = 0 THEN
            RETURN QUERY SELECT 'err_amount'::text, NULL::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                                0::bigint, owed;
            RETURN;
        END IF;
        -- the borrower's free savings (savings less every hold) must
        -- cover an offset: their savings row locked first (B's one lock
        -- on holds), so no pledge takes the same money meanwhile
        IF p_method = 'savings_offset' THEN
            PERFORM loan_guar_lock_savings(l.chama_id, debit_user);
        END IF;
        IF p_method = 'savings_offset' AND (debit_user <> l.user_id
                                             OR member_free_savings_cents(l.chama_id, debit_user) < amount) THEN
            RETURN QUERY SELECT 'err_repay_savings_short'::text, NULL::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                                0::bigint, owed;
            RETURN;
        END IF;
    END IF;
    -- the row first, all of it credit; the split follows the allocation
    INSERT INTO loan_repayments (loan_id, user_id, amount_cents, credit_cents, method, status, paid_at,
                                 confirmed_at, recorded_by_user_id, idempotency_key, channel, ref_table, ref_id)
    VALUES (l.id, l.user_id, amount, amount, p_method, 'confirmed', p_at, p_at, p_actor, p_key,
            coalesce(p_channel, 'system'), p_ref_table, p_ref_id)
    RETURNING id INTO rid;
    left_ := least(amount, owed);
    FOR s IN SELECT * FROM loan_schedules x WHERE x.loan_id = l.id AND left_ > 0
              ORDER BY x.installment_no FOR UPDATE
    LOOP
        EXIT WHEN left_ = 0;
        FOREACH comp IN ARRAY ARRAY['penalty', 'fee', 'interest', 'principal'] LOOP
            due := CASE comp WHEN 'penalty' THEN s.penalty_due_cents - s.penalty_paid_cents
                             WHEN 'fee' THEN s.fee_due_cents - s.fee_paid_cents
                             WHEN 'interest' THEN s.interest_due_cents - s.interest_paid_cents
                             ELSE s.principal_due_cents - s.principal_paid_cents END;
            take := least(due, left_);
            CONTINUE WHEN take <= 0;
            INSERT INTO loan_allocations (repayment_id, schedule_id, component, cents, created_at)
            VALUES (rid, s.id, comp, take, p_at);
            CASE comp
                WHEN 'penalty' THEN s.penalty_paid_cents := s.penalty_paid_cents + take; pen := pen + take;
                WHEN 'fee' THEN s.fee_paid_cents := s.fee_paid_cents + take; fee := fee + take;
                WHEN 'interest' THEN s.interest_paid_cents := s.interest_paid_cents + take; int_ := int_ + take;
                ELSE s.principal_paid_cents := s.principal_paid_cents + take; pri := pri + take;
            END CASE;
            left_ := left_ - take;
        END LOOP;
        UPDATE loan_schedules x
           SET penalty_paid_cents = s.penalty_paid_cents, fee_paid_cents = s.fee_paid_cents,
               interest_paid_cents = s.interest_paid_cents, principal_paid_cents = s.principal_paid_cents,
               status = loan_schedule_status(s),
               paid_at = CASE WHEN loan_schedule_status(s) = 'paid' THEN p_at END
         WHERE x.id = s.id;
    END LOOP;
    IF left_ > 0 THEN
        -- the loan said it owes more than its instalments do: a bug
        RAISE EXCEPTION 'loan %: owes % but its schedule only % less', l.id, owed, left_
            USING ERRCODE = 'check_violation';
    END IF;
    credit := amount - pen - fee - int_ - pri;
    UPDATE loan_repayments x SET penalty_cents = pen, fee_cents = fee, interest_cents = int_, principal_cents = pri,
                                 credit_cents = credit
     WHERE x.id = rid;
    UPDATE loans x SET amount_repaid_cents = x.amount_repaid_cents + pen + int_ + pri,
                       fees_paid_cents = x.fees_paid_cents + fee
     WHERE x.id = l.id
    RETURNING * INTO l;
    after_ := CASE WHEN l.status IN ('active', 'defaulted') THEN loan_balance_cents(l) ELSE 0 END;
    IF l.status IN ('active', 'defaulted') THEN
        -- the pair check: the loan's totals and its instalments agree
        SELECT coalesce(sum(x.principal_due_cents - x.principal_paid_cents + x.interest_due_cents
                            - x.interest_paid_cents + x.penalty_due_cents - x.penalty_paid_cents
                            + x.fee_due_cents - x.fee_paid_cents), 0)
          INTO sched_owed FROM loan_schedules x WHERE x.loan_id = l.id;
        IF sched_owed - l.written_off_cents <> after_ THEN
            RAISE EXCEPTION 'loan %: owes % but its schedule says %', l.id, after_, sched_owed
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    lines := jsonb_build_array(jsonb_build_object('kind', debit_kind, 'user', debit_user, 'side', 'debit',
                                                  'cents', amount));
    IF amount - credit > 0 THEN
        lines := lines || jsonb_build_object('kind', 'loans_receivable', 'user', l.user_id, 'side', 'credit',
                                             'cents', amount - credit);
    END IF;
    IF credit > 0 THEN
        lines := lines || jsonb_build_object('kind', 'member_savings', 'user', l.user_id, 'side', 'credit',
                                             'cents', credit);
    END IF;
    SELECT lp.entry_id INTO e
      FROM ledger_post(l.chama_id, CASE p_method WHEN 'guarantor_call' THEN 'loan_guarantor_call'
                                                 ELSE 'loan_repayment' END,
                       'loan_repayment:' || rid, lines, 'loan_repayments', rid, NULL,
                       jsonb_build_object('action', CASE p_method WHEN 'guarantor_call' THEN 'guarantor_called'
                                                                  ELSE 'loan_repaid' END,
                                          'user', l.user_id, 'entity_type', 'loan_repayments', 'entity_id', rid,
                                          'direction', CASE WHEN internal THEN 'internal' ELSE 'in' END,
                                          'method', CASE WHEN internal THEN 'internal' ELSE p_method END,
                                          'key', 'loan_repayment:' || rid || ':received',
                                          'request_id', left(p_key, 64),
                                          'details', jsonb_build_object('loan_id', l.id, 'penalty', pen, 'fee', fee,
                                                                        'interest', int_, 'principal', pri,
                                                                        'credit', credit, 'ref_table', p_ref_table,
                                                                        'ref_id', p_ref_id)),
                       p_actor, p_channel, 'loan ' || l.id, p_at) lp;
    UPDATE loan_repayments x SET journal_entry_id = e WHERE x.id = rid;
    -- the guarantors' holds follow the principal repaid (B)
    IF pri > 0 THEN
        PERFORM loan_holds_release(l.id, pri, p_at);
    END IF;
    IF after_ = 0 AND l.status IN ('active', 'defaulted') THEN
        UPDATE loans x SET status = 'closed', closed_at = p_at WHERE x.id = l.id RETURNING * INTO l;
        PERFORM loan_holds_end(l.id, 'released', p_at);
    END IF;
    -- the pool grew (money came in, or a loan's principal came back): the
    -- queue moves (A), when anyone waits in it
    IF EXISTS (SELECT 1 FROM loans q WHERE q.chama_id = l.chama_id AND q.status = 'queued') THEN
        PERFORM loan_queue_advance(l.chama_id, p_at);
    END IF;
    PERFORM notify(l.user_id, 'receipt',
                   CASE WHEN after_ > 0 THEN 'sms_loan_repaid'
                        WHEN credit > 0 THEN 'sms_loan_closed_credit' ELSE 'sms_loan_closed' END,
                   jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = l.chama_id),
                                      'loan', 'L' || l.id, 'amount', format_kes(amount),
                                      'penalty', format_kes(pen), 'fee', format_kes(fee),
                                      'interest', format_kes(int_), 'principal', format_kes(pri),
                                      'credit', format_kes(credit), 'balance', format_kes(after_)),
                   5, 'loan_repayment:' || rid || ':receipt', l.chama_id);
    RETURN QUERY SELECT CASE WHEN l.status = 'closed' AND owed > 0 THEN 'ok_loan_closed' ELSE 'ok_loan_repaid' END,
                        rid, pen, fee, int_, pri, credit, after_;
END
$$;

-- Takes a repayment back: its allocations undone in the reverse order
-- (from the last instalment; principal, interest, fee, penalty), the
-- reverse of its ledger entry (one ledger_post, its lines the other way),
-- the loan's totals back, the holds its principal part released held again
-- (loan_holds_rehold), the borrower told.  The loan's row is locked first.
-- Once per repayment.  A repayment of a loan closed since is refused
-- (err_repay_loan_closed): the holds were ended and the lifecycle has no way
-- back from closed; an operator corrects it.  A credit the member has
-- spent or pledged meanwhile cannot come back out of their savings:
-- err_repay_savings_short.
-- Outcome: ok_repayment_reversed, err_repay_none, err_already_reversed,
-- err_repay_loan_closed, err_repay_savings_short.
CREATE OR REPLACE FUNCTION loan_repayment_reverse(p_repayment bigint, p_reason text, p_actor bigint,
                                                  p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, entry_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r loan_repayments%ROWTYPE;
    l loans%ROWTYPE;
    a record;
    e bigint;
    owed bigint;
BEGIN
    PERFORM audit_context(coalesce(p_channel, 'system'), NULL, 'loan_repayment:' || p_repayment || ':reversal',
                          p_actor);
    SELECT * INTO l FROM loans
     WHERE id = (SELECT x.loan_id FROM loan_repayments x WHERE x.id = p_repayment) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_repay_none'::text, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO r FROM loan_repayments x WHERE x.id = p_repayment FOR UPDATE;
    IF r.status = 'reversed' THEN
        RETURN QUERY SELECT 'err_already_reversed'::text, r.reversal_entry_id;
        RETURN;
    END IF;
    IF r.status <> 'confirmed' OR r.journal_entry_id IS NULL THEN
        RETURN QUERY SELECT 'err_repay_none'::text, NULL::bigint;
        RETURN;
    END IF;
    IF l.status = 'closed' AND r.amount_cents > r.credit_cents THEN
        RETURN QUERY SELECT 'err_repay_loan_closed'::text, NULL::bigint;
        RETURN;
    END IF;
    -- the credit comes back out of the borrower's savings: out of what no
    -- pledge holds (their savings row locked, B's one lock on holds)
    IF r.credit_cents > 0 THEN
        PERFORM loan_guar_lock_savings(l.chama_id, l.user_id);
    END IF;
    IF r.credit_cents > 0 AND member_free_savings_cents(l.chama_id, l.user_id) < r.credit_cents THEN
        RETURN QUERY SELECT 'err_repay_savings_short'::text, NULL::bigint;
        RETURN;
    END IF;
    FOR a IN SELECT x.schedule_id, x.component, x.cents FROM loan_allocations x
               JOIN loan_schedules s ON s.id = x.schedule_id
              WHERE x.repayment_id = r.id
              ORDER BY s.installment_no DESC,
                       array_position(ARRAY['principal', 'interest', 'fee', 'penalty'], x.component)
    LOOP
        UPDATE loan_schedules s
           SET principal_paid_cents = s.principal_paid_cents - CASE a.component WHEN 'principal' THEN a.cents ELSE 0 END,
               interest_paid_cents = s.interest_paid_cents - CASE a.component WHEN 'interest' THEN a.cents ELSE 0 END,
               fee_paid_cents = s.fee_paid_cents - CASE a.component WHEN 'fee' THEN a.cents ELSE 0 END,
               penalty_paid_cents = s.penalty_paid_cents - CASE a.component WHEN 'penalty' THEN a.cents ELSE 0 END,
               paid_at = NULL,
               -- no longer paid: overdue if its day has gone (the daily
               -- job would say so), else what is still paid on it
               status = CASE WHEN s.status = 'paid' AND s.due_date < p_at::date THEN 'overdue'
                             WHEN s.status = 'paid' THEN 'pending' ELSE s.status END
         WHERE s.id = a.schedule_id;
        UPDATE loan_schedules s SET status = loan_schedule_status(s) WHERE s.id = a.schedule_id;
    END LOOP;
    UPDATE loans x SET amount_repaid_cents = x.amount_repaid_cents - r.penalty_cents - r.interest_cents
                                             - r.principal_cents,
                       fees_paid_cents = x.fees_paid_cents - r.fee_cents
     WHERE x.id = l.id
    RETURNING * INTO l;
    SELECT lp.entry_id INTO e
      FROM ledger_post(l.chama_id, 'loan_repayment_reversal', 'loan_repayment:' || r.id || ':reversal',
                       (SELECT jsonb_agg(jsonb_build_object('account', jl.account_id,
                                                            'side', CASE jl.side WHEN 'debit' THEN 'credit'
                                                                                 ELSE 'debit' END,
                                                            'cents', jl.amount_cents) ORDER BY jl.id)
                          FROM journal_lines jl WHERE jl.entry_id = r.journal_entry_id),
                       'loan_repayments', r.id, r.journal_entry_id,
                       jsonb_build_object('action', CASE r.method WHEN 'guarantor_call' THEN 'guarantor_called'
                                                                  ELSE 'loan_repaid' END,
                                          'user', l.user_id, 'entity_type', 'loan_repayments', 'entity_id', r.id,
                                          'direction', CASE WHEN r.method IN ('mpesa', 'cash') THEN 'out'
                                                            ELSE 'internal' END,
                                          'method', CASE WHEN r.method IN ('mpesa', 'cash') THEN r.method
                                                         ELSE 'internal' END,
                                          'key', 'loan_repayment:' || r.id || ':reversed',
                                          'reverses_key', 'loan_repayment:' || r.id || ':received',
                                          'details', jsonb_build_object('loan_id', l.id, 'reason', p_reason)),
                       p_actor, p_channel, left(p_reason, 200), p_at) lp;
    UPDATE loan_repayments x SET status = 'reversed', reversed_at = p_at, reversal_entry_id = e WHERE x.id = r.id;
    IF r.principal_cents > 0 THEN
        PERFORM loan_holds_rehold(l.id, r.principal_cents, p_at);
    END IF;
    owed := CASE WHEN l.status IN ('active', 'defaulted') THEN loan_balance_cents(l) ELSE 0 END;
    PERFORM notify(l.user_id, 'reversal', 'sms_loan_repay_reversed',
                   jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = l.chama_id),
                                      'loan', 'L' || l.id, 'amount', format_kes(r.amount_cents),
                                      'reason', coalesce(p_reason, ''), 'balance', format_kes(owed)),
                   5, 'loan_repayment:' || r.id || ':reversal', l.chama_id);
    RETURN QUERY SELECT 'ok_repayment_reversed'::text, e;
END
$$;

-- The borrower's oldest loan still owed (active or defaulted) in the
-- chama, by member number: what the treasurer's cash pays.
CREATE OR REPLACE FUNCTION loan_repay_cash(p_chama bigint, p_member_number int, p_amount_cents bigint, p_key text,
                                           p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
                                           p_at timestamptz)
RETURNS TABLE (outcome text, repayment_id bigint, payer_name text, loan_ref text, principal_cents bigint,
               credit_cents bigint, balance_cents bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    member bigint;
    who text;
    loan bigint;
    x record;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    IF NOT policy_allows(p_actor, p_chama, 'loans.repay_cash') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint, NULL::text, NULL::text, NULL::bigint,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT m.user_id, u.full_name INTO member, who FROM memberships m JOIN users u ON u.id = m.user_id
     WHERE m.chama_id = p_chama AND m.member_number = p_member_number AND m.status = 'active';
    IF member IS NULL THEN
        RETURN QUERY SELECT 'err_member_number'::text, NULL::bigint, NULL::text, NULL::text, NULL::bigint,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT l.id INTO loan FROM loans l
     WHERE l.chama_id = p_chama AND l.user_id = member AND l.status IN ('active', 'defaulted')
     ORDER BY l.id LIMIT 1;
    IF loan IS NULL THEN
        RETURN QUERY SELECT 'err_repay_no_open_loan'::text, NULL::bigint, who, NULL::text, NULL::bigint, NULL::bigint,
                            NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO x FROM loan_repay(loan, p_amount_cents, 'cash', '{"kind": "cash_on_hand"}', p_key,
                                    'memberships', p_member_number, p_actor, p_channel, p_at);
    RETURN QUERY SELECT x.outcome, x.repayment_id, who, 'L' || loan, x.principal_cents, x.credit_cents,
                        x.balance_cents;
END
$$;

-- The borrower asks to repay from their own savings: dual control (two
-- officials, the chama's rule), since money leaves their savings.  At most
-- what the loan owes and what their free savings (savings less every hold)
-- cover, checked now and again when approved (loan_repay).  One request
-- per loan at a time.  Outcome: ok_approval_opened (with its code),
-- err_repay_no_loan (not theirs, not owed), err_amount, err_repay_savings_short,
-- err_approval_pending, err_approvers_too_few.
CREATE OR REPLACE FUNCTION loan_offset_request(p_loan bigint, p_user bigint, p_amount_cents bigint,
                                               p_channel text, p_msisdn text, p_request_id text, p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, code text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    l loans%ROWTYPE;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_user);
    SELECT * INTO l FROM loans x WHERE x.id = p_loan AND x.user_id = p_user AND x.status IN ('active', 'defaulted');
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_repay_no_loan'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF p_amount_cents IS NULL OR p_amount_cents <= 0 OR p_amount_cents > loan_balance_cents(l) THEN
        RETURN QUERY SELECT 'err_amount'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF member_free_savings_cents(l.chama_id, p_user) < p_amount_cents THEN
        RETURN QUERY SELECT 'err_repay_savings_short'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT o.outcome, o.approval_id, o.code
                   FROM approval_open(l.chama_id, 'loan_offset', l.id, p_amount_cents, p_user, p_user,
                                      jsonb_build_object('member', (SELECT full_name FROM users WHERE id = p_user),
                                                         'loan', 'L' || l.id),
                                      p_channel, p_at) o;
END
$$;

-- Approved: the offset is a repayment from the borrower's savings, once
-- (keyed by the approval), as the borrower who asked; refused then (their
-- free savings short now), they are told by SMS.
CREATE OR REPLACE FUNCTION loan_offset_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
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
    SELECT x.outcome INTO r
      FROM loan_repay(p_ref_id, a.amount_cents, 'savings_offset',
                      jsonb_build_object('kind', 'member_savings', 'user', a.maker_user_id),
                      'approval:' || a.id, 'approvals', a.id, a.maker_user_id,
                      coalesce(audit_setting('chamad.channel'), a.channel), p_at) x;
    -- approved, but the savings no longer cover it (a pledge took them
    -- meanwhile) or the loan owes nothing now: the borrower hears why
    IF r NOT LIKE 'ok%' THEN
        PERFORM notify(a.maker_user_id, 'loan', 'sms_loan_offset_refused',
                       jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = a.chama_id),
                                          'loan', 'L' || p_ref_id, 'amount', format_kes(a.amount_cents)),
                       4, 'approval:' || a.id || ':offset_refused', a.chama_id);
    END IF;
    RETURN r;
END
$$;

-- An official asks to reverse a repayment of their chama (policy
-- loans.repay_reverse): a request of kind loan_repay_reverse for two
-- other officials, the borrower never among them.  Outcome:
-- ok_approval_opened (with its code), err_not_official, err_repay_none,
-- err_already_reversed, err_approval_pending, err_approvers_too_few.
CREATE OR REPLACE FUNCTION loan_repay_reverse_request(p_chama bigint, p_repayment bigint, p_reason text,
                                                      p_actor bigint, p_channel text, p_msisdn text,
                                                      p_request_id text, p_at timestamptz)
RETURNS TABLE (outcome text, approval_id bigint, code text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r loan_repayments%ROWTYPE;
    ch bigint;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    IF NOT policy_allows(p_actor, p_chama, 'loans.repay_reverse') THEN
        RETURN QUERY SELECT 'err_not_official'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    SELECT x.* INTO r FROM loan_repayments x JOIN loans l ON l.id = x.loan_id
     WHERE x.id = p_repayment AND l.chama_id = p_chama;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_repay_none'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF r.status = 'reversed' THEN
        RETURN QUERY SELECT 'err_already_reversed'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    ch := p_chama;
    RETURN QUERY SELECT o.outcome, o.approval_id, o.code
                   FROM approval_open(ch, 'loan_repay_reverse', r.id, r.amount_cents, p_actor, r.user_id,
                                      jsonb_build_object('member', (SELECT full_name FROM users WHERE id = r.user_id),
                                                         'date', to_char(r.paid_at, 'DD Mon'),
                                                         'loan', 'L' || r.loan_id, 'reason', p_reason),
                                      p_channel, p_at) o;
END
$$;

-- Approved: the reversal, as the official who asked.
CREATE OR REPLACE FUNCTION loan_repay_reverse_on_approval(p_approval_id bigint, p_ref_id bigint, p_decision text,
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
    SELECT x.outcome INTO r
      FROM loan_repayment_reverse(p_ref_id, a.vars ->> 'reason', a.maker_user_id,
                                  coalesce(audit_setting('chamad.channel'), a.channel), p_at) x;
    RETURN r;
END
$$;
