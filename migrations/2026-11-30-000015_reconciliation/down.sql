DROP TABLE reconciliation_findings;
DROP TABLE reconciliation_runs;
