//! The binary's subcommands.

use crate::server::billing::metered::Metered;
use crate::server::config::Config;
use crate::server::db::DbSetupError;
use crate::server::state::AppState;
use crate::server::stripe::processor::StripeProcessor;
use clap::{Parser, Subcommand};
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// The platform's [`AppState`]: the pool and configuration with the Stripe
/// implementation of the payment-processor port (built from
/// `config.stripe`, timed and counted by `billing::metered`). The wiring's one place that picks the processor.
///
/// Errors: [`DbSetupError`] for an unusable database URL.
pub fn platform_state(
    config: Config,
    leptos_options: LeptosOptions,
) -> Result<AppState, DbSetupError> {
    let processor = Arc::new(Metered::new(StripeProcessor::new(config.stripe.clone())));
    AppState::new(config, leptos_options, processor)
}

/// rsolv-platform: billing, provisioning and the customer portal behind the
/// RSOLV GitHub Action. Configuration comes from environment variables
/// (see `.env.example`).
#[derive(Debug, Parser)]
#[command(name = "rsolv-platform", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A secret given on the command line, wrapped at once so `Debug` redacts it.
fn secret_arg(
    value: &str,
) -> Result<crate::server::config::SecretString, std::convert::Infallible> {
    Ok(value.into())
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app and the JSON API on LEPTOS_SITE_ADDR, with the
    /// email outbox worker running in the background.
    Serve {
        /// Apply pending migrations before serving (development; production
        /// runs `migrate` as its own step).
        #[arg(long)]
        migrate: bool,
        /// Do not run the email worker in this process (run `worker` as a
        /// process of its own instead).
        #[arg(long)]
        no_email_worker: bool,
        /// Do not run the job queue's worker in this process (run `worker`
        /// as a process of its own instead): the instance only serves.
        #[arg(long)]
        no_job_worker: bool,
    },
    /// Run only the workers, until Ctrl-C or SIGTERM: the email outbox
    /// worker (sends queued emails; see EMAIL_TRANSPORT) and the job queue's
    /// worker (Stripe jobs, webhook processing; `serve` runs one too).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Revert every applied migration instead (runs each down.sql).
        #[arg(long, conflicts_with = "revert_last")]
        revert_all: bool,
        /// Revert only the newest applied migration (its down.sql): the
        /// rollback runbook's step before deploying the previous release.
        #[arg(long)]
        revert_last: bool,
    },
    /// Pre-flight: parse every setting, reach the database (and report
    /// pending migrations), SMTP and Stripe, print one line per check
    /// (never a secret) and exit 1 if any failed.
    CheckConfig,
    /// Create a staff admin (the first one, or any other): reads the
    /// password from the first line of stdin, or with `--invite` emails an
    /// invite to set one (the email worker sends it). The address must not
    /// belong to a customer account. Recorded in the admin audit log.
    CreateAdmin {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Email an invite instead of reading a password from stdin.
        #[arg(long)]
        invite: bool,
    },
    /// Sign a Stripe event fixture with a webhook secret and POST it to the
    /// webhook endpoint (the Stripe CLI's `trigger`, offline).
    StripeTrigger {
        /// The event JSON, e.g. tests/fixtures/stripe/invoice.paid.json.
        fixture: std::path::PathBuf,
        /// Webhook endpoint.
        #[arg(long, default_value = "http://127.0.0.1:3000/webhooks/stripe")]
        url: String,
        /// Endpoint secret (`whsec_…`); default: the first of
        /// STRIPE_WEBHOOK_SECRETS. Redacted in `Debug`.
        #[arg(long, value_parser = secret_arg)]
        secret: Option<crate::server::config::SecretString>,
        /// Point the event at this Stripe Customer (`cus_…`).
        #[arg(long)]
        customer: Option<String>,
        /// Send the fixture's own id and timestamp (default: a fresh id and
        /// the current time, so each trigger is a new event).
        #[arg(long)]
        as_is: bool,
    },
    /// The benchmark's reference server (`scripts/bench.sh`): axum and one
    /// indexed read of `api_keys` per `POST /reference`, on ADDR.
    #[command(hide = true)]
    BenchReference {
        /// Address to listen on, e.g. 127.0.0.1:3961.
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
}
