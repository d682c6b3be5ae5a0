-- Per-key order in the job queue (issue 13). A job enqueued with an
-- ordering key (e.g. the Stripe Customer of a webhook event) while an
-- earlier job with the same key is still queued or running is `held`: no
-- worker claims it until the job before it is done or dead, which releases
-- the lowest held job of the key in the same transaction
-- (server::db::queue). Held jobs stay out of the claim index, so a claim
-- never scans the backlog behind a busy key.
ALTER TABLE jobs
    ADD COLUMN ordering_key TEXT CHECK (ordering_key <> ''),
    ADD COLUMN held BOOLEAN NOT NULL DEFAULT false;
-- The successor of a finished job and "is any job of this key pending?".
CREATE INDEX jobs_ordering_idx ON jobs (ordering_key, id)
    WHERE ordering_key IS NOT NULL AND status IN ('queued', 'running');
DROP INDEX jobs_due_idx;
CREATE INDEX jobs_due_idx ON jobs (run_at, id)
    WHERE status IN ('queued', 'running') AND NOT held;
