//! Self-service account creation: the signup form (shared by the signup
//! server function and the no-JavaScript form handler) and `/register`.
//! Above `auth` (owners, tokens) and `admin` (the approval queue), which it
//! calls; neither calls it.

use crate::server::admin::approvals::{admit, Admission, SignupChannel, SIGNUPS_CLOSED_MESSAGE};
use crate::server::auth::accounts::{new_password, provision_with_owner, OwnerSetup};
use crate::server::auth::password::hash_password;
use crate::server::billing::customers::NewCustomer;
pub use crate::server::billing::error::to_app_error;
use crate::server::state::AppState;
use crate::types::values::{CustomerName, Email, Source};
use crate::types::views::SignupView;
use crate::types::AppError;

/// Parses the form fields and provisions a `direct` customer, or queues
/// the signup for approval while the `auto_provision` flag is off (the view
/// says `pending_approval`).
///
/// Errors: [`AppError::Conflict`] with the "signups are closed" message
/// while `signups_enabled` is off; [`AppError::Validation`] naming the bad field,
/// [`AppError::Conflict`] for a registered email, [`AppError::Internal`]
/// (cause logged) otherwise.
pub async fn signup(state: &AppState, email: &str, name: &str) -> Result<SignupView, AppError> {
    let new = NewCustomer {
        email: Email::parse(email).map_err(|e| AppError::Validation(e.0))?,
        name: CustomerName::parse(name).map_err(|e| AppError::Validation(e.0))?,
        source: Source::Direct,
    };
    let mut conn = state.conn().await.map_err(to_app_error)?;
    match admit(&mut conn, state.flags(), &new, SignupChannel::SignupForm)
        .await
        .map_err(to_app_error)?
    {
        Admission::Provision => {}
        Admission::Closed => return Err(AppError::Conflict(SIGNUPS_CLOSED_MESSAGE.into())),
        Admission::Pending(request) => {
            return Ok(SignupView {
                customer_id: 0,
                email: request.email,
                api_key: String::new(),
                credit_balance: 0,
                pending_approval: true,
            })
        }
    }
    // The owner user (no password yet) and its invite email are created in
    // the same transaction.
    let provisioned = provision_with_owner(&mut conn, &state.config, &new, OwnerSetup::Invite)
        .await
        .map_err(to_app_error)?;
    tracing::info!(
        customer_id = provisioned.customer.id,
        source = "direct",
        "customer provisioned"
    );
    Ok(SignupView {
        customer_id: provisioned.customer.id,
        email: provisioned.customer.email,
        api_key: provisioned.plain_key.expose().to_owned(),
        credit_balance: provisioned.customer.credit_balance,
        pending_approval: false,
    })
}

/// `/register`: provisions a `direct` customer with an owner user who has
/// this password, and queues the confirmation email; returns the email.
///
/// Errors: [`AppError::Validation`] naming the bad field (email, name,
/// password rules, passwords not matching); [`AppError::Conflict`] when the
/// email is registered; [`AppError::Internal`].
pub async fn register(
    state: &AppState,
    email: &str,
    name: &str,
    password: &str,
    confirm: &str,
) -> Result<Registered, AppError> {
    let new = NewCustomer {
        email: Email::parse(email).map_err(|e| AppError::Validation(e.0))?,
        name: CustomerName::parse(name).map_err(|e| AppError::Validation(e.0))?,
        source: Source::Direct,
    };
    let password = new_password(password, confirm)?;
    let mut conn = state.conn().await.map_err(to_app_error)?;
    match admit(&mut conn, state.flags(), &new, SignupChannel::Register)
        .await
        .map_err(to_app_error)?
    {
        Admission::Provision => {}
        Admission::Closed => return Err(AppError::Conflict(SIGNUPS_CLOSED_MESSAGE.into())),
        Admission::Pending(_) => return Ok(Registered::PendingApproval),
    }
    let hash = hash_password(password).await?;
    let provisioned =
        provision_with_owner(&mut conn, &state.config, &new, OwnerSetup::Password(hash))
            .await
            .map_err(to_app_error)?;
    tracing::info!(customer_id = provisioned.customer.id, "account registered");
    Ok(Registered::ConfirmationSent(provisioned.customer.email))
}

/// The outcome of [`register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Provisioned; the confirmation email to this address is queued.
    ConfirmationSent(String),
    /// Queued for an admin's approval (`auto_provision` off); the password
    /// is not kept: once approved, the user gets an invite to set one.
    PendingApproval,
}
