//! The proxy: a call made with a virtual key goes to the provider's
//! configured base URL with the operator's key; the answer comes back
//! unchanged, streamed as it arrives, and is metered on the way.
//!
//! - Refusals by the platform (missing, unknown, expired, revoked or
//!   foreign key, suspended customer, no credits, budget, oversized or
//!   malformed body, provider unreachable) are answered in the provider's
//!   own error shape ([`refusal`]); errors from the provider are passed
//!   through with their status and body.
//! - Only the headers the provider needs are sent upstream (content type,
//!   the operator's key, `anthropic-version` / `anthropic-beta`), and only
//!   content type, `retry-after` and request ids come back: the operator's
//!   key never appears in an answer, a log line or an error.
//! - The upstream call is a future owned by the request: when the client
//!   goes away, axum drops it (before the answer) or the answer's body
//!   stream (during it), which drops the upstream connection. A call that
//!   ends early is still metered with what was read.
//! - Timeouts: connect (`AI_CONNECT_TIMEOUT_SECONDS`), silence between
//!   bytes (`AI_IDLE_TIMEOUT_SECONDS`), whole call
//!   (`AI_REQUEST_TIMEOUT_SECONDS`).

use super::keys::{authenticate_virtual_key, VirtualKeyAuth, VirtualKeyRejection};
use super::metering::{budget_for, record_call, tokens_used_today, Budget, CallRecord, UsageMeter};
use super::{Dialect, Provider};
use crate::server::config::ai::AiSettings;
use crate::server::config::{ExposeSecret, SecretString};
use crate::server::db::DbPool;
use crate::server::state::AppState;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `anthropic-version` sent when the client sent none (the Action sends
/// this one, ACTION_API.md § 8).
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Longest model name accepted in a request.
const MAX_MODEL_LEN: usize = super::metering::MAX_MODEL_LEN;

/// The gateway's two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /ai/v1/messages`: Anthropic's Messages API.
    Messages,
    /// `POST /ai/chat/completions`: OpenAI's Chat Completions, for keys
    /// minted for `openai` or `openrouter`.
    ChatCompletions,
}

impl Endpoint {
    /// The shapes this endpoint speaks.
    pub fn dialect(self) -> Dialect {
        match self {
            Endpoint::Messages => Dialect::Anthropic,
            Endpoint::ChatCompletions => Dialect::OpenAi,
        }
    }

    fn providers(self) -> &'static [Provider] {
        match self {
            Endpoint::Messages => &[Provider::Anthropic],
            Endpoint::ChatCompletions => &[Provider::OpenAi, Provider::OpenRouter],
        }
    }
}

/// Why the platform refuses a call, mapped to a status and the provider's
/// error type by [`refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 401: no key, unknown, expired, revoked or foreign key.
    Authentication,
    /// 403: the customer is suspended.
    Permission,
    /// 402: no credits and no way to pay.
    Billing,
    /// 429: over the concurrency limit or the daily token budget.
    RateLimit,
    /// 400: the body is not a JSON object or a field is wrong.
    InvalidRequest,
    /// 413: the body is over `AI_MAX_REQUEST_BYTES`.
    TooLarge,
    /// 502: the provider could not be reached.
    BadGateway,
    /// 503: the provider is not configured.
    Unavailable,
    /// 504: the provider did not answer in time.
    Timeout,
    /// 500: the platform failed (database).
    Internal,
}

impl RefusalKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            RefusalKind::Authentication => StatusCode::UNAUTHORIZED,
            RefusalKind::Permission => StatusCode::FORBIDDEN,
            RefusalKind::Billing => StatusCode::PAYMENT_REQUIRED,
            RefusalKind::RateLimit => StatusCode::TOO_MANY_REQUESTS,
            RefusalKind::InvalidRequest => StatusCode::BAD_REQUEST,
            RefusalKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RefusalKind::BadGateway => StatusCode::BAD_GATEWAY,
            RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RefusalKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Anthropic's `error.type` for it (Anthropic's documented error types).
    fn anthropic_type(self) -> &'static str {
        match self {
            RefusalKind::Authentication => "authentication_error",
            RefusalKind::Permission => "permission_error",
            RefusalKind::Billing => "billing_error",
            RefusalKind::RateLimit => "rate_limit_error",
            RefusalKind::InvalidRequest => "invalid_request_error",
            RefusalKind::TooLarge => "request_too_large",
            RefusalKind::BadGateway
            | RefusalKind::Unavailable
            | RefusalKind::Timeout
            | RefusalKind::Internal => "api_error",
        }
    }

    /// OpenAI's `error.type` and `error.code` for it.
    fn openai_type_and_code(self) -> (&'static str, Option<&'static str>) {
        match self {
            RefusalKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
            RefusalKind::Permission => ("invalid_request_error", Some("account_suspended")),
            RefusalKind::Billing => ("insufficient_quota", Some("insufficient_quota")),
            RefusalKind::RateLimit => ("requests", Some("rate_limit_exceeded")),
            RefusalKind::InvalidRequest | RefusalKind::TooLarge => ("invalid_request_error", None),
            RefusalKind::BadGateway
            | RefusalKind::Unavailable
            | RefusalKind::Timeout
            | RefusalKind::Internal => ("server_error", None),
        }
    }
}

/// A platform refusal in the provider's error shape:
/// Anthropic `{"type":"error","error":{"type":…,"message":…}}`, OpenAI
/// `{"error":{"message":…,"type":…,"param":null,"code":…}}`; 429s carry
/// `Retry-After` (seconds).
pub fn refusal(dialect: Dialect, kind: RefusalKind, message: &str) -> Response {
    let body = match dialect {
        Dialect::Anthropic => json!({
            "type": "error",
            "error": { "type": kind.anthropic_type(), "message": message },
        }),
        Dialect::OpenAi => {
            let (kind_name, code) = kind.openai_type_and_code();
            json!({
                "error": { "message": message, "type": kind_name, "param": null, "code": code },
            })
        }
    };
    let mut response = (kind.status(), axum::Json(body)).into_response();
    if kind == RefusalKind::RateLimit {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    response
}

/// Calls in flight per customer on this instance.
#[derive(Default)]
struct InFlight(Mutex<HashMap<i64, u32>>);

/// One call's place in [`InFlight`]; freed when dropped (the answer's end,
/// or the client going away).
struct Slot {
    inflight: Arc<InFlight>,
    customer_id: i64,
}

impl InFlight {
    /// Takes a place for `customer_id` unless it already has `max` calls in
    /// flight (`max == 0`: no limit).
    fn acquire(self: &Arc<Self>, customer_id: i64, max: u32) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(customer_id).or_insert(0);
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            inflight: self.clone(),
            customer_id,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.inflight.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.customer_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.customer_id);
            }
        }
    }
}

/// The gateway: one HTTP client (connection pool) for all providers, the
/// operator's keys, the settings and the in-flight counts. Cheap to share
/// behind an `Arc`.
pub struct Gateway {
    client: reqwest::Client,
    settings: AiSettings,
    credentials: BTreeMap<String, SecretString>,
    pool: DbPool,
    inflight: Arc<InFlight>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("settings", &self.settings)
            .field("providers", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What the client asked for, read from its JSON body.
struct Call {
    model: String,
    stream: bool,
    body: Bytes,
}

impl Gateway {
    /// Builds the gateway from the state's configuration and pool.
    ///
    /// Errors: the HTTP client cannot be built (TLS setup).
    pub fn new(state: &AppState) -> Result<Self, reqwest::Error> {
        let settings = state.config.ai.clone();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
            .read_timeout(Duration::from_secs(settings.idle_timeout_seconds))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            settings,
            credentials: state.config.provider_credentials.clone(),
            pool: state.pool.clone(),
            inflight: Arc::default(),
        })
    }

    /// Largest request body accepted, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        self.settings.max_request_bytes
    }

    /// Serves one call to `endpoint`: authenticates the virtual key in
    /// `headers`, checks the customer's credits and budget, forwards `body`
    /// and returns the provider's answer (streamed) or a refusal in the
    /// endpoint's error shape.
    pub async fn forward(&self, endpoint: Endpoint, headers: &HeaderMap, body: Bytes) -> Response {
        let dialect = endpoint.dialect();
        let auth = match self.authenticate(endpoint, headers).await {
            Ok(auth) => auth,
            Err(response) => return response,
        };
        if !auth.customer.can_use_service() {
            return refusal(
                dialect,
                RefusalKind::Billing,
                "no credits left: add a payment method or subscribe to Pro in your RSOLV dashboard",
            );
        }
        let Some(operator_key) = self.credentials.get(auth.provider.as_str()) else {
            return refusal(
                dialect,
                RefusalKind::Unavailable,
                "this provider is not configured on the RSOLV platform",
            );
        };
        let call = match parse_call(auth.provider, body) {
            Ok(call) => call,
            Err(message) => return refusal(dialect, RefusalKind::InvalidRequest, &message),
        };
        let slot = match self.check_budget(&auth).await {
            Ok(slot) => slot,
            Err(response) => return response,
        };

        let request = self.upstream_request(
            auth.provider,
            operator_key.expose_secret(),
            headers,
            call.body,
        );
        let upstream = match request.send().await {
            Ok(upstream) => upstream,
            Err(error) => {
                let timeout = error.is_timeout();
                tracing::warn!(provider = auth.provider.as_str(), error = %error.without_url(), "AI provider call failed");
                let (kind, message) = if timeout {
                    (
                        RefusalKind::Timeout,
                        "the AI provider did not answer in time",
                    )
                } else {
                    (
                        RefusalKind::BadGateway,
                        "the AI provider could not be reached",
                    )
                };
                return refusal(dialect, kind, message);
            }
        };
        self.stream_back(auth, call.model, call.stream, upstream, slot)
    }

    async fn authenticate(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
    ) -> Result<VirtualKeyAuth, Response> {
        let dialect = endpoint.dialect();
        let internal = |error: &dyn std::fmt::Display| {
            tracing::error!(%error, "AI gateway: database error");
            refusal(
                dialect,
                RefusalKind::Internal,
                "internal error; please retry",
            )
        };
        let presented = presented_key(endpoint, headers);
        let mut conn = self.pool.get().await.map_err(|e| internal(&e))?;
        match authenticate_virtual_key(&mut conn, presented, endpoint.providers()).await {
            Ok(Ok(auth)) => Ok(auth),
            Ok(Err(rejection)) => {
                let kind = if rejection == VirtualKeyRejection::Suspended {
                    RefusalKind::Permission
                } else {
                    RefusalKind::Authentication
                };
                Err(refusal(dialect, kind, &rejection.to_string()))
            }
            Err(error) => Err(internal(&error)),
        }
    }

    /// The daily token budget (as measured so far today) and a place among
    /// the customer's calls in flight.
    async fn check_budget(&self, auth: &VirtualKeyAuth) -> Result<Slot, Response> {
        let dialect = auth.provider.dialect();
        let internal = |error: &dyn std::fmt::Display| {
            tracing::error!(%error, "AI gateway: database error");
            refusal(
                dialect,
                RefusalKind::Internal,
                "internal error; please retry",
            )
        };
        let defaults = Budget {
            max_concurrent: self.settings.max_concurrent_per_customer,
            daily_tokens: self.settings.daily_token_budget,
        };
        let customer_id = auth.customer.id;
        let mut conn = self.pool.get().await.map_err(|e| internal(&e))?;
        let budget = budget_for(&mut conn, customer_id, defaults)
            .await
            .map_err(|e| internal(&e))?;
        if budget.daily_tokens > 0 {
            let used = tokens_used_today(&mut conn, customer_id)
                .await
                .map_err(|e| internal(&e))?;
            if used >= budget.daily_tokens {
                return Err(refusal(
                    dialect,
                    RefusalKind::RateLimit,
                    &format!(
                        "daily AI token budget of {} tokens used up; it resets at 00:00 UTC",
                        budget.daily_tokens
                    ),
                ));
            }
        }
        drop(conn);
        self.inflight
            .acquire(customer_id, budget.max_concurrent)
            .ok_or_else(|| {
                refusal(
                    dialect,
                    RefusalKind::RateLimit,
                    &format!(
                        "too many AI calls at once: at most {} in flight per account",
                        budget.max_concurrent
                    ),
                )
            })
    }

    fn upstream_request(
        &self,
        provider: Provider,
        operator_key: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        let base = match provider {
            Provider::Anthropic => &self.settings.anthropic_base_url,
            Provider::OpenAi => &self.settings.openai_base_url,
            Provider::OpenRouter => &self.settings.openrouter_base_url,
        };
        let url = match provider.dialect() {
            Dialect::Anthropic => format!("{base}/v1/messages"),
            Dialect::OpenAi => format!("{base}/chat/completions"),
        };
        let mut request = self
            .client
            .post(url)
            .timeout(Duration::from_secs(self.settings.request_timeout_seconds))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(accept) = headers.get(header::ACCEPT) {
            request = request.header(header::ACCEPT, accept.clone());
        }
        match provider.dialect() {
            Dialect::Anthropic => {
                let version = headers
                    .get("anthropic-version")
                    .filter(|v| v.len() <= 64)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION));
                request = request
                    .header("x-api-key", operator_key)
                    .header("anthropic-version", version);
                if let Some(beta) = headers.get("anthropic-beta").filter(|v| v.len() <= 512) {
                    request = request.header("anthropic-beta", beta.clone());
                }
            }
            Dialect::OpenAi => {
                request = request.bearer_auth(operator_key);
            }
        }
        request
    }

    fn stream_back(
        &self,
        auth: VirtualKeyAuth,
        requested_model: String,
        requested_stream: bool,
        upstream: reqwest::Response,
        slot: Slot,
    ) -> Response {
        let status = upstream.status();
        let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
        let sse = content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut response_headers = HeaderMap::new();
        for name in [
            header::CONTENT_TYPE,
            header::RETRY_AFTER,
            header::CACHE_CONTROL,
            HeaderName::from_static("request-id"),
            HeaderName::from_static("x-request-id"),
        ] {
            if let Some(value) = upstream.headers().get(&name) {
                response_headers.insert(name, value.clone());
            }
        }
        if sse {
            response_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        }
        let tap = Tap {
            upstream,
            meter: Some(UsageMeter::new(
                sse,
                self.settings.max_metered_response_bytes,
            )),
            record: CallRecord {
                customer_id: auth.customer.id,
                api_key_id: auth.api_key_id,
                virtual_key_id: auth.virtual_key_id,
                provider: auth.provider.as_str(),
                model: requested_model,
                input_tokens: 0,
                output_tokens: 0,
                status: status.as_u16(),
                streamed: sse || requested_stream,
                completed: false,
            },
            pool: self.pool.clone(),
            _slot: slot,
        };
        let body = futures_util::stream::unfold(Some(tap), |tap| async move {
            let mut tap = tap?;
            match tap.upstream.chunk().await {
                Ok(Some(bytes)) => {
                    if let Some(meter) = tap.meter.as_mut() {
                        meter.feed(&bytes);
                    }
                    Some((Ok(bytes), Some(tap)))
                }
                Ok(None) => {
                    tap.finish(true).await;
                    None
                }
                Err(error) => {
                    tracing::warn!(error = %error.without_url(), "AI provider broke off its answer");
                    tap.finish(false).await;
                    Some((
                        Err(std::io::Error::other(
                            "the AI provider broke off its answer",
                        )),
                        None,
                    ))
                }
            }
        });
        let mut response = Response::new(Body::from_stream(body));
        *response.status_mut() = status;
        *response.headers_mut() = response_headers;
        response
    }
}

/// The key as each SDK sends it: Anthropic's `x-api-key` (or a bearer
/// token), OpenAI's `Authorization: Bearer` (or `x-api-key`).
fn presented_key(endpoint: Endpoint, headers: &HeaderMap) -> Option<&str> {
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match endpoint {
        Endpoint::Messages => x_api_key.or(bearer),
        Endpoint::ChatCompletions => bearer.or(x_api_key),
    }
}

/// Reads `model` and `stream` from the request; for a streamed OpenAI or
/// OpenRouter call, asks for the usage chunk (`stream_options.include_usage
/// = true`) so the call can be metered. Otherwise the body goes upstream
/// byte for byte.
fn parse_call(provider: Provider, body: Bytes) -> Result<Call, String> {
    let mut value: Value =
        serde_json::from_slice(&body).map_err(|_| "the body must be a JSON object".to_owned())?;
    let Some(object) = value.as_object_mut() else {
        return Err("the body must be a JSON object".into());
    };
    let model = match object.get("model") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= MAX_MODEL_LEN => m.clone(),
        Some(Value::String(_)) => {
            return Err(format!("model must be 1 to {MAX_MODEL_LEN} characters"))
        }
        None => return Err("model: field required".into()),
        Some(_) => return Err("model must be a string".into()),
    };
    let stream = object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = if stream && provider.dialect() == Dialect::OpenAi {
        let options = object.entry("stream_options").or_insert_with(|| json!({}));
        match options.as_object_mut() {
            Some(options) if options.get("include_usage") == Some(&Value::Bool(true)) => body,
            Some(options) => {
                options.insert("include_usage".into(), Value::Bool(true));
                Bytes::from(serde_json::to_vec(&value).map_err(|e| e.to_string())?)
            }
            None => return Err("stream_options must be an object".into()),
        }
    } else {
        body
    };
    Ok(Call {
        model,
        stream,
        body,
    })
}

/// The answer on its way back: the upstream response, the meter reading
/// it, the call's record and the concurrency slot. Dropped before the end
/// (the client went away), it still records what was read.
struct Tap {
    upstream: reqwest::Response,
    meter: Option<UsageMeter>,
    record: CallRecord,
    pool: DbPool,
    _slot: Slot,
}

impl Tap {
    /// The record with what the meter read (`None` once taken).
    fn take_record(&mut self, completed: bool) -> Option<CallRecord> {
        let measured = self.meter.take()?.finish();
        let mut record = self.record.clone();
        if let Some(model) = measured.model {
            record.model = model;
        }
        record.input_tokens = measured.input_tokens;
        record.output_tokens = measured.output_tokens;
        record.completed = completed;
        Some(record)
    }

    /// Stores the call before the answer's end reaches the client.
    async fn finish(&mut self, completed: bool) {
        if let Some(record) = self.take_record(completed) {
            store(&self.pool, &record).await;
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(record) = self.take_record(false) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pool = self.pool.clone();
                runtime.spawn(async move { store(&pool, &record).await });
            }
        }
    }
}

async fn store(pool: &DbPool, record: &CallRecord) {
    let result = match pool.get().await {
        Ok(mut conn) => record_call(&mut conn, record).await.map(|_| ()),
        Err(error) => Err(crate::server::billing::BillingError::Pool(
            error.to_string(),
        )),
    };
    if let Err(error) = result {
        tracing::error!(%error, customer_id = record.customer_id, "AI usage not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_openai_calls_ask_for_usage_and_others_pass_unchanged() {
        let body = Bytes::from_static(br#"{"model":"gpt-x","stream":true,"messages":[]}"#);
        let call = parse_call(Provider::OpenAi, body).unwrap();
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let body = Bytes::from_static(br#"{"model":"claude","stream":true,"max_tokens":5}"#);
        let call = parse_call(Provider::Anthropic, body.clone()).unwrap();
        assert_eq!(call.body, body);
        assert!(parse_call(Provider::Anthropic, Bytes::from_static(b"[1]")).is_err());
        assert!(parse_call(Provider::Anthropic, Bytes::from_static(b"{}")).is_err());
    }

    #[test]
    fn refusals_use_the_provider_shape() {
        let r = refusal(Dialect::OpenAi, RefusalKind::RateLimit, "slow down");
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        let r = refusal(Dialect::Anthropic, RefusalKind::Authentication, "no");
        assert_eq!(r.status(), 401);
    }
}
