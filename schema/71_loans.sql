-- schema/71_loans.sql: loans: products, limits, applying, the queue, the lifecycle.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views, the triggers of
-- its tables.  Migrations never call what is defined here.
--
-- The lifecycle and the books are migration 024's header.  This file:
--   * the products a chama lends by (constitution loan_products, else one
--     "standard" product from the defaults); a product that is not valid
--     is IGNORED WITH A LOG LINE (RAISE LOG, the server's log), never
--     half-read: constitution_is_valid only sees top-level keys, and a bad
--     product must not make the whole constitution unreadable;
--   * the member's limit (member_loan_limit) and the application
--     (loan_apply), each eligibility rule its own err_loan_* key;
--   * the schedule the C code computed (base/loansched), recomputed here
--     from the terms in exact integers and recorded only when every row
--     agrees (loan_schedule_record): no money the C code computes is taken
--     unchecked;
--   * loan_advance (cover complete -> approval or the queue), the queue
--     (first come, first served), the borrower's cancel;
--   * loan_transition_allowed and the trigger holding every status change
--     of loans to it.
-- Calls into the other loan files (guarantors 72, approvals 73) are
-- PL/pgSQL: bound when they run.

-- ---- money helpers ------------------------------------------------------------

-- What the member owes on a loan (what their loans_receivable holds for it).
CREATE OR REPLACE FUNCTION loan_balance_cents(l loans) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT l.outstanding_balance_cents + l.fees_cents - l.fees_paid_cents - l.written_off_cents
$$;

-- Statuses of a loan that is the member's business still (counted against
-- their limit and against loan_open_max_count).
CREATE OR REPLACE FUNCTION loan_is_open(p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status IN ('applied', 'queued', 'under_review', 'approved', 'disbursed', 'active', 'defaulted')
$$;

-- What the chama can still lend: its M-Pesa float and cash, less the
-- payouts on their way out (asked for, approved, sending: not posted yet)
-- and the principal of loans under review or approved with no live payout
-- (a live payout is counted once, as a payout).
CREATE OR REPLACE FUNCTION loan_pool_cents(p_chama bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT sum(balance_cents) FROM ledger_accounts
                      WHERE chama_id = p_chama AND user_id IS NULL AND kind IN ('mpesa_float', 'cash_on_hand')), 0)
         - coalesce((SELECT sum(amount_cents) FROM payouts
                      WHERE chama_id = p_chama AND status IN ('requested', 'approved', 'sending', 'sent', 'unknown')), 0)
         - coalesce((SELECT sum(l.principal_cents) FROM loans l
                      WHERE l.chama_id = p_chama AND l.status IN ('under_review', 'approved')
                        AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.id = l.payout_id
                                           AND p.status IN ('requested', 'approved', 'sending', 'sent', 'unknown'))),
                    0);
END
$$;

-- ---- products -------------------------------------------------------------------

-- The product a chama with no loan_products lends by, and what every
-- product's missing keys default to.
CREATE OR REPLACE FUNCTION loan_product_defaults() RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"key": "standard", "name_en": "Standard loan", "name_sw": "Mkopo wa kawaida",
             "rate_bp": 100, "per": "month", "method": "reducing", "frequency": "monthly",
             "max_term": 12, "multiplier_bp": 30000, "grace": 0, "grace_kind": "none", "fee_cents": 0,
             "guarantors": {"self_cover_bp": 10000, "min_count": 0, "max_count": 5},
             "penalty": {"kind": "percent", "cents": 0, "bp": 500, "grace_days": 2, "compound": false},
             "default_days": 30}'::jsonb
$$;

-- A whole JSON number within [lo, hi].
CREATE OR REPLACE FUNCTION loan_int_ok(v jsonb, lo bigint, hi bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_typeof(v) = 'number' AND v::text ~ '^[0-9]{1,15}$'
                    AND v::text::bigint BETWEEN lo AND hi, false)
$$;

-- Why a (merged) product cannot be lent by, or NULL when it can.  The
-- limits are loansched's (rate per basis, term 1..520) and 024's columns.
CREATE OR REPLACE FUNCTION loan_product_fault(p jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(p) <> 'object' THEN
        RETURN 'not an object';
    ELSIF coalesce(p ->> 'key', '') !~ '^[a-z0-9_]{1,20}$' OR jsonb_typeof(p -> 'key') <> 'string' THEN
        RETURN 'key is not 1-20 of a-z 0-9 _';
    ELSIF jsonb_typeof(p -> 'name_en') IS DISTINCT FROM 'string' OR jsonb_typeof(p -> 'name_sw') IS DISTINCT FROM 'string'
          OR length(p ->> 'name_en') NOT BETWEEN 1 AND 20 OR length(p ->> 'name_sw') NOT BETWEEN 1 AND 20 THEN
        RETURN 'name_en and name_sw are 1-20 characters';
    ELSIF coalesce(p ->> 'per', '') NOT IN ('month', 'year', 'term') THEN
        RETURN 'per is month, year or term';
    ELSIF NOT loan_int_ok(p -> 'rate_bp', 0, CASE p ->> 'per' WHEN 'month' THEN 10000 WHEN 'year' THEN 120000
                                                                ELSE 100000 END) THEN
        RETURN 'rate_bp is out of range for its per';
    ELSIF coalesce(p ->> 'method', '') NOT IN ('flat', 'reducing', 'equal_principal') THEN
        RETURN 'method is flat, reducing or equal_principal';
    ELSIF coalesce(p ->> 'frequency', '') NOT IN ('weekly', 'biweekly', 'monthly') THEN
        RETURN 'frequency is weekly, biweekly or monthly';
    ELSIF NOT loan_int_ok(p -> 'max_term', 1, 520) THEN
        RETURN 'max_term is 1-520';
    ELSIF NOT loan_int_ok(p -> 'multiplier_bp', 0, 1000000) THEN
        RETURN 'multiplier_bp is 0-1000000';
    ELSIF NOT loan_int_ok(p -> 'grace', 0, 519) OR (p ->> 'grace')::int >= (p ->> 'max_term')::int THEN
        RETURN 'grace is 0 to max_term - 1';
    ELSIF coalesce(p ->> 'grace_kind', '') NOT IN ('none', 'principal', 'interest_free')
          OR ((p ->> 'grace')::int = 0) <> (p ->> 'grace_kind' = 'none') THEN
        RETURN 'grace_kind is none exactly when grace is 0 (else principal or interest_free)';
    ELSIF NOT loan_int_ok(p -> 'fee_cents', 0, 100000000000) THEN
        RETURN 'fee_cents is a whole number of cents';
    ELSIF jsonb_typeof(p -> 'guarantors') IS DISTINCT FROM 'object'
          OR NOT loan_int_ok(p -> 'guarantors' -> 'self_cover_bp', 0, 10000)
          OR NOT loan_int_ok(p -> 'guarantors' -> 'max_count', 0, 20)
          OR NOT loan_int_ok(p -> 'guarantors' -> 'min_count', 0, 20)
          OR (p -> 'guarantors' ->> 'min_count')::int > (p -> 'guarantors' ->> 'max_count')::int THEN
        RETURN 'guarantors: self_cover_bp 0-10000, min_count <= max_count <= 20';
    ELSIF jsonb_typeof(p -> 'penalty') IS DISTINCT FROM 'object'
          OR coalesce(p -> 'penalty' ->> 'kind', '') NOT IN ('flat', 'percent')
          OR NOT loan_int_ok(p -> 'penalty' -> 'cents', 0, 100000000000)
          OR NOT loan_int_ok(p -> 'penalty' -> 'bp', 0, 10000)
          OR NOT loan_int_ok(p -> 'penalty' -> 'grace_days', 0, 365)
          OR jsonb_typeof(p -> 'penalty' -> 'compound') IS DISTINCT FROM 'boolean' THEN
        RETURN 'penalty: kind flat|percent, cents, bp 0-10000, grace_days 0-365, compound true|false';
    ELSIF NOT loan_int_ok(p -> 'default_days', 1, 3650) THEN
        RETURN 'default_days is 1-3650';
    END IF;
    RETURN NULL;
END
$$;

-- A product as written in the constitution, its missing keys (and those of
-- its guarantors and penalty objects) from the defaults.
CREATE OR REPLACE FUNCTION loan_product_merge(p jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p) <> 'object' THEN p
           ELSE d || (p - 'key') || jsonb_build_object('key', p -> 'key')
                || jsonb_build_object(
                       'guarantors', CASE WHEN p ? 'guarantors' AND jsonb_typeof(p -> 'guarantors') <> 'object'
                                          THEN p -> 'guarantors'
                                          ELSE (d -> 'guarantors') || coalesce(p -> 'guarantors', '{}') END,
                       'penalty', CASE WHEN p ? 'penalty' AND jsonb_typeof(p -> 'penalty') <> 'object'
                                       THEN p -> 'penalty'
                                       ELSE (d -> 'penalty') || coalesce(p -> 'penalty', '{}') END)
           END
      FROM (SELECT loan_product_defaults() AS d) x
$$;

-- The products the chama lends by, in the constitution's order: with no
-- loan_products key, the one default product; else every valid entry (a
-- product that is not valid, or repeats a key, is skipped with a log line
-- saying why: the chama lends by the others).
CREATE OR REPLACE FUNCTION loan_products(p_chama bigint) RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c jsonb;
    e jsonb;
    m jsonb;
    i bigint;
    why text;
    seen text[] := '{}';
BEGIN
    SELECT constitution INTO c FROM chamas WHERE id = p_chama;
    IF c IS NULL THEN
        RETURN;
    END IF;
    IF NOT c ? 'loan_products' THEN
        RETURN NEXT loan_product_defaults();
        RETURN;
    END IF;
    IF jsonb_typeof(c -> 'loan_products') <> 'array' THEN
        RAISE LOG 'chama %: constitution loan_products is not an array: no loan products', p_chama;
        RETURN;
    END IF;
    FOR e, i IN SELECT x, n FROM jsonb_array_elements(c -> 'loan_products') WITH ORDINALITY AS t (x, n) LOOP
        m := loan_product_merge(e);
        why := loan_product_fault(m);
        IF why IS NULL AND (m ->> 'key') = ANY (seen) THEN
            why := 'key repeats an earlier product';
        END IF;
        IF why IS NOT NULL THEN
            RAISE LOG 'chama %: loan_products[%] ignored: %', p_chama, i, why;
            CONTINUE;
        END IF;
        seen := seen || (m ->> 'key');
        RETURN NEXT m;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION loan_product(p_chama bigint, p_key text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT p FROM loan_products(p_chama) p WHERE p ->> 'key' = p_key LIMIT 1
$$;

-- A chama-level loan rule of the constitution (an integer within [lo, hi],
-- else the default: a value nobody can read leaves the default standing).
CREATE OR REPLACE FUNCTION loan_rule(p_chama bigint, p_key text, p_def bigint, p_lo bigint, p_hi bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN loan_int_ok(c.constitution -> p_key, p_lo, p_hi) THEN (c.constitution ->> p_key)::bigint
                ELSE p_def END
      FROM chamas c WHERE c.id = p_chama
$$;

-- ---- the schedule, recomputed -------------------------------------------------

-- num / den rounded HALF_EVEN (both whole, den > 0, num >= 0).
CREATE OR REPLACE FUNCTION loan_round_half_even(num numeric, den numeric) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    q numeric := div(num, den);
    r numeric := num - div(num, den) * den;
BEGIN
    IF 2 * r > den OR (2 * r = den AND mod(q, 2) = 1) THEN
        RETURN q + 1;
    END IF;
    RETURN q;
END
$$;

-- The schedule of a loan of p_principal on the terms (a product object),
-- p_term instalments from p_start, by the rules of
-- tests/data/loan_schedules/README.md, in exact integers (numeric): the
-- check of what base/loansched.c computed, written again from the rules.
-- The fee is due with the first instalment.
CREATE OR REPLACE FUNCTION loan_schedule_expected(p_principal bigint, p_terms jsonb, p_term int, p_start date)
RETURNS TABLE (n int, due date, principal_cents bigint, interest_cents bigint, fee_cents bigint)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bp numeric := (p_terms ->> 'rate_bp')::numeric;
    freq text := p_terms ->> 'frequency';
    method text := p_terms ->> 'method';
    g int := coalesce((p_terms ->> 'grace')::int, 0);
    kind text := coalesce(p_terms ->> 'grace_kind', 'none');
    fee bigint := coalesce((p_terms ->> 'fee_cents')::bigint, 0);
    yr numeric := CASE freq WHEN 'weekly' THEN 52 WHEN 'biweekly' THEN 26 ELSE 12 END;
    rp numeric;
    rq numeric := 10000;
    m int := p_term - g;
    c int;
    first int;
    total numeric;
    share numeric;
    pshare numeric;
    a numeric;
    x numeric := 1;
    y numeric := 1;
    bal numeric := p_principal;
    i int;
    ip numeric;
    pp numeric;
BEGIN
    IF g = 0 THEN
        kind := 'none';
    END IF;
    rp := bp;
    IF p_terms ->> 'per' = 'term' THEN
        rq := rq * p_term;
    ELSIF p_terms ->> 'per' = 'year' THEN
        rq := rq * yr;
    ELSE
        rp := rp * 12;
        rq := rq * yr;
    END IF;
    pshare := div(p_principal::numeric, m);
    IF method = 'flat' THEN
        first := CASE WHEN kind = 'interest_free' THEN g ELSE 0 END;
        c := p_term - first;
        total := loan_round_half_even(p_principal * rp * c, rq);
        share := div(total, c);
    ELSIF method = 'reducing' THEN
        IF rp = 0 THEN
            a := loan_round_half_even(p_principal, m);
        ELSE
            FOR i IN 1 .. m LOOP
                x := x * (rq + rp);
                y := y * rq;
            END LOOP;
            a := loan_round_half_even(p_principal * rp * x, (x - y) * rq);
        END IF;
    END IF;
    FOR i IN 1 .. p_term LOOP
        n := i;
        due := CASE freq WHEN 'monthly' THEN (p_start + make_interval(months => i))::date
                         WHEN 'weekly' THEN p_start + 7 * i ELSE p_start + 14 * i END;
        fee_cents := CASE WHEN i = 1 THEN fee ELSE 0 END;
        IF method = 'flat' THEN
            ip := CASE WHEN i <= first THEN 0 WHEN i = p_term THEN total - share * (c - 1) ELSE share END;
            pp := CASE WHEN i <= g THEN 0 WHEN i = p_term THEN p_principal - pshare * (m - 1) ELSE pshare END;
        ELSIF i <= g THEN
            ip := CASE WHEN kind = 'principal' THEN loan_round_half_even(bal * rp, rq) ELSE 0 END;
            pp := 0;
        ELSE
            ip := loan_round_half_even(bal * rp, rq);
            pp := CASE WHEN i = p_term THEN bal
                       WHEN method = 'reducing' THEN least(a - ip, bal)
                       ELSE pshare END;
        END IF;
        bal := bal - pp;
        principal_cents := pp;
        interest_cents := ip;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Records the schedule of a loan not yet repaid from: rows
-- [{"n","due","principal","interest","fee"}, ...] as base/loansched built
-- them (due dates of the day the schedule starts from).  Every row is
-- checked against the schedule recomputed from the loan's own terms: as
-- many rows as the term, numbered 1.., dates increasing (and, with
-- p_start, exactly the dates from that day), each row's principal,
-- interest and fee equal, so the principal parts sum to the principal and
-- the interest to the terms' total.  A mismatch is a bug of the caller: it
-- raises, and nothing is recorded.  Returns the rows recorded.  Re-run
-- (loan_on_paid fixes the dates from the day paid) it rewrites the rows,
-- which nothing has been paid on yet.
CREATE OR REPLACE FUNCTION loan_schedule_record(p_loan bigint, p_rows jsonb, p_start date DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    r jsonb;
    e record;
    prev date;
    k int := 0;
    sum_p bigint := 0;
    sum_i bigint := 0;
    sum_f bigint := 0;
    exp_i bigint;
BEGIN
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan %: no such loan', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    IF jsonb_typeof(p_rows) IS DISTINCT FROM 'array' OR jsonb_array_length(p_rows) <> l.term_periods THEN
        RAISE EXCEPTION 'loan %: the schedule has % rows, the term is %', p_loan,
            CASE WHEN jsonb_typeof(p_rows) = 'array' THEN jsonb_array_length(p_rows) END, l.term_periods
            USING ERRCODE = 'check_violation', CONSTRAINT = 'loan_schedule_sums';
    END IF;
    IF EXISTS (SELECT 1 FROM loan_schedules s WHERE s.loan_id = p_loan
                  AND (s.principal_paid_cents + s.interest_paid_cents + s.penalty_paid_cents + s.fee_paid_cents > 0
                       OR s.penalty_due_cents > 0)) THEN
        RAISE EXCEPTION 'loan %: its schedule has payments or penalties: it is fixed', p_loan
            USING ERRCODE = 'check_violation', CONSTRAINT = 'loan_schedule_sums';
    END IF;
    SELECT sum(x.interest_cents) INTO exp_i
      FROM loan_schedule_expected(l.principal_cents, l.terms, l.term_periods, coalesce(p_start, current_date)) x;
    FOR e IN SELECT x.* FROM loan_schedule_expected(l.principal_cents, l.terms, l.term_periods,
                                                     coalesce(p_start, current_date)) x ORDER BY x.n LOOP
        r := p_rows -> (e.n - 1);
        IF jsonb_typeof(r) IS DISTINCT FROM 'object'
           OR NOT loan_int_ok(r -> 'n', 1, 600) OR (r ->> 'n')::int <> e.n
           OR NOT loan_int_ok(r -> 'principal', 0, 10000000000000) OR NOT loan_int_ok(r -> 'interest', 0, 10000000000000)
           OR NOT loan_int_ok(r -> 'fee', 0, 10000000000000)
           OR coalesce(r ->> 'due', '') !~ '^\d{4}-\d{2}-\d{2}$' THEN
            RAISE EXCEPTION 'loan %: schedule row % is not {"n","due","principal","interest","fee"}', p_loan, e.n
                USING ERRCODE = 'check_violation', CONSTRAINT = 'loan_schedule_sums';
        END IF;
        IF (r ->> 'due')::date <= coalesce(prev, '-infinity'::date)
           OR (p_start IS NOT NULL AND (r ->> 'due')::date <> e.due) THEN
            RAISE EXCEPTION 'loan %: instalment % is due %, expected %', p_loan, e.n, r ->> 'due',
                CASE WHEN p_start IS NULL THEN 'a date after ' || coalesce(prev::text, '-') ELSE e.due::text END
                USING ERRCODE = 'check_violation', CONSTRAINT = 'loan_schedule_sums';
        END IF;
        IF (r ->> 'principal')::bigint <> e.principal_cents OR (r ->> 'interest')::bigint <> e.interest_cents
           OR (r ->> 'fee')::bigint <> e.fee_cents THEN
            RAISE EXCEPTION 'loan %: instalment %: principal %, interest %, fee % where the terms give %, %, %',
                p_loan, e.n, r ->> 'principal', r ->> 'interest', r ->> 'fee', e.principal_cents, e.interest_cents,
                e.fee_cents USING ERRCODE = 'check_violation', CONSTRAINT = 'loan_schedule_sums';
        END IF;
        prev := (r ->> 'due')::date;
        sum_p := sum_p + e.principal_cents;
        sum_i := sum_i + e.interest_cents;
        sum_f := sum_f + e.fee_cents;
        k := k + 1;
    END LOOP;
    -- the sums follow from the rows; said again so that no edit of the
    -- recomputation can break them unseen
    IF sum_p <> l.principal_cents OR sum_i <> exp_i OR sum_f <> l.fees_cents OR k <> l.term_periods THEN
        RAISE EXCEPTION 'loan %: the schedule sums to principal %, interest %, fee % over % rows; the loan is %, %, % over %',
            p_loan, sum_p, sum_i, sum_f, k, l.principal_cents, exp_i, l.fees_cents, l.term_periods
            USING ERRCODE = 'check_violation', CONSTRAINT = 'loan_schedule_sums';
    END IF;
    INSERT INTO loan_schedules AS s (loan_id, installment_no, due_date, principal_due_cents, interest_due_cents,
                                     fee_due_cents)
    SELECT p_loan, (x ->> 'n')::int, (x ->> 'due')::date, (x ->> 'principal')::bigint, (x ->> 'interest')::bigint,
           (x ->> 'fee')::bigint
      FROM jsonb_array_elements(p_rows) x
    ON CONFLICT ON CONSTRAINT loan_schedules_loan_installment_key DO UPDATE
       SET due_date = EXCLUDED.due_date, principal_due_cents = EXCLUDED.principal_due_cents,
           interest_due_cents = EXCLUDED.interest_due_cents, fee_due_cents = EXCLUDED.fee_due_cents;
    RETURN k;
END
$$;

-- ---- the lifecycle -----------------------------------------------------------------

-- The moves of 024's header; 'disbursed' is never entered.
CREATE OR REPLACE FUNCTION loan_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_from
        WHEN 'applied'      THEN p_to IN ('queued', 'under_review', 'cancelled')
        WHEN 'queued'       THEN p_to IN ('under_review', 'cancelled')
        WHEN 'under_review' THEN p_to IN ('approved', 'rejected')
        WHEN 'approved'     THEN p_to IN ('active', 'cancelled')
        WHEN 'active'       THEN p_to IN ('defaulted', 'closed', 'written_off')
        WHEN 'defaulted'    THEN p_to IN ('closed', 'written_off')
        ELSE false END
$$;

CREATE OR REPLACE FUNCTION loans_check_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT loan_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'loan %: % -> % is not a move of its lifecycle', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'loans_lifecycle';
    END IF;
    -- who borrows, where, how much and on which terms never change
    IF NEW.user_id <> OLD.user_id OR NEW.chama_id <> OLD.chama_id OR NEW.principal_cents <> OLD.principal_cents
       OR NEW.terms IS DISTINCT FROM OLD.terms OR NEW.product_key IS DISTINCT FROM OLD.product_key
       OR NEW.term_periods <> OLD.term_periods THEN
        RAISE EXCEPTION 'loan %: its borrower, principal, term and terms are fixed', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'loans_lifecycle';
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER loans_check_transition BEFORE UPDATE ON loans
    FOR EACH ROW EXECUTE FUNCTION loans_check_transition();

-- 024's new tables: every row audited (they have no updated_at: a penalty
-- and an allocation are never edited, only reversed by new rows)
CREATE OR REPLACE TRIGGER loan_penalties_audit AFTER INSERT OR UPDATE OR DELETE ON loan_penalties
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE OR REPLACE TRIGGER loan_allocations_audit AFTER INSERT OR UPDATE OR DELETE ON loan_allocations
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();

-- ---- the member's limit ---------------------------------------------------------------

-- How much the member can borrow today on a product (NULL: the chama's
-- first), and why not when they cannot: the rules of the constitution, in
-- the order loan_apply refuses by.  limit = multiplier x own savings less
-- what open loans owe (pending ones by their principal); their own free
-- savings cover self_cover_bp of it (B's holds deducted), the rest needs
-- guarantors (at least guarantors_min of them, at most guarantors_max).
-- "Cover complete" is B's loan_cover_complete: the principal covered by
-- accepted pledges and the product's min_count guarantors besides the
-- borrower.
CREATE OR REPLACE FUNCTION member_loan_limit(p_chama bigint, p_user bigint, p_at timestamptz,
                                             p_product text DEFAULT NULL, p_tz text DEFAULT 'Africa/Nairobi')
RETURNS TABLE (outcome text, limit_cents bigint, savings_cents bigint, owed_cents bigint, open_loans int,
               open_max int, self_cover_cents bigint, guarantors_min int, guarantors_max int, arrears_cents bigint,
               min_days int, product jsonb)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    m memberships%ROWTYPE;
    p jsonb;
    arrears_max bigint := loan_rule(p_chama, 'loan_arrears_max_cents', 0, 0, 100000000000);
    free bigint;
BEGIN
    open_max := loan_rule(p_chama, 'loan_open_max_count', 1, 0, 20);
    min_days := loan_rule(p_chama, 'loan_membership_min_days', 30, 0, 3650);
    SELECT * INTO m FROM memberships x WHERE x.chama_id = p_chama AND x.user_id = p_user AND x.status = 'active';
    IF NOT FOUND THEN
        outcome := 'err_loan_not_member';
        RETURN NEXT;
        RETURN;
    END IF;
    p := CASE WHEN p_product IS NULL THEN (SELECT x FROM loan_products(p_chama) x LIMIT 1)
              ELSE loan_product(p_chama, p_product) END;
    product := p;
    savings_cents := coalesce((SELECT a.balance_cents FROM ledger_accounts a WHERE a.chama_id = p_chama
                                  AND a.kind = 'member_savings' AND a.user_id = p_user), 0);
    SELECT count(*), coalesce(sum(CASE WHEN l.status IN ('active', 'defaulted', 'disbursed')
                                       THEN loan_balance_cents(l) ELSE l.principal_cents END), 0)
      INTO open_loans, owed_cents
      FROM loans l WHERE l.chama_id = p_chama AND l.user_id = p_user      -- loans_member_open_idx (025)
       AND l.status IN ('applied', 'queued', 'under_review', 'approved', 'disbursed', 'active', 'defaulted');
    arrears_cents := coalesce((SELECT a.arrears_cents FROM member_arrears(p_user, p_chama, p_at, p_tz) a), 0);
    IF p IS NULL THEN
        outcome := 'err_loan_product';
        RETURN NEXT;
        RETURN;
    END IF;
    limit_cents := greatest(0, savings_cents * (p ->> 'multiplier_bp')::bigint / 10000 - owed_cents);
    free := member_free_savings_cents(p_chama, p_user);
    self_cover_cents := least(limit_cents, greatest(0, free) * (p -> 'guarantors' ->> 'self_cover_bp')::bigint / 10000);
    guarantors_min := (p -> 'guarantors' ->> 'min_count')::int;
    guarantors_max := (p -> 'guarantors' ->> 'max_count')::int;
    outcome := CASE WHEN m.joined_at + make_interval(days => min_days) > p_at THEN 'err_loan_too_new'
                    WHEN open_loans >= open_max THEN 'err_loan_open_max'
                    WHEN arrears_cents > arrears_max THEN 'err_loan_arrears'
                    ELSE 'ok_loan_limit' END;
    RETURN NEXT;
END
$$;

-- ---- applying --------------------------------------------------------------------------

-- The loan's place in its chama's queue (1 = next), NULL when not queued.
CREATE OR REPLACE FUNCTION loan_queue_place(p_loan bigint) RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM loans q WHERE q.chama_id = l.chama_id AND q.status = 'queued'
               AND (q.queued_at, q.id) <= (l.queued_at, l.id))::int
      FROM loans l WHERE l.id = p_loan AND l.status = 'queued'
$$;

-- Where an application stands, as loan_apply answers it: waiting for
-- guarantors (cover needed), with the officials, queued (its place), or
-- further on.
CREATE OR REPLACE FUNCTION loan_apply_state(p_loan bigint)
RETURNS TABLE (outcome text, loan_id bigint, cover_needed_cents bigint, queue_place int)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    st text;
    cover bigint;
BEGIN
    SELECT status INTO st FROM loans WHERE id = p_loan;
    cover := CASE WHEN st = 'applied' THEN loan_cover_needed_cents(p_loan) ELSE 0 END;
    RETURN QUERY SELECT CASE st WHEN 'applied' THEN CASE WHEN NOT loan_cover_complete(p_loan) THEN 'ok_loan_cover'
                                                         ELSE 'ok_loan_applied' END
                                WHEN 'queued' THEN 'ok_loan_queued'
                                WHEN 'under_review' THEN 'ok_loan_review'
                                WHEN 'cancelled' THEN 'ok_loan_cancelled'
                                WHEN 'rejected' THEN 'ok_loan_rejected'
                                ELSE 'ok_loan_approved' END,
                        p_loan, cover, loan_queue_place(p_loan);
END
$$;

-- The member applies: every rule checked (member_loan_limit's, then the
-- term and the amount), the loan written with its product's terms copied,
-- its schedule (computed by base/loansched from the same terms, starting
-- the day of p_at in p_tz) re-checked and recorded, the member's own cover
-- held (B's loan_guarantor_self), and, when that covers it, sent on at
-- once (loan_advance).  Idempotent by p_key (the USSD session, the SMS):
-- the same key answers the same loan as it stands now.
CREATE OR REPLACE FUNCTION loan_apply(p_chama bigint, p_user bigint, p_product text, p_amount_cents bigint,
                                      p_term int, p_schedule jsonb, p_key text, p_channel text, p_at timestamptz,
                                      p_tz text DEFAULT 'Africa/Nairobi')
RETURNS TABLE (outcome text, loan_id bigint, cover_needed_cents bigint, queue_place int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    l loans%ROWTYPE;
    lim record;
    p jsonb;
    v_id bigint;
    adv text;
BEGIN
    -- the member's row: their applications one at a time (the open-loan
    -- count and the limit are read under it)
    PERFORM 1 FROM memberships m WHERE m.chama_id = p_chama AND m.user_id = p_user FOR UPDATE;
    SELECT * INTO l FROM loans x WHERE x.application_key = p_key;
    IF FOUND THEN
        IF l.user_id <> p_user OR l.chama_id <> p_chama THEN
            RAISE EXCEPTION 'loan application key % is another application''s', p_key
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'loans_application_key_key';
        END IF;
        RETURN QUERY SELECT * FROM loan_apply_state(l.id);
        RETURN;
    END IF;
    SELECT * INTO lim FROM member_loan_limit(p_chama, p_user, p_at, p_product, p_tz);
    IF lim.outcome <> 'ok_loan_limit' THEN
        RETURN QUERY SELECT lim.outcome, NULL::bigint, NULL::bigint, NULL::int;
        RETURN;
    END IF;
    p := lim.product;
    IF p_term IS NULL OR p_term < 1 OR p_term > (p ->> 'max_term')::int OR p_term <= (p ->> 'grace')::int THEN
        RETURN QUERY SELECT 'err_loan_term'::text, NULL::bigint, NULL::bigint, NULL::int;
        RETURN;
    END IF;
    IF p_amount_cents IS NULL OR p_amount_cents < 100 OR p_amount_cents > 10000000000000 THEN
        RETURN QUERY SELECT 'err_loan_amount'::text, NULL::bigint, NULL::bigint, NULL::int;
        RETURN;
    END IF;
    IF p_amount_cents > lim.limit_cents THEN
        RETURN QUERY SELECT 'err_loan_over_limit'::text, NULL::bigint, NULL::bigint, NULL::int;
        RETURN;
    END IF;
    INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_rate_period, interest_method,
                       term_periods, repayment_frequency, status, product_key, terms, grace_periods, grace_kind,
                       fees_cents, application_key, channel, applied_at, created_at)
    VALUES (p_chama, p_user, p_amount_cents, (p ->> 'rate_bp')::int, p ->> 'per',
            CASE p ->> 'method' WHEN 'flat' THEN 'flat' WHEN 'reducing' THEN 'reducing_balance'
                                ELSE 'reducing_equal_principal' END,
            p_term, p ->> 'frequency', 'applied', p ->> 'key', p, (p ->> 'grace')::int,
            nullif(p ->> 'grace_kind', 'none'), (p ->> 'fee_cents')::bigint, p_key, p_channel, p_at, p_at)
    RETURNING loans.id INTO v_id;
    PERFORM loan_schedule_record(v_id, p_schedule, (p_at AT TIME ZONE p_tz)::date);
    PERFORM loan_guarantor_self(v_id, p_at);
    IF loan_cover_complete(v_id) THEN
        adv := loan_advance(v_id, p_at);
        IF adv NOT LIKE 'ok%' THEN
            -- the loan is applied and waits; the reason is the member's
            RETURN QUERY SELECT adv, v_id, 0::bigint, NULL::int;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM loan_apply_state(v_id);
END
$$;

-- What the queue SMS says.
CREATE OR REPLACE FUNCTION loan_vars(p_loan bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('chama', c.name, 'amount', format_kes(l.principal_cents), 'loan', 'L' || l.id)
      FROM loans l JOIN chamas c ON c.id = l.chama_id WHERE l.id = p_loan
$$;

-- Cover may be complete (after the application, after each accepted
-- pledge): an applied loan whose cover is met goes to the officials
-- (C's loan_approval_open) when the free pool covers it and nobody is
-- queued before it, else joins the queue (the borrower told their place).
-- Returns an outcome key: ok_loan_cover (still short of cover),
-- ok_loan_review, ok_loan_queued, ok_loan_<status> for a loan past this
-- step, or loan_approval_open's refusal (the loan stays applied).
CREATE OR REPLACE FUNCTION loan_advance(p_loan bigint, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    o text;
BEGIN
    -- the chama first (the order loan_queue_advance locks in): the pool
    -- and the queue are the chama's
    PERFORM 1 FROM chamas WHERE id = (SELECT chama_id FROM loans WHERE id = p_loan) FOR UPDATE;
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan %: no such loan', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    IF l.status <> 'applied' THEN
        RETURN CASE l.status WHEN 'queued' THEN 'ok_loan_queued' WHEN 'under_review' THEN 'ok_loan_review'
                             WHEN 'cancelled' THEN 'ok_loan_cancelled' WHEN 'rejected' THEN 'ok_loan_rejected'
                             ELSE 'ok_loan_approved' END;
    END IF;
    IF NOT loan_cover_complete(p_loan) THEN
        RETURN 'ok_loan_cover';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM loans q WHERE q.chama_id = l.chama_id AND q.status = 'queued')
       AND l.principal_cents <= loan_pool_cents(l.chama_id) THEN
        o := loan_approval_open(p_loan, p_at);
        IF o NOT LIKE 'ok%' THEN
            RETURN o;
        END IF;
        UPDATE loans SET status = 'under_review' WHERE id = p_loan AND status = 'applied';
        RETURN 'ok_loan_review';
    END IF;
    UPDATE loans SET status = 'queued', queued_at = p_at WHERE id = p_loan;
    PERFORM notify(l.user_id, 'loan', 'sms_loan_queued',
                   loan_vars(p_loan) || jsonb_build_object('place', loan_queue_place(p_loan)), 5,
                   'loan:' || p_loan || ':queued', l.chama_id);
    RETURN 'ok_loan_queued';
END
$$;

-- Money was freed (a repayment, a rejection, a failed payout, a cancel):
-- the first in the chama's queue goes to the officials while the pool
-- covers it, then the next; nobody is passed over (one that does not fit
-- stops the queue).  Each one moved is told; those still waiting are told
-- their new place.  Returns how many moved.
CREATE OR REPLACE FUNCTION loan_queue_advance(p_chama bigint, p_at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    o text;
    k int := 0;
BEGIN
    PERFORM 1 FROM chamas WHERE id = p_chama FOR UPDATE;
    LOOP
        SELECT * INTO l FROM loans WHERE chama_id = p_chama AND status = 'queued'
         ORDER BY queued_at, id LIMIT 1 FOR UPDATE;
        EXIT WHEN NOT FOUND OR l.principal_cents > loan_pool_cents(p_chama);
        o := loan_approval_open(l.id, p_at);
        EXIT WHEN o NOT LIKE 'ok%';
        UPDATE loans SET status = 'under_review' WHERE id = l.id AND status = 'queued';
        PERFORM notify(l.user_id, 'loan', 'sms_loan_dequeued', loan_vars(l.id), 5, 'loan:' || l.id || ':dequeued',
                       p_chama);
        k := k + 1;
    END LOOP;
    IF k > 0 THEN
        FOR l IN SELECT * FROM loans WHERE chama_id = p_chama AND status = 'queued' LOOP
            PERFORM notify(l.user_id, 'loan', 'sms_loan_queued',
                           loan_vars(l.id) || jsonb_build_object('place', loan_queue_place(l.id)), 5,
                           'loan:' || l.id || ':queued:' || loan_queue_place(l.id), p_chama);
        END LOOP;
    END IF;
    RETURN k;
END
$$;

-- The borrower withdraws an application not yet with the officials
-- (applied or queued): its holds end (B's loan_holds_end), and a queued
-- one makes room for those after it.
CREATE OR REPLACE FUNCTION loan_cancel(p_loan bigint, p_user bigint, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
BEGIN
    PERFORM 1 FROM chamas WHERE id = (SELECT chama_id FROM loans WHERE id = p_loan) FOR UPDATE;
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND OR l.user_id <> p_user THEN
        RETURN 'err_loan_not_yours';
    END IF;
    IF l.status NOT IN ('applied', 'queued') THEN
        RETURN 'err_loan_not_cancellable';
    END IF;
    UPDATE loans SET status = 'cancelled', cancelled_at = p_at WHERE id = p_loan;
    PERFORM loan_holds_end(p_loan, 'cancelled', p_at);
    IF l.status = 'queued' THEN
        PERFORM loan_queue_advance(l.chama_id, p_at);
    END IF;
    RETURN 'ok_loan_cancelled';
END
$$;

-- What the application's confirmation screen needs before the member
-- commits: the rules checked as loan_apply will (no write), and the terms
-- and the start day base/loansched builds the schedule from.
CREATE OR REPLACE FUNCTION loan_quote(p_chama bigint, p_user bigint, p_product text, p_amount_cents bigint,
                                      p_term int, p_at timestamptz, p_tz text)
RETURNS TABLE (outcome text, terms jsonb, start_date date, limit_cents bigint, self_cover_cents bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim record;
    p jsonb;
BEGIN
    SELECT * INTO lim FROM member_loan_limit(p_chama, p_user, p_at, p_product, p_tz);
    p := lim.product;
    RETURN QUERY SELECT CASE WHEN lim.outcome <> 'ok_loan_limit' THEN lim.outcome
                             WHEN p_term IS NULL OR p_term < 1 OR p_term > (p ->> 'max_term')::int
                                  OR p_term <= (p ->> 'grace')::int THEN 'err_loan_term'
                             WHEN p_amount_cents IS NULL OR p_amount_cents < 100 THEN 'err_loan_amount'
                             WHEN p_amount_cents > lim.limit_cents THEN 'err_loan_over_limit'
                             ELSE 'ok_loan_quote' END,
                        p, (p_at AT TIME ZONE p_tz)::date, lim.limit_cents, lim.self_cover_cents;
END
$$;
