-- schema/60_notify.sql: notify: the outbox wake-up and the reminder job.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- 016_urgent_notify: chamad's own writes stop sending a NOTIFY per SMS.
--
-- A NOTIFY makes PostgreSQL serialise the commits of every transaction
-- that sends one (a database-wide lock from the commit until the queue is
-- written), so the receipt SMS queued by each money posting made every
-- posting in the system wait on every other.  Now a row queued by chamad
-- (its statements set chamad.channel) wakes every daemon only when someone
-- waits for it this minute (priority <= 2: one-time codes, SMS replies,
-- lock-out alerts); for the rest the daemon that wrote it wakes its own
-- sender (app_outbox_queued), and [sms] poll_ms brings the others.  A row
-- written by anything else (an operator, psql, a tool) still NOTIFYs.
CREATE OR REPLACE FUNCTION notifications_wake_senders() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.priority <= 2 OR coalesce(current_setting('chamad.channel', true), '') = '' THEN
        PERFORM pg_notify('chamad_sms', '');
    END IF;
    RETURN NULL;
END
$$;

-- One run of the reminder job at p_at: the day before a due date, a
-- reminder; a member behind in the current period, one arrears notice.
-- Idempotency keys name the member and the period, so a rerun (or a
-- second daemon) queues nothing twice; the advisory lock keeps two runs
-- from working at once.  Returns the messages queued, or -1 when another
-- run holds the lock.  Texts carry {chama}, {amount} and {date}.
CREATE OR REPLACE FUNCTION send_reminders(p_at timestamptz, p_tz text, p_lead_days int,
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
