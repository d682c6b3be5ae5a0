//! The job queue in the admin console (issue 9, scope 5): jobs listed by
//! status (dead first) and kind, and dead jobs re-driven one at a time or
//! all of one kind, each with its audit entry in the same transaction.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::{page_offset, Admin};
use crate::server::billing::BillingError;
use crate::server::db::queue::Job;
use crate::server::db::schema::jobs;
use crate::types::values::ParseError;
use diesel::prelude::*;
use diesel::sql_types::{Int8, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// Rows per page of the job list.
pub const JOBS_PER_PAGE: i64 = 50;

/// The job statuses, in the order the list shows them (dead first).
pub const JOB_STATUSES: [&str; 4] = ["dead", "queued", "running", "done"];

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
}

/// One page of jobs: `status` one of [`JOB_STATUSES`] (empty: all), `kind`
/// an exact job name (empty: all); dead first, then queued, running, done,
/// newest first within a status. Returns the rows, the matches in all and
/// every kind present (filter choices).
///
/// Errors: [`BillingError::Invalid`] for an unknown status;
/// [`BillingError::Database`].
pub async fn list_jobs(
    conn: &mut AsyncPgConnection,
    status: Option<&str>,
    kind: Option<&str>,
    page: i64,
) -> Result<(Vec<Job>, i64, Vec<String>), BillingError> {
    let status = status.filter(|s| !s.is_empty());
    let kind = kind.filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !JOB_STATUSES.contains(&s) {
            return Err(invalid(format!(
                "status must be one of dead, queued, running, done; got {s:?}"
            )));
        }
    }
    let build = || {
        let mut query = jobs::table.into_boxed();
        if let Some(s) = status {
            query = query.filter(jobs::status.eq(s.to_owned()));
        }
        if let Some(k) = kind {
            query = query.filter(jobs::kind.eq(k.to_owned()));
        }
        query
    };
    let (_, offset) = page_offset(page, JOBS_PER_PAGE);
    let total = build().count().get_result(conn).await?;
    let rank = diesel::dsl::sql::<diesel::sql_types::Int4>(
        "CASE status WHEN 'dead' THEN 0 WHEN 'queued' THEN 1 WHEN 'running' THEN 2 ELSE 3 END",
    );
    let rows = build()
        .order((rank.asc(), jobs::id.desc()))
        .limit(JOBS_PER_PAGE)
        .offset(offset)
        .select(Job::as_select())
        .load(conn)
        .await?;
    let kinds = jobs::table
        .select(jobs::kind)
        .distinct()
        .order(jobs::kind)
        .load(conn)
        .await?;
    Ok((rows, total, kinds))
}

/// Re-drives dead job `job_id`: queued again, due now, attempts reset
/// (its payload and dedupe key unchanged), with the audit entry
/// (`job.retry`), in one transaction. The worker then runs it again.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Invalid`] for a job
/// that is not dead; [`BillingError::Database`].
pub async fn retry_dead_job(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    job_id: i64,
) -> Result<(), BillingError> {
    conn.transaction(async |conn| {
        let (kind, status, attempts, last_error): (String, String, i32, Option<String>) =
            jobs::table
                .find(job_id)
                .select((jobs::kind, jobs::status, jobs::attempts, jobs::last_error))
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or(BillingError::NotFound("job"))?;
        if status != "dead" {
            return Err(invalid(format!(
                "only a dead job can be retried; this one is {status}"
            )));
        }
        requeue(conn, "id = $1", job_id, "").await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "job.retry",
                target_type: "job",
                target_id: Some(job_id.to_string()),
                customer_id: None,
                reason: None,
                before: Some(json!({
                    "kind": kind, "status": status, "attempts": attempts, "last_error": last_error,
                })),
                after: Some(json!({ "status": "queued", "attempts": 0 })),
            },
        )
        .await?;
        Ok(())
    })
    .await
}

/// Re-drives every dead job of `kind` (as [`retry_dead_job`]) with one
/// audit entry (`job.retry_kind`, listing the ids), in one transaction.
/// Returns how many were queued again (0 writes no audit entry).
///
/// Errors: [`BillingError::Invalid`] for an empty kind;
/// [`BillingError::Database`].
pub async fn retry_dead_jobs_of_kind(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    kind: &str,
) -> Result<usize, BillingError> {
    let kind = kind.trim();
    if kind.is_empty() {
        return Err(invalid("choose the kind of job to retry"));
    }
    conn.transaction(async |conn| {
        let ids = requeue(conn, "kind = $2", 0, kind).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "job.retry_kind",
                target_type: "job_kind",
                target_id: Some(kind.to_owned()),
                customer_id: None,
                reason: None,
                before: Some(json!({ "status": "dead", "job_ids": ids })),
                after: Some(json!({ "status": "queued", "attempts": 0 })),
            },
        )
        .await?;
        Ok(ids.len())
    })
    .await
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// Queues the dead jobs matching `filter` (over `$1` an id, `$2` a kind)
/// again; returns their ids.
async fn requeue(
    conn: &mut AsyncPgConnection,
    filter: &str,
    id: i64,
    kind: &str,
) -> Result<Vec<i64>, diesel::result::Error> {
    let rows: Vec<Id> = diesel::sql_query(format!(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), \
                locked_until = NULL, updated_at = now() \
         WHERE status = 'dead' AND {filter} RETURNING id"
    ))
    .bind::<Int8, _>(id)
    .bind::<Text, _>(kind)
    .load(conn)
    .await?;
    let mut ids: Vec<i64> = rows.into_iter().map(|r| r.id).collect();
    ids.sort_unstable();
    Ok(ids)
}
