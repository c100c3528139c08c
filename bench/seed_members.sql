-- The bench members: :n phones :prefix<5 digits> named ":name <i>", each
-- with PIN hash :pin_hash and one active membership in the demo chama
-- (scripts/demo_seed.sql first).  Safe to repeat: a run that went wrong
-- leaves no locked accounts behind.  Used by bench/ussd.sh, login.sh, nav.sh:
--   psql -v n=400 -v prefix=+2547130 -v name='Bench Member' -v pin_hash=... -v tag=bench-ussd -f bench/seed_members.sql
BEGIN;
SELECT set_config('chamad.channel', 'admin', true), set_config('chamad.request_id', :'tag', true);
WITH new_users AS (
    INSERT INTO users (phone, full_name, pin_hash, phone_verified, phone_verified_at)
    SELECT :'prefix' || lpad(i::text, 5, '0'), :'name' || ' ' || i, :'pin_hash', true, now()
      FROM generate_series(1, :n) AS i
    ON CONFLICT (phone) WHERE deleted_at IS NULL DO NOTHING
    RETURNING id
), bench_users AS (
    SELECT id FROM new_users
    UNION
    SELECT id FROM users WHERE phone LIKE :'prefix' || '%' AND deleted_at IS NULL
)
INSERT INTO memberships (user_id, chama_id)
SELECT u.id, c.id
  FROM bench_users u
  JOIN chamas c ON c.name = 'Umoja Savings Group' AND c.deleted_at IS NULL
 WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.chama_id = c.id);
UPDATE users SET pin_hash = :'pin_hash', failed_pin_attempts = 0, locked_until = NULL
 WHERE phone LIKE :'prefix' || '%';
COMMIT;
