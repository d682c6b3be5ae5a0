//! Server-rendered pages, the no-JavaScript signup form, configuration files
//! and migrations.

use crate::harness::{email, TestApp, TestDb};
use rsolv_platform::server::db::{revert_all_migrations, run_pending_migrations};

#[tokio::test]
async fn the_home_page_renders_the_signup_form() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"data-testid="signup-form""#), "{html}");
    assert!(html.contains(r#"action="/signup""#));
    assert!(
        html.contains("/pkg/rsolv-platform.js"),
        "hydration script is linked"
    );
    let missing = app
        .client
        .get(app.url("/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_signup_form_works_without_javascript() {
    let app = TestApp::spawn().await;
    let address = email("nojs");
    let response = app
        .client
        .post(app.url("/signup"))
        .form(&[("email", address.as_str()), ("name", "No Script")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let start = html.find("rsolv_").expect("the key is shown");
    let key: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert_eq!(key.len(), 49, "{key}");
    assert!(html.contains(r#"data-testid="credit-balance""#));
    // The shown key works on the Action API.
    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&key),
            &serde_json::json!({"providers": ["anthropic"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["remaining_fixes"], 5);

    let response = app
        .client
        .post(app.url("/signup"))
        .form(&[("email", "not-an-email"), ("name", "No Script")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"role="alert""#) && html.contains("email is not a valid address"),
        "{html}"
    );
    let response = app
        .client
        .post(app.url("/signup"))
        .form(&[
            ("email", address.to_uppercase().as_str()),
            ("name", "Again"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(app.count("customers").await, 1);
}

#[tokio::test]
async fn the_signup_server_function_provisions_a_customer() {
    let app = TestApp::spawn().await;
    let address = email("serverfn");
    let response = app
        .client
        .post(app.url("/api/signup"))
        .header("accept", "application/json")
        .form(&[("email", address.as_str()), ("name", "Hydrated")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["credit_balance"], 5);
    assert!(body["api_key"].as_str().unwrap().starts_with("rsolv_"));
    assert_eq!(body["email"], address);

    // Refusals answer a 4xx status, not a 500, and provision nothing more.
    for (fields, status) in [
        ([("email", "not-an-email"), ("name", "Hydrated")], 422),
        ([("email", address.as_str()), ("name", "Again")], 409),
    ] {
        let response = app
            .client
            .post(app.url("/api/signup"))
            .header("accept", "application/json")
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{fields:?}");
    }
    assert_eq!(app.count("customers").await, 1);
}

#[test]
fn leptos_toml_agrees_with_cargo_toml() {
    let read = |file: &str| -> toml::Table {
        let text =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        text.parse().unwrap()
    };
    let cargo = read("Cargo.toml");
    let leptos = read("Leptos.toml");
    let section = |t: &toml::Table| {
        t["package"]["metadata"]["leptos"]
            .as_table()
            .unwrap()
            .clone()
    };
    let (build, runtime) = (section(&cargo), section(&leptos));
    for key in [
        "output-name",
        "site-root",
        "site-pkg-dir",
        "site-addr",
        "reload-port",
    ] {
        assert_eq!(
            build.get(key),
            runtime.get(key),
            "{key} differs between Cargo.toml and Leptos.toml"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_revert_and_apply_again() {
    let db = TestDb::empty().await;
    let applied = run_pending_migrations(&db.url).await.unwrap();
    assert!(!applied.is_empty());
    let reverted = revert_all_migrations(&db.url).await.unwrap();
    assert_eq!(reverted.len(), applied.len());
    let again = run_pending_migrations(&db.url).await.unwrap();
    assert_eq!(again, applied);
}
