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

/// A processor failure in a customer's own action (adding a card,
/// subscribing, cancelling) as the domain error the portal shows: a
/// declined card says so and what to do (our words, never the processor's
/// message); billing paused says so; an object the processor no longer
/// has asks the customer to start again; anything else is logged and
/// answered "try again in a moment" (the customer is never blamed for our
/// outage or configuration).
pub fn processor_error(error: crate::server::billing::ports::ProcessorError) -> BillingError {
    use crate::server::billing::ports::{decline_advice, ProcessorError};
    let invalid = |m: String| BillingError::Invalid(ParseError(m));
    match error {
        ProcessorError::Declined { code, decline_code } => invalid(format!(
            "the card was declined: {}",
            decline_advice(code.as_deref(), decline_code.as_deref())
        )),
        ProcessorError::Disabled => {
            invalid("billing is paused at the moment; please try again later".into())
        }
        ProcessorError::NotFound(what) => {
            tracing::warn!(%what, "payment processor object not found");
            invalid("the payment processor no longer has this card or subscription; please reload the page and try again".into())
        }
        other => {
            tracing::error!(error = %other, "payment processor call failed");
            BillingError::Pool("billing is unavailable; please try again in a moment".into())
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::billing::ports::ProcessorError;

    /// What a customer would read for `error` in the portal.
    fn shown(error: ProcessorError) -> String {
        match to_app_error(processor_error(error)) {
            AppError::Validation(message) => message,
            other => other.to_string(),
        }
    }

    #[test]
    fn customers_never_read_the_processors_own_message() {
        const RAW: &str = "Stripe raw: Your card has insufficient funds (req_abc123, sk_test_x)";
        let cases = [
            ProcessorError::Unavailable(RAW.into()),
            ProcessorError::Conflict(RAW.into()),
            ProcessorError::Misconfigured(RAW.into()),
            ProcessorError::NotFound(RAW.into()),
            ProcessorError::Disabled,
            ProcessorError::Declined {
                code: Some("card_declined".into()),
                decline_code: Some("insufficient_funds".into()),
            },
            ProcessorError::Declined {
                code: Some("<script>".into()),
                decline_code: Some(RAW.into()),
            },
        ];
        for error in cases {
            let message = shown(error.clone());
            assert!(
                !message.contains("Stripe raw")
                    && !message.contains("req_")
                    && !message.contains("<script>"),
                "{error:?} → {message}"
            );
            assert!(!message.is_empty());
        }
        // A decline is explained in our words, by its code.
        let declined = shown(ProcessorError::Declined {
            code: Some("card_declined".into()),
            decline_code: Some("insufficient_funds".into()),
        });
        assert!(
            declined.starts_with("the card was declined: "),
            "{declined}"
        );
        assert!(declined.contains("insufficient funds"), "{declined}");
    }
}
