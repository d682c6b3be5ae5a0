DROP INDEX fixes_api_key_idx;
ALTER TABLE fixes DROP CONSTRAINT fixes_api_key_fkey;
ALTER TABLE fixes DROP COLUMN api_key_id;
CREATE INDEX api_keys_customer_id_idx ON api_keys (customer_id);
DROP INDEX api_keys_customer_key;
