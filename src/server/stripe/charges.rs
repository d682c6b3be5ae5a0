//! The `stripe.charge` job and the sweeper that re-drives charges stuck
//! pending: thin adapters over [`crate::server::billing::charges`] (the
//! flow and its rules live there), calling the processor through the port
//! in `AppState`.

use crate::server::billing::charges::{process_charge, sweep_stuck_charges, ChargeRun};
use crate::server::db::queue::JobError;
use crate::server::state::AppState;
use serde_json::Value;
use std::time::Duration;

/// The job (`{"charge_id": i64}`): one run of
/// [`process_charge`] with the state's processor.
///
/// Errors: retryable while the charge stays pending (processor outage,
/// conflict, misconfiguration, another worker holding it, no Stripe
/// Customer yet, a payment still processing) or the database fails;
/// permanent for a malformed payload.
pub async fn charge_job(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let charge_id = payload
        .get("charge_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload lacks charge_id"))?;
    let mut conn = state.conn().await?;
    match process_charge(
        &mut conn,
        state.processor.as_ref(),
        &state.config.pricing,
        &state.config.email.links,
        charge_id,
    )
    .await?
    {
        ChargeRun::Settled(status) => {
            crate::server::metrics::charge_attempt(status.as_str());
            Ok(())
        }
        ChargeRun::NotPending => Ok(()),
        ChargeRun::RetryLater(reason) => Err(JobError::retry(reason)),
    }
}

/// How often `serve` sweeps for charges stuck pending.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// A charge pending (untouched) for this many minutes without a live job
/// is re-queued.
pub const STUCK_AFTER_MINUTES: i64 = 30;

/// Spawns the periodic sweep ([`sweep_stuck_charges`]) every `every`,
/// numbering its rounds by the clock (so restarts never reuse a round).
pub fn spawn_sweeper(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every_secs = i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
        loop {
            ticker.tick().await;
            let round = chrono::Utc::now().timestamp() / every_secs;
            let result = match state.conn().await {
                Ok(mut conn) => sweep_stuck_charges(&mut conn, STUCK_AFTER_MINUTES, round)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => tracing::warn!(count = ids.len(), "stuck charges re-queued"),
                Err(error) => tracing::warn!(%error, "could not sweep stuck charges"),
            }
        }
    })
}
