-- 009_sms: the SMS rail.
--   * notifications becomes the SMS outbox: a sender claims due rows with
--     FOR UPDATE SKIP LOCKED under a lease (claimed_by, lease_until), stores
--     what the provider said, and delivery reports move the row on;
--   * a NOTIFY on chamad_sms wakes the senders when an SMS row is queued
--     (one per transaction: PostgreSQL folds identical notifications);
--   * sms_inbound: every message received, once per provider id, with any
--     PIN masked.

ALTER TABLE notifications
    ADD COLUMN coding          text CHECK (coding IN ('gsm7', 'ucs2')),
    ADD COLUMN claimed_by      text CHECK (length(claimed_by) <= 64),
    ADD COLUMN lease_until     timestamptz,
    ADD COLUMN provider_cost   text CHECK (length(provider_cost) <= 32),
    ADD COLUMN delivery_status text CHECK (length(delivery_status) <= 32),
    ADD COLUMN failure_reason  text CHECK (length(failure_reason) <= 200);
COMMENT ON COLUMN notifications.lease_until IS 'While status = sending: the claim expires then, and another sender may take the row (at-least-once).';
-- the claim query also takes rows whose lease ran out
CREATE INDEX notifications_lease_idx ON notifications (lease_until) WHERE status = 'sending';

CREATE FUNCTION notifications_wake_senders() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamad_sms', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER notifications_wake_senders AFTER INSERT ON notifications
    FOR EACH ROW WHEN (NEW.channel = 'sms') EXECUTE FUNCTION notifications_wake_senders();

CREATE TABLE sms_inbound (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider            text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_]{0,31}$'),
    provider_message_id text NOT NULL CHECK (length(provider_message_id) BETWEEN 1 AND 128),
    sender              text NOT NULL CHECK (length(sender) BETWEEN 1 AND 32),
    recipient           text CHECK (length(recipient) <= 32),
    text_masked         text NOT NULL CHECK (length(text_masked) <= 1000),
    command             text CHECK (command ~ '^[a-z_]{1,16}$'),
    user_id             bigint REFERENCES users (id) ON DELETE RESTRICT,
    received_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sms_inbound_provider_message_key UNIQUE (provider, provider_message_id)
);
COMMENT ON COLUMN sms_inbound.text_masked IS 'The message as received, with a PIN (a 4-digit word after the command) replaced by ****.';
CREATE INDEX sms_inbound_user_id_idx ON sms_inbound (user_id, received_at DESC);
CREATE INDEX sms_inbound_sender_idx ON sms_inbound (sender, received_at DESC);
