-- schema/90_views.sql: views over memberships and chamas.
--
-- Repeatable: chamad migrate applies this file, in one transaction,
-- whenever its SHA-256 changes (after the pending migrations).  Only
-- CREATE OR REPLACE: functions, trigger functions, views.  Migrations
-- never call what is defined here.

CREATE OR REPLACE VIEW user_membership_summary AS
SELECT m.user_id,
       u.phone,
       u.full_name,
       m.chama_id,
       c.name                                   AS chama_name,
       c.type                                   AS chama_type,
       m.id                                     AS membership_id,
       m.member_number,
       m.role,
       m.status                                 AS membership_status,
       m.joined_at,
       coalesce(contrib.savings_cents, 0)       AS savings_cents,
       coalesce(contrib.welfare_cents, 0)       AS welfare_contributed_cents,
       contrib.last_contribution_at,
       coalesce(lo.open_loans, 0)               AS open_loans,
       coalesce(lo.outstanding_cents, 0)        AS loan_outstanding_cents
  FROM memberships m
  JOIN users u  ON u.id = m.user_id AND u.deleted_at IS NULL
  JOIN chamas c ON c.id = m.chama_id AND c.deleted_at IS NULL
  LEFT JOIN LATERAL (
        SELECT sum(k.amount_cents) FILTER (WHERE k.purpose IN ('savings', 'shares', 'rosca'))::bigint AS savings_cents,
               sum(k.amount_cents) FILTER (WHERE k.purpose = 'welfare')::bigint                   AS welfare_cents,
               max(k.contributed_at)                                                       AS last_contribution_at
          FROM contributions k
         WHERE k.chama_id = m.chama_id AND k.user_id = m.user_id
           AND k.deleted_at IS NULL AND k.status = 'confirmed') contrib ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS open_loans, sum(l.outstanding_balance_cents)::bigint AS outstanding_cents
          FROM loans l
         WHERE l.chama_id = m.chama_id AND l.user_id = m.user_id
           AND l.status IN ('disbursed', 'active', 'defaulted')) lo ON true;

-- Refreshes the dashboard without blocking readers.  Concurrent refreshes
-- queue on an advisory lock instead of failing; returns the row count.
CREATE OR REPLACE FUNCTION refresh_chama_detailed_summary() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727100002);
    IF (SELECT ispopulated FROM pg_matviews
         WHERE schemaname = current_schema() AND matviewname = 'chama_detailed_summary') THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY chama_detailed_summary;
    ELSE
        REFRESH MATERIALIZED VIEW chama_detailed_summary;
    END IF;
    SELECT count(*) INTO n FROM chama_detailed_summary;
    RETURN n;
END
$$;
