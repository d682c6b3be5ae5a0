//! Security hardening (issue 12, scopes 1–3): links from outside are parsed
//! before they are stored and gated before they are rendered; every
//! response carries the browser security headers, with a CSP naming the
//! page's script nonce; signature headers, password hashing and the
//! account flows do bounded work for strangers.

use crate::harness::{email, TestApp, WEBHOOK_SECRET};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::schema::{fixes, login_attempts, phase_records, users};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

// --- Scope 1: links ----------------------------------------------------------

#[tokio::test]
async fn a_javascript_pr_url_records_the_fix_without_a_link_and_renders_no_href() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("xss")).await;

    // The Action API: the fix is recorded (and billed), its links absent.
    let attempt = json!({
        "github_org": "acme", "repo_name": "api", "issue_number": 17, "pr_number": 42,
        "pr_url": "javascript:fetch('/api/admin/invite_admin')",
        "issue_url": "data:text/html,<script>alert(1)</script>",
    });
    let (status, body) = app
        .post_json("/api/v1/fix-attempts", Some(&key), &attempt)
        .await;
    assert_eq!(status, 200, "{body}");
    // An over-long link is absent too, never a refusal.
    let long = json!({
        "github_org": "acme", "repo_name": "api", "pr_number": 43,
        "pr_url": format!("https://github.com/acme/api/pull/43/{}", "a".repeat(5000)),
    });
    let (status, body) = app
        .post_json("/api/v1/fix-attempts", Some(&key), &long)
        .await;
    assert_eq!(status, 200, "{body}");
    // A mitigation phase with a script link: the fix is recorded, the link
    // is absent in the fix and in the stored phase.
    let mitigation = json!({
        "phase": "mitigation", "repo": "acme/api", "commitSha": SHA, "issueNumber": 18,
        "data": {"fixed": true, "prUrl": "JavaScript:alert(document.domain)", "timestamp": "2026-11-30T12:00:00Z"},
    });
    let (status, body) = app
        .post_json("/api/v1/phases/store", Some(&key), &mitigation)
        .await;
    assert_eq!(status, 200, "{body}");

    let mut conn = app.conn().await;
    let links: Vec<(Option<String>, Option<String>)> = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .select((fixes::pr_url, fixes::issue_url))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(links, vec![(None, None); 3], "three fixes, no links");
    let data: Value = phase_records::table
        .filter(phase_records::customer_id.eq(customer_id))
        .filter(phase_records::phase.eq("mitigation"))
        .select(phase_records::data)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(data["prUrl"], Value::Null, "{data}");
    assert_eq!(data["fixed"], true);

    // A link stored before this check (written straight to the table) is
    // still never rendered: every href goes through the safe-URL gate.
    diesel::update(fixes::table.filter(fixes::customer_id.eq(customer_id)))
        .set(fixes::pr_url.eq("javascript:alert(1)"))
        .execute(&mut conn)
        .await
        .unwrap();
    let admin = app.admin_browser(&email("xss-admin")).await;
    let page = admin
        .get(app.url(&format!("/admin/customers/{customer_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("fixes-table"), "the fixes are listed");
    // The row is shown, without a link (the value may still travel in the
    // page's serialized data, JSON-escaped, never as an attribute).
    let lower = html.to_ascii_lowercase();
    assert!(
        lower.contains("javascript:"),
        "the stored value reached the page"
    );
    for (at, _) in lower.match_indices("javascript:") {
        let before = &lower[at.saturating_sub(12)..at];
        assert!(
            !before.contains("href=") && !before.contains("src="),
            "a script link rendered: …{}…",
            &html[at.saturating_sub(40)..(at + 40).min(html.len())]
        );
    }
    assert!(!lower.contains("href=\"javascript"), "no script href");
}

// --- Scope 2: headers --------------------------------------------------------

/// The value of `nonce="…"` on every `<script` tag of `html`, asserting
/// each has one.
fn script_nonces(html: &str) -> Vec<String> {
    html.match_indices("<script")
        .map(|(at, _)| {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            let start = tag
                .find("nonce=\"")
                .unwrap_or_else(|| panic!("an inline script without a nonce: {tag}"))
                + "nonce=\"".len();
            tag[start..start + tag[start..].find('"').unwrap()].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_page_and_the_api_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    let mut nonces = Vec::new();
    for path in ["/", "/login", "/dashboard", "/billing", "/no-such-page"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        let csp = headers
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .unwrap()
            .to_owned();
        for directive in [
            "default-src 'self'",
            "'wasm-unsafe-eval'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["referrer-policy"], "strict-origin-when-cross-origin",
            "{path}"
        );
        assert!(headers.contains_key("permissions-policy"), "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(!headers.contains_key("x-rsolv-csp-nonce"), "{path}");
        assert!(
            !headers.contains_key("strict-transport-security"),
            "{path}: no HSTS over http"
        );
        // Every inline script (hydration, resources) carries the nonce the
        // policy names.
        let page_nonces = script_nonces(&html);
        assert!(!page_nonces.is_empty(), "{path}: the hydration script");
        for nonce in &page_nonces {
            assert!(csp.contains(&format!("'nonce-{nonce}'")), "{path}: {csp}");
        }
        nonces.push(page_nonces[0].clone());
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 5, "a fresh nonce per response");

    // JSON answers get nosniff too.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    let api = app
        .client
        .get(app.url("/api/v1/no-such-endpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn hsts_is_sent_when_served_over_https_and_stripe_js_is_allowed() {
    let app = TestApp::spawn_with(&[
        ("PUBLIC_BASE_URL", "https://rsolv.example"),
        ("STRIPE_JS_URL", "http://127.0.0.1:8420/js.stripe.com/v3/"),
    ])
    .await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "frame-src http://127.0.0.1:8420",
        "connect-src 'self' http://127.0.0.1:8420",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(csp.contains("http://127.0.0.1:8420;"), "script-src: {csp}");
}

// --- Scope 3: bounded work ---------------------------------------------------

#[tokio::test]
async fn a_stripe_webhook_with_a_thousand_signatures_is_refused() {
    let app = TestApp::spawn_with(&[("STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET)]).await;
    let now = chrono::Utc::now().timestamp();
    let body = vec![b' '; 60 * 1024];
    let entry = format!(",v1={}", "ab".repeat(32));
    let header = format!("t={now}{}", entry.repeat(1000));
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Nine entries (under 1 KB) are refused as well; eight are parsed.
    let nine = format!("t={now}{}", entry.repeat(9));
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", nine)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(app.count("stripe_events").await, 0);
}

#[tokio::test]
async fn a_github_webhook_with_an_oversized_signature_is_refused() {
    let app = TestApp::spawn_with(&[("GITHUB_WEBHOOK_SECRET", "gh-secret")]).await;
    let body = br#"{"action":"purchased"}"#;
    let good = rsolv_platform::server::marketplace::signature::sign("gh-secret", body);
    let response = app
        .client
        .post(app.url("/webhooks/github"))
        .header("x-hub-signature-256", format!("{good}{}", "0".repeat(2000)))
        .header("x-github-delivery", "d-1")
        .header("x-github-event", "ping")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(app.count("github_deliveries").await, 0);
}

#[tokio::test]
async fn over_long_passwords_and_emails_are_refused_before_any_hashing_or_write() {
    let app = TestApp::spawn().await;
    let client = app.browser();
    let huge = "x".repeat(10 * 1024);
    let address = email("long");
    let (status, _, body) = app
        .server_fn(
            &client,
            "register",
            &[
                ("email", &address),
                ("name", "Ada"),
                ("password", &huge),
                ("password_confirm", &huge),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("at most"), "{body}");
    let long_email = format!("{}@example.com", "a".repeat(10 * 1024));
    let (status, _, body) = app
        .server_fn(
            &client,
            "register",
            &[
                ("email", &long_email),
                ("name", "Ada"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(app.count("users").await, 0);

    // Sign-in with an over-long email: the usual answer, not a failed
    // insert (and nothing recorded).
    let (status, _, body) = app
        .server_fn(
            &client,
            "login",
            &[("email", &long_email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("incorrect email or password"), "{body}");
    let (status, _, body) = app
        .server_fn(
            &client,
            "login",
            &[("email", &address), ("password", &huge)],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let attempts: i64 = login_attempts::table
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "only the well-formed email was counted");

    // A reset with an unknown link is refused (and nothing hashed or set).
    let (status, _, body) = app
        .server_fn(
            &client,
            "reset_password",
            &[
                ("token", "not-a-token"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid, already used or expired"), "{body}");
    let hashes: i64 = users::table
        .filter(users::password_hash.is_not_null())
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(hashes, 0);
}

#[tokio::test]
async fn forgot_password_beyond_the_limit_gets_429() {
    let app = TestApp::spawn().await;
    let client = app.browser();
    let address = email("forgot-limit");
    for attempt in 1..=5 {
        let (status, location, body) = app
            .server_fn(&client, "forgot_password", &[("email", &address)])
            .await;
        assert_eq!(status, 200, "attempt {attempt}: {body}");
        assert_eq!(location.as_deref(), Some("/forgot-password?sent=1"));
    }
    let (status, _, body) = app
        .server_fn(&client, "forgot_password", &[("email", &address)])
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too many attempts"), "{body}");
    // Another address from the same client is still served (per account),
    // and the same address in another case is the same account.
    let (status, _, _) = app
        .server_fn(&client, "forgot_password", &[("email", &email("other"))])
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = app
        .server_fn(
            &client,
            "forgot_password",
            &[("email", &address.to_uppercase())],
        )
        .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn register_counts_against_the_signup_limit_and_per_email() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_SIGNUPS_PER_MINUTE", "2")]).await;
    let client = app.browser();
    let register = |address: String| {
        let app = &app;
        let client = client.clone();
        async move {
            app.server_fn(
                &client,
                "register",
                &[
                    ("email", &address),
                    ("name", "Ada"),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await
        }
    };
    assert_eq!(register(email("r1")).await.0, 200);
    assert_eq!(register(email("r2")).await.0, 200);
    let (status, _, body) = register(email("r3")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(app.count("users").await, 2);
}

// --- Scope 4: one client IP; sign-in throttled per account and IP --------------

/// Registers `address` and confirms it through the mailed link.
async fn register_and_confirm(app: &TestApp, address: &str) {
    let client = app.browser();
    let (status, _, body) = app
        .server_fn(
            &client,
            "register",
            &[
                ("email", address),
                ("name", "Ada"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = app.mailed_token(address, "email_confirmation").await;
    let (status, _, body) = app
        .server_fn(
            &client,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A sign-in through our proxy, which sent `forwarded_for` as
/// `X-Forwarded-For`: status and body.
async fn sign_in_via(
    app: &TestApp,
    forwarded_for: &str,
    address: &str,
    password: &str,
) -> (u16, String) {
    let response = app
        .browser()
        .post(app.url("/api/login"))
        .header("origin", &app.base)
        .header("x-forwarded-for", forwarded_for)
        .form(&[("email", address), ("password", password)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn failures_from_one_ip_do_not_lock_the_account_for_another() {
    let app = TestApp::spawn_with(&[("TRUST_PROXY_HEADERS", "true")]).await;
    let address = email("victim");
    register_and_confirm(&app, &address).await;

    // A stranger at 203.0.113.1 fails five times, each time writing a new
    // left-hand X-Forwarded-For entry (which our proxy keeps).
    for i in 0..5 {
        let (status, body) = sign_in_via(
            &app,
            &format!("198.51.100.{i}, 203.0.113.1"),
            &address,
            "wrong password!!",
        )
        .await;
        assert_eq!(status, 422, "attempt {i}: {body}");
    }
    // The stranger is stopped, whatever they spoof, even with the password.
    let (status, body) = sign_in_via(&app, "192.0.2.200, 203.0.113.1", &address, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("reset your password"), "{body}");
    // The owner, elsewhere, signs in.
    let (status, body) = sign_in_via(&app, "203.0.113.2", &address, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let ips: Vec<Option<String>> = login_attempts::table
        .select(login_attempts::ip)
        .distinct()
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(ips, vec![Some("203.0.113.1".to_owned())]);
}

#[tokio::test]
async fn the_softer_account_limit_pauses_sign_in_and_a_reset_ends_the_pause() {
    use rsolv_platform::server::auth::throttle::{
        MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ACCOUNT_AND_IP,
    };
    let app = TestApp::spawn_with(&[("TRUST_PROXY_HEADERS", "true")]).await;
    let address = email("distributed");
    register_and_confirm(&app, &address).await;
    let per_ip = MAX_FAILURES_PER_ACCOUNT_AND_IP;
    let ips = MAX_FAILURES_PER_ACCOUNT / per_ip;
    // A distributed guess: each address stays within its own limit, and
    // the owner can still sign in until the total reaches the account's.
    for ip in 0..ips {
        let from = format!("203.0.113.{}", 10 + ip);
        for _ in 0..per_ip {
            let (status, body) = sign_in_via(&app, &from, &address, "wrong password!!").await;
            assert_eq!(status, 422, "{from}: {body}");
        }
        if ip + 1 < ips {
            let (status, body) = sign_in_via(&app, "192.0.2.1", &address, PASSWORD).await;
            assert_eq!(status, 200, "after {} failures: {body}", (ip + 1) * per_ip);
        }
    }
    // Now the account is paused for everyone, with the way out named.
    let (status, body) = sign_in_via(&app, "192.0.2.1", &address, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("paused") && body.contains("reset your password"),
        "{body}"
    );
    // Other accounts are not affected.
    let other = email("bystander");
    register_and_confirm(&app, &other).await;
    let (status, body) = sign_in_via(&app, "192.0.2.1", &other, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    // The owner resets the password by the mailed link: signed in at once.
    let client = app.browser();
    let (status, _, body) = app
        .server_fn(&client, "forgot_password", &[("email", &address)])
        .await;
    assert_eq!(status, 200, "{body}");
    let token = app.mailed_token(&address, "password_reset").await;
    let new = "a fresh passphrase 12";
    let (status, _, body) = app
        .server_fn(
            &client,
            "reset_password",
            &[
                ("token", &token),
                ("password", new),
                ("password_confirm", new),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sign_in_via(&app, "192.0.2.1", &address, new).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sign_in_failures_in_one_ipv6_64_count_together() {
    use rsolv_platform::server::auth::throttle::MAX_FAILURES_PER_ACCOUNT_AND_IP;
    let app = TestApp::spawn_with(&[("TRUST_PROXY_HEADERS", "true")]).await;
    let address = email("six");
    register_and_confirm(&app, &address).await;
    for i in 0..MAX_FAILURES_PER_ACCOUNT_AND_IP {
        let from = format!("2001:db8:5:6::{:x}", i + 1);
        let (status, body) = sign_in_via(&app, &from, &address, "wrong password!!").await;
        assert_eq!(status, 422, "{from}: {body}");
    }
    let (status, body) = sign_in_via(&app, "2001:db8:5:6:ffff::1", &address, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    let (status, body) = sign_in_via(&app, "2001:db8:5:7::1", &address, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
}

// --- Scope 7: secrets at rest; a new password ends what the old one gave -------

/// The kinds of the outbox rows to `to`, oldest first.
async fn outbox_kinds(app: &TestApp, to: &str) -> Vec<String> {
    use rsolv_platform::server::db::schema::email_outbox;
    email_outbox::table
        .filter(email_outbox::to_address.eq(to))
        .order(email_outbox::id.asc())
        .select(email_outbox::kind)
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

/// The rendering of the newest `password_changed` notice to `to`.
async fn password_changed_notice(app: &TestApp, to: &str) -> String {
    use rsolv_platform::server::db::schema::email_outbox;
    let notification: Option<Value> = email_outbox::table
        .filter(email_outbox::to_address.eq(to))
        .filter(email_outbox::kind.eq("password_changed"))
        .order(email_outbox::id.desc())
        .select(email_outbox::notification)
        .first(&mut app.conn().await)
        .await
        .expect("a password_changed notice");
    crate::harness::rendered(notification).text_body
}

/// Signs in with `client` through the login server function.
async fn sign_in(app: &TestApp, client: &reqwest::Client, address: &str, password: &str) {
    let (status, _, body) = app
        .server_fn(
            client,
            "login",
            &[("email", address), ("password", password)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn signed_in_as(app: &TestApp, client: &reqwest::Client) -> Option<String> {
    let (status, _, body) = app.server_fn(client, "current_user", &[]).await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    value["email"].as_str().map(str::to_owned)
}

async fn reset_with(app: &TestApp, token: &str, password: &str) -> (u16, String) {
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "reset_password",
            &[
                ("token", token),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn a_password_change_ends_other_sessions_and_reset_links_and_sends_a_notice() {
    let app = TestApp::spawn().await;
    let address = email("changer");
    register_and_confirm(&app, &address).await;
    let (laptop, phone) = (app.browser(), app.browser());
    sign_in(&app, &laptop, &address, PASSWORD).await;
    sign_in(&app, &phone, &address, PASSWORD).await;
    // A reset link is outstanding (asked for earlier, maybe by someone else).
    app.server_fn(&app.browser(), "forgot_password", &[("email", &address)])
        .await;
    let outstanding = app.mailed_token(&address, "password_reset").await;

    let new = "changed passphrase 99";
    let (status, _, body) = app
        .server_fn(
            &laptop,
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signed_in_as(&app, &laptop).await, Some(address.clone()));
    assert_eq!(signed_in_as(&app, &phone).await, None);
    // The outstanding link no longer resets anything.
    let (status, body) = reset_with(&app, &outstanding, "attacker passphrase 1").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid, already used or expired"), "{body}");
    sign_in(&app, &app.browser(), &address, new).await;
    // And the owner is told, with the way back.
    assert_eq!(
        outbox_kinds(&app, &address)
            .await
            .last()
            .map(String::as_str),
        Some("password_changed")
    );
    let notice = password_changed_notice(&app, &address).await;
    assert!(notice.contains("was just changed"), "{notice}");
    assert!(notice.contains("/forgot-password"), "{notice}");
    assert!(!notice.contains("token="), "{notice}");
}

#[tokio::test]
async fn a_password_reset_voids_the_other_reset_links_and_sends_a_notice() {
    let app = TestApp::spawn().await;
    let address = email("resetter");
    register_and_confirm(&app, &address).await;
    let signed_in = app.browser();
    sign_in(&app, &signed_in, &address, PASSWORD).await;
    let ask = || async {
        app.server_fn(&app.browser(), "forgot_password", &[("email", &address)])
            .await;
        app.mailed_token(&address, "password_reset").await
    };
    let first = ask().await;
    let second = ask().await;
    assert_ne!(first, second);

    let new = "reset passphrase 2027";
    let (status, body) = reset_with(&app, &second, new).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signed_in_as(&app, &signed_in).await, None);
    // The older link died with the reset.
    let (status, body) = reset_with(&app, &first, "attacker passphrase 2").await;
    assert_eq!(status, 422, "{body}");
    sign_in(&app, &app.browser(), &address, new).await;
    let kinds = outbox_kinds(&app, &address).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "password_changed").count(),
        1,
        "{kinds:?}"
    );
    assert!(password_changed_notice(&app, &address)
        .await
        .contains("reset your password"));
}
