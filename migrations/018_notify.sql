-- 018_notify: the outbox stores a message by key, rendered when it is sent.
--   * template (an SMS template key of the menus) and vars (its variables,
--     JSON) say what to send; the sender renders them in the recipient's
--     language when it sends, and stores the text it handed to the provider
--     in body, so the row shows what went out;
--   * body is therefore NULL until then; a row with no template (written by
--     an operator, a tool, or a daemon older than 018 during a rolling
--     upgrade) carries its finished text in body and is sent as is.  Every
--     row has one or the other.
-- notify(), the claim guard that keeps older senders off template rows, and
-- send_reminders() without its text parameters are in schema/60_notify.sql.
ALTER TABLE notifications
    ADD COLUMN template text CHECK (template ~ '^sms_[a-z0-9_]{1,60}$'),
    ADD COLUMN vars     jsonb CHECK (jsonb_typeof(vars) = 'object'),
    ALTER COLUMN body DROP NOT NULL,
    ADD CONSTRAINT notifications_template_or_body CHECK (template IS NOT NULL OR body IS NOT NULL),
    ADD CONSTRAINT notifications_vars_need_template CHECK (vars IS NULL OR template IS NOT NULL);
COMMENT ON COLUMN notifications.template IS 'The SMS template (menus, "sms" section) the sender renders at send time, in the recipient''s language then; NULL: body is sent as is.';
COMMENT ON COLUMN notifications.vars IS 'The template''s variables: text, numbers, {"template", "vars"} for a translated part, arrays for lines.';
COMMENT ON COLUMN notifications.body IS 'With a template: the text last handed to the provider (NULL until then). Without: the text to send.';
