//! What the UI shows: plain serialisable structs built by the server.

use serde::{Deserialize, Serialize};

/// The result of a successful signup. `api_key` is the only time the full
/// key is ever shown; the server keeps only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupView {
    /// The new customer's id.
    pub customer_id: i64,
    /// The customer's email, as stored.
    pub email: String,
    /// The full API key (`rsolv_…`), shown once.
    pub api_key: String,
    /// Credit balance after the signup bonus, in credits.
    pub credit_balance: i64,
    /// True when the signup waits for an admin's approval (the
    /// `auto_provision` flag is off): nothing is provisioned yet, the other
    /// fields are empty (id 0, no key).
    #[serde(default)]
    pub pending_approval: bool,
}

/// The billing status every adapter can read (the seeds' Billing →
/// Provisioning contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BillingStatusView {
    /// Stripe's `cus_…` id, once the Stripe Customer exists.
    pub stripe_customer_id: Option<String>,
    /// Stripe's subscription status (`active`, `past_due`, …), if subscribed.
    pub subscription_status: Option<String>,
    /// Whether the Action may run fixes now (credits, or a way to pay).
    pub can_use_service: bool,
    /// Usage so far.
    pub current_usage: CurrentUsage,
}

/// Usage figures in [`BillingStatusView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CurrentUsage {
    /// Credits left.
    pub credit_balance: i64,
    /// Fixes recorded, all time.
    pub fixes_total: i64,
    /// Fixes recorded but not yet paid for.
    pub fixes_unpaid: i64,
    /// The plan (`trial`, `payg`, `pro`).
    pub plan: String,
}
