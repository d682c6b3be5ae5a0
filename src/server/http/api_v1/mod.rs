//! The JSON API under `/api/v1`: the Action's five endpoints
//! (ACTION_API.md, a compatibility contract: paths, headers, field names and
//! casing must not change), customer onboarding and the billing status.

mod credentials;
// Visible to `http::openapi`, which lists their handlers in the spec.
pub(super) mod customers;
pub(super) mod fix_attempts;
pub(super) mod phases;
pub(super) mod usage;

use crate::server::http::rate_limit::{limit_signups_json, report_action_limit};
use crate::server::state::AppState;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::sync::Arc;

/// The `/api/v1` routes. Onboarding counts against the client IP's signup
/// rate limit; the key-authenticated routes against the key's hourly limit
/// (counted where the key is authenticated, reported in headers by
/// [`report_action_limit`]).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/customers/onboard",
            post(customers::onboard_customer).route_layer(middleware::from_fn_with_state(
                state.clone(),
                limit_signups_json,
            )),
        )
        .merge(action_routes().route_layer(middleware::from_fn(report_action_limit)))
        // The spec of this API and the webhooks, and a page that reads it.
        .route("/openapi.json", get(super::openapi::serve_spec))
        .route("/docs", get(super::openapi::serve_docs))
}

/// The routes authenticated by `x-api-key`.
fn action_routes() -> Router<AppState> {
    Router::new()
        .route("/billing/status", get(customers::show_billing_status))
        .route(
            "/credentials/exchange",
            // The virtual keys this router vended, kept for reuse.
            post(credentials::exchange_credentials).layer(Extension(Arc::new(
                crate::server::ai::keys::VendedKeys::default(),
            ))),
        )
        .route("/usage/report", post(usage::report_usage))
        .route("/phases/store", post(phases::store_phase))
        .route("/phases/retrieve", get(phases::retrieve_phases))
        .route(
            "/fix-attempts",
            post(fix_attempts::create_fix_attempt).get(fix_attempts::find_fix_attempt),
        )
        .route(
            "/fix-attempts/{id}/billing",
            post(fix_attempts::bill_fix_attempt),
        )
}

pub(crate) use crate::app::server_errors::iso_utc;

/// Rejects strings longer than `max` characters with a 422 naming `field`.
pub(crate) fn check_len(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<(), crate::server::http::error::ApiError> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(crate::server::http::error::ApiError::unprocessable(
                format!("{field} must be at most {max} characters"),
            ))
        }
        _ => Ok(()),
    }
}
