//! Runtime feature flags and kill switches (table `feature_flags`).
//!
//! Each [`Flag`] has a value stored in the database (a missing row means the
//! flag's [`Flag::default_value`]) and may be *forced* by an environment
//! variable ([`Flag::env_var`]), which always wins and cannot be switched
//! from the admin console.
//!
//! The application reads a cached snapshot ([`Flags`], shared by the
//! [`Config`](crate::server::config::Config) and the Stripe settings) so
//! every check is a synchronous atomic load. The cache is refreshed from the
//! database every `FLAGS_REFRESH_SECONDS` (default 5) so that several
//! instances agree, and at once in the instance where an admin switched a
//! flag ([`set_flag`] updates it after the commit).

use crate::server::db::schema::feature_flags;
use crate::server::db::DbPool;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A runtime switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `billing_enabled` (default on): off, no call is made to Stripe and
    /// jobs that call Stripe stay queued. Forced by `BILLING_ENABLED`.
    BillingEnabled,
    /// `auto_provision` (default on): off, self-service signups and the
    /// Action's onboarding go to the manual approval queue. Forced by
    /// `FLAG_AUTO_PROVISION`.
    AutoProvision,
    /// `signups_enabled` (default on): off, every signup is refused. Forced
    /// by `FLAG_SIGNUPS_ENABLED`.
    SignupsEnabled,
    /// `maintenance` (default off): on, the Action API (`/api/v1/*`)
    /// answers 503 with `Retry-After`. Forced by `FLAG_MAINTENANCE`.
    Maintenance,
    /// `use_legacy_claude_adapter` (default off): a flag the Action reads
    /// (RFC-095), served in the credential exchange's `feature_flags`.
    /// Forced by `FLAG_USE_LEGACY_CLAUDE_ADAPTER`.
    UseLegacyClaudeAdapter,
}

impl Flag {
    /// How many flags there are.
    pub const COUNT: usize = 5;

    /// Every flag, in display order.
    pub const ALL: [Flag; Flag::COUNT] = [
        Flag::BillingEnabled,
        Flag::AutoProvision,
        Flag::SignupsEnabled,
        Flag::Maintenance,
        Flag::UseLegacyClaudeAdapter,
    ];

    /// The flags the Action reads (RFC-095), served by the credential
    /// exchange as `"feature_flags": {"<key>": bool, …}` (ACTION_API.md § 7).
    pub const FOR_ACTION: [Flag; 1] = [Flag::UseLegacyClaudeAdapter];

    /// The `feature_flags.key` spelling.
    pub fn key(self) -> &'static str {
        match self {
            Flag::BillingEnabled => "billing_enabled",
            Flag::AutoProvision => "auto_provision",
            Flag::SignupsEnabled => "signups_enabled",
            Flag::Maintenance => "maintenance",
            Flag::UseLegacyClaudeAdapter => "use_legacy_claude_adapter",
        }
    }

    /// The environment variable that forces the flag when set.
    pub fn env_var(self) -> &'static str {
        match self {
            Flag::BillingEnabled => "BILLING_ENABLED",
            Flag::AutoProvision => "FLAG_AUTO_PROVISION",
            Flag::SignupsEnabled => "FLAG_SIGNUPS_ENABLED",
            Flag::Maintenance => "FLAG_MAINTENANCE",
            Flag::UseLegacyClaudeAdapter => "FLAG_USE_LEGACY_CLAUDE_ADAPTER",
        }
    }

    /// The value without a database row or an environment force.
    pub fn default_value(self) -> bool {
        !matches!(self, Flag::Maintenance | Flag::UseLegacyClaudeAdapter)
    }

    /// What the flag does, for the admin console.
    pub fn description(self) -> &'static str {
        match self {
            Flag::BillingEnabled => {
                "Kill switch for Stripe: off, no call is made to Stripe and Stripe jobs stay queued."
            }
            Flag::AutoProvision => {
                "Off: signups and Action onboarding wait in the approval queue instead of being provisioned."
            }
            Flag::SignupsEnabled => "Off: every new signup is refused.",
            Flag::Maintenance => "On: the Action API answers 503 (Retry-After) to every request.",
            Flag::UseLegacyClaudeAdapter => {
                "Sent to the Action in the credential exchange (RFC-095): on, it uses its legacy Claude adapter."
            }
        }
    }

    /// The flag with this key.
    pub fn parse(key: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The position in [`Flag::ALL`] (and in [`Flags::with_forced`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

struct Inner {
    forced: [Option<bool>; Flag::COUNT],
    stored: [AtomicBool; Flag::COUNT],
}

/// The cached flag snapshot: cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct Flags {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for flag in Flag::ALL {
            map.entry(&flag.key(), &(self.is_on(flag), self.forced(flag)));
        }
        map.finish()
    }
}

impl Flags {
    /// Flags with these forces (indexed like [`Flag::ALL`]) and the default
    /// stored values until the first [`Flags::refresh`].
    pub fn with_forced(forced: [Option<bool>; Flag::COUNT]) -> Self {
        Self {
            inner: Arc::new(Inner {
                forced,
                stored: Flag::ALL.map(|f| AtomicBool::new(f.default_value())),
            }),
        }
    }

    /// The effective value: the environment's force, else the cached
    /// database value.
    pub fn is_on(&self, flag: Flag) -> bool {
        self.forced(flag).unwrap_or_else(|| self.stored(flag))
    }

    /// The environment's force, if any.
    pub fn forced(&self, flag: Flag) -> Option<bool> {
        self.inner.forced[flag.index()]
    }

    /// The cached database value (ignoring any force).
    pub fn stored(&self, flag: Flag) -> bool {
        AtomicBool::load(&self.inner.stored[flag.index()], Ordering::Relaxed)
    }

    /// Sets the cached database value (after a committed change).
    pub fn set_stored(&self, flag: Flag, value: bool) {
        self.inner.stored[flag.index()].store(value, Ordering::Relaxed);
    }

    /// Reloads every flag from the database (a missing row: the default).
    ///
    /// Errors: the database error; the cache is left unchanged.
    pub async fn refresh(&self, conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
        let rows: Vec<(String, bool)> = feature_flags::table
            .select((feature_flags::key, feature_flags::enabled))
            .load(conn)
            .await?;
        for flag in Flag::ALL {
            let value = rows
                .iter()
                .find(|(k, _)| k == flag.key())
                .map_or(flag.default_value(), |(_, v)| *v);
            self.set_stored(flag, value);
        }
        Ok(())
    }

    /// Spawns a task (when a Tokio runtime is running) that refreshes the
    /// cache from `pool` now and then every `every`; it ends once every
    /// clone of these flags is dropped.
    pub fn spawn_refresher(&self, pool: DbPool, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            while let Some(inner) = weak.upgrade() {
                let flags = Flags { inner };
                match pool.get().await {
                    Ok(mut conn) => {
                        if let Err(error) = flags.refresh(&mut conn).await {
                            tracing::warn!(%error, "feature flags not refreshed");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "feature flags not refreshed"),
                }
                drop(flags);
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// One flag as the admin console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagState {
    /// Which.
    pub flag: Flag,
    /// Effective value.
    pub on: bool,
    /// The database value.
    pub stored: bool,
    /// The environment's force, if any (then not switchable).
    pub forced: Option<bool>,
}

/// Every flag's state from the cache.
pub fn flag_states(flags: &Flags) -> Vec<FlagState> {
    Flag::ALL
        .into_iter()
        .map(|flag| FlagState {
            flag,
            on: flags.is_on(flag),
            stored: flags.stored(flag),
            forced: flags.forced(flag),
        })
        .collect()
}

/// Message when an admin tries to switch a flag the environment forces.
pub const FORCED_MESSAGE: &str =
    "this flag is forced by an environment variable and cannot be switched here";

/// Stores `enabled` for `flag` (as changed by the staff user `actor_user_id`, `None` for the
/// command line)
/// in the caller's transaction, locking the row; returns the stored value
/// before (`None`: no row, the default applied). The caller writes its audit
/// entry in the same transaction and then updates the cache with
/// [`Flags::set_stored`] after the commit (see `server::admin::flags`).
///
/// Errors: [`StoreFlagError::Forced`] when the environment forces the flag
/// (message [`FORCED_MESSAGE`]); [`StoreFlagError::Database`].
pub async fn store_flag(
    conn: &mut AsyncPgConnection,
    flags: &Flags,
    actor_user_id: Option<i64>,
    flag: Flag,
    enabled: bool,
) -> Result<Option<bool>, StoreFlagError> {
    if flags.forced(flag).is_some() {
        return Err(StoreFlagError::Forced);
    }
    let before: Option<bool> = feature_flags::table
        .find(flag.key())
        .select(feature_flags::enabled)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    diesel::insert_into(feature_flags::table)
        .values((
            feature_flags::key.eq(flag.key()),
            feature_flags::enabled.eq(enabled),
            feature_flags::updated_by.eq(actor_user_id),
            feature_flags::updated_at.eq(Utc::now()),
        ))
        .on_conflict(feature_flags::key)
        .do_update()
        .set((
            feature_flags::enabled.eq(enabled),
            feature_flags::updated_by.eq(actor_user_id),
            feature_flags::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(before)
}

/// Why [`store_flag`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreFlagError {
    /// The environment forces the flag.
    #[error("{}", FORCED_MESSAGE)]
    Forced,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
