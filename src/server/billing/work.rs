//! The background work the domain asks for, enqueued in the domain's own
//! transaction through the queue's storage ([`crate::server::db::queue`]):
//! the job types (name and payload, [`BackgroundJob`]) the domain writes.
//! What runs them lives in the integrations (`server::stripe`) and is
//! registered by the worker (`server::jobs`); the domain never imports it.

use crate::server::billing::BillingError;
use crate::server::db::queue::BackgroundJob;
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};

/// Job kind: create the Stripe Customer of `{"customer_id": i64}`
/// ([`CreateCustomerJob`]; handler: `stripe::jobs::create_customer`).
pub const KIND_STRIPE_CREATE_CUSTOMER: &str = "stripe.create_customer";
/// Job kind: apply the stored Stripe event `{"event_id": "evt_…"}`
/// ([`ProcessStripeEventJob`]; handler: `stripe::events::prepare_event` and `apply_prepared_event`, in batches).
pub const KIND_STRIPE_PROCESS_EVENT: &str = "stripe.process_event";
/// Job kind: charge for a fix `{"charge_id": i64}` (PaymentIntent or
/// invoice item; [`ChargeJob`]; handler: `stripe::charges::charge_job`).
pub const KIND_STRIPE_CHARGE: &str = "stripe.charge";
/// Job kind: reconcile the ledger, fixes, charges and stored Stripe events
/// (`{}`; [`ReconcileJob`]; runs
/// [`crate::server::billing::reconciliation::run`]).
pub const KIND_BILLING_RECONCILE: &str = "billing.reconcile";

/// Create the Stripe Customer of a customer (safe to run twice: it does
/// nothing once the customer has one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCustomerJob {
    /// Our customer's id.
    pub customer_id: i64,
}

impl BackgroundJob for CreateCustomerJob {
    const JOB_NAME: &'static str = KIND_STRIPE_CREATE_CUSTOMER;
}

/// Charge for a fix: the charge row's PaymentIntent (pay as you go) or
/// invoice item (Pro overage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeJob {
    /// The `charges` row's id.
    pub charge_id: i64,
}

impl BackgroundJob for ChargeJob {
    const JOB_NAME: &'static str = KIND_STRIPE_CHARGE;
}

/// Apply a stored Stripe event (`stripe_events` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStripeEventJob {
    /// The event's id, `evt_…`.
    pub event_id: String,
}

impl BackgroundJob for ProcessStripeEventJob {
    const JOB_NAME: &'static str = KIND_STRIPE_PROCESS_EVENT;
}

/// Reconcile billing (issue 9, scope 7): one run of
/// [`crate::server::billing::reconciliation::run`]. Enqueued nightly by
/// `serve` with the dedupe key [`ReconcileJob::nightly_key`] and on demand
/// from the admin console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileJob {}

impl ReconcileJob {
    /// The dedupe key of the nightly run of `day` (UTC), e.g.
    /// `billing.reconcile:2026-11-30`: however many `serve` processes tick,
    /// one run a day.
    pub fn nightly_key(day: chrono::NaiveDate) -> String {
        format!("{KIND_BILLING_RECONCILE}:{day}")
    }
}

impl BackgroundJob for ReconcileJob {
    const JOB_NAME: &'static str = KIND_BILLING_RECONCILE;
    const MAX_ATTEMPTS: i32 = 3;
}

/// Enqueues, in the caller's transaction, the job that creates the Stripe
/// Customer of `customer_id` (dedupe key `stripe.create_customer:<id>`, so
/// at most one such job ever exists per customer).
///
/// Errors: [`BillingError::Database`].
pub async fn enqueue_create_customer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(), BillingError> {
    let dedupe = format!("{KIND_STRIPE_CREATE_CUSTOMER}:{customer_id}");
    CreateCustomerJob { customer_id }
        .enqueue(conn, Some(&dedupe))
        .await?;
    Ok(())
}
