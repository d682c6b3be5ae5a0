//! The Action's contract (ACTION_API.md), onboarding and bad input.

use crate::harness::{email, TestApp, ANTHROPIC_CREDENTIAL, OPENAI_CREDENTIAL};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[tokio::test]
async fn health_reports_the_database() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "database": "ok"}));
}

#[tokio::test]
async fn onboarding_provisions_a_customer_with_five_credits_and_no_key_and_answers_taken_emails_alike(
) {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": "Ada@Example.com", "name": "Ada", "source": "early_access"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "check_email", "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("API key is shown once"));
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "status and message only: {body}"
    );
    let customer_id = app.customer_id_by_email("ada@example.com").await;
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));
    // No key until the owner proves the email (tests/it/claim.rs): none a
    // stranger who onboarded this address could keep.
    assert_eq!(app.count("api_keys").await, 0);
    let mut conn = app.conn().await;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use rsolv_platform::server::db::schema::{credit_ledger_entries, customers, email_outbox};
    let (source, plan): (String, String) = customers::table
        .select((customers::source, customers::plan))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((source.as_str(), plan.as_str()), ("early_access", "trial"));
    let kinds: Vec<String> = credit_ledger_entries::table
        .select(credit_ledger_entries::kind)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(kinds, vec!["signup_bonus"]);
    let mails = || async {
        let mut mails: Vec<String> = email_outbox::table
            .select(email_outbox::kind)
            .load(&mut app.conn().await)
            .await
            .unwrap();
        mails.sort();
        mails
    };
    assert_eq!(mails().await, vec!["invite", "welcome"]);

    // The same email in another case gets the very same answer (no account
    // enumeration); nothing is written but an "account exists" email.
    let (taken_status, taken_body) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": "ada@example.COM", "name": "Ada 2"}),
        )
        .await;
    assert_eq!((taken_status, &taken_body), (status, &body));
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(mails().await, vec!["account_exists", "invite", "welcome"]);
}

#[tokio::test]
async fn onboarding_rejects_bad_input_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"email": "not-an-email", "name": "Ada"}),
            422,
            "email",
        ),
        (json!({"email": "a@example.com", "name": "  "}), 422, "name"),
        (
            json!({"email": "a@example.com", "name": "Ada", "source": "twitter"}),
            422,
            "source",
        ),
        (json!({"email": "a@example.com"}), 422, "name"),
        (json!({"email": 42, "name": "Ada"}), 422, "email"),
        (json!(["a@example.com", "Ada"]), 422, ""),
    ];
    for (body, expected, mentions) in cases {
        let (status, answer) = app
            .post_json("/api/v1/customers/onboard", None, &body)
            .await;
        assert_eq!(status, expected, "{body} → {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field for {body}: {answer}"));
        assert!(
            error.contains(mentions),
            "{error:?} should mention {mentions:?}"
        );
    }
    // Malformed JSON and a wrong content type.
    let response = app
        .client
        .post(app.url("/api/v1/customers/onboard"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    let response = app
        .client
        .post(app.url("/api/v1/customers/onboard"))
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("credit_ledger_entries").await, 0);
}

fn exchange_body() -> Value {
    json!({"providers": ["anthropic", "openai", "openrouter"], "ttl_minutes": 30})
}

#[tokio::test]
async fn credential_exchange_vends_configured_providers_with_capped_expiry() {
    let app = TestApp::spawn().await;
    let (_, key) = app.onboard(&email("exchange")).await;
    let before = Utc::now();
    let (status, body) = app
        .post_json("/api/v1/credentials/exchange", Some(&key), &exchange_body())
        .await;
    assert_eq!(status, 200, "{body}");
    let credentials = body["credentials"].as_object().unwrap();
    assert_eq!(
        credentials.keys().collect::<Vec<_>>(),
        vec!["anthropic", "openai"]
    );
    // Virtual keys for the AI gateway, never the operator's own keys
    // (issue 10; tests/it/ai.rs covers them in depth).
    for (provider, master) in [
        ("anthropic", ANTHROPIC_CREDENTIAL),
        ("openai", OPENAI_CREDENTIAL),
    ] {
        let vended = credentials[provider]["api_key"].as_str().unwrap();
        assert!(vended.starts_with("rsolv_vk_"), "{vended}");
        assert!(!body.to_string().contains(master));
    }
    let expires_at = credentials["anthropic"]["expires_at"].as_str().unwrap();
    assert!(expires_at.ends_with('Z'), "{expires_at}");
    let expires: DateTime<Utc> = expires_at.parse().unwrap();
    assert!(expires >= before + Duration::minutes(30) - Duration::seconds(1));
    assert!(expires <= Utc::now() + Duration::minutes(30));
    assert_eq!(body["usage"]["remaining_fixes"], 5);
    assert!(body["usage"].as_object().unwrap().contains_key("reset_at"));

    // A TTL above the cap (60 minutes) is capped.
    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&key),
            &json!({"providers": ["anthropic"], "ttl_minutes": 600}),
        )
        .await;
    assert_eq!(status, 200);
    let expires: DateTime<Utc> = body["credentials"]["anthropic"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires <= Utc::now() + Duration::minutes(60));
    assert!(expires >= Utc::now() + Duration::minutes(59));

    // The key in the body alone (as the Action also sends it) is accepted.
    let (status, _) = app
        .post_json(
            "/api/v1/credentials/exchange",
            None,
            &json!({"api_key": key, "providers": ["openai"]}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn credential_exchange_rejects_missing_unknown_revoked_and_suspended_keys() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("keys")).await;
    let (status, body) = app
        .post_json("/api/v1/credentials/exchange", None, &exchange_body())
        .await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("x-api-key"));
    let unknown = format!("rsolv_{}", "A".repeat(43));
    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&unknown),
            &exchange_body(),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "invalid API key")
    );
    let (status, _) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some("not-a-key"),
            &exchange_body(),
        )
        .await;
    assert_eq!(status, 401);
    // Mismatching header and body keys.
    let (status, _) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&key),
            &json!({"api_key": unknown, "providers": ["openai"]}),
        )
        .await;
    assert_eq!(status, 401);
    // Bad bodies.
    for bad in [
        json!({"providers": []}),
        json!({"providers": ["openai"], "ttl_minutes": 0}),
        json!({"providers": "openai"}),
    ] {
        let (status, body) = app
            .post_json("/api/v1/credentials/exchange", Some(&key), &bad)
            .await;
        assert_eq!(status, 422, "{bad} → {body}");
    }

    let mut conn = app.conn().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!(
        "UPDATE customers SET status = 'suspended' WHERE id = {customer_id}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let (status, body) = app
        .post_json("/api/v1/credentials/exchange", Some(&key), &exchange_body())
        .await;
    assert_eq!(status, 403);
    assert!(body["error"].as_str().unwrap().contains("suspended"));
    diesel::sql_query(format!(
        "UPDATE customers SET status = 'active' WHERE id = {customer_id}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE api_keys SET revoked_at = now()")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, body) = app
        .post_json("/api/v1/credentials/exchange", Some(&key), &exchange_body())
        .await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("revoked"));
}

/// Sends a raw HTTP/1.1 request so the header's spelling reaches the server
/// exactly as written (HTTP clients normalise it).
async fn raw_post(app: &TestApp, path: &str, header_line: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{header_line}\r\nX-GitHub-Job: build\r\nX-GitHub-Run: \r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

#[tokio::test]
async fn both_header_spellings_of_the_api_key_are_accepted() {
    let app = TestApp::spawn().await;
    let (_, key) = app.onboard(&email("spelling")).await;
    let body = r#"{"providers":["anthropic"],"ttl_minutes":60}"#;
    for header in [format!("x-api-key: {key}"), format!("X-API-Key: {key}")] {
        let (status, response) =
            raw_post(&app, "/api/v1/credentials/exchange", &header, body).await;
        assert_eq!(status, 200, "{response}");
        assert!(response.contains("rsolv_vk_"));
        assert!(!response.contains(ANTHROPIC_CREDENTIAL));
    }
    let phase = format!(
        r#"{{"phase":"scan","data":{{"vulnerabilities":[]}},"repo":"acme/api","commitSha":"{SHA}"}}"#
    );
    let (status, response) = raw_post(
        &app,
        "/api/v1/phases/store",
        &format!("X-API-Key: {key}"),
        &phase,
    )
    .await;
    assert_eq!(status, 200, "{response}");
}

#[tokio::test]
async fn usage_reports_are_stored_and_bad_ones_rejected() {
    let app = TestApp::spawn().await;
    let (_, key) = app.onboard(&email("usage")).await;
    let (status, body) = app
        .post_json(
            "/api/v1/usage/report",
            Some(&key),
            &json!({"provider": "anthropic", "tokens_used": 12345, "request_count": 3, "job_id": "build"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    for bad in [
        json!({"provider": "anthropic", "tokens_used": -1, "request_count": 3}),
        json!({"provider": "anthropic", "tokens_used": "many"}),
        json!({"tokens_used": 1}),
    ] {
        let (status, body) = app
            .post_json("/api/v1/usage/report", Some(&key), &bad)
            .await;
        assert_eq!(status, 422, "{bad} → {body}");
    }
    let (status, _) = app
        .post_json(
            "/api/v1/usage/report",
            None,
            &json!({"provider": "anthropic", "tokens_used": 1}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(app.count("usage_reports").await, 1);
}

#[tokio::test]
async fn phases_are_stored_and_retrieved_in_the_actions_shape() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("phases")).await;
    let scan = json!({"vulnerabilities": [{"type": "sql-injection", "file": "orders.js", "line": 12}], "timestamp": "2026-11-21T12:00:00Z", "commitHash": SHA});
    let validation = json!({"validated": true, "branchName": "rsolv/validate/17", "timestamp": "2026-11-21T12:05:00Z"});
    let mitigation = json!({"fixed": true, "prUrl": "https://github.com/acme/api/pull/42", "fixCommit": "9f2c", "timestamp": "2026-11-21T12:10:00Z"});
    for (phase, data, issue) in [
        ("scan", &scan, None),
        ("validation", &validation, Some(17)),
        ("mitigation", &mitigation, Some(17)),
    ] {
        let mut body = json!({"phase": phase, "data": data, "repo": "acme/api", "commitSha": SHA});
        if let Some(issue) = issue {
            body["issueNumber"] = json!(issue);
        }
        let (status, answer) = app
            .post_json("/api/v1/phases/store", Some(&key), &body)
            .await;
        assert_eq!(status, 200, "{phase}: {answer}");
        assert_eq!(answer["success"], true);
        assert!(
            answer["id"].as_str().unwrap().parse::<i64>().is_ok(),
            "id is a string: {answer}"
        );
    }
    let (status, body) = app
        .get_json(
            &format!("/api/v1/phases/retrieve?repo=acme/api&issue=17&commit={SHA}"),
            Some(&key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"scan": scan, "validation": {"issue-17": validation}, "mitigation": {"issue-17": mitigation}})
    );

    // The fixed mitigation was billed once: one credit, one fix.
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    let (status, _) = app
        .get_json(
            &format!("/api/v1/phases/retrieve?repo=acme/other&issue=17&commit={SHA}"),
            Some(&key),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get_json(
            &format!("/api/v1/phases/retrieve?repo=acme/api&commit={SHA}"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = app
        .get_json("/api/v1/phases/retrieve?repo=acme/api", Some(&key))
        .await;
    assert_eq!(status, 400);

    // Another customer sees nothing of it.
    let (_, other_key) = app.onboard(&email("phases-other")).await;
    let (status, _) = app
        .get_json(
            &format!("/api/v1/phases/retrieve?repo=acme/api&issue=17&commit={SHA}"),
            Some(&other_key),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_phase_reports_are_rejected_and_store_nothing() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("badphase")).await;
    let cases = [
        json!({"phase": "deploy", "data": {}, "repo": "acme/api", "commitSha": SHA}),
        json!({"phase": "mitigation", "data": {"fixed": true}, "repo": "acme/api", "commitSha": SHA}),
        json!({"phase": "validation", "data": {}, "repo": "acme", "issueNumber": 1, "commitSha": SHA}),
        json!({"phase": "scan", "data": {}, "repo": "acme/api", "commitSha": "not-hex"}),
        json!({"phase": "scan", "data": [1, 2], "repo": "acme/api", "commitSha": SHA}),
        json!({"phase": "mitigation", "data": {"fixed": "yes"}, "repo": "acme/api", "issueNumber": 1, "commitSha": SHA}),
        json!({"phase": "mitigation", "data": {"fixed": true}, "repo": "acme/api", "issueNumber": "17", "commitSha": SHA}),
        json!({"phase": "scan", "repo": "acme/api", "commitSha": SHA}),
    ];
    for body in cases {
        let (status, answer) = app
            .post_json("/api/v1/phases/store", Some(&key), &body)
            .await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(app.count("phase_records").await, 0);
    assert_eq!(app.count("fixes").await, 0);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));
}

#[tokio::test]
async fn fix_attempts_answer_the_contract_and_share_the_fix_with_the_mitigation() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("attempts")).await;
    let attempt = json!({
        "github_org": "acme", "repo_name": "api", "issue_number": 17, "pr_number": 42,
        "pr_title": "Fix SQL injection in orders", "pr_url": "https://github.com/acme/api/pull/42",
        "issue_title": "SQL injection", "issue_url": "https://github.com/acme/api/issues/17",
        "api_key_used": key, "metadata": {"branch": "rsolv/fix-17", "labels": ["rsolv:detected"], "ai_provider": "anthropic"}
    });
    let (status, body) = app
        .post_json("/api/v1/fix-attempts", Some(&key), &attempt)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_i64().is_some());
    assert_eq!(body["github_org"], "acme");
    assert_eq!(body["repo_name"], "api");
    assert_eq!(body["pr_number"], 42);
    assert_eq!(body["billing_status"], "credit");
    assert!(body["status"].is_string());

    // The mitigation of the same issue is the same fix: no second charge.
    let mitigation = json!({"phase": "mitigation", "data": {"fixed": true, "prUrl": "https://github.com/acme/api/pull/42"},
                            "repo": "acme/api", "issueNumber": 17, "commitSha": SHA});
    let (status, _) = app
        .post_json("/api/v1/phases/store", Some(&key), &mitigation)
        .await;
    assert_eq!(status, 200);
    // A report by PR number only is the same fix too.
    let pr_only = json!({"github_org": "acme", "repo_name": "api", "pr_number": 42});
    let (status, again) = app
        .post_json("/api/v1/fix-attempts", Some(&key), &pr_only)
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], body["id"]);
    assert_eq!(app.count("fixes").await, 1);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));

    // The raw key sent as api_key_used is never stored.
    let mut conn = app.conn().await;
    use diesel_async::RunQueryDsl;
    let leaked: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "SELECT count(*) FROM fixes WHERE row_to_json(fixes)::text LIKE '%{key}%'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(leaked, 0);

    for bad in [
        json!({"github_org": "acme", "repo_name": "api"}),
        json!({"github_org": "acme", "repo_name": "api", "pr_number": -1}),
        json!({"github_org": "ac me", "repo_name": "api", "pr_number": 1}),
        json!({"github_org": "acme", "repo_name": "api", "pr_number": 1, "metadata": "x"}),
        json!({"github_org": "acme", "repo_name": "api", "pr_number": 1, "pr_title": "x".repeat(1001)}),
    ] {
        let (status, answer) = app
            .post_json("/api/v1/fix-attempts", Some(&key), &bad)
            .await;
        assert_eq!(status, 422, "{bad} → {answer}");
    }
    assert_eq!(app.count("fixes").await, 1);
}

#[tokio::test]
async fn huge_bodies_and_unknown_endpoints_get_json_errors() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("huge")).await;
    let huge = json!({"phase": "scan", "data": {"blob": "x".repeat(200_000)}, "repo": "acme/api", "commitSha": SHA});
    let (status, body) = app
        .post_json("/api/v1/phases/store", Some(&key), &huge)
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].is_string());
    assert_eq!(app.count("phase_records").await, 0);
    let (status, body) = app.get_json("/api/v1/nope", Some(&key)).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, body) = app.get_json("/api/v1/billing/status", Some(&key)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"stripe_customer_id": null, "subscription_status": null, "can_use_service": true,
               "current_usage": {"credit_balance": 5, "fixes_total": 0, "fixes_unpaid": 0, "plan": "trial"}})
    );
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));
}
