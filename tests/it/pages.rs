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

/// The "check your email" panel of a signup answer page.
fn check_email_panel(html: &str) -> String {
    let start = html
        .find(r#"data-testid="signup-check-email""#)
        .expect("the check-your-email panel");
    let end = html[start..].find("</div>").expect("its end") + start;
    html[start..end].to_owned()
}

#[tokio::test]
async fn the_signup_form_works_without_javascript_and_answers_taken_emails_alike() {
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
    let html_new = response.text().await.unwrap();
    let html = &html_new;
    assert!(
        html.contains(r#"data-testid="signup-check-email""#),
        "{html}"
    );
    assert!(html.contains("Check your email") && html.contains(&address));
    assert!(
        !html.contains("rsolv_"),
        "no key before the email is proved"
    );
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(app.count("customers").await, 1);

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
    // The same address (another case): the same page, nothing created.
    let again = address.to_uppercase();
    let response = app
        .client
        .post(app.url("/signup"))
        .form(&[("email", again.as_str()), ("name", "Again")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let taken = response.text().await.unwrap();
    assert!(taken.contains(r#"data-testid="signup-check-email""#));
    assert_eq!(
        check_email_panel(&taken).replace(&again, "ADDRESS"),
        check_email_panel(&html_new).replace(&address, "ADDRESS")
    );
    assert_eq!(app.count("customers").await, 1);
}

#[tokio::test]
async fn the_signup_server_function_answers_new_and_taken_emails_alike() {
    let app = TestApp::spawn().await;
    let address = email("serverfn");
    let signup = |address: String, name: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/api/signup"))
                .header("accept", "application/json")
                .form(&[("email", address.as_str()), ("name", name)])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = signup(address.clone(), "Hydrated").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"email": address, "pending_approval": false})
    );
    let (status, body) = signup(address.to_uppercase(), "Again").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"email": address.to_uppercase(), "pending_approval": false})
    );
    // Refusals answer a 4xx status, not a 500, and provision nothing more.
    let (status, _) = signup("not-an-email".into(), "Hydrated").await;
    assert_eq!(status, 422);
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(app.count("api_keys").await, 0);
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

/// A site root of its own with one asset `pkg/<name>` (and its `.br` copy,
/// as `cargo leptos build --release --precompress` writes it).
fn site_with_asset(name: &str, body: &[u8]) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!(
        "rsolv-site-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("pkg").join(name), body).unwrap();
    std::fs::write(root.join("pkg").join(format!("{name}.br")), b"brotli bytes").unwrap();
    root
}

fn fastrand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}")
}

async fn asset_answer(hashed: bool) -> (reqwest::Response, reqwest::Response) {
    let root = site_with_asset("rsolv-platform.0123abcd.js", b"console.log(1)");
    let mut options = crate::harness::leptos_options();
    options.site_root = root.to_string_lossy().into_owned().into();
    options.hash_files = hashed;
    let app = TestApp::spawn_with_leptos(options).await;
    let plain = app
        .client
        .get(app.url("/pkg/rsolv-platform.0123abcd.js"))
        .send()
        .await
        .unwrap();
    let brotli = app
        .client
        .get(app.url("/pkg/rsolv-platform.0123abcd.js"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    let page = app.client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_ne!(
        page.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(rsolv_platform::server::http::assets::IMMUTABLE.as_bytes()),
        "pages are never cached as immutable"
    );
    std::fs::remove_dir_all(root).ok();
    (plain, brotli)
}

#[tokio::test]
async fn hashed_assets_are_immutable_and_served_precompressed() {
    let (plain, brotli) = asset_answer(true).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["cache-control"],
        rsolv_platform::server::http::assets::IMMUTABLE
    );
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.text().await.unwrap(), "console.log(1)");
    assert_eq!(brotli.status(), 200);
    assert_eq!(brotli.headers()["content-encoding"], "br");
    assert_eq!(
        brotli.headers()["cache-control"],
        rsolv_platform::server::http::assets::IMMUTABLE
    );
    assert_eq!(brotli.bytes().await.unwrap().as_ref(), b"brotli bytes");
}

#[tokio::test]
async fn unhashed_assets_must_be_revalidated() {
    let (plain, _) = asset_answer(false).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["cache-control"],
        rsolv_platform::server::http::assets::REVALIDATE
    );
}
