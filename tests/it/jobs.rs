//! The job worker over the queue's storage (issue 9, scope 5): handlers are
//! registered by the worker, the queue knows no kind, and a running job
//! renews its lease.

use crate::harness::TestApp;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Int8;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::queue::{claim, complete, enqueue, renew_lease, Job, NewJob};
use rsolv_platform::server::db::queue::{BackgroundJob, JobError};
use rsolv_platform::server::db::schema::jobs;
use rsolv_platform::server::jobs::{run_once_with, run_until_idle, Job as RunnableJob, Registry};
use rsolv_platform::server::state::AppState;
use serde::{Deserialize, Serialize};
use serde_json::json;

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
