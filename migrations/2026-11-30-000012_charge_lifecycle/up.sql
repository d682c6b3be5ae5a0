-- Issue 9: one idempotency key per charge for its whole life.
--
-- A declined charge stays `failed` for good; when the customer adds a
-- working card the still-unpaid fix gets a NEW charge (new id, so a new
-- processor idempotency key `charge:<id>`). So a fix may have many failed
-- charges but at most one live one (any other status).
ALTER TABLE charges DROP CONSTRAINT charges_fix_id_key;
CREATE UNIQUE INDEX charges_one_live_per_fix ON charges (fix_id) WHERE status <> 'failed';
CREATE INDEX charges_fix_idx ON charges (fix_id);

-- `invoiced`: an overage item exists, waiting for its invoice to be paid.
-- `refunded`: paid, then given back.
ALTER TABLE charges DROP CONSTRAINT charges_status_check;
ALTER TABLE charges ADD CONSTRAINT charges_status_check
    CHECK (status IN ('pending', 'invoiced', 'succeeded', 'failed', 'refunded'));

-- The invoice that paid an overage item.
ALTER TABLE charges ADD COLUMN stripe_invoice_id TEXT;

-- A worker's lease on a pending charge while it talks to the processor, so
-- two workers never create two processor charges for one row.
ALTER TABLE charges ADD COLUMN processing_until TIMESTAMPTZ;

-- The sweeper looks for charges stuck pending.
CREATE INDEX charges_pending_idx ON charges (updated_at) WHERE status = 'pending';
