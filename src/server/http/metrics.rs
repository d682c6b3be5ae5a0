//! The metrics adapter: the middleware that counts and times every routed
//! request ([`track_http`]) and the scrape router ([`metrics_router`],
//! `GET /metrics`), which the wiring serves on its own listener
//! (`METRICS_ADDR`), never on the public site. Names and recording live in
//! [`crate::server::metrics`].

use crate::server::metrics;
use crate::server::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::{Duration, Instant};

/// How long a scrape waits for the database gauges before answering with
/// the values it has.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// Route-layer middleware: records [`metrics::HTTP_REQUESTS_TOTAL`] and
/// [`metrics::HTTP_REQUEST_DURATION_SECONDS`] under the route's template
/// (`MatchedPath`, so `/api/v1/fix-attempts/{id}/billing`, never the ids
/// in a URL). Requests that match no route (static files, 404s) are not
/// counted: their paths are strangers' input.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    if let Some(route) = route {
        metrics::http_request(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
}

/// The scrape router: `GET /metrics` refreshes the pool and database gauges
/// and answers the text exposition (`text/plain; version=0.0.4`). Installs
/// the recorder. Serve it on a private address only: it has no
/// authentication.
pub fn metrics_router(state: AppState) -> Router {
    metrics::install();
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let status = state.pool.status();
    metrics::pool(
        status.max_size,
        status.size,
        status.available,
        status.waiting,
    );
    let refreshed = tokio::time::timeout(REFRESH_TIMEOUT, async {
        let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
        metrics::refresh_from_database(&mut conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("timed out".to_owned()));
    if let Err(error) = refreshed {
        tracing::warn!(%error, "metrics: database gauges not refreshed");
        metrics::refresh_failed();
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::render(),
    )
}
