-- Reconciliation (issue 9, scope 7): one row per run, one per drift found.
CREATE TABLE reconciliation_runs (
    id           BIGSERIAL   PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    findings     INTEGER     NOT NULL DEFAULT 0 CHECK (findings >= 0)
);

CREATE TABLE reconciliation_findings (
    id           BIGSERIAL   PRIMARY KEY,
    run_id       BIGINT      NOT NULL REFERENCES reconciliation_runs (id) ON DELETE CASCADE,
    kind         TEXT        NOT NULL CHECK (kind IN ('ledger_drift', 'fix_payment', 'missing_grant',
                                                      'duplicate_grant', 'refund_not_applied')),
    customer_id  BIGINT      REFERENCES customers (id) ON DELETE CASCADE,
    -- What the finding is about, e.g. `customer:7`, `fix:42`, `invoice:in_1`.
    subject      TEXT        NOT NULL,
    details      JSONB       NOT NULL,
    repairable   BOOLEAN     NOT NULL,
    resolved_at  TIMESTAMPTZ,
    resolved_by  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((resolved_at IS NULL) = (resolved_by IS NULL))
);

CREATE INDEX reconciliation_findings_open ON reconciliation_findings (run_id) WHERE resolved_at IS NULL;
CREATE INDEX reconciliation_findings_subject ON reconciliation_findings (subject);
