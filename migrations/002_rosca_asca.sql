-- 002_rosca_asca: merry-go-round cycles, roster and swaps; ASCA/VSLA share cycles.

CREATE TABLE rosca_cycles (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id                  bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    cycle_no                  integer NOT NULL CHECK (cycle_no > 0),
    contribution_amount_cents bigint NOT NULL CHECK (contribution_amount_cents > 0),
    frequency                 text NOT NULL CHECK (frequency IN ('weekly', 'biweekly', 'monthly', 'custom')),
    order_mode                text NOT NULL DEFAULT 'fixed' CHECK (order_mode IN ('fixed', 'random', 'bidding', 'admin')),
    start_date                date NOT NULL,
    end_date                  date CHECK (end_date > start_date),
    current_round             integer NOT NULL DEFAULT 0 CHECK (current_round >= 0),
    status                    text NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'active', 'completed', 'cancelled')),
    created_by_user_id        bigint REFERENCES users (id) ON DELETE RESTRICT,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rosca_cycles_chama_cycle_no_key UNIQUE (chama_id, cycle_no)
);
CREATE UNIQUE INDEX rosca_cycles_one_active_per_chama ON rosca_cycles (chama_id) WHERE status = 'active';
CREATE INDEX rosca_cycles_created_by_user_id_idx ON rosca_cycles (created_by_user_id);
CREATE TRIGGER rosca_cycles_set_updated_at BEFORE UPDATE ON rosca_cycles
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE rosca_roster (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cycle_id    bigint NOT NULL REFERENCES rosca_cycles (id) ON DELETE RESTRICT,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    position    integer NOT NULL CHECK (position > 0),
    paid_out    boolean NOT NULL DEFAULT false,
    paid_out_at timestamptz,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'skipped', 'defaulted', 'withdrawn')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- deferred: swapping two positions takes two UPDATEs in one transaction
    CONSTRAINT rosca_roster_cycle_position_key UNIQUE (cycle_id, position) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT rosca_roster_cycle_user_key UNIQUE (cycle_id, user_id)
);
CREATE INDEX rosca_roster_user_id_idx ON rosca_roster (user_id);
CREATE TRIGGER rosca_roster_set_updated_at BEFORE UPDATE ON rosca_roster
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE rosca_swap_requests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cycle_id            bigint NOT NULL REFERENCES rosca_cycles (id) ON DELETE RESTRICT,
    requester_user_id   bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    target_user_id      bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    requester_position  integer NOT NULL CHECK (requester_position > 0),
    target_position     integer NOT NULL CHECK (target_position > 0),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'accepted', 'approved', 'rejected', 'cancelled', 'expired')),
    reason              text,
    accepted_at         timestamptz,
    approved_by_user_id bigint REFERENCES users (id) ON DELETE RESTRICT,
    decided_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- (the predecessor compared a user id with a position here)
    CONSTRAINT rosca_swap_requests_distinct_users CHECK (requester_user_id <> target_user_id),
    CONSTRAINT rosca_swap_requests_distinct_positions CHECK (requester_position <> target_position),
    -- the approving official is a third person
    CONSTRAINT rosca_swap_requests_approver_is_third_party
        CHECK (approved_by_user_id <> requester_user_id AND approved_by_user_id <> target_user_id),
    CHECK (status <> 'approved' OR approved_by_user_id IS NOT NULL)
);
CREATE INDEX rosca_swap_requests_cycle_id_idx ON rosca_swap_requests (cycle_id, status);
CREATE INDEX rosca_swap_requests_requester_user_id_idx ON rosca_swap_requests (requester_user_id);
CREATE INDEX rosca_swap_requests_target_user_id_idx ON rosca_swap_requests (target_user_id);
CREATE INDEX rosca_swap_requests_approved_by_user_id_idx ON rosca_swap_requests (approved_by_user_id);
CREATE TRIGGER rosca_swap_requests_set_updated_at BEFORE UPDATE ON rosca_swap_requests
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE asca_cycles (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id               bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    cycle_no               integer NOT NULL CHECK (cycle_no > 0),
    share_price_cents      bigint NOT NULL CHECK (share_price_cents > 0),
    max_shares_per_meeting integer CHECK (max_shares_per_meeting > 0),
    share_weighting        text NOT NULL DEFAULT 'count' CHECK (share_weighting IN ('count', 'share_days')),
    start_date             date NOT NULL,
    end_date               date NOT NULL,
    status                 text NOT NULL DEFAULT 'planned'
                           CHECK (status IN ('planned', 'active', 'closed', 'shared_out', 'cancelled')),
    closed_at              timestamptz,
    shared_out_at          timestamptz,
    created_by_user_id     bigint REFERENCES users (id) ON DELETE RESTRICT,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT asca_cycles_dates_check CHECK (end_date > start_date),
    CONSTRAINT asca_cycles_chama_cycle_no_key UNIQUE (chama_id, cycle_no)
);
CREATE UNIQUE INDEX asca_cycles_one_active_per_chama ON asca_cycles (chama_id) WHERE status = 'active';
CREATE INDEX asca_cycles_created_by_user_id_idx ON asca_cycles (created_by_user_id);
CREATE TRIGGER asca_cycles_set_updated_at BEFORE UPDATE ON asca_cycles
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE asca_members (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cycle_id   bigint NOT NULL REFERENCES asca_cycles (id) ON DELETE RESTRICT,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    shares     bigint NOT NULL DEFAULT 0 CHECK (shares >= 0),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT asca_members_cycle_user_key UNIQUE (cycle_id, user_id)
);
COMMENT ON COLUMN asca_members.shares IS 'Whole shares bought in the cycle (no fractional shares); value = shares * asca_cycles.share_price_cents.';
CREATE INDEX asca_members_user_id_idx ON asca_members (user_id);
CREATE TRIGGER asca_members_set_updated_at BEFORE UPDATE ON asca_members
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
