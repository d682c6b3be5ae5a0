-- Issue 14: a card payment that needs the customer's authentication
-- (3-D Secure / SCA). An off-session PaymentIntent the bank wants
-- confirmed is neither paid nor declined: the charge waits, status
-- `requires_action`, with its PaymentIntent kept, until the customer
-- completes the bank's check on /billing/authenticate (then `succeeded`)
-- or fails it (then `failed`). It is the fix's live charge (the partial
-- unique index `charges_one_live_per_fix` counts every status but
-- `failed`).
ALTER TABLE charges DROP CONSTRAINT charges_status_check;
ALTER TABLE charges ADD CONSTRAINT charges_status_check
    CHECK (status IN ('pending', 'requires_action', 'invoiced', 'succeeded', 'failed', 'refunded'));
-- A charge that waits for the customer's authentication knows its
-- PaymentIntent (the page completes that one).
ALTER TABLE charges ADD CONSTRAINT charges_requires_action_has_intent
    CHECK (status <> 'requires_action' OR stripe_payment_intent_id IS NOT NULL);
-- The dashboard's notice lists them per customer.
CREATE INDEX charges_requires_action_idx ON charges (customer_id) WHERE status = 'requires_action';
