//! Property tests of the parsers strangers reach (security issue, item 8),
//! driven through the real router on port 0: the Action API's JSON bodies
//! (every `POST /api/v1/…`), both webhooks with a VALID signature over
//! garbage, the url-encoded forms of the public server functions, and the
//! query strings of the endpoints and pages that read one.
//!
//! For every input: no panic and no 5xx (the panic catcher would answer
//! 500), each request answered in under [`MAX_REQUEST`]; garbage (bytes
//! that are not JSON, truncated bodies, nesting past serde's limit, bodies
//! over `MAX_BODY_BYTES`) is a 4xx; a 4xx from the Action API or a webhook
//! is `{"error": "<string>"}`; and nothing is half-written: every table's
//! row count is unchanged after a 4xx (the rate-limit counters, sign-in
//! failures, sessions and `failed` GitHub deliveries, which record
//! attempts by design, aside).
//!
//! Fixed case budgets ([`CASES`]) keep the file well under a minute. The
//! signature headers and `X-Forwarded-For` have their own property tests
//! beside their parsers (`stripe::signature`, `marketplace::signature`,
//! `client_ip`); they are not repeated here.

use crate::harness::{email, localstripe_base, stripe_fixture, TestApp, WEBHOOK_SECRET};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Cases per property; `PROPTEST_CASES` raises it for a longer local run.
const CASES: u32 = 64;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}
/// Longest any one request may take.
const MAX_REQUEST: Duration = Duration::from_secs(2);
/// `MAX_BODY_BYTES` of the tests' configuration (`harness::test_config_with`).
const MAX_BODY: usize = 64 * 1024;
/// The GitHub webhook secret of this file's app.
const GITHUB_SECRET: &str = "fuzz-github-secret";
/// Tables whose rows count attempts by design (a refused request may add
/// one): not part of the "nothing half-written" snapshot.
const ATTEMPT_TABLES: &[&str] = &[
    "rate_limit_counters",
    "login_attempts",
    "sessions",
    "__diesel_schema_migrations",
];

/// One app for a property: Stripe and GitHub webhooks configured, limits
/// high enough that the case budget never meets them.
async fn spawn() -> TestApp {
    let base = localstripe_base().await;
    TestApp::spawn_with_stripe(
        &base,
        &[
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_ACTION_PER_HOUR", "1000000"),
        ],
    )
    .await
}

/// Row counts of every table but [`ATTEMPT_TABLES`], as one string
/// (`table=count,…`), read in one statement.
struct Snapshot {
    query: String,
}

impl Snapshot {
    async fn new(conn: &mut AsyncPgConnection) -> Self {
        #[derive(QueryableByName)]
        struct Table {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let tables: Vec<Table> = diesel::sql_query(
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .load(conn)
        .await
        .unwrap();
        let parts: Vec<String> = tables
            .iter()
            .filter(|t| !ATTEMPT_TABLES.contains(&t.name.as_str()))
            .map(|t| match t.name.as_str() {
                // A signed delivery that fails is stored `failed` (for the
                // admin to see and apply again) with its effects rolled
                // back: a record of the attempt, not a half-write.
                "github_deliveries" => "'github_deliveries=' || \
                    (SELECT count(*) FROM github_deliveries WHERE status <> 'failed')"
                    .to_owned(),
                name => format!("'{name}=' || (SELECT count(*) FROM \"{name}\")"),
            })
            .collect();
        assert!(parts.len() > 10, "the schema's tables: {parts:?}");
        Self {
            query: format!("SELECT {} AS counts", parts.join(" || ',' || ")),
        }
    }

    async fn take(&self, conn: &mut AsyncPgConnection) -> String {
        #[derive(QueryableByName)]
        struct Counts {
            #[diesel(sql_type = diesel::sql_types::Text)]
            counts: String,
        }
        diesel::sql_query(&self.query)
            .get_result::<Counts>(conn)
            .await
            .unwrap()
            .counts
    }
}

// --- Generators -----------------------------------------------------------------

/// Any JSON value: unicode strings, huge and fractional numbers, small
/// arrays and objects (keys drawn from `fields` or anything).
fn json_value(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[a\\x00\u{202e}]{1,8}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(fields).prop_map(str::to_owned),
        ".{0,12}",
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How a valid body is spoiled.
#[derive(Debug, Clone)]
enum Garbage {
    /// Random bytes.
    Bytes(Vec<u8>),
    /// The valid body cut after this fraction (per mille) of its bytes.
    Truncated(u16),
    /// Any JSON value instead of the body.
    Json(Value),
    /// The valid body with one field's value replaced (or added).
    WrongType(String, Value),
    /// The valid body with one field set to a string of this many copies
    /// of a character (near and past field and body limits).
    Huge(String, usize, char),
    /// Arrays (or objects) nested this deep.
    Deep(usize, bool),
}

fn garbage(fields: &'static [&'static str]) -> impl Strategy<Value = Garbage> {
    let field = prop::sample::select(fields).prop_map(str::to_owned);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(Garbage::Bytes),
        (1u16..1000).prop_map(Garbage::Truncated),
        json_value(fields).prop_map(Garbage::Json),
        (field.clone(), json_value(fields)).prop_map(|(f, v)| Garbage::WrongType(f, v)),
        (
            field,
            prop::sample::select(vec![255usize, 256, 2049, 65_536, MAX_BODY + 1]),
            prop::sample::select(vec!['a', 'é', '😀', '\u{202e}', '\0']),
        )
            .prop_map(|(f, n, c)| Garbage::Huge(f, n, c)),
        (129usize..20_000, any::<bool>()).prop_map(|(d, a)| Garbage::Deep(d, a)),
    ]
}

impl Garbage {
    /// The bytes sent, built from the endpoint's `valid` body.
    fn body(&self, valid: &Value) -> Vec<u8> {
        let with = |field: &str, value: Value| {
            let mut body = valid.clone();
            if let Some(object) = body.as_object_mut() {
                object.insert(field.to_owned(), value);
            }
            serde_json::to_vec(&body).unwrap()
        };
        match self {
            Self::Bytes(bytes) => bytes.clone(),
            Self::Truncated(per_mille) => {
                let full = serde_json::to_vec(valid).unwrap();
                let cut = (full.len() * usize::from(*per_mille) / 1000).clamp(1, full.len() - 1);
                full[..cut].to_vec()
            }
            Self::Json(value) => serde_json::to_vec(value).unwrap(),
            Self::WrongType(field, value) => with(field, value.clone()),
            Self::Huge(field, n, c) => with(field, Value::String(c.to_string().repeat(*n))),
            Self::Deep(depth, arrays) => {
                let (open, close) = if *arrays {
                    ("[", "]")
                } else {
                    ("{\"a\":", "}")
                };
                format!("{}1{}", open.repeat(*depth), close.repeat(*depth)).into_bytes()
            }
        }
    }

    /// Whether no endpoint may accept it: not JSON at all, past serde's
    /// nesting limit, or over the body limit.
    fn must_refuse(&self, body: &[u8]) -> bool {
        body.len() > MAX_BODY
            || matches!(self, Self::Truncated(_) | Self::Deep(..))
            || serde_json::from_slice::<Value>(body).is_err()
    }
}

// --- Running a property ---------------------------------------------------------

/// Runs `property` over `strategy` for [`CASES`] cases on a runtime of
/// its own; a failure panics with the (shrunk) input.
fn run<S: Strategy>(
    name: &str,
    strategy: S,
    property: impl Fn(&tokio::runtime::Runtime, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = cases();
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |input| property(&runtime, input));
    eprintln!(
        "{name}: {cases} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!("{name}: {reason}\ninput: {input:?}"),
        Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
    }
}

/// A response, timed.
struct Answer {
    status: u16,
    body: String,
    took: Duration,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        body,
        took: started.elapsed(),
    }
}

/// The checks every answer passes: under [`MAX_REQUEST`], no 5xx, a 4xx
/// when `refuse`; with `json_errors`, a 4xx body is `{"error": "<string>"}`;
/// after a 4xx the snapshot is unchanged.
fn check(
    answer: &Answer,
    refuse: bool,
    json_errors: bool,
    (before, after): (&str, &str),
) -> Result<(), TestCaseError> {
    prop_assert!(
        answer.took < MAX_REQUEST,
        "took {:?} (status {})",
        answer.took,
        answer.status
    );
    prop_assert!(
        answer.status < 500,
        "status {}: {}",
        answer.status,
        answer.body.chars().take(300).collect::<String>()
    );
    if refuse {
        prop_assert!(
            (400..500).contains(&answer.status),
            "garbage accepted with {}: {}",
            answer.status,
            answer.body.chars().take(300).collect::<String>()
        );
    }
    if (400..500).contains(&answer.status) {
        if json_errors {
            let body: Value = serde_json::from_str(&answer.body).map_err(|e| {
                TestCaseError::fail(format!(
                    "a {} that is not JSON ({e}): {}",
                    answer.status, answer.body
                ))
            })?;
            prop_assert!(body["error"].is_string(), "{body}");
        }
        prop_assert_eq!(before, after, "rows changed by a refused request");
    }
    Ok(())
}

// --- The properties -------------------------------------------------------------

/// Every `POST /api/v1/…` endpoint: a valid body and its field names.
fn action_endpoints() -> Vec<(&'static str, Value, &'static [&'static str])> {
    vec![
        (
            "/api/v1/customers/onboard",
            json!({"email": "fuzz@example.com", "name": "Fuzz", "source": "direct"}),
            &["email", "name", "source"],
        ),
        (
            "/api/v1/credentials/exchange",
            json!({"api_key": "rsolv_x", "providers": ["anthropic", "openai"], "ttl_minutes": 60}),
            &["api_key", "providers", "ttl_minutes"],
        ),
        (
            "/api/v1/usage/report",
            json!({"provider": "anthropic", "tokens_used": 12345, "request_count": 3, "job_id": "build"}),
            &["provider", "tokens_used", "request_count", "job_id"],
        ),
        (
            "/api/v1/phases/store",
            json!({"phase": "mitigation", "repo": "acme/api", "issueNumber": 17,
                   "commitSha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                   "data": {"fixed": true, "prUrl": "https://github.com/acme/api/pull/42",
                            "timestamp": "2026-11-21T12:00:00Z"}}),
            &["phase", "repo", "issueNumber", "commitSha", "data"],
        ),
        (
            "/api/v1/fix-attempts",
            json!({"github_org": "acme", "repo_name": "api", "issue_number": 17, "pr_number": 42,
                   "pr_title": "Fix", "pr_url": "https://github.com/acme/api/pull/42",
                   "issue_title": "SQLi", "issue_url": "https://github.com/acme/api/issues/17",
                   "api_key_used": "rsolv_x", "metadata": {"branch": "fix", "labels": ["rsolv:detected"]}}),
            &[
                "github_org",
                "repo_name",
                "issue_number",
                "pr_number",
                "pr_title",
                "pr_url",
                "issue_title",
                "issue_url",
                "api_key_used",
                "metadata",
            ],
        ),
    ]
}

#[test]
fn action_api_json_bodies_are_refused_cleanly() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let (app, key, snapshot) = setup.block_on(async {
        let app = spawn().await;
        let (_, key) = app.onboard(&email("fuzz-api")).await;
        let snapshot = Snapshot::new(&mut app.conn().await).await;
        (app, key, snapshot)
    });
    let endpoints = action_endpoints();
    let all_fields: &'static [&'static str] = &[
        "email",
        "name",
        "source",
        "api_key",
        "providers",
        "ttl_minutes",
        "provider",
        "tokens_used",
        "request_count",
        "job_id",
        "phase",
        "repo",
        "issueNumber",
        "commitSha",
        "data",
        "github_org",
        "repo_name",
        "issue_number",
        "pr_number",
        "pr_url",
        "metadata",
    ];
    let strategy = (0..endpoints.len(), garbage(all_fields));
    run(
        "action API bodies",
        strategy,
        |runtime, (which, garbage)| {
            let (path, valid, _) = &endpoints[which];
            let body = garbage.body(valid);
            let refuse = garbage.must_refuse(&body);
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
                let before = snapshot.take(&mut conn).await;
                let answer = send(
                    app.client
                        .post(app.url(path))
                        .header("x-api-key", &key)
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await;
                let after = snapshot.take(&mut conn).await;
                check(&answer, refuse, true, (&before, &after))
            })
        },
    );
    // The billing call takes its fix id from the path.
    run(
        "fix-attempt billing path",
        prop_oneof![".{0,60}", "[0-9]{1,40}", "-[0-9]{1,20}"],
        |runtime, id| {
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
                let before = snapshot.take(&mut conn).await;
                let segment: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
                let answer = send(
                    app.client
                        .post(app.url(&format!("/api/v1/fix-attempts/{segment}/billing")))
                        .header("x-api-key", &key),
                )
                .await;
                let after = snapshot.take(&mut conn).await;
                // Anything but a number is refused (a number may name a fix
                // the bodies above recorded).
                let refuse = id.trim().parse::<i64>().is_err();
                check(&answer, refuse, true, (&before, &after))
            })
        },
    );
}

#[test]
fn webhooks_refuse_signed_garbage_cleanly() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let (app, snapshot) = setup.block_on(async {
        let app = spawn().await;
        let snapshot = Snapshot::new(&mut app.conn().await).await;
        (app, snapshot)
    });
    let stripe_valid: Value =
        serde_json::from_str(&stripe_fixture("invoice.payment_failed")).unwrap();
    let github_valid: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/github/marketplace_purchase.purchased.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let fields: &'static [&'static str] = &[
        "id",
        "type",
        "object",
        "data",
        "created",
        "livemode",
        "action",
        "marketplace_purchase",
        "sender",
        "effective_date",
        "previous_marketplace_purchase",
    ];
    let strategy = (any::<bool>(), garbage(fields), 0u32..1_000_000);
    run(
        "signed webhook bodies",
        strategy,
        |runtime, (stripe, garbage, n)| {
            let valid = if stripe { &stripe_valid } else { &github_valid };
            let body = garbage.body(valid);
            let refuse = garbage.must_refuse(&body);
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
                let before = snapshot.take(&mut conn).await;
                let request = if stripe {
                    let now = chrono::Utc::now().timestamp();
                    let signature =
                        rsolv_platform::server::stripe::signature::sign(WEBHOOK_SECRET, now, &body);
                    app.client
                        .post(app.url("/webhooks/stripe"))
                        .header("stripe-signature", signature)
                } else {
                    let signature =
                        rsolv_platform::server::marketplace::signature::sign(GITHUB_SECRET, &body);
                    app.client
                        .post(app.url("/webhooks/github"))
                        .header("x-hub-signature-256", signature)
                        .header("x-github-event", "marketplace_purchase")
                        .header("x-github-delivery", format!("fuzz-{n}"))
                };
                let answer = send(
                    request
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await;
                let after = snapshot.take(&mut conn).await;
                check(&answer, refuse, true, (&before, &after))
            })
        },
    );
}

/// Form fields: names the server functions read or anything, values of
/// any text (huge too).
fn form_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(
            &[
                "email",
                "name",
                "password",
                "password_confirm",
                "token",
                "consent"
            ][..]
        )
        .prop_map(str::to_owned),
        ".{0,10}",
    ];
    let value = prop_oneof![
        ".{0,80}",
        "[a-z]{1,12}@[a-z]{1,8}\\.com",
        (
            prop::sample::select(vec![255usize, 300, 4096, 70_000]),
            any::<char>()
        )
            .prop_map(|(n, c)| c.to_string().repeat(n)),
    ];
    prop::collection::vec((name, value), 0..6)
}

/// A url-encoded body: proper pairs, or raw bytes (bad percent escapes,
/// invalid UTF-8).
#[derive(Debug, Clone)]
enum FormBody {
    Pairs(Vec<(String, String)>),
    Raw(Vec<u8>),
}

impl FormBody {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Pairs(pairs) => url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
                .into_bytes(),
            Self::Raw(bytes) => bytes.clone(),
        }
    }
}

#[test]
fn server_function_forms_are_refused_cleanly() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let (app, snapshot) = setup.block_on(async {
        let app = spawn().await;
        let snapshot = Snapshot::new(&mut app.conn().await).await;
        (app, snapshot)
    });
    // The public server functions that take a form (the forgot-password
    // one answers in no less than 300 ms by design and is left out), and
    // the no-JavaScript signup form.
    let paths = [
        "/api/register",
        "/api/signup",
        "/api/login",
        "/api/confirm_email",
        "/api/reset_password",
        "/api/accept_invite",
        "/signup",
    ];
    let body = prop_oneof![
        form_fields().prop_map(FormBody::Pairs),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            prop::collection::vec(prop::sample::select(&b"%=&+ZzFf0\xff\xc3"[..]), 0..64),
        ]
        .prop_map(FormBody::Raw),
    ];
    run(
        "server function forms",
        (0..paths.len(), body),
        |runtime, (which, body)| {
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
                let before = snapshot.take(&mut conn).await;
                let answer = send(
                    app.client
                        .post(app.url(paths[which]))
                        .header("origin", app.url(""))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.bytes()),
                )
                .await;
                let after = snapshot.take(&mut conn).await;
                check(&answer, false, false, (&before, &after))
            })
        },
    );
}

#[test]
fn query_strings_are_refused_cleanly() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let (app, key, snapshot) = setup.block_on(async {
        let app = spawn().await;
        let (_, key) = app.onboard(&email("fuzz-query")).await;
        let snapshot = Snapshot::new(&mut app.conn().await).await;
        (app, key, snapshot)
    });
    // (path, answers JSON errors, always refused): the API lookups find
    // nothing (nothing is stored), the pages render whatever they get.
    let targets = [
        ("/api/v1/phases/retrieve", true, true),
        ("/api/v1/fix-attempts", true, true),
        ("/login", false, false),
        ("/register", false, false),
        ("/confirm-email", false, false),
        ("/reset-password", false, false),
        ("/accept-invite", false, false),
    ];
    let pair = (
        prop_oneof![
            prop::sample::select(
                &[
                    "repo",
                    "issue",
                    "commit",
                    "github_org",
                    "repo_name",
                    "pr_number",
                    "token",
                    "error",
                    "notice",
                    "sent"
                ][..]
            )
            .prop_map(str::to_owned),
            ".{0,10}",
        ],
        prop_oneof![
            ".{0,60}",
            "[a\\x00]{1,8}",
            "-?[0-9]{1,30}",
            (
                prop::sample::select(vec![255usize, 1000, 2049]),
                any::<char>()
            )
                .prop_map(|(n, c)| c.to_string().repeat(n)),
        ],
    );
    let query = prop_oneof![
        prop::collection::vec(pair, 0..6).prop_map(|pairs| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        }),
        // Raw: bad percent escapes and invalid UTF-8 once decoded.
        prop::collection::vec(
            prop::sample::select(
                &["%", "%FF", "%C3", "=", "&", "+", "%ZZ", "a", "issue=", "repo="][..]
            ),
            0..20
        )
        .prop_map(|parts| parts.concat()),
    ];
    run(
        "query strings",
        (0..targets.len(), query),
        |runtime, (which, query)| {
            let (path, json_errors, refuse) = targets[which];
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
                let before = snapshot.take(&mut conn).await;
                let answer = send(
                    app.client
                        .get(format!("{}?{query}", app.url(path)))
                        .header("x-api-key", &key),
                )
                .await;
                let after = snapshot.take(&mut conn).await;
                check(&answer, refuse, json_errors, (&before, &after))?;
                // A page never answers a 4xx for its query: it renders.
                if !json_errors {
                    prop_assert_eq!(answer.status, 200, "{} {}", path, query);
                }
                Ok(())
            })
        },
    );
}
