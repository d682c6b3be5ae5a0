//! Stripe webhook events: our minimal view of them, storing them
//! ([`record_event`]: once per Stripe event id, with its processing job) and
//! applying them to customers ([`process_event_job`]).
//!
//! Applying one event, its effects and its `processed` mark commit in one
//! transaction, under the customer's row lock. Events can arrive late, twice
//! or out of order, so every effect is guarded: subscription state carries
//! the Stripe timestamp it came from (`customers.subscription_updated_at`)
//! and an older event never overwrites it; payment methods carry theirs
//! (`stripe_payment_methods.last_event_at`); credit grants use ledger
//! idempotency keys (`invoice:<invoice id>`, `billing_bonus`).

use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::notifications::enqueue_email;
use crate::server::billing::notifications::{subscription_payment_failed, EmailLinks, Recipient};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::work::KIND_STRIPE_PROCESS_EVENT;
use crate::server::billing::BillingError;
use crate::server::db::queue::{enqueue, JobError, NewJob, DEFAULT_MAX_ATTEMPTS};
use crate::server::db::schema::{
    customers, stripe_events, stripe_payment_methods, stripe_subscriptions,
};
use crate::server::state::AppState;
use crate::types::values::{LedgerKind, Plan};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use serde_json::{json, Value};

/// The fields of a Stripe event we read (`evt_…`); the rest stays in the
/// stored payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StripeEvent {
    /// Stripe's event id.
    pub id: String,
    /// E.g. `customer.subscription.updated`.
    #[serde(rename = "type")]
    pub type_: String,
    /// When Stripe created the event, unix seconds.
    pub created: i64,
    /// The object the event is about.
    pub data: EventData,
}

/// `data` of an event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventData {
    /// The object (subscription, invoice, payment method, …) as of the event.
    pub object: Value,
    /// Changed fields' previous values (`*.updated`, `payment_method.detached`).
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

/// The event body is not a Stripe event we can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct EventParseError(pub String);

impl StripeEvent {
    /// Parses a raw webhook body.
    ///
    /// Errors: [`EventParseError`] for invalid JSON, missing `id`, `type`,
    /// `created` or `data.object`, an empty id or type, or a `created`
    /// outside chrono's range.
    pub fn parse(body: &[u8]) -> Result<(Self, Value), EventParseError> {
        let raw: Value =
            serde_json::from_slice(body).map_err(|e| EventParseError(e.to_string()))?;
        let event: StripeEvent =
            serde_json::from_value(raw.clone()).map_err(|e| EventParseError(e.to_string()))?;
        if event.id.trim().is_empty() || event.type_.trim().is_empty() {
            return Err(EventParseError("empty id or type".into()));
        }
        if !event.data.object.is_object() {
            return Err(EventParseError("data.object is not an object".into()));
        }
        event.created_at()?;
        Ok((event, raw))
    }

    /// `created` as a time.
    ///
    /// Errors: [`EventParseError`] when out of range.
    pub fn created_at(&self) -> Result<DateTime<Utc>, EventParseError> {
        DateTime::from_timestamp(self.created, 0)
            .ok_or_else(|| EventParseError("created out of range".into()))
    }
}

/// Stores a verified event and, when it is new, enqueues its
/// `stripe.process_event` job, in one transaction. Returns true when the
/// event is new, false for a redelivery (nothing written).
///
/// Errors: [`BillingError::Database`] (the webhook answers 500 and Stripe
/// delivers again).
pub async fn record_event(
    conn: &mut AsyncPgConnection,
    event: &StripeEvent,
    raw: &Value,
) -> Result<bool, BillingError> {
    let created = event
        .created_at()
        .map_err(|e| BillingError::Invalid(crate::types::values::ParseError(e.to_string())))?;
    conn.transaction(async |conn| {
        let inserted = diesel::insert_into(stripe_events::table)
            .values((
                stripe_events::id.eq(&event.id),
                stripe_events::type_.eq(&event.type_),
                stripe_events::created.eq(created),
                stripe_events::payload.eq(raw),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        let dedupe = format!("{KIND_STRIPE_PROCESS_EVENT}:{}", event.id);
        enqueue(
            conn,
            &NewJob {
                kind: KIND_STRIPE_PROCESS_EVENT,
                payload: json!({ "event_id": event.id }),
                dedupe_key: Some(&dedupe),
                max_attempts: DEFAULT_MAX_ATTEMPTS,
            },
        )
        .await?;
        Ok(true)
    })
    .await
}

/// The `stripe.process_event` job (`{"event_id": "evt_…"}`): applies the
/// stored event once. Its effects and `status = 'processed'` commit
/// together; a failure rolls the effects back, counts the attempt on the
/// event (`status = 'failed'`, `last_error`) and the job retries.
///
/// Errors: permanent when the payload or the stored event is unusable;
/// retryable for database failures.
pub async fn process_event_job(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let event_id = payload
        .get("event_id")
        .and_then(Value::as_str)
        .ok_or_else(|| JobError::permanent("payload lacks event_id"))?
        .to_owned();
    let pricing = &state.config.pricing;
    let links = &state.config.email.links;
    let mut conn = state.conn().await?;
    let result: Result<(), ApplyError> = conn
        .transaction(async |conn| {
            let event_id = &event_id;
            let stored: Option<(Value, String)> = stripe_events::table
                .find(event_id)
                .select((stripe_events::payload, stripe_events::status))
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some((raw, status)) = stored else {
                return Err(ApplyError::Permanent(format!(
                    "event {event_id} is not stored"
                )));
            };
            if status == "processed" {
                return Ok(());
            }
            let event: StripeEvent = serde_json::from_value(raw)
                .map_err(|e| ApplyError::Permanent(format!("stored event unreadable: {e}")))?;
            apply_event(conn, pricing, links, &event).await?;
            diesel::update(stripe_events::table.find(event_id))
                .set((
                    stripe_events::status.eq("processed"),
                    stripe_events::processed_at.eq(diesel::dsl::now),
                    stripe_events::attempts.eq(stripe_events::attempts + 1),
                    stripe_events::last_error.eq(None::<String>),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await;
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            let message = error.to_string();
            diesel::update(stripe_events::table.find(&event_id))
                .set((
                    stripe_events::status.eq("failed"),
                    stripe_events::attempts.eq(stripe_events::attempts + 1),
                    stripe_events::last_error.eq(&message),
                ))
                .execute(&mut conn)
                .await
                .map_err(BillingError::from)?;
            Err(match error {
                ApplyError::Permanent(m) => JobError::permanent(m),
                ApplyError::Billing(e) => JobError::retry(e.to_string()),
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error("{0}")]
    Permanent(String),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<diesel::result::Error> for ApplyError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Billing(error.into())
    }
}

/// Event types with an effect; every other type is stored and marked
/// processed without one.
pub const HANDLED_TYPES: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_succeeded",
    "invoice.paid",
    "invoice.payment_failed",
    "payment_method.attached",
    "payment_method.detached",
    "setup_intent.succeeded",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
];

async fn apply_event(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    event: &StripeEvent,
) -> Result<(), ApplyError> {
    let at = event
        .created_at()
        .map_err(|e| ApplyError::Permanent(e.to_string()))?;
    let object = &event.data.object;
    match event.type_.as_str() {
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let deleted = event.type_ == "customer.subscription.deleted";
            apply_subscription(conn, object, at, deleted).await
        }
        "invoice.payment_succeeded" | "invoice.paid" => {
            apply_invoice_paid(conn, pricing, object, at).await
        }
        "invoice.payment_failed" => apply_invoice_failed(conn, links, object, at).await,
        "payment_method.attached" => {
            let (Some(pm), Some(cus)) = (str_field(object, "id"), id_field(object, "customer"))
            else {
                return Ok(());
            };
            apply_payment_method(conn, pricing, cus, pm, true, at).await
        }
        "setup_intent.succeeded" => {
            let (Some(pm), Some(cus)) = (
                id_field(object, "payment_method"),
                id_field(object, "customer"),
            ) else {
                return Ok(());
            };
            apply_payment_method(conn, pricing, cus, pm, true, at).await
        }
        "payment_method.detached" => {
            let Some(pm) = str_field(object, "id") else {
                return Ok(());
            };
            let previous = event
                .data
                .previous_attributes
                .as_ref()
                .and_then(|p| id_field(p, "customer"));
            apply_payment_method_detached(conn, pricing, pm, previous, at).await
        }
        // Recorded (the stored event is the record); charging is a later slice.
        "payment_intent.succeeded" | "payment_intent.payment_failed" => Ok(()),
        _ => Ok(()),
    }
}

fn str_field<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// A reference that Stripe writes as an id string or, when expanded, as an
/// object with an `id`.
fn id_field<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    let value = object.get(key)?;
    value
        .as_str()
        .or_else(|| value.get("id")?.as_str())
        .filter(|s| !s.is_empty())
}

/// Our customer's current state, locked for the rest of the transaction.
#[derive(Queryable, Selectable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg))]
struct Locked {
    id: i64,
    has_payment_method: bool,
    stripe_subscription_id: Option<String>,
    subscription_updated_at: Option<DateTime<Utc>>,
}

/// Finds and locks (`FOR NO KEY UPDATE`, as the ledger does) our customer
/// with this Stripe Customer id. `None` (logged) for a customer we do not
/// know: the event is kept and marked processed.
async fn lock_customer(
    conn: &mut AsyncPgConnection,
    stripe_customer_id: &str,
) -> Result<Option<Locked>, ApplyError> {
    let row: Option<Locked> = customers::table
        .filter(customers::stripe_customer_id.eq(stripe_customer_id))
        .select(Locked::as_select())
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?;
    if row.is_none() {
        tracing::warn!(
            stripe_customer_id,
            "Stripe event for an unknown customer; ignored"
        );
    }
    Ok(row)
}

/// Whether state from an event at `at` may replace state applied from an
/// event at `last`: strictly newer, or (same second) when `wins_ties`.
fn is_newer(at: DateTime<Utc>, last: Option<DateTime<Utc>>, wins_ties: bool) -> bool {
    match last {
        None => true,
        Some(last) => at > last || (wins_ties && at == last),
    }
}

/// The plan a customer falls back to without a live subscription.
fn fallback_plan(has_payment_method: bool) -> Plan {
    if has_payment_method {
        Plan::Payg
    } else {
        Plan::Trial
    }
}

/// Subscription statuses that keep the Pro plan.
fn is_pro_status(status: &str) -> bool {
    matches!(status, "active" | "trialing" | "past_due")
}

/// Applies a Subscription object (from an event, or from our own call to
/// Stripe at `at`) to its customer, unless newer state was applied already.
/// Call inside a transaction.
///
/// Errors: [`BillingError::Database`].
pub(crate) async fn apply_subscription_object(
    conn: &mut AsyncPgConnection,
    subscription: &Value,
    at: DateTime<Utc>,
    deleted: bool,
) -> Result<(), BillingError> {
    match apply_subscription(conn, subscription, at, deleted).await {
        Ok(()) => Ok(()),
        Err(ApplyError::Billing(e)) => Err(e),
        Err(ApplyError::Permanent(m)) => {
            Err(BillingError::Invalid(crate::types::values::ParseError(m)))
        }
    }
}

async fn apply_subscription(
    conn: &mut AsyncPgConnection,
    subscription: &Value,
    at: DateTime<Utc>,
    deleted: bool,
) -> Result<(), ApplyError> {
    let (Some(sub_id), Some(cus)) = (
        str_field(subscription, "id"),
        id_field(subscription, "customer"),
    ) else {
        return Ok(());
    };
    let Some(customer) = lock_customer(conn, cus).await? else {
        return Ok(());
    };
    if !is_newer(at, customer.subscription_updated_at, deleted) {
        tracing::info!(
            customer_id = customer.id,
            "older subscription event skipped"
        );
        return Ok(());
    }
    if deleted
        && customer
            .stripe_subscription_id
            .as_deref()
            .is_some_and(|current| current != sub_id)
    {
        // An old subscription ended; the current one is unaffected.
        return Ok(());
    }
    let status = if deleted {
        "canceled"
    } else {
        str_field(subscription, "status").unwrap_or("incomplete")
    };
    // Newer API versions keep the period on the items, older ones on the
    // subscription.
    let period_end = subscription
        .get("current_period_end")
        .and_then(Value::as_i64)
        .or_else(|| {
            subscription
                .pointer("/items/data/0/current_period_end")
                .and_then(Value::as_i64)
        })
        .and_then(|t| DateTime::from_timestamp(t, 0));
    let plan = if is_pro_status(status) {
        Plan::Pro
    } else {
        fallback_plan(customer.has_payment_method)
    };
    let cancel_at_period_end = !deleted
        && subscription
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    diesel::update(customers::table.find(customer.id))
        .set((
            customers::subscription_status.eq(status),
            customers::stripe_subscription_id.eq(sub_id),
            customers::current_period_end.eq(period_end),
            customers::subscription_updated_at.eq(at),
            customers::plan.eq(plan.as_str()),
            customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::insert_into(stripe_subscriptions::table)
        .values((
            stripe_subscriptions::id.eq(sub_id),
            stripe_subscriptions::customer_id.eq(customer.id),
            stripe_subscriptions::cancel_at_period_end.eq(cancel_at_period_end),
        ))
        .on_conflict(stripe_subscriptions::id)
        .do_update()
        .set((
            stripe_subscriptions::cancel_at_period_end.eq(cancel_at_period_end),
            stripe_subscriptions::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The subscription an invoice belongs to, across API versions: top-level
/// `subscription` (before 2025-03) or `parent.subscription_details`.
fn invoice_subscription(invoice: &Value) -> Option<&str> {
    id_field(invoice, "subscription").or_else(|| {
        invoice
            .pointer("/parent/subscription_details/subscription")
            .and_then(|v| v.as_str().or_else(|| v.get("id")?.as_str()))
    })
}

/// Grants the period's credits for a paid subscription invoice (once per
/// invoice: ledger key `invoice:<id>`) and, when it pays the current
/// subscription while that is `past_due`, makes it `active` again. Call
/// inside a transaction.
///
/// Errors: [`BillingError::Database`].
pub(crate) async fn apply_paid_invoice(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    invoice: &Value,
    at: DateTime<Utc>,
) -> Result<(), BillingError> {
    match apply_invoice_paid(conn, pricing, invoice, at).await {
        Ok(()) => Ok(()),
        Err(ApplyError::Billing(e)) => Err(e),
        Err(ApplyError::Permanent(m)) => {
            Err(BillingError::Invalid(crate::types::values::ParseError(m)))
        }
    }
}

async fn apply_invoice_paid(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    invoice: &Value,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let (Some(invoice_id), Some(cus)) = (str_field(invoice, "id"), id_field(invoice, "customer"))
    else {
        return Ok(());
    };
    if invoice_subscription(invoice).is_none() || pricing.pro_credits_per_period <= 0 {
        return Ok(()); // one-off invoices grant nothing
    }
    let Some(customer) = lock_customer(conn, cus).await? else {
        return Ok(());
    };
    let key = format!("invoice:{invoice_id}");
    append_entry(
        conn,
        NewEntry {
            customer_id: customer.id,
            amount: pricing.pro_credits_per_period,
            kind: LedgerKind::SubscriptionGrant,
            reference: Some(&key),
            idempotency_key: &key,
        },
    )
    .await?;
    crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, customer.id).await?;
    // Recovered: the invoice of the current subscription is paid.
    let status: Option<String> = customers::table
        .find(customer.id)
        .select(customers::subscription_status)
        .first(conn)
        .await?;
    if status.as_deref() == Some("past_due")
        && customer.stripe_subscription_id.as_deref() == invoice_subscription(invoice)
        && is_newer(at, customer.subscription_updated_at, false)
    {
        diesel::update(customers::table.find(customer.id))
            .set((
                customers::subscription_status.eq("active"),
                customers::plan.eq(Plan::Pro.as_str()),
                customers::subscription_updated_at.eq(at),
                customers::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn apply_invoice_failed(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    invoice: &Value,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let (Some(sub_id), Some(cus)) = (invoice_subscription(invoice), id_field(invoice, "customer"))
    else {
        return Ok(());
    };
    let Some(customer) = lock_customer(conn, cus).await? else {
        return Ok(());
    };
    if !is_newer(at, customer.subscription_updated_at, false)
        || customer
            .stripe_subscription_id
            .as_deref()
            .is_some_and(|current| current != sub_id)
    {
        return Ok(());
    }
    diesel::update(customers::table.find(customer.id))
        .set((
            customers::subscription_status.eq("past_due"),
            customers::stripe_subscription_id.eq(sub_id),
            customers::subscription_updated_at.eq(at),
            customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    // Tell the customer, in this transaction (once per invoice attempt).
    let (email, name): (String, String) = customers::table
        .find(customer.id)
        .select((customers::email, customers::name))
        .first(conn)
        .await?;
    let to = Recipient {
        customer_id: Some(customer.id),
        email: &email,
        name: &name,
    };
    let amount = crate::server::billing::pricing::format_money(
        invoice
            .get("amount_due")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        invoice
            .get("currency")
            .and_then(Value::as_str)
            .unwrap_or("usd"),
    );
    let invoice_id = str_field(invoice, "id").unwrap_or("unknown");
    let attempt = invoice
        .get("attempt_count")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let key = format!("invoice_payment_failed:{invoice_id}:{attempt}");
    enqueue_email(conn, &subscription_payment_failed(links, &to, &amount, key)).await?;
    Ok(())
}

async fn apply_payment_method(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    stripe_customer_id: &str,
    payment_method_id: &str,
    attached: bool,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let Some(customer) = lock_customer(conn, stripe_customer_id).await? else {
        return Ok(());
    };
    record_payment_method(conn, pricing, customer.id, payment_method_id, attached, at).await?;
    Ok(())
}

async fn apply_payment_method_detached(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    payment_method_id: &str,
    previous_customer: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let known: Option<i64> = stripe_payment_methods::table
        .find(payment_method_id)
        .select(stripe_payment_methods::customer_id)
        .first(conn)
        .await
        .optional()?;
    let customer_id = match (known, previous_customer) {
        (Some(id), _) => {
            // Lock the customer first, as everywhere else.
            customers::table
                .find(id)
                .select(customers::id)
                .for_no_key_update()
                .first::<i64>(conn)
                .await?
        }
        (None, Some(cus)) => match lock_customer(conn, cus).await? {
            Some(c) => c.id,
            None => return Ok(()),
        },
        (None, None) => return Ok(()),
    };
    record_payment_method(conn, pricing, customer_id, payment_method_id, false, at).await?;
    Ok(())
}

/// Records that Stripe payment method `payment_method_id` of our customer
/// `customer_id` was attached (`attached = true`) or detached at `at` (the
/// Stripe event's time), unless a newer event about it was already applied
/// (at the same second, a detach wins). Then derives
/// `customers.has_payment_method` (any attached method) and the plan (trial
/// ↔ payg; Pro is left alone), and on a first payment method grants the
/// one-time `pricing.billing_bonus_credits` (ledger kind `billing_bonus`,
/// idempotency key `billing_bonus`). Call it inside a transaction holding
/// the customer's row lock. Returns whether the customer has a payment
/// method now.
///
/// Errors: [`BillingError::Database`].
pub async fn record_payment_method(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    payment_method_id: &str,
    attached: bool,
    at: DateTime<Utc>,
) -> Result<bool, BillingError> {
    diesel::sql_query(
        "INSERT INTO stripe_payment_methods (id, customer_id, attached, last_event_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, \
             attached = EXCLUDED.attached, last_event_at = EXCLUDED.last_event_at, updated_at = now() \
         WHERE stripe_payment_methods.last_event_at < EXCLUDED.last_event_at \
            OR (stripe_payment_methods.last_event_at = EXCLUDED.last_event_at AND NOT EXCLUDED.attached)",
    )
    .bind::<diesel::sql_types::Text, _>(payment_method_id)
    .bind::<diesel::sql_types::Int8, _>(customer_id)
    .bind::<diesel::sql_types::Bool, _>(attached)
    .bind::<diesel::sql_types::Timestamptz, _>(at)
    .execute(conn)
    .await?;
    let has_payment_method: bool = diesel::select(diesel::dsl::exists(
        stripe_payment_methods::table
            .filter(stripe_payment_methods::customer_id.eq(customer_id))
            .filter(stripe_payment_methods::attached.eq(true)),
    ))
    .get_result(conn)
    .await?;
    let plan: String = customers::table
        .find(customer_id)
        .select(customers::plan)
        .first(conn)
        .await?;
    let new_plan = if plan == Plan::Pro.as_str() {
        Plan::Pro
    } else {
        fallback_plan(has_payment_method)
    };
    diesel::update(customers::table.find(customer_id))
        .set((
            customers::has_payment_method.eq(has_payment_method),
            customers::plan.eq(new_plan.as_str()),
            customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if has_payment_method && pricing.billing_bonus_credits > 0 {
        append_entry(
            conn,
            NewEntry {
                customer_id,
                amount: pricing.billing_bonus_credits,
                kind: LedgerKind::BillingBonus,
                reference: Some(payment_method_id),
                idempotency_key: "billing_bonus",
            },
        )
        .await?;
    }
    crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, customer_id).await?;
    Ok(has_payment_method)
}
