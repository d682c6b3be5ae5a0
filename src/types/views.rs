//! What the UI shows: plain serialisable structs built by the server.

use serde::{Deserialize, Serialize};

/// Whether self-service signups are taken now, so the signup forms (home
/// page, `/register`) can say so before they are filled. Read from the
/// same flags as the gate every signup path passes
/// (`server::admin::approvals::admit`), which still refuses on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    /// Accounts are created at once (`signups_enabled` and
    /// `auto_provision` on).
    Open,
    /// Signups wait for an admin's approval (`auto_provision` off).
    Approval,
    /// Every signup is refused (`signups_enabled` off).
    Closed,
}

/// The answer to a sign-up (home form, onboarding API): the same for a new
/// address and a registered one, so it tells no one which addresses have
/// accounts (issue 12 item 5). It holds no key: the owner's first key is
/// shown once when they follow the emailed link ([`FirstKeyView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupView {
    /// The address the email went to, as entered.
    pub email: String,
    /// True when the signup waits for an admin's approval (the
    /// `auto_provision` flag is off): the email comes once it is approved.
    #[serde(default)]
    pub pending_approval: bool,
}

/// The owner's API key, issued when they first prove the email (invite
/// accepted, email confirmed, password reset by a mailed link) and shown
/// this once. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstKeyView {
    /// The full API key (`rsolv_…`).
    pub api_key: String,
    /// How many keys issued before the proof were revoked by it (0 for an
    /// account made by signing up: those had no key before).
    pub revoked_keys: u32,
    /// The platform's public origin (`PUBLIC_BASE_URL`), the workflow's
    /// `api_url` input shown beside the key.
    #[serde(default)]
    pub api_url: String,
}

impl std::fmt::Debug for FirstKeyView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstKeyView")
            .field("api_key", &"REDACTED")
            .field("revoked_keys", &self.revoked_keys)
            .field("api_url", &self.api_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::FirstKeyView;
    use crate::types::billing::SetupIntentView;
    use crate::types::portal::{ApiKeyView, KeyStatusView, NewKeyView};

    #[test]
    fn views_holding_a_secret_leave_it_out_of_debug() {
        let signup = FirstKeyView {
            api_key: "rsolv_secret_signup".into(),
            revoked_keys: 1,
            api_url: "https://rsolv.example".into(),
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
                activity: None,
            },
            secret: "rsolv_AbC123_secret_new_key".into(),
            replaced: None,
        };
        let printed = format!("{signup:?} {setup:?} {new_key:?}");
        for secret in ["rsolv_secret_signup", "secret_abc", "secret_new_key"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("revoked_keys: 1") && printed.contains("seti_1"));
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
