#!/usr/bin/env bash
# Loans: repayment throughput and the daily jobs; figures go into the issue
# notes, never into tests.
#
#   books:   N active loans (one borrower each) over CHAMAS chamas, made as
#            the recipes of migrations/024_loans.sql make them: each loan
#            applied (a row of the terms, loan_product_merge), its schedule
#            computed by `chamad loan-schedule` (base/loansched.c: 16
#            shapes, KES 5,000-50,000, 6 or 12 months, reducing or flat,
#            1.5 %/month) and recorded by loan_schedule_record (which
#            re-checks it in SQL), the borrower's own savings pledged as
#            cover (the row loan_guarantor_self writes), then under review
#            and approved (status moves only: no officials' votes),
#            its payout written approved, then paid as payout_post pays it
#            (its disbursement entry, less its SMS to every member) and
#            loan_on_paid (interest posted, schedule dated from the day
#            paid, loan active).  Each chama's chairperson saved enough
#            for the float to pay every loan; each borrower saved KES
#            10,000 (their self cover).
#   repay:   pgbench, CLIENTS connections for DURATION s, each transaction
#            one loan_repay (prepared, as chamad's statements are) of a
#            random loan and a random KES 100-300,000 by M-Pesa (Dr
#            mpesa_float): repayments/s, p50/p99 ms from pgbench's
#            per-transaction log; then the same CLIENTS all on ONE loan
#            (KES 1-10 each: it never closes), which the loan's row lock
#            (FOR UPDATE, taken first) serialises.
#   jobs:    the clock JOBS_AT (default 2 months and 10 days after the
#            pay-out: instalments 1 and 2 overdue, 1 past its 30 days):
#            loan_penalties_run, loan_defaults_run, loan_reminders_run (the order of
#            src/ops/jobs.c), each timed with what it did, then all three
#            again (each must do nothing: keyed effects).
#   books:   `chamad verify-ledger` over it all must exit 0.
#   The setup's statements and their times: /tmp/loans-bench-setup.log.
#
#   bench/loans.sh [N] [CLIENTS] [CHAMAS]   (defaults 2000 16 100)
#   env: DURATION (s per pgbench run, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
clients=${2:-16}
chamas=${3:-100}
duration=${DURATION:-10}
paid_at='2027-01-04 10:00+03'
repay_at='2027-01-24 10:00+03'
jobs_at=${JOBS_AT:-2027-03-14 06:00+03}
tz=Africa/Nairobi
paybill=174379

make -s bin/chamad
eval "$(bash scripts/services.sh env bench)"
tmp=$(mktemp -d)
cleanup() {
  rm -rf "$tmp"
  bash scripts/services.sh stop bench || true
}
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
export PGOPTIONS='--client-min-messages=warning'
q() { psql -X -q -tA -v ON_ERROR_STOP=1 "$CHAMAD_DATABASE_URL" -c "$1"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

psql -X -q "$CHAMAD_DATABASE_URL" -c "DROP SCHEMA public CASCADE; DROP SCHEMA IF EXISTS bench CASCADE;
                                      CREATE SCHEMA public" 2>/dev/null
bin/chamad migrate >/dev/null

# the 16 schedule shapes, from the C that computes every applicant's
shape=0
: >"$tmp/shapes.csv"
: >"$tmp/shape_terms.csv"
for kes in 50000 20000 10000 5000; do
  for term in 6 12; do
    for method in reducing flat; do
      bin/chamad loan-schedule --principal "$kes" --rate-bp 150 --per month --method "$method" --term "$term" \
        --frequency monthly --start "${paid_at%% *}" | tail -n +2 | sed "s/^/$shape,/" >>"$tmp/shapes.csv"
      echo "$shape,$(( kes * 100 )),$term,$method" >>"$tmp/shape_terms.csv"
      shape=$(( shape + 1 ))
    done
  done
done

t0=$(date +%s%N)
psql -X -q -v ON_ERROR_STOP=1 -v n="$n" -v chamas="$chamas" -v paid_at="$paid_at" "$CHAMAD_DATABASE_URL" <<SQL
CREATE SCHEMA bench;
CREATE TABLE bench.shapes (shape int, n int, due date, principal bigint, interest bigint, instalment bigint,
                           balance bigint);
CREATE TABLE bench.shape_terms (shape int PRIMARY KEY, principal bigint, term int, method text);
\copy bench.shapes FROM '$tmp/shapes.csv' (FORMAT csv)
\copy bench.shape_terms FROM '$tmp/shape_terms.csv' (FORMAT csv)
SQL
psql -X -q -v ON_ERROR_STOP=1 -v n="$n" -v chamas="$chamas" -v paid_at="$paid_at" "$CHAMAD_DATABASE_URL" >/tmp/loans-bench-setup.log <<'SQL'
\timing on
SELECT set_config('chamad.channel', 'admin', false);
INSERT INTO chamas (name, type, contribution_amount_cents, contribution_frequency)
SELECT 'Bench Loans ' || g, 'mixed', 50000, 'monthly' FROM generate_series(1, :chamas) g;
-- per chama a chairperson (the float) and a treasurer (told of defaults)
INSERT INTO users (phone, full_name) SELECT '+25471' || lpad(g::text, 7, '0'), 'Chair ' || g
  FROM generate_series(1, :chamas) g;
INSERT INTO users (phone, full_name) SELECT '+25473' || lpad(g::text, 7, '0'), 'Treasurer ' || g
  FROM generate_series(1, :chamas) g;
INSERT INTO users (phone, full_name) SELECT '+25472' || lpad(g::text, 7, '0'), 'Borrower ' || g
  FROM generate_series(1, :n) g;
INSERT INTO memberships (user_id, chama_id, role, joined_at)
SELECT u.id, c.id, CASE left(u.phone, 6) WHEN '+25471' THEN 'chairperson' WHEN '+25473' THEN 'treasurer'
                                        ELSE 'member' END, '2025-01-01 09:00+03'
  FROM users u JOIN chamas c
    ON c.name = 'Bench Loans ' || (CASE left(u.phone, 6) WHEN '+25472' THEN 1 + (substr(u.phone, 7)::int - 1) % :chamas
                                                         ELSE substr(u.phone, 7)::int END)
 ORDER BY u.id;
-- savings by M-Pesa: each chairperson KES 60,000 per borrower of the chama
-- (the float every loan goes out of); each borrower's KES 10,000 below
SELECT count(*)
  FROM memberships m,
       LATERAL post_contribution(m.chama_id, m.user_id, 6000000::bigint * (SELECT count(*) FROM memberships x
                                     WHERE x.chama_id = m.chama_id AND x.role = 'member'),
                                 'savings', 'mpesa', 'QB' || lpad(m.user_id::text, 8, '0'), 'bench:seed:' || m.user_id,
                                 NULL, 'mpesa', NULL, 'bench', NULL, '2026-12-01 09:00+03') pc
 WHERE m.role = 'chairperson';

-- borrower g has loan g (ids in order: the database is fresh), shape (g-1) % 16
INSERT INTO loans (chama_id, user_id, principal_cents, interest_rate_bp, interest_rate_period, interest_method,
                   term_periods, repayment_frequency, status, product_key, terms, grace_periods, grace_kind,
                   fees_cents, application_key, channel, applied_at, created_at)
SELECT m.chama_id, u.id, st.principal, (t ->> 'rate_bp')::int, t ->> 'per',
       CASE t ->> 'method' WHEN 'flat' THEN 'flat' ELSE 'reducing_balance' END, st.term, 'monthly', 'applied',
       'bench', t, 0, NULL, 0, 'bench:apply:' || g, 'system',
       :'paid_at'::timestamptz - interval '1 day', :'paid_at'::timestamptz - interval '1 day'
  FROM generate_series(1, :n) g
  JOIN users u ON u.phone = '+25472' || lpad(g::text, 7, '0')
  JOIN memberships m ON m.user_id = u.id
  JOIN bench.shape_terms st ON st.shape = (g - 1) % 16
  CROSS JOIN LATERAL (SELECT loan_product_merge(jsonb_build_object('key', 'bench', 'rate_bp', 150, 'per', 'month',
                                                                   'method', st.method, 'frequency', 'monthly',
                                                                   'max_term', 12)) AS t) tt
 ORDER BY g;
DO $$ BEGIN
    IF (SELECT max(id) FROM loans) <> (SELECT count(*) FROM loans) THEN
        RAISE EXCEPTION 'bench: loan ids are not 1..N';
    END IF;
END $$;
SQL

# then loans 1..N, BATCH at a time (default all), each batch one transaction
for lo in $(seq 1 "${BATCH:-$n}" "$n"); do
  hi=$(( lo + ${BATCH:-$n} - 1 ))
  q 'ANALYZE' >/dev/null
  psql -X -q -1 -v ON_ERROR_STOP=1 -v lo="$lo" -v hi="$hi" -v paid_at="$paid_at" "$CHAMAD_DATABASE_URL" \
    >>/tmp/loans-bench-setup.log <<'SQL'
\timing on
SELECT set_config('chamad.channel', 'admin', false);
-- each borrower's KES 10,000 (their own cover)
SELECT count(*)
  FROM loans l,
       LATERAL post_contribution(l.chama_id, l.user_id, 1000000, 'savings', 'mpesa',
                                 'QB' || lpad(l.user_id::text, 8, '0'), 'bench:seed:' || l.user_id,
                                 NULL, 'mpesa', NULL, 'bench', NULL, '2026-12-01 09:00+03') pc
 WHERE l.id BETWEEN :lo AND :hi;
SELECT count(loan_schedule_record(l.id, (SELECT jsonb_agg(jsonb_build_object('n', s.n, 'due', s.due,
                                                 'principal', s.principal, 'interest', s.interest, 'fee', 0)
                                                 ORDER BY s.n)
                                           FROM bench.shapes s WHERE s.shape = (l.id - 1) % 16),
                                  (:'paid_at'::timestamptz AT TIME ZONE 'Africa/Nairobi')::date))
  FROM loans l WHERE l.id BETWEEN :lo AND :hi;
-- the borrower's own savings as cover: the row loan_guarantor_self writes
-- (no other holds: cover = min(principal, savings x self_cover_bp)),
-- written here in one statement for all the loans, to keep the setup short
INSERT INTO loan_guarantors (loan_id, guarantor_user_id, pledged_cents, status, responded_at, requested_at, channel)
SELECT l.id, l.user_id, least(l.principal_cents, member_free_savings_cents(l.chama_id, l.user_id)
                                                 * (l.terms -> 'guarantors' ->> 'self_cover_bp')::bigint / 10000),
       'accepted', :'paid_at'::timestamptz - interval '1 day', :'paid_at'::timestamptz - interval '1 day', 'system'
  FROM loans l WHERE l.id BETWEEN :lo AND :hi;
UPDATE loans SET status = 'under_review' WHERE id BETWEEN :lo AND :hi;
UPDATE loans l SET status = 'approved', approved_at = :'paid_at'::timestamptz - interval '1 hour',
       approved_by_user_id = (SELECT user_id FROM memberships WHERE chama_id = l.chama_id AND role = 'chairperson')
 WHERE id BETWEEN :lo AND :hi;
-- each payout as payout_request_approved writes it, then paid (the B2C
-- result) as payout_post pays it: the same disbursement entry (kind, key,
-- lines), the payout marked paid with it, then loan_on_paid (interest
-- posted, schedule dated, active).  Only payout_post's SMS are left out
-- (the borrower's receipt and one announcement per member of the chama:
-- 22 per loan here, most of the setup's time).
INSERT INTO payouts (chama_id, user_id, kind, amount_cents, method, status, phone, debit_kind, ref_table, ref_id,
                     memo, channel, requested_at, approved_at)
SELECT l.chama_id, l.user_id, 'loan', l.principal_cents, 'mpesa', 'approved', u.phone, 'loans_receivable', 'loans',
       l.id, 'Loan ' || l.id, 'system', :'paid_at'::timestamptz - interval '1 hour',
       :'paid_at'::timestamptz - interval '1 hour'
  FROM loans l JOIN users u ON u.id = l.user_id WHERE l.id BETWEEN :lo AND :hi ORDER BY l.id;
UPDATE loans l SET payout_id = p.id FROM payouts p
 WHERE p.ref_table = 'loans' AND p.ref_id = l.id AND l.id BETWEEN :lo AND :hi;
WITH e AS (
    SELECT p.id, lp.entry_id
      FROM payouts p,
           LATERAL ledger_post(p.chama_id, 'loan_disbursement', 'payout:' || p.id || ':paid',
                               jsonb_build_array(
                                   jsonb_build_object('kind', 'loans_receivable', 'side', 'debit',
                                                      'cents', p.amount_cents, 'user', p.user_id),
                                   jsonb_build_object('kind', 'mpesa_float', 'side', 'credit', 'cents', p.amount_cents)),
                               'payouts', p.id, NULL,
                               jsonb_build_object('action', 'loan_disbursed', 'user', p.user_id, 'entity_type', 'payouts',
                                                  'entity_id', p.id, 'direction', 'out', 'method', 'mpesa',
                                                  'external_ref', 'QBP' || lpad(p.id::text, 7, '0'),
                                                  'key', 'payout:' || p.id || ':paid',
                                                  'details', jsonb_build_object('kind', p.kind, 'memo', p.memo)),
                               NULL, 'mpesa', p.memo, :'paid_at') lp
     WHERE p.ref_id BETWEEN :lo AND :hi)
UPDATE payouts p SET status = 'paid', journal_entry_id = e.entry_id, mpesa_receipt = 'QBP' || lpad(p.id::text, 7, '0'),
       completed_at = :'paid_at' FROM e WHERE p.id = e.id;
SELECT count(loan_on_paid(p.ref_id, p.id, :'paid_at')::text) FROM payouts p WHERE p.ref_id BETWEEN :lo AND :hi;
SQL
done
q 'ANALYZE' >/dev/null
setup_ms=$(ms_since "$t0")
active=$(q "SELECT count(*) FROM loans WHERE status = 'active'")
[ "$active" = "$n" ] || { echo "loans bench: $active of $n loans active after the pay-outs" >&2; exit 1; }
owed=$(q "SELECT div(sum(loan_balance_cents(l)), 100) FROM loans l")
echo "chamad $(bin/chamad -V | cut -d' ' -f2), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $n active loans over $chamas chamas (KES $owed owed), made in $setup_ms ms"

# one pgbench run of loan_repay: ARGS: name, the loan expression, the
# amount expression.  Prints "name tps ok refused p50 p99 max".
repay_run() {
  local name=$1 loan=$2 amount=$3 before after total
  cat >"$tmp/$name.sql" <<SQL
\\set lid $loan
\\set amt $amount
SELECT outcome FROM loan_repay(:lid, :amt, 'mpesa', '{"kind": "mpesa_float"}', 'bench:' || gen_random_uuid(), NULL, NULL, NULL, 'mpesa', '$repay_at');
SQL
  before=$(q "SELECT count(*) FROM loan_repayments")
  (cd "$tmp" && pgbench -n -M prepared -c "$clients" -j 2 -T "$duration" -D nloans="$n" -l --log-prefix="$name" \
     -f "$name.sql" "$CHAMAD_DATABASE_URL" >"$name.out" 2>"$name.err") \
    || { echo "loans bench: pgbench $name failed" >&2; cat "$tmp/$name.err" "$tmp/$name.out" >&2; exit 1; }
  after=$(q "SELECT count(*) FROM loan_repayments")
  total=$(cat "$tmp/$name".[0-9]* | wc -l)
  cat "$tmp/$name".[0-9]* | awk '{print $3}' | sort -n | awk -v name="$name" -v dur="$duration" \
    -v ok=$(( after - before )) -v tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$tmp/$name.out")" \
    '{ v[NR] = $1 } END { p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1];
       printf "%s %.0f %d %d %.1f %.1f %.1f\n", name, tps, ok, NR - ok, p50 / 1000, p99 / 1000, v[NR] / 1000 }'
  # every logged transaction succeeded (pgbench logs failures too in 15)
  grep -q "number of failed transactions: 0 " "$tmp/$name.out" \
    || { echo "loans bench: pgbench $name had failed transactions" >&2; cat "$tmp/$name.out" >&2; exit 1; }
  [ "$total" -gt 0 ]
}
spread=$(repay_run spread 'random(1, :nloans)' 'random(1, 3000) * 100')
hot=$(repay_run one_loan 1 'random(1, 10) * 100')
hot_status=$(q "SELECT status FROM loans WHERE id = 1")

# the daily jobs, twice
job() { # name -> "ms count"
  local t n_
  t=$(date +%s%N)
  n_=$(q "SELECT loan_$1_run('$jobs_at', '$tz', '$paybill')")
  echo "$(ms_since "$t") $n_"
}
pen1=$(job penalties); def1=$(job defaults); rem1=$(job reminders)
pen2=$(job penalties); def2=$(job defaults); rem2=$(job reminders)
stats=$(q "SELECT (SELECT count(*) FROM loans WHERE status IN ('active', 'defaulted')) || ' ' ||
                  (SELECT count(*) FROM loan_schedules s JOIN loans l ON l.id = s.loan_id
                    WHERE l.status IN ('active', 'defaulted') AND s.status <> 'paid'
                      AND s.due_date < ('$jobs_at'::timestamptz AT TIME ZONE '$tz')::date) || ' ' ||
                  (SELECT count(*) FROM loan_penalties) || ' ' ||
                  (SELECT div(coalesce(sum(amount_cents), 0), 100) FROM loan_penalties) || ' ' ||
                  (SELECT count(*) FROM loans WHERE status = 'defaulted') || ' ' ||
                  (SELECT count(*) FROM loans WHERE status = 'closed')")
read -r open_loans overdue pen_rows pen_kes defaulted closed <<<"$stats"

t=$(date +%s%N)
set +e
vout=$(bin/chamad verify-ledger 2>&1)
vrc=$?
set -e
vms=$(ms_since "$t")

echo
echo "loan_repay, $clients clients, $duration s each (pgbench -M prepared; p50/p99/max per transaction):"
printf '  %-10s %8s %8s %8s %8s %8s %8s\n' run "repay/s" ok refused p50_ms p99_ms max_ms
for r in "$spread" "$hot"; do
  read -r name tps ok refused p50 p99 mx <<<"$r"
  printf '  %-10s %8s %8s %8s %8s %8s %8s\n' "$name" "$tps" "$ok" "$refused" "$p50" "$p99" "$mx"
done
echo "  (spread: random loan of $n, KES 100-300,000; one_loan: loan 1, KES 1-10, $hot_status after; closed loans: $closed)"
echo
echo "daily jobs at $jobs_at ($open_loans active/defaulted loans, $overdue instalments overdue and unpaid):"
printf '  %-18s %10s %10s %10s %10s\n' job "1st ms" "1st did" "2nd ms" "2nd did"
printf '  %-18s %10s %10s %10s %10s\n' loan_penalties_run $pen1 $pen2
printf '  %-18s %10s %10s %10s %10s\n' loan_defaults_run $def1 $def2
printf '  %-18s %10s %10s %10s %10s\n' loan_reminders_run $rem1 $rem2
echo "  (penalties: $pen_rows rows, KES $pen_kes; $defaulted loans defaulted; reminders: messages queued)"
echo
echo "verify-ledger ($vms ms, exit $vrc): $(echo "$vout" | tail -1)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$vrc" -eq 0 ] || { echo "$vout" >&2; exit 1; }
for second in "$pen2" "$def2" "$rem2"; do
  [ "${second#* }" = 0 ] || { echo "loans bench: a second run of a job did something ($second)" >&2; exit 1; }
done
