//! Email: an outbox table written in the same transaction as the event that
//! causes the email ([`enqueue_email`]), rendered by [`templates`], sent by
//! the [`worker`] through the configured [`transport`].

pub mod templates;
pub mod transport;
pub mod worker;

use crate::server::billing::BillingError;
use crate::server::db::schema::email_outbox;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// One email to queue. Bodies are complete (already rendered).
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    /// The customer it concerns, if any (for the admin's view).
    pub customer_id: Option<i64>,
    /// What it is: `welcome`, `email_confirmation`, `password_reset`,
    /// `low_credit`, `api_key_revoked`, `api_key_rotated`, `invite`, ...
    pub kind: &'static str,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text_body: String,
    /// HTML body.
    pub html_body: String,
    /// Unique across the outbox: queuing the same key twice queues one
    /// email (e.g. `welcome:<customer id>`, `low_credit:<ledger entry id>`).
    pub idempotency_key: String,
}

/// Queues `email` inside the caller's transaction; returns the outbox id,
/// or `None` when an email with the same idempotency key was already queued.
///
/// Errors: [`BillingError::Database`].
pub async fn enqueue_email(
    conn: &mut AsyncPgConnection,
    email: &OutgoingEmail,
) -> Result<Option<i64>, BillingError> {
    Ok(diesel::insert_into(email_outbox::table)
        .values((
            email_outbox::customer_id.eq(email.customer_id),
            email_outbox::kind.eq(email.kind),
            email_outbox::to_address.eq(&email.to),
            email_outbox::subject.eq(&email.subject),
            email_outbox::text_body.eq(&email.text_body),
            email_outbox::html_body.eq(&email.html_body),
            email_outbox::idempotency_key.eq(&email.idempotency_key),
        ))
        .on_conflict(email_outbox::idempotency_key)
        .do_nothing()
        .returning(email_outbox::id)
        .get_result(conn)
        .await
        .optional()?)
}
