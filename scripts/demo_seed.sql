-- Demo chama for `make run`: "Umoja Savings Group", five members, three
-- months of savings and welfare contributions, a welfare fund, and the next
-- meeting.  Safe to run any number of times: it does nothing when the demo
-- chama already exists.
--
-- The members' PIN hash is passed in, made by chamad itself so that it
-- carries this installation's pepper and cost parameters:
--
--   psql "$CHAMAD_DATABASE_URL" -v ON_ERROR_STOP=1 \
--        -v pin_hash="$(echo 1234 | bin/chamad hash-pin)" -f scripts/demo_seed.sql
--
-- Without it the members have no PIN yet, and the first dial sets one
-- through a one-time code.

\if :{?pin_hash}
\else
\set pin_hash ''
\endif
\o /dev/null
SELECT set_config('chamad_seed.pin_hash', :'pin_hash', false);
\o

BEGIN;
DO $seed$
DECLARE
    demo_pin constant text := nullif(current_setting('chamad_seed.pin_hash', true), '');
    chama bigint;
    treasurer bigint;
    u record;
    m int;
    ref text;
BEGIN
    -- one demo at a time, even if two `make run`s race
    PERFORM pg_advisory_xact_lock(727100003);
    -- audit rows written by the triggers say who did this
    PERFORM set_config('chamad.channel', 'admin', true), set_config('chamad.request_id', 'demo-seed', true);
    IF EXISTS (SELECT 1 FROM chamas WHERE name = 'Umoja Savings Group' AND deleted_at IS NULL) THEN
        RAISE NOTICE 'demo chama already present: nothing to do';
        RETURN;
    END IF;

    INSERT INTO users (phone, full_name, preferred_language, pin_hash, phone_verified, phone_verified_at)
    VALUES ('+254712000001', 'Wanjiku Kamau',   'sw', demo_pin, true, now()),
           ('+254712000002', 'Otieno Odhiambo', 'en', demo_pin, true, now()),
           ('+254712000003', 'Achieng Atieno',  'en', demo_pin, true, now()),
           ('+254712000004', 'Mwangi Njoroge',  'sw', demo_pin, true, now()),
           ('+254712000005', 'Fatuma Hassan',   'sw', demo_pin, true, now())
    ON CONFLICT (phone) WHERE deleted_at IS NULL DO NOTHING;

    INSERT INTO chamas (name, description, type, contribution_amount_cents, contribution_frequency,
                        constitution, created_by_user_id)
    VALUES ('Umoja Savings Group', 'Demo chama: monthly savings, loans and a welfare fund', 'mixed',
            50000, 'monthly',
            '{"loan_multiplier_bp": 30000, "loan_interest_rate_bp": 1000, "loan_interest_method": "flat",
              "max_loan_term_periods": 12, "min_guarantors_count": 2, "late_penalty_cents": 5000,
              "grace_period_days": 3, "welfare_contribution_cents": 10000, "quorum_percent": 60,
              "approval_threshold_percent": 50}',
            (SELECT id FROM users WHERE phone = '+254712000001' AND deleted_at IS NULL))
    RETURNING id INTO chama;

    INSERT INTO memberships (user_id, chama_id, role, joined_at)
    SELECT usr.id, chama, r.role, now() - interval '100 days'
      FROM (VALUES ('+254712000001', 'chairperson'), ('+254712000002', 'treasurer'),
                   ('+254712000003', 'secretary'), ('+254712000004', 'member'),
                   ('+254712000005', 'member')) AS r (phone, role)
      JOIN users usr ON usr.phone = r.phone AND usr.deleted_at IS NULL
     ORDER BY r.phone;
    SELECT user_id INTO treasurer FROM memberships WHERE chama_id = chama AND role = 'treasurer';

    INSERT INTO welfare_config (chama_id, contribution_amount_cents, contribution_frequency,
                                payout_amounts_cents, required_approvals, min_membership_days)
    VALUES (chama, 10000, 'monthly',
            '{"death_member": 5000000, "death_spouse": 3000000, "death_parent": 2000000,
              "hospitalization": 1000000}', 2, 30);

    -- three months of KES 500 savings (M-Pesa) and KES 100 welfare (cash)
    -- from every member, posted as the money flows post them: contribution,
    -- journal entry, financial audit row
    FOR u IN SELECT ms.user_id, ms.member_number FROM memberships ms WHERE ms.chama_id = chama LOOP
        FOR m IN 1..3 LOOP
            ref := format('DEMO%s%s%s', chama, u.member_number, m);
            PERFORM post_contribution(chama, u.user_id, 50000, 'savings', 'mpesa', ref || 'S', 'demo:' || ref || 'S',
                                      treasurer, 'admin', NULL, 'demo-seed', NULL,
                                      now() - make_interval(days => 30 * (4 - m)));
            PERFORM post_contribution(chama, u.user_id, 10000, 'welfare', 'cash', NULL, 'demo:' || ref || 'W',
                                      treasurer, 'admin', NULL, 'demo-seed', NULL,
                                      now() - make_interval(days => 30 * (4 - m)));
        END LOOP;
    END LOOP;

    INSERT INTO meetings (chama_id, title, agenda, location, scheduled_at, duration_minutes, created_by_user_id)
    VALUES (chama, 'Monthly meeting', 'Contributions, loan requests, welfare report', 'Community hall',
            date_trunc('day', now()) + interval '7 days 14 hours', 120,
            (SELECT user_id FROM memberships WHERE chama_id = chama AND role = 'secretary'));

    RAISE NOTICE 'demo chama % seeded: members +254712000001..5%', chama,
        CASE WHEN demo_pin IS NULL THEN ' (no PIN yet)' ELSE ', PIN as hashed by chamad hash-pin' END;
END
$seed$;

COMMIT;

\o /dev/null
SELECT refresh_chama_detailed_summary();
