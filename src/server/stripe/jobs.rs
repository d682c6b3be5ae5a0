//! Jobs that call Stripe.

use crate::server::billing::customers::find_customer;
use crate::server::billing::BillingError;
use crate::server::db::schema::customers;
use crate::server::jobs::{
    enqueue, JobError, NewJob, DEFAULT_MAX_ATTEMPTS, KIND_STRIPE_CREATE_CUSTOMER,
};
use crate::server::state::AppState;
use crate::server::stripe::client::{StripeApi, StripeCallError};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};

impl From<StripeCallError> for JobError {
    fn from(error: StripeCallError) -> Self {
        if error.is_retryable() {
            JobError::retry(error.to_string())
        } else {
            JobError::permanent(error.to_string())
        }
    }
}

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
/// Errors: retryable when Stripe is unreachable, answers 429/5xx, or is not
/// configured; permanent for a malformed payload or a 4xx.
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
    if crate::server::marketplace::events::is_placeholder(&customer.email) {
        // GitHub gave no email: wait until it is replaced, which queues this
        // job again (marketplace::events::requeue_create_customer).
        tracing::info!(customer_id, "placeholder email: no Stripe Customer yet");
        return Ok(());
    }
    let api = StripeApi::new(&state.config.stripe)?;
    let existing = api.find_customers(customer_id, &customer.email).await?;
    let stripe_id = match existing.into_iter().next() {
        Some(found) => {
            tracing::info!(customer_id, "reusing the Stripe Customer found by metadata");
            found.id
        }
        None => {
            api.create_customer(customer_id, &customer.email, &customer.name)
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
