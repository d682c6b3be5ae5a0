//! The AI usage pages (issue 10): the portal's `/ai-usage` and the admin
//! console's per-customer usage, "Top AI usage today" and budget form.
//! Usage is seeded through the real gateway (against the local stand-in of
//! the providers in `ai.rs`); the pages are fetched server-rendered, as a
//! browser without JavaScript gets them.

use crate::ai::{
    chat, claude_request, gpt_request, messages, spawn, vkey, StandIn, ANTHROPIC_USAGE, CLAUDE,
    OPENAI_USAGE,
};
use crate::authz::signed_in;
use crate::harness::{email, html_text, TestApp};
use rsolv_platform::types::ai::group_digits;
use serde_json::{json, Value};

/// Exchanges `key` for virtual keys of every provider.
async fn exchange_with(app: &TestApp, key: &str) -> Value {
    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(key),
            &json!({"providers": ["anthropic", "openai"], "ttl_minutes": 30}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The text of each cell of each `<tr data-testid="{testid}">` in `html`.
fn rows(html: &str, testid: &str) -> Vec<Vec<String>> {
    let marker = format!(r#"data-testid="{testid}""#);
    html.split(&marker)
        .skip(1)
        .map(|rest| {
            // Past the end of the row's own tag, up to its end.
            let rest = &rest[rest.find('>').expect("the row's tag ends") + 1..];
            let row = &rest[..rest.find("</tr>").expect("a closed row")];
            let mut cells: Vec<String> = row
                .split("</td>")
                .flat_map(|c| c.split("</th>"))
                .map(html_text)
                .collect();
            cells.pop(); // what follows the last cell
            cells
        })
        .collect()
}

/// Today (UTC), as the pages show days.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn the_portal_shows_only_the_signed_in_customers_ai_usage() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let a = signed_in(&app, &email("ai-page-a"), "Alice").await;
    let b = signed_in(&app, &email("ai-page-b"), "Bobby").await;
    let c = signed_in(&app, &email("ai-page-c"), "Carol").await;

    // A: one Anthropic and one OpenAI call, and a usage report; B: one
    // call with a model only B uses.
    let a_keys = exchange_with(&app, &a.key).await;
    let (status, _, text) =
        messages(&app, &vkey(&a_keys, "anthropic"), &claude_request(false)).await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = chat(&app, &vkey(&a_keys, "openai"), &gpt_request(false)).await;
    assert_eq!(status, 200, "{text}");
    let (status, body) = app
        .post_json(
            "/api/v1/usage/report",
            Some(&a.key),
            &json!({"provider": "anthropic", "tokens_used": 100, "request_count": 2, "job_id": "build"}),
        )
        .await;
    assert!((200..300).contains(&status), "{body}");
    let b_keys = exchange_with(&app, &b.key).await;
    let b_request = json!({"model": "claude-only-bobby", "max_tokens": 8,
                           "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, text) = messages(&app, &vkey(&b_keys, "anthropic"), &b_request).await;
    assert_eq!(status, 200, "{text}");

    // A's page: per day and per key, A's calls only.
    let (status, _, html) = app.page(&a.browser, "/ai-usage").await;
    assert_eq!(status, 200);
    let a_tokens = ANTHROPIC_USAGE.0 + ANTHROPIC_USAGE.1 + OPENAI_USAGE.0 + OPENAI_USAGE.1;
    assert_eq!(
        rows(&html, "ai-day-row"),
        vec![vec![
            today(),
            "2".to_owned(),
            group_digits(a_tokens),
            "100".to_owned()
        ]],
        "{html}"
    );
    let mut by_key = rows(&html, "ai-key-row");
    by_key.sort();
    let key_label = |name: &str, prefix: &str| format!("{name} {prefix}…");
    let a_prefix = &a.key[..12];
    assert_eq!(
        by_key,
        vec![
            vec![
                today(),
                key_label("Alice", a_prefix),
                "anthropic".to_owned(),
                CLAUDE.to_owned(),
                "1".to_owned(),
                "1".to_owned(),
                ANTHROPIC_USAGE.0.to_string(),
                ANTHROPIC_USAGE.1.to_string(),
            ],
            vec![
                today(),
                key_label("Alice", a_prefix),
                "openai".to_owned(),
                "gpt-4o-mini".to_owned(),
                "1".to_owned(),
                "1".to_owned(),
                OPENAI_USAGE.0.to_string(),
                OPENAI_USAGE.1.to_string(),
            ],
        ],
        "{html}"
    );
    assert!(!html.contains("claude-only-bobby"), "B's model on A's page");
    assert!(!html.contains(&b.key[..12]), "B's key on A's page");
    // The budget: the defaults, and what A used today.
    assert!(
        html.contains(&format!("{} tokens", group_digits(5_000_000))),
        "{html}"
    );
    assert!(
        html.contains(&format!("{} tokens", group_digits(a_tokens))),
        "{html}"
    );
    assert!(html.contains(r#"aria-current="page""#) && html.contains(r#"href="/ai-usage""#));

    // B's page: B's call only.
    let (status, _, html) = app.page(&b.browser, "/ai-usage").await;
    assert_eq!(status, 200);
    let b_rows = rows(&html, "ai-key-row");
    assert_eq!(b_rows.len(), 1, "{html}");
    assert_eq!(b_rows[0][2..4], ["anthropic", "claude-only-bobby"]);
    assert!(b_rows[0][1].starts_with("Bobby "), "{b_rows:?}");
    assert!(
        !html.contains("gpt-4o-mini") && !html.contains(CLAUDE),
        "{html}"
    );
    assert!(!html.contains(a_prefix), "A's key on B's page");

    // The server function answers the session's customer only.
    let (status, _, body) = app.server_fn(&b.browser, "portal/ai-usage", &[]).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["by_key"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        view["budget"]["used_today"],
        ANTHROPIC_USAGE.0 + ANTHROPIC_USAGE.1
    );

    // C has made no call: the empty state says how to point the Action.
    let (status, _, html) = app.page(&c.browser, "/ai-usage").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-testid="ai-usage-empty""#), "{html}");
    assert!(html.contains("RSOLV_AI_BASE_URL"));
    assert!(rows(&html, "ai-key-row").is_empty());

    // Nobody signed in: sent to sign in, and 401 from the function.
    let (status, _, html) = app.page(&app.browser(), "/ai-usage").await;
    assert_eq!(status, 303);
    assert!(!html.contains("claude-only-bobby") && !html.contains(CLAUDE));
    let (status, _, body) = app.server_fn(&app.browser(), "portal/ai-usage", &[]).await;
    assert_eq!(status, 401, "{body}");
}

/// Number of `ai_budgets` rows.
async fn budgets(app: &TestApp) -> i64 {
    app.count("ai_budgets").await
}

#[tokio::test]
async fn an_admin_sets_and_clears_a_budget_that_the_gateway_enforces_at_once() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let customer = signed_in(&app, &email("ai-budget"), "Budgeted").await;
    let id = customer.customer_id.to_string();
    let keys = exchange_with(&app, &customer.key).await;
    let anthropic = vkey(&keys, "anthropic");
    let (status, _, text) = messages(&app, &anthropic, &claude_request(false)).await;
    assert_eq!(status, 200, "{text}");
    let used = ANTHROPIC_USAGE.0 + ANTHROPIC_USAGE.1;
    let admin = app.admin_browser(&email("ai-staff")).await;

    // The customer's page: per-day totals and the default budget.
    let (status, _, html) = app.page(&admin, &format!("/admin/customers/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-testid="admin-ai-usage""#), "{html}");
    assert_eq!(
        rows(&html, "ai-day-row"),
        vec![vec![
            today(),
            "1".to_owned(),
            group_digits(used),
            "0".to_owned()
        ]]
    );
    assert!(html.contains(r#"data-testid="ai-budget-form""#));

    // The overview: the customer among today's top AI users, linked.
    let (status, _, html) = app.page(&admin, "/admin").await;
    assert_eq!(status, 200);
    let top = rows(&html, "ai-top-row");
    assert_eq!(
        top,
        vec![vec![
            format!("Customer {id}"),
            customer.email.clone(),
            "1".to_owned(),
            ANTHROPIC_USAGE.0.to_string(),
            ANTHROPIC_USAGE.1.to_string(),
            used.to_string(),
        ]],
        "{html}"
    );
    assert!(html.contains(&format!(r#"href="/admin/customers/{id}""#)));

    let audited_before = app.count("admin_audit_log").await;
    // Refused: no reason, negative, fractional or too large values, an
    // unknown customer. Nothing stored, nothing audited.
    for (fields, status) in [
        (vec![("daily_tokens", "40"), ("reason", "  ")], 422),
        (vec![("daily_tokens", "-1"), ("reason", "x")], 422),
        (vec![("max_concurrent", "-2"), ("reason", "x")], 422),
        (vec![("daily_tokens", "1.5"), ("reason", "x")], 422),
        (vec![("max_concurrent", "10001"), ("reason", "x")], 422),
        (
            vec![("daily_tokens", "1000000000001"), ("reason", "x")],
            422,
        ),
    ] {
        let mut fields = fields;
        fields.push(("customer_id", &id));
        let (got, body) = app.admin_fn(&admin, "ai-budget/set", &fields).await;
        assert_eq!(got, status, "{fields:?}: {body}");
    }
    let (got, body) = app
        .admin_fn(
            &admin,
            "ai-budget/set",
            &[
                ("customer_id", "987654"),
                ("daily_tokens", "1"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(got, 404, "{body}");
    // A customer's session and no session are refused.
    let (got, body) = app
        .admin_fn(
            &customer.browser,
            "ai-budget/set",
            &[
                ("customer_id", &id),
                ("daily_tokens", "0"),
                ("reason", "mine"),
            ],
        )
        .await;
    assert_eq!(got, 403, "{body}");
    let (got, _) = app
        .admin_fn(
            &app.browser(),
            "ai-budget/set",
            &[("customer_id", &id), ("daily_tokens", "0"), ("reason", "x")],
        )
        .await;
    assert_eq!(got, 401);
    assert_eq!(budgets(&app).await, 0);
    assert_eq!(app.count("admin_audit_log").await, audited_before);

    // Set a daily budget below what was used: the next call gets 429 in
    // Anthropic's shape, the audit log says who, why, before and after.
    let (got, body) = app
        .admin_fn(
            &admin,
            "ai-budget/set",
            &[
                ("customer_id", &id),
                ("daily_tokens", "40"),
                ("max_concurrent", ""),
                ("reason", "Runaway loop in their workflow"),
            ],
        )
        .await;
    assert_eq!(got, 200, "{body}");
    let audit = app.audit_entries("ai_budget.set").await;
    assert_eq!(audit.len(), 1);
    let (actor, target, reason, before, after) = &audit[0];
    assert!(actor.starts_with("ai-staff"), "{actor}");
    assert_eq!(target.as_deref(), Some(id.as_str()));
    assert_eq!(reason.as_deref(), Some("Runaway loop in their workflow"));
    assert_eq!(
        before.as_ref(),
        Some(&json!({"daily_tokens": null, "max_concurrent": null}))
    );
    assert_eq!(
        after.as_ref(),
        Some(&json!({"daily_tokens": 40, "max_concurrent": null}))
    );
    let (status, headers, text) = messages(&app, &anthropic, &claude_request(false)).await;
    assert_eq!(status, 429, "{text}");
    assert!(headers.contains_key("retry-after"));
    let refusal: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(refusal["type"], "error", "{text}");
    assert_eq!(refusal["error"]["type"], "rate_limit_error", "{text}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget of 40 tokens"),
        "{text}"
    );
    // Both pages show it as set for this account.
    for (browser, path) in [
        (&admin, format!("/admin/customers/{id}")),
        (&customer.browser, "/ai-usage".to_owned()),
    ] {
        let (status, _, html) = app.page(browser, &path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(html.contains("40 tokens"), "{path}: {html}");
        assert!(html.contains("set for this account"), "{path}");
        assert!(html.contains("Budget used up"), "{path}");
    }

    // 0 lifts the daily limit; one call at once is then enforced: a
    // streamed call in flight holds the only place (OpenAI's shape).
    let (got, body) = app
        .admin_fn(
            &admin,
            "ai-budget/set",
            &[
                ("customer_id", &id),
                ("daily_tokens", "0"),
                ("max_concurrent", "1"),
                ("reason", "Unlimited tokens, one call at a time"),
            ],
        )
        .await;
    assert_eq!(got, 200, "{body}");
    let mut streamed = app
        .client
        .post(app.url("/ai/v1/messages"))
        .header("x-api-key", &anthropic)
        .json(&claude_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    streamed.chunk().await.unwrap().unwrap();
    let (status, _, text) = chat(&app, &vkey(&keys, "openai"), &gpt_request(false)).await;
    assert_eq!(status, 429, "{text}");
    let refusal: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(refusal["error"]["code"], "rate_limit_exceeded", "{text}");
    assert!(refusal["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 1 in flight"));
    stand_in.gate.notify_one();
    while streamed.chunk().await.unwrap().is_some() {}
    drop(streamed);
    let (status, _, text) = chat(&app, &vkey(&keys, "openai"), &gpt_request(false)).await;
    assert_eq!(status, 200, "{text}");

    // The form without JavaScript: both fields blank clears the override
    // (back to the defaults) and the browser is sent back to the page.
    let referer = app.url(&format!("/admin/customers/{id}"));
    let response = admin
        .post(app.url("/api/admin/ai-budget/set"))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .header("referer", &referer)
        .form(&[
            ("customer_id", id.as_str()),
            ("daily_tokens", ""),
            ("max_concurrent", ""),
            ("reason", "Back to the defaults"),
        ])
        .send()
        .await
        .unwrap();
    let (status, location) = (
        response.status(),
        response.headers().get("location").cloned(),
    );
    assert_eq!(status, 302, "{:?}", response.text().await);
    // Back to the page (Leptos adds an error to the query when there is one).
    let location = location.unwrap().to_str().unwrap().to_owned();
    assert_eq!(location.trim_end_matches('?'), referer, "{location}");
    let cleared = app.audit_entries("ai_budget.clear").await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(
        cleared[0].4.as_ref(),
        Some(&json!({"daily_tokens": null, "max_concurrent": null}))
    );
    assert_eq!(
        cleared[0].3.as_ref(),
        Some(&json!({"daily_tokens": 0, "max_concurrent": 1}))
    );
    assert_eq!(app.audit_entries("ai_budget.set").await.len(), 2);
    let (status, _, html) = app.page(&customer.browser, "/ai-usage").await;
    assert_eq!(status, 200);
    assert!(!html.contains("set for this account"), "{html}");
    assert!(html.contains(&format!("{} tokens", group_digits(5_000_000))));
}

#[tokio::test]
async fn a_customer_is_sent_from_the_admin_overview_and_sees_no_ai_usage() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, &[]).await;
    let customer = signed_in(&app, &email("ai-nosy"), "Nosy").await;
    let keys = exchange_with(&app, &customer.key).await;
    let (status, _, text) = messages(&app, &vkey(&keys, "anthropic"), &claude_request(false)).await;
    assert_eq!(status, 200, "{text}");
    // The console's pages are not rendered for a customer: they are sent to
    // their dashboard (admin_security.rs covers the redirects).
    for path in [
        "/admin".to_owned(),
        format!("/admin/customers/{}", customer.customer_id),
    ] {
        let response = customer.browser.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/dashboard", "{path}");
        let html = response.text().await.unwrap();
        assert!(!html.contains("ai-top-"), "{path}");
        assert!(!html.contains("admin-ai-usage"), "{path}");
    }
    let (status, _, body) = app
        .server_fn(&customer.browser, "admin/ai-usage/top", &[])
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains(&customer.email));
}
