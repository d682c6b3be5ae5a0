//! Metrics (issue 11 § 2): the scrape endpoint on its own router answers
//! the Prometheus text format, and the counters and gauges move with the
//! requests served and the rows in the database.

use crate::harness::{email, leptos_options, test_config_with, TestApp};
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::http::metrics::metrics_router;
use rsolv_platform::server::metrics as m;
use serde_json::json;

/// The value of the first sample of `name` whose labels include every pair
/// of `labels`; `None` when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
}

async fn scrape(base: &str) -> String {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn scrape_shows_requests_latency_pool_process_business_and_refusals() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_SIGNUPS_PER_MINUTE", "2")]).await;
    let state =
        platform_state(test_config_with(&app.db.url, &[]), leptos_options()).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_base = format!("http://{}", listener.local_addr().unwrap());
    let metrics = metrics_router(state);
    tokio::spawn(async move { axum::serve(listener, metrics).await.unwrap() });

    let onboard = [
        ("method", "POST"),
        ("route", "/api/v1/customers/onboard"),
        ("status", "202"),
    ];
    let refused = [("limit", "signup")];
    let before = scrape(&metrics_base).await;
    let onboarded_before = sample(&before, m::HTTP_REQUESTS_TOTAL, &onboard).unwrap_or(0.0);
    let refused_before = sample(&before, m::RATE_LIMIT_REFUSALS_TOTAL, &refused).unwrap_or(0.0);

    app.onboard(&email("metrics-a")).await;
    app.onboard(&email("metrics-b")).await;
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": email("metrics-c"), "name": "C", "source": "direct"}),
        )
        .await;
    assert_eq!(status, 429, "the third signup from one address is refused");
    let (status, _) = app
        .get_json(
            "/api/v1/fix-attempts?github_org=a&repo_name=b&pr_number=1",
            None,
        )
        .await;
    assert_eq!(status, 401);

    let after = scrape(&metrics_base).await;
    let onboarded = sample(&after, m::HTTP_REQUESTS_TOTAL, &onboard).unwrap();
    assert!(
        onboarded - onboarded_before >= 2.0,
        "{onboarded_before} -> {onboarded}"
    );
    let refusals = sample(&after, m::RATE_LIMIT_REFUSALS_TOTAL, &refused).unwrap();
    assert!(refusals - refused_before >= 1.0);
    // Routes by template, with their status; latency as a histogram.
    assert!(
        sample(
            &after,
            m::HTTP_REQUESTS_TOTAL,
            &[("route", "/api/v1/fix-attempts"), ("status", "401")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &after,
            &format!("{}_count", m::HTTP_REQUEST_DURATION_SECONDS),
            &[("route", "/api/v1/customers/onboard"), ("status", "202")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(after.contains(&format!(
        "{}_bucket{{method=\"POST\",route=\"/api/v1/customers/onboard\",status=\"202\",le=\"0.005\"}}",
        m::HTTP_REQUEST_DURATION_SECONDS
    )));
    // Gauges from this test's database: the two customers, their emails
    // (welcome, owner invite) queued, no dead job, no drift.
    assert_eq!(
        sample(&after, m::CUSTOMERS, &[("source", "direct")]),
        Some(2.0)
    );
    assert!(sample(&after, m::EMAIL_OUTBOX, &[("status", "queued")]).unwrap() >= 2.0);
    assert_eq!(
        sample(&after, m::EMAIL_OUTBOX, &[("status", "failed")]),
        Some(0.0)
    );
    assert_eq!(sample(&after, m::LEDGER_DRIFT_CREDITS, &[]), Some(0.0));
    assert_eq!(
        sample(&after, m::WEBHOOK_BACKLOG, &[("source", "stripe")]),
        Some(0.0)
    );
    assert_eq!(sample(&after, m::CHARGED_CENTS_TOTAL, &[]), Some(0.0));
    // The pool and the process.
    assert!(sample(&after, m::DB_POOL_MAX_CONNECTIONS, &[]).unwrap() >= 1.0);
    assert!(sample(&after, m::DB_POOL_CONNECTIONS, &[]).is_some());
    assert!(sample(&after, m::PROCESS_RESIDENT_MEMORY_BYTES, &[]).unwrap() > 1e6);
    assert!(sample(&after, m::PROCESS_MEMORY_LIMIT_BYTES, &[]).unwrap() > 1e6);
    assert!(sample(&after, m::PROCESS_CPU_SECONDS_TOTAL, &[]).unwrap() > 0.0);
    assert!(after.contains(&format!("# HELP {}", m::HTTP_REQUESTS_TOTAL)));
    assert!(after.contains(&format!("# TYPE {} counter", m::HTTP_REQUESTS_TOTAL)));
}
