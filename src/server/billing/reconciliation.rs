//! Reconciliation (issue 9, scope 7): compares what our tables say with
//! itself and with the Stripe events we stored, and lists the drift as
//! findings (tables `reconciliation_runs`, `reconciliation_findings`).
//!
//! [`run`] checks, for every customer:
//! - `ledger_drift`: the cached `credit_balance` equals the sum of the
//!   customer's ledger entries (not repairable: a person decides which is
//!   right);
//! - `fix_payment`: every `charged` fix has exactly one `succeeded` charge
//!   and one `fix_consumed` entry (key `fix:<id>`); every `credit` fix one
//!   `fix_consumed` entry and no pending or succeeded charge (not
//!   repairable);
//! - `missing_grant` / `duplicate_grant`: every paid subscription invoice in
//!   the stored `invoice.paid` events whose `billing_reason` is creation or
//!   renewal (`subscription_create`, `subscription_cycle`, or none given)
//!   with money collected has exactly one grant, the ledger entry keyed `invoice:<id>`. A missing
//!   grant is repairable ([`repair`]) with that same key, so a repair and a
//!   late webhook never both grant;
//! - `refund_not_applied`: every stored `charge.refunded` event was
//!   processed (not repairable here: replay it from the webhook log).
//!
//! - what the payment processor itself says, through the
//!   [`PaymentProcessor`] port, over the last [`PROCESSOR_WINDOW_DAYS`]
//!   days ([`processor_findings`]): every PaymentIntent carrying our charge
//!   id matches that charge (one PaymentIntent per charge, same amount, same
//!   outcome) and every succeeded pay-as-you-go charge has its
//!   PaymentIntent (`fix_payment`, not repairable); every paid creation or
//!   renewal invoice of a subscription we recorded for the customer, with
//!   money collected, has its grant (`missing_grant`, repairable), even when
//!   its webhook never arrived. With billing off the processor is skipped;
//!   when it cannot be reached the run stores what it found locally and
//!   says so in the log.

use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::ports::{
    BillingReason, PaymentProcessor, ProcessorCharge, ProcessorChargeStatus, ProcessorError,
};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{
    charges, credit_ledger_entries, customers, reconciliation_findings, reconciliation_runs,
    stripe_subscriptions,
};
use crate::types::values::{LedgerKind, ParseError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};

/// The kinds of finding, with whether [`repair`] can fix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Cached balance ≠ Σ ledger.
    LedgerDrift,
    /// A billed fix not paid by exactly one credit or one charge.
    FixPayment,
    /// A paid subscription invoice without its grant.
    MissingGrant,
    /// An invoice granted more than once.
    DuplicateGrant,
    /// A stored `charge.refunded` event not applied.
    RefundNotApplied,
}

impl FindingKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LedgerDrift => "ledger_drift",
            Self::FixPayment => "fix_payment",
            Self::MissingGrant => "missing_grant",
            Self::DuplicateGrant => "duplicate_grant",
            Self::RefundNotApplied => "refund_not_applied",
        }
    }

    /// Whether [`repair`] fixes it safely (only a missed grant: written
    /// with the key the normal path uses).
    pub fn repairable(self) -> bool {
        matches!(self, Self::MissingGrant)
    }
}

/// A finding to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFinding {
    /// What kind of drift.
    pub kind: FindingKind,
    /// The customer concerned, if known.
    pub customer_id: Option<i64>,
    /// What it is about: `customer:<id>`, `fix:<id>`, `invoice:<id>`,
    /// `event:<id>`, `payment_intent:<id>`.
    pub subject: String,
    /// The facts found (amounts in credits or cents as named).
    pub details: Value,
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = reconciliation_findings, check_for_backend(diesel::pg::Pg))]
pub struct Finding {
    /// Row id.
    pub id: i64,
    /// The run that found it.
    pub run_id: i64,
    /// A [`FindingKind`] spelling.
    pub kind: String,
    /// The customer concerned.
    pub customer_id: Option<i64>,
    /// See [`NewFinding::subject`].
    pub subject: String,
    /// See [`NewFinding::details`].
    pub details: Value,
    /// Whether [`repair`] applies.
    pub repairable: bool,
    /// When it was repaired or dismissed.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it (an admin's email).
    pub resolved_by: Option<String>,
    /// Found.
    pub created_at: DateTime<Utc>,
}

/// The outcome of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: i64,
    /// The findings stored.
    pub findings: Vec<NewFinding>,
}

#[derive(QueryableByName)]
struct Drift {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = BigInt)]
    cached: i64,
    #[diesel(sql_type = BigInt)]
    ledger: i64,
}

#[derive(QueryableByName)]
struct FixRow {
    #[diesel(sql_type = BigInt)]
    fix_id: i64,
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = Text)]
    billing_status: String,
    #[diesel(sql_type = BigInt)]
    succeeded: i64,
    #[diesel(sql_type = BigInt)]
    live: i64,
    #[diesel(sql_type = BigInt)]
    consumed: i64,
}

#[derive(QueryableByName)]
struct InvoiceRow {
    #[diesel(sql_type = Text)]
    invoice_id: String,
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
    /// Stripe's `billing_reason`, when the event says.
    #[diesel(sql_type = Nullable<Text>)]
    billing_reason: Option<String>,
    /// `amount_paid` in cents, when the event says (older events without
    /// it count as money collected).
    #[diesel(sql_type = Nullable<BigInt>)]
    amount_paid: Option<i64>,
    #[diesel(sql_type = BigInt)]
    grants: i64,
}

#[derive(QueryableByName)]
struct RefundRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    charge: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    customer_id: Option<i64>,
}

/// The invoice object of every stored `invoice.paid` event of a
/// subscription, with its ids across API versions and what
/// [`BillingReason::pays_for_a_period`] needs (filtered in Rust, so the
/// rule is written once).
const INVOICES: &str = "
    WITH inv AS (
        SELECT e.id AS event_id, e.payload->'data'->'object' AS o
        FROM stripe_events e WHERE e.type = 'invoice.paid'
    ), paid AS (
        SELECT DISTINCT ON (o->>'id') o->>'id' AS invoice_id, event_id,
               COALESCE(o->'customer'->>'id', o->>'customer') AS cus,
               o->>'billing_reason' AS billing_reason,
               CASE WHEN jsonb_typeof(o->'amount_paid') = 'number'
                    THEN (o->>'amount_paid')::numeric::bigint END AS amount_paid
        FROM inv
        WHERE COALESCE(o->'subscription'->>'id', o->>'subscription',
                       o#>>'{parent,subscription_details,subscription}') IS NOT NULL
          AND o->>'id' IS NOT NULL
        ORDER BY o->>'id', event_id
    )
    SELECT p.invoice_id, c.id AS customer_id, p.event_id, p.billing_reason, p.amount_paid,
           (SELECT count(*) FROM credit_ledger_entries l
             WHERE l.idempotency_key = 'invoice:' || p.invoice_id) AS grants
    FROM paid p JOIN customers c ON c.stripe_customer_id = p.cus";

/// How far back [`run`] lists the processor's payments and invoices, in
/// days: one monthly billing period and a few days of slack.
pub const PROCESSOR_WINDOW_DAYS: i64 = 35;

/// Runs every check (the local ones and [`processor_findings`]), stores
/// the run and its findings, and returns them. Reads only (besides its own
/// tables); safe to run any time and twice.
///
/// Errors: [`BillingError::Database`].
pub async fn run(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
) -> Result<RunSummary, BillingError> {
    let mut findings = Vec::new();

    let drifts: Vec<Drift> = diesel::sql_query(
        "SELECT c.id AS customer_id, c.credit_balance AS cached, \
                COALESCE(SUM(l.amount), 0)::BIGINT AS ledger \
         FROM customers c LEFT JOIN credit_ledger_entries l ON l.customer_id = c.id \
         GROUP BY c.id HAVING c.credit_balance <> COALESCE(SUM(l.amount), 0) ORDER BY c.id",
    )
    .load(conn)
    .await?;
    findings.extend(drifts.into_iter().map(|d| NewFinding {
        kind: FindingKind::LedgerDrift,
        customer_id: Some(d.customer_id),
        subject: format!("customer:{}", d.customer_id),
        details: json!({ "cached_balance": d.cached, "ledger_sum": d.ledger }),
    }));

    let fixes: Vec<FixRow> = diesel::sql_query(
        "SELECT f.id AS fix_id, f.customer_id, f.billing_status, \
           (SELECT count(*) FROM charges ch WHERE ch.fix_id = f.id AND ch.status = 'succeeded') AS succeeded, \
           (SELECT count(*) FROM charges ch WHERE ch.fix_id = f.id AND ch.status IN ('pending', 'requires_action', 'succeeded')) AS live, \
           (SELECT count(*) FROM credit_ledger_entries l WHERE l.customer_id = f.customer_id \
              AND l.kind = 'fix_consumed' AND l.idempotency_key = 'fix:' || f.id) AS consumed \
         FROM fixes f WHERE f.billing_status IN ('charged', 'credit') ORDER BY f.id",
    )
    .load(conn)
    .await?;
    for f in fixes {
        let ok = match f.billing_status.as_str() {
            "charged" => f.succeeded == 1 && f.consumed == 1,
            _ => f.consumed == 1 && f.live == 0,
        };
        if !ok {
            findings.push(NewFinding {
                kind: FindingKind::FixPayment,
                customer_id: Some(f.customer_id),
                subject: format!("fix:{}", f.fix_id),
                details: json!({
                    "billing_status": f.billing_status,
                    "succeeded_charges": f.succeeded,
                    "live_charges": f.live,
                    "fix_consumed_entries": f.consumed,
                }),
            });
        }
    }

    let invoices: Vec<InvoiceRow> = diesel::sql_query(INVOICES).load(conn).await?;
    for i in invoices {
        let reason = i.billing_reason.as_deref().map(BillingReason::parse);
        if !BillingReason::pays_for_a_period(reason, true, i.amount_paid.unwrap_or(1)) {
            continue;
        }
        let kind = match i.grants {
            1 => continue,
            0 => FindingKind::MissingGrant,
            _ => FindingKind::DuplicateGrant,
        };
        findings.push(NewFinding {
            kind,
            customer_id: Some(i.customer_id),
            subject: format!("invoice:{}", i.invoice_id),
            details: json!({ "invoice_id": i.invoice_id, "event_id": i.event_id, "grants": i.grants }),
        });
    }

    let refunds: Vec<RefundRow> = diesel::sql_query(
        "SELECT e.id AS event_id, e.status, \
                e.payload#>>'{data,object,id}' AS charge, c.id AS customer_id \
         FROM stripe_events e \
         LEFT JOIN customers c ON c.stripe_customer_id = \
              COALESCE(e.payload#>>'{data,object,customer,id}', e.payload#>>'{data,object,customer}') \
         WHERE e.type = 'charge.refunded' AND e.status <> 'processed' ORDER BY e.id",
    )
    .load(conn)
    .await?;
    findings.extend(refunds.into_iter().map(|r| NewFinding {
        kind: FindingKind::RefundNotApplied,
        customer_id: r.customer_id,
        subject: format!("event:{}", r.event_id),
        details: json!({ "event_id": r.event_id, "event_status": r.status, "charge": r.charge }),
    }));

    let since = Utc::now() - chrono::Duration::days(PROCESSOR_WINDOW_DAYS);
    match processor_findings(conn, processor, since).await {
        Ok(more) => {
            for finding in more {
                if !findings.iter().any(|f| f.subject == finding.subject) {
                    findings.push(finding);
                }
            }
        }
        Err(BillingError::Processor(ProcessorError::Disabled)) => {}
        Err(BillingError::Processor(error)) => {
            tracing::warn!(%error, "reconciliation: the payment processor could not be compared");
        }
        Err(other) => return Err(other),
    }

    let run_id = store_run(conn, &findings).await?;
    Ok(RunSummary { run_id, findings })
}

/// Compares our charges and grants since `since` with the processor's
/// PaymentIntents and invoices since then (see the module docs).
///
/// Errors: [`BillingError::Processor`] when a listing fails;
/// [`BillingError::Database`].
pub async fn processor_findings(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
    since: DateTime<Utc>,
) -> Result<Vec<NewFinding>, BillingError> {
    let listed = processor
        .payment_intents_since(since)
        .await
        .map_err(BillingError::Processor)?;
    // Only our customers' payments (the account may serve other systems).
    let ours_at_processor: std::collections::HashSet<String> = customers::table
        .filter(
            customers::stripe_customer_id.eq_any(
                listed
                    .iter()
                    .filter_map(|p| p.customer.clone())
                    .collect::<Vec<_>>(),
            ),
        )
        .select(customers::stripe_customer_id)
        .load::<Option<String>>(conn)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let theirs: Vec<ProcessorCharge> = listed
        .into_iter()
        .filter(|p| {
            p.customer
                .as_ref()
                .is_some_and(|c| ours_at_processor.contains(c))
        })
        .collect();
    let ours: Vec<OurCharge> = charges::table
        .filter(charges::kind.eq(crate::server::billing::charges::ChargeKind::Payg))
        .filter(
            charges::created_at.ge(since).or(charges::id.eq_any(
                theirs
                    .iter()
                    .filter_map(|p| p.charge_id)
                    .collect::<Vec<_>>(),
            )),
        )
        .order(charges::id.asc())
        .select((
            charges::id,
            charges::customer_id,
            charges::amount_cents,
            charges::status,
            charges::stripe_payment_intent_id,
        ))
        .load::<(i64, i64, i64, String, Option<String>)>(conn)
        .await?
        .into_iter()
        .map(
            |(charge_id, customer_id, amount_cents, status, payment_intent_id)| OurCharge {
                charge_id,
                customer_id,
                amount_cents,
                status,
                payment_intent_id,
            },
        )
        .collect();
    let mut findings = compare_with_processor(&ours, &theirs);

    let invoices = processor
        .invoices_since(since)
        .await
        .map_err(BillingError::Processor)?;
    for invoice in invoices.iter().filter(|i| i.pays_for_a_period()) {
        let Some(subscription) = invoice.subscription_id.as_deref() else {
            continue;
        };
        let customer_id: Option<i64> = customers::table
            .inner_join(
                stripe_subscriptions::table.on(stripe_subscriptions::customer_id.eq(customers::id)),
            )
            .filter(customers::stripe_customer_id.eq(&invoice.processor_customer_id))
            .filter(stripe_subscriptions::id.eq(subscription))
            .select(customers::id)
            .first(conn)
            .await
            .optional()?;
        let Some(customer_id) = customer_id else {
            continue;
        };
        let key = format!("invoice:{}", invoice.id);
        let granted: bool = diesel::select(diesel::dsl::exists(
            credit_ledger_entries::table
                .filter(credit_ledger_entries::customer_id.eq(customer_id))
                .filter(credit_ledger_entries::idempotency_key.eq(&key)),
        ))
        .get_result(conn)
        .await?;
        if !granted {
            findings.push(NewFinding {
                kind: FindingKind::MissingGrant,
                customer_id: Some(customer_id),
                subject: key,
                details: json!({
                    "invoice_id": invoice.id, "subscription": subscription,
                    "amount_paid_cents": invoice.amount_paid_cents, "source": "processor",
                }),
            });
        }
    }
    Ok(findings)
}

/// Stores a run and its findings in one transaction; returns the run's id.
///
/// Errors: [`BillingError::Database`].
pub async fn store_run(
    conn: &mut AsyncPgConnection,
    findings: &[NewFinding],
) -> Result<i64, BillingError> {
    conn.transaction(async |conn| {
        let count = i32::try_from(findings.len()).unwrap_or(i32::MAX);
        let run_id: i64 = diesel::insert_into(reconciliation_runs::table)
            .values((
                reconciliation_runs::finished_at.eq(diesel::dsl::now),
                reconciliation_runs::findings.eq(count),
            ))
            .returning(reconciliation_runs::id)
            .get_result(conn)
            .await?;
        for f in findings {
            diesel::insert_into(reconciliation_findings::table)
                .values((
                    reconciliation_findings::run_id.eq(run_id),
                    reconciliation_findings::kind.eq(f.kind.as_str()),
                    reconciliation_findings::customer_id.eq(f.customer_id),
                    reconciliation_findings::subject.eq(&f.subject),
                    reconciliation_findings::details.eq(&f.details),
                    reconciliation_findings::repairable.eq(f.kind.repairable()),
                ))
                .execute(conn)
                .await?;
        }
        Ok(run_id)
    })
    .await
}

/// The findings of the latest run, then every older one still unresolved;
/// newest first. Returns the latest run (id, finished) if any.
///
/// Errors: [`BillingError::Database`].
pub async fn list_findings(
    conn: &mut AsyncPgConnection,
) -> Result<(Option<(i64, Option<DateTime<Utc>>)>, Vec<Finding>), BillingError> {
    let latest: Option<(i64, Option<DateTime<Utc>>)> = reconciliation_runs::table
        .order(reconciliation_runs::id.desc())
        .select((reconciliation_runs::id, reconciliation_runs::finished_at))
        .first(conn)
        .await
        .optional()?;
    let latest_id = latest.map(|(id, _)| id).unwrap_or(0);
    let rows = reconciliation_findings::table
        .filter(
            reconciliation_findings::run_id
                .eq(latest_id)
                .or(reconciliation_findings::resolved_at.is_null()),
        )
        .order(reconciliation_findings::id.desc())
        .limit(500)
        .select(Finding::as_select())
        .load(conn)
        .await?;
    Ok((latest, rows))
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repaired {
    /// The grant was written now (credits).
    Granted {
        /// The customer.
        customer_id: i64,
        /// Credits granted.
        credits: i64,
    },
    /// Nothing to do: the finding was resolved already, or the grant exists
    /// by now (a late webhook, or an earlier repair); the finding is
    /// marked resolved.
    AlreadyDone,
}

/// Repairs finding `finding_id` inside the caller's transaction (the admin
/// adapter writes its audit entry in the same one) and marks it resolved
/// by `by`. Only a `missing_grant` is repairable: the period's credits
/// (`pricing.pro_credits_per_period`) are appended with the ledger key the
/// `invoice.paid` path uses (`invoice:<id>`), so the repair and a late
/// webhook grant once between them.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Invalid`] for a
/// finding that is not repairable; [`BillingError::Database`].
pub async fn repair(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    finding_id: i64,
    by: &str,
) -> Result<(Finding, Repaired), BillingError> {
    let finding: Finding = reconciliation_findings::table
        .find(finding_id)
        .select(Finding::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("reconciliation finding"))?;
    if finding.kind != FindingKind::MissingGrant.as_str() || !finding.repairable {
        return Err(BillingError::Invalid(ParseError(format!(
            "a {} finding cannot be repaired here; look into it by hand",
            finding.kind
        ))));
    }
    if finding.resolved_at.is_some() {
        return Ok((finding, Repaired::AlreadyDone));
    }
    let customer_id = finding
        .customer_id
        .ok_or(BillingError::NotFound("customer"))?;
    let key = finding.subject.clone(); // `invoice:<id>`, the normal path's key
    let appended = append_entry(
        conn,
        NewEntry {
            customer_id,
            amount: pricing.pro_credits_per_period,
            kind: LedgerKind::SubscriptionGrant,
            reference: Some(&key),
            idempotency_key: &key,
        },
    )
    .await?;
    diesel::update(reconciliation_findings::table.find(finding_id))
        .set((
            reconciliation_findings::resolved_at.eq(diesel::dsl::now),
            reconciliation_findings::resolved_by.eq(by),
        ))
        .execute(conn)
        .await?;
    let outcome = if appended.replayed {
        Repaired::AlreadyDone
    } else {
        Repaired::Granted {
            customer_id,
            credits: pricing.pro_credits_per_period,
        }
    };
    Ok((finding, outcome))
}

/// One of our charges as the processor comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurCharge {
    /// Our `charges` row id.
    pub charge_id: i64,
    /// The customer.
    pub customer_id: i64,
    /// Cents.
    pub amount_cents: i64,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// The processor's payment id we stored, if any.
    pub payment_intent_id: Option<String>,
}

/// Compares our pay-as-you-go charges with the processor's PaymentIntents
/// and returns the drift as `fix_payment` findings. Only PaymentIntents
/// carrying our charge id in their metadata are ours (subscription invoices
/// make PaymentIntents too). Drift: a PaymentIntent for a charge we do not
/// have, a second PaymentIntent for one charge (issue 9: one idempotency key
/// per charge), a different amount, a different outcome (succeeded there
/// and not here, or the reverse), and a succeeded charge whose stored
/// PaymentIntent the processor does not list. Pure.
/// Whether our stored charge status may still become paid by a card
/// payment (`ChargeStatus::awaits_card_payment`).
fn awaiting(status: &str) -> bool {
    crate::server::billing::charges::ChargeStatus::parse(status)
        .is_some_and(crate::server::billing::charges::ChargeStatus::awaits_card_payment)
}

pub fn compare_with_processor(ours: &[OurCharge], theirs: &[ProcessorCharge]) -> Vec<NewFinding> {
    use std::collections::HashMap;
    let by_charge: HashMap<i64, &OurCharge> = ours.iter().map(|c| (c.charge_id, c)).collect();
    let listed: std::collections::HashSet<&str> = theirs.iter().map(|p| p.id.as_str()).collect();
    let mut findings = Vec::new();
    for p in theirs {
        let Some(charge_id) = p.charge_id else {
            continue;
        };
        let succeeded = p.status == ProcessorChargeStatus::Succeeded;
        let problem = match by_charge.get(&charge_id) {
            None => Some("a payment for a charge we do not have"),
            Some(c)
                if c.payment_intent_id
                    .as_deref()
                    .is_some_and(|ours| ours != p.id) =>
            {
                Some("a second payment for one charge")
            }
            Some(c) if c.amount_cents != p.amount_cents => Some("amounts differ"),
            // `pending` and `requires_action` may be paid and not booked
            // yet (the job, the page or the webhook is recording it now).
            Some(c) if succeeded != (c.status == "succeeded") && !awaiting(&c.status) => {
                Some("outcomes differ")
            }
            Some(c) if succeeded && awaiting(&c.status) => None, // being recorded now
            Some(_) => None,
        };
        if let Some(problem) = problem {
            let ours = by_charge.get(&charge_id);
            findings.push(NewFinding {
                kind: FindingKind::FixPayment,
                customer_id: ours.map(|c| c.customer_id),
                subject: format!("payment_intent:{}", p.id),
                details: json!({
                    "problem": problem, "charge_id": charge_id,
                    "processor_amount_cents": p.amount_cents, "processor_succeeded": succeeded,
                    "our_status": ours.map(|c| c.status.clone()),
                    "our_amount_cents": ours.map(|c| c.amount_cents),
                    "our_payment_intent": ours.and_then(|c| c.payment_intent_id.clone()),
                }),
            });
        }
    }
    for c in ours.iter().filter(|c| c.status == "succeeded") {
        if c.payment_intent_id
            .as_deref()
            .is_none_or(|pi| !listed.contains(pi))
        {
            findings.push(NewFinding {
                kind: FindingKind::FixPayment,
                customer_id: Some(c.customer_id),
                subject: format!("charge:{}", c.charge_id),
                details: json!({
                    "problem": "succeeded here, no such payment at the processor",
                    "our_amount_cents": c.amount_cents, "payment_intent": c.payment_intent_id,
                }),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(charge_id: i64, status: &str, pi: Option<&str>) -> OurCharge {
        OurCharge {
            charge_id,
            customer_id: 7,
            amount_cents: 2900,
            status: status.into(),
            payment_intent_id: pi.map(str::to_owned),
        }
    }

    fn theirs(id: &str, charge_id: Option<i64>, amount: i64, succeeded: bool) -> ProcessorCharge {
        ProcessorCharge {
            id: id.into(),
            status: if succeeded {
                ProcessorChargeStatus::Succeeded
            } else {
                ProcessorChargeStatus::Declined {
                    code: None,
                    decline_code: None,
                }
            },
            amount_cents: amount,
            currency: Some("usd".into()),
            charge_id,
            customer: Some("cus_1".into()),
            created: None,
        }
    }

    #[test]
    fn the_processor_comparison_lists_unknown_second_and_differing_payments() {
        let ours = [
            ours(1, "succeeded", Some("pi_a")),
            ours(2, "succeeded", Some("pi_b")),
            ours(3, "failed", Some("pi_d")),
            ours(4, "succeeded", Some("pi_gone")),
            ours(5, "pending", None),
        ];
        let theirs = [
            theirs("pi_a", Some(1), 2900, true),  // matches
            theirs("pi_b", Some(2), 2900, false), // outcome differs
            theirs("pi_c", Some(9), 900, true),   // no such charge
            theirs("pi_d", Some(3), 2900, false), // matches (declined)
            theirs("pi_e", Some(1), 2900, true),  // a second payment for charge 1
            theirs("pi_f", None, 59900, true),    // not ours (an invoice's)
            theirs("pi_g", Some(5), 2900, true),  // being recorded now
        ];
        let subjects: Vec<_> = compare_with_processor(&ours, &theirs)
            .into_iter()
            .map(|f| f.subject)
            .collect();
        assert_eq!(
            subjects,
            vec![
                "payment_intent:pi_b",
                "payment_intent:pi_c",
                "payment_intent:pi_e",
                "charge:4"
            ]
        );
    }
}
