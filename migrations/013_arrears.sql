-- 013_arrears: what a member owes against the chama's contribution
-- schedule, and the reminders the jobs send (once per member per period).
--
-- Due dates start on the day the member joined and repeat every period:
-- weekly (7 days), biweekly (14), monthly (the same day each month, or the
-- month's last day), custom (constitution contribution_period_days, else
-- 30).  Expected = due dates so far x the contribution amount; paid =
-- confirmed savings contributions; arrears = what is missing.

CREATE FUNCTION format_kes(cents bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(cents / 100, 'FM999,999,999,990') ||
           CASE WHEN cents % 100 <> 0 THEN '.' || lpad((abs(cents) % 100)::text, 2, '0') ELSE '' END
$$;

-- The n-th due date (n >= 0) of a schedule starting on `first`.
CREATE FUNCTION due_date(first date, frequency text, period_days int, n int) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE frequency
        WHEN 'monthly' THEN (first + make_interval(months => n))::date
        WHEN 'weekly' THEN first + 7 * n
        WHEN 'biweekly' THEN first + 14 * n
        ELSE first + coalesce(period_days, 30) * n END
$$;

CREATE FUNCTION member_arrears(p_user bigint, p_chama bigint, p_at timestamptz, p_tz text)
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

-- One run of the reminder job at p_at: the day before a due date, a
-- reminder; a member behind in the current period, one arrears notice.
-- Idempotency keys name the member and the period, so a rerun (or a
-- second daemon) queues nothing twice; the advisory lock keeps two runs
-- from working at once.  Returns the messages queued, or -1 when another
-- run holds the lock.  Texts carry {chama}, {amount} and {date}.
CREATE FUNCTION send_reminders(p_at timestamptz, p_tz text, p_lead_days int,
                               p_due_en text, p_due_sw text, p_late_en text, p_late_sw text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    added integer;
    today date := (p_at AT TIME ZONE p_tz)::date;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100020) THEN
        RETURN -1;
    END IF;
    PERFORM audit_context('system', NULL, 'job:reminders', NULL);
    WITH s AS (
        SELECT m.user_id, m.chama_id, c.name, c.contribution_amount_cents, u.phone, u.preferred_language, a.*
          FROM memberships m
          JOIN chamas c ON c.id = m.chama_id AND c.deleted_at IS NULL AND c.status = 'active'
          JOIN users u ON u.id = m.user_id AND u.deleted_at IS NULL
          CROSS JOIN LATERAL member_arrears(m.user_id, m.chama_id, p_at, p_tz) a
         WHERE m.status = 'active')
    INSERT INTO notifications (user_id, chama_id, channel, kind, recipient, body, language, priority, idempotency_key)
    SELECT user_id, chama_id, 'sms', 'due_reminder', phone,
           replace(replace(replace(CASE WHEN preferred_language = 'sw' THEN p_due_sw ELSE p_due_en END,
                                   '{chama}', name), '{amount}', format_kes(contribution_amount_cents)),
                   '{date}', to_char(next_due, 'DD Mon')),
           preferred_language, 7, 'reminder:' || chama_id || ':' || user_id || ':' || next_due
      FROM s WHERE next_due - today = p_lead_days
    UNION ALL
    SELECT user_id, chama_id, 'sms', 'arrears', phone,
           replace(replace(replace(CASE WHEN preferred_language = 'sw' THEN p_late_sw ELSE p_late_en END,
                                   '{chama}', name), '{amount}', format_kes(arrears_cents)),
                   '{date}', to_char(next_due, 'DD Mon')),
           preferred_language, 7, 'arrears:' || chama_id || ':' || user_id || ':' || period_start
      FROM s WHERE arrears_cents > 0 AND period_start IS NOT NULL
    ON CONFLICT (idempotency_key) DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    n := n + added;
    RETURN n;
END
$$;
