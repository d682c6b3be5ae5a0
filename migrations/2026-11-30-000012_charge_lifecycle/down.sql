DROP INDEX charges_pending_idx;
ALTER TABLE charges DROP COLUMN processing_until;
ALTER TABLE charges DROP COLUMN stripe_invoice_id;
-- Back to one charge per fix: keep each fix's newest charge; map the new
-- statuses onto the old ones.
DELETE FROM charges c
 WHERE EXISTS (SELECT 1 FROM charges d WHERE d.fix_id = c.fix_id AND d.id > c.id);
UPDATE charges SET status = 'pending' WHERE status = 'invoiced';
UPDATE charges SET status = 'succeeded' WHERE status = 'refunded';
ALTER TABLE charges DROP CONSTRAINT charges_status_check;
ALTER TABLE charges ADD CONSTRAINT charges_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed'));
DROP INDEX charges_fix_idx;
DROP INDEX charges_one_live_per_fix;
ALTER TABLE charges ADD CONSTRAINT charges_fix_id_key UNIQUE (fix_id);
