//! Per-key activity (issue 14 item 5): each fix records the API key whose
//! report created it (the fix-attempt API through the group-commit
//! recorder, the mitigation phase store, a batch of `record_fixes_batch`),
//! later reports and merges never move it, and `/keys`, its server
//! function and the admin's customer page count per key the fixes of the
//! last 30 days and of all time and the AI gateway calls of the last 30
//! days — the customer's own only, revoked keys included.

use crate::ai::{claude_request, messages, spawn, vkey, StandIn};
use crate::authz::signed_in;
use crate::harness::{email, html_text, TestApp};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::join_all;
use rsolv_platform::server::billing::api_keys::{list_api_keys_with_activity, KeyActivity};
use rsolv_platform::server::billing::fixes::{record_fix, record_fixes_batch, FixReport};
use rsolv_platform::server::billing::ledger::{record_entry, NewEntry};
use rsolv_platform::server::billing::pricing::PricingCatalog;
use rsolv_platform::server::db::schema::fixes;
use rsolv_platform::types::values::{LedgerKind, Repository};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const LIMITS: &[(&str, &str)] = &[("RATE_LIMIT_ACTION_PER_HOUR", "1000000")];

fn links() -> rsolv_platform::server::email::templates::EmailLinks {
    rsolv_platform::server::email::templates::EmailLinks::parse("http://127.0.0.1:3000").unwrap()
}

/// A fix attempt for `acme/api` with `key`: pull request `pr`, and the
/// issue when given. Recorded either way (200, or 402 when unpaid).
async fn attempt(app: &TestApp, key: &str, issue: Option<i64>, pr: i64) {
    let mut body = json!({"github_org": "acme", "repo_name": "api", "pr_number": pr});
    if let Some(issue) = issue {
        body["issue_number"] = json!(issue);
    }
    let (status, body) = app
        .post_json("/api/v1/fix-attempts", Some(key), &body)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A deployed fix of `acme/api` issue `issue` through the mitigation
/// phase store with `key` (no pull request link: an issue-only fix).
async fn mitigated(app: &TestApp, key: &str, issue: i64) {
    let body = json!({"phase": "mitigation", "data": {"fixed": true}, "repo": "acme/api",
                      "issueNumber": issue, "commitSha": SHA});
    let (status, body) = app
        .post_json("/api/v1/phases/store", Some(key), &body)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// `fix_key → api_key_id` of the customer's fixes.
async fn fix_keys(conn: &mut AsyncPgConnection, customer_id: i64) -> BTreeMap<String, Option<i64>> {
    fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .select((fixes::fix_key, fixes::api_key_id))
        .load::<(String, Option<i64>)>(conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The domain's counts per key id.
async fn activity(conn: &mut AsyncPgConnection, customer_id: i64) -> BTreeMap<i64, KeyActivity> {
    list_api_keys_with_activity(conn, customer_id, chrono::Utc::now())
        .await
        .unwrap()
        .into_iter()
        .map(|k| {
            assert_eq!(k.key.customer_id, customer_id);
            (k.key.id, k.activity)
        })
        .collect()
}

fn counts(fixes_recent: i64, fixes_total: i64, ai_calls_recent: i64) -> KeyActivity {
    KeyActivity {
        fixes_recent,
        fixes_total,
        ai_calls_recent,
    }
}

/// Moves `table`'s row `id` 40 days into the past (outside the window).
async fn age(conn: &mut AsyncPgConnection, table: &str, id: i64) {
    let updated = diesel::sql_query(format!(
        "UPDATE {table} SET created_at = now() - interval '40 days' WHERE id = $1"
    ))
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await
    .unwrap();
    assert_eq!(updated, 1);
}

/// The text of the `/keys` list item of key `id` in `html`
/// ([`html_text`]).
fn key_item_text(html: &str, id: i64) -> String {
    let marker = format!(r#"data-key-id="{id}""#);
    let rest = html.split(&marker).nth(1).expect("the key's item");
    html_text(&rest[..rest.find("</li>").expect("a closed item")])
}

#[tokio::test]
async fn each_key_counts_the_fixes_it_first_reported_and_its_ai_calls() {
    let stand_in = StandIn::start().await;
    let app = spawn(&stand_in, LIMITS).await;
    let a = signed_in(&app, &email("perkey-a"), "Alice").await;
    let b = signed_in(&app, &email("perkey-b"), "Bobby").await;
    let (status, _, body) = app
        .server_fn(&a.browser, "portal/keys/create", &[("name", "second")])
        .await;
    assert_eq!(status, 200, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let (k1, k1_id) = (a.key.clone(), a.key_id);
    let k2 = created["secret"].as_str().unwrap().to_owned();
    let k2_id = created["key"]["id"].as_i64().unwrap();
    let mut conn = app.conn().await;
    // Enough credits that no report is refused (402).
    record_entry(
        &mut conn,
        NewEntry {
            customer_id: a.customer_id,
            amount: 100,
            kind: LedgerKind::AdminAdjustment,
            reference: None,
            idempotency_key: "perkey-credits",
        },
    )
    .await
    .unwrap();

    // Fix 1 by key 1; the same fix again through key 2 (by issue and pull
    // request): still key 1's.
    attempt(&app, &k1, Some(1), 101).await;
    attempt(&app, &k2, Some(1), 101).await;
    // Fix 2 by key 2, through the mitigation phase store.
    mitigated(&app, &k2, 2).await;
    // Fix 3 by key 2 (pull request only), then named with its issue by
    // key 1: the report attaches, the key stays key 2's.
    attempt(&app, &k2, None, 103).await;
    attempt(&app, &k1, Some(3), 103).await;
    // Fix 4 reported twice apart — by its issue (key 1) and by its pull
    // request (key 2) — then by both (key 2): merged into the older row,
    // key 1's.
    mitigated(&app, &k1, 4).await;
    attempt(&app, &k2, None, 104).await;
    attempt(&app, &k2, Some(4), 104).await;

    // A batch through the group-commit statement: new fixes by either key,
    // a duplicate within the batch through the other key, and a report of
    // fix 1 through key 2.
    let report = |issue: Option<i64>, pr: Option<i64>, key: i64| {
        let mut r = FixReport::new(Repository::parse("acme/api").unwrap(), issue, pr).unwrap();
        r.api_key_id = Some(key);
        r
    };
    let batch = vec![
        report(Some(10), None, k2_id),
        report(Some(11), Some(111), k1_id),
        report(Some(10), Some(110), k1_id),
        report(Some(1), None, k2_id),
    ];
    let pricing = PricingCatalog::default();
    let results = record_fixes_batch(&mut conn, &pricing, a.customer_id, &batch, &links())
        .await
        .unwrap();
    let batched: Vec<Option<i64>> = results.into_iter().map(|r| r.unwrap().api_key_id).collect();
    assert_eq!(
        batched,
        vec![Some(k2_id), Some(k1_id), Some(k2_id), Some(k1_id)],
        "each answer carries the fix's first reporter"
    );

    // Concurrent distinct fixes through the API (the recorder groups
    // them): five by key 1, three by key 2.
    join_all((20..28).map(|issue| {
        let key = if issue < 25 { &k1 } else { &k2 };
        attempt(&app, key, Some(issue), 100 + issue)
    }))
    .await;

    // A fix recorded without a key (as before keys were recorded): no
    // key's.
    let mut keyless = report(Some(30), None, k1_id);
    keyless.api_key_id = None;
    record_fix(&mut conn, &pricing, a.customer_id, &keyless, &links())
        .await
        .unwrap();

    let mut expected: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for (issue, key) in [
        (1, k1_id),
        (2, k2_id),
        (3, k2_id),
        (4, k1_id),
        (10, k2_id),
        (11, k1_id),
    ] {
        expected.insert(format!("issue:{issue}"), Some(key));
    }
    for issue in 20..28 {
        expected.insert(
            format!("issue:{issue}"),
            Some(if issue < 25 { k1_id } else { k2_id }),
        );
    }
    expected.insert("issue:30".into(), None);
    assert_eq!(fix_keys(&mut conn, a.customer_id).await, expected);

    // B reports the same identity as A's fix 1, with its own key.
    attempt(&app, &b.key, Some(1), 101).await;

    // AI calls: two with key 1's virtual key, one with key 2's, one of B's.
    let mut vkeys = Vec::new();
    for key in [&k1, &k2, &b.key] {
        let (status, body) = app
            .post_json(
                "/api/v1/credentials/exchange",
                Some(key),
                &json!({"providers": ["anthropic"]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        vkeys.push(vkey(&body, "anthropic"));
    }
    for vk in [&vkeys[0], &vkeys[0], &vkeys[1], &vkeys[2]] {
        let (status, _, text) = messages(&app, vk, &claude_request(false)).await;
        assert_eq!(status, 200, "{text}");
    }

    // Outside the 30 days: fix 3 (key 2's) and one of key 1's calls.
    let fix3: i64 = fixes::table
        .filter(fixes::customer_id.eq(a.customer_id))
        .filter(fixes::fix_key.eq("issue:3"))
        .select(fixes::id)
        .first(&mut conn)
        .await
        .unwrap();
    age(&mut conn, "fixes", fix3).await;
    let old_call: i64 =
        diesel::sql_query("SELECT min(id) AS id FROM ai_usage WHERE api_key_id = $1")
            .bind::<BigInt, _>(k1_id)
            .get_result::<IdRow>(&mut conn)
            .await
            .unwrap()
            .id;
    age(&mut conn, "ai_usage", old_call).await;

    // Key 1 is revoked: its counts stay.
    let (status, _, body) = app
        .server_fn(
            &a.browser,
            "portal/keys/revoke",
            &[("key_id", &k1_id.to_string())],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let k1_counts = counts(5 + 3, 3 + 5, 1);
    let k2_counts = counts(2 + 3, 3 + 3, 1);
    let a_activity = activity(&mut conn, a.customer_id).await;
    assert_eq!(a_activity[&k1_id], k1_counts, "{a_activity:?}");
    assert_eq!(a_activity[&k2_id], k2_counts, "{a_activity:?}");
    for (id, other) in &a_activity {
        if ![k1_id, k2_id].contains(id) {
            assert_eq!(*other, KeyActivity::default(), "key {id}");
        }
    }
    let b_activity = activity(&mut conn, b.customer_id).await;
    assert_eq!(b_activity[&b.key_id], counts(1, 1, 1), "{b_activity:?}");
    assert_eq!(
        b_activity.values().map(|a| a.fixes_total).sum::<i64>(),
        1,
        "A's fixes never count for B's keys"
    );

    // The server function answers the same, per key, for the session's
    // customer only.
    let (status, _, body) = app.server_fn(&a.browser, "portal/keys", &[]).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    let by_id = |id: i64| {
        listed
            .iter()
            .find(|k| k["id"] == id)
            .unwrap_or_else(|| panic!("key {id} in {body}"))
            .clone()
    };
    assert_eq!(
        by_id(k1_id)["activity"],
        json!({"fixes_recent": 8, "fixes_total": 8, "ai_calls_recent": 1})
    );
    assert_eq!(by_id(k1_id)["status"]["state"], "revoked");
    assert_eq!(
        by_id(k2_id)["activity"],
        json!({"fixes_recent": 5, "fixes_total": 6, "ai_calls_recent": 1})
    );
    assert!(listed.iter().all(|k| k["id"] != b.key_id), "{body}");

    // The page, server-rendered as without JavaScript.
    let html = app.html(&a.browser, "/keys").await;
    let item = key_item_text(&html, k1_id);
    assert!(item.contains("Revoked"), "{item}");
    assert!(
        item.contains("Fixes reported: 8 in the last 30 days · 8 in all"),
        "{item}"
    );
    assert!(item.contains("AI calls: 1 in the last 30 days"), "{item}");
    let item = key_item_text(&html, k2_id);
    assert!(
        item.contains("Fixes reported: 5 in the last 30 days · 6 in all"),
        "{item}"
    );
    assert!(item.contains("AI calls: 1 in the last 30 days"), "{item}");

    // The admin's customer page: the same counts.
    let admin = app.admin_browser(&email("perkey-admin")).await;
    let (status, detail) = app
        .admin_fn(
            &admin,
            "customer",
            &[("customer_id", &a.customer_id.to_string())],
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    let row = |id: i64| {
        detail["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row(k1_id)["activity"],
        json!({"fixes_recent": 8, "fixes_total": 8, "ai_calls_recent": 1})
    );
    assert_eq!(
        row(k2_id)["activity"],
        json!({"fixes_recent": 5, "fixes_total": 6, "ai_calls_recent": 1})
    );
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A report naming another customer's key is refused by the database
/// (the foreign key on `(customer_id, api_key_id)`), and nothing is
/// recorded: a fix can never count for a key of another customer.
#[tokio::test]
async fn a_fix_cannot_name_another_customers_key() {
    let app = TestApp::spawn().await;
    let (a, _) = app.onboard(&email("perkey-fk-a")).await;
    let (b, _) = app.onboard(&email("perkey-fk-b")).await;
    let mut conn = app.conn().await;
    let b_key = rsolv_platform::server::billing::api_keys::create_api_key(
        &mut conn,
        b,
        &rsolv_platform::types::portal::ApiKeyName::parse("b's").unwrap(),
    )
    .await
    .unwrap()
    .0
    .id;
    let mut report = FixReport::new(Repository::parse("acme/api").unwrap(), Some(1), None).unwrap();
    report.api_key_id = Some(b_key);
    let pricing = PricingCatalog::default();
    assert!(record_fix(&mut conn, &pricing, a, &report, &links())
        .await
        .is_err());
    let batch = record_fixes_batch(&mut conn, &pricing, a, &[report], &links()).await;
    assert!(
        batch.is_err() || batch.as_ref().unwrap()[0].is_err(),
        "{batch:?}"
    );
    assert!(fix_keys(&mut conn, a).await.is_empty());
    assert_eq!(
        app.balance_and_ledger_sum(a).await,
        (5, 5),
        "no credit spent"
    );
}
