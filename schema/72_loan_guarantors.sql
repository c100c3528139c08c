-- schema/72_loan_guarantors.sql: guarantors: pledges as holds on savings, their answers, their release.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views, the triggers of
-- its tables.  Migrations never call what is defined here.
--
-- The tables are 003's loan_guarantors (with 024's statuses, code and
-- expiry) and 026's loans.holds_principal_cents.  A pledge is a hold, not
-- a posting: while it is accepted, held = pledged - released - called is
-- kept out of the guarantor's free savings (member_free_savings_cents), and
-- nothing moves in the ledger until officials call it on default (C's
-- loan_guarantor_call, through D's loan_repay).
--
--   pending  --YES with the PIN, the free savings cover it--> accepted
--            --NO with the PIN--> declined      --past expires_at--> expired
--            --the loan's cover completed, or the loan ended--> cancelled
--   accepted --the principal repaid (pro rata)--> released
--            --called on default--> called (C)
--            --the loan never went out (rejected, cancelled)--> cancelled
-- The borrower's own cover is a row with guarantor = borrower, accepted at
-- once (loan_guarantor_self).  A declined or expired guarantor may be asked
-- again: the row is the pair's (loan, guarantor: UNIQUE), pending again
-- with a new code.
--
-- Locks, in this order: (for an answer, which may complete the cover and
-- call A's loan_advance: the chama row, as loan_advance does), the loan row
-- (every writer of a loan does it first), the pledge row, the guarantor's
-- member_savings ledger account.
-- The account row is the guarantor's lock for every acceptance in the
-- chama: two pledges on the same savings (two loans, two channels) run one
-- after the other, and the second sees the first's hold.
--
-- Release (loan_holds_release): after a repayment whose principal part is
-- p, the principal counted for the holds is c = min(P, c + p) and the
-- released total becomes floor(c x T / P), T the total pledged, all of T
-- once c = P; the difference is released from the external guarantors
-- first (oldest pledge first), then from the borrower's own cover.  A
-- reversal (loan_holds_rehold) takes c back and holds again what the
-- smaller total no longer releases, in the opposite order, never more than
-- a guarantor's free savings (a hold is never above savings: what they
-- spent meanwhile is cover lost, not a negative balance).

CREATE OR REPLACE TRIGGER loan_guarantors_audit AFTER INSERT OR UPDATE OR DELETE ON loan_guarantors
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();

-- A whole number of the product's guarantor rule (loans.terms ->
-- 'guarantors') within [lo, hi], else def.
CREATE OR REPLACE FUNCTION loan_guar_rule(p_terms jsonb, p_key text, p_def int, p_lo int, p_hi int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_terms -> 'guarantors' -> p_key) = 'number'
                     AND (p_terms -> 'guarantors' ->> p_key) ~ '^[0-9]{1,9}$'
                     AND (p_terms -> 'guarantors' ->> p_key)::int BETWEEN p_lo AND p_hi
                THEN (p_terms -> 'guarantors' ->> p_key)::int ELSE p_def END
$$;

-- The chama's loan_guarantor_hours (default 48, 1 to 720).
CREATE OR REPLACE FUNCTION loan_guar_hours(p_chama bigint) RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT CASE WHEN jsonb_typeof(c.constitution -> 'loan_guarantor_hours') = 'number'
                                      AND (c.constitution ->> 'loan_guarantor_hours') ~ '^[0-9]{1,4}$'
                                      AND (c.constitution ->> 'loan_guarantor_hours')::int BETWEEN 1 AND 720
                                 THEN (c.constitution ->> 'loan_guarantor_hours')::int END
                       FROM chamas c WHERE c.id = p_chama), 48)
$$;

-- What one pledge holds now: accepted, on a loan still alive.
CREATE OR REPLACE FUNCTION loan_guar_at_risk(g loan_guarantors, l loans) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN g.status = 'accepted' AND l.status NOT IN ('closed', 'cancelled', 'rejected', 'written_off')
                THEN g.pledged_cents - g.released_cents - g.called_cents ELSE 0 END
$$;

-- What the member's accepted pledges hold of their savings in the chama,
-- on loans still alive.
CREATE OR REPLACE FUNCTION member_held_cents(p_chama bigint, p_user bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(g.pledged_cents - g.released_cents - g.called_cents), 0)::bigint
      FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id
     WHERE g.guarantor_user_id = p_user AND g.status = 'accepted' AND l.chama_id = p_chama
       AND l.status NOT IN ('closed', 'cancelled', 'rejected', 'written_off')
$$;

-- The member's savings (their member_savings ledger balance) less what
-- their pledges hold.  Below zero only if savings left without looking at
-- the holds (a bug elsewhere: the channels show it as 0).
CREATE OR REPLACE FUNCTION member_free_savings_cents(p_chama bigint, p_user bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT a.balance_cents FROM ledger_accounts a
                      WHERE a.chama_id = p_chama AND a.kind = 'member_savings' AND a.user_id = p_user), 0)
           - member_held_cents(p_chama, p_user)
$$;

-- Locks the member's savings account row (made on first use): the one lock
-- every hold on their savings takes (see the header).
CREATE OR REPLACE FUNCTION loan_guar_lock_savings(p_chama bigint, p_user bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- (SELECT ...): one call of the volatile ledger_account, not one per row
    PERFORM 1 FROM ledger_accounts WHERE id = (SELECT ledger_account(p_chama, 'member_savings', p_user)) FOR UPDATE;
END
$$;

-- The principal the accepted pledges do not cover yet (0: covered).
CREATE OR REPLACE FUNCTION loan_cover_needed_cents(p_loan bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(l.principal_cents - coalesce((SELECT sum(g.pledged_cents) FROM loan_guarantors g
                                                   WHERE g.loan_id = l.id AND g.status = 'accepted'), 0), 0)::bigint
      FROM loans l WHERE l.id = p_loan
$$;

-- Whether the product's rule is met: the principal covered and at least
-- min_count guarantors other than the borrower accepted.
CREATE OR REPLACE FUNCTION loan_cover_complete(p_loan bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT loan_cover_needed_cents(l.id) = 0
           AND (SELECT count(*) FROM loan_guarantors g WHERE g.loan_id = l.id AND g.status = 'accepted'
                   AND g.guarantor_user_id <> l.user_id) >= loan_guar_rule(l.terms, 'min_count', 0, 0, 20)
      FROM loans l WHERE l.id = p_loan
$$;

-- What is still to be asked of guarantors: the principal less what is
-- accepted and what is waiting for an answer.
CREATE OR REPLACE FUNCTION loan_guar_unasked_cents(p_loan bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(l.principal_cents - coalesce((SELECT sum(g.pledged_cents) FROM loan_guarantors g
                                                   WHERE g.loan_id = l.id AND g.status IN ('accepted', 'pending')),
                                                  0), 0)::bigint
      FROM loans l WHERE l.id = p_loan
$$;

-- The borrower's own cover, at application (A's loan_apply calls it): up
-- to the product's self_cover_bp (default 10000: all) of their free
-- savings, never more than the principal; a row accepted at once.  Returns
-- the cents it covers (0: none, no row).  A second call returns the first's.
CREATE OR REPLACE FUNCTION loan_guarantor_self(p_loan bigint, p_at timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    g loan_guarantors%ROWTYPE;
    free bigint;
    cover bigint;
BEGIN
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan_guarantor_self: no loan %', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO g FROM loan_guarantors WHERE loan_id = l.id AND guarantor_user_id = l.user_id;
    IF FOUND THEN
        RETURN CASE WHEN g.status = 'accepted' THEN g.pledged_cents ELSE 0 END;
    END IF;
    IF l.status <> 'applied' THEN
        RETURN 0;
    END IF;
    PERFORM loan_guar_lock_savings(l.chama_id, l.user_id);
    free := greatest(member_free_savings_cents(l.chama_id, l.user_id), 0);
    cover := least(l.principal_cents, free * loan_guar_rule(l.terms, 'self_cover_bp', 10000, 0, 10000) / 10000);
    IF cover <= 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status, responded_at, requested_at,
                                 channel)
    VALUES (l.id, l.user_id, cover, 'accepted', p_at, p_at, coalesce(l.channel, 'system'));
    RETURN cover;
END
$$;

-- The member the applicant names, by member number (digits) or phone
-- (E.164: the channel normalised it), among the active members of the
-- chama; NULL when none.
CREATE OR REPLACE FUNCTION loan_guar_who(p_chama bigint, p_who text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id AND u.deleted_at IS NULL
     WHERE m.chama_id = p_chama AND m.status = 'active'
       AND CASE WHEN btrim(p_who) ~ '^[0-9]{1,9}$' THEN m.member_number = btrim(p_who)::int
                ELSE u.phone = btrim(p_who) END
$$;

-- The applicant's loan waiting for guarantors in the chama (the latest
-- applied), or NULL.
CREATE OR REPLACE FUNCTION loan_guar_applicant_loan(p_chama bigint, p_user bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT id FROM loans WHERE chama_id = p_chama AND user_id = p_user AND status = 'applied'
     ORDER BY id DESC LIMIT 1
$$;

-- Whether the applicant may ask `who` for p_cents now, and who that is:
-- the refusal (err_loan_guar_*) or NULL.  The caller holds the loan's lock
-- when it goes on to ask.
CREATE OR REPLACE FUNCTION loan_guar_check(l loans, p_applicant bigint, p_guarantor bigint, p_cents bigint)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    unasked bigint := loan_guar_unasked_cents(l.id);
    others int;
BEGIN
    IF l.id IS NULL OR l.user_id <> p_applicant OR l.status <> 'applied' THEN
        RETURN 'err_loan_guar_no_loan';
    ELSIF p_guarantor IS NULL THEN
        RETURN 'err_loan_guar_who';
    ELSIF p_guarantor = l.user_id THEN
        RETURN 'err_loan_guar_self';
    ELSIF EXISTS (SELECT 1 FROM loan_guarantors g WHERE g.loan_id = l.id AND g.guarantor_user_id = p_guarantor
                     AND g.status IN ('pending', 'accepted')) THEN
        RETURN 'err_loan_guar_twice';
    END IF;
    SELECT count(*) INTO others FROM loan_guarantors g
     WHERE g.loan_id = l.id AND g.guarantor_user_id <> l.user_id AND g.status IN ('pending', 'accepted');
    IF others >= loan_guar_rule(l.terms, 'max_count', 5, 0, 20) THEN
        RETURN 'err_loan_guar_max';
    ELSIF unasked = 0 AND others >= loan_guar_rule(l.terms, 'min_count', 0, 0, 20) THEN
        RETURN 'err_loan_guar_covered';
    ELSIF p_cents IS NOT NULL AND p_cents <= 0 THEN
        RETURN 'err_loan_guar_amount';
    ELSIF p_cents IS NOT NULL AND p_cents > (CASE WHEN unasked > 0 THEN unasked ELSE l.principal_cents END) THEN
        -- never more than the loan still needs (a guarantor named only to
        -- make up the product's count may cover up to the principal)
        RETURN 'err_loan_guar_over';
    END IF;
    RETURN NULL;
END
$$;

-- Before asking: who p_who is and whether they may be asked (p_cents
-- NULL: the amount is not typed yet).  Outcome ok_loan_guar_found or a
-- refusal, the guarantor's id and name, and what is still to be asked.
CREATE OR REPLACE FUNCTION loan_guarantor_find(p_loan bigint, p_applicant bigint, p_who text)
RETURNS TABLE (outcome text, guarantor_user_id bigint, name text, cover_needed_cents bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    l loans%ROWTYPE;
    g bigint;
    o text;
BEGIN
    SELECT * INTO l FROM loans WHERE id = p_loan;
    g := loan_guar_who(l.chama_id, p_who);
    o := loan_guar_check(l, p_applicant, g, NULL);
    RETURN QUERY SELECT coalesce(o, 'ok_loan_guar_found'), CASE WHEN o IS NULL THEN g END,
                        CASE WHEN o IS NULL THEN (SELECT full_name FROM users WHERE id = g) END,
                        CASE WHEN l.id IS NOT NULL THEN loan_guar_unasked_cents(l.id) END;
END
$$;

-- The applicant asks a member to guarantee p_cents of their applied loan.
-- The rules are the product's (loans.terms -> guarantors): never the
-- borrower, an active member of the same chama, not asked already, at
-- most max_count, never more than the loan still needs.  The guarantor
-- gets an SMS in their language with the borrower, the amount, the code
-- and how to answer (in loan_guarantor_hours).  Outcome ok_loan_guar_asked
-- or err_loan_guar_* (loan_guar_check), the pledge's id and code, what is
-- still to be asked after it, the guarantor's name.
CREATE OR REPLACE FUNCTION loan_guarantor_add(p_loan bigint, p_applicant bigint, p_who text, p_cents bigint,
                                              p_channel text, p_at timestamptz)
RETURNS TABLE (outcome text, guarantor_id bigint, code text, cover_needed_cents bigint, name text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    l loans%ROWTYPE;
    g bigint;
    o text;
    row loan_guarantors%ROWTYPE;
    hours int;
BEGIN
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    g := loan_guar_who(l.chama_id, p_who);
    o := loan_guar_check(l, p_applicant, g, p_cents);
    IF o IS NOT NULL THEN
        RETURN QUERY SELECT o, NULL::bigint, NULL::text,
                            CASE WHEN l.id IS NOT NULL THEN loan_guar_unasked_cents(l.id) END, NULL::text;
        RETURN;
    END IF;
    hours := loan_guar_hours(l.chama_id);
    LOOP
        BEGIN
            -- a declined or expired guarantor is asked again on their row
            INSERT INTO loan_guarantors AS x (loan_id, guarantor_user_id, pledged_cents, status, code, requested_at,
                                              expires_at, channel)
            VALUES (l.id, g, p_cents, 'pending', approval_new_code(), p_at, p_at + make_interval(hours => hours),
                    p_channel)
            ON CONFLICT ON CONSTRAINT loan_guarantors_loan_guarantor_key DO UPDATE
               SET pledged_cents = EXCLUDED.pledged_cents, status = 'pending', code = EXCLUDED.code,
                   requested_at = EXCLUDED.requested_at, expires_at = EXCLUDED.expires_at,
                   channel = EXCLUDED.channel, responded_at = NULL, released_cents = 0
             WHERE x.status IN ('declined', 'expired', 'cancelled')
            RETURNING * INTO row;
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            -- a code another open request holds: draw again
            NULL;
        END;
    END LOOP;
    PERFORM notify(g, 'loan', 'sms_loan_guar_request',
                   jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = l.chama_id),
                                      'borrower', (SELECT u.full_name FROM users u WHERE u.id = l.user_id),
                                      'amount', format_kes(p_cents), 'loan', format_kes(l.principal_cents),
                                      'code', row.code, 'hours', hours),
                   3, 'loan_guar:' || row.id || ':request:' || row.code, l.chama_id);
    RETURN QUERY SELECT 'ok_loan_guar_asked'::text, row.id, row.code, loan_guar_unasked_cents(l.id),
                        (SELECT u.full_name FROM users u WHERE u.id = g);
END
$$;

-- The applicant hears that a pledge will not come (declined, expired) and
-- that they can name another.
CREATE OR REPLACE FUNCTION loan_guar_tell_applicant(l loans, g loan_guarantors, p_template text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify(l.user_id, 'loan', p_template,
                   jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = l.chama_id),
                                      'guarantor', (SELECT u.full_name FROM users u WHERE u.id = g.guarantor_user_id),
                                      'amount', format_kes(g.pledged_cents),
                                      'need', format_kes(loan_cover_needed_cents(l.id))),
                   4, 'loan_guar:' || g.id || ':' || p_template || ':' || g.code, l.chama_id);
END
$$;

-- A guarantor answers a request by its code (YES/NO by SMS, or USSD
-- Requests for me), after their PIN.  Yes: the pledge becomes a hold, only
-- if their free savings (savings less every other hold) cover it, checked
-- under the lock of their savings account; when the loan's cover is then
-- complete, the requests still open are withdrawn and A's loan_advance
-- takes the loan on.  No: declined, the applicant told they can name
-- another.  Outcome ok_loan_guar_accepted, ok_loan_guar_declined,
-- err_loan_guar_no_request (no request of theirs with that code),
-- err_loan_guar_answered, err_loan_guar_expired, err_loan_guar_loan_gone
-- (the loan is no longer waiting for guarantors), err_loan_guar_not_member,
-- err_loan_guar_short (their free savings do not cover it: it stays open);
-- with the loan, the pledge, its code, the borrower's name, the pledge, the
-- guarantor's free savings (after it) and the cover still needed.
CREATE OR REPLACE FUNCTION loan_guarantor_answer(p_user bigint, p_code text, p_yes boolean, p_channel text,
                                                 p_at timestamptz)
RETURNS TABLE (outcome text, loan_id bigint, guarantor_id bigint, code text, borrower text, pledged_cents bigint,
               free_cents bigint, cover_needed_cents bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    g loan_guarantors%ROWTYPE;
    l loans%ROWTYPE;
    o text;
    other loan_guarantors%ROWTYPE;
BEGIN
    SELECT x.* INTO g FROM loan_guarantors x
     WHERE x.code = upper(btrim(p_code)) AND x.guarantor_user_id = p_user
     ORDER BY (x.status = 'pending') DESC, x.id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'err_loan_guar_no_request'::text, NULL::bigint, NULL::bigint, upper(btrim(p_code)),
                            NULL::text, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- the chama, the loan, then the pledge: the order of A's loan_advance
    -- (which a completed cover calls) and of every writer of a loan
    PERFORM 1 FROM chamas WHERE id = (SELECT y.chama_id FROM loans y WHERE y.id = g.loan_id) FOR UPDATE;
    SELECT * INTO l FROM loans WHERE id = g.loan_id FOR UPDATE;
    SELECT * INTO g FROM loan_guarantors WHERE id = g.id FOR UPDATE;
    IF g.status = 'pending' AND g.expires_at <= p_at THEN
        -- past its time, whether or not the job came by yet
        UPDATE loan_guarantors SET status = 'expired' WHERE id = g.id RETURNING * INTO g;
        PERFORM loan_guar_tell_applicant(l, g, 'sms_loan_guar_expired');
    END IF;
    o := CASE WHEN g.status = 'expired' THEN 'err_loan_guar_expired'
              WHEN g.status <> 'pending' THEN 'err_loan_guar_answered'
              WHEN l.status <> 'applied' THEN 'err_loan_guar_loan_gone'
              WHEN NOT EXISTS (SELECT 1 FROM memberships m WHERE m.chama_id = l.chama_id AND m.user_id = p_user
                                  AND m.status = 'active') THEN 'err_loan_guar_not_member' END;
    IF o IS NULL AND NOT p_yes THEN
        UPDATE loan_guarantors SET status = 'declined', responded_at = p_at WHERE id = g.id RETURNING * INTO g;
        PERFORM loan_guar_tell_applicant(l, g, 'sms_loan_guar_declined');
        o := 'ok_loan_guar_declined';
    ELSIF o IS NULL THEN
        PERFORM loan_guar_lock_savings(l.chama_id, p_user);
        IF member_free_savings_cents(l.chama_id, p_user) < g.pledged_cents THEN
            o := 'err_loan_guar_short';
        ELSE
            UPDATE loan_guarantors SET status = 'accepted', responded_at = p_at WHERE id = g.id RETURNING * INTO g;
            PERFORM notify(l.user_id, 'loan', 'sms_loan_guar_accepted',
                           jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = l.chama_id),
                                              'guarantor', (SELECT u.full_name FROM users u WHERE u.id = p_user),
                                              'amount', format_kes(g.pledged_cents),
                                              'need', format_kes(loan_cover_needed_cents(l.id))),
                           4, 'loan_guar:' || g.id || ':accepted:' || g.code, l.chama_id);
            o := 'ok_loan_guar_accepted';
            IF loan_cover_complete(l.id) THEN
                -- the requests still open are not needed any more
                FOR other IN SELECT * FROM loan_guarantors x WHERE x.loan_id = l.id AND x.status = 'pending'
                               ORDER BY x.id FOR UPDATE LOOP
                    UPDATE loan_guarantors SET status = 'cancelled' WHERE id = other.id;
                    PERFORM notify(other.guarantor_user_id, 'loan', 'sms_loan_guar_withdrawn',
                                   jsonb_build_object('chama', (SELECT c.name FROM chamas c WHERE c.id = l.chama_id),
                                                      'borrower', (SELECT u.full_name FROM users u
                                                                    WHERE u.id = l.user_id),
                                                      'code', other.code),
                                   5, 'loan_guar:' || other.id || ':withdrawn:' || other.code, l.chama_id);
                END LOOP;
                PERFORM loan_advance(l.id, p_at);
            END IF;
        END IF;
    END IF;
    RETURN QUERY SELECT o, l.id, g.id, g.code, (SELECT u.full_name FROM users u WHERE u.id = l.user_id),
                        g.pledged_cents, member_free_savings_cents(l.chama_id, p_user),
                        loan_cover_needed_cents(l.id);
END
$$;

-- The job: pending requests past their expiry (loan_guarantor_hours after
-- they were asked) expire, each applicant told they can name another.
-- Rows an answer holds are left for the next run (SKIP LOCKED: the answer
-- sees the expiry itself).  Returns the requests expired.
CREATE OR REPLACE FUNCTION loan_guarantors_expire(p_at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    g loan_guarantors%ROWTYPE;
    l loans%ROWTYPE;
BEGIN
    PERFORM audit_context('system', NULL, 'job:loan_guarantors', NULL);
    FOR g IN SELECT * FROM loan_guarantors WHERE status = 'pending' AND expires_at <= p_at
              ORDER BY expires_at, id FOR UPDATE SKIP LOCKED LOOP
        UPDATE loan_guarantors SET status = 'expired' WHERE id = g.id RETURNING * INTO g;
        SELECT * INTO l FROM loans WHERE id = g.loan_id;
        IF l.status = 'applied' THEN
            PERFORM loan_guar_tell_applicant(l, g, 'sms_loan_guar_expired');
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The released total the holds of loan l should show when c of its
-- principal counts as repaid: floor(c x T / P), all of T at c = P.
CREATE OR REPLACE FUNCTION loan_holds_target(p_principal bigint, p_total bigint, p_counted bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_counted >= p_principal THEN p_total
                ELSE floor((p_counted::numeric * p_total) / p_principal)::bigint END
$$;

-- Moves the released total of the loan's pledges toward the target for c
-- (the loan row locked by the caller).  Returns the cents released
-- (negative: held again).
CREATE OR REPLACE FUNCTION loan_holds_move(l loans, p_counted bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    released bigint;
    want bigint;
    moved bigint := 0;
    step bigint;
    g loan_guarantors%ROWTYPE;
BEGIN
    SELECT coalesce(sum(x.pledged_cents), 0), coalesce(sum(x.released_cents), 0) INTO total, released
      FROM loan_guarantors x WHERE x.loan_id = l.id AND x.status IN ('accepted', 'released', 'called');
    UPDATE loans SET holds_principal_cents = p_counted WHERE id = l.id;
    want := loan_holds_target(l.principal_cents, total, p_counted) - released;
    IF want > 0 THEN
        -- release: the external guarantors first, oldest first, then self
        FOR g IN SELECT * FROM loan_guarantors x WHERE x.loan_id = l.id AND x.status = 'accepted'
                  ORDER BY (x.guarantor_user_id = l.user_id), x.id FOR UPDATE LOOP
            step := least(want - moved, g.pledged_cents - g.released_cents - g.called_cents);
            CONTINUE WHEN step <= 0;
            UPDATE loan_guarantors
               SET released_cents = released_cents + step,
                   status = CASE WHEN released_cents + step + called_cents = pledged_cents THEN 'released'
                                 ELSE status END
             WHERE id = g.id;
            moved := moved + step;
        END LOOP;
        RETURN moved;
    ELSIF want < 0 THEN
        -- hold again: self first, then the external guarantors, newest
        -- first; never above what a guarantor has free (their row, when
        -- released, holds nothing now, so free savings are what is left)
        FOR g IN SELECT * FROM loan_guarantors x WHERE x.loan_id = l.id AND x.status IN ('accepted', 'released')
                    AND x.released_cents > 0
                  ORDER BY (x.guarantor_user_id = l.user_id) DESC, x.id DESC FOR UPDATE LOOP
            PERFORM loan_guar_lock_savings(l.chama_id, g.guarantor_user_id);
            step := least(-want - moved, g.released_cents,
                          greatest(member_free_savings_cents(l.chama_id, g.guarantor_user_id), 0));
            CONTINUE WHEN step <= 0;
            UPDATE loan_guarantors SET released_cents = released_cents - step, status = 'accepted' WHERE id = g.id;
            moved := moved + step;
        END LOOP;
        RETURN -moved;
    END IF;
    RETURN 0;
END
$$;

-- After a repayment whose principal part is p_principal_cents (D's
-- loan_repay calls it, the loan locked): the holds released pro rata to
-- the principal repaid, the last cent of principal releasing all.  Returns
-- the cents released.
CREATE OR REPLACE FUNCTION loan_holds_release(p_loan bigint, p_principal_cents bigint, p_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
BEGIN
    IF p_principal_cents IS NULL OR p_principal_cents < 0 THEN
        RAISE EXCEPTION 'loan_holds_release: principal % is not a repayment', p_principal_cents
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan_holds_release: no loan %', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    RETURN loan_holds_move(l, least(l.principal_cents, l.holds_principal_cents + p_principal_cents));
END
$$;

-- A repayment reversed (D's loan_repayment_reverse): its principal part no
-- longer counts, and what it released is held again as far as each
-- guarantor's free savings allow.  Returns the cents held again.
CREATE OR REPLACE FUNCTION loan_holds_rehold(p_loan bigint, p_principal_cents bigint, p_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
BEGIN
    IF p_principal_cents IS NULL OR p_principal_cents < 0 THEN
        RAISE EXCEPTION 'loan_holds_rehold: principal % is not a repayment', p_principal_cents
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan_holds_rehold: no loan %', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    RETURN -loan_holds_move(l, greatest(0, l.holds_principal_cents - p_principal_cents));
END
$$;

-- The loan's life ended: 'released' (closed, written off: every hold left
-- goes back to its guarantor, each told by SMS) or 'cancelled' (rejected,
-- cancelled: the loan never went out, so the holds were never used).
-- Requests still open are withdrawn either way.  Returns the pledges ended.
CREATE OR REPLACE FUNCTION loan_holds_end(p_loan bigint, p_status text, p_at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    l loans%ROWTYPE;
    g loan_guarantors%ROWTYPE;
    n integer := 0;
    cname text;
    bname text;
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('released', 'cancelled') THEN
        RAISE EXCEPTION 'loan_holds_end: % is not released or cancelled', p_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO l FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'loan_holds_end: no loan %', p_loan USING ERRCODE = 'no_data_found';
    END IF;
    SELECT name INTO cname FROM chamas WHERE id = l.chama_id;
    SELECT full_name INTO bname FROM users WHERE id = l.user_id;
    FOR g IN SELECT * FROM loan_guarantors x WHERE x.loan_id = l.id AND x.status IN ('pending', 'accepted')
              ORDER BY x.id FOR UPDATE LOOP
        IF g.status = 'pending' THEN
            UPDATE loan_guarantors SET status = 'cancelled' WHERE id = g.id;
            PERFORM notify(g.guarantor_user_id, 'loan', 'sms_loan_guar_withdrawn',
                           jsonb_build_object('chama', cname, 'borrower', bname, 'code', g.code),
                           5, 'loan_guar:' || g.id || ':withdrawn:' || g.code, l.chama_id);
        ELSIF p_status = 'released' THEN
            UPDATE loan_guarantors SET status = 'released', released_cents = pledged_cents - called_cents
             WHERE id = g.id;
            IF g.guarantor_user_id <> l.user_id THEN
                PERFORM notify(g.guarantor_user_id, 'loan', 'sms_loan_guar_released',
                               jsonb_build_object('chama', cname, 'borrower', bname,
                                                  'amount', format_kes(g.pledged_cents - g.called_cents)),
                               5, 'loan_guar:' || g.id || ':released', l.chama_id);
            END IF;
        ELSE
            UPDATE loan_guarantors SET status = 'cancelled' WHERE id = g.id;
            IF g.guarantor_user_id <> l.user_id THEN
                PERFORM notify(g.guarantor_user_id, 'loan', 'sms_loan_guar_cancelled',
                               jsonb_build_object('chama', cname, 'borrower', bname,
                                                  'amount', format_kes(g.pledged_cents)),
                               5, 'loan_guar:' || g.id || ':cancelled', l.chama_id);
            END IF;
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- ---- what the channels show ---------------------------------------------

-- The borrower's record a guarantor sees before answering: savings, loans
-- repaid (closed), loans open, loan arrears (instalments past due, unpaid),
-- at p_at in time zone p_tz.
CREATE OR REPLACE FUNCTION loan_guar_record(p_chama bigint, p_user bigint, p_at timestamptz, p_tz text)
RETURNS TABLE (savings_cents bigint, repaid_count int, open_count int, arrears_cents bigint)
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT a.balance_cents FROM ledger_accounts a WHERE a.chama_id = p_chama
                        AND a.kind = 'member_savings' AND a.user_id = p_user), 0)::bigint,
           (SELECT count(*) FROM loans l WHERE l.chama_id = p_chama AND l.user_id = p_user
               AND l.status = 'closed')::int,
           (SELECT count(*) FROM loans l WHERE l.chama_id = p_chama AND l.user_id = p_user
               AND l.status IN ('disbursed', 'active', 'defaulted'))::int,
           coalesce((SELECT sum(s.principal_due_cents + s.interest_due_cents + s.penalty_due_cents + s.fee_due_cents
                                - s.principal_paid_cents - s.interest_paid_cents - s.penalty_paid_cents
                                - s.fee_paid_cents)
                       FROM loan_schedules s JOIN loans l ON l.id = s.loan_id
                      WHERE l.chama_id = p_chama AND l.user_id = p_user
                        AND l.status IN ('disbursed', 'active', 'defaulted')
                        AND s.due_date < (p_at AT TIME ZONE p_tz)::date), 0)::bigint
$$;

-- What a member has guaranteed in the chama (others' loans, not their own
-- cover): pledged on loans that went or may go out, released, called, and
-- at risk (held now), and the requests waiting for their answer.
CREATE OR REPLACE FUNCTION loan_guar_summary(p_chama bigint, p_user bigint)
RETURNS TABLE (loan_count int, pledged_cents bigint, released_cents bigint, called_cents bigint, held_cents bigint,
               pending int)
LANGUAGE sql STABLE AS $$
    SELECT count(*) FILTER (WHERE g.status IN ('accepted', 'released', 'called'))::int,
           coalesce(sum(g.pledged_cents) FILTER (WHERE g.status IN ('accepted', 'released', 'called')), 0)::bigint,
           coalesce(sum(g.released_cents) FILTER (WHERE g.status IN ('accepted', 'released', 'called')), 0)::bigint,
           coalesce(sum(g.called_cents) FILTER (WHERE g.status IN ('accepted', 'released', 'called')), 0)::bigint,
           coalesce(sum(loan_guar_at_risk(g, l)), 0)::bigint,
           count(*) FILTER (WHERE g.status = 'pending')::int
      FROM loan_guarantors g JOIN loans l ON l.id = g.loan_id
     WHERE g.guarantor_user_id = p_user AND l.chama_id = p_chama AND l.user_id <> p_user
$$;
