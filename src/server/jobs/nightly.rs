//! Periodic work `serve` schedules: the nightly reconciliation (issue 9,
//! scope 7), enqueued as a typed job with a per-day dedupe key so however
//! many `serve` processes tick, one run happens per UTC day.

use crate::server::billing::work::ReconcileJob;
use crate::server::db::queue::BackgroundJob;
use crate::server::state::AppState;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use std::time::Duration;

/// How often [`run_periodically`] ticks.
pub const TICK: Duration = Duration::from_secs(3600);

/// Enqueues the reconciliation of `now`'s UTC day (dedupe key
/// `billing.reconcile:<date>`); returns whether a job was added (false when
/// that day's run exists already).
///
/// Errors: the database error.
pub async fn enqueue_nightly_reconciliation(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<bool, diesel::result::Error> {
    let key = ReconcileJob::nightly_key(now.date_naive());
    Ok(ReconcileJob {}.enqueue(conn, Some(&key)).await?.is_some())
}

/// Every [`TICK`] (and at start), enqueues the day's reconciliation.
/// Spawned by `serve`; errors are logged and the next tick tries again.
pub async fn run_periodically(state: AppState) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match state.conn().await {
            Ok(mut conn) => enqueue_nightly_reconciliation(&mut conn, Utc::now())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(true) => tracing::info!("nightly reconciliation enqueued"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "nightly reconciliation not enqueued"),
        }
    }
}
