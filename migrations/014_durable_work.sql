-- 014_durable_work: what must survive load and crashes is a row first.
--
-- An STK push is a claimed row: the USSD hop writes the request with the
-- time it is due (push_at); whichever daemon is free claims it under a
-- lease and pushes it, so a daemon that stops before pushing leaves nothing
-- behind.  A push tried once is never tried again: if its answer was lost
-- (Daraja may have prompted the member) the request becomes 'unknown' and
-- a callback for it is matched by phone and amount.
--
-- An M-Pesa callback is stored before it is acknowledged and settled from
-- the table; one that names a CheckoutRequestID we have not recorded yet
-- (it overtook the push's answer) waits and is matched later.

ALTER TABLE mpesa_requests
    DROP CONSTRAINT mpesa_requests_status_check,
    ADD CONSTRAINT mpesa_requests_status_check
        CHECK (status IN ('created', 'pushed', 'push_failed', 'confirmed', 'failed', 'expired', 'mismatch',
                          'unknown')),
    ADD COLUMN push_at       timestamptz,
    ADD COLUMN push_attempts integer NOT NULL DEFAULT 0 CHECK (push_attempts BETWEEN 0 AND 1),
    ADD COLUMN claimed_by    text CHECK (length(claimed_by) <= 64),
    ADD COLUMN lease_until   timestamptz;
UPDATE mpesa_requests SET push_at = created_at WHERE status = 'created';
CREATE INDEX mpesa_requests_push_due_idx ON mpesa_requests (push_at) WHERE status = 'created';
CREATE INDEX mpesa_requests_unknown_idx ON mpesa_requests (phone, amount_cents) WHERE status = 'unknown';

CREATE TABLE mpesa_callbacks (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checkout_request_id text NOT NULL CHECK (length(checkout_request_id) BETWEEN 1 AND 64),
    result_code         bigint NOT NULL,
    result_desc         text NOT NULL DEFAULT '' CHECK (length(result_desc) <= 300),
    mpesa_receipt       text CHECK (length(mpesa_receipt) <= 32),
    -- what the callback says was paid; -1 in the body's absence is NULL here
    amount_cents        bigint CHECK (amount_cents >= 0),
    phone               text CHECK (length(phone) <= 20),
    body                text NOT NULL CHECK (length(body) <= 65536),
    remote_addr         text CHECK (length(remote_addr) <= 64),
    http_request_id     text CHECK (length(http_request_id) <= 64),
    -- received: to settle; settled: mpesa_settle has it; unmatched: no
    -- request of ours ever took it (logged, kept for an operator)
    status              text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'settled', 'unmatched')),
    outcome             text CHECK (length(outcome) <= 32),
    request_id          bigint REFERENCES mpesa_requests (id) ON DELETE RESTRICT,
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_try_at         timestamptz NOT NULL DEFAULT now(),
    lease_until         timestamptz,
    received_at         timestamptz NOT NULL DEFAULT now(),
    settled_at          timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mpesa_callbacks_due_idx ON mpesa_callbacks (next_try_at) WHERE status = 'received';
CREATE INDEX mpesa_callbacks_checkout_idx ON mpesa_callbacks (checkout_request_id);
CREATE INDEX mpesa_callbacks_request_id_idx ON mpesa_callbacks (request_id);
CREATE TRIGGER mpesa_callbacks_set_updated_at BEFORE UPDATE ON mpesa_callbacks
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
