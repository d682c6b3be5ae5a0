//! Malformed input to a server function is the client's fault: a 4xx.
//!
//! Leptos's server-function runtime answers every error it raises itself
//! with 500 (`server_fn`'s `error_response`), including a request body it
//! cannot decode — bytes that are not UTF-8, a field given as a nested
//! map (`email[x]=1`), a missing argument — before our function runs and
//! can set a status. Found by `tests/it/fuzz_inputs.rs`. This layer looks
//! only at such answers (status 500 with the `serverfnerror` header, under
//! `/api/` but not the Action API) and gives them the status of what they
//! say: a [`AppError::Validation`] (bad or missing argument) 422, a
//! transport error about decoding the request 400. The body is kept.
//!
//! And before any form handler runs, a url-encoded body whose fields hold a
//! NUL character (`%00`) is refused with 422: PostgreSQL's `text` cannot
//! store one, so the first query binding such a field (a rate-limit bucket,
//! a sign-in throttle) would fail with a 500.

use crate::app::server_errors::{ACTION_API_PREFIX, SERVER_FN_PREFIX};
use crate::types::AppError;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header Leptos puts on the errors it answers itself
/// (`server_fn::error::SERVER_FN_ERROR_HEADER`).
const SERVER_FN_ERROR_HEADER: &str = "serverfnerror";

/// Largest error body looked at; a longer one is left as it is.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What `server_fn` says when it cannot decode a request's arguments (its
/// `Deserialization` error's wording, the same for results and requests;
/// on the server only a request is decoded).
const DECODING: &str = "error deserializing server function";

/// Whether the request carries a url-encoded form.
fn is_form(request: &Request) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// The middleware: see the module docs.
pub async fn input_errors_are_4xx(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let server_fn = path.starts_with(SERVER_FN_PREFIX) && !path.starts_with(ACTION_API_PREFIX);
    let request = if is_form(&request) && !path.starts_with(ACTION_API_PREFIX) {
        let (parts, body) = request.into_parts();
        // Bounded by `MAX_BODY_BYTES` (the `DefaultBodyLimit` set outside).
        let bytes =
            match axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), &())
                .await
            {
                Ok(bytes) => bytes,
                Err(rejection) => return rejection.into_response(),
            };
        let nul = bytes.contains(&0)
            || url::form_urlencoded::parse(&bytes)
                .any(|(k, v)| k.contains('\0') || v.contains('\0'));
        if nul {
            let error = AppError::Validation("text must not contain NUL characters".into());
            return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(error)).into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let response = next.run(request).await;
    if !server_fn
        || response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match serde_json::from_slice::<AppError>(&bytes) {
        Ok(AppError::Validation(_)) => parts.status = StatusCode::UNPROCESSABLE_ENTITY,
        Ok(AppError::Transport(message)) if message.starts_with(DECODING) => {
            parts.status = StatusCode::BAD_REQUEST;
        }
        _ => {}
    }
    Response::from_parts(parts, Body::from(bytes))
}
