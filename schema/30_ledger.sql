-- schema/30_ledger.sql: ledger: accounts, the balanced journal, balances.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

-- The account's balance moves with each line, in the same transaction.
CREATE OR REPLACE FUNCTION journal_lines_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts
       SET balance_cents = balance_cents + CASE WHEN NEW.side = normal_side THEN NEW.amount_cents
                                                ELSE -NEW.amount_cents END
     WHERE id = NEW.account_id;
    RETURN NULL;
END
$$;

-- At commit: every entry touched has at least two lines and balances.
CREATE OR REPLACE FUNCTION journal_entry_balanced() RETURNS trigger
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

-- The account of (chama, kind, user), made on first use.
CREATE OR REPLACE FUNCTION ledger_account(p_chama bigint, p_kind text, p_user bigint) RETURNS bigint
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

-- The one posting primitive: every money movement is one call of this, and
-- nothing else writes journal_entries, journal_lines or
-- financial_audit_logs (tests/integration/test_posting.py reads every
-- function's source to hold that).  One call writes the entry, its lines and
-- its financial audit row (which financial_audit_chain links to the end of
-- the chama's chain), all dated p_at, once per idempotency key: a repeat of
-- the key returns the entry the first call made (created false) and writes
-- nothing, whatever else it says, also when the two run at once (the second
-- waits for the first to commit).  Corrections are new entries (p_reverses),
-- never edits.  The entry must balance (journal_entry_balanced, at commit)
-- and no account may go below zero (ledger_accounts_not_negative): those
-- are bugs, so they raise.
--   p_lines    [{"kind": account kind, "user": member id (member accounts
--              only), "side": "debit" | "credit", "cents": n}, ...], or
--              {"account": id, ...} for an account of this chama already
--              known; written in this order (the order accounts are locked)
--   p_ref_table, p_ref_id  what the entry is about ('contributions', 12)
--   p_reverses the entry this one reverses, or NULL
--   p_audit    the audit row: {"action", "user", "entity_type", "entity_id"
--              (default: this entry), "direction", "method", "external_ref",
--              "key" (its own idempotency key), "reverses_key" (the key of
--              the audit row it reverses), "request_id", "details"}; its
--              amount is the entry's total, its details gain journal_entry_id
CREATE OR REPLACE FUNCTION ledger_post(p_chama bigint, p_kind text, p_idem_key text, p_lines jsonb,
                                       p_ref_table text, p_ref_id bigint, p_reverses bigint, p_audit jsonb,
                                       p_actor bigint, p_channel text, p_memo text, p_at timestamptz)
RETURNS TABLE (entry_id bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e bigint;
    a bigint;
    l jsonb;
    total bigint := 0;
BEGIN
    SELECT j.id INTO e FROM journal_entries j WHERE j.idempotency_key = p_idem_key;
    IF FOUND THEN
        RETURN QUERY SELECT e, false;
        RETURN;
    END IF;
    INSERT INTO journal_entries (chama_id, kind, ref_table, ref_id, idempotency_key, reverses_entry_id,
                                 actor_user_id, channel, memo, created_at)
    VALUES (p_chama, p_kind, p_ref_table, p_ref_id, p_idem_key, p_reverses, p_actor, coalesce(p_channel, 'system'),
            left(p_memo, 200), p_at)
    ON CONFLICT ON CONSTRAINT journal_entries_idempotency_key_key DO NOTHING
    RETURNING id INTO e;
    IF e IS NULL THEN
        -- the same key, posted by a call that committed while this one
        -- waited on it: that posting is the one
        SELECT j.id INTO STRICT e FROM journal_entries j WHERE j.idempotency_key = p_idem_key;
        RETURN QUERY SELECT e, false;
        RETURN;
    END IF;
    FOR l IN SELECT x.value FROM jsonb_array_elements(p_lines) x LOOP
        IF l ? 'account' THEN
            a := (l ->> 'account')::bigint;
            IF NOT EXISTS (SELECT 1 FROM ledger_accounts WHERE id = a AND chama_id = p_chama) THEN
                RAISE EXCEPTION 'ledger_post: account % is not an account of chama %', a, p_chama
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
        ELSE
            a := ledger_account(p_chama, l ->> 'kind', (l ->> 'user')::bigint);
        END IF;
        INSERT INTO journal_lines (entry_id, account_id, side, amount_cents)
        VALUES (e, a, l ->> 'side', (l ->> 'cents')::bigint);
        IF l ->> 'side' = 'debit' THEN
            total := total + (l ->> 'cents')::bigint;
        END IF;
    END LOOP;
    INSERT INTO financial_audit_logs (occurred_at, chama_id, user_id, actor_user_id, action, entity_type, entity_id,
                                      amount_cents, direction, method, external_reference, idempotency_key,
                                      reverses_id, channel, request_id, details)
    VALUES (p_at, p_chama, (p_audit ->> 'user')::bigint, p_actor, p_audit ->> 'action',
            coalesce(p_audit ->> 'entity_type', 'journal_entries'), coalesce((p_audit ->> 'entity_id')::bigint, e),
            total, p_audit ->> 'direction', p_audit ->> 'method', p_audit ->> 'external_ref', p_audit ->> 'key',
            (SELECT f.id FROM financial_audit_logs f WHERE f.idempotency_key = p_audit ->> 'reverses_key'),
            coalesce(p_channel, 'system'), left(p_audit ->> 'request_id', 64),
            coalesce(p_audit -> 'details', '{}'::jsonb) || jsonb_build_object('journal_entry_id', e));
    RETURN QUERY SELECT e, true;
END
$$;

-- What members see: balances from the ledger.
CREATE OR REPLACE VIEW member_balances AS
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
