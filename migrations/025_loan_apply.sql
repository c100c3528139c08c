-- 025_loan_apply: what applying for a loan (schema/71_loans.sql) adds to
-- 024.  member_loan_limit runs on every application, every Loans > My
-- limit and every LIMIT SMS and counts the member's open loans (pending
-- ones included: they count against the limit); 003's loans_open_idx
-- covers only the disbursed ones.
-- (Applying, the limit and the queue are a member's own actions on their
-- own loan: no policy rows, as for contributing; the officials' loan
-- actions come with their menus in 027.)
CREATE INDEX loans_member_open_idx ON loans (chama_id, user_id)
    WHERE status IN ('applied', 'queued', 'under_review', 'approved', 'disbursed', 'active', 'defaulted');
