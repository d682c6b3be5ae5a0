//! `POST /webhooks/github`: the GitHub App's webhook endpoint (GitHub
//! Marketplace `marketplace_purchase` events; other events are recorded and
//! ignored).

use crate::server::config::expose_all;
use crate::server::http::error::ApiError;
use crate::server::http::extract::ApiBytes;
use crate::server::marketplace::events::{receive_delivery, Delivery, DeliveryError, Outcome};
use crate::server::marketplace::signature;
use crate::server::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `POST /webhooks/github`. Verifies `X-Hub-Signature-256` over the raw
/// body against every secret in `GITHUB_WEBHOOK_SECRET` (HMAC-SHA256,
/// constant-time), then records the delivery under its `X-GitHub-Delivery`
/// id and applies it in the same transaction
/// ([`crate::server::marketplace::events`]). Answers 200
/// `{"received": true, "duplicate": bool, "status": "processed" | "ignored"
/// | "duplicate", "customer_id": i64 | null}`; a delivery id seen before
/// (processed or ignored) is acknowledged and changes nothing.
///
/// Errors (`{"error": …}`): 401 for a missing or wrong signature, or no
/// secret configured (nothing stored); 400 without `X-GitHub-Delivery` or
/// `X-GitHub-Event`, or for a body that is not a JSON object (nothing
/// stored); 422 when the event cannot be applied (e.g. its Marketplace plan
/// is not in `GITHUB_MARKETPLACE_PLANS`): stored `failed` with the reason,
/// nothing applied. GitHub does not retry failed deliveries by itself, so
/// a non-2xx answer is what shows the failure in the app's "Recent
/// Deliveries", where "Redeliver" (same delivery id) applies it again once
/// the cause is fixed. 500 when the database fails.
#[utoipa::path(
    post,
    path = "/webhooks/github",
    tag = "webhooks",
    summary = "Receive a GitHub App delivery (Marketplace purchases)",
    description = "Recorded under its delivery id and applied in the same transaction; \
        events other than `marketplace_purchase` are recorded and ignored.",
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<HMAC-SHA256 hex>` of the body"),
        ("X-GitHub-Delivery" = String, Header, description = "The delivery id (at most 100 characters)"),
        ("X-GitHub-Event" = String, Header, description = "The event name, e.g. `marketplace_purchase`"),
    ),
    request_body(content = Object, description = "The event's JSON object"),
    responses(
        (status = 200, description = "Applied, ignored or seen before", body = crate::server::http::openapi::GithubWebhookAnswer),
        (status = 400, description = "Missing delivery or event header, or not a JSON object", body = crate::server::http::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong signature, or no secret configured", body = crate::server::http::openapi::ErrorBody),
        (status = 422, description = "The event cannot be applied (stored as failed)", body = crate::server::http::openapi::ErrorBody),
        (status = 500, description = "Database failure", body = crate::server::http::openapi::ErrorBody),
    )
)]
pub async fn receive_github_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let started = std::time::Instant::now();
    if let Err(error) = signature::verify(
        header(&headers, "x-hub-signature-256"),
        &body,
        &expose_all(&state.config.github.webhook_secrets),
    ) {
        tracing::warn!(%error, "GitHub webhook rejected");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("invalid webhook signature: {error}"),
        ));
    }
    let bad_request = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, message.to_owned());
    let delivery_id = header(&headers, "x-github-delivery")
        .filter(|id| id.len() <= 100)
        .ok_or_else(|| bad_request("missing or over-long X-GitHub-Delivery header"))?;
    let event = header(&headers, "x-github-event")
        .ok_or_else(|| bad_request("missing X-GitHub-Event header"))?;
    // PostgreSQL cannot store a NUL character (the payload is kept).
    if crate::server::http::extract::json_has_nul(&body) {
        return Err(bad_request(crate::server::http::extract::NUL_MESSAGE));
    }
    let payload: Value = serde_json::from_slice(&body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| bad_request("the body is not a JSON object"))?;
    let delivery = Delivery {
        delivery_id,
        event,
        payload: &payload,
    };
    let mut conn = state.conn().await?;
    let outcome = match receive_delivery(&mut conn, &state.config, &delivery).await {
        Ok(outcome) => outcome,
        Err(DeliveryError::Rejected(message)) => {
            tracing::warn!(delivery_id, event, error = %message, "GitHub delivery failed");
            crate::server::metrics::webhook_failed("github");
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message));
        }
        Err(DeliveryError::Billing(error)) => {
            crate::server::metrics::webhook_failed("github");
            return Err(error.into());
        }
    };
    let (status, customer_id) = match outcome {
        Outcome::Processed { customer_id } => {
            crate::server::metrics::webhook_processed("github", started.elapsed());
            ("processed", customer_id)
        }
        Outcome::Ignored => ("ignored", None),
        Outcome::Duplicate => ("duplicate", None),
    };
    tracing::info!(
        delivery_id,
        event,
        status,
        ?customer_id,
        "GitHub delivery received"
    );
    Ok(Json(json!({
        "received": true,
        "duplicate": status == "duplicate",
        "status": status,
        "customer_id": customer_id,
    })))
}
