//! Staff admins: users with role `staff_admin` and no customer account.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::Admin;
use crate::server::auth::accounts::{issue_token, TokenPurpose, LONG_TOKEN_TTL, ROLE_STAFF_ADMIN};
use crate::server::auth::emails::{account_email, AccountEmail};
use crate::server::billing::error::is_unique_violation;
use crate::server::billing::notifications::{enqueue_email, EmailLinks};
use crate::server::billing::BillingError;
use crate::server::db::schema::{admin_totp, customers, sessions, users};
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
    /// Whether deactivated.
    pub deactivated: bool,
    /// Whether a TOTP second factor is enrolled (confirmed).
    pub two_factor: bool,
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
        .left_join(admin_totp::table)
        .filter(users::role.eq(ROLE_STAFF_ADMIN))
        .order(users::id.asc())
        .select((
            users::id,
            users::email,
            users::password_hash.is_not_null(),
            users::deactivated_at.is_not_null(),
            admin_totp::confirmed_at.nullable().is_not_null(),
            users::created_at,
        ))
        .load(conn)
        .await?)
}

/// Deactivates (`active` false) or reactivates staff admin `user_id` with
/// a mandatory `reason`, by `actor`, in one transaction: the audit entry
/// (`admin.deactivate` / `admin.reactivate`, before/after), and on
/// deactivation the deletion of every session of theirs (signed in or
/// half-way through sign-in), so they are signed out at once.
///
/// Every staff admin row is locked first (`FOR UPDATE`), so two admins
/// deactivating each other at the same moment cannot both succeed: the
/// second finds itself deactivated. An admin cannot deactivate themself,
/// nor the last active admin (who would lock everyone out of the console;
/// `create-admin` is then the only way back).
///
/// Errors: [`BillingError::Invalid`] for a missing or over-long reason,
/// oneself, the last active admin, an actor deactivated meanwhile, or no
/// change (already so); [`BillingError::NotFound`] when `user_id` is no
/// staff admin; [`BillingError::Database`].
pub async fn set_admin_active(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    user_id: i64,
    active: bool,
    reason: &str,
) -> Result<(), BillingError> {
    let reason = crate::server::admin::customers::parse_reason(reason)?;
    let invalid = |m: &str| BillingError::Invalid(crate::types::values::ParseError(m.into()));
    conn.transaction(async |conn| {
        let admins: Vec<(i64, Option<DateTime<Utc>>)> = users::table
            .filter(users::role.eq(ROLE_STAFF_ADMIN))
            .order(users::id.asc())
            .select((users::id, users::deactivated_at))
            .for_update()
            .load(conn)
            .await?;
        let Some(&(_, deactivated_at)) = admins.iter().find(|(id, _)| *id == user_id) else {
            return Err(BillingError::NotFound("staff admin"));
        };
        if let Some(actor_id) = actor.user_id {
            let actor_active = admins.iter().any(|(id, d)| *id == actor_id && d.is_none());
            if !actor_active {
                return Err(invalid("your account is deactivated"));
            }
        }
        if active == deactivated_at.is_none() {
            return Err(invalid(if active {
                "this admin is active already"
            } else {
                "this admin is deactivated already"
            }));
        }
        if !active {
            if actor.user_id == Some(user_id) {
                return Err(invalid("you cannot deactivate yourself"));
            }
            let others_active = admins
                .iter()
                .filter(|(id, d)| *id != user_id && d.is_none())
                .count();
            if others_active == 0 {
                return Err(invalid("the last active admin cannot be deactivated"));
            }
        }
        let now = Utc::now();
        diesel::update(users::table.find(user_id))
            .set((
                users::deactivated_at.eq((!active).then_some(now)),
                users::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        let sessions_ended = if active {
            0
        } else {
            diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id)))
                .execute(conn)
                .await?
        };
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: if active {
                    "admin.reactivate"
                } else {
                    "admin.deactivate"
                },
                target_type: "user",
                target_id: Some(user_id.to_string()),
                customer_id: None,
                reason: Some(reason.clone()),
                before: Some(json!({ "deactivated_at": deactivated_at })),
                after: Some(json!({
                    "deactivated": !active,
                    "sessions_ended": sessions_ended,
                })),
            },
        )
        .await?;
        Ok(())
    })
    .await
}
