//! The real binary's lifecycle (issue 11, scopes 4-6): one log line per
//! request (JSON, with the request id, route template, status, latency and
//! customer id, never a secret header), the SIGTERM drain that finishes a
//! request in flight, and the `check-config` pre-flight.
//!
//! Synchronisation is by events only: the server's log lines (read as they
//! are written) and the protocol itself (`Expect: 100-continue` tells when
//! the handler is reading the request body).

use crate::harness::TestDb;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_rsolv-platform");
/// Upper bound on waiting for any one event (a hung server fails the test).
const PATIENCE: Duration = Duration::from_secs(60);

/// The binary with only the variables given (no inherited settings).
pub(crate) fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// A running `serve`, its log lines arriving on `lines`.
struct Server {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    port: u16,
}

impl Server {
    fn start(db: &TestDb, extra: &[(&str, &str)]) -> Self {
        let mut env = vec![
            ("DATABASE_URL", db.url.as_str()),
            ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("EMAIL_TRANSPORT", "log"),
            ("STRIPE_WEBHOOK_SECRETS", "whsec_lifecycle_test_secret"),
        ];
        env.extend_from_slice(extra);
        let mut child = command(&["serve"], &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let (send, lines) = channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut server = Self {
            child,
            lines,
            seen: Vec::new(),
            port: 0,
        };
        let listening = server.wait_for(|l| l.contains("listening on http://"));
        let port = server_port(&[listening]);
        server.port = port;
        server
    }

    /// Waits for the first new log line matching `wanted`.
    fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no such log line ({e}); seen:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Every line logged until the process exits, and its exit status.
    fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(line);
        }
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.seen))
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

/// The WARN and ERROR lines of a JSON log, and every line that is not JSON
/// (`error: …` printed on stderr at exit), for a failure message.
fn warnings_and_errors(lines: &[String]) -> String {
    lines
        .iter()
        .filter(|l| {
            !l.starts_with('{')
                || l.contains(r#""level":"WARN""#)
                || l.contains(r#""level":"ERROR""#)
        })
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON log line of the request with id `request_id`.
fn request_line(lines: &[String], request_id: &str) -> Value {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] == "request finished" && v["span"]["request_id"] == request_id
        })
        .unwrap_or_else(|| panic!("no request line for {request_id}:\n{}", lines.join("\n")))
}

/// Sends a raw HTTP/1.1 request and reads the whole answer (the server
/// closes the connection: `Connection: close`).
fn exchange(server: &Server, request: &str) -> String {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test]
async fn each_request_is_logged_once_with_its_id_route_status_and_customer_never_a_secret() {
    let db = TestDb::new().await;
    let server = Server::start(&db, &[]);

    // Onboard through the API to get a customer and a key.
    let body = r#"{"email":"log-line@example.com","name":"Log Line","source":"direct"}"#;
    let answer = exchange(
        &server,
        &format!(
            "POST /api/v1/customers/onboard HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nx-request-id: onboard-1\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.contains("x-request-id: onboard-1"), "{answer}");
    // No key in the answer: one is issued as the owner's proof would.
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let customer_id = crate::harness::customer_id_by_email(&mut conn, "log-line@example.com").await;
    let key = crate::harness::issue_key(&mut conn, customer_id).await;

    // An authenticated request with its own id: the line names the customer.
    let answer = exchange(
        &server,
        &format!(
            "GET /api/v1/billing/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             x-api-key: {key}\r\nAuthorization: Bearer very-secret-bearer\r\n\
             Cookie: id=very-secret-cookie\r\nx-request-id: status-1\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Without an id, one is generated and returned.
    let answer = exchange(
        &server,
        "GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let generated = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("generated request id")
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    server.terminate();
    let (status, lines) = server.wait_exit();
    assert!(
        status.success(),
        "{status:?}; warnings and errors logged:\n{}",
        warnings_and_errors(&lines)
    );

    let line = request_line(&lines, "status-1");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["route"], "/api/v1/billing/status");
    assert_eq!(line["span"]["customer_id"], customer_id);
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let onboard = request_line(&lines, "onboard-1");
    assert_eq!(onboard["span"]["route"], "/api/v1/customers/onboard");
    assert_eq!(onboard["fields"]["status"], 202);
    assert_eq!(request_line(&lines, &generated)["span"]["route"], "/livez");
    // One line per request.
    let count = lines
        .iter()
        .filter(|l| l.contains("request finished") && l.contains("\"status-1\""))
        .count();
    assert_eq!(count, 1);
    let all = lines.join("\n");
    for secret in [key.as_str(), "very-secret-bearer", "very-secret-cookie"] {
        assert!(!all.contains(secret), "{secret} was logged");
    }
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits() {
    let db = TestDb::new().await;
    let mut server = Server::start(&db, &[("SHUTDOWN_TIMEOUT_SECONDS", "30")]);

    // A webhook whose body is not sent yet: the handler waits for it.
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\nExpect: 100-continue\r\n\
              Stripe-Signature: t=1,v1=not-a-real-signature-0123\r\nx-request-id: in-flight-1\r\n\r\n",
        )
        .unwrap();
    // hyper answers 100 Continue when the handler starts reading the body.
    let mut continue_line = [0u8; 25];
    stream.read_exact(&mut continue_line).unwrap();
    assert_eq!(&continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");

    server.terminate();
    server.wait_for(|l| l.contains("shutdown signal received"));

    // The request in flight still completes.
    stream.write_all(b"{}").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("x-request-id: in-flight-1"), "{answer}");

    let (status, lines) = server.wait_exit();
    assert!(status.success(), "exit {status:?}:\n{}", lines.join("\n"));
    let all = lines.join("\n");
    let position = |needle: &str| {
        all.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not logged:\n{all}"))
    };
    // In order: the signal, the request's line, the server drained, both
    // workers stopped after their current job, the exit.
    let signal = position("shutdown signal received");
    let request = position("in-flight-1");
    let drained = position("HTTP server drained");
    let jobs = position("\"worker\":\"job worker\"");
    let email = position("\"worker\":\"email worker\"");
    let exit = position("drained; exiting");
    assert!(signal < request && request < drained, "{all}");
    assert!(
        drained < jobs && drained < email && jobs < exit && email < exit,
        "{all}"
    );
    assert_eq!(request_line(&lines, "in-flight-1")["fields"]["status"], 400);
    assert!(
        !all.contains("not-a-real-signature-0123"),
        "signature logged"
    );
    // After the drain nothing listens any more.
    assert!(TcpStream::connect(("127.0.0.1", server_port(&lines))).is_err());
}

fn server_port(lines: &[String]) -> u16 {
    lines
        .iter()
        .find_map(|l| l.split("listening on http://127.0.0.1:").nth(1))
        .and_then(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .expect("listening line")
}

async fn admin_sql(sql: &str) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let url = std::env::var("TEST_DATABASE_URL").unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn readiness_follows_the_database_and_liveness_does_not() {
    let db = TestDb::new().await;
    let server = Server::start(&db, &[]);
    let get = |path: &str| {
        exchange(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    };
    let ready = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains(r#""status":"ready""#), "{ready}");

    // The database goes away (refuses connections, existing ones cut).
    admin_sql(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        db.name
    ))
    .await;
    admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ))
    .await;
    let ready = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains(r#""database":"unreachable""#), "{ready}");
    let health = get("/health");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    let live = get("/livez");
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");

    // And comes back.
    admin_sql(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .await;
    let ready = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
}

#[tokio::test]
async fn a_draining_process_is_not_ready() {
    use crate::harness::{leptos_options, test_config_with};
    let db = TestDb::new().await;
    let state = rsolv_platform::server::cli::platform_state(
        test_config_with(&db.url, &[]),
        leptos_options(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = rsolv_platform::server::http::router(state.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/readyz").await, 200);
    state.draining.start();
    assert_eq!(status("/readyz").await, 503);
    assert_eq!(status("/livez").await, 200);
}

/// `check-config` with everything reachable passes; with broken settings it
/// names each problem, never a secret, and exits 1.
#[tokio::test]
async fn check_config_reaches_everything_and_names_what_is_wrong() {
    let db = TestDb::new().await;
    let stripe = crate::harness::localstripe_base().await;
    let smtp_port = std::env::var("TEST_SMTP_PORT").expect("TEST_SMTP_PORT");
    let good = [
        ("DATABASE_URL", db.url.as_str()),
        ("EMAIL_TRANSPORT", "smtp"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", smtp_port.as_str()),
        ("SMTP_TLS", "none"),
        ("STRIPE_SECRET_KEY", "sk_test_check_config"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_check_config"),
        ("STRIPE_API_BASE", stripe.as_str()),
        ("STRIPE_WEBHOOK_SECRETS", "whsec_check_config"),
        ("PROVIDER_ANTHROPIC_API_KEY", "sk-ant-check-config-secret"),
    ];
    let output = command(&["check-config"], &good).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ok    database: PostgreSQL"), "{text}");
    assert!(text.contains("no pending migration"), "{text}");
    assert!(text.contains("ok    email:"), "{text}");
    assert!(text.contains("ok    stripe: reached"), "{text}");
    assert!(!text.contains("sk_test_check_config"), "{text}");
    assert!(!text.contains("sk-ant-check-config-secret"), "{text}");

    // Unreachable database (with a password in its URL), an SMTP port
    // nobody listens on (with a login), live and test keys mixed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let bad_db = format!("postgres://postgres:db-hunter2@127.0.0.1:{closed_port}/x");
    let bad = [
        ("DATABASE_URL", bad_db.as_str()),
        ("EMAIL_TRANSPORT", "smtp"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", closed_port.as_str()),
        ("SMTP_TLS", "none"),
        ("SMTP_USERNAME", "mailer"),
        ("SMTP_PASSWORD", "smtp-hunter2"),
        ("STRIPE_SECRET_KEY", "sk_live_stripe-hunter2"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_check_config"),
        ("STRIPE_API_BASE", stripe.as_str()),
        ("STRIPE_WEBHOOK_SECRETS", "whsec_check_config"),
    ];
    let output = command(&["check-config"], &bad).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  database: cannot connect"), "{text}");
    assert!(text.contains("FAIL  email: SMTP"), "{text}");
    assert!(
        text.contains("live-mode key but STRIPE_PUBLISHABLE_KEY a test-mode"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    // A setting that does not parse is named.
    let output = command(
        &["check-config"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("SHUTDOWN_TIMEOUT_SECONDS", "soon"),
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  settings: environment variable SHUTDOWN_TIMEOUT_SECONDS"),
        "{text}"
    );
}
