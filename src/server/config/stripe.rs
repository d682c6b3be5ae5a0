//! Stripe settings from the environment (`STRIPE_*`, `BILLING_ENABLED`):
//! parsed here so that config stays a leaf; re-exported by
//! [`crate::server::stripe`].

use crate::server::config::ConfigError;
use secrecy::SecretString;

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
    pub secret_key: Option<SecretString>,
    /// `STRIPE_API_BASE`, without a trailing slash (default
    /// [`DEFAULT_API_BASE`]).
    pub api_base: String,
    /// `STRIPE_WEBHOOK_SECRETS`: comma-separated `whsec_…` endpoint secrets;
    /// an event signed with any of them is accepted (for rotation). Empty:
    /// every webhook is rejected.
    pub webhook_secrets: Vec<SecretString>,
    /// `STRIPE_PUBLISHABLE_KEY` (`pk_…`): given to Stripe.js in the portal's
    /// card form; `None` when unset (the form says cards cannot be added).
    pub publishable_key: Option<String>,
    /// `STRIPE_JS_URL` (default [`DEFAULT_JS_URL`]): where the portal loads
    /// Stripe.js from; tests and development use localstripe's copy
    /// (`<localstripe>/js.stripe.com/v3/`).
    pub js_url: String,
    /// `STRIPE_PRO_PRICE_ID` (default [`DEFAULT_PRO_PRICE_ID`]): the Pro
    /// subscription's recurring price. A `price_…` id is sent as
    /// `items[0][price]`, anything else as `items[0][plan]` (localstripe has
    /// Plans, not Prices). Against a loopback `STRIPE_API_BASE` the app
    /// creates the Plan (and its Product) itself when it does not exist.
    pub pro_price_id: String,
}

/// Default Stripe.js URL.
pub const DEFAULT_JS_URL: &str = "https://js.stripe.com/v3/";
/// Default id of the Pro Plan/Price.
pub const DEFAULT_PRO_PRICE_ID: &str = "plan_rsolv_pro_monthly";

impl std::fmt::Debug for StripeSettings {
    // Hand-written: the secret key and webhook secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSettings")
            .field("billing_enabled", &self.billing_enabled())
            .field("secret_key_set", &self.secret_key.is_some())
            .field("api_base", &self.api_base)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("publishable_key_set", &self.publishable_key.is_some())
            .field("js_url", &self.js_url)
            .field("pro_price_id", &self.pro_price_id)
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
        let flags = super::flags_from_lookup(lookup)?;
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
        let publishable_key = get("STRIPE_PUBLISHABLE_KEY");
        if publishable_key
            .as_deref()
            .is_some_and(|k| !k.starts_with("pk_"))
        {
            return Err(ConfigError::Invalid {
                name: "STRIPE_PUBLISHABLE_KEY",
                reason: "must start with pk_".into(),
            });
        }
        let js_url = get("STRIPE_JS_URL").unwrap_or_else(|| DEFAULT_JS_URL.to_owned());
        if !(js_url.starts_with("https://") || js_url.starts_with("http://"))
            || js_url.contains(|c: char| c.is_whitespace() || c == '"' || c == '<')
        {
            return Err(ConfigError::Invalid {
                name: "STRIPE_JS_URL",
                reason: "must be an http:// or https:// URL".into(),
            });
        }
        let pro_price_id =
            get("STRIPE_PRO_PRICE_ID").unwrap_or_else(|| DEFAULT_PRO_PRICE_ID.to_owned());
        if !pro_price_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid {
                name: "STRIPE_PRO_PRICE_ID",
                reason: "must be a Stripe Price or Plan id".into(),
            });
        }
        Ok(Self {
            flags,
            secret_key: secret_key.map(SecretString::from),
            api_base,
            webhook_secrets: webhook_secrets
                .into_iter()
                .map(SecretString::from)
                .collect(),
            publishable_key,
            js_url,
            pro_price_id,
        })
    }
}

impl StripeSettings {
    /// Whether the API base is a local Stripe stand-in (loopback http), where
    /// the app may create its own fixtures such as the Pro Plan.
    pub fn is_local_stand_in(&self) -> bool {
        self.api_base.starts_with("http://127.0.0.1")
            || self.api_base.starts_with("http://localhost")
            || self.api_base.starts_with("http://[::1]")
    }

    /// Whether the Pro id is a Price (`price_…`) rather than a Plan.
    pub fn pro_is_price(&self) -> bool {
        self.pro_price_id.starts_with("price_")
    }
}

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
        assert_eq!(
            super::super::expose_all(&s.webhook_secrets),
            vec!["whsec_a", "whsec_b"]
        );
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
        assert!(settings(&[("STRIPE_PUBLISHABLE_KEY", "sk_test_oops")]).is_err());
        assert!(settings(&[("STRIPE_JS_URL", "javascript:alert(1)")]).is_err());
        assert!(settings(&[("STRIPE_PRO_PRICE_ID", "a b")]).is_err());
    }

    #[test]
    fn billing_settings() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.js_url, DEFAULT_JS_URL);
        assert_eq!(s.pro_price_id, DEFAULT_PRO_PRICE_ID);
        assert!(!s.pro_is_price() && !s.is_local_stand_in());
        let s = settings(&[
            ("STRIPE_API_BASE", "http://127.0.0.1:8420"),
            ("STRIPE_PRO_PRICE_ID", "price_123"),
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_x"),
        ])
        .unwrap();
        assert!(s.pro_is_price() && s.is_local_stand_in());
        assert_eq!(s.publishable_key.as_deref(), Some("pk_test_x"));
    }
}
