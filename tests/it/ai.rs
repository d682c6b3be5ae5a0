//! The AI gateway (issue 10): virtual keys from the credential exchange,
//! the proxy under `/ai` against a local stand-in of Anthropic's and
//! OpenAI's HTTP APIs (request and response shapes, streaming, usage
//! fields), metering, refusals in the provider's shape, budgets and
//! passthrough mode. Everything goes through the real router and the
//! gateway's own HTTP client, pointed at the stand-in by configuration.

use crate::harness::{email, TestApp, ANTHROPIC_CREDENTIAL, OPENAI_CREDENTIAL};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::channel::mpsc;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};

/// The OpenRouter credential configured in these tests.
const OPENROUTER_CREDENTIAL: &str = "test-openrouter-credential";

/// Usage the stand-in reports.
pub(crate) const ANTHROPIC_USAGE: (i64, i64) = (12, 34);
const ANTHROPIC_STREAM_USAGE: (i64, i64) = (25, 15);
pub(crate) const OPENAI_USAGE: (i64, i64) = (7, 9);
const OPENAI_STREAM_USAGE: (i64, i64) = (11, 5);

/// The canned non-streamed Anthropic answer.
fn anthropic_answer(model: &str) -> Value {
    json!({
        "id": "msg_standin", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "Hello from the stand-in"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": ANTHROPIC_USAGE.0, "output_tokens": ANTHROPIC_USAGE.1}
    })
}

/// The canned non-streamed OpenAI answer.
fn openai_answer(model: &str) -> Value {
    json!({
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": OPENAI_USAGE.0, "completion_tokens": OPENAI_USAGE.1,
                  "total_tokens": OPENAI_USAGE.0 + OPENAI_USAGE.1}
    })
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    credential: Option<String>,
    anthropic_version: Option<String>,
    body: Value,
}

/// A stand-in for the providers' HTTP APIs on a free loopback port:
/// `/anthropic/v1/messages` and `/{openai,openrouter}/chat/completions`.
/// Streamed answers send their first event, then wait for [`StandIn::gate`]
/// before the rest; `finished` is sent when the stream's last event went
/// out, `cancelled` when the gateway hung up on it.
#[derive(Clone)]
pub(crate) struct StandIn {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub(crate) gate: Arc<Notify>,
    finished: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    cancelled: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl StandIn {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stand_in = StandIn {
            base: format!("http://127.0.0.1:{port}"),
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
            finished: Arc::default(),
            cancelled: Arc::default(),
        };
        let app = Router::new()
            .route("/anthropic/v1/messages", post(anthropic))
            .route("/openai/chat/completions", post(openai))
            .route("/openrouter/chat/completions", post(openai))
            .with_state(stand_in.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        stand_in
    }

    /// The gateway's settings pointing at this stand-in, plus `extra`.
    fn vars(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.extend([
            (
                "AI_ANTHROPIC_BASE_URL".to_owned(),
                format!("{}/anthropic", self.base),
            ),
            (
                "AI_OPENAI_BASE_URL".to_owned(),
                format!("{}/openai", self.base),
            ),
            (
                "AI_OPENROUTER_BASE_URL".to_owned(),
                format!("{}/openrouter/", self.base),
            ),
            (
                "PROVIDER_OPENROUTER_API_KEY".to_owned(),
                OPENROUTER_CREDENTIAL.to_owned(),
            ),
        ]);
        vars
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A receiver told when the next streamed answer has sent its last event.
    fn on_finished(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.finished.lock().unwrap() = Some(tx);
        rx
    }

    /// A receiver told when the gateway hangs up on a streamed answer.
    fn on_cancelled(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.cancelled.lock().unwrap() = Some(tx);
        rx
    }

    /// A server-sent-events answer that, after `first` and the gate, sends
    /// events until the reader hangs up (then [`StandIn::on_cancelled`] is
    /// told) or 100 000 events went out (then `finished` is).
    fn endless(&self, first: String) -> Response {
        use futures::SinkExt;
        let (mut tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(1);
        let this = self.clone();
        tokio::spawn(async move {
            if tx.send(Ok(Bytes::from(first))).await.is_err() {
                return;
            }
            this.gate.notified().await;
            let text = "x".repeat(1024);
            for _ in 0..100_000 {
                let event = sse(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                );
                if tx.send(Ok(Bytes::from(event))).await.is_err() {
                    if let Some(cancelled) = this.cancelled.lock().unwrap().take() {
                        let _ = cancelled.send(());
                    }
                    return;
                }
            }
            if let Some(finished) = this.finished.lock().unwrap().take() {
                let _ = finished.send(());
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(rx))
            .unwrap()
    }

    /// A server-sent-events answer: `first`, then (after the gate) `rest`.
    fn stream(&self, first: String, rest: Vec<String>) -> Response {
        let (tx, rx) = mpsc::unbounded::<Result<Bytes, std::convert::Infallible>>();
        let this = self.clone();
        tokio::spawn(async move {
            let _ = tx.unbounded_send(Ok(Bytes::from(first)));
            this.gate.notified().await;
            for event in rest {
                if tx.unbounded_send(Ok(Bytes::from(event))).is_err() {
                    return;
                }
            }
            if let Some(finished) = this.finished.lock().unwrap().take() {
                let _ = finished.send(());
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("request-id", "req_standin")
            .body(Body::from_stream(rx))
            .unwrap()
    }

    fn record(&self, path: &str, credential: Option<String>, headers: &HeaderMap, body: &Value) {
        self.seen.lock().unwrap().push(Seen {
            path: path.to_owned(),
            credential,
            anthropic_version: headers
                .get("anthropic-version")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: body.clone(),
        });
    }
}

fn sse(event: &str, data: Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

async fn anthropic(
    axum::extract::State(stand_in): axum::extract::State<StandIn>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_owned());
    stand_in.record("/anthropic/v1/messages", key.clone(), &headers, &body);
    if key.as_deref() != Some(ANTHROPIC_CREDENTIAL) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})),
        )
            .into_response();
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if model == "overloaded" {
        return Response::builder()
            .status(529)
            .header("content-type", "application/json")
            .header("retry-after", "7")
            .body(Body::from(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ))
            .unwrap();
    }
    if body["stream"] == json!(true) {
        let start = |model: &str| {
            sse(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_standin", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": ANTHROPIC_STREAM_USAGE.0, "output_tokens": 1}}}),
            )
        };
        if model == "endless" {
            return stand_in.endless(start(&model));
        }
        let first = sse(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_standin", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": ANTHROPIC_STREAM_USAGE.0, "output_tokens": 1}}}),
        );
        let rest = vec![
            sse(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            sse(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            sse(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            sse(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": ANTHROPIC_STREAM_USAGE.1}}),
            ),
            sse("message_stop", json!({"type": "message_stop"})),
        ];
        return stand_in.stream(first, rest);
    }
    axum::Json(anthropic_answer(&model)).into_response()
}

async fn openai(
    axum::extract::State(stand_in): axum::extract::State<StandIn>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let key = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    stand_in.record(uri.path(), key.clone(), &headers, &body);
    let expected = if uri.path().starts_with("/openrouter") {
        OPENROUTER_CREDENTIAL
    } else {
        OPENAI_CREDENTIAL
    };
    if key != Some(format!("Bearer {expected}")) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})),
        )
            .into_response();
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if body["stream"] == json!(true) {
        let chunk = |content: &str| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": content}}], "usage": null})
            )
        };
        let mut rest = vec![chunk(" there")];
        if body["stream_options"]["include_usage"] == json!(true) {
            rest.push(format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": {"prompt_tokens": OPENAI_STREAM_USAGE.0, "completion_tokens": OPENAI_STREAM_USAGE.1, "total_tokens": 16}})
            ));
        }
        rest.push("data: [DONE]\n\n".to_owned());
        return stand_in.stream(chunk("Hi"), rest);
    }
    axum::Json(openai_answer(&model)).into_response()
}

/// The app with the gateway pointed at `stand_in`, plus `extra` settings.
pub(crate) async fn spawn(stand_in: &StandIn, extra: &[(&str, &str)]) -> TestApp {
    let vars = stand_in.vars(extra);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestApp::spawn_with(&refs).await
}

/// Every operator credential of these tests.
const MASTER_KEYS: [&str; 3] = [
    ANTHROPIC_CREDENTIAL,
    OPENAI_CREDENTIAL,
    OPENROUTER_CREDENTIAL,
];

/// Panics if a master key appears in `headers` or `body`.
fn assert_no_master_key(headers: &reqwest::header::HeaderMap, body: &str) {
    for master in MASTER_KEYS {
        assert!(!body.contains(master), "master key in body: {body}");
        for (name, value) in headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(master),
                "master key in header {name}"
            );
        }
    }
}

/// A customer's exchange: (customer id, API key, provider → virtual key).
async fn exchange(app: &TestApp, tag: &str) -> (i64, String, Value) {
    let (customer_id, key) = app.onboard(&email(tag)).await;
    let response = app
        .client
        .post(app.url("/api/v1/credentials/exchange"))
        .header("x-api-key", &key)
        .header("X-GitHub-Job", "build")
        .header("X-GitHub-Run", "42")
        .json(&json!({"api_key": key, "providers": ["anthropic", "openai", "openrouter"], "ttl_minutes": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_no_master_key(&headers, &text);
    let body: Value = serde_json::from_str(&text).unwrap();
    (customer_id, key, body)
}

pub(crate) fn vkey(body: &Value, provider: &str) -> String {
    body["credentials"][provider]["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// POSTs an Anthropic Messages call with `key`; returns status, headers and body.
pub(crate) async fn messages(
    app: &TestApp,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .post(app.url("/ai/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// POSTs an OpenAI Chat Completions call with `key` as a bearer token.
pub(crate) async fn chat(
    app: &TestApp,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .post(app.url("/ai/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// `ai_usage` rows of a customer, oldest first: (provider, model, input,
/// output, status, streamed, completed, api_key_id).
async fn usage_rows(
    app: &TestApp,
    customer_id: i64,
) -> Vec<(String, String, i64, i64, i16, bool, bool, i64)> {
    use rsolv_platform::server::db::schema::ai_usage as u;
    u::table
        .filter(u::customer_id.eq(customer_id))
        .order(u::id.asc())
        .select((
            u::provider,
            u::model,
            u::input_tokens,
            u::output_tokens,
            u::status,
            u::streamed,
            u::completed,
            u::api_key_id,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

async fn sql(app: &TestApp, statement: &str) {
    diesel::sql_query(statement)
        .execute(&mut app.conn().await)
        .await
        .unwrap();
}

pub(crate) const CLAUDE: &str = "claude-sonnet-4-5";

pub(crate) fn claude_request(stream: bool) -> Value {
    json!({"model": CLAUDE, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "Say hello"}]})
}

pub(crate) fn gpt_request(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
           "messages": [{"role": "user", "content": "Say hi"}]})
}

#[tokio::test]
async fn the_exchange_vends_virtual_keys_stored_as_hashes_never_the_master_key() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let before = Utc::now();
    let (customer_id, _, body) = exchange(&app, "vk").await;
    let credentials = body["credentials"].as_object().unwrap();
    assert_eq!(
        credentials.keys().collect::<Vec<_>>(),
        vec!["anthropic", "openai", "openrouter"]
    );
    let mut secrets = Vec::new();
    for (_, credential) in credentials {
        let secret = credential["api_key"].as_str().unwrap();
        assert!(secret.starts_with("rsolv_vk_"), "{secret}");
        assert_eq!(secret.len(), "rsolv_vk_".len() + 43);
        let expires: DateTime<Utc> = credential["expires_at"].as_str().unwrap().parse().unwrap();
        assert!(expires >= before + Duration::minutes(30) - Duration::seconds(1));
        assert!(expires <= Utc::now() + Duration::minutes(30));
        secrets.push(secret.to_owned());
    }
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 3, "one distinct key per provider");
    assert_eq!(body["usage"]["remaining_fixes"], 5);
    assert_eq!(
        body["feature_flags"],
        json!({"use_legacy_claude_adapter": false})
    );

    // Stored: hashes and display prefixes, never the secret.
    use rsolv_platform::server::db::schema::ai_virtual_keys as k;
    /// Hash, prefix, GitHub job, GitHub run.
    type StoredKey = (Vec<u8>, String, Option<String>, Option<String>);
    let rows: Vec<StoredKey> = k::table
        .filter(k::customer_id.eq(customer_id))
        .select((k::token_hash, k::prefix, k::github_job, k::github_run))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (hash, prefix, job, run) in &rows {
        assert_eq!(hash.len(), 32);
        assert!(secrets
            .iter()
            .all(|s| !String::from_utf8_lossy(hash).contains(s.as_str())));
        assert!(secrets.iter().any(|s| s.starts_with(prefix.as_str())));
        assert!(prefix.len() < 20);
        assert_eq!(
            (job.as_deref(), run.as_deref()),
            (Some("build"), Some("42"))
        );
    }
    // A provider the operator did not configure, or an unknown one, is
    // left out (the contract: "each requested provider the platform can
    // serve").
    let (_, key) = app.onboard(&email("vk2")).await;
    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&key),
            &json!({"providers": ["mistral", "ANTHROPIC"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["credentials"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["anthropic"]
    );
}

#[tokio::test]
async fn calls_are_forwarded_with_the_master_key_answered_unchanged_and_metered() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (customer_id, _, body) = exchange(&app, "fwd").await;
    let api_key_id: i64 = {
        use rsolv_platform::server::db::schema::api_keys as a;
        a::table
            .filter(a::customer_id.eq(customer_id))
            .select(a::id)
            .first(&mut app.conn().await)
            .await
            .unwrap()
    };

    // Anthropic, not streamed: the answer is the stand-in's, byte for byte.
    let (status, headers, text) =
        messages(&app, &vkey(&body, "anthropic"), &claude_request(false)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        anthropic_answer(CLAUDE)
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_no_master_key(&headers, &text);
    let seen = stand_in.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/anthropic/v1/messages");
    assert_eq!(seen[0].credential.as_deref(), Some(ANTHROPIC_CREDENTIAL));
    assert_eq!(seen[0].anthropic_version.as_deref(), Some("2023-06-01"));
    assert_eq!(seen[0].body, claude_request(false));

    // OpenAI and OpenRouter through the one OpenAI-shaped endpoint.
    let (status, headers, text) = chat(&app, &vkey(&body, "openai"), &gpt_request(false)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        openai_answer("gpt-4o-mini")
    );
    assert_no_master_key(&headers, &text);
    let (status, headers, text) = chat(&app, &vkey(&body, "openrouter"), &gpt_request(false)).await;
    assert_eq!(status, 200, "{text}");
    assert_no_master_key(&headers, &text);
    let seen = stand_in.seen();
    assert_eq!(seen[1].path, "/openai/chat/completions");
    assert_eq!(
        seen[1].credential.as_deref(),
        Some(format!("Bearer {OPENAI_CREDENTIAL}").as_str())
    );
    assert_eq!(seen[2].path, "/openrouter/chat/completions");

    // Metered from the stand-in's usage fields, per key and model.
    let rows = usage_rows(&app, customer_id).await;
    assert_eq!(
        rows,
        vec![
            (
                "anthropic".into(),
                CLAUDE.into(),
                ANTHROPIC_USAGE.0,
                ANTHROPIC_USAGE.1,
                200,
                false,
                true,
                api_key_id
            ),
            (
                "openai".into(),
                "gpt-4o-mini".into(),
                OPENAI_USAGE.0,
                OPENAI_USAGE.1,
                200,
                false,
                true,
                api_key_id
            ),
            (
                "openrouter".into(),
                "gpt-4o-mini".into(),
                OPENAI_USAGE.0,
                OPENAI_USAGE.1,
                200,
                false,
                true,
                api_key_id
            ),
        ]
    );

    // An error from the provider keeps its status, body and Retry-After.
    let (status, headers, text) = messages(
        &app,
        &vkey(&body, "anthropic"),
        &json!({"model": "overloaded", "max_tokens": 1, "messages": []}),
    )
    .await;
    assert_eq!(status, 529);
    assert_eq!(
        text,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
    );
    assert_eq!(headers["retry-after"], "7");

    // The Action's own report is kept as its claim, beside the measurement.
    let (status, _) = app
        .post_json(
            "/api/v1/usage/report",
            Some(&app_key(&app, customer_id).await),
            &json!({"provider": "anthropic", "tokens_used": 99999, "request_count": 1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(usage_rows(&app, customer_id).await.len(), 4);
}

/// A fresh API key for `customer_id` (the onboarding key is not kept by
/// [`exchange`]'s callers).
async fn app_key(app: &TestApp, customer_id: i64) -> String {
    use rsolv_platform::server::billing::api_keys::create_api_key;
    use rsolv_platform::types::portal::ApiKeyName;
    let (_, plain) = create_api_key(
        &mut app.conn().await,
        customer_id,
        &ApiKeyName::parse("test").unwrap(),
    )
    .await
    .unwrap();
    plain.expose().to_owned()
}

#[tokio::test]
async fn streaming_delivers_the_first_event_before_the_provider_finishes_and_is_metered() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (customer_id, _, body) = exchange(&app, "stream").await;
    let mut finished = stand_in.on_finished();

    let response = app
        .client
        .post(app.url("/ai/v1/messages"))
        .header("x-api-key", vkey(&body, "anthropic"))
        .header("anthropic-version", "2023-06-01")
        .json(&claude_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_no_master_key(response.headers(), "");
    let mut chunks = response;
    // The provider holds the rest back until the gate opens: the first
    // event can only arrive if the gateway passes it on at once.
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), chunks.chunk())
        .await
        .expect("the first event arrives while the provider is still streaming")
        .unwrap()
        .expect("a first chunk");
    let mut text = String::from_utf8(first.to_vec()).unwrap();
    assert!(text.contains("message_start"), "{text}");
    assert!(
        finished.try_recv().is_err(),
        "the provider has not finished yet"
    );
    stand_in.gate.notify_one();
    while let Some(chunk) = chunks.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
    assert_no_master_key(&reqwest::header::HeaderMap::new(), &text);
    // The row is written before the answer's end reaches the client.
    let rows = usage_rows(&app, customer_id).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.0.as_str(), row.1.as_str(), row.2, row.3, row.5, row.6),
        (
            "anthropic",
            CLAUDE,
            ANTHROPIC_STREAM_USAGE.0,
            ANTHROPIC_STREAM_USAGE.1,
            true,
            true
        )
    );

    // OpenAI streamed: the gateway asks for the usage chunk and meters it.
    stand_in.gate.notify_one();
    let (status, _, text) = chat(&app, &vkey(&body, "openai"), &gpt_request(true)).await;
    assert_eq!(status, 200);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let seen = stand_in.seen();
    assert_eq!(
        seen.last().unwrap().body["stream_options"]["include_usage"],
        true
    );
    let rows = usage_rows(&app, customer_id).await;
    assert_eq!(
        (rows[1].2, rows[1].3, rows[1].5),
        (OPENAI_STREAM_USAGE.0, OPENAI_STREAM_USAGE.1, true)
    );
}

#[tokio::test]
async fn the_upstream_call_ends_when_the_client_goes_away() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (_, _, body) = exchange(&app, "gone").await;
    let cancelled = stand_in.on_cancelled();
    let response = app
        .client
        .post(app.url("/ai/v1/messages"))
        .header("x-api-key", vkey(&body, "anthropic"))
        .json(&json!({"model": "endless", "max_tokens": 64, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut chunks = response;
    chunks.chunk().await.unwrap().unwrap();
    drop(chunks);
    stand_in.gate.notify_one();
    tokio::time::timeout(std::time::Duration::from_secs(20), cancelled)
        .await
        .expect("the provider sees the gateway hang up")
        .unwrap();
}

#[tokio::test]
async fn expired_revoked_foreign_and_unknown_keys_are_refused_in_the_provider_shape() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (customer_id, _, body) = exchange(&app, "refuse").await;
    let anthropic_key = vkey(&body, "anthropic");
    let openai_key = vkey(&body, "openai");

    let anthropic_error = |text: &str, kind: &str, mentions: &str| {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["type"], "error", "{text}");
        assert_eq!(v["error"]["type"], kind, "{text}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions),
            "{text}"
        );
    };
    let openai_error = |text: &str, code: &str, mentions: &str| {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["error"]["code"], code, "{text}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions),
            "{text}"
        );
    };

    // Unknown keys, no key, the master key itself.
    let unknown = format!("rsolv_vk_{}", "A".repeat(43));
    for key in [unknown.as_str(), "", ANTHROPIC_CREDENTIAL] {
        let (status, _, text) = messages(&app, key, &claude_request(false)).await;
        assert_eq!(status, 401, "{text}");
        anthropic_error(&text, "authentication_error", "key");
    }
    // Foreign: a key vended for another provider.
    let (status, _, text) = messages(&app, &openai_key, &claude_request(false)).await;
    assert_eq!(status, 401);
    anthropic_error(&text, "authentication_error", "openai");
    let (status, _, text) = chat(&app, &anthropic_key, &gpt_request(false)).await;
    assert_eq!(status, 401);
    openai_error(&text, "invalid_api_key", "anthropic");

    // Expired.
    sql(&app, &format!("UPDATE ai_virtual_keys SET expires_at = now() - interval '1 second' WHERE customer_id = {customer_id} AND provider = 'openai'")).await;
    let (status, _, text) = chat(&app, &openai_key, &gpt_request(false)).await;
    assert_eq!(status, 401);
    openai_error(&text, "invalid_api_key", "expired");

    // No credits and no way to pay: 402 in the provider's shape.
    sql(
        &app,
        &format!("UPDATE customers SET credit_balance = 0 WHERE id = {customer_id}"),
    )
    .await;
    let (status, _, text) = messages(&app, &anthropic_key, &claude_request(false)).await;
    assert_eq!(status, 402);
    anthropic_error(&text, "billing_error", "credits");
    sql(
        &app,
        &format!("UPDATE customers SET credit_balance = 5 WHERE id = {customer_id}"),
    )
    .await;

    // Malformed body.
    let (status, _, text) = messages(&app, &anthropic_key, &json!({"max_tokens": 1})).await;
    assert_eq!(status, 400);
    anthropic_error(&text, "invalid_request_error", "model");

    // The key still works; revoking the API key that obtained it ends it at once.
    let (status, _, _) = messages(&app, &anthropic_key, &claude_request(false)).await;
    assert_eq!(status, 200);
    sql(
        &app,
        &format!("UPDATE api_keys SET revoked_at = now() WHERE customer_id = {customer_id}"),
    )
    .await;
    let (status, _, text) = messages(&app, &anthropic_key, &claude_request(false)).await;
    assert_eq!(status, 401);
    anthropic_error(&text, "authentication_error", "revoked");

    // Only the one good call reached the provider.
    assert_eq!(stand_in.seen().len(), 1);
}

#[tokio::test]
async fn a_suspended_customers_virtual_keys_stop_working_at_once() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (customer_id, _, body) = exchange(&app, "suspend").await;
    let key = vkey(&body, "anthropic");
    let admin = app.admin_browser(&email("suspend-admin")).await;
    let (status, _, _) = messages(&app, &key, &claude_request(false)).await;
    assert_eq!(status, 200);

    let (status, answer) = app
        .admin_fn(
            &admin,
            "customers/suspend",
            &[
                ("customer_id", &customer_id.to_string()),
                ("reason", "abuse report"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _, text) = messages(&app, &key, &claude_request(false)).await;
    assert_eq!(status, 403, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    let (status, _, text) = chat(&app, &vkey(&body, "openai"), &gpt_request(false)).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(stand_in.seen().len(), 1);
}

#[tokio::test]
async fn the_daily_token_budget_and_the_concurrency_limit_answer_429() {
    let stand_in = StandIn::start().await;
    let app = spawn(
        &stand_in,
        &[
            ("AI_DAILY_TOKEN_BUDGET", "40"),
            ("AI_MAX_CONCURRENT_PER_CUSTOMER", "1"),
        ],
    )
    .await;
    let (customer_id, _, body) = exchange(&app, "budget").await;
    let key = vkey(&body, "anthropic");

    // One streamed call in flight holds the only place.
    let response = app
        .client
        .post(app.url("/ai/v1/messages"))
        .header("x-api-key", &key)
        .json(&claude_request(true))
        .send()
        .await
        .unwrap();
    let mut chunks = response;
    chunks.chunk().await.unwrap().unwrap();
    let (status, headers, text) = chat(&app, &vkey(&body, "openai"), &gpt_request(false)).await;
    assert_eq!(status, 429, "{text}");
    assert!(headers.contains_key("retry-after"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    stand_in.gate.notify_one();
    while chunks.chunk().await.unwrap().is_some() {}
    drop(chunks);

    // 40 tokens streamed (25 + 15): the budget of 40 is used up.
    let (status, _, text) = messages(&app, &key, &claude_request(false)).await;
    assert_eq!(status, 429, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("budget"));

    // A per-customer override (catalog data) lifts it.
    sql(
        &app,
        &format!("INSERT INTO ai_budgets (customer_id, daily_tokens) VALUES ({customer_id}, 1000)"),
    )
    .await;
    let (status, _, text) = messages(&app, &key, &claude_request(false)).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn passthrough_vends_the_real_keys_only_when_set_and_warns_on_health() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (status, body) = app.get_json("/health", None).await;
    assert_eq!(status, 200);
    assert!(body.get("warning").is_none(), "{body}");

    let app = spawn(&stand_in, &[("CREDENTIAL_VENDING", "passthrough")]).await;
    let (_, key) = app.onboard(&email("pass")).await;
    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&key),
            &json!({"providers": ["anthropic"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["credentials"]["anthropic"]["api_key"],
        ANTHROPIC_CREDENTIAL
    );
    assert_eq!(app.count("ai_virtual_keys").await, 0);
    let (status, body) = app.get_json("/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["credential_vending"], "passthrough");
    assert!(body["warning"].as_str().unwrap().contains("passthrough"));
}

#[tokio::test]
async fn a_repeated_exchange_vends_the_same_keys_until_the_api_key_is_revoked() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let (customer_id, key) = app.onboard(&email("reuse")).await;
    let exchange = |run: &'static str, ttl: i64| {
        app.client
            .post(app.url("/api/v1/credentials/exchange"))
            .header("x-api-key", &key)
            .header("X-GitHub-Job", "build")
            .header("X-GitHub-Run", run)
            .json(&json!({"providers": ["anthropic", "openai"], "ttl_minutes": ttl}))
            .send()
    };
    let stored = || async {
        use rsolv_platform::server::db::schema::ai_virtual_keys as k;
        k::table
            .filter(k::customer_id.eq(customer_id))
            .count()
            .get_result::<i64>(&mut app.conn().await)
            .await
            .unwrap()
    };
    let first: Value = exchange("7", 30).await.unwrap().json().await.unwrap();
    let again: Value = exchange("7", 30).await.unwrap().json().await.unwrap();
    // The same keys with their own expiry, and no new row.
    assert_eq!(again["credentials"], first["credentials"]);
    assert_eq!(stored().await, 2);

    // Another run, or a lifetime the kept keys fall short of, gets new keys.
    let other_run: Value = exchange("8", 30).await.unwrap().json().await.unwrap();
    assert_ne!(vkey(&other_run, "anthropic"), vkey(&first, "anthropic"));
    let longer: Value = exchange("7", 60).await.unwrap().json().await.unwrap();
    assert_ne!(vkey(&longer, "openai"), vkey(&first, "openai"));
    let expires: DateTime<Utc> = longer["credentials"]["openai"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires >= Utc::now() + Duration::minutes(59));
    assert_eq!(stored().await, 6);

    // A reused key works, and revoking the API key ends it and the exchange
    // at once.
    let (status, _, _) = messages(&app, &vkey(&again, "anthropic"), &claude_request(false)).await;
    assert_eq!(status, 200);
    sql(
        &app,
        &format!("UPDATE api_keys SET revoked_at = now() WHERE customer_id = {customer_id}"),
    )
    .await;
    assert_eq!(exchange("7", 30).await.unwrap().status(), 401);
    let (status, _, text) =
        messages(&app, &vkey(&again, "anthropic"), &claude_request(false)).await;
    assert_eq!(status, 401, "{text}");
}
