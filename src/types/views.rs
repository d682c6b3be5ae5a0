//! What the UI shows: plain serialisable structs built by the server.

use serde::{Deserialize, Serialize};

/// The result of a successful signup. `api_key` is the only time the full
/// key is ever shown; the server keeps only its SHA-256. `Debug` leaves the
/// key out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl std::fmt::Debug for SignupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupView")
            .field("customer_id", &self.customer_id)
            .field("email", &self.email)
            .field("api_key", &"REDACTED")
            .field("credit_balance", &self.credit_balance)
            .field("pending_approval", &self.pending_approval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::SignupView;
    use crate::types::billing::SetupIntentView;
    use crate::types::portal::{ApiKeyView, KeyStatusView, NewKeyView};

    #[test]
    fn views_holding_a_secret_leave_it_out_of_debug() {
        let signup = SignupView {
            customer_id: 1,
            email: "a@example.com".into(),
            api_key: "rsolv_secret_signup".into(),
            credit_balance: 5,
            pending_approval: false,
        };
        let setup = SetupIntentView {
            setup_intent_id: "seti_1".into(),
            client_secret: "seti_1_secret_abc".into(),
        };
        let new_key = NewKeyView {
            key: ApiKeyView {
                id: 7,
                name: "ci".into(),
                prefix: "rsolv_AbC123".into(),
                created_at: "2026-12-01T00:00:00Z".into(),
                last_used_at: None,
                status: KeyStatusView::Active,
            },
            secret: "rsolv_AbC123_secret_new_key".into(),
            replaced: None,
        };
        let printed = format!("{signup:?} {setup:?} {new_key:?}");
        for secret in ["rsolv_secret_signup", "secret_abc", "secret_new_key"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("a@example.com") && printed.contains("seti_1"));
        assert!(printed.contains("rsolv_AbC123") && printed.contains("REDACTED"));
    }
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
