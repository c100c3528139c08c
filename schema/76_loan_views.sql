-- 76_loan_views: what a member sees of their loans (USSD Loans > My loans,
-- Schedule; SMS LOAN), and the loans' side of `chamad verify-ledger`.
--
-- There is one book.  A loan's balance as a member reads it is the sum of
-- the lines on the borrower's loans_receivable account whose entries belong
-- to that loan (loan_ledger_cents), never the loan row's cached columns:
-- a cached column that drifted from the books shows as a verify-ledger
-- problem, not as a wrong figure on a member's phone.
--
-- Which entries belong to a loan: every posting of 024's recipes names its
-- loan through its reference, directly or through the row that caused it:
--   ref_table 'loans' (interest, penalty, pledge called, write-off)
--   ref_table 'payouts' of a payout with ref_table 'loans' (disbursement)
--   ref_table 'loan_repayments', 'loan_penalties', 'loan_guarantors' of the loan
--   ref_table 'approvals' of an approval of a loan kind whose ref_id is the loan
--   the entries loan_repayments and loan_penalties name (journal_entry_id,
--   reversal_entry_id)
--   and the reversal of any of these (reverses_entry_id).
-- An entry on a loans_receivable account that none of these reaches is a
-- verify-ledger problem of its own (the member's account and the sum of
-- their loans then disagree).

-- The journal entries that belong to loan p_loan.
CREATE OR REPLACE FUNCTION loan_entry_ids(p_loan bigint) RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    WITH direct AS (
        SELECT e.id FROM journal_entries e WHERE e.ref_table = 'loans' AND e.ref_id = p_loan
        UNION SELECT e.id FROM journal_entries e JOIN payouts p ON e.ref_table = 'payouts' AND e.ref_id = p.id
         WHERE p.ref_table = 'loans' AND p.ref_id = p_loan
        UNION SELECT p.journal_entry_id FROM payouts p WHERE p.ref_table = 'loans' AND p.ref_id = p_loan
                AND p.journal_entry_id IS NOT NULL
        UNION SELECT e.id FROM journal_entries e JOIN loan_repayments r ON e.ref_table = 'loan_repayments'
                AND e.ref_id = r.id WHERE r.loan_id = p_loan
        UNION SELECT e.id FROM journal_entries e JOIN loan_penalties n ON e.ref_table = 'loan_penalties'
                AND e.ref_id = n.id WHERE n.loan_id = p_loan
        UNION SELECT e.id FROM journal_entries e JOIN loan_guarantors g ON e.ref_table = 'loan_guarantors'
                AND e.ref_id = g.id WHERE g.loan_id = p_loan
        UNION SELECT e.id FROM journal_entries e JOIN approvals a ON e.ref_table = 'approvals' AND e.ref_id = a.id
         WHERE a.kind LIKE 'loan%' AND a.ref_id = p_loan
        UNION SELECT r.journal_entry_id FROM loan_repayments r WHERE r.loan_id = p_loan
                AND r.journal_entry_id IS NOT NULL
        UNION SELECT r.reversal_entry_id FROM loan_repayments r WHERE r.loan_id = p_loan
                AND r.reversal_entry_id IS NOT NULL
        UNION SELECT n.journal_entry_id FROM loan_penalties n WHERE n.loan_id = p_loan)
    SELECT id FROM direct
    UNION SELECT e.id FROM journal_entries e WHERE e.reverses_entry_id IN (SELECT id FROM direct)
$$;

-- What the borrower owes on loan p_loan by the books: the net of the lines
-- of the loan's entries on the borrower's loans_receivable account.
CREATE OR REPLACE FUNCTION loan_ledger_cents(p_loan bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(CASE WHEN jl.side = a.normal_side THEN jl.amount_cents ELSE -jl.amount_cents END), 0)::bigint
      FROM loans l
      JOIN ledger_accounts a ON a.chama_id = l.chama_id AND a.user_id = l.user_id AND a.kind = 'loans_receivable'
      JOIN journal_lines jl ON jl.account_id = a.id
     WHERE l.id = p_loan AND jl.entry_id IN (SELECT loan_entry_ids(p_loan))
$$;

-- One row per loan a member sees (Loans > My loans, SMS LOAN): not the
-- ones that ended (closed, rejected, cancelled, written off).  balance_cents
-- is the ledger's; the next instalment is the oldest with something left
-- on it (loan_schedules: what was due less what was paid), shown only once
-- the loan is paid out (before that the dates are not fixed).
CREATE OR REPLACE VIEW loan_member_views AS
SELECT l.id AS loan_id, l.chama_id, l.user_id, c.name AS chama_name, l.status, l.principal_cents,
       loan_ledger_cents(l.id) AS balance_cents,
       n.installment_no AS next_no, n.due_date AS next_due, n.left_cents AS next_cents,
       l.term_periods, l.applied_at
  FROM loans l
  JOIN chamas c ON c.id = l.chama_id AND c.deleted_at IS NULL
  LEFT JOIN LATERAL (
        SELECT s.installment_no, s.due_date,
               s.principal_due_cents + s.interest_due_cents + s.penalty_due_cents + s.fee_due_cents
               - s.principal_paid_cents - s.interest_paid_cents - s.penalty_paid_cents - s.fee_paid_cents AS left_cents
          FROM loan_schedules s
         WHERE s.loan_id = l.id AND l.status IN ('active', 'defaulted', 'disbursed')
           AND s.principal_due_cents + s.interest_due_cents + s.penalty_due_cents + s.fee_due_cents
               > s.principal_paid_cents + s.interest_paid_cents + s.penalty_paid_cents + s.fee_paid_cents
         ORDER BY s.installment_no LIMIT 1) n ON true
 WHERE l.status IN ('applied', 'queued', 'under_review', 'approved', 'disbursed', 'active', 'defaulted');

-- A loan's schedule as the member reads it (Loans > Schedule): each
-- instalment's due date, what it asks in all (principal, interest, fee,
-- penalties levied on it), what was paid and what is left.
CREATE OR REPLACE VIEW loan_schedule_views AS
SELECT s.loan_id, l.user_id, l.chama_id, l.status, s.installment_no, s.due_date,
       s.principal_due_cents, s.interest_due_cents, s.fee_due_cents, s.penalty_due_cents,
       s.principal_due_cents + s.interest_due_cents + s.fee_due_cents + s.penalty_due_cents AS due_cents,
       s.principal_paid_cents + s.interest_paid_cents + s.fee_paid_cents + s.penalty_paid_cents AS paid_cents,
       s.principal_due_cents + s.interest_due_cents + s.fee_due_cents + s.penalty_due_cents
       - s.principal_paid_cents - s.interest_paid_cents - s.fee_paid_cents - s.penalty_paid_cents AS left_cents
  FROM loan_schedules s JOIN loans l ON l.id = s.loan_id;
