//! GitHub webhook deliveries: recording each one (table
//! `github_deliveries`, once per `X-GitHub-Delivery` GUID) and applying
//! `marketplace_purchase` events to provisioning and the plan.
//!
//! **Inline, not queued.** A delivery is applied in the same transaction
//! that stores it, before GitHub gets its answer: GitHub does not retry a
//! failed delivery by itself, so the answer is the only place an operator
//! sees a failure ("Recent Deliveries" of the app), and "Redeliver" there is
//! the retry. Its effects and its `processed` row commit together; when
//! applying fails, nothing of it is kept and the delivery is stored as
//! `failed` with the reason (a redelivery of a failed delivery is applied
//! again; one of a processed or ignored delivery is acknowledged and
//! ignored).
//!
//! Actions (GitHub's `marketplace_purchase` event):
//! - `purchased`: the GitHub account's customer — found by GitHub account id,
//!   else by email, else provisioned (source `gh_marketplace`) — gets the
//!   plan mapped from the Marketplace plan id (`GITHUB_MARKETPLACE_PLANS`).
//! - `changed`: the new plan, now (a customer is provisioned as for
//!   `purchased` when the purchase was never seen).
//! - `pending_change`: recorded in `github_pending_changes` with GitHub's
//!   `effective_date`, applied then by the `github.apply_pending_change` job
//!   (`run_at` = that date; at once when the date has passed).
//! - `pending_change_cancelled`: the recorded pending change is dropped.
//! - `cancelled`: the plan falls back to `payg` with a card on file, else
//!   `trial` (a live Stripe subscription keeps `pro`); the customer, its keys
//!   and credits stay, and so do its GitHub fields (a new purchase relinks).
//!
//! `purchased`, `changed` and `cancelled` drop any recorded pending change:
//! GitHub's latest word supersedes it.
//!
//! **Credits.** `purchased`, `changed` and an applied pending change onto a
//! plan mapped to `pro` grant the current monthly period's
//! `PRICING_PRO_CREDITS_PER_PERIOD` credits and schedule the next period's grant
//! (`github.grant_period` job); see [`super::credits`].
//!
//! **Email.** The owner's email is `account.organization_billing_email`,
//! else the sender's `email` when GitHub includes it. A personal account
//! usually has neither: the customer is then provisioned under the
//! placeholder `<account id>+<login>@users.noreply.github.com` (GitHub's
//! no-reply form, which receives no mail) with no owner user and no email
//! sent; the first later event that carries an email replaces the
//! placeholder and invites that address as owner (an admin can do the same
//! by hand). No Stripe Customer is created for a placeholder: the
//! `stripe.create_customer` job skips it, and replacing the placeholder
//! queues the job again ([`requeue_create_customer`]).

use crate::server::auth::accounts::{issue_token, TokenPurpose, LONG_TOKEN_TTL, ROLE_OWNER};
use crate::server::auth::emails::{account_email, AccountEmail};
use crate::server::billing::customers::{provision_customer, NewCustomer};
use crate::server::billing::error::is_unique_violation;
use crate::server::billing::notifications::enqueue_email;
use crate::server::billing::notifications::kind as email_kind;
use crate::server::billing::plan::{change_plan, PlanChange};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::config::Config;
use crate::server::db::queue::{BackgroundJob, JobError};
use crate::server::db::schema::{
    customer_github_accounts, customers, email_outbox, github_deliveries, github_pending_changes,
    jobs, users,
};
use crate::server::marketplace::credits::{grant_period, parse_github_date, Period};
use crate::server::marketplace::jobs::ApplyPendingChangeJob;
use crate::server::state::AppState;
use crate::types::values::{CustomerName, Email, Plan, Source};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use serde_json::Value;

/// The `X-GitHub-Event` of Marketplace purchases.
pub const EVENT_MARKETPLACE_PURCHASE: &str = "marketplace_purchase";

/// Job kind: apply the pending change `{"pending_change_id": i64}` once due.
pub const KIND_GITHUB_APPLY_PENDING_CHANGE: &str = "github.apply_pending_change";

pub use crate::server::billing::placeholder::{
    is_placeholder, placeholder_email, PLACEHOLDER_EMAIL_DOMAIN,
};

// --- Payload ---------------------------------------------------------------

/// A `marketplace_purchase` event: the fields we read (the rest stays in
/// the stored payload).
#[derive(Debug, Clone, Deserialize)]
pub struct MarketplacePurchaseEvent {
    /// `purchased`, `changed`, `pending_change`, `pending_change_cancelled`
    /// or `cancelled`.
    pub action: String,
    /// When the change takes effect (ISO 8601, e.g.
    /// `2026-12-01T00:00:00+00:00`).
    #[serde(default)]
    pub effective_date: Option<String>,
    /// The user who made the change.
    #[serde(default)]
    pub sender: Option<GitHubUser>,
    /// The purchase as of (for `pending_change`: after) the change.
    pub marketplace_purchase: MarketplacePurchase,
    /// The purchase before the change (`changed`, `pending_change`).
    #[serde(default)]
    pub previous_marketplace_purchase: Option<MarketplacePurchase>,
}

/// `sender`.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubUser {
    /// Numeric id.
    pub id: i64,
    /// Login.
    pub login: String,
    /// Public email, when GitHub includes one.
    #[serde(default)]
    pub email: Option<String>,
}

/// `marketplace_purchase`.
#[derive(Debug, Clone, Deserialize)]
pub struct MarketplacePurchase {
    /// The account (user or organization) the plan is for.
    pub account: MarketplaceAccount,
    /// `monthly` or `yearly`.
    #[serde(default)]
    pub billing_cycle: Option<String>,
    /// When GitHub bills next (ISO 8601 or `YYYY-MM-DD`): the anchor of the
    /// monthly credit periods ([`super::credits`]).
    #[serde(default)]
    pub next_billing_date: Option<String>,
    /// Seats, for per-unit plans.
    #[serde(default)]
    pub unit_count: Option<i64>,
    /// Whether the account is on the plan's free trial.
    #[serde(default)]
    pub on_free_trial: Option<bool>,
    /// When the free trial ends (ISO 8601 or `YYYY-MM-DD`), if on one.
    #[serde(default)]
    pub free_trial_ends_on: Option<String>,
    /// The Marketplace plan.
    pub plan: MarketplacePlan,
}

/// `marketplace_purchase.account`.
#[derive(Debug, Clone, Deserialize)]
pub struct MarketplaceAccount {
    /// `User` or `Organization`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Numeric id (stable across renames).
    pub id: i64,
    /// Login (can change).
    pub login: String,
    /// An organization's billing email.
    #[serde(default)]
    pub organization_billing_email: Option<String>,
}

/// `marketplace_purchase.plan`.
#[derive(Debug, Clone, Deserialize)]
pub struct MarketplacePlan {
    /// The listing plan's id (mapped by `GITHUB_MARKETPLACE_PLANS`).
    pub id: i64,
    /// Its name, for messages.
    #[serde(default)]
    pub name: String,
}

impl MarketplacePurchaseEvent {
    /// The owner's email: the organization's billing email, else the
    /// sender's, when one parses.
    pub fn email(&self) -> Option<Email> {
        let account = &self.marketplace_purchase.account;
        [
            account.organization_billing_email.as_deref(),
            self.sender.as_ref().and_then(|s| s.email.as_deref()),
        ]
        .into_iter()
        .flatten()
        .find_map(|e| Email::parse(e).ok())
    }

    /// `effective_date` as a time: RFC 3339, or a bare `YYYY-MM-DD`
    /// (midnight UTC).
    ///
    /// Errors: a message when it is missing or unreadable.
    pub fn effective_at(&self) -> Result<DateTime<Utc>, String> {
        let raw = self
            .effective_date
            .as_deref()
            .map(str::trim)
            .ok_or("effective_date is missing")?;
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
            })
            .map_err(|_| format!("effective_date {raw:?} is not a date"))
    }

    /// When the free trial ends: `free_trial_ends_on`, else
    /// `next_billing_date` (the first day GitHub bills); `None` without
    /// either.
    ///
    /// Errors: a message for an unreadable date.
    pub fn trial_ends_at(&self) -> Result<Option<DateTime<Utc>>, String> {
        let purchase = &self.marketplace_purchase;
        match purchase
            .free_trial_ends_on
            .as_deref()
            .or(purchase.next_billing_date.as_deref())
        {
            Some(raw) => parse_github_date(raw)
                .map(Some)
                .ok_or_else(|| format!("free trial end {raw:?} is not a date")),
            None => Ok(None),
        }
    }

    /// The monthly credit period containing `at`, on the grid anchored at
    /// `marketplace_purchase.next_billing_date` (else at `at` itself).
    ///
    /// Errors: a message for an unreadable `next_billing_date` or dates out
    /// of range.
    pub fn period_at(&self, at: DateTime<Utc>) -> Result<Period, String> {
        let anchor = match self.marketplace_purchase.next_billing_date.as_deref() {
            Some(raw) => parse_github_date(raw)
                .ok_or_else(|| format!("next_billing_date {raw:?} is not a date"))?,
            None => at,
        };
        Period::containing(anchor, at)
    }
}

// --- Deliveries --------------------------------------------------------------

/// A delivery as it arrived, signature already verified.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// `X-GitHub-Delivery` (a GUID).
    pub delivery_id: &'a str,
    /// `X-GitHub-Event`, e.g. `marketplace_purchase` or `ping`.
    pub event: &'a str,
    /// The parsed body.
    pub payload: &'a Value,
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (stored `processed`); the customer it concerned, if any.
    Processed {
        /// The customer provisioned, linked or changed.
        customer_id: Option<i64>,
    },
    /// Stored `ignored`: an event or action we do not act on.
    Ignored,
    /// Already processed or ignored earlier: nothing done.
    Duplicate,
}

/// Why a delivery could not be applied. Either way it is stored `failed`
/// with this message (unless storing fails too).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The event cannot be applied as it is: unreadable payload, a
    /// Marketplace plan missing from `GITHUB_MARKETPLACE_PLANS`, an email
    /// owned by another account… Redelivering it changes nothing until the
    /// cause is fixed.
    #[error("{0}")]
    Rejected(String),
    /// The database failed.
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<diesel::result::Error> for DeliveryError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Billing(error.into())
    }
}

fn rejected(message: impl Into<String>) -> DeliveryError {
    DeliveryError::Rejected(message.into())
}

/// Actions of `marketplace_purchase` we apply.
const ACTIONS: &[&str] = &[
    "purchased",
    "changed",
    "pending_change",
    "pending_change_cancelled",
    "cancelled",
];

/// Records `delivery` and applies it, in one transaction: the
/// `github_deliveries` row (`processed` or `ignored`) commits with the
/// delivery's effects. A delivery id already stored `processed` or `ignored`
/// is a [`Outcome::Duplicate`] (nothing written); one stored `failed` is
/// applied again.
///
/// Errors: [`DeliveryError`]; the delivery is then stored `failed` with the
/// message and its effects are rolled back.
pub async fn receive_delivery(
    conn: &mut AsyncPgConnection,
    config: &Config,
    delivery: &Delivery<'_>,
) -> Result<Outcome, DeliveryError> {
    let result = conn
        .transaction(async |conn| apply_delivery(conn, config, delivery).await)
        .await;
    if let Err(error) = &result {
        let message = error.to_string();
        if let Err(store_error) = store_failure(conn, delivery, &message).await {
            tracing::error!(%store_error, delivery_id = delivery.delivery_id, "could not store a failed GitHub delivery");
        }
    }
    result
}

fn account_of(payload: &Value) -> (Option<i64>, Option<&str>) {
    let account = payload.pointer("/marketplace_purchase/account");
    (
        account.and_then(|a| a.get("id")).and_then(Value::as_i64),
        account.and_then(|a| a.get("login")).and_then(Value::as_str),
    )
}

/// Inserts the delivery's row, or takes over a `failed` one; false when it
/// exists otherwise (a duplicate).
async fn claim_delivery(
    conn: &mut AsyncPgConnection,
    delivery: &Delivery<'_>,
    status: &str,
) -> Result<bool, BillingError> {
    let (account_id, account_login) = account_of(delivery.payload);
    let action = delivery.payload.get("action").and_then(Value::as_str);
    let claimed = diesel::sql_query(
        "INSERT INTO github_deliveries \
             (delivery_id, event, action, account_id, account_login, payload, status, processed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (delivery_id) DO UPDATE SET \
             event = EXCLUDED.event, action = EXCLUDED.action, account_id = EXCLUDED.account_id, \
             account_login = EXCLUDED.account_login, payload = EXCLUDED.payload, \
             status = EXCLUDED.status, processed_at = now(), error = NULL, \
             attempts = github_deliveries.attempts + 1 \
         WHERE github_deliveries.status = 'failed'",
    )
    .bind::<Text, _>(delivery.delivery_id)
    .bind::<Text, _>(delivery.event)
    .bind::<diesel::sql_types::Nullable<Text>, _>(action)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Int8>, _>(account_id)
    .bind::<diesel::sql_types::Nullable<Text>, _>(account_login)
    .bind::<diesel::sql_types::Jsonb, _>(delivery.payload)
    .bind::<Text, _>(status)
    .execute(conn)
    .await?;
    Ok(claimed > 0)
}

async fn store_failure(
    conn: &mut AsyncPgConnection,
    delivery: &Delivery<'_>,
    message: &str,
) -> Result<(), BillingError> {
    let (account_id, account_login) = account_of(delivery.payload);
    let action = delivery.payload.get("action").and_then(Value::as_str);
    diesel::sql_query(
        "INSERT INTO github_deliveries \
             (delivery_id, event, action, account_id, account_login, payload, status, error) \
         VALUES ($1, $2, $3, $4, $5, $6, 'failed', $7) \
         ON CONFLICT (delivery_id) DO UPDATE SET \
             error = EXCLUDED.error, payload = EXCLUDED.payload, \
             attempts = github_deliveries.attempts + 1 \
         WHERE github_deliveries.status = 'failed'",
    )
    .bind::<Text, _>(delivery.delivery_id)
    .bind::<Text, _>(delivery.event)
    .bind::<diesel::sql_types::Nullable<Text>, _>(action)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Int8>, _>(account_id)
    .bind::<diesel::sql_types::Nullable<Text>, _>(account_login)
    .bind::<diesel::sql_types::Jsonb, _>(delivery.payload)
    .bind::<Text, _>(message)
    .execute(conn)
    .await?;
    Ok(())
}

async fn apply_delivery(
    conn: &mut AsyncPgConnection,
    config: &Config,
    delivery: &Delivery<'_>,
) -> Result<Outcome, DeliveryError> {
    let action = delivery.payload.get("action").and_then(Value::as_str);
    let handled = delivery.event == EVENT_MARKETPLACE_PURCHASE
        && action.is_some_and(|a| ACTIONS.contains(&a));
    let status = if handled { "processed" } else { "ignored" };
    if !claim_delivery(conn, delivery, status).await? {
        return Ok(Outcome::Duplicate);
    }
    if !handled {
        return Ok(Outcome::Ignored);
    }
    let event: MarketplacePurchaseEvent = serde_json::from_value(delivery.payload.clone())
        .map_err(|e| rejected(format!("not a marketplace_purchase event: {e}")))?;
    let customer_id = match event.action.as_str() {
        "purchased" | "changed" => Some(apply_purchase(conn, config, delivery, &event).await?),
        "pending_change" => apply_pending_change_event(conn, config, delivery, &event).await?,
        "pending_change_cancelled" => cancel_pending_change_event(conn, &event).await?,
        "cancelled" => apply_cancellation(conn, &event).await?,
        other => unreachable!("action {other} is in ACTIONS"),
    };
    if let Some(customer_id) = customer_id {
        diesel::update(github_deliveries::table.find(delivery.delivery_id))
            .set(github_deliveries::customer_id.eq(customer_id))
            .execute(conn)
            .await?;
    }
    Ok(Outcome::Processed { customer_id })
}

// --- Applying ----------------------------------------------------------------

fn mapped_plan(config: &Config, plan: &MarketplacePlan) -> Result<Plan, DeliveryError> {
    config.github.plan_for(plan.id).ok_or_else(|| {
        rejected(format!(
            "Marketplace plan {} ({:?}) is not mapped to a plan: add it to GITHUB_MARKETPLACE_PLANS",
            plan.id, plan.name
        ))
    })
}

/// The customer of GitHub account `account_id` (id and email), row-locked.
async fn lock_by_account(
    conn: &mut AsyncPgConnection,
    account_id: i64,
) -> Result<Option<(i64, String)>, DeliveryError> {
    let Some(customer_id) = customer_github_accounts::table
        .filter(customer_github_accounts::github_account_id.eq(account_id))
        .select(customer_github_accounts::customer_id)
        .first::<i64>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    Ok(customers::table
        .find(customer_id)
        .select((customers::id, customers::email))
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?)
}

/// The customer with `email` (any case), row-locked, with the GitHub
/// account id it is linked to, if any.
async fn lock_by_email(
    conn: &mut AsyncPgConnection,
    email: &Email,
) -> Result<Option<(i64, Option<i64>)>, DeliveryError> {
    let Some(customer_id) = customers::table
        .filter(
            diesel::dsl::sql::<Bool>("lower(customers.email) = lower(")
                .bind::<Text, _>(email.as_str().to_owned())
                .sql(")"),
        )
        .select(customers::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let linked = customer_github_accounts::table
        .find(customer_id)
        .select(customer_github_accounts::github_account_id)
        .first::<i64>(conn)
        .await
        .optional()?;
    Ok(Some((customer_id, linked)))
}

/// Links the customer to the GitHub account (or updates the link's login
/// and type).
async fn link_account(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    account: &MarketplaceAccount,
) -> Result<(), DeliveryError> {
    diesel::insert_into(customer_github_accounts::table)
        .values((
            customer_github_accounts::customer_id.eq(customer_id),
            customer_github_accounts::github_account_id.eq(account.id),
            customer_github_accounts::github_account_login.eq(&account.login),
            customer_github_accounts::github_account_type.eq(&account.type_),
        ))
        .on_conflict(customer_github_accounts::customer_id)
        .do_update()
        .set((
            customer_github_accounts::github_account_id.eq(account.id),
            customer_github_accounts::github_account_login.eq(&account.login),
            customer_github_accounts::github_account_type.eq(&account.type_),
            customer_github_accounts::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The GitHub account's customer: linked by account id, else by email
/// (its GitHub fields are set), else provisioned. Returns its id, row-locked.
async fn find_or_provision(
    conn: &mut AsyncPgConnection,
    config: &Config,
    event: &MarketplacePurchaseEvent,
) -> Result<i64, DeliveryError> {
    let account = &event.marketplace_purchase.account;
    let email = event.email();
    if let Some((customer_id, current_email)) = lock_by_account(conn, account.id).await? {
        if let (true, Some(email)) = (is_placeholder(&current_email), &email) {
            claim_placeholder(conn, config, customer_id, email).await?;
        }
        link_account(conn, customer_id, account).await?;
        return Ok(customer_id);
    }
    let customer_id = match &email {
        Some(email) => match lock_by_email(conn, email).await? {
            Some((_, Some(other))) if other != account.id => {
                return Err(rejected(format!(
                    "the customer with this email is linked to another GitHub account ({other})"
                )))
            }
            Some((customer_id, _)) => {
                tracing::info!(
                    customer_id,
                    github_account_id = account.id,
                    "linking an existing customer to its GitHub account"
                );
                customer_id
            }
            None => provision(conn, config, account, Some(email)).await?,
        },
        None => provision(conn, config, account, None).await?,
    };
    link_account(conn, customer_id, account).await?;
    Ok(customer_id)
}

fn provisioning_error(error: BillingError) -> DeliveryError {
    match error {
        BillingError::EmailTaken => {
            rejected("the purchase's email already belongs to a user of another customer")
        }
        BillingError::Invalid(e) => rejected(format!("cannot provision: {}", e.0)),
        other => other.into(),
    }
}

/// Provisions a `gh_marketplace` customer named after the account: with an
/// email, an owner invited to set a password (welcome and invite emails);
/// without, under the placeholder email, with no owner and no email.
async fn provision(
    conn: &mut AsyncPgConnection,
    config: &Config,
    account: &MarketplaceAccount,
    email: Option<&Email>,
) -> Result<i64, DeliveryError> {
    let name = CustomerName::parse(&account.login)
        .map_err(|e| rejected(format!("account login: {}", e.0)))?;
    let customer_id = match email {
        Some(email) => {
            let new = NewCustomer {
                email: email.clone(),
                name,
                source: Source::GhMarketplace,
            };
            crate::server::auth::accounts::provision_with_owner(
                conn,
                config,
                &new,
                crate::server::auth::accounts::OwnerSetup::Invite,
            )
            .await
            .map_err(provisioning_error)?
            .customer
            .id
        }
        None => {
            let placeholder = placeholder_email(account.id, &account.login);
            let new = NewCustomer {
                email: Email::parse(&placeholder)
                    .map_err(|e| rejected(format!("placeholder email: {}", e.0)))?,
                name,
                source: Source::GhMarketplace,
            };
            let customer_id = provision_customer(conn, &config.pricing, &new, &config.email.links)
                .await
                .map_err(provisioning_error)?
                .customer
                .id;
            // No one reads the placeholder address: drop the welcome email
            // provisioning queued for it (same transaction, never sent).
            diesel::delete(
                email_outbox::table
                    .filter(email_outbox::customer_id.eq(customer_id))
                    .filter(email_outbox::kind.eq(email_kind::WELCOME)),
            )
            .execute(conn)
            .await?;
            customer_id
        }
    };
    tracing::info!(
        customer_id,
        github_account_id = account.id,
        "customer provisioned from a GitHub Marketplace purchase"
    );
    Ok(customer_id)
}

/// Replaces a placeholder email with `email` and invites it as owner, when
/// no customer or user has that email yet (otherwise leaves it be).
async fn claim_placeholder(
    conn: &mut AsyncPgConnection,
    config: &Config,
    customer_id: i64,
    email: &Email,
) -> Result<(), DeliveryError> {
    // A savepoint: a taken email rolls back only this attempt.
    let claimed = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::update(customers::table.find(customer_id))
                .set((
                    customers::email.eq(email.as_str()),
                    customers::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            diesel::insert_into(users::table)
                .values((
                    users::customer_id.eq(customer_id),
                    users::email.eq(email.as_str()),
                    users::role.eq(ROLE_OWNER),
                ))
                .returning(users::id)
                .get_result::<i64>(conn)
                .await
        })
        .await;
    let user_id = match claimed {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => {
            tracing::warn!(
                customer_id,
                "GitHub gave an email that another account has; keeping the placeholder"
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    requeue_create_customer(conn, customer_id).await?;
    let (token_id, token) =
        issue_token(conn, user_id, TokenPurpose::Invite, LONG_TOKEN_TTL).await?;
    enqueue_email(
        conn,
        &account_email(
            AccountEmail::Invite,
            &config.email.links,
            Some(customer_id),
            email.as_str(),
            &token,
            token_id,
        ),
    )
    .await?;
    Ok(())
}

/// Makes the customer's `stripe.create_customer` job due again (or enqueues
/// it), in the caller's transaction. Call it when a placeholder email is
/// replaced by a real one: the job skips a customer whose email is a
/// placeholder (no Stripe Customer is created with an address no one
/// reads), finishing `done` without creating anything, so the real address
/// needs another run. A running job is put back too (it may have read the
/// placeholder). Safe: the job does nothing once `stripe_customer_id` is
/// set.
///
/// Errors: [`BillingError::Database`].
pub async fn requeue_create_customer(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<(), BillingError> {
    crate::server::billing::work::enqueue_create_customer(conn, customer_id).await?;
    let dedupe = format!(
        "{}:{customer_id}",
        crate::server::billing::work::KIND_STRIPE_CREATE_CUSTOMER
    );
    diesel::update(
        jobs::table
            .filter(jobs::dedupe_key.eq(&dedupe))
            .filter(jobs::status.eq_any(["done", "dead", "running"])),
    )
    .set((
        jobs::status.eq("queued"),
        jobs::attempts.eq(0),
        jobs::run_at.eq(diesel::dsl::now),
        jobs::locked_until.eq(None::<DateTime<Utc>>),
        jobs::last_error.eq(None::<String>),
        jobs::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_plan(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    plan: Plan,
) -> Result<(), DeliveryError> {
    change_plan(conn, customer_id, &PlanChange::Marketplace(plan)).await?;
    Ok(())
}

/// Drops the customer's pending change, if any.
async fn drop_pending(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<usize, DeliveryError> {
    Ok(diesel::update(
        github_pending_changes::table
            .filter(github_pending_changes::customer_id.eq(customer_id))
            .filter(github_pending_changes::status.eq("pending")),
    )
    .set((
        github_pending_changes::status.eq("cancelled"),
        github_pending_changes::resolved_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?)
}

/// `purchased` / `changed`. Onto a plan mapped to `pro`: the period
/// containing the event's `effective_date` (else now) is granted and the
/// next one scheduled ([`super::credits`]). On GitHub's free trial
/// (`on_free_trial`) nothing paid is granted: the customer keeps its
/// fallback plan and the purchased plan becomes a pending change at the
/// trial's end ([`trial_ends_at`]).
async fn apply_purchase(
    conn: &mut AsyncPgConnection,
    config: &Config,
    delivery: &Delivery<'_>,
    event: &MarketplacePurchaseEvent,
) -> Result<i64, DeliveryError> {
    let plan = mapped_plan(config, &event.marketplace_purchase.plan)?;
    let customer_id = find_or_provision(conn, config, event).await?;
    drop_pending(conn, customer_id).await?;
    if event.marketplace_purchase.on_free_trial == Some(true) && plan != Plan::Trial {
        change_plan(conn, customer_id, &PlanChange::MarketplaceEnded).await?;
        match event.trial_ends_at().map_err(rejected)? {
            Some(ends) => {
                schedule_pending_change(conn, config, delivery, event, customer_id, plan, ends)
                    .await?;
            }
            None => tracing::warn!(
                customer_id,
                "Marketplace free trial without an end date: the plan follows GitHub's next change"
            ),
        }
        return Ok(customer_id);
    }
    set_plan(conn, customer_id, plan).await?;
    if plan == Plan::Pro {
        let at = match event.effective_date {
            Some(_) => event.effective_at().map_err(rejected)?,
            None => Utc::now(),
        };
        let period = event.period_at(at).map_err(rejected)?;
        let account_id = event.marketplace_purchase.account.id;
        grant_period(conn, &config.pricing, customer_id, account_id, period, at).await?;
    }
    Ok(customer_id)
}

/// `pending_change`: records the change (replacing an earlier pending one)
/// and schedules it; applies it at once when its date has passed.
async fn apply_pending_change_event(
    conn: &mut AsyncPgConnection,
    config: &Config,
    delivery: &Delivery<'_>,
    event: &MarketplacePurchaseEvent,
) -> Result<Option<i64>, DeliveryError> {
    let plan = mapped_plan(config, &event.marketplace_purchase.plan)?;
    let effective_at = event.effective_at().map_err(rejected)?;
    let account = &event.marketplace_purchase.account;
    let Some((customer_id, _)) = lock_by_account(conn, account.id).await? else {
        return Err(rejected(format!(
            "no customer for GitHub account {} ({}): its purchase was never received",
            account.id, account.login
        )));
    };
    drop_pending(conn, customer_id).await?;
    schedule_pending_change(
        conn,
        config,
        delivery,
        event,
        customer_id,
        plan,
        effective_at,
    )
    .await?;
    Ok(Some(customer_id))
}

/// Records a change of `customer_id` to `plan` at `effective_at` (from
/// `delivery`) and schedules its `github.apply_pending_change` job; applies
/// it at once when the date has passed.
async fn schedule_pending_change(
    conn: &mut AsyncPgConnection,
    config: &Config,
    delivery: &Delivery<'_>,
    event: &MarketplacePurchaseEvent,
    customer_id: i64,
    plan: Plan,
    effective_at: DateTime<Utc>,
) -> Result<(), DeliveryError> {
    let pending_id: i64 = diesel::insert_into(github_pending_changes::table)
        .values((
            github_pending_changes::customer_id.eq(customer_id),
            github_pending_changes::delivery_id.eq(delivery.delivery_id),
            github_pending_changes::marketplace_plan_id.eq(event.marketplace_purchase.plan.id),
            github_pending_changes::plan.eq(plan.as_str()),
            github_pending_changes::effective_at.eq(effective_at),
        ))
        .returning(github_pending_changes::id)
        .get_result(conn)
        .await?;
    if effective_at <= Utc::now() {
        apply_pending_change(conn, &config.pricing, pending_id, Utc::now()).await?;
        return Ok(());
    }
    let dedupe = format!("{KIND_GITHUB_APPLY_PENDING_CHANGE}:{pending_id}");
    let job = ApplyPendingChangeJob {
        pending_change_id: pending_id,
    };
    if let Some(job_id) = job.enqueue(conn, Some(&dedupe)).await? {
        diesel::update(jobs::table.find(job_id))
            .set(jobs::run_at.eq(effective_at))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// `pending_change_cancelled`.
async fn cancel_pending_change_event(
    conn: &mut AsyncPgConnection,
    event: &MarketplacePurchaseEvent,
) -> Result<Option<i64>, DeliveryError> {
    let account_id = event.marketplace_purchase.account.id;
    let Some((customer_id, _)) = lock_by_account(conn, account_id).await? else {
        tracing::info!(
            github_account_id = account_id,
            "pending change cancelled for an account we have no customer for"
        );
        return Ok(None);
    };
    drop_pending(conn, customer_id).await?;
    Ok(Some(customer_id))
}

/// `cancelled`.
async fn apply_cancellation(
    conn: &mut AsyncPgConnection,
    event: &MarketplacePurchaseEvent,
) -> Result<Option<i64>, DeliveryError> {
    let account = &event.marketplace_purchase.account;
    let Some((customer_id, _)) = lock_by_account(conn, account.id).await? else {
        tracing::info!(
            github_account_id = account.id,
            "Marketplace cancellation for an account we have no customer for"
        );
        return Ok(None);
    };
    link_account(conn, customer_id, account).await?;
    // Falls back to payg/trial unless a Stripe subscription pays for Pro.
    change_plan(conn, customer_id, &PlanChange::MarketplaceEnded).await?;
    drop_pending(conn, customer_id).await?;
    Ok(Some(customer_id))
}

// --- Pending changes -----------------------------------------------------------

/// Applies pending change `pending_change_id` if it is still pending and
/// due at `now` (its `effective_at <= now`): the customer's plan becomes the
/// change's, the change `applied`; onto `pro`, the period containing
/// `effective_at` (on the grid of the announcing delivery's
/// `next_billing_date`) is granted with `pricing`'s
/// `pro_credits_per_period` and the next one scheduled
/// ([`super::credits`]). Returns whether it was applied. Runs in its own
/// transaction (a savepoint inside the caller's), under the customer's row
/// lock.
///
/// Errors: [`BillingError::Database`]; [`BillingError::Invalid`] when the
/// stored delivery's dates are unreadable.
pub async fn apply_pending_change(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    pending_change_id: i64,
    now: DateTime<Utc>,
) -> Result<bool, BillingError> {
    conn.transaction(async |conn| {
        let Some(customer_id) = github_pending_changes::table
            .find(pending_change_id)
            .select(github_pending_changes::customer_id)
            .first::<i64>(conn)
            .await
            .optional()?
        else {
            return Ok(false);
        };
        // Customer first, as everywhere else.
        customers::table
            .find(customer_id)
            .select(customers::id)
            .for_no_key_update()
            .first::<i64>(conn)
            .await?;
        let pending: Option<(String, DateTime<Utc>, String)> = github_pending_changes::table
            .find(pending_change_id)
            .filter(github_pending_changes::status.eq("pending"))
            .filter(github_pending_changes::effective_at.le(now))
            .select((
                github_pending_changes::plan,
                github_pending_changes::effective_at,
                github_pending_changes::delivery_id,
            ))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some((plan, effective_at, delivery_id)) = pending else {
            return Ok(false);
        };
        let plan = Plan::parse(&plan)?;
        change_plan(conn, customer_id, &PlanChange::Marketplace(plan)).await?;
        diesel::update(github_pending_changes::table.find(pending_change_id))
            .set((
                github_pending_changes::status.eq("applied"),
                github_pending_changes::resolved_at.eq(now),
            ))
            .execute(conn)
            .await?;
        tracing::info!(customer_id, %plan, "Marketplace pending change applied");
        if plan == Plan::Pro {
            let payload: Value = github_deliveries::table
                .find(&delivery_id)
                .select(github_deliveries::payload)
                .first(conn)
                .await?;
            let invalid = |e: String| {
                BillingError::Invalid(crate::types::values::ParseError(format!(
                    "pending change {pending_change_id}: {e}"
                )))
            };
            let event: MarketplacePurchaseEvent =
                serde_json::from_value(payload).map_err(|e| invalid(e.to_string()))?;
            let period = event.period_at(effective_at).map_err(invalid)?;
            let account_id = event.marketplace_purchase.account.id;
            grant_period(conn, pricing, customer_id, account_id, period, effective_at).await?;
        }
        Ok(true)
    })
    .await
}

/// Applies every pending change due at `now` ([`apply_pending_change`]
/// with `pricing`); returns how many were applied. The safety net behind the jobs (and what tests call with an
/// explicit clock).
///
/// Errors: [`BillingError::Database`].
pub async fn apply_due_pending_changes(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    now: DateTime<Utc>,
) -> Result<usize, BillingError> {
    let due: Vec<i64> = github_pending_changes::table
        .filter(github_pending_changes::status.eq("pending"))
        .filter(github_pending_changes::effective_at.le(now))
        .order(github_pending_changes::effective_at)
        .select(github_pending_changes::id)
        .load(conn)
        .await?;
    let mut applied = 0;
    for id in due {
        if apply_pending_change(conn, pricing, id, now).await? {
            applied += 1;
        }
    }
    Ok(applied)
}

/// The `github.apply_pending_change` job (`{"pending_change_id": i64}`),
/// due at the change's `effective_at`: applies every pending change due now
/// (this one included). A change dropped meanwhile is nothing to do.
///
/// Errors: permanent for a payload without the id; retryable for database
/// failures, and when this change is still pending but not yet due (a
/// clock ahead of the database's).
pub async fn apply_pending_change_job(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let id = payload
        .get("pending_change_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload lacks pending_change_id"))?;
    let mut conn = state.conn().await?;
    let now = Utc::now();
    apply_due_pending_changes(&mut conn, &state.config.pricing, now).await?;
    let still_pending: Option<DateTime<Utc>> = github_pending_changes::table
        .find(id)
        .filter(github_pending_changes::status.eq("pending"))
        .select(github_pending_changes::effective_at)
        .first(&mut conn)
        .await
        .optional()
        .map_err(BillingError::from)?;
    match still_pending {
        Some(at) => Err(JobError::retry(format!(
            "pending change not due until {at}"
        ))),
        None => Ok(()),
    }
}
