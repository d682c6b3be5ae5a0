//! Pro credits for customers on a paid Marketplace plan.
//!
//! GitHub bills Marketplace customers itself and sends no event when a
//! billing period renews, so we keep the periods ourselves. A customer whose
//! Marketplace plan maps to `pro` gets [`PricingCatalog::pro_credits_per_period`]
//! credits (60 by default) per **monthly period**, ledger kind
//! `subscription_grant`:
//!
//! - **Periods.** A month-long grid anchored at GitHub's
//!   `marketplace_purchase.next_billing_date`: period `k` starts at
//!   `next_billing_date + k months` (computed from the anchor each time, so
//!   a 31st stays the 31st, clamped to shorter months). `monthly` billing:
//!   the periods are GitHub's billing periods. `yearly` billing: GitHub
//!   bills once a year, we grant **60 per month of the year, granted
//!   monthly** on the same grid (not 720 at once), so a customer who leaves
//!   mid-year has not received the rest of the year. Without a
//!   `next_billing_date` the event's `effective_date` is the anchor.
//! - **Now.** `purchased`, `changed` and an applied `pending_change` that
//!   put the customer on a plan mapped to `pro` grant the period containing
//!   the event's `effective_date` (the change's date for a pending change),
//!   in the delivery's transaction.
//! - **Later.** Each grant schedules the next period's grant as a
//!   `github.grant_period` job (`run_at` = the next period's start,
//!   i.e. `next_billing_date` for the first one; dedupe key
//!   `github.grant_period:<account id>:<period start date>`). The job grants
//!   only while the account's customer is still on `pro`, then schedules the
//!   following one; a customer no longer on `pro` (changed to another plan,
//!   or `cancelled`, which falls back to `payg`/`trial`) ends the chain: no
//!   more grants until a new purchase of a `pro` plan starts a new one.
//!   Scheduling a period drops the account's other queued grant jobs (a new
//!   `next_billing_date` moves the grid).
//! - **Once per period, whatever `next_billing_date` does.** The account
//!   remembers the end of the last period granted
//!   (`customer_github_accounts.granted_through`): a moment before it is
//!   already paid for, so a redelivery, a `changed` back to `pro` within the
//!   period, a re-purchase in the same period, a `next_billing_date` that
//!   moved, or the job running twice grant nothing more. The next grant is
//!   due at the later of the next period's start and `granted_through`.
//!   The ledger idempotency key is
//!   `gh:period:<GitHub account id>:<period start date>`.
//! - **Free trials.** A purchase or change `on_free_trial` grants no paid
//!   credits: the customer stays on its fallback plan (`trial`, or `payg`
//!   with a card) with the trial credits it has, and the move to the
//!   purchased plan is scheduled as a pending change at
//!   `free_trial_ends_on` (else `next_billing_date`), which then grants the
//!   first paid period.
//! - **No clawback.** A customer moving from `pro` to a lower plan (or
//!   cancelling) keeps the credits already granted, as Stripe customers keep
//!   their invoice grants.
//! - **Stripe too?** While the customer has a live Stripe subscription its
//!   paid invoices grant the period's credits (`invoice:<id>`), so the
//!   Marketplace grant is skipped (the chain goes on).

use crate::server::billing::customers::find_customer;
use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::queue::{BackgroundJob, JobError};
use crate::server::db::schema::{customer_github_accounts, customers, jobs};
use crate::server::marketplace::jobs::GrantPeriodJob;
use crate::server::state::AppState;
use crate::types::values::{LedgerKind, Plan};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// Job kind: grant a Marketplace Pro period and schedule the next one;
/// payload `{"github_account_id": i64, "anchor": RFC 3339, "index": i32}`
/// (the period starting `index` months after `anchor`).
pub const KIND_GITHUB_GRANT_PERIOD: &str = "github.grant_period";

/// One monthly credit period: the `index`-th month after `anchor` (negative
/// before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// GitHub's `next_billing_date` the grid hangs on.
    pub anchor: DateTime<Utc>,
    /// Months from the anchor to the period's start.
    pub index: i32,
}

/// `anchor + months` (months may be negative); `None` out of range.
fn add_months(anchor: DateTime<Utc>, months: i32) -> Option<DateTime<Utc>> {
    let n = Months::new(months.unsigned_abs());
    if months >= 0 {
        anchor.checked_add_months(n)
    } else {
        anchor.checked_sub_months(n)
    }
}

impl Period {
    /// The period of the grid on `anchor` that contains `at`.
    ///
    /// Errors: a message when the dates are out of chrono's range.
    pub fn containing(anchor: DateTime<Utc>, at: DateTime<Utc>) -> Result<Self, String> {
        let mut index =
            (at.year() - anchor.year()) * 12 + at.month0() as i32 - anchor.month0() as i32;
        let out_of_range = || format!("billing dates out of range ({anchor}, {at})");
        // At most a step or two each way (day of month and clamping).
        while add_months(anchor, index).ok_or_else(out_of_range)? > at {
            index -= 1;
        }
        while add_months(anchor, index + 1).ok_or_else(out_of_range)? <= at {
            index += 1;
        }
        Ok(Self { anchor, index })
    }

    /// When the period starts; `None` out of range.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        add_months(self.anchor, self.index)
    }

    /// The period after this one.
    pub fn next(&self) -> Self {
        Self {
            anchor: self.anchor,
            index: self.index.saturating_add(1),
        }
    }

    fn start_date(&self) -> Result<NaiveDate, BillingError> {
        self.start().map(|s| s.date_naive()).ok_or_else(|| {
            BillingError::Invalid(crate::types::values::ParseError(format!(
                "period {} months from {} is out of range",
                self.index, self.anchor
            )))
        })
    }

    /// The ledger idempotency key of this period's grant for GitHub account
    /// `account_id`: `gh:period:<account id>:<period start, YYYY-MM-DD>`.
    ///
    /// Errors: [`BillingError::Invalid`] out of range.
    pub fn grant_key(&self, account_id: i64) -> Result<String, BillingError> {
        Ok(format!("gh:period:{account_id}:{}", self.start_date()?))
    }

    /// The dedupe key of this period's `github.grant_period` job:
    /// `github.grant_period:<account id>:<period start, YYYY-MM-DD>`.
    ///
    /// Errors: [`BillingError::Invalid`] out of range.
    pub fn job_key(&self, account_id: i64) -> Result<String, BillingError> {
        Ok(format!(
            "{KIND_GITHUB_GRANT_PERIOD}:{account_id}:{}",
            self.start_date()?
        ))
    }
}

/// A date of GitHub's: RFC 3339, or a bare `YYYY-MM-DD` (midnight UTC).
pub fn parse_github_date(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

/// Grants the period containing `at` on `period`'s grid to `customer_id`
/// (linked to GitHub account `account_id`, which the caller has row-locked
/// and found on `pro`) and schedules the next grant. Call inside a
/// transaction. Returns whether credits were written now (false: the
/// moment is already paid for, a live Stripe subscription grants instead,
/// or `PRICING_PRO_CREDITS_PER_PERIOD` is 0).
///
/// **One grant per billing period, whatever `next_billing_date` does**
/// (issue 9): the account remembers the end of the last period granted
/// (`customer_github_accounts.granted_through`); a moment before it is
/// already paid for, so a redelivery, a re-purchase, a plan flip or a
/// `next_billing_date` that moved within the period grants nothing. The
/// next grant is due at the later of the next period's start and
/// `granted_through`, so a grid moved earlier delays the next grant to the
/// end of what was granted instead of granting twice, and one moved later
/// leaves no period unpaid.
///
/// Errors: [`BillingError`] (database; dates out of range).
pub async fn grant_period(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    customer_id: i64,
    account_id: i64,
    period: Period,
    at: DateTime<Utc>,
) -> Result<bool, BillingError> {
    let out_of_range = |e: String| BillingError::Invalid(crate::types::values::ParseError(e));
    let period = Period::containing(period.anchor, at).map_err(out_of_range)?;
    let period_end = period
        .next()
        .start()
        .ok_or_else(|| out_of_range("period end out of range".into()))?;
    let granted_through: Option<DateTime<Utc>> = customer_github_accounts::table
        .filter(customer_github_accounts::github_account_id.eq(account_id))
        .select(customer_github_accounts::granted_through)
        .for_update()
        .first(conn)
        .await
        .optional()?
        .flatten();
    let covered = granted_through.is_some_and(|through| at < through);
    let customer = find_customer(conn, customer_id).await?;
    let key = period.grant_key(account_id)?;
    let granted =
        if covered || customer.has_live_subscription() || pricing.pro_credits_per_period <= 0 {
            false
        } else {
            !append_entry(
                conn,
                NewEntry {
                    customer_id,
                    amount: pricing.pro_credits_per_period,
                    kind: LedgerKind::SubscriptionGrant,
                    reference: Some(&key),
                    idempotency_key: &key,
                },
            )
            .await?
            .replayed
        };
    let through = if granted {
        diesel::update(
            customer_github_accounts::table
                .filter(customer_github_accounts::github_account_id.eq(account_id)),
        )
        .set(customer_github_accounts::granted_through.eq(period_end))
        .execute(conn)
        .await?;
        crate::server::billing::fixes::settle_unpaid_fixes(conn, pricing, customer_id).await?;
        tracing::info!(
            customer_id,
            github_account_id = account_id,
            key,
            "Marketplace Pro period granted"
        );
        Some(period_end)
    } else {
        granted_through
    };
    let next_at = through.map_or(period_end, |t| t.max(period_end));
    schedule(conn, account_id, period.anchor, next_at).await?;
    Ok(granted)
}

/// Enqueues the `github.grant_period` job due at `at` (dedupe key
/// `github.grant_period:<account id>:<date of at>`) unless it exists, and
/// retires the account's other queued grant jobs.
async fn schedule(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    anchor: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<(), BillingError> {
    let period = Period::containing(anchor, at)
        .map_err(|e| BillingError::Invalid(crate::types::values::ParseError(e)))?;
    let dedupe = format!(
        "{KIND_GITHUB_GRANT_PERIOD}:{account_id}:{}",
        at.date_naive()
    );
    let run_at = at;
    diesel::update(
        jobs::table
            .filter(jobs::kind.eq(KIND_GITHUB_GRANT_PERIOD))
            .filter(jobs::status.eq("queued"))
            .filter(jobs::dedupe_key.like(format!("{KIND_GITHUB_GRANT_PERIOD}:{account_id}:%")))
            .filter(jobs::dedupe_key.ne(&dedupe)),
    )
    .set((
        jobs::status.eq("done"),
        jobs::last_error.eq(format!("superseded by {dedupe}")),
        jobs::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    let job = GrantPeriodJob {
        github_account_id: account_id,
        anchor: period.anchor.to_rfc3339(),
        index: period.index,
        at: Some(at.to_rfc3339()),
    };
    let payload = serde_json::to_value(&job)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    match job.enqueue(conn, Some(&dedupe)).await? {
        Some(job_id) => {
            diesel::update(jobs::table.find(job_id))
                .set(jobs::run_at.eq(run_at))
                .execute(conn)
                .await?;
        }
        None => {
            // The same moment was scheduled before (and maybe superseded
            // since, when the grid moved back): due again. Running it twice
            // grants once (granted_through).
            diesel::update(
                jobs::table
                    .filter(jobs::dedupe_key.eq(&dedupe))
                    .filter(jobs::status.eq_any(["queued", "done", "dead"])),
            )
            .set((
                jobs::status.eq("queued"),
                jobs::payload.eq(&payload),
                jobs::run_at.eq(run_at),
                jobs::attempts.eq(0),
                jobs::locked_until.eq(None::<DateTime<Utc>>),
                jobs::last_error.eq(None::<String>),
                jobs::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// The `github.grant_period` job (payload: see
/// [`KIND_GITHUB_GRANT_PERIOD`]), due at the period's start: when GitHub
/// account `github_account_id` still has a customer and that customer's
/// plan is `pro`, grants the period ([`grant_period`]) and schedules the
/// next; otherwise (cancelled, changed to a lower plan, unlinked) does
/// nothing and schedules nothing. Safe to run twice (idempotency key).
///
/// Errors: permanent for a malformed payload; retryable for database
/// failures.
pub async fn grant_period_job(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let account_id = payload
        .get("github_account_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload lacks github_account_id"))?;
    let anchor = payload
        .get("anchor")
        .and_then(Value::as_str)
        .and_then(parse_github_date)
        .ok_or_else(|| JobError::permanent("payload lacks a readable anchor"))?;
    let index = payload
        .get("index")
        .and_then(Value::as_i64)
        .and_then(|i| i32::try_from(i).ok())
        .ok_or_else(|| JobError::permanent("payload lacks index"))?;
    let period = Period { anchor, index };
    // When the grant is due (jobs queued before `at` existed: the period's
    // start).
    let at = match payload.get("at").and_then(Value::as_str) {
        Some(raw) => parse_github_date(raw)
            .ok_or_else(|| JobError::permanent("payload has an unreadable at"))?,
        None => period
            .start()
            .ok_or_else(|| JobError::permanent("period out of range"))?,
    };
    let pricing = &state.config.pricing;
    let mut conn = state.conn().await?;
    conn.transaction(async |conn| {
        let Some(customer_id) = customer_github_accounts::table
            .filter(customer_github_accounts::github_account_id.eq(account_id))
            .select(customer_github_accounts::customer_id)
            .first::<i64>(conn)
            .await
            .optional()?
        else {
            tracing::info!(
                github_account_id = account_id,
                "no customer for the account: no grant"
            );
            return Ok(());
        };
        let plan: Plan = customers::table
            .find(customer_id)
            .select(customers::plan)
            .for_no_key_update()
            .first(conn)
            .await?;
        if plan != Plan::Pro {
            tracing::info!(
                customer_id,
                github_account_id = account_id,
                %plan,
                "no longer on Marketplace Pro: no grant, no next period"
            );
            return Ok(());
        }
        grant_period(conn, pricing, customer_id, account_id, period, at).await?;
        Ok::<_, BillingError>(())
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn periods_hang_on_the_anchor() {
        let anchor = at(2026, 12, 21);
        let p = Period::containing(anchor, at(2026, 11, 21) + chrono::Duration::hours(10)).unwrap();
        assert_eq!((p.index, p.start()), (-1, Some(at(2026, 11, 21))));
        assert_eq!(p.next().start(), Some(anchor));
        assert_eq!(p.grant_key(7).unwrap(), "gh:period:7:2026-11-21");
        assert_eq!(
            p.next().job_key(7).unwrap(),
            "github.grant_period:7:2026-12-21"
        );
        // The start itself belongs to the period it starts.
        assert_eq!(Period::containing(anchor, anchor).unwrap().index, 0);
        assert_eq!(
            Period::containing(anchor, at(2026, 11, 20)).unwrap().index,
            -2
        );
        // A yearly anchor still gives monthly periods.
        let p = Period::containing(at(2027, 11, 21), at(2027, 3, 22)).unwrap();
        assert_eq!(p.start(), Some(at(2027, 3, 21)));
    }

    #[test]
    fn month_ends_are_clamped_from_the_anchor() {
        let anchor = at(2027, 1, 31);
        let p = Period { anchor, index: 1 };
        assert_eq!(p.start(), Some(at(2027, 2, 28)));
        assert_eq!(p.next().start(), Some(at(2027, 3, 31)));
        assert_eq!(
            Period::containing(anchor, at(2027, 3, 30)).unwrap().index,
            1
        );
    }

    #[test]
    fn github_dates() {
        assert_eq!(
            parse_github_date("2026-12-21T00:00:00+00:00"),
            Some(at(2026, 12, 21))
        );
        assert_eq!(parse_github_date("2026-12-21"), Some(at(2026, 12, 21)));
        assert_eq!(parse_github_date("soon"), None);
    }
}
