//! The job worker (wiring, above the integrations): claims due jobs from the
//! queue's storage ([`crate::server::db::queue`], re-exported here) and runs
//! the handler registered for each kind. Nothing below imports this module:
//! the domain and the integrations enqueue through the storage.
//!
//! Kinds: `stripe.create_customer` ([`crate::server::stripe::jobs`]),
//! `stripe.charge` ([`crate::server::stripe::charges`]) and
//! `stripe.process_event` ([`crate::server::stripe::events`]);
//! `github.apply_pending_change` ([`crate::server::marketplace::events`]);
//! `github.grant_period` ([`crate::server::marketplace::credits`]).

pub use crate::server::billing::work::{
    KIND_STRIPE_CHARGE, KIND_STRIPE_CREATE_CUSTOMER, KIND_STRIPE_PROCESS_EVENT,
};
pub use crate::server::db::queue::{
    backoff, claim, complete, enqueue, fail, retry_now, Job, JobError, NewJob,
    DEFAULT_MAX_ATTEMPTS, LEASE,
};

use crate::server::billing::BillingError;
use crate::server::state::AppState;
use std::future::Future;
use std::time::Duration;

/// How long [`run_forever`] sleeps when no job is due.
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// Kinds that call Stripe: not claimed while the `billing_enabled` flag is
/// off (runtime, or forced by `BILLING_ENABLED=false`) or
/// `STRIPE_SECRET_KEY` is unset.
pub const STRIPE_CALLING_KINDS: &[&str] = &[KIND_STRIPE_CREATE_CUSTOMER, KIND_STRIPE_CHARGE];

/// What [`run_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job's id.
    pub job_id: i64,
    /// Its kind.
    pub kind: String,
    /// Its status afterwards: `done`, `queued` (will retry) or `dead`.
    pub status: String,
    /// The failure, if the run failed.
    pub error: Option<String>,
}

/// Claims and runs one due job. `Ok(None)` when no job is due. With
/// `BILLING_ENABLED=false` or without `STRIPE_SECRET_KEY`, jobs that call
/// Stripe are left queued.
///
/// Errors: [`BillingError`] when the queue itself cannot be read or written
/// (a failing job is not an error: see [`JobRun::status`]).
pub async fn run_once(state: &AppState) -> Result<Option<JobRun>, BillingError> {
    let skip: &[&str] = if state.config.stripe.can_call_stripe() {
        &[]
    } else {
        STRIPE_CALLING_KINDS
    };
    let job = {
        let mut conn = state.conn().await?;
        match claim(&mut conn, skip).await? {
            Some(job) => job,
            None => return Ok(None),
        }
    };
    let result = dispatch(state, &job).await;
    let mut conn = state.conn().await?;
    let (status, error) = match result {
        Ok(()) => {
            complete(&mut conn, &job).await?;
            ("done", None)
        }
        Err(error) => {
            let status = fail(&mut conn, &job, &error).await?;
            if status == "dead" {
                tracing::error!(job_id = job.id, kind = %job.kind, error = %error.message, "job dead");
            } else {
                tracing::warn!(job_id = job.id, kind = %job.kind, attempts = job.attempts, error = %error.message, "job failed; will retry");
            }
            (status, Some(error.message))
        }
    };
    Ok(Some(JobRun {
        job_id: job.id,
        kind: job.kind,
        status: status.to_owned(),
        error,
    }))
}

/// Runs [`run_once`] until no job is due; returns every run. For tests and
/// one-shot use (a job that fails is not due again until its backoff ends,
/// so this terminates).
///
/// Errors: as [`run_once`].
pub async fn run_until_idle(state: &AppState) -> Result<Vec<JobRun>, BillingError> {
    let mut runs = Vec::new();
    while let Some(run) = run_once(state).await? {
        runs.push(run);
    }
    Ok(runs)
}

async fn dispatch(state: &AppState, job: &Job) -> Result<(), JobError> {
    match job.kind.as_str() {
        KIND_STRIPE_CREATE_CUSTOMER => {
            crate::server::stripe::jobs::create_customer(state, &job.payload).await
        }
        KIND_STRIPE_CHARGE => crate::server::stripe::charges::charge_job(state, &job.payload).await,
        KIND_STRIPE_PROCESS_EVENT => {
            crate::server::stripe::events::process_event_job(state, &job.payload).await
        }
        crate::server::marketplace::events::KIND_GITHUB_APPLY_PENDING_CHANGE => {
            crate::server::marketplace::events::apply_pending_change_job(state, &job.payload).await
        }
        crate::server::marketplace::credits::KIND_GITHUB_GRANT_PERIOD => {
            crate::server::marketplace::credits::grant_period_job(state, &job.payload).await
        }
        other => Err(JobError::permanent(format!("unknown job kind {other:?}"))),
    }
}

/// Runs jobs until `shutdown` completes: one at a time, sleeping
/// [`IDLE_POLL`] when none is due and after a queue error. Spawned by
/// `serve` and run by the `worker` subcommand.
pub async fn run_forever(state: AppState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let stripe = &state.config.stripe;
    if !stripe.billing_enabled() {
        tracing::warn!("billing_enabled is off: Stripe jobs stay queued");
    } else if stripe.secret_key.is_none() {
        tracing::warn!("STRIPE_SECRET_KEY is not set: Stripe jobs stay queued");
    }
    tracing::info!("job worker started");
    loop {
        let idle = match run_once(&state).await {
            Ok(Some(_)) => false,
            Ok(None) => true,
            Err(error) => {
                tracing::error!(%error, "job queue error");
                true
            }
        };
        if idle {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        } else if futures_ready(&mut shutdown) {
            break;
        }
    }
    tracing::info!("job worker stopped");
}

fn futures_ready<F: Future<Output = ()>>(future: &mut std::pin::Pin<&mut F>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    future.as_mut().poll(&mut cx).is_ready()
}
