-- Issue 9: emails are queued as typed notifications and rendered at send
-- time. The domain writes `notification` (JSON tagged by kind, with the
-- facts the template needs); the email worker renders subject and bodies
-- when it sends and stores them on the row (so the admin console and a
-- resend see exactly what went out).
ALTER TABLE email_outbox ADD COLUMN notification jsonb;
ALTER TABLE email_outbox
    ALTER COLUMN subject DROP NOT NULL,
    ALTER COLUMN text_body DROP NOT NULL,
    ALTER COLUMN html_body DROP NOT NULL;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_notification_or_rendered CHECK (
    notification IS NOT NULL
    OR (subject IS NOT NULL AND text_body IS NOT NULL AND html_body IS NOT NULL)
);
