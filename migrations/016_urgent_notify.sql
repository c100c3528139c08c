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
