//! `POST /api/v1/customers/onboard` and `GET /api/v1/billing/status`.

use crate::server::auth::accounts::{provision_with_owner, OwnerSetup};
use crate::server::billing::customers::NewCustomer;
use crate::server::billing::status::billing_status;
use crate::server::http::error::ApiError;
use crate::server::http::extract::{ApiCustomer, ApiJson};
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

/// Onboarding response: the key is shown here once and never again (no
/// `Debug`: it holds the key). It is revoked when the owner first proves
/// the email (see `auth::accounts::claim_account`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct OnboardResponse {
    /// The new customer's id.
    customer_id: i64,
    /// The API key (`rsolv_…`), shown only here.
    api_key: String,
    /// Free fix credits granted.
    credit_balance: i64,
}

/// Provisions a customer: 201 with the id, the API key (once) and the
/// balance in credits; 422 for a malformed email, name or source; 409 when
/// the email is registered (compared case-insensitively). While the
/// `signups_enabled` flag is off: 403 `{"error": ...}`; while
/// `auto_provision` is off: 202 `{"status": "pending_approval", "message":
/// ...}` (queued for an admin; no key yet).
#[utoipa::path(
    post,
    path = "/api/v1/customers/onboard",
    tag = "customers",
    summary = "Sign a customer up and issue an API key",
    description = "Counts against the client address's signup rate limit \
        (`RATE_LIMIT_SIGNUPS_PER_MINUTE`). Disposable email domains are refused. \
        The key works until the owner first proves the email (accepts the mailed \
        invite): it is then revoked and a fresh key is shown once to the owner.",
    request_body = OnboardRequest,
    responses(
        (status = 201, description = "Provisioned; the key is shown once", body = OnboardResponse),
        (status = 202, description = "Held for an admin's approval (no key yet)", body = crate::server::http::openapi::PendingApproval),
        (status = 403, description = "Signups are closed", body = crate::server::http::openapi::ErrorBody),
        (status = 409, description = "The email is registered", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "Malformed email, name or source, or a disposable address", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    )
)]
pub async fn onboard_customer(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OnboardRequest>,
) -> Result<axum::response::Response, ApiError> {
    use crate::server::admin::approvals::{
        admit, Admission, SignupChannel, PENDING_APPROVAL_MESSAGE, SIGNUPS_CLOSED_MESSAGE,
    };
    use axum::response::IntoResponse;
    let new = NewCustomer {
        email: Email::parse(&body.email).map_err(|e| ApiError::unprocessable(e.0))?,
        name: CustomerName::parse(&body.name).map_err(|e| ApiError::unprocessable(e.0))?,
        source: match body.source.as_deref() {
            None => Source::Direct,
            Some(s) => Source::parse(s).map_err(|e| ApiError::unprocessable(e.0))?,
        },
    };
    let mut conn = state.conn().await?;
    match admit(&mut conn, state.flags(), &new, SignupChannel::ApiOnboard).await? {
        Admission::Provision => {}
        Admission::Closed => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, SIGNUPS_CLOSED_MESSAGE));
        }
        Admission::Pending(_) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "status": "pending_approval",
                    "message": PENDING_APPROVAL_MESSAGE,
                })),
            )
                .into_response());
        }
    }
    // The owner user (no password yet) and its invite email are created in
    // the same transaction.
    let provisioned =
        provision_with_owner(&mut conn, &state.config, &new, OwnerSetup::Invite).await?;
    tracing::info!(customer_id = provisioned.customer.id, source = %new.source, "customer onboarded");
    Ok((
        StatusCode::CREATED,
        Json(OnboardResponse {
            customer_id: provisioned.customer.id,
            api_key: provisioned.plain_key.expose().to_owned(),
            credit_balance: provisioned.customer.credit_balance,
        }),
    )
        .into_response())
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
