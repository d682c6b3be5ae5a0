//! The manual approval queue (table `signup_requests`): while the
//! `auto_provision` flag is off, self-service signups (home page form and
//! server function, `/register`) and the Action's onboarding call are
//! recorded here instead of provisioned; an admin approves (the customer is
//! provisioned and gets the invite email) or rejects (recorded).
//!
//! [`admit`] is the one gate every signup path calls after parsing its
//! input; it also refuses every signup while `signups_enabled` is off.

use crate::server::admin::audit::{record_audit, AuditEntry};
use crate::server::admin::customers::parse_reason;
use crate::server::admin::{page_offset, Admin};
use crate::server::auth::accounts::{provision_with_owner, OwnerSetup};
use crate::server::billing::customers::{Customer, NewCustomer};
use crate::server::billing::error::is_unique_violation;
use crate::server::billing::BillingError;
use crate::server::config::Config;
use crate::server::db::schema::signup_requests;
use crate::server::disposable_email::{is_disposable, DISPOSABLE_EMAIL_MESSAGE};
use crate::server::flags::{Flag, Flags};
use crate::types::values::{CustomerName, Email, ParseError, Source};
use crate::types::views::SignupMode;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// What a refused signup is told while `signups_enabled` is off.
pub const SIGNUPS_CLOSED_MESSAGE: &str = "signups are closed at the moment; please try again later";
/// What a queued signup is told while `auto_provision` is off.
pub const PENDING_APPROVAL_MESSAGE: &str =
    "thanks! your signup is waiting for approval; we will email you once it is approved";

/// Requests per page of the queue.
pub const REQUESTS_PER_PAGE: i64 = 50;

/// Where a signup came from (`signup_requests.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupChannel {
    /// Home page signup form or its server function.
    SignupForm,
    /// `/register` (the password is not kept: the approved user gets an
    /// invite to set one).
    Register,
    /// `POST /api/v1/customers/onboard`.
    ApiOnboard,
}

impl SignupChannel {
    /// The column's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignupForm => "signup_form",
            Self::Register => "register",
            Self::ApiOnboard => "api_onboard",
        }
    }
}

/// A queued (or decided) signup.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = signup_requests, check_for_backend(diesel::pg::Pg))]
pub struct SignupRequest {
    /// Row id.
    pub id: i64,
    /// Email as entered.
    pub email: String,
    /// Name as entered.
    pub name: String,
    /// A [`Source`] spelling.
    pub source: String,
    /// A [`SignupChannel`] spelling.
    pub channel: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// The provisioned customer once approved.
    pub customer_id: Option<i64>,
    /// The deciding admin.
    pub decided_by: Option<i64>,
    /// When decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// The rejection reason.
    pub reason: Option<String>,
    /// Received.
    pub created_at: DateTime<Utc>,
}

/// What a signup path should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Provision now (`auto_provision` on).
    Provision,
    /// Queued for approval; tell the caller it is pending.
    Pending(Box<SignupRequest>),
    /// Refused: `signups_enabled` is off ([`SIGNUPS_CLOSED_MESSAGE`]).
    Closed,
}

fn email_taken_sql(
    email: &str,
) -> diesel::expression::SqlLiteral<
    Bool,
    impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send,
> {
    diesel::dsl::sql::<Bool>("(EXISTS (SELECT 1 FROM customers c WHERE lower(c.email) = lower(")
        .bind::<Text, _>(email.to_owned())
        .sql(")) OR EXISTS (SELECT 1 FROM users u WHERE lower(u.email) = lower(")
        .bind::<Text, _>(email.to_owned())
        .sql(")))")
}

/// The gate of every signup path, after its input is parsed: `Closed` while
/// `signups_enabled` is off; otherwise `Provision` while `auto_provision`
/// is on; otherwise the signup is queued ([`request_signup`]) and
/// `Pending`.
///
/// Errors: as [`request_signup`].
pub async fn admit(
    conn: &mut AsyncPgConnection,
    flags: &Flags,
    new: &NewCustomer,
    channel: SignupChannel,
) -> Result<Admission, BillingError> {
    Ok(match signup_mode(flags) {
        SignupMode::Closed => Admission::Closed,
        SignupMode::Open => Admission::Provision,
        SignupMode::Approval => {
            Admission::Pending(Box::new(request_signup(conn, new, channel).await?))
        }
    })
}

/// What [`admit`] does with a signup now: [`SignupMode::Closed`] while
/// `signups_enabled` is off, else [`SignupMode::Open`] while
/// `auto_provision` is on, else [`SignupMode::Approval`]. The signup
/// pages show it before their form is filled.
pub fn signup_mode(flags: &Flags) -> SignupMode {
    if !flags.is_on(Flag::SignupsEnabled) {
        SignupMode::Closed
    } else if flags.is_on(Flag::AutoProvision) {
        SignupMode::Open
    } else {
        SignupMode::Approval
    }
}

/// Queues a signup for approval; a second request for an email already
/// pending returns the pending one (nothing written).
///
/// Errors: [`BillingError::Invalid`] for a disposable email address;
/// [`BillingError::EmailTaken`] when a customer or user has the email;
/// [`BillingError::Database`].
pub async fn request_signup(
    conn: &mut AsyncPgConnection,
    new: &NewCustomer,
    channel: SignupChannel,
) -> Result<SignupRequest, BillingError> {
    if is_disposable(&new.email) {
        return Err(BillingError::Invalid(ParseError(
            DISPOSABLE_EMAIL_MESSAGE.to_owned(),
        )));
    }
    let email = new.email.as_str().to_owned();
    let taken: bool = diesel::select(email_taken_sql(&email))
        .get_result(conn)
        .await?;
    if taken {
        return Err(BillingError::EmailTaken);
    }
    let inserted = conn
        .transaction(async |conn| {
            diesel::insert_into(signup_requests::table)
                .values((
                    signup_requests::email.eq(&email),
                    signup_requests::name.eq(new.name.as_str()),
                    signup_requests::source.eq(new.source.as_str()),
                    signup_requests::channel.eq(channel.as_str()),
                ))
                .returning(SignupRequest::as_returning())
                .get_result(conn)
                .await
        })
        .await;
    match inserted {
        Ok(request) => {
            tracing::info!(
                request_id = request.id,
                channel = channel.as_str(),
                "signup queued for approval"
            );
            Ok(request)
        }
        Err(e) if is_unique_violation(&e) => Ok(signup_requests::table
            .filter(signup_requests::status.eq("pending"))
            .filter(
                diesel::dsl::sql::<Bool>("lower(signup_requests.email) = lower(")
                    .bind::<Text, _>(email.clone())
                    .sql(")"),
            )
            .select(SignupRequest::as_select())
            .first(conn)
            .await?),
        Err(e) => Err(e.into()),
    }
}

/// One page of requests with `status` (`pending`, `approved`, `rejected`;
/// empty: all), oldest first for `pending`, newest first otherwise.
///
/// Errors: [`BillingError::Invalid`] for another status;
/// [`BillingError::Database`].
pub async fn list_requests(
    conn: &mut AsyncPgConnection,
    status: Option<&str>,
    page: i64,
) -> Result<(Vec<SignupRequest>, i64), BillingError> {
    let status = status.filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !matches!(s, "pending" | "approved" | "rejected") {
            return Err(BillingError::Invalid(ParseError(format!(
                "status must be one of pending, approved, rejected; got {s:?}"
            ))));
        }
    }
    let build = || {
        let mut query = signup_requests::table.into_boxed();
        if let Some(s) = status {
            query = query.filter(signup_requests::status.eq(s.to_owned()));
        }
        query
    };
    let (_, offset) = page_offset(page, REQUESTS_PER_PAGE);
    let total = build().count().get_result(conn).await?;
    let query = if status == Some("pending") {
        build().order(signup_requests::id.asc())
    } else {
        build().order(signup_requests::id.desc())
    };
    let rows = query
        .limit(REQUESTS_PER_PAGE)
        .offset(offset)
        .select(SignupRequest::as_select())
        .load(conn)
        .await?;
    Ok((rows, total))
}

async fn lock_pending(
    conn: &mut AsyncPgConnection,
    request_id: i64,
) -> Result<SignupRequest, BillingError> {
    let request = signup_requests::table
        .find(request_id)
        .select(SignupRequest::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("signup request"))?;
    if request.status != "pending" {
        return Err(BillingError::Invalid(ParseError(format!(
            "this signup was {} already",
            request.status
        ))));
    }
    Ok(request)
}

/// Approves a pending request: provisions the customer (plan `trial`,
/// signup bonus, first API key, welcome email) with an owner user who gets
/// the invite email to set a password, marks the request approved and
/// writes the audit entry (`signup.approve`), in one transaction.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Invalid`] when the
/// request was decided already or holds a value that no longer parses;
/// [`BillingError::EmailTaken`] when the email was registered meanwhile;
/// [`BillingError::Database`].
pub async fn approve_request(
    conn: &mut AsyncPgConnection,
    config: &Config,
    actor: &Admin,
    request_id: i64,
) -> Result<Customer, BillingError> {
    conn.transaction(async |conn| {
        let request = lock_pending(conn, request_id).await?;
        let new = NewCustomer {
            email: Email::parse(&request.email)?,
            name: CustomerName::parse(&request.name)?,
            source: Source::parse(&request.source)?,
        };
        let provisioned = provision_with_owner(conn, config, &new, OwnerSetup::Invite).await?;
        let customer = provisioned.customer;
        diesel::update(signup_requests::table.find(request_id))
            .set((
                signup_requests::status.eq("approved"),
                signup_requests::customer_id.eq(customer.id),
                signup_requests::decided_by.eq(actor.user_id),
                signup_requests::decided_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "signup.approve",
                target_type: "signup_request",
                target_id: Some(request_id.to_string()),
                customer_id: Some(customer.id),
                reason: None,
                before: Some(json!({ "status": "pending", "email": request.email })),
                after: Some(json!({ "status": "approved", "customer_id": customer.id })),
            },
        )
        .await?;
        Ok(customer)
    })
    .await
}

/// Rejects a pending request with a reason, recorded with the audit entry
/// (`signup.reject`) in one transaction. No email is sent.
///
/// Errors: [`BillingError::NotFound`]; [`BillingError::Invalid`] for a
/// missing reason or a request decided already; [`BillingError::Database`].
pub async fn reject_request(
    conn: &mut AsyncPgConnection,
    actor: &Admin,
    request_id: i64,
    reason: &str,
) -> Result<SignupRequest, BillingError> {
    let reason = parse_reason(reason)?;
    conn.transaction(async |conn| {
        let request = lock_pending(conn, request_id).await?;
        let updated = diesel::update(signup_requests::table.find(request_id))
            .set((
                signup_requests::status.eq("rejected"),
                signup_requests::decided_by.eq(actor.user_id),
                signup_requests::decided_at.eq(Utc::now()),
                signup_requests::reason.eq(&reason),
            ))
            .returning(SignupRequest::as_returning())
            .get_result(conn)
            .await?;
        record_audit(
            conn,
            actor,
            &AuditEntry {
                action: "signup.reject",
                target_type: "signup_request",
                target_id: Some(request_id.to_string()),
                customer_id: None,
                reason: Some(reason.clone()),
                before: Some(json!({ "status": "pending", "email": request.email })),
                after: Some(json!({ "status": "rejected" })),
            },
        )
        .await?;
        Ok(updated)
    })
    .await
}
