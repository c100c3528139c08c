-- schema/60_notify.sql: notify: the one way a message enters the outbox, the
-- outbox wake-up and claim guard, and the reminder job.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- A message is a template key (an SMS template of the menus, "sms" section)
-- and its variables; the sender renders it in the recipient's language when
-- it sends (so a language changed meanwhile applies) and stores the text it
-- sent in body.  No message text is built in SQL.
--
-- notify(): to a user (the recipient is their phone).  notify_phone(): to a
-- number that may not be a user yet (a sign-up code, an invitation, an SMS
-- reply to a stranger); when it is a live user's number the row is theirs.
-- Idempotent: the key names the event, and the same key is the same row
-- (the first call's content stands); both return that row's id.
--
-- Rolling upgrade: a daemon older than 018 passes finished texts where the
-- schema functions now take a template key; a p_template that is not a key
-- (sms_[a-z0-9_]) is such a text and is stored as the body, sent as is.
CREATE OR REPLACE FUNCTION outbox_put(p_user bigint, p_phone text, p_lang text, p_kind text, p_template text,
                                      p_vars jsonb, p_priority int, p_key text, p_chama bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    legacy boolean := p_template !~ '^sms_[a-z0-9_]{1,60}$';
BEGIN
    INSERT INTO notifications (user_id, chama_id, channel, kind, recipient, template, vars, body, language, priority,
                               idempotency_key)
    VALUES (p_user, p_chama, 'sms', p_kind, p_phone, CASE WHEN NOT legacy THEN p_template END,
            CASE WHEN NOT legacy THEN coalesce(jsonb_strip_nulls(p_vars), '{}') END,
            CASE WHEN legacy THEN left(p_template, 2000) END, coalesce(p_lang, 'en'), p_priority, p_key)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO n;
    IF n IS NULL THEN
        SELECT id INTO n FROM notifications WHERE idempotency_key = p_key;
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION notify(p_user bigint, p_kind text, p_template text, p_vars jsonb, p_priority int,
                                  p_key text, p_chama bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    u users%ROWTYPE;
BEGIN
    SELECT * INTO u FROM users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'notify: no user %', p_user USING ERRCODE = 'no_data_found';
    END IF;
    RETURN outbox_put(u.id, u.phone, u.preferred_language, p_kind, p_template, p_vars, p_priority, p_key, p_chama);
END
$$;

CREATE OR REPLACE FUNCTION notify_phone(p_phone text, p_lang text, p_kind text, p_template text, p_vars jsonb,
                                        p_priority int, p_key text, p_chama bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    u bigint;
BEGIN
    SELECT id INTO u FROM users WHERE phone = p_phone AND deleted_at IS NULL;
    IF FOUND THEN
        RETURN notify(u, p_kind, p_template, p_vars, p_priority, p_key, p_chama);
    END IF;
    RETURN outbox_put(NULL, p_phone, p_lang, p_kind, p_template, p_vars, p_priority, p_key, p_chama);
END
$$;

-- 018_notify: a sender older than 018 reads body only, and would send a row
-- that holds a template (body NULL until sent) as an empty message: its claim
-- (status to 'sending', attempts + 1) skips such rows.  chamad's claim sets
-- chamad.renders; so does any tool that renders templates.
CREATE OR REPLACE FUNCTION notifications_claim_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('chamad.renders', true), '') <> 'on' THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER notifications_claim_guard BEFORE UPDATE ON notifications
    FOR EACH ROW WHEN (NEW.status = 'sending' AND NEW.attempts > OLD.attempts AND NEW.template IS NOT NULL
                       AND NEW.body IS NULL)
    EXECUTE FUNCTION notifications_claim_guard();

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
-- run holds the lock.  The messages are sms_due_reminder and sms_arrears
-- with {chama}, {amount} and {date}.  (Until 018 it took the texts.)
DROP FUNCTION IF EXISTS send_reminders(timestamptz, text, integer, text, text, text, text);
CREATE OR REPLACE FUNCTION send_reminders(p_at timestamptz, p_tz text, p_lead_days int)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
    today date := (p_at AT TIME ZONE p_tz)::date;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727100020) THEN
        RETURN -1;
    END IF;
    PERFORM audit_context('system', NULL, 'job:reminders', NULL);
    FOR r IN
        WITH s AS (
            SELECT m.user_id, m.chama_id, c.name, c.contribution_amount_cents, a.*
              FROM memberships m
              JOIN chamas c ON c.id = m.chama_id AND c.deleted_at IS NULL AND c.status = 'active'
              JOIN users u ON u.id = m.user_id AND u.deleted_at IS NULL
              CROSS JOIN LATERAL member_arrears(m.user_id, m.chama_id, p_at, p_tz) a
             WHERE m.status = 'active'),
        due AS (
            SELECT user_id, chama_id, 'due_reminder' AS kind, 'sms_due_reminder' AS template, name,
                   contribution_amount_cents AS cents, next_due,
                   'reminder:' || chama_id || ':' || user_id || ':' || next_due AS key
              FROM s WHERE next_due - today = p_lead_days
            UNION ALL
            SELECT user_id, chama_id, 'arrears', 'sms_arrears', name, arrears_cents, next_due,
                   'arrears:' || chama_id || ':' || user_id || ':' || period_start
              FROM s WHERE arrears_cents > 0 AND period_start IS NOT NULL)
        SELECT * FROM due WHERE NOT EXISTS (SELECT 1 FROM notifications x WHERE x.idempotency_key = due.key)
    LOOP
        PERFORM notify(r.user_id, r.kind, r.template,
                       jsonb_build_object('chama', r.name, 'amount', format_kes(r.cents),
                                          'date', to_char(r.next_due, 'DD Mon')),
                       7, r.key, r.chama_id);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
