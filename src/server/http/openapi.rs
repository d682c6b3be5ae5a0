//! The OpenAPI 3.1 description of the JSON API (`/api/v1`) and both
//! webhooks, built by `utoipa` from the handlers' own request and response
//! types and their `#[utoipa::path]` attributes (issue 11 § 7). Served as
//! `GET /api/v1/openapi.json` and as a readable page, `GET /api/v1/docs`
//! (HTML rendered here from the spec: no script, no asset from elsewhere).
//!
//! A unit test compares the routes the router declares under `/api/v1` and
//! `/webhooks` with the spec's paths and fails on a route without a
//! description (or a description without a route).

use crate::server::http::{api_v1, webhooks};
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: `{"error": "<message for the client>"}` (never an
/// internal detail or a secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for the caller (the Action prints it).
    pub error: String,
}

/// `POST /api/v1/credentials/exchange` request (ACTION_API.md § 1). The
/// handler's own type lives in `api_v1::credentials`, which another branch
/// is rewriting; this mirrors its fields until it derives `ToSchema`
/// itself.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExchangeRequest {
    /// The API key; optional when the `x-api-key` header carries it (both
    /// must then agree).
    pub api_key: Option<String>,
    /// Provider names, 1 to 16 (e.g. `anthropic`, `openai`, `openrouter`).
    pub providers: Vec<String>,
    /// Requested lifetime in minutes (1..=10080, default 60), capped by
    /// `CREDENTIAL_TTL_CAP_MINUTES`.
    pub ttl_minutes: Option<i64>,
}

/// One vended provider credential.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct VendedCredential {
    /// The provider's key.
    pub api_key: String,
    /// Expiry, ISO-8601 UTC (`2026-11-21T13:00:00Z`).
    pub expires_at: String,
}

/// The customer's allowance, as the exchange reports it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageSummary {
    /// Fixes the customer can still get now (the credit balance).
    pub remaining_fixes: i64,
    /// When the allowance next changes (the subscription's period end),
    /// ISO-8601 UTC; null without a subscription.
    pub reset_at: Option<String>,
}

/// `POST /api/v1/credentials/exchange` answer: a credential for each
/// requested provider the platform serves.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExchangeResponse {
    /// Provider name → credential.
    pub credentials: BTreeMap<String, VendedCredential>,
    /// The allowance.
    pub usage: UsageSummary,
}

/// A stored phase result: `{"success": true, "id": "<record id>"}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PhaseStored {
    /// Always true.
    pub success: bool,
    /// The stored record's id, as a string.
    pub id: String,
}

/// A stored usage report: `{"success": true, "id": <id>}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageStored {
    /// Always true.
    pub success: bool,
    /// The report's id.
    pub id: i64,
}

/// What was stored for a repository and commit: `scan` as stored, the
/// other phases keyed `issue-<number>`; absent phases are left out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredPhases {
    /// The scan's `data`.
    pub scan: Option<Value>,
    /// `issue-<n>` → the validation's `data`.
    pub validation: Option<BTreeMap<String, Value>>,
    /// `issue-<n>` → the mitigation's `data`.
    pub mitigation: Option<BTreeMap<String, Value>>,
}

/// A fix attempt as the lookup and the billing call answer it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FixAttemptView {
    /// The fix's id (the billing call's `{id}`).
    pub id: i64,
    /// Always `recorded`.
    pub status: String,
    /// The repository's owner.
    pub github_org: String,
    /// The repository's name.
    pub repo_name: String,
    /// The fix's pull request, if known.
    pub pr_number: Option<i64>,
    /// The fix's issue, if known.
    pub issue_number: Option<i64>,
    /// `credit`, `unpaid`, `charged`, `pending`, `written_off`; the billing
    /// call answers `billed` for a fix billed before.
    pub billing_status: String,
    /// Billing call only: what the call did (`Already billed`, `Billed: one
    /// credit used`, …; "Already…" when nothing new happened).
    pub message: Option<String>,
}

/// A Stripe event as POSTed by Stripe (the fields read; the rest is kept
/// as stored).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StripeEventBody {
    /// `evt_…`
    pub id: String,
    /// E.g. `invoice.paid`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Unix seconds.
    pub created: i64,
    /// `{"object": {...}}`.
    pub data: Value,
}

/// The Stripe webhook's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StripeWebhookAnswer {
    /// Always true.
    pub received: bool,
    /// The event id was seen before (acknowledged, ignored).
    pub duplicate: bool,
}

/// The GitHub webhook's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GithubWebhookAnswer {
    /// Always true.
    pub received: bool,
    /// The delivery id was seen before.
    pub duplicate: bool,
    /// `processed`, `ignored` or `duplicate`.
    pub status: String,
    /// The customer the event provisioned or changed.
    pub customer_id: Option<i64>,
}

/// Describes the exchange, whose handler lives in a file another branch
/// is rewriting (ACTION_API.md § 1 is the contract).
#[utoipa::path(
    post,
    path = "/api/v1/credentials/exchange",
    tag = "action",
    summary = "Exchange the API key for short-lived AI provider credentials",
    description = "Called by the Action at start-up and when a credential expires. \
        Providers the platform cannot serve are left out of `credentials`.",
    params(
        ("X-GitHub-Job" = Option<String>, Header, description = "The workflow job (logged)"),
        ("X-GitHub-Run" = Option<String>, Header, description = "The workflow run (logged)"),
    ),
    request_body = ExchangeRequest,
    responses(
        (status = 200, description = "Credentials and the allowance", body = ExchangeResponse),
        (status = 401, description = "Missing, unknown, revoked or expired key, or header and body keys differ", body = ErrorBody),
        (status = 402, description = "No credits and no way to pay", body = ErrorBody),
        (status = 403, description = "Suspended customer", body = ErrorBody),
        (status = 422, description = "Malformed body, 0 or more than 16 providers, ttl_minutes out of range", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody),
        (status = 503, description = "Maintenance (Retry-After)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[expect(dead_code, reason = "describes a route served by api_v1::credentials")]
fn exchange_credentials() {}

/// Adds the `x-api-key` security scheme.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The customer's API key (`rsolv_…`), shown once at onboarding",
            ))),
        );
    }
}

/// The spec (see the module doc).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "rsolv-platform API",
        description = "The JSON API the RSOLV GitHub Action speaks (`/api/v1`; its paths, \
            headers and field names are a compatibility contract) and the webhook endpoints \
            for Stripe and GitHub. Errors are `{\"error\": \"…\"}`. Key-authenticated \
            routes count against `RATE_LIMIT_ACTION_PER_HOUR` per key and answer \
            `RateLimit-*` headers."
    ),
    paths(
        api_v1::customers::onboard_customer,
        api_v1::customers::show_billing_status,
        exchange_credentials,
        api_v1::usage::report_usage,
        api_v1::phases::store_phase,
        api_v1::phases::retrieve_phases,
        api_v1::fix_attempts::create_fix_attempt,
        api_v1::fix_attempts::find_fix_attempt,
        api_v1::fix_attempts::bill_fix_attempt,
        webhooks::stripe::receive_stripe_webhook,
        webhooks::github::receive_github_webhook,
    ),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "action", description = "Called by the RSOLV GitHub Action (ACTION_API.md)"),
        (name = "customers", description = "Onboarding and billing status"),
        (name = "webhooks", description = "Signed callbacks from Stripe and GitHub"),
    )
)]
pub struct ApiDoc;

/// The spec as a value.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`.
pub async fn serve_spec() -> impl IntoResponse {
    Json(spec())
}

/// `GET /api/v1/docs`: the spec as one HTML page.
pub async fn serve_docs() -> impl IntoResponse {
    let spec = serde_json::to_value(spec()).unwrap_or(Value::Null);
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        Html(render_docs(&spec)),
    )
}

fn esc(text: &str) -> String {
    html_escape::encode_text(text).into_owned()
}

/// A schema in one line: `$ref` names, arrays, maps and primitive types.
fn schema_text(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            return options
                .iter()
                .map(schema_text)
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    if kind.starts_with("array") {
        if let Some(items) = schema.get("items") {
            return format!("array of {}", schema_text(items));
        }
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return format!("map of string → {}", schema_text(values));
    }
    let format = schema
        .get("format")
        .and_then(Value::as_str)
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    esc(&format!("{kind}{format}"))
}

/// The docs page: every operation (method, path, summary, description,
/// parameters, body, answers) and every schema with its fields.
fn render_docs(spec: &Value) -> String {
    let mut out = String::new();
    let title = spec["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1f2937}}\
         code,.path{{font-family:ui-monospace,monospace}}\
         .op{{border:1px solid #d1d5db;border-radius:.5rem;padding:.75rem 1rem;margin:1rem 0}}\
         .method{{display:inline-block;min-width:3.5rem;font-weight:700;text-transform:uppercase}}\
         table{{border-collapse:collapse;margin:.5rem 0}}td,th{{border:1px solid #e5e7eb;padding:.25rem .5rem;text-align:left;vertical-align:top}}\
         @media (prefers-color-scheme: dark){{body{{background:#111827;color:#e5e7eb}}.op{{border-color:#374151}}td,th{{border-color:#374151}}a{{color:#93c5fd}}}}\
         </style></head><body><h1>{t}</h1><p>{d}</p>\
         <p>Machine-readable: <a href=\"/api/v1/openapi.json\"><code>/api/v1/openapi.json</code></a> (OpenAPI {v}).</p>",
        t = esc(title),
        d = esc(spec["info"]["description"].as_str().unwrap_or("")),
        v = esc(spec["openapi"].as_str().unwrap_or("3")),
    );
    out.push_str("<h2>Endpoints</h2>");
    if let Some(paths) = spec["paths"].as_object() {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                let _ = write!(
                    out,
                    "<section class=\"op\" id=\"{m}-{id}\"><h3><span class=\"method\">{m}</span> <span class=\"path\">{p}</span></h3>",
                    m = esc(method),
                    id = esc(&path.replace(['/', '{', '}'], "_")),
                    p = esc(path),
                );
                if let Some(s) = op["summary"].as_str() {
                    let _ = write!(out, "<p><strong>{}</strong></p>", esc(s));
                }
                if let Some(d) = op["description"].as_str() {
                    let _ = write!(out, "<p>{}</p>", esc(d));
                }
                if op.get("security").is_some() {
                    out.push_str("<p>Authentication: header <code>x-api-key</code>.</p>");
                }
                if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                    out.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
                    for p in params {
                        let _ = write!(
                            out,
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(p["name"].as_str().unwrap_or("")),
                            esc(p["in"].as_str().unwrap_or("")),
                            schema_text(&p["schema"]),
                            if p["required"].as_bool() == Some(true) { "yes" } else { "no" },
                            esc(p["description"].as_str().unwrap_or("")),
                        );
                    }
                    out.push_str("</table>");
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for (media, body) in content {
                        let _ = write!(
                            out,
                            "<p>Body (<code>{}</code>): {}</p>",
                            esc(media),
                            schema_text(&body["schema"])
                        );
                    }
                }
                if let Some(responses) = op["responses"].as_object() {
                    out.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
                    for (status, response) in responses {
                        let body = response["content"]
                            .as_object()
                            .and_then(|c| c.values().next())
                            .map(|c| schema_text(&c["schema"]))
                            .unwrap_or_default();
                        let _ = write!(
                            out,
                            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(status),
                            esc(response["description"].as_str().unwrap_or("")),
                            body
                        );
                    }
                    out.push_str("</table>");
                }
                out.push_str("</section>");
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = spec["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(out, "<section id=\"schema-{0}\"><h3>{0}</h3>", esc(name));
            if let Some(d) = schema["description"].as_str() {
                let _ = write!(out, "<p>{}</p>", esc(d));
            }
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                out.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>");
                for (field, prop) in props {
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(field),
                        schema_text(prop),
                        if required.contains(&field.as_str()) {
                            "yes"
                        } else {
                            "no"
                        },
                        esc(prop["description"].as_str().unwrap_or("")),
                    );
                }
                out.push_str("</table>");
            }
            out.push_str("</section>");
        }
    }
    out.push_str("</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Routes under `/api/v1` or `/webhooks` that are deliberately not in
    /// the spec, with the reason.
    const UNDESCRIBED: &[(&str, &str, &str)] = &[
        ("get", "/api/v1/openapi.json", "the spec itself"),
        ("get", "/api/v1/docs", "the spec as a page"),
    ];

    /// `(method, path)` of every `.route("<path>", <methods>)` in `source`,
    /// with `prefix` before the path. Methods are the `get(`, `post(`, …
    /// calls inside the route's arguments.
    fn declared_routes(source: &str, prefix: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        let mut rest = source;
        while let Some(pos) = rest.find(".route(") {
            let args = &rest[pos + ".route(".len()..];
            // The call's arguments: up to the matching parenthesis.
            let mut depth = 1;
            let mut end = args.len();
            for (i, c) in args.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &args[..end];
            rest = &args[end..];
            let Some(start) = call.find('"') else {
                continue; // a path held in a variable: not an API route here
            };
            let Some(len) = call[start + 1..].find('"') else {
                continue;
            };
            let path = format!("{prefix}{}", &call[start + 1..start + 1 + len]);
            let bytes = call.as_bytes();
            for method in ["get", "post", "put", "patch", "delete"] {
                let needle = format!("{method}(");
                let mut from = 0;
                while let Some(at) = call[from..].find(&needle) {
                    let at = from + at;
                    let before = if at == 0 { b' ' } else { bytes[at - 1] };
                    if !(before.is_ascii_alphanumeric() || before == b'_') {
                        out.insert((method.to_owned(), path.clone()));
                    }
                    from = at + needle.len();
                }
            }
        }
        out
    }

    #[test]
    fn every_api_and_webhook_route_is_described_and_nothing_else() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
        let mut routes = declared_routes(&read("src/server/http/api_v1/mod.rs"), "/api/v1");
        routes.extend(
            declared_routes(&read("src/server/http/mod.rs"), "")
                .into_iter()
                .filter(|(_, p)| p.starts_with("/api/v1") || p.starts_with("/webhooks")),
        );
        assert!(
            routes.len() >= 11,
            "the route scan found too little: {routes:?}"
        );
        for (method, path, _) in UNDESCRIBED {
            routes.remove(&((*method).to_owned(), (*path).to_owned()));
        }
        let spec = serde_json::to_value(spec()).unwrap();
        let mut described = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.insert((method.clone(), path.clone()));
            }
        }
        let missing: Vec<_> = routes.difference(&described).collect();
        assert!(
            missing.is_empty(),
            "routes without an OpenAPI description (add #[utoipa::path] and list the handler in ApiDoc): {missing:?}"
        );
        let stale: Vec<_> = described.difference(&routes).collect();
        assert!(stale.is_empty(), "described but not routed: {stale:?}");
    }

    #[test]
    fn the_route_scan_reads_methods_and_nested_layers() {
        let source = r#"
            .route("/a", post(h::x).route_layer(middleware::from_fn_with_state(s, limit_get)))
            .route(
                "/b/{id}",
                post(h::y).get(h::z),
            )
            .route(signup_fn, post(f))
        "#;
        let routes = declared_routes(source, "/p");
        let expected: BTreeSet<(String, String)> = [
            ("post", "/p/a"),
            ("post", "/p/b/{id}"),
            ("get", "/p/b/{id}"),
        ]
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
        assert_eq!(routes, expected);
    }

    #[test]
    fn every_operation_answers_errors_as_error_body_and_has_a_summary() {
        let spec = serde_json::to_value(spec()).unwrap();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["summary"].is_string(), "{method} {path} has no summary");
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(
                            schema.as_str(),
                            Some("#/components/schemas/ErrorBody"),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_docs_page_lists_every_path_and_escapes() {
        let spec_value = serde_json::to_value(spec()).unwrap();
        let page = render_docs(&spec_value);
        for path in spec_value["paths"].as_object().unwrap().keys() {
            assert!(page.contains(&esc(path)), "{path}");
        }
        assert!(page.contains("id=\"schema-ErrorBody\""));
        assert!(!page.contains("<script"));
    }
}
