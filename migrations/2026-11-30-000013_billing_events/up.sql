-- Issue 9, subscription state / webhooks / grants / refunds / Marketplace.

-- The end of the Pro period whose credits were granted last (from the paid
-- invoice's subscription line): overage starts only once the current
-- period's credits are granted (and used). A dispute flags the customer.
ALTER TABLE customers
    ADD COLUMN pro_credits_period_end TIMESTAMPTZ,
    ADD COLUMN disputed_at            TIMESTAMPTZ;
-- Subscriptions running before this migration were granted under the old
-- rule: their current period counts as granted.
UPDATE customers SET pro_credits_period_end = current_period_end
 WHERE subscription_status IN ('active', 'trialing', 'past_due');

-- Pro period credits left over when the next period's are granted expire
-- (ledger kind 'expired', key 'expire:invoice:<previous invoice id>').
ALTER TABLE credit_ledger_entries DROP CONSTRAINT credit_ledger_entries_kind_check;
ALTER TABLE credit_ledger_entries ADD CONSTRAINT credit_ledger_entries_kind_check
    CHECK (kind IN ('signup_bonus', 'billing_bonus', 'subscription_grant', 'fix_consumed',
                    'purchase', 'admin_adjustment', 'refund', 'expired'));

-- A pay-as-you-go charge refunded in full: the charge 'refunded', its fix
-- 'refunded'. ('invoiced' is the overage state of issue 9's charges slice.)
-- charges.status already allows 'refunded' (migration 000012).
ALTER TABLE fixes DROP CONSTRAINT fixes_billing_status_check;
ALTER TABLE fixes ADD CONSTRAINT fixes_billing_status_check
    CHECK (billing_status IN ('pending', 'credit', 'unpaid', 'charged', 'written_off', 'refunded'));

-- Disputes (chargebacks) as Stripe reports them: opened by
-- charge.dispute.created, outcome ('won', 'lost', …) by charge.dispute.closed.
CREATE TABLE stripe_disputes (
    id               TEXT        PRIMARY KEY,
    customer_id      BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    charge_id        BIGINT      REFERENCES charges (id) ON DELETE SET NULL,
    stripe_charge_id TEXT        NOT NULL,
    amount_cents     BIGINT      NOT NULL,
    currency         TEXT        NOT NULL,
    reason           TEXT        NOT NULL,
    status           TEXT        NOT NULL,
    opened_at        TIMESTAMPTZ NOT NULL,
    closed_at        TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stripe_disputes_customer_idx ON stripe_disputes (customer_id);

-- GitHub Marketplace: the end of the last Pro period granted to the
-- account; a moment before it is already paid for, whatever
-- next_billing_date does later.
ALTER TABLE customer_github_accounts ADD COLUMN granted_through TIMESTAMPTZ;
