//! The reference server of `scripts/bench.sh` (issue 13): axum and one
//! indexed PostgreSQL read per request, nothing else. It is the yardstick
//! the platform's hot paths are measured against in the same run, on the
//! same machine, with the same pool and TLS settings — never part of
//! `serve`.
//!
//! `POST /reference` (any body, ignored) with `x-api-key: <key>` looks the
//! key's SHA-256 up in `api_keys` by its unique index (the same read the
//! Action API's key check starts with) and answers `{"id": <api_keys.id>}`,
//! or 401 `{"error": "unknown key"}`.

use crate::server::billing::api_keys::hash_key;
use crate::server::config::{Config, ExposeSecret};
use crate::server::db::schema::api_keys;
use crate::server::db::{build_pool, DbPool};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};

/// Serves the reference on `addr` until the process is stopped, with a pool
/// of `DATABASE_POOL_SIZE` connections to `DATABASE_URL` (the platform's own
/// settings, so both sides of the comparison get the same database budget).
///
/// Errors: a message when the pool cannot be built or `addr` cannot be bound.
pub async fn serve(config: &Config, addr: std::net::SocketAddr) -> Result<(), String> {
    let pool = build_pool(
        config.database_url.expose_secret(),
        config.database_pool_size,
        30,
    )
    .map_err(|e| e.to_string())?;
    let app = Router::new()
        .route("/reference", post(reference))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("reference server listening on http://{addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

async fn reference(
    State(pool): State<DbPool>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let unavailable = |_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "database unavailable"})),
        )
    };
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut conn = pool.get().await.map_err(|e| unavailable(e.to_string()))?;
    let id: Option<i64> = api_keys::table
        .filter(api_keys::token_hash.eq(hash_key(key).as_slice()))
        .select(api_keys::id)
        .first(&mut conn)
        .await
        .optional()
        .map_err(|e| unavailable(e.to_string()))?;
    match id {
        Some(id) => Ok(Json(json!({ "id": id }))),
        None => Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unknown key"})),
        )),
    }
}
