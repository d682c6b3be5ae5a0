//! Typed configuration from environment variables. Every variable is
//! documented in `.env.example`; a missing or malformed value fails start-up
//! with a message naming the variable.

use crate::server::billing::pricing::PricingCatalog;
use std::collections::BTreeMap;
use std::str::FromStr;

/// A configuration variable is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    /// A variable is set but cannot be parsed.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with it (never the value itself: it may be secret).
        reason: String,
    },
}

/// The AI providers whose credentials the platform can vend
/// (ACTION_API.md § 1), with the variable holding each one's credential.
pub const PROVIDERS: &[(&str, &str)] = &[
    ("anthropic", "PROVIDER_ANTHROPIC_API_KEY"),
    ("openai", "PROVIDER_OPENAI_API_KEY"),
    ("openrouter", "PROVIDER_OPENROUTER_API_KEY"),
];

/// The whole server configuration.
#[derive(Clone)]
pub struct Config {
    /// PostgreSQL URL (`DATABASE_URL`, required).
    pub database_url: String,
    /// Connections in the pool (`DATABASE_POOL_SIZE`, default 16).
    pub database_pool_size: usize,
    /// Per-statement timeout in seconds (`DATABASE_STATEMENT_TIMEOUT_SECONDS`, default 30).
    pub statement_timeout_seconds: u64,
    /// Largest accepted request body in bytes (`MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Upper bound in minutes on a vended credential's lifetime
    /// (`CREDENTIAL_TTL_CAP_MINUTES`, default 60).
    pub credential_ttl_cap_minutes: i64,
    /// Provider name → credential, only for providers the operator configured.
    pub provider_credentials: BTreeMap<String, String>,
    /// Prices and credit grants.
    pub pricing: PricingCatalog,
    /// The site's public origin, no trailing slash (`PUBLIC_BASE_URL`,
    /// default `http://127.0.0.1:3000`): links in emails, the CSRF origin
    /// check, and `Secure` session cookies when it is https.
    pub public_base_url: String,
}

impl std::fmt::Debug for Config {
    // Hand-written so that secrets (database password, provider keys) never
    // reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_pool_size", &self.database_pool_size)
            .field("statement_timeout_seconds", &self.statement_timeout_seconds)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "credential_ttl_cap_minutes",
                &self.credential_ttl_cap_minutes,
            )
            .field(
                "providers",
                &self.provider_credentials.keys().collect::<Vec<_>>(),
            )
            .field("pricing", &self.pricing)
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Whether cookies must be `Secure` (the public base URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.public_base_url.starts_with("https://")
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (variable name → value), so
    /// tests can supply their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let database_url = env.required("DATABASE_URL")?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                reason: "must start with postgres:// or postgresql://".into(),
            });
        }
        let provider_credentials = PROVIDERS
            .iter()
            .filter_map(|(provider, var)| {
                lookup(var)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| ((*provider).to_owned(), v.trim().to_owned()))
            })
            .collect();
        let defaults = PricingCatalog::default();
        let pricing = PricingCatalog {
            trial_credits: env.parsed("PRICING_TRIAL_CREDITS", defaults.trial_credits, 0..)?,
            billing_bonus_credits: env.parsed(
                "PRICING_BILLING_BONUS_CREDITS",
                defaults.billing_bonus_credits,
                0..,
            )?,
            payg_fix_cents: env.parsed("PRICING_PAYG_FIX_CENTS", defaults.payg_fix_cents, 1..)?,
            pro_monthly_cents: env.parsed(
                "PRICING_PRO_MONTHLY_CENTS",
                defaults.pro_monthly_cents,
                1..,
            )?,
            pro_credits_per_period: env.parsed(
                "PRICING_PRO_CREDITS_PER_PERIOD",
                defaults.pro_credits_per_period,
                0..,
            )?,
            pro_overage_cents: env.parsed(
                "PRICING_PRO_OVERAGE_CENTS",
                defaults.pro_overage_cents,
                1..,
            )?,
            currency: env.currency("PRICING_CURRENCY", &defaults.currency)?,
        };
        Ok(Self {
            database_url,
            database_pool_size: env.parsed("DATABASE_POOL_SIZE", 16, 1..=1000)?,
            statement_timeout_seconds: env.parsed(
                "DATABASE_STATEMENT_TIMEOUT_SECONDS",
                30,
                1..=3600,
            )?,
            max_body_bytes: env.parsed("MAX_BODY_BYTES", 1024 * 1024, 1024..=64 * 1024 * 1024)?,
            credential_ttl_cap_minutes: env.parsed(
                "CREDENTIAL_TTL_CAP_MINUTES",
                60,
                1..=24 * 60,
            )?,
            provider_credentials,
            pricing,
            public_base_url: env.base_url("PUBLIC_BASE_URL", "http://127.0.0.1:3000")?,
        })
    }
}

struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        (self.0)(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(name))
    }

    fn parsed<T>(
        &self,
        name: &'static str,
        default: T,
        range: impl std::ops::RangeBounds<T> + std::fmt::Debug,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd,
    {
        let Some(raw) = (self.0)(name).filter(|v| !v.trim().is_empty()) else {
            return Ok(default);
        };
        let value: T = raw.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: "not a whole number".into(),
        })?;
        if !range.contains(&value) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("must be in {range:?}"),
            });
        }
        Ok(value)
    }

    fn base_url(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = (self.0)(name)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned());
        let value = value.trim().trim_end_matches('/');
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
                Ok(value.to_owned())
            }
            _ => Err(ConfigError::Invalid {
                name,
                reason:
                    "must be an origin such as https://rsolv.example (scheme and host, no path)"
                        .into(),
            }),
        }
    }

    fn currency(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = (self.0)(name)
            .unwrap_or_else(|| default.to_owned())
            .trim()
            .to_ascii_lowercase();
        if value.len() != 3 || !value.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be a three-letter ISO 4217 code".into(),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = Config::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable DATABASE_URL is required but not set"
        );
    }

    #[test]
    fn defaults_are_the_seed_prices() {
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://localhost/x")])).unwrap();
        assert_eq!(config.pricing, PricingCatalog::default());
        assert_eq!(config.pricing.payg_fix_cents, 2900);
        assert_eq!(config.pricing.pro_monthly_cents, 59900);
        assert!(config.provider_credentials.is_empty());
    }

    #[test]
    fn malformed_numbers_and_providers() {
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("PRICING_PAYG_FIX_CENTS", "29.00"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("PRICING_PAYG_FIX_CENTS"), "{err}");
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("PROVIDER_OPENAI_API_KEY", "sk-test"),
            ("PROVIDER_ANTHROPIC_API_KEY", " "),
        ]))
        .unwrap();
        assert_eq!(
            config.provider_credentials.keys().collect::<Vec<_>>(),
            vec!["openai"]
        );
        assert!(!format!("{config:?}").contains("sk-test"));
    }

    #[test]
    fn public_base_url_default_and_rules() {
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://localhost/x")])).unwrap();
        assert_eq!(config.public_base_url, "http://127.0.0.1:3000");
        assert!(!config.secure_cookies());
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("PUBLIC_BASE_URL", "https://rsolv.example/"),
        ]))
        .unwrap();
        assert_eq!(config.public_base_url, "https://rsolv.example");
        assert!(config.secure_cookies());
        for bad in [
            "rsolv.example",
            "https://",
            "https://a.example/path",
            "ftp://a.example",
        ] {
            let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
                ("DATABASE_URL", "postgres://localhost/x"),
                ("PUBLIC_BASE_URL", bad),
            ]));
            let err = Config::from_lookup(lookup(vars)).unwrap_err();
            assert!(err.to_string().contains("PUBLIC_BASE_URL"), "{bad}: {err}");
        }
    }
}
