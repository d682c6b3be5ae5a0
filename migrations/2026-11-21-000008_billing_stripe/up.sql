-- Billing through Stripe: charges for fixes beyond the credits (pay as you
-- go: an off-session PaymentIntent; Pro: an overage invoice item), the card
-- details and default of each payment method, card consents, and the
-- subscription's cancel-at-period-end flag.

-- One row per fix that money pays for, written in the transaction that
-- records the fix, before any call to Stripe; the `stripe.charge` job then
-- makes the Stripe object (idempotency key `fix:charge:<fix id>`) and stores
-- its id, so a retried job finds it instead of charging twice.
CREATE TABLE charges (
    id                       BIGSERIAL PRIMARY KEY,
    customer_id              BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    fix_id                   BIGINT      NOT NULL UNIQUE REFERENCES fixes (id) ON DELETE CASCADE,
    kind                     TEXT        NOT NULL CHECK (kind IN ('payg', 'overage')),
    amount_cents             BIGINT      NOT NULL CHECK (amount_cents > 0),
    currency                 TEXT        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    status                   TEXT        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'succeeded', 'failed')),
    stripe_payment_intent_id TEXT        UNIQUE,
    stripe_invoice_item_id   TEXT        UNIQUE,
    failure_message          TEXT,
    attempts                 INT         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX charges_customer_idx ON charges (customer_id, id DESC);
CREATE INDEX charges_failed_idx ON charges (customer_id) WHERE status = 'failed';

-- Card details as Stripe reports them (shown in the portal), and which card
-- is the default (charged off-session and by invoices; at most one).
ALTER TABLE stripe_payment_methods
    ADD COLUMN brand      TEXT,
    ADD COLUMN last4      TEXT,
    ADD COLUMN exp_month  INT,
    ADD COLUMN exp_year   INT,
    ADD COLUMN is_default BOOLEAN NOT NULL DEFAULT false;
CREATE UNIQUE INDEX stripe_payment_methods_one_default ON stripe_payment_methods (customer_id) WHERE is_default;

-- Set when a pay-as-you-go charge is declined: fixes beyond the credits are
-- refused until a card is fixed and the failed charges are paid.
ALTER TABLE customers ADD COLUMN payment_failed_at TIMESTAMPTZ;

-- Per-subscription state beyond what customers holds (kept off customers,
-- which is at diesel's 16-column limit): whether it ends at the period end.
CREATE TABLE stripe_subscriptions (
    id                   TEXT        PRIMARY KEY CHECK (id <> ''),
    customer_id          BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    cancel_at_period_end BOOLEAN     NOT NULL DEFAULT false,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stripe_subscriptions_customer_idx ON stripe_subscriptions (customer_id);

-- The customer's consent to charges to a saved card (mandate text shown
-- next to the checkbox, when, from which address, by whom).
CREATE TABLE payment_method_consents (
    id                BIGSERIAL PRIMARY KEY,
    customer_id       BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    user_id           BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    payment_method_id TEXT        NOT NULL,
    setup_intent_id   TEXT        NOT NULL UNIQUE,
    consent_text      TEXT        NOT NULL CHECK (consent_text <> ''),
    ip                TEXT,
    user_agent        TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payment_method_consents_customer_idx ON payment_method_consents (customer_id);
