//! The email outbox end to end: queued in the transaction that causes it,
//! delivered by the worker through a real SMTP server (MailDev on
//! 127.0.0.1, started by `scripts/test.sh`), retried with backoff, never
//! sent twice.

use crate::harness::rendered;
use crate::harness::{email, leptos_options, TestApp, TestDb};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::join_all;
use rsolv_platform::server::billing::notifications::{
    low_credit, EmailLinks, Notification, Recipient,
};
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::config::Config;
use rsolv_platform::server::db::schema::email_outbox;
use rsolv_platform::server::email::worker::{run_once, OutboxEmail};
use rsolv_platform::server::email::{enqueue_email, OutgoingEmail};
use rsolv_platform::server::state::AppState;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The sink's SMTP port and REST API base, from the environment that
/// `scripts/test.sh` (`ensure_smtp_sink` in `scripts/lib.sh`) sets.
pub(crate) fn sink() -> (u16, String) {
    const HOW: &str = "start the SMTP sink first: `bash scripts/test.sh` does it, or \
                       `. scripts/lib.sh && ensure_smtp_sink` before `cargo test` in the same shell";
    let port = std::env::var("TEST_SMTP_PORT")
        .unwrap_or_else(|_| panic!("TEST_SMTP_PORT is not set: {HOW}"))
        .parse()
        .unwrap_or_else(|_| panic!("TEST_SMTP_PORT is not a port number: {HOW}"));
    let api = std::env::var("TEST_SMTP_API_URL")
        .unwrap_or_else(|_| panic!("TEST_SMTP_API_URL is not set: {HOW}"));
    (port, api.trim_end_matches('/').to_owned())
}

/// The test configuration with email going to `smtp_port` on 127.0.0.1,
/// plus `extra` variables.
fn smtp_config(database_url: &str, smtp_port: u16, extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.to_owned()),
        ("DATABASE_POOL_SIZE".into(), "8".into()),
        ("EMAIL_TRANSPORT".into(), "smtp".into()),
        ("SMTP_HOST".into(), "127.0.0.1".into()),
        ("SMTP_PORT".into(), smtp_port.to_string()),
        ("SMTP_TLS".into(), "none".into()),
        ("EMAIL_SEND_TIMEOUT_SECONDS".into(), "10".into()),
        ("PUBLIC_BASE_URL".into(), "https://portal.test".into()),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::from_lookup(move |name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("email test configuration")
}

/// A worker state over `db` delivering to the sink.
pub(crate) fn worker_state(db: &TestDb, extra: &[(&str, &str)]) -> AppState {
    let (port, _) = sink();
    platform_state(smtp_config(&db.url, port, extra), leptos_options()).expect("state")
}

async fn connect(db: &TestDb) -> AsyncPgConnection {
    AsyncPgConnection::establish(&db.url).await.unwrap()
}

async fn outbox(db: &TestDb) -> Vec<OutboxEmail> {
    email_outbox::table
        .order(email_outbox::id.asc())
        .select(OutboxEmail::as_select())
        .load(&mut connect(db).await)
        .await
        .unwrap()
}

/// The messages the sink holds for `to`.
pub(crate) async fn sink_messages(to: &str) -> Vec<Value> {
    let (_, api) = sink();
    reqwest::Client::new()
        .get(format!("{api}/email"))
        .query(&[("to.address", to)])
        .send()
        .await
        .expect("the SMTP sink's API answers")
        .json()
        .await
        .expect("the SMTP sink answers JSON")
}

/// Waits (polling, 10 s at most) until the sink holds at least `n` messages
/// for `to` — it stores a message a moment after accepting it — and returns
/// them all.
pub(crate) async fn wait_for_messages(to: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = sink_messages(to).await;
        if messages.len() >= n || Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A notification to `to` whose rendered subject names `key`.
fn outgoing(to: &str, key: &str) -> OutgoingEmail {
    let recipient = Recipient {
        customer_id: None,
        email: to,
        name: "",
    };
    let notification = Notification::SubscriptionPaymentFailed {
        amount: key.to_owned(),
    };
    OutgoingEmail::new(&recipient, notification, key.to_owned())
}

/// Makes every queued row due now (as if its backoff had passed).
async fn make_due(db: &TestDb) {
    diesel::sql_query("UPDATE email_outbox SET next_attempt_at = now()")
        .execute(&mut connect(db).await)
        .await
        .unwrap();
}

#[tokio::test]
async fn provisioning_queues_exactly_one_welcome_email_and_a_failed_one_none() {
    let app = TestApp::spawn().await;
    let address = email("welcome-queued");
    let (customer_id, key) = app.onboard(&address).await;
    let rows = outbox(&app.db).await;
    // The onboarding API also invites the owner to set a password.
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["welcome", "invite"]);
    let row = &rows[0];
    assert_eq!(row.kind, "welcome");
    assert_eq!(row.customer_id, Some(customer_id));
    assert_eq!(row.to_address, address);
    assert_eq!(row.idempotency_key, format!("welcome:{customer_id}"));
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 0));
    // Queued as a typed notification: nothing is rendered until it is sent.
    assert_eq!(row.subject, None);
    assert_eq!(
        row.notification,
        Some(json!({"kind": "welcome", "recipient_name": row_name(&app, customer_id).await}))
    );
    let sent = rendered(row.notification.clone());
    assert!(!sent.text_body.contains(&key) && !sent.html_body.contains(&key));
    assert!(sent.text_body.contains("http://127.0.0.1:3000/dashboard"));

    // A second sign-up with the same address is answered as a new one and
    // queues only "you already have an account" (no second welcome).
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": address.to_uppercase(), "name": "Again"}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(outbox(&app.db).await.len(), 3);

    // When queuing the email fails, the whole provisioning is rolled back:
    // the email is written in the same transaction as the customer.
    let mut conn = app.conn().await;
    diesel::sql_query(
        "CREATE FUNCTION reject_email() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER reject_email BEFORE INSERT ON email_outbox \
         FOR EACH ROW EXECUTE FUNCTION reject_email()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let second = email("welcome-rolled-back");
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": second, "name": "Rolled Back"}),
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(
        app.count("customers").await,
        1,
        "no customer without its email"
    );
    assert_eq!(app.count("api_keys").await, 1);
    assert_eq!(outbox(&app.db).await.len(), 3);
    diesel::sql_query("DROP TRIGGER reject_email ON email_outbox")
        .execute(&mut conn)
        .await
        .unwrap();
    app.onboard(&second).await;
    assert_eq!(outbox(&app.db).await.len(), 5);
}

#[tokio::test]
async fn the_worker_delivers_the_welcome_email_through_smtp_once() {
    let app = TestApp::spawn().await;
    let state = worker_state(&app.db, &[]);
    let address = email("welcome-sent");
    let (customer_id, _) = app.onboard(&address).await;

    // The welcome email and the invite to set a password.
    assert_eq!(run_once(&state).await.unwrap(), 2);
    let messages = wait_for_messages(&address, 2).await;
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let message = messages
        .iter()
        .find(|m| m["subject"] == "Welcome to RSOLV")
        .expect("the welcome email");
    assert_eq!(message["subject"], "Welcome to RSOLV");
    assert_eq!(message["to"][0]["address"], address.as_str());
    assert_eq!(message["from"][0]["address"], "no-reply@rsolv.local");
    let text = message["text"].as_str().expect("a text part");
    let html = message["html"].as_str().expect("an HTML part");
    // Rendered when sent, with the worker's PUBLIC_BASE_URL.
    assert!(text.contains("https://portal.test/dashboard"), "{text}");
    assert!(
        html.contains("href=\"https://portal.test/dashboard\""),
        "{html}"
    );
    assert!(
        !text.contains("rsolv_") && !html.contains("rsolv_"),
        "no API key"
    );

    let rows = outbox(&app.db).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.customer_id, Some(customer_id));
        assert_eq!((row.status.as_str(), row.attempts), ("sent", 1));
        assert!(row.sent_at.is_some() && row.locked_until.is_none());
        // The rendering that went out is kept on the row.
        assert!(row.subject.is_some() && row.text_body.is_some() && row.html_body.is_some());
    }

    // Running again sends nothing, even when the rows look due.
    assert_eq!(run_once(&state).await.unwrap(), 0);
    make_due(&app.db).await;
    assert_eq!(run_once(&state).await.unwrap(), 0);
    assert_eq!(sink_messages(&address).await.len(), 2);
    assert!(outbox(&app.db).await.iter().all(|row| row.attempts == 1));
}

#[tokio::test]
async fn a_down_smtp_server_backs_off_and_finally_fails_the_row() {
    let db = TestDb::new().await;
    // A port nothing listens on.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let state = platform_state(
        smtp_config(
            &db.url,
            closed_port,
            &[
                ("EMAIL_MAX_ATTEMPTS", "3"),
                ("EMAIL_RETRY_BASE_SECONDS", "60"),
                ("SMTP_USERNAME", "mailer"),
                ("SMTP_PASSWORD", "pw-never-logged-42"),
            ],
        ),
        leptos_options(),
    )
    .unwrap();
    let address = email("down");
    enqueue_email(&mut connect(&db).await, &outgoing(&address, "down:1"))
        .await
        .unwrap()
        .expect("queued");

    // Attempt n waits 60 s · 2^(n-1), jittered into [50 %, 100 %].
    for (attempt, max_wait) in [(1, 60.0), (2, 120.0)] {
        let before = chrono::Utc::now();
        assert_eq!(run_once(&state).await.unwrap(), 1);
        let row = outbox(&db).await.remove(0);
        assert_eq!((row.status.as_str(), row.attempts), ("queued", attempt));
        let error = row.last_error.expect("last_error recorded");
        assert!(error.starts_with("SMTP delivery failed"), "{error}");
        assert!(!error.contains("pw-never-logged-42"));
        let wait = (row.next_attempt_at - before).num_milliseconds() as f64 / 1000.0;
        assert!(
            wait >= max_wait / 2.0 - 1.0 && wait <= max_wait + 1.0,
            "attempt {attempt}: retry in {wait} s"
        );
        assert!(row.locked_until.is_none());
        // Not due yet: nothing to do.
        assert_eq!(run_once(&state).await.unwrap(), 0);
        make_due(&db).await;
    }
    assert_eq!(run_once(&state).await.unwrap(), 1);
    let row = outbox(&db).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 3));
    assert!(row.last_error.is_some() && row.sent_at.is_none());
    // A failed row is left for the admin: never claimed again.
    make_due(&db).await;
    assert_eq!(run_once(&state).await.unwrap(), 0);
    assert_eq!(outbox(&db).await[0].attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_send_each_email_once() {
    let db = TestDb::new().await;
    let prefix = email("concurrent");
    let addresses: Vec<String> = (0..12).map(|i| format!("{i}-{prefix}")).collect();
    {
        let mut conn = connect(&db).await;
        for (i, address) in addresses.iter().enumerate() {
            enqueue_email(&mut conn, &outgoing(address, &format!("concurrent:{i}")))
                .await
                .unwrap()
                .expect("queued");
        }
        // Queuing the same key again queues nothing.
        assert_eq!(
            enqueue_email(&mut conn, &outgoing(&addresses[0], "concurrent:0"))
                .await
                .unwrap(),
            None
        );
    }
    // Small batches, so that both workers take part and run to the end.
    let workers: Vec<AppState> = (0..3)
        .map(|_| worker_state(&db, &[("EMAIL_BATCH_SIZE", "2")]))
        .collect();
    let mut claimed = 0;
    loop {
        let round: usize = join_all(workers.iter().map(run_once))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .sum();
        if round == 0 {
            break;
        }
        claimed += round;
    }
    assert_eq!(claimed, addresses.len());
    for row in outbox(&db).await {
        assert_eq!((row.status.as_str(), row.attempts), ("sent", 1), "{row:?}");
    }
    for address in &addresses {
        let messages = wait_for_messages(address, 1).await;
        assert_eq!(messages.len(), 1, "{address}: {messages:#?}");
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_an_exhausted_one_fails() {
    let db = TestDb::new().await;
    let state = worker_state(&db, &[("EMAIL_MAX_ATTEMPTS", "2")]);
    let crashed = email("lease-crashed");
    let exhausted = email("lease-exhausted");
    let leased = email("lease-held");
    let mut conn = connect(&db).await;
    for (address, key) in [(&crashed, "l:1"), (&exhausted, "l:2"), (&leased, "l:3")] {
        enqueue_email(&mut conn, &outgoing(address, key))
            .await
            .unwrap();
    }
    // A worker died while sending l:1 (attempt 1) and l:2 (attempt 2, the
    // last); another holds a live lease on l:3.
    diesel::sql_query(
        "UPDATE email_outbox SET status = 'sending', \
           attempts = CASE idempotency_key WHEN 'l:2' THEN 2 ELSE 1 END, \
           locked_until = CASE idempotency_key WHEN 'l:3' THEN now() + interval '5 minutes' \
                                               ELSE now() - interval '1 second' END",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    assert_eq!(run_once(&state).await.unwrap(), 1);
    let rows = outbox(&db).await;
    let by_key = |key: &str| rows.iter().find(|r| r.idempotency_key == key).unwrap();
    assert_eq!(
        (by_key("l:1").status.as_str(), by_key("l:1").attempts),
        ("sent", 2)
    );
    assert_eq!(by_key("l:2").status, "failed");
    assert!(by_key("l:2")
        .last_error
        .as_deref()
        .unwrap()
        .contains("lease expired"));
    assert_eq!(by_key("l:3").status, "sending");
    assert_eq!(wait_for_messages(&crashed, 1).await.len(), 1);
    assert!(sink_messages(&exhausted).await.is_empty());
    assert!(sink_messages(&leased).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_low_credit_warning_is_queued_once_when_one_credit_is_left() {
    let app = TestApp::spawn().await;
    let address = email("low-credit");
    let (customer_id, key) = app.onboard(&address).await;
    let fix = |issue: i64| {
        let key = key.clone();
        let app = &app;
        async move {
            let body = json!({"github_org": "acme", "repo_name": "api", "issue_number": issue, "pr_number": 1000 + issue});
            let (status, body) = app
                .post_json("/api/v1/fix-attempts", Some(&key), &body)
                .await;
            // 402 once the credits are gone (recorded all the same).
            assert!(status == 200 || status == 402, "{body}");
        }
    };
    let low_credit_rows = || async {
        outbox(&app.db)
            .await
            .into_iter()
            .filter(|r| r.kind == "low_credit")
            .collect::<Vec<_>>()
    };
    // 5 trial credits: three fixes leave 2, nothing is queued yet.
    for issue in 1..=3 {
        fix(issue).await;
    }
    assert!(low_credit_rows().await.is_empty());
    // Concurrent reports, replays included, take the balance through 1 to 0.
    join_all((4..=9).chain([4, 5, 4]).map(fix)).await;
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));
    let rows = low_credit_rows().await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row.customer_id, Some(customer_id));
    assert_eq!(row.to_address, address);
    assert_eq!(
        rendered(row.notification.clone()).subject,
        "You have 1 credit left"
    );

    use rsolv_platform::server::db::schema::credit_ledger_entries as l;
    let entry_id: i64 = l::table
        .filter(l::customer_id.eq(customer_id))
        .filter(l::balance_after.eq(1))
        .select(l::id)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(row.idempotency_key, format!("low_credit:{entry_id}"));

    // The same template queued again under the same key stays one email.
    let links = EmailLinks::parse("http://127.0.0.1:3000").unwrap();
    let to = Recipient {
        customer_id: Some(customer_id),
        email: &address,
        name: "x",
    };
    let again = low_credit(&links, &to, 1, format!("low_credit:{entry_id}"));
    assert_eq!(
        enqueue_email(&mut app.conn().await, &again).await.unwrap(),
        None
    );
    assert_eq!(low_credit_rows().await.len(), 1);
}

#[tokio::test]
async fn the_file_transport_writes_eml_files() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("rsolv-emails-{}", db.name));
    let dir_str = dir.to_str().unwrap().to_owned();
    let config = Config::from_lookup({
        let url = db.url.clone();
        move |name| match name {
            "DATABASE_URL" => Some(url.clone()),
            "EMAIL_FILE_DIR" => Some(dir_str.clone()),
            _ => None,
        }
    })
    .unwrap();
    let state = platform_state(config, leptos_options()).unwrap();
    let address = email("file");
    enqueue_email(&mut connect(&db).await, &outgoing(&address, "file:1"))
        .await
        .unwrap();
    assert_eq!(run_once(&state).await.unwrap(), 1);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains(&format!("To: {address}")), "{eml}");
    assert!(eml.contains("Subject: Payment of your RSOLV Pro invoice (file:1) failed"));
    assert!(eml.contains("multipart/alternative"));
    assert_eq!(outbox(&db).await[0].status, "sent");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The customer's name (the welcome notification's greeting).
async fn row_name(app: &TestApp, customer_id: i64) -> String {
    use rsolv_platform::server::db::schema::customers;
    customers::table
        .find(customer_id)
        .select(customers::name)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

/// The `token=` value of the first link in `text`.
fn token_in(text: &str) -> String {
    let start = text.find("token=").expect("a token link") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[tokio::test]
async fn a_sent_invite_keeps_no_usable_token_in_the_outbox() {
    let app = TestApp::spawn().await;
    let state = worker_state(&app.db, &[]);
    let address = email("invite-redacted");
    app.onboard(&address).await;
    // Before sending, the queued row holds the link (so it can be sent).
    let queued = app.mailed_token(&address, "invite").await;
    assert!(queued.len() >= 40, "{queued}");

    assert_eq!(run_once(&state).await.unwrap(), 2);
    let messages = wait_for_messages(&address, 2).await;
    let invite = messages
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("accept-invite"))
        })
        .expect("the invite");
    let mailed = token_in(invite["text"].as_str().unwrap());
    assert_eq!(mailed, queued, "the recipient gets the real link");
    assert!(invite["html"].as_str().unwrap().contains(&mailed));

    // The stored row no longer holds it, in any column.
    let row = outbox(&app.db)
        .await
        .into_iter()
        .find(|row| row.kind == "invite")
        .unwrap();
    assert_eq!(row.status, "sent");
    let stored = format!(
        "{:?} {:?} {:?} {:?}",
        row.subject, row.text_body, row.html_body, row.notification
    );
    assert!(!stored.contains(&mailed), "{stored}");
    assert!(
        row.text_body
            .as_deref()
            .unwrap()
            .contains("accept-invite?token=REDACTED"),
        "{stored}"
    );

    // The mailed link still works: the token lives only in the mailbox.
    let new = "invited owner password";
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "accept_invite",
            &[
                ("token", &mailed),
                ("password", new),
                ("password_confirm", new),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The one-off migration `2026-12-01-000103_redact_sent_email_tokens`
/// redacts rows sent before the worker redacted on send, with the worker's
/// own rule (`redact_link_tokens`). The template database is migrated
/// before a test can insert, so the rows are inserted afterwards and the
/// migration's statement (idempotent) is run again on them.
#[tokio::test]
async fn the_redaction_migration_redacts_tokens_of_sent_rows_only() {
    use diesel_async::SimpleAsyncConnection;
    use rsolv_platform::server::email::worker::redact_link_tokens;
    const UP: &str =
        include_str!("../../migrations/2026-12-01-000103_redact_sent_email_tokens/up.sql");
    let db = TestDb::new().await;
    let mut conn = connect(&db).await;
    let text = "Set a password: https://portal.test/accept-invite?token=abc-DEF_12%2B.~x&next=1 token= token=ghi";
    let html = r#"<a href="https://portal.test/reset-password?token=Zz09_-">reset</a>"#;
    let notification = json!({
        "kind": "invite",
        "recipient_name": "Ada token=not-a-link",
        "link": "https://portal.test/accept-invite?token=abc-DEF_12%2B.~x",
    });
    for (key, status) in [("old-sent", "sent"), ("still-queued", "queued")] {
        diesel::insert_into(email_outbox::table)
            .values((
                email_outbox::kind.eq("invite"),
                email_outbox::to_address.eq("old@example.com"),
                email_outbox::text_body.eq(text),
                email_outbox::html_body.eq(html),
                email_outbox::notification.eq(&notification),
                email_outbox::idempotency_key.eq(key),
                email_outbox::status.eq(status),
            ))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.batch_execute(UP).await.unwrap();
    let rows = outbox(&db).await;
    let sent = rows.iter().find(|r| r.status == "sent").unwrap();
    assert_eq!(
        sent.text_body.as_deref(),
        Some(redact_link_tokens(text).as_str())
    );
    assert_eq!(
        sent.html_body.as_deref(),
        Some(redact_link_tokens(html).as_str())
    );
    assert_eq!(
        sent.text_body.as_deref(),
        Some("Set a password: https://portal.test/accept-invite?token=REDACTED&next=1 token= token=REDACTED")
    );
    let stored = sent.notification.clone().unwrap();
    assert_eq!(
        stored["link"],
        "https://portal.test/accept-invite?token=REDACTED"
    );
    assert_eq!(stored["recipient_name"], "Ada token=REDACTED");
    assert!(!stored.to_string().contains("abc-DEF"), "{stored}");
    // A queued row keeps its working link.
    let queued = rows.iter().find(|r| r.status == "queued").unwrap();
    assert_eq!(queued.text_body.as_deref(), Some(text));
    assert_eq!(queued.notification.as_ref(), Some(&notification));
    // Running it again changes nothing.
    conn.batch_execute(UP).await.unwrap();
    assert_eq!(
        outbox(&db)
            .await
            .iter()
            .find(|r| r.status == "sent")
            .unwrap()
            .text_body,
        sent.text_body
    );
}
