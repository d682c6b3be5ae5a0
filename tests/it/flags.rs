//! Feature flags and kill switches: switched by an admin at runtime (at
//! once here, within the refresh interval on another instance), forced by
//! environment variables (not switchable), and their effects: maintenance
//! mode on the Action API, signups closed, billing off.

use crate::harness::{email, TestApp};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::schema::jobs;
use rsolv_platform::server::flags::Flag;
use rsolv_platform::server::jobs::{run_until_idle, KIND_STRIPE_CREATE_CUSTOMER};
use serde_json::{json, Value};
use std::time::Duration;

async fn set_flag(app: &TestApp, admin: &reqwest::Client, key: &str, on: bool) -> (u16, Value) {
    app.admin_fn(
        admin,
        "flags/set",
        &[
            ("key", key),
            ("enabled", if on { "true" } else { "false" }),
            ("reason", "test switch"),
        ],
    )
    .await
}

/// Polls `check` until it is true or 10 s pass.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn maintenance_answers_503_with_retry_after_on_every_instance() {
    let app = TestApp::spawn_with(&[("MAINTENANCE_RETRY_AFTER_SECONDS", "120")]).await;
    let other = TestApp::spawn_sharing(&app, &[("FLAGS_REFRESH_SECONDS", "1")]).await;
    let admin = app.admin_browser(&email("maint-admin")).await;
    let (_, key) = app.onboard(&email("maint")).await;
    let (status, body) = set_flag(&app, &admin, "maintenance", true).await;
    assert_eq!(status, 200, "{body}");
    // At once on this instance.
    let response = app
        .client
        .get(app.url("/api/v1/billing/status"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "120");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("maintenance"),
        "{body}"
    );
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": email("m2"), "name": "M"}),
        )
        .await;
    assert_eq!(status, 503);
    // The other instance follows within its refresh interval.
    assert!(
        eventually(async || other.get_json("/api/v1/billing/status", Some(&key)).await.0 == 503)
            .await
    );
    // The portal and the admin console stay up.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let audit = app.audit_entries("flag.set").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1.as_deref(), Some("maintenance"));
    assert_eq!(audit[0].3.as_ref().unwrap()["enabled"], json!(false));
    assert_eq!(audit[0].4, Some(json!({"enabled": true})));
    let (status, _) = set_flag(&app, &admin, "maintenance", false).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.get_json("/api/v1/billing/status", Some(&key)).await.0,
        200
    );
    assert!(
        eventually(async || other.get_json("/api/v1/billing/status", Some(&key)).await.0 == 200)
            .await
    );
}

#[tokio::test]
async fn an_environment_force_wins_and_cannot_be_switched() {
    let app =
        TestApp::spawn_with(&[("FLAG_MAINTENANCE", "true"), ("BILLING_ENABLED", "false")]).await;
    let admin = app.admin_browser(&email("forced-admin")).await;
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": email("f"), "name": "F"}),
        )
        .await;
    assert_eq!(status, 503);
    let (status, body) = set_flag(&app, &admin, "maintenance", false).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("environment"));
    let (status, flags) = app.admin_fn(&admin, "flags", &[]).await;
    assert_eq!(status, 200, "{flags}");
    let flag = |key: &str| {
        flags
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == json!(key))
            .unwrap()
            .clone()
    };
    assert_eq!(flag("maintenance")["forced"], json!(true));
    assert_eq!(flag("maintenance")["env_var"], json!("FLAG_MAINTENANCE"));
    assert_eq!(flag("billing_enabled")["forced"], json!(false));
    assert_eq!(flag("billing_enabled")["on"], json!(false));
    assert_eq!(flag("signups_enabled")["forced"], Value::Null);
    assert!(app.audit_entries("flag.set").await.is_empty());
    let (status, _) = set_flag(&app, &admin, "no_such_flag", true).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn signups_closed_refuses_every_signup_path() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("closed-admin")).await;
    let before = app.count("customers").await;
    let (status, _) = set_flag(&app, &admin, "signups_enabled", false).await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": email("c1"), "name": "C"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("signups are closed"));
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "signup",
            &[("email", &email("c2")), ("name", "C")],
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("signups are closed"));
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "register",
            &[
                ("email", &email("c3")),
                ("name", "C"),
                ("password", "a long enough password"),
                ("password_confirm", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.count("customers").await, before);
    assert_eq!(app.count("signup_requests").await, 0);
    let (status, _) = set_flag(&app, &admin, "signups_enabled", true).await;
    assert_eq!(status, 200);
    app.onboard(&email("c4")).await;
}

#[tokio::test]
async fn billing_switched_off_at_runtime_keeps_stripe_jobs_queued() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("billing-admin")).await;
    let (status, _) = set_flag(&app, &admin, "billing_enabled", false).await;
    assert_eq!(status, 200);
    let (customer_id, _) = app.onboard(&email("billing-off")).await;
    // A worker instance with a Stripe key: its flags come from the database.
    let state = app.state_with("http://127.0.0.1:9", &[]);
    let mut conn = app.conn().await;
    state.flags().refresh(&mut conn).await.unwrap();
    assert!(!state.flags().is_on(Flag::BillingEnabled));
    assert!(!state.config.stripe.can_call_stripe());
    assert!(run_until_idle(&state).await.unwrap().is_empty());
    let (status, attempts): (String, i32) = jobs::table
        .filter(jobs::kind.eq(KIND_STRIPE_CREATE_CUSTOMER))
        .filter(jobs::payload.eq(json!({ "customer_id": customer_id })))
        .select((jobs::status, jobs::attempts))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    let (status, _) = set_flag(&app, &admin, "billing_enabled", true).await;
    assert_eq!(status, 200);
    state.flags().refresh(&mut conn).await.unwrap();
    assert!(state.config.stripe.can_call_stripe());
}
