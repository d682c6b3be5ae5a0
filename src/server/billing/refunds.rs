//! Refunds and disputes (issue 9), applied from the payment processor's
//! reports (`charge.refunded`, `charge.dispute.created`,
//! `charge.dispute.closed`). Each command is idempotent: applying the same
//! report again changes nothing.
//!
//! **Refund policy.** A pay-as-you-go charge refunded in full makes the
//! charge `refunded` and its fix `refunded`: the fix is no longer paid for,
//! and the customer keeps no credit for it. The ledger is left as it is
//! when the credit the charge bought was consumed by the fix (its
//! `purchase` +1 and `fix_consumed` −1 stay as history and cancel out);
//! only a bought credit still unused is taken back, with a `refund` entry
//! of −1 (key `refund:charge:<charge id>`, never below zero). Partial
//! refunds are recorded on the stored event only (an admin decides).
//!
//! **Disputes.** A dispute flags the customer (`customers.disputed_at`,
//! shown and filterable in the admin console), is stored in
//! `stripe_disputes` and is reported to the caller as new once, so the
//! adapter tells the staff admins; its closing records the outcome
//! (Stripe's final status: `won`, `lost`, `warning_closed`, …).

use crate::server::billing::ledger::{append_entry, NewEntry};
use crate::server::billing::subscriptions::lock_by_processor_customer;
use crate::server::billing::BillingError;
use crate::server::db::schema::{
    charges, credit_ledger_entries, customers, fixes, stripe_disputes,
};
use crate::types::values::{FixBillingStatus, LedgerKind};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A refunded charge as the processor reports it (domain type). Amounts in
/// cents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundSnapshot {
    /// The processor's charge id, `ch_…`.
    pub processor_charge_id: String,
    /// The PaymentIntent that made the charge (how we find ours).
    pub payment_intent_id: Option<String>,
    /// Cents charged.
    pub amount_cents: i64,
    /// Cents refunded so far.
    pub amount_refunded_cents: i64,
}

/// What applying a refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Our charge is now `refunded` (or already was).
    Refunded {
        /// The charge row.
        charge_id: i64,
        /// Whether a `refund` ledger entry was written.
        credit_taken_back: bool,
    },
    /// Nothing to do; the reason is for the log.
    Ignored(&'static str),
}

/// Applies a refund report (module doc). Call inside a transaction.
///
/// Errors: [`BillingError::Database`].
pub async fn apply_refund(
    conn: &mut AsyncPgConnection,
    refund: &RefundSnapshot,
) -> Result<RefundOutcome, BillingError> {
    let Some(pi) = refund.payment_intent_id.as_deref() else {
        return Ok(RefundOutcome::Ignored("not a PaymentIntent charge of ours"));
    };
    let Some((charge_id, customer_id)) = charges::table
        .filter(charges::stripe_payment_intent_id.eq(pi))
        .select((charges::id, charges::customer_id))
        .first::<(i64, i64)>(conn)
        .await
        .optional()?
    else {
        return Ok(RefundOutcome::Ignored(
            "no charge of ours made this payment",
        ));
    };
    if refund.amount_refunded_cents < refund.amount_cents {
        return Ok(RefundOutcome::Ignored(
            "a partial refund is left to the admins",
        ));
    }
    // Customer first, then the charge, as everywhere else.
    customers::table
        .find(customer_id)
        .select(customers::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .await?;
    let (status, fix_id): (String, i64) = charges::table
        .find(charge_id)
        .select((charges::status, charges::fix_id))
        .for_update()
        .first(conn)
        .await?;
    if status == "refunded" {
        return Ok(RefundOutcome::Refunded {
            charge_id,
            credit_taken_back: false,
        });
    }
    if status != "succeeded" {
        return Ok(RefundOutcome::Ignored("the charge was not paid"));
    }
    diesel::update(charges::table.find(charge_id))
        .set((
            charges::status.eq("refunded"),
            charges::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::update(fixes::table.find(fix_id))
        .set((
            fixes::billing_status.eq(FixBillingStatus::Refunded.as_str()),
            fixes::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    let key_exists = |key: String| {
        credit_ledger_entries::table
            .filter(credit_ledger_entries::customer_id.eq(customer_id))
            .filter(credit_ledger_entries::idempotency_key.eq(key))
    };
    let bought: bool = diesel::select(diesel::dsl::exists(key_exists(format!(
        "purchase:charge:{charge_id}"
    ))))
    .get_result(conn)
    .await?;
    let consumed: bool = diesel::select(diesel::dsl::exists(key_exists(format!("fix:{fix_id}"))))
        .get_result(conn)
        .await?;
    let balance: i64 = customers::table
        .find(customer_id)
        .select(customers::credit_balance)
        .first(conn)
        .await?;
    let take_back = bought && !consumed && balance > 0;
    if take_back {
        let key = format!("refund:charge:{charge_id}");
        append_entry(
            conn,
            NewEntry {
                customer_id,
                amount: -1,
                kind: LedgerKind::Refund,
                reference: Some(&refund.processor_charge_id),
                idempotency_key: &key,
            },
        )
        .await?;
    }
    Ok(RefundOutcome::Refunded {
        charge_id,
        credit_taken_back: take_back,
    })
}

/// A dispute as the processor reports it (domain type). Amount in cents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeSnapshot {
    /// The processor's id, `dp_…`.
    pub id: String,
    /// The disputed charge, `ch_…`.
    pub processor_charge_id: String,
    /// Its PaymentIntent, if any (how we find our charge).
    pub payment_intent_id: Option<String>,
    /// The processor's customer id, when known (found by re-reading the
    /// charge): how we find the customer of a charge that is not ours,
    /// e.g. a Pro invoice's.
    pub processor_customer_id: Option<String>,
    /// Cents disputed.
    pub amount_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// The bank's reason (`fraudulent`, `product_not_received`, …).
    pub reason: String,
    /// The processor's status (`needs_response`, …, `won`, `lost`).
    pub status: String,
    /// When it was reported.
    pub observed_at: DateTime<Utc>,
}

/// What applying a dispute report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisputeOutcome {
    /// Recorded for this customer; `new` is true only the first time the
    /// dispute is seen (tell the admins then).
    Recorded {
        /// Our customer.
        customer_id: i64,
        /// First report of this dispute.
        new: bool,
    },
    /// The customer is not known yet (retry later).
    Waiting,
    /// Not about a customer of ours.
    Ignored,
}

async fn dispute_customer(
    conn: &mut AsyncPgConnection,
    dispute: &DisputeSnapshot,
) -> Result<Option<(i64, Option<i64>)>, BillingError> {
    if let Some(pi) = dispute.payment_intent_id.as_deref() {
        let ours: Option<(i64, i64)> = charges::table
            .filter(charges::stripe_payment_intent_id.eq(pi))
            .select((charges::id, charges::customer_id))
            .first(conn)
            .await
            .optional()?;
        if let Some((charge_id, customer_id)) = ours {
            customers::table
                .find(customer_id)
                .select(customers::id)
                .for_no_key_update()
                .first::<i64>(conn)
                .await?;
            return Ok(Some((customer_id, Some(charge_id))));
        }
    }
    match dispute.processor_customer_id.as_deref() {
        Some(cus) => Ok(lock_by_processor_customer(conn, cus)
            .await?
            .map(|c| (c.id, None))),
        None => Ok(None),
    }
}

/// `charge.dispute.created` (and any later report while open): stores the
/// dispute once and flags the customer (`disputed_at`). Call inside a
/// transaction.
///
/// Errors: [`BillingError::Database`].
pub async fn open_dispute(
    conn: &mut AsyncPgConnection,
    dispute: &DisputeSnapshot,
) -> Result<DisputeOutcome, BillingError> {
    let Some((customer_id, charge_id)) = dispute_customer(conn, dispute).await? else {
        return Ok(if dispute.processor_customer_id.is_some() {
            DisputeOutcome::Waiting
        } else {
            DisputeOutcome::Ignored
        });
    };
    let inserted = diesel::insert_into(stripe_disputes::table)
        .values((
            stripe_disputes::id.eq(&dispute.id),
            stripe_disputes::customer_id.eq(customer_id),
            stripe_disputes::charge_id.eq(charge_id),
            stripe_disputes::stripe_charge_id.eq(&dispute.processor_charge_id),
            stripe_disputes::amount_cents.eq(dispute.amount_cents),
            stripe_disputes::currency.eq(&dispute.currency),
            stripe_disputes::reason.eq(&dispute.reason),
            stripe_disputes::status.eq(&dispute.status),
            stripe_disputes::opened_at.eq(dispute.observed_at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted > 0 {
        diesel::update(customers::table.find(customer_id))
            .set((
                customers::disputed_at.eq(dispute.observed_at),
                customers::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(DisputeOutcome::Recorded {
        customer_id,
        new: inserted > 0,
    })
}

/// `charge.dispute.closed`: records the outcome (`status`, `closed_at`),
/// storing the dispute first if its opening was never seen. The customer
/// stays flagged (an admin clears it). Call inside a transaction.
///
/// Errors: [`BillingError::Database`].
pub async fn close_dispute(
    conn: &mut AsyncPgConnection,
    dispute: &DisputeSnapshot,
) -> Result<DisputeOutcome, BillingError> {
    let opened = open_dispute(conn, dispute).await?;
    if let DisputeOutcome::Recorded { .. } = opened {
        diesel::update(
            stripe_disputes::table
                .find(&dispute.id)
                .filter(stripe_disputes::closed_at.is_null()),
        )
        .set((
            stripe_disputes::status.eq(&dispute.status),
            stripe_disputes::closed_at.eq(dispute.observed_at),
            stripe_disputes::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    }
    Ok(opened)
}
