//! Operations in the admin console (issue 9, scopes 5 and 7): dead jobs
//! listed and re-driven; reconciliation findings found, repaired once.

use crate::harness::{email, TestApp};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::queue::BackgroundJob;
use rsolv_platform::server::db::schema::jobs;
use rsolv_platform::server::jobs::run_until_idle;
use rsolv_platform::server::marketplace::jobs::ApplyPendingChangeJob;
use serde_json::json;

async fn bury(app: &TestApp, job_id: i64) {
    diesel::update(jobs::table.find(job_id))
        .set((
            jobs::status.eq("dead"),
            jobs::attempts.eq(10),
            jobs::last_error.eq("boom"),
        ))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
}

async fn job_state(app: &TestApp, job_id: i64) -> (String, i32) {
    jobs::table
        .find(job_id)
        .select((jobs::status, jobs::attempts))
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_job_is_listed_first_and_re_driven_once_or_by_kind() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("jobs-admin")).await;
    let mut conn = app.conn().await;
    // Three jobs of one kind that has nothing left to do (no such pending
    // change): each runs to `done` when re-driven.
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = ApplyPendingChangeJob {
            pending_change_id: -1 - n,
        }
        .enqueue(&mut conn, None)
        .await
        .unwrap()
        .expect("a new job");
        ids.push(id);
    }
    let state = app.state_with("http://127.0.0.1:9", &[("BILLING_ENABLED", "false")]);
    run_until_idle(&state).await.unwrap();
    for id in &ids {
        bury(&app, *id).await;
    }
    // A done job of the same kind stays done.
    let done = ApplyPendingChangeJob {
        pending_change_id: -10,
    }
    .enqueue(&mut conn, None)
    .await
    .unwrap()
    .unwrap();
    run_until_idle(&state).await.unwrap();

    let (status, list) = app.admin_fn(&admin, "jobs", &[]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["rows"][0]["status"], json!("dead"), "{list}");
    assert_eq!(list["rows"][0]["last_error"], json!("boom"));
    assert_eq!(list["rows"][3]["id"], json!(done));
    assert_eq!(list["kinds"], json!(["github.apply_pending_change"]));
    let (status, list) = app.admin_fn(&admin, "jobs", &[("status", "dead")]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], json!(3));

    // Retry now: one job, audited, runs again.
    let (status, body) = app
        .admin_fn(&admin, "jobs/retry", &[("job_id", &ids[0].to_string())])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(job_state(&app, ids[0]).await, ("queued".into(), 0));
    let audit = app.audit_entries("job.retry").await;
    assert_eq!(audit.len(), 1);
    let runs = run_until_idle(&state).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].job_id, runs[0].status.as_str()), (ids[0], "done"));
    // A job that is not dead is refused.
    let (status, _) = app
        .admin_fn(&admin, "jobs/retry", &[("job_id", &ids[0].to_string())])
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .admin_fn(&admin, "jobs/retry", &[("job_id", "999999")])
        .await;
    assert_eq!(status, 404);

    // Retry all dead of a kind: the other two, one audit entry.
    let (status, body) = app
        .admin_fn(
            &admin,
            "jobs/retry-kind",
            &[("kind", "github.apply_pending_change")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!(2));
    let audit = app.audit_entries("job.retry_kind").await;
    assert_eq!(audit.len(), 1);
    let runs = run_until_idle(&state).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.status == "done"), "{runs:?}");
    assert_eq!(job_state(&app, done).await.0, "done");
    // Nothing dead left: a second click changes nothing and audits nothing.
    let (status, body) = app
        .admin_fn(
            &admin,
            "jobs/retry-kind",
            &[("kind", "github.apply_pending_change")],
        )
        .await;
    assert_eq!((status, body), (200, json!(0)));
    assert_eq!(app.audit_entries("job.retry_kind").await.len(), 1);
}

#[tokio::test]
async fn reconciliation_finds_drift_and_repairs_a_missed_grant_once() {
    use rsolv_platform::server::billing::ledger::{append_entry, NewEntry};
    use rsolv_platform::server::billing::reconciliation::{run, FindingKind};
    use rsolv_platform::server::db::schema::{credit_ledger_entries, customers};
    use rsolv_platform::server::jobs::nightly::enqueue_nightly_reconciliation;
    use rsolv_platform::types::values::LedgerKind;

    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("recon-admin")).await;
    let (customer_id, _) = app.onboard(&email("recon-customer")).await;
    let mut conn = app.conn().await;
    // No processor to compare with here (billing off): the local checks only.
    let processor = app
        .state_with("http://127.0.0.1:9", &[("BILLING_ENABLED", "false")])
        .processor;
    let processor = processor.as_ref();
    let stripe_id = format!("cus_recon_{customer_id}_{}", std::process::id());
    diesel::update(customers::table.find(customer_id))
        .set(customers::stripe_customer_id.eq(&stripe_id))
        .execute(&mut conn)
        .await
        .unwrap();
    // A clean database has no drift.
    assert_eq!(run(&mut conn, processor).await.unwrap().findings, vec![]);

    // Drift by hand: the cached balance moved without a ledger entry, and a
    // paid Pro renewal invoice stored without its grant.
    diesel::sql_query("UPDATE customers SET credit_balance = credit_balance + 5 WHERE id = $1")
        .bind::<diesel::sql_types::Int8, _>(customer_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let invoice_id = format!("in_recon_{customer_id}");
    let payload = json!({
        "id": format!("evt_recon_{customer_id}"),
        "type": "invoice.paid",
        "data": { "object": {
            "id": invoice_id, "object": "invoice", "customer": stripe_id,
            "subscription": "sub_recon", "billing_reason": "subscription_cycle", "amount_paid": 2900,
        }},
    });
    diesel::sql_query(
        "INSERT INTO stripe_events (id, type, created, payload, status, processed_at) \
         VALUES ($1, 'invoice.paid', now(), $2, 'processed', now())",
    )
    .bind::<diesel::sql_types::Text, _>(format!("evt_recon_{customer_id}"))
    .bind::<diesel::sql_types::Jsonb, _>(&payload)
    .execute(&mut conn)
    .await
    .unwrap();
    let summary = run(&mut conn, processor).await.unwrap();
    let kinds: Vec<_> = summary
        .findings
        .iter()
        .map(|f| (f.kind, f.subject.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (FindingKind::LedgerDrift, format!("customer:{customer_id}")),
            (FindingKind::MissingGrant, format!("invoice:{invoice_id}")),
        ]
    );

    let (status, page) = app.admin_fn(&admin, "reconciliation", &[]).await;
    assert_eq!(status, 200, "{page}");
    let findings = page["findings"].as_array().unwrap().clone();
    let id_of = |kind: &str| {
        findings
            .iter()
            .find(|f| f["kind"] == json!(kind))
            .and_then(|f| f["id"].as_i64())
            .unwrap()
            .to_string()
    };
    let (grant, drift) = (id_of("missing_grant"), id_of("ledger_drift"));
    // The drift is not repairable here.
    let (status, _) = app
        .admin_fn(&admin, "reconciliation/repair", &[("finding_id", &drift)])
        .await;
    assert_eq!(status, 422);
    // The missed grant is repaired once, audited once.
    let (status, body) = app
        .admin_fn(&admin, "reconciliation/repair", &[("finding_id", &grant)])
        .await;
    assert_eq!((status, body), (200, json!(60)));
    let (status, body) = app
        .admin_fn(&admin, "reconciliation/repair", &[("finding_id", &grant)])
        .await;
    assert_eq!((status, body), (200, json!(0)));
    assert_eq!(app.audit_entries("reconciliation.repair").await.len(), 1);
    let key = format!("invoice:{invoice_id}");
    let grants: i64 = credit_ledger_entries::table
        .filter(credit_ledger_entries::idempotency_key.eq(&key))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(grants, 1);
    // A late webhook grants with the same key: a replay, nothing written.
    let late = append_entry(
        &mut conn,
        NewEntry {
            customer_id,
            amount: 60,
            kind: LedgerKind::SubscriptionGrant,
            reference: Some(&key),
            idempotency_key: &key,
        },
    )
    .await
    .unwrap();
    assert!(late.replayed);
    // The next run no longer lists the invoice; the drift stays listed.
    let again: Vec<_> = run(&mut conn, processor)
        .await
        .unwrap()
        .findings
        .into_iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(again, vec![FindingKind::LedgerDrift]);

    // On demand from the console: a typed job the worker runs.
    let (status, body) = app.admin_fn(&admin, "reconciliation/run", &[]).await;
    assert_eq!(status, 200, "{body}");
    let state = app.state_with("http://127.0.0.1:9", &[("BILLING_ENABLED", "false")]);
    let runs = run_until_idle(&state).await.unwrap();
    assert!(
        runs.iter()
            .any(|r| r.kind == "billing.reconcile" && r.status == "done"),
        "{runs:?}"
    );
    // Nightly: one job per UTC day however often serve ticks.
    let now = chrono::Utc::now();
    assert!(enqueue_nightly_reconciliation(&mut conn, now)
        .await
        .unwrap());
    assert!(!enqueue_nightly_reconciliation(&mut conn, now)
        .await
        .unwrap());
}
