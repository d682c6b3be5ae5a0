//! Maintenance mode: while the `maintenance` flag is on (at runtime, or
//! forced by `FLAG_MAINTENANCE`), every `/api/v1/*` request is answered 503
//! with `{"error": ...}` and `Retry-After` (`MAINTENANCE_RETRY_AFTER_SECONDS`)
//! before it reaches a handler. The portal and the admin console stay up.

use crate::server::flags::Flag;
use crate::server::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The message of the 503.
pub const MAINTENANCE_MESSAGE: &str =
    "RSOLV is down for maintenance; please retry after the time in Retry-After";

/// Middleware for `/api/v1`: 503 during maintenance, else the handler.
pub async fn refuse_during_maintenance(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.flags().is_on(Flag::Maintenance) {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": MAINTENANCE_MESSAGE })),
    )
        .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(state.config.maintenance_retry_after_seconds),
    );
    response
}
