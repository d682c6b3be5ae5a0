-- Per-key activity (issue 14 item 5): which API key reported each fix.
--
-- `fixes.api_key_id` is the key whose report created the fix: set once, by
-- the first report (the Action API authenticates every report with a key);
-- later reports of the same fix never change it, and a merge keeps the
-- survivor's. Rows written before this migration, and fixes not reported
-- through the Action API, have NULL.
--
-- The key must be one of the fix's customer's keys: the foreign key is on
-- (customer_id, api_key_id), so a fix can never be counted for another
-- customer's key. Keys are never deleted on their own (they are revoked);
-- should one be deleted, its fixes stay and only lose the link
-- (SET NULL on api_key_id alone; customer_id is NOT NULL).
--
-- The composite key needs a unique index on api_keys (customer_id, id);
-- it serves every lookup the old (customer_id) index served, which goes.
CREATE UNIQUE INDEX api_keys_customer_key ON api_keys (customer_id, id);
DROP INDEX api_keys_customer_id_idx;

ALTER TABLE fixes ADD COLUMN api_key_id BIGINT;
ALTER TABLE fixes ADD CONSTRAINT fixes_api_key_fkey
    FOREIGN KEY (customer_id, api_key_id) REFERENCES api_keys (customer_id, id)
    ON DELETE SET NULL (api_key_id);

-- The per-key counts of /keys and the admin's customer page (COUNT …
-- GROUP BY api_key_id for one customer, optionally since a time), and the
-- foreign key's lookup when a key is deleted.
CREATE INDEX fixes_api_key_idx ON fixes (customer_id, api_key_id, created_at)
    WHERE api_key_id IS NOT NULL;
