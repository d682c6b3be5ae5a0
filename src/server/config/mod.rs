//! Typed configuration from environment variables. Every variable is
//! documented in `.env.example`; a missing or malformed value fails start-up
//! with a message naming the variable.

pub mod ai;
pub mod github;
pub mod links;
pub mod pricing;
pub mod proxies;
pub mod sessions;
pub mod stripe;

pub use links::EmailLinks;

use crate::server::flags::{Flag, Flags};
pub use pricing::PricingCatalog;
pub use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// PostgreSQL URL (`DATABASE_URL`, required); it holds the database
    /// password, so `Debug` redacts it.
    pub database_url: SecretString,
    /// Connections in the pool (`DATABASE_POOL_SIZE`, default 16).
    pub database_pool_size: usize,
    /// Jobs one job worker runs at once (`JOB_CONCURRENCY`, 1–256; default
    /// twice the CPUs, at most half the pool): each running job holds up
    /// to one pool connection at a time.
    pub job_concurrency: usize,
    /// Most jobs of a batched kind (`stripe.process_event`) one worker slot
    /// applies in one transaction (`JOB_BATCH_SIZE`, 1–256, default 1:
    /// each event applied and marked done in one commit;
    /// `server::jobs::BatchJob`). Larger batches are for tuning: in the
    /// bench's mixed run a batch of 16 once waited out the statement
    /// timeout on a lock, holding back its 16 customers (README §
    /// Performance).
    pub job_batch_size: usize,
    /// Per-statement timeout in seconds (`DATABASE_STATEMENT_TIMEOUT_SECONDS`, default 30).
    pub statement_timeout_seconds: u64,
    /// Largest accepted request body in bytes (`MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Upper bound in minutes on a vended credential's lifetime
    /// (`CREDENTIAL_TTL_CAP_MINUTES`, default 60).
    pub credential_ttl_cap_minutes: i64,
    /// Provider name → credential, only for providers the operator configured.
    pub provider_credentials: BTreeMap<String, SecretString>,
    /// Prices and credit grants.
    pub pricing: PricingCatalog,
    /// Stripe: kill switch, key, API base, webhook secrets.
    pub stripe: self::stripe::StripeSettings,
    /// Signups (onboarding API, signup form and server function) allowed
    /// per client IP per minute, across all instances
    /// (`RATE_LIMIT_SIGNUPS_PER_MINUTE`, default 10).
    pub rate_limit_signups_per_minute: u32,
    /// Action API requests allowed per API key per hour, across all
    /// instances (`RATE_LIMIT_ACTION_PER_HOUR`, default 500).
    pub rate_limit_action_per_hour: u32,
    /// How often, in milliseconds, each instance adds the Action API hits
    /// it counted in memory to the shared counters in PostgreSQL and reads
    /// the totals back (`RATE_LIMIT_SYNC_MILLIS`, default 200, 10..=60000).
    /// A longer interval means fewer writes and a looser limit across
    /// instances: see [`crate::server::rate_limit::SyncedLimiter`] for the
    /// error bound.
    pub rate_limit_sync_millis: u64,
    /// How the client IP is found behind proxies (`TRUST_PROXY_HEADERS`,
    /// default false: the TCP peer; `TRUSTED_PROXIES`, our proxies' IPs and
    /// CIDRs): see [`proxies::ProxySettings`] and
    /// [`crate::server::client_ip`].
    pub proxies: proxies::ProxySettings,
    /// Outgoing email: transport, sender, links, retries.
    pub email: EmailConfig,
    /// How long a rotated API key keeps working, in hours
    /// (`API_KEY_ROTATION_GRACE_HOURS`, default 24, 0..=720).
    pub api_key_rotation_grace_hours: i64,
    /// GitHub Marketplace: webhook secrets, plan mapping.
    pub github: github::GitHubSettings,
    /// How often each instance reloads the feature flags from the database,
    /// in seconds (`FLAGS_REFRESH_SECONDS`, default 5, 1..=3600).
    pub flags_refresh_seconds: u64,
    /// How long clients are told to wait during maintenance, in seconds
    /// (`MAINTENANCE_RETRY_AFTER_SECONDS`, default 300): the `Retry-After`
    /// of the Action API's 503.
    pub maintenance_retry_after_seconds: u64,
    /// Longest time one HTTP request may take, in seconds; a slower one is
    /// answered 503 and dropped (`REQUEST_TIMEOUT_SECONDS`, default 30,
    /// 1..=3600).
    pub request_timeout_seconds: u64,
    /// Longest drain after SIGTERM, in seconds: in-flight requests and the
    /// workers' current jobs get this long, then the process exits anyway
    /// with status 1 (`SHUTDOWN_TIMEOUT_SECONDS`, default 30, 1..=3600;
    /// keep it below Kubernetes' `terminationGracePeriodSeconds`).
    pub shutdown_timeout_seconds: u64,
    /// Where `serve` and `worker` answer Prometheus scrapes (`GET /metrics`)
    /// on a listener of their own (`METRICS_ADDR`, e.g. `127.0.0.1:9464`;
    /// default unset: no metrics listener, nothing recorded). Keep it off
    /// the public network: the endpoint has no authentication of its own.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The AI gateway: credential vending, provider base URLs, timeouts,
    /// limits (see [`ai::AiSettings`]).
    pub ai: ai::AiSettings,
    /// Browser session lifetimes: idle timeout and absolute lifetime, for
    /// customers and staff admins (see [`sessions::SessionSettings`]).
    pub sessions: sessions::SessionSettings,
}

impl std::fmt::Debug for Config {
    // Hand-written so that secrets (database password, provider keys) never
    // reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_pool_size", &self.database_pool_size)
            .field("job_concurrency", &self.job_concurrency)
            .field("job_batch_size", &self.job_batch_size)
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
            .field("stripe", &self.stripe)
            .field(
                "rate_limit_signups_per_minute",
                &self.rate_limit_signups_per_minute,
            )
            .field(
                "rate_limit_action_per_hour",
                &self.rate_limit_action_per_hour,
            )
            .field("rate_limit_sync_millis", &self.rate_limit_sync_millis)
            .field("proxies", &self.proxies)
            .field("email", &self.email)
            .field(
                "api_key_rotation_grace_hours",
                &self.api_key_rotation_grace_hours,
            )
            .field("github", &self.github)
            .field("flags", self.flags())
            .field("flags_refresh_seconds", &self.flags_refresh_seconds)
            .field("request_timeout_seconds", &self.request_timeout_seconds)
            .field("shutdown_timeout_seconds", &self.shutdown_timeout_seconds)
            .field("metrics_addr", &self.metrics_addr)
            .field("ai", &self.ai)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The site's public origin, no trailing slash (`PUBLIC_BASE_URL`,
    /// default `http://127.0.0.1:3000`): the CSRF origin check and `Secure`
    /// session cookies. The same parsed value as `email.links` (the one
    /// source), e.g. `https://rsolv.example`.
    pub fn public_base_url(&self) -> &str {
        self.email.links.base()
    }

    /// Whether cookies must be `Secure` (the public base URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.public_base_url().starts_with("https://")
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
        // sslmode, sslrootcert (the CA file is read here, so a wrong path
        // fails start-up) and the rest of the URL.
        crate::server::db::DbTarget::parse(&database_url).map_err(|e| ConfigError::Invalid {
            name: "DATABASE_URL",
            reason: e.0,
        })?;
        let provider_credentials = PROVIDERS
            .iter()
            .filter_map(|(provider, var)| {
                lookup(var)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| ((*provider).to_owned(), SecretString::from(v.trim())))
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
            billable_event: match env.optional("PRICING_BILLABLE_EVENT") {
                None => defaults.billable_event,
                Some(raw) => {
                    pricing::BillableEvent::parse(&raw).map_err(|e| ConfigError::Invalid {
                        name: "PRICING_BILLABLE_EVENT",
                        reason: e.0,
                    })?
                }
            },
            ..defaults
        };
        let database_pool_size = env.parsed("DATABASE_POOL_SIZE", 16, 1..=1000)?;
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let job_concurrency_default = (2 * cpus).min(database_pool_size / 2).max(1);
        Ok(Self {
            database_url: database_url.into(),
            database_pool_size,
            job_concurrency: env.parsed("JOB_CONCURRENCY", job_concurrency_default, 1..=256)?,
            job_batch_size: env.parsed("JOB_BATCH_SIZE", 1, 1..=256)?,
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
            stripe: self::stripe::StripeSettings::from_lookup(&lookup)?,
            rate_limit_signups_per_minute: env.parsed(
                "RATE_LIMIT_SIGNUPS_PER_MINUTE",
                10,
                1..=1_000_000,
            )?,
            rate_limit_action_per_hour: env.parsed(
                "RATE_LIMIT_ACTION_PER_HOUR",
                500,
                1..=100_000_000,
            )?,
            rate_limit_sync_millis: env.parsed("RATE_LIMIT_SYNC_MILLIS", 200, 10..=60_000)?,
            proxies: proxies::ProxySettings::parse(
                env.flag("TRUST_PROXY_HEADERS", false)?,
                env.optional("TRUSTED_PROXIES").as_deref(),
            )?,
            email: EmailConfig::from_env(
                &env,
                env.base_url("PUBLIC_BASE_URL", "http://127.0.0.1:3000")?,
            )?,
            api_key_rotation_grace_hours: env.parsed(
                "API_KEY_ROTATION_GRACE_HOURS",
                24,
                0..=720,
            )?,
            github: github::GitHubSettings::from_lookup(&lookup)?,
            flags_refresh_seconds: env.parsed("FLAGS_REFRESH_SECONDS", 5, 1..=3600)?,
            maintenance_retry_after_seconds: env.parsed(
                "MAINTENANCE_RETRY_AFTER_SECONDS",
                300,
                1..=86_400,
            )?,
            request_timeout_seconds: env.parsed("REQUEST_TIMEOUT_SECONDS", 30, 1..=3600)?,
            shutdown_timeout_seconds: env.parsed("SHUTDOWN_TIMEOUT_SECONDS", 30, 1..=3600)?,
            metrics_addr: env
                .optional("METRICS_ADDR")
                .map(|raw| {
                    raw.parse().map_err(|_| ConfigError::Invalid {
                        name: "METRICS_ADDR",
                        reason: "not a socket address such as 127.0.0.1:9464".into(),
                    })
                })
                .transpose()?,
            ai: ai::AiSettings::from_lookup(&lookup)?,
            sessions: {
                let d = sessions::SessionSettings::default();
                let max = sessions::SessionSettings::MAX_SECONDS;
                sessions::SessionSettings {
                    idle_seconds: env.parsed(
                        "SESSION_IDLE_TIMEOUT_SECONDS",
                        d.idle_seconds,
                        1..=max,
                    )?,
                    absolute_seconds: env.parsed(
                        "SESSION_ABSOLUTE_LIFETIME_SECONDS",
                        d.absolute_seconds,
                        1..=max,
                    )?,
                    admin_idle_seconds: env.parsed(
                        "ADMIN_SESSION_IDLE_TIMEOUT_SECONDS",
                        d.admin_idle_seconds,
                        1..=max,
                    )?,
                    admin_absolute_seconds: env.parsed(
                        "ADMIN_SESSION_ABSOLUTE_LIFETIME_SECONDS",
                        d.admin_absolute_seconds,
                        1..=max,
                    )?,
                }
            },
        })
    }

    /// The runtime feature flags (the cache shared with the Stripe
    /// settings; see [`crate::server::flags`]).
    pub fn flags(&self) -> &Flags {
        &self.stripe.flags
    }
}

/// How log lines are written (`LOG_FORMAT`): `text` (default, one
/// human-readable line per event) or `json` (one JSON object per line, for
/// log collectors). Read before the rest of the configuration, so start-up
/// errors are logged in the chosen format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `text`.
    Text,
    /// `json`.
    Json,
}

impl LogFormat {
    /// Parses `LOG_FORMAT` as returned by `lookup`.
    ///
    /// Errors: [`ConfigError::Invalid`] for a value other than text or json.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match lookup("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("") | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(_) => Err(ConfigError::Invalid {
                name: "LOG_FORMAT",
                reason: "must be text or json".into(),
            }),
        }
    }
}

/// The runtime flags with the forces read from the environment through
/// `lookup` (`BILLING_ENABLED`, `FLAG_*`; see [`Flag::env_var`]), the stored
/// values at their defaults until the first refresh.
///
/// Errors: [`ConfigError::Invalid`] for a value that is not a boolean.
pub fn flags_from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Flags, ConfigError> {
    let mut forced = [None; Flag::COUNT];
    for flag in Flag::ALL {
        forced[flag.index()] = parse_bool(flag.env_var(), lookup(flag.env_var()))?;
    }
    Ok(Flags::with_forced(forced))
}

/// Parses a boolean environment value (`true/1/yes/on`, `false/0/no/off`,
/// any case); `None` for an unset or empty variable.
///
/// Errors: [`ConfigError::Invalid`] naming the variable.
fn parse_bool(name: &'static str, value: Option<String>) -> Result<Option<bool>, ConfigError> {
    let Some(value) = value
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    match value.as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::Invalid {
            name,
            reason: "must be true or false".into(),
        }),
    }
}

/// The secrets of `list`, exposed for one use (e.g. an HMAC check over
/// every configured webhook secret); never log or store the result.
pub fn expose_all(list: &[SecretString]) -> Vec<&str> {
    list.iter().map(ExposeSecret::expose_secret).collect()
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

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = (self.0)(name).filter(|v| !v.trim().is_empty()) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                reason: "must be true or false".into(),
            }),
        }
    }

    /// The public origin in `name` (default `default`), parsed once for
    /// emails, CSRF and cookies: [`EmailLinks::parse_origin`]'s rules.
    fn base_url(&self, name: &'static str, default: &str) -> Result<EmailLinks, ConfigError> {
        let value = self.optional(name).unwrap_or_else(|| default.to_owned());
        EmailLinks::parse_origin(&value).map_err(|reason| ConfigError::Invalid { name, reason })
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

// --- Email -------------------------------------------------------------------

/// How queued emails leave the platform (`EMAIL_TRANSPORT`).
#[derive(Clone)]
pub enum EmailTransport {
    /// Deliver through an SMTP server (`smtp`).
    Smtp(SmtpSettings),
    /// Write each email as an `.eml` file into this directory (`file`, the
    /// default: `EMAIL_FILE_DIR`, default `target/emails`).
    File(PathBuf),
    /// Log that an email would be sent (id, kind, recipient, subject; never
    /// the body, which may hold a token) and count it as sent (`log`).
    Log,
}

/// How the SMTP connection is secured (`SMTP_TLS`).
#[derive(Clone)]
pub enum SmtpTls {
    /// Plain text (`none`): only for a server on this machine or network.
    None,
    /// Plain connect, then `STARTTLS`, required (`starttls`, the default).
    StartTls(lettre::transport::smtp::client::TlsParameters),
    /// TLS from the first byte (`tls`, "SMTPS", usually port 465).
    Tls(lettre::transport::smtp::client::TlsParameters),
}

/// SMTP login (`SMTP_USERNAME` + `SMTP_PASSWORD`, both or neither).
/// `Debug` never shows the password.
#[derive(Clone)]
pub struct SmtpCredentials {
    /// User name.
    pub username: String,
    password: SecretString,
}

impl SmtpCredentials {
    /// The password, for the SMTP client only.
    pub fn password(&self) -> &str {
        self.password.expose_secret()
    }
}

impl std::fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where and how to reach the SMTP server.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Host name or IP address (`SMTP_HOST`, required for `smtp`).
    pub host: String,
    /// Port (`SMTP_PORT`; default 25 with `none`, 587 with `starttls`, 465
    /// with `tls`).
    pub port: u16,
    /// Transport security (`SMTP_TLS`).
    pub tls: SmtpTls,
    /// Login, if the server wants one.
    pub credentials: Option<SmtpCredentials>,
}

/// Outgoing email settings.
#[derive(Clone)]
pub struct EmailConfig {
    /// The transport (`EMAIL_TRANSPORT` = `smtp` | `file` | `log`).
    pub transport: EmailTransport,
    /// Sender (`EMAIL_FROM`, default `RSOLV <no-reply@rsolv.local>`).
    pub from: lettre::message::Mailbox,
    /// Where customers write for help (`SUPPORT_EMAIL`, default
    /// `support@rsolv.dev`): named on the portal wherever the next step is
    /// "contact support" (a suspended account, a refused sign-up).
    pub support: String,
    /// Base of every link in an email, the site's public origin
    /// (`PUBLIC_BASE_URL`, default `http://127.0.0.1:3000`; also
    /// [`Config::public_base_url`]).
    pub links: EmailLinks,
    /// Attempts before a row is marked `failed` (`EMAIL_MAX_ATTEMPTS`, default 5).
    pub max_attempts: i32,
    /// First retry delay in seconds, doubled per attempt, jittered
    /// (`EMAIL_RETRY_BASE_SECONDS`, default 60).
    pub retry_base_seconds: u64,
    /// Longest retry delay in seconds (`EMAIL_RETRY_MAX_SECONDS`, default 3600).
    pub retry_max_seconds: u64,
    /// Seconds between polls of the outbox (`EMAIL_POLL_INTERVAL_SECONDS`, default 5).
    pub poll_interval_seconds: u64,
    /// Emails sent per poll at most (`EMAIL_BATCH_SIZE`, default 20).
    pub batch_size: usize,
    /// Timeout of one SMTP delivery in seconds (`EMAIL_SEND_TIMEOUT_SECONDS`,
    /// default 30). A claimed row's lease is twice this plus 30 s.
    pub send_timeout_seconds: u64,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("EmailConfig");
        match &self.transport {
            EmailTransport::Smtp(smtp) => d
                .field("transport", &"smtp")
                .field("smtp_host", &smtp.host)
                .field("smtp_port", &smtp.port)
                .field(
                    "smtp_tls",
                    &match smtp.tls {
                        SmtpTls::None => "none",
                        SmtpTls::StartTls(_) => "starttls",
                        SmtpTls::Tls(_) => "tls",
                    },
                )
                .field("smtp_credentials", &smtp.credentials),
            EmailTransport::File(dir) => d.field("transport", &"file").field("dir", dir),
            EmailTransport::Log => d.field("transport", &"log"),
        };
        d.field("from", &self.from.to_string())
            .field("public_base_url", &self.links.base())
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<'_, F>,
        links: EmailLinks,
    ) -> Result<Self, ConfigError> {
        let transport = match env.optional("EMAIL_TRANSPORT").as_deref() {
            None | Some("file") => EmailTransport::File(PathBuf::from(
                env.optional("EMAIL_FILE_DIR")
                    .unwrap_or_else(|| "target/emails".to_owned()),
            )),
            Some("log") => EmailTransport::Log,
            Some("smtp") => EmailTransport::Smtp(smtp_settings(env)?),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "EMAIL_TRANSPORT",
                    reason: "must be smtp, file or log".into(),
                })
            }
        };
        let from = env
            .optional("EMAIL_FROM")
            .unwrap_or_else(|| "RSOLV <no-reply@rsolv.local>".to_owned())
            .parse()
            .map_err(|_| ConfigError::Invalid {
                name: "EMAIL_FROM",
                reason: "must be an address, optionally with a name: Name <user@example.com>"
                    .into(),
            })?;
        let support = env
            .optional("SUPPORT_EMAIL")
            .unwrap_or_else(|| "support@rsolv.dev".to_owned());
        let support = crate::types::values::Email::parse(&support)
            .map_err(|_| ConfigError::Invalid {
                name: "SUPPORT_EMAIL",
                reason: "must be an email address: user@example.com".into(),
            })?
            .as_str()
            .to_owned();
        let retry_base_seconds = env.parsed("EMAIL_RETRY_BASE_SECONDS", 60, 1..=86_400)?;
        Ok(Self {
            transport,
            from,
            support,
            links,
            max_attempts: env.parsed("EMAIL_MAX_ATTEMPTS", 5, 1..=100)?,
            retry_base_seconds,
            retry_max_seconds: env.parsed(
                "EMAIL_RETRY_MAX_SECONDS",
                3600.max(retry_base_seconds),
                retry_base_seconds..=7 * 86_400,
            )?,
            poll_interval_seconds: env.parsed("EMAIL_POLL_INTERVAL_SECONDS", 5, 1..=3600)?,
            batch_size: env.parsed("EMAIL_BATCH_SIZE", 20, 1..=1000)?,
            send_timeout_seconds: env.parsed("EMAIL_SEND_TIMEOUT_SECONDS", 30, 1..=600)?,
        })
    }
}

fn smtp_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<'_, F>,
) -> Result<SmtpSettings, ConfigError> {
    use lettre::transport::smtp::client::TlsParameters;
    let host = env.required("SMTP_HOST")?.trim().to_owned();
    let tls_params = |host: &str| {
        TlsParameters::new(host.to_owned()).map_err(|_| ConfigError::Invalid {
            name: "SMTP_HOST",
            reason: "is not a name TLS can verify a certificate for".into(),
        })
    };
    let (tls, default_port) = match env.optional("SMTP_TLS").as_deref() {
        None | Some("starttls") => (SmtpTls::StartTls(tls_params(&host)?), 587),
        Some("tls") => (SmtpTls::Tls(tls_params(&host)?), 465),
        Some("none") => (SmtpTls::None, 25),
        Some(_) => {
            return Err(ConfigError::Invalid {
                name: "SMTP_TLS",
                reason: "must be none, starttls or tls".into(),
            })
        }
    };
    let credentials = match (env.optional("SMTP_USERNAME"), env.optional("SMTP_PASSWORD")) {
        (None, None) => None,
        (Some(username), Some(password)) => Some(SmtpCredentials {
            username,
            password: password.into(),
        }),
        (Some(_), None) => return Err(ConfigError::Missing("SMTP_PASSWORD")),
        (None, Some(_)) => return Err(ConfigError::Missing("SMTP_USERNAME")),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if credentials.is_some() && matches!(tls, SmtpTls::None) && !loopback {
        return Err(ConfigError::Invalid {
            name: "SMTP_TLS",
            reason:
                "none would send SMTP_PASSWORD in clear text to a remote host; use starttls or tls"
                    .into(),
        });
    }
    Ok(SmtpSettings {
        port: env.parsed("SMTP_PORT", default_port, 1..=65535)?,
        host,
        tls,
        credentials,
    })
}

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    /// The trimmed value, `None` when unset or blank.
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
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
    fn rate_limits_default_and_parse() {
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://localhost/x")])).unwrap();
        assert_eq!(config.rate_limit_signups_per_minute, 10);
        assert_eq!(config.rate_limit_action_per_hour, 500);
        assert!(!config.proxies.trust_headers);
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "3"),
            ("RATE_LIMIT_ACTION_PER_HOUR", "7"),
            ("TRUST_PROXY_HEADERS", "TRUE"),
        ]))
        .unwrap();
        assert_eq!(config.rate_limit_signups_per_minute, 3);
        assert_eq!(config.rate_limit_action_per_hour, 7);
        assert!(config.proxies.trust_headers);
        for (name, bad) in [
            ("TRUST_PROXY_HEADERS", "maybe"),
            ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "0"),
            ("RATE_LIMIT_ACTION_PER_HOUR", "-1"),
        ] {
            let vars: &'static [(&str, &str)] = Box::leak(Box::new([
                ("DATABASE_URL", "postgres://localhost/x"),
                (name, bad),
            ]));
            let err = Config::from_lookup(lookup(vars)).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn email_defaults_write_files_for_development() {
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://localhost/x")])).unwrap();
        let email = &config.email;
        assert!(
            matches!(&email.transport, EmailTransport::File(dir) if dir == std::path::Path::new("target/emails"))
        );
        assert_eq!(email.from.to_string(), "RSOLV <no-reply@rsolv.local>");
        assert_eq!(email.links.base(), "http://127.0.0.1:3000");
        assert_eq!(email.max_attempts, 5);
    }

    #[test]
    fn smtp_settings_are_parsed_and_the_password_never_shown() {
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("EMAIL_TRANSPORT", "smtp"),
            ("SMTP_HOST", "smtp.example.com"),
            ("SMTP_USERNAME", "mailer"),
            ("SMTP_PASSWORD", "hunter2-secret"),
            ("PUBLIC_BASE_URL", "https://app.rsolv.dev/"),
        ]))
        .unwrap();
        let EmailTransport::Smtp(smtp) = &config.email.transport else {
            panic!("expected smtp");
        };
        assert_eq!(smtp.port, 587);
        assert!(matches!(smtp.tls, SmtpTls::StartTls(_)));
        assert_eq!(
            smtp.credentials.as_ref().unwrap().password(),
            "hunter2-secret"
        );
        assert_eq!(config.email.links.base(), "https://app.rsolv.dev");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("mailer"), "{shown}");
    }

    #[test]
    fn every_secret_is_wrapped_and_debug_redacts_it() {
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://app:dbpass-secret@localhost/x"),
            ("PROVIDER_OPENAI_API_KEY", "sk-openai-secret"),
            ("PROVIDER_ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("STRIPE_SECRET_KEY", "sk_test_stripe-secret"),
            (
                "STRIPE_WEBHOOK_SECRETS",
                "whsec_one-secret,whsec_two-secret",
            ),
            ("GITHUB_WEBHOOK_SECRET", "gh-hook-secret"),
            ("EMAIL_TRANSPORT", "smtp"),
            ("SMTP_HOST", "smtp.example.com"),
            ("SMTP_USERNAME", "mailer"),
            ("SMTP_PASSWORD", "smtp-pass-secret"),
        ]))
        .unwrap();
        // Each secret field is a SecretString: its own Debug redacts.
        let shown = [
            format!("{config:?}"),
            format!("{:?}", config.database_url),
            format!("{:?}", config.provider_credentials),
            format!("{:?}", config.stripe.secret_key),
            format!("{:?}", config.stripe.webhook_secrets),
            format!("{:?}", config.github.webhook_secrets),
            format!("{:?}", config.email),
        ]
        .join("\n");
        assert!(
            !shown.contains("secret-") && !shown.contains("-secret"),
            "{shown}"
        );
        assert!(shown.contains("REDACTED"), "{shown}");
        // The values are still there for the code that needs them.
        assert_eq!(
            config.database_url.expose_secret(),
            "postgres://app:dbpass-secret@localhost/x"
        );
        assert_eq!(
            config.provider_credentials["openai"].expose_secret(),
            "sk-openai-secret"
        );
        assert_eq!(
            expose_all(&config.stripe.webhook_secrets),
            vec!["whsec_one-secret", "whsec_two-secret"]
        );
    }

    #[test]
    fn bad_email_settings_name_their_variable() {
        let base = [("DATABASE_URL", "postgres://localhost/x")];
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("EMAIL_TRANSPORT", "pigeon")], "EMAIL_TRANSPORT"),
            (&[("EMAIL_TRANSPORT", "smtp")], "SMTP_HOST"),
            (
                &[
                    ("EMAIL_TRANSPORT", "smtp"),
                    ("SMTP_HOST", "h"),
                    ("SMTP_TLS", "ssl"),
                ],
                "SMTP_TLS",
            ),
            (
                &[
                    ("EMAIL_TRANSPORT", "smtp"),
                    ("SMTP_HOST", "h"),
                    ("SMTP_USERNAME", "u"),
                ],
                "SMTP_PASSWORD",
            ),
            (
                &[
                    ("EMAIL_TRANSPORT", "smtp"),
                    ("SMTP_HOST", "mail.example.com"),
                    ("SMTP_TLS", "none"),
                    ("SMTP_USERNAME", "u"),
                    ("SMTP_PASSWORD", "p"),
                ],
                "SMTP_TLS",
            ),
            (&[("EMAIL_FROM", "not an address")], "EMAIL_FROM"),
            (&[("PUBLIC_BASE_URL", "ftp://x")], "PUBLIC_BASE_URL"),
            (&[("EMAIL_MAX_ATTEMPTS", "0")], "EMAIL_MAX_ATTEMPTS"),
        ];
        for (vars, name) in cases {
            let vars: Vec<(String, String)> = base
                .iter()
                .chain(vars.iter())
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let err = Config::from_lookup(move |n| {
                vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
            })
            .unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let local = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("EMAIL_TRANSPORT", "smtp"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", "1025"),
            ("SMTP_TLS", "none"),
        ]))
        .unwrap();
        assert!(
            matches!(&local.email.transport, EmailTransport::Smtp(s) if s.port == 1025 && matches!(s.tls, SmtpTls::None))
        );
    }

    #[test]
    fn public_base_url_default_and_rules() {
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://localhost/x")])).unwrap();
        assert_eq!(config.public_base_url(), "http://127.0.0.1:3000");
        assert!(!config.secure_cookies());
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("PUBLIC_BASE_URL", "https://rsolv.example/"),
        ]))
        .unwrap();
        assert_eq!(config.public_base_url(), "https://rsolv.example");
        assert!(config.secure_cookies());
        for bad in [
            "rsolv.example",
            "https://",
            "https://a.example/path",
            "ftp://a.example",
            "https://user:pw@a.example",
            "https://a.example?x=1",
        ] {
            let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
                ("DATABASE_URL", "postgres://localhost/x"),
                ("PUBLIC_BASE_URL", bad),
            ]));
            let err = Config::from_lookup(lookup(vars)).unwrap_err();
            assert!(err.to_string().contains("PUBLIC_BASE_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn env_forces_win_and_defaults_apply() {
        let flags = flags_from_lookup(&|name| match name {
            "FLAG_MAINTENANCE" => Some("true".into()),
            "BILLING_ENABLED" => Some("off".into()),
            _ => None,
        })
        .unwrap();
        assert!(flags.is_on(Flag::Maintenance));
        assert!(!flags.is_on(Flag::BillingEnabled));
        assert!(flags.is_on(Flag::AutoProvision));
        flags.set_stored(Flag::Maintenance, false);
        assert!(flags.is_on(Flag::Maintenance), "the force wins");
        flags.set_stored(Flag::AutoProvision, false);
        assert!(!flags.is_on(Flag::AutoProvision));
        assert!(flags_from_lookup(&|_| Some("maybe".into())).is_err());
        for flag in Flag::ALL {
            assert_eq!(Flag::parse(flag.key()), Some(flag));
        }
    }
}
