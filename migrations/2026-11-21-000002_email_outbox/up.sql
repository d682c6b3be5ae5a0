-- The email outbox: written in the same transaction as the event that causes
-- the email; a worker sends queued rows through SMTP with retries.
CREATE TABLE email_outbox (
    id              BIGSERIAL PRIMARY KEY,
    customer_id     BIGINT      REFERENCES customers (id) ON DELETE SET NULL,
    kind            TEXT        NOT NULL,
    to_address      TEXT        NOT NULL,
    subject         TEXT        NOT NULL,
    text_body       TEXT        NOT NULL,
    html_body       TEXT        NOT NULL,
    idempotency_key TEXT        NOT NULL UNIQUE,
    status          TEXT        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INT         NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ
);
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at) WHERE status IN ('queued', 'sending');
CREATE INDEX email_outbox_customer_idx ON email_outbox (customer_id);
