-- 026_loan_guarantors: what the guarantors' holds of a loan have been
-- released for.  A pledge's release is pro rata to the principal repaid
-- (schema/72_loan_guarantors.sql, loan_holds_release): the released total
-- is always floor(principal repaid x total pledged / principal), all of it
-- once the principal is repaid, so a repayment and its reversal move the
-- same cents the opposite way.  That needs the principal repaid so far as
-- the holds counted it, kept here beside the loan (the repayment side keeps
-- its own figures on the schedule).
ALTER TABLE loans
    ADD COLUMN holds_principal_cents bigint NOT NULL DEFAULT 0 CHECK (holds_principal_cents >= 0),
    ADD CONSTRAINT loans_holds_principal_within CHECK (holds_principal_cents <= principal_cents);
COMMENT ON COLUMN loans.holds_principal_cents IS 'Principal repaid that the guarantors'' holds were released for (loan_holds_release, loan_holds_rehold).';

