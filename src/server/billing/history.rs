//! The customer's history for the portal: ledger pages joined with the fix
//! each debit paid for, the same as CSV, and the usage series behind the
//! dashboard's chart. Read-only; every query is scoped to one customer.

use crate::server::billing::ledger::LedgerEntry;
use crate::server::billing::BillingError;
use crate::server::db::schema::{credit_ledger_entries, fixes};
use crate::types::values::LedgerKind;
use chrono::{NaiveDate, SecondsFormat};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Largest page size [`list_entries_page`] serves.
pub const MAX_PER_PAGE: i64 = 100;

/// Most rows one CSV export holds (newest first); older ones are left out.
pub const MAX_EXPORT_ROWS: i64 = 50_000;

/// The fix a `fix_consumed` entry paid for (via `fixes.ledger_entry_id`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct PaidFix {
    /// `owner/name`.
    pub repository: String,
    /// Issue number, if known.
    pub issue_number: Option<i64>,
    /// Pull request number, if known.
    pub pr_number: Option<i64>,
    /// Pull request link as reported, if any.
    pub pr_url: Option<String>,
}

/// One ledger entry with the fix it paid for, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The entry.
    pub entry: LedgerEntry,
    /// The fix it paid for.
    pub fix: Option<PaidFix>,
}

/// One page of [`list_entries_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Rows, newest first.
    pub rows: Vec<HistoryRow>,
    /// Entries matching the filter across all pages.
    pub total: i64,
    /// The page served, from 1 (clamped to at least 1).
    pub page: i64,
    /// The page size served (clamped to 1..=[`MAX_PER_PAGE`]).
    pub per_page: i64,
}

type RawRow = (
    LedgerEntry,
    Option<(String, Option<i64>, Option<i64>, Option<String>)>,
);

fn to_row((entry, fix): RawRow) -> HistoryRow {
    HistoryRow {
        entry,
        fix: fix.map(|(repository, issue_number, pr_number, pr_url)| PaidFix {
            repository,
            issue_number,
            pr_number,
            pr_url,
        }),
    }
}

/// Loads matching rows newest first, `limit` of them after skipping `offset`.
async fn load_rows(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    filter: Option<LedgerKind>,
    offset: i64,
    limit: i64,
) -> Result<Vec<HistoryRow>, BillingError> {
    let mut query = credit_ledger_entries::table
        .left_join(
            fixes::table.on(fixes::ledger_entry_id
                .eq(credit_ledger_entries::id.nullable())
                .and(fixes::customer_id.eq(credit_ledger_entries::customer_id))),
        )
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .select((
            LedgerEntry::as_select(),
            (
                fixes::repository,
                fixes::issue_number,
                fixes::pr_number,
                fixes::pr_url,
            )
                .nullable(),
        ))
        .order(credit_ledger_entries::id.desc())
        .offset(offset)
        .limit(limit)
        .into_boxed();
    if let Some(kind) = filter {
        query = query.filter(credit_ledger_entries::kind.eq(kind.as_str()));
    }
    let raw: Vec<RawRow> = query.load(conn).await?;
    Ok(raw.into_iter().map(to_row).collect())
}

/// One page of the customer's ledger, newest first, optionally only entries
/// of one kind, with the total for pagination. `page` counts from 1; values
/// below 1 read as 1 and `per_page` is clamped to 1..=[`MAX_PER_PAGE`]. A
/// page past the end is empty (with the true total).
///
/// Errors: [`BillingError::Database`].
pub async fn list_entries_page(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    filter: Option<LedgerKind>,
    page: i64,
    per_page: i64,
) -> Result<HistoryPage, BillingError> {
    let page = page.max(1);
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let mut count = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .count()
        .into_boxed();
    if let Some(kind) = filter {
        count = count.filter(credit_ledger_entries::kind.eq(kind.as_str()));
    }
    let total: i64 = count.get_result(conn).await?;
    let offset = (page - 1).saturating_mul(per_page);
    let rows = load_rows(conn, customer_id, filter, offset, per_page).await?;
    Ok(HistoryPage {
        rows,
        total,
        page,
        per_page,
    })
}

/// Header of [`ledger_csv`].
pub const CSV_HEADER: [&str; 9] = [
    "id",
    "created_at",
    "kind",
    "amount",
    "balance_after",
    "repository",
    "issue_number",
    "pr_number",
    "pr_url",
];

/// The customer's ledger (optionally one kind) as CSV, newest first, at most
/// [`MAX_EXPORT_ROWS`] rows: the [`CSV_HEADER`] columns, times as ISO-8601
/// UTC, amounts as signed credits. Text cells that a spreadsheet would run
/// as a formula (leading `=`, `+`, `-`, `@`) are prefixed with `'`.
///
/// Errors: [`BillingError::Database`]; [`BillingError::Pool`] if writing
/// the CSV fails (it writes to memory, so only on a bug).
pub async fn ledger_csv(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    filter: Option<LedgerKind>,
) -> Result<Vec<u8>, BillingError> {
    let rows = load_rows(conn, customer_id, filter, 0, MAX_EXPORT_ROWS).await?;
    let csv_error = |e: csv::Error| BillingError::Pool(format!("writing CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER).map_err(csv_error)?;
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    for HistoryRow { entry, fix } in rows {
        let fix = fix.as_ref();
        writer
            .write_record([
                entry.id.to_string(),
                entry.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                entry.kind.clone(),
                entry.amount.to_string(),
                entry.balance_after.to_string(),
                fix.map(|f| defuse_formula(&f.repository))
                    .unwrap_or_default(),
                number(fix.and_then(|f| f.issue_number)),
                number(fix.and_then(|f| f.pr_number)),
                fix.and_then(|f| f.pr_url.as_deref())
                    .map(defuse_formula)
                    .unwrap_or_default(),
            ])
            .map_err(csv_error)?;
    }
    writer
        .into_inner()
        .map_err(|e| BillingError::Pool(format!("writing CSV: {e}")))
}

/// Prefixes text a spreadsheet would evaluate as a formula with `'`.
fn defuse_formula(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// One UTC day of [`usage_series`].
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct UsagePoint {
    /// The UTC day.
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    /// Fixes first recorded that day (any billing status).
    #[diesel(sql_type = BigInt)]
    pub fixes: i64,
    /// Credits left at the end of that day (the balance after the day's last
    /// ledger entry, or the latest before it); `None` for days before the
    /// customer's account existed (UTC day of `customers.created_at`).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub credits_left: Option<i64>,
}

/// Fixes per UTC day and credits left at the end of each day, for the last
/// `days` days including today (clamped to 1..=366), oldest first, one
/// point per day (days without activity included). Computed in SQL over
/// `generate_series`.
///
/// Errors: [`BillingError::Database`].
pub async fn usage_series(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    days: i64,
) -> Result<Vec<UsagePoint>, BillingError> {
    let days = days.clamp(1, 366);
    Ok(diesel::sql_query(
        "WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS d), \
              days AS ( \
                SELECT generate_series(today.d - ($2::int - 1), today.d, interval '1 day')::date AS day \
                FROM today) \
         SELECT days.day, \
                (SELECT count(*) FROM fixes f \
                  WHERE f.customer_id = $1 \
                    AND f.created_at >= (days.day::timestamp AT TIME ZONE 'UTC') \
                    AND f.created_at < ((days.day + 1)::timestamp AT TIME ZONE 'UTC'))::bigint AS fixes, \
                CASE WHEN days.day < (SELECT (c.created_at AT TIME ZONE 'UTC')::date \
                                        FROM customers c WHERE c.id = $1) THEN NULL \
                     ELSE COALESCE((SELECT e.balance_after FROM credit_ledger_entries e \
                      WHERE e.customer_id = $1 \
                        AND e.created_at < ((days.day + 1)::timestamp AT TIME ZONE 'UTC') \
                      ORDER BY e.created_at DESC, e.id DESC LIMIT 1), 0) END::bigint AS credits_left \
         FROM days ORDER BY days.day",
    )
    .bind::<BigInt, _>(customer_id)
    .bind::<BigInt, _>(days)
    .load(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(defuse_formula("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(defuse_formula("@x"), "'@x");
        assert_eq!(defuse_formula("acme/api"), "acme/api");
    }
}
