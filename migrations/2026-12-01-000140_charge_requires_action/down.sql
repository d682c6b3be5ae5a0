DROP INDEX charges_requires_action_idx;
ALTER TABLE charges DROP CONSTRAINT charges_requires_action_has_intent;
-- Back to the earlier statuses: a charge still waiting for authentication
-- becomes `pending` again (the charge job reads its PaymentIntent).
UPDATE charges SET status = 'pending' WHERE status = 'requires_action';
ALTER TABLE charges DROP CONSTRAINT charges_status_check;
ALTER TABLE charges ADD CONSTRAINT charges_status_check
    CHECK (status IN ('pending', 'invoiced', 'succeeded', 'failed', 'refunded'));
