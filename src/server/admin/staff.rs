//! Staff admins: users with role `staff_admin` and no customer account.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::Admin;
use crate::server::auth::accounts::{issue_token, TokenPurpose, LONG_TOKEN_TTL, ROLE_STAFF_ADMIN};
use crate::server::auth::emails::{account_email, AccountEmail};
use crate::server::billing::error::is_unique_violation;
use crate::server::billing::notifications::{enqueue_email, EmailLinks};
use crate::server::billing::BillingError;
use crate::server::db::schema::{customers, users};
use crate::types::values::Email;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// How a new staff admin gets in.
#[derive(Debug)]
pub enum AdminSetup {
    /// With this argon2id hash; the email counts as confirmed (the
    /// operator at the command line vouches for it).
    Password(String),
    /// No password: an invite email to set one (and confirm the address).
    Invite,
}

/// A staff admin as the console lists them.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct StaffAdmin {
    /// User id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Whether a password is set (an invite was accepted).
    pub active: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Creates a staff admin with `email` and writes the audit entry
/// (`admin.create`) by `actor`, in one transaction; with
/// [`AdminSetup::Invite`] the invite email is queued too. Returns the new
/// user's id.
///
/// A staff admin's address cannot be used by a customer account too (users'
/// emails are unique): use a separate address.
///
/// Errors: [`BillingError::EmailTaken`] when a user or customer has the
/// email (any case); [`BillingError::Database`].
pub async fn create_admin(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    actor: &Admin,
    email: &Email,
    setup: AdminSetup,
) -> Result<i64, BillingError> {
    conn.transaction(async |conn| {
        let customer_has_it: bool = diesel::select(diesel::dsl::exists(
            customers::table.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("lower(customers.email) = lower(")
                    .bind::<diesel::sql_types::Text, _>(email.as_str().to_owned())
                    .sql(")"),
            ),
        ))
        .get_result(conn)
        .await?;
        if customer_has_it {
            return Err(BillingError::EmailTaken);
        }
        let (hash, confirmed, invite) = match setup {
            AdminSetup::Password(hash) => (Some(hash), Some(Utc::now()), false),
            AdminSetup::Invite => (None, None, true),
        };
        let inserted = diesel::insert_into(users::table)
            .values((
                users::customer_id.eq(None::<i64>),
                users::email.eq(email.as_str()),
                users::password_hash.eq(hash),
                users::role.eq(ROLE_STAFF_ADMIN),
                users::email_confirmed_at.eq(confirmed),
            ))
            .returning(users::id)
            .get_result::<i64>(conn)
            .await;
        let user_id = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Err(BillingError::EmailTaken),
            Err(e) => return Err(e.into()),
        };
        if invite {
            let (token_id, token) =
                issue_token(conn, user_id, TokenPurpose::Invite, LONG_TOKEN_TTL).await?;
            enqueue_email(
                conn,
                &account_email(
                    AccountEmail::Invite,
                    links,
                    None,
                    email.as_str(),
                    &token,
                    token_id,
                ),
            )
            .await?;
        }
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "admin.create",
                target_type: "user",
                target_id: Some(user_id.to_string()),
                customer_id: None,
                reason: None,
                before: None,
                after: Some(json!({
                    "email": email.as_str(),
                    "role": ROLE_STAFF_ADMIN,
                    "setup": if invite { "invite" } else { "password" },
                })),
            },
        )
        .await?;
        Ok(user_id)
    })
    .await
}

/// Every staff admin, oldest first.
///
/// Errors: [`BillingError::Database`].
pub async fn list_admins(conn: &mut AsyncPgConnection) -> Result<Vec<StaffAdmin>, BillingError> {
    Ok(users::table
        .filter(users::role.eq(ROLE_STAFF_ADMIN))
        .order(users::id.asc())
        .select((
            users::id,
            users::email,
            users::password_hash.is_not_null(),
            users::created_at,
        ))
        .load(conn)
        .await?)
}
