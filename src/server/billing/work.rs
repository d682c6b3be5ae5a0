//! The background work the domain asks for, enqueued in the domain's own
//! transaction through the queue's storage ([`crate::server::db::queue`]):
//! the job kinds (names) and payloads the domain writes. The handlers live in
//! the integrations (`server::stripe`, `server::marketplace`) and are
//! registered by the worker (`server::jobs`); the domain never imports them.

use crate::server::billing::BillingError;
use crate::server::db::queue::{enqueue, NewJob, DEFAULT_MAX_ATTEMPTS};
use diesel_async::AsyncPgConnection;
use serde_json::json;

/// Job kind: create the Stripe Customer of `{"customer_id": i64}`
/// (handler: `stripe::jobs::create_customer`).
pub const KIND_STRIPE_CREATE_CUSTOMER: &str = "stripe.create_customer";
/// Job kind: apply the stored Stripe event `{"event_id": "evt_…"}`
/// (handler: `stripe::events::process_event_job`).
pub const KIND_STRIPE_PROCESS_EVENT: &str = "stripe.process_event";
/// Job kind: charge for a fix `{"charge_id": i64}` (PaymentIntent or
/// invoice item; handler: `stripe::charges::charge_job`).
pub const KIND_STRIPE_CHARGE: &str = "stripe.charge";

/// Enqueues, in the caller's transaction, the job that creates the Stripe
/// Customer of `customer_id` (dedupe key `stripe.create_customer:<id>`, so
/// at most one such job ever exists per customer).
///
/// Errors: [`BillingError::Database`].
pub async fn enqueue_create_customer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(), BillingError> {
    let dedupe = format!("{KIND_STRIPE_CREATE_CUSTOMER}:{customer_id}");
    enqueue(
        conn,
        &NewJob {
            kind: KIND_STRIPE_CREATE_CUSTOMER,
            payload: json!({ "customer_id": customer_id }),
            dedupe_key: Some(&dedupe),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        },
    )
    .await?;
    Ok(())
}
