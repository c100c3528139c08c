-- 007_views: user_membership_summary (live, what a member sees on "My
-- chamas") and chama_detailed_summary (materialized, for officials' and
-- operators' dashboards; refreshed with refresh_chama_detailed_summary()).
--
-- Sums here are reads of the domain tables, not cached balances: nothing in
-- these views can drift from the rows they summarise.

CREATE VIEW user_membership_summary AS
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
COMMENT ON VIEW user_membership_summary IS 'One row per membership of a live user in a live chama, with confirmed savings, welfare and open loan totals. Filter by user_id (uses memberships_user_chama_key) and membership_status.';

CREATE MATERIALIZED VIEW chama_detailed_summary AS
SELECT c.id                                           AS chama_id,
       c.name,
       c.type,
       c.status,
       c.currency,
       c.contribution_amount_cents,
       c.contribution_frequency,
       c.member_count,
       coalesce(off.officials, '{}'::jsonb)           AS officials,
       coalesce(k.total_savings_cents, 0)             AS total_savings_cents,
       coalesce(k.total_welfare_cents, 0)             AS total_welfare_contributions_cents,
       coalesce(k.contributions_30d_cents, 0)         AS contributions_last_30_days_cents,
       coalesce(k.pending_contributions, 0)           AS pending_contributions,
       k.last_contribution_at,
       coalesce(l.open_loans, 0)                      AS open_loans,
       coalesce(l.disbursed_cents, 0)                 AS loans_disbursed_cents,
       coalesce(l.outstanding_cents, 0)               AS loans_outstanding_cents,
       coalesce(l.defaulted_loans, 0)                 AS defaulted_loans,
       coalesce(wf.balance_cents, 0)                  AS welfare_fund_balance_cents,
       coalesce(wc.open_claims, 0)                    AS open_welfare_claims,
       coalesce(p.paid_out_cents, 0)                  AS paid_out_cents,
       mt.next_meeting_at,
       rc.cycle_no                                    AS active_rosca_cycle_no,
       rc.current_round                               AS active_rosca_round,
       ac.cycle_no                                    AS active_asca_cycle_no,
       coalesce(ash.shares, 0)                        AS active_asca_shares,
       now()                                          AS refreshed_at
  FROM chamas c
  LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(m.role, jsonb_build_object('user_id', m.user_id, 'name', u.full_name)) AS officials
          FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.chama_id = c.id AND m.status = 'active' AND m.role <> 'member') off ON true
  LEFT JOIN LATERAL (
        SELECT sum(amount_cents) FILTER (WHERE status = 'confirmed' AND purpose IN ('savings', 'shares', 'rosca'))::bigint
                   AS total_savings_cents,
               sum(amount_cents) FILTER (WHERE status = 'confirmed' AND purpose = 'welfare')::bigint AS total_welfare_cents,
               sum(amount_cents) FILTER (WHERE status = 'confirmed' AND contributed_at >= now() - interval '30 days')::bigint
                   AS contributions_30d_cents,
               count(*) FILTER (WHERE status = 'pending')                                  AS pending_contributions,
               max(contributed_at) FILTER (WHERE status = 'confirmed')                     AS last_contribution_at
          FROM contributions WHERE chama_id = c.id AND deleted_at IS NULL) k ON true
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE status IN ('disbursed', 'active', 'defaulted'))      AS open_loans,
               sum(amount_disbursed_cents)::bigint                                                  AS disbursed_cents,
               sum(outstanding_balance_cents) FILTER (WHERE status IN ('disbursed', 'active', 'defaulted'))::bigint
                   AS outstanding_cents,
               count(*) FILTER (WHERE status = 'defaulted')                                 AS defaulted_loans
          FROM loans WHERE chama_id = c.id) l ON true
  LEFT JOIN welfare_fund wf ON wf.chama_id = c.id
  LEFT JOIN LATERAL (
        SELECT count(*) AS open_claims FROM welfare_claims
         WHERE chama_id = c.id AND status IN ('submitted', 'approved')) wc ON true
  LEFT JOIN LATERAL (
        SELECT sum(amount_cents)::bigint AS paid_out_cents FROM payouts
         WHERE chama_id = c.id AND status = 'completed') p ON true
  LEFT JOIN LATERAL (
        SELECT min(scheduled_at) AS next_meeting_at FROM meetings
         WHERE chama_id = c.id AND status = 'scheduled' AND scheduled_at >= now()) mt ON true
  LEFT JOIN rosca_cycles rc ON rc.chama_id = c.id AND rc.status = 'active'
  LEFT JOIN asca_cycles ac ON ac.chama_id = c.id AND ac.status = 'active'
  LEFT JOIN LATERAL (
        SELECT sum(shares)::bigint AS shares FROM asca_members WHERE cycle_id = ac.id) ash ON true
 WHERE c.deleted_at IS NULL
WITH DATA;
COMMENT ON MATERIALIZED VIEW chama_detailed_summary IS 'Dashboard totals per live chama as of refreshed_at. Refresh with SELECT refresh_chama_detailed_summary(); (CONCURRENTLY: readers are not blocked).';
-- REFRESH ... CONCURRENTLY needs a unique index on plain columns
CREATE UNIQUE INDEX chama_detailed_summary_chama_id_key ON chama_detailed_summary (chama_id);
CREATE INDEX chama_detailed_summary_type_idx ON chama_detailed_summary (type, status);

-- Refreshes the dashboard without blocking readers.  Concurrent refreshes
-- queue on an advisory lock instead of failing; returns the row count.
CREATE FUNCTION refresh_chama_detailed_summary() RETURNS bigint
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
