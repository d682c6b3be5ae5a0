//! The domain's error type.

use crate::types::values::ParseError;
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
