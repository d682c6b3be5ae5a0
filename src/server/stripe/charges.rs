//! The `stripe.charge` job: turns a pending `charges` row into exactly one
//! Stripe object (see [`crate::server::billing::charges`] for the flow).

use crate::server::billing::charges::{
    find_charge, note_attempt, settle_failed, settle_succeeded, store_stripe_id, Charge,
    KIND_OVERAGE,
};
use crate::server::billing::BillingError;
use crate::server::db::queue::JobError;
use crate::server::db::schema::{customers, stripe_payment_methods};
use crate::server::state::AppState;
use crate::server::stripe::billing_api::PaymentIntent;
use crate::server::stripe::client::{StripeApi, StripeCallError};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;

/// PaymentIntent statuses that mean money was (or is being) taken.
fn is_paid(intent: &PaymentIntent) -> bool {
    matches!(
        intent.status.as_str(),
        "succeeded" | "processing" | "requires_capture"
    )
}

/// The job (`{"charge_id": i64}`). Does nothing for a charge that is no
/// longer pending. Pay as you go: finds the PaymentIntent of an earlier
/// attempt (stored id, else our charge id in the metadata of the customer's
/// recent PaymentIntents) or creates and confirms one off-session on the
/// default card; an accepted payment settles the charge, a refusal (402,
/// or a PaymentIntent needing the customer) fails it. Overage: finds or
/// creates the invoice item.
///
/// Errors: retryable when Stripe is unreachable, answers 429/5xx, the
/// Stripe Customer does not exist yet, or a PaymentIntent is still
/// processing; permanent for a malformed payload.
pub async fn charge_job(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let charge_id = payload
        .get("charge_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload lacks charge_id"))?;
    let mut conn = state.conn().await?;
    let charge = match find_charge(&mut conn, charge_id).await {
        Ok(c) => c,
        Err(BillingError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if charge.status != "pending" {
        return Ok(());
    }
    let (stripe_customer, subscription): (Option<String>, Option<String>) = customers::table
        .find(charge.customer_id)
        .select((
            customers::stripe_customer_id,
            customers::stripe_subscription_id,
        ))
        .first(&mut conn)
        .await
        .map_err(BillingError::from)?;
    let Some(stripe_customer) = stripe_customer else {
        return Err(JobError::retry("the Stripe Customer does not exist yet"));
    };
    let api = StripeApi::new(&state.config.stripe)?;
    let earlier_attempts = charge.attempts > 0;
    let charge = note_attempt(&mut conn, charge.id).await?;

    if charge.kind == KIND_OVERAGE {
        let existing = match &charge.stripe_invoice_item_id {
            Some(id) => Some(id.clone()),
            None if earlier_attempts => api
                .find_invoice_items(&stripe_customer, charge.id)
                .await?
                .into_iter()
                .next()
                .map(|i| i.id),
            None => None,
        };
        let item_id = match existing {
            Some(id) => id,
            None => {
                let description = format!(
                    "RSOLV fix beyond the plan's credits (fix {})",
                    charge.fix_id
                );
                match api
                    .create_invoice_item(
                        &stripe_customer,
                        subscription.as_deref(),
                        charge.amount_cents,
                        &charge.currency,
                        &description,
                        charge.id,
                        &charge.idempotency_key(),
                    )
                    .await
                {
                    Ok(item) => item.id,
                    Err(e) if e.is_retryable() => return Err(e.into()),
                    Err(e) => {
                        return fail(state, &mut conn, &charge, None, &e.to_string()).await;
                    }
                }
            }
        };
        conn.transaction(async |conn| {
            settle_succeeded(conn, charge.id, None, Some(&item_id)).await
        })
        .await?;
        return Ok(());
    }

    // Pay as you go.
    let mut intent = match &charge.stripe_payment_intent_id {
        Some(id) => Some(api.get_payment_intent(id).await?),
        None if earlier_attempts => {
            let found = api
                .find_payment_intents(&stripe_customer, charge.id)
                .await?;
            found
                .iter()
                .find(|i| is_paid(i))
                .or(<[PaymentIntent]>::first(&found))
                .cloned()
        }
        None => None,
    };
    // A PaymentIntent that already failed belongs to an earlier round (the
    // card was declined, since fixed): charge anew.
    if intent
        .as_ref()
        .is_some_and(|i| !is_paid(i) && charge.stripe_payment_intent_id.is_none())
    {
        intent = None;
    }
    let intent = match intent {
        Some(intent) => intent,
        None => {
            // The default card, else the most recent one.
            let payment_method: Option<String> = stripe_payment_methods::table
                .filter(stripe_payment_methods::customer_id.eq(charge.customer_id))
                .filter(stripe_payment_methods::attached.eq(true))
                .order((
                    stripe_payment_methods::is_default.desc(),
                    stripe_payment_methods::updated_at.desc(),
                ))
                .select(stripe_payment_methods::id)
                .first::<String>(&mut conn)
                .await
                .optional()
                .map_err(BillingError::from)?;
            let Some(payment_method) = payment_method else {
                return fail(state, &mut conn, &charge, None, "no payment method on file").await;
            };
            match api
                .create_payment_intent(
                    &stripe_customer,
                    &payment_method,
                    charge.amount_cents,
                    &charge.currency,
                    charge.id,
                    charge.fix_id,
                    &charge.idempotency_key(),
                )
                .await
            {
                Ok(intent) => {
                    store_stripe_id(&mut conn, charge.id, Some(&intent.id), None).await?;
                    intent
                }
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(StripeCallError::Api { message, .. }) => {
                    return fail(state, &mut conn, &charge, None, &message).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    match intent.status.as_str() {
        "succeeded" | "requires_capture" => {
            conn.transaction(async |conn| {
                settle_succeeded(conn, charge.id, Some(&intent.id), None).await
            })
            .await?;
            Ok(())
        }
        "processing" => Err(JobError::retry("the payment is still processing")),
        _ => {
            let message = intent
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| format!("payment {}", intent.status.replace('_', " ")));
            fail(state, &mut conn, &charge, Some(&intent.id), &message).await
        }
    }
}

async fn fail(
    state: &AppState,
    conn: &mut crate::server::db::DbConn,
    charge: &Charge,
    payment_intent: Option<&str>,
    message: &str,
) -> Result<(), JobError> {
    tracing::warn!(
        charge_id = charge.id,
        customer_id = charge.customer_id,
        message,
        "charge refused by Stripe"
    );
    let pricing = &state.config.pricing;
    let links = &state.config.email.links;
    conn.transaction(async |conn| {
        settle_failed(conn, pricing, links, charge.id, payment_intent, message).await
    })
    .await?;
    Ok(())
}
