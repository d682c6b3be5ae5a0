//! `POST /api/v1/usage/report` (ACTION_API.md § 2): fire and forget.

use crate::server::billing::usage::{record_usage, UsageReport};
use crate::server::http::error::ApiError;
use crate::server::http::extract::{ApiCustomer, ApiJson};
use crate::server::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Request body; `request_count` defaults to 0.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UsageRequest {
    /// The AI provider (`anthropic`, `openai`, …).
    provider: String,
    /// Tokens used, ≥ 0.
    tokens_used: i64,
    /// Requests made, ≥ 0 (default 0).
    request_count: Option<i64>,
    /// The workflow job.
    job_id: Option<String>,
}

/// Stores the report: 200 `{"success": true, "id": <id>}`; 422 for
/// negative counts or a malformed provider name.
#[utoipa::path(
    post,
    path = "/api/v1/usage/report",
    tag = "action",
    summary = "Report AI usage (fire and forget)",
    request_body = UsageRequest,
    responses(
        (status = 200, description = "Stored", body = crate::server::http::openapi::UsageStored),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "Negative counts or a malformed provider name", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
        (status = 503, description = "Maintenance (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn report_usage(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
    ApiJson(body): ApiJson<UsageRequest>,
) -> Result<Json<Value>, ApiError> {
    let report = UsageReport::new(
        &body.provider,
        body.tokens_used,
        body.request_count.unwrap_or(0),
        body.job_id.as_deref(),
    )
    .map_err(|e| ApiError::unprocessable(e.0))?;
    let mut conn = state.conn().await?;
    let id = record_usage(&mut conn, auth.customer.id, &report).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}
