//! Stripe webhook events: our minimal view of them, storing them
//! ([`record_event`]: once per Stripe event id, with its processing job) and
//! applying them to customers ([`prepare_event`], [`apply_prepared_event`]).
//!
//! This is an adapter: it parses, re-reads, and calls domain commands.
//! Events can arrive late, twice, out of order or several in one second, so
//! for subscription and invoice events the job re-reads the object from
//! the payment processor (`AppState::processor`: for Stripe,
//! `GET /v1/subscriptions/{id}`, `/v1/invoices/{id}` and the invoice's
//! subscription) and hands the domain a snapshot of the current
//! state (`billing::subscriptions::apply_subscription_snapshot`,
//! `apply_invoice_snapshot`), as Pay and dj-stripe do: whatever the order,
//! the customer ends in Stripe's current state. A re-read that fails
//! (network, 429, 5xx, a rejected key) retries the job; an object Stripe no
//! longer has (404), or no call possible (`BILLING_ENABLED=false`, no key),
//! applies the event's own object, stamped with the event's time.
//!
//! Applying one event, its effects and its `processed` mark commit in one
//! transaction, under the customer's row lock. An event whose Stripe
//! Customer is not known yet (or an invoice whose subscription is not) is
//! not marked processed: the job retries with backoff, and recording the
//! customer's Stripe id re-drives it at once ([`redrive_waiting_events`]).
//! Payment methods carry the time of their last event
//! (`stripe_payment_methods.last_event_at`); credit grants use ledger
//! idempotency keys (`invoice:<invoice id>`, `billing_bonus`).

use crate::server::billing::authentication::apply_processor_charge;
use crate::server::billing::charges::{
    find_charge_by_payment_intent, settle_paid_intent, PaidIntent,
};
use crate::server::billing::customers::find_customer;
use crate::server::billing::notifications::{
    enqueue_email, subscription_payment_failed, EmailLinks, Recipient,
};
use crate::server::billing::payment_methods::record_payment_method;
use crate::server::billing::ports::{InvoiceSnapshot, ProcessorError, SubscriptionSnapshot};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::refunds::{
    apply_refund, close_dispute, open_dispute, DisputeOutcome, DisputeSnapshot, RefundSnapshot,
};
use crate::server::billing::subscriptions::{
    apply_invoice_snapshot, apply_subscription_snapshot, lock_by_processor_customer, Applied,
};
use crate::server::billing::work::{ProcessStripeEventJob, KIND_STRIPE_PROCESS_EVENT};
use crate::server::billing::BillingError;
use crate::server::db::queue::{lock_ordering_key, retry_now, BackgroundJob, JobError};
use crate::server::db::schema::{jobs, stripe_events, stripe_payment_methods};
use crate::server::state::AppState;
use crate::server::stripe::billing_api::{Invoice, PaymentIntent, Subscription};
use crate::server::stripe::processor::{charge_from_intent, invoice_from, subscription_from};
use crate::types::values::SubscriptionStatus;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use serde_json::Value;

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
/// Order: an event about a Stripe Customer ([`ordering_key`]) takes the
/// customer's ordering lock first, then is stamped `received_at` (the
/// clock at that point) and its job enqueued behind the customer's earlier
/// events, so one customer's events are received, committed and applied in
/// the same order (`server::db::queue`, module doc).
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
    let order = ordering_key(event);
    conn.transaction(async |conn| {
        if let Some(key) = &order {
            lock_ordering_key(conn, key).await?;
        }
        let inserted = diesel::insert_into(stripe_events::table)
            .values((
                stripe_events::id.eq(&event.id),
                stripe_events::type_.eq(&event.type_),
                stripe_events::created.eq(created),
                stripe_events::payload.eq(raw),
                stripe_events::received_at.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                    "clock_timestamp()",
                )),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        let dedupe = format!("{KIND_STRIPE_PROCESS_EVENT}:{}", event.id);
        let job = ProcessStripeEventJob {
            event_id: event.id.clone(),
        };
        match &order {
            Some(key) => job.enqueue_in_order(conn, Some(&dedupe), key).await?,
            None => job.enqueue(conn, Some(&dedupe)).await?,
        };
        Ok(true)
    })
    .await
}

/// The job queue's ordering key of an event: `stripe_customer:<cus_…>`
/// for an event whose object names its Stripe Customer (`customer`, as an
/// id or expanded, or `previous_attributes.customer` for a detached
/// payment method); `None` otherwise (e.g. a dispute without an expanded
/// charge), and such an event is applied in no particular order.
pub fn ordering_key(event: &StripeEvent) -> Option<String> {
    id_field(&event.data.object, "customer")
        .or_else(|| {
            event
                .data
                .previous_attributes
                .as_ref()
                .and_then(|p| id_field(p, "customer"))
        })
        .map(|customer| format!("stripe_customer:{customer}"))
}

/// A stored event read (and, for subscription, invoice and dispute
/// events, re-read from Stripe) by [`prepare_event`], ready for
/// [`apply_prepared_event`].
#[derive(Debug)]
pub struct PreparedEvent {
    event_id: String,
    received_at: DateTime<Utc>,
    /// `None`: already processed, nothing to apply.
    apply: Option<(StripeEvent, Fresh)>,
}

impl PreparedEvent {
    /// The event's id, `evt_…`.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }
}

/// The `stripe.process_event` job (`{"event_id": "evt_…"}`), first step,
/// outside any transaction: reads the stored event and, for subscription
/// and invoice events, re-reads the object from Stripe (module doc). The
/// second step, [`apply_prepared_event`], runs in the worker's transaction;
/// the worker runs the events of several customers in one (`server::jobs`,
/// `BatchJob`).
///
/// Errors: permanent when the payload or the stored event is unusable;
/// retryable for database failures and failed re-reads. The caller records
/// a failure on the event with [`record_event_failure`].
pub async fn prepare_event(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    payload: &Value,
) -> Result<PreparedEvent, JobError> {
    let event_id = payload
        .get("event_id")
        .and_then(Value::as_str)
        .ok_or_else(|| JobError::permanent("payload lacks event_id"))?
        .to_owned();
    let stored: Option<(Value, String, DateTime<Utc>)> = stripe_events::table
        .find(&event_id)
        .select((
            stripe_events::payload,
            stripe_events::status,
            stripe_events::received_at,
        ))
        .first(conn)
        .await
        .optional()
        .map_err(BillingError::from)?;
    let Some((raw, status, received_at)) = stored else {
        return Err(job_error(ApplyError::Permanent(format!(
            "event {event_id} is not stored"
        ))));
    };
    let apply = if status == "processed" {
        None
    } else {
        let event = serde_json::from_value::<StripeEvent>(raw).map_err(|e| {
            job_error(ApplyError::Permanent(format!(
                "stored event unreadable: {e}"
            )))
        })?;
        let fresh = reread(state, &event).await.map_err(job_error)?;
        Some((event, fresh))
    };
    Ok(PreparedEvent {
        event_id,
        received_at,
        apply,
    })
}

/// The `stripe.process_event` job, second step, inside the caller's
/// transaction: applies the prepared event and marks it processed
/// (`status = 'processed'`), under the event row's lock, so its effects and
/// its mark commit together; nothing when it is processed already.
///
/// Errors: retryable for database failures and events waiting for their
/// customer or subscription to be known; permanent for an event whose
/// object is unusable. The caller rolls the effects back (a savepoint) and
/// records the failure with [`record_event_failure`].
pub async fn apply_prepared_event(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    prepared: &PreparedEvent,
) -> Result<(), JobError> {
    let Some((event, fresh)) = &prepared.apply else {
        return Ok(());
    };
    let status: String = stripe_events::table
        .find(&prepared.event_id)
        .select(stripe_events::status)
        .for_update()
        .first(conn)
        .await?;
    if status == "processed" {
        return Ok(());
    }
    let pricing = &state.config.pricing;
    let links = &state.config.email.links;
    apply_event(conn, pricing, links, event, fresh.clone())
        .await
        .map_err(job_error)?;
    diesel::update(stripe_events::table.find(&prepared.event_id))
        .set((
            stripe_events::status.eq("processed"),
            // The clock, not the transaction's start: a batch applies
            // many events in one transaction.
            stripe_events::processed_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("clock_timestamp()")),
            stripe_events::attempts.eq(stripe_events::attempts + 1),
            stripe_events::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// After the transaction that applied `prepared` committed: counts it in
/// the webhook metrics with its lag from receipt.
pub fn event_committed(prepared: &PreparedEvent) {
    if prepared.apply.is_some() {
        let lag = (Utc::now() - prepared.received_at)
            .to_std()
            .unwrap_or_default();
        crate::server::metrics::webhook_processed("stripe", lag);
    }
}

/// Records a failed run of the `stripe.process_event` job for `payload`'s
/// event: `status = 'failed'`, one more attempt, `last_error` (nothing when
/// the event is not stored). The job retries or dies by `error`.
///
/// Errors: [`BillingError::Database`].
pub async fn record_event_failure(
    conn: &mut AsyncPgConnection,
    payload: &Value,
    error: &JobError,
) -> Result<(), BillingError> {
    crate::server::metrics::webhook_failed("stripe");
    let Some(event_id) = payload.get("event_id").and_then(Value::as_str) else {
        return Ok(());
    };
    diesel::update(stripe_events::table.find(event_id))
        .set((
            stripe_events::status.eq("failed"),
            stripe_events::attempts.eq(stripe_events::attempts + 1),
            stripe_events::last_error.eq(&error.message),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The job's outcome for an [`ApplyError`]: permanent when the event is
/// unusable, a retry otherwise.
fn job_error(error: ApplyError) -> JobError {
    let message = error.to_string();
    match error {
        ApplyError::Permanent(_) => JobError::permanent(message),
        ApplyError::Waiting(_) | ApplyError::Reread(_) | ApplyError::Billing(_) => {
            JobError::retry(message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error("{0}")]
    Permanent(String),
    /// Not applicable yet (customer or subscription unknown): retried.
    #[error("waiting: {0}")]
    Waiting(String),
    /// Stripe could not be asked for the current state: retried.
    #[error("cannot re-read from Stripe: {0}")]
    Reread(String),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<diesel::result::Error> for ApplyError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Billing(error.into())
    }
}

impl From<EventParseError> for ApplyError {
    fn from(error: EventParseError) -> Self {
        Self::Permanent(error.0)
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
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
];

/// The current state of an event's object, read before applying it.
#[derive(Debug, Clone)]
enum Fresh {
    /// Not a subscription or invoice event.
    Nothing,
    /// A subscription event's subscription.
    Subscription(SubscriptionSnapshot),
    /// An invoice event's invoice and, when it has one, its subscription
    /// (`None` when only the event's own object could be used).
    Invoice(Box<InvoiceSnapshot>, Option<SubscriptionSnapshot>),
    /// A dispute event's dispute, with the disputed charge's customer when
    /// Stripe could be asked.
    Dispute(DisputeSnapshot),
}

fn is_subscription_event(type_: &str) -> bool {
    type_.starts_with("customer.subscription.")
}

fn is_invoice_event(type_: &str) -> bool {
    matches!(
        type_,
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed"
    )
}

/// The processor's answer to a re-read: `Ok(Some)` the current object,
/// `Ok(None)` when no call is possible (billing off, no key) or the
/// processor no longer has it; other failures retry the event.
fn current<T>(answer: Result<T, ProcessorError>) -> Result<Option<T>, ApplyError> {
    match answer {
        Ok(object) => Ok(Some(object)),
        Err(ProcessorError::NotFound(_) | ProcessorError::Disabled) => Ok(None),
        Err(e) => Err(ApplyError::Reread(e.to_string())),
    }
}

/// A Stripe id usable in a path (letters, digits, `_`).
fn safe_id(id: &str) -> Option<&str> {
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(id)
}

async fn reread(state: &AppState, event: &StripeEvent) -> Result<Fresh, ApplyError> {
    let processor = state.processor.as_ref();
    let object = &event.data.object;
    let at = event.created_at()?;
    // What we read now is at least as new as the event that made us read
    // it, whatever the skew between Stripe's clock and ours.
    let now = || Utc::now().max(at);
    if is_subscription_event(&event.type_) {
        let fresh = match str_field(object, "id").and_then(safe_id) {
            Some(id) => current(processor.subscription(id).await)?,
            None => None,
        };
        let snapshot = match fresh {
            Some(mut fresh) => {
                fresh.observed_at = now();
                fresh
            }
            None => {
                let mut own = subscription_snapshot(object, at)?;
                if event.type_ == "customer.subscription.deleted" {
                    own.status = SubscriptionStatus::Canceled;
                }
                own
            }
        };
        return Ok(Fresh::Subscription(snapshot));
    }
    if is_invoice_event(&event.type_) {
        let fresh = match str_field(object, "id").and_then(safe_id) {
            Some(id) => current(processor.invoice(id).await)?,
            None => None,
        };
        let Some(mut invoice) = fresh else {
            return Ok(Fresh::Invoice(
                Box::new(invoice_snapshot(object, at)?),
                None,
            ));
        };
        invoice.observed_at = now();
        let subscription = match invoice.subscription_id.as_deref().and_then(safe_id) {
            Some(id) => current(processor.subscription(id).await)?.map(|mut sub| {
                sub.observed_at = now();
                sub
            }),
            None => None,
        };
        return Ok(Fresh::Invoice(Box::new(invoice), subscription));
    }
    if event.type_.starts_with("charge.dispute.") {
        let mut dispute = dispute_snapshot(object, at)?;
        if dispute.processor_customer_id.is_none() {
            if let Some(id) = safe_id(&dispute.processor_charge_id) {
                if let Some(customer) = current(processor.charge_customer(id).await)? {
                    dispute.processor_customer_id = customer;
                }
            }
        }
        return Ok(Fresh::Dispute(dispute));
    }
    Ok(Fresh::Nothing)
}

/// A Stripe Dispute object (`dp_…`) as a domain snapshot.
///
/// Errors: [`EventParseError`] without an id or charge.
fn dispute_snapshot(
    object: &Value,
    observed_at: DateTime<Utc>,
) -> Result<DisputeSnapshot, EventParseError> {
    let (Some(id), Some(charge)) = (str_field(object, "id"), id_field(object, "charge")) else {
        return Err(EventParseError("dispute without id or charge".into()));
    };
    Ok(DisputeSnapshot {
        id: id.to_owned(),
        processor_charge_id: charge.to_owned(),
        payment_intent_id: id_field(object, "payment_intent").map(str::to_owned),
        processor_customer_id: object
            .get("charge")
            .filter(|c| c.is_object())
            .and_then(|c| id_field(c, "customer"))
            .map(str::to_owned),
        amount_cents: object.get("amount").and_then(Value::as_i64).unwrap_or(0),
        currency: str_field(object, "currency").unwrap_or("usd").to_owned(),
        reason: str_field(object, "reason").unwrap_or("general").to_owned(),
        status: str_field(object, "status")
            .unwrap_or("needs_response")
            .to_owned(),
        observed_at,
    })
}

/// Tells every staff admin about a new dispute: one email each (key
/// `dispute_opened:<dispute id>:<user id>`), in the event's transaction.
/// The admin console shows the flagged customer (the console's notice).
async fn notify_admins_of_dispute(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    dispute: &DisputeSnapshot,
) -> Result<(), ApplyError> {
    use crate::server::db::schema::users;
    let customer = find_customer(conn, customer_id).await?;
    let admins: Vec<(i64, String)> = users::table
        .filter(users::role.eq(crate::server::auth::accounts::ROLE_STAFF_ADMIN))
        .filter(users::customer_id.is_null())
        .select((users::id, users::email))
        .load(conn)
        .await?;
    let amount =
        crate::server::billing::pricing::format_money(dispute.amount_cents, &dispute.currency);
    for (user_id, email) in admins {
        let to = Recipient {
            customer_id: None,
            email: &email,
            name: "",
        };
        let key = format!("dispute_opened:{}:{user_id}", dispute.id);
        enqueue_email(
            conn,
            &crate::server::billing::notifications::dispute_opened(
                &to,
                customer_id,
                &customer.email,
                &amount,
                &dispute.reason,
                key,
            ),
        )
        .await?;
    }
    tracing::warn!(customer_id, dispute = %dispute.id, "dispute opened; admins told");
    Ok(())
}

fn waiting(applied: &Applied) -> Result<(), ApplyError> {
    match applied {
        Applied::Waiting(why) => Err(ApplyError::Waiting((*why).to_owned())),
        Applied::Skipped(why) => {
            tracing::info!(why, "Stripe state not applied");
            Ok(())
        }
        Applied::Done => Ok(()),
    }
}

async fn apply_event(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    event: &StripeEvent,
    fresh: Fresh,
) -> Result<(), ApplyError> {
    let at = event.created_at()?;
    let object = &event.data.object;
    match fresh {
        Fresh::Subscription(snapshot) => {
            return waiting(&apply_subscription_snapshot(conn, pricing, &snapshot).await?);
        }
        Fresh::Invoice(invoice, subscription) => {
            let outcome =
                apply_invoice_snapshot(conn, pricing, &invoice, subscription.as_ref()).await?;
            waiting(&outcome.applied)?;
            if let (Some(customer_id), true) = (outcome.customer_id, outcome.notify_payment_failed)
            {
                notify_payment_failed(conn, links, customer_id, &invoice).await?;
            }
            return Ok(());
        }
        Fresh::Dispute(dispute) => {
            let closing = event.type_ == "charge.dispute.closed";
            let outcome = if closing {
                close_dispute(conn, &dispute).await?
            } else {
                open_dispute(conn, &dispute).await?
            };
            return match outcome {
                DisputeOutcome::Waiting => Err(ApplyError::Waiting(
                    "the disputed charge's customer is not known yet".into(),
                )),
                DisputeOutcome::Ignored => Ok(()),
                DisputeOutcome::Recorded { customer_id, new } => {
                    if new && !closing {
                        notify_admins_of_dispute(conn, customer_id, &dispute).await?;
                    }
                    Ok(())
                }
            };
        }
        Fresh::Nothing => {}
    }
    match event.type_.as_str() {
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
        "charge.refunded" => {
            let refund = RefundSnapshot {
                processor_charge_id: str_field(object, "id").unwrap_or_default().to_owned(),
                payment_intent_id: id_field(object, "payment_intent").map(str::to_owned),
                amount_cents: object.get("amount").and_then(Value::as_i64).unwrap_or(0),
                amount_refunded_cents: object
                    .get("amount_refunded")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            };
            let outcome = apply_refund(conn, &refund).await?;
            tracing::info!(?outcome, charge = %refund.processor_charge_id, "refund applied");
            Ok(())
        }
        // A succeeded PaymentIntent books its charge (once, with the job
        // and the authentication page: whichever is first); a failed one
        // is recorded (the stored event is the record) and the charge job
        // reads the PaymentIntent itself — except for a charge waiting for
        // the customer's authentication, which no job reads: a failed or
        // abandoned bank check fails it here (a decline; the customer is
        // told to add another card), while the off-session attempt's own
        // `authentication_required` leaves it waiting.
        "payment_intent.succeeded" => {
            let Some(pi) = str_field(object, "id") else {
                return Ok(());
            };
            let charge_id = object
                .pointer("/metadata/rsolv_charge_id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok());
            let paid = PaidIntent {
                payment_intent: pi,
                charge_id,
                processor_customer: id_field(object, "customer"),
                amount_received_cents: object
                    .get("amount_received")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            };
            if settle_paid_intent(conn, &paid).await? {
                tracing::info!(payment_intent = pi, "charge paid (webhook)");
            }
            Ok(())
        }
        "payment_intent.payment_failed" => {
            let Ok(intent) = serde_json::from_value::<PaymentIntent>(object.clone()) else {
                return Ok(());
            };
            let Some(charge) = find_charge_by_payment_intent(conn, &intent.id).await? else {
                return Ok(());
            };
            if charge.status.awaits_customer() {
                let reported = charge_from_intent(intent);
                let status =
                    apply_processor_charge(conn, pricing, links, charge.id, &reported).await?;
                tracing::info!(charge_id = charge.id, %status, "authentication outcome (webhook)");
            }
            Ok(())
        }
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

/// A Stripe Subscription object (any API version; the wire struct
/// [`Subscription`] reads it as the processor does) as a domain snapshot
/// observed at `observed_at`.
///
/// Errors: [`EventParseError`] when it is not a subscription with an id, a
/// customer and a status from Stripe's list.
pub fn subscription_snapshot(
    object: &Value,
    observed_at: DateTime<Utc>,
) -> Result<SubscriptionSnapshot, EventParseError> {
    let subscription: Subscription = serde_json::from_value(object.clone())
        .map_err(|e| EventParseError(format!("not a subscription: {e}")))?;
    subscription_from(subscription, observed_at).map_err(|e| EventParseError(e.to_string()))
}

/// A Stripe Invoice object (any API version, read by the wire struct
/// [`Invoice`] as the processor does) as a domain snapshot observed at
/// `observed_at`.
///
/// Errors: [`EventParseError`] when it is not an invoice with an id and a
/// customer.
pub fn invoice_snapshot(
    object: &Value,
    observed_at: DateTime<Utc>,
) -> Result<InvoiceSnapshot, EventParseError> {
    let invoice: Invoice = serde_json::from_value(object.clone())
        .map_err(|e| EventParseError(format!("not an invoice: {e}")))?;
    invoice_from(invoice, observed_at).map_err(|e| EventParseError(e.to_string()))
}

/// Queues the `subscription_payment_failed` email (key
/// `invoice_payment_failed:<invoice id>:<attempt>`), in the event's
/// transaction.
async fn notify_payment_failed(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    customer_id: i64,
    invoice: &InvoiceSnapshot,
) -> Result<(), ApplyError> {
    let customer = find_customer(conn, customer_id).await?;
    let to = Recipient {
        customer_id: Some(customer_id),
        email: &customer.email,
        name: &customer.name,
    };
    let amount =
        crate::server::billing::pricing::format_money(invoice.amount_due_cents, &invoice.currency);
    let key = format!(
        "invoice_payment_failed:{}:{}",
        invoice.id,
        invoice.attempt_count.max(1)
    );
    enqueue_email(conn, &subscription_payment_failed(links, &to, &amount, key)).await?;
    Ok(())
}

/// Makes the jobs of stored, unprocessed events about Stripe Customer
/// `stripe_customer_id` due now (dead ones revived): call it where the
/// customer's Stripe id is recorded, so events that arrived before it are
/// applied at once instead of at their next backoff. Returns how many jobs
/// were re-driven.
///
/// Errors: [`BillingError::Database`].
pub async fn redrive_waiting_events(
    conn: &mut AsyncPgConnection,
    stripe_customer_id: &str,
) -> Result<usize, BillingError> {
    let waiting: Vec<String> = stripe_events::table
        .filter(stripe_events::status.ne("processed"))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "coalesce(payload #>> '{data,object,customer}', payload #>> '{data,object,customer,id}') = ",
            )
            .bind::<diesel::sql_types::Text, _>(stripe_customer_id),
        )
        .select(stripe_events::id)
        .load(conn)
        .await?;
    let mut redriven = 0;
    for event_id in waiting {
        let dedupe = format!("{KIND_STRIPE_PROCESS_EVENT}:{event_id}");
        let job: Option<i64> = jobs::table
            .filter(jobs::dedupe_key.eq(&dedupe))
            .select(jobs::id)
            .first(conn)
            .await
            .optional()?;
        if let Some(job_id) = job {
            if retry_now(conn, job_id).await? {
                redriven += 1;
            }
        }
    }
    if redriven > 0 {
        tracing::info!(
            redriven,
            "Stripe events waiting for their customer re-driven"
        );
    }
    Ok(redriven)
}

async fn apply_payment_method(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    stripe_customer_id: &str,
    payment_method_id: &str,
    attached: bool,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let Some(customer) = lock_by_processor_customer(conn, stripe_customer_id).await? else {
        return Err(ApplyError::Waiting(
            "the Stripe customer is not known yet".into(),
        ));
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
            crate::server::db::schema::customers::table
                .find(id)
                .select(crate::server::db::schema::customers::id)
                .for_no_key_update()
                .first::<i64>(conn)
                .await?
        }
        (None, Some(cus)) => match lock_by_processor_customer(conn, cus).await? {
            Some(c) => c.id,
            None => {
                return Err(ApplyError::Waiting(
                    "the Stripe customer is not known yet".into(),
                ))
            }
        },
        (None, None) => return Ok(()),
    };
    record_payment_method(conn, pricing, customer_id, payment_method_id, false, at).await?;
    Ok(())
}
