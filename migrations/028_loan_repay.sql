-- 028_loan_repay: who may record and reverse loan repayments.  The
-- functions are in schema/74_loan_repay.sql; the tables are 024's.  A
-- member repays their own loan (M-Pesa, or from savings with the
-- officials' approval, kind loan_offset): no policy row, the statement
-- checks the loan is theirs.
INSERT INTO policy_actions (action, roles, approvals, description) VALUES
    ('loans.repay_cash', '{treasurer,chairperson}', 1, 'Record cash a member handed over to repay their loan'),
    ('loans.repay_reverse', '{treasurer,chairperson}', 2,
     'Ask to reverse a recorded loan repayment (two other officials approve)');
