//! What runs each job type: thin [`Job`] implementations over the
//! integrations' handlers, which keep parsing their JSON payload (the typed
//! payload is serialised back for them, so their bodies are unchanged).
//!
//! | job (`JOB_NAME`) | type | runs |
//! |---|---|---|
//! | `stripe.create_customer` | [`CreateCustomerJob`] | [`stripe_jobs::create_customer`] |
//! | `stripe.charge` | [`ChargeJob`] | [`charges::charge_job`] |
//! | `stripe.process_event` | [`ProcessStripeEventJob`], batched ([`BatchJob`]) | [`stripe_events::prepare_event`], then [`stripe_events::apply_prepared_event`] |
//! | `github.apply_pending_change` | [`ApplyPendingChangeJob`] | [`github_events::apply_pending_change_job`] |
//! | `github.grant_period` | [`GrantPeriodJob`] | [`credits::grant_period_job`] |
//! | `billing.reconcile` | [`ReconcileJob`] | [`reconciliation::run`] |

use crate::server::billing::reconciliation;
use crate::server::billing::work::{
    ChargeJob, CreateCustomerJob, ProcessStripeEventJob, ReconcileJob,
};
use crate::server::billing::BillingError;
use crate::server::jobs::{BackgroundJob, BatchJob, Job, JobError, Registry};
use crate::server::marketplace::jobs::{ApplyPendingChangeJob, GrantPeriodJob};
use crate::server::marketplace::{credits, events as github_events};
use crate::server::state::AppState;
use crate::server::stripe::{charges, events as stripe_events, jobs as stripe_jobs};
use diesel_async::AsyncPgConnection;
use serde_json::Value;

/// Registers every job type of the platform in `registry`.
pub fn register_all(registry: Registry) -> Registry {
    registry
        .register::<CreateCustomerJob>()
        .register::<ChargeJob>()
        .register_batch::<ProcessStripeEventJob>()
        .register::<ApplyPendingChangeJob>()
        .register::<GrantPeriodJob>()
        .register::<ReconcileJob>()
}

/// The job as the JSON payload its handler parses.
fn payload<J: BackgroundJob>(job: &J) -> Result<Value, JobError> {
    serde_json::to_value(job)
        .map_err(|e| JobError::permanent(format!("{} payload not serialisable: {e}", J::JOB_NAME)))
}

impl Job for CreateCustomerJob {
    async fn run(&self, ctx: &AppState) -> Result<(), JobError> {
        stripe_jobs::create_customer(ctx, &payload(self)?).await
    }
}

impl Job for ChargeJob {
    async fn run(&self, ctx: &AppState) -> Result<(), JobError> {
        charges::charge_job(ctx, &payload(self)?).await
    }
}

impl BatchJob for ProcessStripeEventJob {
    type Prepared = stripe_events::PreparedEvent;

    async fn prepare<'a>(
        &'a self,
        ctx: &'a AppState,
        conn: &'a mut AsyncPgConnection,
    ) -> Result<Self::Prepared, JobError> {
        stripe_events::prepare_event(ctx, conn, &payload(self)?).await
    }

    async fn apply<'a>(
        prepared: &'a Self::Prepared,
        ctx: &'a AppState,
        conn: &'a mut AsyncPgConnection,
    ) -> Result<(), JobError> {
        stripe_events::apply_prepared_event(conn, ctx, prepared).await
    }

    fn committed(prepared: &Self::Prepared) {
        stripe_events::event_committed(prepared);
    }

    async fn failed<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        error: &'a JobError,
    ) -> Result<(), BillingError> {
        stripe_events::record_event_failure(conn, &payload(self).unwrap_or_default(), error).await
    }
}

impl Job for ApplyPendingChangeJob {
    async fn run(&self, ctx: &AppState) -> Result<(), JobError> {
        github_events::apply_pending_change_job(ctx, &payload(self)?).await
    }
}

impl Job for GrantPeriodJob {
    async fn run(&self, ctx: &AppState) -> Result<(), JobError> {
        credits::grant_period_job(ctx, &payload(self)?).await
    }
}

impl Job for ReconcileJob {
    async fn run(&self, ctx: &AppState) -> Result<(), JobError> {
        let mut conn = ctx
            .conn()
            .await
            .map_err(|e| JobError::retry(e.to_string()))?;
        let summary = reconciliation::run(&mut conn, ctx.processor.as_ref())
            .await
            .map_err(|e| JobError::retry(e.to_string()))?;
        if summary.findings.is_empty() {
            tracing::info!(run_id = summary.run_id, "reconciliation: no drift");
        } else {
            tracing::warn!(
                run_id = summary.run_id,
                findings = summary.findings.len(),
                "reconciliation found drift; see /admin/reconciliation"
            );
        }
        Ok(())
    }
}
