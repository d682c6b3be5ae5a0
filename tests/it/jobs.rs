//! The job worker over the queue's storage (issue 9, scope 5): handlers are
//! registered by the worker, the queue knows no kind, and a running job
//! renews its lease.

use crate::harness::TestApp;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Int8;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::queue::{claim, complete, enqueue, renew_lease, Job, NewJob};
use rsolv_platform::server::db::schema::jobs;
use rsolv_platform::server::jobs::{run_once_with, run_until_idle, Registry};
use serde_json::json;

fn job(kind: &str) -> NewJob<'_> {
    NewJob {
        kind,
        payload: json!({}),
        dedupe_key: None,
        max_attempts: 3,
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

    let registry = Registry::new().register("test.ok", |_, payload| {
        Box::pin(async move {
            assert_eq!(payload, &json!({}));
            Ok(())
        })
    });
    assert_eq!(registry.kinds(), vec!["test.ok"]);
    enqueue(&mut app.conn().await, &job("test.ok"))
        .await
        .unwrap();
    let run = run_once_with(&registry, &state)
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(
        (run.kind.as_str(), run.status.as_str()),
        ("test.ok", "done")
    );
    assert!(Registry::platform().kinds().contains(&"stripe.charge"));
}
