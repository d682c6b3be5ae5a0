//! The application state shared by every handler.

use crate::server::billing::ports::PaymentProcessor;
use crate::server::billing::BillingError;
use crate::server::config::{Config, ExposeSecret};
use crate::server::db::{build_pool, DbConn, DbPool, DbSetupError};
use crate::server::rate_limit::SyncedLimiter;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// Pool, configuration, the payment processor and Leptos options; cheap
/// to clone.
#[derive(Clone)]
pub struct AppState {
    /// The PostgreSQL pool.
    pub pool: DbPool,
    /// The typed configuration.
    pub config: Arc<Config>,
    /// Leptos's runtime settings (from `Leptos.toml`).
    pub leptos_options: LeptosOptions,
    /// The payment processor (the one instance: Stripe, built from
    /// `config.stripe` by the wiring; tests may pass another one).
    pub processor: Arc<dyn PaymentProcessor>,
    /// Records fix reports with group commit per customer (issue 13).
    pub fix_recorder: crate::server::billing::fix_recorder::FixRecorder,
    /// Set once the process starts draining (SIGTERM): `/readyz` answers
    /// 503 from then on. Shared by every clone.
    pub draining: Draining,
    /// The Action API's per-key rate limit, counted in memory and synced
    /// to PostgreSQL every `RATE_LIMIT_SYNC_MILLIS` (see
    /// [`SyncedLimiter`] for the error bound across instances). Shared by
    /// every clone; flush it at shutdown.
    pub action_limiter: SyncedLimiter,
}

/// Whether the process is draining (stops being ready, finishes its work,
/// exits). Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<std::sync::atomic::AtomicBool>);

impl Draining {
    /// Marks the process as draining (idempotent).
    pub fn start(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Draining::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    /// Builds the state and its pool (connections open lazily) around
    /// `processor`, the one payment processor. The wiring
    /// ([`crate::server::cli::platform_state`]) passes the Stripe one.
    ///
    /// Errors: [`DbSetupError`] for an unusable database URL.
    pub fn new(
        config: Config,
        leptos_options: LeptosOptions,
        processor: Arc<dyn PaymentProcessor>,
    ) -> Result<Self, DbSetupError> {
        let pool = build_pool(
            config.database_url.expose_secret(),
            config.database_pool_size,
            config.statement_timeout_seconds,
        )?;
        // Keeps the feature-flag cache in step with the database (ends when
        // the configuration is dropped).
        config.flags().spawn_refresher(
            pool.clone(),
            std::time::Duration::from_secs(config.flags_refresh_seconds),
        );
        // Syncs the Action API's counts (ends when the state is dropped).
        let action_limiter = SyncedLimiter::new(
            pool.clone(),
            std::time::Duration::from_millis(config.rate_limit_sync_millis),
        );
        action_limiter.spawn_syncer();
        Ok(Self {
            action_limiter,
            fix_recorder: crate::server::billing::fix_recorder::FixRecorder::new(pool.clone()),
            pool,
            config: Arc::new(config),
            leptos_options,
            processor,
            draining: Draining::default(),
        })
    }

    /// The same state with another payment processor (e.g. an in-memory
    /// one for model-based tests).
    pub fn with_processor(mut self, processor: Arc<dyn PaymentProcessor>) -> Self {
        self.processor = processor;
        self
    }

    /// The runtime feature flags (cached; see [`crate::server::flags`]).
    pub fn flags(&self) -> &crate::server::flags::Flags {
        self.config.flags()
    }

    /// One connection from the pool.
    ///
    /// Errors: [`BillingError::Pool`] when none can be had in time.
    pub async fn conn(&self) -> Result<DbConn, BillingError> {
        self.pool
            .get()
            .await
            .map_err(|e| BillingError::Pool(e.to_string()))
    }
}
