//! The server binary: `serve`, `migrate`, `worker`, `create-admin` and
//! `stripe-trigger` (see
//! `server::cli`).

use clap::Parser;
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::cli::{Cli, Command};
use rsolv_platform::server::config::Config;
use rsolv_platform::server::db::{revert_all_migrations, run_pending_migrations};
use rsolv_platform::server::email::worker::run_forever as run_email_worker;
use rsolv_platform::server::http::router;
use rsolv_platform::server::jobs;
use rsolv_platform::server::rate_limit;
use rsolv_platform::server::state::AppState;
use rsolv_platform::server::stripe::trigger;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// How often ended rate-limit windows are deleted.
const RATE_LIMIT_PURGE_EVERY: Duration = Duration::from_secs(300);

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
    if let Command::StripeTrigger {
        fixture,
        url,
        secret,
        customer,
        as_is,
    } = &command
    {
        return stripe_trigger(fixture, url, secret.as_deref(), customer.as_deref(), *as_is).await;
    }
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
        Command::Worker => {
            tracing::info!(?config, "configuration loaded");
            // The worker needs no Leptos settings; the state wants some.
            let leptos_options = leptos::config::LeptosOptions::builder()
                .output_name("rsolv-platform")
                .build();
            let state = platform_state(config, leptos_options).map_err(|e| e.to_string())?;
            load_flags(&state).await?;
            tokio::join!(
                run_email_worker(state.clone(), shutdown_signal()),
                jobs::run_forever(state, shutdown_signal()),
            );
            Ok(())
        }
        Command::Serve {
            migrate,
            no_email_worker,
        } => {
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
            if config.ai.vending
                == rsolv_platform::server::config::ai::CredentialVending::Passthrough
            {
                tracing::warn!(
                    "{}",
                    rsolv_platform::server::config::ai::PASSTHROUGH_WARNING
                );
            }
            let state = platform_state(config, leptos_options).map_err(|e| e.to_string())?;
            // Flags are read before the first request (maintenance mode must
            // hold from the first answer).
            load_flags(&state).await?;
            tokio::spawn(jobs::run_forever(state.clone(), shutdown_signal()));
            // Charges stuck pending without a live job get a new one.
            rsolv_platform::server::stripe::charges::spawn_sweeper(
                state.clone(),
                rsolv_platform::server::stripe::charges::SWEEP_EVERY,
            );
            // The nightly reconciliation, enqueued once per UTC day.
            tokio::spawn(jobs::nightly::run_periodically(state.clone()));
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
            rate_limit::spawn_purger(state.pool.clone(), RATE_LIMIT_PURGE_EVERY);
            // Dropping `stop` tells the email worker to finish its batch and stop.
            let (stop, mut stopped) = tokio::sync::watch::channel(());
            let worker = (!no_email_worker).then(|| {
                tokio::spawn(run_email_worker(state.clone(), async move {
                    let _ = stopped.changed().await;
                }))
            });
            // The peer address is the client IP of the per-IP rate limits.
            let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| e.to_string());
            drop(stop);
            if let Some(worker) = worker {
                if let Err(e) = worker.await {
                    tracing::error!(error = %e, "email worker ended abnormally");
                }
            }
            served
        }
        Command::CreateAdmin { email, invite } => create_admin(config, &email, invite).await,
        Command::StripeTrigger { .. } => unreachable!("handled before loading the configuration"),
    }
}

/// `create-admin`: a staff admin with a password read from stdin, or an
/// invite.
async fn create_admin(config: Config, email: &str, invite: bool) -> Result<(), String> {
    use rsolv_platform::server::admin::staff::{create_admin, AdminSetup};
    use rsolv_platform::server::admin::Admin;
    use rsolv_platform::server::auth::password::{hash_password, Password};
    use rsolv_platform::types::values::Email;
    let email = Email::parse(email).map_err(|e| e.0)?;
    let setup = if invite {
        AdminSetup::Invite
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        let password = Password::parse(line.trim_end_matches(['\r', '\n'])).map_err(|e| e.0)?;
        AdminSetup::Password(hash_password(password).await.map_err(|e| e.to_string())?)
    };
    let leptos_options = leptos::config::LeptosOptions::builder()
        .output_name("rsolv-platform")
        .build();
    let state = platform_state(config, leptos_options).map_err(|e| e.to_string())?;
    let mut conn = state.conn().await.map_err(|e| e.to_string())?;
    let user_id = create_admin(
        &mut conn,
        &state.config.email.links,
        &Admin::cli(),
        &email,
        setup,
    )
    .await
    .map_err(|e| e.to_string())?;
    if invite {
        println!(
            "staff admin {user_id} created for {}; the invite email is queued",
            email.as_str()
        );
    } else {
        println!(
            "staff admin {user_id} created for {}; sign in at /login",
            email.as_str()
        );
    }
    Ok(())
}

async fn stripe_trigger(
    fixture: &std::path::Path,
    url: &str,
    secret: Option<&str>,
    customer: Option<&str>,
    as_is: bool,
) -> Result<(), String> {
    let secret = match secret {
        Some(s) => s.to_owned(),
        None => std::env::var("STRIPE_WEBHOOK_SECRETS")
            .ok()
            .and_then(|v| {
                v.split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(str::to_owned)
            })
            .ok_or("no --secret and STRIPE_WEBHOOK_SECRETS is not set")?,
    };
    let text = std::fs::read_to_string(fixture)
        .map_err(|e| format!("cannot read {}: {e}", fixture.display()))?;
    let event = trigger::prepare_fixture(
        &text,
        &trigger::FixtureOptions {
            fresh: !as_is,
            customer,
            ..Default::default()
        },
    )?;
    let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
    let (status, answer) = trigger::post_signed(url, &secret, body).await?;
    println!(
        "{} {} -> {status} {answer}",
        event["type"].as_str().unwrap_or("?"),
        event["id"].as_str().unwrap_or("?")
    );
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

async fn load_flags(state: &AppState) -> Result<(), String> {
    let mut conn = state.conn().await.map_err(|e| e.to_string())?;
    state
        .flags()
        .refresh(&mut conn)
        .await
        .map_err(|e| format!("cannot read the feature flags: {e}"))
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
