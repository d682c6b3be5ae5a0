DROP TABLE usage_reports;
DROP TABLE phase_records;
DROP TABLE fixes;
DROP TRIGGER credit_ledger_entries_append_only ON credit_ledger_entries;
DROP TABLE credit_ledger_entries;
DROP FUNCTION forbid_ledger_rewrite();
DROP TABLE api_keys;
DROP INDEX customers_email_lower_key;
DROP TABLE customers;
