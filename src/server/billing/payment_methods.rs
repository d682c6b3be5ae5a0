//! Cards on file: adding one through a SetupIntent (with the customer's
//! recorded consent), listing, choosing the default, removing.
//!
//! Every processor call goes through the [`PaymentProcessor`] port.
//!
//! Adding: [`begin_card_setup`] creates a SetupIntent whose client secret
//! Stripe.js confirms in the browser with the card element; then
//! [`add_card`] checks the SetupIntent at the processor (ours, succeeded),
//! attaches its card to the processor's customer explicitly (localstripe's
//! confirm does not), makes it the default (the card just added is the one
//! charged from now on, which is also how a declined card is replaced), and
//! in one transaction records the consent (text, time, IP), the card, the
//! one-time billing bonus (via [`record_payment_method`]) and gives the
//! fixes a declined card left unpaid new charges
//! ([`retry_failed_charges`]).

use crate::server::billing::charges::retry_failed_charges;
use crate::server::billing::customers::find_customer;
use crate::server::billing::error::processor_error;
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::plan::{change_plan, PlanChange};
use crate::server::billing::ports::{
    PaymentProcessor, ProcessorError, SetupIntentSnapshot, SetupStatus,
};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{
    customers, payment_method_consents, stripe_payment_methods, users,
};
use crate::types::values::{LedgerKind, ParseError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The consent text shown next to the checkbox of the card form; stored
/// with every card added.
pub const CONSENT_TEXT: &str =
    "I authorise RSOLV to save this card and charge it for fixes beyond my \
     credits ($29.00 per fix on pay as you go) and for my subscription, until I remove it.";

/// A card on file.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = stripe_payment_methods, check_for_backend(diesel::pg::Pg))]
pub struct CardRow {
    /// `pm_…`.
    pub id: String,
    /// `visa`, `mastercard`, … (if Stripe said).
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Expiry month.
    pub exp_month: Option<i32>,
    /// Expiry year.
    pub exp_year: Option<i32>,
    /// When we learnt of it last.
    pub updated_at: DateTime<Utc>,
}

/// What the customer agreed to when adding a card.
#[derive(Debug, Clone)]
pub struct Consent {
    /// Whether the box was ticked.
    pub given: bool,
    /// The signed-in user.
    pub user_id: Option<i64>,
    /// Client address.
    pub ip: Option<String>,
    /// Browser.
    pub user_agent: Option<String>,
}

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
}

/// The customer's Stripe Customer id.
///
/// Errors: [`BillingError::Invalid`] while it is being created.
pub async fn stripe_customer_id(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<String, BillingError> {
    find_customer(conn, customer_id)
        .await?
        .stripe_customer_id
        .ok_or_else(|| {
            invalid("your billing account is being set up; please try again in a minute")
        })
}

/// Creates the SetupIntent for the card form (idempotency key
/// `setup_intent:<customer id>:<unix ms>`: a SetupIntent moves no money and
/// each form load may have its own).
///
/// Errors: [`BillingError::Invalid`] while the Stripe Customer does not
/// exist yet or the processor refuses; [`BillingError::Pool`] when it is
/// unreachable (see [`processor_error`]).
pub async fn begin_card_setup(
    processor: &dyn PaymentProcessor,
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<SetupIntentSnapshot, BillingError> {
    ensure_verified_owner(conn, customer_id).await?;
    let cus = stripe_customer_id(conn, customer_id).await?;
    let key = format!(
        "setup_intent:{customer_id}:{}",
        Utc::now().timestamp_millis()
    );
    processor
        .create_setup_intent(&cus, customer_id, &key)
        .await
        .map_err(processor_error)
}

/// What a customer whose owner has not proved the email is told when adding
/// a card.
pub const UNVERIFIED_OWNER_MESSAGE: &str = "confirm your email before adding a card: follow the link in the email we sent you, or ask for a new link on the forgot-password page (/forgot-password)";

/// A card can be added only by a verified owner (issue item 5): the
/// customer's owner user (role `owner`, the first user of a customer) must
/// have proved the email. An account provisioned with someone else's
/// address (or a placeholder, with no owner) cannot take a card.
///
/// Errors: [`BillingError::Invalid`] with [`UNVERIFIED_OWNER_MESSAGE`];
/// [`BillingError::Database`].
pub async fn ensure_verified_owner(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(), BillingError> {
    let verified: bool = diesel::select(diesel::dsl::exists(
        users::table
            .filter(users::customer_id.eq(customer_id))
            .filter(users::role.eq("owner"))
            .filter(users::email_confirmed_at.is_not_null()),
    ))
    .get_result(conn)
    .await?;
    if verified {
        Ok(())
    } else {
        Err(invalid(UNVERIFIED_OWNER_MESSAGE))
    }
}

/// Records the card set up by SetupIntent `setup_intent_id` (see the module
/// docs). Returns the card.
///
/// Errors: [`BillingError::Invalid`] without consent, before the owner
/// proved the email ([`ensure_verified_owner`]), for a SetupIntent
/// that is not this customer's or not succeeded, or a declined card;
/// [`BillingError::Pool`] when Stripe is unreachable.
pub async fn add_card(
    processor: &dyn PaymentProcessor,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    setup_intent_id: &str,
    consent: &Consent,
) -> Result<CardRow, BillingError> {
    if !consent.given {
        return Err(invalid(
            "please tick the box to authorise charges to this card",
        ));
    }
    ensure_verified_owner(conn, customer_id).await?;
    let cus = stripe_customer_id(conn, customer_id).await?;
    let intent = match processor.setup_intent(setup_intent_id).await {
        Err(ProcessorError::NotFound(_)) => return Err(BillingError::NotFound("setup intent")),
        other => other.map_err(processor_error)?,
    };
    if intent.customer.as_deref() != Some(cus.as_str()) {
        return Err(BillingError::NotFound("setup intent"));
    }
    let Some(pm_id) = intent.payment_method.clone() else {
        return Err(invalid("the card was not confirmed; please enter it again"));
    };
    if let SetupStatus::Other(status) = &intent.status {
        return Err(invalid(format!(
            "the card could not be set up ({})",
            status.replace('_', " ")
        )));
    }
    let card = processor
        .attach_payment_method(&pm_id, &cus)
        .await
        .map_err(processor_error)?;
    // The card just added is the one used from now on (also the way to
    // replace a card that was declined).
    let make_default = true;
    processor
        .set_default_payment_method(&cus, &card.id)
        .await
        .map_err(processor_error)?;
    let pm = &card;
    let now = Utc::now();
    conn.transaction(async |conn| {
        customers::table
            .find(customer_id)
            .select(customers::id)
            .for_no_key_update()
            .first::<i64>(conn)
            .await?;
        diesel::insert_into(payment_method_consents::table)
            .values((
                payment_method_consents::customer_id.eq(customer_id),
                payment_method_consents::user_id.eq(consent.user_id),
                payment_method_consents::payment_method_id.eq(&pm.id),
                payment_method_consents::setup_intent_id.eq(setup_intent_id),
                payment_method_consents::consent_text.eq(CONSENT_TEXT),
                payment_method_consents::ip.eq(consent.ip.as_deref()),
                payment_method_consents::user_agent.eq(consent.user_agent.as_deref()),
            ))
            .on_conflict(payment_method_consents::setup_intent_id)
            .do_nothing()
            .execute(conn)
            .await?;
        record_payment_method(conn, pricing, customer_id, &pm.id, true, now).await?;
        diesel::update(stripe_payment_methods::table.find(&pm.id))
            .set((
                stripe_payment_methods::brand.eq(card.brand.as_deref()),
                stripe_payment_methods::last4.eq(card.last4.as_deref()),
                stripe_payment_methods::exp_month.eq(card.exp_month),
                stripe_payment_methods::exp_year.eq(card.exp_year),
            ))
            .execute(conn)
            .await?;
        if make_default {
            mark_default(conn, customer_id, Some(&pm.id)).await?;
        }
        let settled = retry_failed_charges(conn, pricing, customer_id).await?;
        if settled > 0 {
            tracing::info!(customer_id, settled, "unpaid fixes billed after a new card");
        }
        Ok::<_, BillingError>(())
    })
    .await?;
    attached_card(conn, customer_id, &pm.id)
        .await?
        .ok_or(BillingError::NotFound("payment method"))
}

async fn attached_card(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    id: &str,
) -> Result<Option<CardRow>, BillingError> {
    Ok(stripe_payment_methods::table
        .filter(stripe_payment_methods::id.eq(id))
        .filter(stripe_payment_methods::customer_id.eq(customer_id))
        .filter(stripe_payment_methods::attached.eq(true))
        .select(CardRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Makes `payment_method_id` the customer's only default card (`None`:
/// no default).
async fn mark_default(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    payment_method_id: Option<&str>,
) -> Result<(), BillingError> {
    diesel::update(
        stripe_payment_methods::table
            .filter(stripe_payment_methods::customer_id.eq(customer_id))
            .filter(stripe_payment_methods::is_default.eq(true)),
    )
    .set(stripe_payment_methods::is_default.eq(false))
    .execute(conn)
    .await?;
    if let Some(id) = payment_method_id {
        diesel::update(
            stripe_payment_methods::table
                .filter(stripe_payment_methods::customer_id.eq(customer_id))
                .filter(stripe_payment_methods::id.eq(id)),
        )
        .set(stripe_payment_methods::is_default.eq(true))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// The customer's attached cards, oldest first, and the default's id.
///
/// Errors: [`BillingError::Database`].
pub async fn list_cards(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(Vec<CardRow>, Option<String>), BillingError> {
    let cards: Vec<(CardRow, bool)> = stripe_payment_methods::table
        .filter(stripe_payment_methods::customer_id.eq(customer_id))
        .filter(stripe_payment_methods::attached.eq(true))
        .order((
            stripe_payment_methods::last_event_at.asc(),
            stripe_payment_methods::id.asc(),
        ))
        .select((CardRow::as_select(), stripe_payment_methods::is_default))
        .load(conn)
        .await?;
    let default = cards.iter().find(|(_, d)| *d).map(|(c, _)| c.id.clone());
    Ok((cards.into_iter().map(|(c, _)| c).collect(), default))
}

/// Makes card `payment_method_id` the default (on Stripe, then here).
///
/// Errors: [`BillingError::NotFound`] when it is not an attached card of
/// this customer; processor failures as in [`processor_error`].
pub async fn set_default_card(
    processor: &dyn PaymentProcessor,
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    payment_method_id: &str,
) -> Result<(), BillingError> {
    attached_card(conn, customer_id, payment_method_id)
        .await?
        .ok_or(BillingError::NotFound("payment method"))?;
    let cus = stripe_customer_id(conn, customer_id).await?;
    processor
        .set_default_payment_method(&cus, payment_method_id)
        .await
        .map_err(processor_error)?;
    conn.transaction(async |conn| mark_default(conn, customer_id, Some(payment_method_id)).await)
        .await
}

/// Removes card `payment_method_id`: detaches it on Stripe and records it;
/// when it was the default, another card (if any) becomes the default.
/// The last card cannot be removed while a subscription needs it (an open
/// one, `SubscriptionStatus::is_open`, not ending at the period end).
///
/// Errors: [`BillingError::NotFound`] when it is not an attached card of
/// this customer; [`BillingError::Invalid`] for the last card of a
/// subscription; processor failures as in [`processor_error`].
pub async fn remove_card(
    processor: &dyn PaymentProcessor,
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    payment_method_id: &str,
) -> Result<(), BillingError> {
    attached_card(conn, customer_id, payment_method_id)
        .await?
        .ok_or(BillingError::NotFound("payment method"))?;
    let customer = find_customer(conn, customer_id).await?;
    let (cards, default) = list_cards(conn, customer_id).await?;
    let cancel_at_period_end =
        crate::server::billing::subscriptions::ends_at_period_end(conn, customer_id).await?;
    let subscription_needs_card = customer
        .subscription_status
        .is_some_and(crate::types::values::SubscriptionStatus::is_open)
        && !cancel_at_period_end;
    if cards.len() <= 1 && subscription_needs_card {
        return Err(invalid(
            "this is the card paying for your Pro subscription: add another card first, or cancel the subscription",
        ));
    }
    let cus = stripe_customer_id(conn, customer_id).await?;
    let replacement = cards
        .iter()
        .rev()
        .find(|c| c.id != payment_method_id)
        .map(|c| c.id.clone());
    let was_default = default.as_deref() == Some(payment_method_id);
    if was_default {
        if let Some(next) = &replacement {
            processor
                .set_default_payment_method(&cus, next)
                .await
                .map_err(processor_error)?;
        }
    }
    // Already detached at the processor counts as done (its implementation
    // says so).
    processor
        .detach_payment_method(payment_method_id)
        .await
        .map_err(processor_error)?;
    let now = Utc::now();
    conn.transaction(async |conn| {
        customers::table
            .find(customer_id)
            .select(customers::id)
            .for_no_key_update()
            .first::<i64>(conn)
            .await?;
        record_payment_method(conn, pricing, customer_id, payment_method_id, false, now).await?;
        if was_default {
            mark_default(conn, customer_id, replacement.as_deref()).await?;
        }
        Ok::<_, BillingError>(())
    })
    .await
}

/// The consents recorded for the customer's cards, newest first:
/// (payment method, text, when, ip).
///
/// Errors: [`BillingError::Database`].
pub async fn list_consents(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Vec<(String, String, DateTime<Utc>, Option<String>)>, BillingError> {
    Ok(payment_method_consents::table
        .filter(payment_method_consents::customer_id.eq(customer_id))
        .order(payment_method_consents::id.desc())
        .select((
            payment_method_consents::payment_method_id,
            payment_method_consents::consent_text,
            payment_method_consents::created_at,
            payment_method_consents::ip,
        ))
        .load(conn)
        .await?)
}

/// Records that Stripe payment method `payment_method_id` of our customer
/// `customer_id` was attached (`attached = true`) or detached at `at` (the
/// Stripe event's time), unless a newer event about it was already applied
/// (at the same second, a detach wins). Then derives
/// `customers.has_payment_method` (any attached method) and the plan (trial
/// ↔ payg; Pro is left alone; through `billing::plan::change_plan`), and on a first payment method grants the
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
    change_plan(
        conn,
        customer_id,
        &PlanChange::PaymentMethod { has_payment_method },
    )
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
