//! `POST /api/v1/fix-attempts` (ACTION_API.md § 5): recorded when the Action
//! opens a fix pull request. Billed at most once per fix.

use super::check_len;
use crate::server::billing::charges::refusal_for_fix;
use crate::server::billing::fixes::{record_fix, FixReport};
use crate::server::http::error::ApiError;
use crate::server::http::extract::{ApiCustomer, ApiJson};
use crate::server::state::AppState;
use crate::types::values::Repository;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Request body. `api_key_used` is the raw key: it is accepted so the body
/// parses, and is never stored or logged.
#[derive(Deserialize)]
pub struct FixAttemptRequest {
    github_org: String,
    repo_name: String,
    issue_number: Option<i64>,
    pr_number: i64,
    pr_title: Option<String>,
    pr_url: Option<String>,
    issue_title: Option<String>,
    issue_url: Option<String>,
    #[serde(rename = "api_key_used")]
    _api_key_used: Option<String>,
    metadata: Option<Value>,
}

/// Response body.
#[derive(Debug, Serialize)]
pub struct FixAttemptResponse {
    id: i64,
    status: &'static str,
    github_org: String,
    repo_name: String,
    pr_number: i64,
    billing_status: String,
}

/// Records the fix attempt: 200 with the fix's id and its billing status
/// (`credit` when a credit paid for it, `unpaid` while its card charge or
/// overage item is being made, `charged` once it is). 402 with a clear
/// `error` when no credit is left and nothing can pay (no card and no
/// subscription, or a declined card not yet fixed): the fix is recorded
/// as `unpaid` all the same.
/// 422 for a malformed repository, non-positive numbers, over-long strings
/// or `metadata` that is not an object.
pub async fn create_fix_attempt(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
    ApiJson(body): ApiJson<FixAttemptRequest>,
) -> Result<Json<FixAttemptResponse>, ApiError> {
    let repository = Repository::from_parts(&body.github_org, &body.repo_name)
        .map_err(|e| ApiError::unprocessable(e.0))?;
    let mut report = FixReport::new(repository, body.issue_number, Some(body.pr_number))
        .map_err(|e| ApiError::unprocessable(e.0))?;
    check_len("pr_title", body.pr_title.as_deref(), 1000)?;
    check_len("issue_title", body.issue_title.as_deref(), 1000)?;
    check_len("pr_url", body.pr_url.as_deref(), 2048)?;
    check_len("issue_url", body.issue_url.as_deref(), 2048)?;
    if body.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::unprocessable("metadata must be a JSON object"));
    }
    report.pr_title = body.pr_title;
    report.pr_url = body.pr_url;
    report.issue_title = body.issue_title;
    report.issue_url = body.issue_url;
    report.metadata = body.metadata;

    let mut conn = state.conn().await?;
    let fix = record_fix(
        &mut conn,
        &state.config.pricing,
        auth.customer.id,
        &report,
        &state.config.email.links,
    )
    .await?;
    tracing::info!(customer_id = auth.customer.id, fix_id = fix.id, billing_status = %fix.billing_status, "fix attempt recorded");
    // Recorded either way (never lost); refused when nothing can pay for it.
    if let Some(reason) =
        refusal_for_fix(&mut conn, auth.customer.id, fix.id, &fix.billing_status).await?
    {
        return Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, reason));
    }
    Ok(Json(FixAttemptResponse {
        id: fix.id,
        status: "recorded",
        github_org: report.repository.owner().to_owned(),
        repo_name: report.repository.name().to_owned(),
        pr_number: body.pr_number,
        billing_status: fix.billing_status,
    }))
}
