-- Users: the people who sign in to the portal. Each belongs to one customer
-- account. Invited users have no password until they accept the invite.
-- `role` is text so that 'admin' and 'member' need no schema rewrite.
CREATE TABLE users (
    id                 BIGSERIAL PRIMARY KEY,
    customer_id        BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    email              TEXT        NOT NULL CHECK (email = btrim(email) AND email <> ''),
    password_hash      TEXT,
    role               TEXT        NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'admin', 'member')),
    email_confirmed_at TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_customer_id_idx ON users (customer_id);

-- Single-use tokens mailed to users (email confirmation, password reset,
-- invite). Only the SHA-256 of the token is kept.
CREATE TABLE user_tokens (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT        NOT NULL CHECK (purpose IN ('email_confirmation', 'password_reset', 'invite')),
    token_hash BYTEA       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX user_tokens_user_id_idx ON user_tokens (user_id);

-- Browser sessions (tower-sessions records). `id` is the SHA-256 (hex) of
-- the session id in the cookie, so a leaked table does not leak sessions;
-- `user_id` lets "log out of all devices" find a user's sessions.
CREATE TABLE sessions (
    id          TEXT        PRIMARY KEY,
    data        JSONB       NOT NULL,
    expiry_date TIMESTAMPTZ NOT NULL,
    user_id     BIGINT      REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expiry_date_idx ON sessions (expiry_date);

-- Failed sign-in attempts, for throttling per account and per client IP.
CREATE TABLE login_attempts (
    id          BIGSERIAL PRIMARY KEY,
    email_lower TEXT        NOT NULL,
    ip          TEXT,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_email_idx ON login_attempts (email_lower, at);
CREATE INDEX login_attempts_ip_idx ON login_attempts (ip, at);
