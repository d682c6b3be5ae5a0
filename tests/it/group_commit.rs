//! Group commit of fix reports (issue 13): a batch recorded in one
//! transaction gives what recording its reports one by one gives, and
//! concurrent duplicate and distinct reports of one customer through the
//! API still give one charge per fix and an exact ledger. Reports come
//! through two API keys; each fix keeps the key whose report created it.

use crate::harness::{email, TestApp};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::join_all;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestError, TestRunner};
use rsolv_platform::server::billing::api_keys::{create_api_key, hash_key};
use rsolv_platform::server::billing::fixes::{record_fix, record_fixes_batch, FixReport};
use rsolv_platform::server::billing::ledger::{record_entry, NewEntry};
use rsolv_platform::server::billing::pricing::PricingCatalog;
use rsolv_platform::server::db::schema::{api_keys, credit_ledger_entries, customers, fixes};
use rsolv_platform::types::portal::ApiKeyName;
use rsolv_platform::types::values::{LedgerKind, Repository};
use serde_json::json;
use std::collections::BTreeMap;

const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const REPOS: [&str; 2] = ["acme/api", "acme/web"];
/// Limits high enough for many customers and reports per test.
const LIMITS: &[(&str, &str)] = &[
    ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1000000"),
    ("RATE_LIMIT_ACTION_PER_HOUR", "1000000"),
];

/// One report of fix `k` (issue `k`, pull request `100 + k`) of
/// repository `REPOS[repo]`, naming the issue, the pull request or both,
/// sent with the customer's API key number `key` (0 or 1).
#[derive(Debug, Clone, Copy)]
struct Shot {
    repo: usize,
    k: i64,
    issue: bool,
    pr: bool,
    key: usize,
}

fn shot() -> impl Strategy<Value = Shot> {
    (0..2usize, 1..=6i64, 0..3u8, 0..2usize).prop_map(|(repo, k, shape, key)| Shot {
        repo,
        k,
        issue: shape != 1,
        pr: shape != 0,
        key,
    })
}

impl Shot {
    /// The report, sent with `keys[self.key]`.
    fn report(self, keys: &[i64; 2]) -> FixReport {
        let mut report = FixReport::new(
            Repository::parse(REPOS[self.repo]).unwrap(),
            self.issue.then_some(self.k),
            self.pr.then_some(100 + self.k),
        )
        .unwrap();
        report.api_key_id = Some(keys[self.key]);
        report
    }

    /// Whether this report names fix row `(repository, issue, pr)`.
    fn names(self, repository: &str, issue: Option<i64>, pr: Option<i64>) -> bool {
        REPOS[self.repo] == repository
            && ((self.issue && issue == Some(self.k)) || (self.pr && pr == Some(100 + self.k)))
    }
}

/// Two API keys of `customer_id`: its first one (if `first` names it) and
/// a new one; their ids and secrets.
async fn two_keys(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    first: Option<&str>,
) -> ([i64; 2], [String; 2]) {
    let name = ApiKeyName::parse("second").unwrap();
    let (second, plain) = create_api_key(conn, customer_id, &name).await.unwrap();
    let (first_id, first_secret) = match first {
        Some(secret) => {
            let id = api_keys::table
                .filter(api_keys::token_hash.eq(hash_key(secret).as_slice()))
                .select(api_keys::id)
                .first(conn)
                .await
                .unwrap();
            (id, secret.to_owned())
        }
        None => {
            let (key, plain) = create_api_key(conn, customer_id, &name).await.unwrap();
            (key.id, plain.expose().to_owned())
        }
    };
    (
        [first_id, second.id],
        [first_secret, plain.expose().to_owned()],
    )
}

fn links() -> rsolv_platform::server::email::templates::EmailLinks {
    rsolv_platform::server::email::templates::EmailLinks::parse("http://127.0.0.1:3000").unwrap()
}

/// One fix as [`Outcome`] compares it: repository, issue, pull request,
/// billing status, and which of the customer's two keys (0 or 1) created
/// it.
type FixOutcome = (String, Option<i64>, Option<i64>, String, Option<usize>);

/// Everything the rules decide, comparable across customers: the fixes
/// ([`FixOutcome`]), sorted; the balance; Σ ledger; net fix debits
/// (`fix_consumed` − merge refunds).
type Outcome = (Vec<FixOutcome>, i64, i64, i64);

/// A fix row as loaded: [`FixOutcome`] with the key's id.
type StoredFix = (String, Option<i64>, Option<i64>, String, Option<i64>);

/// The customer's [`Outcome`]; `keys` are its two API keys.
async fn outcome(conn: &mut AsyncPgConnection, customer_id: i64, keys: &[i64; 2]) -> Outcome {
    let loaded: Vec<StoredFix> = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .select((
            fixes::repository,
            fixes::issue_number,
            fixes::pr_number,
            fixes::billing_status,
            fixes::api_key_id,
        ))
        .load(conn)
        .await
        .unwrap();
    let mut rows: Vec<FixOutcome> = loaded
        .into_iter()
        .map(|(repo, issue, pr, status, key)| {
            let key = key.map(|id| {
                keys.iter()
                    .position(|k| *k == id)
                    .unwrap_or_else(|| panic!("fix of another key {id}"))
            });
            (repo, issue, pr, status, key)
        })
        .collect();
    rows.sort();
    let balance: i64 = customers::table
        .find(customer_id)
        .select(customers::credit_balance)
        .first(conn)
        .await
        .unwrap();
    let entries: Vec<(i64, String)> = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .select((credit_ledger_entries::amount, credit_ledger_entries::kind))
        .load(conn)
        .await
        .unwrap();
    let sum = entries.iter().map(|e| e.0).sum();
    let net = entries.iter().filter(|e| e.1 == "fix_consumed").count() as i64
        - entries.iter().filter(|e| e.1 == "refund").count() as i64;
    (rows, balance, sum, net)
}

/// Every `credit` fix has its one `fix_consumed` entry (key `fix:<id>`),
/// and the ledger's `balance_after` chain adds up entry by entry.
async fn check_debits(conn: &mut AsyncPgConnection, customer_id: i64, case: &str) {
    let credit: Vec<(i64, Option<i64>)> = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::billing_status.eq("credit"))
        .select((fixes::id, fixes::ledger_entry_id))
        .load(conn)
        .await
        .unwrap();
    let debits: Vec<(i64, String, i64)> = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq("fix_consumed"))
        .select((
            credit_ledger_entries::id,
            credit_ledger_entries::idempotency_key,
            credit_ledger_entries::balance_after,
        ))
        .load(conn)
        .await
        .unwrap();
    for (id, entry) in &credit {
        let mine: Vec<_> = debits
            .iter()
            .filter(|d| d.1 == format!("fix:{id}"))
            .collect();
        assert_eq!(mine.len(), 1, "{case}: credit fix {id}: {debits:?}");
        assert_eq!(Some(mine[0].0), *entry, "{case}: fix {id}'s entry");
    }
    // The chain: each entry's `balance_after` is the previous one's plus
    // its amount (no movement applied twice against one balance).
    let chain: Vec<(i64, i64)> = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .order(credit_ledger_entries::id.asc())
        .select((
            credit_ledger_entries::amount,
            credit_ledger_entries::balance_after,
        ))
        .load(conn)
        .await
        .unwrap();
    let mut running = 0;
    for (amount, after) in &chain {
        running += amount;
        assert_eq!(running, *after, "{case}: ledger chain {chain:?}");
    }
}

fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 100,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

fn report_failure<T: std::fmt::Debug>(result: Result<(), TestError<T>>) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            panic!("{reason}\nminimal failing input:\n{input:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

/// A batch (with duplicates within it, reports of fixes already stored, and
/// balances that cover it or fall short) recorded by `record_fixes_batch`
/// leaves exactly what recording the same reports one by one leaves, on a
/// twin customer: the same fixes with the same billing statuses, the same
/// balance, Σ ledger = balance, one debit per credit fix.
#[test]
fn a_batch_records_what_the_same_reports_one_by_one_record() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(TestApp::spawn_with(LIMITS));
    let pricing = PricingCatalog::default();
    let counter = std::sync::atomic::AtomicU64::new(0);
    let strategy = (
        prop::collection::vec(shot(), 0..5),
        prop::collection::vec(shot(), 1..20),
        0..12i64,
    );
    let result = runner(40).run(&strategy, |(stored, batch, extra)| {
        runtime.block_on(async {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut conn = app.conn().await;
            let mut twins = Vec::new();
            let mut twin_keys = Vec::new();
            for side in ["batch", "seq"] {
                let (id, _) = app.onboard(&email(&format!("gc-{side}-{n}"))).await;
                let (keys, _) = two_keys(&mut conn, id, None).await;
                if extra > 0 {
                    let key = format!("extra:{n}");
                    let entry = NewEntry {
                        customer_id: id,
                        amount: extra,
                        kind: LedgerKind::AdminAdjustment,
                        reference: None,
                        idempotency_key: &key,
                    };
                    record_entry(&mut conn, entry).await.unwrap();
                }
                for s in &stored {
                    record_fix(&mut conn, &pricing, id, &s.report(&keys), &links())
                        .await
                        .unwrap();
                }
                twins.push(id);
                twin_keys.push(keys);
            }
            let reports: Vec<FixReport> = batch.iter().map(|s| s.report(&twin_keys[0])).collect();
            let results = record_fixes_batch(&mut conn, &pricing, twins[0], &reports, &links())
                .await
                .unwrap();
            assert_eq!(results.len(), reports.len());
            let mut answers = Vec::new();
            for s in &batch {
                let fix = record_fix(
                    &mut conn,
                    &pricing,
                    twins[1],
                    &s.report(&twin_keys[1]),
                    &links(),
                )
                .await
                .unwrap();
                answers.push(
                    fix.api_key_id
                        .map(|id| twin_keys[1].iter().position(|k| *k == id)),
                );
            }
            for ((result, report), sequential) in results.iter().zip(&reports).zip(&answers) {
                let fix = result.as_ref().unwrap();
                assert_eq!(fix.customer_id, twins[0]);
                assert_eq!(fix.repository, report.repository.as_str());
                // Each answer names the key that created its fix, as the
                // one-by-one answer does.
                let key = fix
                    .api_key_id
                    .map(|id| twin_keys[0].iter().position(|k| *k == id));
                assert_eq!(key, *sequential, "batch vs one by one: the answer's key");
            }
            let batched = outcome(&mut conn, twins[0], &twin_keys[0]).await;
            let sequential = outcome(&mut conn, twins[1], &twin_keys[1]).await;
            assert_eq!(batched, sequential, "batch vs one by one");
            assert_eq!(batched.1, batched.2, "Σ ledger = balance");
            let credit = batched.0.iter().filter(|f| f.3 == "credit").count() as i64;
            assert_eq!(batched.3, credit, "net debits = credit fixes");
            check_debits(&mut conn, twins[0], "batch").await;
        });
        Ok(())
    });
    report_failure(result);
}

/// How many fix rows the identity rules leave for these reports: per fix,
/// one row if some report names both numbers, else one per number named.
fn expected_rows(shots: &[Shot]) -> usize {
    let mut per_fix: BTreeMap<(usize, i64), (bool, bool, bool)> = BTreeMap::new();
    for s in shots {
        let e = per_fix.entry((s.repo, s.k)).or_default();
        e.0 |= s.issue && s.pr;
        e.1 |= s.issue;
        e.2 |= s.pr;
    }
    per_fix
        .values()
        .map(|&(both, issue, pr)| {
            if both {
                1
            } else {
                issue as usize + pr as usize
            }
        })
        .sum()
}

/// Concurrent reports of one customer (duplicates and distinct fixes,
/// through the fix-attempt API and the mitigation phase store, so through
/// the group-commit recorder and beside it, with either of two API keys):
/// one fix per identity, each paid at most once, the 5 trial credits
/// paying exactly min(5, fixes), the rest `unpaid` (402 to the fix
/// attempt), Σ ledger = balance; every fix records a key that sent a
/// report naming it.
#[test]
fn concurrent_duplicate_and_distinct_reports_give_one_charge_per_fix() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(TestApp::spawn_with(LIMITS));
    let counter = std::sync::atomic::AtomicU64::new(0);
    let strategy = prop::collection::vec((shot(), any::<bool>()), 8..40);
    let result = runner(12).run(&strategy, |shots| {
        runtime.block_on(async {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (customer_id, first) = app.onboard(&email(&format!("gc-race-{n}"))).await;
            let (key_ids, secrets) = two_keys(&mut app.conn().await, customer_id, Some(&first)).await;
            let requests = shots.iter().map(|&(s, via_phase)| {
                let key = secrets[s.key].clone();
                let app = &app;
                async move {
                    let (owner, name) = REPOS[s.repo].split_once('/').unwrap();
                    if s.pr || !via_phase {
                        // The fix-attempt API always names the pull request.
                        let mut body = json!({"github_org": owner, "repo_name": name,
                                              "pr_number": 100 + s.k});
                        if s.issue {
                            body["issue_number"] = json!(s.k);
                        }
                        let (status, body) =
                            app.post_json("/api/v1/fix-attempts", Some(&key), &body).await;
                        assert!(status == 200 || status == 402, "{status} {body}");
                    } else {
                        let body = json!({"phase": "mitigation", "data": {"fixed": true},
                                          "repo": REPOS[s.repo], "issueNumber": s.k, "commitSha": SHA});
                        let (status, body) =
                            app.post_json("/api/v1/phases/store", Some(&key), &body).await;
                        assert_eq!(status, 200, "{body}");
                    }
                }
            });
            join_all(requests).await;
            // What was actually sent: a fix attempt always names the PR.
            let sent: Vec<Shot> = shots
                .iter()
                .map(|&(s, via_phase)| Shot {
                    pr: s.pr || !via_phase,
                    ..s
                })
                .collect();
            let mut conn = app.conn().await;
            let (rows, balance, sum, net) = outcome(&mut conn, customer_id, &key_ids).await;
            assert_eq!(rows.len(), expected_rows(&sent), "{rows:?}");
            for (repo, issue, pr, _, key) in &rows {
                let key = key.expect("a fix reported through the API records its key");
                assert!(
                    sent.iter().any(|s| s.key == key && s.names(repo, *issue, *pr)),
                    "fix {repo} {issue:?} {pr:?} has key {key}, which never named it: {sent:?}"
                );
            }
            let credit = rows.iter().filter(|f| f.3 == "credit").count();
            let unpaid = rows.iter().filter(|f| f.3 == "unpaid").count();
            assert_eq!(credit, rows.len().min(5), "{rows:?}");
            assert_eq!(credit + unpaid, rows.len(), "{rows:?}");
            assert_eq!(net, credit as i64);
            assert_eq!((balance, sum), (5 - credit as i64, 5 - credit as i64));
            check_debits(&mut conn, customer_id, "race").await;
        });
        Ok(())
    });
    report_failure(result);
}
