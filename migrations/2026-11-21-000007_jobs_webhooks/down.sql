DROP TABLE stripe_payment_methods;
ALTER TABLE customers
    DROP COLUMN subscription_updated_at,
    DROP COLUMN stripe_subscription_id;
DROP TABLE stripe_events;
DROP TABLE jobs;
