//! Rate limits whose state lives in PostgreSQL, so every instance of the
//! server counts against the same limits.
//!
//! The algorithm is a fixed window per bucket, anchored at the bucket's
//! first hit: the first hit opens a window of `window` length, every hit in
//! it is counted, and hits beyond `limit` are refused until the window ends;
//! the next hit after that opens a new window. One hit is one atomic
//! `INSERT … ON CONFLICT DO UPDATE` on `rate_limit_counters` (see
//! `migrations/2026-11-21-000004_rate_limits`), so concurrent requests on
//! any number of instances are counted exactly, with no lock held between
//! statements.
//!
//! Why not a library: the well-kept Rust rate limiters (`governor`,
//! `tower_governor`) keep their state in process memory, which each
//! instance would count separately; none has a PostgreSQL store. Why a
//! window anchored at the first hit rather than at wall-clock boundaries: a
//! burst is counted in one window whenever it happens (a boundary-aligned
//! window can split ten quick requests into two windows of five). The known
//! cost of fixed windows stays: a client can spend a full window's `limit`
//! at the end of one window and again at the start of the next.
//!
//! Callers (middleware in `server::http::rate_limit`, and any code that
//! throttles something itself, e.g. login attempts per account and per IP)
//! call [`check`] once per attempt and refuse the attempt when the
//! [`Decision`] says so: exact, one upsert per attempt.
//!
//! The Action API, whose every call is limited and which one key may call
//! many times a second, counts with a [`SyncedLimiter`] instead: hits are
//! counted in memory and added to the same counters in batches, one
//! statement per sync interval, at the price of a stated error bound
//! across instances (see its documentation).

mod synced;
pub use synced::SyncedLimiter;

use crate::server::db::DbPool;
use diesel::sql_types::{Array, BigInt, Double, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The outcome of one counted attempt, with what the `RateLimit-*` headers
/// report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the attempt is within the limit (refuse it when false).
    pub allowed: bool,
    /// Attempts allowed per window.
    pub limit: u32,
    /// Attempts left in the current window after this one (0 when refused).
    pub remaining: u32,
    /// Whole seconds until the current window ends and the count resets
    /// (at least 1); when refused, how long to wait before retrying.
    pub reset_after_secs: u64,
}

/// Longest bucket name stored as given; longer names are stored as their
/// SHA-256 (`sha256:<hex>`), so callers may key on long values such as
/// email addresses.
pub const MAX_PLAIN_BUCKET_LEN: usize = 120;

/// One bucket's count as the database holds it after an upsert.
#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = Text)]
    bucket: String,
    #[diesel(sql_type = BigInt)]
    hits: i64,
    /// `expires_at` as seconds since the epoch: the window's identity.
    #[diesel(sql_type = Double)]
    expires_epoch: f64,
    /// Seconds from the statement's `now()` to `expires_at`.
    #[diesel(sql_type = Double)]
    remaining_secs: f64,
}

/// The upsert of [`check`] and of [`SyncedLimiter`]'s syncs: adds each
/// bucket's `hits` to its counter, opening a new window of `window_secs`
/// when there is none or it has ended, and returns every bucket's count.
/// Rows are written in bucket order, so concurrent batches from several
/// instances cannot deadlock.
const ADD_HITS: &str =
    "INSERT INTO rate_limit_counters AS c (bucket, window_start, expires_at, hits) \
     SELECT t.bucket, now(), now() + make_interval(secs => t.window_secs), t.hits \
     FROM unnest($1::text[], $2::float8[], $3::int8[]) AS t(bucket, window_secs, hits) \
     ORDER BY t.bucket \
     ON CONFLICT (bucket) DO UPDATE SET \
         window_start = CASE WHEN c.expires_at <= now() THEN now() ELSE c.window_start END, \
         expires_at = CASE WHEN c.expires_at <= now() \
             THEN EXCLUDED.expires_at ELSE c.expires_at END, \
         hits = CASE WHEN c.expires_at <= now() THEN EXCLUDED.hits ELSE c.hits + EXCLUDED.hits END \
     RETURNING c.bucket AS bucket, c.hits AS hits, \
         extract(epoch FROM c.expires_at)::float8 AS expires_epoch, \
         extract(epoch FROM c.expires_at - now())::float8 AS remaining_secs";

/// Runs [`ADD_HITS`] for `(stored bucket, window, hits)` triples (bucket
/// names unique).
async fn add_hits(
    conn: &mut AsyncPgConnection,
    batch: &[(String, Duration, i64)],
) -> Result<Vec<Counted>, diesel::result::Error> {
    let buckets: Vec<&str> = batch.iter().map(|(b, _, _)| b.as_str()).collect();
    let windows: Vec<f64> = batch
        .iter()
        .map(|(_, w, _)| w.as_secs().max(1) as f64)
        .collect();
    let hits: Vec<i64> = batch.iter().map(|(_, _, h)| *h).collect();
    diesel::sql_query(ADD_HITS)
        .bind::<Array<Text>, _>(buckets)
        .bind::<Array<Double>, _>(windows)
        .bind::<Array<BigInt>, _>(hits)
        .load(conn)
        .await
}

/// Counts one attempt against `bucket` and decides whether it is allowed:
/// at most `limit` attempts per `window` (whole seconds, at least 1) per
/// bucket, across every instance sharing the database. Exact: one upsert
/// per attempt (for the signup and sign-in limits; the Action API, whose
/// volume is higher, counts with [`SyncedLimiter`]).
///
/// `bucket` names what is limited and for whom, e.g. `signup:ip:<ip>`,
/// `action:key:<api key id>`, `login:account:<email>`. It must never contain
/// a secret (API keys, passwords, tokens): use an id instead. One bucket
/// name must always be used with the same `window`. Refused attempts are
/// counted too (they do not extend the window).
///
/// The hit is written by the statement itself: inside a caller's
/// transaction it is undone if that transaction rolls back, so call it on
/// its own connection (or before opening the transaction) when the attempt
/// should count whatever happens next.
///
/// Errors: the database error, if the statement fails.
pub async fn check(
    conn: &mut AsyncPgConnection,
    bucket: &str,
    limit: u32,
    window: Duration,
) -> Result<Decision, diesel::result::Error> {
    let bucket = stored_bucket(bucket).into_owned();
    let counted = add_hits(conn, &[(bucket, window, 1)])
        .await?
        .pop()
        .ok_or(diesel::result::Error::NotFound)?;
    Ok(decide(
        limit,
        counted.hits,
        counted.remaining_secs.ceil() as i64,
    ))
}

/// The decision for the `hits`-th attempt of a window ending in
/// `reset_after_secs` seconds.
fn decide(limit: u32, hits: i64, reset_after_secs: i64) -> Decision {
    let remaining = (i64::from(limit) - hits).max(0);
    Decision {
        allowed: hits <= i64::from(limit),
        limit,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_after_secs: u64::try_from(reset_after_secs.max(1)).unwrap_or(1),
    }
}

/// The name stored for `bucket`: itself when short, else its SHA-256.
fn stored_bucket(bucket: &str) -> std::borrow::Cow<'_, str> {
    if !bucket.is_empty() && bucket.len() <= MAX_PLAIN_BUCKET_LEN {
        return bucket.into();
    }
    let digest = Sha256::digest(bucket.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}").into()
}

/// Deletes the counters whose window has ended; returns how many.
///
/// Errors: the database error, if the statement fails.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> Result<usize, diesel::result::Error> {
    diesel::sql_query("DELETE FROM rate_limit_counters WHERE expires_at <= now()")
        .execute(conn)
        .await
}

/// Runs [`purge_expired`] every `every` on a pooled connection until the
/// process ends (failures are logged and retried at the next tick). Every
/// instance may run one: the deletes are idempotent.
pub fn spawn_purger(pool: DbPool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = match pool.get().await {
                Ok(mut conn) => purge_expired(&mut conn).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "expired rate-limit windows purged"),
                Err(error) => tracing::warn!(%error, "could not purge rate-limit windows"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_th_attempt_is_allowed_and_the_next_refused() {
        assert_eq!(
            decide(10, 10, 42),
            Decision {
                allowed: true,
                limit: 10,
                remaining: 0,
                reset_after_secs: 42
            }
        );
        let refused = decide(10, 11, 42);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(decide(3, 1, 0).remaining, 2);
        assert_eq!(decide(3, 1, 0).reset_after_secs, 1);
    }

    #[test]
    fn long_buckets_are_hashed_and_short_ones_kept() {
        assert_eq!(stored_bucket("signup:ip:127.0.0.1"), "signup:ip:127.0.0.1");
        let long = format!("login:account:{}@example.com", "a".repeat(200));
        let stored = stored_bucket(&long);
        assert!(
            stored.starts_with("sha256:") && stored.len() == 7 + 64,
            "{stored}"
        );
        assert_ne!(stored, stored_bucket(&format!("{long}x")));
    }
}
