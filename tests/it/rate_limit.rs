//! Signup protection and rate limits: disposable addresses, signups per IP
//! (shared by the API, the form and the server function, and by every
//! instance on one database), the Action API's limit per key (counted in
//! memory per instance and synced in batches: two instances on one
//! database stay within the stated bound, lose no hit, restart with the
//! window), and the counters' window expiry and purge.

use crate::harness::{email, leptos_options, test_config_with, TestApp, TestDb};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Response;
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::rate_limit::{check, purge_expired, SyncedLimiter};
use rsolv_platform::server::state::AppState;
use serde_json::{json, Value};
use std::time::Duration;

fn header(response: &Response, name: &str) -> Option<u64> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

/// Asserts the `RateLimit-*` headers; returns `RateLimit-Reset`.
fn assert_limit_headers(response: &Response, limit: u64, remaining: u64, window: u64) -> u64 {
    assert_eq!(header(response, "ratelimit-limit"), Some(limit));
    assert_eq!(header(response, "ratelimit-remaining"), Some(remaining));
    let reset = header(response, "ratelimit-reset").expect("RateLimit-Reset");
    assert!((1..=window).contains(&reset), "reset {reset}");
    reset
}

/// Asserts a refusal's headers and returns its JSON body's retry seconds.
fn assert_refusal_headers(response: &Response, limit: u64, window: u64) -> u64 {
    assert_eq!(response.status(), 429);
    let reset = assert_limit_headers(response, limit, 0, window);
    assert_eq!(header(response, "retry-after"), Some(reset));
    reset
}

async fn onboard(app: &TestApp, address: &str) -> Response {
    app.client
        .post(app.url("/api/v1/customers/onboard"))
        .json(&json!({"email": address, "name": "Rate Test"}))
        .send()
        .await
        .unwrap()
}

async fn signup_form(app: &TestApp, address: &str) -> Response {
    app.client
        .post(app.url("/signup"))
        .form(&[("email", address), ("name", "Form User")])
        .send()
        .await
        .unwrap()
}

async fn signup_server_fn(app: &TestApp, address: &str) -> Response {
    app.client
        .post(app.url("/api/signup"))
        .header("accept", "application/json")
        .form(&[("email", address), ("name", "Hydrated")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_eleventh_signup_from_one_ip_in_a_minute_is_refused_everywhere() {
    let app = TestApp::spawn().await;
    for i in 0..10u64 {
        let response = onboard(&app, &email("ip-limit")).await;
        assert_eq!(response.status(), 202);
        assert_limit_headers(&response, 10, 9 - i, 60);
    }

    let response = onboard(&app, &email("ip-limit-11")).await;
    let reset = assert_refusal_headers(&response, 10, 60);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": format!("rate limit exceeded; retry in {reset} seconds")})
    );

    // The form and the server function count against the same bucket.
    let response = signup_form(&app, &email("ip-limit-form")).await;
    assert_refusal_headers(&response, 10, 60);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"role="alert""#) && html.contains("rate limit exceeded; retry in"),
        "{html}"
    );
    let response = signup_server_fn(&app, &email("ip-limit-fn")).await;
    assert_refusal_headers(&response, 10, 60);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "rate_limited", "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("rate limit exceeded; retry in "));

    assert_eq!(app.count("customers").await, 10);
    assert_eq!(app.count("credit_ledger_entries").await, 10);
}

#[tokio::test]
async fn the_form_and_the_server_function_carry_the_headers_when_allowed() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_SIGNUPS_PER_MINUTE", "2")]).await;
    let response = signup_form(&app, &email("form-ok")).await;
    assert_eq!(response.status(), 200);
    assert_limit_headers(&response, 2, 1, 60);
    let response = signup_server_fn(&app, &email("fn-ok")).await;
    assert_eq!(response.status(), 200);
    assert_limit_headers(&response, 2, 0, 60);
    assert_eq!(app.count("customers").await, 2);
}

#[tokio::test]
async fn two_instances_on_one_database_count_signups_together() {
    let first = TestApp::spawn().await;
    let second = TestApp::spawn_sharing(&first, &[]).await;
    assert_ne!(first.port, second.port);
    for i in 0..10u64 {
        let app = if i % 2 == 0 { &first } else { &second };
        let response = onboard(app, &email("shared")).await;
        assert_eq!(response.status(), 202);
        assert_limit_headers(&response, 10, 9 - i, 60);
    }
    assert_refusal_headers(&onboard(&second, &email("shared-11")).await, 10, 60);
    assert_refusal_headers(&onboard(&first, &email("shared-12")).await, 10, 60);
    assert_eq!(first.count("customers").await, 10);
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_when_trusted() {
    let untrusted = TestApp::spawn_with(&[("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1")]).await;
    let with_hop = |app: &TestApp, hop: &'static str| {
        app.client
            .post(app.url("/api/v1/customers/onboard"))
            .header("x-forwarded-for", hop)
            .json(&json!({"email": email("xff"), "name": "Proxied"}))
            .send()
    };
    assert_eq!(
        with_hop(&untrusted, "203.0.113.1").await.unwrap().status(),
        202
    );
    // A spoofed header does not give the same peer a fresh bucket.
    assert_eq!(
        with_hop(&untrusted, "203.0.113.2").await.unwrap().status(),
        429
    );

    // Behind our proxies (the test's peer 127.0.0.1 and 10.0.0.0/8): the
    // rightmost address that is not a proxy is the client.
    let trusted = TestApp::spawn_with(&[
        ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1"),
        ("TRUST_PROXY_HEADERS", "true"),
        ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
    ])
    .await;
    assert_eq!(
        with_hop(&trusted, "198.51.100.7, 203.0.113.1, 10.0.0.1")
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        with_hop(&trusted, "203.0.113.2").await.unwrap().status(),
        202
    );
    // The client chooses the left end: spoofing it does not pick the bucket.
    for spoofed in [
        "203.0.113.1",
        "203.0.113.99, 203.0.113.1",
        "garbage, 203.0.113.1, 10.1.2.3",
    ] {
        assert_eq!(
            with_hop(&trusted, spoofed).await.unwrap().status(),
            429,
            "{spoofed}"
        );
    }
    assert_eq!(trusted.count("customers").await, 2);
}

#[tokio::test]
async fn a_spoofed_leftmost_hop_cannot_pick_the_bucket_behind_one_proxy() {
    // No TRUSTED_PROXIES: the peer is our one proxy, the rightmost hop the
    // client (what the proxy appended).
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1"),
        ("TRUST_PROXY_HEADERS", "true"),
    ])
    .await;
    let onboard_via = |hops: String| {
        app.client
            .post(app.url("/api/v1/customers/onboard"))
            .header("x-forwarded-for", hops)
            .json(&json!({"email": email("spoof"), "name": "Spoofer"}))
            .send()
    };
    assert_eq!(
        onboard_via("203.0.113.50".into()).await.unwrap().status(),
        202
    );
    for i in 0..5 {
        let spoofed = format!("198.51.100.{i}, 203.0.113.50");
        assert_eq!(onboard_via(spoofed).await.unwrap().status(), 429, "{i}");
    }
    assert_eq!(app.count("customers").await, 1);
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_bucket() {
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1"),
        ("TRUST_PROXY_HEADERS", "true"),
    ])
    .await;
    let onboard_from = |ip: &'static str| {
        app.client
            .post(app.url("/api/v1/customers/onboard"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email("v6"), "name": "Six"}))
            .send()
    };
    assert_eq!(onboard_from("2001:db8:1:2::1").await.unwrap().status(), 202);
    // Another address of the same /64 (and a port form of it): refused.
    assert_eq!(
        onboard_from("2001:db8:1:2:ffff:ffff:ffff:fffe")
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        onboard_from("[2001:db8:1:2::abcd]:443")
            .await
            .unwrap()
            .status(),
        429
    );
    // The next /64 is another client.
    assert_eq!(onboard_from("2001:db8:1:3::1").await.unwrap().status(), 202);
    assert_eq!(app.count("customers").await, 2);
}

async fn billing_status(app: &TestApp, key: &str) -> Response {
    app.client
        .get(app.url("/api/v1/billing/status"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_action_api_is_limited_per_key() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ACTION_PER_HOUR", "3")]).await;
    let (_, key) = app.onboard(&email("action-a")).await;
    let (_, other_key) = app.onboard(&email("action-b")).await;

    for remaining in [2u64, 1, 0] {
        let response = billing_status(&app, &key).await;
        assert_eq!(response.status(), 200);
        assert_limit_headers(&response, 3, remaining, 3600);
    }
    let response = billing_status(&app, &key).await;
    let reset = assert_refusal_headers(&response, 3, 3600);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": format!("rate limit exceeded; retry in {reset} seconds")})
    );

    // Every key-authenticated route counts, and a refused report stores
    // nothing; the key in the exchange's body is limited like the header.
    let response = app
        .client
        .post(app.url("/api/v1/usage/report"))
        .header("x-api-key", &key)
        .json(&json!({"provider": "anthropic", "tokens_used": 10}))
        .send()
        .await
        .unwrap();
    assert_refusal_headers(&response, 3, 3600);
    assert_eq!(app.count("usage_reports").await, 0);
    let response = app
        .client
        .post(app.url("/api/v1/credentials/exchange"))
        .json(&json!({"api_key": key, "providers": ["anthropic"]}))
        .send()
        .await
        .unwrap();
    assert_refusal_headers(&response, 3, 3600);

    // Other keys keep their own budget.
    let response = billing_status(&app, &other_key).await;
    assert_eq!(response.status(), 200);
    assert_limit_headers(&response, 3, 2, 3600);
    let (status, body) = app
        .post_json(
            "/api/v1/usage/report",
            Some(&other_key),
            &json!({"provider": "anthropic", "tokens_used": 10}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.count("usage_reports").await, 1);

    // Unauthenticated requests are answered as before, without counting.
    let response = billing_status(&app, "rsolv_not-a-key").await;
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "ratelimit-limit"), None);
}

#[tokio::test]
async fn disposable_addresses_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": "someone@mailinator.com", "name": "Throwaway"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"error": "disposable email addresses are not accepted"})
    );
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": "Someone@Inbox.Mailinator.com", "name": "Throwaway"}),
        )
        .await;
    assert_eq!(status, 422);

    let response = signup_form(&app, "someone@mailinator.com").await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"role="alert""#)
            && html.contains("disposable email addresses are not accepted"),
        "{html}"
    );

    let response = signup_server_fn(&app, "someone@guerrillamailblock.com").await;
    assert!(!response.status().is_success());
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"kind": "validation", "message": "disposable email addresses are not accepted"})
    );

    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(app.count("credit_ledger_entries").await, 0);
}

#[tokio::test]
async fn ended_windows_restart_the_count_and_are_purged() {
    let db = TestDb::new().await;
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let hour = Duration::from_secs(3600);
    for expected_remaining in [1, 0] {
        let decision = check(&mut conn, "test:ended", 2, hour).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.remaining, expected_remaining);
    }
    assert!(
        !check(&mut conn, "test:ended", 2, hour)
            .await
            .unwrap()
            .allowed
    );
    check(&mut conn, "test:live", 2, hour).await.unwrap();

    // End the first bucket's window (as time passing would).
    diesel::sql_query(
        "UPDATE rate_limit_counters SET window_start = now() - interval '2 hours', \
         expires_at = now() - interval '1 hour' WHERE bucket = 'test:ended'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let decision = check(&mut conn, "test:ended", 2, hour).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 1);
    assert!(decision.reset_after_secs > 3500);

    diesel::sql_query(
        "UPDATE rate_limit_counters SET window_start = now() - interval '2 hours', \
         expires_at = now() - interval '1 hour' WHERE bucket = 'test:ended'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(purge_expired(&mut conn).await.unwrap(), 1);
    let left: Vec<String> = diesel::dsl::sql::<diesel::sql_types::Text>(
        "SELECT bucket FROM rate_limit_counters ORDER BY bucket",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, vec!["test:live".to_owned()]);
}

#[tokio::test]
async fn concurrent_hits_are_counted_exactly() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ACTION_PER_HOUR", "20")]).await;
    let (_, key) = app.onboard(&email("burst")).await;
    let responses = futures::future::join_all((0..50).map(|_| billing_status(&app, &key))).await;
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    let refused = responses.iter().filter(|r| r.status() == 429).count();
    assert_eq!((ok, refused), (20, 30));
    let mut remaining: Vec<u64> = responses
        .iter()
        .filter(|r| r.status() == 200)
        .map(|r| header(r, "ratelimit-remaining").unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..20).collect::<Vec<_>>());
}

/// Two instances' states on one database, syncing only when the test says
/// so (the background sync's interval is a minute: its first tick, at
/// start, finds nothing to sync).
fn two_instances(db: &TestDb) -> (AppState, AppState) {
    let state = || {
        let config = test_config_with(&db.url, &[("RATE_LIMIT_SYNC_MILLIS", "60000")]);
        platform_state(config, leptos_options()).expect("state")
    };
    (state(), state())
}

/// The stored count of `bucket`'s current window.
async fn stored_hits(db: &TestDb, bucket: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "SELECT hits FROM rate_limit_counters WHERE bucket = '{bucket}' AND expires_at > now()"
    ))
    .get_result(&mut conn)
    .await
    .unwrap()
}

/// Counts `n` hits on `limiter`; returns how many were allowed.
async fn hits(limiter: &SyncedLimiter, bucket: &str, limit: u32, n: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..n {
        if limiter.hit(bucket, limit, HOUR).await.unwrap().allowed {
            allowed += 1;
        }
    }
    allowed
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn two_instances_keep_the_action_limit_within_the_stated_bound() {
    let db = TestDb::new().await;
    let (first, second) = two_instances(&db);
    let (a, b) = (&first.action_limiter, &second.action_limiter);
    let bucket = "action:key:shared";
    const LIMIT: u32 = 10;

    // A's first hit is counted in the database at once, the next three in
    // memory; B's first hit reads the database (A's first hit, not the
    // three unsynced), its next two are counted in memory.
    for remaining in [9, 8, 7, 6] {
        let decision = a.hit(bucket, LIMIT, HOUR).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.remaining, remaining);
    }
    for remaining in [8, 7, 6] {
        assert_eq!(
            b.hit(bucket, LIMIT, HOUR).await.unwrap().remaining,
            remaining
        );
    }
    assert_eq!(stored_hits(&db, bucket).await, 2);

    // One statement each; no hit lost.
    assert_eq!(a.flush().await.unwrap(), 1);
    assert_eq!(b.flush().await.unwrap(), 1);
    assert_eq!(stored_hits(&db, bucket).await, 7);
    assert_eq!(a.flush().await.unwrap(), 0, "nothing left to sync");

    // Between syncs each instance spends what it believes is left: A
    // (which last read 5) admits 5, B (which read 7) admits 3.
    let allowed_a = hits(a, bucket, LIMIT, 6).await;
    let allowed_b = hits(b, bucket, LIMIT, 4).await;
    assert_eq!((allowed_a, allowed_b), (5, 3));
    let admitted = 4 + 3 + allowed_a + allowed_b;
    // The bound: limit + (instances − 1) × the most hits one instance
    // admitted without the other seeing them (here, within one interval).
    assert!(
        admitted <= LIMIT as usize + allowed_a.max(allowed_b),
        "{admitted} admitted"
    );

    // Once synced, every instance refuses, and the refusals count too.
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(stored_hits(&db, bucket).await, 7 + 6 + 4);
    for limiter in [a, b] {
        let refused = limiter.hit(bucket, LIMIT, HOUR).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!((3500..=3600).contains(&refused.reset_after_secs));
    }
    // A third instance starts from the stored count.
    let third = two_instances(&db).0;
    assert!(
        !third
            .action_limiter
            .hit(bucket, LIMIT, HOUR)
            .await
            .unwrap()
            .allowed
    );
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(stored_hits(&db, bucket).await, 17 + 3);
}

#[tokio::test]
async fn the_action_limit_restarts_when_its_window_ends() {
    let db = TestDb::new().await;
    let (first, second) = two_instances(&db);
    let limiter = &first.action_limiter;
    let second_ = Duration::from_secs(1);
    let bucket = "action:key:window";
    let decisions = [
        limiter.hit(bucket, 2, second_).await.unwrap(),
        limiter.hit(bucket, 2, second_).await.unwrap(),
        limiter.hit(bucket, 2, second_).await.unwrap(),
    ];
    assert_eq!(
        decisions.map(|d| (d.allowed, d.remaining)),
        [(true, 1), (true, 0), (false, 0)]
    );
    assert_eq!(decisions[2].reset_after_secs, 1);
    // Time passes (not a synchronisation: the window is one second long).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let decision = limiter.hit(bucket, 2, second_).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 1);
    // The new window is stored, and the other instance counts in it.
    assert_eq!(stored_hits(&db, bucket).await, 1);
    let decision = second.action_limiter.hit(bucket, 2, second_).await.unwrap();
    assert_eq!((decision.allowed, decision.remaining), (true, 0));
    // The first instance has not seen that hit yet (one over: the bound),
    // and refuses once synced.
    assert!(limiter.hit(bucket, 2, second_).await.unwrap().allowed);
    assert_eq!(limiter.flush().await.unwrap(), 1);
    assert_eq!(stored_hits(&db, bucket).await, 3);
    assert!(!limiter.hit(bucket, 2, second_).await.unwrap().allowed);
}
