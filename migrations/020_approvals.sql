-- 020_approvals: dual control.  One approval mechanism for every action
-- that needs several officials (reversing a member's payment, payouts,
-- cash payouts; later loans, welfare claims, merry-go-round swaps).
--
-- A request (approvals) names what it is (kind + ref_id: the row the kind's
-- function acts on), the amount, who asked (maker), for whom (beneficiary:
-- never an approver), what the officials are shown (vars) and how many
-- distinct officials must approve it (required, from the chama's
-- constitution when it opened).  Officials decide by a vote each
-- (approval_votes); members may stop a large payout in its veto window
-- (approval_vetoes).  The lifecycle, the rule and the dispatch to the
-- kind's function are in schema/85_approvals.sql.
--
-- status:
--   pending   officials are voting (round 1, or again after a freeze)
--   waiting   approved, the members' veto window is open until veto_until
--   executed  approved and the kind's function ran (once)
--   rejected  enough rejections that the approvals can no longer be reached
--   expired   still pending [approvals] expire_hours after its round began
-- A freeze (veto_count members said STOP while waiting) is not a state of
-- its own: the request goes back to pending in a new round (frozen_at
-- set, the earlier round's votes kept as history, not counted), and the
-- officials' next decision is final (no second veto window).

CREATE TABLE approvals (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id       bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    kind           text NOT NULL CHECK (kind IN ('payment_reverse', 'payout', 'cash_payout')),
    ref_id         bigint NOT NULL,
    amount_cents   bigint NOT NULL CHECK (amount_cents >= 0),
    maker_user_id  bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    beneficiary_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    vars           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(vars) = 'object'),
    required       integer NOT NULL CHECK (required BETWEEN 1 AND 9),
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'waiting', 'executed', 'rejected', 'expired')),
    code           text NOT NULL CHECK (code ~ '^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$'),
    round          integer NOT NULL DEFAULT 1 CHECK (round BETWEEN 1 AND 2),
    round_at       timestamptz NOT NULL,
    channel        text NOT NULL CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system')),
    veto_until     timestamptz,
    veto_count     integer CHECK (veto_count BETWEEN 1 AND 1000),
    frozen_at      timestamptz,
    decided_at     timestamptz,
    result         text CHECK (length(result) <= 64),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT approvals_waiting_has_window CHECK (status <> 'waiting' OR veto_until IS NOT NULL),
    CONSTRAINT approvals_decided CHECK ((status IN ('executed', 'rejected', 'expired')) = (decided_at IS NOT NULL))
);
COMMENT ON TABLE approvals IS 'Requests that need several officials (dual control): kind + ref_id is what the kind''s function (<kind>_on_approval, schema/85_approvals.sql) acts on once decided.';
COMMENT ON COLUMN approvals.vars IS 'What the officials are shown (the variables of the kind''s words: member, reason, ...), and the kind''s own parameters.';
COMMENT ON COLUMN approvals.code IS 'Six characters without look-alikes (no I, L, O, 0, 1) for APPROVE <code> <PIN>; unique among open requests.';
COMMENT ON COLUMN approvals.round_at IS 'When the current round of votes began (opening, or the freeze): expiry counts from here.';
COMMENT ON COLUMN approvals.result IS 'What the kind''s function answered when it ran (an outcome key).';
-- a code names one open request; closed ones may share it later
CREATE UNIQUE INDEX approvals_open_code_key ON approvals (code) WHERE status IN ('pending', 'waiting');
-- one open request per thing to decide
CREATE UNIQUE INDEX approvals_open_ref_key ON approvals (kind, ref_id) WHERE status IN ('pending', 'waiting');
CREATE INDEX approvals_chama_open_idx ON approvals (chama_id, created_at) WHERE status IN ('pending', 'waiting');
CREATE INDEX approvals_maker_idx ON approvals (maker_user_id);
CREATE INDEX approvals_beneficiary_idx ON approvals (beneficiary_user_id);

CREATE TABLE approval_votes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    approval_id      bigint NOT NULL REFERENCES approvals (id) ON DELETE RESTRICT,
    round            integer NOT NULL CHECK (round BETWEEN 1 AND 2),
    official_user_id bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    vote             text NOT NULL CHECK (vote IN ('approve', 'reject')),
    channel          text NOT NULL CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'admin', 'system')),
    at               timestamptz NOT NULL,
    -- one vote per official and round: the same official twice counts once
    CONSTRAINT approval_votes_once UNIQUE (approval_id, round, official_user_id)
);
COMMENT ON TABLE approval_votes IS 'Each official''s decision on a request, once per round; never changed (a freeze starts a new round).';
CREATE INDEX approval_votes_official_idx ON approval_votes (official_user_id);

CREATE TABLE approval_vetoes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    approval_id    bigint NOT NULL REFERENCES approvals (id) ON DELETE RESTRICT,
    member_user_id bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    channel        text NOT NULL CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'admin', 'system')),
    at             timestamptz NOT NULL,
    CONSTRAINT approval_vetoes_once UNIQUE (approval_id, member_user_id)
);
COMMENT ON TABLE approval_vetoes IS 'Members who said STOP <code> in a request''s veto window, once each.';
CREATE INDEX approval_vetoes_member_idx ON approval_vetoes (member_user_id);

-- The protected actions: deciding requests; reversing a payment now needs
-- two officials besides the one who asks (the policy row's count is the
-- default a constitution's approvals_count overrides).
INSERT INTO policy_actions (action, roles, approvals, description) VALUES
    ('approvals.decide', '{chairperson,treasurer,secretary}', 1,
     'Approve or reject requests that need several officials');
UPDATE policy_actions SET approvals = 2,
       description = 'Ask to reverse a recorded payment (two other officials approve)'
 WHERE action = 'money.payment_reverse';
