//! Claiming an account (security issue, item 5): API keys issued before the
//! owner proved the email stop working at the first proof (invite
//! accepted, email confirmed, password reset by a mailed link); the owner
//! gets a fresh key, shown once in the answer to the proof, and an email
//! saying why (without the key). Sign-ups issue no key at all: the first
//! one is shown at that proof. Cards need a verified owner. A taken email
//! gets the same answer from every sign-up path as a new one, and an
//! "account exists" email through the SMTP sink.

use crate::email::{wait_for_messages, worker_state};
use crate::harness::{email, localstripe_base, rendered, TestApp};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::billing::api_keys::create_api_key;
use rsolv_platform::server::billing::payment_methods::{
    add_card, begin_card_setup, Consent, UNVERIFIED_OWNER_MESSAGE,
};
use rsolv_platform::server::billing::BillingError;
use rsolv_platform::server::db::schema::{api_keys, email_outbox, users};
use rsolv_platform::server::email::worker::run_once;
use rsolv_platform::types::portal::ApiKeyName;
use serde_json::{json, Value};

const PASSWORD: &str = "victim's own password";

/// The Action's start-up call with `key`: its status.
async fn exchange(app: &TestApp, key: &str) -> u16 {
    app.post_json(
        "/api/v1/credentials/exchange",
        Some(key),
        &json!({"providers": ["anthropic"]}),
    )
    .await
    .0
}

/// The owner's key in a first proof's answer (`{"api_key", "revoked_keys"}`),
/// after checking that the answer is a 200 without a redirect; with how
/// many earlier keys the proof revoked.
fn issued_key(status: u16, location: Option<String>, body: &str) -> (String, u64) {
    assert_eq!((status, location), (200, None), "{body}");
    let answer: Value = serde_json::from_str(body).unwrap();
    let key = answer["api_key"].as_str().expect("the key").to_owned();
    assert!(key.starts_with("rsolv_") && key.len() == 49, "{key}");
    (key, answer["revoked_keys"].as_u64().expect("revoked_keys"))
}

/// The key in a first proof's answer that revoked one earlier key.
fn fresh_key(status: u16, location: Option<String>, body: &str) -> String {
    let (key, revoked) = issued_key(status, location, body);
    assert_eq!(revoked, 1, "{body}");
    key
}

/// The victim's mailbox after the claim: one `api_key_reissued` email that
/// names neither the stranger's nor the fresh key.
async fn assert_reissue_mailed(app: &TestApp, victim: &str, keys: &[&str]) {
    let notifications: Vec<Option<Value>> = email_outbox::table
        .filter(email_outbox::to_address.eq(victim))
        .filter(email_outbox::kind.eq("api_key_reissued"))
        .select(email_outbox::notification)
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(notifications.len(), 1);
    let stored = notifications[0].clone().unwrap().to_string();
    let mail = rendered(notifications[0].clone());
    assert_eq!(mail.subject, "Your RSOLV API key was replaced");
    assert!(
        mail.text_body.contains("stopped working"),
        "{}",
        mail.text_body
    );
    for key in keys {
        for text in [&stored, &mail.text_body, &mail.html_body] {
            assert!(!text.contains(key), "no key in the email: {text}");
        }
    }
}

#[tokio::test]
async fn a_strangers_key_stops_when_the_victim_accepts_the_invite() {
    let app = TestApp::spawn().await;
    let victim = email("victim-invite");
    // A stranger onboards the victim's address and keeps the key.
    let (customer_id, stranger_key) = app.onboard(&victim).await;
    assert_eq!(exchange(&app, &stranger_key).await, 200);

    // The victim follows the invite: the answer is their fresh key.
    let token = app.mailed_token(&victim, "invite").await;
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "accept_invite",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    let fresh = fresh_key(status, location, &body);

    assert_eq!(exchange(&app, &stranger_key).await, 401);
    assert_eq!(exchange(&app, &fresh).await, 200);
    assert_reissue_mailed(&app, &victim, &[&stranger_key, &fresh]).await;
    let live: i64 = api_keys::table
        .filter(api_keys::customer_id.eq(customer_id))
        .filter(api_keys::revoked_at.is_null())
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(live, 1, "only the fresh key lives");

    // A later proof (a password reset) is not a first one: the fresh key
    // stays and the reset redirects as usual.
    let (status, _, _) = app
        .server_fn(&app.browser(), "forgot_password", &[("email", &victim)])
        .await;
    assert_eq!(status, 200);
    let token = app.mailed_token(&victim, "password_reset").await;
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "reset_password",
            &[
                ("token", &token),
                ("password", "another long password"),
                ("password_confirm", "another long password"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/login?notice=password_reset"));
    assert_eq!(exchange(&app, &fresh).await, 200);
}

#[tokio::test]
async fn a_strangers_key_stops_when_the_victim_resets_the_password() {
    let app = TestApp::spawn().await;
    let victim = email("victim-reset");
    let (_, stranger_key) = app.onboard(&victim).await;
    // The victim ignores the invite and asks for a reset instead.
    let (status, _, _) = app
        .server_fn(&app.browser(), "forgot_password", &[("email", &victim)])
        .await;
    assert_eq!(status, 200);
    let token = app.mailed_token(&victim, "password_reset").await;
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "reset_password",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    let fresh = fresh_key(status, location, &body);
    assert_eq!(exchange(&app, &stranger_key).await, 401);
    assert_eq!(exchange(&app, &fresh).await, 200);
    assert_reissue_mailed(&app, &victim, &[&stranger_key, &fresh]).await;
}

#[tokio::test]
async fn a_key_issued_before_the_email_is_confirmed_stops_at_confirmation() {
    let app = TestApp::spawn().await;
    let victim = email("victim-confirm");
    let browser = app.browser();
    let (status, _, body) = app
        .server_fn(
            &browser,
            "register",
            &[
                ("email", &victim),
                ("name", "Victim"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut conn = app.conn().await;
    let customer_id: i64 = users::table
        .filter(users::email.eq(&victim))
        .select(users::customer_id.assume_not_null())
        .first(&mut conn)
        .await
        .unwrap();
    // `/register` shows no key and keeps none.
    let keys: i64 = api_keys::table
        .filter(api_keys::customer_id.eq(customer_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 0);
    // A key issued before the proof (as any provisioning path may).
    let (_, early) = create_api_key(&mut conn, customer_id, &ApiKeyName::parse("early").unwrap())
        .await
        .unwrap();
    let early = early.expose().to_owned();
    assert_eq!(exchange(&app, &early).await, 200);

    let token = app.mailed_token(&victim, "email_confirmation").await;
    let (status, location, body) = app
        .server_fn(
            &browser,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    let fresh = fresh_key(status, location, &body);
    assert_eq!(exchange(&app, &early).await, 401);
    assert_eq!(exchange(&app, &fresh).await, 200);
    assert_reissue_mailed(&app, &victim, &[&early, &fresh]).await;
}

#[tokio::test]
async fn a_card_is_refused_before_the_owner_proves_the_email() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let state = app.state_with(&base, &[]);
    let (customer_id, _) = app.onboard(&email("unverified-card")).await;
    let mut conn = app.conn().await;
    let refused = |result: Result<(), BillingError>| match result {
        Err(BillingError::Invalid(e)) => assert_eq!(e.0, UNVERIFIED_OWNER_MESSAGE),
        other => panic!("expected the unverified-owner refusal, got {other:?}"),
    };
    refused(
        begin_card_setup(state.processor.as_ref(), &mut conn, customer_id)
            .await
            .map(|_| ()),
    );
    refused(
        add_card(
            state.processor.as_ref(),
            &mut conn,
            &state.config.pricing,
            customer_id,
            "seti_anything",
            &Consent {
                given: true,
                user_id: None,
                ip: None,
                user_agent: None,
            },
        )
        .await
        .map(|_| ()),
    );
    assert!(
        UNVERIFIED_OWNER_MESSAGE.contains("/forgot-password"),
        "the next step"
    );
    assert_eq!(app.count("stripe_payment_methods").await, 0);
}

/// `/register` with these fields: status, `Location` and body.
async fn register(app: &TestApp, address: &str) -> (u16, Option<String>, String) {
    app.server_fn(
        &app.browser(),
        "register",
        &[
            ("email", address),
            ("name", "Someone"),
            ("password", "a long enough password"),
            ("password_confirm", "a long enough password"),
        ],
    )
    .await
}

#[tokio::test]
async fn register_answers_a_taken_email_like_a_new_one_and_mails_the_owner() {
    let app = TestApp::spawn().await;
    let state = worker_state(&app.db, &[]);
    let owner = email("taken-owner");
    app.onboard(&owner).await;
    let customers = app.count("customers").await;

    let new = register(&app, &email("brand-new")).await;
    let customers_after_new = app.count("customers").await;
    assert_eq!(customers_after_new, customers + 1);
    let taken = register(&app, &owner.to_uppercase()).await;
    assert_eq!(new, taken, "same status, redirect and body");
    assert_eq!(new.1.as_deref(), Some("/register?sent=1"));
    assert_eq!(app.count("customers").await, customers_after_new);

    // The owner is told, through the SMTP sink: sign in or reset; no token.
    // (Queued for them: welcome, invite, account exists.)
    assert!(run_once(&state).await.unwrap() >= 3);
    let messages = wait_for_messages(&owner, 3).await;
    let exists = messages
        .iter()
        .find(|m| m["subject"] == "You already have an RSOLV account")
        .unwrap_or_else(|| panic!("the account-exists email: {messages:#?}"));
    let text = exists["text"].as_str().unwrap();
    assert!(text.contains("https://portal.test/login"), "{text}");
    assert!(
        text.contains("https://portal.test/forgot-password"),
        "{text}"
    );
    assert!(!text.contains("token="), "{text}");
}

#[tokio::test]
async fn a_signup_issues_no_key_until_the_owner_follows_the_invite_which_shows_the_first_one() {
    let app = TestApp::spawn().await;
    let owner = email("first-key");
    let (status, body) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": owner, "name": "Owner"}),
        )
        .await;
    assert_eq!((status, &body["status"]), (202, &json!("check_email")));
    assert_eq!(app.count("api_keys").await, 0);

    let token = app.mailed_token(&owner, "invite").await;
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "accept_invite",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    let (key, revoked) = issued_key(status, location, &body);
    assert_eq!(revoked, 0, "nothing to revoke: {body}");
    assert_eq!(exchange(&app, &key).await, 200);
    assert_eq!(app.count("api_keys").await, 1);
    // Nothing was replaced, so no "your key was replaced" email.
    let reissued: i64 = email_outbox::table
        .filter(email_outbox::kind.eq("api_key_reissued"))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(reissued, 0);
}

/// Without JavaScript, the invite page's form posts to `POST /accept-invite`,
/// which answers the page with the first key (not cached, not in a URL); a
/// wrong confirmation answers the page with the error and keeps the link
/// usable; a used link is refused.
#[tokio::test]
async fn without_javascript_the_invite_page_shows_the_first_key_once() {
    let app = TestApp::spawn().await;
    let owner = email("first-key-nojs");
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": owner, "name": "Owner"}),
        )
        .await;
    assert_eq!(status, 202);
    let token = app.mailed_token(&owner, "invite").await;
    let browser = app.browser();
    let post = async |fields: &[(&str, &str)]| {
        let response = browser
            .post(app.url("/accept-invite"))
            .form(fields)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    };
    // The form itself posts there.
    let page = app
        .html(&browser, &format!("/accept-invite?token={token}"))
        .await;
    assert!(page.contains(r#"action="/accept-invite""#), "{page}");

    let (status, _, html) = post(&[
        ("token", &token),
        ("password", PASSWORD),
        ("password_confirm", "something else entirely"),
    ])
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains(r#"role="alert""#), "{html}");
    assert!(html.contains(&token), "the page keeps the link's token");
    assert_eq!(app.count("api_keys").await, 0);

    let (status, headers, html) = post(&[
        ("token", &token),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
    ])
    .await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("location").is_none());
    let start = html
        .find(r#"data-testid="fresh-api-key""#)
        .expect("the key is shown");
    let key: String = html[start..]
        .split_once('>')
        .unwrap()
        .1
        .chars()
        .take_while(|c| *c != '<')
        .collect();
    assert!(key.starts_with("rsolv_"), "{key}");
    // Beside it, the workflow to add, pointing at this platform.
    assert!(
        html.contains(r#"data-testid="fresh-key-workflow""#),
        "{html}"
    );
    assert!(html.contains("RSOLV-dev/rsolv-action@v1"), "{html}");
    assert!(
        html.contains("api_key: ${{ secrets.RSOLV_API_KEY }}"),
        "{html}"
    );
    assert_eq!(exchange(&app, &key).await, 200);
    assert_eq!(app.count("api_keys").await, 1);

    // The link is spent.
    let (status, _, html) = post(&[
        ("token", &token),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
    ])
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(!html.contains("fresh-api-key"), "{html}");
    assert_eq!(app.count("api_keys").await, 1);
}

/// A stranger registers the victim's address with a password of their own.
/// The victim, clicking the confirmation link, cannot confirm it for them
/// (the page asks for the registered password), the stranger cannot sign
/// in while the address is unproven, and the victim takes the address back
/// with a password reset, after which the stranger's password is worthless.
#[tokio::test]
async fn a_stranger_who_registered_the_victims_address_cannot_have_it_confirmed() {
    let app = TestApp::spawn().await;
    let victim = email("victim-registered");
    let strangers = "the stranger's own password";
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "register",
            &[
                ("email", &victim),
                ("name", "Not the victim"),
                ("password", strangers),
                ("password_confirm", strangers),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = app.mailed_token(&victim, "email_confirmation").await;
    // The victim clicks the link: without the stranger's password nothing
    // is confirmed, and the link stays unused.
    for password in ["", PASSWORD] {
        let (status, _, body) = app
            .server_fn(
                &app.browser(),
                "confirm_email",
                &[("token", &token), ("password", password)],
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("incorrect password"), "{body}");
    }
    let confirmed: Option<chrono::DateTime<chrono::Utc>> = users::table
        .filter(users::email.eq(&victim))
        .select(users::email_confirmed_at)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(confirmed, None);
    let sign_in = |password: &'static str| {
        let app = &app;
        let victim = victim.clone();
        async move {
            app.server_fn(
                &app.browser(),
                "login",
                &[("email", victim.as_str()), ("password", password)],
            )
            .await
        }
    };
    let (status, _, body) = sign_in(strangers).await;
    assert_eq!(status, 422, "unconfirmed: {body}");

    // The victim resets the password by the mailed link: the address is
    // theirs, the stranger's password no longer signs in, theirs does.
    let (status, _, _) = app
        .server_fn(&app.browser(), "forgot_password", &[("email", &victim)])
        .await;
    assert_eq!(status, 200);
    let reset = app.mailed_token(&victim, "password_reset").await;
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "reset_password",
            &[
                ("token", &reset),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = sign_in(strangers).await;
    assert_eq!(status, 422, "{body}");
    let (status, location, body) = sign_in(PASSWORD).await;
    assert_eq!(
        (status, location.as_deref()),
        (200, Some("/dashboard")),
        "{body}"
    );
}
