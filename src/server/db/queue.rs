//! The PostgreSQL job queue's storage (table `jobs`), below the domain so
//! that the domain enqueues work in its own transaction.
//!
//! A job is enqueued inside the transaction that causes it, so it exists
//! exactly when the cause committed. Workers claim due jobs with
//! `FOR UPDATE SKIP LOCKED` (many workers never take the same row) and take a
//! lease of [`LEASE`]: a worker that dies mid-job loses the lease and the job
//! runs again, so every job must be safe to run twice. A failure puts the job
//! back with exponential backoff ([`backoff`]) until `max_attempts`, after
//! which it stays `dead` (the dead-letter state) with its last error for a
//! person to look at and [`retry_now`].
//!
//! The queue stores `(kind, payload)` and knows no handler: a job's type
//! implements [`BackgroundJob`] (its name and its payload, the struct
//! itself, serialised as JSON) and is enqueued with
//! [`BackgroundJob::enqueue`]; the worker (`server::jobs`) registers the
//! types it runs (`server::jobs::Job`, which adds `run`).

use crate::server::db::schema::jobs;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Interval, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// How long a claimed job is reserved for its worker.
pub const LEASE: Duration = Duration::from_secs(300);
/// Default `max_attempts` of a new job.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 10;

/// A job row.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// What to do, e.g. `stripe.create_customer`.
    pub kind: String,
    /// The kind's arguments.
    pub payload: Value,
    /// `queued`, `running`, `done` or `dead`.
    pub status: String,
    /// Runs started so far (including the current one while running).
    pub attempts: i32,
    /// After this many failed runs the job is `dead`.
    pub max_attempts: i32,
    /// Not run before this time.
    pub run_at: DateTime<Utc>,
    /// While running: the end of the worker's lease.
    pub locked_until: Option<DateTime<Utc>>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Unique across all jobs when set: enqueuing it again adds nothing.
    pub dedupe_key: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// Kind: the name of the job type that runs it (e.g.
    /// `stripe.create_customer`); the queue itself knows no kind.
    pub kind: &'a str,
    /// Arguments.
    pub payload: Value,
    /// Optional unique key (e.g. `stripe.create_customer:42`).
    pub dedupe_key: Option<&'a str>,
    /// Failed runs allowed before `dead`.
    pub max_attempts: i32,
}

/// A job's type, as the queue sees it (crates.io's `BackgroundJob` without
/// `run`): the struct is the payload, stored as JSON under
/// [`Self::JOB_NAME`]. What runs it (`server::jobs::Job::run`) is declared
/// by the worker, above every layer that enqueues, so the domain enqueues a
/// typed job without knowing its handler.
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind stored in `jobs.kind`, e.g. `stripe.charge`; unique across
    /// job types.
    const JOB_NAME: &'static str;
    /// Failed runs allowed before the job is `dead`.
    const MAX_ATTEMPTS: i32 = DEFAULT_MAX_ATTEMPTS;

    /// Enqueues this job in the caller's transaction, with an optional
    /// dedupe key (unique across all jobs: enqueueing it again adds
    /// nothing). Returns the job's id, or `None` when the dedupe key exists.
    ///
    /// Errors: the database error; a payload that cannot be serialised as
    /// [`diesel::result::Error::SerializationError`].
    fn enqueue<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        dedupe_key: Option<&'a str>,
    ) -> impl Future<Output = Result<Option<i64>, diesel::result::Error>> + Send + 'a {
        let payload = serde_json::to_value(self);
        async move {
            let payload =
                payload.map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
            enqueue(
                conn,
                &NewJob {
                    kind: Self::JOB_NAME,
                    payload,
                    dedupe_key,
                    max_attempts: Self::MAX_ATTEMPTS,
                },
            )
            .await
        }
    }
}

/// Enqueues `job` in the caller's transaction; returns its id, or `None`
/// when a job with the same dedupe key exists (whatever its state).
///
/// Errors: the database error.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    job: &NewJob<'_>,
) -> Result<Option<i64>, diesel::result::Error> {
    diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(job.kind),
            jobs::payload.eq(&job.payload),
            jobs::dedupe_key.eq(job.dedupe_key),
            jobs::max_attempts.eq(job.max_attempts),
        ))
        .on_conflict(jobs::dedupe_key)
        .do_nothing()
        .returning(jobs::id)
        .get_result(conn)
        .await
        .optional()
}

/// Claims the next due job (queued with `run_at <= now()`, or running with
/// an expired lease) whose kind is not in `skip_kinds`: marks it `running`,
/// counts the attempt and sets the lease. `None` when nothing is due.
///
/// Errors: the database error.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    skip_kinds: &[&str],
) -> Result<Option<Job>, diesel::result::Error> {
    let skip: Vec<String> = skip_kinds.iter().map(|k| (*k).to_owned()).collect();
    diesel::sql_query(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
                locked_until = now() + $2, updated_at = now() \
         WHERE id = ( \
             SELECT id FROM jobs \
             WHERE ((status = 'queued' AND run_at <= now()) \
                    OR (status = 'running' AND locked_until < now())) \
               AND NOT (kind = ANY($1)) \
             ORDER BY run_at, id \
             LIMIT 1 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Array<Text>, _>(skip)
    .bind::<Interval, _>(pg_interval(LEASE))
    .get_result::<Job>(conn)
    .await
    .optional()
}

fn pg_interval(duration: Duration) -> diesel::pg::data_types::PgInterval {
    diesel::pg::data_types::PgInterval::from_microseconds(
        i64::try_from(duration.as_micros()).unwrap_or(i64::MAX),
    )
}

/// Delay before the next run after `attempts` failed runs: 2^attempts
/// seconds (2 s, 4 s, 8 s, …), at most one hour.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 12)).unwrap_or(12);
    Duration::from_secs((1u64 << exp).min(3600))
}

/// Marks the job done (only while this worker still holds it).
///
/// Errors: the database error.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    job: &Job,
) -> Result<(), diesel::result::Error> {
    diesel::update(jobs::table.find(job.id).filter(jobs::status.eq("running")))
        .set((
            jobs::status.eq("done"),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::last_error.eq(None::<String>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Extends the lease of a job this worker is running (same attempt) to
/// now + [`LEASE`]; false when the job is no longer this worker's (its lease
/// expired and another worker claimed it, or it finished).
///
/// Errors: the database error.
pub async fn renew_lease(
    conn: &mut AsyncPgConnection,
    job: &Job,
) -> Result<bool, diesel::result::Error> {
    let changed = diesel::sql_query(
        "UPDATE jobs SET locked_until = now() + $3, updated_at = now() \
         WHERE id = $1 AND status = 'running' AND attempts = $2",
    )
    .bind::<Int8, _>(job.id)
    .bind::<diesel::sql_types::Int4, _>(job.attempts)
    .bind::<Interval, _>(pg_interval(LEASE))
    .execute(conn)
    .await?;
    Ok(changed > 0)
}

/// Records a failed run: back to `queued` after [`backoff`], or `dead` when
/// the error is permanent or attempts are used up. Returns the new status.
///
/// Errors: the database error.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    job: &Job,
    error: &JobError,
) -> Result<&'static str, diesel::result::Error> {
    let dead = !error.retryable || job.attempts >= job.max_attempts;
    let status = if dead { "dead" } else { "queued" };
    let delay =
        chrono::Duration::from_std(backoff(job.attempts)).unwrap_or(chrono::Duration::hours(1));
    diesel::update(jobs::table.find(job.id).filter(jobs::status.eq("running")))
        .set((
            jobs::status.eq(status),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::last_error.eq(&error.message),
            jobs::run_at.eq(Utc::now() + delay),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(status)
}

/// Makes a queued or dead job due now (an operator's "retry"); a dead job
/// gets its attempts reset. Returns whether a job changed.
///
/// Errors: the database error.
pub async fn retry_now(
    conn: &mut AsyncPgConnection,
    job_id: i64,
) -> Result<bool, diesel::result::Error> {
    let changed = diesel::sql_query(
        "UPDATE jobs SET run_at = now(), updated_at = now(), \
                attempts = CASE WHEN status = 'dead' THEN 0 ELSE attempts END, \
                status = 'queued' \
         WHERE id = $1 AND status IN ('queued', 'dead')",
    )
    .bind::<Int8, _>(job_id)
    .execute(conn)
    .await?;
    Ok(changed > 0)
}

/// Why a job run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// Stored in `last_error` (never a secret).
    pub message: String,
    /// False: the job goes `dead` at once.
    pub retryable: bool,
}

impl JobError {
    /// A failure worth retrying later.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A database failure while running a job is worth retrying later.
impl From<diesel::result::Error> for JobError {
    fn from(error: diesel::result::Error) -> Self {
        Self::retry(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(40), Duration::from_secs(3600));
        assert_eq!(backoff(-1), Duration::from_secs(1));
    }
}
