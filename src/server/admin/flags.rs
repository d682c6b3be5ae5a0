//! Switching a runtime flag from the admin console: the flag store
//! ([`crate::server::flags::store_flag`]) and the audit entry in one
//! transaction, then this instance's cache. (Flags are a leaf below the
//! domain; the admin calls them, never the other way round.)

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::Admin;
use crate::server::billing::BillingError;
use crate::server::flags::{store_flag, Flag, Flags, StoreFlagError, FORCED_MESSAGE};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

/// Stores `enabled` for `flag` and writes the audit entry (action
/// `flag.set`, before/after the stored value, the admin's `reason`) in one
/// transaction, then updates this instance's cache at once. Every flip
/// needs a reason (flags are kill switches: who stopped billing, and why,
/// must be on record).
///
/// Errors: [`BillingError::Invalid`] for a missing reason or one over
/// [`crate::server::admin::customers::MAX_REASON_CHARS`] characters
/// (checked before anything is written), or with [`FORCED_MESSAGE`] when
/// the environment forces the flag; [`BillingError::Database`].
pub async fn set_flag(
    conn: &mut AsyncPgConnection,
    flags: &Flags,
    actor: &Admin,
    flag: Flag,
    enabled: bool,
    reason: &str,
) -> Result<(), BillingError> {
    let reason = crate::server::admin::customers::parse_reason(reason)?;
    conn.transaction(async |conn| {
        let before = match store_flag(conn, flags, actor.user_id, flag, enabled).await {
            Ok(before) => before,
            Err(StoreFlagError::Forced) => {
                return Err(BillingError::Invalid(crate::types::values::ParseError(
                    FORCED_MESSAGE.into(),
                )))
            }
            Err(StoreFlagError::Database(e)) => return Err(e.into()),
        };
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "flag.set",
                target_type: "feature_flag",
                target_id: Some(flag.key().to_owned()),
                customer_id: None,
                reason: Some(reason.clone()),
                before: Some(json!({
                    "enabled": before.unwrap_or(flag.default_value()),
                    "row": before.is_some(),
                })),
                after: Some(json!({ "enabled": enabled })),
            },
        )
        .await?;
        Ok::<_, BillingError>(())
    })
    .await?;
    flags.set_stored(flag, enabled);
    tracing::info!(
        flag = flag.key(),
        enabled,
        admin = actor.user_id,
        "feature flag switched"
    );
    Ok(())
}
