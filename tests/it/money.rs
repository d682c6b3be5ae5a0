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

// --- One fix, one charge: issue only, PR only, both, any order -----------------

/// One way the Action reports fix (issue 17, PR 42) of `acme/api`.
#[derive(Debug, Clone, Copy)]
enum Report {
    /// Mitigation phase store with `issueNumber` and no pull request.
    IssueOnly,
    /// Fix attempt without an issue number.
    PrOnly,
    /// Fix attempt with both numbers.
    AttemptBoth,
    /// Mitigation phase store with `issueNumber` and `prUrl`.
    PhaseBoth,
}

impl Report {
    async fn send(self, app: &TestApp, key: &str) -> (u16, serde_json::Value) {
        match self {
            Report::IssueOnly => {
                let body = json!({"phase": "mitigation", "data": {"fixed": true}, "repo": "acme/api",
                                  "issueNumber": 17, "commitSha": SHA});
                app.post_json("/api/v1/phases/store", Some(key), &body)
                    .await
            }
            Report::PrOnly => {
                let body = json!({"github_org": "acme", "repo_name": "api", "pr_number": 42,
                                  "pr_url": "https://github.com/acme/api/pull/42"});
                app.post_json("/api/v1/fix-attempts", Some(key), &body)
                    .await
            }
            Report::AttemptBoth => {
                let body = json!({"github_org": "acme", "repo_name": "api", "issue_number": 17, "pr_number": 42});
                app.post_json("/api/v1/fix-attempts", Some(key), &body)
                    .await
            }
            Report::PhaseBoth => {
                let body = json!({"phase": "mitigation", "repo": "acme/api", "issueNumber": 17, "commitSha": SHA,
                                  "data": {"fixed": true, "prUrl": "https://github.com/acme/api/pull/42"}});
                app.post_json("/api/v1/phases/store", Some(key), &body)
                    .await
            }
        }
    }
}

/// The customer's fixes (issue, pr, billing status) and its net fix debits
/// (`fix_consumed` entries minus merge refunds).
async fn fixes_and_net_debits(
    app: &TestApp,
    customer_id: i64,
) -> (Vec<(Option<i64>, Option<i64>, String)>, i64) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use rsolv_platform::server::db::schema::{credit_ledger_entries, fixes};
    let mut conn = app.conn().await;
    let rows = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .select((fixes::issue_number, fixes::pr_number, fixes::billing_status))
        .load(&mut conn)
        .await
        .unwrap();
    let count = |kind: &'static str| {
        credit_ledger_entries::table
            .filter(credit_ledger_entries::customer_id.eq(customer_id))
            .filter(credit_ledger_entries::kind.eq(kind))
            .count()
    };
    let consumed: i64 = count("fix_consumed").get_result(&mut conn).await.unwrap();
    let refunds: i64 = count("refund").get_result(&mut conn).await.unwrap();
    (rows, consumed - refunds)
}

fn permutations(items: &[Report]) -> Vec<Vec<Report>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            out.push(tail);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_reported_by_issue_and_by_pr_in_any_order_is_one_fix_billed_once() {
    // One customer per order: more signups than the per-minute limit.
    let app = TestApp::spawn_with(&[("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1000")]).await;
    let all = [
        Report::IssueOnly,
        Report::PrOnly,
        Report::AttemptBoth,
        Report::PhaseBoth,
    ];
    let mut orders = permutations(&all);
    // Pairs and duplicates too: PR first then issue + PR (the bug of issue
    // 9), each report twice in a row, and a both-first order.
    orders.push(vec![Report::PrOnly, Report::PhaseBoth]);
    orders.push(vec![Report::PrOnly, Report::AttemptBoth]);
    orders.push(vec![Report::IssueOnly, Report::AttemptBoth]);
    orders.push(vec![
        Report::PrOnly,
        Report::PrOnly,
        Report::IssueOnly,
        Report::IssueOnly,
        Report::PhaseBoth,
        Report::PhaseBoth,
    ]);
    orders.push(vec![Report::AttemptBoth, Report::PrOnly, Report::IssueOnly]);
    for (n, order) in orders.iter().enumerate() {
        let (customer_id, key) = app.onboard(&email(&format!("order{n}"))).await;
        for report in order {
            let (status, body) = report.send(&app, &key).await;
            assert_eq!(status, 200, "{order:?} {report:?}: {body}");
        }
        let (fixes, net_debits) = fixes_and_net_debits(&app, customer_id).await;
        assert_eq!(
            fixes,
            vec![(Some(17), Some(42), "credit".to_owned())],
            "{order:?}"
        );
        assert_eq!(net_debits, 1, "{order:?}");
        assert_eq!(
            app.balance_and_ledger_sum(customer_id).await,
            (4, 4),
            "{order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_reports_by_issue_and_by_pr_make_one_fix_and_one_debit() {
    let app = TestApp::spawn().await;
    for round in 0..3 {
        let (customer_id, key) = app.onboard(&email(&format!("race{round}"))).await;
        let kinds = [
            Report::PrOnly,
            Report::IssueOnly,
            Report::AttemptBoth,
            Report::PhaseBoth,
        ];
        let requests = (0..24).map(|i| {
            let key = key.clone();
            let app = &app;
            let report = kinds[(i + round) % kinds.len()];
            async move { report.send(app, &key).await }
        });
        for (status, body) in join_all(requests).await {
            assert_eq!(status, 200, "{body}");
        }
        let (fixes, net_debits) = fixes_and_net_debits(&app, customer_id).await;
        assert_eq!(fixes, vec![(Some(17), Some(42), "credit".to_owned())]);
        assert_eq!(net_debits, 1);
        assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fixes_linked_by_a_report_merge_and_the_younger_credit_comes_back_once() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("merge")).await;
    assert_eq!(Report::IssueOnly.send(&app, &key).await.0, 200);
    assert_eq!(Report::PrOnly.send(&app, &key).await.0, 200);
    // Two fixes so far, two credits used.
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (3, 3));
    let (fixes, _) = fixes_and_net_debits(&app, customer_id).await;
    assert_eq!(fixes.len(), 2);
    let (status, body) = Report::AttemptBoth.send(&app, &key).await;
    assert_eq!(status, 200, "{body}");
    // Merged into the older (the issue's) fix; the PR-only fix's credit is
    // given back by an idempotent refund entry.
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use rsolv_platform::server::db::schema::{credit_ledger_entries, fixes};
    let mut conn = app.conn().await;
    let ids: Vec<i64> = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .select(fixes::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(body["id"], ids[0]);
    let refunds: Vec<(String, Option<String>)> = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq("refund"))
        .select((
            credit_ledger_entries::idempotency_key,
            credit_ledger_entries::reference,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert!(refunds[0].0.starts_with("fix_merged:"), "{refunds:?}");
    assert_eq!(refunds[0].1, Some(format!("fix:{}", ids[0])));
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    // Reports again change nothing.
    for report in [Report::PhaseBoth, Report::PrOnly, Report::IssueOnly] {
        assert_eq!(report.send(&app, &key).await.0, 200);
    }
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (4, 4));
    assert_eq!(app.count("fixes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_a_second_fix_with_the_same_issue_or_pr() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("unique")).await;
    assert_eq!(Report::AttemptBoth.send(&app, &key).await.0, 200);
    let mut conn = app.conn().await;
    for (fix_key, issue, pr) in [("x:1", "17", "NULL"), ("x:2", "NULL", "42")] {
        let insert = diesel::sql_query(format!(
            "INSERT INTO fixes (customer_id, repository, fix_key, issue_number, pr_number) \
             VALUES ({customer_id}, 'acme/api', '{fix_key}', {issue}, {pr})"
        ))
        .execute(&mut conn)
        .await;
        match insert {
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => {}
            other => panic!("expected a unique violation, got {other:?}"),
        }
    }
}
