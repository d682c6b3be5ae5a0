//! The Pro subscription: its state as the payment processor reports it,
//! the credits its paid invoices grant, and subscribing, cancelling and
//! resuming.
//!
//! **Current state, applied idempotently** (issue 9; what Pay and
//! dj-stripe do). Webhook events can arrive twice, late, out of order or
//! several in one second, so the Stripe adapter does not apply an event's
//! own copy of the object: it re-reads the subscription or invoice from
//! Stripe and hands the domain a snapshot ([`SubscriptionSnapshot`],
//! [`InvoiceSnapshot`]) of what is true now. [`apply_subscription_snapshot`]
//! and [`apply_invoice_snapshot`] apply it; applying the same snapshot
//! twice changes nothing. Each snapshot carries when it was observed, and an
//! older observation never overwrites a newer one; Stripe's terminal
//! statuses (`canceled`, `incomplete_expired`) are never left again.
//!
//! **Credits** (issue 9, "Pro"): a paid invoice grants
//! `pricing.pro_credits_per_period` credits only when it belongs to the
//! customer's current subscription, that subscription counts as Pro, its
//! `billing_reason` is `subscription_create` or `subscription_cycle`, and
//! it collected money (`amount_paid > 0`); once per invoice (ledger key
//! `invoice:<id>`). At that grant the previous period's unused Pro credits
//! expire when the catalog says so (`PricingCatalog::credits_expire`).
//! Overage starts only once the current period's credits are granted
//! ([`period_credits_granted`]) and used.

use crate::server::billing::customers::{find_customer, Customer};
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::payment_methods::stripe_customer_id;
use crate::server::billing::plan::{change_plan, PlanChange, SubscriptionState};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{charges, credit_ledger_entries, customers, stripe_subscriptions};
use crate::server::stripe::billing_api::Subscription;
use crate::server::stripe::client::StripeApi;
use crate::server::stripe::client::StripeCallError;
use crate::server::stripe::StripeSettings;
use crate::types::values::{LedgerKind, ParseError, SubscriptionStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use stripe_client_core::StripeMethod;

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
}

// --- Snapshots -------------------------------------------------------------------

/// A subscription as the payment processor reports it now (domain type;
/// the Stripe adapter builds it from a `sub_…` object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    /// The processor's id, `sub_…`.
    pub id: String,
    /// The processor's customer id, `cus_…`.
    pub processor_customer_id: String,
    /// Its status.
    pub status: SubscriptionStatus,
    /// Ends at the period end (resumable until then).
    pub cancel_at_period_end: bool,
    /// End of the current period.
    pub current_period_end: Option<DateTime<Utc>>,
    /// When this state was true: our clock when re-read from the processor,
    /// the event's time when taken from an event.
    pub observed_at: DateTime<Utc>,
}

/// Why an invoice was made (Stripe's `billing_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingReason {
    /// The subscription's first invoice.
    SubscriptionCreate,
    /// A renewal: a new period.
    SubscriptionCycle,
    /// A change (proration, e.g. a plan switch or a cancel with
    /// `invoice_now`).
    SubscriptionUpdate,
    /// A usage threshold was reached.
    SubscriptionThreshold,
    /// Made by hand (one-off).
    Manual,
    /// Anything else (`upcoming`, `quote_accept`, …).
    Other,
}

impl BillingReason {
    /// Reads Stripe's spelling; unknown values are [`BillingReason::Other`].
    pub fn parse(text: &str) -> Self {
        match text {
            "subscription_create" => Self::SubscriptionCreate,
            "subscription_cycle" => Self::SubscriptionCycle,
            "subscription_update" => Self::SubscriptionUpdate,
            "subscription_threshold" => Self::SubscriptionThreshold,
            "manual" => Self::Manual,
            _ => Self::Other,
        }
    }

    /// Whether a paid invoice for this reason pays for a new Pro period
    /// (issue 9: creation or renewal only).
    pub fn starts_a_period(self) -> bool {
        matches!(self, Self::SubscriptionCreate | Self::SubscriptionCycle)
    }
}

/// An invoice as the payment processor reports it now (domain type).
/// Amounts in minor units (cents) of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceSnapshot {
    /// The processor's id, `in_…`.
    pub id: String,
    /// The processor's customer id, `cus_…`.
    pub processor_customer_id: String,
    /// The subscription it bills, if any.
    pub subscription_id: Option<String>,
    /// Paid in full.
    pub paid: bool,
    /// A collection attempt failed and the invoice is still open.
    pub payment_failed: bool,
    /// Why it was made; `None` when the processor did not say.
    pub billing_reason: Option<BillingReason>,
    /// Cents collected.
    pub amount_paid_cents: i64,
    /// Cents due.
    pub amount_due_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// Collection attempts so far.
    pub attempt_count: i64,
    /// End of the subscription period its subscription line pays for.
    pub period_end: Option<DateTime<Utc>>,
    /// The processor ids of the invoice items on it (`ii_…`): our overage
    /// charges among them are paid when it is.
    pub invoice_item_ids: Vec<String>,
    /// When this state was true (as for [`SubscriptionSnapshot`]).
    pub observed_at: DateTime<Utc>,
}

/// What applying a snapshot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied (possibly with no change: the state was already recorded).
    Done,
    /// Not applied, and it never will be (older than what is recorded, or
    /// about a subscription that is not the customer's current one); the
    /// reason is for the log.
    Skipped(&'static str),
    /// Not applied yet: something it refers to is not known yet (the
    /// processor's customer id is not recorded, or the invoice's
    /// subscription is unknown). The caller retries later.
    Waiting(&'static str),
}

/// What applying an invoice did, beyond [`Applied`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceApplied {
    /// The outcome.
    pub applied: Applied,
    /// Our customer, when known.
    pub customer_id: Option<i64>,
    /// Credits granted now (0 when none).
    pub granted: i64,
    /// A payment of the current subscription's invoice failed: the
    /// customer should be told (the adapter queues the email, once per
    /// invoice attempt).
    pub notify_payment_failed: bool,
}

/// Finds and locks (`FOR NO KEY UPDATE`, as the ledger does) our customer
/// with this processor customer id.
///
/// Errors: [`BillingError::Database`].
pub async fn lock_by_processor_customer(
    conn: &mut AsyncPgConnection,
    processor_customer_id: &str,
) -> Result<Option<Customer>, BillingError> {
    let id: Option<i64> = customers::table
        .filter(customers::stripe_customer_id.eq(processor_customer_id))
        .select(customers::id)
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?;
    match id {
        Some(id) => Ok(Some(find_customer(conn, id).await?)),
        None => Ok(None),
    }
}

/// Whether `observed_at` may replace state recorded as of `recorded` (ties
/// apply: both observations are current).
fn is_current(observed_at: DateTime<Utc>, recorded: Option<DateTime<Utc>>) -> bool {
    recorded.is_none_or(|r| observed_at >= r)
}

fn is_terminal(status: SubscriptionStatus) -> bool {
    matches!(
        status,
        SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
    )
}

/// Applies a subscription's current state to its customer: status, period
/// end, plan ([`change_plan`]), and the cancel-at-period-end flag. Call
/// inside a transaction.
///
/// Skipped when an observation newer than `snapshot.observed_at` was
/// applied already, when the recorded state of the same subscription is
/// terminal and the snapshot is not, and when the snapshot is about another
/// subscription than the customer's current one and is not open (an old
/// subscription ended). An open subscription other than the recorded one
/// becomes the current one. [`Applied::Waiting`] when the processor's
/// customer id is not recorded on any customer yet.
///
/// Errors: [`BillingError::Database`].
pub async fn apply_subscription_snapshot(
    conn: &mut AsyncPgConnection,
    snapshot: &SubscriptionSnapshot,
) -> Result<Applied, BillingError> {
    let Some(customer) = lock_by_processor_customer(conn, &snapshot.processor_customer_id).await?
    else {
        return Ok(Applied::Waiting(
            "the processor's customer is not known yet",
        ));
    };
    apply_subscription_to(conn, &customer, snapshot).await
}

async fn apply_subscription_to(
    conn: &mut AsyncPgConnection,
    customer: &Customer,
    snapshot: &SubscriptionSnapshot,
) -> Result<Applied, BillingError> {
    if !is_current(snapshot.observed_at, customer.subscription_updated_at) {
        return Ok(Applied::Skipped("an older observation of the subscription"));
    }
    let same = customer.stripe_subscription_id.as_deref() == Some(snapshot.id.as_str());
    if same
        && customer.subscription_status.is_some_and(is_terminal)
        && !is_terminal(snapshot.status)
    {
        return Ok(Applied::Skipped("the subscription has ended already"));
    }
    if !same && customer.stripe_subscription_id.is_some() && !snapshot.status.is_open() {
        // Known from now on (its invoices are then recognised as not the
        // current subscription's instead of waiting for it).
        diesel::insert_into(stripe_subscriptions::table)
            .values((
                stripe_subscriptions::id.eq(&snapshot.id),
                stripe_subscriptions::customer_id.eq(customer.id),
                stripe_subscriptions::cancel_at_period_end.eq(false),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        return Ok(Applied::Skipped("an earlier subscription ended"));
    }
    change_plan(
        conn,
        customer.id,
        &PlanChange::Subscription(SubscriptionState {
            subscription_id: &snapshot.id,
            status: snapshot.status,
            current_period_end: snapshot.current_period_end,
            observed_at: snapshot.observed_at,
        }),
    )
    .await?;
    let cancel_at_period_end = snapshot.cancel_at_period_end && !is_terminal(snapshot.status);
    diesel::insert_into(stripe_subscriptions::table)
        .values((
            stripe_subscriptions::id.eq(&snapshot.id),
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
    Ok(Applied::Done)
}

/// Applies an invoice's current state. Call inside a transaction.
///
/// When `subscription` (the invoice's subscription, re-read with it) is
/// given it is applied first ([`apply_subscription_snapshot`]), so the
/// subscription's status comes from the processor. Without it (the
/// processor could not be asked) the status follows the invoice: paid
/// recovers a `past_due` current subscription to `active`, a failed
/// payment makes it `past_due`.
///
/// A paid invoice grants the period's credits under the rules of the
/// module doc (ledger key `invoice:<id>`, kind `subscription_grant`),
/// expiring what is left of the previous grant first, and records the
/// granted period's end (`customers.pro_credits_period_end`). Its overage
/// invoice items are then paid.
///
/// [`Applied::Waiting`] when the customer is not known yet, or when the
/// invoice's subscription is neither recorded nor given.
///
/// Errors: [`BillingError::Database`].
pub async fn apply_invoice_snapshot(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    invoice: &InvoiceSnapshot,
    subscription: Option<&SubscriptionSnapshot>,
) -> Result<InvoiceApplied, BillingError> {
    let mut outcome = InvoiceApplied {
        applied: Applied::Done,
        customer_id: None,
        granted: 0,
        notify_payment_failed: false,
    };
    let Some(customer) = lock_by_processor_customer(conn, &invoice.processor_customer_id).await?
    else {
        outcome.applied = Applied::Waiting("the processor's customer is not known yet");
        return Ok(outcome);
    };
    outcome.customer_id = Some(customer.id);
    let Some(sub_id) = invoice.subscription_id.as_deref() else {
        outcome.applied = Applied::Skipped("a one-off invoice grants nothing");
        return Ok(outcome);
    };
    if let Some(subscription) = subscription.filter(|s| s.id == sub_id) {
        apply_subscription_to(conn, &customer, subscription).await?;
    } else {
        let known: bool = diesel::select(diesel::dsl::exists(
            stripe_subscriptions::table.filter(stripe_subscriptions::id.eq(sub_id)),
        ))
        .get_result(conn)
        .await?;
        if !known {
            outcome.applied = Applied::Waiting("the invoice's subscription is not known yet");
            return Ok(outcome);
        }
        derive_status_from_invoice(conn, &customer, invoice).await?;
    }
    let customer = find_customer(conn, customer.id).await?;
    outcome.notify_payment_failed = invoice.payment_failed
        && customer.stripe_subscription_id.as_deref() == Some(sub_id)
        && customer
            .subscription_status
            .is_some_and(|s| !is_terminal(s));
    if invoice.paid {
        outcome.granted = grant_period_credits(conn, pricing, &customer, invoice).await?;
        pay_overage_items(conn, customer.id, invoice).await?;
    }
    Ok(outcome)
}

/// Without a fresh subscription: a paid invoice of the current `past_due`
/// subscription makes it `active`; a failed one makes it `past_due`.
async fn derive_status_from_invoice(
    conn: &mut AsyncPgConnection,
    customer: &Customer,
    invoice: &InvoiceSnapshot,
) -> Result<(), BillingError> {
    let Some(status) = customer.subscription_status else {
        return Ok(());
    };
    let current = customer.stripe_subscription_id.as_deref() == invoice.subscription_id.as_deref();
    if !current
        || is_terminal(status)
        || !is_current(invoice.observed_at, customer.subscription_updated_at)
    {
        return Ok(());
    }
    let new_status = if invoice.paid && status == SubscriptionStatus::PastDue {
        SubscriptionStatus::Active
    } else if invoice.payment_failed && status.counts_as_pro() {
        SubscriptionStatus::PastDue
    } else {
        return Ok(());
    };
    let Some(subscription_id) = customer.stripe_subscription_id.as_deref() else {
        return Ok(());
    };
    change_plan(
        conn,
        customer.id,
        &PlanChange::Subscription(SubscriptionState {
            subscription_id,
            status: new_status,
            current_period_end: customer.current_period_end,
            observed_at: invoice.observed_at,
        }),
    )
    .await?;
    Ok(())
}

/// Grants a paid invoice's Pro credits when the rules allow (module doc);
/// returns the credits granted now.
async fn grant_period_credits(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer: &Customer,
    invoice: &InvoiceSnapshot,
) -> Result<i64, BillingError> {
    let of_current_pro = customer.stripe_subscription_id.as_deref()
        == invoice.subscription_id.as_deref()
        && customer
            .subscription_status
            .is_some_and(SubscriptionStatus::counts_as_pro);
    let for_a_period = invoice
        .billing_reason
        .is_some_and(BillingReason::starts_a_period);
    if !of_current_pro
        || !for_a_period
        || invoice.amount_paid_cents <= 0
        || pricing.pro_credits_per_period <= 0
    {
        tracing::info!(
            customer_id = customer.id,
            invoice = %invoice.id,
            of_current_pro,
            for_a_period,
            amount_paid = invoice.amount_paid_cents,
            "paid invoice grants no Pro credits"
        );
        return Ok(0);
    }
    let key = format!("invoice:{}", invoice.id);
    let already: bool = diesel::select(diesel::dsl::exists(
        credit_ledger_entries::table
            .filter(credit_ledger_entries::customer_id.eq(customer.id))
            .filter(credit_ledger_entries::idempotency_key.eq(&key)),
    ))
    .get_result(conn)
    .await?;
    if already {
        return Ok(0);
    }
    if pricing.credits_expire(LedgerKind::SubscriptionGrant) {
        expire_previous_grant(conn, customer.id).await?;
    }
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
    let period_end = invoice.period_end.or(customer.current_period_end);
    diesel::update(customers::table.find(customer.id))
        .set(customers::pro_credits_period_end.eq(period_end))
        .execute(conn)
        .await?;
    // Fixes left `unpaid` while the period's credits were not granted (or
    // with no way to pay) are settled now.
    crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, customer.id).await?;
    Ok(pricing.pro_credits_per_period)
}

/// Expires what is left of the customer's previous Pro invoice grant
/// (ledger kind `expired`, key `expire:invoice:<previous invoice id>`):
/// −min(balance, grant − credits used since it), nothing when that is not
/// positive. Credits used since the grant are fix debits not paid by a
/// purchase (each charged fix writes a `purchase` +1 with its debit).
async fn expire_previous_grant(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(), BillingError> {
    let previous: Option<(i64, i64, String)> = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq(LedgerKind::SubscriptionGrant.as_str()))
        .filter(credit_ledger_entries::idempotency_key.like("invoice:%"))
        .order(credit_ledger_entries::id.desc())
        .select((
            credit_ledger_entries::id,
            credit_ledger_entries::amount,
            credit_ledger_entries::idempotency_key,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((grant_id, granted, grant_key)) = previous else {
        return Ok(());
    };
    let used: i64 = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::id.gt(grant_id))
        .filter(credit_ledger_entries::kind.eq_any([
            LedgerKind::FixConsumed.as_str(),
            LedgerKind::Purchase.as_str(),
        ]))
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COALESCE(SUM(amount), 0)::bigint",
        ))
        .first(conn)
        .await?;
    let used = (-used).max(0);
    let balance: i64 = customers::table
        .find(customer_id)
        .select(customers::credit_balance)
        .first(conn)
        .await?;
    let expire = balance.min(granted - used);
    if expire <= 0 {
        return Ok(());
    }
    let key = format!("expire:{grant_key}");
    append_entry(
        conn,
        NewEntry {
            customer_id,
            amount: -expire,
            kind: LedgerKind::Expired,
            reference: Some(&grant_key),
            idempotency_key: &key,
        },
    )
    .await?;
    Ok(())
}

/// Overage charges whose invoice items are on the paid invoice become
/// paid.
async fn pay_overage_items(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    invoice: &InvoiceSnapshot,
) -> Result<(), BillingError> {
    if invoice.invoice_item_ids.is_empty() {
        return Ok(());
    }
    let on_invoice: Vec<i64> = charges::table
        .filter(charges::customer_id.eq(customer_id))
        .filter(charges::kind.eq(crate::server::billing::charges::KIND_OVERAGE))
        .filter(charges::stripe_invoice_item_id.eq_any(&invoice.invoice_item_ids))
        .select(charges::id)
        .load(conn)
        .await?;
    for charge_id in on_invoice {
        if crate::server::billing::charges::settle_invoiced_overage(conn, charge_id, &invoice.id)
            .await?
        {
            tracing::info!(customer_id, charge_id, invoice = %invoice.id, "overage item paid with its invoice");
        }
    }
    Ok(())
}

/// Whether the credits of the customer's current Pro period have been
/// granted: true without a known period end, else when the last grant's
/// period ends no earlier than the current one. Issue 9: overage starts
/// only after the current period's credits are granted (and used); until
/// then a fix beyond the credits stays `unpaid`, settled at the grant.
///
/// Errors: [`BillingError::Database`].
pub async fn period_credits_granted(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<bool, BillingError> {
    let (current, granted): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = customers::table
        .find(customer_id)
        .select((
            customers::current_period_end,
            customers::pro_credits_period_end,
        ))
        .first(conn)
        .await?;
    Ok(match (current, granted) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(current), Some(granted)) => granted >= current,
    })
}

// --- Our own calls ------------------------------------------------------------------

/// When our own read of the processor happened, for a snapshot: now, or
/// just after the last recorded observation if that is ahead of our clock
/// (the processor's answer is the current state and must win).
async fn observation_time(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<DateTime<Utc>, BillingError> {
    let last = find_customer(conn, customer_id)
        .await?
        .subscription_updated_at;
    let now = Utc::now();
    Ok(match last {
        Some(last) if last >= now => last + chrono::Duration::milliseconds(1),
        _ => now,
    })
}

async fn apply_answer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    object: &Value,
) -> Result<Subscription, BillingError> {
    let subscription: Subscription = serde_json::from_value(object.clone())
        .map_err(|e| invalid(format!("unexpected subscription from Stripe: {e}")))?;
    conn.transaction(async |conn| {
        let at = observation_time(conn, customer_id).await?;
        let snapshot = crate::server::stripe::events::subscription_snapshot(object, at)
            .map_err(|e| invalid(e.to_string()))?;
        apply_subscription_snapshot(conn, &snapshot).await
    })
    .await?;
    Ok(subscription)
}

/// Subscribes the customer to Pro (the Plan/Price
/// `settings.pro_price_id`, created on a local stand-in if missing),
/// charging the default card, and applies the answer and the first invoice
/// as the webhooks would. Idempotency key
/// `subscription:create:<customer id>:after:<previous subscription id or none>`.
///
/// Errors: [`BillingError::Invalid`] without a card on file, while a
/// subscription is open, or when Stripe refuses (e.g. a declined card);
/// [`BillingError::Pool`] when Stripe is unreachable.
pub async fn subscribe_pro(
    api: &StripeApi,
    settings: &StripeSettings,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<Subscription, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    if customer
        .subscription_status
        .is_some_and(SubscriptionStatus::is_open)
    {
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
    let subscription = apply_answer(conn, customer_id, &object).await?;
    if let Some(crate::server::stripe::billing_api::IdRef(invoice_id)) =
        &subscription.latest_invoice
    {
        let invoice: Value = api
            .call(
                StripeMethod::Get,
                &format!("/invoices/{invoice_id}"),
                &[],
                None,
            )
            .await
            .map_err(stripe_error)?;
        conn.transaction(async |conn| {
            let at = observation_time(conn, customer_id).await?;
            let snapshot = crate::server::stripe::events::invoice_snapshot(&invoice, at)
                .map_err(|e| invalid(e.to_string()))?;
            apply_invoice_snapshot(conn, pricing, &snapshot, None).await
        })
        .await?;
    }
    tracing::info!(customer_id, subscription = %subscription.id, status = %subscription.status, "subscribed to Pro");
    Ok(subscription)
}

/// The form parameters of cancelling now (`DELETE /v1/subscriptions/{id}`):
/// a final invoice collects the pending overage items at once
/// (`invoice_now=true`) and the unused part of the period is not credited
/// back (`prorate=false`). Issue 9: "cancelling now collects pending
/// overage".
pub fn cancel_now_params() -> Vec<(String, String)> {
    vec![
        ("invoice_now".to_owned(), "true".to_owned()),
        ("prorate".to_owned(), "false".to_owned()),
    ]
}

/// Cancels the customer's subscription: `at_period_end` false ends it now
/// (with [`cancel_now_params`]: pending overage is invoiced at once; the
/// plan falls back to pay as you go or trial); true lets it run to the
/// period end (resumable until then with [`resume`]).
///
/// Errors: [`BillingError::Invalid`] without an open subscription; Stripe
/// failures as in [`stripe_error`].
pub async fn cancel(
    api: &StripeApi,
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    at_period_end: bool,
) -> Result<Subscription, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    let Some(sub_id) = customer.stripe_subscription_id.filter(|_| {
        customer
            .subscription_status
            .is_some_and(SubscriptionStatus::is_open)
    }) else {
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
            &cancel_now_params(),
            None,
        )
        .await
    }
    .map_err(stripe_error)?;
    apply_answer(conn, customer_id, &object).await
}

/// Undoes a cancel-at-period-end before the period ends.
///
/// Errors: [`BillingError::Invalid`] when there is no open subscription;
/// Stripe failures as in [`stripe_error`].
pub async fn resume(
    api: &StripeApi,
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Subscription, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    let _ = stripe_customer_id(conn, customer_id).await?;
    let Some(sub_id) = customer.stripe_subscription_id.filter(|_| {
        customer
            .subscription_status
            .is_some_and(SubscriptionStatus::is_open)
    }) else {
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
    apply_answer(conn, customer_id, &object).await
}

/// Whether the customer's current subscription ends at its period end.
///
/// Errors: [`BillingError::Database`].
pub async fn ends_at_period_end(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<bool, BillingError> {
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

/// A Stripe failure for the portal: a 4xx is the customer's (e.g. a
/// declined card: its message), anything else "try again later".
pub fn stripe_error(error: StripeCallError) -> BillingError {
    match error {
        StripeCallError::Api {
            status, message, ..
        } if (400..500).contains(&status) && status != 429 => invalid(message),
        StripeCallError::Disabled => {
            invalid("billing is paused at the moment; please try again later")
        }
        other => {
            tracing::error!(error = %other, "Stripe call failed");
            BillingError::Pool("Stripe is unavailable; please try again in a moment".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_creation_and_renewal_start_a_period() {
        for (text, starts) in [
            ("subscription_create", true),
            ("subscription_cycle", true),
            ("subscription_update", false),
            ("subscription_threshold", false),
            ("manual", false),
            ("upcoming", false),
        ] {
            assert_eq!(
                BillingReason::parse(text).starts_a_period(),
                starts,
                "{text}"
            );
        }
    }

    #[test]
    fn cancelling_now_invoices_pending_items_without_proration() {
        let params = cancel_now_params();
        assert!(params.contains(&("invoice_now".into(), "true".into())));
        assert!(params.contains(&("prorate".into(), "false".into())));
    }
}
