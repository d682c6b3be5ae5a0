ALTER TABLE customer_github_accounts DROP COLUMN granted_through;
DROP TABLE stripe_disputes;
UPDATE fixes SET billing_status = 'charged' WHERE billing_status = 'refunded';
ALTER TABLE fixes DROP CONSTRAINT fixes_billing_status_check;
ALTER TABLE fixes ADD CONSTRAINT fixes_billing_status_check
    CHECK (billing_status IN ('pending', 'credit', 'unpaid', 'charged', 'written_off'));
-- Ledger entries are append-only (a trigger forbids rewriting them), so
-- 'expired' entries cannot be removed: the old constraint comes back NOT VALID.
ALTER TABLE credit_ledger_entries DROP CONSTRAINT credit_ledger_entries_kind_check;
ALTER TABLE credit_ledger_entries ADD CONSTRAINT credit_ledger_entries_kind_check
    CHECK (kind IN ('signup_bonus', 'billing_bonus', 'subscription_grant', 'fix_consumed',
                    'purchase', 'admin_adjustment', 'refund')) NOT VALID;
ALTER TABLE customers DROP COLUMN disputed_at, DROP COLUMN pro_credits_period_end;
