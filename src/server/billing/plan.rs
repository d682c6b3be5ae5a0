//! Account state: the customer's plan and Stripe subscription state.
//!
//! Issue 9: "the plan is changed in one place". [`change_plan`] is the only
//! writer of `customers.plan`, `subscription_status`,
//! `stripe_subscription_id`, `current_period_end`, `subscription_updated_at`
//! and `has_payment_method` after provisioning; Stripe webhooks, our own
//! Stripe calls and GitHub Marketplace deliveries all describe what happened
//! as a [`PlanChange`] and call it. [`can_use_service`] is the one rule for
//! "may the Action run fixes for this customer now".

use crate::server::billing::customers::Customer;
use crate::server::billing::BillingError;
use crate::server::db::schema::customers;
use crate::types::values::{CustomerStatus, Plan, SubscriptionStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The Stripe subscription state to record (a domain value: the Stripe
/// adapter builds it from a re-read Subscription or from an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState<'a> {
    /// `sub_…`.
    pub subscription_id: &'a str,
    /// Its status now.
    pub status: SubscriptionStatus,
    /// End of its current period, if known.
    pub current_period_end: Option<DateTime<Utc>>,
    /// When this state was observed (our clock for a re-read, Stripe's
    /// event time for an event's own object); stored in
    /// `subscription_updated_at`.
    pub observed_at: DateTime<Utc>,
}

/// What changed about the customer's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanChange<'a> {
    /// A Stripe subscription's state: Pro while
    /// [`SubscriptionStatus::counts_as_pro`], otherwise the fallback plan.
    Subscription(SubscriptionState<'a>),
    /// Whether a payment method is on file now: trial ↔ pay as you go;
    /// Pro stays Pro.
    PaymentMethod {
        /// Any attached payment method.
        has_payment_method: bool,
    },
    /// GitHub Marketplace set this plan. A Stripe subscription that counts
    /// as Pro keeps the customer on Pro (it is paid through Stripe).
    Marketplace(Plan),
    /// The GitHub Marketplace purchase ended: the fallback plan, unless a
    /// Stripe subscription counts as Pro.
    MarketplaceEnded,
}

/// The plan of a customer without a subscription that counts as Pro:
/// pay as you go with a payment method on file, else trial.
pub fn fallback_plan(has_payment_method: bool) -> Plan {
    if has_payment_method {
        Plan::Payg
    } else {
        Plan::Trial
    }
}

#[derive(Queryable)]
struct Current {
    has_payment_method: bool,
    subscription_status: Option<SubscriptionStatus>,
    plan: Plan,
}

/// Applies `change` to customer `customer_id` and returns the plan it is on
/// afterwards. The single writer of the account-state columns (see the
/// module doc). Call inside the caller's transaction, holding the
/// customer's row lock; it writes unconditionally (ordering guards, such as
/// "an older observation never overwrites a newer one", are the caller's
/// rule, see `billing::subscriptions::apply_subscription_snapshot`).
///
/// Errors: [`BillingError::NotFound`] for an unknown customer;
/// [`BillingError::Database`].
pub async fn change_plan(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    change: &PlanChange<'_>,
) -> Result<Plan, BillingError> {
    let current: Current = customers::table
        .find(customer_id)
        .select((
            customers::has_payment_method,
            customers::subscription_status,
            customers::plan,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("customer"))?;
    let stripe_pro = current
        .subscription_status
        .is_some_and(SubscriptionStatus::counts_as_pro);
    let plan = match change {
        PlanChange::Subscription(state) => {
            let plan = if state.status.counts_as_pro() {
                Plan::Pro
            } else {
                fallback_plan(current.has_payment_method)
            };
            diesel::update(customers::table.find(customer_id))
                .set((
                    customers::subscription_status.eq(Some(state.status)),
                    customers::stripe_subscription_id.eq(state.subscription_id),
                    customers::current_period_end.eq(state.current_period_end),
                    customers::subscription_updated_at.eq(state.observed_at),
                    customers::plan.eq(plan),
                    customers::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            return Ok(plan);
        }
        PlanChange::PaymentMethod { has_payment_method } => {
            let plan = if current.plan == Plan::Pro {
                Plan::Pro
            } else {
                fallback_plan(*has_payment_method)
            };
            diesel::update(customers::table.find(customer_id))
                .set((
                    customers::has_payment_method.eq(*has_payment_method),
                    customers::plan.eq(plan),
                    customers::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            return Ok(plan);
        }
        PlanChange::Marketplace(_) | PlanChange::MarketplaceEnded if stripe_pro => Plan::Pro,
        PlanChange::Marketplace(plan) => *plan,
        PlanChange::MarketplaceEnded => fallback_plan(current.has_payment_method),
    };
    diesel::update(customers::table.find(customer_id))
        .set((
            customers::plan.eq(plan),
            customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(plan)
}

/// Whether a Stripe subscription currently pays for the customer's fixes
/// ([`SubscriptionStatus::counts_as_pro`]).
pub fn has_pro_subscription(customer: &Customer) -> bool {
    customer
        .subscription_status
        .is_some_and(SubscriptionStatus::counts_as_pro)
}

/// Whether the Action may run fixes for this customer now: active, and
/// either credits left or a way to pay (a card on file whose last charge
/// was not declined, or a subscription that counts as Pro). The
/// `can_use_service` of the seeds' status contract.
pub fn can_use_service(customer: &Customer) -> bool {
    customer.status() == CustomerStatus::Active
        && (customer.credit_balance > 0
            || (customer.has_payment_method && customer.payment_failed_at.is_none())
            || has_pro_subscription(customer))
}
