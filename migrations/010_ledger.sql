-- 010_ledger: the double-entry ledger under the domain tables, and a
-- tamper-evident financial audit trail.
--
--   ledger_accounts   per chama: member savings / welfare / shares and loans
--                     receivable per member; M-Pesa float, cash, bank,
--                     welfare fund, income, suspense per chama.  balance_cents
--                     is kept by a trigger in the same transaction as each
--                     line, in the account's normal direction.
--   journal_entries   one per money movement, idempotency_key UNIQUE.
--   journal_lines     debit/credit lines; a deferred constraint trigger
--                     refuses an entry whose lines do not balance; lines and
--                     entries are append-only (corrections are reversals).
--
-- financial_audit_logs gains a hash chain: each row stores SHA-256 of the
-- previous row's hash and of its own canonical content (computed here, in
-- the inserting transaction, under an advisory lock; verified independently
-- by `chamad verify-ledger` with libsodium).
--
-- Money enters through post_contribution() and leaves the books only by
-- reverse_contribution(): each is one statement, so one transaction, and
-- harmless when repeated.

CREATE TABLE ledger_accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id      bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    user_id       bigint REFERENCES users (id) ON DELETE RESTRICT,
    kind          text NOT NULL CHECK (kind IN (
                      'member_savings', 'member_welfare', 'member_shares', 'loans_receivable',
                      'mpesa_float', 'cash_on_hand', 'bank', 'welfare_fund', 'interest_income',
                      'penalty_income', 'fines_income', 'suspense', 'expenses')),
    normal_side   text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    -- no account of a chama can hold less than nothing: a posting that would
    -- take one below zero (a reversal twice, money out that never came in)
    -- fails with its whole transaction
    balance_cents bigint NOT NULL DEFAULT 0 CONSTRAINT ledger_accounts_not_negative CHECK (balance_cents >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_member_kinds CHECK (
        (kind IN ('member_savings', 'member_welfare', 'member_shares', 'loans_receivable')) = (user_id IS NOT NULL)),
    CONSTRAINT ledger_accounts_normal_side CHECK (
        normal_side = CASE WHEN kind IN ('loans_receivable', 'mpesa_float', 'cash_on_hand', 'bank', 'expenses')
                           THEN 'debit' ELSE 'credit' END),
    CONSTRAINT ledger_accounts_key UNIQUE NULLS NOT DISTINCT (chama_id, kind, user_id)
);
COMMENT ON COLUMN ledger_accounts.balance_cents IS 'Sum of the account''s lines in its normal direction, kept by a trigger in the same transaction; chamad verify-ledger recomputes it.';
CREATE INDEX ledger_accounts_user_id_idx ON ledger_accounts (user_id);

CREATE TABLE journal_entries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chama_id          bigint NOT NULL REFERENCES chamas (id) ON DELETE RESTRICT,
    kind              text NOT NULL CHECK (kind IN (
                          'contribution', 'contribution_reversal', 'c2b_unmatched', 'suspense_allocation',
                          'loan_disbursement', 'loan_repayment', 'payout', 'welfare_claim', 'adjustment')),
    ref_table         text CHECK (length(ref_table) <= 64),
    ref_id            bigint,
    idempotency_key   text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    reverses_entry_id bigint REFERENCES journal_entries (id) ON DELETE RESTRICT,
    actor_user_id     bigint REFERENCES users (id) ON DELETE RESTRICT,
    channel           text NOT NULL DEFAULT 'system'
                      CHECK (channel IN ('ussd', 'sms', 'app', 'web', 'api', 'mpesa', 'admin', 'system')),
    memo              text CHECK (length(memo) <= 200),
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT journal_entries_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT journal_entries_one_reversal UNIQUE (reverses_entry_id)
);
CREATE INDEX journal_entries_chama_id_idx ON journal_entries (chama_id, created_at DESC);
CREATE INDEX journal_entries_ref_idx ON journal_entries (ref_table, ref_id);
CREATE INDEX journal_entries_actor_user_id_idx ON journal_entries (actor_user_id);
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE TABLE journal_lines (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id     bigint NOT NULL REFERENCES journal_entries (id) ON DELETE RESTRICT,
    account_id   bigint NOT NULL REFERENCES ledger_accounts (id) ON DELETE RESTRICT,
    side         text NOT NULL CHECK (side IN ('debit', 'credit')),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0)
);
CREATE INDEX journal_lines_entry_id_idx ON journal_lines (entry_id);
CREATE INDEX journal_lines_account_id_idx ON journal_lines (account_id, id);
CREATE TRIGGER journal_lines_append_only BEFORE UPDATE OR DELETE ON journal_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER journal_lines_no_truncate BEFORE TRUNCATE ON journal_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The account's balance moves with each line, in the same transaction.
CREATE FUNCTION journal_lines_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts
       SET balance_cents = balance_cents + CASE WHEN NEW.side = normal_side THEN NEW.amount_cents
                                                ELSE -NEW.amount_cents END
     WHERE id = NEW.account_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER journal_lines_apply AFTER INSERT ON journal_lines
    FOR EACH ROW EXECUTE FUNCTION journal_lines_apply();

-- At commit: every entry touched has at least two lines and balances.
CREATE FUNCTION journal_entry_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
    c bigint;
    n int;
BEGIN
    SELECT coalesce(sum(amount_cents) FILTER (WHERE side = 'debit'), 0),
           coalesce(sum(amount_cents) FILTER (WHERE side = 'credit'), 0), count(*)
      INTO d, c, n FROM journal_lines WHERE entry_id = NEW.entry_id;
    IF d <> c OR n < 2 THEN
        RAISE EXCEPTION 'journal entry % does not balance: debits %, credits %, % line(s)', NEW.entry_id, d, c, n
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON journal_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced();

-- ---- the audit chain ----------------------------------------------------

-- chain_seq is the order of the chain: ids are handed out before a writer
-- holds the chain's lock, so two writers can commit out of id order.
ALTER TABLE financial_audit_logs
    ADD COLUMN chain_seq bigint,
    ADD COLUMN prev_hash bytea CHECK (length(prev_hash) = 32),
    ADD COLUMN row_hash  bytea CHECK (length(row_hash) = 32),
    ADD CONSTRAINT financial_audit_logs_chain_seq_key UNIQUE (chain_seq);

-- The exact text the hash covers; chamad verify-ledger hashes the same text.
CREATE FUNCTION financial_audit_canonical(r financial_audit_logs) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws('|', r.chain_seq, r.id, (extract(epoch FROM r.occurred_at) * 1000000)::bigint, r.chama_id,
                     coalesce(r.user_id::text, '-'), coalesce(r.actor_user_id::text, '-'), r.action, r.entity_type,
                     r.entity_id, r.amount_cents, r.direction, r.currency, coalesce(r.method, '-'),
                     coalesce(r.external_reference, '-'), r.idempotency_key, coalesce(r.reverses_id::text, '-'))
$$;

CREATE FUNCTION financial_audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- one writer at a time extends the chain
    PERFORM pg_advisory_xact_lock(727100010);
    SELECT chain_seq + 1, row_hash INTO NEW.chain_seq, NEW.prev_hash
      FROM financial_audit_logs WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1;
    NEW.chain_seq := coalesce(NEW.chain_seq, 1);
    NEW.prev_hash := coalesce(NEW.prev_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    NEW.occurred_at := date_trunc('microseconds', NEW.occurred_at);
    NEW.row_hash := sha256(NEW.prev_hash || convert_to(financial_audit_canonical(NEW), 'UTF8'));
    RETURN NEW;
END
$$;
CREATE TRIGGER financial_audit_chain BEFORE INSERT ON financial_audit_logs
    FOR EACH ROW EXECUTE FUNCTION financial_audit_chain();

-- ---- posting ---------------------------------------------------------------

-- The account of (chama, kind, user), made on first use.
CREATE FUNCTION ledger_account(p_chama bigint, p_kind text, p_user bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a bigint;
BEGIN
    SELECT id INTO a FROM ledger_accounts
     WHERE chama_id = p_chama AND kind = p_kind AND user_id IS NOT DISTINCT FROM p_user;
    IF a IS NULL THEN
        INSERT INTO ledger_accounts (chama_id, kind, user_id, normal_side)
        VALUES (p_chama, p_kind, p_user,
                CASE WHEN p_kind IN ('loans_receivable', 'mpesa_float', 'cash_on_hand', 'bank', 'expenses')
                     THEN 'debit' ELSE 'credit' END)
        ON CONFLICT ON CONSTRAINT ledger_accounts_key DO NOTHING
        RETURNING id INTO a;
        IF a IS NULL THEN
            SELECT id INTO a FROM ledger_accounts
             WHERE chama_id = p_chama AND kind = p_kind AND user_id IS NOT DISTINCT FROM p_user;
        END IF;
    END IF;
    RETURN a;
END
$$;

CREATE FUNCTION audit_context(p_channel text, p_msisdn text, p_request_id text, p_actor bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('chamad.channel', p_channel, true), set_config('chamad.msisdn', coalesce(p_msisdn, ''), true),
           set_config('chamad.request_id', coalesce(p_request_id, ''), true),
           set_config('chamad.actor_user_id', coalesce(p_actor::text, ''), true);
$$;

-- Records money a member paid in, once per idempotency key (and once per
-- external reference, e.g. an M-Pesa receipt): the contribution (confirmed),
-- its journal entry (debit M-Pesa float / cash / bank, or p_from_account
-- such as suspense; credit the member's savings or welfare account), its
-- financial audit row and its SMS receipt.
-- Returns the contribution and whether this call created it.
CREATE FUNCTION post_contribution(
    p_chama bigint, p_user bigint, p_amount_cents bigint, p_purpose text, p_method text, p_external_ref text,
    p_idempotency_key text, p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
    p_receipt_body text, p_at timestamptz DEFAULT now(), p_from_account text DEFAULT NULL)
RETURNS TABLE (contribution_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
    e bigint;
    member_acct bigint;
    cash_acct bigint;
    phone text;
    lang text;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    -- one event, one posting: a repeat returns what the first one made
    SELECT ref_id INTO k FROM journal_entries WHERE idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN QUERY SELECT k, false;
        RETURN;
    END IF;
    IF p_external_ref IS NOT NULL THEN
        SELECT id INTO k FROM contributions WHERE external_reference = p_external_ref;
        IF FOUND THEN
            RETURN QUERY SELECT k, false;
            RETURN;
        END IF;
    END IF;
    INSERT INTO contributions (chama_id, user_id, amount_cents, purpose, method, external_reference, status,
                               contributed_at, confirmed_at, recorded_by_user_id)
    VALUES (p_chama, p_user, p_amount_cents, p_purpose, p_method, p_external_ref, 'confirmed', p_at, now(), p_actor)
    RETURNING id INTO k;
    member_acct := ledger_account(p_chama, CASE p_purpose WHEN 'welfare' THEN 'member_welfare'
                                                          WHEN 'shares' THEN 'member_shares'
                                                          ELSE 'member_savings' END, p_user);
    -- the money came in through M-Pesa, cash or the bank; or it was already
    -- on the books (suspense) and is only now known to be this member's
    cash_acct := ledger_account(p_chama, coalesce(p_from_account,
                                                  CASE p_method WHEN 'mpesa' THEN 'mpesa_float'
                                                                WHEN 'cash' THEN 'cash_on_hand' ELSE 'bank' END), NULL);
    INSERT INTO journal_entries (chama_id, kind, ref_table, ref_id, idempotency_key, actor_user_id, channel)
    VALUES (p_chama, 'contribution', 'contributions', k, p_idempotency_key, p_actor, p_channel)
    RETURNING id INTO e;
    INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
    VALUES (e, cash_acct, 'debit', p_amount_cents), (e, member_acct, 'credit', p_amount_cents);
    INSERT INTO financial_audit_logs (chama_id, user_id, actor_user_id, action, entity_type, entity_id,
                                      amount_cents, direction, method, external_reference, idempotency_key, channel,
                                      request_id, details)
    VALUES (p_chama, p_user, p_actor, 'contribution_received', 'contributions', k, p_amount_cents, 'in', p_method,
            p_external_ref, 'contribution:' || k || ':received', p_channel, left(p_request_id, 64),
            jsonb_build_object('journal_entry_id', e, 'purpose', p_purpose));
    IF p_receipt_body IS NOT NULL THEN
        SELECT u.phone, u.preferred_language INTO phone, lang FROM users u WHERE u.id = p_user;
        INSERT INTO notifications (user_id, chama_id, channel, kind, recipient, body, language, priority,
                                   idempotency_key)
        VALUES (p_user, p_chama, 'sms', 'receipt', phone, p_receipt_body, lang, 5, 'contribution:' || k || ':receipt');
    END IF;
    RETURN QUERY SELECT k, true;
END
$$;

-- Takes a confirmed contribution back out of the books: the contribution is
-- marked reversed (never deleted), a reversal entry mirrors its lines, an
-- audit row and an SMS notice are written.  Once per contribution.
CREATE FUNCTION reverse_contribution(
    p_contribution bigint, p_reason text, p_actor bigint, p_channel text, p_msisdn text, p_request_id text,
    p_notice_body text)
RETURNS TABLE (entry_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    orig journal_entries%ROWTYPE;
    k contributions%ROWTYPE;
    e bigint;
    phone text;
    lang text;
BEGIN
    PERFORM audit_context(p_channel, p_msisdn, p_request_id, p_actor);
    SELECT * INTO k FROM contributions WHERE id = p_contribution FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contribution % does not exist', p_contribution USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO orig FROM journal_entries WHERE ref_table = 'contributions' AND ref_id = p_contribution
                                              AND kind = 'contribution';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contribution % was never posted', p_contribution USING ERRCODE = 'no_data_found';
    END IF;
    SELECT id INTO e FROM journal_entries WHERE reverses_entry_id = orig.id;
    IF FOUND THEN
        RETURN QUERY SELECT e, false;
        RETURN;
    END IF;
    UPDATE contributions SET status = 'reversed', reversed_at = now(), reversal_reason = left(p_reason, 500)
     WHERE id = p_contribution;
    INSERT INTO journal_entries (chama_id, kind, ref_table, ref_id, idempotency_key, reverses_entry_id,
                                 actor_user_id, channel, memo)
    VALUES (orig.chama_id, 'contribution_reversal', 'contributions', p_contribution,
            'contribution:' || p_contribution || ':reversal', orig.id, p_actor, p_channel, left(p_reason, 200))
    RETURNING id INTO e;
    INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
    SELECT e, account_id, CASE side WHEN 'debit' THEN 'credit' ELSE 'debit' END, amount_cents
      FROM journal_lines WHERE journal_lines.entry_id = orig.id;
    INSERT INTO financial_audit_logs (chama_id, user_id, actor_user_id, action, entity_type, entity_id,
                                      amount_cents, direction, method, idempotency_key, reverses_id, channel,
                                      request_id, details)
    SELECT k.chama_id, k.user_id, p_actor, 'contribution_reversed', 'contributions', k.id, k.amount_cents, 'out',
           k.method, 'contribution:' || k.id || ':reversed',
           (SELECT f.id FROM financial_audit_logs f WHERE f.idempotency_key = 'contribution:' || k.id || ':received'),
           p_channel, left(p_request_id, 64), jsonb_build_object('journal_entry_id', e, 'reason', p_reason);
    IF p_notice_body IS NOT NULL THEN
        SELECT u.phone, u.preferred_language INTO phone, lang FROM users u WHERE u.id = k.user_id;
        INSERT INTO notifications (user_id, chama_id, channel, kind, recipient, body, language, priority,
                                   idempotency_key)
        VALUES (k.user_id, k.chama_id, 'sms', 'reversal', phone, p_notice_body, lang, 5,
                'contribution:' || k.id || ':reversal');
    END IF;
    RETURN QUERY SELECT e, true;
END
$$;

-- What members see: balances from the ledger.
CREATE VIEW member_balances AS
SELECT m.user_id, m.chama_id, c.name AS chama_name,
       coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'member_savings'), 0)::bigint AS savings_cents,
       coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'member_welfare'), 0)::bigint AS welfare_cents,
       coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'member_shares'), 0)::bigint AS shares_cents,
       coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'loans_receivable'), 0)::bigint AS loan_cents
  FROM memberships m
  JOIN chamas c ON c.id = m.chama_id AND c.deleted_at IS NULL
  LEFT JOIN ledger_accounts a ON a.chama_id = m.chama_id AND a.user_id = m.user_id
 WHERE m.status = 'active'
 GROUP BY m.user_id, m.chama_id, c.name;
