//! The admin console's AI budget control: sets or clears one customer's
//! override of the gateway's default limits (`ai_budgets`, through
//! [`metering::set_budget`]) and writes the audit entry (`ai_budget.set`,
//! `ai_budget.clear`) in the same transaction.

use super::metering::{self, budget_override, BudgetOverride};
use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::customers::parse_reason;
use crate::server::admin::Admin;
use crate::server::billing::fixes::lock_customer;
use crate::server::billing::BillingError;
use crate::types::ai::AiBudgetInput;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{json, Value};

/// Sets the customer's budget override to `input` (both fields blank:
/// cleared back to the defaults) with the admin's mandatory `reason`;
/// writes the audit entry, `ai_budget.clear` when `input` keeps both
/// defaults, else `ai_budget.set`, with the stored values before and after.
/// The gateway applies it from the customer's next call. Answers the
/// override now stored.
///
/// Errors: [`BillingError::Invalid`] for a missing or over-long reason;
/// [`BillingError::NotFound`] for an unknown customer;
/// [`BillingError::Database`].
pub async fn set_customer_budget(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    customer_id: i64,
    input: AiBudgetInput,
    reason: &str,
) -> Result<BudgetOverride, BillingError> {
    let reason = parse_reason(reason)?;
    let after = BudgetOverride {
        max_concurrent: input.max_concurrent(),
        daily_tokens: input.daily_tokens(),
    };
    conn.transaction(async |conn| {
        // The customer row, locked: budgets of one customer are set one
        // at a time, so the audit's `before` is the value replaced.
        lock_customer(conn, customer_id).await?;
        let before = budget_override(conn, customer_id).await?;
        metering::set_budget(conn, customer_id, after.max_concurrent, after.daily_tokens).await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: if after.is_default() {
                    "ai_budget.clear"
                } else {
                    "ai_budget.set"
                },
                target_type: "customer",
                target_id: Some(customer_id.to_string()),
                customer_id: Some(customer_id),
                reason: Some(reason.clone()),
                before: Some(audit_value(before)),
                after: Some(audit_value(after)),
            },
        )
        .await?;
        Ok::<_, BillingError>(())
    })
    .await?;
    tracing::info!(
        customer_id,
        admin = actor.user_id,
        daily_tokens = after.daily_tokens,
        max_concurrent = after.max_concurrent,
        "AI budget set"
    );
    Ok(after)
}

/// An override as the audit log keeps it (`null` = the default).
fn audit_value(o: BudgetOverride) -> Value {
    json!({ "daily_tokens": o.daily_tokens, "max_concurrent": o.max_concurrent })
}
