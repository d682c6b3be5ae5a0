-- Pull request numbers cleared by up.sql are not restored.
DROP INDEX fixes_unpaid_idx;
CREATE INDEX fixes_unpaid_idx ON fixes (customer_id) WHERE billing_status = 'unpaid';
DROP TABLE fix_write_offs;
UPDATE fixes SET billing_status = 'unpaid' WHERE billing_status = 'written_off';
ALTER TABLE fixes DROP CONSTRAINT fixes_billing_status_check;
ALTER TABLE fixes ADD CONSTRAINT fixes_billing_status_check
    CHECK (billing_status IN ('pending', 'credit', 'unpaid', 'charged'));
CREATE INDEX fixes_customer_pr_idx ON fixes (customer_id, repository, pr_number);
DROP INDEX fixes_customer_pr_key;
DROP INDEX fixes_customer_issue_key;
