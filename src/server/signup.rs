//! Self-service signup, shared by the signup server function and the
//! no-JavaScript form handler.

use crate::server::admin::approvals::{admit, Admission, SignupChannel, SIGNUPS_CLOSED_MESSAGE};
use crate::server::auth::accounts::{provision_with_owner, OwnerSetup};
use crate::server::billing::customers::NewCustomer;
use crate::server::billing::BillingError;
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

/// Maps a domain error to what the UI may show; internal causes are logged
/// here and replaced by [`AppError::Internal`].
pub fn to_app_error(error: BillingError) -> AppError {
    match error {
        BillingError::Invalid(e) => AppError::Validation(e.0),
        BillingError::EmailTaken => {
            AppError::Conflict("an account with this email already exists".into())
        }
        BillingError::NotFound(_) => AppError::NotFound,
        BillingError::InsufficientCredits { .. } | BillingError::IdempotencyConflict(_) => {
            AppError::Conflict(error.to_string())
        }
        BillingError::Database(_) | BillingError::Pool(_) => {
            tracing::error!(error = %error, "internal error in a server function");
            AppError::Internal
        }
    }
}
