//! Server-side helpers the server functions of every area share (`ssr`
//! only): the HTTP status of an [`AppError`] and ISO-8601 timestamps. They
//! live in `app` (not in `server::http`) because `app` never imports the
//! HTTP adapter; `server::http` re-uses them from here.

use crate::types::AppError;
use axum::http::header::ACCEPT;
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use leptos::prelude::use_context;

/// The status for an error of a server function (portal, admin, auth, home).
pub fn error_status(error: &AppError) -> StatusCode {
    match error {
        AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::Unauthorized => StatusCode::UNAUTHORIZED,
        AppError::Forbidden => StatusCode::FORBIDDEN,
        AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        AppError::NotFound => StatusCode::NOT_FOUND,
        AppError::Internal | AppError::Transport(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Path prefix of the server functions (`/api/<endpoint>`); the Action's
/// JSON API under [`ACTION_API_PREFIX`] is not one of them.
pub const SERVER_FN_PREFIX: &str = "/api/";

/// Path prefix of the Action's JSON API.
pub const ACTION_API_PREFIX: &str = "/api/v1/";

/// Inside a server function (portal, home signup): sets the response status for `error` when
/// the function was called over HTTP by `fetch` (the hydrated app or an
/// API client). Left alone are page renders, whose server-side calls run
/// under the page's request (the page shows the error, answered 200), and
/// plain HTML form posts (no JavaScript), which Leptos answers with a
/// redirect back to the page that a status would break.
pub fn set_error_status(error: &AppError) {
    let is_fetch_call = use_context::<Parts>().is_some_and(|parts| {
        let accepts_html = parts
            .headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        let path = parts.uri.path();
        path.starts_with(SERVER_FN_PREFIX) && !path.starts_with(ACTION_API_PREFIX) && !accepts_html
    });
    if !is_fetch_call {
        return;
    }
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(error_status(error));
    }
}

/// ISO-8601 UTC with a `Z` and whole seconds, as in the Action API
/// contract's examples (`2026-11-21T13:00:00Z`); the portal shows the same.
pub fn iso_utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
