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
    /// Serve the web app and the JSON API on LEPTOS_SITE_ADDR.
    Serve {
        /// Apply pending migrations before serving (development; production
        /// runs `migrate` as its own step).
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// Revert every applied migration instead (runs each down.sql).
        #[arg(long)]
        revert_all: bool,
    },
}
