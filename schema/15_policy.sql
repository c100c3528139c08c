-- schema/15_policy.sql: policy: who may do each protected action.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views, the triggers of
-- its tables.  Migrations never call what is defined here.
--
-- The rows are policy_actions (migration 017).  Every statement that does a
-- protected action checks policy_allows() itself, in the same statement,
-- whatever the menu showed; the menus' visibility comes from
-- policy_allowed(), read with the member's role when they pick a chama.

-- Whether the user, as an active member of the chama, holds a role the
-- action allows.  An action with no row is a bug (a name mistyped in code),
-- not a refusal: it raises.
CREATE OR REPLACE FUNCTION policy_allows(p_user bigint, p_chama bigint, p_action text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    allowed text[];
BEGIN
    SELECT roles INTO allowed FROM policy_actions WHERE action = p_action;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no policy for action "%"', p_action USING ERRCODE = 'undefined_object';
    END IF;
    RETURN EXISTS (SELECT 1 FROM memberships m
                    WHERE m.user_id = p_user AND m.chama_id = p_chama AND m.status = 'active'
                      AND m.role = ANY (allowed));
END
$$;

-- The actions a role may do, space-separated and sorted ('' for none): what
-- the channels keep with the chama picked, to show only what will be
-- allowed.  PL/pgSQL, not SQL: an SQL function with an aggregate is not
-- inlined and sets itself up again in every statement that calls it, which
-- made the PIN hop's statement (one call per chama) 1.7x as costly; this
-- one keeps its plan for the session (0.068 -> 0.053 ms a lookup,
-- pgbench -M prepared, against 0.041 without the policy).
CREATE OR REPLACE FUNCTION policy_allowed(p_role text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(string_agg(action, ' ' ORDER BY action), '') FROM policy_actions
             WHERE p_role = ANY (roles));
END
$$;

-- Who may do what is itself audited (every change to a row, by whom).
CREATE OR REPLACE TRIGGER policy_actions_audit AFTER INSERT OR UPDATE OR DELETE ON policy_actions
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
