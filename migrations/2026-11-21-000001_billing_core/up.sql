-- Customers: one account that pays for fixes. The cached `credit_balance`
-- always equals the sum of the customer's ledger entries and can never be
-- negative (CHECK below; the ledger code keeps them equal under a row lock).
CREATE TABLE customers (
    id                  BIGSERIAL PRIMARY KEY,
    email               TEXT        NOT NULL CHECK (email = btrim(email) AND email <> ''),
    name                TEXT        NOT NULL CHECK (name <> ''),
    source              TEXT        NOT NULL CHECK (source IN ('direct', 'gh_marketplace', 'early_access')),
    plan                TEXT        NOT NULL DEFAULT 'trial' CHECK (plan IN ('trial', 'payg', 'pro')),
    status              TEXT        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    credit_balance      BIGINT      NOT NULL DEFAULT 0 CHECK (credit_balance >= 0),
    stripe_customer_id  TEXT        UNIQUE,
    subscription_status TEXT,
    has_payment_method  BOOLEAN     NOT NULL DEFAULT false,
    current_period_end  TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Email is unique case-insensitively.
CREATE UNIQUE INDEX customers_email_lower_key ON customers (lower(email));

-- API keys: only the SHA-256 of the secret and a short display prefix are kept.
CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name         TEXT        NOT NULL,
    prefix       TEXT        NOT NULL,
    token_hash   BYTEA       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_customer_id_idx ON api_keys (customer_id);

-- The credit ledger: append-only. Amounts are signed credits.
CREATE TABLE credit_ledger_entries (
    id              BIGSERIAL PRIMARY KEY,
    customer_id     BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    amount          BIGINT      NOT NULL CHECK (amount <> 0),
    kind            TEXT        NOT NULL CHECK (kind IN ('signup_bonus', 'billing_bonus', 'subscription_grant',
                                                         'fix_consumed', 'purchase', 'admin_adjustment', 'refund')),
    reference       TEXT,
    idempotency_key TEXT        NOT NULL,
    balance_after   BIGINT      NOT NULL CHECK (balance_after >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX credit_ledger_entries_customer_idx ON credit_ledger_entries (customer_id, id DESC);

CREATE FUNCTION forbid_ledger_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger_entries is append-only';
END;
$$;
CREATE TRIGGER credit_ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON credit_ledger_entries
    FOR EACH ROW EXECUTE FUNCTION forbid_ledger_rewrite();

-- Fixes: one row per fix identity (customer, repository, issue number or,
-- without one, pull request number), whatever the number of reports.
CREATE TABLE fixes (
    id               BIGSERIAL PRIMARY KEY,
    customer_id      BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    repository       TEXT        NOT NULL,
    fix_key          TEXT        NOT NULL,
    issue_number     BIGINT,
    pr_number        BIGINT,
    pr_url           TEXT,
    pr_title         TEXT,
    issue_title      TEXT,
    issue_url        TEXT,
    fix_commit       TEXT,
    metadata         JSONB,
    billing_status   TEXT        NOT NULL DEFAULT 'pending'
                     CHECK (billing_status IN ('pending', 'credit', 'unpaid', 'charged')),
    ledger_entry_id  BIGINT      REFERENCES credit_ledger_entries (id),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, repository, fix_key),
    CHECK (issue_number IS NOT NULL OR pr_number IS NOT NULL)
);
CREATE INDEX fixes_customer_pr_idx ON fixes (customer_id, repository, pr_number);
CREATE INDEX fixes_unpaid_idx ON fixes (customer_id) WHERE billing_status = 'unpaid';

-- Phase results stored by the Action (scan, validation, mitigation); the
-- latest report for one (repository, commit, phase, issue) wins.
CREATE TABLE phase_records (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    repository   TEXT        NOT NULL,
    commit_sha   TEXT        NOT NULL,
    phase        TEXT        NOT NULL CHECK (phase IN ('scan', 'validation', 'mitigation')),
    issue_number BIGINT      NOT NULL DEFAULT 0,
    data         JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, repository, commit_sha, phase, issue_number)
);

-- AI usage reports (fire and forget from the Action).
CREATE TABLE usage_reports (
    id            BIGSERIAL PRIMARY KEY,
    customer_id   BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    provider      TEXT        NOT NULL,
    tokens_used   BIGINT      NOT NULL CHECK (tokens_used >= 0),
    request_count BIGINT      NOT NULL CHECK (request_count >= 0),
    job_id        TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX usage_reports_customer_idx ON usage_reports (customer_id, created_at);
