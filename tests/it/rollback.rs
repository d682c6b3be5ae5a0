//! The rollback runbook's migration step (docs/runbooks/rollback.md): on a
//! database with data, `rsolv-platform migrate --revert-last` runs the
//! newest migration's `down.sql`, `rsolv-platform migrate` applies it again,
//! and the data outside that migration's tables is untouched and usable.

use crate::harness::{email, TestApp};
use crate::lifecycle::command;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

async fn applied_versions(app: &TestApp) -> Vec<String> {
    diesel::sql_query("SELECT version FROM __diesel_schema_migrations ORDER BY version")
        .load::<Version>(&mut app.conn().await)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect()
}

fn run_binary(args: &[&str], database_url: &str) -> String {
    let output = command(args, &[("DATABASE_URL", database_url)])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{args:?}: {text}");
    text
}

#[tokio::test]
async fn the_newest_migration_reverts_and_reapplies_on_a_database_with_data() {
    let app = TestApp::spawn().await;
    let (customer_id, key) = app.onboard(&email("rollback")).await;
    let (status, _) = app.get_json("/api/v1/billing/status", Some(&key)).await;
    assert_eq!(status, 200);
    let before: Vec<i64> = {
        let mut counts = Vec::new();
        for table in ["customers", "api_keys", "credit_ledger_entries", "users"] {
            counts.push(app.count(table).await);
        }
        counts
    };
    let versions = applied_versions(&app).await;
    let newest = versions.last().unwrap().clone();

    let out = run_binary(&["migrate", "--revert-last"], &app.db.url);
    assert!(
        out.contains(&format!("reverted migration {newest}")),
        "{out}"
    );
    let after_revert = applied_versions(&app).await;
    assert_eq!(after_revert, versions[..versions.len() - 1]);

    let out = run_binary(&["migrate"], &app.db.url);
    assert!(
        out.contains(&format!("applied 1 migration(s): {newest}")),
        "{out}"
    );
    assert_eq!(applied_versions(&app).await, versions);

    let mut after = Vec::new();
    for table in ["customers", "api_keys", "credit_ledger_entries", "users"] {
        after.push(app.count(table).await);
    }
    assert_eq!(after, before);
    let (balance, ledger) = app.balance_and_ledger_sum(customer_id).await;
    assert_eq!(balance, ledger);
    // The running server still serves the customer.
    let (status, _) = app.get_json("/api/v1/billing/status", Some(&key)).await;
    assert_eq!(status, 200);
}
