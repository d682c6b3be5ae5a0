//! The admin audit log (table `admin_audit_log`): append-only (a trigger
//! refuses updates and deletes), written by [`record_audit`] inside the
//! transaction of the action it describes.

use crate::server::admin::Admin;
use crate::server::billing::BillingError;
use crate::server::db::schema::admin_audit_log;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// One action to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// What was done, e.g. `credits.adjust`, `customer.suspend`.
    pub action: &'static str,
    /// The kind of object acted on, e.g. `customer`, `api_key`.
    pub target_type: &'static str,
    /// The object's id as text.
    pub target_id: Option<String>,
    /// The customer concerned, if any (for the customer's page).
    pub customer_id: Option<i64>,
    /// The admin's reason, when one is asked for.
    pub reason: Option<String>,
    /// The relevant state before the action.
    pub before: Option<Value>,
    /// The relevant state after the action.
    pub after: Option<Value>,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = admin_audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditRecord {
    /// Row id.
    pub id: i64,
    /// The admin's user id (`None` for the command line or a deleted user).
    pub actor_user_id: Option<i64>,
    /// The admin's email at the time.
    pub actor_email: String,
    /// See [`AuditEntry::action`].
    pub action: String,
    /// See [`AuditEntry::target_type`].
    pub target_type: String,
    /// See [`AuditEntry::target_id`].
    pub target_id: Option<String>,
    /// See [`AuditEntry::customer_id`].
    pub customer_id: Option<i64>,
    /// See [`AuditEntry::reason`].
    pub reason: Option<String>,
    /// See [`AuditEntry::before`].
    pub before: Option<Value>,
    /// See [`AuditEntry::after`].
    pub after: Option<Value>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Appends `entry` by `actor`, in the caller's transaction; returns its id.
///
/// Errors: [`BillingError::Database`].
pub async fn record_audit(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    entry: &AuditEntry,
) -> Result<i64, BillingError> {
    Ok(diesel::insert_into(admin_audit_log::table)
        .values((
            admin_audit_log::actor_user_id.eq(actor.user_id),
            admin_audit_log::actor_email.eq(&actor.email),
            admin_audit_log::action.eq(entry.action),
            admin_audit_log::target_type.eq(entry.target_type),
            admin_audit_log::target_id.eq(&entry.target_id),
            admin_audit_log::customer_id.eq(entry.customer_id),
            admin_audit_log::reason.eq(&entry.reason),
            admin_audit_log::before.eq(&entry.before),
            admin_audit_log::after.eq(&entry.after),
        ))
        .returning(admin_audit_log::id)
        .get_result(conn)
        .await?)
}

/// One page of the audit log, newest first: all entries, or one
/// customer's, or one action's; `page` from 1.
///
/// Errors: [`BillingError::Database`].
pub async fn list_audit(
    conn: &mut AsyncPgConnection,
    customer_id: Option<i64>,
    action: Option<&str>,
    page: i64,
    per_page: i64,
) -> Result<(Vec<AuditRecord>, i64), BillingError> {
    let (_, offset) = super::page_offset(page, per_page);
    let filtered = || {
        let mut query = admin_audit_log::table.into_boxed();
        if let Some(id) = customer_id {
            query = query.filter(admin_audit_log::customer_id.eq(id));
        }
        if let Some(action) = action {
            query = query.filter(admin_audit_log::action.eq(action.to_owned()));
        }
        query
    };
    let total = filtered().count().get_result(conn).await?;
    let rows = filtered()
        .order(admin_audit_log::id.desc())
        .limit(per_page)
        .offset(offset)
        .select(AuditRecord::as_select())
        .load(conn)
        .await?;
    Ok((rows, total))
}
