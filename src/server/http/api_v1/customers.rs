//! `POST /api/v1/customers/onboard` and `GET /api/v1/billing/status`.

use crate::server::billing::customers::NewCustomer;
use crate::server::billing::status::billing_status;
use crate::server::http::error::ApiError;
use crate::server::http::extract::{ApiCustomer, ApiJson};
use crate::server::signup::sign_up_by_invite;
use crate::server::state::AppState;
use crate::types::values::{CustomerName, Email, Source};
use crate::types::views::BillingStatusView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// Onboarding request: `source` defaults to `direct`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OnboardRequest {
    /// The customer's email (unique, compared case-insensitively).
    email: String,
    /// The customer's name.
    name: String,
    /// Where the customer came from (`direct`, `web`, …); default `direct`.
    source: Option<String>,
}

/// Onboarding response (202), the same for a new address and a registered
/// one: `{"status": "check_email" | "pending_approval", "message": ...}`.
/// It holds no key: the owner's first API key is shown once when they
/// follow the emailed link.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnboardResponse {
    /// `check_email` (an invite to set a password was sent, or "you already
    /// have an account" for a registered address) or `pending_approval`
    /// (held for an admin while `auto_provision` is off).
    status: &'static str,
    /// What happens next, for a person to read.
    message: &'static str,
}

/// `status` of an accepted sign-up: the email is on its way.
pub const CHECK_EMAIL: &str = "check_email";
/// What [`CHECK_EMAIL`] tells the caller.
pub const CHECK_EMAIL_MESSAGE: &str = "Check your email: we sent a link to set your password. Your API key is shown once after that, on the page the link opens.";

/// Signs a customer up without a password (`server::signup::sign_up_by_invite`):
/// 202 `{"status": "check_email", "message": ...}` for a new address and a
/// registered one alike (no account enumeration: a registered address is
/// sent "you already have an account" instead of an invite), or 202
/// `{"status": "pending_approval", ...}` while `auto_provision` is off. No
/// key is answered: the owner's first key is shown once when they follow
/// the emailed link. 422 for a malformed email, name or source or a
/// disposable address; 403 `{"error": ...}` while `signups_enabled` is off.
#[utoipa::path(
    post,
    path = "/api/v1/customers/onboard",
    tag = "customers",
    summary = "Sign a customer up (the API key follows the emailed link)",
    description = "Counts against the client address's signup rate limit \
        (`RATE_LIMIT_SIGNUPS_PER_MINUTE`). Disposable email domains are refused. \
        The answer is the same whether the address is new or registered, and holds \
        no key: the owner sets a password from the emailed link, and the first API key \
        is shown once on that page.",
    request_body = OnboardRequest,
    responses(
        (status = 202, description = "Accepted: check the email (or held for approval)", body = OnboardResponse),
        (status = 403, description = "Signups are closed", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "Malformed email, name or source, or a disposable address", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    )
)]
pub async fn onboard_customer(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OnboardRequest>,
) -> Result<(StatusCode, Json<OnboardResponse>), ApiError> {
    use crate::server::admin::approvals::{SignupChannel, PENDING_APPROVAL_MESSAGE};
    use crate::types::AppError;
    let new = NewCustomer {
        email: Email::parse(&body.email).map_err(|e| ApiError::unprocessable(e.0))?,
        name: CustomerName::parse(&body.name).map_err(|e| ApiError::unprocessable(e.0))?,
        source: match body.source.as_deref() {
            None => Source::Direct,
            Some(s) => Source::parse(s).map_err(|e| ApiError::unprocessable(e.0))?,
        },
    };
    let view = sign_up_by_invite(&state, &new, SignupChannel::ApiOnboard)
        .await
        .map_err(|e| match e {
            // Signups closed: a refusal of the caller, not a conflict.
            AppError::Conflict(message) => ApiError::new(StatusCode::FORBIDDEN, message),
            other => ApiError::from(other),
        })?;
    let answer = if view.pending_approval {
        OnboardResponse {
            status: "pending_approval",
            message: PENDING_APPROVAL_MESSAGE,
        }
    } else {
        OnboardResponse {
            status: CHECK_EMAIL,
            message: CHECK_EMAIL_MESSAGE,
        }
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// The caller's billing status (`{stripe_customer_id, subscription_status,
/// can_use_service, current_usage}`).
#[utoipa::path(
    get,
    path = "/api/v1/billing/status",
    tag = "customers",
    summary = "The key's customer's billing status",
    responses(
        (status = 200, description = "Billing status", body = crate::types::views::BillingStatusView),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show_billing_status(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
) -> Result<Json<BillingStatusView>, ApiError> {
    let mut conn = state.conn().await?;
    Ok(Json(billing_status(&mut conn, auth.customer.id).await?))
}
