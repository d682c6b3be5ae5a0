//! The job worker (wiring, above the integrations): claims due jobs from the
//! queue's storage ([`crate::server::db::queue`], re-exported here) and runs
//! them through its [`Registry`] of typed jobs ([`Job`]), renewing the job's
//! lease while it runs. Nothing below imports this module: the domain and
//! the integrations enqueue typed jobs ([`BackgroundJob::enqueue`]), and the
//! queue knows no handler.
//!
//! [`run_forever`] runs up to `JOB_CONCURRENCY` jobs at once: it claims as
//! many as it has free slots in one statement ([`claim_batch`]), spawns
//! each, and claims again when a slot frees and, while a slot is free,
//! every [`IDLE_POLL`] (new jobs of any instance, jobs whose backoff
//! ended). It does not `LISTEN`: the queue sends no notifications (see
//! [`crate::server::db::queue`], "Waking workers", for why).
//! Jobs with the same ordering key still run one at a time, in order (the
//! queue never lets two of a key be claimed together).
//!
//! The job types and what runs each: [`kinds`].

pub use crate::server::billing::work::{
    KIND_STRIPE_CHARGE, KIND_STRIPE_CREATE_CUSTOMER, KIND_STRIPE_PROCESS_EVENT,
};
pub use crate::server::db::queue::{
    backoff, claim, claim_batch, claim_kinds, complete, complete_batch, enqueue, fail, retry_now,
    BackgroundJob, JobError, NewJob, DEFAULT_MAX_ATTEMPTS, LEASE,
};

pub mod kinds;
pub mod nightly;

use crate::server::billing::work::{ChargeJob, CreateCustomerJob};
use crate::server::billing::BillingError;
use crate::server::db::queue::{renew_lease, Job as QueuedJob};
use crate::server::state::AppState;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
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

/// A job type the worker runs in batches (Stripe events, many a second):
/// the claimed jobs of its kind, at most `JOB_BATCH_SIZE` and never two of
/// one ordering key, are prepared one after another outside any transaction
/// ([`Self::prepare`]), then applied one after another in **one**
/// transaction, each in a savepoint of its own ([`Self::apply`]); the
/// applied jobs are marked done in that transaction ([`complete_batch`]).
/// One commit for the batch, instead of two per job. A job whose step
/// fails is rolled back alone (its savepoint) and, after the commit, told
/// ([`Self::failed`]) and put back or buried as a [`Job`]'s failure is.
/// Every job must still be safe to run twice (a batch that cannot commit
/// runs again).
pub trait BatchJob: BackgroundJob {
    /// What the first step hands the second.
    type Prepared: Send + Sync;

    /// First step, outside any transaction (e.g. re-reading from Stripe),
    /// on the batch's one connection (a batch takes one from the pool, not
    /// one per job: the pool is shared with the HTTP handlers).
    ///
    /// Errors: as [`Job::run`].
    fn prepare<'a>(
        &'a self,
        ctx: &'a AppState,
        conn: &'a mut AsyncPgConnection,
    ) -> impl Future<Output = Result<Self::Prepared, JobError>> + Send + 'a;

    /// Second step, inside the batch's transaction (a savepoint of its
    /// own): the job's effects.
    ///
    /// Errors: as [`Job::run`]; the savepoint is rolled back.
    fn apply<'a>(
        prepared: &'a Self::Prepared,
        ctx: &'a AppState,
        conn: &'a mut AsyncPgConnection,
    ) -> impl Future<Output = Result<(), JobError>> + Send + 'a;

    /// After the batch's transaction committed, for each job it applied
    /// (e.g. metrics).
    fn committed(_prepared: &Self::Prepared) {}

    /// After either step failed (the effects rolled back), before the job
    /// is put back or buried (e.g. noting the failure on the event).
    ///
    /// Errors: [`BillingError`], logged; the job's failure is recorded
    /// anyway.
    fn failed<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        error: &'a JobError,
    ) -> impl Future<Output = Result<(), BillingError>> + Send + 'a;
}

/// What a registered batch runner returns: one outcome per job, in order;
/// `Ok` jobs are already marked done (in the batch's transaction).
type BatchFuture<'a> = Pin<Box<dyn Future<Output = Vec<Result<(), JobError>>> + Send + 'a>>;

/// A registered batch runner ([`run_batch_typed`]).
type BatchHandler = for<'a> fn(&'a AppState, &'a [QueuedJob]) -> BatchFuture<'a>;

/// Runs `jobs` (all of kind `J`) as one batch ([`BatchJob`]).
fn run_batch_typed<'a, J: BatchJob>(state: &'a AppState, jobs: &'a [QueuedJob]) -> BatchFuture<'a> {
    Box::pin(async move {
        let typed: Vec<Result<J, JobError>> = jobs
            .iter()
            .map(|job| {
                serde_json::from_value::<J>(job.payload.clone()).map_err(|e| {
                    JobError::permanent(format!("malformed {} payload: {e}", J::JOB_NAME))
                })
            })
            .collect();
        let mut conn = match state.conn().await {
            Ok(conn) => conn,
            Err(error) => {
                let error = JobError::retry(error.to_string());
                return jobs.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let mut prepared: Vec<Result<J::Prepared, JobError>> = Vec::with_capacity(jobs.len());
        for job in &typed {
            prepared.push(match job {
                Ok(job) => job.prepare(state, &mut conn).await,
                Err(error) => Err(error.clone()),
            });
        }
        let applied = conn
            .transaction(async |conn| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for step in &prepared {
                    outcomes.push(match step {
                        Ok(ready) => {
                            conn.transaction(async |conn| J::apply(ready, state, conn).await)
                                .await
                        }
                        Err(error) => Err(error.clone()),
                    });
                }
                let done: Vec<&QueuedJob> = jobs
                    .iter()
                    .zip(&outcomes)
                    .filter_map(|(job, outcome)| outcome.is_ok().then_some(job))
                    .collect();
                complete_batch(conn, &done).await?;
                Ok::<_, JobError>(outcomes)
            })
            .await;
        let outcomes: Vec<Result<(), JobError>> = match applied {
            Ok(outcomes) => {
                for (step, outcome) in prepared.iter().zip(&outcomes) {
                    if let (Ok(ready), Ok(())) = (step, outcome) {
                        J::committed(ready);
                    }
                }
                outcomes
            }
            Err(error) => prepared
                .iter()
                .map(|step| match step {
                    Ok(_) => Err(JobError::retry(format!(
                        "batch not committed: {}",
                        error.message
                    ))),
                    Err(own) => Err(own.clone()),
                })
                .collect(),
        };
        for (job, outcome) in typed.iter().zip(&outcomes) {
            if let (Ok(job), Err(error)) = (job, outcome) {
                if let Err(e) = job.failed(&mut conn, error).await {
                    tracing::warn!(kind = J::JOB_NAME, error = %e, "could not note a job's failure");
                }
            }
        }
        outcomes
    })
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
    batches: HashMap<&'static str, BatchHandler>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers job type `J` (replacing an earlier one of the same name).
    #[must_use]
    pub fn register<J: Job>(mut self) -> Self {
        self.batches.remove(J::JOB_NAME);
        self.handlers.insert(J::JOB_NAME, run_typed::<J>);
        self
    }

    /// Registers batched job type `J` ([`BatchJob`]; replacing an earlier
    /// one of the same name).
    #[must_use]
    pub fn register_batch<J: BatchJob>(mut self) -> Self {
        self.handlers.remove(J::JOB_NAME);
        self.batches.insert(J::JOB_NAME, run_batch_typed::<J>);
        self
    }

    /// The kinds registered, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self
            .handlers
            .keys()
            .chain(self.batches.keys())
            .copied()
            .collect();
        kinds.sort_unstable();
        kinds
    }

    /// The batched kinds, sorted.
    fn batch_kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.batches.keys().copied().collect();
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

/// How often [`run_forever`] looks for due jobs while it has a free slot:
/// the longest a new job waits for an idle worker (one indexed read that
/// finds nothing, ten times a second, when the queue is empty). A worker
/// that finishes a job claims again at once.
pub const IDLE_POLL: Duration = Duration::from_millis(100);
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
    match registry.batches.get(job.kind.as_str()) {
        Some(batch) => Ok(run_claimed_batch(*batch, state, vec![job]).await?.pop()),
        None => run_claimed(registry, state, job).await.map(Some),
    }
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
    let result = keeping_leases(state, std::slice::from_ref(&job), registry.run(state, &job)).await;
    let mut conn = state.conn().await?;
    record_outcome(&mut conn, job, result, false).await
}

/// Runs jobs this worker claimed, all of one batched kind, as one batch
/// ([`BatchJob`], renewing their leases) and records the failures (the
/// batch marked the others done).
async fn run_claimed_batch(
    batch: BatchHandler,
    state: &AppState,
    jobs: Vec<QueuedJob>,
) -> Result<Vec<JobRun>, BillingError> {
    let outcomes = keeping_leases(state, &jobs, batch(state, &jobs)).await;
    let mut conn = state.conn().await?;
    let mut runs = Vec::with_capacity(jobs.len());
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        runs.push(record_outcome(&mut conn, job, outcome, true).await?);
    }
    Ok(runs)
}

/// Records a run's outcome: done (unless `already_done`: a batch marked it
/// in its own transaction), or failed (retry after backoff, or dead).
async fn record_outcome(
    conn: &mut AsyncPgConnection,
    job: QueuedJob,
    result: Result<(), JobError>,
    already_done: bool,
) -> Result<JobRun, BillingError> {
    let (status, error) = match result {
        Ok(()) => {
            if !already_done {
                complete(conn, &job).await?;
            }
            ("done", None)
        }
        Err(error) => {
            let status = fail(conn, &job, &error).await?;
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

/// Runs `work` (the handler of `jobs`), renewing their leases every
/// [`LEASE_RENEWAL`] until it finishes (a renewal that fails is logged;
/// the handler keeps running, and must be safe to run twice anyway).
async fn keeping_leases<T>(
    state: &AppState,
    jobs: &[QueuedJob],
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut renew = tokio::time::interval(LEASE_RENEWAL);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await; // the first tick is immediate: the claim just set the lease
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = renew.tick() => {
                for job in jobs {
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
    tracing::info!(concurrency, "job worker started");
    dispatch(registry, state, concurrency, Some(shutdown)).await;
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
        None::<std::future::Pending<()>>,
    )
    .await
}

/// The worker loop. With `until` (shutdown), runs until shutdown;
/// without, until idle. Returns the jobs run.
async fn dispatch<F: Future<Output = ()>>(
    registry: Arc<Registry>,
    state: AppState,
    concurrency: usize,
    shutdown: Option<F>,
) -> usize {
    let concurrency = concurrency.max(1);
    let forever = shutdown.is_some();
    let shutdown = async move {
        match shutdown {
            Some(shutdown) => shutdown.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown);
    let mut poll = tokio::time::interval(IDLE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let batch_kinds = registry.batch_kinds();
    let batch_size = state.config.job_batch_size.max(1);
    let mut running: JoinSet<Result<usize, BillingError>> = JoinSet::new();
    let mut ran = 0;
    loop {
        while let Some(joined) = running.try_join_next() {
            ran += log_joined(joined);
        }
        // Each free slot takes a batch of a batched kind, or one job.
        let mut more = false;
        while running.len() < concurrency {
            match claim_kinds_free(&state, &batch_kinds, batch_size).await {
                Ok(jobs) if !jobs.is_empty() => {
                    more = jobs.len() == batch_size;
                    for (batch, jobs) in by_kind(&registry, jobs) {
                        let state = state.clone();
                        running.spawn(async move {
                            run_claimed_batch(batch, &state, jobs)
                                .await
                                .map(|runs| runs.len())
                        });
                    }
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "job queue error");
                    break;
                }
            }
        }
        let free = concurrency.saturating_sub(running.len());
        if free > 0 {
            match claim_free(&state, &batch_kinds, free).await {
                Ok(jobs) => {
                    more |= jobs.len() == free;
                    for job in jobs {
                        let (registry, state) = (registry.clone(), state.clone());
                        running.spawn(async move {
                            run_claimed(&registry, &state, job).await.map(|_| 1)
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "job queue error"),
            }
        }
        if !forever && running.is_empty() {
            // Nothing claimed and nothing running: idle.
            break;
        }
        let full = running.len() >= concurrency;
        if more && !full {
            continue; // claimed all it asked for: more may be due
        }
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = running.join_next(), if !running.is_empty() => ran += log_joined(joined),
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

/// Claims up to `free` due jobs of the kinds that are not batched (one job
/// a slot).
async fn claim_free(
    state: &AppState,
    batch_kinds: &[&str],
    free: usize,
) -> Result<Vec<QueuedJob>, BillingError> {
    let mut conn = state.conn().await?;
    let mut skip: Vec<&str> = skip_kinds(state).to_vec();
    skip.extend_from_slice(batch_kinds);
    Ok(claim_batch(&mut conn, &skip, free).await?)
}

/// Claims up to `limit` due jobs of the batched kinds (those Stripe can be
/// called for).
async fn claim_kinds_free(
    state: &AppState,
    batch_kinds: &[&str],
    limit: usize,
) -> Result<Vec<QueuedJob>, BillingError> {
    let skip = skip_kinds(state);
    let kinds: Vec<&str> = batch_kinds
        .iter()
        .copied()
        .filter(|kind| !skip.contains(kind))
        .collect();
    let mut conn = state.conn().await?;
    Ok(claim_kinds(&mut conn, &kinds, limit).await?)
}

/// `jobs` grouped by kind, with each kind's batch runner.
fn by_kind(registry: &Registry, jobs: Vec<QueuedJob>) -> Vec<(BatchHandler, Vec<QueuedJob>)> {
    let mut groups: Vec<(&'static str, BatchHandler, Vec<QueuedJob>)> = Vec::new();
    for job in jobs {
        let Some((kind, batch)) = registry.batches.get_key_value(job.kind.as_str()) else {
            continue; // claimed by kind from the registry's own list
        };
        match groups.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, _, group)) => group.push(job),
            None => groups.push((kind, *batch, vec![job])),
        }
    }
    groups
        .into_iter()
        .map(|(_, batch, jobs)| (batch, jobs))
        .collect()
}

/// The jobs a task ran (whatever their outcome), 0 when the queue itself
/// failed (logged).
fn log_joined(joined: Result<Result<usize, BillingError>, tokio::task::JoinError>) -> usize {
    match joined {
        Ok(Ok(ran)) => ran,
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
