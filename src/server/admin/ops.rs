//! Operations: the Stripe webhook event log with replay, and the email
//! outbox with resend; the full stored event, delivery or email for the
//! console's detail pages.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::customers::{EmailRow, EventRow, EMAIL_ROW_COLUMNS, EVENT_ROW_COLUMNS};
use crate::server::admin::{page_offset, Admin};
use crate::server::billing::work::{ProcessStripeEventJob, KIND_STRIPE_PROCESS_EVENT};
use crate::server::billing::BillingError;
use crate::server::db::queue::{retry_now, BackgroundJob};
use crate::server::db::schema::{email_outbox, github_deliveries, jobs, stripe_events};
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

/// The most of a payload or an email body the console shows, in bytes
/// (64 KiB); longer text is cut at a character boundary by [`bounded`].
pub const DETAIL_MAX_BYTES: usize = 64 * 1024;

/// `text` cut to at most `max` bytes at a character boundary, and whether
/// it was cut.
pub fn bounded(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// `value` as indented JSON, bounded by [`DETAIL_MAX_BYTES`]; and whether
/// it was cut.
pub fn pretty_json(value: &serde_json::Value) -> (String, bool) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    bounded(&text, DETAIL_MAX_BYTES)
}

/// A stored Stripe event in full, with its processing job.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEventDetail {
    /// The event's row.
    pub event: EventRow,
    /// When Stripe created it.
    pub created: chrono::DateTime<chrono::Utc>,
    /// The payload as received (signature verified).
    pub payload: serde_json::Value,
    /// Its `stripe.process_event` job: status, attempts, last error.
    pub job: Option<(String, i32, Option<String>)>,
}

/// One stored Stripe event with its payload and processing job.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Database`].
pub async fn stripe_event_detail(
    conn: &mut AsyncPgConnection,
    event_id: &str,
) -> Result<StripeEventDetail, BillingError> {
    let (event, created, payload): (EventRow, chrono::DateTime<chrono::Utc>, serde_json::Value) =
        stripe_events::table
            .find(event_id)
            .select((
                EVENT_ROW_COLUMNS,
                stripe_events::created,
                stripe_events::payload,
            ))
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("Stripe event"))?;
    let job = jobs::table
        .filter(jobs::dedupe_key.eq(dedupe_key(event_id)))
        .select((jobs::status, jobs::attempts, jobs::last_error))
        .first(conn)
        .await
        .optional()?;
    Ok(StripeEventDetail {
        event,
        created,
        payload,
        job,
    })
}

/// A GitHub Marketplace delivery (table `github_deliveries`).
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct DeliveryRow {
    /// The `X-GitHub-Delivery` GUID.
    pub delivery_id: String,
    /// The `X-GitHub-Event` name.
    pub event: String,
    /// The payload's `action`.
    pub action: Option<String>,
    /// The Marketplace account's login.
    pub account_login: Option<String>,
    /// The customer it provisioned or changed.
    pub customer_id: Option<i64>,
    /// `processed`, `ignored` or `failed`.
    pub status: String,
    /// Processing attempts.
    pub attempts: i32,
    /// The last processing error.
    pub error: Option<String>,
    /// Received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Applied.
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
}

type DeliveryColumns = (
    github_deliveries::delivery_id,
    github_deliveries::event,
    github_deliveries::action,
    github_deliveries::account_login,
    github_deliveries::customer_id,
    github_deliveries::status,
    github_deliveries::attempts,
    github_deliveries::error,
    github_deliveries::received_at,
    github_deliveries::processed_at,
);

const DELIVERY_COLUMNS: DeliveryColumns = (
    github_deliveries::delivery_id,
    github_deliveries::event,
    github_deliveries::action,
    github_deliveries::account_login,
    github_deliveries::customer_id,
    github_deliveries::status,
    github_deliveries::attempts,
    github_deliveries::error,
    github_deliveries::received_at,
    github_deliveries::processed_at,
);

/// One page of GitHub Marketplace deliveries, newest first, and the total.
///
/// Errors: [`BillingError::Database`].
pub async fn list_deliveries(
    conn: &mut AsyncPgConnection,
    page: i64,
) -> Result<(Vec<DeliveryRow>, i64), BillingError> {
    let (_, offset) = page_offset(page, OPS_PER_PAGE);
    let total = github_deliveries::table.count().get_result(conn).await?;
    let rows = github_deliveries::table
        .order(github_deliveries::received_at.desc())
        .limit(OPS_PER_PAGE)
        .offset(offset)
        .select(DELIVERY_COLUMNS)
        .load(conn)
        .await?;
    Ok((rows, total))
}

/// One GitHub delivery with its payload.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Database`].
pub async fn delivery_detail(
    conn: &mut AsyncPgConnection,
    delivery_id: &str,
) -> Result<(DeliveryRow, serde_json::Value), BillingError> {
    github_deliveries::table
        .find(delivery_id)
        .select((DELIVERY_COLUMNS, github_deliveries::payload))
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("GitHub delivery"))
}

/// An outbox email in full, as stored: bodies are `None` until the worker
/// renders them at sending (the `notification` holds what it renders
/// from). Links' tokens in sent emails were redacted when they were sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailDetail {
    /// The outbox row.
    pub row: EmailRow,
    /// Plain-text body.
    pub text_body: Option<String>,
    /// HTML body.
    pub html_body: Option<String>,
    /// What the worker renders from (kind and fields).
    pub notification: Option<serde_json::Value>,
    /// When the worker tries it next (queued or failed).
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
}

/// One outbox email with its bodies.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Database`].
pub async fn email_detail(
    conn: &mut AsyncPgConnection,
    email_id: i64,
) -> Result<EmailDetail, BillingError> {
    let (row, text_body, html_body, notification, next_attempt_at) = email_outbox::table
        .find(email_id)
        .select((
            EMAIL_ROW_COLUMNS,
            email_outbox::text_body,
            email_outbox::html_body,
            email_outbox::notification,
            email_outbox::next_attempt_at,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("email"))?;
    Ok(EmailDetail {
        row,
        text_body,
        html_body,
        notification,
        next_attempt_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        assert_eq!(bounded("abc", 3), ("abc".to_owned(), false));
        assert_eq!(bounded("abcd", 3), ("abc".to_owned(), true));
        // "é" is two bytes: a cut inside it backs off before it.
        assert_eq!(bounded("aé", 2), ("a".to_owned(), true));
        let (text, cut) = pretty_json(&json!({"a": "x".repeat(DETAIL_MAX_BYTES)}));
        assert!(cut && text.len() <= DETAIL_MAX_BYTES);
        let (text, cut) = pretty_json(&json!({"a": 1}));
        assert_eq!((text.as_str(), cut), ("{\n  \"a\": 1\n}", false));
    }
}
