-- The job queue: rows claimed with FOR UPDATE SKIP LOCKED by any number of
-- workers; a claimed row carries a lease (locked_until) so a crashed worker's
-- job is picked up again once the lease runs out. Failed jobs come back with
-- exponential backoff until max_attempts, then stay 'dead' for a person.
CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT        NOT NULL CHECK (kind <> ''),
    payload      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    status       TEXT        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts     INT         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INT         NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    run_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until TIMESTAMPTZ,
    last_error   TEXT,
    dedupe_key   TEXT        UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_due_idx ON jobs (run_at, id) WHERE status IN ('queued', 'running');

-- Every Stripe webhook event received with a valid signature, stored before
-- it is acknowledged; the id is Stripe's, so a redelivery is recognised.
CREATE TABLE stripe_events (
    id           TEXT        PRIMARY KEY CHECK (id <> ''),
    type         TEXT        NOT NULL,
    created      TIMESTAMPTZ NOT NULL,
    payload      JSONB       NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at TIMESTAMPTZ,
    attempts     INT         NOT NULL DEFAULT 0,
    last_error   TEXT,
    status       TEXT        NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'failed')),
    CHECK ((status = 'processed') = (processed_at IS NOT NULL))
);
CREATE INDEX stripe_events_unprocessed_idx ON stripe_events (received_at) WHERE status <> 'processed';

-- Per-object "last applied" Stripe timestamps: an event older than what was
-- applied never overwrites newer state.
ALTER TABLE customers
    ADD COLUMN stripe_subscription_id  TEXT,
    ADD COLUMN subscription_updated_at TIMESTAMPTZ;

-- The customer's payment methods as Stripe's events describe them; the
-- customer has a payment method while any row is attached.
CREATE TABLE stripe_payment_methods (
    id            TEXT        PRIMARY KEY CHECK (id <> ''),
    customer_id   BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    attached      BOOLEAN     NOT NULL,
    last_event_at TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stripe_payment_methods_customer_idx ON stripe_payment_methods (customer_id) WHERE attached;
