-- 005_management: meetings, proposals and their votes, notifications,
-- join requests, invites, refresh tokens and sign-up sessions.
-- None of these hold money, but governance records (meetings, proposals,
-- votes, decisions on join requests) are history too: RESTRICT.  Only
-- credentials (refresh tokens, sign-up sessions) go with a hard-deleted user.

CREATE TABLE meetings (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id           bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    title              text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    agenda             text,
    location           text,
    scheduled_at       timestamptz NOT NULL,
    duration_minutes   integer CHECK (duration_minutes BETWEEN 1 AND 1440),
    status             text NOT NULL DEFAULT 'scheduled'
                       CHECK (status IN ('scheduled', 'in_progress', 'held', 'cancelled', 'postponed')),
    minutes            text,
    attendance_count   integer CHECK (attendance_count >= 0),
    created_by_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    held_at            timestamptz,
    cancelled_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- "next meeting of my chama" and reminders due in a time window
CREATE INDEX meetings_chama_id_idx ON meetings (chama_id, scheduled_at DESC);
CREATE INDEX meetings_upcoming_idx ON meetings (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX meetings_created_by_user_id_idx ON meetings (created_by_user_id);
CREATE TRIGGER meetings_set_updated_at BEFORE UPDATE ON meetings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE proposals (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id           bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    proposer_user_id   bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    meeting_id         bigint REFERENCES meetings (id) ON DELETE RESTRICT,
    kind               text NOT NULL CHECK (kind IN ('constitution_change', 'loan_approval', 'expense', 'investment',
                                                    'admit_member', 'remove_member', 'elect_official', 'dissolve',
                                                    'other')),
    title              text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    description        text,
    -- what the proposal would do when passed, e.g. {"loan_id": 12} or
    -- {"constitution": {"loan_interest_rate_bp": 800}}
    payload            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    amount_cents       bigint CHECK (amount_cents > 0),
    -- share of active members that must vote, and share of votes cast that
    -- must be "yes", both in percent (the constitution's values at creation)
    quorum_percent     integer NOT NULL DEFAULT 50 CHECK (quorum_percent BETWEEN 1 AND 100),
    threshold_percent  integer NOT NULL DEFAULT 50 CHECK (threshold_percent BETWEEN 1 AND 100),
    eligible_voters    integer NOT NULL CHECK (eligible_voters > 0),
    opens_at           timestamptz NOT NULL DEFAULT now(),
    closes_at          timestamptz NOT NULL,
    status             text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('draft', 'open', 'passed', 'rejected', 'no_quorum', 'cancelled', 'executed')),
    decided_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT proposals_window_check CHECK (closes_at > opens_at)
);
CREATE INDEX proposals_chama_id_idx ON proposals (chama_id, status, closes_at);
CREATE INDEX proposals_proposer_user_id_idx ON proposals (proposer_user_id);
CREATE INDEX proposals_meeting_id_idx ON proposals (meeting_id);
-- the closing job: open proposals whose window has ended
CREATE INDEX proposals_open_closing_idx ON proposals (closes_at) WHERE status = 'open';
CREATE INDEX proposals_payload_gin ON proposals USING gin (payload jsonb_path_ops);
CREATE TRIGGER proposals_set_updated_at BEFORE UPDATE ON proposals
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE proposal_votes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    proposal_id bigint NOT NULL REFERENCES proposals (id) ON DELETE RESTRICT,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    vote        text NOT NULL CHECK (vote IN ('yes', 'no', 'abstain')),
    channel     text NOT NULL DEFAULT 'ussd' CHECK (channel IN ('ussd', 'sms', 'app', 'meeting')),
    cast_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT proposal_votes_proposal_user_key UNIQUE (proposal_id, user_id)
);
CREATE INDEX proposal_votes_user_id_idx ON proposal_votes (user_id);

-- A vote is cast once, while the proposal is open, by an active member of
-- its chama; it is never changed or withdrawn afterwards.
CREATE FUNCTION proposal_votes_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p proposals%ROWTYPE;
BEGIN
    SELECT * INTO p FROM proposals WHERE id = NEW.proposal_id;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key reports it
    END IF;
    IF p.status <> 'open' OR NEW.cast_at < p.opens_at OR NEW.cast_at >= p.closes_at THEN
        RAISE EXCEPTION 'proposal % is not open for voting', p.id USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memberships m
                    WHERE m.chama_id = p.chama_id AND m.user_id = NEW.user_id AND m.status = 'active') THEN
        RAISE EXCEPTION 'user % is not an active member of chama % and cannot vote', NEW.user_id, p.chama_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER proposal_votes_check BEFORE INSERT ON proposal_votes
    FOR EACH ROW EXECUTE FUNCTION proposal_votes_check();
CREATE TRIGGER proposal_votes_immutable BEFORE UPDATE OR DELETE ON proposal_votes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Messages to people: SMS (the outbox the SMS rail sends from), in-app and
-- e-mail.  idempotency_key names the event (e.g. 'contribution:42:receipt')
-- so a retried event cannot queue a second message.
CREATE TABLE notifications (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             bigint REFERENCES users (id) ON DELETE RESTRICT,
    chama_id            bigint REFERENCES chamas (id) ON DELETE RESTRICT,
    channel             text NOT NULL DEFAULT 'sms' CHECK (channel IN ('sms', 'in_app', 'email')),
    kind                text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    recipient           text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 320),
    body                text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    language            text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'sw')),
    -- lower runs first: one-time codes 0, receipts 5, bulk reminders 9
    priority            smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'retry', 'failed',
                                          'undeliverable', 'cancelled', 'read')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    provider            text,
    provider_message_id text,
    segments            smallint CHECK (segments > 0),
    cost_cents          bigint CHECK (cost_cents >= 0),
    last_error          text,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    read_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_idempotency_key_key UNIQUE (idempotency_key)
);
CREATE INDEX notifications_user_id_idx ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_chama_id_idx ON notifications (chama_id, created_at DESC);
-- the sender's claim query: due rows by priority then age
CREATE INDEX notifications_due_idx ON notifications (priority, next_attempt_at)
    WHERE status IN ('queued', 'retry');
CREATE UNIQUE INDEX notifications_provider_message_key ON notifications (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE TRIGGER notifications_set_updated_at BEFORE UPDATE ON notifications
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE join_requests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id            bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    invite_id           bigint,  -- references invites, added below
    message             text CHECK (length(message) <= 500),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled', 'expired')),
    decided_by_user_id  bigint REFERENCES users (id) ON DELETE RESTRICT,
    decided_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT join_requests_decision_check CHECK (
        (status IN ('approved', 'rejected')) = (decided_by_user_id IS NOT NULL AND decided_at IS NOT NULL)),
    CONSTRAINT join_requests_not_self_decided CHECK (decided_by_user_id <> user_id)
);
-- one open request per person and chama; old decided ones stay as history
CREATE UNIQUE INDEX join_requests_one_pending ON join_requests (chama_id, user_id) WHERE status = 'pending';
CREATE INDEX join_requests_chama_id_idx ON join_requests (chama_id, status, created_at);
CREATE INDEX join_requests_user_id_idx ON join_requests (user_id);
CREATE INDEX join_requests_decided_by_user_id_idx ON join_requests (decided_by_user_id);
CREATE INDEX join_requests_invite_id_idx ON join_requests (invite_id);
CREATE TRIGGER join_requests_set_updated_at BEFORE UPDATE ON join_requests
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE invites (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id           bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    created_by_user_id bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- short enough to type on a feature phone: 6 to 12 capitals and digits
    code               text NOT NULL CHECK (code ~ '^[A-Z0-9]{6,12}$'),
    invitee_phone      text CHECK (invitee_phone ~ '^\+[1-9][0-9]{7,14}$'),
    role               text NOT NULL DEFAULT 'member' CHECK (role IN ('chairperson', 'treasurer', 'secretary', 'member')),
    max_uses           integer NOT NULL DEFAULT 1 CHECK (max_uses BETWEEN 1 AND 1000),
    uses               integer NOT NULL DEFAULT 0 CHECK (uses >= 0),
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invites_code_key UNIQUE (code),
    CONSTRAINT invites_uses_within_max CHECK (uses <= max_uses),
    CONSTRAINT invites_expiry_check CHECK (expires_at > created_at)
);
CREATE INDEX invites_chama_id_idx ON invites (chama_id, expires_at);
CREATE INDEX invites_created_by_user_id_idx ON invites (created_by_user_id);
CREATE INDEX invites_invitee_phone_idx ON invites (invitee_phone) WHERE invitee_phone IS NOT NULL AND revoked_at IS NULL;
CREATE TRIGGER invites_set_updated_at BEFORE UPDATE ON invites
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE join_requests ADD CONSTRAINT join_requests_invite_id_fkey
    FOREIGN KEY (invite_id) REFERENCES invites (id) ON DELETE RESTRICT;

-- Only a hash of the token is stored; a stolen database dump holds no
-- usable token.  Tokens rotate: replaced_by_id chains a family so reuse of
-- an old token can revoke the whole family.
CREATE TABLE refresh_tokens (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash     bytea NOT NULL CHECK (length(token_hash) = 32),
    family_id      uuid NOT NULL,
    replaced_by_id bigint REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    device         text CHECK (length(device) <= 200),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT refresh_tokens_expiry_check CHECK (expires_at > created_at)
);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_replaced_by_id_idx ON refresh_tokens (replaced_by_id);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);

-- A phone that is signing up: the one-time code (hashed), how often it was
-- tried and sent, and the details collected before the user row exists.
CREATE TABLE signup_sessions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone          text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    channel        text NOT NULL DEFAULT 'ussd' CHECK (channel IN ('ussd', 'sms', 'app')),
    otp_hash       text,
    otp_attempts   integer NOT NULL DEFAULT 0 CHECK (otp_attempts >= 0),
    otp_sends      integer NOT NULL DEFAULT 0 CHECK (otp_sends >= 0),
    full_name      text CHECK (length(btrim(full_name)) BETWEEN 1 AND 200),
    language       text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'sw')),
    invite_id      bigint REFERENCES invites (id) ON DELETE SET NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'verified', 'completed', 'expired', 'locked')),
    user_id        bigint REFERENCES users (id) ON DELETE CASCADE,
    expires_at     timestamptz NOT NULL,
    verified_at    timestamptz,
    completed_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signup_sessions_completed_has_user CHECK (status <> 'completed' OR user_id IS NOT NULL)
);
-- at most one live sign-up per phone
CREATE UNIQUE INDEX signup_sessions_one_live_per_phone ON signup_sessions (phone)
    WHERE status IN ('pending', 'verified');
CREATE INDEX signup_sessions_phone_idx ON signup_sessions (phone, created_at DESC);
CREATE INDEX signup_sessions_user_id_idx ON signup_sessions (user_id);
CREATE INDEX signup_sessions_invite_id_idx ON signup_sessions (invite_id);
CREATE INDEX signup_sessions_expires_at_idx ON signup_sessions (expires_at) WHERE status IN ('pending', 'verified');
CREATE TRIGGER signup_sessions_set_updated_at BEFORE UPDATE ON signup_sessions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
