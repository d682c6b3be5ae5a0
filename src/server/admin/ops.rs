//! Operations: the Stripe webhook event log with replay, and the email
//! outbox with resend.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::customers::{EmailRow, EventRow, EMAIL_ROW_COLUMNS, EVENT_ROW_COLUMNS};
use crate::server::admin::{page_offset, Admin};
use crate::server::billing::work::{ProcessStripeEventJob, KIND_STRIPE_PROCESS_EVENT};
use crate::server::billing::BillingError;
use crate::server::db::queue::{retry_now, BackgroundJob};
use crate::server::db::schema::{email_outbox, jobs, stripe_events};
use crate::types::values::ParseError;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// Rows per page of the event log and the outbox.
pub const OPS_PER_PAGE: i64 = 50;

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
}

/// One stored event with the state of its processing job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWithJob {
    /// The event.
    pub event: EventRow,
    /// Its `stripe.process_event` job's status (`queued`, `running`,
    /// `done`, `dead`), if the job exists.
    pub job_status: Option<String>,
}

/// The event log's filter: `status` is `received`, `processed`, `failed`
/// or `dead` (the job gave up); `type_` an exact event type.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Status filter.
    pub status: Option<String>,
    /// Type filter.
    pub type_: Option<String>,
    /// Page from 1.
    pub page: i64,
}

fn dedupe_key(event_id: &str) -> String {
    format!("{KIND_STRIPE_PROCESS_EVENT}:{event_id}")
}

/// One page of stored Stripe events, newest first, with their jobs' state.
///
/// Errors: [`BillingError::Invalid`] for an unknown status;
/// [`BillingError::Database`].
pub async fn list_events(
    conn: &mut AsyncPgConnection,
    filter: &EventFilter,
) -> Result<(Vec<EventWithJob>, i64), BillingError> {
    let status = filter.status.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !matches!(s, "received" | "processed" | "failed" | "dead") {
            return Err(invalid(format!(
                "status must be one of received, processed, failed, dead; got {s:?}"
            )));
        }
    }
    let type_ = filter.type_.clone().filter(|t| !t.trim().is_empty());
    let build = || {
        let mut query = stripe_events::table.into_boxed();
        match status {
            Some("dead") => {
                query = query.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "EXISTS (SELECT 1 FROM jobs j WHERE j.dedupe_key = 'stripe.process_event:' || stripe_events.id AND j.status = 'dead')",
                ));
            }
            Some(s) => query = query.filter(stripe_events::status.eq(s.to_owned())),
            None => {}
        }
        if let Some(t) = &type_ {
            query = query.filter(stripe_events::type_.eq(t.trim().to_owned()));
        }
        query
    };
    let (_, offset) = page_offset(filter.page, OPS_PER_PAGE);
    let total = build().count().get_result(conn).await?;
    let events: Vec<EventRow> = build()
        .order(stripe_events::received_at.desc())
        .limit(OPS_PER_PAGE)
        .offset(offset)
        .select(EVENT_ROW_COLUMNS)
        .load(conn)
        .await?;
    let keys: Vec<String> = events.iter().map(|e| dedupe_key(&e.id)).collect();
    let job_states: Vec<(Option<String>, String)> = jobs::table
        .filter(jobs::dedupe_key.eq_any(&keys))
        .select((jobs::dedupe_key, jobs::status))
        .load(conn)
        .await?;
    let rows = events
        .into_iter()
        .map(|event| {
            let key = dedupe_key(&event.id);
            let job_status = job_states
                .iter()
                .find(|(k, _)| k.as_deref() == Some(key.as_str()))
                .map(|(_, s)| s.clone());
            EventWithJob { event, job_status }
        })
        .collect();
    Ok((rows, total))
}

/// The distinct event types stored, for the filter's choices.
///
/// Errors: [`BillingError::Database`].
pub async fn event_types(conn: &mut AsyncPgConnection) -> Result<Vec<String>, BillingError> {
    Ok(stripe_events::table
        .select(stripe_events::type_)
        .distinct()
        .order(stripe_events::type_.asc())
        .load(conn)
        .await?)
}

/// Replays a failed or dead-lettered event: its `stripe.process_event` job
/// is made due now (a dead job's attempts reset; see
/// [`crate::server::db::queue::retry_now`]), or enqueued again if it is missing,
/// and the audit entry (`stripe_event.replay`) is written, in one
/// transaction. The job worker then applies the event.
///
/// Errors: [`BillingError::NotFound`] for an unknown event;
/// [`BillingError::Invalid`] for an event already processed or whose job is
/// running or waiting for its first run; [`BillingError::Database`].
pub async fn replay_event(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    event_id: &str,
) -> Result<(), BillingError> {
    conn.transaction(async |conn| {
        let (status, attempts): (String, i32) = stripe_events::table
            .find(event_id)
            .select((stripe_events::status, stripe_events::attempts))
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("Stripe event"))?;
        if status == "processed" {
            return Err(invalid(
                "this event was processed already; nothing to replay",
            ));
        }
        let key = dedupe_key(event_id);
        let job: Option<(i64, String)> = jobs::table
            .filter(jobs::dedupe_key.eq(&key))
            .select((jobs::id, jobs::status))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let job_before = job.as_ref().map(|(_, s)| s.clone());
        match &job {
            Some((id, job_status))
                if job_status == "dead" || (job_status == "queued" && status == "failed") =>
            {
                retry_now(conn, *id).await?;
            }
            Some((_, job_status)) if job_status == "running" => {
                return Err(invalid("this event is being processed right now"));
            }
            Some(_) => {
                return Err(invalid(
                    "this event has not failed; it is waiting to be processed",
                ));
            }
            None => {
                ProcessStripeEventJob {
                    event_id: event_id.to_owned(),
                }
                .enqueue(conn, Some(&key))
                .await?;
            }
        }
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "stripe_event.replay",
                target_type: "stripe_event",
                target_id: Some(event_id.to_owned()),
                customer_id: None,
                reason: None,
                before: Some(
                    json!({ "status": status, "attempts": attempts, "job_status": job_before }),
                ),
                after: Some(json!({ "job_status": "queued" })),
            },
        )
        .await?;
        Ok(())
    })
    .await
}

/// One page of the email outbox, newest first; `status` is `queued`,
/// `sending`, `sent` or `failed` (empty: all).
///
/// Errors: [`BillingError::Invalid`] for another status;
/// [`BillingError::Database`].
pub async fn list_emails(
    conn: &mut AsyncPgConnection,
    status: Option<&str>,
    page: i64,
) -> Result<(Vec<EmailRow>, i64), BillingError> {
    let status = status.filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !matches!(s, "queued" | "sending" | "sent" | "failed") {
            return Err(invalid(format!(
                "status must be one of queued, sending, sent, failed; got {s:?}"
            )));
        }
    }
    let build = || {
        let mut query = email_outbox::table.into_boxed();
        if let Some(s) = status {
            query = query.filter(email_outbox::status.eq(s.to_owned()));
        }
        query
    };
    let (_, offset) = page_offset(page, OPS_PER_PAGE);
    let total = build().count().get_result(conn).await?;
    let rows = build()
        .order(email_outbox::id.desc())
        .limit(OPS_PER_PAGE)
        .offset(offset)
        .select(EMAIL_ROW_COLUMNS)
        .load(conn)
        .await?;
    Ok((rows, total))
}

/// Queues a failed email again (attempts reset, due now) and writes the
/// audit entry (`email.resend`), in one transaction; the outbox worker
/// sends it.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Invalid`] for an
/// email that has not failed; [`BillingError::Database`].
pub async fn resend_email(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    email_id: i64,
) -> Result<(), BillingError> {
    conn.transaction(async |conn| {
        let (status, attempts, customer_id, last_error): (
            String,
            i32,
            Option<i64>,
            Option<String>,
        ) = email_outbox::table
            .find(email_id)
            .select((
                email_outbox::status,
                email_outbox::attempts,
                email_outbox::customer_id,
                email_outbox::last_error,
            ))
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("email"))?;
        if status != "failed" {
            return Err(invalid(format!(
                "only a failed email can be resent; this one is {status}"
            )));
        }
        diesel::update(email_outbox::table.find(email_id))
            .set((
                email_outbox::status.eq("queued"),
                email_outbox::attempts.eq(0),
                email_outbox::next_attempt_at.eq(diesel::dsl::now),
                email_outbox::locked_until.eq(None::<chrono::DateTime<chrono::Utc>>),
            ))
            .execute(conn)
            .await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "email.resend",
                target_type: "email",
                target_id: Some(email_id.to_string()),
                customer_id,
                reason: None,
                before: Some(
                    json!({ "status": status, "attempts": attempts, "last_error": last_error }),
                ),
                after: Some(json!({ "status": "queued", "attempts": 0 })),
            },
        )
        .await?;
        Ok(())
    })
    .await
}
