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

use crate::app::server_errors::{ACTION_API_PREFIX, SERVER_FN_PREFIX};
use crate::types::AppError;
use axum::body::Body;
use axum::extract::Request;
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

/// The middleware: see the module docs.
pub async fn input_errors_are_4xx(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let server_fn = path.starts_with(SERVER_FN_PREFIX) && !path.starts_with(ACTION_API_PREFIX);
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
