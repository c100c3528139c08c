-- 025_loan_apply: what applying for a loan (schema/71_loans.sql) relies on
-- beyond 024.  The queue is first come, first served by queued_at (then
-- id): a queued loan without it would have no place, so the table says so.
-- (Applying, the limit and the queue are a member's own actions on their
-- own loan: no policy rows, as for contributing; the officials' loan
-- actions come with their menus in 027.)
ALTER TABLE loans
    ADD CONSTRAINT loans_queued_has_a_place CHECK (status <> 'queued' OR queued_at IS NOT NULL);
