//! Self-service account creation: the signup form (shared by the signup
//! server function and the no-JavaScript form handler) and `/register`.
//! Above `auth` (owners, tokens) and `admin` (the approval queue), which it
//! calls; neither calls it.

pub use crate::server::admin::approvals::signup_mode;
use crate::server::admin::approvals::{admit, Admission, SignupChannel, SIGNUPS_CLOSED_MESSAGE};
use crate::server::auth::accounts::{new_password, provision_with_owner, OwnerSetup};
use crate::server::auth::password::hash_password;
use crate::server::billing::customers::NewCustomer;
pub use crate::server::billing::error::to_app_error;
use crate::server::billing::notifications::{self, enqueue_email, Recipient};
use crate::server::billing::BillingError;
use crate::server::state::AppState;
use crate::types::values::{CustomerName, Email, Source};
use crate::types::views::SignupView;
use crate::types::AppError;

/// Parses the form fields and provisions a `direct` customer whose owner
/// gets an invite email (set a password; the first API key is shown once
/// on that page), or queues the signup for approval while the
/// `auto_provision` flag is off (the view says `pending_approval`).
///
/// A registered email (any case) gets the same answer as a new one (no
/// account enumeration, issue 12 item 5): nothing is created and an
/// `account_exists` email is queued instead. The answer holds no key.
///
/// Errors: [`AppError::Conflict`] with the "signups are closed" message
/// while `signups_enabled` is off; [`AppError::Validation`] naming the bad
/// field (or a disposable address); [`AppError::Internal`] (cause logged).
pub async fn signup(state: &AppState, email: &str, name: &str) -> Result<SignupView, AppError> {
    let new = NewCustomer {
        email: Email::parse(email).map_err(|e| AppError::Validation(e.0))?,
        name: CustomerName::parse(name).map_err(|e| AppError::Validation(e.0))?,
        source: Source::Direct,
    };
    sign_up_by_invite(state, &new, SignupChannel::SignupForm).await
}

/// The sign-up without a password (home form, `POST
/// /api/v1/customers/onboard`): see [`signup`], of which it is the part
/// after parsing; `new.source` is kept as given.
///
/// Errors: as [`signup`].
pub async fn sign_up_by_invite(
    state: &AppState,
    new: &NewCustomer,
    channel: SignupChannel,
) -> Result<SignupView, AppError> {
    let check_email = SignupView {
        email: new.email.as_str().to_owned(),
        pending_approval: false,
    };
    let pending = SignupView {
        pending_approval: true,
        ..check_email.clone()
    };
    let mut conn = state.conn().await.map_err(to_app_error)?;
    match admit(&mut conn, state.flags(), new, channel).await {
        Ok(Admission::Provision) => {}
        Ok(Admission::Closed) => return Err(AppError::Conflict(SIGNUPS_CLOSED_MESSAGE.into())),
        Ok(Admission::Pending(_)) => return Ok(pending),
        Err(BillingError::EmailTaken) => {
            account_exists(&mut conn, new).await?;
            return Ok(pending);
        }
        Err(e) => return Err(to_app_error(e)),
    }
    // The owner user (no password yet) and its invite email are created in
    // the same transaction.
    match provision_with_owner(&mut conn, &state.config, new, OwnerSetup::Invite).await {
        Ok(provisioned) => {
            tracing::info!(
                customer_id = provisioned.customer.id,
                source = %new.source,
                "customer provisioned"
            );
            Ok(check_email)
        }
        Err(BillingError::EmailTaken) => {
            account_exists(&mut conn, new).await?;
            Ok(check_email)
        }
        Err(e) => Err(to_app_error(e)),
    }
}

/// `/register`: provisions a `direct` customer with an owner user who has
/// this password, and queues the confirmation email; returns the email.
///
/// A registered email (any case) gets the same answer, after the same
/// password hashing, as a new one (no account enumeration): nothing is
/// created and an `account_exists` email ("you already have an account",
/// sign-in and forgot-password links, no token) is queued to the address.
///
/// Errors: [`AppError::Validation`] naming the bad field (email, name,
/// password rules, passwords not matching); [`AppError::Internal`].
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
    let admitted = admit(&mut conn, state.flags(), &new, SignupChannel::Register).await;
    // Hashed whatever the outcome below, so a taken email answers in the
    // same time as a new one.
    let hash = hash_password(password).await?;
    match admitted {
        Ok(Admission::Provision) => {}
        Ok(Admission::Closed) => return Err(AppError::Conflict(SIGNUPS_CLOSED_MESSAGE.into())),
        Ok(Admission::Pending(_)) => return Ok(Registered::PendingApproval),
        Err(BillingError::EmailTaken) => {
            // `admit` only checks for taken emails while signups wait for
            // approval: answer as a new address would be answered then.
            account_exists(&mut conn, &new).await?;
            return Ok(Registered::PendingApproval);
        }
        Err(e) => return Err(to_app_error(e)),
    }
    match provision_with_owner(&mut conn, &state.config, &new, OwnerSetup::Password(hash)).await {
        Ok(provisioned) => {
            tracing::info!(customer_id = provisioned.customer.id, "account registered");
            Ok(Registered::ConfirmationSent(provisioned.customer.email))
        }
        Err(BillingError::EmailTaken) => {
            account_exists(&mut conn, &new).await?;
            Ok(Registered::ConfirmationSent(new.email.as_str().to_owned()))
        }
        Err(e) => Err(to_app_error(e)),
    }
}

/// The taken-email branch of every sign-up path: queues "you already have
/// an account" to the address; the caller answers as for a new address.
/// Bounded by the paths' rate limits (per IP; `/api/register` also per
/// email, 5 an hour).
async fn account_exists(
    conn: &mut diesel_async::AsyncPgConnection,
    new: &NewCustomer,
) -> Result<(), AppError> {
    use crate::server::db::schema::customers;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    // To the address as the account has it (the one entered may differ in
    // case), with the account's customer for the admin's view.
    let same_email = diesel::dsl::sql::<diesel::sql_types::Bool>("lower(customers.email) = lower(")
        .bind::<diesel::sql_types::Text, _>(new.email.as_str().to_owned())
        .sql(")");
    let existing: Option<(i64, String)> = customers::table
        .filter(same_email)
        .select((customers::id, customers::email))
        .first(conn)
        .await
        .optional()
        .map_err(|e| to_app_error(e.into()))?;
    let (customer_id, address) = match &existing {
        Some((id, address)) => (Some(*id), address.as_str()),
        None => (None, new.email.as_str()),
    };
    let to = Recipient {
        customer_id,
        email: address,
        name: "",
    };
    let key = format!(
        "{}:{}:{}",
        notifications::kind::ACCOUNT_EXISTS,
        new.email.as_str().to_lowercase(),
        chrono::Utc::now().timestamp_micros()
    );
    enqueue_email(conn, &notifications::account_exists(&to, key))
        .await
        .map_err(to_app_error)?;
    tracing::info!("sign-up for a registered email: account_exists email queued");
    Ok(())
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
