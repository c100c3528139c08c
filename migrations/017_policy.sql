-- 017_policy: one policy for every protected action.
--
-- policy_actions names each protected action, the roles that may do it and
-- how many distinct officials must approve it (1 today: one official acts
-- alone; later actions, such as approving a loan, will ask for more).
-- Everything that decides "who may do this" reads these rows:
--   SQL     policy_allows(user, chama, action) in the statement that acts
--           (schema/15_policy.sql), whatever the menu showed;
--   C       the actions the member's role may do come back with the chama
--           they pick (policy_allowed(role)) and are kept in the session;
--   menus   a screen or option names its action ("policy":
--           "money.cash_record"); the USSD engine hides what the role may
--           not do, and a menu left with nothing to offer is hidden too.
-- A new protected action is a row here (in a new migration) and its name on
-- the menus; tests/integration/test_policy.py holds the three together.

CREATE TABLE policy_actions (
    action      text PRIMARY KEY CHECK (action ~ '^[a-z]+(\.[a-z_]+)+$' AND length(action) <= 64),
    roles       text[] NOT NULL CHECK (cardinality(roles) > 0 AND array_position(roles, NULL) IS NULL
                    AND roles <@ ARRAY['chairperson', 'treasurer', 'secretary', 'member']::text[]),
    approvals   integer NOT NULL DEFAULT 1 CHECK (approvals BETWEEN 1 AND 9),
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 200)
);
COMMENT ON TABLE policy_actions IS 'Who may do each protected action (roles) and how many distinct officials must approve it. Read by the functions of schema/15_policy.sql; the menus name the actions.';
-- (who may do what is itself audited: its trigger is bound in
-- schema/15_policy.sql, as a migration binds no trigger to a schema function)

-- Every action that was protected before this migration, with the roles
-- that were checked for it then: the three officials for the chama's
-- doors, the treasurer and the chairperson for money.  (The officials'
-- money lists were shown to the secretary too, who was then refused on
-- every item: a list now belongs to the action it leads to.)
INSERT INTO policy_actions (action, roles, description) VALUES
    ('chama.invite_create', '{chairperson,treasurer,secretary}', 'Make a new invite code for the chama'),
    ('chama.invite_phone', '{chairperson,treasurer,secretary}', 'Invite one phone number by SMS'),
    ('chama.join_decide', '{chairperson,treasurer,secretary}', 'See pending join requests, approve or reject them'),
    ('money.cash_record', '{treasurer,chairperson}', 'Record cash a member handed over'),
    ('money.suspense_allocate', '{treasurer,chairperson}', 'Say whose money an unmatched payment is'),
    ('money.payment_reverse', '{treasurer,chairperson}', 'Reverse a recorded payment');
