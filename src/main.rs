//! The server binary: `serve`, `migrate`, `worker`, `check-config`,
//! `create-admin` and `stripe-trigger` (see `server::cli`).
//!
//! Lifecycle of `serve` and `worker`: on SIGTERM (or Ctrl-C) the process
//! stops being ready (`/readyz` answers 503), stops accepting connections,
//! finishes the requests in flight and lets each worker finish its current
//! job, all within `SHUTDOWN_TIMEOUT_SECONDS`; past that it exits with
//! status 1 and says what was still running.

use clap::Parser;
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::cli::{Cli, Command};
use rsolv_platform::server::config::{Config, ExposeSecret, LogFormat};
use rsolv_platform::server::db::{
    revert_all_migrations, revert_last_migration, run_pending_migrations,
};
use rsolv_platform::server::email::worker::run_forever as run_email_worker;
use rsolv_platform::server::http::router;
use rsolv_platform::server::jobs;
use rsolv_platform::server::rate_limit;
use rsolv_platform::server::state::{AppState, Draining};
use rsolv_platform::server::stripe::trigger;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// How often ended rate-limit windows are deleted.
const RATE_LIMIT_PURGE_EVERY: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match LogFormat::from_lookup(|name| std::env::var(name).ok()) {
        Ok(LogFormat::Json) => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init(),
        Ok(LogFormat::Text) => tracing_subscriber::fmt().with_env_filter(filter).init(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    if let Command::CheckConfig = cli.command {
        return check_config().await;
    }
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
        return stripe_trigger(
            fixture,
            url,
            secret.as_ref().map(|s| s.expose_secret()),
            customer.as_deref(),
            *as_is,
        )
        .await;
    }
    let config = Config::from_env().map_err(|e| e.to_string())?;
    match command {
        Command::Migrate {
            revert_all: false,
            revert_last: true,
        } => {
            let reverted = revert_last_migration(config.database_url.expose_secret())
                .await
                .map_err(|e| e.to_string())?;
            println!("reverted migration {reverted}");
            Ok(())
        }
        Command::Migrate {
            revert_all: false,
            revert_last: false,
        } => {
            let applied = run_pending_migrations(config.database_url.expose_secret())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
            Ok(())
        }
        Command::Migrate {
            revert_all: true, ..
        } => {
            let reverted = revert_all_migrations(config.database_url.expose_secret())
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
            let drain_limit = Duration::from_secs(config.shutdown_timeout_seconds);
            let state = platform_state(config, leptos_options).map_err(|e| e.to_string())?;
            load_flags(&state).await?;
            serve_metrics(&state).await?;
            let stop = Stop::on_signal(state.draining.clone());
            let email = tokio::spawn(run_email_worker(state.clone(), stop.stopped()));
            let job_worker = tokio::spawn(jobs::run_forever(state, stop.stopped()));
            stop.stopped().await;
            drain_within(drain_limit, async {
                join_worker("email worker", email).await;
                join_worker("job worker", job_worker).await;
                Ok(())
            })
            .await
        }
        Command::Serve {
            migrate,
            no_email_worker,
            no_job_worker,
        } => {
            if migrate {
                let applied = run_pending_migrations(config.database_url.expose_secret())
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
            let mut leptos_options = leptos_options;
            // Hashed bundle names when `cargo leptos build` wrote them.
            leptos_options.hash_files =
                rsolv_platform::server::http::assets::hashed_build_present(&leptos_options);
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
            serve_metrics(&state).await?;
            let drain_limit = Duration::from_secs(state.config.shutdown_timeout_seconds);
            let stop = Stop::on_signal(state.draining.clone());
            // Awaited at shutdown: a job is never cut between its Stripe
            // call and recording the result.
            let job_worker = (!no_job_worker)
                .then(|| tokio::spawn(jobs::run_forever(state.clone(), stop.stopped())));
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
            let bound = listener.local_addr().unwrap_or(addr);
            tracing::info!("listening on http://{bound}");
            // Streamed pages are written in several small pieces: without
            // TCP_NODELAY, Nagle's algorithm holds each later piece until the
            // client's delayed ACK (~40 ms on Linux) — measured by
            // scripts/bench.sh on `GET /`.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
                }
            });
            rate_limit::spawn_purger(state.pool.clone(), RATE_LIMIT_PURGE_EVERY);
            let email_worker = (!no_email_worker)
                .then(|| tokio::spawn(run_email_worker(state.clone(), stop.stopped())));
            // Flushed once the last request was answered: no counted hit lost.
            let action_limiter = state.action_limiter.clone();
            // The peer address is the client IP of the per-IP rate limits.
            let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
            let mut server = tokio::spawn(
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.stopped())
                    .into_future(),
            );
            // `biased`: once the stop has fired the server's graceful
            // shutdown may finish before this task is polled again; both
            // branches are then ready and the stop must win (a random pick
            // exited with status 1 under load).
            tokio::select! {
                biased;
                () = stop.stopped() => {}
                ended = &mut server => {
                    return Err(format!("the HTTP server stopped on its own: {}", joined(ended)));
                }
            }
            drain_within(drain_limit, async {
                let served = server.await;
                tracing::info!("HTTP server drained: in-flight requests finished");
                if let Err(error) = action_limiter.flush().await {
                    tracing::error!(%error, "the last Action API rate-limit counts were not synced");
                }
                if let Some(email_worker) = email_worker {
                    join_worker("email worker", email_worker).await;
                }
                if let Some(job_worker) = job_worker {
                    join_worker("job worker", job_worker).await;
                }
                match served {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
        }
        Command::CreateAdmin { email, invite } => create_admin(config, &email, invite).await,
        Command::BenchReference { addr } => {
            rsolv_platform::server::bench_reference::serve(&config, addr).await
        }
        Command::StripeTrigger { .. } | Command::CheckConfig => {
            unreachable!("handled before loading the configuration")
        }
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

/// Serves `GET /metrics` on `METRICS_ADDR` in the background, when set
/// (see `server::http::metrics`); the listener ends with the process.
async fn serve_metrics(state: &AppState) -> Result<(), String> {
    let Some(addr) = state.config.metrics_addr else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (METRICS_ADDR): {e}"))?;
    tracing::info!("metrics on http://{addr}/metrics");
    let app = rsolv_platform::server::http::metrics::metrics_router(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener ended");
        }
    });
    Ok(())
}

async fn load_flags(state: &AppState) -> Result<(), String> {
    let mut conn = state.conn().await.map_err(|e| e.to_string())?;
    state
        .flags()
        .refresh(&mut conn)
        .await
        .map_err(|e| format!("cannot read the feature flags: {e}"))
}

/// The process-wide stop: every part (HTTP server, workers) waits on
/// [`Stop::stopped`], fired once by SIGTERM or Ctrl-C.
struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Listens for the signal; when it comes, marks the process draining
    /// (`/readyz` answers 503) and stops every waiter.
    fn on_signal(draining: Draining) -> Self {
        let (fire, stopped) = watch::channel(false);
        let signal = shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            tracing::info!(
                "shutdown signal received: draining (not ready, no new connections; \
                 in-flight requests and current jobs finish)"
            );
            draining.start();
            let _ = fire.send(true);
        });
        Self(stopped)
    }

    /// Resolves once the stop has fired.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.clone();
        async move {
            // An error means the sender is gone: stop as well.
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Runs the drain `work`, bounded by `limit` (`SHUTDOWN_TIMEOUT_SECONDS`).
async fn drain_within(
    limit: Duration,
    work: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => {
            tracing::info!("drained; exiting");
            result
        }
        Err(_) => {
            let message = format!(
                "the drain took longer than SHUTDOWN_TIMEOUT_SECONDS ({} s): \
                 exiting with requests or jobs unfinished",
                limit.as_secs()
            );
            tracing::error!("{message}");
            Err(message)
        }
    }
}

async fn join_worker(name: &str, worker: tokio::task::JoinHandle<()>) {
    match worker.await {
        Ok(()) => tracing::info!(worker = name, "worker finished its current job and stopped"),
        Err(e) => tracing::error!(worker = name, error = %e, "worker ended abnormally"),
    }
}

fn joined<T: std::fmt::Debug>(ended: Result<T, tokio::task::JoinError>) -> String {
    match ended {
        Ok(value) => format!("{value:?}"),
        Err(e) => e.to_string(),
    }
}

/// `check-config`: prints every check; exit status 1 when one failed.
async fn check_config() -> ExitCode {
    use rsolv_platform::server::preflight::{run, Outcome};
    let leptos_config = std::env::var("LEPTOS_CONFIG").unwrap_or_else(|_| "Leptos.toml".to_owned());
    let checks = run(|name| std::env::var(name).ok(), &leptos_config).await;
    for check in &checks {
        println!("{check}");
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed == 0 {
        println!("check-config: everything needed is in place");
        ExitCode::SUCCESS
    } else {
        println!("check-config: {failed} check(s) failed");
        ExitCode::FAILURE
    }
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called (not when first polled), so a signal sent right after start-up is
/// never lost to the default action.
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {},
                        _ = interrupt.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
