-- Staff admins (issue 12, item 6): a TOTP second factor with one-time
-- recovery codes, and deactivation.

-- A deactivated user cannot sign in and has no sessions (they are deleted
-- in the transaction that deactivates). Only staff admins are deactivated
-- today; customers are suspended through their customer account instead.
ALTER TABLE users ADD COLUMN deactivated_at TIMESTAMPTZ;

-- One TOTP secret per staff admin (RFC 6238: SHA-1, 6 digits, 30 s).
-- `confirmed_at` is NULL while enrolling (the secret was shown, no code
-- confirmed yet). `last_used_step` is the 30-second step of the last code
-- accepted: a code of that step or an earlier one is refused (no replay).
-- The secret must be readable to check codes, so it is stored as is: keep
-- database dumps as secret as the database itself.
CREATE TABLE admin_totp (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret BYTEA NOT NULL CHECK (octet_length(secret) >= 16),
    confirmed_at TIMESTAMPTZ,
    last_used_step BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One-time recovery codes: SHA-256 of a random 80-bit code, shown once.
CREATE TABLE admin_recovery_codes (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL CHECK (octet_length(code_hash) = 32),
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, code_hash)
);
