//! The JSON API's error: a status and `{"error": "..."}` (the Action prints
//! `body.error`, ACTION_API.md § Authentication). Internal causes are logged
//! and answered with an opaque message.

use crate::server::billing::api_keys::KeyRejection;
use crate::server::billing::BillingError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status (4xx for the client's mistakes, 5xx for ours).
    pub status: StatusCode,
    /// The message for the client: never internal details or secrets.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 422: the body parsed as JSON but a field is wrong.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<BillingError> for ApiError {
    fn from(error: BillingError) -> Self {
        match &error {
            BillingError::Invalid(e) => Self::unprocessable(e.0.clone()),
            BillingError::EmailTaken => Self::new(StatusCode::CONFLICT, error.to_string()),
            BillingError::NotFound(what) => Self::not_found(format!("{what} not found")),
            BillingError::InsufficientCredits { .. } => {
                Self::new(StatusCode::PAYMENT_REQUIRED, error.to_string())
            }
            BillingError::IdempotencyConflict(_) => {
                Self::new(StatusCode::CONFLICT, error.to_string())
            }
            BillingError::Processor(_) => {
                tracing::error!(error = %error, "payment processor failed in the JSON API");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "billing is unavailable; please retry in a moment",
                )
            }
            BillingError::Database(_) | BillingError::Pool(_) => {
                tracing::error!(error = %error, "internal error in the JSON API");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; please retry",
                )
            }
        }
    }
}

/// The error of a function shared with the browser pages, with the status
/// those pages use (`app::server_errors::error_status`) and its message.
impl From<crate::types::AppError> for ApiError {
    fn from(error: crate::types::AppError) -> Self {
        Self::new(
            crate::app::server_errors::error_status(&error),
            error.to_string(),
        )
    }
}

impl From<KeyRejection> for ApiError {
    fn from(rejection: KeyRejection) -> Self {
        let status = match rejection {
            // A revoked or expired key no longer authenticates anyone: 401, as
            // issue #3 asks ("revoke → 401"), with a message saying why.
            KeyRejection::Missing
            | KeyRejection::Unknown
            | KeyRejection::Revoked
            | KeyRejection::Expired => StatusCode::UNAUTHORIZED,
            // The key is fine but its customer may not use the service.
            KeyRejection::Suspended => StatusCode::FORBIDDEN,
        };
        Self::new(status, rejection.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            // Wrong types, missing fields: well-formed JSON that does not fit.
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Oversized bodies keep axum's 413.
            other => other.status(),
        };
        Self::new(status, rejection.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    /// A body that could not be read (over `MAX_BODY_BYTES`: axum's 413).
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}
