-- One-off: redact the tokens in the links of emails sent before the worker
-- redacted them on send. Mirrors `email::worker::redact_link_tokens`: the
-- value of every `token=` parameter (one or more of A-Z a-z 0-9 - _ % . ~ +)
-- becomes REDACTED, in the bodies and in every string of the stored
-- notification. None of those characters is special in JSON text, so the
-- notification is rewritten through its text form. Only `sent` rows: queued
-- and failed ones keep a working link (an admin can resend a failed email).
-- Idempotent (REDACTED is redacted to itself).
UPDATE email_outbox
SET text_body = regexp_replace(text_body, 'token=[A-Za-z0-9_.~%+-]+', 'token=REDACTED', 'g'),
    html_body = regexp_replace(html_body, 'token=[A-Za-z0-9_.~%+-]+', 'token=REDACTED', 'g'),
    notification = regexp_replace(notification::text, 'token=[A-Za-z0-9_.~%+-]+', 'token=REDACTED', 'g')::jsonb
WHERE status = 'sent'
  AND (text_body ~ 'token=[A-Za-z0-9_.~%+-]'
       OR html_body ~ 'token=[A-Za-z0-9_.~%+-]'
       OR notification::text ~ 'token=[A-Za-z0-9_.~%+-]');
