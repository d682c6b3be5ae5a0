-- Issue 5: staff admins, runtime feature flags, the admin audit log and the
-- manual signup approval queue.

-- Staff admins are users with role 'staff_admin' and no customer account
-- (customer_id NULL). The role is spelled apart from a customer account's own
-- 'admin' role so the two can never be confused; the CHECK ties the two
-- columns together: every customer user has a customer, no staff admin has.
ALTER TABLE users ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('owner', 'admin', 'member', 'staff_admin'));
ALTER TABLE users ADD CONSTRAINT users_staff_admin_has_no_customer
    CHECK ((role = 'staff_admin') = (customer_id IS NULL));

-- Feature flags and kill switches switched at runtime. A missing row means the
-- flag's built-in default (server::flags::Flag::default_value); environment
-- variables can force a flag whatever the row says.
CREATE TABLE feature_flags (
    key         TEXT        PRIMARY KEY CHECK (key IN ('billing_enabled', 'auto_provision', 'signups_enabled', 'maintenance')),
    enabled     BOOLEAN     NOT NULL,
    updated_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every admin action: who, when, what, on which object, the state before and
-- after. Written in the same transaction as the action; append-only.
CREATE TABLE admin_audit_log (
    id            BIGSERIAL   PRIMARY KEY,
    actor_user_id BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    actor_email   TEXT        NOT NULL,
    action        TEXT        NOT NULL CHECK (action <> ''),
    target_type   TEXT        NOT NULL CHECK (target_type <> ''),
    target_id     TEXT,
    customer_id   BIGINT      REFERENCES customers (id) ON DELETE SET NULL,
    reason        TEXT,
    before        JSONB,
    after         JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_log_created_idx ON admin_audit_log (id DESC);
CREATE INDEX admin_audit_log_customer_idx ON admin_audit_log (customer_id, id DESC);

-- Only ON DELETE SET NULL of a referenced user/customer may touch a row; any
-- other update and every delete are refused.
CREATE FUNCTION forbid_audit_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.id, NEW.actor_email, NEW.action, NEW.target_type, NEW.target_id, NEW.reason,
            NEW.before, NEW.after, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.actor_email, OLD.action, OLD.target_type, OLD.target_id, OLD.reason,
            OLD.before, OLD.after, OLD.created_at)
       AND (NEW.actor_user_id IS NULL OR NEW.actor_user_id = OLD.actor_user_id)
       AND (NEW.customer_id IS NULL OR NEW.customer_id = OLD.customer_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'admin_audit_log is append-only';
END;
$$;
CREATE TRIGGER admin_audit_log_append_only
    BEFORE UPDATE OR DELETE ON admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION forbid_audit_rewrite();

-- Signups waiting for an admin while the auto_provision flag is off. At most
-- one pending request per email (any case).
CREATE TABLE signup_requests (
    id          BIGSERIAL   PRIMARY KEY,
    email       TEXT        NOT NULL CHECK (email = btrim(email) AND email <> ''),
    name        TEXT        NOT NULL CHECK (name <> ''),
    source      TEXT        NOT NULL CHECK (source IN ('direct', 'gh_marketplace', 'early_access')),
    channel     TEXT        NOT NULL CHECK (channel IN ('signup_form', 'register', 'api_onboard')),
    status      TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    customer_id BIGINT      REFERENCES customers (id) ON DELETE SET NULL,
    decided_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    decided_at  TIMESTAMPTZ,
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX signup_requests_pending_email_key ON signup_requests (lower(email)) WHERE status = 'pending';
CREATE INDEX signup_requests_status_idx ON signup_requests (status, id);

-- The admin console's customer search by Stripe id / webhook events by customer.
CREATE INDEX stripe_events_customer_idx ON stripe_events ((payload #>> '{data,object,customer}'));
