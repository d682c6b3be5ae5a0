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
use crate::server::billing::error::processor_error;
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::payment_methods::stripe_customer_id;
use crate::server::billing::plan::{change_plan, PlanChange, SubscriptionState};
use crate::server::billing::ports::{
    CancelMode, InvoiceSnapshot, PaymentProcessor, SubscribeRequest, SubscriptionSnapshot,
};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{charges, credit_ledger_entries, customers, stripe_subscriptions};
use crate::types::values::{LedgerKind, ParseError, SubscriptionStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
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
    pricing: &PricingCatalog,
    snapshot: &SubscriptionSnapshot,
) -> Result<Applied, BillingError> {
    let Some(customer) = lock_by_processor_customer(conn, &snapshot.processor_customer_id).await?
    else {
        return Ok(Applied::Waiting(
            "the processor's customer is not known yet",
        ));
    };
    apply_subscription_to(conn, pricing, &customer, snapshot).await
}

async fn apply_subscription_to(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
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
    // The plan may have changed (Pro ended, or recovered): fixes left
    // `unpaid` while waiting for a Pro period's credits are settled under
    // the plan in force now — e.g. charged to the card once Pro has ended
    // (found by the model test: cancel at period end, renew, a fix).
    crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, customer.id).await?;
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
        apply_subscription_to(conn, pricing, &customer, subscription).await?;
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
        let overage = pay_overage_items(conn, customer.id, invoice).await?;
        queue_invoice_receipt(conn, &customer, invoice, overage).await?;
    }
    Ok(outcome)
}

/// Queues the receipt of paid `invoice` (key `receipt:invoice:<in_…>`) in
/// the transaction that applies it, when money was collected
/// (`amount_paid > 0`): duplicated, reordered or replayed `invoice.*`
/// events queue it once. `overage` is how many of our overage charges it
/// carried.
async fn queue_invoice_receipt(
    conn: &mut AsyncPgConnection,
    customer: &Customer,
    invoice: &InvoiceSnapshot,
    overage: usize,
) -> Result<(), BillingError> {
    use crate::server::billing::notifications::{
        enqueue_email, invoice_receipt, InvoiceReceiptFacts, Recipient,
    };
    if invoice.amount_paid_cents <= 0 {
        return Ok(());
    }
    let mut description = if invoice.pays_for_a_period() {
        "RSOLV Pro subscription (one billing period)".to_owned()
    } else {
        "RSOLV Pro invoice".to_owned()
    };
    match overage {
        0 => {}
        1 => description.push_str(", including 1 fix beyond the plan's credits"),
        n => description.push_str(&format!(", including {n} fixes beyond the plan's credits")),
    }
    let amount =
        crate::server::billing::pricing::format_money(invoice.amount_paid_cents, &invoice.currency);
    let to = Recipient {
        customer_id: Some(customer.id),
        email: &customer.email,
        name: &customer.name,
    };
    let facts = InvoiceReceiptFacts {
        amount: &amount,
        description: &description,
        number: invoice.number.as_deref(),
        paid_at: invoice.observed_at,
        hosted_url: invoice.hosted_url.as_deref(),
        pdf_url: invoice.pdf_url.as_deref(),
    };
    let key = format!("receipt:invoice:{}", invoice.id);
    enqueue_email(conn, &invoice_receipt(&to, &facts, key)).await?;
    Ok(())
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
    let for_a_period = invoice.pays_for_a_period();
    if !of_current_pro || !for_a_period || pricing.pro_credits_per_period <= 0 {
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
) -> Result<usize, BillingError> {
    if invoice.invoice_item_ids.is_empty() {
        return Ok(0);
    }
    let on_invoice: Vec<i64> = charges::table
        .filter(charges::customer_id.eq(customer_id))
        .filter(charges::kind.eq(crate::server::billing::charges::ChargeKind::Overage))
        .filter(charges::stripe_invoice_item_id.eq_any(&invoice.invoice_item_ids))
        .select(charges::id)
        .load(conn)
        .await?;
    for &charge_id in &on_invoice {
        if crate::server::billing::charges::settle_invoiced_overage(conn, charge_id, &invoice.id)
            .await?
        {
            tracing::info!(customer_id, charge_id, invoice = %invoice.id, "overage item paid with its invoice");
        }
    }
    Ok(on_invoice.len())
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

/// Applies a subscription the processor answered with, observed now (after
/// anything recorded), as a webhook would.
async fn apply_answer(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    mut snapshot: SubscriptionSnapshot,
) -> Result<SubscriptionSnapshot, BillingError> {
    conn.transaction(async |conn| {
        snapshot.observed_at = observation_time(conn, customer_id).await?;
        apply_subscription_snapshot(conn, pricing, &snapshot).await
    })
    .await?;
    Ok(snapshot)
}

/// Subscribes the customer to Pro at the processor's recurring price
/// `price` (`price_…`, or a plan id on a local stand-in, where it is
/// created at `pricing.pro_monthly_cents` if missing), charging the
/// default card, and applies the answer and the first invoice as the
/// webhooks would. Idempotency key
/// `subscription:create:<customer id>:after:<previous subscription id or none>`,
/// stable for this subscription attempt.
///
/// Errors: [`BillingError::Invalid`] without a card on file, while a
/// subscription is open, or when the card is declined; others as in
/// [`processor_error`].
pub async fn subscribe_pro(
    processor: &dyn PaymentProcessor,
    price: &str,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<SubscriptionSnapshot, BillingError> {
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
    let request = SubscribeRequest {
        customer_id,
        customer: stripe_customer_id(conn, customer_id).await?,
        price: price.to_owned(),
        amount_cents: pricing.pro_monthly_cents,
        currency: pricing.currency.clone(),
        idempotency_key: format!(
            "subscription:create:{customer_id}:after:{}",
            customer.stripe_subscription_id.as_deref().unwrap_or("none")
        ),
    };
    let answer = processor
        .subscribe(&request)
        .await
        .map_err(processor_error)?;
    let subscription = apply_answer(conn, pricing, customer_id, answer).await?;
    if let Some(invoice_id) = &subscription.latest_invoice {
        let mut invoice = processor
            .invoice(invoice_id)
            .await
            .map_err(processor_error)?;
        conn.transaction(async |conn| {
            invoice.observed_at = observation_time(conn, customer_id).await?;
            apply_invoice_snapshot(conn, pricing, &invoice, None).await
        })
        .await?;
    }
    tracing::info!(customer_id, subscription = %subscription.id, status = subscription.status.as_str(), "subscribed to Pro");
    Ok(subscription)
}

/// Cancels the customer's subscription: `at_period_end` false ends it now
/// ([`CancelMode::Now`] with `invoice_now`: pending overage items are
/// billed on a final invoice at once, issue 9 "cancelling now collects
/// pending overage"; the plan falls back to pay as you go or trial); true
/// lets it run to the period end (resumable until then with [`resume`]).
///
/// Errors: [`BillingError::Invalid`] without an open subscription; others
/// as in [`processor_error`].
pub async fn cancel(
    processor: &dyn PaymentProcessor,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    at_period_end: bool,
) -> Result<SubscriptionSnapshot, BillingError> {
    let sub_id = open_subscription(conn, customer_id, "you have no subscription to cancel").await?;
    let mode = if at_period_end {
        CancelMode::AtPeriodEnd
    } else {
        CancelMode::Now { invoice_now: true }
    };
    let answer = processor
        .cancel_subscription(&sub_id, mode)
        .await
        .map_err(processor_error)?;
    apply_answer(conn, pricing, customer_id, answer).await
}

/// Undoes a cancel-at-period-end before the period ends.
///
/// Errors: [`BillingError::Invalid`] when there is no open subscription;
/// others as in [`processor_error`].
pub async fn resume(
    processor: &dyn PaymentProcessor,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<SubscriptionSnapshot, BillingError> {
    let sub_id = open_subscription(conn, customer_id, "you have no subscription to resume").await?;
    let answer = processor
        .resume_subscription(&sub_id)
        .await
        .map_err(processor_error)?;
    apply_answer(conn, pricing, customer_id, answer).await
}

/// The customer's open subscription's id, else [`BillingError::Invalid`]
/// with `none_message`.
async fn open_subscription(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    none_message: &str,
) -> Result<String, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    customer
        .stripe_subscription_id
        .filter(|_| {
            customer
                .subscription_status
                .is_some_and(SubscriptionStatus::is_open)
        })
        .ok_or_else(|| invalid(none_message))
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
