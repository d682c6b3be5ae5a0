-- Rows never rendered cannot be sent by the previous code: they are marked
-- failed (visible in the admin console) with empty bodies.
ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_notification_or_rendered;
UPDATE email_outbox
   SET status = CASE WHEN status IN ('queued', 'sending') THEN 'failed' ELSE status END,
       last_error = CASE WHEN status IN ('queued', 'sending')
                         THEN 'not rendered before the notification migration was reverted'
                         ELSE last_error END,
       subject = coalesce(subject, kind),
       text_body = coalesce(text_body, ''),
       html_body = coalesce(html_body, '')
 WHERE subject IS NULL OR text_body IS NULL OR html_body IS NULL;
ALTER TABLE email_outbox
    ALTER COLUMN subject SET NOT NULL,
    ALTER COLUMN text_body SET NOT NULL,
    ALTER COLUMN html_body SET NOT NULL;
ALTER TABLE email_outbox DROP COLUMN notification;
