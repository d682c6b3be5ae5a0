-- GitHub Marketplace provisioning (POST /webhooks/github).

-- The GitHub account (user or organization) a customer bought through the
-- Marketplace with, one per customer: GitHub's numeric id (unique: one
-- customer per account; stable across renames) and its login as of the
-- latest event. A table of its own rather than columns on customers, whose
-- diesel table is at its 16-column limit.
CREATE TABLE customer_github_accounts (
    customer_id          BIGINT      PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    github_account_id    BIGINT      NOT NULL UNIQUE,
    github_account_login TEXT        NOT NULL CHECK (github_account_login <> ''),
    github_account_type  TEXT        NOT NULL CHECK (github_account_type <> ''),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every webhook delivery received with a valid X-Hub-Signature-256, stored
-- under GitHub's X-GitHub-Delivery GUID (so a redelivery is recognised).
-- 'processed': applied (or nothing to apply); 'ignored': an event or action
-- we do not handle (e.g. ping), kept for the record; 'failed': applying it
-- failed (error says why) and nothing of it was applied; a redelivery of a
-- failed delivery is applied again.
CREATE TABLE github_deliveries (
    delivery_id    TEXT        PRIMARY KEY CHECK (delivery_id <> '' AND length(delivery_id) <= 100),
    event          TEXT        NOT NULL CHECK (event <> ''),
    action         TEXT,
    account_id     BIGINT,
    account_login  TEXT,
    customer_id    BIGINT      REFERENCES customers (id) ON DELETE SET NULL,
    payload        JSONB       NOT NULL,
    status         TEXT        NOT NULL CHECK (status IN ('processed', 'ignored', 'failed')),
    attempts       INT         NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    error          TEXT,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at   TIMESTAMPTZ,
    CHECK ((status = 'failed') = (error IS NOT NULL)),
    CHECK ((status = 'failed') = (processed_at IS NULL))
);
CREATE INDEX github_deliveries_account_idx ON github_deliveries (account_id, received_at);
CREATE INDEX github_deliveries_failed_idx ON github_deliveries (received_at) WHERE status = 'failed';

-- Plan changes GitHub announced for a later date (marketplace_purchase
-- pending_change): applied at effective_at by the github.apply_pending_change
-- job, dropped by pending_change_cancelled (or superseded by a newer
-- announcement or an immediate change). At most one pending per customer.
CREATE TABLE github_pending_changes (
    id                  BIGSERIAL   PRIMARY KEY,
    customer_id         BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    delivery_id         TEXT        NOT NULL REFERENCES github_deliveries (delivery_id),
    marketplace_plan_id BIGINT      NOT NULL,
    plan                TEXT        NOT NULL CHECK (plan IN ('trial', 'payg', 'pro')),
    effective_at        TIMESTAMPTZ NOT NULL,
    status              TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'cancelled')),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at         TIMESTAMPTZ,
    CHECK ((status = 'pending') = (resolved_at IS NULL))
);
CREATE UNIQUE INDEX github_pending_changes_one_per_customer ON github_pending_changes (customer_id) WHERE status = 'pending';
CREATE INDEX github_pending_changes_due_idx ON github_pending_changes (effective_at) WHERE status = 'pending';
