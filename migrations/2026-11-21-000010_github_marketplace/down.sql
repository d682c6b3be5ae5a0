DROP TABLE github_pending_changes;
DROP TABLE github_deliveries;
DROP TABLE customer_github_accounts;
