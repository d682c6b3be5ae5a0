//! Customers as the admin console sees them: search, the detail page's
//! data, and the admin's actions (provision, adjust credits, suspend and
//! reactivate, revoke a key, write off an unpaid fix or charge it again),
//! each with its audit entry in the same transaction.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::{page_offset, Admin};
use crate::server::auth::accounts::{provision_with_owner, OwnerSetup};
use crate::server::billing::api_keys::{
    list_api_keys_with_activity, revoke_api_key, ApiKey, KeyWithActivity,
};
use crate::server::billing::charges::Charge;
use crate::server::billing::customers::{find_customer, Customer, NewCustomer};
use crate::server::billing::fixes::{
    list_unpaid_fixes, lock_customer, retry_unpaid_fix, settle_unpaid_fixes, Fix, Payment,
    RetryOutcome,
};
use crate::server::billing::ledger::{append_entry, LedgerEntry, NewEntry};
use crate::server::billing::notifications::EmailLinks;
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::config::Config;
use crate::server::db::schema::{
    admin_audit_log, charges, credit_ledger_entries, customers, email_outbox, fix_write_offs,
    fixes, stripe_events, stripe_payment_methods, users,
};
use crate::types::values::SubscriptionStatus;
use crate::types::values::{
    CustomerStatus, FixBillingStatus, LedgerKind, ParseError, Plan, Source,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// Customers per page of the search.
pub const CUSTOMERS_PER_PAGE: i64 = 25;
/// Largest credit adjustment one admin action may make, either way.
pub const MAX_ADJUSTMENT: i64 = 1_000_000;
/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

fn invalid(message: impl Into<String>) -> BillingError {
    BillingError::Invalid(ParseError(message.into()))
}

/// The search's sort orders (`sort` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerSort {
    /// Newest first (default).
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Email A→Z.
    Email,
    /// Largest balance first.
    BalanceDesc,
    /// Smallest balance first.
    BalanceAsc,
}

impl CustomerSort {
    /// Parses the `sort` parameter (`newest`, `oldest`, `email`,
    /// `balance_desc`, `balance_asc`; empty: newest).
    ///
    /// Errors: [`BillingError::Invalid`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, BillingError> {
        Ok(match raw {
            "" | "newest" => Self::Newest,
            "oldest" => Self::Oldest,
            "email" => Self::Email,
            "balance_desc" => Self::BalanceDesc,
            "balance_asc" => Self::BalanceAsc,
            other => return Err(invalid(format!("unknown sort {other:?}"))),
        })
    }
}

/// The search's filters, parsed.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Matches email or name (substring, any case), a Stripe Customer id
    /// (exact) or an API key prefix (leading characters of a key).
    pub q: Option<String>,
    /// Only this plan.
    pub plan: Option<Plan>,
    /// Only this status.
    pub status: Option<CustomerStatus>,
    /// Only this source.
    pub source: Option<Source>,
    /// Only customers who cannot use the service now (suspended, or no
    /// credits and no way to pay).
    pub cannot_use_service: bool,
    /// Only customers whose payment failed: a Stripe subscription
    /// `past_due`/`unpaid`, a declined pay-as-you-go charge not yet
    /// recovered (`payment_failed_at`), a failed charge, or a fix whose
    /// charge is unpaid.
    pub payment_failed: bool,
    /// Only customers flagged by a dispute (`disputed_at`).
    pub disputed: bool,
    /// Order.
    pub sort: CustomerSort,
    /// Page from 1.
    pub page: i64,
}

/// One page of customers.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    /// The customers on this page.
    pub rows: Vec<Customer>,
    /// Matching customers in all.
    pub total: i64,
    /// This page (from 1).
    pub page: i64,
    /// Customers with a dispute still open (any filter).
    pub open_disputes: i64,
}

/// `%`, `_` and `\` escaped for LIKE.
fn like_escape(raw: &str) -> String {
    raw.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

type BoxedCustomers<'a> = customers::BoxedQuery<'a, diesel::pg::Pg>;

fn filtered(filter: &CustomerFilter) -> BoxedCustomers<'static> {
    let mut query = customers::table.into_boxed();
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = format!("%{}%", like_escape(q));
        let prefix = format!("{}%", like_escape(q));
        query = query.filter(
            diesel::dsl::sql::<Bool>("(customers.email ILIKE ")
                .bind::<Text, _>(pattern.clone())
                .sql(" OR customers.name ILIKE ")
                .bind::<Text, _>(pattern)
                .sql(" OR customers.stripe_customer_id = ")
                .bind::<Text, _>(q.to_owned())
                .sql(" OR EXISTS (SELECT 1 FROM api_keys k WHERE k.customer_id = customers.id AND k.prefix LIKE ")
                .bind::<Text, _>(prefix)
                .sql("))"),
        );
    }
    if let Some(plan) = filter.plan {
        query = query.filter(customers::plan.eq(plan));
    }
    if let Some(status) = filter.status {
        query = query.filter(customers::status.eq(status.as_str()));
    }
    if let Some(source) = filter.source {
        query = query.filter(customers::source.eq(source.as_str()));
    }
    if filter.cannot_use_service {
        // The negation of Customer::can_use_service.
        // (SubscriptionStatus::counts_as_pro's spellings, bound.)
        query = query.filter(
            diesel::dsl::sql::<Bool>(
                "NOT (customers.status = 'active' AND (customers.credit_balance > 0 \
                 OR (customers.has_payment_method AND customers.payment_failed_at IS NULL) \
                 OR coalesce(customers.subscription_status = ANY(",
            )
            .bind::<diesel::sql_types::Array<Text>, _>(SubscriptionStatus::spellings_where(
                SubscriptionStatus::counts_as_pro,
            ))
            .sql("), false)))"),
        );
    }
    if filter.disputed {
        query = query.filter(customers::disputed_at.is_not_null());
    }
    if filter.payment_failed {
        query = query.filter(
            diesel::dsl::sql::<Bool>("(coalesce(customers.subscription_status = ANY(")
                .bind::<diesel::sql_types::Array<Text>, _>(SubscriptionStatus::spellings_where(
                    SubscriptionStatus::payment_failing,
                ))
                .sql(
                    "), false) \
             OR customers.payment_failed_at IS NOT NULL \
             OR EXISTS (SELECT 1 FROM charges ch WHERE ch.customer_id = customers.id \
                        AND ch.status = 'failed') \
             OR EXISTS (SELECT 1 FROM fixes f WHERE f.customer_id = customers.id \
                        AND f.billing_status = 'unpaid'))",
                ),
        );
    }
    query
}

/// Searches customers (see [`CustomerFilter`]), [`CUSTOMERS_PER_PAGE`] a
/// page.
///
/// Errors: [`BillingError::Database`].
pub async fn search_customers(
    conn: &mut AsyncPgConnection,
    filter: &CustomerFilter,
) -> Result<CustomerPage, BillingError> {
    let (page, offset) = page_offset(filter.page, CUSTOMERS_PER_PAGE);
    let total = filtered(filter).count().get_result(conn).await?;
    let query = filtered(filter);
    let query = match filter.sort {
        CustomerSort::Newest => query.order(customers::id.desc()),
        CustomerSort::Oldest => query.order(customers::id.asc()),
        CustomerSort::Email => query.order((customers::email.asc(), customers::id.asc())),
        CustomerSort::BalanceDesc => {
            query.order((customers::credit_balance.desc(), customers::id.desc()))
        }
        CustomerSort::BalanceAsc => {
            query.order((customers::credit_balance.asc(), customers::id.desc()))
        }
    };
    let rows = query
        .limit(CUSTOMERS_PER_PAGE)
        .offset(offset)
        .select(Customer::as_select())
        .load(conn)
        .await?;
    let open_disputes: i64 = crate::server::db::schema::stripe_disputes::table
        .filter(crate::server::db::schema::stripe_disputes::closed_at.is_null())
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "count(DISTINCT customer_id)",
        ))
        .first(conn)
        .await?;
    Ok(CustomerPage {
        rows,
        total,
        page,
        open_disputes,
    })
}

/// A fix as the customer page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct FixRow {
    /// Fix id.
    pub id: i64,
    /// `owner/name`.
    pub repository: String,
    /// `issue:<n>` or `pr:<n>`.
    pub fix_key: String,
    /// Pull request URL, if known.
    pub pr_url: Option<String>,
    /// How it has been paid for.
    pub billing_status: FixBillingStatus,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Why it was written off (only when `written_off`).
    pub written_off_reason: Option<String>,
}

/// A payment method on file (card brand, last 4 and expiry only).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct PaymentMethodRow {
    /// Stripe's `pm_…` id.
    pub id: String,
    /// Whether it is attached now.
    pub attached: bool,
    /// The last Stripe event about it.
    pub last_event_at: DateTime<Utc>,
    /// `visa`, `mastercard`, … when Stripe said.
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Expiry month (1–12).
    pub exp_month: Option<i32>,
    /// Expiry year.
    pub exp_year: Option<i32>,
    /// The default card.
    pub is_default: bool,
}

/// An email of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct EmailRow {
    /// Outbox id.
    pub id: i64,
    /// The customer concerned, if any.
    pub customer_id: Option<i64>,
    /// Template kind.
    pub kind: String,
    /// Recipient.
    pub to_address: String,
    /// Subject; `None` until the worker renders the notification at send
    /// time.
    pub subject: Option<String>,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Send attempts.
    pub attempts: i32,
    /// Last failure.
    pub last_error: Option<String>,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Sent at.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The select clause of [`EmailRow`].
pub type EmailRowColumns = (
    email_outbox::id,
    email_outbox::customer_id,
    email_outbox::kind,
    email_outbox::to_address,
    email_outbox::subject,
    email_outbox::status,
    email_outbox::attempts,
    email_outbox::last_error,
    email_outbox::created_at,
    email_outbox::sent_at,
);

/// The columns [`EmailRow`] is loaded from.
pub const EMAIL_ROW_COLUMNS: EmailRowColumns = (
    email_outbox::id,
    email_outbox::customer_id,
    email_outbox::kind,
    email_outbox::to_address,
    email_outbox::subject,
    email_outbox::status,
    email_outbox::attempts,
    email_outbox::last_error,
    email_outbox::created_at,
    email_outbox::sent_at,
);

/// A stored Stripe event (without its payload).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct EventRow {
    /// `evt_…`.
    pub id: String,
    /// Event type.
    pub type_: String,
    /// Received.
    pub received_at: DateTime<Utc>,
    /// Applied.
    pub processed_at: Option<DateTime<Utc>>,
    /// Processing attempts.
    pub attempts: i32,
    /// Last processing error.
    pub last_error: Option<String>,
    /// `received`, `processed` or `failed`.
    pub status: String,
}

/// The select clause of [`EventRow`].
pub type EventRowColumns = (
    stripe_events::id,
    stripe_events::type_,
    stripe_events::received_at,
    stripe_events::processed_at,
    stripe_events::attempts,
    stripe_events::last_error,
    stripe_events::status,
);

/// The columns [`EventRow`] is loaded from.
pub const EVENT_ROW_COLUMNS: EventRowColumns = (
    stripe_events::id,
    stripe_events::type_,
    stripe_events::received_at,
    stripe_events::processed_at,
    stripe_events::attempts,
    stripe_events::last_error,
    stripe_events::status,
);

/// Everything the customer page shows.
#[derive(Debug, Clone)]
pub struct CustomerDetail {
    /// The customer.
    pub customer: Customer,
    /// Its users' emails and roles.
    pub users: Vec<(String, String)>,
    /// The whole ledger, newest first.
    pub ledger: Vec<LedgerEntry>,
    /// Its fixes, newest first (at most 200).
    pub fixes: Vec<FixRow>,
    /// Its API keys, newest first, each with its fixes and AI calls
    /// ([`KeyActivity`](crate::server::billing::api_keys::KeyActivity)).
    pub api_keys: Vec<KeyWithActivity>,
    /// Its payment methods.
    pub payment_methods: Vec<PaymentMethodRow>,
    /// Emails sent or queued to it, newest first (at most 100).
    pub emails: Vec<EmailRow>,
    /// Stripe events whose object names its Stripe Customer, newest first
    /// (at most 100).
    pub events: Vec<EventRow>,
}

/// Loads the customer page's data.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Database`].
pub async fn customer_detail(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<CustomerDetail, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    let users = users::table
        .filter(users::customer_id.eq(customer_id))
        .order(users::id.asc())
        .select((users::email, users::role))
        .load(conn)
        .await?;
    let ledger = credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .order(credit_ledger_entries::id.desc())
        .select(LedgerEntry::as_select())
        .load(conn)
        .await?;
    let fixes = fixes::table
        .left_join(fix_write_offs::table)
        .filter(fixes::customer_id.eq(customer_id))
        .order(fixes::id.desc())
        .limit(200)
        .select((
            fixes::id,
            fixes::repository,
            fixes::fix_key,
            fixes::pr_url,
            fixes::billing_status,
            fixes::created_at,
            fix_write_offs::reason.nullable(),
        ))
        .load(conn)
        .await?;
    let api_keys = list_api_keys_with_activity(conn, customer_id, chrono::Utc::now()).await?;
    let payment_methods = stripe_payment_methods::table
        .filter(stripe_payment_methods::customer_id.eq(customer_id))
        .order(stripe_payment_methods::last_event_at.desc())
        .select((
            stripe_payment_methods::id,
            stripe_payment_methods::attached,
            stripe_payment_methods::last_event_at,
            stripe_payment_methods::brand,
            stripe_payment_methods::last4,
            stripe_payment_methods::exp_month,
            stripe_payment_methods::exp_year,
            stripe_payment_methods::is_default,
        ))
        .load(conn)
        .await?;
    let emails = email_outbox::table
        .filter(email_outbox::customer_id.eq(customer_id))
        .order(email_outbox::id.desc())
        .limit(100)
        .select(EMAIL_ROW_COLUMNS)
        .load(conn)
        .await?;
    let events = match &customer.stripe_customer_id {
        Some(stripe_id) => {
            stripe_events::table
                .filter(
                    diesel::dsl::sql::<Bool>(
                        "(stripe_events.payload #>> '{data,object,customer}' = ",
                    )
                    .bind::<Text, _>(stripe_id.clone())
                    .sql(" OR stripe_events.payload #>> '{data,object,id}' = ")
                    .bind::<Text, _>(stripe_id.clone())
                    .sql(")"),
                )
                .order(stripe_events::received_at.desc())
                .limit(100)
                .select(EVENT_ROW_COLUMNS)
                .load(conn)
                .await?
        }
        None => Vec::new(),
    };
    Ok(CustomerDetail {
        customer,
        users,
        ledger,
        fixes,
        api_keys,
        payment_methods,
        emails,
        events,
    })
}

/// Checks an admin's reason: required, at most [`MAX_REASON_CHARS`].
///
/// Errors: [`BillingError::Invalid`].
pub fn parse_reason(raw: &str) -> Result<String, BillingError> {
    let reason = raw.trim();
    if reason.is_empty() {
        return Err(invalid("a reason is required"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(format!(
            "the reason must be at most {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(reason.to_owned())
}

/// Checks a form token (the idempotency key of one form submission): 8 to
/// 100 letters, digits, `-` or `_`.
///
/// Errors: [`BillingError::Invalid`].
pub fn parse_form_token(raw: &str) -> Result<String, BillingError> {
    let token = raw.trim();
    if !(8..=100).contains(&token.len())
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "the form token is missing or malformed; reload the page",
        ));
    }
    Ok(token.to_owned())
}

/// The outcome of [`adjust_credits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjusted {
    /// The ledger entry (the earlier one when the form was submitted twice).
    pub entry: LedgerEntry,
    /// True for a repeated submission: nothing was written.
    pub replayed: bool,
}

/// Moves `amount` credits (signed, non-zero, at most [`MAX_ADJUSTMENT`]
/// either way) for `customer_id` as a ledger entry of kind
/// `admin_adjustment` (idempotency key `admin_adjustment:<form token>`, so a
/// double submission applies once) and writes the audit entry
/// (`credits.adjust`, balance before/after, the reason), in one
/// transaction; credits added then pay the customer's unpaid fixes
/// ([`settle_unpaid_fixes`], same transaction; issue 9).
///
/// Errors: [`BillingError::Invalid`] for a zero or too large amount, a
/// missing reason or a bad token; [`BillingError::InsufficientCredits`]
/// when the balance would go below zero (nothing written);
/// [`BillingError::IdempotencyConflict`] when the token was used for
/// another amount; [`BillingError::NotFound`]; [`BillingError::Database`].
pub async fn adjust_credits(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    actor: &Admin,
    customer_id: i64,
    amount: i64,
    reason: &str,
    form_token: &str,
) -> Result<Adjusted, BillingError> {
    if amount == 0 || amount.abs() > MAX_ADJUSTMENT {
        return Err(invalid(format!(
            "the adjustment must be a non-zero number of credits between -{MAX_ADJUSTMENT} and {MAX_ADJUSTMENT}"
        )));
    }
    let reason = parse_reason(reason)?;
    let token = parse_form_token(form_token)?;
    let key = format!("admin_adjustment:{token}");
    conn.transaction(async |conn| {
        let appended = append_entry(
            conn,
            NewEntry {
                customer_id,
                amount,
                kind: LedgerKind::AdminAdjustment,
                reference: Some(&reason),
                idempotency_key: &key,
            },
        )
        .await?;
        if !appended.replayed {
            let after = appended.entry.balance_after;
            record_audit(
                conn,
                actor,
                &AuditEntry {
                    action: "credits.adjust",
                    target_type: "customer",
                    target_id: Some(customer_id.to_string()),
                    customer_id: Some(customer_id),
                    reason: Some(reason.clone()),
                    before: Some(json!({ "credit_balance": after - amount })),
                    after: Some(json!({
                        "credit_balance": after,
                        "amount": amount,
                        "ledger_entry_id": appended.entry.id,
                    })),
                },
            )
            .await?;
        }
        if amount > 0 {
            settle_unpaid_fixes(conn, pricing, customer_id).await?;
        }
        Ok(Adjusted {
            entry: appended.entry,
            replayed: appended.replayed,
        })
    })
    .await
}

/// Writes off the customer's `unpaid` fix `fix_id` with a mandatory
/// `reason` (issue 9): the fix becomes `written_off` (reason and time in
/// `fix_write_offs`) and is never billed; the audit entry (`fix.write_off`, status
/// before/after, the reason) is written in the same transaction, under the
/// customer's lock (so it cannot race a settlement). Writing off a fix
/// already written off changes nothing and records nothing.
///
/// Errors: [`BillingError::Invalid`] for a missing reason, a fix that is
/// not `unpaid` (paid, or pending its billing call) or one that has a card
/// charge (settle or refund that charge instead); [`BillingError::NotFound`]
/// when the fix is not this customer's; [`BillingError::Database`].
pub async fn write_off_fix(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    customer_id: i64,
    fix_id: i64,
    reason: &str,
) -> Result<(), BillingError> {
    let reason = parse_reason(reason)?;
    conn.transaction(async |conn| {
        lock_customer(conn, customer_id).await?;
        let status: FixBillingStatus = fixes::table
            .find(fix_id)
            .filter(fixes::customer_id.eq(customer_id))
            .select(fixes::billing_status)
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("fix"))?;
        match status {
            FixBillingStatus::WrittenOff => return Ok(()),
            FixBillingStatus::Unpaid => {}
            other => {
                return Err(invalid(format!(
                    "only an unpaid fix can be written off; this one is {other}"
                )))
            }
        }
        // A declined charge does not stand in the way; one on its way or
        // paid does.
        if crate::server::billing::charges::live_charge_for_fix(conn, fix_id)
            .await?
            .is_some()
        {
            return Err(invalid(
                "this fix has a card charge on its way or paid; settle or refund the charge instead",
            ));
        }
        diesel::update(fixes::table.find(fix_id))
            .set((
                fixes::billing_status.eq(FixBillingStatus::WrittenOff.as_str()),
                fixes::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        diesel::insert_into(fix_write_offs::table)
            .values((
                fix_write_offs::fix_id.eq(fix_id),
                fix_write_offs::customer_id.eq(customer_id),
                fix_write_offs::reason.eq(&reason),
            ))
            .execute(conn)
            .await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "fix.write_off",
                target_type: "fix",
                target_id: Some(fix_id.to_string()),
                customer_id: Some(customer_id),
                reason: Some(reason.clone()),
                before: Some(json!({ "billing_status": status.as_str() })),
                after: Some(json!({ "billing_status": FixBillingStatus::WrittenOff.as_str() })),
            },
        )
        .await?;
        Ok(())
    })
    .await
}

/// The action name (and idempotency-key prefix) of [`retry_fix_charge`].
pub const RETRY_CHARGE_ACTION: &str = "fix.retry_charge";

/// What [`retry_fix_charge`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryCharge {
    /// Paid with a credit, or a new charge is on its way (or, for Pro, the
    /// period's credits are awaited); audited.
    Retried(Payment),
    /// A charge was on its way already: nothing changed, nothing recorded.
    AlreadyCharging(i64),
    /// This form was submitted before: nothing changed this time.
    Replayed,
}

/// The admin's "retry charge" on the customer's `unpaid` fix `fix_id`
/// ([`retry_unpaid_fix`]: a credit if any is left, else a new charge on the
/// card on file, clearing an earlier decline's block), with the audit entry
/// (`fix.retry_charge`; before: the fix's status and whether a decline
/// blocked the card; after: the outcome and the idempotency key
/// `fix.retry_charge:<fix id>:<form token>`), in one transaction under the
/// customer's lock. The same form submitted again (same token) changes
/// nothing and answers [`RetryCharge::Replayed`]; a fix whose charge is on
/// its way answers [`RetryCharge::AlreadyCharging`] and records nothing.
///
/// Errors: [`BillingError::Invalid`] for a bad token, a fix that is not
/// `unpaid`, or when nothing can pay (no credit, no card, no Pro; nothing
/// is written); [`BillingError::NotFound`] when the fix is not this
/// customer's; [`BillingError::Database`].
pub async fn retry_fix_charge(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    actor: &Admin,
    customer_id: i64,
    fix_id: i64,
    form_token: &str,
) -> Result<RetryCharge, BillingError> {
    let token = parse_form_token(form_token)?;
    let key = format!("{RETRY_CHARGE_ACTION}:{fix_id}:{token}");
    conn.transaction(async |conn| {
        lock_customer(conn, customer_id).await?;
        let replayed: bool = diesel::select(diesel::dsl::exists(
            admin_audit_log::table
                .filter(admin_audit_log::action.eq(RETRY_CHARGE_ACTION))
                .filter(admin_audit_log::customer_id.eq(customer_id))
                .filter(admin_audit_log::target_id.eq(fix_id.to_string()))
                .filter(
                    admin_audit_log::after
                        .retrieve_as_text("idempotency_key")
                        .eq(&key),
                ),
        ))
        .get_result(conn)
        .await?;
        if replayed {
            return Ok(RetryCharge::Replayed);
        }
        let payment_failed: bool = customers::table
            .find(customer_id)
            .select(customers::payment_failed_at.is_not_null())
            .first(conn)
            .await?;
        let payment = match retry_unpaid_fix(conn, pricing, customer_id, fix_id).await? {
            RetryOutcome::AlreadyCharging(charge) => {
                return Ok(RetryCharge::AlreadyCharging(charge))
            }
            RetryOutcome::Retried(Payment::Refused(_)) => {
                // Rolls back: nothing was paid or changed.
                return Err(invalid(
                    "nothing can pay for this fix: the customer has no credit, no card on file and no Pro subscription",
                ));
            }
            RetryOutcome::Retried(payment) => payment,
        };
        let outcome = match &payment {
            Payment::Credit(entry) => json!({ "outcome": "credit", "ledger_entry_id": entry }),
            Payment::Charging(charge) => json!({ "outcome": "charging", "charge_id": charge }),
            Payment::AwaitingPeriodCredits => json!({ "outcome": "awaiting_period_credits" }),
            Payment::Refused(_) => json!({ "outcome": "refused" }),
        };
        let mut after = outcome;
        after["idempotency_key"] = json!(key);
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: RETRY_CHARGE_ACTION,
                target_type: "fix",
                target_id: Some(fix_id.to_string()),
                customer_id: Some(customer_id),
                reason: None,
                before: Some(json!({
                    "billing_status": FixBillingStatus::Unpaid.as_str(),
                    "payment_failed": payment_failed,
                })),
                after: Some(after),
            },
        )
        .await?;
        Ok(RetryCharge::Retried(payment))
    })
    .await
}

/// One of the customer's `unpaid` fixes with its charges, for the admin's
/// "Unpaid fixes" list.
#[derive(Debug, Clone, PartialEq)]
pub struct UnpaidFix {
    /// The fix.
    pub fix: Fix,
    /// Its charge on its way (any status but `failed`), if any.
    pub live_charge: Option<Charge>,
    /// Its declined charges, newest first.
    pub declined: Vec<Charge>,
}

/// Most unpaid fixes listed on a customer's page.
pub const UNPAID_FIXES_SHOWN: i64 = 100;

/// The customer's `unpaid` fixes, oldest first (at most
/// [`UNPAID_FIXES_SHOWN`]), each with its charges.
///
/// Errors: [`BillingError::Database`].
pub async fn unpaid_fixes(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Vec<UnpaidFix>, BillingError> {
    let unpaid = list_unpaid_fixes(conn, customer_id, UNPAID_FIXES_SHOWN).await?;
    let ids: Vec<i64> = unpaid.iter().map(|(f, _)| f.id).collect();
    let all: Vec<Charge> = charges::table
        .filter(charges::fix_id.eq_any(&ids))
        .order(charges::id.desc())
        .select(Charge::as_select())
        .load(conn)
        .await?;
    Ok(unpaid
        .into_iter()
        .map(|(fix, _)| {
            let mine = all.iter().filter(|c| c.fix_id == fix.id);
            UnpaidFix {
                live_charge: mine.clone().find(|c| c.status.is_live()).cloned(),
                declined: mine.filter(|c| !c.status.is_live()).cloned().collect(),
                fix,
            }
        })
        .collect())
}

/// The audit action of an admin's read-only view of a customer's portal.
pub const VIEW_PORTAL_ACTION: &str = "customer.view_portal";

/// Records that `actor` viewed `section` (`dashboard`, `billing`, `keys`,
/// `credits`) of customer `customer_id`'s portal, read-only: an audit
/// entry [`VIEW_PORTAL_ACTION`] with `{"section": …}` (plus `{"page": n}`
/// for a ledger page after the first). Called after the view was read and
/// before it is answered, so nothing is shown without its entry.
///
/// Errors: [`BillingError::NotFound`] for an unknown customer;
/// [`BillingError::Database`].
pub async fn record_portal_view(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    customer_id: i64,
    section: &str,
    page: Option<i64>,
) -> Result<i64, BillingError> {
    find_customer(conn, customer_id).await?;
    let mut viewed = json!({ "section": section });
    if let Some(page) = page.filter(|p| *p > 1) {
        viewed["page"] = json!(page);
    }
    record_audit(
        conn,
        actor,
        &AuditEntry {
            action: VIEW_PORTAL_ACTION,
            target_type: "customer",
            target_id: Some(customer_id.to_string()),
            customer_id: Some(customer_id),
            reason: None,
            before: None,
            after: Some(viewed),
        },
    )
    .await
}

/// Sets the customer's status (suspend: the Action API answers 403 for
/// every key; reactivate) and writes the audit entry
/// (`customer.suspend` / `customer.reactivate`, status before/after, the
/// reason), in one transaction. Setting the status it already has changes
/// nothing and records nothing.
///
/// Errors: [`BillingError::Invalid`] for a missing reason;
/// [`BillingError::NotFound`]; [`BillingError::Database`].
pub async fn set_customer_status(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    customer_id: i64,
    status: CustomerStatus,
    reason: &str,
) -> Result<Customer, BillingError> {
    let reason = parse_reason(reason)?;
    conn.transaction(async |conn| {
        let before: String = customers::table
            .find(customer_id)
            .select(customers::status)
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("customer"))?;
        if before != status.as_str() {
            diesel::update(customers::table.find(customer_id))
                .set((
                    customers::status.eq(status.as_str()),
                    customers::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            record_audit(
                conn,
                actor,
                &AuditEntry {
                    action: match status {
                        CustomerStatus::Suspended => "customer.suspend",
                        CustomerStatus::Active => "customer.reactivate",
                    },
                    target_type: "customer",
                    target_id: Some(customer_id.to_string()),
                    customer_id: Some(customer_id),
                    reason: Some(reason.clone()),
                    before: Some(json!({ "status": before })),
                    after: Some(json!({ "status": status.as_str() })),
                },
            )
            .await?;
        }
        find_customer(conn, customer_id).await
    })
    .await
}

/// Revokes one of the customer's API keys (the customer is emailed, as when
/// they revoke it themselves) and writes the audit entry (`api_key.revoke`)
/// in one transaction. Revoking a revoked key changes nothing and records
/// nothing.
///
/// Errors: [`BillingError::NotFound`] when the key is not the customer's;
/// [`BillingError::Invalid`] for a missing reason; [`BillingError::Database`].
pub async fn admin_revoke_key(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    actor: &Admin,
    customer_id: i64,
    key_id: i64,
    reason: &str,
) -> Result<ApiKey, BillingError> {
    let reason = parse_reason(reason)?;
    conn.transaction(async |conn| {
        let was_revoked: Option<Option<DateTime<Utc>>> = crate::server::db::schema::api_keys::table
            .find(key_id)
            .filter(crate::server::db::schema::api_keys::customer_id.eq(customer_id))
            .select(crate::server::db::schema::api_keys::revoked_at)
            .first(conn)
            .await
            .optional()?;
        let Some(was_revoked) = was_revoked else {
            return Err(BillingError::NotFound("API key"));
        };
        let key = revoke_api_key(conn, links, customer_id, key_id).await?;
        if was_revoked.is_none() {
            record_audit(
                conn,
                actor,
                &AuditEntry {
                    action: "api_key.revoke",
                    target_type: "api_key",
                    target_id: Some(key_id.to_string()),
                    customer_id: Some(customer_id),
                    reason: Some(reason.clone()),
                    before: Some(json!({ "prefix": key.prefix, "revoked": false })),
                    after: Some(json!({ "prefix": key.prefix, "revoked": true })),
                },
            )
            .await?;
        }
        Ok(key)
    })
    .await
}

/// Provisions a customer by hand: `source` must be `early_access` or
/// `direct`; the owner gets the invite email (set a password); optional
/// `starting_credits` (0..=[`MAX_ADJUSTMENT`]) are granted on top of the
/// signup bonus as an `admin_adjustment` (idempotency key
/// `admin_provision`). Writes the audit entry (`customer.provision`). One
/// transaction; returns the customer.
///
/// Errors: [`BillingError::Invalid`] for another source or a bad credit
/// amount; [`BillingError::EmailTaken`]; [`BillingError::Database`].
pub async fn provision_by_admin(
    conn: &mut AsyncPgConnection,
    config: &Config,
    actor: &Admin,
    new: &NewCustomer,
    starting_credits: i64,
) -> Result<Customer, BillingError> {
    if !matches!(new.source, Source::EarlyAccess | Source::Direct) {
        return Err(invalid("source must be early_access or direct"));
    }
    if !(0..=MAX_ADJUSTMENT).contains(&starting_credits) {
        return Err(invalid(format!(
            "starting credits must be between 0 and {MAX_ADJUSTMENT}"
        )));
    }
    conn.transaction(async |conn| {
        let provisioned = provision_with_owner(conn, config, new, OwnerSetup::Invite).await?;
        let customer_id = provisioned.customer.id;
        if starting_credits > 0 {
            append_entry(
                conn,
                NewEntry {
                    customer_id,
                    amount: starting_credits,
                    kind: LedgerKind::AdminAdjustment,
                    reference: Some("starting credits"),
                    idempotency_key: "admin_provision",
                },
            )
            .await?;
        }
        let customer = find_customer(conn, customer_id).await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "customer.provision",
                target_type: "customer",
                target_id: Some(customer_id.to_string()),
                customer_id: Some(customer_id),
                reason: None,
                before: None,
                after: Some(json!({
                    "email": customer.email,
                    "name": customer.name,
                    "source": customer.source,
                    "starting_credits": starting_credits,
                    "credit_balance": customer.credit_balance,
                })),
            },
        )
        .await?;
        Ok(customer)
    })
    .await
}
