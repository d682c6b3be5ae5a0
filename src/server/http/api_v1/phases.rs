//! `POST /api/v1/phases/store` and `GET /api/v1/phases/retrieve`
//! (ACTION_API.md §§ 3–4).

use crate::server::billing::phases::{
    find_phases, store_phase as store_phase_record, CommitSha, PhaseReport,
};
use crate::server::http::error::ApiError;
use crate::server::http::extract::{ApiCustomer, ApiJson, ApiQuery};
use crate::server::state::AppState;
use crate::types::values::{Phase, Repository};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Request body, in the Action's camelCase.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorePhaseRequest {
    /// `scan`, `validation` or `mitigation`.
    phase: String,
    /// The phase's result (an object; a mitigation's `fixed: true` is a
    /// deployed fix, billed once).
    data: Value,
    /// `owner/name`.
    repo: String,
    /// Required for validation and mitigation.
    issue_number: Option<i64>,
    /// The scanned commit (40 hex digits).
    commit_sha: String,
}

/// Stores a phase result: 200 `{"success": true, "id": "<id>"}`. A
/// mitigation with `data.fixed == true` records (and bills, once) the fix.
/// 422 for an unknown phase, a malformed repository or commit, a missing
/// `issueNumber` after the scan, or `data` that is not an object.
#[utoipa::path(
    post,
    path = "/api/v1/phases/store",
    tag = "action",
    summary = "Store a phase result (scan, validation, mitigation)",
    request_body = StorePhaseRequest,
    responses(
        (status = 200, description = "Stored", body = crate::server::http::openapi::PhaseStored),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "Unknown phase, malformed repository or commit, missing issueNumber, data not an object", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
        (status = 503, description = "Maintenance (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn store_phase(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
    ApiJson(body): ApiJson<StorePhaseRequest>,
) -> Result<Json<Value>, ApiError> {
    let parse = || -> Result<PhaseReport, crate::types::values::ParseError> {
        PhaseReport::new(
            Phase::parse(&body.phase)?,
            Repository::parse(&body.repo)?,
            CommitSha::parse(&body.commit_sha)?,
            body.issue_number,
            with_parsed_links(body.data.clone()),
        )
    };
    let mut report = parse().map_err(|e| ApiError::unprocessable(e.0))?;
    // A fix this report creates records the key that sent it.
    report.api_key_id = Some(auth.api_key_id);
    let mut conn = state.conn().await?;
    let (record, fix) = store_phase_record(
        &mut conn,
        &state.config.pricing,
        auth.customer.id,
        &report,
        &state.config.email.links,
    )
    .await?;
    if let Some(fix) = &fix {
        tracing::info!(customer_id = auth.customer.id, fix_id = fix.id, billing_status = %fix.billing_status, "fix deployed");
    }
    Ok(Json(
        json!({ "success": true, "id": record.id.to_string() }),
    ))
}

/// Query string of the retrieve call.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetrieveQuery {
    /// `owner/name`.
    repo: String,
    /// Narrow to this issue.
    issue: Option<i64>,
    /// The commit (40 hex digits).
    commit: String,
}

/// What was stored for the repository and commit (narrowed to `issue` when
/// given): `{"scan": {...}, "validation": {"issue-17": {...}},
/// "mitigation": {"issue-17": {...}}}`, with absent phases left out; 404
/// when nothing is stored.
#[utoipa::path(
    get,
    path = "/api/v1/phases/retrieve",
    tag = "action",
    summary = "Read back the stored phase results of a repository and commit",
    params(RetrieveQuery),
    responses(
        (status = 200, description = "What was stored", body = crate::server::http::openapi::StoredPhases),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::server::http::openapi::ErrorBody),
        (status = 403, description = "Suspended customer", body = crate::server::http::openapi::ErrorBody),
        (status = 404, description = "Nothing stored", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "Malformed repository or commit", body = crate::server::http::openapi::ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = crate::server::http::openapi::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn retrieve_phases(
    State(state): State<AppState>,
    ApiCustomer(auth): ApiCustomer,
    ApiQuery(query): ApiQuery<RetrieveQuery>,
) -> Result<Json<Value>, ApiError> {
    let repository = Repository::parse(&query.repo).map_err(|e| ApiError::unprocessable(e.0))?;
    let commit = CommitSha::parse(&query.commit).map_err(|e| ApiError::unprocessable(e.0))?;
    let mut conn = state.conn().await?;
    let records = find_phases(
        &mut conn,
        auth.customer.id,
        &repository,
        &commit,
        query.issue,
    )
    .await?;
    if records.is_empty() {
        return Err(ApiError::not_found(
            "no phase data stored for this repository and commit",
        ));
    }
    let mut out = Map::new();
    for record in records {
        match Phase::parse(&record.phase) {
            Ok(Phase::Scan) => {
                out.insert("scan".into(), record.data);
            }
            Ok(phase) => {
                let by_issue = out
                    .entry(phase.as_str())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = by_issue {
                    map.insert(format!("issue-{}", record.issue_number), record.data);
                }
            }
            Err(_) => {}
        }
    }
    Ok(Json(Value::Object(out)))
}

/// `data` with its GitHub link fields (a mitigation's `prUrl`) parsed: a
/// value that is not an https GitHub URL (`types::urls::GitHubUrl`) is
/// replaced by `null`, so no stored phase holds a link from outside
/// unparsed. Never refuses the phase (the fix is still recorded and billed).
fn with_parsed_links(mut data: Value) -> Value {
    if let Some(object) = data.as_object_mut() {
        if let Some(link) = object.get_mut("prUrl") {
            *link =
                crate::types::urls::github_link(link.as_str()).map_or(Value::Null, Value::String);
        }
    }
    data
}
