//! CSRF protection for browser requests: every state-changing request
//! (any method but GET, HEAD, OPTIONS, TRACE) outside the API-key JSON API
//! (`/api/v1/…`), the AI gateway (`/ai/…`, virtual keys) and webhooks
//! (`/webhooks/…`) must come from our own origin.
//!
//! Why this and not a token library: the CSRF crates for axum (`axum_csrf`,
//! `tower-surf`) are double-submit token schemes, which would need a hidden
//! token in every form and a check in every server function. OWASP's CSRF
//! cheat sheet accepts verifying the standard headers instead (Fetch
//! Metadata and Origin), which covers all routes in one place and keeps
//! forms working without JavaScript (browsers send `Origin` on every POST).
//! The rule, in order:
//!
//! 1. `Sec-Fetch-Site` present (all current browsers): allowed only if
//!    `same-origin` or `none` (typed by the user).
//! 2. else `Origin` present: allowed only if it equals `PUBLIC_BASE_URL`'s
//!    origin or the request's own `Host` (same scheme).
//! 3. else `Referer` present: its origin must match likewise.
//! 4. else (no browser sends a POST without these): allowed, for non-browser
//!    clients; the session cookie is also `SameSite=Lax`, which browsers do
//!    not send on cross-site POSTs.
//!
//! Rejected requests get 403 and reach no handler.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The origins a state-changing browser request may come from.
#[derive(Clone, Debug)]
pub struct CsrfConfig {
    /// `PUBLIC_BASE_URL`, e.g. `https://rsolv.example` (no trailing slash).
    pub public_origin: Arc<str>,
}

/// Paths exempt from the check: authenticated otherwise, and never by
/// cookie.
fn exempt(path: &str) -> bool {
    path == "/api/v1"
        || path.starts_with("/api/v1/")
        || path == "/webhooks"
        || path.starts_with("/webhooks/")
        || path.starts_with("/ai/")
}

fn safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// `scheme://host[:port]` of a URL, lower-cased; `None` if it has none.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        )
    })
}

/// Whether a request with these headers may change state.
pub fn allowed(headers: &HeaderMap, public_origin: &str) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let public = origin_of(public_origin);
    let own_host = match (public_origin.split_once("://"), text(header::HOST.as_str())) {
        (Some((scheme, _)), Some(host)) => Some(format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        )),
        _ => None,
    };
    let matches = |origin: Option<String>| {
        origin.is_some_and(|o| Some(&o) == public.as_ref() || Some(&o) == own_host.as_ref())
    };
    if let Some(origin) = text(header::ORIGIN.as_str()) {
        return matches(origin_of(origin));
    }
    if let Some(referer) = text(header::REFERER.as_str()) {
        return matches(origin_of(referer));
    }
    true
}

/// The middleware (see the module docs): 403 for a cross-origin
/// state-changing request.
pub async fn verify_origin(
    State(config): State<CsrfConfig>,
    request: Request,
    next: Next,
) -> Response {
    if safe_method(request.method())
        || exempt(request.uri().path())
        || allowed(request.headers(), &config.public_origin)
    {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "cross-origin request refused (CSRF check)");
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "kind": "forbidden",
            "message": "cross-origin request refused",
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    const PUBLIC: &str = "https://rsolv.example";

    #[test]
    fn fetch_metadata_decides_when_present() {
        assert!(allowed(
            &headers(&[("sec-fetch-site", "same-origin")]),
            PUBLIC
        ));
        assert!(allowed(&headers(&[("sec-fetch-site", "none")]), PUBLIC));
        assert!(!allowed(
            &headers(&[("sec-fetch-site", "cross-site")]),
            PUBLIC
        ));
        assert!(!allowed(
            &headers(&[("sec-fetch-site", "same-site"), ("origin", PUBLIC)]),
            PUBLIC
        ));
    }

    #[test]
    fn origin_then_referer() {
        assert!(allowed(
            &headers(&[("origin", "https://RSOLV.example")]),
            PUBLIC
        ));
        assert!(!allowed(
            &headers(&[("origin", "http://evil.example")]),
            PUBLIC
        ));
        assert!(!allowed(&headers(&[("origin", "null")]), PUBLIC));
        assert!(!allowed(
            &headers(&[("origin", "http://rsolv.example")]),
            PUBLIC
        ));
        assert!(allowed(
            &headers(&[
                ("host", "127.0.0.1:4000"),
                ("origin", "https://127.0.0.1:4000")
            ]),
            PUBLIC
        ));
        assert!(allowed(
            &headers(&[("referer", "https://rsolv.example/login?x=1")]),
            PUBLIC
        ));
        assert!(!allowed(
            &headers(&[("referer", "https://evil.example/rsolv.example")]),
            PUBLIC
        ));
        assert!(allowed(&headers(&[]), PUBLIC));
    }

    #[test]
    fn exemptions() {
        assert!(exempt("/api/v1/customers/onboard"));
        assert!(exempt("/webhooks/stripe"));
        assert!(exempt("/ai/v1/messages"));
        assert!(!exempt("/aiv1"));
        assert!(!exempt("/api/login"));
        assert!(!exempt("/api/v1x"));
        assert!(!exempt("/signup"));
    }
}
