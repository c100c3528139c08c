-- 008_ussd: what the USSD engine adds to the schema.
--   * audit triggers on the rows a member changes from a phone (sign-up
--     progress, join requests, invite codes);
--   * ussd_session_events: the aggregators' end-of-session notifications;
--   * chama_create(): a chama, its chairperson and its first invite code
--     in one call, tagged for the audit trail.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['signup_sessions', 'join_requests', 'invites'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION audit_row_change()', t || '_audit', t);
    END LOOP;
END
$$;

-- One row per session the aggregator reports as ended.  The input path is
-- not kept: it holds PINs.
CREATE TABLE ussd_session_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregator     text NOT NULL CHECK (aggregator ~ '^[a-z][a-z0-9_]{0,31}$'),
    session_id     text NOT NULL CHECK (length(session_id) BETWEEN 1 AND 64),
    phone          text CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    service_code   text CHECK (length(service_code) <= 64),
    network_code   text CHECK (length(network_code) <= 32),
    status         text NOT NULL CHECK (status IN ('success', 'incomplete', 'failed')),
    duration_ms    bigint CHECK (duration_ms >= 0),
    hops           integer CHECK (hops >= 0),
    last_response  text CHECK (length(last_response) <= 400),
    error_message  text CHECK (length(error_message) <= 400),
    cost           text CHECK (length(cost) <= 32),
    received_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ussd_session_events_session_key UNIQUE (aggregator, session_id)
);
CREATE INDEX ussd_session_events_phone_idx ON ussd_session_events (phone, received_at DESC);
CREATE INDEX ussd_session_events_received_at_brin ON ussd_session_events USING brin (received_at);

CREATE FUNCTION chama_create(p_channel text, p_msisdn text, p_request_id text, p_actor bigint,
                             p_name text, p_type text, p_amount_cents bigint, p_frequency text, p_code text)
RETURNS TABLE (chama_id bigint, name text, role text, invite_code text)
LANGUAGE plpgsql AS $$
DECLARE
    c bigint;
BEGIN
    PERFORM set_config('chamad.channel', p_channel, true), set_config('chamad.msisdn', p_msisdn, true),
            set_config('chamad.request_id', p_request_id, true),
            set_config('chamad.actor_user_id', p_actor::text, true);
    INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency, created_by_user_id)
    VALUES (p_name, p_type, p_amount_cents, p_frequency, p_actor)
    RETURNING id INTO c;
    INSERT INTO memberships (user_id, chama_id, role) VALUES (p_actor, c, 'chairperson');
    INSERT INTO invites (chama_id, created_by_user_id, code, max_uses, expires_at)
    VALUES (c, p_actor, p_code, 50, now() + interval '30 days');
    RETURN QUERY SELECT c, p_name, 'chairperson'::text, p_code;
END
$$;
