//! The AI gateway's settings (issue 10): how the credential exchange vends
//! credentials, where each provider's API is, timeouts, body limits and the
//! default per-customer budget. Every variable is in `.env.example`.

use super::ConfigError;

/// What `POST /api/v1/credentials/exchange` hands out
/// (`CREDENTIAL_VENDING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialVending {
    /// `virtual` (the default): a per-customer virtual key for the gateway
    /// under `/ai`; the operator's provider keys never leave the platform.
    Virtual,
    /// `passthrough`: the operator's real `PROVIDER_*_API_KEY` (the old
    /// behaviour). Only when set explicitly; the server warns at start-up
    /// and on `/health`.
    Passthrough,
}

impl CredentialVending {
    /// The spelling of `CREDENTIAL_VENDING`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialVending::Virtual => "virtual",
            CredentialVending::Passthrough => "passthrough",
        }
    }
}

/// The warning logged at start-up and shown on `/health` in passthrough
/// mode.
pub const PASSTHROUGH_WARNING: &str = "CREDENTIAL_VENDING=passthrough: the credential exchange hands the operator's real provider keys to every customer; unset it to vend virtual keys";

/// The gateway's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiSettings {
    /// `CREDENTIAL_VENDING` (`virtual` | `passthrough`, default `virtual`).
    pub vending: CredentialVending,
    /// Anthropic's API base, no trailing slash; the gateway posts to
    /// `{base}/v1/messages` (`AI_ANTHROPIC_BASE_URL`, default
    /// `https://api.anthropic.com`).
    pub anthropic_base_url: String,
    /// OpenAI's API base; the gateway posts to `{base}/chat/completions`
    /// (`AI_OPENAI_BASE_URL`, default `https://api.openai.com/v1`).
    pub openai_base_url: String,
    /// OpenRouter's API base; the gateway posts to `{base}/chat/completions`
    /// (`AI_OPENROUTER_BASE_URL`, default `https://openrouter.ai/api/v1`).
    pub openrouter_base_url: String,
    /// Seconds to connect to a provider (`AI_CONNECT_TIMEOUT_SECONDS`,
    /// default 10, 1..=120).
    pub connect_timeout_seconds: u64,
    /// Seconds a provider may stay silent (no byte of headers or body)
    /// before the call is abandoned (`AI_IDLE_TIMEOUT_SECONDS`, default 300,
    /// 1..=3600).
    pub idle_timeout_seconds: u64,
    /// Seconds a whole call may take, streamed or not
    /// (`AI_REQUEST_TIMEOUT_SECONDS`, default 900, 1..=7200).
    pub request_timeout_seconds: u64,
    /// Largest request body the gateway accepts, in bytes
    /// (`AI_MAX_REQUEST_BYTES`, default 8 MiB, 1 KiB..=64 MiB); larger ones
    /// get 413 in the provider's error shape.
    pub max_request_bytes: usize,
    /// Largest non-streamed answer whose usage is read, in bytes
    /// (`AI_MAX_METERED_RESPONSE_BYTES`, default 32 MiB); a larger answer is
    /// still passed through whole, and recorded with zero tokens.
    pub max_metered_response_bytes: usize,
    /// Calls one customer may have in flight at once on one instance
    /// (`AI_MAX_CONCURRENT_PER_CUSTOMER`, default 8, 0 = no limit); the
    /// per-customer row in `ai_budgets` overrides it.
    pub max_concurrent_per_customer: u32,
    /// Tokens (input + output, as measured) one customer may use per UTC
    /// day (`AI_DAILY_TOKEN_BUDGET`, default 5 000 000, 0 = no limit); the
    /// per-customer row in `ai_budgets` overrides it.
    pub daily_token_budget: i64,
}

impl AiSettings {
    /// Reads the settings through `lookup` (variable name → value).
    ///
    /// Errors: [`ConfigError::Invalid`] naming the variable for a value that
    /// is not understood (never echoing it).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let vending = match get("CREDENTIAL_VENDING").map(|v| v.to_ascii_lowercase()) {
            None => CredentialVending::Virtual,
            Some(v) if v == "virtual" => CredentialVending::Virtual,
            Some(v) if v == "passthrough" => CredentialVending::Passthrough,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "CREDENTIAL_VENDING",
                    reason: "must be virtual or passthrough".into(),
                })
            }
        };
        let base = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = get(name).unwrap_or_else(|| default.to_owned());
            parse_base_url(&value).map_err(|reason| ConfigError::Invalid { name, reason })
        };
        fn number<T: std::str::FromStr + PartialOrd + std::fmt::Debug>(
            raw: Option<String>,
            name: &'static str,
            default: T,
            range: std::ops::RangeInclusive<T>,
        ) -> Result<T, ConfigError> {
            let Some(raw) = raw else {
                return Ok(default);
            };
            let value: T = raw.parse().map_err(|_| ConfigError::Invalid {
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
        let n = |name: &'static str| get(name);
        Ok(Self {
            vending,
            anthropic_base_url: base("AI_ANTHROPIC_BASE_URL", "https://api.anthropic.com")?,
            openai_base_url: base("AI_OPENAI_BASE_URL", "https://api.openai.com/v1")?,
            openrouter_base_url: base("AI_OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1")?,
            connect_timeout_seconds: number(
                n("AI_CONNECT_TIMEOUT_SECONDS"),
                "AI_CONNECT_TIMEOUT_SECONDS",
                10,
                1..=120,
            )?,
            idle_timeout_seconds: number(
                n("AI_IDLE_TIMEOUT_SECONDS"),
                "AI_IDLE_TIMEOUT_SECONDS",
                300,
                1..=3600,
            )?,
            request_timeout_seconds: number(
                n("AI_REQUEST_TIMEOUT_SECONDS"),
                "AI_REQUEST_TIMEOUT_SECONDS",
                900,
                1..=7200,
            )?,
            max_request_bytes: number(
                n("AI_MAX_REQUEST_BYTES"),
                "AI_MAX_REQUEST_BYTES",
                8 * 1024 * 1024,
                1024..=64 * 1024 * 1024,
            )?,
            max_metered_response_bytes: number(
                n("AI_MAX_METERED_RESPONSE_BYTES"),
                "AI_MAX_METERED_RESPONSE_BYTES",
                32 * 1024 * 1024,
                1024..=256 * 1024 * 1024,
            )?,
            max_concurrent_per_customer: number(
                n("AI_MAX_CONCURRENT_PER_CUSTOMER"),
                "AI_MAX_CONCURRENT_PER_CUSTOMER",
                8,
                0..=10_000,
            )?,
            daily_token_budget: number(
                n("AI_DAILY_TOKEN_BUDGET"),
                "AI_DAILY_TOKEN_BUDGET",
                5_000_000,
                0..=i64::MAX / 4,
            )?,
        })
    }
}

/// An `http(s)://host[:port][/path]` base without query, fragment or
/// credentials, returned without a trailing slash.
fn parse_base_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|_| "not a URL".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    if parsed.host_str().is_none() {
        return Err("has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<AiSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AiSettings::from_lookup(&move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_are_virtual_keys_and_the_real_providers() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.vending, CredentialVending::Virtual);
        assert_eq!(s.anthropic_base_url, "https://api.anthropic.com");
        assert_eq!(s.openai_base_url, "https://api.openai.com/v1");
        assert_eq!(s.openrouter_base_url, "https://openrouter.ai/api/v1");
        assert_eq!(s.max_concurrent_per_customer, 8);
    }

    #[test]
    fn passthrough_only_when_spelled_out_and_bad_values_name_the_variable() {
        let s = settings(&[
            ("CREDENTIAL_VENDING", "Passthrough"),
            ("AI_ANTHROPIC_BASE_URL", "http://127.0.0.1:9/anthropic/"),
        ])
        .unwrap();
        assert_eq!(s.vending, CredentialVending::Passthrough);
        assert_eq!(s.anthropic_base_url, "http://127.0.0.1:9/anthropic");
        for (name, bad) in [
            ("CREDENTIAL_VENDING", "yes"),
            ("AI_OPENAI_BASE_URL", "ftp://x"),
            ("AI_OPENAI_BASE_URL", "https://u:p@x"),
            ("AI_OPENROUTER_BASE_URL", "https://x/?a=1"),
            ("AI_MAX_REQUEST_BYTES", "10"),
            ("AI_DAILY_TOKEN_BUDGET", "-1"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
