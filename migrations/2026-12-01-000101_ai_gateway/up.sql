-- The AI gateway (issue 10): virtual keys vended by the credential exchange
-- instead of the operator's provider keys, the usage the gateway measured on
-- every proxied call, and per-customer budget overrides.

-- One virtual key per exchange and provider. Only the SHA-256 of the secret
-- is stored; `prefix` is for display. The key works while `expires_at` is in
-- the future, its API key is neither revoked nor past its rotation grace,
-- and its customer is active (checked on every call, so revocation and
-- suspension apply at once).
CREATE TABLE ai_virtual_keys (
    id BIGSERIAL PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    provider TEXT NOT NULL CHECK (provider IN ('anthropic', 'openai', 'openrouter')),
    token_hash BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    prefix TEXT NOT NULL,
    github_job TEXT CHECK (char_length(github_job) <= 200),
    github_run TEXT CHECK (char_length(github_run) <= 200),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ai_virtual_keys_customer ON ai_virtual_keys (customer_id, created_at DESC);
CREATE INDEX ai_virtual_keys_api_key ON ai_virtual_keys (api_key_id);

-- One row per proxied call: the tokens read from the provider's own usage
-- fields (0 when the provider reported none, e.g. a refused call), the
-- upstream status (or the platform's, for a refusal after authentication).
CREATE TABLE ai_usage (
    id BIGSERIAL PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    virtual_key_id BIGINT NOT NULL REFERENCES ai_virtual_keys (id),
    provider TEXT NOT NULL,
    model TEXT NOT NULL CHECK (char_length(model) <= 200),
    input_tokens BIGINT NOT NULL CHECK (input_tokens >= 0),
    output_tokens BIGINT NOT NULL CHECK (output_tokens >= 0),
    status SMALLINT NOT NULL,
    streamed BOOLEAN NOT NULL,
    completed BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ai_usage_customer_day ON ai_usage (customer_id, created_at);
CREATE INDEX ai_usage_virtual_key ON ai_usage (virtual_key_id);

-- Per-customer limits that override the configured defaults
-- (AI_MAX_CONCURRENT_PER_CUSTOMER, AI_DAILY_TOKEN_BUDGET); NULL keeps the
-- default.
CREATE TABLE ai_budgets (
    customer_id BIGINT PRIMARY KEY REFERENCES customers (id),
    max_concurrent INTEGER CHECK (max_concurrent >= 0),
    daily_tokens BIGINT CHECK (daily_tokens >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE usage_reports IS
    'What the Action claimed (POST /api/v1/usage/report); ai_usage holds what the gateway measured.';
