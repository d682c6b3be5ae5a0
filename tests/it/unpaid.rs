//! Issue 9's money rules for fixes beyond the credits: a fix refused (402)
//! for lack of credit is billed exactly once as soon as the customer can
//! pay (card added, credits granted) or written off by an admin; and the
//! bill-on-merge mode (`GET /api/v1/fix-attempts`,
//! `POST /api/v1/fix-attempts/{id}/billing`).

use crate::harness::{email, localstripe_base, TestApp, STRIPE_TEST_KEY};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::billing::charges::{list_charges, ChargeStatus};
use rsolv_platform::server::billing::fixes::list_unpaid_fixes;
use rsolv_platform::server::billing::payment_methods::{add_card, begin_card_setup, Consent};
use rsolv_platform::server::db::schema::{credit_ledger_entries, fixes};
use rsolv_platform::server::jobs::run_until_idle;
use rsolv_platform::server::state::AppState;
use serde_json::{json, Value};

/// No free credits at all: the first fix finds none.
const NO_FREE_CREDITS: [(&str, &str); 2] = [
    ("PRICING_TRIAL_CREDITS", "0"),
    ("PRICING_BILLING_BONUS_CREDITS", "0"),
];

async fn fix_attempt(app: &TestApp, key: &str, issue: i64) -> (u16, Value) {
    app.post_json(
        "/api/v1/fix-attempts",
        Some(key),
        &json!({"github_org": "acme", "repo_name": "api", "issue_number": issue, "pr_number": 100 + issue}),
    )
    .await
}

async fn fix_row(app: &TestApp, customer_id: i64, issue: i64) -> (i64, String) {
    fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::issue_number.eq(issue))
        .select((fixes::id, fixes::billing_status))
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

async fn fix_debits(app: &TestApp, customer_id: i64) -> Vec<String> {
    credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq("fix_consumed"))
        .order(credit_ledger_entries::id.asc())
        .select(credit_ledger_entries::idempotency_key)
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

async fn run_jobs(state: &AppState) {
    for run in run_until_idle(state).await.unwrap() {
        assert_eq!(run.status, "done", "{run:?}");
    }
}

/// What the portal does to add a card: a SetupIntent confirmed on
/// localstripe with `pm`, recorded with consent.
async fn add_test_card(app: &TestApp, state: &AppState, base: &str, customer_id: i64, pm: &str) {
    // Only a verified owner may add a card (no claim: the key stays).
    app.confirm_owner_directly(customer_id).await;
    let api = state.processor.clone();
    let mut conn = app.conn().await;
    let intent = begin_card_setup(api.as_ref(), &mut conn, customer_id)
        .await
        .unwrap();
    let confirmed: Value = reqwest::Client::new()
        .post(format!("{base}/v1/setup_intents/{}/confirm", intent.id))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .form(&[("payment_method", pm)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    add_card(
        api.as_ref(),
        &mut conn,
        &state.config.pricing,
        customer_id,
        &intent.id,
        &Consent {
            given: true,
            user_id: None,
            ip: None,
            user_agent: Some("integration test".into()),
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_refused_at_zero_credits_is_charged_once_when_a_card_is_added() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &NO_FREE_CREDITS).await;
    let state = app.state_with(&base, &NO_FREE_CREDITS);
    let (customer_id, key) = app.onboard(&email("unpaid-card")).await;
    run_jobs(&state).await; // the Stripe Customer

    let (status, body) = fix_attempt(&app, &key, 1).await;
    assert_eq!(status, 402, "{body}");
    assert!(body["error"].as_str().unwrap().contains("payment method"));
    assert_eq!(fix_row(&app, customer_id, 1).await.1, "unpaid");
    let unpaid = list_unpaid_fixes(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap();
    assert_eq!(unpaid.len(), 1);
    assert!(!unpaid[0].1, "no charge on its way yet");

    add_test_card(&app, &state, &base, customer_id, "pm_card_visa").await;
    // The card's transaction wrote the fix's charge and its job.
    let charges = list_charges(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0].amount_cents, 2900);
    run_jobs(&state).await;
    let (fix_id, status) = fix_row(&app, customer_id, 1).await;
    assert_eq!(status, "charged");
    assert_eq!(
        fix_debits(&app, customer_id).await,
        vec![format!("fix:{fix_id}")]
    );

    // A second card, a repeat report, another settlement: still one charge.
    add_test_card(&app, &state, &base, customer_id, "pm_card_visa").await;
    assert_eq!(fix_attempt(&app, &key, 1).await.0, 200);
    run_jobs(&state).await;
    let charges = list_charges(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0].status, ChargeStatus::Succeeded);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));
    assert!(list_unpaid_fixes(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixes_refused_at_zero_credits_consume_credits_an_admin_grants_oldest_first() {
    let app = TestApp::spawn_with(&NO_FREE_CREDITS).await;
    let admin = app.admin_browser(&email("unpaid-admin")).await;
    let (customer_id, key) = app.onboard(&email("unpaid-credits")).await;
    for issue in 1..=3 {
        assert_eq!(fix_attempt(&app, &key, issue).await.0, 402);
    }
    let id = customer_id.to_string();
    let (_, page) = app
        .admin_fn(&admin, "customer", &[("customer_id", &id)])
        .await;
    let token = page["form_token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", id.as_str()),
                ("amount", "2"),
                ("reason", "goodwill"),
                ("form_token", token.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The two oldest are paid, one credit each; the third waits.
    assert_eq!(body, json!(2), "the adjustment's own balance after");
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));
    let (id1, s1) = fix_row(&app, customer_id, 1).await;
    let (id2, s2) = fix_row(&app, customer_id, 2).await;
    assert_eq!((s1.as_str(), s2.as_str()), ("credit", "credit"));
    assert_eq!(fix_row(&app, customer_id, 3).await.1, "unpaid");
    assert_eq!(
        fix_debits(&app, customer_id).await,
        vec![format!("fix:{id1}"), format!("fix:{id2}")]
    );
    // The same form again applies nothing and pays nothing more.
    let (status, _) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", id.as_str()),
                ("amount", "2"),
                ("reason", "goodwill"),
                ("form_token", token.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fix_debits(&app, customer_id).await.len(), 2);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));
    // Reported again, the paid fixes answer 200 and the unpaid one 402.
    assert_eq!(fix_attempt(&app, &key, 1).await.0, 200);
    assert_eq!(fix_attempt(&app, &key, 3).await.0, 402);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_writes_off_an_unpaid_fix_with_a_reason_and_it_is_never_billed() {
    let app = TestApp::spawn_with(&NO_FREE_CREDITS).await;
    let admin_email = email("writeoff-admin");
    let admin = app.admin_browser(&admin_email).await;
    let (customer_id, key) = app.onboard(&email("writeoff")).await;
    assert_eq!(fix_attempt(&app, &key, 1).await.0, 402);
    assert_eq!(fix_attempt(&app, &key, 2).await.0, 402);
    let (fix_id, _) = fix_row(&app, customer_id, 1).await;
    let (cid, fid) = (customer_id.to_string(), fix_id.to_string());

    let (status, body) = app
        .admin_fn(
            &admin,
            "fixes/write-off",
            &[("customer_id", &cid), ("fix_id", &fid), ("reason", "  ")],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Another customer's id: not found.
    let (other, _) = app.onboard(&email("writeoff-other")).await;
    let (status, _) = app
        .admin_fn(
            &admin,
            "fixes/write-off",
            &[
                ("customer_id", &other.to_string()),
                ("fix_id", &fid),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(status, 404);

    let fields = [
        ("customer_id", cid.as_str()),
        ("fix_id", fid.as_str()),
        ("reason", "false positive, customer complained"),
    ];
    let (status, body) = app.admin_fn(&admin, "fixes/write-off", &fields).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fix_row(&app, customer_id, 1).await.1, "written_off");
    let audit = app.audit_entries("fix.write_off").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, admin_email);
    assert_eq!(audit[0].1.as_deref(), Some(fid.as_str()));
    assert_eq!(
        audit[0].2.as_deref(),
        Some("false positive, customer complained")
    );
    // Again: nothing more recorded.
    assert_eq!(
        app.admin_fn(&admin, "fixes/write-off", &fields).await.0,
        200
    );
    assert_eq!(app.audit_entries("fix.write_off").await.len(), 1);
    // Shown on the customer page with its reason.
    let (_, page) = app
        .admin_fn(&admin, "customer", &[("customer_id", &cid)])
        .await;
    let row = page["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == fix_id)
        .unwrap()
        .clone();
    assert_eq!(row["billing_status"], "written_off");
    assert_eq!(
        row["written_off_reason"],
        "false positive, customer complained"
    );

    // Credits arriving pay the other unpaid fix, never the written-off one.
    let token = page["form_token"].as_str().unwrap().to_owned();
    let (status, _) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", cid.as_str()),
                ("amount", "5"),
                ("reason", "trial extension"),
                ("form_token", token.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fix_row(&app, customer_id, 1).await.1, "written_off");
    assert_eq!(fix_row(&app, customer_id, 2).await.1, "credit");
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    // A paid fix cannot be written off.
    let (paid, _) = fix_row(&app, customer_id, 2).await;
    let (status, body) = app
        .admin_fn(
            &admin,
            "fixes/write-off",
            &[
                ("customer_id", &cid),
                ("fix_id", &paid.to_string()),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

// --- Bill on merge -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_merged_reports_record_pending_and_the_billing_call_bills_once() {
    let app = TestApp::spawn_with(&[("PRICING_BILLABLE_EVENT", "merged")]).await;
    let (customer_id, key) = app.onboard(&email("merged")).await;
    let (status, body) = fix_attempt(&app, &key, 7).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billing_status"], "pending");
    let phase = json!({"phase": "mitigation", "repo": "acme/api", "issueNumber": 7,
                       "commitSha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                       "data": {"fixed": true, "prUrl": "https://github.com/acme/api/pull/107"}});
    assert_eq!(
        app.post_json("/api/v1/phases/store", Some(&key), &phase)
            .await
            .0,
        200
    );
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));

    let (status, found) = app
        .get_json(
            "/api/v1/fix-attempts?github_org=acme&repo_name=api&pr_number=107",
            Some(&key),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["github_org"], "acme");
    assert_eq!(found["repo_name"], "api");
    assert_eq!(found["pr_number"], 107);
    assert_eq!(found["billing_status"], "pending");
    let id = found["id"].as_i64().unwrap();
    assert_eq!(id, body["id"].as_i64().unwrap());

    let path = format!("/api/v1/fix-attempts/{id}/billing");
    let (status, billed) = app.post_json(&path, Some(&key), &json!(null)).await;
    assert_eq!(status, 200, "{billed}");
    assert_eq!(billed["billing_status"], "credit");
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    for _ in 0..3 {
        let (status, again) = app.post_json(&path, Some(&key), &json!(null)).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["billing_status"], "billed");
        assert_eq!(again["message"], "Already billed");
    }
    // Concurrent billing calls: still one debit.
    assert_eq!(
        fix_attempt(&app, &key, 8).await.1["billing_status"],
        "pending"
    );
    let (_, eight) = app
        .get_json(
            "/api/v1/fix-attempts?github_org=acme&repo_name=api&pr_number=108",
            Some(&key),
        )
        .await;
    let path8 = format!("/api/v1/fix-attempts/{}/billing", eight["id"]);
    let calls = (0..10).map(|_| app.post_json(&path8, Some(&key), &json!(null)));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|(_, b)| b["billing_status"] == "credit")
            .count(),
        1
    );
    assert_eq!(fix_debits(&app, customer_id).await.len(), 2);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (3, 3));

    // Scoped to the key's customer.
    let (_, other_key) = app.onboard(&email("merged-other")).await;
    let (status, body) = app
        .get_json(
            "/api/v1/fix-attempts?github_org=acme&repo_name=api&pr_number=107",
            Some(&other_key),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = app.post_json(&path, Some(&other_key), &json!(null)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    // Garbage in: JSON errors.
    for query in [
        "github_org=acme&repo_name=api&pr_number=abc",
        "github_org=acme&repo_name=api&pr_number=-1",
        "github_org=acme&repo_name=api",
        "github_org=ac%20me&repo_name=api&pr_number=1",
        "repo_name=api&pr_number=1",
        "github_org=acme&repo_name=api&pr_number=99999999999999999999",
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/fix-attempts?{query}"), Some(&key))
            .await;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let (status, body) = app
        .post_json("/api/v1/fix-attempts/abc/billing", Some(&key), &json!(null))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, _) = app.post_json(&path, None, &json!(null)).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_merged_a_billing_call_without_credit_is_402_and_billed_when_credits_arrive() {
    let app = TestApp::spawn_with(&[
        ("PRICING_BILLABLE_EVENT", "merged"),
        ("PRICING_TRIAL_CREDITS", "0"),
    ])
    .await;
    let admin = app.admin_browser(&email("merged-admin")).await;
    let (customer_id, key) = app.onboard(&email("merged-zero")).await;
    let (status, body) = fix_attempt(&app, &key, 1).await;
    assert_eq!(
        (status, body["billing_status"].as_str()),
        (200, Some("pending"))
    );
    let id = body["id"].as_i64().unwrap();
    let path = format!("/api/v1/fix-attempts/{id}/billing");
    let (status, body) = app.post_json(&path, Some(&key), &json!(null)).await;
    assert_eq!(status, 402, "{body}");
    assert!(body["error"].as_str().unwrap().contains("payment method"));
    assert_eq!(fix_row(&app, customer_id, 1).await.1, "unpaid");

    let cid = customer_id.to_string();
    let (_, page) = app
        .admin_fn(&admin, "customer", &[("customer_id", &cid)])
        .await;
    let token = page["form_token"].as_str().unwrap().to_owned();
    let (status, _) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", cid.as_str()),
                ("amount", "1"),
                ("reason", "merged pr"),
                ("form_token", token.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fix_row(&app, customer_id, 1).await.1, "credit");
    let (status, body) = app.post_json(&path, Some(&key), &json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Already billed");
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_deployed_the_billing_call_answers_what_the_report_decided() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("deployed")).await;
    let (status, body) = fix_attempt(&app, &key, 3).await;
    assert_eq!(
        (status, body["billing_status"].as_str()),
        (200, Some("credit"))
    );
    let (status, found) = app
        .get_json(
            "/api/v1/fix-attempts?github_org=acme&repo_name=api&pr_number=103",
            Some(&key),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["billing_status"], "credit");
    let (status, billed) = app
        .post_json(
            &format!("/api/v1/fix-attempts/{}/billing", found["id"]),
            Some(&key),
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{billed}");
    assert_eq!(billed["billing_status"], "billed");
    assert_eq!(billed["message"], "Already billed");
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    let (status, body) = app
        .get_json(
            "/api/v1/fix-attempts?github_org=acme&repo_name=api&pr_number=104",
            Some(&key),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
}
