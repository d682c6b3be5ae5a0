//! Accounts and browser sessions: registration, confirmation, sign-in and
//! its throttling, sessions (cycling, sign-out, everywhere), password change
//! and reset, invites, and the CSRF check. Server functions are driven over
//! HTTP as a browser's `fetch` would (form bodies, same-origin `Origin`).

use crate::harness::{email, TestApp};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::schema::{login_attempts, sessions, user_tokens, users};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
const BAD_CREDENTIALS: &str = r#"{"kind":"validation","message":"incorrect email or password"}"#;

/// Registers `address` and confirms it through the mailed link.
async fn register_and_confirm(app: &TestApp, address: &str) {
    let client = app.browser();
    let (status, location, body) = app
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
    assert_eq!(location.as_deref(), Some("/register?sent=1"));
    let token = app.mailed_token(address, "email_confirmation").await;
    let (status, location, body) = app
        .server_fn(
            &client,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/login?notice=confirmed"));
}

/// Signs in on `client`; returns the session cookie's value.
async fn log_in(app: &TestApp, client: &reqwest::Client, address: &str, password: &str) -> String {
    let response = client
        .post(app.url("/api/login"))
        .header("origin", &app.base)
        .form(&[("email", address), ("password", password)])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("rsolv_session="));
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.expect("login sets the session cookie");
    let value = cookie["rsolv_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(!value.is_empty());
    value
}

async fn login_attempt(
    app: &TestApp,
    client: &reqwest::Client,
    address: &str,
    password: &str,
) -> (u16, String) {
    let (status, _, body) = app
        .server_fn(
            client,
            "login",
            &[("email", address), ("password", password)],
        )
        .await;
    (status, body)
}

/// `current_user` as seen by `client`: the email, or `None`.
async fn current_email(app: &TestApp, client: &reqwest::Client) -> Option<String> {
    let (status, _, body) = app.server_fn(client, "current_user", &[]).await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    value["email"].as_str().map(str::to_owned)
}

/// `current_user` for a request carrying exactly this session cookie.
async fn current_email_with_cookie(app: &TestApp, cookie: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .post(app.url("/api/current_user"))
        .header("origin", &app.base)
        .header("cookie", format!("rsolv_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let value: Value = response.json().await.unwrap();
    value["email"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn register_confirm_login_and_current_user() {
    let app = TestApp::spawn().await;
    let address = email("reg");
    let client = app.browser();
    assert_eq!(current_email(&app, &client).await, None);

    let (status, _, body) = app
        .server_fn(
            &client,
            "register",
            &[
                ("email", address.as_str()),
                ("name", "Ada"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Not confirmed yet: the right password is still refused.
    let (status, body) = login_attempt(&app, &client, &address, PASSWORD).await;
    assert_eq!(status, 422);
    assert!(body.contains("confirm your email"), "{body}");

    let token = app.mailed_token(&address, "email_confirmation").await;
    let (status, _, body) = app
        .server_fn(
            &client,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Single use.
    let (status, _, body) = app
        .server_fn(
            &client,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let response = client
        .post(app.url("/api/login"))
        .header("origin", &app.base)
        .form(&[
            ("email", address.to_uppercase().as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["location"], "/dashboard");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("rsolv_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http base URL: {cookie}");
    assert_eq!(current_email(&app, &client).await, Some(address.clone()));

    // The stored session id is a hash, never the cookie's value.
    let value = cookie["rsolv_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = app.conn().await;
    let ids: Vec<String> = sessions::table
        .select(sessions::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], value);
    assert_eq!(ids[0].len(), 64);

    // The same email in any case gets the answer a new one gets (and the
    // owner an "account exists" email; tests/it/claim.rs): nothing new.
    let customers = app.count("customers").await;
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "register",
            &[
                ("email", address.to_uppercase().as_str()),
                ("name", "Ada"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/register?sent=1"));
    assert_eq!(app.count("customers").await, customers);
}

#[tokio::test]
async fn registration_rejects_bad_input_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let client = app.browser();
    for (fields, message) in [
        (
            ("not-an-email", "Ada", PASSWORD, PASSWORD),
            "email is not a valid address",
        ),
        (
            ("a@example.com", "", PASSWORD, PASSWORD),
            "name is required",
        ),
        (
            ("a@example.com", "Ada", "short", "short"),
            "at least 12 characters",
        ),
        (
            ("a@example.com", "Ada", PASSWORD, "something else!"),
            "do not match",
        ),
    ] {
        let (status, _, body) = app
            .server_fn(
                &client,
                "register",
                &[
                    ("email", fields.0),
                    ("name", fields.1),
                    ("password", fields.2),
                    ("password_confirm", fields.3),
                ],
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains(message), "{body}");
    }
    // A missing field is a 4xx too.
    let (status, _, _) = app
        .server_fn(&client, "register", &[("email", "a@example.com")])
        .await;
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("email_outbox").await, 0);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let address = email("same");
    register_and_confirm(&app, &address).await;
    let client = app.browser();
    let (status_wrong, body_wrong) =
        login_attempt(&app, &client, &address, "wrong password!!").await;
    let (status_unknown, body_unknown) =
        login_attempt(&app, &client, &email("nobody"), "wrong password!!").await;
    assert_eq!((status_wrong, status_unknown), (422, 422));
    assert_eq!(body_wrong, BAD_CREDENTIALS);
    assert_eq!(body_unknown, BAD_CREDENTIALS);
    assert_eq!(current_email(&app, &client).await, None);
}

#[tokio::test]
async fn sign_in_is_throttled_per_account() {
    let app = TestApp::spawn().await;
    let address = email("throttle");
    let other = email("other");
    register_and_confirm(&app, &address).await;
    register_and_confirm(&app, &other).await;
    let client = app.browser();
    for _ in 0..5 {
        let (status, body) = login_attempt(&app, &client, &address, "wrong password!!").await;
        assert_eq!((status, body.as_str()), (422, BAD_CREDENTIALS));
    }
    // Now even the right password is refused, with when to retry.
    let (status, body) = login_attempt(&app, &client, &address, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("rate_limited") && body.contains("try again in 15 minutes"),
        "{body}"
    );
    // The same for the email in another case.
    let (status, _) = login_attempt(&app, &client, &address.to_uppercase(), PASSWORD).await;
    assert_eq!(status, 429);
    // Other accounts are not affected.
    log_in(&app, &client, &other, PASSWORD).await;
    // Once the failures are older than the window, sign-in works again.
    let mut conn = app.conn().await;
    diesel::update(login_attempts::table)
        .set(login_attempts::at.eq(chrono::Utc::now() - chrono::Duration::minutes(16)))
        .execute(&mut conn)
        .await
        .unwrap();
    log_in(&app, &app.browser(), &address, PASSWORD).await;
}

#[tokio::test]
async fn sign_in_is_throttled_per_ip() {
    let app = TestApp::spawn_with_connect_info().await;
    let address = email("ip");
    register_and_confirm(&app, &address).await;
    let client = app.browser();
    // 20 failures spread over 5 accounts (4 each, under the per-account limit).
    let victims: Vec<String> = (0..5).map(|i| email(&format!("ip{i}"))).collect();
    for i in 0..20 {
        let (status, body) =
            login_attempt(&app, &client, &victims[i % 5], "wrong password!!").await;
        assert_eq!(
            (status, body.as_str()),
            (422, BAD_CREDENTIALS),
            "attempt {i}"
        );
    }
    let mut conn = app.conn().await;
    let ips: Vec<Option<String>> = login_attempts::table
        .select(login_attempts::ip)
        .distinct()
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ips, vec![Some("127.0.0.1".to_owned())]);
    let (status, body) = login_attempt(&app, &client, &address, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn the_session_id_changes_at_sign_in() {
    let app = TestApp::spawn().await;
    let address = email("cycle");
    register_and_confirm(&app, &address).await;
    let client = app.browser();
    let first = log_in(&app, &client, &address, PASSWORD).await;
    let second = log_in(&app, &client, &address, PASSWORD).await;
    assert_ne!(first, second);
    // The old id is dead server-side; the new one works.
    assert_eq!(current_email_with_cookie(&app, &first).await, None);
    assert_eq!(
        current_email_with_cookie(&app, &second).await,
        Some(address)
    );
    assert_eq!(app.count("sessions").await, 1);
}

#[tokio::test]
async fn logout_invalidates_the_session_server_side() {
    let app = TestApp::spawn().await;
    let address = email("logout");
    register_and_confirm(&app, &address).await;
    let client = app.browser();
    let cookie = log_in(&app, &client, &address, PASSWORD).await;
    let (status, location, body) = app.server_fn(&client, "logout", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/login?notice=signed_out"));
    assert_eq!(current_email(&app, &client).await, None);
    // Replaying the old cookie does not bring the session back.
    assert_eq!(current_email_with_cookie(&app, &cookie).await, None);
    assert_eq!(app.count("sessions").await, 0);
    // Signed-out callers of account functions get 401.
    let (status, _, _) = app.server_fn(&client, "logout_all", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = app
        .server_fn(
            &client,
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "another long password"),
                ("new_password_confirm", "another long password"),
            ],
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn log_out_of_all_devices_kills_every_session() {
    let app = TestApp::spawn().await;
    let address = email("all");
    let bystander = email("bystander");
    register_and_confirm(&app, &address).await;
    register_and_confirm(&app, &bystander).await;
    let (laptop, phone, other) = (app.browser(), app.browser(), app.browser());
    log_in(&app, &laptop, &address, PASSWORD).await;
    log_in(&app, &phone, &address, PASSWORD).await;
    log_in(&app, &other, &bystander, PASSWORD).await;
    let (status, location, body) = app.server_fn(&laptop, "logout_all", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        location.as_deref(),
        Some("/login?notice=signed_out_everywhere")
    );
    assert_eq!(current_email(&app, &laptop).await, None);
    assert_eq!(current_email(&app, &phone).await, None);
    assert_eq!(current_email(&app, &other).await, Some(bystander));
}

#[tokio::test]
async fn change_password_signs_out_the_other_sessions() {
    let app = TestApp::spawn().await;
    let address = email("change");
    register_and_confirm(&app, &address).await;
    let (laptop, phone) = (app.browser(), app.browser());
    log_in(&app, &laptop, &address, PASSWORD).await;
    log_in(&app, &phone, &address, PASSWORD).await;
    let new = "a brand new passphrase";
    let (status, _, body) = app
        .server_fn(
            &laptop,
            "change_password",
            &[
                ("current_password", "not the password"),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(body.contains("current password is incorrect"), "{body}");
    assert_eq!(current_email(&app, &phone).await, Some(address.clone()));

    let (status, location, body) = app
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
    assert_eq!(
        location.as_deref(),
        Some("/account?notice=password_changed")
    );
    assert_eq!(current_email(&app, &laptop).await, Some(address.clone()));
    assert_eq!(current_email(&app, &phone).await, None);
    let (status, body) = login_attempt(&app, &app.browser(), &address, PASSWORD).await;
    assert_eq!((status, body.as_str()), (422, BAD_CREDENTIALS));
    log_in(&app, &app.browser(), &address, new).await;
}

#[tokio::test]
async fn password_reset_is_single_use_and_expires() {
    let app = TestApp::spawn().await;
    let address = email("reset");
    register_and_confirm(&app, &address).await;
    let client = app.browser();
    let signed_in = app.browser();
    log_in(&app, &signed_in, &address, PASSWORD).await;

    // Unknown and known emails get the same answer; only the known one gets mail.
    let before = app.count("email_outbox").await;
    let unknown = app
        .server_fn(&client, "forgot_password", &[("email", &email("nobody"))])
        .await;
    assert_eq!(app.count("email_outbox").await, before);
    let known = app
        .server_fn(&client, "forgot_password", &[("email", &address)])
        .await;
    assert_eq!(unknown, known);
    assert_eq!(known.0, 200);
    assert_eq!(known.1.as_deref(), Some("/forgot-password?sent=1"));
    assert_eq!(app.count("email_outbox").await, before + 1);

    let token = app.mailed_token(&address, "password_reset").await;
    let new = "reset passphrase 2026";
    let fields = [
        ("token", token.as_str()),
        ("password", new),
        ("password_confirm", new),
    ];
    let (status, location, body) = app.server_fn(&client, "reset_password", &fields).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/login?notice=password_reset"));
    // Every session of the user was signed out.
    assert_eq!(current_email(&app, &signed_in).await, None);
    // Single use.
    let (status, _, body) = app.server_fn(&client, "reset_password", &fields).await;
    assert_eq!(status, 422);
    assert!(body.contains("invalid, already used or expired"), "{body}");
    log_in(&app, &app.browser(), &address, new).await;

    // A second link, expired: refused, and the password stays.
    app.server_fn(&client, "forgot_password", &[("email", &address)])
        .await;
    let token = app.mailed_token(&address, "password_reset").await;
    let mut conn = app.conn().await;
    diesel::update(user_tokens::table.filter(user_tokens::purpose.eq("password_reset")))
        .set(user_tokens::expires_at.eq(chrono::Utc::now() - chrono::Duration::seconds(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    let other = "yet another passphrase";
    let (status, _, _) = app
        .server_fn(
            &client,
            "reset_password",
            &[
                ("token", token.as_str()),
                ("password", other),
                ("password_confirm", other),
            ],
        )
        .await;
    assert_eq!(status, 422);
    log_in(&app, &app.browser(), &address, new).await;
}

#[tokio::test]
async fn reset_tokens_last_one_hour() {
    let app = TestApp::spawn().await;
    let address = email("hour");
    register_and_confirm(&app, &address).await;
    app.server_fn(&app.browser(), "forgot_password", &[("email", &address)])
        .await;
    let mut conn = app.conn().await;
    let (created, expires): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        user_tokens::table
            .filter(user_tokens::purpose.eq("password_reset"))
            .select((user_tokens::created_at, user_tokens::expires_at))
            .first(&mut conn)
            .await
            .unwrap();
    let minutes = (expires - created).num_minutes();
    assert!((59..=60).contains(&minutes), "{minutes}");
}

#[tokio::test]
async fn customers_provisioned_by_the_api_get_an_invite() {
    let app = TestApp::spawn().await;
    let address = email("invite");
    let (customer_id, _key) = app.onboard(&address).await;
    let mut conn = app.conn().await;
    let (user_customer, hash, role): (i64, Option<String>, String) = users::table
        .filter(users::email.eq(&address))
        .select((
            users::customer_id.assume_not_null(),
            users::password_hash,
            users::role,
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (user_customer, hash, role.as_str()),
        (customer_id, None, "owner")
    );
    // No password yet: sign-in fails like any wrong password.
    let client = app.browser();
    let (status, body) = login_attempt(&app, &client, &address, PASSWORD).await;
    assert_eq!((status, body.as_str()), (422, BAD_CREDENTIALS));

    let token = app.mailed_token(&address, "invite").await;
    let fields = [
        ("token", token.as_str()),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
    ];
    // A confirmation token is not an invite token.
    let (status, _, _) = app
        .server_fn(
            &client,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 422);
    let (status, location, body) = app.server_fn(&client, "accept_invite", &fields).await;
    assert_eq!(status, 200, "{body}");
    // The answer is the owner's first key, shown once, instead of a
    // redirect (tests/it/claim.rs).
    assert_eq!(location, None);
    assert!(body.contains("\"api_key\":\"rsolv_"), "{body}");
    log_in(&app, &client, &address, PASSWORD).await;
    assert_eq!(current_email(&app, &client).await, Some(address.clone()));
    let (status, _, _) = app
        .server_fn(&app.browser(), "accept_invite", &fields)
        .await;
    assert_eq!(status, 422, "single use");

    // The home page's signup form provisions an invited owner too.
    let other = email("home-signup");
    let response = app
        .client
        .post(app.url("/signup"))
        .form(&[("email", other.as_str()), ("name", "Home")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!app.mailed_token(&other, "invite").await.is_empty());
}

#[tokio::test]
async fn cross_origin_posts_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let address = email("csrf");
    let fields = [
        ("email", address.as_str()),
        ("name", "Mallory"),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
    ];
    let evil = [
        vec![("origin", "http://evil.example")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ],
        vec![("referer", "http://evil.example/page")],
    ];
    for headers in &evil {
        let mut request = app.client.post(app.url("/api/register")).form(&fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
    }
    let response = app
        .client
        .post(app.url("/signup"))
        .header("origin", "http://evil.example")
        .form(&[("email", address.as_str()), ("name", "Mallory")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("users").await, 0);

    // Same origin (as a browser sends it) works.
    let response = app
        .client
        .post(app.url("/api/register"))
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.count("users").await, 1);

    // The API-key JSON API is not subject to the check.
    let response = app
        .client
        .post(app.url("/api/v1/customers/onboard"))
        .header("origin", "http://evil.example")
        .json(&serde_json::json!({"email": email("api"), "name": "Api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_plain_form_post_is_redirected_to_a_page_with_the_outcome() {
    let app = TestApp::spawn().await;
    let client = app.browser();
    let address = email("nojs");
    register_and_confirm(&app, &address).await;
    // As a browser without JavaScript posts the login form.
    let response = client
        .post(app.url("/api/login"))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .header("referer", app.url("/login"))
        .form(&[
            ("email", address.as_str()),
            ("password", "wrong password!!"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/login?error=incorrect%20email%20or%20password");
    let page = app.html(&client, &location).await;
    assert!(
        page.contains(r#"role="alert""#) && page.contains("incorrect email or password"),
        "{page}"
    );

    let response = client
        .post(app.url("/api/login"))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .form(&[("email", address.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/dashboard");
    // The pages render for the signed-in user.
    let response = client.get(app.url("/account")).send().await.unwrap();
    let (status, location) = (
        response.status(),
        response.headers().get("location").cloned(),
    );
    let page = response.text().await.unwrap();
    assert!(
        page.contains(&address),
        "GET /account: {status}, location {location:?}: {page}"
    );
    // Rendered in place, not in an out-of-order chunk that needs a script.
    let nav = page
        .find("data-testid=\"nav-signed-in\"")
        .expect("signed-in nav");
    assert!(!page[..nav].contains("<template"), "{page}");
    // Each form posts somewhere that answers a browser without JavaScript:
    // a server function (which redirects) or the page's own form handler
    // (which renders the page around the outcome).
    for (path, action) in [
        ("/login", "/api/"),
        ("/register", "/register"),
        ("/forgot-password", "/api/"),
        ("/reset-password?token=x", "/api/"),
        ("/accept-invite?token=x", "/accept-invite"),
        ("/confirm-email?token=x", "/api/"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("<form") && html.contains(&format!("action=\"{action}")),
            "{path}: {html}"
        );
    }
}

#[tokio::test]
async fn expired_sessions_and_old_attempts_are_cleaned_up() {
    use rsolv_platform::server::auth::store::{delete_expired_rows, session_key};
    use rsolv_platform::server::cli::platform_state;
    let app = TestApp::spawn().await;
    let address = email("cleanup");
    register_and_confirm(&app, &address).await;
    let (stale, live) = (app.browser(), app.browser());
    let stale_cookie = log_in(&app, &stale, &address, PASSWORD).await;
    log_in(&app, &live, &address, PASSWORD).await;
    login_attempt(&app, &app.browser(), &address, "wrong password!!").await;
    login_attempt(&app, &app.browser(), &address, "wrong password!!").await;
    let mut conn = app.conn().await;
    // Age one session past its expiry and one attempt past a day. Rows are
    // keyed by the SHA-256 of the cookie's session id.
    let id: tower_sessions::session::Id = stale_cookie.parse().unwrap();
    let stale_key = session_key(&id);
    assert_eq!(app.count("sessions").await, 2);
    let updated = diesel::update(sessions::table.find(&stale_key))
        .set(sessions::expiry_date.eq(chrono::Utc::now() - chrono::Duration::minutes(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(updated, 1);
    // An expired session no longer signs anyone in, even before cleanup.
    assert_eq!(current_email_with_cookie(&app, &stale_cookie).await, None);
    let oldest: i64 = login_attempts::table
        .select(diesel::dsl::min(login_attempts::id))
        .first::<Option<i64>>(&mut conn)
        .await
        .unwrap()
        .unwrap();
    diesel::update(login_attempts::table.find(oldest))
        .set(login_attempts::at.eq(chrono::Utc::now() - chrono::Duration::days(2)))
        .execute(&mut conn)
        .await
        .unwrap();

    let state = platform_state(
        crate::harness::test_config_with(&app.db.url, &[]),
        crate::harness::leptos_options(),
    )
    .unwrap();
    delete_expired_rows(&state.pool).await.unwrap();
    let ids: Vec<String> = sessions::table
        .select(sessions::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], stale_key);
    assert_eq!(app.count("login_attempts").await, 1);
    assert_eq!(current_email(&app, &live).await, Some(address));
}
