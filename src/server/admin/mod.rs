//! The admin console's domain: staff admins ([`staff`]), the audit log
//! ([`audit`]), customer search and actions ([`customers`]), the webhook
//! event log and the email outbox ([`ops`]), and the manual signup approval
//! queue ([`approvals`]). Plain async functions over
//! `&mut AsyncPgConnection`; every action writes its audit entry in the
//! same transaction as the change.
//!
//! Staff admins are users with role `staff_admin` and no customer account
//! (`users.customer_id IS NULL`, enforced by a CHECK). The first one is
//! created with `rsolv-platform create-admin`; admins invite others from
//! `/admin/admins`.

pub mod approvals;
pub mod audit;
pub mod customers;
pub mod flags;
pub mod jobs;
pub mod ops;
pub mod reconciliation;
pub mod staff;

use crate::server::auth::accounts::ROLE_STAFF_ADMIN;
use crate::types::AppError;

/// Who performs an admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The staff admin's user id; `None` for the command line.
    pub user_id: Option<i64>,
    /// The admin's email (`cli` for the command line), kept in the audit
    /// log even after the user is deleted.
    pub email: String,
}

impl Admin {
    /// The command line as an actor (`create-admin`).
    pub fn cli() -> Self {
        Self {
            user_id: None,
            email: "cli".into(),
        }
    }
}

/// For server functions: the signed-in staff admin, who passed the second
/// factor in this session and has a confirmed TOTP secret. A staff admin
/// half-way through sign-in (password only) is not signed in at all.
///
/// Errors: [`AppError::Unauthorized`] when nobody is signed in (a pending
/// second factor included); [`AppError::Forbidden`] for any other user
/// (every customer session) and for a staff admin's session that did not
/// pass the second factor; [`AppError::Internal`].
pub async fn require_admin() -> Result<Admin, AppError> {
    let (session, user) = crate::server::auth::require_user_row().await?;
    if user.role != ROLE_STAFF_ADMIN || user.customer_id.is_some() {
        tracing::warn!(
            user_id = user.id,
            "non-admin called an admin server function"
        );
        return Err(AppError::Forbidden);
    }
    let second_factor = session
        .sign_in_record()
        .await?
        .is_some_and(|r| r.staff_admin);
    let mut conn = crate::server::auth::app_state()?
        .conn()
        .await
        .map_err(crate::server::billing::error::to_app_error)?;
    if !second_factor
        || !crate::server::auth::two_factor::has_confirmed_totp(&mut conn, user.id).await?
    {
        tracing::warn!(
            user_id = user.id,
            "staff admin without a second factor called an admin server function"
        );
        return Err(AppError::Forbidden);
    }
    Ok(Admin {
        user_id: Some(user.id),
        email: user.email,
    })
}

/// Checks a page number (from 1) and gives the SQL offset for `per_page`.
pub fn page_offset(page: i64, per_page: i64) -> (i64, i64) {
    let page = page.clamp(1, 100_000);
    (page, (page - 1) * per_page)
}
