//! Rate limits at the HTTP edge, state in PostgreSQL shared by every
//! instance:
//!
//! - signups, per client IP ([`crate::server::client_ip`]): [`limit_signups_json`] (the onboarding API),
//!   [`limit_signups_form`] (the no-JavaScript form) and
//!   [`limit_signups_server_fn`] (the signup server function), all counting
//!   against one bucket per IP, `RATE_LIMIT_SIGNUPS_PER_MINUTE` per minute,
//!   counted exactly ([`crate::server::rate_limit::check`], one upsert per
//!   attempt: signups are few, and a limit of 10 leaves no room for an
//!   error bound);
//! - the Action API, per API key: [`limit_action_key`], called where a key
//!   is authenticated, `RATE_LIMIT_ACTION_PER_HOUR` per hour, with
//!   [`report_action_limit`] writing the headers; counted in memory and
//!   synced in batches ([`crate::server::rate_limit::SyncedLimiter`]).
//!
//! Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`
//! and `RateLimit-Reset` (seconds until the window resets); a refusal is a
//! 429 with `Retry-After` (seconds) and the message
//! `rate limit exceeded; retry in N seconds`.

use crate::app::home::Signup;
use crate::server::billing::api_keys::Authenticated;
use crate::server::client_ip::{self, ip_bucket};
use crate::server::http::error::ApiError;
use crate::server::http::pages::render_signup_page;
use crate::server::rate_limit::{check, Decision};
use crate::server::state::AppState;
use crate::types::AppError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leptos::server_fn::error::{FromServerFnError, SERVER_FN_ERROR_HEADER};
use leptos::server_fn::ServerFn;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The signup window: one minute.
pub const SIGNUP_WINDOW: Duration = Duration::from_secs(60);
/// The Action API's window: one hour.
pub const ACTION_WINDOW: Duration = Duration::from_secs(3600);

/// `RateLimit-Limit`: attempts allowed per window.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: attempts left in the window.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the window resets.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The path of the signup server function (`/api/signup`), which the router
/// mounts itself so that [`limit_signups_server_fn`] can wrap it.
pub fn signup_server_fn_path() -> &'static str {
    <Signup as ServerFn>::PATH
}

/// Writes the `RateLimit-*` headers of `decision`, and `Retry-After` when
/// it refused the attempt.
pub fn write_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(decision.reset_after_secs),
    );
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.reset_after_secs),
        );
    }
}

/// The message of a refusal: `rate limit exceeded; retry in N seconds`.
pub fn refusal_message(decision: &Decision) -> String {
    format!(
        "rate limit exceeded; retry in {} seconds",
        decision.reset_after_secs
    )
}

/// How a signup route answers a refusal or an internal failure.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// `{"error": "..."}`.
    Json,
    /// The home page with the message in its alert.
    Page,
    /// The server function's encoded [`AppError`].
    ServerFn,
}

/// Middleware for `POST /api/v1/customers/onboard`: counts the attempt
/// against the client IP's signup bucket; 429 JSON when over the limit.
pub async fn limit_signups_json(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    limit_signup(state, request, next, Answer::Json).await
}

/// Middleware for the no-JavaScript `POST /signup` and `POST /register`: as
/// [`limit_signups_json`], answering a refusal with the page (status 429)
/// showing [`AppError::RateLimited`].
pub async fn limit_signups_form(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    limit_signup(state, request, next, Answer::Page).await
}

/// Middleware for the signup server function: as [`limit_signups_json`],
/// answering a refusal with status 429 and the encoded
/// [`AppError::RateLimited`], which the hydrated page shows.
pub async fn limit_signups_server_fn(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    limit_signup(state, request, next, Answer::ServerFn).await
}

async fn limit_signup(state: AppState, request: Request, next: Next, answer: Answer) -> Response {
    let (parts, body) = request.into_parts();
    let Some(ip) = client_ip::from_parts(&parts, &state.config) else {
        tracing::error!(
            "no client address: serve the router with into_make_service_with_connect_info::<SocketAddr>()"
        );
        return fail(
            &state,
            parts,
            answer,
            StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Internal,
        )
        .await;
    };
    let counted = count(
        &state,
        &ip_bucket("signup:ip", ip),
        state.config.rate_limit_signups_per_minute,
        SIGNUP_WINDOW,
    )
    .await;
    let decision = match counted {
        Ok(decision) => decision,
        Err(error) => {
            tracing::error!(%error, "signup rate limit could not be checked");
            return fail(
                &state,
                parts,
                answer,
                StatusCode::INTERNAL_SERVER_ERROR,
                AppError::Internal,
            )
            .await;
        }
    };
    let mut response = if decision.allowed {
        next.run(Request::from_parts(parts, body)).await
    } else {
        tracing::info!(%ip, "signup refused by the rate limit");
        crate::server::metrics::rate_limit_refused("signup");
        let error = AppError::RateLimited(refusal_message(&decision));
        fail(&state, parts, answer, StatusCode::TOO_MANY_REQUESTS, error).await
    };
    write_headers(response.headers_mut(), &decision);
    response
}

/// One counted attempt on a pooled connection, returned to the pool before
/// the request goes on.
async fn count(
    state: &AppState,
    bucket: &str,
    limit: u32,
    window: Duration,
) -> Result<Decision, String> {
    let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
    check(&mut conn, bucket, limit, window)
        .await
        .map_err(|e| e.to_string())
}

async fn fail(
    state: &AppState,
    parts: Parts,
    answer: Answer,
    status: StatusCode,
    error: AppError,
) -> Response {
    match answer {
        Answer::Json => {
            let message = match &error {
                AppError::Internal => "internal error; please retry".to_owned(),
                other => other.to_string(),
            };
            ApiError::new(status, message).into_response()
        }
        Answer::Page => render_signup_page(state, parts, Err(error), status).await,
        Answer::ServerFn => {
            let mut response = Response::new(Body::from(error.ser()));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(path) = HeaderValue::from_str(parts.uri.path()) {
                headers.insert(SERVER_FN_ERROR_HEADER, path);
            }
            response
        }
    }
}

/// Where [`limit_action_key`] leaves its decision for
/// [`report_action_limit`] to write into the response's headers (a request
/// extension; the handler's authentication runs in between).
#[derive(Debug, Clone, Default)]
pub struct DecisionSlot(Arc<Mutex<Option<Decision>>>);

impl DecisionSlot {
    fn put(&self, decision: Decision) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(decision);
        }
    }

    fn take(&self) -> Option<Decision> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Middleware for the Action API's routes: gives the request a
/// [`DecisionSlot`] and writes the `RateLimit-*` (and, on a 429,
/// `Retry-After`) headers of the decision [`limit_action_key`] left in it.
pub async fn report_action_limit(mut request: Request, next: Next) -> Response {
    let slot = DecisionSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    if let Some(decision) = slot.take() {
        write_headers(response.headers_mut(), &decision);
    }
    response
}

/// Counts one Action API request against the authenticated key's hourly
/// budget (`RATE_LIMIT_ACTION_PER_HOUR`, bucket `action:key:<key id>`) with
/// the instance's [`crate::server::rate_limit::SyncedLimiter`] (in memory,
/// synced to PostgreSQL in batches; its documentation states the error
/// bound across instances), and leaves the decision in the request's
/// [`DecisionSlot`], if it has one.
///
/// Errors: 429 `rate limit exceeded; retry in N seconds` over the limit;
/// 500 when the count fails (logged).
pub async fn limit_action_key(
    state: &AppState,
    parts: &Parts,
    auth: &Authenticated,
) -> Result<(), ApiError> {
    let decision = state
        .action_limiter
        .hit(
            &format!("action:key:{}", auth.api_key_id),
            state.config.rate_limit_action_per_hour,
            ACTION_WINDOW,
        )
        .await
        .map_err(|error| {
            tracing::error!(%error, "Action API rate limit could not be checked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; please retry",
            )
        })?;
    if let Some(slot) = parts.extensions.get::<DecisionSlot>() {
        slot.put(decision);
    }
    if decision.allowed {
        Ok(())
    } else {
        tracing::info!(
            api_key_id = auth.api_key_id,
            "Action API request refused by the rate limit"
        );
        crate::server::metrics::rate_limit_refused("action");
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            refusal_message(&decision),
        ))
    }
}
