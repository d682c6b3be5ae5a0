//! Stripe against the real localstripe: the Stripe Customer made at
//! provisioning (through the job queue), and webhooks (signature, storage,
//! duplicates, ordering, effects).

use crate::harness::{
    email, localstripe_base, stripe_fixture, TestApp, STRIPE_TEST_KEY, WEBHOOK_SECRET,
    WEBHOOK_SECRET_PREVIOUS,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::future::join_all;
use rsolv_platform::server::billing::customers::{find_customer, Customer};
use rsolv_platform::server::db::schema::{credit_ledger_entries, customers, jobs, stripe_events};
use rsolv_platform::server::jobs::{
    retry_now, run_once, run_until_idle, KIND_STRIPE_CREATE_CUSTOMER,
};
use rsolv_platform::server::state::AppState;
use rsolv_platform::server::stripe::trigger::{prepare_fixture, FixtureOptions};
use serde_json::{json, Value};

/// Stripe Customers on localstripe with this email.
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

/// An address nothing listens on.
async fn closed_port_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn customer(app: &TestApp, id: i64) -> Customer {
    find_customer(&mut app.conn().await, id).await.unwrap()
}

async fn create_customer_job(app: &TestApp, customer_id: i64) -> (i64, String, i32) {
    jobs::table
        .filter(jobs::kind.eq(KIND_STRIPE_CREATE_CUSTOMER))
        .filter(jobs::payload.eq(json!({ "customer_id": customer_id })))
        .select((jobs::id, jobs::status, jobs::attempts))
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_creates_exactly_one_stripe_customer_through_the_job() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let state = app.state_with(&base, &[]);
    let address = email("stripe-one");
    let (customer_id, _key) = app.onboard(&address).await;

    // Provisioning committed the job with the customer; no Stripe call yet.
    let (_, status, _) = create_customer_job(&app, customer_id).await;
    assert_eq!(status, "queued");
    assert!(customer(&app, customer_id)
        .await
        .stripe_customer_id
        .is_none());
    assert!(stripe_customers_with_email(&base, &address)
        .await
        .is_empty());

    let runs = run_until_idle(&state).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "done", "{runs:?}");
    let stored = customer(&app, customer_id)
        .await
        .stripe_customer_id
        .expect("stored");
    let on_stripe = stripe_customers_with_email(&base, &address).await;
    assert_eq!(on_stripe.len(), 1);
    assert_eq!(on_stripe[0]["id"], stored.as_str());
    assert_eq!(
        on_stripe[0]["metadata"]["rsolv_customer_id"],
        customer_id.to_string()
    );
    assert_eq!(on_stripe[0]["name"], "Test Customer");

    // Running the job again (as after a lost lease) changes nothing.
    rsolv_platform::server::stripe::jobs::create_customer(
        &state,
        &json!({ "customer_id": customer_id }),
    )
    .await
    .unwrap();
    assert_eq!(stripe_customers_with_email(&base, &address).await.len(), 1);
    assert_eq!(
        customer(&app, customer_id).await.stripe_customer_id,
        Some(stored)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_unreachable_at_provisioning_retries_then_creates_one_customer() {
    let base = localstripe_base().await;
    let closed = closed_port_base().await;
    let app = TestApp::spawn_with_stripe(&closed, &[]).await;
    let address = email("stripe-down");
    // Provisioning succeeds (201, checked by onboard) without Stripe.
    let (customer_id, _key) = app.onboard(&address).await;
    assert_eq!(customer(&app, customer_id).await.credit_balance, 5);

    let down = app.state_with(&closed, &[]);
    let run = run_once(&down).await.unwrap().expect("a due job");
    assert_eq!(run.status, "queued", "{run:?}");
    assert!(
        run.error.as_deref().unwrap().contains("unreachable"),
        "{run:?}"
    );
    let (job_id, status, attempts) = create_customer_job(&app, customer_id).await;
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    let (run_at, last_error): (DateTime<Utc>, Option<String>) = jobs::table
        .find(job_id)
        .select((jobs::run_at, jobs::last_error))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert!(run_at > Utc::now(), "backed off");
    assert!(last_error.is_some());
    assert!(
        !last_error.unwrap().contains(STRIPE_TEST_KEY),
        "no secret in errors"
    );
    assert!(customer(&app, customer_id)
        .await
        .stripe_customer_id
        .is_none());

    // Stripe is back, but the job is not due before its backoff ends…
    let up = app.state_with(&base, &[]);
    assert!(run_once(&up).await.unwrap().is_none());
    // …unless an operator makes it due now.
    assert!(retry_now(&mut app.conn().await, job_id).await.unwrap());
    let run = run_once(&up).await.unwrap().expect("due again");
    assert_eq!(run.status, "done", "{run:?}");
    let stored = customer(&app, customer_id)
        .await
        .stripe_customer_id
        .expect("stored");
    assert_eq!(stripe_customers_with_email(&base, &address).await.len(), 1);

    // A run whose answer was lost (the id never stored) finds the customer
    // by metadata instead of creating a second one.
    diesel::update(customers::table.find(customer_id))
        .set(customers::stripe_customer_id.eq(None::<String>))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    rsolv_platform::server::stripe::jobs::create_customer(
        &up,
        &json!({ "customer_id": customer_id }),
    )
    .await
    .unwrap();
    assert_eq!(stripe_customers_with_email(&base, &address).await.len(), 1);
    assert_eq!(
        customer(&app, customer_id).await.stripe_customer_id,
        Some(stored)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_disabled_makes_no_stripe_call_and_keeps_the_job_queued() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let address = email("stripe-off");
    let (customer_id, _) = app.onboard(&address).await;
    let off = app.state_with(&base, &[("BILLING_ENABLED", "false")]);
    assert!(run_until_idle(&off).await.unwrap().is_empty());
    let (_, status, attempts) = create_customer_job(&app, customer_id).await;
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    assert!(stripe_customers_with_email(&base, &address)
        .await
        .is_empty());
    // Switched back on, the queued job runs.
    let on = app.state_with(&base, &[]);
    assert_eq!(run_until_idle(&on).await.unwrap().len(), 1);
    assert_eq!(stripe_customers_with_email(&base, &address).await.len(), 1);
}

// --- Webhooks ---------------------------------------------------------------

/// An app whose customer is linked to Stripe Customer `cus_it_<id>`; returns
/// (app, job-running state, customer id, stripe customer id).
async fn webhook_app() -> (TestApp, AppState, i64, String) {
    let closed = closed_port_base().await; // webhooks never call Stripe
    let app = TestApp::spawn_with_stripe(&closed, &[]).await;
    let state = app.state_with(&closed, &[("BILLING_ENABLED", "false")]);
    let (customer_id, _) = app.onboard(&email("hook")).await;
    let stripe_id = format!("cus_it_{customer_id}_{}", std::process::id());
    diesel::update(customers::table.find(customer_id))
        .set(customers::stripe_customer_id.eq(&stripe_id))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    (app, state, customer_id, stripe_id)
}

fn event(name: &str, customer: &str, id: Option<&str>, created: Option<i64>) -> Vec<u8> {
    let value = prepare_fixture(
        &stripe_fixture(name),
        &FixtureOptions {
            customer: Some(customer),
            id,
            created,
            fresh: false,
        },
    )
    .unwrap();
    serde_json::to_vec(&value).unwrap()
}

/// Delivers and processes the fixture subscription's creation (Pro,
/// `sub_1RsFixtureSub001`, active), so its invoices are the current Pro
/// subscription's.
async fn subscribed(app: &TestApp, state: &AppState, cus: &str) {
    deliver(
        app,
        &event("customer.subscription.created", cus, None, None),
    )
    .await;
    process(state).await;
}

async fn deliver(app: &TestApp, body: &[u8]) -> Value {
    let (status, answer) = app
        .post_stripe_event(body, WEBHOOK_SECRET, Utc::now().timestamp())
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn process(state: &AppState) {
    for run in run_until_idle(state).await.unwrap() {
        assert_eq!(run.status, "done", "{run:?}");
    }
}

async fn grants(app: &TestApp, customer_id: i64, kind: &str) -> Vec<(i64, String)> {
    credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq(kind))
        .select((
            credit_ledger_entries::amount,
            credit_ledger_entries::idempotency_key,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

async fn event_status(app: &TestApp, id: &str) -> String {
    stripe_events::table
        .find(id)
        .select(stripe_events::status)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_lifecycle_events_set_status_plan_and_period() {
    let (app, state, id, cus) = webhook_app().await;
    deliver(
        &app,
        &event("customer.subscription.created", &cus, None, None),
    )
    .await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("active"));
    assert_eq!(c.plan.as_str(), "pro");
    assert_eq!(
        c.current_period_end.unwrap().timestamp(),
        1_795_000_000 + 30 * 86_400
    );

    deliver(
        &app,
        &event("customer.subscription.updated", &cus, None, None),
    )
    .await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert_eq!(
        c.current_period_end.unwrap().timestamp(),
        1_795_000_000 + 60 * 86_400
    );

    deliver(&app, &event("invoice.payment_failed", &cus, None, None)).await;
    process(&state).await;
    assert_eq!(
        customer(&app, id)
            .await
            .subscription_status
            .map(|s| s.as_str()),
        Some("past_due")
    );

    deliver(
        &app,
        &event("customer.subscription.deleted", &cus, None, None),
    )
    .await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("canceled"));
    assert_eq!(c.plan.as_str(), "trial", "no card on file: back to trial");
    assert_eq!(
        event_status(&app, "evt_1RsFixSubDeleted").await,
        "processed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_paid_and_payment_succeeded_grant_the_period_credits_once() {
    let (app, state, id, cus) = webhook_app().await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (5, 5));
    subscribed(&app, &state, &cus).await;
    deliver(&app, &event("invoice.paid", &cus, None, None)).await;
    deliver(&app, &event("invoice.payment_succeeded", &cus, None, None)).await;
    // invoice.paid again, as a new event about the same invoice.
    deliver(
        &app,
        &event("invoice.paid", &cus, Some("evt_it_paid_again"), None),
    )
    .await;
    process(&state).await;
    assert_eq!(
        grants(&app, id, "subscription_grant").await,
        vec![(60, "invoice:in_1RsFixtureInv001".to_owned())]
    );
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
    for evt in [
        "evt_1RsFixInvPaid",
        "evt_1RsFixInvPaySucc",
        "evt_it_paid_again",
    ] {
        assert_eq!(event_status(&app, evt).await, "processed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_methods_set_the_flag_and_grant_the_billing_bonus_once() {
    let (app, state, id, cus) = webhook_app().await;
    deliver(&app, &event("payment_method.attached", &cus, None, None)).await;
    deliver(&app, &event("setup_intent.succeeded", &cus, None, None)).await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert!(c.has_payment_method);
    assert_eq!(c.plan.as_str(), "payg");
    assert_eq!(
        grants(&app, id, "billing_bonus").await,
        vec![(5, "billing_bonus".to_owned())]
    );
    assert_eq!(app.balance_and_ledger_sum(id).await, (10, 10));

    deliver(&app, &event("payment_method.detached", &cus, None, None)).await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert!(!c.has_payment_method);
    assert_eq!(c.plan.as_str(), "trial");
    // Attached again later: no second bonus.
    let later = 1_795_000_000 + 60 * 86_400;
    deliver(
        &app,
        &event(
            "payment_method.attached",
            &cus,
            Some("evt_it_reattach"),
            Some(later),
        ),
    )
    .await;
    process(&state).await;
    assert!(customer(&app, id).await.has_payment_method);
    assert_eq!(grants(&app, id, "billing_bonus").await.len(), 1);
    assert_eq!(app.balance_and_ledger_sum(id).await, (10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_attach_processed_after_the_detach_does_not_resurrect_the_card() {
    let (app, state, id, cus) = webhook_app().await;
    deliver(&app, &event("payment_method.detached", &cus, None, None)).await;
    process(&state).await;
    deliver(&app, &event("payment_method.attached", &cus, None, None)).await;
    process(&state).await;
    assert!(!customer(&app, id).await.has_payment_method);
    assert!(grants(&app, id, "billing_bonus").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_intents_and_unknown_types_are_recorded_without_effect() {
    let (app, state, id, cus) = webhook_app().await;
    let before = customer(&app, id).await;
    for name in [
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "balance.available",
    ] {
        let answer = deliver(&app, &event(name, &cus, None, None)).await;
        assert_eq!(answer, json!({"received": true, "duplicate": false}));
    }
    process(&state).await;
    for evt in ["evt_1RsFixPiSucc", "evt_1RsFixPiFail", "evt_1RsFixBalance"] {
        assert_eq!(event_status(&app, evt).await, "processed");
    }
    let after = customer(&app, id).await;
    assert_eq!(
        (
            before.plan,
            before.credit_balance,
            before.subscription_status
        ),
        (after.plan, after.credit_balance, after.subscription_status)
    );
    assert_eq!(
        app.count("credit_ledger_entries").await,
        1,
        "only the signup bonus"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_delivered_five_times_concurrently_has_one_effect() {
    let (app, state, id, cus) = webhook_app().await;
    subscribed(&app, &state, &cus).await;
    let body = event("invoice.paid", &cus, None, None);
    let answers = join_all((0..5).map(|_| deliver(&app, &body))).await;
    let fresh = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(fresh, 1, "{answers:?}");
    assert_eq!(
        app.count("stripe_events WHERE type = 'invoice.paid'").await,
        1
    );
    assert_eq!(
        app.count("jobs WHERE kind = 'stripe.process_event' AND status = 'queued'")
            .await,
        1
    );
    // Two workers at once.
    let (a, b) = tokio::join!(run_until_idle(&state), run_until_idle(&state));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1);
    assert_eq!(grants(&app, id, "subscription_grant").await.len(), 1);
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_subscription_updates_leave_the_newest_state() {
    let (app, state, id, cus) = webhook_app().await;
    let t0 = 1_795_100_000_i64;
    let statuses = [
        "incomplete",
        "active",
        "past_due",
        "active",
        "unpaid",
        "active",
    ];
    let bodies: Vec<Vec<u8>> = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| {
            let mut value: Value = serde_json::from_slice(&event(
                "customer.subscription.updated",
                &cus,
                Some(&format!("evt_it_upd_{i}")),
                Some(t0 + i as i64 * 60),
            ))
            .unwrap();
            value["data"]["object"]["status"] = json!(status);
            value["data"]["object"]["items"]["data"][0]["current_period_end"] =
                json!(t0 + 1000 + i as i64);
            serde_json::to_vec(&value).unwrap()
        })
        .collect();
    // Newest (index 5) early; processed one by one, in this order.
    for i in [3, 5, 0, 4, 1, 2] {
        deliver(&app, &bodies[i]).await;
        process(&state).await;
    }
    let c = customer(&app, id).await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("active"));
    assert_eq!(c.plan.as_str(), "pro");
    assert_eq!(c.current_period_end.unwrap().timestamp(), t0 + 1005);
    // An older "deleted" does not cancel the newer state either.
    deliver(
        &app,
        &event("customer.subscription.deleted", &cus, None, Some(t0 + 120)),
    )
    .await;
    process(&state).await;
    assert_eq!(
        customer(&app, id)
            .await
            .subscription_status
            .map(|s| s.as_str()),
        Some("active")
    );
    assert_eq!(
        app.count("stripe_events WHERE status = 'processed'").await,
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_stale_timestamps_and_bad_bodies_are_rejected_and_store_nothing() {
    let (app, _state, id, cus) = webhook_app().await;
    let before = customer(&app, id).await;
    let body = event("invoice.paid", &cus, None, None);
    let now = Utc::now().timestamp();

    let (status, answer) = app
        .post_stripe_event(&body, "whsec_someone_else", now)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("signature"));
    assert!(!answer.to_string().contains(WEBHOOK_SECRET));

    let (status, _) = app
        .post_stripe_event(&body, WEBHOOK_SECRET, now - 301)
        .await;
    assert_eq!(status, 400, "stale");
    // Ahead of the 300 s tolerance by a margin the request's own delay
    // cannot eat (signed at `now`, checked against the server's later
    // clock): a second of load once turned `now + 301` into an accepted
    // 299 s.
    let (status, _) = app
        .post_stripe_event(&body, WEBHOOK_SECRET, Utc::now().timestamp() + 360)
        .await;
    assert_eq!(status, 400, "from the future");

    // Signed for another body.
    let header = rsolv_platform::server::stripe::signature::sign(WEBHOOK_SECRET, now, b"{}");
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", header)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // No header at all.
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Correctly signed, but not an event.
    let (status, _) = app
        .post_stripe_event(b"{\"hello\": 1}", WEBHOOK_SECRET, now)
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .post_stripe_event(b"not json", WEBHOOK_SECRET, now)
        .await;
    assert_eq!(status, 400);

    assert_eq!(app.count("stripe_events").await, 0);
    assert_eq!(
        app.count("jobs WHERE kind = 'stripe.process_event'").await,
        0
    );
    assert_eq!(customer(&app, id).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_signed_with_the_previous_secret_is_accepted() {
    let (app, state, id, cus) = webhook_app().await;
    subscribed(&app, &state, &cus).await;
    let body = event("invoice.paid", &cus, None, None);
    let (status, answer) = app
        .post_stripe_event(&body, WEBHOOK_SECRET_PREVIOUS, Utc::now().timestamp())
        .await;
    assert_eq!(status, 200, "{answer}");
    process(&state).await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_unknown_customer_waits_and_applies_once_the_id_is_recorded() {
    let (app, state, id, _cus) = webhook_app().await;
    let later = format!("cus_it_later_{id}_{}", std::process::id());
    deliver(
        &app,
        &event("customer.subscription.created", &later, None, None),
    )
    .await;
    let runs = run_until_idle(&state).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "queued", "retried later: {runs:?}");
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("not known yet"));
    assert_eq!(event_status(&app, "evt_1RsFixSubCreated").await, "failed");
    // The customer's Stripe id is recorded: the event is re-driven at once
    // (not after its backoff) and applied.
    diesel::update(customers::table.find(id))
        .set(customers::stripe_customer_id.eq(&later))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    let redriven = rsolv_platform::server::stripe::events::redrive_waiting_events(
        &mut app.conn().await,
        &later,
    )
    .await
    .unwrap();
    assert_eq!(redriven, 1);
    process(&state).await;
    assert_eq!(
        event_status(&app, "evt_1RsFixSubCreated").await,
        "processed"
    );
    let c = customer(&app, id).await;
    assert_eq!(c.plan.as_str(), "pro");
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("active"));
}

// --- The job queue ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_run_each_of_twenty_jobs_exactly_once() {
    let (app, state, id, cus) = webhook_app().await;
    subscribed(&app, &state, &cus).await;
    for i in 0..20 {
        let body = event(
            "invoice.paid",
            &cus,
            Some(&format!("evt_it_many_{i}")),
            None,
        );
        let mut value: Value = serde_json::from_slice(&body).unwrap();
        value["data"]["object"]["id"] = json!(format!("in_it_many_{i}"));
        deliver(&app, &serde_json::to_vec(&value).unwrap()).await;
    }
    let runs = join_all((0..4).map(|_| run_until_idle(&state))).await;
    let total: usize = runs.into_iter().map(|r| r.unwrap().len()).sum();
    assert_eq!(total, 20);
    let attempts: Vec<(String, i32)> = jobs::table
        .filter(jobs::kind.eq("stripe.process_event"))
        .select((jobs::status, jobs::attempts))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 21);
    assert!(
        attempts.iter().all(|(s, a)| s == "done" && *a == 1),
        "{attempts:?}"
    );
    // Twenty grants, each expiring the unused credits of the one before.
    assert_eq!(grants(&app, id, "subscription_grant").await.len(), 20);
    assert_eq!(grants(&app, id, "expired").await.len(), 19);
    assert_eq!(app.balance_and_ledger_sum(id).await, (5 + 60, 5 + 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_attempts_is_dead_until_retried() {
    use rsolv_platform::server::jobs::{enqueue, NewJob};
    let base = localstripe_base().await;
    let closed = closed_port_base().await;
    let app = TestApp::spawn_with_stripe(&closed, &[]).await;
    let address = email("dead");
    let (customer_id, _) = app.onboard(&address).await;
    diesel::update(jobs::table)
        .set(jobs::max_attempts.eq(2))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    let down = app.state_with(&closed, &[]);
    let (job_id, _, _) = create_customer_job(&app, customer_id).await;
    assert_eq!(run_once(&down).await.unwrap().unwrap().status, "queued");
    assert!(retry_now(&mut app.conn().await, job_id).await.unwrap());
    assert_eq!(run_once(&down).await.unwrap().unwrap().status, "dead");
    assert!(
        run_once(&down).await.unwrap().is_none(),
        "dead jobs are not claimed"
    );
    // An unknown kind is dead at once.
    let unknown = enqueue(
        &mut app.conn().await,
        &NewJob {
            kind: "no.such.kind",
            payload: json!({}),
            dedupe_key: None,
            max_attempts: 5,
            ordering_key: None,
        },
    )
    .await
    .unwrap()
    .unwrap();
    let run = run_once(&down).await.unwrap().unwrap();
    assert_eq!((run.job_id, run.status.as_str()), (unknown, "dead"));
    // The operator's retry, with Stripe reachable.
    assert!(retry_now(&mut app.conn().await, job_id).await.unwrap());
    let run = run_once(&app.state_with(&base, &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((run.job_id, run.status.as_str()), (job_id, "done"));
    assert_eq!(stripe_customers_with_email(&base, &address).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_loop_processes_events_and_stops_on_shutdown() {
    let (app, state, id, cus) = webhook_app().await;
    subscribed(&app, &state, &cus).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(rsolv_platform::server::jobs::run_forever(
        state,
        async move {
            let _ = stopped.await;
        },
    ));
    deliver(&app, &event("invoice.paid", &cus, None, None)).await;
    // Wait (bounded) for the loop to apply it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while event_status(&app, "evt_1RsFixInvPaid").await != "processed" {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not process the event"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), worker)
        .await
        .expect("the worker stops on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_key_stripe_jobs_stay_queued() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let (customer_id, _) = app.onboard(&email("nokey")).await;
    let keyless = app.state_with(&base, &[("STRIPE_SECRET_KEY", "")]);
    assert!(run_until_idle(&keyless).await.unwrap().is_empty());
    let (_, status, attempts) = create_customer_job(&app, customer_id).await;
    assert_eq!((status.as_str(), attempts), ("queued", 0));
}

// --- The PaymentProcessor port's Stripe implementation --------------------

async fn localstripe_post(base: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "POST {path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stripe_processor_speaks_domain_types_against_localstripe() {
    use rsolv_platform::server::billing::ports::{
        CancelMode, ChargeRequest, InvoiceItemRequest, NewProcessorCustomer, ProcessorChargeStatus,
        ProcessorError, SetupStatus, SubscribeRequest,
    };
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let state = app.state_with(&base, &[]);
    let processor = state.processor.clone();
    let started = Utc::now() - chrono::Duration::minutes(5);
    let address = email("port");
    // A made-up id of ours (no row needed: the processor is below the DB).
    let ours = 900_000 + i64::from(fastrand_id());

    // Customer: created once, found again by our id in its metadata.
    let customer = processor
        .create_customer(&NewProcessorCustomer {
            customer_id: ours,
            email: address.clone(),
            name: "Port Test".into(),
            idempotency_key: format!("customer:create:{ours}"),
        })
        .await
        .unwrap();
    assert_eq!(customer.customer_id, Some(ours));
    let found = processor.find_customers(ours, &address).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, customer.id);
    let cus = customer.id.clone();

    // A card through a SetupIntent (localstripe's confirm does not attach).
    let setup = processor
        .create_setup_intent(&cus, ours, &format!("setup_intent:{ours}:1"))
        .await
        .unwrap();
    assert!(setup.client_secret.is_some());
    localstripe_post(
        &base,
        &format!("/v1/setup_intents/{}/confirm", setup.id),
        &[("payment_method", "pm_card_visa")],
    )
    .await;
    let setup = processor.setup_intent(&setup.id).await.unwrap();
    assert_eq!(setup.status, SetupStatus::Succeeded);
    assert_eq!(setup.customer.as_deref(), Some(cus.as_str()));
    let pm = setup.payment_method.unwrap();
    let card = processor.attach_payment_method(&pm, &cus).await.unwrap();
    assert_eq!(card.last4.as_deref(), Some("4242"));
    processor
        .set_default_payment_method(&cus, &card.id)
        .await
        .unwrap();

    // An off-session charge: succeeded, found again by our charge id.
    let charge = ChargeRequest {
        charge_id: ours,
        customer: cus.clone(),
        payment_method: card.id.clone(),
        amount_cents: 2900,
        currency: "usd".into(),
        idempotency_key: format!("charge:{ours}"),
        metadata: [("rsolv_fix_id".to_owned(), "1".to_owned())].into(),
    };
    let paid = processor.charge_off_session(&charge).await.unwrap();
    assert_eq!(paid.status, ProcessorChargeStatus::Succeeded);
    assert_eq!((paid.amount_cents, paid.charge_id), (2900, Some(ours)));
    let again = processor.payment_intent(&paid.id).await.unwrap();
    assert_eq!(again.status, ProcessorChargeStatus::Succeeded);
    let by_ours = processor.find_charges(&cus, ours).await.unwrap();
    assert_eq!(by_ours.len(), 1);
    assert_eq!(by_ours[0].id, paid.id);
    assert!(processor
        .find_charges(&cus, ours + 1)
        .await
        .unwrap()
        .is_empty());

    // A card that attaches, then declines: a decline, nothing else.
    let failing = processor
        .attach_payment_method("pm_card_chargeCustomerFail", &cus)
        .await
        .unwrap();
    let declined = processor
        .charge_off_session(&ChargeRequest {
            charge_id: ours + 1,
            payment_method: failing.id.clone(),
            idempotency_key: format!("charge:{}", ours + 1),
            ..charge.clone()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(declined, ProcessorError::Declined { .. }),
        "{declined:?}"
    );
    // Unknown objects are NotFound, not declines.
    let missing = processor
        .payment_intent("pi_doesnotexist")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ProcessorError::NotFound(_)),
        "{missing:?}"
    );

    // Overage items, found by our charge id.
    let item = processor
        .create_invoice_item(&InvoiceItemRequest {
            charge_id: ours + 2,
            customer: cus.clone(),
            subscription: None,
            amount_cents: 1500,
            currency: "usd".into(),
            description: "port test".into(),
            idempotency_key: format!("charge:{}", ours + 2),
        })
        .await
        .unwrap();
    assert_eq!(item.charge_id, Some(ours + 2));
    let items = processor.find_invoice_items(&cus, ours + 2).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, item.id);

    // Subscriptions: subscribe, read back, cancel at period end, resume,
    // cancel now collecting pending items.
    // The plan does not exist on localstripe yet: the processor creates it.
    let sub = processor
        .subscribe(&SubscribeRequest {
            customer_id: ours,
            customer: cus.clone(),
            price: state.config.stripe.pro_price_id.clone(),
            amount_cents: 59900,
            currency: "usd".into(),
            idempotency_key: format!("subscription:create:{ours}:after:none"),
        })
        .await
        .unwrap();
    assert_eq!(sub.status.as_str(), "active");
    assert_eq!(sub.customer_id, Some(ours));
    assert!(sub.current_period_end.is_some());
    let read = processor.subscription(&sub.id).await.unwrap();
    assert_eq!(
        (read.id.as_str(), read.status.as_str()),
        (sub.id.as_str(), "active")
    );
    let invoice = processor
        .invoice(sub.latest_invoice.as_deref().unwrap())
        .await
        .unwrap();
    assert!(invoice.paid, "{invoice:?}");
    assert_eq!(invoice.subscription_id.as_deref(), Some(sub.id.as_str()));
    // The pending overage item went onto this first invoice.
    assert_eq!(invoice.amount_paid_cents, 59900 + 1500);
    assert!(invoice.invoice_item_ids.contains(&item.id), "{invoice:?}");
    let ending = processor
        .cancel_subscription(&sub.id, CancelMode::AtPeriodEnd)
        .await
        .unwrap();
    assert!(ending.cancel_at_period_end);
    let resumed = processor.resume_subscription(&sub.id).await.unwrap();
    assert!(!resumed.cancel_at_period_end);
    let ended = processor
        .cancel_subscription(&sub.id, CancelMode::Now { invoice_now: true })
        .await
        .unwrap();
    assert_eq!(ended.status.as_str(), "canceled");
    let listed = processor.list_invoices(&cus, 10).await.unwrap();
    assert!(listed.iter().any(|i| i.id == invoice.id));

    // Reconciliation lists.
    let intents = processor.payment_intents_since(started).await.unwrap();
    assert!(intents.iter().any(|i| i.id == paid.id), "{intents:?}");
    let invoices = processor.invoices_since(started).await.unwrap();
    assert!(invoices.iter().any(|i| i.id == invoice.id));

    // Detaching twice is fine (already detached is the wanted state).
    processor.detach_payment_method(&failing.id).await.unwrap();
    processor.detach_payment_method(&failing.id).await.unwrap();
}

/// A number unlikely to repeat between runs sharing one localstripe.
fn fastrand_id() -> u32 {
    let nanos = Utc::now().timestamp_subsec_nanos();
    (nanos / 1000) % 90_000_000
}

// --- Issue 9: current state, Pro credit rules, refunds, disputes ----------------

/// A fixture event about `cus` with `edit` applied to `data.object`.
fn event_with(
    name: &str,
    cus: &str,
    id: &str,
    created: Option<i64>,
    edit: impl FnOnce(&mut Value),
) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&event(name, cus, Some(id), created)).unwrap();
    edit(value.pointer_mut("/data/object").unwrap());
    serde_json::to_vec(&value).unwrap()
}

async fn stripe_call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_subscription_updates_converge_on_stripes_current_state_in_either_order() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let state = app.state_with(&base, &[]);
    let settings = &state.config.stripe;
    let api = rsolv_platform::server::stripe::client::StripeApi::new(settings).unwrap();
    api.ensure_local_plan(&settings.pro_price_id, 59900, "usd")
        .await
        .unwrap();
    for (round, order) in [[0_usize, 1], [1, 0]].into_iter().enumerate() {
        let (id, _) = app.onboard(&email(&format!("same-second-{round}"))).await;
        process(&state).await;
        let cus = customer(&app, id).await.stripe_customer_id.unwrap();
        let pm = stripe_call(
            &base,
            reqwest::Method::POST,
            "/v1/payment_methods/pm_card_visa/attach",
            &[("customer", &cus)],
        )
        .await;
        stripe_call(
            &base,
            reqwest::Method::POST,
            &format!("/v1/customers/{cus}"),
            &[(
                "invoice_settings[default_payment_method]",
                pm["id"].as_str().unwrap(),
            )],
        )
        .await;
        let sub = stripe_call(
            &base,
            reqwest::Method::POST,
            "/v1/subscriptions",
            &[
                ("customer", &cus),
                ("items[0][plan]", &settings.pro_price_id),
            ],
        )
        .await;
        let sub = sub["id"].as_str().unwrap().to_owned();
        // Dunning ends: Stripe cancels the subscription. Its last two
        // updates arrive in the same second, each carrying a stale status.
        stripe_call(
            &base,
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{sub}"),
            &[],
        )
        .await;
        let second = Utc::now().timestamp();
        let bodies: Vec<Vec<u8>> = ["past_due", "active"]
            .iter()
            .map(|status| {
                event_with(
                    "customer.subscription.updated",
                    &cus,
                    &format!("evt_it_same_{id}_{status}"),
                    Some(second),
                    |o| {
                        o["id"] = json!(sub);
                        o["status"] = json!(status);
                    },
                )
            })
            .collect();
        for i in order {
            deliver(&app, &bodies[i]).await;
            process(&state).await;
        }
        let c = customer(&app, id).await;
        assert_eq!(
            c.subscription_status.map(|s| s.as_str()),
            Some("canceled"),
            "order {order:?}"
        );
        assert_eq!(c.plan.as_str(), "trial", "order {order:?}");
        assert_eq!(c.stripe_subscription_id.as_deref(), Some(sub.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_before_the_stripe_customer_is_recorded_is_applied_when_it_is() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[]).await;
    let paused = app.state_with(&base, &[("BILLING_ENABLED", "false")]);
    let live = app.state_with(&base, &[]);
    let address = email("early-event");
    let (id, _) = app.onboard(&address).await;
    // The Stripe Customer exists on Stripe (an earlier attempt of the job
    // made it and its answer was lost); we do not know its id yet.
    let made = stripe_call(
        &base,
        reqwest::Method::POST,
        "/v1/customers",
        &[
            ("email", &address),
            ("metadata[rsolv_customer_id]", &id.to_string()),
        ],
    )
    .await;
    let cus = made["id"].as_str().unwrap().to_owned();
    deliver(
        &app,
        &event_with(
            "customer.subscription.created",
            &cus,
            &format!("evt_it_early_{id}"),
            None,
            |o| o["id"] = json!(format!("sub_it_early_{id}")),
        ),
    )
    .await;
    // Billing paused: the customer job waits, the event cannot apply.
    let runs = run_until_idle(&paused).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "queued", "{runs:?}");
    assert_ne!(
        event_status(&app, &format!("evt_it_early_{id}")).await,
        "processed"
    );
    assert!(customer(&app, id).await.subscription_status.is_none());
    // The job records the id; the waiting event is re-driven in the same
    // run and applied.
    let runs = run_until_idle(&live).await.unwrap();
    assert!(runs.iter().all(|r| r.status == "done"), "{runs:?}");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        event_status(&app, &format!("evt_it_early_{id}")).await,
        "processed"
    );
    let c = customer(&app, id).await;
    assert_eq!(c.stripe_customer_id.as_deref(), Some(cus.as_str()));
    assert_eq!(c.plan.as_str(), "pro");
}

/// Onboards a customer linked to a made-up Stripe Customer, returning its
/// API key too (for fixes).
async fn webhook_app_with_key() -> (TestApp, AppState, i64, String, String) {
    let closed = closed_port_base().await;
    let app = TestApp::spawn_with_stripe(&closed, &[]).await;
    let state = app.state_with(&closed, &[("BILLING_ENABLED", "false")]);
    let (customer_id, key) = app.onboard(&email("hook-key")).await;
    let stripe_id = format!("cus_itk_{customer_id}_{}", std::process::id());
    diesel::update(customers::table.find(customer_id))
        .set(customers::stripe_customer_id.eq(&stripe_id))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    (app, state, customer_id, stripe_id, key)
}

async fn fix(app: &TestApp, key: &str, issue: i64) -> (u16, Value) {
    app.post_json(
        "/api/v1/fix-attempts",
        Some(key),
        &json!({
            "github_org": "acme", "repo_name": "api", "issue_number": issue,
            "pr_number": 1000 + issue, "pr_title": "Fix", "api_key_used": key,
        }),
    )
    .await
}

async fn fixes_ok(app: &TestApp, key: &str, issues: std::ops::RangeInclusive<i64>, status: &str) {
    for issue in issues {
        let (code, body) = fix(app, key, issue).await;
        assert_eq!(code, 200, "fix {issue}: {body}");
        assert_eq!(body["billing_status"], status, "fix {issue}: {body}");
    }
}

fn paid_invoice(
    cus: &str,
    event_id: &str,
    invoice: &str,
    edit: impl FnOnce(&mut Value),
) -> Vec<u8> {
    event_with("invoice.paid", cus, event_id, None, |o| {
        o["id"] = json!(invoice);
        edit(o);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_paid_creation_or_renewal_invoices_of_the_current_subscription_grant() {
    let (app, state, id, cus) = webhook_app().await;
    subscribed(&app, &state, &cus).await;
    // An older subscription of the customer, ended.
    deliver(
        &app,
        &event_with(
            "customer.subscription.deleted",
            &cus,
            "evt_it_old_sub",
            None,
            |o| {
                o["id"] = json!("sub_it_old");
            },
        ),
    )
    .await;
    process(&state).await;
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let no_grant: Vec<(&str, Edit)> = vec![
        (
            "in_it_proration",
            Box::new(|o| o["billing_reason"] = json!("subscription_update")),
        ),
        (
            "in_it_manual",
            Box::new(|o| o["billing_reason"] = json!("manual")),
        ),
        (
            "in_it_zero",
            Box::new(|o| {
                o["billing_reason"] = json!("subscription_cycle");
                o["amount_paid"] = json!(0);
                o["amount_due"] = json!(0);
            }),
        ),
        (
            "in_it_open",
            Box::new(|o| {
                o["status"] = json!("open");
                o["paid"] = json!(false);
            }),
        ),
        (
            "in_it_old_sub",
            Box::new(|o| {
                o["parent"]["subscription_details"]["subscription"] = json!("sub_it_old");
            }),
        ),
    ];
    for (invoice, edit) in no_grant {
        deliver(
            &app,
            &paid_invoice(&cus, &format!("evt_{invoice}"), invoice, edit),
        )
        .await;
        process(&state).await;
        assert_eq!(
            event_status(&app, &format!("evt_{invoice}")).await,
            "processed"
        );
        assert!(
            grants(&app, id, "subscription_grant").await.is_empty(),
            "{invoice} granted"
        );
    }
    for evt in ["evt_it_create", "evt_it_create_again"] {
        deliver(&app, &paid_invoice(&cus, evt, "in_it_create", |_| {})).await;
        process(&state).await;
    }
    assert_eq!(
        grants(&app, id, "subscription_grant").await,
        vec![(60, "invoice:in_it_create".to_owned())]
    );
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_periods_grant_expires_what_is_left_of_the_previous_one() {
    let (app, state, id, cus, key) = webhook_app_with_key().await;
    subscribed(&app, &state, &cus).await;
    deliver(&app, &paid_invoice(&cus, "evt_it_p1", "in_it_p1", |_| {})).await;
    process(&state).await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
    fixes_ok(&app, &key, 1..=10, "credit").await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (55, 55));
    // A $0 invoice expires nothing (it grants nothing).
    deliver(
        &app,
        &paid_invoice(&cus, "evt_it_p1_zero", "in_it_p1_zero", |o| {
            o["amount_paid"] = json!(0);
        }),
    )
    .await;
    process(&state).await;
    assert!(grants(&app, id, "expired").await.is_empty());
    // The renewal: 60 − 10 used = 50 of the first period's credits expire;
    // the trial's 5 never do.
    for evt in ["evt_it_p2", "evt_it_p2_again"] {
        deliver(
            &app,
            &paid_invoice(&cus, evt, "in_it_p2", |o| {
                o["billing_reason"] = json!("subscription_cycle");
            }),
        )
        .await;
        process(&state).await;
    }
    assert_eq!(
        grants(&app, id, "expired").await,
        vec![(-50, "expire:invoice:in_it_p1".to_owned())]
    );
    assert_eq!(grants(&app, id, "subscription_grant").await.len(), 2);
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overage_starts_only_after_the_periods_credits_are_granted_and_used() {
    let (app, state, id, cus, key) = webhook_app_with_key().await;
    subscribed(&app, &state, &cus).await;
    fixes_ok(&app, &key, 1..=5, "credit").await;
    // Pro, no credit left, the period's credits not granted yet: recorded
    // unpaid, not refused, no overage charge.
    let (code, body) = fix(&app, &key, 6).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["billing_status"], "unpaid");
    assert_eq!(app.count("charges").await, 0);
    // The period's invoice is paid: 60 credits.
    deliver(
        &app,
        &paid_invoice(&cus, "evt_it_period", "in_it_period", |_| {}),
    )
    .await;
    process(&state).await;
    assert_eq!(grants(&app, id, "subscription_grant").await.len(), 1);
    assert_eq!(app.count("charges").await, 0);
    let (left, _) = app.balance_and_ledger_sum(id).await;
    assert!((59..=60).contains(&left), "{left}");
    fixes_ok(&app, &key, 7..=(6 + left), "credit").await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (0, 0));
    // Granted and used: now overage.
    let (code, body) = fix(&app, &key, 100).await;
    assert_eq!(code, 200, "{body}");
    let kinds: Vec<(String, i64)> = rsolv_platform::server::db::schema::charges::table
        .select((
            rsolv_platform::server::db::schema::charges::kind,
            rsolv_platform::server::db::schema::charges::amount_cents,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(kinds, vec![("overage".to_owned(), 1500)]);
}

/// A paid pay-as-you-go charge of a fix, as the charge job leaves it:
/// returns (fix id, charge id, PaymentIntent id).
async fn paid_charge(app: &TestApp, customer_id: i64, n: i64) -> (i64, i64, String) {
    use rsolv_platform::server::billing::ledger::{append_entry, NewEntry};
    use rsolv_platform::server::db::schema::{charges, fixes};
    use rsolv_platform::types::values::LedgerKind;
    let mut conn = app.conn().await;
    let fix_id: i64 = diesel::insert_into(fixes::table)
        .values((
            fixes::customer_id.eq(customer_id),
            fixes::repository.eq("acme/api"),
            fixes::fix_key.eq(format!("issue:{n}")),
            fixes::issue_number.eq(n),
            fixes::billing_status.eq("charged"),
        ))
        .returning(fixes::id)
        .get_result(&mut conn)
        .await
        .unwrap();
    let pi = format!("pi_it_{customer_id}_{n}");
    let charge_id: i64 = diesel::insert_into(charges::table)
        .values((
            charges::customer_id.eq(customer_id),
            charges::fix_id.eq(fix_id),
            charges::kind.eq("payg"),
            charges::amount_cents.eq(2900),
            charges::currency.eq("usd"),
            charges::status.eq("succeeded"),
            charges::stripe_payment_intent_id.eq(&pi),
        ))
        .returning(charges::id)
        .get_result(&mut conn)
        .await
        .unwrap();
    for (amount, kind, key) in [
        (
            1,
            LedgerKind::Purchase,
            format!("purchase:charge:{charge_id}"),
        ),
        (-1, LedgerKind::FixConsumed, format!("fix:{fix_id}")),
    ] {
        append_entry(
            &mut conn,
            NewEntry {
                customer_id,
                amount,
                kind,
                reference: None,
                idempotency_key: &key,
            },
        )
        .await
        .unwrap();
    }
    (fix_id, charge_id, pi)
}

async fn charge_and_fix_status(app: &TestApp, charge_id: i64) -> (String, String) {
    use rsolv_platform::server::db::schema::{charges, fixes};
    charges::table
        .inner_join(fixes::table)
        .filter(charges::id.eq(charge_id))
        .select((charges::status, fixes::billing_status))
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_refunded_in_full_marks_the_fix_refunded_once_and_keeps_no_credit() {
    let (app, state, id, cus) = webhook_app().await;
    let (_, full, pi_full) = paid_charge(&app, id, 1).await;
    let (_, partial, pi_partial) = paid_charge(&app, id, 2).await;
    let ledger_before = app.count("credit_ledger_entries").await;
    for evt in ["evt_it_refund", "evt_it_refund_again"] {
        deliver(
            &app,
            &event_with("charge.refunded", &cus, evt, None, |o| {
                o["payment_intent"] = json!(pi_full);
            }),
        )
        .await;
    }
    deliver(
        &app,
        &event_with(
            "charge.refunded",
            &cus,
            "evt_it_refund_partial",
            None,
            |o| {
                o["payment_intent"] = json!(pi_partial);
                o["amount_refunded"] = json!(1000);
                o["refunded"] = json!(false);
            },
        ),
    )
    .await;
    process(&state).await;
    assert_eq!(
        charge_and_fix_status(&app, full).await,
        ("refunded".to_owned(), "refunded".to_owned())
    );
    assert_eq!(
        charge_and_fix_status(&app, partial).await,
        ("succeeded".to_owned(), "charged".to_owned()),
        "a partial refund is left to the admins"
    );
    // The credit the charge bought was used by the refunded fix: no ledger
    // entry, the balance is what it was.
    assert_eq!(app.count("credit_ledger_entries").await, ledger_before);
    assert!(grants(&app, id, "refund").await.is_empty());
    assert_eq!(app.balance_and_ledger_sum(id).await, (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_flags_the_customer_tells_the_admins_once_and_records_the_outcome() {
    use rsolv_platform::server::db::schema::{email_outbox, stripe_disputes, users};
    let (app, state, id, cus) = webhook_app().await;
    let (_, charge_id, pi) = paid_charge(&app, id, 1).await;
    let admin = email("dispute-admin");
    diesel::insert_into(users::table)
        .values((users::email.eq(&admin), users::role.eq("staff_admin")))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    for evt in ["evt_it_dispute", "evt_it_dispute_again"] {
        deliver(
            &app,
            &event_with("charge.dispute.created", &cus, evt, None, |o| {
                o["payment_intent"] = json!(pi);
            }),
        )
        .await;
        process(&state).await;
    }
    let c = customer(&app, id).await;
    assert!(c.disputed_at.is_some());
    // The notification carries the facts; the subject is rendered at send time.
    let mails: Vec<(String, Option<Value>)> = email_outbox::table
        .filter(email_outbox::kind.eq("dispute_opened"))
        .select((email_outbox::to_address, email_outbox::notification))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].0, admin);
    let notification = mails[0].1.as_ref().expect("a typed notification");
    assert_eq!(notification["amount"], "$29.00", "{mails:?}");
    assert_eq!(notification["customer_id"], id, "{mails:?}");
    deliver(
        &app,
        &event_with(
            "charge.dispute.closed",
            &cus,
            "evt_it_dispute_closed",
            None,
            |o| {
                o["payment_intent"] = json!(pi);
            },
        ),
    )
    .await;
    process(&state).await;
    let (status, closed, linked): (String, Option<DateTime<Utc>>, Option<i64>) =
        stripe_disputes::table
            .find("dp_1RsFixtureDisp01")
            .select((
                stripe_disputes::status,
                stripe_disputes::closed_at,
                stripe_disputes::charge_id,
            ))
            .first(&mut app.conn().await)
            .await
            .unwrap();
    assert_eq!((status.as_str(), linked), ("won", Some(charge_id)));
    assert!(closed.is_some());
    assert_eq!(
        app.count("email_outbox WHERE kind = 'dispute_opened'")
            .await,
        1
    );
}
