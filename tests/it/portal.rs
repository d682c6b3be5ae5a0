//! The customer portal: API key revocation and rotation on the Action's API,
//! isolation between customers, the ledger's pages and CSV, the usage
//! series, and the portal's endpoints without a session.

use crate::harness::{email, TestApp};
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rsolv_platform::server::billing::api_keys::{
    hash_key, list_api_keys, revoke_api_key, rotate_api_key, ApiKey,
};
use rsolv_platform::server::billing::fixes::{record_fix, FixReport};
use rsolv_platform::server::billing::history::{
    ledger_csv, list_entries_page, usage_series, CSV_HEADER,
};
use rsolv_platform::server::billing::BillingError;
use rsolv_platform::server::db::schema::{api_keys, email_outbox};
use rsolv_platform::types::values::{LedgerKind, Repository};
use serde_json::json;

/// The row id of the key whose secret is `key`.
async fn key_id(conn: &mut AsyncPgConnection, key: &str) -> i64 {
    api_keys::table
        .filter(api_keys::token_hash.eq(hash_key(key).as_slice()))
        .select(api_keys::id)
        .first(conn)
        .await
        .unwrap()
}

/// Status and body of a credentials exchange with `key`.
async fn exchange(app: &TestApp, key: &str) -> (u16, serde_json::Value) {
    app.post_json(
        "/api/v1/credentials/exchange",
        Some(key),
        &json!({"providers": ["anthropic"]}),
    )
    .await
}

/// (kind, recipient, idempotency key) of every queued email, oldest first.
/// The API-key emails in the outbox (provisioning's own emails left out).
async fn outbox(conn: &mut AsyncPgConnection) -> Vec<(String, String, String)> {
    email_outbox::table
        .filter(email_outbox::kind.like("api_key_%"))
        .order(email_outbox::id.asc())
        .select((
            email_outbox::kind,
            email_outbox::to_address,
            email_outbox::idempotency_key,
        ))
        .load(conn)
        .await
        .unwrap()
}

async fn all_keys(conn: &mut AsyncPgConnection) -> Vec<ApiKey> {
    api_keys::table
        .order(api_keys::id.asc())
        .select(ApiKey::as_select())
        .load(conn)
        .await
        .unwrap()
}

/// Records a paid fix for issue `issue` (PR `issue + 100`) in `repo`.
async fn seed_fix(conn: &mut AsyncPgConnection, customer_id: i64, repo: &str, issue: i64) -> i64 {
    let mut report = FixReport::new(
        Repository::parse(repo).unwrap(),
        Some(issue),
        Some(issue + 100),
    )
    .unwrap();
    report.pr_url = Some(format!("https://github.com/{repo}/pull/{}", issue + 100));
    record_fix(
        conn,
        &Default::default(),
        customer_id,
        &report,
        &test_links(),
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn revoking_a_key_refuses_it_at_once_and_queues_one_email() {
    let app = TestApp::spawn().await;
    let address = email("revoke");
    let (customer_id, key) = app.onboard(&address).await;
    let mut conn = app.conn().await;
    let id = key_id(&mut conn, &key).await;
    assert_eq!(exchange(&app, &key).await.0, 200);

    let revoked = revoke_api_key(&mut conn, &test_links(), customer_id, id)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let (status, body) = exchange(&app, &key).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // Revoking again changes nothing and queues nothing more.
    let again = revoke_api_key(&mut conn, &test_links(), customer_id, id)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(
        outbox(&mut conn).await,
        vec![(
            "api_key_revoked".to_owned(),
            address,
            format!("api_key_revoked:{id}")
        )]
    );
}

#[tokio::test]
async fn a_rotated_key_works_until_its_grace_ends_and_the_new_one_works_at_once() {
    let app = TestApp::spawn().await;
    let address = email("rotate");
    let (customer_id, old_key) = app.onboard(&address).await;
    let mut conn = app.conn().await;
    let old_id = key_id(&mut conn, &old_key).await;

    let before = Utc::now();
    let rotated = rotate_api_key(
        &mut conn,
        &test_links(),
        customer_id,
        old_id,
        Duration::hours(24),
    )
    .await
    .unwrap();
    let expires_at = rotated.old.expires_at.expect("the old key expires");
    assert!(
        expires_at >= before + Duration::hours(24)
            && expires_at <= Utc::now() + Duration::hours(24)
    );
    assert_eq!(rotated.new.name, rotated.old.name);
    assert_eq!(rotated.new.expires_at, None);
    let new_key = rotated.plain.expose().to_owned();
    assert_ne!(new_key, old_key);

    // Within the grace period both keys work.
    assert_eq!(exchange(&app, &old_key).await.0, 200);
    assert_eq!(exchange(&app, &new_key).await.0, 200);
    let listed = list_api_keys(&mut conn, customer_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![rotated.new.id, old_id],
        "newest first"
    );

    // A rotated key cannot be rotated again (nothing changes).
    let err = rotate_api_key(
        &mut conn,
        &test_links(),
        customer_id,
        old_id,
        Duration::hours(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BillingError::Invalid(_)), "{err:?}");
    assert_eq!(all_keys(&mut conn).await.len(), 2);

    // Once the grace period is over the old key is refused; the new one is not.
    diesel::update(api_keys::table.find(old_id))
        .set(api_keys::expires_at.eq(Some(Utc::now() - Duration::seconds(1))))
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, body) = exchange(&app, &old_key).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert_eq!(exchange(&app, &new_key).await.0, 200);

    assert_eq!(
        outbox(&mut conn).await,
        vec![(
            "api_key_rotated".to_owned(),
            address,
            format!("api_key_rotated:{old_id}")
        )]
    );

    // A revoked key cannot be rotated.
    let new_id = rotated.new.id;
    revoke_api_key(&mut conn, &test_links(), customer_id, new_id)
        .await
        .unwrap();
    let err = rotate_api_key(
        &mut conn,
        &test_links(),
        customer_id,
        new_id,
        Duration::hours(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BillingError::Invalid(_)), "{err:?}");
    assert_eq!(all_keys(&mut conn).await.len(), 2);
}

#[tokio::test]
async fn a_customer_cannot_list_revoke_or_rotate_another_customers_keys() {
    let app = TestApp::spawn().await;
    let (a, _a_key) = app.onboard(&email("a")).await;
    let (b, b_key) = app.onboard(&email("b")).await;
    let mut conn = app.conn().await;
    let b_id = key_id(&mut conn, &b_key).await;
    let before = all_keys(&mut conn).await;

    let err = revoke_api_key(&mut conn, &test_links(), a, b_id)
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::NotFound("API key")), "{err:?}");
    let err = rotate_api_key(&mut conn, &test_links(), a, b_id, Duration::hours(1))
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::NotFound("API key")), "{err:?}");
    let err = revoke_api_key(&mut conn, &test_links(), a, i64::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::NotFound(_)), "{err:?}");

    let a_keys = list_api_keys(&mut conn, a).await.unwrap();
    assert_eq!(a_keys.len(), 1);
    assert!(a_keys.iter().all(|k| k.customer_id == a));
    assert_eq!(list_api_keys(&mut conn, b).await.unwrap().len(), 1);

    assert_eq!(all_keys(&mut conn).await, before, "nothing changed");
    assert!(outbox(&mut conn).await.is_empty());
    assert_eq!(exchange(&app, &b_key).await.0, 200);
}

#[tokio::test]
async fn ledger_pages_are_newest_first_filtered_and_joined_with_their_fixes() {
    let app = TestApp::spawn().await;
    let (a, _) = app.onboard(&email("ledger")).await;
    let (b, _) = app.onboard(&email("other")).await;
    let mut conn = app.conn().await;
    let fix_ids = [
        seed_fix(&mut conn, a, "acme/api", 1).await,
        seed_fix(&mut conn, a, "acme/web", 2).await,
        seed_fix(&mut conn, a, "acme/api", 3).await,
    ];
    seed_fix(&mut conn, b, "other/repo", 9).await;

    let page1 = list_entries_page(&mut conn, a, None, 1, 2).await.unwrap();
    assert_eq!((page1.total, page1.page, page1.per_page), (4, 1, 2));
    let kinds = |rows: &[rsolv_platform::server::billing::history::HistoryRow]| {
        rows.iter()
            .map(|r| (r.entry.kind.clone(), r.entry.amount, r.entry.balance_after))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&page1.rows),
        vec![
            ("fix_consumed".to_owned(), -1, 2),
            ("fix_consumed".to_owned(), -1, 3)
        ]
    );
    let fix = page1.rows[0].fix.as_ref().expect("joined with its fix");
    assert_eq!(
        (fix.repository.as_str(), fix.issue_number, fix.pr_number),
        ("acme/api", Some(3), Some(103))
    );
    assert_eq!(
        fix.pr_url.as_deref(),
        Some("https://github.com/acme/api/pull/103")
    );
    assert_eq!(
        page1.rows[1].fix.as_ref().map(|f| f.repository.as_str()),
        Some("acme/web")
    );
    assert_eq!(
        page1.rows[0].entry.reference.as_deref(),
        Some(format!("fix:{}", fix_ids[2]).as_str())
    );

    let page2 = list_entries_page(&mut conn, a, None, 2, 2).await.unwrap();
    assert_eq!(
        kinds(&page2.rows),
        vec![
            ("fix_consumed".to_owned(), -1, 4),
            ("signup_bonus".to_owned(), 5, 5)
        ]
    );
    assert!(page2.rows[1].fix.is_none());
    let past_end = list_entries_page(&mut conn, a, None, 3, 2).await.unwrap();
    assert!(past_end.rows.is_empty());
    assert_eq!(past_end.total, 4);

    let fixes_only = list_entries_page(&mut conn, a, Some(LedgerKind::FixConsumed), 1, 50)
        .await
        .unwrap();
    assert_eq!(fixes_only.total, 3);
    assert!(fixes_only.rows.iter().all(|r| r.fix.is_some()));
    let bonus = list_entries_page(&mut conn, a, Some(LedgerKind::SignupBonus), 0, 1000)
        .await
        .unwrap();
    assert_eq!((bonus.total, bonus.page, bonus.per_page), (1, 1, 100));
    let refunds = list_entries_page(&mut conn, a, Some(LedgerKind::Refund), 1, 20)
        .await
        .unwrap();
    assert_eq!((refunds.total, refunds.rows.len()), (0, 0));
}

#[tokio::test]
async fn the_csv_export_has_a_header_every_row_and_respects_the_filter() {
    let app = TestApp::spawn().await;
    let (a, _) = app.onboard(&email("csv")).await;
    let (b, _) = app.onboard(&email("csv-other")).await;
    let mut conn = app.conn().await;
    seed_fix(&mut conn, a, "acme/api", 7).await;
    let mut sneaky = FixReport::new(Repository::parse("acme/web").unwrap(), Some(8), None).unwrap();
    sneaky.pr_url = Some("=HYPERLINK(\"https://evil.example\")".into());
    record_fix(&mut conn, &Default::default(), a, &sneaky, &test_links())
        .await
        .unwrap();
    seed_fix(&mut conn, b, "other/repo", 1).await;

    let parse = |bytes: Vec<u8>| {
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        (header, rows)
    };
    let (header, rows) = parse(ledger_csv(&mut conn, a, None).await.unwrap());
    assert_eq!(header, CSV_HEADER);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        &rows[0][2..],
        [
            "fix_consumed",
            "-1",
            "3",
            "acme/web",
            "8",
            "",
            "'=HYPERLINK(\"https://evil.example\")"
        ]
    );
    assert_eq!(
        &rows[1][2..],
        [
            "fix_consumed",
            "-1",
            "4",
            "acme/api",
            "7",
            "107",
            "https://github.com/acme/api/pull/107"
        ]
    );
    assert_eq!(&rows[2][2..], ["signup_bonus", "5", "5", "", "", "", ""]);
    assert!(
        rows[0][1].ends_with('Z') && rows[0][1].len() == 20,
        "{}",
        rows[0][1]
    );

    let (_, bonus_only) = parse(
        ledger_csv(&mut conn, a, Some(LedgerKind::SignupBonus))
            .await
            .unwrap(),
    );
    assert_eq!(bonus_only.len(), 1);
    assert_eq!(bonus_only[0][2], "signup_bonus");
}

#[tokio::test]
async fn the_usage_series_counts_fixes_per_day_and_credits_left_at_each_days_end() {
    let app = TestApp::spawn().await;
    let (a, _) = app.onboard(&email("usage")).await;
    let mut conn = app.conn().await;
    let f1 = seed_fix(&mut conn, a, "acme/api", 1).await;
    let f2 = seed_fix(&mut conn, a, "acme/api", 2).await;
    seed_fix(&mut conn, a, "acme/api", 3).await;
    // Move history into the past: the signup bonus to noon UTC ten days
    // ago, the first two fixes (and their debits) to noon two days ago.
    // The ledger is append-only, so its guard is lifted for the fixture.
    let noon = |days: i64| {
        format!(
            "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') - interval '{days} days' + interval '12 hours'"
        )
    };
    for sql in [
        "ALTER TABLE credit_ledger_entries DISABLE TRIGGER credit_ledger_entries_append_only"
            .to_owned(),
        format!(
            "UPDATE credit_ledger_entries SET created_at = {} WHERE kind = 'signup_bonus'",
            noon(10)
        ),
        format!(
            "UPDATE customers SET created_at = {} WHERE id = {a}",
            noon(10)
        ),
        format!(
            "UPDATE fixes SET created_at = {} WHERE id IN ({f1}, {f2})",
            noon(2)
        ),
        format!(
            "UPDATE credit_ledger_entries SET created_at = {} + (id % 10) * interval '1 minute' \
             WHERE reference IN ('fix:{f1}', 'fix:{f2}')",
            noon(2)
        ),
        "ALTER TABLE credit_ledger_entries ENABLE TRIGGER credit_ledger_entries_append_only"
            .to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }

    let series = usage_series(&mut conn, a, 30).await.unwrap();
    assert_eq!(series.len(), 30);
    assert_eq!(series[29].day, Utc::now().date_naive());
    assert_eq!(series[0].day, Utc::now().date_naive() - Duration::days(29));
    let fixes: Vec<i64> = series.iter().map(|p| p.fixes).collect();
    let credits: Vec<Option<i64>> = series.iter().map(|p| p.credits_left).collect();
    let mut expected_fixes = vec![0; 30];
    expected_fixes[27] = 2;
    expected_fixes[29] = 1;
    assert_eq!(fixes, expected_fixes);
    // No balance before the account existed (day -10), not a made-up zero.
    let mut expected_credits = vec![None; 19];
    expected_credits.extend([Some(5); 8]); // days -10 ..= -3
    expected_credits.extend([Some(3), Some(3), Some(2)]); // days -2, -1, today
    assert_eq!(credits, expected_credits);

    assert_eq!(usage_series(&mut conn, a, 0).await.unwrap().len(), 1);
    let (b, _) = app.onboard(&email("usage-new")).await;
    let fresh = usage_series(&mut conn, b, 3).await.unwrap();
    let fresh: Vec<_> = fresh.iter().map(|p| p.credits_left).collect();
    assert_eq!(fresh, vec![None, None, Some(5)]);
}

#[tokio::test]
async fn portal_endpoints_without_a_session_refuse_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("nosession")).await;
    let mut conn = app.conn().await;
    let id = key_id(&mut conn, &key).await;
    let before = all_keys(&mut conn).await;

    for (path, form) in [
        ("/api/portal/keys/revoke", vec![("key_id", id.to_string())]),
        ("/api/portal/keys/rotate", vec![("key_id", id.to_string())]),
        (
            "/api/portal/keys/create",
            vec![("name", "sneaky".to_owned())],
        ),
        ("/api/portal/keys", vec![]),
        ("/api/portal/ledger", vec![("kind", "".to_owned())]),
        ("/api/portal/dashboard", vec![]),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "unauthorized", "{path}: {body}");
    }
    // A plain (no-JavaScript) form post is redirected back, and refused
    // too: the page it goes back to sends the signed out to sign in.
    let response = app
        .client
        .post(app.url("/api/portal/keys/revoke"))
        .header("accept", "text/html")
        .header("referer", app.url("/keys"))
        .form(&[("key_id", id.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/login");
    assert!(
        response
            .url()
            .query()
            .is_some_and(|q| q.starts_with("next=/keys%3F")),
        "{}",
        response.url()
    );
    assert!(response
        .text()
        .await
        .unwrap()
        .contains(r#"data-testid="login-form""#));

    // The no-JavaScript create and rotate forms send the signed out to sign
    // in (and to /keys after it), creating and rotating nothing.
    let signed_out = app.browser();
    for (path, form) in [
        ("/keys/create", vec![("name", "sneaky".to_owned())]),
        ("/keys/rotate", vec![("key_id", id.to_string())]),
        ("/keys/rotate", vec![("key_id", "abc".to_owned())]),
    ] {
        let response = signed_out
            .post(app.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(
            response.headers()["location"],
            "/login?next=/keys",
            "{path}"
        );
        let html = response.text().await.unwrap();
        assert!(!html.contains(r#"data-testid="new-api-key""#), "{path}");
    }

    assert_eq!(all_keys(&mut conn).await, before, "nothing changed");
    assert!(outbox(&mut conn).await.is_empty());
    assert_eq!(exchange(&app, &key).await.0, 200);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));

    // The CSV download needs a session too (the signed out are sent to
    // sign in, then to the credits page); bad input is a 400 first.
    let response = signed_out
        .get(app.url("/credits/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=/credits");
    assert!(!response.text().await.unwrap().contains("signup_bonus"));
    let response = app
        .client
        .get(app.url("/credits/export.csv?kind=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // The pages send the signed out to sign in, and back afterwards
    // (navigation.rs covers the return).
    let browser = app.browser();
    for (page, next) in [
        ("/dashboard", "/dashboard"),
        ("/credits", "/credits"),
        (
            "/credits?kind=fix_consumed&page=2",
            "/credits%3Fkind%3Dfix_consumed%26page%3D2",
        ),
        ("/keys", "/keys"),
        ("/keys?confirm_revoke=1", "/keys%3Fconfirm_revoke%3D1"),
    ] {
        let response = browser.get(app.url(page)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{page}");
        assert_eq!(
            response.headers()["location"],
            format!("/login?next={next}").as_str(),
            "{page}"
        );
        assert!(!response.text().await.unwrap().contains("sign-in-required"));
    }
}

fn test_links() -> rsolv_platform::server::email::templates::EmailLinks {
    rsolv_platform::server::email::templates::EmailLinks::parse("http://127.0.0.1:3000").unwrap()
}

/// The `expires_at` of key `id`.
async fn expires_at(conn: &mut AsyncPgConnection, id: i64) -> Option<chrono::DateTime<Utc>> {
    api_keys::table
        .find(id)
        .select(api_keys::expires_at)
        .first(conn)
        .await
        .unwrap()
}

/// Asserts `at` is `days` days from now, give or take a minute.
fn assert_days_ahead(at: Option<chrono::DateTime<Utc>>, days: i64) {
    let at = at.expect("an expiry");
    let off = (at - (Utc::now() + Duration::days(days)))
        .num_seconds()
        .abs();
    assert!(off < 60, "{at} is not {days} days ahead");
}

#[tokio::test]
async fn keys_expire_only_after_an_offered_choice_and_an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let c = crate::authz::signed_in(&app, &email("expiry"), "Expiry").await;
    let mut conn = app.conn().await;
    assert_eq!(
        expires_at(&mut conn, c.key_id).await,
        None,
        "default: never"
    );

    // Each offered choice, through the server function.
    for (choice, days) in [
        ("never", None),
        ("", None),
        ("30", Some(30)),
        ("90", Some(90)),
        ("365", Some(365)),
    ] {
        let (status, _, body) = app
            .server_fn(
                &c.browser,
                "portal/keys/create",
                &[("name", "ci"), ("expires", choice)],
            )
            .await;
        assert_eq!(status, 200, "{choice}: {body}");
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = created["key"]["id"].as_i64().unwrap();
        let at = expires_at(&mut conn, id).await;
        match days {
            None => {
                assert_eq!(at, None, "{choice}");
                assert_eq!(created["key"]["status"]["state"], "active", "{body}");
            }
            Some(days) => {
                assert_days_ahead(at, days);
                assert_eq!(created["key"]["status"]["state"], "expiring", "{body}");
            }
        }
    }

    // Forged values are refused with a clear error and write nothing.
    let before = all_keys(&mut conn).await;
    for forged in ["7", "0", "-30", "3650", "30d", "forever", "90.0"] {
        let (status, _, body) = app
            .server_fn(
                &c.browser,
                "portal/keys/create",
                &[("name", "forged"), ("expires", forged)],
            )
            .await;
        assert_eq!(status, 422, "{forged}: {body}");
        assert!(
            body.contains("expiry must be never, 30, 90 or 365 days"),
            "{forged}: {body}"
        );
    }
    assert_eq!(all_keys(&mut conn).await, before, "nothing written");

    // The no-JavaScript form: an offered choice creates the key and shows
    // it once; a forged one renders the error with 422 and writes nothing.
    let response = c
        .browser
        .post(app.url("/keys/create"))
        .header("origin", app.url(""))
        .form(&[("name", "nojs"), ("expires", "90")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"data-testid="new-api-key""#), "{html}");
    let newest = all_keys(&mut conn).await.pop().unwrap();
    assert_eq!(newest.name, "nojs");
    assert_days_ahead(newest.expires_at, 90);
    let before = all_keys(&mut conn).await;
    let response = c
        .browser
        .post(app.url("/keys/create"))
        .header("origin", app.url(""))
        .form(&[("name", "nojs-forged"), ("expires", "1000")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("expiry must be never, 30, 90 or 365 days"),
        "{html}"
    );
    assert!(!html.contains(r#"data-testid="new-api-key""#));
    assert_eq!(all_keys(&mut conn).await, before, "nothing written");

    // At the boundary: a key a minute before its expiry works; a second
    // after it, the Action API refuses it with 401 (like a rotated key past
    // its grace), and the page lists it as expired, without actions.
    let (status, _, body) = app
        .server_fn(
            &c.browser,
            "portal/keys/create",
            &[("name", "short-lived"), ("expires", "30")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_i64().unwrap();
    diesel::update(api_keys::table.find(id))
        .set(api_keys::expires_at.eq(Some(Utc::now() + Duration::minutes(1))))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(exchange(&app, &secret).await.0, 200);
    diesel::update(api_keys::table.find(id))
        .set(api_keys::expires_at.eq(Some(Utc::now() - Duration::seconds(1))))
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, body) = exchange(&app, &secret).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let html = keys_page(&app, &c.browser).await;
    let prefix = &secret[..12];
    assert!(html.contains("Expired "), "{html}");
    assert!(
        !html.contains(&format!("Revoke short-lived ({prefix}…)")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("Rotate short-lived ({prefix}…)")),
        "{html}"
    );
    // A key with a chosen expiry shows its date.
    assert!(html.contains("Expires on "), "{html}");
}

/// The `/keys` page as `browser` sees it.
async fn keys_page(app: &TestApp, browser: &reqwest::Client) -> String {
    let response = browser.get(app.url("/keys")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_suspended_customers_keys_are_listed_as_suspended_and_revoked_keys_have_no_actions() {
    let app = TestApp::spawn().await;
    let c = crate::authz::signed_in(&app, &email("suspended-keys"), "Suspended").await;
    let mut conn = app.conn().await;
    let (status, _, body) = app
        .server_fn(&c.browser, "portal/keys/create", &[("name", "gone")])
        .await;
    assert_eq!(status, 200, "{body}");
    let gone: serde_json::Value = serde_json::from_str(&body).unwrap();
    let gone_id = gone["key"]["id"].as_i64().unwrap();
    let gone_prefix = gone["key"]["prefix"].as_str().unwrap().to_owned();
    let (status, _, body) = app
        .server_fn(
            &c.browser,
            "portal/keys/revoke",
            &[("key_id", &gone_id.to_string())],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Before any use the page says so; after one, when.
    let html = keys_page(&app, &c.browser).await;
    assert!(html.contains("Never used"), "{html}");
    assert_eq!(exchange(&app, &c.key).await.0, 200);
    let html = keys_page(&app, &c.browser).await;
    assert!(html.contains("Last used "), "{html}");
    assert!(html.contains(">Active<"), "{html}");

    diesel::update(rsolv_platform::server::db::schema::customers::table.find(c.customer_id))
        .set(rsolv_platform::server::db::schema::customers::status.eq("suspended"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(exchange(&app, &c.key).await.0, 403);

    let (status, _, body) = app.server_fn(&c.browser, "portal/keys", &[]).await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states: Vec<(i64, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_i64().unwrap(),
                k["status"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (gone_id, "revoked".to_owned()),
            (c.key_id, "suspended".to_owned())
        ]
    );

    let html = keys_page(&app, &c.browser).await;
    assert!(
        html.contains("Suspended: refused while your account is suspended"),
        "{html}"
    );
    assert!(!html.contains(">Active<"), "{html}");
    assert!(html.contains("Revoked "), "{html}");
    assert!(
        !html.contains(&format!("Revoke gone ({gone_prefix}…)")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("Rotate gone ({gone_prefix}…)")),
        "{html}"
    );
    let live_prefix = &c.key[..12];
    assert!(
        !html.contains(&format!("Rotate Suspended ({live_prefix}…)")),
        "a suspended key cannot be rotated: {html}"
    );
}
