//! Money for fixes beyond the credits: one `charges` row per such fix.
//!
//! The flow (chosen so the Action's request stays fast and no fix is lost):
//! the request that records the fix, in its one transaction, stores the fix
//! as `unpaid`, writes its charge row (`pending`) and enqueues the
//! `stripe.charge` job; it never calls Stripe. The job
//! ([`crate::server::stripe::charges`]) then charges: pay-as-you-go, an
//! off-session PaymentIntent (idempotency key `fix:charge:<fix id>`); Pro
//! beyond the period's credits, an invoice item billed with the next invoice
//! (idempotency key `overage:charge:<charge id>`). When Stripe is unreachable
//! the job retries with backoff, and before creating anything it looks for
//! the object an earlier attempt may have made (stored id, then our charge
//! id in Stripe metadata), so one fix gives exactly one Stripe charge. With
//! billing disabled the job stays queued: the fix is recorded for later
//! billing.
//!
//! On success ([`settle_succeeded`]) the ledger shows the purchase (+1,
//! kind `purchase`, key `purchase:charge:<id>`) and the consumption (−1,
//! kind `fix_consumed`, key `fix:<fix id>`) and the fix becomes `charged`.
//! A declined pay-as-you-go card ([`settle_failed`]) leaves the fix `unpaid`,
//! marks the customer (`payment_failed_at`) so further fixes beyond the
//! credits are refused (the Action gets 402), and emails the customer; a
//! card added later re-queues the failed charges ([`retry_failed_charges`]).

use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{charges, customers, fixes};
use crate::server::email::enqueue_email;
use crate::server::email::templates::{charge_declined, EmailLinks, Recipient};
use crate::server::jobs::{enqueue, NewJob, DEFAULT_MAX_ATTEMPTS, KIND_STRIPE_CHARGE};
use crate::types::values::{FixBillingStatus, LedgerKind, SubscriptionStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// Charge kind: an off-session PaymentIntent (pay as you go).
pub const KIND_PAYG: &str = "payg";
/// Charge kind: an invoice item on the Pro subscription's next invoice.
pub const KIND_OVERAGE: &str = "overage";

/// A stored charge. Amounts in minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = charges, check_for_backend(diesel::pg::Pg))]
pub struct Charge {
    /// Row id.
    pub id: i64,
    /// Who pays.
    pub customer_id: i64,
    /// The fix it pays for (one charge per fix).
    pub fix_id: i64,
    /// [`KIND_PAYG`] or [`KIND_OVERAGE`].
    pub kind: String,
    /// Minor units (cents).
    pub amount_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// The PaymentIntent, once known.
    pub stripe_payment_intent_id: Option<String>,
    /// The invoice item, once known.
    pub stripe_invoice_item_id: Option<String>,
    /// Why it failed (Stripe's message, for people).
    pub failure_message: Option<String>,
    /// Attempts that reached for Stripe.
    pub attempts: i32,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Charge {
    /// The Stripe idempotency key of this charge's creating call:
    /// `fix:charge:<fix id>` for the first pay-as-you-go attempt,
    /// `fix:charge:<fix id>:retry:<attempts>` after a decline (Stripe would
    /// replay the decline for the same key), `overage:charge:<id>` for
    /// overage items.
    pub fn idempotency_key(&self) -> String {
        match (self.kind.as_str(), &self.failure_message) {
            (KIND_OVERAGE, _) => format!("overage:charge:{}", self.id),
            (_, None) => format!("fix:charge:{}", self.fix_id),
            (_, Some(_)) => format!("fix:charge:{}:retry:{}", self.fix_id, self.attempts),
        }
    }
}

/// The facts about a customer that decide how a fix beyond the credits is
/// paid (read under the customer's row lock).
#[derive(Debug, Clone, Queryable)]
struct PayFacts {
    has_payment_method: bool,
    subscription_status: Option<SubscriptionStatus>,
    stripe_subscription_id: Option<String>,
    payment_failed_at: Option<DateTime<Utc>>,
}

/// How a fix with no credit left is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoCreditOutcome {
    /// A charge row and its job were written.
    Charging(i64),
    /// Nothing can pay for it now: stored `unpaid`; the message says why
    /// (the Action gets it with a 402).
    Refused(String),
    /// Pro, but the current period's credits are not granted yet (their
    /// invoice is not paid yet): stored `unpaid` without a charge, not
    /// refused; paid from the credits once they are granted (issue 9).
    AwaitingPeriodCredits,
}

/// Message for a customer without credits and without a way to pay.
pub const NO_WAY_TO_PAY: &str =
    "no credits left: add a payment method or subscribe to Pro in the RSOLV portal (Billing)";
/// Message for a customer whose last card charge was declined.
pub const PAYMENT_FAILED: &str =
    "your last card payment was declined: update your payment method in the RSOLV portal (Billing)";

/// For fix `fix_id` of `customer_id` that found no credit: writes its
/// charge and enqueues the `stripe.charge` job (dedupe key
/// `stripe.charge:<charge id>`), or refuses. Call inside the transaction that
/// records the fix, with the customer's row locked.
///
/// Pro (a subscription `active`, `trialing` or `past_due`): an overage charge
/// of `pricing.pro_overage_cents`. A card on file and no declined charge: a
/// pay-as-you-go charge of `pricing.payg_fix_cents`. Otherwise refused.
///
/// Errors: [`BillingError::Database`].
pub async fn charge_for_fix_in_tx(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    fix_id: i64,
) -> Result<NoCreditOutcome, BillingError> {
    let facts: PayFacts = customers::table
        .find(customer_id)
        .select((
            customers::has_payment_method,
            customers::subscription_status,
            customers::stripe_subscription_id,
            customers::payment_failed_at,
        ))
        .first(conn)
        .await?;
    let pro = facts.stripe_subscription_id.is_some()
        && facts
            .subscription_status
            .is_some_and(SubscriptionStatus::counts_as_pro);
    // Issue 9: no overage before the current period's credits are granted;
    // the fix stays `unpaid` and is settled at the grant.
    if pro
        && !crate::server::billing::subscriptions::period_credits_granted(conn, customer_id).await?
    {
        return Ok(NoCreditOutcome::AwaitingPeriodCredits);
    }
    let (kind, amount) = if pro {
        (KIND_OVERAGE, pricing.pro_overage_cents)
    } else if facts.payment_failed_at.is_some() {
        return Ok(NoCreditOutcome::Refused(PAYMENT_FAILED.into()));
    } else if facts.has_payment_method {
        (KIND_PAYG, pricing.payg_fix_cents)
    } else {
        return Ok(NoCreditOutcome::Refused(NO_WAY_TO_PAY.into()));
    };
    let charge_id: Option<i64> = diesel::insert_into(charges::table)
        .values((
            charges::customer_id.eq(customer_id),
            charges::fix_id.eq(fix_id),
            charges::kind.eq(kind),
            charges::amount_cents.eq(amount),
            charges::currency.eq(&pricing.currency),
        ))
        .on_conflict(charges::fix_id)
        .do_nothing()
        .returning(charges::id)
        .get_result(conn)
        .await
        .optional()?;
    let charge_id = match charge_id {
        Some(id) => {
            enqueue_charge_job(conn, id, None).await?;
            id
        }
        None => {
            charges::table
                .filter(charges::fix_id.eq(fix_id))
                .select(charges::id)
                .first(conn)
                .await?
        }
    };
    Ok(NoCreditOutcome::Charging(charge_id))
}

async fn enqueue_charge_job(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    round: Option<i32>,
) -> Result<(), BillingError> {
    let dedupe = match round {
        None => format!("{KIND_STRIPE_CHARGE}:{charge_id}"),
        Some(n) => format!("{KIND_STRIPE_CHARGE}:{charge_id}:retry:{n}"),
    };
    enqueue(
        conn,
        &NewJob {
            kind: KIND_STRIPE_CHARGE,
            payload: json!({ "charge_id": charge_id }),
            dedupe_key: Some(&dedupe),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        },
    )
    .await?;
    Ok(())
}

/// Why fix `fix_id` is refused, if it is: `unpaid` with no charge (see
/// [`NoCreditOutcome::Refused`]). The Action's adapters answer 402 with it.
///
/// Errors: [`BillingError::Database`].
pub async fn refusal_for_fix(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    fix_id: i64,
    billing_status: &str,
) -> Result<Option<&'static str>, BillingError> {
    if billing_status != FixBillingStatus::Unpaid.as_str() {
        return Ok(None);
    }
    let has_charge: bool = diesel::select(diesel::dsl::exists(
        charges::table.filter(charges::fix_id.eq(fix_id)),
    ))
    .get_result(conn)
    .await?;
    if has_charge {
        return Ok(None);
    }
    let (failed, subscription): (Option<DateTime<Utc>>, Option<SubscriptionStatus>) =
        customers::table
            .find(customer_id)
            .select((customers::payment_failed_at, customers::subscription_status))
            .first(conn)
            .await?;
    if subscription.is_some_and(SubscriptionStatus::counts_as_pro) {
        return Ok(None); // awaiting the period's credits: not refused
    }
    Ok(Some(if failed.is_some() {
        PAYMENT_FAILED
    } else {
        NO_WAY_TO_PAY
    }))
}

/// Reads one charge.
///
/// Errors: [`BillingError::NotFound`].
pub async fn find_charge(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
) -> Result<Charge, BillingError> {
    charges::table
        .find(charge_id)
        .select(Charge::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("charge"))
}

/// The customer's charges, newest first (at most `limit`).
///
/// Errors: [`BillingError::Database`].
pub async fn list_charges(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    limit: i64,
) -> Result<Vec<Charge>, BillingError> {
    Ok(charges::table
        .filter(charges::customer_id.eq(customer_id))
        .order(charges::id.desc())
        .limit(limit)
        .select(Charge::as_select())
        .load(conn)
        .await?)
}

/// Counts an attempt and stores Stripe ids learnt so far (committed before
/// the next Stripe call, so a crash after it is found on retry).
///
/// Errors: [`BillingError::Database`].
pub async fn note_attempt(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
) -> Result<Charge, BillingError> {
    Ok(diesel::update(charges::table.find(charge_id))
        .set((
            charges::attempts.eq(charges::attempts + 1),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Charge::as_returning())
        .get_result(conn)
        .await?)
}

/// Stores the Stripe object's id on a pending charge.
///
/// Errors: [`BillingError::Database`].
pub async fn store_stripe_id(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    payment_intent: Option<&str>,
    invoice_item: Option<&str>,
) -> Result<(), BillingError> {
    diesel::update(charges::table.find(charge_id))
        .set((
            charges::stripe_payment_intent_id.eq(payment_intent),
            charges::stripe_invoice_item_id.eq(invoice_item),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Settles a charge that Stripe accepted, once (a charge no longer
/// `pending` is left alone): the charge `succeeded`, ledger +1 `purchase`
/// and −1 `fix_consumed`, the fix `charged`; the customer's
/// `payment_failed_at` cleared when no failed charge remains. One
/// transaction (the caller's), under the customer's row lock.
///
/// Errors: [`BillingError::Database`].
pub async fn settle_succeeded(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    payment_intent: Option<&str>,
    invoice_item: Option<&str>,
) -> Result<(), BillingError> {
    let charge = lock_pending(conn, charge_id).await?;
    let Some(charge) = charge else {
        return Ok(());
    };
    let purchase_key = format!("purchase:charge:{}", charge.id);
    let fix_ref = format!("fix:{}", charge.fix_id);
    append_entry(
        conn,
        NewEntry {
            customer_id: charge.customer_id,
            amount: 1,
            kind: LedgerKind::Purchase,
            reference: Some(&fix_ref),
            idempotency_key: &purchase_key,
        },
    )
    .await?;
    let consumed = append_entry(
        conn,
        NewEntry {
            customer_id: charge.customer_id,
            amount: -1,
            kind: LedgerKind::FixConsumed,
            reference: Some(&fix_ref),
            idempotency_key: &fix_ref,
        },
    )
    .await?;
    diesel::update(charges::table.find(charge.id))
        .set((
            charges::status.eq("succeeded"),
            charges::stripe_payment_intent_id
                .eq(payment_intent.or(charge.stripe_payment_intent_id.as_deref())),
            charges::stripe_invoice_item_id
                .eq(invoice_item.or(charge.stripe_invoice_item_id.as_deref())),
            charges::failure_message.eq(None::<String>),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::update(fixes::table.find(charge.fix_id))
        .set((
            fixes::billing_status.eq(FixBillingStatus::Charged.as_str()),
            fixes::ledger_entry_id.eq(consumed.entry.id),
            fixes::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    let still_failed: bool = diesel::select(diesel::dsl::exists(
        charges::table
            .filter(charges::customer_id.eq(charge.customer_id))
            .filter(charges::status.eq("failed")),
    ))
    .get_result(conn)
    .await?;
    if !still_failed {
        diesel::update(customers::table.find(charge.customer_id))
            .set(customers::payment_failed_at.eq(None::<DateTime<Utc>>))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Records a charge Stripe refused (e.g. a declined card), once: the charge
/// `failed` with `message`; for a pay-as-you-go charge the customer's
/// `payment_failed_at` is set and the `charge_declined` email queued (key
/// `charge_declined:<charge id>:<attempts>`) in the same transaction. The
/// fix stays `unpaid`.
///
/// Errors: [`BillingError::Database`].
pub async fn settle_failed(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    charge_id: i64,
    payment_intent: Option<&str>,
    message: &str,
) -> Result<(), BillingError> {
    let Some(charge) = lock_pending(conn, charge_id).await? else {
        return Ok(());
    };
    diesel::update(charges::table.find(charge.id))
        .set((
            charges::status.eq("failed"),
            charges::failure_message.eq(message),
            charges::stripe_payment_intent_id
                .eq(payment_intent.or(charge.stripe_payment_intent_id.as_deref())),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if charge.kind == KIND_PAYG {
        diesel::update(customers::table.find(charge.customer_id))
            .set(customers::payment_failed_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        let (email, name): (String, String) = customers::table
            .find(charge.customer_id)
            .select((customers::email, customers::name))
            .first(conn)
            .await?;
        let to = Recipient {
            customer_id: Some(charge.customer_id),
            email: &email,
            name: &name,
        };
        let amount =
            crate::server::billing::pricing::format_money(charge.amount_cents, &charge.currency);
        let key = format!("charge_declined:{}:{}", charge.id, charge.attempts);
        let _ = pricing;
        enqueue_email(conn, &charge_declined(links, &to, &amount, message, key)).await?;
    }
    Ok(())
}

/// Locks the customer, then the charge; `None` unless it is `pending`.
async fn lock_pending(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
) -> Result<Option<Charge>, BillingError> {
    let customer_id: i64 = charges::table
        .find(charge_id)
        .select(charges::customer_id)
        .first(conn)
        .await?;
    customers::table
        .find(customer_id)
        .select(customers::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .await?;
    let charge: Charge = charges::table
        .find(charge_id)
        .select(Charge::as_select())
        .for_update()
        .first(conn)
        .await?;
    Ok((charge.status == "pending").then_some(charge))
}

/// After the customer fixed their card: puts every `failed` pay-as-you-go
/// charge back to `pending` with a new `stripe.charge` job (they are tried
/// again with a new idempotency key). Returns how many. Call in the
/// transaction that records the new card.
///
/// Errors: [`BillingError::Database`].
pub async fn retry_failed_charges(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<usize, BillingError> {
    let failed: Vec<(i64, i32)> = diesel::update(
        charges::table
            .filter(charges::customer_id.eq(customer_id))
            .filter(charges::status.eq("failed"))
            .filter(charges::kind.eq(KIND_PAYG)),
    )
    .set((
        charges::status.eq("pending"),
        charges::stripe_payment_intent_id.eq(None::<String>),
        charges::updated_at.eq(diesel::dsl::now),
    ))
    .returning((charges::id, charges::attempts))
    .get_results(conn)
    .await?;
    for (id, attempts) in &failed {
        enqueue_charge_job(conn, *id, Some(*attempts)).await?;
    }
    Ok(failed.len())
}
