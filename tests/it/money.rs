//! Money under concurrency and the ledger's invariants.

use crate::harness::{email, TestApp};
use futures::future::join_all;
use rsolv_platform::server::billing::ledger::{record_entry, NewEntry};
use rsolv_platform::server::billing::BillingError;
use rsolv_platform::types::values::LedgerKind;
use serde_json::json;

const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_fixes_on_five_credits_consume_exactly_five() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("fifty")).await;
    let requests = (1..=50).map(|issue| {
        let key = key.clone();
        let app = &app;
        async move {
            if issue % 2 == 0 {
                let body = json!({"github_org": "acme", "repo_name": "api", "issue_number": issue, "pr_number": 1000 + issue});
                app.post_json("/api/v1/fix-attempts", Some(&key), &body).await
            } else {
                let body = json!({"phase": "mitigation", "data": {"fixed": true}, "repo": "acme/api",
                                  "issueNumber": issue, "commitSha": SHA});
                app.post_json("/api/v1/phases/store", Some(&key), &body).await
            }
        }
    });
    let results = join_all(requests).await;
    // Phase stores always answer 200; a fix attempt beyond the credits
    // (no card, no subscription) is recorded and answered 402.
    for (status, body) in &results {
        assert!(*status == 200 || *status == 402, "{body}");
    }
    assert!(results.iter().filter(|(s, _)| *s == 200).count() >= 25);

    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use rsolv_platform::server::db::schema::{credit_ledger_entries, fixes};
    let mut conn = app.conn().await;
    let statuses: Vec<String> = fixes::table
        .select(fixes::billing_status)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(statuses.len(), 50, "every reported fix is stored");
    assert_eq!(statuses.iter().filter(|s| *s == "credit").count(), 5);
    assert_eq!(statuses.iter().filter(|s| *s == "unpaid").count(), 45);
    let debits: i64 = credit_ledger_entries::table
        .filter(credit_ledger_entries::kind.eq("fix_consumed"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(debits, 5);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));

    let (status, body) = app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&key),
            &json!({"providers": ["anthropic"]}),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert!(body["error"].as_str().unwrap().contains("payment method"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_fix_reported_twenty_times_concurrently_is_billed_once() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("twenty")).await;
    let requests = (0..20).map(|i| {
        let key = key.clone();
        let app = &app;
        async move {
            if i % 2 == 0 {
                let body = json!({"github_org": "acme", "repo_name": "api", "issue_number": 17, "pr_number": 42,
                                  "pr_url": "https://github.com/acme/api/pull/42"});
                app.post_json("/api/v1/fix-attempts", Some(&key), &body).await
            } else {
                let body = json!({"phase": "mitigation", "data": {"fixed": true, "prUrl": "https://github.com/acme/api/pull/42"},
                                  "repo": "acme/api", "issueNumber": 17, "commitSha": SHA});
                app.post_json("/api/v1/phases/store", Some(&key), &body).await
            }
        }
    });
    for (status, body) in join_all(requests).await {
        assert_eq!(status, 200, "{body}");
    }
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use rsolv_platform::server::db::schema::credit_ledger_entries;
    let mut conn = app.conn().await;
    let debits: Vec<(String, Option<String>)> = credit_ledger_entries::table
        .filter(credit_ledger_entries::kind.eq("fix_consumed"))
        .select((
            credit_ledger_entries::idempotency_key,
            credit_ledger_entries::reference,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(debits.len(), 1, "{debits:?}");
    assert_eq!(app.count("fixes").await, 1);
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_entries_are_idempotent_never_overdraw_and_never_change() {
    let app = TestApp::spawn().await;
    let (customer_id, _) = app.onboard(&email("ledger")).await;
    let mut conn = app.conn().await;
    let grant = NewEntry {
        customer_id,
        amount: 60,
        kind: LedgerKind::SubscriptionGrant,
        reference: Some("in_123"),
        idempotency_key: "invoice:in_123",
    };
    let first = record_entry(&mut conn, grant).await.unwrap();
    let again = record_entry(&mut conn, grant).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.entry, again.entry);
    assert_eq!(first.entry.balance_after, 65);
    // Same key, different movement: refused.
    let conflicting = record_entry(
        &mut conn,
        NewEntry {
            amount: 61,
            ..grant
        },
    )
    .await;
    assert!(
        matches!(conflicting, Err(BillingError::IdempotencyConflict(_))),
        "{conflicting:?}"
    );
    // A debit past the balance: refused, nothing written.
    let overdraw = record_entry(
        &mut conn,
        NewEntry {
            customer_id,
            amount: -66,
            kind: LedgerKind::AdminAdjustment,
            reference: None,
            idempotency_key: "adj:1",
        },
    )
    .await;
    assert!(
        matches!(
            overdraw,
            Err(BillingError::InsufficientCredits {
                needed: 66,
                available: 65
            })
        ),
        "{overdraw:?}"
    );
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (65, 65));

    // Concurrent debits of 10 from 65: exactly 6 succeed.
    let attempts = (0..12).map(|i| {
        let url = app.db.url.clone();
        async move {
            use diesel_async::AsyncConnection;
            let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                .await
                .unwrap();
            let key = format!("debit:{i}");
            record_entry(
                &mut conn,
                NewEntry {
                    customer_id,
                    amount: -10,
                    kind: LedgerKind::AdminAdjustment,
                    reference: None,
                    idempotency_key: &key,
                },
            )
            .await
        }
    });
    let outcomes = join_all(attempts).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 6);
    assert!(outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .all(|e| matches!(e, BillingError::InsufficientCredits { .. })));
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));

    // The ledger is append-only and the balance cannot go negative.
    use diesel_async::RunQueryDsl;
    assert!(
        diesel::sql_query("UPDATE credit_ledger_entries SET amount = 1000")
            .execute(&mut conn)
            .await
            .is_err()
    );
    assert!(diesel::sql_query("DELETE FROM credit_ledger_entries")
        .execute(&mut conn)
        .await
        .is_err());
    assert!(
        diesel::sql_query("UPDATE customers SET credit_balance = -1")
            .execute(&mut conn)
            .await
            .is_err()
    );
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (5, 5));
}
