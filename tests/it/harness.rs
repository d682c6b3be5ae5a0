//! The test harness: databases, the app on a free port, request helpers.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::config::Config;
use rsolv_platform::server::db::run_pending_migrations;
use rsolv_platform::server::http::router;
use rsolv_platform::server::state::AppState;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::OnceCell;

/// The credential the test server vends for `anthropic`.
pub const ANTHROPIC_CREDENTIAL: &str = "test-anthropic-credential";
/// The credential the test server vends for `openai`.
pub const OPENAI_CREDENTIAL: &str = "test-openai-credential";

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL must point at an admin database, e.g. postgres://postgres@127.0.0.1:5432/postgres")
}

/// `admin_url` with its database name replaced by `db`.
pub fn database_url(db: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a database name");
    format!("{base}/{db}")
}

async fn admin_conn() -> AsyncPgConnection {
    AsyncPgConnection::establish(&admin_url())
        .await
        .expect("connect to TEST_DATABASE_URL")
}

/// A digest of `migrations/`, so a changed migration gets a new template.
fn migrations_digest() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).expect("read migrations/") {
        let dir = dir.expect("migration dir").path();
        for file in ["up.sql", "down.sql"] {
            let path = dir.join(file);
            if path.exists() {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).expect("read migration"));
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates (once per digest, across processes, under an advisory lock) a
/// template database with every migration applied; returns its name.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("rsolv_tmpl_{}", migrations_digest());
            let mut conn = admin_conn().await;
            diesel::sql_query("SELECT pg_advisory_lock(7274001)").execute(&mut conn).await.unwrap();
            let exists: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
            ))
            .get_result(&mut conn)
            .await
            .unwrap();
            if exists == 0 {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).execute(&mut conn).await.unwrap();
                diesel::sql_query(format!("CREATE DATABASE {building}")).execute(&mut conn).await.unwrap();
                run_pending_migrations(&database_url(&building)).await.expect("migrate the template");
                diesel::sql_query(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
                ))
                .execute(&mut conn)
                .await
                .unwrap();
                diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}")).execute(&mut conn).await.unwrap();
            }
            diesel::sql_query("SELECT pg_advisory_unlock(7274001)").execute(&mut conn).await.unwrap();
            name
        })
        .await
}

/// A fresh database, dropped (with its connections) when this is dropped.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// Clones the template into a new database.
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!(
            "rsolv_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = admin_conn().await;
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Self {
            url: database_url(&name),
            name,
        }
    }

    /// An empty database with no migrations applied.
    pub async fn empty() -> Self {
        let name = format!(
            "rsolv_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = admin_conn().await;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        Self {
            url: database_url(&name),
            name,
        }
    }
}

impl Drop for TestDb {
    /// Drops the database, unless `KEEP_TEST_DATABASES=1` asks to keep it
    /// for inspection (its name is printed; drop it by hand afterwards).
    fn drop(&mut self) {
        let name = self.name.clone();
        if std::env::var("KEEP_TEST_DATABASES").is_ok_and(|v| v == "1") {
            eprintln!("kept test database {name}");
            return;
        }
        // Dropping needs async I/O; do it on a runtime of its own so it
        // works whichever runtime (if any) is dropping us.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin_url()).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The configuration tests run with: two providers configured, seed prices,
/// production defaults otherwise; `overrides` (variable name, value) take
/// precedence.
pub fn test_config_with(database_url: &str, overrides: &[(&str, &str)]) -> Config {
    let database_url = database_url.to_owned();
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(move |name| {
        if let Some((_, value)) = overrides.iter().find(|(k, _)| k == name) {
            return Some(value.clone());
        }
        test_default(name, &database_url)
    })
    .expect("test configuration")
}

fn test_default(name: &str, database_url: &str) -> Option<String> {
    match name {
        "DATABASE_URL" => Some(database_url.to_owned()),
        "PROVIDER_ANTHROPIC_API_KEY" => Some(ANTHROPIC_CREDENTIAL.to_owned()),
        "PROVIDER_OPENAI_API_KEY" => Some(OPENAI_CREDENTIAL.to_owned()),
        "MAX_BODY_BYTES" => Some("65536".to_owned()),
        "DATABASE_POOL_SIZE" => Some("20".to_owned()),
        _ => None,
    }
}

/// Leptos settings from the repository's `Leptos.toml`.
pub fn leptos_options() -> leptos::config::LeptosOptions {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml");
    leptos::config::get_configuration(Some(path))
        .expect("Leptos.toml")
        .leptos_options
}

/// The app served on a free loopback port against a fresh database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// Keep last: dropped after the rest (shared by apps made with
    /// [`TestApp::spawn_sharing`]; dropped with the last of them).
    pub db: std::sync::Arc<TestDb>,
}

impl TestApp {
    /// Starts the app.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts the app with `overrides` (variable name, value) on top of
    /// the tests' configuration ([`test_config_with`]), e.g. `&[("RATE_LIMIT_ACTION_PER_HOUR", "3")]`.
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let db = std::sync::Arc::new(TestDb::new().await);
        Self::serve(db, overrides).await
    }

    /// Starts a second instance on `other`'s database (its own router and
    /// pool), as a second server behind a load balancer would be.
    pub async fn spawn_sharing(other: &TestApp, overrides: &[(&str, &str)]) -> Self {
        Self::serve(other.db.clone(), overrides).await
    }

    /// Starts the app with these Leptos settings instead of `Leptos.toml`'s
    /// (e.g. another site root).
    pub async fn spawn_with_leptos(options: leptos::config::LeptosOptions) -> Self {
        let db = std::sync::Arc::new(TestDb::new().await);
        Self::serve_with(db, &[], options).await
    }

    async fn serve(db: std::sync::Arc<TestDb>, overrides: &[(&str, &str)]) -> Self {
        Self::serve_with(db, overrides, leptos_options()).await
    }

    async fn serve_with(
        db: std::sync::Arc<TestDb>,
        overrides: &[(&str, &str)],
        options: leptos::config::LeptosOptions,
    ) -> Self {
        let config = test_config_with(&db.url, overrides);
        let state = platform_state(config, options).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::new(),
            db,
        }
    }

    /// A direct database connection for assertions.
    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db.url).await.unwrap()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with `browser` (following redirects only if that client
    /// does): status, `Location`, body.
    pub async fn page(
        &self,
        browser: &reqwest::Client,
        path: &str,
    ) -> (u16, Option<String>, String) {
        let response = browser.get(self.url(path)).send().await.unwrap();
        status_location_body(response).await
    }

    /// The body of `GET path` with `browser`, whatever its status.
    pub async fn html(&self, browser: &reqwest::Client, path: &str) -> String {
        self.page(browser, path).await.2
    }

    /// Onboards a customer through the API (202, no key in the answer),
    /// then issues it an API key straight in the database, as the owner's
    /// first proof of the email would (without proving it); returns
    /// (customer id, API key).
    pub async fn onboard(&self, email: &str) -> (i64, String) {
        let response = self
            .client
            .post(self.url("/api/v1/customers/onboard"))
            .json(&json!({"email": email, "name": "Test Customer", "source": "direct"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "check_email", "{body}");
        assert!(
            body.get("api_key").is_none(),
            "no key in the answer: {body}"
        );
        let customer_id = self.customer_id_by_email(email).await;
        (customer_id, self.issue_key(customer_id).await)
    }

    /// The id of the customer with `email` (any case).
    pub async fn customer_id_by_email(&self, email: &str) -> i64 {
        customer_id_by_email(&mut self.conn().await, email).await
    }

    /// Creates an API key for `customer_id` in the database (the domain's
    /// `create_api_key`); returns its secret.
    pub async fn issue_key(&self, customer_id: i64) -> String {
        issue_key(&mut self.conn().await, customer_id).await
    }

    /// Marks the owner of `customer_id` as having proved the email, straight
    /// in the database (no claim: the keys stay), for tests about what a
    /// verified owner may do (adding a card) that do not go through a
    /// mailed link.
    pub async fn confirm_owner_directly(&self, customer_id: i64) {
        use rsolv_platform::server::db::schema::users;
        let changed = diesel::update(users::table.filter(users::customer_id.eq(customer_id)))
            .set(users::email_confirmed_at.eq(diesel::dsl::now))
            .execute(&mut self.conn().await)
            .await
            .unwrap();
        assert_eq!(changed, 1, "one owner");
    }

    /// POSTs JSON with the API key header; returns status and body.
    pub async fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GETs with the API key header; returns status and JSON body.
    pub async fn get_json(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The customer's cached balance and the sum of its ledger entries.
    pub async fn balance_and_ledger_sum(&self, customer_id: i64) -> (i64, i64) {
        use rsolv_platform::server::db::schema::customers;
        let mut conn = self.conn().await;
        let balance: i64 = customers::table
            .find(customer_id)
            .select(customers::credit_balance)
            .first(&mut conn)
            .await
            .unwrap();
        let sum = rsolv_platform::server::billing::ledger::ledger_sum(&mut conn, customer_id)
            .await
            .unwrap();
        (balance, sum)
    }

    /// Number of rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = self.conn().await;
        diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!("SELECT count(*) FROM {table}"))
            .get_result(&mut conn)
            .await
            .unwrap()
    }
}

/// A unique email for one test.
pub fn email(tag: &str) -> String {
    format!(
        "{tag}-{}-{}@example.com",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

// --- Stripe (localstripe) -------------------------------------------------

/// The current webhook signing secret of the test configuration.
pub const WEBHOOK_SECRET: &str = "whsec_test_rsolv_current";
/// The previous (still accepted) webhook signing secret.
pub const WEBHOOK_SECRET_PREVIOUS: &str = "whsec_test_rsolv_previous";
/// The Stripe key the tests use (localstripe accepts any `sk_…`).
pub const STRIPE_TEST_KEY: &str = "sk_test_rsolv_platform";

static LOCALSTRIPE: OnceCell<String> = OnceCell::const_new();

/// Base URL of a running localstripe: `TEST_STRIPE_API_BASE` (scripts/test.sh
/// sets it), else one started here from the virtualenv that
/// `ensure_localstripe` (scripts/lib.sh) installs; it exits with this process.
pub async fn localstripe_base() -> String {
    LOCALSTRIPE
        .get_or_init(|| async {
            if let Some(base) = std::env::var("TEST_STRIPE_API_BASE")
                .ok()
                .filter(|v| !v.is_empty())
            {
                return base.trim_end_matches('/').to_owned();
            }
            let home = std::env::var("HOME").expect("HOME");
            let python = format!("{home}/.cache/rsolv-platform/localstripe-venv/bin/python");
            assert!(
                std::path::Path::new(&python).exists(),
                "set TEST_STRIPE_API_BASE to a running localstripe, or install it with \
                 `bash -c '. scripts/lib.sh && ensure_localstripe'` (scripts/test.sh does both)"
            );
            let port_file =
                std::env::temp_dir().join(format!("rsolv-it-localstripe-{}", std::process::id()));
            let _ = std::fs::remove_file(&port_file);
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts/localstripe_server.py");
            // A thread of its own that lives as long as the test process, so
            // the child's parent stays alive until the tests end.
            let (tx, rx) = std::sync::mpsc::channel();
            let port_file_for_child = port_file.clone();
            std::thread::spawn(move || {
                let mut child = std::process::Command::new(python)
                    .arg(script)
                    .arg(&port_file_for_child)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start localstripe");
                let _ = tx.send(());
                let _ = child.wait();
            });
            rx.recv().expect("localstripe spawned");
            for _ in 0..300 {
                if let Ok(text) = std::fs::read_to_string(&port_file) {
                    if let Ok(port) = text.trim().parse::<u16>() {
                        return format!("http://127.0.0.1:{port}");
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("localstripe did not start within 30 s");
        })
        .await
        .clone()
}

/// The Stripe variables of the tests: `extra` first (they win), then the
/// key, `api_base` and both webhook secrets.
fn stripe_vars<'a>(
    api_base: &'a str,
    secrets: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut vars = extra.to_vec();
    vars.extend([
        ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
        ("STRIPE_API_BASE", api_base),
        ("STRIPE_WEBHOOK_SECRETS", secrets),
    ]);
    vars
}

/// The test configuration plus Stripe: key, `api_base`, both webhook
/// secrets, and `extra` variables (e.g. `BILLING_ENABLED`).
pub fn stripe_config(database_url: &str, api_base: &str, extra: &[(&str, &str)]) -> Config {
    let secrets = format!("{WEBHOOK_SECRET},{WEBHOOK_SECRET_PREVIOUS}");
    test_config_with(database_url, &stripe_vars(api_base, &secrets, extra))
}

impl TestApp {
    /// Starts the app with the Stripe configuration of [`stripe_config`].
    pub async fn spawn_with_stripe(api_base: &str, extra: &[(&str, &str)]) -> Self {
        let secrets = format!("{WEBHOOK_SECRET},{WEBHOOK_SECRET_PREVIOUS}");
        Self::spawn_with(&stripe_vars(api_base, &secrets, extra)).await
    }

    /// A state over this app's database (for running jobs) with the Stripe
    /// configuration for `api_base` and `extra` variables.
    pub fn state_with(&self, api_base: &str, extra: &[(&str, &str)]) -> AppState {
        platform_state(
            stripe_config(&self.db.url, api_base, extra),
            leptos_options(),
        )
        .expect("state")
    }

    /// POSTs `body` to `/webhooks/stripe` signed with `secret` at `timestamp`
    /// (unix seconds); returns status and JSON body.
    pub async fn post_stripe_event(
        &self,
        body: &[u8],
        secret: &str,
        timestamp: i64,
    ) -> (u16, Value) {
        let header = rsolv_platform::server::stripe::signature::sign(secret, timestamp, body);
        let response = self
            .client
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The text of `tests/fixtures/stripe/<name>.json`.
pub fn stripe_fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stripe")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// --- Browser sessions (auth) -------------------------------------------------

impl TestApp {
    /// [`TestApp::spawn`], which already serves with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, so handlers see
    /// the client's address (127.0.0.1).
    pub async fn spawn_with_connect_info() -> Self {
        Self::spawn().await
    }

    /// A client that keeps cookies (like a browser) and does not follow
    /// redirects.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// A staff admin's second step (`POST /api/2fa/verify`) with `code`
    /// (TOTP or recovery code): status, `Location`, body.
    pub async fn second_factor(
        &self,
        client: &reqwest::Client,
        code: &str,
    ) -> (u16, Option<String>, String) {
        self.server_fn(client, "2fa/verify", &[("code", code)])
            .await
    }

    /// POSTs a form to the server function `/api/<endpoint>` with a
    /// same-origin `Origin` header; returns status, `Location` (if any) and
    /// body.
    pub async fn server_fn(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        fields: &[(&str, &str)],
    ) -> (u16, Option<String>, String) {
        let response = client
            .post(self.url(&format!("/api/{endpoint}")))
            .header("origin", &self.base)
            .form(fields)
            .send()
            .await
            .unwrap();
        status_location_body(response).await
    }

    /// The token in the newest outbox email of `kind` to `to` (the
    /// `token=` query parameter of its link).
    pub async fn mailed_token(&self, to: &str, kind: &str) -> String {
        use rsolv_platform::server::db::schema::email_outbox;
        let mut conn = self.conn().await;
        let notification: Option<Value> = email_outbox::table
            .filter(email_outbox::to_address.eq(to))
            .filter(email_outbox::kind.eq(kind))
            .order(email_outbox::id.desc())
            .select(email_outbox::notification)
            .first(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("no {kind} email to {to}: {e}"));
        let text = rendered(notification).text_body;
        let start = text.find("token=").expect("a token link") + "token=".len();
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

// --- Admin console -------------------------------------------------------------

/// The password of the staff admins [`TestApp::admin_browser`] creates.
pub const ADMIN_PASSWORD: &str = "staff admin password 1";

impl TestApp {
    /// A staff admin with `email` (created as the `create-admin` command
    /// does, with [`ADMIN_PASSWORD`]) signed in through `login` and the
    /// TOTP enrolment at `/admin/2fa`: returns their browser.
    pub async fn admin_browser(&self, email: &str) -> reqwest::Client {
        self.enrolled_admin(email).await.browser
    }

    /// Creates a staff admin with `email` and [`ADMIN_PASSWORD`] as
    /// `create-admin` does; returns the user id.
    pub async fn create_staff_admin(&self, email: &str) -> i64 {
        use rsolv_platform::server::admin::staff::{create_admin, AdminSetup};
        use rsolv_platform::server::admin::Admin;
        use rsolv_platform::server::auth::password::{hash_password, Password};
        let hash = hash_password(Password::parse(ADMIN_PASSWORD).unwrap())
            .await
            .unwrap();
        let links = test_config_with(&self.db.url, &[]).email.links;
        create_admin(
            &mut self.conn().await,
            &links,
            &Admin::cli(),
            &rsolv_platform::types::values::Email::parse(email).unwrap(),
            AdminSetup::Password(hash),
        )
        .await
        .unwrap()
    }

    /// A staff admin created with [`TestApp::create_staff_admin`], signed in
    /// with the password, then enrolled in TOTP with a code computed here
    /// from the secret the page shows (the current step).
    pub async fn enrolled_admin(&self, email: &str) -> EnrolledAdmin {
        let user_id = self.create_staff_admin(email).await;
        let browser = self.admin_password_step(email).await;
        let (status, _, body) = self.server_fn(&browser, "2fa/status", &[]).await;
        assert_eq!(status, 200, "{body}");
        let view: Value = serde_json::from_str(&body).unwrap();
        let secret = totp_rs::Secret::Encoded(
            view["enrolment"]["secret_base32"]
                .as_str()
                .expect("an enrolment for a new admin")
                .to_owned(),
        )
        .to_bytes()
        .unwrap();
        let enrolment_code = totp_code(&secret, 0);
        let (status, location, body) = self.second_factor(&browser, &enrolment_code).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(location, None, "the recovery codes are shown first");
        let done: Value = serde_json::from_str(&body).unwrap();
        let recovery_codes = done["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        EnrolledAdmin {
            user_id,
            browser,
            secret,
            recovery_codes,
            enrolment_code,
        }
    }

    /// A new browser that gave `email`'s [`ADMIN_PASSWORD`] at `/login` and
    /// was sent on to `/admin/2fa` (not signed in yet).
    pub async fn admin_password_step(&self, email: &str) -> reqwest::Client {
        let browser = self.browser();
        let (status, location, body) = self
            .server_fn(
                &browser,
                "login",
                &[("email", email), ("password", ADMIN_PASSWORD)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(location.as_deref(), Some("/admin/2fa"));
        browser
    }

    /// Calls the server function `admin/<endpoint>` with `browser`; returns
    /// status and the JSON answer.
    pub async fn admin_fn(
        &self,
        browser: &reqwest::Client,
        endpoint: &str,
        fields: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, _, body) = self
            .server_fn(browser, &format!("admin/{endpoint}"), fields)
            .await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// The audit entries with `action`, oldest first: (actor email,
    /// target id, reason, before, after).
    pub async fn audit_entries(
        &self,
        action: &str,
    ) -> Vec<(
        String,
        Option<String>,
        Option<String>,
        Option<Value>,
        Option<Value>,
    )> {
        use rsolv_platform::server::db::schema::admin_audit_log as a;
        a::table
            .filter(a::action.eq(action))
            .order(a::id.asc())
            .select((a::actor_email, a::target_id, a::reason, a::before, a::after))
            .load(&mut self.conn().await)
            .await
            .unwrap()
    }
}

/// A staff admin enrolled by [`TestApp::enrolled_admin`].
pub struct EnrolledAdmin {
    /// The user id.
    pub user_id: i64,
    /// The signed-in browser.
    pub browser: reqwest::Client,
    /// The TOTP secret (raw bytes).
    pub secret: Vec<u8>,
    /// The ten recovery codes shown at enrolment.
    pub recovery_codes: Vec<String>,
    /// The TOTP code that confirmed the enrolment (used up).
    pub enrolment_code: String,
}

/// The TOTP code of `secret` for the step `steps` away from now (SHA-1, 6
/// digits, 30 s), computed with `totp-rs` as an authenticator app would.
pub fn totp_code(secret: &[u8], steps: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp_code_at(secret, now + steps * 30)
}

/// The TOTP code of `secret` at Unix time `at` (seconds).
pub fn totp_code_at(secret: &[u8], at: i64) -> String {
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        0,
        30,
        secret.to_vec(),
        None,
        String::new(),
    )
    .generate(at as u64)
}

/// An outbox row's notification rendered as the email worker renders it at
/// send time, with the tests' `PUBLIC_BASE_URL` (`http://127.0.0.1:3000`).
pub fn rendered(notification: Option<Value>) -> rsolv_platform::server::email::templates::Rendered {
    use rsolv_platform::server::billing::notifications::{EmailLinks, NotificationRecord};
    let record: NotificationRecord =
        serde_json::from_value(notification.expect("a queued notification"))
            .expect("a notification");
    let links = EmailLinks::parse("http://127.0.0.1:3000").unwrap();
    rsolv_platform::server::email::templates::render_notification(&links, &record)
}

/// The id of the customer with `email` (any case).
pub async fn customer_id_by_email(conn: &mut AsyncPgConnection, email: &str) -> i64 {
    use rsolv_platform::server::db::schema::customers;
    customers::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(customers.email) = lower(")
                .bind::<diesel::sql_types::Text, _>(email.to_owned())
                .sql(")"),
        )
        .select(customers::id)
        .first(conn)
        .await
        .unwrap()
}

/// Creates an API key named `test` for `customer_id` (the domain's
/// `create_api_key`); returns its secret.
pub async fn issue_key(conn: &mut AsyncPgConnection, customer_id: i64) -> String {
    use rsolv_platform::server::billing::api_keys::create_api_key;
    use rsolv_platform::types::portal::ApiKeyName;
    let name = ApiKeyName::parse("test").unwrap();
    let (_, plain) = create_api_key(conn, customer_id, &name).await.unwrap();
    plain.expose().to_owned()
}

/// `fragment` with its tags as spaces, `&amp;` decoded, whitespace
/// collapsed: the text a reader of the rendered page sees.
pub fn html_text(fragment: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A response's status, `Location` header and body.
pub async fn status_location_body(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location, response.text().await.unwrap())
}
