//! The operational layers around every route: request ids, one log line per
//! request, a request timeout and a panic catcher.
//!
//! Each request gets a span `request` with `method`, `route` (the matched
//! route template, e.g. `/api/v1/fix-attempts/{id}`, never the raw path with
//! its ids), `request_id` (the client's `x-request-id` when it sends a
//! usable one, else a fresh UUID; echoed in the response) and `customer_id`
//! (filled in by the API-key extractor, see [`record_customer`]). When the
//! response is ready one event `request finished` is logged in that span with
//! `status` and `latency_ms`: with the text format that is one line holding
//! every field, with `LOG_FORMAT=json` one JSON object (span fields under
//! `span`).
//!
//! Headers are never logged. `x-api-key`, `authorization`, `cookie`,
//! `set-cookie` and `stripe-signature` are in addition marked sensitive, so
//! any layer that does print headers shows them as `Sensitive`.

use axum::extract::MatchedPath;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, Request, Response, StatusCode};
use axum::middleware::Next;
use axum::Router;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The request-id header, read from the client and set on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Headers whose values must never reach a log line.
pub const SENSITIVE_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-api-key"),
    header::AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
    HeaderName::from_static("stripe-signature"),
];

/// The request's span, kept in the request's extensions: handlers and
/// extractors run inside other spans too (tower-sessions opens one), so
/// `Span::current()` there is not the request's.
#[derive(Clone)]
struct RequestSpan(Span);

async fn remember_span(
    mut request: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    request
        .extensions_mut()
        .insert(RequestSpan(Span::current()));
    next.run(request).await
}

/// Records the authenticated customer on the request's log line. Called by
/// the API-key extractor; a no-op for a request without the layers.
pub fn record_customer(parts: &Parts, customer_id: i64) {
    if let Some(RequestSpan(span)) = parts.extensions.get::<RequestSpan>() {
        span.record("customer_id", customer_id);
    }
}

/// Wraps every route of `router` (layers run after routing, so the matched
/// route template is known) with, outermost first: sensitive-header marking,
/// the request id (set, then propagated to the response), the request span
/// and its log line, the panic catcher (a panicking handler answers 500
/// `{"error": "internal error"}` and logs the panic) and the timeout (a
/// request running longer than `request_timeout` is answered 503 and
/// dropped).
pub fn around_routes<S>(router: Router<S>, request_timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(axum::middleware::from_fn(remember_span))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(log_response)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
            REQUEST_ID_HEADER,
        )))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static(REQUEST_ID_HEADER),
            MakeRequestUuid,
        ))
        .layer(SetSensitiveResponseHeadersLayer::new(SENSITIVE_HEADERS))
        .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE_HEADERS))
}

fn make_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("(unmatched)");
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(bounded_request_id)
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id = %request_id,
        customer_id = tracing::field::Empty,
    )
}

/// A client's request id, cut to 128 characters of `[A-Za-z0-9._:-]` so a
/// stranger cannot forge log structure with it.
fn bounded_request_id(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        .take(128)
        .collect()
}

fn log_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::warn!(status, latency_ms, "request finished");
    } else {
        tracing::info!(status, latency_ms, "request finished");
    }
}

fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<String> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    tracing::error!(panic = %message, "handler panicked; answered 500");
    let mut response = Response::new(r#"{"error":"internal error"}"#.to_owned());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        let router = Router::new()
            .route(
                "/boom/{id}",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
            .route("/hang", get(std::future::pending::<&'static str>))
            .route("/ok", get(|| async { "ok" }));
        around_routes(router, Duration::from_millis(200))
    }

    async fn call(path: &str, request_id: Option<&str>) -> Response<Body> {
        let mut request = Request::builder().uri(path);
        if let Some(id) = request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_with_a_json_error() {
        let response = call("/boom/7", Some("panic-1")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[REQUEST_ID_HEADER], "panic-1");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"error":"internal error"}"#);
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_is_answered_503() {
        let response = call("/hang", None).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        // A generated id (a UUID) is returned.
        assert_eq!(response.headers()[REQUEST_ID_HEADER].len(), 36);
        assert_eq!(call("/ok", None).await.status(), StatusCode::OK);
    }

    #[test]
    fn request_ids_are_bounded_and_plain() {
        assert_eq!(bounded_request_id("abc-123"), "abc-123");
        assert_eq!(bounded_request_id("a\"b\nc} d"), "abcd");
        assert_eq!(bounded_request_id(&"x".repeat(500)).len(), 128);
    }
}
