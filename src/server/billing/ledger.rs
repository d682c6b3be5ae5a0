//! The credit ledger: append-only entries, a cached balance on the
//! customer, one transaction and one row lock per movement.
//!
//! Invariants (backed by the database): the balance never goes negative
//! (`CHECK (credit_balance >= 0)`), each `(customer, idempotency_key)` is
//! written once (`UNIQUE`), entries are never updated or deleted (trigger),
//! and the cached balance equals the sum of the customer's entries.

use crate::server::billing::BillingError;
use crate::server::db::schema::{credit_ledger_entries, customers};
use crate::types::values::LedgerKind;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// One stored ledger entry. `amount` and `balance_after` are in credits.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = credit_ledger_entries, check_for_backend(diesel::pg::Pg))]
pub struct LedgerEntry {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub customer_id: i64,
    /// Signed credits: positive grants, negative debits.
    pub amount: i64,
    /// A [`LedgerKind`] spelling.
    pub kind: String,
    /// What the movement is about (e.g. `fix:42`), if anything.
    pub reference: Option<String>,
    /// Unique per customer; replays with the same key change nothing.
    pub idempotency_key: String,
    /// The customer's balance right after this entry, in credits.
    pub balance_after: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A movement to write.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// Whose balance moves.
    pub customer_id: i64,
    /// Signed credits; must not be zero.
    pub amount: i64,
    /// Why.
    pub kind: LedgerKind,
    /// What it is about, e.g. `fix:42`.
    pub reference: Option<&'a str>,
    /// Unique per customer, e.g. `signup_bonus` or `fix:42`.
    pub idempotency_key: &'a str,
}

/// The outcome of [`append_entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The entry (the earlier one on a replay).
    pub entry: LedgerEntry,
    /// True when the idempotency key had already been used with the same
    /// amount and kind, so nothing was written.
    pub replayed: bool,
}

#[derive(Insertable)]
#[diesel(table_name = credit_ledger_entries)]
struct InsertEntry<'a> {
    customer_id: i64,
    amount: i64,
    kind: &'a str,
    reference: Option<&'a str>,
    idempotency_key: &'a str,
    balance_after: i64,
}

/// Writes one entry and moves the cached balance, inside the caller's
/// transaction (call it from within `conn.transaction`, or use
/// [`record_entry`]). Locks the customer row first, so concurrent movements
/// for one customer are serialised. The lock is `FOR NO KEY UPDATE`: it
/// excludes other balance movements but not the `FOR KEY SHARE` locks that
/// foreign-key checks take when the same transaction (or a concurrent one)
/// inserts rows referencing the customer; `FOR UPDATE` would deadlock there.
///
/// Errors: [`BillingError::NotFound`] for an unknown customer;
/// [`BillingError::InsufficientCredits`] when the balance would go below
/// zero (nothing is written); [`BillingError::IdempotencyConflict`] when the
/// key was used for a different amount or kind.
pub async fn append_entry(
    conn: &mut AsyncPgConnection,
    new: NewEntry<'_>,
) -> Result<Appended, BillingError> {
    if new.amount == 0 {
        return Err(BillingError::Invalid(crate::types::values::ParseError(
            "a ledger entry must move at least one credit".into(),
        )));
    }
    let balance: i64 = customers::table
        .find(new.customer_id)
        .select(customers::credit_balance)
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("customer"))?;

    let existing = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(new.customer_id))
        .filter(credit_ledger_entries::idempotency_key.eq(new.idempotency_key))
        .select(LedgerEntry::as_select())
        .first(conn)
        .await
        .optional()?;
    if let Some(entry) = existing {
        if entry.amount != new.amount || entry.kind != new.kind.as_str() {
            return Err(BillingError::IdempotencyConflict(
                new.idempotency_key.to_owned(),
            ));
        }
        return Ok(Appended {
            entry,
            replayed: true,
        });
    }

    let balance_after = balance.checked_add(new.amount).filter(|b| *b >= 0).ok_or(
        BillingError::InsufficientCredits {
            needed: -new.amount,
            available: balance,
        },
    )?;

    let entry = diesel::insert_into(credit_ledger_entries::table)
        .values(InsertEntry {
            customer_id: new.customer_id,
            amount: new.amount,
            kind: new.kind.as_str(),
            reference: new.reference,
            idempotency_key: new.idempotency_key,
            balance_after,
        })
        .returning(LedgerEntry::as_returning())
        .get_result(conn)
        .await?;
    diesel::update(customers::table.find(new.customer_id))
        .set((
            customers::credit_balance.eq(balance_after),
            customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(Appended {
        entry,
        replayed: false,
    })
}

/// [`append_entry`] in a transaction of its own. Same errors.
pub async fn record_entry(
    conn: &mut AsyncPgConnection,
    new: NewEntry<'_>,
) -> Result<Appended, BillingError> {
    conn.transaction(async |conn| append_entry(conn, new).await)
        .await
}

/// The customer's entries, newest first, at most `limit`.
pub async fn list_entries(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    limit: i64,
) -> Result<Vec<LedgerEntry>, BillingError> {
    Ok(credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .order(credit_ledger_entries::id.desc())
        .limit(limit)
        .select(LedgerEntry::as_select())
        .load(conn)
        .await?)
}

/// The sum of the customer's entries, in credits (0 without entries). Equal
/// to the cached balance at all times; tests and reconciliation check it.
pub async fn ledger_sum(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<i64, BillingError> {
    let total: Option<i64> = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        >("sum(amount)::bigint"))
        .first(conn)
        .await?;
    Ok(total.unwrap_or(0))
}
