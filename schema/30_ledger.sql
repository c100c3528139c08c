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
