//! The Pro subscription: subscribing, cancelling now or at the period end,
//! resuming.
//!
//! Each call changes the Subscription on Stripe, then applies the returned
//! object to the customer exactly as the webhook would
//! ([`apply_subscription_object`], stamped with our clock so the slightly
//! older webhook event that follows is recognised as older). Subscribing
//! also reads the first invoice and, when it is paid, grants the period's
//! credits with the same ledger key as the `invoice.paid` webhook
//! (`invoice:<id>`), so whichever comes first grants them, once.

use crate::server::billing::customers::find_customer;
use crate::server::billing::payment_methods::{stripe_customer_id, stripe_error};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::stripe::billing_api::{IdRef, Subscription};
use crate::server::stripe::client::StripeApi;
use crate::server::stripe::events::{apply_paid_invoice, apply_subscription_object};
use crate::server::stripe::StripeSettings;
use crate::types::values::ParseError;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::Value;
use stripe_client_core::StripeMethod;

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
}

/// Subscription statuses that count as subscribed (a new subscription is
/// refused while one of these holds).
pub fn is_subscribed(status: Option<&str>) -> bool {
    matches!(
        status,
        Some("active" | "trialing" | "past_due" | "incomplete")
    )
}

async fn apply(
    conn: &mut AsyncPgConnection,
    object: &Value,
    deleted: bool,
) -> Result<Subscription, BillingError> {
    let subscription: Subscription = serde_json::from_value(object.clone())
        .map_err(|e| invalid(format!("unexpected subscription from Stripe: {e}")))?;
    conn.transaction(async |conn| {
        // Stripe's answer is the current state: it wins over any event
        // applied so far (even one stamped a little ahead of our clock).
        let customer_id: Option<i64> = object
            .pointer("/metadata/rsolv_customer_id")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok());
        let last = match customer_id {
            Some(id) => find_customer(conn, id).await?.subscription_updated_at,
            None => None,
        };
        let now = Utc::now();
        let at = match last {
            Some(last) if last >= now => last + chrono::Duration::seconds(1),
            _ => now,
        };
        apply_subscription_object(conn, object, at, deleted).await
    })
    .await?;
    Ok(subscription)
}

/// Subscribes the customer to Pro (the Plan/Price
/// `settings.pro_price_id`, created on a local stand-in if missing),
/// charging the default card. Idempotency key
/// `subscription:create:<customer id>:after:<previous subscription id or none>`.
///
/// Errors: [`BillingError::Invalid`] without a card on file, while already
/// subscribed, or when Stripe refuses (e.g. a declined card);
/// [`BillingError::Pool`] when Stripe is unreachable.
pub async fn subscribe_pro(
    api: &StripeApi,
    settings: &StripeSettings,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<Subscription, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    if is_subscribed(customer.subscription_status.as_deref()) {
        return Err(invalid("you are already subscribed to Pro"));
    }
    if !customer.has_payment_method {
        return Err(invalid("add a card before subscribing to Pro"));
    }
    let cus = stripe_customer_id(conn, customer_id).await?;
    api.ensure_local_pro_plan(settings, pricing.pro_monthly_cents, &pricing.currency)
        .await
        .map_err(stripe_error)?;
    let key = format!(
        "subscription:create:{customer_id}:after:{}",
        customer.stripe_subscription_id.as_deref().unwrap_or("none")
    );
    let item = if settings.pro_is_price() {
        "items[0][price]"
    } else {
        "items[0][plan]"
    };
    let object: Value = api
        .call(
            StripeMethod::Post,
            "/subscriptions",
            &[
                ("customer".to_owned(), cus.clone()),
                (item.to_owned(), settings.pro_price_id.clone()),
                (
                    format!("metadata[{}]", crate::server::stripe::CUSTOMER_ID_METADATA),
                    customer_id.to_string(),
                ),
            ],
            Some(&key),
        )
        .await
        .map_err(stripe_error)?;
    let subscription = apply(conn, &object, false).await?;
    if let Some(IdRef(invoice_id)) = &subscription.latest_invoice {
        let invoice: Value = api
            .call(
                StripeMethod::Get,
                &format!("/invoices/{invoice_id}"),
                &[],
                None,
            )
            .await
            .map_err(stripe_error)?;
        let paid = invoice.get("status").and_then(Value::as_str) == Some("paid")
            || invoice.get("paid").and_then(Value::as_bool) == Some(true);
        if paid {
            let now = Utc::now();
            conn.transaction(async |conn| apply_paid_invoice(conn, pricing, &invoice, now).await)
                .await?;
        }
    }
    tracing::info!(customer_id, subscription = %subscription.id, status = %subscription.status, "subscribed to Pro");
    Ok(subscription)
}

/// Cancels the customer's subscription: `at_period_end` false ends it now
/// (the plan falls back to pay as you go or trial at once); true lets it run
/// to the period end (resumable until then with [`resume`]).
///
/// Errors: [`BillingError::Invalid`] without a subscription; Stripe
/// failures as in [`stripe_error`].
pub async fn cancel(
    api: &StripeApi,
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    at_period_end: bool,
) -> Result<Subscription, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    let Some(sub_id) = customer
        .stripe_subscription_id
        .filter(|_| is_subscribed(customer.subscription_status.as_deref()))
    else {
        return Err(invalid("you have no subscription to cancel"));
    };
    let object: Value = if at_period_end {
        api.call(
            StripeMethod::Post,
            &format!("/subscriptions/{sub_id}"),
            &[("cancel_at_period_end".to_owned(), "true".to_owned())],
            None,
        )
        .await
    } else {
        api.call(
            StripeMethod::Delete,
            &format!("/subscriptions/{sub_id}"),
            &[],
            None,
        )
        .await
    }
    .map_err(stripe_error)?;
    let deleted = !at_period_end;
    apply(conn, &object, deleted).await
}

/// Undoes a cancel-at-period-end before the period ends.
///
/// Errors: [`BillingError::Invalid`] when there is no subscription ending
/// at the period end; Stripe failures as in [`stripe_error`].
pub async fn resume(
    api: &StripeApi,
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Subscription, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    let _ = stripe_customer_id(conn, customer_id).await?;
    let Some(sub_id) = customer
        .stripe_subscription_id
        .filter(|_| is_subscribed(customer.subscription_status.as_deref()))
    else {
        return Err(invalid("you have no subscription to resume"));
    };
    let object: Value = api
        .call(
            StripeMethod::Post,
            &format!("/subscriptions/{sub_id}"),
            &[("cancel_at_period_end".to_owned(), "false".to_owned())],
            None,
        )
        .await
        .map_err(stripe_error)?;
    apply(conn, &object, false).await
}

/// Whether the customer's current subscription ends at its period end.
///
/// Errors: [`BillingError::Database`].
pub async fn ends_at_period_end(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<bool, BillingError> {
    use crate::server::db::schema::{customers, stripe_subscriptions};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let flag: Option<bool> = customers::table
        .inner_join(
            stripe_subscriptions::table
                .on(customers::stripe_subscription_id.eq(stripe_subscriptions::id.nullable())),
        )
        .filter(customers::id.eq(customer_id))
        .select(stripe_subscriptions::cancel_at_period_end)
        .first(conn)
        .await
        .optional()?;
    Ok(flag.unwrap_or(false))
}
