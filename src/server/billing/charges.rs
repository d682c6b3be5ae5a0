//! Money for fixes beyond the credits: `charges` rows, and how one becomes
//! exactly one charge at the payment processor.
//!
//! The flow (chosen so the Action's request stays fast and no fix is lost):
//! the request that records the fix, in its one transaction, stores the fix
//! as `unpaid`, writes its charge row (`pending`) and enqueues the
//! `stripe.charge` job; it never calls the processor. The job runs
//! [`process_charge`] through the [`PaymentProcessor`] port: pay-as-you-go,
//! an off-session charge of the default card; Pro beyond the period's
//! credits, an invoice item billed with the next invoice (the charge is then
//! `invoiced` until that invoice is paid: [`settle_invoiced_overage`]).
//!
//! One idempotency key per charge for its whole life (issue 9):
//! `charge:<charge id>`, on every creating call for it; before creating
//! again after an attempt whose answer was lost, the job looks the object up
//! by our charge id in the processor's metadata. Two workers never charge
//! the same row at once: a worker takes a short lease on the row
//! (`processing_until`) for the duration of its processor calls.
//!
//! Only a real card decline ([`ProcessorError::Declined`]) fails a charge
//! ([`settle_failed`]): the charge stays `failed` for good, the customer is
//! marked (`payment_failed_at`, so further fixes beyond the credits are
//! refused with 402) and told by email what to do (never the processor's
//! raw message). Every other error (outage, 409, 401, 400, …) leaves the
//! charge `pending` and the job retries. When the customer adds a working
//! card, each still-unpaid fix gets a NEW charge (new id, new key:
//! [`retry_failed_charges`]). At most one charge per fix is not `failed`
//! (a partial unique index).
//!
//! On payment ([`settle_succeeded`]) the ledger shows the purchase (+1,
//! kind `purchase`, key `purchase:charge:<id>`) and the consumption (−1,
//! kind `fix_consumed`, key `fix:<fix id>`) and the fix becomes `charged`.
//! A charge stuck `pending` without a live job is re-queued by
//! [`sweep_stuck_charges`].

use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::notifications::enqueue_email;
use crate::server::billing::notifications::{
    charge_declined, charge_receipt, charge_requires_action, CustomerContact, EmailLinks,
};
use crate::server::billing::ports::{
    decline_advice, ChargeRequest, InvoiceItemRequest, PaymentProcessor, ProcessorCharge,
    ProcessorChargeStatus, ProcessorError,
};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::work::{ChargeJob, KIND_STRIPE_CHARGE};
use crate::server::billing::BillingError;
use crate::server::db::queue::BackgroundJob;
use crate::server::db::schema::{charges, customers, fixes, jobs, stripe_payment_methods};
use crate::types::values::{FixBillingStatus, LedgerKind, SubscriptionStatus};
use chrono::{DateTime, SubsecRound, Utc};
use diesel::deserialize::{FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{Output, ToSql};
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeMap;

pub use crate::types::values::ChargeKind;

/// How long a worker holds a charge while it talks to the processor
/// (longer than the processor calls of one run take).
pub const CHARGE_LEASE_SECONDS: i64 = 120;

/// Where a charge stands (the `charges.status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum ChargeStatus {
    /// Written; the `stripe.charge` job has not finished with it.
    Pending,
    /// Pay as you go: the card's bank asks the customer to authenticate
    /// the payment (3-D Secure / SCA). Neither paid nor declined, and the
    /// job leaves it alone (only the customer, on-session, can complete
    /// it: `/billing/authenticate?charge=<id>`); its PaymentIntent is
    /// kept. Completed → `succeeded`; failed → `failed` as a decline.
    RequiresAction,
    /// Overage: the invoice item exists, waiting for its invoice to be
    /// paid ([`settle_invoiced_overage`]).
    Invoiced,
    /// Paid; the ledger shows it and the fix is `charged`.
    Succeeded,
    /// The card was declined: final. A new charge pays the fix later.
    Failed,
    /// Paid, then refunded.
    Refunded,
}

impl ChargeStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::RequiresAction,
        Self::Invoiced,
        Self::Succeeded,
        Self::Failed,
        Self::Refunded,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::RequiresAction => "requires_action",
            Self::Invoiced => "invoiced",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    /// Parses the stored word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// Whether this charge is the fix's one live charge (every status but
    /// `failed`; the partial unique index allows one per fix).
    pub fn is_live(self) -> bool {
        self != Self::Failed
    }

    /// Whether the charge job still has work to do with it.
    pub fn awaits_processor(self) -> bool {
        self == Self::Pending
    }

    /// Whether a payment may still settle it as paid (`pending`,
    /// `requires_action` waiting for the customer, or `invoiced` waiting
    /// for its invoice).
    pub fn can_settle_paid(self) -> bool {
        matches!(self, Self::Pending | Self::RequiresAction | Self::Invoiced)
    }

    /// Whether the processor's word on its card payment (paid, declined)
    /// may still settle it: `pending` (the job's) or `requires_action`
    /// (the customer's authentication, completed or failed).
    pub fn awaits_card_payment(self) -> bool {
        matches!(self, Self::Pending | Self::RequiresAction)
    }

    /// Whether it waits for the customer to authenticate the payment.
    pub fn awaits_customer(self) -> bool {
        self == Self::RequiresAction
    }

    /// Whether money was received for it (and not given back).
    pub fn is_paid(self) -> bool {
        self == Self::Succeeded
    }
}

impl std::fmt::Display for ChargeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql<Text, Pg> for ChargeStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), &mut out.reborrow())
    }
}

impl FromSql<Text, Pg> for ChargeStatus {
    fn from_sql(bytes: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        let word = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Self::parse(&word).ok_or_else(|| format!("unknown charge status {word:?}").into())
    }
}

/// A stored charge. Amounts in minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = charges, check_for_backend(diesel::pg::Pg))]
pub struct Charge {
    /// Row id.
    pub id: i64,
    /// Who pays.
    pub customer_id: i64,
    /// The fix it pays for (one live charge per fix).
    pub fix_id: i64,
    /// How it collects.
    pub kind: ChargeKind,
    /// Minor units (cents).
    pub amount_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// Where it stands.
    pub status: ChargeStatus,
    /// The PaymentIntent, once known.
    pub stripe_payment_intent_id: Option<String>,
    /// The invoice item, once known.
    pub stripe_invoice_item_id: Option<String>,
    /// The invoice that paid an overage item.
    pub stripe_invoice_id: Option<String>,
    /// Why it failed (our words, for people; never the processor's).
    pub failure_message: Option<String>,
    /// Runs of the job that reached for the processor.
    pub attempts: i32,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The idempotency key of every creating processor call for charge
/// `charge_id`: `charge:<charge id>`, for the charge's whole life.
pub fn charge_idempotency_key(charge_id: i64) -> String {
    format!("charge:{charge_id}")
}

impl Charge {
    /// See [`charge_idempotency_key`].
    pub fn idempotency_key(&self) -> String {
        charge_idempotency_key(self.id)
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
    /// A live charge pays for it (just written with its job, or already
    /// there).
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

/// The fix's live charge (any status but `failed`), if any.
///
/// Errors: [`BillingError::Database`].
pub async fn live_charge_for_fix(
    conn: &mut AsyncPgConnection,
    fix_id: i64,
) -> Result<Option<Charge>, BillingError> {
    Ok(charges::table
        .filter(charges::fix_id.eq(fix_id))
        .filter(charges::status.ne(ChargeStatus::Failed))
        .select(Charge::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// For fix `fix_id` of `customer_id` that found no credit: writes its
/// charge and enqueues the `stripe.charge` job (dedupe key
/// `stripe.charge:<charge id>`), or refuses. Idempotent: a fix that already
/// has a live charge answers [`NoCreditOutcome::Charging`] with it. Call
/// inside the transaction that records the fix, with the customer's row
/// locked (the lock serialises the check and the insert; the partial unique
/// index on live charges backs it).
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
    if let Some(live) = live_charge_for_fix(conn, fix_id).await? {
        return Ok(NoCreditOutcome::Charging(live.id));
    }
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
        (ChargeKind::Overage, pricing.pro_overage_cents)
    } else if facts.payment_failed_at.is_some() {
        return Ok(NoCreditOutcome::Refused(PAYMENT_FAILED.into()));
    } else if facts.has_payment_method {
        (ChargeKind::Payg, pricing.payg_fix_cents)
    } else {
        return Ok(NoCreditOutcome::Refused(NO_WAY_TO_PAY.into()));
    };
    let charge_id: i64 = diesel::insert_into(charges::table)
        .values((
            charges::customer_id.eq(customer_id),
            charges::fix_id.eq(fix_id),
            charges::kind.eq(kind),
            charges::amount_cents.eq(amount),
            charges::currency.eq(&pricing.currency),
            charges::status.eq(ChargeStatus::Pending),
        ))
        .returning(charges::id)
        .get_result(conn)
        .await?;
    enqueue_charge_job(conn, charge_id, None).await?;
    Ok(NoCreditOutcome::Charging(charge_id))
}

/// The dedupe key of a charge's job: `stripe.charge:<id>`, and
/// `stripe.charge:<id>:sweep:<round>` for a re-queue by the sweeper.
fn charge_job_dedupe(charge_id: i64, sweep_round: Option<i64>) -> String {
    match sweep_round {
        None => format!("{KIND_STRIPE_CHARGE}:{charge_id}"),
        Some(n) => format!("{KIND_STRIPE_CHARGE}:{charge_id}:sweep:{n}"),
    }
}

async fn enqueue_charge_job(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    sweep_round: Option<i64>,
) -> Result<bool, BillingError> {
    let dedupe = charge_job_dedupe(charge_id, sweep_round);
    Ok(ChargeJob { charge_id }
        .enqueue(conn, Some(&dedupe))
        .await?
        .is_some())
}

/// Why fix `fix_id` is refused, if it is: `unpaid` with no live charge (see
/// [`NoCreditOutcome::Refused`]). The Action's adapters answer 402 with it.
///
/// Errors: [`BillingError::Database`].
pub async fn refusal_for_fix(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    fix_id: i64,
    billing_status: FixBillingStatus,
) -> Result<Option<&'static str>, BillingError> {
    if billing_status != FixBillingStatus::Unpaid {
        return Ok(None);
    }
    if live_charge_for_fix(conn, fix_id).await?.is_some() {
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

/// The charge whose overage invoice item is `invoice_item_id` (`ii_…`), if
/// any: how an `invoice.paid` finds the charges it pays.
///
/// Errors: [`BillingError::Database`].
pub async fn find_charge_by_invoice_item(
    conn: &mut AsyncPgConnection,
    invoice_item_id: &str,
) -> Result<Option<Charge>, BillingError> {
    Ok(charges::table
        .filter(charges::stripe_invoice_item_id.eq(invoice_item_id))
        .select(Charge::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The charge whose PaymentIntent is `payment_intent` (`pi_…`), if any.
///
/// Errors: [`BillingError::Database`].
pub async fn find_charge_by_payment_intent(
    conn: &mut AsyncPgConnection,
    payment_intent: &str,
) -> Result<Option<Charge>, BillingError> {
    Ok(charges::table
        .filter(charges::stripe_payment_intent_id.eq(payment_intent))
        .select(Charge::as_select())
        .first(conn)
        .await
        .optional()?)
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

/// How many of customer `customer_id`'s charges wait for the payment
/// processor ([`ChargeStatus::awaits_processor`]: `pending`), counted in
/// the database (the dashboard's "charges in progress").
///
/// Errors: [`BillingError::Database`].
pub async fn count_charges_in_progress(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<i64, BillingError> {
    Ok(charges::table
        .filter(charges::customer_id.eq(customer_id))
        .filter(charges::status.eq(ChargeStatus::Pending))
        .count()
        .get_result(conn)
        .await?)
}

/// Takes the worker's lease on a pending charge and counts the attempt:
/// `Some((charge, lease end))` when taken, `None` when the charge is not
/// pending or another worker holds it.
async fn take_lease(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
) -> Result<Option<(Charge, DateTime<Utc>)>, BillingError> {
    // Microseconds, as PostgreSQL keeps them (the release compares it).
    let until = (Utc::now() + chrono::Duration::seconds(CHARGE_LEASE_SECONDS)).trunc_subsecs(6);
    let charge = diesel::update(
        charges::table
            .find(charge_id)
            .filter(charges::status.eq(ChargeStatus::Pending))
            .filter(
                charges::processing_until
                    .is_null()
                    .or(charges::processing_until.lt(Utc::now())),
            ),
    )
    .set((
        charges::attempts.eq(charges::attempts + 1),
        charges::processing_until.eq(until),
        charges::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Charge::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    Ok(charge.map(|c| (c, until)))
}

/// Gives the lease back (only if it is still ours).
async fn release_lease(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    until: DateTime<Utc>,
) -> Result<(), BillingError> {
    diesel::update(
        charges::table
            .find(charge_id)
            .filter(charges::processing_until.eq(until)),
    )
    .set(charges::processing_until.eq(None::<DateTime<Utc>>))
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the processor's object id on a pending charge, before anything
/// else happens to it (so a crash after it is found on retry).
async fn store_processor_ids(
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

/// What one run of [`process_charge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeRun {
    /// The charge reached `status` in this run (`succeeded`, `invoiced`,
    /// `requires_action` or `failed`).
    Settled(ChargeStatus),
    /// Nothing to do: the charge is gone or no longer pending.
    NotPending,
    /// Still pending: run again later (the reason is for logs: an outage,
    /// another worker holding it, a misconfiguration, a payment still
    /// processing, no processor customer yet).
    RetryLater(String),
}

/// The job's work for charge `charge_id` (see the module docs): takes the
/// row's lease, finds the processor object an earlier attempt made or
/// creates it with key `charge:<id>`, and settles the charge. Pay as you
/// go: paid → `succeeded`; declined (or no card on file) → `failed`; the
/// bank asks the customer to authenticate → `requires_action` (with the
/// `charge_requires_action` email; never retried by the job); anything
/// else stays `pending`. Overage: the invoice item made →
/// `invoiced`.
///
/// `conn` must not be inside a transaction (each step commits on its own,
/// so what was learnt survives a crash).
///
/// Errors: [`BillingError::Database`]; processor failures are not errors
/// but [`ChargeRun::RetryLater`].
pub async fn process_charge(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    charge_id: i64,
) -> Result<ChargeRun, BillingError> {
    let charge = match find_charge(conn, charge_id).await {
        Ok(c) => c,
        Err(BillingError::NotFound(_)) => return Ok(ChargeRun::NotPending),
        Err(e) => return Err(e),
    };
    if !charge.status.awaits_processor() {
        return Ok(ChargeRun::NotPending);
    }
    let (customer, subscription): (Option<String>, Option<String>) = customers::table
        .find(charge.customer_id)
        .select((
            customers::stripe_customer_id,
            customers::stripe_subscription_id,
        ))
        .first(conn)
        .await?;
    let Some(customer) = customer else {
        return Ok(ChargeRun::RetryLater(
            "the processor's customer does not exist yet".into(),
        ));
    };
    let Some((charge, until)) = take_lease(conn, charge_id).await? else {
        let now = find_charge(conn, charge_id).await?;
        return Ok(if now.status.awaits_processor() {
            ChargeRun::RetryLater("another worker is charging it".into())
        } else {
            ChargeRun::NotPending
        });
    };
    let earlier_attempts = charge.attempts > 1;
    let result = if charge.kind == ChargeKind::Overage {
        overage(
            conn,
            processor,
            &charge,
            &customer,
            subscription,
            earlier_attempts,
        )
        .await
    } else {
        pay_as_you_go(
            conn,
            processor,
            pricing,
            links,
            &charge,
            &customer,
            earlier_attempts,
        )
        .await
    };
    // Given back whatever happened (a crash leaves it to expire).
    let released = release_lease(conn, charge_id, until).await;
    let run = result?;
    released?;
    if let ChargeRun::RetryLater(reason) = &run {
        tracing::warn!(
            charge_id,
            customer_id = charge.customer_id,
            reason,
            "charge stays pending"
        );
    }
    Ok(run)
}

/// Logs a processor failure at the level it deserves and turns it into a
/// retry.
fn retry_after(charge: &Charge, error: &ProcessorError) -> ChargeRun {
    match error {
        ProcessorError::Misconfigured(_) | ProcessorError::NotFound(_) => tracing::error!(
            charge_id = charge.id,
            %error,
            "the payment processor refused the charge request: check the configuration"
        ),
        _ => tracing::warn!(charge_id = charge.id, %error, "payment processor call failed"),
    }
    ChargeRun::RetryLater(error.to_string())
}

async fn overage(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
    charge: &Charge,
    customer: &str,
    subscription: Option<String>,
    earlier_attempts: bool,
) -> Result<ChargeRun, BillingError> {
    // An item an earlier attempt made (its answer lost) may already be on
    // an invoice, even a paid one whose `invoice.paid` found no charge
    // with the item's id: `billed_on` says which invoice.
    let mut billed_on: Option<String> = None;
    let existing = match &charge.stripe_invoice_item_id {
        Some(id) => Some(id.clone()),
        None if earlier_attempts => match processor.find_invoice_items(customer, charge.id).await {
            Ok(found) => found.into_iter().next().map(|i| {
                billed_on = i.invoice;
                i.id
            }),
            Err(e) => return Ok(retry_after(charge, &e)),
        },
        None => None,
    };
    let item_id = match existing {
        Some(id) => id,
        None => {
            let request = InvoiceItemRequest {
                charge_id: charge.id,
                customer: customer.to_owned(),
                subscription,
                amount_cents: charge.amount_cents,
                currency: charge.currency.clone(),
                description: format!(
                    "RSOLV fix beyond the plan's credits (fix {})",
                    charge.fix_id
                ),
                idempotency_key: charge.idempotency_key(),
            };
            match processor.create_invoice_item(&request).await {
                Ok(item) => item.id,
                Err(e) => return Ok(retry_after(charge, &e)),
            }
        }
    };
    let updated = diesel::update(
        charges::table
            .find(charge.id)
            .filter(charges::status.eq(ChargeStatus::Pending)),
    )
    .set((
        charges::status.eq(ChargeStatus::Invoiced),
        charges::stripe_invoice_item_id.eq(&item_id),
        charges::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    if updated != 1 {
        return Ok(ChargeRun::NotPending);
    }
    if let Some(invoice_id) = billed_on {
        // Its invoice may be paid already: then the charge is paid now
        // (a later `invoice.paid` would find it settled and change nothing).
        match processor.invoice(&invoice_id).await {
            Ok(invoice) if invoice.paid => {
                settle_invoiced_overage(conn, charge.id, &invoice.id).await?;
                return Ok(ChargeRun::Settled(ChargeStatus::Succeeded));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(charge_id = charge.id, invoice = %invoice_id, error = %e,
                    "could not read the overage item's invoice; its invoice.paid settles it");
            }
        }
    }
    Ok(ChargeRun::Settled(ChargeStatus::Invoiced))
}

/// Chooses, among the processor charges found for one of our charges, the
/// one that tells its outcome: a paid one, else one in flight, else any.
fn best_found(found: Vec<ProcessorCharge>) -> Option<ProcessorCharge> {
    let rank = |c: &ProcessorCharge| match c.status {
        ProcessorChargeStatus::Succeeded => 0,
        ProcessorChargeStatus::Processing => 1,
        ProcessorChargeStatus::RequiresAction => 2,
        _ => 3,
    };
    found.into_iter().min_by_key(rank)
}

async fn pay_as_you_go(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    charge: &Charge,
    customer: &str,
    earlier_attempts: bool,
) -> Result<ChargeRun, BillingError> {
    let found = match &charge.stripe_payment_intent_id {
        Some(id) => match processor.payment_intent(id).await {
            Ok(pi) => Some(pi),
            Err(e) => return Ok(retry_after(charge, &e)),
        },
        None if earlier_attempts => match processor.find_charges(customer, charge.id).await {
            Ok(found) => best_found(found),
            Err(e) => return Ok(retry_after(charge, &e)),
        },
        None => None,
    };
    let processed = match found {
        Some(pi) => pi,
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
                .first::<String>(conn)
                .await
                .optional()?;
            let Some(payment_method) = payment_method else {
                settle_failed_tx(
                    conn,
                    pricing,
                    links,
                    charge.id,
                    None,
                    Some("no_payment_method"),
                    None,
                )
                .await?;
                return Ok(ChargeRun::Settled(ChargeStatus::Failed));
            };
            let request = ChargeRequest {
                charge_id: charge.id,
                customer: customer.to_owned(),
                payment_method,
                amount_cents: charge.amount_cents,
                currency: charge.currency.clone(),
                idempotency_key: charge.idempotency_key(),
                metadata: BTreeMap::from([("rsolv_fix_id".to_owned(), charge.fix_id.to_string())]),
            };
            match processor.charge_off_session(&request).await {
                Ok(pi) => {
                    store_processor_ids(conn, charge.id, Some(&pi.id), None).await?;
                    pi
                }
                Err(ProcessorError::Declined { code, decline_code }) => {
                    settle_failed_tx(
                        conn,
                        pricing,
                        links,
                        charge.id,
                        None,
                        code.as_deref(),
                        decline_code.as_deref(),
                    )
                    .await?;
                    return Ok(ChargeRun::Settled(ChargeStatus::Failed));
                }
                Err(e) => return Ok(retry_after(charge, &e)),
            }
        }
    };
    match processed.status {
        ProcessorChargeStatus::Succeeded => {
            conn.transaction(async |conn| {
                settle_succeeded(conn, charge.id, Some(&processed.id), None).await
            })
            .await?;
            Ok(ChargeRun::Settled(ChargeStatus::Succeeded))
        }
        ProcessorChargeStatus::Declined { code, decline_code } => {
            settle_failed_tx(
                conn,
                pricing,
                links,
                charge.id,
                Some(&processed.id),
                code.as_deref(),
                decline_code.as_deref(),
            )
            .await?;
            Ok(ChargeRun::Settled(ChargeStatus::Failed))
        }
        ProcessorChargeStatus::Processing => Ok(ChargeRun::RetryLater(
            "the payment is still processing".into(),
        )),
        ProcessorChargeStatus::RequiresAction => {
            conn.transaction(async |conn| {
                settle_requires_action(conn, charge.id, &processed.id).await
            })
            .await?;
            Ok(ChargeRun::Settled(ChargeStatus::RequiresAction))
        }
        ProcessorChargeStatus::Canceled | ProcessorChargeStatus::Incomplete(_) => {
            tracing::error!(
                charge_id = charge.id,
                payment_intent = %processed.id,
                status = ?processed.status,
                "a charge's payment is neither paid nor declined: look at it"
            );
            Ok(ChargeRun::RetryLater(format!(
                "payment {} is {:?}",
                processed.id, processed.status
            )))
        }
    }
}

async fn settle_failed_tx(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    charge_id: i64,
    payment_intent: Option<&str>,
    code: Option<&str>,
    decline_code: Option<&str>,
) -> Result<(), BillingError> {
    conn.transaction(async |conn| {
        settle_failed(
            conn,
            pricing,
            links,
            charge_id,
            payment_intent,
            code,
            decline_code,
        )
        .await
    })
    .await
}

/// Books a paid charge: ledger +1 `purchase` (key `purchase:charge:<id>`)
/// and −1 `fix_consumed` (key `fix:<fix id>`), the fix `charged`, the
/// charge `succeeded` with the processor ids given.
async fn book_paid(
    conn: &mut AsyncPgConnection,
    charge: &Charge,
    payment_intent: Option<&str>,
    invoice_item: Option<&str>,
    invoice: Option<&str>,
) -> Result<(), BillingError> {
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
            charges::status.eq(ChargeStatus::Succeeded),
            charges::stripe_payment_intent_id
                .eq(payment_intent.or(charge.stripe_payment_intent_id.as_deref())),
            charges::stripe_invoice_item_id
                .eq(invoice_item.or(charge.stripe_invoice_item_id.as_deref())),
            charges::stripe_invoice_id.eq(invoice.or(charge.stripe_invoice_id.as_deref())),
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
    if charge.kind == ChargeKind::Payg {
        queue_charge_receipt(conn, charge).await?;
    }
    Ok(())
}

/// Queues the receipt of paid pay-as-you-go `charge` (key
/// `receipt:charge:<charge id>`) in the caller's transaction, the one that
/// books it paid: whichever of the job and the webhook settles the charge
/// queues it, and the key makes a replay queue nothing. Overage charges get
/// no receipt of their own: the paid invoice that carries them does.
async fn queue_charge_receipt(
    conn: &mut AsyncPgConnection,
    charge: &Charge,
) -> Result<(), BillingError> {
    let contact = CustomerContact::load(conn, charge.customer_id).await?;
    let to = contact.recipient();
    let amount =
        crate::server::billing::pricing::format_money(charge.amount_cents, &charge.currency);
    let description = charge_description(charge);
    let key = format!("receipt:charge:{}", charge.id);
    enqueue_email(
        conn,
        &charge_receipt(&to, &amount, &description, Utc::now(), key),
    )
    .await?;
    Ok(())
}

/// Settles a pay-as-you-go charge the processor accepted, once (a charge
/// neither `pending` nor `requires_action` is left alone): see
/// [`book_paid`]. One transaction (the caller's), under the customer's row
/// lock.
///
/// Errors: [`BillingError::Database`].
pub async fn settle_succeeded(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    payment_intent: Option<&str>,
    invoice_item: Option<&str>,
) -> Result<(), BillingError> {
    let Some(charge) = lock_charge(conn, charge_id).await? else {
        return Ok(());
    };
    if !charge.status.awaits_card_payment() {
        return Ok(());
    }
    book_paid(conn, &charge, payment_intent, invoice_item, None).await
}

/// What a processor's "payment succeeded" notice (Stripe's
/// `payment_intent.succeeded` webhook) says about one of our charges.
#[derive(Debug, Clone)]
pub struct PaidIntent<'a> {
    /// The PaymentIntent, `pi_…`.
    pub payment_intent: &'a str,
    /// Our charge id from its metadata (`rsolv_charge_id`), if it carries one.
    pub charge_id: Option<i64>,
    /// Its processor customer, `cus_…`.
    pub processor_customer: Option<&'a str>,
    /// Cents received.
    pub amount_received_cents: i64,
}

/// Settles the pay-as-you-go charge a succeeded PaymentIntent paid, as the
/// charge job does when it reads the same answer ([`settle_succeeded`]):
/// whichever comes first books it (ledger, fix `charged`, receipt), the
/// other changes nothing. The charge is found by its stored PaymentIntent
/// id, else by the metadata's charge id when the customer matches and the
/// charge has no other PaymentIntent; an amount other than the charge's is
/// logged and not booked. Returns whether it booked the charge now.
///
/// Errors: [`BillingError::Database`].
pub async fn settle_paid_intent(
    conn: &mut AsyncPgConnection,
    paid: &PaidIntent<'_>,
) -> Result<bool, BillingError> {
    let by_intent: Option<Charge> = charges::table
        .filter(charges::stripe_payment_intent_id.eq(paid.payment_intent))
        .select(Charge::as_select())
        .first(conn)
        .await
        .optional()?;
    let charge = match (by_intent, paid.charge_id, paid.processor_customer) {
        (Some(c), _, _) => c,
        (None, Some(id), Some(cus)) => {
            let found: Option<(Charge, Option<String>)> = charges::table
                .inner_join(customers::table)
                .filter(charges::id.eq(id))
                .filter(charges::stripe_payment_intent_id.is_null())
                .select((Charge::as_select(), customers::stripe_customer_id))
                .first(conn)
                .await
                .optional()?;
            match found {
                Some((c, Some(known))) if known == cus => c,
                _ => return Ok(false),
            }
        }
        _ => return Ok(false),
    };
    if charge.kind != ChargeKind::Payg || !charge.status.awaits_card_payment() {
        return Ok(false);
    }
    if charge.amount_cents != paid.amount_received_cents {
        tracing::error!(
            charge_id = charge.id,
            payment_intent = paid.payment_intent,
            expected = charge.amount_cents,
            received = paid.amount_received_cents,
            "a PaymentIntent paid another amount than its charge: look at it"
        );
        return Ok(false);
    }
    settle_succeeded(conn, charge.id, Some(paid.payment_intent), None).await?;
    Ok(find_charge(conn, charge.id).await?.status == ChargeStatus::Succeeded)
}

/// Settles an overage charge whose invoice `invoice_id` (`in_…`) was paid:
/// `invoiced` (or still `pending` when the invoice beat the job) →
/// `succeeded`, with the ledger entries and the fix `charged` as for any
/// paid charge. Idempotent: a charge already settled (or failed, refunded)
/// is left alone and `Ok(false)` is answered. Opens its own transaction
/// (nested as a savepoint inside the caller's). For the `invoice.paid`
/// handler: find the charges with [`find_charge_by_invoice_item`] from the
/// invoice's line items.
///
/// Errors: [`BillingError::NotFound`] for an unknown charge;
/// [`BillingError::Database`].
pub async fn settle_invoiced_overage(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    invoice_id: &str,
) -> Result<bool, BillingError> {
    conn.transaction(async |conn| {
        let charge = lock_charge(conn, charge_id)
            .await?
            .ok_or(BillingError::NotFound("charge"))?;
        if charge.kind != ChargeKind::Overage || !charge.status.can_settle_paid() {
            return Ok(false);
        }
        book_paid(conn, &charge, None, None, Some(invoice_id)).await?;
        Ok(true)
    })
    .await
}

/// Records a charge the processor declined, once (a charge neither
/// `pending` nor `requires_action` is left alone; a failed authentication
/// is a decline): the charge `failed` for good, with our words
/// for why ([`decline_advice`], never the processor's message); for a
/// pay-as-you-go charge the customer's `payment_failed_at` is set and the
/// `charge_declined` email queued (key `charge_declined:<charge id>`) in
/// the same transaction (the caller's). The fix stays `unpaid` unless
/// something else can pay for it now
/// ([`crate::server::billing::fixes::settle_unpaid_fixes`]): a credit
/// granted while the charge was on its way, or Pro started meanwhile (an
/// overage charge). Never a new card charge: `payment_failed_at`, just set,
/// refuses it until the customer adds a working card.
///
/// Errors: [`BillingError::Database`].
pub async fn settle_failed(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    charge_id: i64,
    payment_intent: Option<&str>,
    code: Option<&str>,
    decline_code: Option<&str>,
) -> Result<(), BillingError> {
    let Some(charge) = lock_charge(conn, charge_id).await? else {
        return Ok(());
    };
    if !charge.status.awaits_card_payment() {
        return Ok(());
    }
    let advice = decline_advice(code, decline_code);
    diesel::update(charges::table.find(charge.id))
        .set((
            charges::status.eq(ChargeStatus::Failed),
            charges::failure_message.eq(advice),
            charges::stripe_payment_intent_id
                .eq(payment_intent.or(charge.stripe_payment_intent_id.as_deref())),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    tracing::info!(
        charge_id,
        customer_id = charge.customer_id,
        code,
        decline_code,
        "card declined"
    );
    if charge.kind == ChargeKind::Payg {
        diesel::update(customers::table.find(charge.customer_id))
            .set(customers::payment_failed_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        let contact = CustomerContact::load(conn, charge.customer_id).await?;
        let to = contact.recipient();
        let amount =
            crate::server::billing::pricing::format_money(charge.amount_cents, &charge.currency);
        let key = format!("charge_declined:{}", charge.id);
        enqueue_email(conn, &charge_declined(links, &to, &amount, advice, key)).await?;
    }
    // Credits granted, or Pro started, while the charge was on its way pay
    // for the fix now (issue 9: billed as soon as the customer can pay).
    crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, charge.customer_id).await?;
    Ok(())
}

/// Records that the card's bank asks the customer to authenticate
/// pay-as-you-go charge `charge_id` (3-D Secure / SCA), once (a charge no
/// longer `pending` is left alone; returns whether it changed it now):
/// the charge becomes `requires_action` with its PaymentIntent
/// `payment_intent` kept, and the `charge_requires_action` email (key
/// `charge_requires_action:<charge id>`, so once per charge) is queued in
/// the same transaction (the caller's), linking
/// `/billing/authenticate?charge=<id>` — never the client secret.
///
/// Not a decline (Stripe: the customer must come back on-session): the
/// customer is not marked (`payment_failed_at` stays clear, so further
/// fixes are still charged: banks ask for authentication now and then and
/// the next payment may well go through), no `charge_declined` email, and
/// the job does not retry it (the same PaymentIntent is completed by the
/// customer: [`crate::server::billing::authentication`]). The fix keeps it
/// as its live charge and stays `unpaid` until it is paid.
///
/// Errors: [`BillingError::Database`].
pub async fn settle_requires_action(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
    payment_intent: &str,
) -> Result<bool, BillingError> {
    let Some(charge) = lock_charge(conn, charge_id).await? else {
        return Ok(false);
    };
    if charge.status != ChargeStatus::Pending || charge.kind != ChargeKind::Payg {
        return Ok(false);
    }
    diesel::update(charges::table.find(charge.id))
        .set((
            charges::status.eq(ChargeStatus::RequiresAction),
            charges::stripe_payment_intent_id.eq(payment_intent),
            charges::failure_message.eq(None::<String>),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    tracing::info!(
        charge_id,
        customer_id = charge.customer_id,
        "card payment needs the customer's authentication"
    );
    let contact = CustomerContact::load(conn, charge.customer_id).await?;
    let to = contact.recipient();
    let amount =
        crate::server::billing::pricing::format_money(charge.amount_cents, &charge.currency);
    let key = format!("charge_requires_action:{}", charge.id);
    enqueue_email(
        conn,
        &charge_requires_action(&to, charge.id, &amount, &charge_description(&charge), key),
    )
    .await?;
    Ok(true)
}

/// What a pay-as-you-go charge pays for, in our words (receipts, the
/// authentication email and page): `RSOLV fix <fix id> (pay as you go)`.
pub fn charge_description(charge: &Charge) -> String {
    format!("RSOLV fix {} (pay as you go)", charge.fix_id)
}

/// The customer's charges waiting for their authentication
/// (`requires_action`), oldest first.
///
/// Errors: [`BillingError::Database`].
pub async fn charges_awaiting_customer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Vec<Charge>, BillingError> {
    Ok(charges::table
        .filter(charges::customer_id.eq(customer_id))
        .filter(charges::status.eq(ChargeStatus::RequiresAction))
        .order(charges::id.asc())
        .select(Charge::as_select())
        .load(conn)
        .await?)
}

/// Locks the customer, then the charge; `None` for an unknown charge.
async fn lock_charge(
    conn: &mut AsyncPgConnection,
    charge_id: i64,
) -> Result<Option<Charge>, BillingError> {
    let Some(customer_id) = charges::table
        .find(charge_id)
        .select(charges::customer_id)
        .first::<i64>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    customers::table
        .find(customer_id)
        .select(customers::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .await?;
    Ok(Some(
        charges::table
            .find(charge_id)
            .select(Charge::as_select())
            .for_update()
            .first(conn)
            .await?,
    ))
}

/// After the customer added a working card: clears `payment_failed_at` (a
/// new card is a new chance) and settles every unpaid fix without a live
/// charge ([`crate::server::billing::fixes::settle_unpaid_fixes`]): a credit
/// first, else a NEW charge (new id, new idempotency key, new job) through
/// [`charge_for_fix_in_tx`]; declined charges stay `failed`. Returns how
/// many fixes were paid or given a charge. Call in the transaction that
/// records the new card.
///
/// Errors: [`BillingError::Database`].
pub async fn retry_failed_charges(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<usize, BillingError> {
    diesel::update(customers::table.find(customer_id))
        .set(customers::payment_failed_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await?;
    crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, customer_id).await
}

/// Re-queues the job of every charge stuck `pending` for more than
/// `older_than_minutes` minutes (by `updated_at`) with no `stripe.charge`
/// job queued or running for it (its job died, or was lost). The new job's
/// dedupe key is `stripe.charge:<id>:sweep:<round>`, so a sweep round
/// enqueues at most one job per charge. Returns the ids re-queued. Run
/// periodically by `serve` (see `server::stripe::charges::spawn_sweeper`).
///
/// Errors: [`BillingError::Database`].
pub async fn sweep_stuck_charges(
    conn: &mut AsyncPgConnection,
    older_than_minutes: i64,
    round: i64,
) -> Result<Vec<i64>, BillingError> {
    let cutoff = Utc::now() - chrono::Duration::minutes(older_than_minutes);
    let stuck: Vec<i64> = charges::table
        .filter(charges::status.eq(ChargeStatus::Pending))
        .filter(charges::updated_at.lt(cutoff))
        .order(charges::id.asc())
        .select(charges::id)
        .load(conn)
        .await?;
    let mut requeued = Vec::new();
    for id in stuck {
        let live_job: bool = diesel::select(diesel::dsl::exists(
            jobs::table
                .filter(jobs::kind.eq(KIND_STRIPE_CHARGE))
                .filter(jobs::status.eq_any(["queued", "running"]))
                .filter(
                    jobs::payload
                        .retrieve_as_text("charge_id")
                        .eq(id.to_string()),
                ),
        ))
        .get_result(conn)
        .await?;
        if !live_job && enqueue_charge_job(conn, id, Some(round)).await? {
            tracing::warn!(charge_id = id, round, "stuck pending charge re-queued");
            requeued.push(id);
        }
    }
    Ok(requeued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_rules_hold() {
        for status in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ChargeStatus::parse("declined"), None);
        assert!(!ChargeStatus::Failed.is_live());
        assert!(ChargeStatus::Invoiced.is_live() && ChargeStatus::Refunded.is_live());
        assert!(ChargeStatus::Pending.awaits_processor());
        assert!(!ChargeStatus::Invoiced.awaits_processor());
        assert!(ChargeStatus::Invoiced.can_settle_paid());
        assert!(!ChargeStatus::Failed.can_settle_paid());
        assert!(ChargeStatus::Succeeded.is_paid() && !ChargeStatus::Refunded.is_paid());
        // Waiting for the customer's authentication: live, not the job's,
        // still payable (and still declinable).
        let action = ChargeStatus::RequiresAction;
        assert!(action.is_live() && !action.awaits_processor());
        assert!(action.can_settle_paid() && action.awaits_card_payment());
        assert!(action.awaits_customer() && !ChargeStatus::Pending.awaits_customer());
        assert!(!ChargeStatus::Invoiced.awaits_card_payment());
    }

    #[test]
    fn the_key_depends_on_the_charge_alone() {
        assert_eq!(charge_idempotency_key(42), "charge:42");
        assert_eq!(charge_job_dedupe(42, None), "stripe.charge:42");
        assert_eq!(charge_job_dedupe(42, Some(3)), "stripe.charge:42:sweep:3");
    }
}
