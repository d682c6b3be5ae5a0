//! Probes: `/livez` (the process answers), `/readyz` (it should get
//! traffic) and the older `/health`.

use crate::server::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use diesel_async::RunQueryDsl;

/// Liveness probe path: restart the process when it stops answering.
pub const LIVENESS_PATH: &str = "/livez";
/// Readiness probe path: send traffic only while it answers 200.
pub const READINESS_PATH: &str = "/readyz";
/// The combined health check kept for load balancers set up before the
/// probes existed (200 when the database answers).
pub const HEALTH_PATH: &str = "/health";

/// `GET /livez`: always 200 `{"status": "ok"}` while the process serves
/// requests; touches nothing else (a database outage must not restart every
/// replica).
pub async fn livez() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 `{"status": "ready", "database": "ok"}` when the
/// process is not draining and a query succeeds; 503 with
/// `"status": "draining"` after SIGTERM, or `"database": "unreachable"`.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.draining.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "draining" })),
        );
    }
    if database_ok(&state).await {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready", "database": "ok" })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready", "database": "unreachable" })),
        )
    }
}

/// Whether a pooled connection answers `SELECT 1`.
pub async fn database_ok(state: &AppState) -> bool {
    match state.pool.get().await {
        Ok(mut conn) => diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .is_ok(),
        Err(_) => false,
    }
}
