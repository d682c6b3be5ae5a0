DROP INDEX jobs_due_idx;
CREATE INDEX jobs_due_idx ON jobs (run_at, id) WHERE status IN ('queued', 'running');
DROP INDEX jobs_ordering_idx;
ALTER TABLE jobs DROP COLUMN held, DROP COLUMN ordering_key;
