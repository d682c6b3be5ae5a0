//! Stripe: settings, the API client ([`client`]), webhook signatures
//! ([`signature`]) and the jobs that talk to Stripe ([`jobs`]).
//!
//! Production talks to `https://api.stripe.com`; development and tests talk
//! to localstripe on 127.0.0.1 through the same code (only
//! `STRIPE_API_BASE` and the key differ).

pub mod client;
pub mod events;
pub mod jobs;
pub mod signature;
pub mod trigger;

use crate::server::config::ConfigError;

/// Default Stripe API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Stripe settings from the environment (documented in `.env.example`).
#[derive(Clone)]
pub struct StripeSettings {
    /// The runtime flags (shared with `Config::flags`); the kill switch is
    /// the `billing_enabled` flag, forced by `BILLING_ENABLED`: read it with
    /// [`StripeSettings::billing_enabled`]. When off no call is made to
    /// Stripe: `stripe.create_customer` jobs stay queued (they are not
    /// claimed) until billing is enabled again. Webhooks are still verified,
    /// stored and processed (processing never calls Stripe).
    pub flags: crate::server::flags::Flags,
    /// `STRIPE_SECRET_KEY` (`sk_…` or `rk_…`); `None` when unset, in which
    /// case jobs that call Stripe stay queued (as with billing disabled).
    pub secret_key: Option<String>,
    /// `STRIPE_API_BASE`, without a trailing slash (default
    /// [`DEFAULT_API_BASE`]).
    pub api_base: String,
    /// `STRIPE_WEBHOOK_SECRETS`: comma-separated `whsec_…` endpoint secrets;
    /// an event signed with any of them is accepted (for rotation). Empty:
    /// every webhook is rejected.
    pub webhook_secrets: Vec<String>,
}

impl std::fmt::Debug for StripeSettings {
    // Hand-written: the secret key and webhook secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSettings")
            .field("billing_enabled", &self.billing_enabled())
            .field("secret_key_set", &self.secret_key.is_some())
            .field("api_base", &self.api_base)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .finish()
    }
}

impl StripeSettings {
    /// Whether billing is enabled now (the runtime `billing_enabled` flag,
    /// or its `BILLING_ENABLED` force).
    pub fn billing_enabled(&self) -> bool {
        self.flags.is_on(crate::server::flags::Flag::BillingEnabled)
    }

    /// Whether calls to Stripe may be made: billing enabled and a key set.
    pub fn can_call_stripe(&self) -> bool {
        self.billing_enabled() && self.secret_key.is_some()
    }

    /// Reads the settings through `lookup` (variable name → value).
    ///
    /// Errors: [`ConfigError::Invalid`] for a `BILLING_ENABLED` that is not
    /// a boolean, an API base that is not an http(s) URL, or a key or
    /// webhook secret with the wrong prefix (the message never holds the
    /// value).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        // BILLING_ENABLED (and the other flags' variables) force flags.
        let flags = crate::server::flags::Flags::from_lookup(lookup)?;
        let secret_key = get("STRIPE_SECRET_KEY");
        if let Some(key) = &secret_key {
            if !(key.starts_with("sk_") || key.starts_with("rk_")) {
                return Err(ConfigError::Invalid {
                    name: "STRIPE_SECRET_KEY",
                    reason: "must start with sk_ or rk_".into(),
                });
            }
        }
        let api_base = get("STRIPE_API_BASE")
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://"))
            || api_base.contains(char::is_whitespace)
        {
            return Err(ConfigError::Invalid {
                name: "STRIPE_API_BASE",
                reason: "must be an http:// or https:// URL".into(),
            });
        }
        let webhook_secrets: Vec<String> = get("STRIPE_WEBHOOK_SECRETS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if webhook_secrets.iter().any(|s| !s.starts_with("whsec_")) {
            return Err(ConfigError::Invalid {
                name: "STRIPE_WEBHOOK_SECRETS",
                reason: "every secret must start with whsec_".into(),
            });
        }
        Ok(Self {
            flags,
            secret_key,
            api_base,
            webhook_secrets,
        })
    }
}

/// The idempotency key of the Stripe Customer created for our customer
/// `customer_id`: `customer:create:<id>`.
pub fn customer_create_key(customer_id: i64) -> String {
    format!("customer:create:{customer_id}")
}

/// The metadata key on a Stripe Customer holding our customer id.
pub const CUSTOMER_ID_METADATA: &str = "rsolv_customer_id";

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<StripeSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        StripeSettings::from_lookup(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_parsing() {
        let s = settings(&[]).unwrap();
        assert!(s.billing_enabled());
        assert_eq!(s.api_base, "https://api.stripe.com");
        assert!(s.secret_key.is_none() && s.webhook_secrets.is_empty());
        let s = settings(&[
            ("BILLING_ENABLED", "false"),
            ("STRIPE_API_BASE", "http://127.0.0.1:8420/"),
            ("STRIPE_SECRET_KEY", "sk_test_secretvalue"),
            ("STRIPE_WEBHOOK_SECRETS", "whsec_a, whsec_b,"),
        ])
        .unwrap();
        assert!(!s.billing_enabled());
        assert_eq!(s.api_base, "http://127.0.0.1:8420");
        assert_eq!(s.webhook_secrets, vec!["whsec_a", "whsec_b"]);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("secretvalue") && !debug.contains("whsec_a"),
            "{debug}"
        );
    }

    #[test]
    fn bad_values_name_the_variable_not_the_value() {
        let err = settings(&[("STRIPE_SECRET_KEY", "pk_live_oops")]).unwrap_err();
        assert!(err.to_string().contains("STRIPE_SECRET_KEY"));
        assert!(!err.to_string().contains("oops"));
        assert!(settings(&[("BILLING_ENABLED", "maybe")]).is_err());
        assert!(settings(&[("STRIPE_API_BASE", "ftp://x")]).is_err());
        assert!(settings(&[("STRIPE_WEBHOOK_SECRETS", "nope")]).is_err());
    }
}
