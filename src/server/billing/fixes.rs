//! Fixes and the one-fix-one-charge rule (ACTION_API.md § "One fix, one
//! charge"): a fix is identified by (customer, repository, issue number) or,
//! without an issue number, the pull request number; it consumes at most one
//! credit however many reports arrive, in whatever order.

use crate::server::billing::charges::{
    charge_for_fix_in_tx, live_charge_for_fix, ChargeStatus, NoCreditOutcome,
};
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::notifications::enqueue_email;
use crate::server::billing::notifications::{low_credit, CustomerContact, EmailLinks};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{charges, customers, fixes};
use crate::types::values::{FixBillingStatus, LedgerKind, Repository};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// A stored fix.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = fixes, check_for_backend(diesel::pg::Pg))]
pub struct Fix {
    /// Row id (the fix-attempt response's `id`).
    pub id: i64,
    /// Owner.
    pub customer_id: i64,
    /// `owner/name`.
    pub repository: String,
    /// `issue:<n>` or `pr:<n>`: the identity within the repository.
    pub fix_key: String,
    /// The issue the fix addresses, if known.
    pub issue_number: Option<i64>,
    /// The fix's pull request, if known.
    pub pr_number: Option<i64>,
    /// Link to the pull request.
    pub pr_url: Option<String>,
    /// Pull request title.
    pub pr_title: Option<String>,
    /// Issue title.
    pub issue_title: Option<String>,
    /// Link to the issue.
    pub issue_url: Option<String>,
    /// Commit that carries the fix.
    pub fix_commit: Option<String>,
    /// Extra client metadata (branch, labels, AI provider).
    pub metadata: Option<serde_json::Value>,
    /// How it has been paid for.
    pub billing_status: FixBillingStatus,
    /// The `fix_consumed` ledger entry that paid for it, if paid by credit.
    pub ledger_entry_id: Option<i64>,
    /// First reported.
    pub created_at: DateTime<Utc>,
    /// Last reported.
    pub updated_at: DateTime<Utc>,
    /// The API key whose report created the fix (one of the customer's
    /// keys: a foreign key on `(customer_id, api_key_id)` backs it). Set
    /// once, by the first report; later reports of the same fix never
    /// change it, and a merge keeps the survivor's (see
    /// [`record_fix_in_tx`]). `None` for fixes recorded before keys were
    /// recorded (2026-12), for reports that came without a key, and after
    /// the key row is deleted (keys are revoked, not deleted).
    pub api_key_id: Option<i64>,
}

/// One report of a fix, from a mitigation phase store or a fix attempt.
/// At least one of `issue_number` / `pr_number` is set (see [`FixReport::new`]).
#[derive(Debug, Clone)]
pub struct FixReport {
    /// The repository.
    pub repository: Repository,
    /// Issue number (> 0).
    pub issue_number: Option<i64>,
    /// Pull request number (> 0).
    pub pr_number: Option<i64>,
    /// Pull request link.
    pub pr_url: Option<String>,
    /// Pull request title.
    pub pr_title: Option<String>,
    /// Issue title.
    pub issue_title: Option<String>,
    /// Issue link.
    pub issue_url: Option<String>,
    /// Commit carrying the fix.
    pub fix_commit: Option<String>,
    /// Client metadata.
    pub metadata: Option<serde_json::Value>,
    /// The API key that sent the report (the Action API's authenticated
    /// key, [`crate::server::billing::api_keys::Authenticated::api_key_id`]);
    /// it must be one of the reporting customer's keys (else the database
    /// refuses the fix). Stored only by the report that creates the fix
    /// ([`Fix::api_key_id`]). `None` from [`FixReport::new`].
    pub api_key_id: Option<i64>,
}

impl FixReport {
    /// A report for `repository` with its identity; errors when neither
    /// number is given or one is not positive.
    pub fn new(
        repository: Repository,
        issue_number: Option<i64>,
        pr_number: Option<i64>,
    ) -> Result<Self, crate::types::values::ParseError> {
        use crate::types::values::ParseError;
        if issue_number.is_none() && pr_number.is_none() {
            return Err(ParseError(
                "a fix needs an issue number or a pull request number".into(),
            ));
        }
        if issue_number.is_some_and(|n| n <= 0) || pr_number.is_some_and(|n| n <= 0) {
            return Err(ParseError(
                "issue and pull request numbers must be positive".into(),
            ));
        }
        Ok(Self {
            repository,
            issue_number,
            pr_number,
            pr_url: None,
            pr_title: None,
            issue_title: None,
            issue_url: None,
            fix_commit: None,
            metadata: None,
            api_key_id: None,
        })
    }
}

/// The pull request number in a GitHub pull request URL
/// (`https://github.com/<owner>/<repo>/pull/<n>`), if it is one.
pub fn pr_number_from_url(url: &str) -> Option<i64> {
    let (_, tail) = url.split_once("/pull/")?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|n| *n > 0)
}

/// Records a report of a fix and bills it at most once, in one
/// transaction (see [`record_fix_in_tx`] for the identity rules). Under
/// [`BillableEvent::Deployed`](crate::server::billing::pricing::BillableEvent)
/// a fix seen for the first time is paid at once; under
/// `Merged` it is stored `pending` and [`bill_fix`] bills it later.
///
/// Errors: [`BillingError::Database`]; [`BillingError::NotFound`] for an
/// unknown customer; lack of credits is not an error.
pub async fn record_fix(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    report: &FixReport,
    links: &EmailLinks,
) -> Result<Fix, BillingError> {
    conn.transaction(async |conn| record_fix_in_tx(conn, pricing, customer_id, report, links).await)
        .await
}

/// Locks the customer's row `FOR NO KEY UPDATE` (the ledger's lock), which
/// serialises every fix report, settlement and balance movement of one
/// customer. Call inside a transaction.
///
/// Errors: [`BillingError::NotFound`] for an unknown customer.
pub async fn lock_customer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(), BillingError> {
    customers::table
        .find(customer_id)
        .select(customers::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("customer"))?;
    Ok(())
}

/// [`record_fix`] inside the caller's transaction.
///
/// One fix, one charge (ACTION_API.md; issue 9). Under the customer's row
/// lock ([`lock_customer`]), so racing reports queue behind each other, the
/// report is matched against the customer's fixes in the same repository by
/// issue number OR pull request number (partial unique indexes
/// `fixes_customer_issue_key` and `fixes_customer_pr_key` back it):
/// - nothing matches: a new fix (`fix_key` `issue:<n>`, else `pr:<n>`);
/// - one fix matches: the report attaches to it, filling in a missing issue
///   or pull request number and the details it carries (numbers already
///   set are never changed; a report naming another pull request for the
///   same issue keeps the first one);
/// - the issue matches fix A and the pull request a different, PR-only fix
///   B (the fix was reported by its pull request, then separately by its
///   issue): A and B are one fix and are merged. The survivor is the one
///   with a card charge, else the one paid with a credit, else the older;
///   the other row is deleted and, if a credit paid for it, that credit is
///   given back (ledger `refund`, +1, idempotency key `fix_merged:<deleted
///   id>`, reference `fix:<survivor id>`), and unpaid fixes are then settled
///   ([`settle_unpaid_fixes`]). If both carry a card charge they are left
///   apart (money back is an admin's refund) and the report attaches to A;
/// - the issue matches A and the pull request a fix B that has another
///   issue: the report attaches to A, the pull request stays with B.
///
/// Which key reported it ([`Fix::api_key_id`]): the report that creates
/// the fix stores its [`FixReport::api_key_id`]; a report that attaches to
/// a fix never changes it (not even to fill in a missing one), and a merge
/// keeps the survivor's. So the per-key counts
/// ([`crate::server::billing::api_keys::list_api_keys_with_activity`])
/// count each fix once, for the key that first reported it.
///
/// A new (or still `pending`) fix is then settled when reports bill
/// ([`BillableEvent::bills_on_report`](crate::server::billing::pricing::BillableEvent::bills_on_report)):
/// one credit (ledger `fix_consumed`, key `fix:<id>`) or, with none left,
/// `unpaid` with a charge when the customer can pay
/// ([`charge_for_fix_in_tx`]); [`crate::server::billing::charges::refusal_for_fix`]
/// then tells whether it is refused (402). A debit that leaves exactly 1
/// credit queues the low-credit email (key `low_credit:<ledger entry id>`,
/// links from `links`) in the same transaction.
///
/// Errors: [`BillingError::Database`]; [`BillingError::NotFound`] for an
/// unknown customer; [`BillingError::Invalid`] for a report without numbers.
pub async fn record_fix_in_tx(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    report: &FixReport,
    links: &EmailLinks,
) -> Result<Fix, BillingError> {
    if report.issue_number.is_none() && report.pr_number.is_none() {
        return Err(crate::types::values::ParseError(
            "a fix needs an issue number or a pull request number".into(),
        )
        .into());
    }
    lock_customer(conn, customer_id).await?;
    let repository = report.repository.as_str();
    let by_issue = match report.issue_number {
        Some(issue) => find_by(conn, customer_id, repository, Identity::Issue(issue)).await?,
        None => None,
    };
    let by_pr = match report.pr_number {
        Some(pr) => find_by(conn, customer_id, repository, Identity::Pr(pr)).await?,
        None => None,
    };
    let (target, issue, pr) = match (by_issue, by_pr) {
        (None, None) => {
            let fix = insert_fix(conn, customer_id, report).await?;
            return settle_if_due(conn, pricing, fix, links).await;
        }
        (Some(a), None) => (a, None, report.pr_number),
        (None, Some(b)) => (b, report.issue_number, None),
        (Some(a), Some(b)) if a.id == b.id => (a, None, None),
        (Some(a), Some(b)) => {
            if b.issue_number.is_none() {
                match merge_fixes(conn, a, b).await? {
                    Merged::Into(survivor, refunded) => {
                        let fix = attach(conn, survivor.id, report, None, None).await?;
                        if refunded {
                            settle_unpaid_fixes(conn, pricing, customer_id).await?;
                            return reload(conn, fix.id).await;
                        }
                        return settle_if_due(conn, pricing, fix, links).await;
                    }
                    Merged::Apart(a) => (a, None, None),
                }
            } else {
                (a, None, None)
            }
        }
    };
    let fix = attach(conn, target.id, report, issue, pr).await?;
    settle_if_due(conn, pricing, fix, links).await
}

/// Records a batch of reports of `customer_id`'s fixes with as few
/// commits and as short a hold of the customer's lock as it can (group
/// commit: [`crate::server::billing::fix_recorder::FixRecorder`] gathers
/// concurrent requests into batches). Answers one result per report, in
/// order; every answer is given after the commit that holds it.
///
/// The outcome is exactly that of recording the reports one after another
/// with [`record_fix_in_tx`], in this order: first the *fresh* reports (see
/// below), in batch order, then the others, in batch order. Concurrent
/// requests have no order of their own, so this is one of the sequential
/// executions they could have had; every rule of [`record_fix_in_tx`]
/// (identity, merge, one charge per fix, ledger keys) holds as written.
///
/// A report is fresh when reports bill
/// ([`BillableEvent::bills_on_report`](crate::server::billing::pricing::BillableEvent::bills_on_report)),
/// no earlier report of the batch names its issue or pull request (same
/// repository), no stored fix of the customer does (the partial unique
/// indexes decide, under the lock) and the balance covers every fresh
/// candidate of the batch. Recorded first, in sequence, each such report
/// meets the `(None, None)` case of [`record_fix_in_tx`] with a credit
/// left: a new fix paid by one credit (ledger `fix_consumed`, −1, key and
/// reference `fix:<id>`, `balance_after` counting down in ledger-id order;
/// the fix `credit` with its entry). One statement writes that for all of
/// them ([`insert_fresh_fixes`]):
/// 1. when the balance exceeds the candidates by 2 or more (no debit can
///    leave exactly 1 credit, so no low-credit email is due), on its own,
///    committed by itself (one round trip, one commit);
/// 2. otherwise, and for every report step 1 did not record, in one
///    transaction: the statement again (a debit that leaves exactly 1
///    credit queues the low-credit email, key `low_credit:<entry id>`, in
///    the same transaction, as [`pay_fix`] does), then each remaining
///    report through [`record_fix_in_tx`] itself, inside a savepoint, so
///    one report's failure (e.g. [`BillingError::Invalid`]) is its own.
///
/// Errors: the outer `Err` for a failure outside one report's savepoint
/// ([`BillingError::Database`], [`BillingError::NotFound`] for an unknown
/// customer): the transaction of step 2 is rolled back, what step 1
/// committed stays (recording those reports again finds their fixes:
/// reports are idempotent). Inner errors as [`record_fix_in_tx`]'s.
pub async fn record_fixes_batch(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    reports: &[FixReport],
    links: &EmailLinks,
) -> Result<Vec<Result<Fix, BillingError>>, BillingError> {
    let mut results: Vec<Option<Result<Fix, BillingError>>> =
        reports.iter().map(|_| None).collect();
    let candidates = if pricing.billable_event.bills_on_report() {
        first_mentions(reports)
    } else {
        Vec::new()
    };
    if !candidates.is_empty() {
        let picked: Vec<&FixReport> = candidates.iter().map(|&i| &reports[i]).collect();
        let inserted = insert_fresh_fixes(conn, customer_id, &picked, 2).await?;
        place(reports, &candidates, inserted, &mut results)?;
        if results.iter().all(Option::is_some) {
            return Ok(results.into_iter().flatten().collect());
        }
    }
    conn.transaction(async |conn| {
        let left: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| results[i].is_none())
            .collect();
        if left.is_empty() {
            lock_customer(conn, customer_id).await?;
        } else {
            let picked: Vec<&FixReport> = left.iter().map(|&i| &reports[i]).collect();
            let inserted = insert_fresh_fixes(conn, customer_id, &picked, 0).await?;
            for row in &inserted {
                if row.balance_after == 1 {
                    queue_low_credit_email(conn, links, customer_id, row.entry_id, 1).await?;
                }
            }
            place(reports, &left, inserted, &mut results)?;
        }
        for (i, report) in reports.iter().enumerate() {
            if results[i].is_none() {
                let one = conn
                    .transaction(async |conn| {
                        record_fix_in_tx(conn, pricing, customer_id, report, links).await
                    })
                    .await;
                results[i] = Some(one);
            }
        }
        Ok::<(), BillingError>(())
    })
    .await?;
    Ok(results.into_iter().flatten().collect())
}

/// Puts each fix [`insert_fresh_fixes`] wrote for `reports[candidates]`
/// in its report's slot of `results`.
fn place(
    reports: &[FixReport],
    candidates: &[usize],
    inserted: Vec<FreshFix>,
    results: &mut [Option<Result<Fix, BillingError>>],
) -> Result<(), BillingError> {
    for row in inserted {
        let slot = candidates
            .iter()
            .copied()
            .find(|&i| same_identity(&reports[i], &row.fix));
        match slot {
            Some(i) if results[i].is_none() => results[i] = Some(Ok(row.fix)),
            // Cannot happen (the statement inserts only the rows it was
            // given, one per report); refuse to guess.
            _ => return Err(BillingError::Database(diesel::result::Error::NotFound)),
        }
    }
    Ok(())
}

/// The indexes of the reports that name no issue or pull request an
/// earlier report of the batch names (same repository), and that carry
/// an identity at all.
fn first_mentions(reports: &[FixReport]) -> Vec<usize> {
    let mut seen: std::collections::HashSet<(&str, Identity)> = std::collections::HashSet::new();
    let mut picked = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        let repo = report.repository.as_str();
        let ids: Vec<Identity> = report
            .issue_number
            .map(Identity::Issue)
            .into_iter()
            .chain(report.pr_number.map(Identity::Pr))
            .collect();
        let fresh = !ids.is_empty() && ids.iter().all(|id| !seen.contains(&(repo, *id)));
        for id in ids {
            seen.insert((repo, id));
        }
        if fresh {
            picked.push(i);
        }
    }
    picked
}

/// Whether `fix` is the row a fresh `report` created (same repository and
/// the report's identity: its issue, else its pull request).
fn same_identity(report: &FixReport, fix: &Fix) -> bool {
    fix.repository == report.repository.as_str()
        && match report.issue_number {
            Some(issue) => fix.issue_number == Some(issue),
            None => fix.pr_number == report.pr_number,
        }
}

/// One row of [`insert_fresh_fixes`]: the new fix and its debit.
#[derive(QueryableByName)]
struct FreshFix {
    #[diesel(embed)]
    fix: Fix,
    /// The `fix_consumed` entry's id (also `fix.ledger_entry_id`).
    #[diesel(sql_type = BigInt)]
    entry_id: i64,
    /// The balance right after that debit.
    #[diesel(sql_type = BigInt)]
    balance_after: i64,
}

/// The single statement of [`record_fixes_batch`]'s fresh reports. Locks
/// the customer row (`FOR NO KEY UPDATE`, the ledger's lock) and, only
/// when the balance covers all of `reports`, inserts each as a new fix
/// paid by one credit: the fix (`credit`, `fix_key` `issue:<n>` else
/// `pr:<n>`, the report's `api_key_id`), its ledger entry (`fix_consumed`, −1, key and reference
/// `fix:<fix id>`, `balance_after` = balance − its rank in ledger-id
/// order) and the cached balance (− the number inserted). A report whose
/// issue or pull request a stored fix already holds is skipped
/// (`ON CONFLICT DO NOTHING` on the unique indexes, checked under the
/// lock); so is every report when the balance is below the number of
/// reports plus `margin` (credits). Outside a transaction it is one of its
/// own (the lock is held only for the statement and its commit). Returns the rows
/// inserted; the caller records the others the ordinary way. The ledger's
/// `UNIQUE (customer_id, idempotency_key)` and `CHECK (balance_after >= 0)`
/// and the customer's `CHECK (credit_balance >= 0)` back it.
async fn insert_fresh_fixes(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    reports: &[&FixReport],
    margin: i64,
) -> Result<Vec<FreshFix>, BillingError> {
    use diesel::sql_types::Array;
    let column = |f: fn(&FixReport) -> Option<String>| -> Vec<Option<String>> {
        reports.iter().map(|r| f(r)).collect()
    };
    let rows: Vec<FreshFix> = diesel::sql_query(FRESH_FIXES_SQL)
        .bind::<BigInt, _>(customer_id)
        .bind::<Array<Text>, _>(
            reports
                .iter()
                .map(|r| r.repository.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<BigInt>>, _>(
            reports.iter().map(|r| r.issue_number).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<BigInt>>, _>(reports.iter().map(|r| r.pr_number).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.pr_url.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.pr_title.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.issue_title.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.issue_url.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.fix_commit.clone()))
        .bind::<Array<Nullable<Jsonb>>, _>(
            reports
                .iter()
                .map(|r| r.metadata.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<BigInt, _>(margin)
        .bind::<Array<Nullable<BigInt>>, _>(
            reports.iter().map(|r| r.api_key_id).collect::<Vec<_>>(),
        )
        .load(conn)
        .await?;
    Ok(rows)
}

/// See [`insert_fresh_fixes`]. `$1` the customer; `$2..$10` one array
/// element per report: repository, issue number, pull request number,
/// pull request link, its title, issue title, issue link, commit, metadata;
/// `$11` the margin; `$12` one element per report: the reporting API key
/// (stored as the fix's `api_key_id`, which the foreign key on
/// `(customer_id, api_key_id)` keeps to the customer's own keys).
///
/// The ids are drawn from the sequences only once the customer's row is
/// locked (`input` joins `cust`: no row of it, hence no `nextval`, before
/// the lock is held), so ledger ids follow the order in which the balance
/// moved, as those of
/// [`append_entry`](crate::server::billing::ledger::append_entry) do, and
/// `balance_after` adds up entry by entry in id order. (Drawn before the
/// lock, an id could wait behind other debits and land before them.)
const FRESH_FIXES_SQL: &str = "\
WITH cust AS (
    SELECT credit_balance FROM customers WHERE id = $1 FOR NO KEY UPDATE
), input AS (
    SELECT t.*,
           nextval(pg_get_serial_sequence('fixes', 'id')) AS fix_id,
           nextval(pg_get_serial_sequence('credit_ledger_entries', 'id')) AS entry_id
    FROM cust,
         unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::jsonb[], $12::bigint[])
         WITH ORDINALITY AS t(repository, issue_number, pr_number, pr_url, pr_title,
                              issue_title, issue_url, fix_commit, metadata, api_key_id, ord)
    ORDER BY t.ord
), new_fix AS (
    INSERT INTO fixes (id, customer_id, repository, fix_key, issue_number, pr_number, pr_url,
                       pr_title, issue_title, issue_url, fix_commit, metadata, billing_status,
                       ledger_entry_id, api_key_id)
    SELECT i.fix_id, $1, i.repository,
           CASE WHEN i.issue_number IS NOT NULL THEN 'issue:' || i.issue_number
                ELSE 'pr:' || i.pr_number END,
           i.issue_number, i.pr_number, i.pr_url, i.pr_title, i.issue_title, i.issue_url,
           i.fix_commit, i.metadata, 'credit', i.entry_id, i.api_key_id
    FROM input i, cust
    WHERE cust.credit_balance >= cardinality($2::text[]) + $11
    ORDER BY i.ord
    ON CONFLICT DO NOTHING
    RETURNING *
), entry AS (
    INSERT INTO credit_ledger_entries (id, customer_id, amount, kind, reference,
                                       idempotency_key, balance_after)
    SELECT f.ledger_entry_id, $1, -1, 'fix_consumed', 'fix:' || f.id, 'fix:' || f.id,
           cust.credit_balance - row_number() OVER (ORDER BY f.ledger_entry_id)
    FROM new_fix f, cust
    RETURNING id, balance_after
), balance AS (
    UPDATE customers
    SET credit_balance = cust.credit_balance - (SELECT count(*) FROM entry), updated_at = now()
    FROM cust
    WHERE customers.id = $1 AND EXISTS (SELECT 1 FROM entry)
)
SELECT f.*, e.id AS entry_id, e.balance_after
FROM new_fix f JOIN entry e ON e.id = f.ledger_entry_id
ORDER BY e.id";

/// Which number a lookup matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Identity {
    Issue(i64),
    Pr(i64),
}

/// The customer's fix in `repository` with this issue or pull request
/// number, if any (at most one: unique indexes).
async fn find_by(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    repository: &str,
    identity: Identity,
) -> Result<Option<Fix>, BillingError> {
    let mut query = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::repository.eq(repository))
        .select(Fix::as_select())
        .into_boxed();
    query = match identity {
        Identity::Issue(n) => query.filter(fixes::issue_number.eq(n)),
        Identity::Pr(n) => query.filter(fixes::pr_number.eq(n)),
    };
    Ok(query.first(conn).await.optional()?)
}

async fn insert_fix(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    report: &FixReport,
) -> Result<Fix, BillingError> {
    let fix_key = match (report.issue_number, report.pr_number) {
        (Some(issue), _) => format!("issue:{issue}"),
        (None, Some(pr)) => format!("pr:{pr}"),
        (None, None) => {
            return Err(crate::types::values::ParseError(
                "a fix needs an issue number or a pull request number".into(),
            )
            .into())
        }
    };
    Ok(diesel::insert_into(fixes::table)
        .values((
            fixes::customer_id.eq(customer_id),
            fixes::repository.eq(report.repository.as_str()),
            fixes::fix_key.eq(fix_key),
            fixes::issue_number.eq(report.issue_number),
            fixes::pr_number.eq(report.pr_number),
            fixes::pr_url.eq(report.pr_url.as_deref()),
            fixes::pr_title.eq(report.pr_title.as_deref()),
            fixes::issue_title.eq(report.issue_title.as_deref()),
            fixes::issue_url.eq(report.issue_url.as_deref()),
            fixes::fix_commit.eq(report.fix_commit.as_deref()),
            fixes::metadata.eq(report.metadata.as_ref()),
            fixes::api_key_id.eq(report.api_key_id),
        ))
        .returning(Fix::as_returning())
        .get_result(conn)
        .await?)
}

/// Attaches a report to fix `id`: fills in `issue` / `pr` where the fix has
/// none (callers pass only numbers no other fix holds), and the details the
/// report carries (later reports win for titles, links, commit, metadata).
/// A fix that gains its issue number gets the key `issue:<n>`.
/// The fix's `api_key_id` is never changed (the first report's key stays).
async fn attach(
    conn: &mut AsyncPgConnection,
    id: i64,
    report: &FixReport,
    issue: Option<i64>,
    pr: Option<i64>,
) -> Result<Fix, BillingError> {
    Ok(diesel::sql_query(
        "UPDATE fixes SET \
             issue_number = COALESCE(issue_number, $2), \
             pr_number    = COALESCE(pr_number, $3), \
             fix_key      = CASE WHEN COALESCE(issue_number, $2) IS NOT NULL \
                                 THEN 'issue:' || COALESCE(issue_number, $2) ELSE fix_key END, \
             pr_url       = COALESCE($4, pr_url), \
             pr_title     = COALESCE($5, pr_title), \
             issue_title  = COALESCE($6, issue_title), \
             issue_url    = COALESCE($7, issue_url), \
             fix_commit   = COALESCE($8, fix_commit), \
             metadata     = COALESCE($9, metadata), \
             updated_at   = now() \
         WHERE id = $1 RETURNING *",
    )
    .bind::<BigInt, _>(id)
    .bind::<Nullable<BigInt>, _>(issue)
    .bind::<Nullable<BigInt>, _>(pr)
    .bind::<Nullable<Text>, _>(report.pr_url.as_deref())
    .bind::<Nullable<Text>, _>(report.pr_title.as_deref())
    .bind::<Nullable<Text>, _>(report.issue_title.as_deref())
    .bind::<Nullable<Text>, _>(report.issue_url.as_deref())
    .bind::<Nullable<Text>, _>(report.fix_commit.as_deref())
    .bind::<Nullable<Jsonb>, _>(report.metadata.as_ref())
    .get_result(conn)
    .await?)
}

async fn reload(conn: &mut AsyncPgConnection, id: i64) -> Result<Fix, BillingError> {
    Ok(fixes::table
        .find(id)
        .select(Fix::as_select())
        .first(conn)
        .await?)
}

/// The outcome of [`merge_fixes`].
enum Merged {
    /// The survivor (with both numbers) and whether a credit was given back.
    Into(Fix, bool),
    /// Both carry a charge: left apart; the issue's fix.
    Apart(Fix),
}

/// Whether fix `id` has a live charge (any status but `failed`): a charge
/// that is paying, or has paid, for it. A declined charge does not count: the
/// fix can still be paid from a credit or by a new charge.
async fn has_live_charge(conn: &mut AsyncPgConnection, id: i64) -> Result<bool, BillingError> {
    Ok(live_charge_for_fix(conn, id).await?.is_some())
}

/// Merges the issue's fix `a` and the PR-only fix `b` (see
/// [`record_fix_in_tx`]). Under the customer's lock.
/// The survivor keeps its `api_key_id` (the key that first reported it);
/// the other's goes with its row.
async fn merge_fixes(conn: &mut AsyncPgConnection, a: Fix, b: Fix) -> Result<Merged, BillingError> {
    let a_charge = has_live_charge(conn, a.id).await?;
    let b_charge = has_live_charge(conn, b.id).await?;
    if a_charge && b_charge {
        tracing::warn!(
            customer_id = a.customer_id,
            fix_a = a.id,
            fix_b = b.id,
            "one fix with two card charges; left apart for an admin"
        );
        return Ok(Merged::Apart(a));
    }
    let rank = |fix: &Fix, charge: bool| {
        (
            charge,
            fix.billing_status == FixBillingStatus::Credit,
            std::cmp::Reverse(fix.id),
        )
    };
    let (survivor, loser) = if rank(&a, a_charge) >= rank(&b, b_charge) {
        (a, b)
    } else {
        (b, a)
    };
    // The loser has no live charge (the rank puts one first); its declined
    // charges, if any, stay as the survivor's history.
    diesel::update(charges::table.filter(charges::fix_id.eq(loser.id)))
        .set(charges::fix_id.eq(survivor.id))
        .execute(conn)
        .await?;
    diesel::delete(fixes::table.find(loser.id))
        .execute(conn)
        .await?;
    let refunded = loser.billing_status == FixBillingStatus::Credit;
    if refunded {
        let key = format!("fix_merged:{}", loser.id);
        let reference = format!("fix:{}", survivor.id);
        append_entry(
            conn,
            NewEntry {
                customer_id: survivor.customer_id,
                amount: 1,
                kind: LedgerKind::Refund,
                reference: Some(&reference),
                idempotency_key: &key,
            },
        )
        .await?;
    }
    let merged = diesel::update(fixes::table.find(survivor.id))
        .set((
            fixes::issue_number.eq(survivor.issue_number.or(loser.issue_number)),
            fixes::pr_number.eq(survivor.pr_number.or(loser.pr_number)),
            fixes::pr_url.eq(survivor.pr_url.clone().or(loser.pr_url)),
            fixes::pr_title.eq(survivor.pr_title.clone().or(loser.pr_title)),
            fixes::issue_title.eq(survivor.issue_title.clone().or(loser.issue_title)),
            fixes::issue_url.eq(survivor.issue_url.clone().or(loser.issue_url)),
            fixes::fix_commit.eq(survivor.fix_commit.clone().or(loser.fix_commit)),
            fixes::metadata.eq(survivor.metadata.clone().or(loser.metadata)),
            fixes::created_at.eq(survivor.created_at.min(loser.created_at)),
        ))
        .returning(Fix::as_returning())
        .get_result(conn)
        .await?;
    tracing::info!(
        customer_id = merged.customer_id,
        survivor = merged.id,
        merged = loser.id,
        refunded,
        "two reports of one fix merged"
    );
    Ok(Merged::Into(merged, refunded))
}

/// Settles `fix` when it is `pending` and reports bill it.
async fn settle_if_due(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    fix: Fix,
    links: &EmailLinks,
) -> Result<Fix, BillingError> {
    if fix.billing_status != FixBillingStatus::Pending || !pricing.billable_event.bills_on_report()
    {
        return Ok(fix);
    }
    Ok(settle_fix(conn, pricing, fix, Some(links)).await?.0)
}

/// How [`pay_fix`] paid (or did not pay) a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// One credit: the `fix_consumed` ledger entry's id.
    Credit(i64),
    /// No credit left: a charge (its id) is on its way.
    Charging(i64),
    /// Nothing can pay for it now; the customer-facing reason.
    Refused(String),
    /// A Pro customer whose current period's credits are not granted yet:
    /// left `unpaid` (no charge, not refused) and settled at the grant.
    AwaitingPeriodCredits,
}

/// Pays fix `fix` (not yet paid, no live charge) with one credit (ledger
/// `fix_consumed`, key `fix:<id>`; with `links`, the low-credit email when
/// it leaves exactly 1 credit) or, with none left, through
/// [`charge_for_fix_in_tx`]. Under the customer's lock (append_entry takes
/// it). Does not update the fix row.
async fn pay_fix(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    fix: &Fix,
    links: Option<&EmailLinks>,
) -> Result<Payment, BillingError> {
    let key = format!("fix:{}", fix.id);
    let debit = append_entry(
        conn,
        NewEntry {
            customer_id: fix.customer_id,
            amount: -1,
            kind: LedgerKind::FixConsumed,
            reference: Some(&key),
            idempotency_key: &key,
        },
    )
    .await;
    match debit {
        Ok(appended) => {
            if let Some(links) = links {
                if !appended.replayed && appended.entry.balance_after == 1 {
                    queue_low_credit_email(
                        conn,
                        links,
                        appended.entry.customer_id,
                        appended.entry.id,
                        appended.entry.balance_after,
                    )
                    .await?;
                }
            }
            Ok(Payment::Credit(appended.entry.id))
        }
        Err(BillingError::InsufficientCredits { .. }) => {
            match charge_for_fix_in_tx(conn, pricing, fix.customer_id, fix.id).await? {
                NoCreditOutcome::Charging(id) => Ok(Payment::Charging(id)),
                NoCreditOutcome::Refused(reason) => Ok(Payment::Refused(reason)),
                NoCreditOutcome::AwaitingPeriodCredits => Ok(Payment::AwaitingPeriodCredits),
            }
        }
        Err(other) => Err(other),
    }
}

/// Pays for a fix ([`pay_fix`]) and stores the outcome: `credit` with its
/// ledger entry, or `unpaid` (with or without a charge on its way).
async fn settle_fix(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    fix: Fix,
    links: Option<&EmailLinks>,
) -> Result<(Fix, Payment), BillingError> {
    let payment = pay_fix(conn, pricing, &fix, links).await?;
    let (status, entry_id) = match &payment {
        Payment::Credit(entry) => (FixBillingStatus::Credit, Some(*entry)),
        Payment::Charging(_) | Payment::Refused(_) | Payment::AwaitingPeriodCredits => {
            (FixBillingStatus::Unpaid, None)
        }
    };
    let fix = diesel::update(fixes::table.find(fix.id))
        .set((
            fixes::billing_status.eq(status.as_str()),
            fixes::ledger_entry_id.eq(entry_id),
            fixes::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Fix::as_returning())
        .get_result(conn)
        .await?;
    Ok((fix, payment))
}

/// Bills the customer's `unpaid` fixes that have no live charge, oldest
/// first, now that the customer may be able to pay (credits granted, card
/// added, Pro started; issue 9: "billed exactly once as soon as the customer
/// can pay"). Each is paid exactly as a reported fix is: one credit (ledger
/// `fix_consumed`, key `fix:<id>`; the fix becomes `credit`) or, with no
/// credit left, a charge through [`charge_for_fix_in_tx`] (the fix stays
/// `unpaid` until the charge succeeds). Stops at the first fix that still
/// cannot be paid. A fix whose charge was declined is billed again like any
/// other (a credit first; a new charge, with a new idempotency key, only
/// once the card works again); a fix with a charge pending or paid is the
/// charge path's; `pending` fixes (bill on merge) wait for their billing
/// call; `written_off` ones are never billed. Call it inside the caller's
/// transaction: it locks the customer. Returns how many fixes were paid or
/// given a charge.
///
/// Errors: [`BillingError::NotFound`] for an unknown customer;
/// [`BillingError::Database`].
pub async fn settle_unpaid_fixes(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<usize, BillingError> {
    settle_unpaid(conn, pricing, customer_id).await
}

async fn settle_unpaid(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
) -> Result<usize, BillingError> {
    lock_customer(conn, customer_id).await?;
    let unpaid: Vec<Fix> = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::billing_status.eq(FixBillingStatus::Unpaid.as_str()))
        .filter(
            fixes::id.ne_all(
                charges::table
                    .filter(charges::customer_id.eq(customer_id))
                    .filter(charges::status.ne(ChargeStatus::Failed))
                    .select(charges::fix_id),
            ),
        )
        .order(fixes::id.asc())
        .select(Fix::as_select())
        .load(conn)
        .await?;
    let mut settled = 0;
    for fix in unpaid {
        let (_, payment) = settle_fix(conn, pricing, fix, None).await?;
        if matches!(
            payment,
            Payment::Refused(_) | Payment::AwaitingPeriodCredits
        ) {
            break;
        }
        settled += 1;
    }
    if settled > 0 {
        tracing::info!(customer_id, settled, "unpaid fixes settled");
    }
    Ok(settled)
}

/// The outcome of [`retry_unpaid_fix`].
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    /// Retried: paid with a credit, or a new charge (its id) is on its way,
    /// or the Pro period's credits are awaited (see [`Payment`]).
    Retried(Payment),
    /// A charge (its id) was on its way already: nothing changed.
    AlreadyCharging(i64),
}

/// An operator's retry of one `unpaid` fix (the admin console's "retry
/// charge"): under the customer's lock, in the caller's transaction, the
/// fix is paid as a reported fix is — one credit if any is left, else a NEW
/// charge (new id, so a new processor idempotency key `charge:<id>`, and a
/// new `stripe.charge` job) through [`charge_for_fix_in_tx`]. The retry is
/// a new chance for the card on file, as a new card is
/// ([`crate::server::billing::charges::retry_failed_charges`]): a
/// `payment_failed_at` left by an earlier decline is cleared first, and put
/// back if nothing can pay ([`Payment::Refused`]: no card and no Pro).
/// Declined charges stay `failed`. A fix with a charge on its way answers
/// [`RetryOutcome::AlreadyCharging`] and changes nothing (at most one live
/// charge per fix).
///
/// Errors: [`BillingError::NotFound`] when the fix is not this customer's;
/// [`BillingError::Invalid`] for a fix that is not `unpaid`;
/// [`BillingError::Database`].
pub async fn retry_unpaid_fix(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    fix_id: i64,
) -> Result<RetryOutcome, BillingError> {
    lock_customer(conn, customer_id).await?;
    let fix = fixes::table
        .find(fix_id)
        .filter(fixes::customer_id.eq(customer_id))
        .select(Fix::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("fix"))?;
    if fix.billing_status != FixBillingStatus::Unpaid {
        return Err(BillingError::Invalid(crate::types::values::ParseError(
            format!(
                "only an unpaid fix can be charged again; this one is {}",
                fix.billing_status
            ),
        )));
    }
    if let Some(live) = live_charge_for_fix(conn, fix.id).await? {
        return Ok(RetryOutcome::AlreadyCharging(live.id));
    }
    let failed_at: Option<DateTime<Utc>> = customers::table
        .find(customer_id)
        .select(customers::payment_failed_at)
        .first(conn)
        .await?;
    if failed_at.is_some() {
        diesel::update(customers::table.find(customer_id))
            .set(customers::payment_failed_at.eq(None::<DateTime<Utc>>))
            .execute(conn)
            .await?;
    }
    let (_, payment) = settle_fix(conn, pricing, fix, None).await?;
    if matches!(payment, Payment::Refused(_)) && failed_at.is_some() {
        diesel::update(customers::table.find(customer_id))
            .set(customers::payment_failed_at.eq(failed_at))
            .execute(conn)
            .await?;
    }
    Ok(RetryOutcome::Retried(payment))
}

/// The outcome of [`bill_fix`].
#[derive(Debug, Clone, PartialEq)]
pub enum BillOutcome {
    /// Paid before this call (credit or charge).
    AlreadyBilled(Fix),
    /// A charge was already on its way before this call.
    AlreadyCharging(Fix),
    /// Written off by an admin: never billed.
    WrittenOff(Fix),
    /// Billed by this call.
    Billed(Fix, Payment),
}

/// The Action's billing call (ACTION_API.md § 6; issue 9 "Bill on merge"):
/// bills fix `fix_id` of `customer_id`, idempotently, in one transaction
/// under the customer's lock. A `pending` fix (billed on merge) is paid as
/// a reported fix is ([`pay_fix`]); an `unpaid` fix without a charge is
/// tried again (credits may have arrived); anything else answers what was
/// already decided. [`Payment::Refused`] inside [`BillOutcome::Billed`]
/// means nothing can pay (the adapter answers 402); the fix is `unpaid`.
///
/// Errors: [`BillingError::NotFound`] when the fix is not this customer's;
/// [`BillingError::Database`].
pub async fn bill_fix(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    fix_id: i64,
    links: &EmailLinks,
) -> Result<BillOutcome, BillingError> {
    conn.transaction(async |conn| {
        lock_customer(conn, customer_id).await?;
        let fix = fixes::table
            .find(fix_id)
            .filter(fixes::customer_id.eq(customer_id))
            .select(Fix::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("fix"))?;
        let charging = has_live_charge(conn, fix.id).await?;
        match fix.billing_status {
            FixBillingStatus::Credit | FixBillingStatus::Charged | FixBillingStatus::Refunded => {
                Ok(BillOutcome::AlreadyBilled(fix))
            }
            FixBillingStatus::WrittenOff => Ok(BillOutcome::WrittenOff(fix)),
            FixBillingStatus::Unpaid if charging => Ok(BillOutcome::AlreadyCharging(fix)),
            FixBillingStatus::Pending | FixBillingStatus::Unpaid => {
                let (fix, payment) = settle_fix(conn, pricing, fix, Some(links)).await?;
                Ok(BillOutcome::Billed(fix, payment))
            }
        }
    })
    .await
}

/// The customer's fix in `repository` whose pull request is `pr_number`
/// (the Action's lookup before its billing call, ACTION_API.md § 6).
///
/// Errors: [`BillingError::NotFound`] when there is none;
/// [`BillingError::Database`].
pub async fn find_fix_by_pr(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    repository: &Repository,
    pr_number: i64,
) -> Result<Fix, BillingError> {
    find_by(
        conn,
        customer_id,
        repository.as_str(),
        Identity::Pr(pr_number),
    )
    .await?
    .ok_or(BillingError::NotFound("fix"))
}

/// The customer's `unpaid` fixes, oldest first (at most `limit`), each
/// with whether a charge is on its way (for the portal and the admin).
///
/// Errors: [`BillingError::Database`].
pub async fn list_unpaid_fixes(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    limit: i64,
) -> Result<Vec<(Fix, bool)>, BillingError> {
    let unpaid: Vec<Fix> = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::billing_status.eq(FixBillingStatus::Unpaid.as_str()))
        .order(fixes::id.asc())
        .limit(limit)
        .select(Fix::as_select())
        .load(conn)
        .await?;
    let ids: Vec<i64> = unpaid.iter().map(|f| f.id).collect();
    let charged: Vec<i64> = charges::table
        .filter(charges::fix_id.eq_any(&ids))
        .filter(charges::status.ne("failed"))
        .select(charges::fix_id)
        .load(conn)
        .await?;
    Ok(unpaid
        .into_iter()
        .map(|f| {
            let charging = charged.contains(&f.id);
            (f, charging)
        })
        .collect())
}

/// Queues the low-credit warning for debit `entry_id` of `customer_id`,
/// which left `balance_after` credits (key `low_credit:<entry id>`, so it
/// is queued once per debit).
async fn queue_low_credit_email(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    customer_id: i64,
    entry_id: i64,
    balance_after: i64,
) -> Result<(), BillingError> {
    let contact = CustomerContact::load(conn, customer_id).await?;
    let to = contact.recipient();
    let key = format!("low_credit:{entry_id}");
    enqueue_email(conn, &low_credit(links, &to, balance_after, key)).await?;
    Ok(())
}

/// Counts of the customer's fixes by billing status: (total, unpaid).
pub async fn count_fixes(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(i64, i64), BillingError> {
    let total: i64 = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .count()
        .get_result(conn)
        .await?;
    let unpaid: i64 = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::billing_status.eq(FixBillingStatus::Unpaid.as_str()))
        .count()
        .get_result(conn)
        .await?;
    Ok((total, unpaid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_numbers_come_from_pull_request_urls_only() {
        assert_eq!(
            pr_number_from_url("https://github.com/acme/api/pull/42"),
            Some(42)
        );
        assert_eq!(
            pr_number_from_url("https://github.com/acme/api/pull/42/files"),
            Some(42)
        );
        assert_eq!(
            pr_number_from_url("https://github.com/acme/api/issues/42"),
            None
        );
        assert_eq!(
            pr_number_from_url("https://github.com/acme/api/pull/0"),
            None
        );
    }

    #[test]
    fn a_fix_needs_a_positive_identity() {
        let repo = Repository::parse("acme/api").unwrap();
        assert!(FixReport::new(repo.clone(), None, None).is_err());
        assert!(FixReport::new(repo.clone(), Some(0), None).is_err());
        assert!(FixReport::new(repo, None, Some(42)).is_ok());
    }
}
