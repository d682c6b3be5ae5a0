//! Reconciliation in the admin console (issue 9, scope 7): a run on
//! demand, and the repair of a safe finding with its audit entry in the
//! same transaction. The checks and the repair live in the domain
//! ([`crate::server::billing::reconciliation`]).

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::Admin;
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::reconciliation::{repair, Repaired};
use crate::server::billing::work::ReconcileJob;
use crate::server::billing::BillingError;
use crate::server::db::queue::BackgroundJob;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

/// Enqueues a reconciliation run now (the job worker runs it) and writes
/// the audit entry (`reconciliation.run`), in one transaction.
///
/// Errors: [`BillingError::Database`].
pub async fn request_run(conn: &mut AsyncPgConnection, actor: &Admin) -> Result<(), BillingError> {
    conn.transaction(async |conn| {
        let job_id = ReconcileJob {}.enqueue(conn, None).await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "reconciliation.run",
                target_type: "job",
                target_id: job_id.map(|id| id.to_string()),
                customer_id: None,
                reason: None,
                before: None,
                after: Some(json!({ "status": "queued" })),
            },
        )
        .await?;
        Ok(())
    })
    .await
}

/// Repairs finding `finding_id` (see
/// [`crate::server::billing::reconciliation::repair`]) and writes the audit
/// entry (`reconciliation.repair`) in the same transaction. Returns what
/// the repair did; a second repair does nothing and writes no entry.
///
/// Errors: as the domain's `repair`.
pub async fn repair_finding(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    actor: &Admin,
    finding_id: i64,
) -> Result<Repaired, BillingError> {
    conn.transaction(async |conn| {
        let (finding, outcome) = repair(conn, pricing, finding_id, &actor.email).await?;
        if finding.resolved_at.is_none() {
            record_audit(
                conn,
                actor,
                &AuditEntry {
                    action: "reconciliation.repair",
                    target_type: "reconciliation_finding",
                    target_id: Some(finding_id.to_string()),
                    customer_id: finding.customer_id,
                    reason: None,
                    before: Some(json!({ "kind": finding.kind, "subject": finding.subject, "details": finding.details })),
                    after: Some(match &outcome {
                        Repaired::Granted { credits, .. } => json!({ "granted_credits": credits }),
                        Repaired::AlreadyDone => json!({ "granted_credits": 0, "note": "granted already" }),
                    }),
                },
            )
            .await?;
        }
        Ok(outcome)
    })
    .await
}
