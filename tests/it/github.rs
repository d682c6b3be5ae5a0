//! GitHub Marketplace: `POST /webhooks/github` with the fixtures of
//! `tests/fixtures/github/` (signature, delivery records, duplicates, each
//! `marketplace_purchase` action's effect on customers, plans, GitHub links,
//! pending changes and the email outbox).

use crate::harness::{
    leptos_options, localstripe_base, test_config_with, TestApp, STRIPE_TEST_KEY,
};
use chrono::{DateTime, TimeZone, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::billing::customers::{find_customer, Customer};
use rsolv_platform::server::billing::pricing::PricingCatalog;
use rsolv_platform::server::cli::platform_state;
use rsolv_platform::server::db::schema::{
    api_keys, credit_ledger_entries, customer_github_accounts, customers, email_outbox,
    github_deliveries, github_pending_changes, jobs, users,
};
use rsolv_platform::server::jobs::{run_until_idle, KIND_STRIPE_CREATE_CUSTOMER};
use rsolv_platform::server::marketplace::credits::{grant_period_job, KIND_GITHUB_GRANT_PERIOD};
use rsolv_platform::server::marketplace::events::{
    apply_due_pending_changes, KIND_GITHUB_APPLY_PENDING_CHANGE,
};
use rsolv_platform::server::marketplace::signature::sign;
use rsolv_platform::server::state::AppState;
use serde_json::Value;

const SECRET: &str = "gh-webhook-secret-current";
const SECRET_PREVIOUS: &str = "gh-webhook-secret-previous";
const PLANS: &str = "7001=pro,7002=payg,7003=trial";
const VARS: &[(&str, &str)] = &[
    (
        "GITHUB_WEBHOOK_SECRET",
        "gh-webhook-secret-current,gh-webhook-secret-previous",
    ),
    ("GITHUB_MARKETPLACE_PLANS", PLANS),
];

/// Credits of a Pro period (`PRO_CREDITS_PER_PERIOD`'s default).
const PRO_CREDITS: i64 = 60;

fn pricing() -> PricingCatalog {
    PricingCatalog::default()
}

/// The fixtures' organization.
const ACCOUNT_ID: i64 = 18001;
const ACCOUNT_LOGIN: &str = "octo-org";
const BILLING_EMAIL: &str = "billing-octo-org@example.com";

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github")
        .join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn purchase(action: &str) -> Value {
    fixture(&format!("marketplace_purchase.{action}"))
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(VARS).await
}

/// A state over the app's database (for jobs), without Stripe: Stripe
/// jobs stay queued.
fn state(app: &TestApp) -> AppState {
    platform_state(test_config_with(&app.db.url, VARS), leptos_options()).expect("state")
}

/// POSTs raw `body` with the given headers (`None` leaves one out).
async fn post_raw(
    app: &TestApp,
    event: Option<&str>,
    delivery: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/webhooks/github"))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/test")
        .body(body.to_vec());
    if let Some(event) = event {
        request = request.header("x-github-event", event);
    }
    if let Some(delivery) = delivery {
        request = request.header("x-github-delivery", delivery);
    }
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POSTs `payload` as GitHub would: signed with [`SECRET`].
async fn deliver(app: &TestApp, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
    let body = serde_json::to_vec_pretty(payload).unwrap();
    post_raw(
        app,
        Some(event),
        Some(delivery),
        Some(&sign(SECRET, &body)),
        &body,
    )
    .await
}

/// Delivers a `marketplace_purchase` payload and expects it processed;
/// returns the customer id the answer names.
async fn deliver_ok(app: &TestApp, delivery: &str, payload: &Value) -> Option<i64> {
    let (status, body) = deliver(app, "marketplace_purchase", delivery, payload).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "processed", "{body}");
    assert_eq!(body["duplicate"], false, "{body}");
    body["customer_id"].as_i64()
}

async fn customer(app: &TestApp, id: i64) -> Customer {
    find_customer(&mut app.conn().await, id).await.unwrap()
}

/// (account id, login, type) of the customer's GitHub link.
async fn github_link(app: &TestApp, customer_id: i64) -> Option<(i64, String, String)> {
    customer_github_accounts::table
        .find(customer_id)
        .select((
            customer_github_accounts::github_account_id,
            customer_github_accounts::github_account_login,
            customer_github_accounts::github_account_type,
        ))
        .first(&mut app.conn().await)
        .await
        .optional()
        .unwrap()
}

/// (kind, recipient) of every queued email, oldest first.
async fn outbox(app: &TestApp) -> Vec<(String, String)> {
    email_outbox::table
        .order(email_outbox::id)
        .select((email_outbox::kind, email_outbox::to_address))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

#[derive(Debug, Queryable)]
#[allow(dead_code)] // read through Debug and the fields below
struct DeliveryRow {
    delivery_id: String,
    event: String,
    action: Option<String>,
    account_id: Option<i64>,
    customer_id: Option<i64>,
    status: String,
    attempts: i32,
    error: Option<String>,
    processed_at: Option<DateTime<Utc>>,
}

async fn delivery_row(app: &TestApp, id: &str) -> Option<DeliveryRow> {
    github_deliveries::table
        .find(id)
        .select((
            github_deliveries::delivery_id,
            github_deliveries::event,
            github_deliveries::action,
            github_deliveries::account_id,
            github_deliveries::customer_id,
            github_deliveries::status,
            github_deliveries::attempts,
            github_deliveries::error,
            github_deliveries::processed_at,
        ))
        .first(&mut app.conn().await)
        .await
        .optional()
        .unwrap()
}

/// (plan, effective_at, status) of the customer's pending changes, oldest first.
async fn pending_changes(app: &TestApp, customer_id: i64) -> Vec<(String, DateTime<Utc>, String)> {
    github_pending_changes::table
        .filter(github_pending_changes::customer_id.eq(customer_id))
        .order(github_pending_changes::id)
        .select((
            github_pending_changes::plan,
            github_pending_changes::effective_at,
            github_pending_changes::status,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

fn effective_2030() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

/// Purchases Pro for the fixtures' organization; returns the customer id.
async fn purchased(app: &TestApp) -> i64 {
    deliver_ok(app, "d-purchased", &purchase("purchased"))
        .await
        .expect("a customer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchased_provisions_a_customer_with_an_invited_owner() {
    let app = spawn().await;
    let id = purchased(&app).await;

    let c = customer(&app, id).await;
    assert_eq!(
        (
            c.email.as_str(),
            c.name.as_str(),
            c.source.as_str(),
            c.plan.as_str()
        ),
        (BILLING_EMAIL, ACCOUNT_LOGIN, "gh_marketplace", "pro")
    );
    assert_eq!(
        c.credit_balance,
        5 + PRO_CREDITS,
        "the signup bonus, as every customer, and the first Pro period"
    );
    assert_eq!(
        app.balance_and_ledger_sum(id).await,
        (5 + PRO_CREDITS, 5 + PRO_CREDITS)
    );
    assert_eq!(
        github_link(&app, id).await,
        Some((
            ACCOUNT_ID,
            ACCOUNT_LOGIN.to_owned(),
            "Organization".to_owned()
        ))
    );
    // An owner without a password, invited by email; no API key until the
    // owner follows the invite (tests/it/claim.rs).
    let owner: (String, Option<String>, String) = users::table
        .filter(users::customer_id.eq(id))
        .select((users::email, users::password_hash, users::role))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(owner, (BILLING_EMAIL.to_owned(), None, "owner".to_owned()));
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(
        outbox(&app).await,
        vec![
            ("welcome".to_owned(), BILLING_EMAIL.to_owned()),
            ("invite".to_owned(), BILLING_EMAIL.to_owned()),
        ]
    );
    let token = app.mailed_token(BILLING_EMAIL, "invite").await;
    assert!(!token.is_empty());
    // Recorded.
    let row = delivery_row(&app, "d-purchased").await.unwrap();
    assert_eq!(
        (
            row.event.as_str(),
            row.action.as_deref(),
            row.account_id,
            row.customer_id,
            row.status.as_str(),
            row.attempts
        ),
        (
            "marketplace_purchase",
            Some("purchased"),
            Some(ACCOUNT_ID),
            Some(id),
            "processed",
            1
        )
    );
    assert!(row.processed_at.is_some() && row.error.is_none(), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_sets_the_new_plan_now() {
    let app = spawn().await;
    let id = purchased(&app).await;
    let emails = outbox(&app).await;

    assert_eq!(
        deliver_ok(&app, "d-changed", &purchase("changed")).await,
        Some(id)
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "payg");
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(outbox(&app).await, emails, "a plan change sends nothing");
    let row = delivery_row(&app, "d-changed").await.unwrap();
    assert_eq!(
        (row.action.as_deref(), row.status.as_str(), row.customer_id),
        (Some("changed"), "processed", Some(id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_change_takes_effect_at_githubs_effective_date() {
    let app = spawn().await;
    let id = purchased(&app).await;

    assert_eq!(
        deliver_ok(&app, "d-pending", &purchase("pending_change")).await,
        Some(id)
    );
    // Recorded, not applied.
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
    assert_eq!(
        pending_changes(&app, id).await,
        vec![("trial".to_owned(), effective_2030(), "pending".to_owned())]
    );
    // Scheduled for that date: the worker does not run it now.
    let (run_at, job_status): (DateTime<Utc>, String) = jobs::table
        .filter(jobs::kind.eq(KIND_GITHUB_APPLY_PENDING_CHANGE))
        .select((jobs::run_at, jobs::status))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!((run_at, job_status.as_str()), (effective_2030(), "queued"));
    let runs = run_until_idle(&state(&app)).await.unwrap();
    assert!(
        runs.iter()
            .all(|r| r.kind != KIND_GITHUB_APPLY_PENDING_CHANGE),
        "{runs:?}"
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");

    // A second before the date: nothing; at the date: applied, once.
    let mut conn = app.conn().await;
    let before = effective_2030() - chrono::Duration::seconds(1);
    assert_eq!(
        apply_due_pending_changes(&mut conn, &pricing(), before)
            .await
            .unwrap(),
        0
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
    assert_eq!(
        apply_due_pending_changes(&mut conn, &pricing(), effective_2030())
            .await
            .unwrap(),
        1
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "trial");
    assert_eq!(pending_changes(&app, id).await[0].2, "applied");
    assert_eq!(
        apply_due_pending_changes(&mut conn, &pricing(), effective_2030())
            .await
            .unwrap(),
        0
    );
}

/// Moves the pending change and its job to a minute ago, as if the
/// effective date had come.
async fn make_pending_change_due(app: &TestApp) {
    let mut conn = app.conn().await;
    let past = Utc::now() - chrono::Duration::minutes(1);
    diesel::update(github_pending_changes::table)
        .set(github_pending_changes::effective_at.eq(past))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::update(jobs::table.filter(jobs::kind.eq(KIND_GITHUB_APPLY_PENDING_CHANGE)))
        .set(jobs::run_at.eq(past))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn pending_job_runs(app: &TestApp) -> Vec<String> {
    run_until_idle(&state(app))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == KIND_GITHUB_APPLY_PENDING_CHANGE)
        .map(|r| r.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_change_job_applies_it_once_due() {
    let app = spawn().await;
    let id = purchased(&app).await;
    deliver_ok(&app, "d-pending", &purchase("pending_change")).await;
    make_pending_change_due(&app).await;

    assert_eq!(pending_job_runs(&app).await, vec!["done"]);
    assert_eq!(customer(&app, id).await.plan.as_str(), "trial");
    assert_eq!(pending_changes(&app, id).await[0].2, "applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_change_cancelled_drops_the_recorded_change() {
    let app = spawn().await;
    let id = purchased(&app).await;
    deliver_ok(&app, "d-pending", &purchase("pending_change")).await;

    assert_eq!(
        deliver_ok(
            &app,
            "d-pending-cancelled",
            &purchase("pending_change_cancelled")
        )
        .await,
        Some(id)
    );
    assert_eq!(
        pending_changes(&app, id).await,
        vec![("trial".to_owned(), effective_2030(), "cancelled".to_owned())]
    );
    // Its date comes and goes: nothing changes.
    let later = effective_2030() + chrono::Duration::days(1);
    assert_eq!(
        apply_due_pending_changes(&mut app.conn().await, &pricing(), later)
            .await
            .unwrap(),
        0
    );
    make_pending_change_due(&app).await;
    assert_eq!(pending_job_runs(&app).await, vec!["done"]);
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_falls_back_keeps_the_customer_and_a_new_purchase_relinks() {
    let app = spawn().await;
    let id = purchased(&app).await;
    // The owner's key (issued when they follow the invite).
    app.issue_key(id).await;
    deliver_ok(&app, "d-pending", &purchase("pending_change")).await;

    assert_eq!(
        deliver_ok(&app, "d-cancelled", &purchase("cancelled")).await,
        Some(id)
    );
    let c = customer(&app, id).await;
    assert_eq!(
        (c.plan.as_str(), c.status.as_str(), c.credit_balance),
        ("trial", "active", 5 + PRO_CREDITS),
        "no clawback of the Pro period granted"
    );
    assert!(c.can_use_service(), "keys keep working on the trial rules");
    let revoked: Vec<Option<DateTime<Utc>>> = api_keys::table
        .filter(api_keys::customer_id.eq(id))
        .select(api_keys::revoked_at)
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(revoked, vec![None]);
    assert_eq!(
        github_link(&app, id).await.map(|l| l.0),
        Some(ACCOUNT_ID),
        "the link stays"
    );
    assert_eq!(pending_changes(&app, id).await[0].2, "cancelled");

    // Buying again (account id known) reuses the customer.
    let emails = outbox(&app).await;
    let mut again = purchase("purchased");
    again["marketplace_purchase"]["plan"]["id"] = 7002.into();
    assert_eq!(
        deliver_ok(&app, "d-purchased-again", &again).await,
        Some(id)
    );
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(customer(&app, id).await.plan.as_str(), "payg");
    assert_eq!(outbox(&app).await, emails);

    // With a card on file, a cancellation falls back to pay-as-you-go.
    diesel::update(customers::table.find(id))
        .set(customers::has_payment_method.eq(true))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    deliver_ok(&app, "d-cancelled-2", &purchase("cancelled")).await;
    assert_eq!(customer(&app, id).await.plan.as_str(), "payg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_for_an_existing_customer_links_instead_of_creating() {
    let app = spawn().await;
    let (id, _key) = app.onboard(BILLING_EMAIL).await;
    let emails = outbox(&app).await;

    assert_eq!(
        deliver_ok(&app, "d-purchased", &purchase("purchased")).await,
        Some(id)
    );
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(app.count("users").await, 1);
    let c = customer(&app, id).await;
    assert_eq!(
        (c.plan.as_str(), c.source.as_str()),
        ("pro", "direct"),
        "linked: the plan is GitHub's, the signup source stays"
    );
    assert_eq!(
        github_link(&app, id).await,
        Some((
            ACCOUNT_ID,
            ACCOUNT_LOGIN.to_owned(),
            "Organization".to_owned()
        ))
    );
    assert_eq!(outbox(&app).await, emails, "no second welcome or invite");

    // The email matches a customer linked to another GitHub account: refused.
    let mut other = purchase("purchased");
    other["marketplace_purchase"]["account"]["id"] = 99999.into();
    other["marketplace_purchase"]["account"]["login"] = "someone-else".into();
    let (status, body) = deliver(&app, "marketplace_purchase", "d-other", &other).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("another GitHub account"),
        "{body}"
    );
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(
        delivery_row(&app, "d-other").await.unwrap().status,
        "failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_email_gets_a_placeholder_until_github_gives_one() {
    let app = spawn().await;
    let mut bought = purchase("purchased");
    bought["marketplace_purchase"]["account"] = serde_json::json!({
        "type": "User", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "login": "octocat"
    });
    bought["sender"]["email"] = Value::Null;
    let id = deliver_ok(&app, "d-user", &bought).await.unwrap();

    let placeholder = "583231+octocat@users.noreply.github.com";
    let c = customer(&app, id).await;
    assert_eq!(
        (c.email.as_str(), c.plan.as_str(), c.source.as_str()),
        (placeholder, "pro", "gh_marketplace")
    );
    assert_eq!(app.count("users").await, 0);
    assert!(
        outbox(&app).await.is_empty(),
        "nothing mailed to a placeholder"
    );

    // A later event with the sender's email claims the account.
    let mut changed = purchase("changed");
    changed["marketplace_purchase"]["account"] = bought["marketplace_purchase"]["account"].clone();
    changed["sender"]["email"] = "octocat-owner@example.com".into();
    assert_eq!(deliver_ok(&app, "d-user-changed", &changed).await, Some(id));
    assert_eq!(customer(&app, id).await.email, "octocat-owner@example.com");
    assert_eq!(
        outbox(&app).await,
        vec![("invite".to_owned(), "octocat-owner@example.com".to_owned())]
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_signature_is_401_and_changes_nothing() {
    let app = spawn().await;
    let body = serde_json::to_vec(&purchase("purchased")).unwrap();
    let event = Some("marketplace_purchase");
    let wrong = sign("not-the-secret", &body);
    let tampered = sign(SECRET, br#"{"action":"purchased"}"#);
    for signature in [
        Some(wrong.as_str()),
        Some(tampered.as_str()),
        Some("sha256=zz"),
        Some("sha1=0123"),
        None,
    ] {
        let (status, reply) = post_raw(&app, event, Some("d-bad"), signature, &body).await;
        assert_eq!(status, 401, "{signature:?}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains("signature"),
            "{reply}"
        );
    }
    assert_eq!(app.count("github_deliveries").await, 0);
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("email_outbox").await, 0);

    // The previous secret (rotation) is still accepted.
    let (status, reply) = post_raw(
        &app,
        event,
        Some("d-previous"),
        Some(&sign(SECRET_PREVIOUS, &body)),
        &body,
    )
    .await;
    assert_eq!((status, &reply["status"]), (200, &"processed".into()));

    // Without a configured secret every delivery is refused.
    let unconfigured = TestApp::spawn_with(&[("GITHUB_MARKETPLACE_PLANS", PLANS)]).await;
    let (status, _) = post_raw(
        &unconfigured,
        event,
        Some("d-x"),
        Some(&sign(SECRET, &body)),
        &body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(unconfigured.count("github_deliveries").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_headers_or_a_non_object_body_is_400() {
    let app = spawn().await;
    let body = serde_json::to_vec(&purchase("purchased")).unwrap();
    let signature = sign(SECRET, &body);
    let (status, _) = post_raw(
        &app,
        Some("marketplace_purchase"),
        None,
        Some(&signature),
        &body,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_raw(&app, None, Some("d-1"), Some(&signature), &body).await;
    assert_eq!(status, 400);
    let (status, _) = post_raw(
        &app,
        Some("marketplace_purchase"),
        Some("d-1"),
        Some(&sign(SECRET, b"[1]")),
        b"[1]",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(app.count("github_deliveries").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_is_acknowledged_and_applied_once() {
    let app = spawn().await;
    let id = purchased(&app).await;
    let emails = outbox(&app).await;
    // A redelivery of the same purchase, and the same id reused for a
    // different body: both acknowledged, neither applied again.
    let (status, body) = deliver(
        &app,
        "marketplace_purchase",
        "d-purchased",
        &purchase("purchased"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["duplicate"], &body["status"]),
        (&true.into(), &"duplicate".into())
    );
    let (status, body) = deliver(
        &app,
        "marketplace_purchase",
        "d-purchased",
        &purchase("changed"),
    )
    .await;
    assert_eq!((status, &body["duplicate"]), (200, &true.into()));

    assert_eq!(app.count("customers").await, 1);
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(app.count("github_deliveries").await, 1);
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
    assert_eq!(outbox(&app).await, emails);
    assert_eq!(delivery_row(&app, "d-purchased").await.unwrap().attempts, 1);

    // Concurrent copies of one new delivery: exactly one applies it.
    let changed = purchase("changed");
    let replies = futures::future::join_all(
        (0..4).map(|_| deliver(&app, "marketplace_purchase", "d-changed", &changed)),
    )
    .await;
    let applied = replies
        .iter()
        .filter(|(s, b)| *s == 200 && b["status"] == "processed")
        .count();
    let duplicates = replies
        .iter()
        .filter(|(s, b)| *s == 200 && b["duplicate"] == true)
        .count();
    assert_eq!((applied, duplicates), (1, 3), "{replies:?}");
    assert_eq!(customer(&app, id).await.plan.as_str(), "payg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_unhandled_events_are_recorded_and_ignored() {
    let app = spawn().await;
    let (status, body) = deliver(&app, "ping", "d-ping", &fixture("ping")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ignored");
    let row = delivery_row(&app, "d-ping").await.unwrap();
    assert_eq!(
        (row.event.as_str(), row.action, row.status.as_str()),
        ("ping", None, "ignored")
    );
    assert!(row.processed_at.is_some());
    // An action GitHub may add later.
    let mut future = purchase("purchased");
    future["action"] = "renewed".into();
    let (status, body) = deliver(&app, "marketplace_purchase", "d-renewed", &future).await;
    assert_eq!((status, &body["status"]), (200, &"ignored".into()));
    assert_eq!(app.count("customers").await, 0);
    // Redelivered: a duplicate.
    let (_, body) = deliver(&app, "ping", "d-ping", &fixture("ping")).await;
    assert_eq!(body["status"], "duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_plan_fails_the_delivery_until_redelivered_with_the_mapping() {
    let app = TestApp::spawn_with(&[
        ("GITHUB_WEBHOOK_SECRET", SECRET),
        ("GITHUB_MARKETPLACE_PLANS", "7002=payg"),
    ])
    .await;
    let (status, body) = deliver(
        &app,
        "marketplace_purchase",
        "d-purchased",
        &purchase("purchased"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("7001") && error.contains("GITHUB_MARKETPLACE_PLANS"),
        "{error}"
    );
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("email_outbox").await, 0);
    let row = delivery_row(&app, "d-purchased").await.unwrap();
    assert_eq!(
        (
            row.status.as_str(),
            row.error.as_deref(),
            row.processed_at,
            row.account_id
        ),
        ("failed", Some(error), None, Some(ACCOUNT_ID))
    );

    // Same delivery again, still unmapped: still failed, attempt counted.
    let (status, _) = deliver(
        &app,
        "marketplace_purchase",
        "d-purchased",
        &purchase("purchased"),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(delivery_row(&app, "d-purchased").await.unwrap().attempts, 2);

    // The operator maps the plan and redelivers: applied.
    let fixed = TestApp::spawn_sharing(&app, VARS).await;
    let id = deliver_ok(&fixed, "d-purchased", &purchase("purchased"))
        .await
        .unwrap();
    assert_eq!(customer(&fixed, id).await.plan.as_str(), "pro");
    let row = delivery_row(&fixed, "d-purchased").await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.error, row.attempts),
        ("processed", None, 3)
    );
}

// --- Pro credits per period -------------------------------------------------

/// Midnight (UTC) 20 days from today: GitHub's next billing date in the
/// dated payloads, so the current period (a month before it → it) holds now.
fn next_billing() -> DateTime<Utc> {
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap();
    today.and_utc() + chrono::Duration::days(20)
}

fn months(at: DateTime<Utc>, n: i32) -> DateTime<Utc> {
    let m = chrono::Months::new(n.unsigned_abs());
    if n >= 0 {
        at.checked_add_months(m).unwrap()
    } else {
        at.checked_sub_months(m).unwrap()
    }
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// The fixture of `action` dated now, billing next on [`next_billing`],
/// for Marketplace plan `plan_id`.
fn dated(action: &str, plan_id: i64) -> Value {
    let mut p = purchase(action);
    p["effective_date"] = Utc::now().to_rfc3339().into();
    p["marketplace_purchase"]["next_billing_date"] = next_billing().to_rfc3339().into();
    p["marketplace_purchase"]["plan"]["id"] = plan_id.into();
    p
}

/// (amount, idempotency key) of the customer's subscription grants, oldest first.
async fn grants(app: &TestApp, customer_id: i64) -> Vec<(i64, String)> {
    credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq("subscription_grant"))
        .order(credit_ledger_entries::id)
        .select((
            credit_ledger_entries::amount,
            credit_ledger_entries::idempotency_key,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

/// (dedupe key, run_at, status) of the grant jobs, oldest first.
async fn grant_jobs(app: &TestApp) -> Vec<(String, DateTime<Utc>, String)> {
    jobs::table
        .filter(jobs::kind.eq(KIND_GITHUB_GRANT_PERIOD))
        .order(jobs::id)
        .select((
            jobs::dedupe_key.assume_not_null(),
            jobs::run_at,
            jobs::status,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

/// Moves the queued grant jobs to a minute ago and runs every due job;
/// returns the grant jobs' statuses.
async fn run_due_grant_jobs(app: &TestApp) -> Vec<String> {
    diesel::update(
        jobs::table
            .filter(jobs::kind.eq(KIND_GITHUB_GRANT_PERIOD))
            .filter(jobs::status.eq("queued")),
    )
    .set(jobs::run_at.eq(Utc::now() - chrono::Duration::minutes(1)))
    .execute(&mut app.conn().await)
    .await
    .unwrap();
    run_until_idle(&state(app))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == KIND_GITHUB_GRANT_PERIOD)
        .map(|r| r.status)
        .collect()
}

async fn assert_balanced(app: &TestApp, customer_id: i64, expected: i64) {
    assert_eq!(
        app.balance_and_ledger_sum(customer_id).await,
        (expected, expected),
        "cached balance and ledger sum"
    );
}

fn grant_key(period_start: DateTime<Utc>) -> String {
    format!("gh:period:{ACCOUNT_ID}:{}", day(period_start))
}

fn job_key(period_start: DateTime<Utc>) -> String {
    format!(
        "{KIND_GITHUB_GRANT_PERIOD}:{ACCOUNT_ID}:{}",
        day(period_start)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pro_purchase_grants_the_period_once_and_schedules_the_next() {
    let app = spawn().await;
    let anchor = next_billing();
    let bought = dated("purchased", 7001);
    let id = deliver_ok(&app, "d-pro", &bought).await.unwrap();

    let first = vec![(PRO_CREDITS, grant_key(months(anchor, -1)))];
    assert_eq!(grants(&app, id).await, first);
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
    assert_eq!(
        grant_jobs(&app).await,
        vec![(job_key(anchor), anchor, "queued".to_owned())],
        "the next period's grant, due at GitHub's next billing date"
    );

    // Redelivered (same GUID): a duplicate. The same purchase under a new
    // GUID, a `changed` back to Pro, or a cancel and re-purchase within the
    // period: the period is granted already.
    let (_, body) = deliver(&app, "marketplace_purchase", "d-pro", &bought).await;
    assert_eq!(body["duplicate"], true, "{body}");
    deliver_ok(&app, "d-pro-again", &bought).await;
    deliver_ok(&app, "d-to-payg", &dated("changed", 7002)).await;
    deliver_ok(&app, "d-to-pro", &dated("changed", 7001)).await;
    deliver_ok(&app, "d-cancel", &dated("cancelled", 7001)).await;
    deliver_ok(&app, "d-rebuy", &bought).await;
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
    assert_eq!(grants(&app, id).await, first);
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
    assert_eq!(
        grant_jobs(&app).await,
        vec![(job_key(anchor), anchor, "queued".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_period_job_grants_while_pro_and_schedules_the_following() {
    let app = spawn().await;
    let anchor = next_billing();
    let id = deliver_ok(&app, "d-pro", &dated("purchased", 7001))
        .await
        .unwrap();

    assert_eq!(run_due_grant_jobs(&app).await, vec!["done"]);
    assert_eq!(
        grants(&app, id).await,
        vec![
            (PRO_CREDITS, grant_key(months(anchor, -1))),
            (PRO_CREDITS, grant_key(anchor)),
        ]
    );
    assert_balanced(&app, id, 5 + 2 * PRO_CREDITS).await;
    let jobs_now = grant_jobs(&app).await;
    assert_eq!(jobs_now.len(), 2, "{jobs_now:?}");
    assert_eq!(jobs_now[0].2, "done");
    assert_eq!(
        jobs_now[1],
        (
            job_key(months(anchor, 1)),
            months(anchor, 1),
            "queued".to_owned()
        )
    );
    // Not due yet: nothing runs.
    assert!(run_until_idle(&state(&app))
        .await
        .unwrap()
        .iter()
        .all(|r| r.kind != KIND_GITHUB_GRANT_PERIOD));

    // The same period's job run again (a lost lease): nothing more.
    let payload: Value = jobs::table
        .filter(jobs::dedupe_key.eq(job_key(anchor)))
        .select(jobs::payload)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    grant_period_job(&state(&app), &payload).await.unwrap();
    assert_eq!(grants(&app, id).await.len(), 2);
    assert_balanced(&app, id, 5 + 2 * PRO_CREDITS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cancellation_the_period_job_grants_nothing() {
    let app = spawn().await;
    let id = deliver_ok(&app, "d-pro", &dated("purchased", 7001))
        .await
        .unwrap();
    deliver_ok(&app, "d-cancel", &dated("cancelled", 7001)).await;
    let c = customer(&app, id).await;
    assert_eq!(
        (c.plan.as_str(), c.credit_balance),
        ("trial", 5 + PRO_CREDITS),
        "the granted period is kept"
    );

    assert_eq!(run_due_grant_jobs(&app).await, vec!["done"]);
    assert_eq!(grants(&app, id).await.len(), 1);
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
    assert!(
        grant_jobs(&app).await.iter().all(|j| j.2 == "done"),
        "no further period scheduled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_change_from_pro_to_payg_the_period_job_grants_nothing() {
    let app = spawn().await;
    let id = deliver_ok(&app, "d-pro", &dated("purchased", 7001))
        .await
        .unwrap();
    deliver_ok(&app, "d-payg", &dated("changed", 7002)).await;
    assert_eq!(customer(&app, id).await.plan.as_str(), "payg");
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;

    assert_eq!(run_due_grant_jobs(&app).await, vec!["done"]);
    assert_eq!(grants(&app, id).await.len(), 1);
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
    assert!(grant_jobs(&app).await.iter().all(|j| j.2 == "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_change_to_pro_grants_when_applied() {
    let app = spawn().await;
    let id = deliver_ok(&app, "d-payg", &dated("purchased", 7002))
        .await
        .unwrap();
    assert!(grants(&app, id).await.is_empty(), "payg: no period credits");
    assert!(grant_jobs(&app).await.is_empty());

    // Pro from 2030-01-01, GitHub billing next that day.
    let mut upgrade = purchase("pending_change");
    upgrade["marketplace_purchase"]["plan"]["id"] = 7001.into();
    deliver_ok(&app, "d-pending-pro", &upgrade).await;
    assert!(grants(&app, id).await.is_empty(), "not before the date");
    assert_eq!(
        apply_due_pending_changes(&mut app.conn().await, &pricing(), effective_2030())
            .await
            .unwrap(),
        1
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
    assert_eq!(
        grants(&app, id).await,
        vec![(PRO_CREDITS, grant_key(effective_2030()))]
    );
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
    let next = months(effective_2030(), 1);
    assert_eq!(
        grant_jobs(&app).await,
        vec![(job_key(next), next, "queued".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_customer_gets_its_stripe_customer_only_once_claimed() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, VARS).await;
    let stripe_state = app.state_with(&base, VARS);
    let mut bought = purchase("purchased");
    bought["marketplace_purchase"]["account"] = serde_json::json!({
        "type": "User", "id": 583232, "login": "octocat-two"
    });
    bought["sender"]["email"] = Value::Null;
    let id = deliver_ok(&app, "d-user", &bought).await.unwrap();
    let placeholder = "583232+octocat-two@users.noreply.github.com";
    assert_eq!(customer(&app, id).await.email, placeholder);

    // The job runs and waits: no Stripe Customer under the placeholder.
    let runs = run_until_idle(&stripe_state).await.unwrap();
    let create: Vec<&str> = runs
        .iter()
        .filter(|r| r.kind == KIND_STRIPE_CREATE_CUSTOMER)
        .map(|r| r.status.as_str())
        .collect();
    assert_eq!(create, vec!["done"], "{runs:?}");
    assert!(customer(&app, id).await.stripe_customer_id.is_none());
    assert!(stripe_customers_with_email(&base, placeholder)
        .await
        .is_empty());

    // GitHub gives an email: the job is due again and creates it.
    let owner = "octocat-two-owner@example.com";
    let mut changed = purchase("changed");
    changed["marketplace_purchase"]["account"] = bought["marketplace_purchase"]["account"].clone();
    changed["sender"]["email"] = owner.into();
    deliver_ok(&app, "d-user-changed", &changed).await;
    let runs = run_until_idle(&stripe_state).await.unwrap();
    assert!(
        runs.iter()
            .any(|r| r.kind == KIND_STRIPE_CREATE_CUSTOMER && r.status == "done"),
        "{runs:?}"
    );
    let stored = customer(&app, id)
        .await
        .stripe_customer_id
        .expect("created once claimed");
    let on_stripe = stripe_customers_with_email(&base, owner).await;
    assert_eq!(on_stripe.len(), 1);
    assert_eq!(on_stripe[0]["id"], stored.as_str());
    assert!(stripe_customers_with_email(&base, placeholder)
        .await
        .is_empty());
}

async fn stripe_customers_with_email(base: &str, email: &str) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/customers"))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .query(&[("email", email), ("limit", "100")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

// --- Issue 9: free trials and one grant per period ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_trial_purchase_grants_no_paid_credits_until_the_trial_ends() {
    let app = spawn().await;
    let trial_end = next_billing();
    let mut bought = dated("purchased", 7001);
    bought["marketplace_purchase"]["on_free_trial"] = true.into();
    bought["marketplace_purchase"]["free_trial_ends_on"] = trial_end.to_rfc3339().into();
    let id = deliver_ok(&app, "d-trial", &bought).await.unwrap();

    let c = customer(&app, id).await;
    assert_eq!(c.plan.as_str(), "trial", "on the trial rules meanwhile");
    assert!(grants(&app, id).await.is_empty(), "no paid Pro credits");
    assert_balanced(&app, id, 5).await;
    assert!(grant_jobs(&app).await.is_empty());
    let pending: Vec<(String, DateTime<Utc>)> = github_pending_changes::table
        .filter(github_pending_changes::customer_id.eq(id))
        .filter(github_pending_changes::status.eq("pending"))
        .select((
            github_pending_changes::plan,
            github_pending_changes::effective_at,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(pending, vec![("pro".to_owned(), trial_end)]);
    // A redelivery under a new GUID changes nothing.
    deliver_ok(&app, "d-trial-again", &bought).await;
    assert!(grants(&app, id).await.is_empty());

    // Not before the trial's end.
    assert_eq!(
        apply_due_pending_changes(
            &mut app.conn().await,
            &pricing(),
            trial_end - chrono::Duration::hours(1)
        )
        .await
        .unwrap(),
        0
    );
    assert!(grants(&app, id).await.is_empty());
    // The trial ends: Pro, and the first paid period is granted, once.
    assert_eq!(
        apply_due_pending_changes(&mut app.conn().await, &pricing(), trial_end)
            .await
            .unwrap(),
        1
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "pro");
    assert_eq!(
        grants(&app, id).await,
        vec![(PRO_CREDITS, grant_key(trial_end))]
    );
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_free_trial_never_grants() {
    let app = spawn().await;
    let mut bought = dated("purchased", 7001);
    bought["marketplace_purchase"]["on_free_trial"] = true.into();
    bought["marketplace_purchase"]["free_trial_ends_on"] = next_billing().to_rfc3339().into();
    let id = deliver_ok(&app, "d-trial", &bought).await.unwrap();
    deliver_ok(&app, "d-cancel", &dated("cancelled", 7001)).await;
    assert_eq!(
        apply_due_pending_changes(
            &mut app.conn().await,
            &pricing(),
            next_billing() + chrono::Duration::days(1)
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(customer(&app, id).await.plan.as_str(), "trial");
    assert!(grants(&app, id).await.is_empty());
    assert_balanced(&app, id, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_next_billing_date_grants_once_per_period() {
    let app = spawn().await;
    let anchor = next_billing();
    let id = deliver_ok(&app, "d-pro", &dated("purchased", 7001))
        .await
        .unwrap();
    assert_eq!(grants(&app, id).await.len(), 1);
    // GitHub moves the billing date later, then earlier, within the period
    // (a plan change, a redelivery of an older payload): the period is paid.
    for (delivery, shift) in [("d-later", 5), ("d-earlier", -5), ("d-much-earlier", -12)] {
        let mut changed = dated("changed", 7001);
        changed["marketplace_purchase"]["next_billing_date"] =
            (anchor + chrono::Duration::days(shift)).to_rfc3339().into();
        deliver_ok(&app, delivery, &changed).await;
        assert_eq!(grants(&app, id).await.len(), 1, "after {delivery}");
    }
    assert_balanced(&app, id, 5 + PRO_CREDITS).await;
    // The next grant is due no earlier than the end of what was granted
    // (the last grid moved 12 days earlier: at the old period's end).
    let jobs_now: Vec<_> = grant_jobs(&app)
        .await
        .into_iter()
        .filter(|j| j.2 == "queued")
        .collect();
    assert_eq!(jobs_now.len(), 1, "{jobs_now:?}");
    assert_eq!(jobs_now[0].1, anchor);
    // It grants one period, and the chain goes on from there.
    assert_eq!(run_due_grant_jobs(&app).await, vec!["done"]);
    assert_eq!(grants(&app, id).await.len(), 2);
    assert_balanced(&app, id, 5 + 2 * PRO_CREDITS).await;
    // Running it again grants nothing more.
    let payload: Value = jobs::table
        .filter(jobs::kind.eq(KIND_GITHUB_GRANT_PERIOD))
        .filter(jobs::status.eq("done"))
        .order(jobs::id.desc())
        .select(jobs::payload)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    grant_period_job(&state(&app), &payload).await.unwrap();
    assert_eq!(grants(&app, id).await.len(), 2);
}
