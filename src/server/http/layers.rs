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
//!
//! [`security_headers`] adds the browser security headers to every response
//! (issue 12, scope 2): a Content-Security-Policy with the page's nonce,
//! `X-Content-Type-Options`, `Referrer-Policy`, `Permissions-Policy`,
//! `X-Frame-Options`, and HSTS when the public URL is https.

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
use tower_http::set_header::SetResponseHeaderLayer;
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

/// `Referrer-Policy`: full URLs only to our own origin, the origin alone
/// to others over https, nothing over http.
pub const REFERRER_POLICY: &str = "strict-origin-when-cross-origin";

/// `Permissions-Policy`: no powerful feature the app never uses. `payment`
/// is left alone (Stripe.js may use the Payment Request API).
pub const PERMISSIONS_POLICY: &str =
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), usb=()";

/// `Strict-Transport-Security` when the public URL is https: one year.
pub const HSTS: &str = "max-age=31536000";

/// The Stripe origins the official Stripe.js needs (Stripe's "Content
/// Security Policy" guide), used when `STRIPE_JS_URL` is on js.stripe.com.
const STRIPE_SCRIPT_SOURCES: &str = "https://js.stripe.com https://*.js.stripe.com";
const STRIPE_FRAME_SOURCES: &str =
    "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com";
const STRIPE_CONNECT_SOURCES: &str = "https://api.stripe.com";
const STRIPE_IMG_SOURCES: &str = "https://*.stripe.com";

/// What the security headers depend on, from the configuration.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    /// The Content-Security-Policy without its script nonce, as made by
    /// [`SecurityHeaders::new`].
    csp: String,
    /// Whether to send HSTS (the public URL is https).
    hsts: bool,
}

impl SecurityHeaders {
    /// The headers for an app whose Stripe.js comes from `stripe_js_url`
    /// (`STRIPE_JS_URL`) and whose public URL is https when `https`
    /// (`PUBLIC_BASE_URL`; HSTS is sent only then).
    ///
    /// The policy allows exactly what the pages load: scripts, styles,
    /// images, fonts, fetches (server functions, the WASM) from our own
    /// origin; `'wasm-unsafe-eval'` to compile the WASM; the inline hydration
    /// and resource scripts only through the per-response nonce; Stripe.js's
    /// origin for scripts, frames and fetches (the official Stripe.js also
    /// gets the origins Stripe documents); no plugins, no `<base>`, forms
    /// posting only to us, and no framing by anyone.
    pub fn new(stripe_js_url: &str, https: bool) -> Self {
        let stripe = origin_of(stripe_js_url);
        let official = stripe.as_deref() == Some("https://js.stripe.com");
        let (script, frame, connect, img) = match (&stripe, official) {
            (_, true) => (
                STRIPE_SCRIPT_SOURCES.to_owned(),
                STRIPE_FRAME_SOURCES.to_owned(),
                STRIPE_CONNECT_SOURCES.to_owned(),
                STRIPE_IMG_SOURCES.to_owned(),
            ),
            (Some(origin), false) => (
                origin.clone(),
                origin.clone(),
                origin.clone(),
                String::new(),
            ),
            (None, false) => Default::default(),
        };
        let frame = if frame.is_empty() {
            "'none'".to_owned()
        } else {
            frame
        };
        let csp = format!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{{nonce}} {script}; \
             style-src 'self'; img-src 'self' data: {img}; font-src 'self'; \
             connect-src 'self' {connect}; frame-src {frame}; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        // Collapse the doubled spaces left by empty source lists.
        let csp = csp.split_whitespace().collect::<Vec<_>>().join(" ");
        let csp = csp.replace(" ;", ";");
        Self { csp, hsts: https }
    }

    /// The Content-Security-Policy for a response whose inline scripts
    /// carry `nonce` (none: inline scripts are refused).
    pub fn content_security_policy(&self, nonce: Option<&str>) -> String {
        let nonce = nonce
            .filter(|n| !n.is_empty() && n.bytes().all(is_nonce_byte))
            .map(|n| format!(" 'nonce-{n}'"))
            .unwrap_or_default();
        self.csp.replace("{nonce}", &nonce)
    }
}

fn is_nonce_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'=')
}

/// `scheme://host[:port]` of an http(s) URL, lower-cased; `None` for
/// anything else.
fn origin_of(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let scheme_end = lower.find("://")?;
    let scheme = &lower[..scheme_end];
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let rest = &lower[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'));
    valid.then(|| format!("{scheme}://{authority}"))
}

/// Adds the security headers of `headers` to every response of `router`:
/// `X-Content-Type-Options: nosniff`, `Referrer-Policy`
/// ([`REFERRER_POLICY`]), `Permissions-Policy` ([`PERMISSIONS_POLICY`]),
/// `X-Frame-Options: DENY` (for browsers without `frame-ancestors`), HSTS
/// ([`HSTS`]) when the public URL is https, and the
/// Content-Security-Policy ([`SecurityHeaders::new`]) with the nonce the
/// page's shell handed over in [`crate::app::CSP_NONCE_HEADER`] (that
/// header is removed). A header a handler set itself is kept.
pub fn security_headers<S>(router: Router<S>, headers: &SecurityHeaders) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let hsts = headers.hsts.then(|| header::HeaderValue::from_static(HSTS));
    let csp = headers.clone();
    router
        .layer(axum::middleware::map_response(
            move |mut response: axum::response::Response| {
                let csp = csp.clone();
                async move {
                    let nonce = response.headers_mut().remove(crate::app::CSP_NONCE_HEADER);
                    let nonce = nonce.as_ref().and_then(|v| v.to_str().ok());
                    if !response
                        .headers()
                        .contains_key(header::CONTENT_SECURITY_POLICY)
                    {
                        if let Ok(value) =
                            header::HeaderValue::from_str(&csp.content_security_policy(nonce))
                        {
                            response
                                .headers_mut()
                                .insert(header::CONTENT_SECURITY_POLICY, value);
                        }
                    }
                    response
                }
            },
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static(REFERRER_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("permissions-policy"),
            header::HeaderValue::from_static(PERMISSIONS_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            hsts,
        ))
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
    fn the_policy_names_stripe_from_config_and_the_nonce() {
        let local = SecurityHeaders::new("http://127.0.0.1:8420/js.stripe.com/v3/", false);
        let csp = local.content_security_policy(Some("abc_-123"));
        assert!(
            csp.contains(
                "script-src 'self' 'wasm-unsafe-eval' 'nonce-abc_-123' http://127.0.0.1:8420;"
            ),
            "{csp}"
        );
        assert!(csp.contains("frame-src http://127.0.0.1:8420;"), "{csp}");
        assert!(
            csp.contains("connect-src 'self' http://127.0.0.1:8420;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // A nonce that could break out of the header is dropped.
        let bad = local.content_security_policy(Some("x' 'unsafe-inline"));
        assert!(
            !bad.contains("nonce") && !bad.contains("unsafe-inline"),
            "{bad}"
        );
        let official = SecurityHeaders::new("https://js.stripe.com/v3/", true);
        let csp = official.content_security_policy(None);
        assert!(
            csp.contains("https://js.stripe.com https://*.js.stripe.com"),
            "{csp}"
        );
        assert!(csp.contains("https://hooks.stripe.com"), "{csp}");
        assert!(
            csp.contains("connect-src 'self' https://api.stripe.com;"),
            "{csp}"
        );
        assert!(!csp.contains("nonce"), "{csp}");
        assert!(official.hsts && !local.hsts);
        let none = SecurityHeaders::new("javascript:alert(1)", false).content_security_policy(None);
        assert!(
            none.contains("frame-src 'none';") && !none.contains("javascript"),
            "{none}"
        );
    }

    #[tokio::test]
    async fn every_response_gets_the_headers_and_the_nonce_header_is_removed() {
        let router: Router = Router::new()
            .route(
                "/page",
                get(|| async {
                    (
                        [(crate::app::CSP_NONCE_HEADER, "n0nce")],
                        axum::response::Html("<p>hi</p>"),
                    )
                }),
            )
            .route("/json", get(|| async { axum::Json(serde_json::json!({})) }));
        let router = security_headers(
            router,
            &SecurityHeaders::new("https://js.stripe.com/v3/", true),
        );
        let page = router
            .clone()
            .oneshot(Request::builder().uri("/page").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let h = page.headers();
        assert!(h.get(crate::app::CSP_NONCE_HEADER).is_none());
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("'nonce-n0nce'"), "{csp}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], HSTS);
        let json = router
            .oneshot(Request::builder().uri("/json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(json.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(json.headers()[header::REFERRER_POLICY], REFERRER_POLICY);
    }

    #[test]
    fn request_ids_are_bounded_and_plain() {
        assert_eq!(bounded_request_id("abc-123"), "abc-123");
        assert_eq!(bounded_request_id("a\"b\nc} d"), "abcd");
        assert_eq!(bounded_request_id(&"x".repeat(500)).len(), 128);
    }
}
