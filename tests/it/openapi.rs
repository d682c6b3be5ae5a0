//! The OpenAPI spec and its docs page are served (issue 11 § 7); that every
//! route is described is a unit test in `src/server/http/openapi.rs`.

use crate::harness::TestApp;
use serde_json::Value;

#[tokio::test]
async fn spec_and_docs_page_are_served_without_a_key() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/credentials/exchange",
        "/api/v1/fix-attempts/{id}/billing",
        "/webhooks/stripe",
        "/webhooks/github",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
    let exchange = &spec["paths"]["/api/v1/credentials/exchange"]["post"];
    assert_eq!(
        exchange["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ExchangeRequest"
    );
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());

    let response = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("/api/v1/fix-attempts/{id}/billing"));
    assert!(page.contains("id=\"schema-FixAttemptRequest\""));
}
