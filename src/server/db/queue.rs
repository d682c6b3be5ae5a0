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
//! **Order.** A job may carry an ordering key (a webhook event's customer):
//! jobs with the same key run one at a time, in the order they were
//! enqueued (their ids). A job enqueued while an earlier one of its key is
//! queued or running is `held` and never claimed; finishing a job (`done`,
//! or `dead`: the dead-letter state does not block its key forever)
//! releases the lowest held job of its key. Enqueueing and finishing a keyed
//! job both take the key's transaction-scoped advisory lock, so a job
//! enqueued while its predecessor finishes is either seen by the release or
//! sees the predecessor finished; and the ids of one key are assigned in
//! commit order. A job that fails and will retry stays its key's head, so
//! the jobs after it wait for it (an event is never applied before an
//! earlier-received one of the same customer). An operator's
//! [`retry_now`] of a dead keyed job runs it beside its key's current head.
//!
//! **Waking workers.** Workers poll for due jobs (`server::jobs`, every
//! `IDLE_POLL` while they have a free slot, and at once when a slot
//! frees); nothing here `NOTIFY`s. PostgreSQL serialises the commits of
//! every transaction that ran `NOTIFY` (a database-wide lock held through
//! the commit's WAL flush), so a notification per enqueued job capped
//! webhook receipts and job completions at one commit per fsync (measured
//! here: 5,433 inserting transactions/s against 830 with a `pg_notify`
//! each, pgbench, 16 clients). [`claim_batch`] takes up to N jobs in one
//! statement.
//!
//! The queue stores `(kind, payload)` and knows no handler: a job's type
//! implements [`BackgroundJob`] (its name and its payload, the struct
//! itself, serialised as JSON) and is enqueued with
//! [`BackgroundJob::enqueue`]; the worker (`server::jobs`) registers the
//! types it runs (`server::jobs::Job`, which adds `run`).

use crate::server::db::schema::jobs;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Interval, Nullable, Text};
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
    /// Jobs with the same key run one at a time, in id order (module doc).
    pub ordering_key: Option<String>,
    /// Queued behind an earlier job of the same key: not claimable until
    /// that job is done or dead.
    pub held: bool,
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
    /// Optional ordering key (e.g. `stripe_customer:cus_…`): runs after
    /// every earlier job with the same key is done or dead.
    pub ordering_key: Option<&'a str>,
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
        enqueue_payload(self, conn, dedupe_key, None)
    }

    /// [`Self::enqueue`] with an ordering key: the job runs only after
    /// every earlier job with the same key is done or dead (module doc).
    /// Call it inside the transaction that causes the job: the key's lock
    /// is held until that transaction ends.
    ///
    /// Errors: as [`Self::enqueue`].
    fn enqueue_in_order<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        dedupe_key: Option<&'a str>,
        ordering_key: &'a str,
    ) -> impl Future<Output = Result<Option<i64>, diesel::result::Error>> + Send + 'a {
        enqueue_payload(self, conn, dedupe_key, Some(ordering_key))
    }
}

/// [`BackgroundJob::enqueue`] and [`BackgroundJob::enqueue_in_order`]: serialises
/// `payload` and enqueues it as a job of its kind.
fn enqueue_payload<'a, P: BackgroundJob>(
    payload: &P,
    conn: &'a mut AsyncPgConnection,
    dedupe_key: Option<&'a str>,
    ordering_key: Option<&'a str>,
) -> impl Future<Output = Result<Option<i64>, diesel::result::Error>> + Send + 'a {
    let payload = serde_json::to_value(payload);
    async move {
        let payload =
            payload.map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        enqueue(
            conn,
            &NewJob {
                kind: P::JOB_NAME,
                payload,
                dedupe_key,
                max_attempts: P::MAX_ATTEMPTS,
                ordering_key,
            },
        )
        .await
    }
}

/// Enqueues `job` in the caller's transaction; returns its id, or `None`
/// when a job with the same dedupe key exists (whatever its state). With
/// an ordering key it first takes the
/// key's advisory lock ([`lock_ordering_key`]; outside a transaction it
/// opens one) and the job is `held` when an earlier job of the key is
/// queued or running.
///
/// Errors: the database error.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    job: &NewJob<'_>,
) -> Result<Option<i64>, diesel::result::Error> {
    use diesel_async::AsyncConnection;
    match job.ordering_key {
        None => insert_job(conn, job).await,
        Some(key) if in_transaction(conn) => {
            lock_ordering_key(conn, key).await?;
            insert_job(conn, job).await
        }
        Some(key) => {
            conn.transaction(async |conn| {
                lock_ordering_key(conn, key).await?;
                insert_job(conn, job).await
            })
            .await
        }
    }
}

fn in_transaction(conn: &mut AsyncPgConnection) -> bool {
    use diesel_async::{AsyncConnection, TransactionManager};
    <AsyncPgConnection as AsyncConnection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .is_ok_and(|depth| depth.is_some())
}

/// Takes the transaction-scoped advisory lock of ordering key `key` (a
/// 64-bit hash of it: two keys sharing a hash only wait for each other).
/// Enqueueing and finishing keyed jobs take it; a caller that stamps its
/// own rows with the order (e.g. a webhook's receipt time) takes it first.
/// Held until the caller's transaction ends; outside one it is released
/// at once.
///
/// Errors: the database error.
pub async fn lock_ordering_key(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<Text, _>(key)
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_job(
    conn: &mut AsyncPgConnection,
    job: &NewJob<'_>,
) -> Result<Option<i64>, diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Int8)]
        id: i64,
    }
    // `held` is read after the key's lock was taken (a statement of its
    // own), so it sees every job of the key that committed before.
    let row: Option<Id> = diesel::sql_query(
        "INSERT INTO jobs (kind, payload, dedupe_key, max_attempts, ordering_key, held) \
         SELECT $1, $2, $3, $4, $5, $5 IS NOT NULL AND EXISTS ( \
             SELECT 1 FROM jobs WHERE ordering_key = $5 AND status IN ('queued', 'running')) \
         ON CONFLICT (dedupe_key) DO NOTHING \
         RETURNING id",
    )
    .bind::<Text, _>(job.kind)
    .bind::<diesel::sql_types::Jsonb, _>(&job.payload)
    .bind::<Nullable<Text>, _>(job.dedupe_key)
    .bind::<diesel::sql_types::Int4, _>(job.max_attempts)
    .bind::<Nullable<Text>, _>(job.ordering_key)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|r| r.id))
}

/// Claims the next due job (see [`claim_batch`]). `None` when nothing is
/// due.
///
/// Errors: the database error.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    skip_kinds: &[&str],
) -> Result<Option<Job>, diesel::result::Error> {
    Ok(claim_batch(conn, skip_kinds, 1).await?.into_iter().next())
}

/// Claims up to `limit` due jobs in one statement: queued with
/// `run_at <= now()` and not held, or running with an expired lease (a
/// crashed worker's), whose kind is not in `skip_kinds`, oldest `run_at`
/// first. Each is marked `running`, its attempt counted and its lease set
/// to now + [`LEASE`]. Rows another worker is claiming are skipped
/// (`FOR UPDATE SKIP LOCKED`), so no two workers get the same job; a batch
/// holds at most one job per ordering key (only a key's head is not held).
/// Returned in claim order; empty when nothing is due.
///
/// Errors: the database error.
pub async fn claim_batch(
    conn: &mut AsyncPgConnection,
    skip_kinds: &[&str],
    limit: usize,
) -> Result<Vec<Job>, diesel::result::Error> {
    claim_where(conn, &[], skip_kinds, limit).await
}

/// [`claim_batch`] of the jobs whose kind is one of `kinds` (none when
/// `kinds` is empty).
///
/// Errors: the database error.
pub async fn claim_kinds(
    conn: &mut AsyncPgConnection,
    kinds: &[&str],
    limit: usize,
) -> Result<Vec<Job>, diesel::result::Error> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    claim_where(conn, kinds, &[], limit).await
}

/// Claims up to `limit` due jobs of `only` kinds (any when empty) and not
/// of `skip` kinds ([`claim_batch`]).
async fn claim_where(
    conn: &mut AsyncPgConnection,
    only: &[&str],
    skip: &[&str],
    limit: usize,
) -> Result<Vec<Job>, diesel::result::Error> {
    let texts = |kinds: &[&str]| kinds.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    let mut jobs: Vec<Job> = diesel::sql_query(
        "WITH picked AS MATERIALIZED ( \
             SELECT id FROM jobs \
             WHERE ((status = 'queued' AND run_at <= now()) \
                    OR (status = 'running' AND locked_until < now())) \
               AND NOT held \
               AND NOT (kind = ANY($1)) \
               AND (cardinality($4::text[]) = 0 OR kind = ANY($4)) \
             ORDER BY run_at, id \
             LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE jobs SET status = 'running', attempts = attempts + 1, \
                locked_until = now() + $2, updated_at = now() \
         FROM picked WHERE jobs.id = picked.id \
         RETURNING jobs.*",
    )
    .bind::<Array<Text>, _>(texts(skip))
    .bind::<Interval, _>(pg_interval(LEASE))
    .bind::<Int8, _>(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind::<Array<Text>, _>(texts(only))
    .load(conn)
    .await?;
    jobs.sort_by_key(|job| (job.run_at, job.id));
    Ok(jobs)
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

/// Marks the job done (only while this worker still holds it); for a keyed
/// job, in the same transaction, releases the next job of its key
/// ([`release_next`]).
///
/// Errors: the database error.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    job: &Job,
) -> Result<(), diesel::result::Error> {
    finish(conn, job, End::Done).await
}

/// Marks `jobs` done (those this worker still holds) in the caller's
/// transaction, so they end with the effects that transaction commits,
/// and releases the next job of each of their ordering keys. Takes the
/// keys' locks in one order (sorted by hash), so two callers never wait
/// for each other in a cycle. Outside a transaction it opens one.
///
/// Errors: the database error.
pub async fn complete_batch(
    conn: &mut AsyncPgConnection,
    jobs: &[&Job],
) -> Result<(), diesel::result::Error> {
    use diesel_async::AsyncConnection;
    if jobs.is_empty() {
        Ok(())
    } else if in_transaction(conn) {
        complete_in_transaction(conn, jobs).await
    } else {
        conn.transaction(async |conn| complete_in_transaction(conn, jobs).await)
            .await
    }
}

async fn complete_in_transaction(
    conn: &mut AsyncPgConnection,
    jobs: &[&Job],
) -> Result<(), diesel::result::Error> {
    let mut keys: Vec<String> = jobs
        .iter()
        .filter_map(|job| job.ordering_key.clone())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if !keys.is_empty() {
        diesel::sql_query(
            "SELECT pg_advisory_xact_lock(h) FROM ( \
                 SELECT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k \
                 ORDER BY 1) AS locks",
        )
        .bind::<Array<Text>, _>(&keys)
        .execute(conn)
        .await?;
    }
    let ids: Vec<i64> = jobs.iter().map(|job| job.id).collect();
    let ended: Vec<Option<String>> = diesel::update(
        jobs::table
            .filter(jobs::id.eq_any(&ids))
            .filter(jobs::status.eq("running")),
    )
    .set((
        jobs::status.eq("done"),
        jobs::locked_until.eq(None::<DateTime<Utc>>),
        jobs::last_error.eq(None::<String>),
        jobs::updated_at.eq(diesel::dsl::now),
    ))
    .returning(jobs::ordering_key)
    .get_results(conn)
    .await?;
    let mut released: Vec<String> = ended.into_iter().flatten().collect();
    released.sort_unstable();
    released.dedup();
    release_next_of(conn, &released).await?;
    Ok(())
}

/// How a job ends.
enum End<'a> {
    Done,
    /// Dead, with its last error; `run_at` as a retry would have had.
    Dead(&'a str, DateTime<Utc>),
}

/// Ends the job (only while it is `running`) and, for a keyed job whose
/// row changed, releases the next job of its key, under the key's lock in
/// one transaction.
async fn finish(
    conn: &mut AsyncPgConnection,
    job: &Job,
    end: End<'_>,
) -> Result<(), diesel::result::Error> {
    use diesel_async::AsyncConnection;
    let Some(key) = job.ordering_key.as_deref() else {
        end_job(conn, job.id, &end).await?;
        return Ok(());
    };
    conn.transaction(async |conn| {
        lock_ordering_key(conn, key).await?;
        if end_job(conn, job.id, &end).await? > 0 {
            release_next(conn, key).await?;
        }
        Ok(())
    })
    .await
}

async fn end_job(
    conn: &mut AsyncPgConnection,
    id: i64,
    end: &End<'_>,
) -> Result<usize, diesel::result::Error> {
    let target = jobs::table.find(id).filter(jobs::status.eq("running"));
    match end {
        End::Done => {
            diesel::update(target)
                .set((
                    jobs::status.eq("done"),
                    jobs::locked_until.eq(None::<DateTime<Utc>>),
                    jobs::last_error.eq(None::<String>),
                    jobs::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await
        }
        End::Dead(error, run_at) => {
            diesel::update(target)
                .set((
                    jobs::status.eq("dead"),
                    jobs::locked_until.eq(None::<DateTime<Utc>>),
                    jobs::last_error.eq(*error),
                    jobs::run_at.eq(*run_at),
                    jobs::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await
        }
    }
}

/// Releases the lowest held job of `key` when no other job of the key is
/// queued or running unheld (its head finished). Call it under the key's
/// lock ([`lock_ordering_key`]). Returns whether a job was released.
///
/// Errors: the database error.
pub async fn release_next(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> Result<bool, diesel::result::Error> {
    Ok(release_next_of(conn, &[key.to_owned()]).await? > 0)
}

/// [`release_next`] for each of `keys`, in one statement; returns how many
/// jobs were released. Call it under the keys' locks.
async fn release_next_of(
    conn: &mut AsyncPgConnection,
    keys: &[String],
) -> Result<usize, diesel::result::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE jobs SET held = false, updated_at = now() \
         WHERE id IN (SELECT DISTINCT ON (ordering_key) id FROM jobs \
                      WHERE ordering_key = ANY($1) AND status = 'queued' AND held \
                      ORDER BY ordering_key, id) \
           AND NOT EXISTS (SELECT 1 FROM jobs AS head \
                           WHERE head.ordering_key = jobs.ordering_key \
                             AND head.status IN ('queued', 'running') AND NOT head.held)",
    )
    .bind::<Array<Text>, _>(keys)
    .execute(conn)
    .await
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
    let run_at = Utc::now() + delay;
    if dead {
        // A dead job no longer blocks its key.
        finish(conn, job, End::Dead(&error.message, run_at)).await?;
    } else {
        // A job that will retry stays its key's head.
        diesel::update(jobs::table.find(job.id).filter(jobs::status.eq("running")))
            .set((
                jobs::status.eq(status),
                jobs::locked_until.eq(None::<DateTime<Utc>>),
                jobs::last_error.eq(&error.message),
                jobs::run_at.eq(run_at),
                jobs::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
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
