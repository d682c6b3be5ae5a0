//! Extractors for the JSON API: JSON bodies and queries whose rejections are
//! `{"error": "..."}`, and the API-key authentication.

use crate::server::billing::api_keys::{authenticate, Authenticated};
use crate::server::http::error::ApiError;
use crate::server::http::rate_limit::limit_action_key;
use crate::server::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::Json;

/// `axum::Json` with JSON error bodies: 400 for malformed JSON, 422 for
/// wrong types or missing fields or a NUL character in a string
/// ([`json_has_nul`]), 415 without a JSON content type, 413 for bodies
/// above `MAX_BODY_BYTES`.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        if !json_content_type(request.headers()) {
            return Err(axum::extract::rejection::JsonRejection::from(
                axum::extract::rejection::MissingJsonContentType::default(),
            )
            .into());
        }
        let ApiBytes(body) = ApiBytes::from_request(request, state).await?;
        if json_has_nul(&body) {
            return Err(ApiError::unprocessable(NUL_MESSAGE));
        }
        let Json(value) = Json::<T>::from_bytes(&body)?;
        Ok(Self(value))
    }
}

/// Whether the `Content-Type` is JSON (`application/json` or
/// `application/*+json`, parameters ignored), as `axum::Json` requires.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// What a body with a NUL character in a string is told.
pub const NUL_MESSAGE: &str = "text must not contain NUL characters (\\u0000)";

/// Whether the JSON text `body` holds the escape `\u0000` (a NUL
/// character, the one thing JSON can carry that PostgreSQL's `text` and
/// `jsonb` cannot store: it would fail the insert with a 500). An escaped
/// backslash followed by `u0000` is not one. Linear, no allocation; run
/// before parsing, on bodies already bounded by `MAX_BODY_BYTES`.
pub fn json_has_nul(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            if body.get(i + 1) == Some(&b'u') && body.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The raw body (`axum::body::Bytes`, for the webhooks, which verify a
/// signature over the exact bytes) with JSON error bodies: 413 for bodies
/// above `MAX_BODY_BYTES`.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            axum::body::Bytes::from_request(request, state)
                .await
                .map_err(ApiError::from)?,
        ))
    }
}

/// `axum::extract::Query` with a JSON 400 on malformed query strings.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The header carrying the API key (`x-api-key`; header names are
/// case-insensitive, so `X-API-Key` matches too).
pub const API_KEY_HEADER: &str = "x-api-key";

/// The presented API key, if any, from the `x-api-key` header.
pub fn presented_key(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// A request authenticated by its `x-api-key` header: 401 when missing,
/// unknown, revoked or expired, 403 when the customer is suspended.
pub struct ApiCustomer(pub Authenticated);

impl FromRequestParts<AppState> for ApiCustomer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate_key(state, parts, presented_key(parts))
            .await
            .map(ApiCustomer)
    }
}

/// Authenticates a presented key (see [`authenticate`]) and counts the
/// request against the key's Action API rate limit (see
/// [`limit_action_key`]; `parts` is the request's, for the headers).
///
/// Errors: 401/403 for a key that is not accepted, 429 over the limit.
pub async fn authenticate_key(
    state: &AppState,
    parts: &Parts,
    key: Option<&str>,
) -> Result<Authenticated, ApiError> {
    let auth = {
        let mut conn = state.conn().await?;
        authenticate(&mut conn, key).await??
    };
    crate::server::http::layers::record_customer(parts, auth.customer.id);
    limit_action_key(state, parts, &auth).await?;
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use super::json_has_nul;

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(json_has_nul(br#"{"a":"x\u0000"}"#));
        assert!(json_has_nul(br#"["\\\u0000"]"#));
        assert!(!json_has_nul(br#"{"a":"\\u0000"}"#));
        assert!(!json_has_nul(br#"{"a":"\u0001\n"}"#));
        assert!(!json_has_nul(b"\\"));
    }
}
