//! The binary's subcommands.

use clap::{Parser, Subcommand};

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
    },
    /// Run only the email outbox worker (sends queued emails; see
    /// EMAIL_TRANSPORT) until Ctrl-C or SIGTERM.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Revert every applied migration instead (runs each down.sql).
        #[arg(long)]
        revert_all: bool,
    },
}
