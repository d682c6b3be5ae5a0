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
    assert_eq!(c.subscription_status.as_deref(), Some("active"));
    assert_eq!(c.plan, "pro");
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
        customer(&app, id).await.subscription_status.as_deref(),
        Some("past_due")
    );

    deliver(
        &app,
        &event("customer.subscription.deleted", &cus, None, None),
    )
    .await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert_eq!(c.subscription_status.as_deref(), Some("canceled"));
    assert_eq!(c.plan, "trial", "no card on file: back to trial");
    assert_eq!(
        event_status(&app, "evt_1RsFixSubDeleted").await,
        "processed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_paid_and_payment_succeeded_grant_the_period_credits_once() {
    let (app, state, id, cus) = webhook_app().await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (5, 5));
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
    assert_eq!(c.plan, "payg");
    assert_eq!(
        grants(&app, id, "billing_bonus").await,
        vec![(5, "billing_bonus".to_owned())]
    );
    assert_eq!(app.balance_and_ledger_sum(id).await, (10, 10));

    deliver(&app, &event("payment_method.detached", &cus, None, None)).await;
    process(&state).await;
    let c = customer(&app, id).await;
    assert!(!c.has_payment_method);
    assert_eq!(c.plan, "trial");
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
    let body = event("invoice.paid", &cus, None, None);
    let answers = join_all((0..5).map(|_| deliver(&app, &body))).await;
    let fresh = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(fresh, 1, "{answers:?}");
    assert_eq!(app.count("stripe_events").await, 1);
    assert_eq!(
        app.count("jobs WHERE kind = 'stripe.process_event'").await,
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
    assert_eq!(c.subscription_status.as_deref(), Some("active"));
    assert_eq!(c.plan, "pro");
    assert_eq!(c.current_period_end.unwrap().timestamp(), t0 + 1005);
    // An older "deleted" does not cancel the newer state either.
    deliver(
        &app,
        &event("customer.subscription.deleted", &cus, None, Some(t0 + 120)),
    )
    .await;
    process(&state).await;
    assert_eq!(
        customer(&app, id).await.subscription_status.as_deref(),
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
    let (status, _) = app
        .post_stripe_event(&body, WEBHOOK_SECRET, now + 301)
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
    let body = event("invoice.paid", &cus, None, None);
    let (status, answer) = app
        .post_stripe_event(&body, WEBHOOK_SECRET_PREVIOUS, Utc::now().timestamp())
        .await;
    assert_eq!(status, 200, "{answer}");
    process(&state).await;
    assert_eq!(app.balance_and_ledger_sum(id).await, (65, 65));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_unknown_customer_is_stored_and_processed_without_effect() {
    let (app, state, id, _cus) = webhook_app().await;
    deliver(
        &app,
        &event("invoice.paid", "cus_nobody_we_know", None, None),
    )
    .await;
    process(&state).await;
    assert_eq!(event_status(&app, "evt_1RsFixInvPaid").await, "processed");
    assert_eq!(app.balance_and_ledger_sum(id).await, (5, 5));
}

// --- The job queue ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_run_each_of_twenty_jobs_exactly_once() {
    let (app, state, id, cus) = webhook_app().await;
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
    assert_eq!(attempts.len(), 20);
    assert!(
        attempts.iter().all(|(s, a)| s == "done" && *a == 1),
        "{attempts:?}"
    );
    assert_eq!(
        app.balance_and_ledger_sum(id).await,
        (5 + 20 * 60, 5 + 20 * 60)
    );
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
    use rsolv_platform::server::stripe::client::StripeApi;
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
    let api = StripeApi::new(&state.config.stripe).unwrap();
    api.ensure_local_pro_plan(&state.config.stripe, 59900, "usd")
        .await
        .unwrap();
    let sub = processor
        .subscribe(&SubscribeRequest {
            customer_id: ours,
            customer: cus.clone(),
            price: state.config.stripe.pro_price_id.clone(),
            idempotency_key: format!("subscription:create:{ours}:after:none"),
        })
        .await
        .unwrap();
    assert_eq!(sub.status, "active");
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
    assert_eq!(ended.status, "canceled");
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
