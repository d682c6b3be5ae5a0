//! The job worker over the queue's storage (issue 9, scope 5): handlers are
//! registered by the worker, the queue knows no kind, and a running job
//! renews its lease.

use crate::harness::{email, TestApp, WEBHOOK_SECRET};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Int8;
use diesel_async::RunQueryDsl;
use futures::future::join_all;
use rsolv_platform::server::db::queue::{
    claim, claim_batch, complete, enqueue, renew_lease, Job, NewJob,
};
use rsolv_platform::server::db::queue::{BackgroundJob, JobError};
use rsolv_platform::server::db::schema::{customers, jobs, stripe_payment_methods};
use rsolv_platform::server::jobs::{
    drain_with, run_once_with, run_until_idle, Job as RunnableJob, Registry,
};
use rsolv_platform::server::state::AppState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// A job type of the tests: fails permanently when told to.
#[derive(Debug, Serialize, Deserialize)]
struct EchoJob {
    fail: bool,
}

impl BackgroundJob for EchoJob {
    const JOB_NAME: &'static str = "test.echo";
}

impl RunnableJob for EchoJob {
    async fn run(&self, _ctx: &AppState) -> Result<(), JobError> {
        if self.fail {
            Err(JobError::permanent("told to fail"))
        } else {
            Ok(())
        }
    }
}

fn job(kind: &str) -> NewJob<'_> {
    NewJob {
        kind,
        payload: json!({}),
        dedupe_key: None,
        max_attempts: 3,
        ordering_key: None,
    }
}

#[tokio::test]
async fn a_running_job_renews_its_lease_only_while_it_holds_it() {
    let app = TestApp::spawn().await;
    let mut conn = app.conn().await;
    enqueue(&mut conn, &job("test.long")).await.unwrap();
    let claimed: Job = claim(&mut conn, &[]).await.unwrap().expect("a due job");
    diesel::sql_query("UPDATE jobs SET locked_until = now() + interval '1 second' WHERE id = $1")
        .bind::<Int8, _>(claimed.id)
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(renew_lease(&mut conn, &claimed).await.unwrap());
    let until: Option<DateTime<Utc>> = jobs::table
        .find(claimed.id)
        .select(jobs::locked_until)
        .first(&mut conn)
        .await
        .unwrap();
    let until = until.expect("leased");
    assert!(
        until > Utc::now() + chrono::Duration::seconds(200),
        "{until}"
    );
    // Another attempt's worker (a stale claim) cannot renew it.
    let stale = Job {
        attempts: claimed.attempts + 1,
        ..claimed.clone()
    };
    assert!(!renew_lease(&mut conn, &stale).await.unwrap());
    // Nor can anyone once it is done.
    complete(&mut conn, &claimed).await.unwrap();
    assert!(!renew_lease(&mut conn, &claimed).await.unwrap());
}

#[tokio::test]
async fn the_worker_runs_registered_kinds_and_buries_unknown_ones() {
    let app = TestApp::spawn().await;
    let state = app.state_with("http://127.0.0.1:9", &[("BILLING_ENABLED", "false")]);
    enqueue(&mut app.conn().await, &job("test.nobody_registered"))
        .await
        .unwrap();
    let runs = run_until_idle(&state).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "dead", "no retry can help");
    assert!(runs[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("unknown job kind")));

    let registry = Registry::new().register::<EchoJob>();
    assert_eq!(registry.kinds(), vec!["test.echo"]);
    let mut conn = app.conn().await;
    EchoJob { fail: false }
        .enqueue(&mut conn, None)
        .await
        .unwrap();
    let run = run_once_with(&registry, &state)
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(
        (run.kind.as_str(), run.status.as_str()),
        ("test.echo", "done")
    );
    // The typed payload is what the job runs with.
    EchoJob { fail: true }
        .enqueue(&mut conn, None)
        .await
        .unwrap();
    let run = run_once_with(&registry, &state)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(run.status, "dead");
    assert_eq!(run.error.as_deref(), Some("told to fail"));
    // A payload that is not the type's shape is buried, not retried.
    enqueue(
        &mut conn,
        &NewJob {
            kind: "test.echo",
            payload: json!({ "fail": "sometimes" }),
            dedupe_key: None,
            max_attempts: 3,
            ordering_key: None,
        },
    )
    .await
    .unwrap();
    let run = run_once_with(&registry, &state)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(run.status, "dead");
    assert!(run
        .error
        .as_deref()
        .is_some_and(|e| e.contains("malformed test.echo payload")));
    // A dedupe key makes a second enqueue a no-op.
    assert!(EchoJob { fail: false }
        .enqueue(&mut conn, Some("echo:1"))
        .await
        .unwrap()
        .is_some());
    assert!(EchoJob { fail: false }
        .enqueue(&mut conn, Some("echo:1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        Registry::platform().kinds(),
        vec![
            "billing.reconcile",
            "github.apply_pending_change",
            "github.grant_period",
            "stripe.charge",
            "stripe.create_customer",
            "stripe.process_event",
        ]
    );
}

// --- Concurrent workers, per-customer order (issue 13) ----------------------

/// A signed-delivery body of `payment_method.attached` for Stripe Customer
/// `cus`, as the bench sends.
fn attached(event_id: &str, cus: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event_id, "object": "event", "type": "payment_method.attached",
        "created": Utc::now().timestamp(), "livemode": false,
        "api_version": "2025-03-31.basil",
        "data": {"object": {"id": format!("pm_{event_id}"), "object": "payment_method",
                            "customer": cus, "type": "card"}},
    }))
    .unwrap()
}

/// An app with `n` customers linked to made-up Stripe Customers; returns
/// the app, a job-running state (billing off: webhooks never call Stripe)
/// and (customer id, Stripe customer id) of each.
async fn customers_linked_to_stripe(n: usize) -> (TestApp, AppState, Vec<(i64, String)>) {
    customers_linked_to_stripe_with(n, &[]).await
}

/// [`customers_linked_to_stripe`] with more settings for the job-running
/// state.
async fn customers_linked_to_stripe_with(
    n: usize,
    settings: &[(&str, &str)],
) -> (TestApp, AppState, Vec<(i64, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    let app = TestApp::spawn_with_stripe(&closed, &[]).await;
    let mut env = vec![("BILLING_ENABLED", "false")];
    env.extend_from_slice(settings);
    let state = app.state_with(&closed, &env);
    let mut linked = Vec::new();
    for i in 0..n {
        let (id, _) = app.onboard(&email(&format!("order-{i}"))).await;
        let cus = format!("cus_order_{id}_{}", std::process::id());
        link(&app, id, &cus).await;
        linked.push((id, cus));
    }
    (app, state, linked)
}

/// How many payment methods are recorded for `customer_id`.
async fn cards_of(app: &TestApp, customer_id: i64) -> i64 {
    stripe_payment_methods::table
        .filter(stripe_payment_methods::customer_id.eq(customer_id))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap()
}

async fn link(app: &TestApp, customer_id: i64, cus: &str) {
    diesel::update(customers::table.find(customer_id))
        .set(customers::stripe_customer_id.eq(cus))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
}

async fn deliver(app: &TestApp, body: &[u8]) {
    let (status, answer) = app
        .post_stripe_event(body, WEBHOOK_SECRET, Utc::now().timestamp())
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// One stored Stripe event and its job: (event id, job id, status,
/// attempts, processed_at).
type AppliedEvent = (String, i64, String, i32, Option<DateTime<Utc>>);

/// Every event of `cus` ([`AppliedEvent`]s), in the order received.
async fn events_of(app: &TestApp, cus: &str) -> Vec<AppliedEvent> {
    diesel::sql_query(
        "SELECT e.id, j.id AS job_id, e.status, e.attempts, e.processed_at \
         FROM stripe_events e JOIN jobs j ON j.dedupe_key = 'stripe.process_event:' || e.id \
         WHERE e.payload #>> '{data,object,customer}' = $1 \
         ORDER BY e.received_at, e.id",
    )
    .bind::<diesel::sql_types::Text, _>(cus)
    .load::<EventRow>(&mut app.conn().await)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.id, r.job_id, r.status, r.attempts, r.processed_at))
    .collect()
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = Int8)]
    job_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Int4)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    processed_at: Option<DateTime<Utc>>,
}

/// One customer's events were each applied once, in the order received:
/// job ids follow the receipt order (the key's lock) and every event was
/// applied after the one received before it.
fn assert_applied_once_in_order(cus: &str, events: &[AppliedEvent], expected: usize) {
    assert_eq!(events.len(), expected, "{cus}: {events:?}");
    for (id, _, status, attempts, processed_at) in events {
        assert_eq!((status.as_str(), *attempts), ("processed", 1), "{cus} {id}");
        assert!(processed_at.is_some(), "{cus} {id}");
    }
    for pair in events.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "{cus}: job ids out of receipt order: {pair:?}"
        );
        assert!(
            pair[0].4 < pair[1].4,
            "{cus}: {} applied before the earlier {}: {pair:?}",
            pair[1].0,
            pair[0].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_apply_each_customers_events_once_and_in_order() {
    const CUSTOMERS: usize = 3;
    const PER_CUSTOMER: usize = 40;
    let (app, state, linked) = customers_linked_to_stripe(CUSTOMERS).await;
    // The events of the customers, interleaved in a shuffled order and
    // delivered by four concurrent senders while three workers (four slots
    // each) run; then three more drain what is left.
    let mut order: Vec<usize> = (0..CUSTOMERS * PER_CUSTOMER)
        .map(|n| n % CUSTOMERS)
        .collect();
    fastrand::Rng::with_seed(13).shuffle(&mut order);
    let bodies: Vec<Vec<u8>> = order
        .iter()
        .enumerate()
        .map(|(n, c)| attached(&format!("evt_order_{n}"), &linked[*c].1))
        .collect();
    let registry = Arc::new(Registry::platform());
    let senders = join_all(bodies.chunks(bodies.len() / 4 + 1).map(|chunk| {
        let app = &app;
        async move {
            for body in chunk {
                deliver(app, body).await;
            }
        }
    }));
    let workers = join_all((0..3).map(|_| drain_with(registry.clone(), state.clone(), 4)));
    let (_, early) = tokio::join!(senders, workers);
    let late = join_all((0..3).map(|_| drain_with(registry.clone(), state.clone(), 4))).await;
    let ran: usize = early.iter().chain(late.iter()).sum();
    assert_eq!(ran, CUSTOMERS * PER_CUSTOMER, "each job ran once");
    for (id, cus) in &linked {
        assert_applied_once_in_order(cus, &events_of(&app, cus).await, PER_CUSTOMER);
        assert_eq!(cards_of(&app, *id).await, PER_CUSTOMER as i64);
        let (balance, sum) = app.balance_and_ledger_sum(*id).await;
        assert_eq!(balance, sum);
    }
    let jobs: Vec<(String, i32, bool)> = jobs::table
        .filter(jobs::kind.eq("stripe.process_event"))
        .select((jobs::status, jobs::attempts, jobs::held))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(jobs.len(), CUSTOMERS * PER_CUSTOMER);
    assert!(
        jobs.iter().all(|j| j == &("done".to_owned(), 1, false)),
        "{jobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_jobs_run_again_after_their_lease_and_keep_the_order() {
    let (app, state, linked) = customers_linked_to_stripe(2).await;
    for n in 0..6 {
        let cus = &linked[n % 2].1;
        deliver(&app, &attached(&format!("evt_crash_{n}"), cus)).await;
    }
    // A worker claims a batch and dies: one job per customer (each
    // customer's first), the others held behind them.
    // (The onboarding's own jobs, `stripe.create_customer`, are not this
    // worker's.)
    let claimed = claim_batch(&mut app.conn().await, &["stripe.create_customer"], 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    let keys: std::collections::HashSet<_> =
        claimed.iter().map(|j| j.ordering_key.clone()).collect();
    assert_eq!(keys.len(), 2, "one job per customer: {claimed:?}");
    let registry = Arc::new(Registry::platform());
    assert_eq!(
        drain_with(registry.clone(), state.clone(), 4).await,
        0,
        "nothing runs while the leases hold"
    );
    // The leases run out.
    diesel::sql_query(
        "UPDATE jobs SET locked_until = now() - interval '1 second' WHERE status = 'running'",
    )
    .execute(&mut app.conn().await)
    .await
    .unwrap();
    assert_eq!(drain_with(registry, state, 4).await, 6);
    for (_, cus) in &linked {
        assert_applied_once_in_order(cus, &events_of(&app, cus).await, 3);
    }
    let attempts: Vec<(i64, i32)> = jobs::table
        .filter(jobs::kind.eq("stripe.process_event"))
        .select((jobs::id, jobs::attempts))
        .load(&mut app.conn().await)
        .await
        .unwrap();
    for (id, n) in attempts {
        let crashed = claimed.iter().any(|j| j.id == id);
        assert_eq!(n, if crashed { 2 } else { 1 }, "job {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waiting_for_its_customer_holds_the_customers_later_events() {
    let (app, state, linked) = customers_linked_to_stripe(1).await;
    let (id, _) = &linked[0];
    let later = format!("cus_order_later_{id}_{}", std::process::id());
    for n in 0..3 {
        deliver(&app, &attached(&format!("evt_wait_{n}"), &later)).await;
    }
    let registry = Arc::new(Registry::platform());
    // The first fails (customer unknown) and will retry; the others are
    // not even tried.
    assert_eq!(drain_with(registry.clone(), state.clone(), 4).await, 1);
    let events = events_of(&app, &later).await;
    let tried: Vec<(&str, i32)> = events.iter().map(|e| (e.2.as_str(), e.3)).collect();
    assert_eq!(tried, vec![("failed", 1), ("received", 0), ("received", 0)]);
    // The id is recorded and the waiting events re-driven: all three
    // apply, in order.
    link(&app, *id, &later).await;
    rsolv_platform::server::stripe::events::redrive_waiting_events(&mut app.conn().await, &later)
        .await
        .unwrap();
    assert_eq!(drain_with(registry, state, 4).await, 3);
    let events = events_of(&app, &later).await;
    assert_eq!(events.len(), 3);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.2.as_str(), e.3))
            .collect::<Vec<_>>(),
        vec![("processed", 2), ("processed", 1), ("processed", 1)]
    );
    for pair in events.windows(2) {
        assert!(pair[0].4 < pair[1].4, "{pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_releases_the_next_of_its_key() {
    let app = TestApp::spawn().await;
    let state = app.state_with("http://127.0.0.1:9", &[("BILLING_ENABLED", "false")]);
    let mut conn = app.conn().await;
    let keyed = |fail: bool| NewJob {
        kind: "test.echo",
        payload: json!({ "fail": fail }),
        dedupe_key: None,
        max_attempts: 3,
        ordering_key: Some("test:one"),
    };
    let first = enqueue(&mut conn, &keyed(true)).await.unwrap().unwrap();
    let second = enqueue(&mut conn, &keyed(false)).await.unwrap().unwrap();
    let held: Vec<(i64, bool)> = jobs::table
        .select((jobs::id, jobs::held))
        .order(jobs::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, vec![(first, false), (second, true)]);
    let registry = Registry::new().register::<EchoJob>();
    let run = run_once_with(&registry, &state).await.unwrap().unwrap();
    assert_eq!((run.job_id, run.status.as_str()), (first, "dead"));
    let run = run_once_with(&registry, &state).await.unwrap().unwrap();
    assert_eq!((run.job_id, run.status.as_str()), (second, "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_applies_many_customers_events_in_one_commit_and_rolls_back_a_failing_one_alone() {
    let (app, state, linked) =
        customers_linked_to_stripe_with(4, &[("JOB_BATCH_SIZE", "16")]).await;
    let unknown = format!("cus_batch_unknown_{}", std::process::id());
    // One event for each customer, and in the middle one for a Stripe
    // Customer nobody has yet.
    for (n, (_, cus)) in linked.iter().enumerate() {
        deliver(&app, &attached(&format!("evt_batch_{n}"), cus)).await;
        if n == 1 {
            deliver(&app, &attached("evt_batch_unknown", &unknown)).await;
        }
    }
    // One slot: the five jobs are one batch.
    let registry = Arc::new(Registry::platform());
    assert_eq!(drain_with(registry, state, 1).await, 5);
    let done: Vec<(String, i32)> = diesel::sql_query(
        "SELECT xmin::text AS xid, attempts FROM jobs \
         WHERE kind = 'stripe.process_event' AND status = 'done'",
    )
    .load::<XidRow>(&mut app.conn().await)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.xid, r.attempts))
    .collect();
    assert_eq!(done.len(), 4, "{done:?}");
    assert!(
        done.iter().all(|d| d == &done[0]) && done[0].1 == 1,
        "the four jobs were marked done by one transaction: {done:?}"
    );
    for (id, cus) in &linked {
        assert_applied_once_in_order(cus, &events_of(&app, cus).await, 1);
        assert_eq!(cards_of(&app, *id).await, 1);
    }
    // The failing event was rolled back alone: noted on the event, its job
    // back in the queue with a backoff, its card not recorded.
    let events = events_of(&app, &unknown).await;
    assert_eq!(
        events
            .iter()
            .map(|e| (e.2.as_str(), e.3, e.4))
            .collect::<Vec<_>>(),
        vec![("failed", 1, None)]
    );
    let (status, attempts, run_at, last_error): (String, i32, DateTime<Utc>, Option<String>) =
        jobs::table
            .find(events[0].1)
            .select((jobs::status, jobs::attempts, jobs::run_at, jobs::last_error))
            .first(&mut app.conn().await)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    assert!(run_at > Utc::now(), "retried after a backoff");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("not known yet")),
        "{last_error:?}"
    );
    let stray: i64 = stripe_payment_methods::table
        .filter(stripe_payment_methods::id.eq("pm_evt_batch_unknown"))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(stray, 0);
}

#[derive(QueryableByName)]
struct XidRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    xid: String,
    #[diesel(sql_type = diesel::sql_types::Int4)]
    attempts: i32,
}
