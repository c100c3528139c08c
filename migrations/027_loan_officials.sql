-- 027_loan_officials: who may act on the chama's loans as an official
-- (schema/73_loan_approvals.sql, menus/73_loans_officials.json: Officials
-- > Loans).  Approving a loan itself is approvals.decide (migration 020):
-- a loan is a request of kind 'loan' like any other, never decided by the
-- borrower or a guarantor of it.  Calling pledges and writing off are
-- requests too: the approvals column is how many other officials decide
-- them when the constitution has no approvals_count.
INSERT INTO policy_actions (action, roles, approvals, description) VALUES
    ('loans.book', '{chairperson,treasurer,secretary}', 1,
     'See the loans applied for, waiting in the queue or under review'),
    ('loans.disburse', '{treasurer,chairperson}', 1,
     'Pay out an approved loan again by M-Pesa, record it paid in cash (a second official confirms), or cancel it'),
    ('loans.call_pledges', '{treasurer,chairperson}', 2,
     'Ask to call the guarantors'' pledges of a defaulted loan (other officials approve)'),
    ('loans.write_off', '{treasurer,chairperson}', 2,
     'Ask to write off what is left of a defaulted loan (other officials approve)');
