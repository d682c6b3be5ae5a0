//! The job worker (wiring, above the integrations): claims due jobs from the
//! queue's storage ([`crate::server::db::queue`], re-exported here) and runs
//! them through its [`Registry`] of typed jobs ([`Job`]), renewing the job's
//! lease while it runs. Nothing below imports this module: the domain and
//! the integrations enqueue typed jobs ([`BackgroundJob::enqueue`]), and the
//! queue knows no handler.
//!
//! [`run_forever`] runs up to `JOB_CONCURRENCY` jobs at once: it claims as
//! many as it has free slots in one statement ([`claim_batch`]), spawns
//! each, and claims again when a slot frees, when the database tells it a
//! job was enqueued or released (`LISTEN` on [`CHANNEL`], any instance's),
//! or every [`IDLE_POLL`] (jobs whose backoff ended, a lost notification).
//! Jobs with the same ordering key still run one at a time, in order (the
//! queue never lets two of a key be claimed together).
//!
//! The job types and what runs each: [`kinds`].

pub use crate::server::billing::work::{
    KIND_STRIPE_CHARGE, KIND_STRIPE_CREATE_CUSTOMER, KIND_STRIPE_PROCESS_EVENT,
};
pub use crate::server::db::queue::{
    backoff, claim, claim_batch, complete, enqueue, fail, retry_now, BackgroundJob, JobError,
    NewJob, CHANNEL, DEFAULT_MAX_ATTEMPTS, LEASE,
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
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

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
static PLATFORM: LazyLock<Arc<Registry>> = LazyLock::new(|| Arc::new(Registry::platform()));

/// How often [`run_forever`] looks for due jobs without being told: jobs
/// whose backoff or `run_at` came, and notifications lost while the
/// listening connection was down. New and released jobs wake it at once.
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long the listening connection waits before connecting again after
/// it failed (the poll covers the gap).
pub const LISTEN_RETRY: Duration = Duration::from_secs(5);
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
    let job = {
        let mut conn = state.conn().await?;
        match claim(&mut conn, skip_kinds(state)).await? {
            Some(job) => job,
            None => return Ok(None),
        }
    };
    run_claimed(registry, state, job).await.map(Some)
}

/// The kinds not to claim: those that call Stripe when Stripe cannot be
/// called.
fn skip_kinds(state: &AppState) -> &'static [&'static str] {
    if state.config.stripe.can_call_stripe() {
        &[]
    } else {
        STRIPE_CALLING_KINDS
    }
}

/// Runs a job this worker claimed (renewing its lease) and records the
/// outcome: done, or failed (retry after backoff, or dead).
async fn run_claimed(
    registry: &Registry,
    state: &AppState,
    job: QueuedJob,
) -> Result<JobRun, BillingError> {
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
    Ok(JobRun {
        job_id: job.id,
        kind: job.kind,
        status: status.to_owned(),
        error,
    })
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

/// Runs jobs until `shutdown` completes, up to `JOB_CONCURRENCY`
/// ([`crate::server::config::Config::job_concurrency`]) at once (module
/// doc), then lets the running ones finish. Spawned by `serve` and run by
/// the `worker` subcommand.
pub async fn run_forever(state: AppState, shutdown: impl Future<Output = ()>) {
    let concurrency = state.config.job_concurrency;
    run_forever_with(PLATFORM.clone(), state, concurrency, shutdown).await;
}

/// [`run_forever`] with the handlers of `registry` and `concurrency` slots.
pub async fn run_forever_with(
    registry: Arc<Registry>,
    state: AppState,
    concurrency: usize,
    shutdown: impl Future<Output = ()>,
) {
    let stripe = &state.config.stripe;
    if !stripe.billing_enabled() {
        tracing::warn!("billing_enabled is off: Stripe jobs stay queued");
    } else if stripe.secret_key.is_none() {
        tracing::warn!("STRIPE_SECRET_KEY is not set: Stripe jobs stay queued");
    }
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(state.clone(), wake.clone()));
    tracing::info!(concurrency, "job worker started");
    dispatch(registry, state, concurrency, Some((shutdown, wake))).await;
    listener.abort();
    tracing::info!("job worker stopped");
}

/// Runs jobs `concurrency` at a time until none is due and none is
/// running; returns how many ran. Several may run against one database
/// (tests, one-shot use); like [`run_until_idle`], it terminates because a
/// failed job is not due again until its backoff ends.
pub async fn drain_with(registry: Arc<Registry>, state: AppState, concurrency: usize) -> usize {
    dispatch(
        registry,
        state,
        concurrency,
        None::<(std::future::Pending<()>, Arc<Notify>)>,
    )
    .await
}

/// The worker loop. With `until` (shutdown, wake-up), runs until shutdown;
/// without, until idle. Returns the jobs run.
async fn dispatch<F: Future<Output = ()>>(
    registry: Arc<Registry>,
    state: AppState,
    concurrency: usize,
    until: Option<(F, Arc<Notify>)>,
) -> usize {
    let concurrency = concurrency.max(1);
    let forever = until.is_some();
    let (shutdown, wake) = match until {
        Some((shutdown, wake)) => (Some(shutdown), wake),
        None => (None, Arc::new(Notify::new())),
    };
    let shutdown = async move {
        match shutdown {
            Some(shutdown) => shutdown.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown);
    let mut poll = tokio::time::interval(IDLE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: JoinSet<Result<JobRun, BillingError>> = JoinSet::new();
    let mut ran = 0;
    loop {
        while let Some(joined) = running.try_join_next() {
            ran += log_joined(joined);
        }
        let free = concurrency - running.len();
        let mut full = free == 0;
        if free > 0 {
            match claim_free(&state, free).await {
                Ok(jobs) => {
                    full = jobs.len() == free;
                    for job in jobs {
                        let (registry, state) = (registry.clone(), state.clone());
                        running.spawn(async move { run_claimed(&registry, &state, job).await });
                    }
                }
                Err(error) => tracing::error!(%error, "job queue error"),
            }
        }
        if !forever && running.is_empty() {
            // Nothing claimed and nothing running: idle.
            break;
        }
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = running.join_next(), if !running.is_empty() => ran += log_joined(joined),
            () = wake.notified(), if forever && !full => {}
            _ = poll.tick(), if forever && !full => {}
        }
    }
    // Shutting down: the running jobs finish (never cut between a Stripe
    // call and recording its result).
    while let Some(joined) = running.join_next().await {
        ran += log_joined(joined);
    }
    ran
}

async fn claim_free(state: &AppState, free: usize) -> Result<Vec<QueuedJob>, BillingError> {
    let mut conn = state.conn().await?;
    Ok(claim_batch(&mut conn, skip_kinds(state), free).await?)
}

/// 1 when a job ran (whatever its outcome), 0 when the queue itself failed
/// (logged).
fn log_joined(joined: Result<Result<JobRun, BillingError>, tokio::task::JoinError>) -> usize {
    match joined {
        Ok(Ok(_)) => 1,
        Ok(Err(error)) => {
            // The job's outcome could not be recorded: its lease runs out
            // and it runs again.
            tracing::error!(%error, "job queue error after a run");
            0
        }
        Err(error) => {
            tracing::error!(%error, "job task ended abnormally");
            0
        }
    }
}

/// Keeps a connection of its own (not the pool's) listening on
/// [`CHANNEL`] and wakes the worker on every notification, and once after
/// each (re)connection (notifications sent while it was down are lost;
/// the claim that follows finds their jobs). Reconnects after
/// [`LISTEN_RETRY`]; runs until aborted.
async fn listen(state: AppState, wake: Arc<Notify>) {
    use crate::server::config::ExposeSecret;
    use futures_util::StreamExt;
    let target = match crate::server::db::connect::DbTarget::parse(
        state.config.database_url.expose_secret(),
    ) {
        Ok(target) => target,
        Err(error) => {
            tracing::error!(%error, "job worker cannot listen for new jobs; polling only");
            return;
        }
    };
    loop {
        match target.connect().await {
            Ok(mut conn) => {
                match diesel_async::RunQueryDsl::execute(
                    diesel::sql_query(format!("LISTEN {CHANNEL}")),
                    &mut conn,
                )
                .await
                {
                    Ok(_) => {
                        wake.notify_one();
                        let mut notifications = std::pin::pin!(conn.notifications_stream());
                        while let Some(notification) = notifications.next().await {
                            match notification {
                                Ok(_) => wake.notify_one(),
                                Err(error) => {
                                    tracing::warn!(%error, "job notifications lost; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot LISTEN for new jobs"),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot connect to listen for new jobs"),
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}
