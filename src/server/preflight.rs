//! `rsolv-platform check-config`: the pre-flight check run before a deploy
//! (see `docs/runbooks/deploy.md`). It parses every setting, then reaches
//! each dependency the way the server does, and prints one line per check:
//!
//! ```text
//! ok    settings: 52 variables parsed (LOG_FORMAT text)
//! ok    database: PostgreSQL 15.20, TLS on (sslmode=require), no pending migration
//! FAIL  email: SMTP: Connection refused (os error 111)
//! ok    stripe: reached https://api.stripe.com with a test-mode key
//! warn  stripe: STRIPE_PUBLISHABLE_KEY is not set: cards cannot be added
//! ```
//!
//! A secret never appears: messages name variables, never their values.
//! The exit status is 1 when any line is `FAIL`.

use crate::server::billing::ports::PaymentProcessor;
use crate::server::config::{Config, ConfigError, ExposeSecret, LogFormat, PROVIDERS};
use crate::server::db::{DbTarget, MIGRATIONS};
use crate::server::email::transport::Mailer;
use crate::server::stripe::processor::StripeProcessor;
use diesel::QueryableByName;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use std::time::Duration;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It works.
    Ok,
    /// It works, but something is probably not meant (e.g. no publishable key).
    Warn,
    /// It does not work: the deploy should stop.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked: `settings`, `leptos`, `database`, `email`, `stripe`, `providers`.
    pub subject: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// What was found (never a secret).
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        write!(f, "{tag}  {}: {}", self.subject, self.detail)
    }
}

fn check(subject: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
    Check {
        subject,
        outcome,
        detail: detail.into(),
    }
}

/// How long each dependency gets to answer.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every check with the settings `lookup` returns (the process
/// environment in the binary) and the Leptos settings file
/// `leptos_config`. Stops after the settings when they do not parse (the
/// rest needs them).
pub async fn run(lookup: impl Fn(&str) -> Option<String>, leptos_config: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let log_format = LogFormat::from_lookup(&lookup);
    if let Err(e) = &log_format {
        checks.push(check("settings", Outcome::Fail, e.to_string()));
    }
    let config = match Config::from_lookup(&lookup) {
        Ok(config) => config,
        Err(e) => {
            checks.push(check("settings", Outcome::Fail, describe(&e)));
            return checks;
        }
    };
    if log_format.is_ok() {
        checks.push(check(
            "settings",
            Outcome::Ok,
            format!(
                "every variable parsed; {:?}",
                log_format.unwrap_or(LogFormat::Text)
            ),
        ));
    }
    checks.push(
        match leptos::config::get_configuration(Some(leptos_config)) {
            Ok(conf) => check(
                "leptos",
                Outcome::Ok,
                format!(
                    "{leptos_config} read; listening on {}, site root {}",
                    conf.leptos_options.site_addr, conf.leptos_options.site_root
                ),
            ),
            Err(e) => check(
                "leptos",
                Outcome::Fail,
                format!("cannot read {leptos_config} (LEPTOS_CONFIG): {e}"),
            ),
        },
    );
    checks.push(database(config.database_url.expose_secret()).await);
    checks.push(email(&config).await);
    checks.extend(stripe(&config).await);
    checks.push(if config.provider_credentials.is_empty() {
        check(
            "providers",
            Outcome::Warn,
            format!(
                "no AI provider credential set ({}): the credential exchange vends none",
                PROVIDERS
                    .iter()
                    .map(|(_, v)| *v)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        check(
            "providers",
            Outcome::Ok,
            format!(
                "credentials set for {}",
                config
                    .provider_credentials
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    });
    if !config.secure_cookies() {
        checks.push(check(
            "settings",
            Outcome::Warn,
            "PUBLIC_BASE_URL is not https: session cookies are not marked Secure",
        ));
    }
    checks
}

fn describe(e: &ConfigError) -> String {
    // ConfigError's messages name the variable and the rule, never the value.
    e.to_string()
}

#[derive(QueryableByName)]
struct ServerFacts {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

async fn database(url: &str) -> Check {
    let target = match DbTarget::parse(url) {
        Ok(target) => target,
        Err(e) => return check("database", Outcome::Fail, format!("DATABASE_URL: {e}")),
    };
    let mut conn = match tokio::time::timeout(REACH_TIMEOUT, target.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return check("database", Outcome::Fail, format!("cannot connect: {e}")),
        Err(_) => {
            return check(
                "database",
                Outcome::Fail,
                format!("no answer within {} s", REACH_TIMEOUT.as_secs()),
            )
        }
    };
    let facts = diesel::sql_query(
        "SELECT current_setting('server_version') AS version, \
         coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl",
    )
    .get_result::<ServerFacts>(&mut conn)
    .await;
    let facts = match facts {
        Ok(facts) => facts,
        Err(e) => return check("database", Outcome::Fail, format!("query failed: {e}")),
    };
    let pending = pending_migrations(conn).await;
    let tls = format!(
        "TLS {} (sslmode={})",
        if facts.ssl { "on" } else { "off" },
        target.ssl_mode().as_str()
    );
    match pending {
        Ok(pending) if pending.is_empty() => check(
            "database",
            Outcome::Ok,
            format!("PostgreSQL {}, {tls}, no pending migration", facts.version),
        ),
        Ok(pending) => check(
            "database",
            Outcome::Fail,
            format!(
                "PostgreSQL {}, {tls}, {} pending migration(s) ({}): run `rsolv-platform migrate`",
                facts.version,
                pending.len(),
                pending.join(", ")
            ),
        ),
        Err(e) => check(
            "database",
            Outcome::Fail,
            format!("cannot read the migrations: {e}"),
        ),
    }
}

async fn pending_migrations(conn: AsyncPgConnection) -> Result<Vec<String>, String> {
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        conn.pending_migrations(MIGRATIONS)
            .map(|list| {
                list.iter()
                    .map(|m| m.name().version().to_string())
                    .collect()
            })
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn email(config: &Config) -> Check {
    match Mailer::new(&config.email).check().await {
        Ok(detail) => check("email", Outcome::Ok, detail),
        Err(detail) => check("email", Outcome::Fail, detail),
    }
}

async fn stripe(config: &Config) -> Vec<Check> {
    let stripe = &config.stripe;
    let mut checks = Vec::new();
    let key_mode = |key: &str| {
        if key.contains("_live_") {
            "live"
        } else if key.contains("_test_") {
            "test"
        } else {
            "unknown"
        }
    };
    if stripe.webhook_secrets.is_empty() {
        checks.push(check(
            "stripe",
            Outcome::Fail,
            "STRIPE_WEBHOOK_SECRETS is empty: every Stripe webhook would be rejected",
        ));
    }
    let secret_key = stripe.secret_key.as_ref().map(|k| k.expose_secret());
    match (secret_key, &stripe.publishable_key) {
        (Some(secret), Some(public)) if key_mode(secret) != key_mode(public) => checks.push(check(
            "stripe",
            Outcome::Fail,
            format!(
                "STRIPE_SECRET_KEY is a {}-mode key but STRIPE_PUBLISHABLE_KEY a {}-mode one",
                key_mode(secret),
                key_mode(public)
            ),
        )),
        (_, None) => checks.push(check(
            "stripe",
            Outcome::Warn,
            "STRIPE_PUBLISHABLE_KEY is not set: the portal cannot add cards",
        )),
        _ => {}
    }
    let Some(secret) = secret_key else {
        checks.push(check(
            "stripe",
            Outcome::Fail,
            "STRIPE_SECRET_KEY is not set: Stripe jobs would stay queued",
        ));
        return checks;
    };
    if !stripe.billing_enabled() {
        checks.push(check(
            "stripe",
            Outcome::Warn,
            "billing is off (BILLING_ENABLED=false): the processor was not called",
        ));
        return checks;
    }
    // A harmless read: the Customers carrying a metadata id no customer has.
    let processor = StripeProcessor::new(stripe.clone());
    let reached = tokio::time::timeout(
        REACH_TIMEOUT,
        processor.find_customers(-1, "check-config@rsolv.invalid"),
    )
    .await;
    checks.push(match reached {
        Ok(Ok(_)) => check(
            "stripe",
            Outcome::Ok,
            format!(
                "reached {} with a {}-mode key",
                stripe.api_base,
                key_mode(secret)
            ),
        ),
        Ok(Err(e)) => check("stripe", Outcome::Fail, format!("{}: {e}", stripe.api_base)),
        Err(_) => check(
            "stripe",
            Outcome::Fail,
            format!(
                "{}: no answer within {} s",
                stripe.api_base,
                REACH_TIMEOUT.as_secs()
            ),
        ),
    });
    checks
}
