//! The job worker (wiring, above the integrations): claims due jobs from the
//! queue's storage ([`crate::server::db::queue`], re-exported here) and runs
//! them through its [`Registry`] of typed jobs ([`Job`]), renewing the job's
//! lease while it runs. Nothing below imports this module: the domain and
//! the integrations enqueue typed jobs ([`BackgroundJob::enqueue`]), and the
//! queue knows no handler.
//!
//! The job types and what runs each: [`kinds`].

pub use crate::server::billing::work::{
    KIND_STRIPE_CHARGE, KIND_STRIPE_CREATE_CUSTOMER, KIND_STRIPE_PROCESS_EVENT,
};
pub use crate::server::db::queue::{
    backoff, claim, complete, enqueue, fail, retry_now, BackgroundJob, JobError, NewJob,
    DEFAULT_MAX_ATTEMPTS, LEASE,
};

pub mod kinds;
pub mod nightly;

use crate::server::billing::work::{ChargeJob, CreateCustomerJob};
use crate::server::billing::BillingError;
use crate::server::db::queue::{renew_lease, Job as QueuedJob};
use crate::server::state::AppState;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::Duration;

/// How often a running job renews its lease ([`LEASE`] / 3), so a job that
/// works longer than the lease is not claimed by a second worker.
pub const LEASE_RENEWAL: Duration = Duration::from_secs(LEASE.as_secs() / 3);

/// A job the worker can run (crates.io's `BackgroundJob`): its type is the
/// payload and names its kind ([`BackgroundJob::JOB_NAME`], below the
/// domain so the domain can enqueue it); this trait adds what runs it,
/// with the wired [`AppState`]. Every job must be safe to run twice (a
/// worker that dies mid-job loses its lease).
pub trait Job: BackgroundJob {
    /// Runs the job.
    ///
    /// Errors: [`JobError::retry`] to run it again after a backoff,
    /// [`JobError::permanent`] to bury it (`dead`).
    fn run(&self, ctx: &AppState) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// What a registered runner returns: its run, borrowing the state and the
/// payload.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// A registered runner: parses the payload as its job type and runs it.
type Handler = for<'a> fn(&'a AppState, &'a Value) -> HandlerFuture<'a>;

/// Deserialises `payload` as `J` (a payload that does not parse is buried:
/// no retry can fix it) and runs it.
fn run_typed<'a, J: Job>(state: &'a AppState, payload: &'a Value) -> HandlerFuture<'a> {
    Box::pin(async move {
        let job: J = serde_json::from_value(payload.clone())
            .map_err(|e| JobError::permanent(format!("malformed {} payload: {e}", J::JOB_NAME)))?;
        job.run(state).await
    })
}

/// The job types this worker runs, by [`BackgroundJob::JOB_NAME`]. The
/// queue ([`crate::server::db::queue`]) stores `(job_name, payload)` and
/// knows no handler; a kind nobody registered fails permanently (`dead`)
/// with "unknown job kind".
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Handler>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers job type `J` (replacing an earlier one of the same name).
    #[must_use]
    pub fn register<J: Job>(mut self) -> Self {
        self.handlers.insert(J::JOB_NAME, run_typed::<J>);
        self
    }

    /// The kinds registered, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }

    /// Every job of the platform (see [`kinds`]).
    pub fn platform() -> Self {
        kinds::register_all(Self::new())
    }

    async fn run(&self, state: &AppState, job: &QueuedJob) -> Result<(), JobError> {
        match self.handlers.get(job.kind.as_str()) {
            Some(handler) => handler(state, &job.payload).await,
            None => Err(JobError::permanent(format!(
                "unknown job kind {:?}",
                job.kind
            ))),
        }
    }
}

/// [`Registry::platform`], built once.
static PLATFORM: LazyLock<Registry> = LazyLock::new(Registry::platform);

/// How long [`run_forever`] sleeps when no job is due.
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// Kinds that call Stripe: not claimed while the `billing_enabled` flag is
/// off (runtime, or forced by `BILLING_ENABLED=false`) or
/// `STRIPE_SECRET_KEY` is unset.
pub const STRIPE_CALLING_KINDS: &[&str] = &[CreateCustomerJob::JOB_NAME, ChargeJob::JOB_NAME];

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
    run_once_with(&PLATFORM, state).await
}

/// [`run_once`] with the handlers of `registry`. While the handler runs,
/// the job's lease is renewed every [`LEASE_RENEWAL`].
///
/// Errors: as [`run_once`].
pub async fn run_once_with(
    registry: &Registry,
    state: &AppState,
) -> Result<Option<JobRun>, BillingError> {
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
    let result = run_keeping_lease(registry, state, &job).await;
    let mut conn = state.conn().await?;
    let (status, error) = match result {
        Ok(()) => {
            complete(&mut conn, &job).await?;
            ("done", None)
        }
        Err(error) => {
            let status = fail(&mut conn, &job, &error).await?;
            crate::server::metrics::job_failed(&job.kind, status == "dead");
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

/// Runs `job`'s handler, renewing the lease every [`LEASE_RENEWAL`] until
/// it finishes (a renewal that fails is logged; the handler keeps running,
/// and must be safe to run twice anyway).
async fn run_keeping_lease(
    registry: &Registry,
    state: &AppState,
    job: &QueuedJob,
) -> Result<(), JobError> {
    let work = registry.run(state, job);
    tokio::pin!(work);
    let mut renew = tokio::time::interval(LEASE_RENEWAL);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await; // the first tick is immediate: the claim just set the lease
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = renew.tick() => {
                let renewed = match state.conn().await {
                    Ok(mut conn) => renew_lease(&mut conn, job).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job_id = job.id, "job lease lost while running"),
                    Err(error) => tracing::warn!(job_id = job.id, %error, "job lease not renewed"),
                }
            }
        }
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
