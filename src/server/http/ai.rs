//! The AI gateway's routes under `/ai` (issue 10): the Action's AI client
//! points its one base URL, `RSOLV_AI_BASE_URL`, at `<platform>/ai` and
//! appends `/v1/messages` (Anthropic) or `/chat/completions` (OpenAI,
//! OpenRouter); ACTION_API.md § 8. The work is in
//! [`crate::server::ai::gateway`]; these handlers read the body within the
//! limit and hand it over.

use crate::server::ai::gateway::{refusal, Endpoint, Gateway, RefusalKind};
use crate::server::state::AppState;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use std::sync::Arc;

/// The `/ai` routes, sharing one [`Gateway`] (HTTP client and in-flight
/// counts). The body limit is `AI_MAX_REQUEST_BYTES` (not
/// `MAX_BODY_BYTES`), answered 413 in the provider's shape.
///
/// When the gateway's HTTP client cannot be built (TLS set-up), the error
/// is logged and every call answers 503.
pub fn routes(state: &AppState) -> Router<AppState> {
    let gateway = match Gateway::new(state) {
        Ok(gateway) => Arc::new(gateway),
        Err(error) => {
            tracing::error!(%error, "AI gateway disabled: its HTTP client cannot be built");
            return Router::new().fallback(|| async {
                refusal(
                    crate::server::ai::Dialect::OpenAi,
                    RefusalKind::Unavailable,
                    "the AI gateway is unavailable",
                )
            });
        }
    };
    Router::new()
        .route("/v1/messages", post(proxy_messages))
        .route("/chat/completions", post(proxy_chat_completions))
        .layer(Extension(gateway))
        .layer(DefaultBodyLimit::disable())
}

/// `POST /ai/v1/messages`: Anthropic's Messages API, key in `x-api-key`.
pub async fn proxy_messages(
    Extension(gateway): Extension<Arc<Gateway>>,
    request: Request,
) -> Response {
    proxy(&gateway, Endpoint::Messages, request).await
}

/// `POST /ai/chat/completions`: OpenAI's Chat Completions (OpenAI or
/// OpenRouter, by the key), key as `Authorization: Bearer`.
pub async fn proxy_chat_completions(
    Extension(gateway): Extension<Arc<Gateway>>,
    request: Request,
) -> Response {
    proxy(&gateway, Endpoint::ChatCompletions, request).await
}

async fn proxy(gateway: &Gateway, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body): (_, Body) = request.into_parts();
    let headers: HeaderMap = parts.headers;
    let limit = gateway.max_request_bytes();
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return refusal(
                endpoint.dialect(),
                RefusalKind::TooLarge,
                &format!("the request body must be at most {limit} bytes"),
            )
        }
    };
    gateway.forward(endpoint, &headers, body).await
}
