//! The domain's error type.

use crate::types::values::ParseError;
use crate::types::AppError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Why a billing operation failed. Adapters map these to HTTP statuses and
/// user-facing messages; [`BillingError::Database`] and
/// [`BillingError::Pool`] are internal and never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Input failed to parse into a domain value.
    #[error("{0}")]
    Invalid(#[from] ParseError),
    /// A customer with this email (compared case-insensitively) exists.
    #[error("a customer with this email already exists")]
    EmailTaken,
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A debit would take the balance below zero.
    #[error("insufficient credits: {needed} needed, {available} available")]
    InsufficientCredits {
        /// Credits the debit needs.
        needed: i64,
        /// Credits on the balance.
        available: i64,
    },
    /// An idempotency key was reused for a different ledger movement.
    #[error("idempotency key {0:?} was already used for a different entry")]
    IdempotencyConflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(DieselError),
    /// No connection could be had from the pool.
    #[error("database pool error: {0}")]
    Pool(String),
    /// The payment processor failed (internal: never shown to customers
    /// as such; its message holds no secret).
    #[error("payment processor: {0}")]
    Processor(crate::server::billing::ports::ProcessorError),
}

impl From<DieselError> for BillingError {
    fn from(error: DieselError) -> Self {
        BillingError::Database(error)
    }
}

/// True when `error` is a unique-constraint violation (recognised by kind,
/// never by message text).
pub fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// A domain failure inside a job is worth retrying later.
impl From<BillingError> for crate::server::db::queue::JobError {
    fn from(error: BillingError) -> Self {
        crate::server::db::queue::JobError::retry(error.to_string())
    }
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
        BillingError::Database(_) | BillingError::Pool(_) | BillingError::Processor(_) => {
            tracing::error!(error = %error, "internal error in a server function");
            AppError::Internal
        }
    }
}
