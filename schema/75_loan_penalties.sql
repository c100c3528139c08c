-- schema/75_loan_penalties.sql: the loans' jobs: penalties on late
-- instalments, reminders before and after each due date, defaulting.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions.  Migrations never call what is defined
-- here.
--
-- Each job is one statement of the jobs timer (src/ops/jobs.c), run by
-- every daemon at every tick: a transaction advisory lock lets one run
-- work at a time (another daemon's run returns 0 at once), and every
-- effect is keyed, so a rerun, a second daemon or a restart repeats
-- nothing:
--   a penalty   one loan_penalties row per (instalment, period)
--               (UNIQUE (schedule_id, period_no)), posted by ledger_post
--               keyed loan_penalty:<schedule_id>:<period_no>
--   a reminder  the notify key loan:<id>:<n>:due3 | due1 | overdue
--   a default   the loan's status (active -> defaulted happens once)
-- Days are the chama's days (p_tz, [ussd] timezone); p_at is the domain
-- clock ([jobs] now in tests and drills).  The rules are the loan's
-- terms (loans.terms, copied from the product at application):
--   penalty.kind 'flat' (penalty.cents) or 'percent' (penalty.bp of the
--   instalment's unpaid principal + interest + fee, HALF_EVEN; its unpaid
--   penalties counted too only when penalty.compound is true); no kind:
--   no penalty.  penalty.grace_days (default 2): days after the due date
--   before the first penalty.  default_days (default 30): an active loan
--   with an instalment unpaid more than this many days after its due date
--   is defaulted.
-- A penalty period is the loan's frequency (weekly 7 days, biweekly 14,
-- monthly a calendar month, counted from the first day after the grace:
-- period 1 is levied that day, period 2 one period later, ...).  A
-- catch-up after days without a run levies each period missed once, dated
-- the day it began (no cap but the table's 10000 periods).  Only an
-- instalment still unpaid when the job runs is penalised.
--
-- Locks: a repayment (loan_repay, schema/74_loan_repay.sql) locks its loan
-- row FOR UPDATE, then the accounts it posts to.  The penalty job and the
-- default job lock every loan they may touch first, in id order, before
-- any account: a repayment and a penalty on one loan are decided one
-- after the other (what the second sees is what the first committed), and
-- the two never wait on each other crosswise.

-- p_cents x p_bp / 10000 rounded HALF_EVEN, in integers (numeric round()
-- rounds half away from zero).
CREATE OR REPLACE FUNCTION loan_bp_half_even(p_cents bigint, p_bp bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    q bigint := (p_cents * p_bp) / 10000;
    r bigint := (p_cents * p_bp) % 10000;
BEGIN
    IF 2 * r > 10000 OR (2 * r = 10000 AND q % 2 = 1) THEN
        q := q + 1;
    END IF;
    RETURN q;
END
$$;

-- An integer rule of the terms, p_def when absent or not a whole number
-- (a bad rule must not stop the job for every other loan).
CREATE OR REPLACE FUNCTION loan_terms_int(p_obj jsonb, p_key text, p_def bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_obj -> p_key) = 'number' AND (p_obj ->> p_key) ~ '^[0-9]{1,15}$'
                THEN (p_obj ->> p_key)::bigint ELSE p_def END
$$;

CREATE OR REPLACE FUNCTION loan_grace_days(p_terms jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(loan_terms_int(p_terms -> 'penalty', 'grace_days', 2), 3650)::integer
$$;

CREATE OR REPLACE FUNCTION loan_default_days(p_terms jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(loan_terms_int(p_terms, 'default_days', 30), 3650)::integer
$$;

-- What the member still owes of an instalment's own dues (principal,
-- interest, fee): what a percent penalty is levied on.
CREATE OR REPLACE FUNCTION loan_instalment_owed_cents(s loan_schedules) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (s.principal_due_cents - s.principal_paid_cents) + (s.interest_due_cents - s.interest_paid_cents)
         + (s.fee_due_cents - s.fee_paid_cents)
$$;

-- ... and with its unpaid penalties: what settles the instalment.
CREATE OR REPLACE FUNCTION loan_instalment_left_cents(s loan_schedules) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT loan_instalment_owed_cents(s) + s.penalty_due_cents - s.penalty_paid_cents
$$;

-- The first day of penalty period p_k (1, 2, ...) when period 1 begins on
-- p_first.  Monthly periods are calendar months from p_first, clamped to
-- the month's end (as the schedules' due dates are).
CREATE OR REPLACE FUNCTION loan_penalty_period_start(p_first date, p_frequency text, p_k integer) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_frequency
        WHEN 'weekly' THEN p_first + 7 * (p_k - 1)
        WHEN 'biweekly' THEN p_first + 14 * (p_k - 1)
        ELSE (p_first + make_interval(months => p_k - 1))::date END
$$;

-- How many penalty periods have begun by p_today (0 before p_first).
CREATE OR REPLACE FUNCTION loan_penalty_periods(p_first date, p_frequency text, p_today date) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    m integer;
BEGIN
    IF p_today < p_first THEN
        RETURN 0;
    END IF;
    IF p_frequency = 'weekly' THEN
        RETURN (p_today - p_first) / 7 + 1;
    ELSIF p_frequency = 'biweekly' THEN
        RETURN (p_today - p_first) / 14 + 1;
    END IF;
    m := (extract(year FROM p_today)::integer - extract(year FROM p_first)::integer) * 12
         + extract(month FROM p_today)::integer - extract(month FROM p_first)::integer;
    IF loan_penalty_period_start(p_first, p_frequency, m + 1) > p_today THEN
        m := m - 1;
    END IF;
    RETURN m + 1;
END
$$;

-- How to pay, a translated line of every loan notice: the paybill and
-- the loan's account (L<id>, what loan_repay's C2B path reads), or the
-- account alone when the caller did not say the paybill.
CREATE OR REPLACE FUNCTION loan_pay_how(p_loan bigint, p_paybill text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(p_paybill, '') <> ''
                THEN jsonb_build_object('template', 'sms_loan_pay_paybill',
                                        'vars', jsonb_build_object('paybill', p_paybill, 'account', 'L' || p_loan))
                ELSE jsonb_build_object('template', 'sms_loan_pay_account',
                                        'vars', jsonb_build_object('account', 'L' || p_loan)) END
$$;

-- One penalty period of one instalment, its loan row locked by the
-- caller: the loan_penalties row, the instalment's and the loan's
-- penalties raised, the posting Dr loans_receivable[borrower] / Cr
-- penalty_income.  Returns the cents levied (0: nothing owed, no penalty
-- rule, a percent that rounds to nothing, or that period levied already).
CREATE OR REPLACE FUNCTION loan_penalty_levy(p_loan loans, p_schedule bigint, p_period integer, p_on date,
                                             p_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s loan_schedules%ROWTYPE;
    pen jsonb := coalesce(p_loan.terms -> 'penalty', '{}'::jsonb);
    basis bigint;
    cents bigint;
    e bigint;
    k text := 'loan_penalty:' || p_schedule || ':' || p_period;
BEGIN
    IF EXISTS (SELECT 1 FROM loan_penalties WHERE schedule_id = p_schedule AND period_no = p_period) THEN
        RETURN 0;
    END IF;
    SELECT * INTO STRICT s FROM loan_schedules WHERE id = p_schedule AND loan_id = p_loan.id;
    basis := loan_instalment_owed_cents(s);
    IF basis <= 0 THEN
        RETURN 0;
    END IF;
    IF jsonb_typeof(pen -> 'compound') = 'boolean' AND (pen ->> 'compound')::boolean THEN
        basis := basis + s.penalty_due_cents - s.penalty_paid_cents;
    END IF;
    cents := CASE pen ->> 'kind'
                 WHEN 'flat' THEN loan_terms_int(pen, 'cents', 0)
                 WHEN 'percent' THEN loan_bp_half_even(basis, loan_terms_int(pen, 'bp', 0))
                 ELSE 0 END;
    IF cents <= 0 THEN
        RETURN 0;
    END IF;
    SELECT lp.entry_id INTO e
      FROM ledger_post(p_loan.chama_id, 'loan_penalty', k,
                       jsonb_build_array(
                           jsonb_build_object('kind', 'loans_receivable', 'user', p_loan.user_id,
                                              'side', 'debit', 'cents', cents),
                           jsonb_build_object('kind', 'penalty_income', 'side', 'credit', 'cents', cents)),
                       'loans', p_loan.id, NULL,
                       jsonb_build_object('action', 'loan_penalty', 'user', p_loan.user_id,
                                          'entity_type', 'loan_schedules', 'entity_id', p_schedule,
                                          'direction', 'internal', 'method', 'internal', 'key', k,
                                          'request_id', 'job:loan_penalties',
                                          'details', jsonb_build_object('loan_id', p_loan.id,
                                                                        'installment_no', s.installment_no,
                                                                        'period_no', p_period,
                                                                        'basis_cents', basis, 'levied_on', p_on)),
                       NULL, 'system', 'loan L' || p_loan.id || ' instalment ' || s.installment_no || ' penalty '
                                       || p_period, p_at) lp;
    INSERT INTO loan_penalties (loan_id, schedule_id, period_no, amount_cents, basis_cents, levied_on,
                                journal_entry_id, created_at)
    VALUES (p_loan.id, p_schedule, p_period, cents, basis, p_on, e, p_at);
    UPDATE loan_schedules SET penalty_due_cents = penalty_due_cents + cents WHERE id = p_schedule;
    UPDATE loans SET penalties_cents = penalties_cents + cents WHERE id = p_loan.id;
    RETURN cents;
END
$$;

-- The penalty job at p_at: every period begun by today of every unpaid
-- instalment past its grace, of every active or defaulted loan; the
-- borrower told once per instalment and run (the periods it levied, what
-- settles the instalment now).  Returns the penalties levied, 0 when
-- another run holds the lock.
CREATE OR REPLACE FUNCTION loan_penalties_run(p_at timestamptz, p_tz text, p_paybill text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today date := (p_at AT TIME ZONE p_tz)::date;
    ids bigint[];
    lid bigint;
    l loans%ROWTYPE;
    s loan_schedules%ROWTYPE;
    t loan_schedules%ROWTYPE;
    first date;
    upto integer;
    k integer;
    c bigint;
    total bigint;
    n integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100075) THEN
        RETURN 0;
    END IF;
    PERFORM audit_context('system', NULL, 'job:loan_penalties', NULL);
    -- every loan it may touch, locked first and in id order (the header)
    SELECT array_agg(q.id) INTO ids FROM (
        SELECT x.id FROM loans x
         WHERE x.status IN ('active', 'defaulted')
           AND EXISTS (SELECT 1 FROM loan_schedules y
                        WHERE y.loan_id = x.id AND y.status IN ('pending', 'partially_paid', 'overdue')
                          AND y.due_date < today AND y.due_date + loan_grace_days(x.terms) < today
                          AND loan_instalment_owed_cents(y) > 0)
         ORDER BY x.id FOR UPDATE OF x) q;
    FOREACH lid IN ARRAY coalesce(ids, '{}'::bigint[]) LOOP
        -- read after the lock: what a repayment that held it committed
        SELECT * INTO l FROM loans WHERE id = lid;
        CONTINUE WHEN l.status NOT IN ('active', 'defaulted');
        FOR s IN SELECT * FROM loan_schedules
                  WHERE loan_id = lid AND status IN ('pending', 'partially_paid', 'overdue') AND due_date < today
                  ORDER BY installment_no LOOP
            CONTINUE WHEN loan_instalment_owed_cents(s) <= 0;
            first := s.due_date + loan_grace_days(l.terms) + 1;
            upto := least(loan_penalty_periods(first, l.repayment_frequency, today), 10000);
            SELECT coalesce(max(period_no), 0) INTO k FROM loan_penalties WHERE schedule_id = s.id;
            total := 0;
            WHILE k < upto LOOP
                k := k + 1;
                c := loan_penalty_levy(l, s.id, k, loan_penalty_period_start(first, l.repayment_frequency, k), p_at);
                IF c > 0 THEN
                    total := total + c;
                    n := n + 1;
                END IF;
            END LOOP;
            IF total > 0 THEN
                SELECT * INTO t FROM loan_schedules WHERE id = s.id;
                PERFORM notify(l.user_id, 'loan_penalty', 'sms_loan_penalty',
                               jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = l.chama_id),
                                                  'loan', 'L' || l.id, 'amount', format_kes(total),
                                                  'date', to_char(s.due_date, 'DD Mon'),
                                                  'due', format_kes(loan_instalment_left_cents(t)),
                                                  'pay', loan_pay_how(l.id, p_paybill)),
                               5, 'loan:' || l.id || ':' || s.installment_no || ':penalty:' || k, l.chama_id);
            END IF;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;

-- The default job at p_at: an active loan with an instalment unpaid more
-- than its default_days after the due date is defaulted; the borrower
-- and the chama's officials are told (officials may then call the
-- guarantors' pledges or write the loan off, by approval).  Returns the
-- loans defaulted, 0 when another run holds the lock.
CREATE OR REPLACE FUNCTION loan_defaults_run(p_at timestamptz, p_tz text, p_paybill text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today date := (p_at AT TIME ZONE p_tz)::date;
    ids bigint[];
    lid bigint;
    l loans%ROWTYPE;
    since date;
    owed bigint;
    v jsonb;
    o record;
    n integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100077) THEN
        RETURN 0;
    END IF;
    PERFORM audit_context('system', NULL, 'job:loan_defaults', NULL);
    SELECT array_agg(q.id) INTO ids FROM (
        SELECT x.id FROM loans x
         WHERE x.status = 'active'
           AND EXISTS (SELECT 1 FROM loan_schedules y
                        WHERE y.loan_id = x.id AND y.status IN ('pending', 'partially_paid', 'overdue')
                          AND y.due_date < today AND y.due_date + loan_default_days(x.terms) < today
                          AND loan_instalment_owed_cents(y) > 0)
         ORDER BY x.id FOR UPDATE OF x) q;
    FOREACH lid IN ARRAY coalesce(ids, '{}'::bigint[]) LOOP
        SELECT * INTO l FROM loans WHERE id = lid;
        CONTINUE WHEN l.status <> 'active';
        SELECT min(y.due_date) INTO since FROM loan_schedules y
         WHERE y.loan_id = lid AND y.status IN ('pending', 'partially_paid', 'overdue') AND y.due_date < today
           AND loan_instalment_owed_cents(y) > 0;
        CONTINUE WHEN since IS NULL OR since + loan_default_days(l.terms) >= today;
        SELECT coalesce(sum(loan_instalment_left_cents(y)), 0) INTO owed FROM loan_schedules y
         WHERE y.loan_id = lid AND y.due_date < today AND y.status <> 'waived';
        UPDATE loans SET status = 'defaulted', defaulted_at = p_at WHERE id = lid;
        v := jsonb_build_object('chama', (SELECT name FROM chamas WHERE id = l.chama_id), 'loan', 'L' || l.id,
                                'amount', format_kes(owed), 'date', to_char(since, 'DD Mon'),
                                'days', today - since,
                                'member', (SELECT full_name FROM users WHERE id = l.user_id));
        PERFORM notify(l.user_id, 'loan_default', 'sms_loan_defaulted', v || jsonb_build_object(
                           'pay', loan_pay_how(l.id, p_paybill)), 4, 'loan:' || l.id || ':defaulted', l.chama_id);
        FOR o IN SELECT m.user_id FROM memberships m
                  WHERE m.chama_id = l.chama_id AND m.status = 'active' AND m.user_id <> l.user_id
                    AND m.role IN ('chairperson', 'treasurer', 'secretary') ORDER BY m.user_id LOOP
            PERFORM notify(o.user_id, 'loan_default', 'sms_loan_defaulted_officials', v, 4,
                           'loan:' || l.id || ':defaulted:' || o.user_id, l.chama_id);
        END LOOP;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The reminder job at p_at, for each unpaid instalment of an active or
-- defaulted loan: due3 two or three days before its due date, due1 the
-- day before or the day itself, overdue once from the day after.  The
-- windows let a run that missed a day still remind (the 3-day reminder
-- the day after, if the daemon was down), and keep a late run from
-- sending a reminder that no longer fits.  Each once per instalment by
-- its key.  Returns the messages queued, 0 when another run holds the
-- lock.
CREATE OR REPLACE FUNCTION loan_reminders_run(p_at timestamptz, p_tz text, p_paybill text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today date := (p_at AT TIME ZONE p_tz)::date;
    r record;
    n integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100076) THEN
        RETURN 0;
    END IF;
    PERFORM audit_context('system', NULL, 'job:loan_reminders', NULL);
    FOR r IN
        WITH due AS (
            SELECT l.id, l.user_id, l.chama_id, c.name, s.installment_no, s.due_date,
                   loan_instalment_left_cents(s) AS cents,
                   CASE WHEN s.due_date - today BETWEEN 2 AND 3 THEN 'due3'
                        WHEN s.due_date - today BETWEEN 0 AND 1 THEN 'due1'
                        WHEN s.due_date < today THEN 'overdue' END AS what
              FROM loans l
              JOIN chamas c ON c.id = l.chama_id
              JOIN loan_schedules s ON s.loan_id = l.id
             WHERE l.status IN ('active', 'defaulted')
               AND s.status IN ('pending', 'partially_paid', 'overdue') AND s.due_date <= today + 3
               AND loan_instalment_left_cents(s) > 0)
        SELECT due.*, 'loan:' || due.id || ':' || due.installment_no || ':' || due.what AS key
          FROM due
         WHERE due.what IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM notifications x
                            WHERE x.idempotency_key = 'loan:' || due.id || ':' || due.installment_no || ':' || due.what)
         ORDER BY due.id, due.installment_no
    LOOP
        PERFORM notify(r.user_id, 'loan_reminder', 'sms_loan_' || r.what,
                       jsonb_build_object('chama', r.name, 'loan', 'L' || r.id, 'amount', format_kes(r.cents),
                                          'date', to_char(r.due_date, 'DD Mon'),
                                          'pay', loan_pay_how(r.id, p_paybill)),
                       7, r.key, r.chama_id);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
