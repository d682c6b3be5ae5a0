//! `POST /api/v1/fix-attempts` (ACTION_API.md § 5): recorded when the Action
//! opens a fix pull request. Billed at most once per fix. And the billing
//! mode on a merged pull request (ACTION_API.md § 6, issue 9 "Bill on
//! merge"): `GET /api/v1/fix-attempts?github_org=&repo_name=&pr_number=` and
//! `POST /api/v1/fix-attempts/{id}/billing`.

use super::check_len;
use crate::server::billing::charges::refusal_for_fix;
use crate::server::billing::fixes::{
    bill_fix, find_fix_by_pr, BillOutcome, Fix, FixReport, Payment,
};
use crate::server::http::error::ApiError;
use crate::server::http::extract::{ApiCustomer, ApiJson, ApiQuery};
use crate::server::state::AppState;
use crate::types::urls::github_link;
use crate::types::values::{FixBillingStatus, Repository};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Request body. `api_key_used` is the raw key: it is accepted so the body
/// parses, and is never stored or logged.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct FixAttemptRequest {
    /// The repository's owner.
    github_org: String,
    /// The repository's name.
    repo_name: String,
    /// The issue the fix closes.
    issue_number: Option<i64>,
    /// The fix's pull request.
    pr_number: i64,
    /// At most 1000 characters.
    pr_title: Option<String>,
    /// The pull request's link: stored only when it is an https GitHub URL
    /// (`types::urls::GitHubUrl`), else stored as absent (the fix is still
    /// recorded and billed).
    pr_url: Option<String>,
    /// At most 1000 characters.
    issue_title: Option<String>,
    /// The issue's link: as `pr_url`, stored only when it is an https
    /// GitHub URL.
    issue_url: Option<String>,
    /// The raw key the Action used: accepted, never stored or logged.
    #[serde(rename = "api_key_used")]
    _api_key_used: Option<String>,
    /// A JSON object (branch, labels, ai_provider, …).
    metadata: Option<Value>,
}

/// Response body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FixAttemptResponse {
    /// The fix's id.
    id: i64,
    /// Always `recorded`.
    #[schema(value_type = String)]
    status: &'static str,
    /// The repository's owner.
    github_org: String,
    /// The repository's name.
    repo_name: String,
    /// The fix's pull request.
    pr_number: i64,
    /// `credit`, `unpaid`, `charged` or `pending`.
    billing_status: String,
}

/// Records the fix attempt: 200 with the fix's id and its billing status
/// (`credit` when a credit paid for it, `unpaid` while its card charge or
/// overage item is being made, `charged` once it is, `pending` while it
/// waits for the billing call when fixes are billed on merge). Reports of
/// the same fix by issue or pull request, in any order, give the same fix
/// ([`crate::server::billing::fixes::record_fix`], recorded with group
/// commit by [`crate::server::billing::fix_recorder::FixRecorder`]). 402 with a clear
/// `error` when no credit is left and nothing can pay (no card and no
/// subscription, or a declined card not yet fixed): the fix is recorded
/// as `unpaid` all the same.
/// 422 for a malformed repository, non-positive numbers, over-long strings
/// or `metadata` that is not an object.
#[utoipa::path(
    post,
    path = "/api/v1/fix-attempts",
    tag = "action",
    summary = "Record a fix pull request (billed at most once per fix)",
    request_body = FixAttemptRequest,
    responses(
        (status = 200, description = "Recorded, with its billing status", body = FixAttemptResponse),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 402, description = "No credit left and nothing can pay (the fix is recorded as unpaid)", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "Malformed repository, non-positive numbers, over-long strings, metadata not an object", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
        (status = 503, description = "Maintenance (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
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
    if body.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::unprocessable("metadata must be a JSON object"));
    }
    report.pr_title = body.pr_title;
    // Links from outside are parsed, never trusted: anything but an https
    // GitHub URL is stored as absent, and never refuses the fix.
    report.pr_url = github_link(body.pr_url.as_deref());
    report.issue_title = body.issue_title;
    report.issue_url = github_link(body.issue_url.as_deref());
    report.metadata = body.metadata;
    // The fix records the key whose report creates it (later reports of
    // the same fix leave it: `record_fix_in_tx`).
    report.api_key_id = Some(auth.api_key_id);

    let github_org = report.repository.owner().to_owned();
    let repo_name = report.repository.name().to_owned();
    // Group commit with the customer's concurrent reports (issue 13).
    let fix = state
        .fix_recorder
        .record(
            &state.config.pricing,
            &state.config.email.links,
            auth.customer.id,
            report,
        )
        .await?;
    tracing::info!(customer_id = auth.customer.id, fix_id = fix.id, billing_status = %fix.billing_status, "fix attempt recorded");
    // Recorded either way (never lost); refused when nothing can pay for it
    // (only an `unpaid` fix can be: no connection needed otherwise).
    if fix.billing_status == FixBillingStatus::Unpaid {
        let mut conn = state.conn().await?;
        if let Some(reason) =
            refusal_for_fix(&mut conn, auth.customer.id, fix.id, fix.billing_status).await?
        {
            return Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, reason));
        }
    }
    Ok(Json(FixAttemptResponse {
        id: fix.id,
        status: "recorded",
        github_org,
        repo_name,
        pr_number: body.pr_number,
        billing_status: fix.billing_status.as_str().to_owned(),
    }))
}

/// The largest issue or pull request number accepted (GitHub's are far
/// smaller; the bound keeps garbage out).
pub const MAX_NUMBER: i64 = 1 << 40;

/// The lookup's query string. Numbers arrive as text and are parsed here so
/// a malformed one gets a clear 422.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindFixQuery {
    /// The repository's owner (required).
    github_org: Option<String>,
    /// The repository's name (required).
    repo_name: Option<String>,
    /// The pull request's number (required, positive).
    pr_number: Option<String>,
}

fn fix_json(fix: &Fix) -> Value {
    let (org, name) = fix
        .repository
        .split_once('/')
        .unwrap_or((fix.repository.as_str(), ""));
    json!({
        "id": fix.id,
        "status": "recorded",
        "github_org": org,
        "repo_name": name,
        "pr_number": fix.pr_number,
        "issue_number": fix.issue_number,
        "billing_status": fix.billing_status,
    })
}

/// Parses a positive number no larger than [`MAX_NUMBER`].
fn parse_number(field: &str, raw: Option<&str>) -> Result<i64, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::unprocessable(format!("{field} is required")))?;
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_NUMBER).contains(n))
        .ok_or_else(|| ApiError::unprocessable(format!("{field} must be a positive integer")))
}

/// `GET /api/v1/fix-attempts?github_org=acme&repo_name=api&pr_number=42`:
/// 200 with the key's customer's fix for that pull request
/// (`{"id", "status", "github_org", "repo_name", "pr_number",
/// "issue_number", "billing_status"}`), 404 `{"error"}` when there is none
/// (the Action then skips billing). 422 for a missing or malformed
/// parameter.
#[utoipa::path(
    get,
    path = "/api/v1/fix-attempts",
    tag = "action",
    summary = "Look up the fix of a pull request (billing mode)",
    params(FindFixQuery),
    responses(
        (status = 200, description = "The fix", body = crate::server::http::openapi::FixAttemptView),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 404, description = "No RSOLV fix for this pull request", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "A missing or malformed parameter", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn find_fix_attempt(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
    ApiQuery(query): ApiQuery<FindFixQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = query
        .github_org
        .ok_or_else(|| ApiError::unprocessable("github_org is required"))?;
    let name = query
        .repo_name
        .ok_or_else(|| ApiError::unprocessable("repo_name is required"))?;
    let repository =
        Repository::from_parts(&org, &name).map_err(|e| ApiError::unprocessable(e.0))?;
    let pr_number = parse_number("pr_number", query.pr_number.as_deref())?;
    let mut conn = state.conn().await?;
    let fix = find_fix_by_pr(&mut conn, auth.customer.id, &repository, pr_number)
        .await
        .map_err(|e| match e {
            crate::server::billing::BillingError::NotFound(_) => {
                ApiError::not_found("no RSOLV fix attempt for this pull request")
            }
            other => other.into(),
        })?;
    Ok(Json(fix_json(&fix)))
}

/// `POST /api/v1/fix-attempts/{id}/billing` (no body): bills the key's
/// customer's fix `id`, idempotently ([`bill_fix`]). 200 answers:
/// - billed by this call: `billing_status` `credit` (one credit used) or
///   `unpaid` with a message saying a card charge is being made;
/// - already billed: `{"billing_status": "billed", "message": "Already billed"}`;
/// - a charge already under way, or written off: a message starting
///   "Already" and the stored `billing_status`.
///
/// 402 `{"error"}` when nothing can pay (no credits, no card, no
/// subscription, or a declined card): the fix stays `unpaid` and is billed
/// as soon as the customer can pay. 404 for an id that is not this
/// customer's fix (or not a number).
#[utoipa::path(
    post,
    path = "/api/v1/fix-attempts/{id}/billing",
    tag = "action",
    summary = "Bill a fix (idempotent; billing mode on a merged pull request)",
    params(("id" = i64, Path, description = "The fix's id")),
    responses(
        (status = 200, description = "Billed now, or already (`billing_status` `billed`, or a message starting \"Already\")", body = crate::server::http::openapi::FixAttemptView),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 402, description = "Nothing can pay: the fix stays unpaid and is billed once the customer can pay", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 404, description = "Not this customer's fix", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
        (status = 503, description = "Maintenance (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn bill_fix_attempt(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::not_found("fix attempt not found");
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(not_found)?;
    let mut conn = state.conn().await?;
    let outcome = bill_fix(
        &mut conn,
        &state.config.pricing,
        auth.customer.id,
        id,
        &state.config.email.links,
    )
    .await
    .map_err(|e| match e {
        crate::server::billing::BillingError::NotFound(_) => not_found(),
        other => other.into(),
    })?;
    let (fix, message) = match outcome {
        BillOutcome::AlreadyBilled(fix) => {
            let mut body = fix_json(&fix);
            body["billing_status"] = json!("billed");
            body["message"] = json!("Already billed");
            return Ok(Json(body));
        }
        BillOutcome::AlreadyCharging(fix) => (fix, "Already billing: a card charge is being made"),
        BillOutcome::WrittenOff(fix) => (fix, "Already settled: written off, never billed"),
        BillOutcome::Billed(fix, Payment::Credit(_)) => (fix, "Billed: one credit used"),
        BillOutcome::Billed(fix, Payment::Charging(_)) => {
            (fix, "Billing: a card charge is being made")
        }
        BillOutcome::Billed(fix, Payment::AwaitingPeriodCredits) => (
            fix,
            "Billing: waits for this Pro period's credits (billed when they are granted)",
        ),
        BillOutcome::Billed(fix, Payment::Refused(reason)) => {
            tracing::info!(
                customer_id = auth.customer.id,
                fix_id = fix.id,
                "billing call refused: nothing can pay"
            );
            return Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, reason));
        }
    };
    tracing::info!(customer_id = auth.customer.id, fix_id = fix.id, billing_status = %fix.billing_status, "billing call answered");
    let mut body = fix_json(&fix);
    body["message"] = json!(message);
    Ok(Json(body))
}
