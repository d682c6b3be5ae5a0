//! Jobs that call Stripe.

use crate::server::billing::customers::find_customer;
use crate::server::billing::ports::{NewProcessorCustomer, ProcessorError};
pub use crate::server::billing::work::enqueue_create_customer;
use crate::server::billing::BillingError;
use crate::server::db::queue::JobError;
use crate::server::db::schema::customers;
use crate::server::state::AppState;
use crate::server::stripe::client::StripeCallError;
use crate::server::stripe::customer_create_key;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;

impl From<StripeCallError> for JobError {
    fn from(error: StripeCallError) -> Self {
        if error.is_retryable() {
            JobError::retry(error.to_string())
        } else {
            JobError::permanent(error.to_string())
        }
    }
}

impl From<ProcessorError> for JobError {
    /// A decline cannot be retried into success; everything else can
    /// (outages, conflicts, and with backoff a configuration being fixed).
    fn from(error: ProcessorError) -> Self {
        if error.is_retryable() {
            JobError::retry(error.to_string())
        } else {
            JobError::permanent(error.to_string())
        }
    }
}

/// The `stripe.create_customer` job (`{"customer_id": i64}`): gives our
/// customer exactly one Stripe Customer and stores its id.
///
/// Safe to run any number of times: it does nothing once
/// `stripe_customer_id` is set; before creating it looks on Stripe for a
/// Customer whose metadata `rsolv_customer_id` names ours (left by an earlier
/// run whose answer was lost) and reuses it; the create call carries the
/// idempotency key `customer:create:<id>`; the id is stored only where none
/// is stored yet. The queue's dedupe key and lease keep two runs of it from
/// overlapping.
///
/// A customer under a GitHub placeholder email gets no Stripe Customer: the
/// job finishes without calling Stripe and runs again once the email is
/// replaced.
///
/// Errors: retryable for every processor failure (outage, 429/5xx, 409,
/// a rejected key or request, not configured: see [`ProcessorError`]);
/// permanent for a malformed payload.
pub async fn create_customer(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let customer_id = payload
        .get("customer_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload lacks customer_id"))?;
    let customer = {
        let mut conn = state.conn().await?;
        match find_customer(&mut conn, customer_id).await {
            Ok(c) => c,
            Err(BillingError::NotFound(_)) => return Ok(()), // deleted since: nothing to do
            Err(e) => return Err(e.into()),
        }
    };
    if customer.stripe_customer_id.is_some() {
        return Ok(());
    }
    if crate::server::billing::placeholder::is_placeholder(&customer.email) {
        // GitHub gave no email: wait until it is replaced, which queues this
        // job again (marketplace::events::requeue_create_customer).
        tracing::info!(customer_id, "placeholder email: no Stripe Customer yet");
        return Ok(());
    }
    let processor = state.processor.as_ref();
    let existing = processor
        .find_customers(customer_id, &customer.email)
        .await?;
    let stripe_id = match existing.into_iter().next() {
        Some(found) => {
            tracing::info!(customer_id, "reusing the Stripe Customer found by metadata");
            found.id
        }
        None => {
            processor
                .create_customer(&NewProcessorCustomer {
                    customer_id,
                    email: customer.email.clone(),
                    name: customer.name.clone(),
                    idempotency_key: customer_create_key(customer_id),
                })
                .await?
                .id
        }
    };
    let mut conn = state.conn().await?;
    let stored = diesel::update(
        customers::table
            .find(customer_id)
            .filter(customers::stripe_customer_id.is_null()),
    )
    .set((
        customers::stripe_customer_id.eq(&stripe_id),
        customers::updated_at.eq(diesel::dsl::now),
    ))
    .execute(&mut conn)
    .await
    .map_err(BillingError::from)?;
    if stored == 0 {
        tracing::warn!(
            customer_id,
            "stripe_customer_id was set meanwhile; kept the stored one"
        );
    } else {
        // Events that arrived before the id was known apply now.
        crate::server::stripe::events::redrive_waiting_events(&mut conn, &stripe_id).await?;
    }
    Ok(())
}
