//! Fixes and the one-fix-one-charge rule (ACTION_API.md § "One fix, one
//! charge"): a fix is identified by (customer, repository, issue number) or,
//! without an issue number, the pull request number; it consumes at most one
//! credit however many reports arrive, in whatever order.

use crate::server::billing::charges::charge_for_fix_in_tx;
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::notifications::enqueue_email;
use crate::server::billing::notifications::{low_credit, EmailLinks, Recipient};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{customers, fixes};
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
    /// A [`FixBillingStatus`] spelling.
    pub billing_status: String,
    /// The `fix_consumed` ledger entry that paid for it, if paid by credit.
    pub ledger_entry_id: Option<i64>,
    /// First reported.
    pub created_at: DateTime<Utc>,
    /// Last reported.
    pub updated_at: DateTime<Utc>,
}

impl Fix {
    /// The parsed billing status.
    pub fn billing_status(&self) -> FixBillingStatus {
        FixBillingStatus::parse(&self.billing_status).unwrap_or(FixBillingStatus::Pending)
    }
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

/// Records a report of a fix and settles it at most once, in one
/// transaction: the fix row is upserted (later reports fill in missing
/// details); a fix seen for the first time consumes one credit (ledger kind
/// `fix_consumed`, idempotency key `fix:<id>`) or, with no credit left, is
/// stored as `unpaid` (never lost) and, when the customer can pay, gets its
/// charge and `stripe.charge` job in the same transaction
/// ([`charge_for_fix_in_tx`]: Pro overage or pay as you go, prices from
/// `pricing`); [`crate::server::billing::charges::refusal_for_fix`] then
/// tells whether the fix is refused (402). Concurrent duplicates wait
/// on the row and see it settled. A debit that leaves exactly 1 credit
/// queues the low-credit email (idempotency key `low_credit:<ledger entry
/// id>`, links from `links`) in the same transaction.
///
/// Errors: [`BillingError::Database`] only; lack of credits is not an error.
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

/// [`record_fix`] inside the caller's transaction.
pub async fn record_fix_in_tx(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    report: &FixReport,
    links: &EmailLinks,
) -> Result<Fix, BillingError> {
    let repository = &report.repository;
    let fix_key = match (report.issue_number, report.pr_number) {
        (Some(issue), _) => format!("issue:{issue}"),
        (None, Some(pr)) => {
            // A pull request already known under its issue is the same fix.
            fixes::table
                .filter(fixes::customer_id.eq(customer_id))
                .filter(fixes::repository.eq(repository.as_str()))
                .filter(fixes::pr_number.eq(pr))
                .order(fixes::id.asc())
                .select(fixes::fix_key)
                .first::<String>(conn)
                .await
                .optional()?
                .unwrap_or_else(|| format!("pr:{pr}"))
        }
        (None, None) => {
            return Err(crate::types::values::ParseError(
                "a fix needs an issue number or a pull request number".into(),
            )
            .into())
        }
    };

    let fix: Fix = diesel::sql_query(
        "INSERT INTO fixes (customer_id, repository, fix_key, issue_number, pr_number, pr_url, pr_title, \
                            issue_title, issue_url, fix_commit, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (customer_id, repository, fix_key) DO UPDATE SET \
             issue_number = COALESCE(fixes.issue_number, EXCLUDED.issue_number), \
             pr_number    = COALESCE(EXCLUDED.pr_number, fixes.pr_number), \
             pr_url       = COALESCE(EXCLUDED.pr_url, fixes.pr_url), \
             pr_title     = COALESCE(EXCLUDED.pr_title, fixes.pr_title), \
             issue_title  = COALESCE(EXCLUDED.issue_title, fixes.issue_title), \
             issue_url    = COALESCE(EXCLUDED.issue_url, fixes.issue_url), \
             fix_commit   = COALESCE(EXCLUDED.fix_commit, fixes.fix_commit), \
             metadata     = COALESCE(EXCLUDED.metadata, fixes.metadata), \
             updated_at   = now() \
         RETURNING *",
    )
    .bind::<BigInt, _>(customer_id)
    .bind::<Text, _>(repository.as_str())
    .bind::<Text, _>(&fix_key)
    .bind::<Nullable<BigInt>, _>(report.issue_number)
    .bind::<Nullable<BigInt>, _>(report.pr_number)
    .bind::<Nullable<Text>, _>(report.pr_url.as_deref())
    .bind::<Nullable<Text>, _>(report.pr_title.as_deref())
    .bind::<Nullable<Text>, _>(report.issue_title.as_deref())
    .bind::<Nullable<Text>, _>(report.issue_url.as_deref())
    .bind::<Nullable<Text>, _>(report.fix_commit.as_deref())
    .bind::<Nullable<Jsonb>, _>(report.metadata.as_ref())
    .get_result(conn)
    .await?;

    if fix.billing_status() != FixBillingStatus::Pending {
        return Ok(fix);
    }
    settle_fix(conn, pricing, fix, links).await
}

/// Pays for a pending fix with one credit, or marks it unpaid (with a
/// charge when the customer can pay).
async fn settle_fix(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    fix: Fix,
    links: &EmailLinks,
) -> Result<Fix, BillingError> {
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
    let (status, entry_id) = match debit {
        Ok(appended) => {
            if !appended.replayed && appended.entry.balance_after == 1 {
                queue_low_credit_email(conn, links, &appended.entry).await?;
            }
            (FixBillingStatus::Credit, Some(appended.entry.id))
        }
        Err(BillingError::InsufficientCredits { .. }) => {
            // The customer row is locked (append_entry locked it).
            charge_for_fix_in_tx(conn, pricing, fix.customer_id, fix.id).await?;
            (FixBillingStatus::Unpaid, None)
        }
        Err(other) => return Err(other),
    };
    Ok(diesel::update(fixes::table.find(fix.id))
        .set((
            fixes::billing_status.eq(status.as_str()),
            fixes::ledger_entry_id.eq(entry_id),
        ))
        .returning(Fix::as_returning())
        .get_result(conn)
        .await?)
}

/// Queues the low-credit warning for the debit `entry` (key
/// `low_credit:<entry id>`, so it is queued once per debit).
async fn queue_low_credit_email(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    entry: &crate::server::billing::ledger::LedgerEntry,
) -> Result<(), BillingError> {
    let (email, name): (String, String) = customers::table
        .find(entry.customer_id)
        .select((customers::email, customers::name))
        .first(conn)
        .await?;
    let to = Recipient {
        customer_id: Some(entry.customer_id),
        email: &email,
        name: &name,
    };
    let key = format!("low_credit:{}", entry.id);
    enqueue_email(conn, &low_credit(links, &to, entry.balance_after, key)).await?;
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
