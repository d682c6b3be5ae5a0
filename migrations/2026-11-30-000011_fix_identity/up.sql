-- One fix, one charge (ACTION_API.md; issue 9): a fix is found by its issue
-- OR its pull request, so neither number may belong to two fixes of the
-- same customer and repository. Reports are serialised per customer (row
-- lock) and these indexes back the rule.
--
-- Existing rows can share a pull request number: a fix first reported by
-- its pull request (`pr:<n>`) and again by its issue with that pull request
-- made two rows (the bug this fixes). The pull request stays with the
-- PR-only row (it has no other identity) or, failing that, the oldest row;
-- the others keep their issue number and `pr_url` and lose `pr_number`.
-- Issue numbers cannot repeat (`issue:<n>` keys were unique). Charges
-- already made twice are left for an admin (write-off or refund).
UPDATE fixes f SET pr_number = NULL, updated_at = now()
FROM (
    SELECT id,
           row_number() OVER (PARTITION BY customer_id, repository, pr_number
                              ORDER BY (issue_number IS NULL) DESC, id) AS rn
    FROM fixes
    WHERE pr_number IS NOT NULL
) d
WHERE f.id = d.id AND d.rn > 1;

CREATE UNIQUE INDEX fixes_customer_issue_key
    ON fixes (customer_id, repository, issue_number) WHERE issue_number IS NOT NULL;
CREATE UNIQUE INDEX fixes_customer_pr_key
    ON fixes (customer_id, repository, pr_number) WHERE pr_number IS NOT NULL;
DROP INDEX fixes_customer_pr_idx;

-- An admin may write off an unpaid fix (issue 9): status `written_off`,
-- the reason and time here (the audit log has who).
ALTER TABLE fixes DROP CONSTRAINT fixes_billing_status_check;
ALTER TABLE fixes ADD CONSTRAINT fixes_billing_status_check
    CHECK (billing_status IN ('pending', 'credit', 'unpaid', 'charged', 'written_off'));
CREATE TABLE fix_write_offs (
    fix_id      BIGINT      PRIMARY KEY REFERENCES fixes (id) ON DELETE CASCADE,
    customer_id BIGINT      NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    reason      TEXT        NOT NULL CHECK (reason = btrim(reason) AND reason <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Unpaid fixes are settled oldest first.
DROP INDEX fixes_unpaid_idx;
CREATE INDEX fixes_unpaid_idx ON fixes (customer_id, id) WHERE billing_status = 'unpaid';
