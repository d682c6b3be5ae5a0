//! The server binary: `serve` and `migrate` (see `server::cli`).

use clap::Parser;
use rsolv_platform::server::cli::{Cli, Command};
use rsolv_platform::server::config::Config;
use rsolv_platform::server::db::{revert_all_migrations, run_pending_migrations};
use rsolv_platform::server::http::router;
use rsolv_platform::server::state::AppState;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    match command {
        Command::Migrate { revert_all: false } => {
            let applied = run_pending_migrations(&config.database_url)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
            Ok(())
        }
        Command::Migrate { revert_all: true } => {
            let reverted = revert_all_migrations(&config.database_url)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "reverted {} migration(s): {}",
                reverted.len(),
                reverted.join(", ")
            );
            Ok(())
        }
        Command::Serve { migrate } => {
            if migrate {
                let applied = run_pending_migrations(&config.database_url)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(count = applied.len(), "migrations applied");
            }
            let leptos_config =
                std::env::var("LEPTOS_CONFIG").unwrap_or_else(|_| "Leptos.toml".to_owned());
            let leptos_options = leptos::config::get_configuration(Some(&leptos_config))
                .map_err(|e| {
                    format!("cannot read Leptos settings from {leptos_config} (LEPTOS_CONFIG): {e}")
                })?
                .leptos_options;
            let addr = leptos_options.site_addr;
            tracing::info!(?config, "configuration loaded");
            let state = AppState::new(config, leptos_options).map_err(|e| e.to_string())?;
            // Expired sessions and old sign-in attempts, deleted hourly.
            tokio::spawn(
                rsolv_platform::server::auth::store::delete_expired_periodically(
                    state.pool.clone(),
                    std::time::Duration::from_secs(3600),
                ),
            );
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (LEPTOS_SITE_ADDR): {e}"))?;
            tracing::info!("listening on http://{addr}");
            axum::serve(listener, router(state))
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
