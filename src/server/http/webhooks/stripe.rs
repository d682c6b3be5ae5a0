//! `POST /webhooks/stripe`: Stripe's webhook endpoint.

use crate::server::config::expose_all;
use crate::server::http::error::ApiError;
use crate::server::http::extract::ApiBytes;
use crate::server::state::AppState;
use crate::server::stripe::events::{record_event, StripeEvent};
use crate::server::stripe::signature;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// `POST /webhooks/stripe`. Verifies the `Stripe-Signature` header over the
/// raw body against every secret in `STRIPE_WEBHOOK_SECRETS` (HMAC-SHA256,
/// timestamp within 300 s), stores the event under its Stripe id and
/// enqueues its processing, then answers 200
/// `{"received": true, "duplicate": bool}` (a redelivered event is
/// acknowledged and ignored).
///
/// The work a stranger can cause is bounded: the body is capped by
/// `MAX_BODY_BYTES` before this runs, the header is parsed with caps on its
/// length and entries (`signature::parse_header`) before any HMAC, and the
/// body is hashed once per configured secret.
///
/// Errors: 400 `{"error": …}` for a missing, stale, wrong or oversized
/// signature header (over 1 KB, 16 entries or 8 `v1=` values) or a body
/// that is not an event (nothing stored); 500 when the database fails
/// (Stripe delivers again later).
#[utoipa::path(
    post,
    path = "/webhooks/stripe",
    tag = "webhooks",
    summary = "Receive a Stripe event (signed with Stripe-Signature)",
    description = "Stored under its id and applied by the `stripe.process_event` job; \
        a redelivered event is acknowledged and ignored.",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<HMAC-SHA256 hex>`")),
    request_body = crate::server::http::openapi::StripeEventBody,
    responses(
        (status = 200, description = "Stored (or seen before)", body = crate::server::http::openapi::StripeWebhookAnswer),
        (status = 400, description = "Missing, stale or wrong signature, or not an event", body = crate::server::http::openapi::ErrorBody),
        (status = 500, description = "Database failure (Stripe delivers again)", body = crate::server::http::openapi::ErrorBody),
    )
)]
pub async fn receive_stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    if let Err(error) = signature::verify(
        header,
        &body,
        &expose_all(&state.config.stripe.webhook_secrets),
        now,
    ) {
        tracing::warn!(%error, "Stripe webhook rejected");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid webhook signature: {error}"),
        ));
    }
    // PostgreSQL cannot store a NUL character (the event is kept).
    if crate::server::http::extract::json_has_nul(&body) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            crate::server::http::extract::NUL_MESSAGE,
        ));
    }
    let (event, raw) = StripeEvent::parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut conn = state.conn().await?;
    let new = record_event(&mut conn, &event, &raw).await?;
    tracing::info!(event_id = %event.id, event_type = %event.type_, duplicate = !new, "Stripe event received");
    Ok(Json(json!({ "received": true, "duplicate": !new })))
}
