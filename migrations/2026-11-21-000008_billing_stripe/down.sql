DROP TABLE payment_method_consents;
DROP TABLE stripe_subscriptions;
ALTER TABLE customers DROP COLUMN payment_failed_at;
DROP INDEX stripe_payment_methods_one_default;
ALTER TABLE stripe_payment_methods
    DROP COLUMN is_default,
    DROP COLUMN exp_year,
    DROP COLUMN exp_month,
    DROP COLUMN last4,
    DROP COLUMN brand;
DROP TABLE charges;
