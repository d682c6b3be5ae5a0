//! Customers and their provisioning.

use crate::server::billing::error::is_unique_violation;
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::notifications::enqueue_email;
use crate::server::billing::notifications::{welcome, EmailLinks, Recipient};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::customers;
use crate::server::disposable_email::{is_disposable, DISPOSABLE_EMAIL_MESSAGE};
use crate::types::values::{
    CustomerName, CustomerStatus, Email, LedgerKind, ParseError, Plan, Source, SubscriptionStatus,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// A customer row. `credit_balance` is in credits and always equals the sum
/// of the customer's ledger entries.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg))]
pub struct Customer {
    /// Row id.
    pub id: i64,
    /// Email as entered; unique case-insensitively.
    pub email: String,
    /// Display name.
    pub name: String,
    /// A [`Source`] spelling.
    pub source: String,
    /// The plan (written only by [`crate::server::billing::plan::change_plan`]).
    pub plan: Plan,
    /// A [`CustomerStatus`] spelling.
    pub status: String,
    /// Cached balance in credits (never negative).
    pub credit_balance: i64,
    /// Stripe's `cus_…` id once the Stripe Customer exists.
    pub stripe_customer_id: Option<String>,
    /// Stripe's subscription status if the customer has (had) a subscription.
    pub subscription_status: Option<SubscriptionStatus>,
    /// Whether a payment method is on file (pay-as-you-go possible).
    pub has_payment_method: bool,
    /// End of the current paid period, if subscribed.
    pub current_period_end: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The current (or last) Stripe Subscription, `sub_…`.
    pub stripe_subscription_id: Option<String>,
    /// Stripe time of the subscription state applied last.
    pub subscription_updated_at: Option<DateTime<Utc>>,
    /// When a pay-as-you-go card charge was declined, until the failed
    /// charges are paid (fixes beyond the credits are refused meanwhile).
    pub payment_failed_at: Option<DateTime<Utc>>,
    /// When a dispute (chargeback) was last opened against one of the
    /// customer's charges (`charge.dispute.created`); shown to admins.
    pub disputed_at: Option<DateTime<Utc>>,
}

impl Customer {
    /// The parsed status (the database CHECK guarantees a known value;
    /// anything else is treated as suspended, the safe side).
    pub fn status(&self) -> CustomerStatus {
        CustomerStatus::parse(&self.status).unwrap_or(CustomerStatus::Suspended)
    }

    /// Whether a Stripe subscription currently pays for fixes
    /// ([`SubscriptionStatus::counts_as_pro`]).
    pub fn has_live_subscription(&self) -> bool {
        crate::server::billing::plan::has_pro_subscription(self)
    }

    /// Whether the Action may run fixes for this customer now; see
    /// [`crate::server::billing::plan::can_use_service`].
    pub fn can_use_service(&self) -> bool {
        crate::server::billing::plan::can_use_service(self)
    }
}

/// What provisioning needs: parsed at the edge.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// Email (unique case-insensitively).
    pub email: Email,
    /// Display name.
    pub name: CustomerName,
    /// Where the signup came from.
    pub source: Source,
}

/// A provisioned customer, without an API key yet.
#[derive(Debug)]
pub struct Provisioned {
    /// The customer after the signup bonus.
    pub customer: Customer,
}

/// Provisions a customer in one transaction: the customer row (plan
/// `trial`) and the signup bonus of
/// `pricing.trial_credits` credits (ledger kind `signup_bonus`, idempotency
/// key `signup_bonus`) and the welcome email queued in the outbox
/// (idempotency key `welcome:<customer id>`, links from `links`). Nothing is
/// written if any step fails.
///
/// No API key is created here: anyone can provision an account with any
/// address, so the first key is issued to the owner when they first prove
/// the email, and shown once then (`api_keys::issue_key_at_first_proof`,
/// issue 12 item 5: no answer tells whether an address was taken, and no
/// key exists that a stranger could have kept).
///
/// The same transaction enqueues the `stripe.create_customer` job, which
/// creates the Stripe Customer (idempotency key `customer:create:<id>`)
/// once this has committed; provisioning never waits for Stripe.
///
/// Errors: [`BillingError::Invalid`] with
/// [`DISPOSABLE_EMAIL_MESSAGE`] for an address at a disposable email
/// provider (nothing is written); [`BillingError::EmailTaken`] when the
/// email exists (any case); [`BillingError::Database`] otherwise.
pub async fn provision_customer(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    new: &NewCustomer,
    links: &EmailLinks,
) -> Result<Provisioned, BillingError> {
    if is_disposable(&new.email) {
        return Err(BillingError::Invalid(ParseError(
            DISPOSABLE_EMAIL_MESSAGE.to_owned(),
        )));
    }
    let trial_credits = pricing.trial_credits;
    conn.transaction(async |conn| {
        let inserted = diesel::insert_into(customers::table)
            .values((
                customers::email.eq(new.email.as_str()),
                customers::name.eq(new.name.as_str()),
                customers::source.eq(new.source.as_str()),
                customers::plan.eq(Plan::Trial),
            ))
            .returning(customers::id)
            .get_result::<i64>(conn)
            .await;
        let customer_id = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Err(BillingError::EmailTaken),
            Err(e) => return Err(e.into()),
        };
        if trial_credits > 0 {
            append_entry(
                conn,
                NewEntry {
                    customer_id,
                    amount: trial_credits,
                    kind: LedgerKind::SignupBonus,
                    reference: None,
                    idempotency_key: "signup_bonus",
                },
            )
            .await?;
        }
        crate::server::billing::work::enqueue_create_customer(conn, customer_id).await?;
        let customer = find_customer(conn, customer_id).await?;
        let to = Recipient {
            customer_id: Some(customer_id),
            email: &customer.email,
            name: &customer.name,
        };
        enqueue_email(conn, &welcome(links, &to, format!("welcome:{customer_id}"))).await?;
        Ok(Provisioned { customer })
    })
    .await
}

/// Reads one customer.
///
/// Errors: [`BillingError::NotFound`] when there is none with this id.
pub async fn find_customer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Customer, BillingError> {
    customers::table
        .find(customer_id)
        .select(Customer::as_select())
        .first(conn)
        .await
        .map_err(|e| match e {
            DieselError::NotFound => BillingError::NotFound("customer"),
            other => other.into(),
        })
}
