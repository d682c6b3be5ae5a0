//! The admin console's server functions (`POST /api/admin/…`,
//! form-encoded). Every one starts with `require_admin()`: nobody signed in
//! gets 401, every customer session 403, whatever the arguments. Every
//! action writes its audit entry in the same transaction as the change
//! (see `server::admin`).
//!
//! Errors (all functions): [`AppError::Unauthorized`],
//! [`AppError::Forbidden`], [`AppError::Internal`] (cause logged); others
//! as listed.

use crate::types::admin::{
    AdminAuditPage, AdminCustomerDetail, AdminCustomerPage, AdminDeliveryPage, AdminEmailDetail,
    AdminEmailPage, AdminEventDetail, AdminEventPage, AdminFlagRow, AdminSignupPage, AdminUserRow,
};
use crate::types::AppError;
use leptos::prelude::*;

/// Searches customers. `q` matches email or name (substring), a Stripe
/// Customer id (exact) or an API-key prefix; `plan`, `status`, `source`
/// filter exactly; `problem` is `cannot_use_service`, `payment_failed` or
/// `disputed`
/// to keep only those customers; `sort` is `newest` (default), `oldest`,
/// `email`, `balance_desc` or `balance_asc`; `page` from 1.
///
/// Errors: also [`AppError::Validation`] for an unknown plan, status,
/// source, problem or sort.
#[server(endpoint = "admin/customers")]
pub async fn admin_search_customers(
    #[server(default)] q: Option<String>,
    #[server(default)] plan: Option<String>,
    #[server(default)] status: Option<String>,
    #[server(default)] source: Option<String>,
    #[server(default)] problem: Option<String>,
    #[server(default)] sort: Option<String>,
    #[server(default)] page: Option<i64>,
) -> Result<AdminCustomerPage, AppError> {
    use crate::server::admin::customers::{
        search_customers, CustomerFilter, CustomerSort, CUSTOMERS_PER_PAGE,
    };
    use crate::types::values::{CustomerStatus, Plan, Source};
    let (_, mut conn) = ssr::admin().await?;
    let opt = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let problem = opt(problem);
    if let Some(p) = problem.as_deref() {
        if !matches!(p, "cannot_use_service" | "payment_failed" | "disputed") {
            return Err(ssr::fail_app(AppError::Validation(format!(
                "problem must be cannot_use_service, payment_failed or disputed; got {p:?}"
            ))));
        }
    }
    let filter = CustomerFilter {
        q: opt(q),
        plan: opt(plan)
            .map(|p| Plan::parse(&p))
            .transpose()
            .map_err(ssr::invalid)?,
        status: opt(status)
            .map(|p| CustomerStatus::parse(&p))
            .transpose()
            .map_err(ssr::invalid)?,
        source: opt(source)
            .map(|p| Source::parse(&p))
            .transpose()
            .map_err(ssr::invalid)?,
        cannot_use_service: problem.as_deref() == Some("cannot_use_service"),
        payment_failed: problem.as_deref() == Some("payment_failed"),
        disputed: problem.as_deref() == Some("disputed"),
        sort: CustomerSort::parse(opt(sort).as_deref().unwrap_or("")).map_err(ssr::fail)?,
        page: page.unwrap_or(1),
    };
    let found = search_customers(&mut conn, &filter)
        .await
        .map_err(ssr::fail)?;
    Ok(AdminCustomerPage {
        rows: found.rows.iter().map(ssr::customer_row).collect(),
        total: found.total,
        page: found.page,
        per_page: CUSTOMERS_PER_PAGE,
        open_disputes: found.open_disputes,
    })
}

/// Days of AI usage on the admin's customer page.
pub const ADMIN_AI_DAYS: i64 = 30;

/// One customer's page: profile, plan and subscription, full ledger, fixes,
/// keys, payment methods, emails, webhook events, audit entries, AI usage
/// ([`ADMIN_AI_DAYS`] days) and budget, and a fresh form token for the
/// credit form.
///
/// Errors: also [`AppError::NotFound`].
#[server(endpoint = "admin/customer")]
pub async fn admin_get_customer(customer_id: i64) -> Result<AdminCustomerDetail, AppError> {
    let (_, mut conn) = ssr::admin().await?;
    ssr::customer_detail(&mut conn, customer_id).await
}

/// Customer `customer_id`'s portal as the customer sees it, read-only:
/// `section` `dashboard` (or empty), `billing` (with the history), `keys`
/// or `credits` (`page` of the ledger, from 1). Read by the same functions
/// as the portal's own server functions, and audited: each call writes a
/// `customer.view_portal` entry (admin, customer, section) before the data
/// is answered. Stripe.js settings are left out (nothing is entered here).
///
/// Errors: also [`AppError::Validation`] for another section;
/// [`AppError::NotFound`].
#[server(endpoint = "admin/customer/portal")]
pub async fn admin_view_portal(
    customer_id: i64,
    #[server(default)] section: String,
    #[server(default)] page: Option<i64>,
) -> Result<crate::types::admin::AdminPortalView, AppError> {
    use crate::app::portal::api::ssr as portal;
    use crate::app::portal::billing_api::ssr as billing;
    use crate::types::admin::{AdminPortalData, AdminPortalView, PortalSection};
    let (admin, mut conn) = ssr::admin().await?;
    let section = PortalSection::parse(&section).map_err(ssr::invalid)?;
    let config = ssr::state()?.config;
    let customer = crate::server::billing::customers::find_customer(&mut conn, customer_id)
        .await
        .map_err(ssr::fail)?;
    let page = page.unwrap_or(1).max(1);
    let data = match section {
        PortalSection::Dashboard => AdminPortalData::Dashboard(Box::new(
            portal::dashboard_view(&mut conn, &config, customer_id).await?,
        )),
        PortalSection::Billing => {
            let mut view = billing::billing_view(&mut conn, customer_id).await?;
            view.publishable_key = String::new();
            view.stripe_js_url = String::new();
            view.can_add_cards = false;
            AdminPortalData::Billing {
                billing: Box::new(view),
                history: Box::new(billing::history_view(&mut conn, customer_id).await?),
            }
        }
        PortalSection::Keys => {
            AdminPortalData::Keys(portal::keys_view(&mut conn, customer_id).await?)
        }
        PortalSection::Credits => {
            AdminPortalData::Credits(portal::ledger_view(&mut conn, customer_id, None, page).await?)
        }
    };
    crate::server::admin::customers::record_portal_view(
        &mut conn,
        &admin,
        customer_id,
        section.as_str(),
        (section == PortalSection::Credits).then_some(page),
    )
    .await
    .map_err(ssr::fail)?;
    Ok(AdminPortalView {
        customer_id,
        email: customer.email,
        data,
    })
}

/// Provisions a customer by hand (`source` `early_access` or `direct`,
/// `starting_credits` 0 or more, default 0); the owner gets the invite
/// email. Answers the new customer's id.
///
/// Errors: also [`AppError::Validation`]; [`AppError::Conflict`] for a
/// registered email.
#[server(endpoint = "admin/customers/provision")]
pub async fn admin_provision_customer(
    #[server(default)] email: String,
    #[server(default)] name: String,
    #[server(default)] source: String,
    #[server(default)] starting_credits: Option<String>,
) -> Result<i64, AppError> {
    use crate::server::admin::customers::provision_by_admin;
    use crate::server::billing::customers::NewCustomer;
    use crate::types::values::{CustomerName, Email, Source};
    let (admin, mut conn) = ssr::admin().await?;
    let new = NewCustomer {
        email: Email::parse(&email).map_err(ssr::invalid)?,
        name: CustomerName::parse(&name).map_err(ssr::invalid)?,
        source: Source::parse(source.trim()).map_err(ssr::invalid)?,
    };
    let credits = match starting_credits.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(raw) => raw.parse::<i64>().map_err(|_| {
            ssr::fail_app(AppError::Validation(
                "starting credits must be a whole number".into(),
            ))
        })?,
    };
    let state = ssr::state()?;
    let customer = provision_by_admin(&mut conn, &state.config, &admin, &new, credits)
        .await
        .map_err(ssr::fail)?;
    Ok(customer.id)
}

/// Adds (positive) or removes (negative) `amount` credits with a mandatory
/// `reason`; `form_token` (from the customer page) makes a double
/// submission apply once. Answers the balance after.
///
/// Errors: also [`AppError::Validation`] for a zero amount, a missing
/// reason or token; [`AppError::Conflict`] when the balance would go below
/// zero; [`AppError::NotFound`].
#[server(endpoint = "admin/credits/adjust")]
pub async fn admin_adjust_credits(
    customer_id: i64,
    #[server(default)] amount: String,
    #[server(default)] reason: String,
    #[server(default)] form_token: String,
) -> Result<i64, AppError> {
    use crate::server::admin::customers::adjust_credits;
    use crate::server::billing::BillingError;
    let (admin, mut conn) = ssr::admin().await?;
    let amount: i64 = amount.trim().parse().map_err(|_| {
        ssr::fail_app(AppError::Validation(
            "the amount must be a whole number of credits, e.g. 10 or -5".into(),
        ))
    })?;
    let state = ssr::state()?;
    match adjust_credits(
        &mut conn,
        &state.config.pricing,
        &admin,
        customer_id,
        amount,
        &reason,
        &form_token,
    )
    .await
    {
        Ok(adjusted) => Ok(adjusted.entry.balance_after),
        Err(BillingError::InsufficientCredits { available, .. }) => {
            Err(ssr::fail_app(AppError::Conflict(format!(
                "the balance is {available} credits: removing {} would take it below zero",
                -amount
            ))))
        }
        Err(e) => Err(ssr::fail(e)),
    }
}

/// Writes off the customer's unpaid fix `fix_id` with a mandatory reason
/// (issue 9): it is never billed; the audit log records who and why.
///
/// Errors: also [`AppError::Validation`] for a missing reason or a fix that
/// is not unpaid or has a card charge; [`AppError::NotFound`].
#[server(endpoint = "admin/fixes/write-off")]
pub async fn admin_write_off_fix(
    customer_id: i64,
    fix_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    use crate::server::admin::customers::write_off_fix;
    let (admin, mut conn) = ssr::admin().await?;
    write_off_fix(&mut conn, &admin, customer_id, fix_id, &reason)
        .await
        .map_err(ssr::fail)
}

/// Charges the customer's unpaid fix `fix_id` again (issue 14, item 6):
/// one credit if any is left, else a new charge on the card on file
/// (clearing an earlier decline's block); audited `fix.retry_charge`.
/// `form_token` (from the customer page) makes a repeated submission
/// change nothing. Answers what happened, in words.
///
/// Errors: also [`AppError::Validation`] for a bad token, a fix that is
/// not unpaid, or when nothing can pay; [`AppError::NotFound`].
#[server(endpoint = "admin/fixes/retry-charge")]
pub async fn admin_retry_fix_charge(
    customer_id: i64,
    fix_id: i64,
    #[server(default)] form_token: String,
) -> Result<String, AppError> {
    use crate::server::admin::customers::{retry_fix_charge, RetryCharge};
    use crate::server::billing::fixes::Payment;
    let (admin, mut conn) = ssr::admin().await?;
    let state = ssr::state()?;
    let outcome = retry_fix_charge(
        &mut conn,
        &state.config.pricing,
        &admin,
        customer_id,
        fix_id,
        &form_token,
    )
    .await
    .map_err(ssr::fail)?;
    Ok(match outcome {
        RetryCharge::Retried(Payment::Credit(_)) => {
            format!("Fix {fix_id} was paid with one credit.")
        }
        RetryCharge::Retried(Payment::Charging(charge)) => format!(
            "Charge {charge} for fix {fix_id} is on its way; the job worker charges the card shortly."
        ),
        RetryCharge::Retried(Payment::AwaitingPeriodCredits | Payment::Refused(_)) => format!(
            "Fix {fix_id} waits for the Pro period's credits; it is paid when they are granted."
        ),
        RetryCharge::AlreadyCharging(charge) => {
            format!("Charge {charge} for fix {fix_id} was on its way already; nothing changed.")
        }
        RetryCharge::Replayed => {
            format!("This retry of fix {fix_id} was submitted already; nothing changed.")
        }
    })
}

/// Suspends the customer (the Action API answers 403 for its keys) with a
/// mandatory reason.
///
/// Errors: also [`AppError::Validation`], [`AppError::NotFound`].
#[server(endpoint = "admin/customers/suspend")]
pub async fn admin_suspend_customer(
    customer_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    ssr::set_status(
        customer_id,
        crate::types::values::CustomerStatus::Suspended,
        &reason,
    )
    .await
}

/// Reactivates a suspended customer, with a mandatory reason.
///
/// Errors: also [`AppError::Validation`], [`AppError::NotFound`].
#[server(endpoint = "admin/customers/reactivate")]
pub async fn admin_reactivate_customer(
    customer_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    ssr::set_status(
        customer_id,
        crate::types::values::CustomerStatus::Active,
        &reason,
    )
    .await
}

/// Revokes one of the customer's API keys (the customer is emailed), with
/// a mandatory reason.
///
/// Errors: also [`AppError::NotFound`] when the key is not the customer's;
/// [`AppError::Validation`].
#[server(endpoint = "admin/keys/revoke")]
pub async fn admin_revoke_key(
    customer_id: i64,
    key_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    let links = ssr::state()?.config.email.links.clone();
    crate::server::admin::customers::admin_revoke_key(
        &mut conn,
        &links,
        &admin,
        customer_id,
        key_id,
        &reason,
    )
    .await
    .map_err(ssr::fail)?;
    Ok(())
}

/// The Stripe webhook event log: `status` `received`, `processed`,
/// `failed` or `dead`; `type_` an event type; `page` from 1.
///
/// Errors: also [`AppError::Validation`] for an unknown status.
#[server(endpoint = "admin/events")]
pub async fn admin_list_events(
    #[server(default)] status: Option<String>,
    #[server(default)] type_: Option<String>,
    #[server(default)] page: Option<i64>,
) -> Result<AdminEventPage, AppError> {
    use crate::server::admin::ops::{event_types, list_events, EventFilter, OPS_PER_PAGE};
    let (_, mut conn) = ssr::admin().await?;
    let page = page.unwrap_or(1).max(1);
    let (rows, total) = list_events(
        &mut conn,
        &EventFilter {
            status,
            type_,
            page,
        },
    )
    .await
    .map_err(ssr::fail)?;
    let types = event_types(&mut conn).await.map_err(ssr::fail)?;
    Ok(AdminEventPage {
        rows: rows.into_iter().map(ssr::event_row).collect(),
        total,
        page,
        per_page: OPS_PER_PAGE,
        types,
    })
}

/// Replays a failed or dead-lettered event (its processing job runs again
/// now).
///
/// Errors: also [`AppError::NotFound`]; [`AppError::Validation`] for an
/// event already processed or not failed.
#[server(endpoint = "admin/events/replay")]
pub async fn admin_replay_event(#[server(default)] event_id: String) -> Result<(), AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::ops::replay_event(&mut conn, &admin, event_id.trim())
        .await
        .map_err(ssr::fail)
}

/// One webhook event in full: `source` `stripe` (`id` an `evt_…`) or
/// `github` (`id` an `X-GitHub-Delivery` GUID), with its payload as
/// received (indented, at most 64 KiB), status, attempts, errors and times.
///
/// Errors: also [`AppError::NotFound`]; [`AppError::Validation`] for
/// another source.
#[server(endpoint = "admin/events/get")]
pub async fn admin_get_event(
    #[server(default)] source: String,
    #[server(default)] id: String,
) -> Result<AdminEventDetail, AppError> {
    use crate::server::admin::ops::{delivery_detail, pretty_json, stripe_event_detail};
    let (_, mut conn) = ssr::admin().await?;
    let id = id.trim();
    match source.trim() {
        "stripe" => {
            let d = stripe_event_detail(&mut conn, id)
                .await
                .map_err(ssr::fail)?;
            let (payload, payload_truncated) = pretty_json(&d.payload);
            let (job_status, job_attempts, job_error) = match d.job {
                Some((status, attempts, error)) => (Some(status), Some(attempts), error),
                None => (None, None, None),
            };
            Ok(AdminEventDetail {
                source: "stripe".into(),
                id: d.event.id,
                type_: d.event.type_,
                customer_id: None,
                created_at: Some(ssr::iso(d.created)),
                received_at: ssr::iso(d.event.received_at),
                processed_at: d.event.processed_at.map(ssr::iso),
                attempts: d.event.attempts,
                status: d.event.status,
                job_status,
                job_attempts,
                last_error: d.event.last_error.or(job_error),
                payload,
                payload_truncated,
            })
        }
        "github" => {
            let (row, body) = delivery_detail(&mut conn, id).await.map_err(ssr::fail)?;
            let (payload, payload_truncated) = pretty_json(&body);
            let row = ssr::delivery_row(row);
            Ok(AdminEventDetail {
                source: "github".into(),
                id: row.id,
                type_: row.type_,
                customer_id: row.customer_id,
                created_at: None,
                received_at: row.received_at,
                processed_at: row.processed_at,
                attempts: row.attempts,
                status: row.status,
                job_status: None,
                job_attempts: None,
                last_error: row.error,
                payload,
                payload_truncated,
            })
        }
        other => Err(ssr::fail_app(AppError::Validation(format!(
            "source must be stripe or github; got {other:?}"
        )))),
    }
}

/// The GitHub Marketplace deliveries, newest first; `page` from 1.
#[server(endpoint = "admin/deliveries")]
pub async fn admin_list_deliveries(
    #[server(default)] page: Option<i64>,
) -> Result<AdminDeliveryPage, AppError> {
    use crate::server::admin::ops::{list_deliveries, OPS_PER_PAGE};
    let (_, mut conn) = ssr::admin().await?;
    let page = page.unwrap_or(1).max(1);
    let (rows, total) = list_deliveries(&mut conn, page).await.map_err(ssr::fail)?;
    Ok(AdminDeliveryPage {
        rows: rows.into_iter().map(ssr::delivery_row).collect(),
        total,
        page,
        per_page: OPS_PER_PAGE,
    })
}

/// One outbox email in full: recipient, subject, status, attempts, last
/// error, times, and the bodies and notification as stored with every
/// link's token shown `REDACTED` (at most 64 KiB each).
///
/// Errors: also [`AppError::NotFound`].
#[server(endpoint = "admin/emails/get")]
pub async fn admin_get_email(email_id: i64) -> Result<AdminEmailDetail, AppError> {
    use crate::server::admin::ops::{bounded, email_detail, DETAIL_MAX_BYTES};
    use crate::server::email::worker::redact_link_tokens;
    let (_, mut conn) = ssr::admin().await?;
    let d = email_detail(&mut conn, email_id).await.map_err(ssr::fail)?;
    let mut truncated = false;
    let mut shown = |text: Option<String>| {
        text.map(|t| {
            let (t, cut) = bounded(&redact_link_tokens(&t), DETAIL_MAX_BYTES);
            truncated |= cut;
            t
        })
    };
    let text_body = shown(d.text_body);
    let html_body = shown(d.html_body);
    let notification = shown(
        d.notification
            .as_ref()
            .map(|n| serde_json::to_string_pretty(n).unwrap_or_else(|_| n.to_string())),
    );
    Ok(AdminEmailDetail {
        email: ssr::email_row(d.row),
        text_body,
        html_body,
        notification,
        next_attempt_at: ssr::iso(d.next_attempt_at),
        truncated,
    })
}

/// The email outbox: `status` `queued`, `sending`, `sent` or `failed`;
/// `page` from 1.
///
/// Errors: also [`AppError::Validation`] for an unknown status.
#[server(endpoint = "admin/emails")]
pub async fn admin_list_emails(
    #[server(default)] status: Option<String>,
    #[server(default)] page: Option<i64>,
) -> Result<AdminEmailPage, AppError> {
    use crate::server::admin::ops::{list_emails, OPS_PER_PAGE};
    let (_, mut conn) = ssr::admin().await?;
    let page = page.unwrap_or(1).max(1);
    let (rows, total) = list_emails(&mut conn, status.as_deref(), page)
        .await
        .map_err(ssr::fail)?;
    Ok(AdminEmailPage {
        rows: rows.into_iter().map(ssr::email_row).collect(),
        total,
        page,
        per_page: OPS_PER_PAGE,
    })
}

/// Queues a failed email again.
///
/// Errors: also [`AppError::NotFound`]; [`AppError::Validation`] for an
/// email that has not failed.
#[server(endpoint = "admin/emails/resend")]
pub async fn admin_resend_email(email_id: i64) -> Result<(), AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::ops::resend_email(&mut conn, &admin, email_id)
        .await
        .map_err(ssr::fail)
}

/// Every feature flag: effective value, stored value, environment force.
#[server(endpoint = "admin/flags")]
pub async fn admin_list_flags() -> Result<Vec<AdminFlagRow>, AppError> {
    let _ = ssr::admin().await?;
    let state = ssr::state()?;
    Ok(crate::server::flags::flag_states(state.flags())
        .into_iter()
        .map(|f| AdminFlagRow {
            key: f.flag.key().to_owned(),
            description: f.flag.description().to_owned(),
            on: f.on,
            stored: f.stored,
            env_var: f.flag.env_var().to_owned(),
            forced: f.forced,
        })
        .collect())
}

/// Switches flag `key` on (`enabled` = `true`) or off with a mandatory
/// `reason` (stored in the `flag.set` audit entry), effective at once here
/// and within `FLAGS_REFRESH_SECONDS` on other instances.
///
/// Errors: also [`AppError::Validation`] for an unknown flag, one the
/// environment forces, or a missing or over-long reason (nothing changes).
#[server(endpoint = "admin/flags/set")]
pub async fn admin_set_flag(
    #[server(default)] key: String,
    #[server(default)] enabled: String,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    use crate::server::admin::flags::set_flag;
    use crate::server::flags::Flag;
    let (admin, mut conn) = ssr::admin().await?;
    let flag = Flag::parse(key.trim())
        .ok_or_else(|| ssr::fail_app(AppError::Validation(format!("unknown flag {key:?}"))))?;
    let state = ssr::state()?;
    set_flag(
        &mut conn,
        state.flags(),
        &admin,
        flag,
        ssr::checked(Some(&enabled)),
        &reason,
    )
    .await
    .map_err(ssr::fail)
}

/// The audit log, newest first: all, or one customer's, or one action's.
#[server(endpoint = "admin/audit")]
pub async fn admin_list_audit(
    #[server(default)] customer_id: Option<i64>,
    #[server(default)] action: Option<String>,
    #[server(default)] page: Option<i64>,
) -> Result<AdminAuditPage, AppError> {
    use crate::server::admin::audit::list_audit;
    const PER_PAGE: i64 = 50;
    let (_, mut conn) = ssr::admin().await?;
    let page = page.unwrap_or(1).max(1);
    let action = action.filter(|a| !a.trim().is_empty());
    let (rows, total) = list_audit(&mut conn, customer_id, action.as_deref(), page, PER_PAGE)
        .await
        .map_err(ssr::fail)?;
    Ok(AdminAuditPage {
        rows: rows.into_iter().map(ssr::audit_row).collect(),
        total,
        page,
        per_page: PER_PAGE,
    })
}

/// The approval queue: `status` `pending` (default), `approved`,
/// `rejected` or `all`.
///
/// Errors: also [`AppError::Validation`] for an unknown status.
#[server(endpoint = "admin/signups")]
pub async fn admin_list_signups(
    #[server(default)] status: Option<String>,
    #[server(default)] page: Option<i64>,
) -> Result<AdminSignupPage, AppError> {
    use crate::server::admin::approvals::{list_requests, REQUESTS_PER_PAGE};
    let (_, mut conn) = ssr::admin().await?;
    let page = page.unwrap_or(1).max(1);
    let status = match status.as_deref().map(str::trim) {
        None | Some("") => Some("pending"),
        Some("all") => None,
        Some(other) => Some(other),
    };
    let (rows, total) = list_requests(&mut conn, status, page)
        .await
        .map_err(ssr::fail)?;
    Ok(AdminSignupPage {
        rows: rows.into_iter().map(ssr::signup_row).collect(),
        total,
        page,
        per_page: REQUESTS_PER_PAGE,
    })
}

/// Approves a queued signup: the customer is provisioned and invited.
/// Answers the new customer's id.
///
/// Errors: also [`AppError::NotFound`]; [`AppError::Validation`] when
/// decided already; [`AppError::Conflict`] when the email was registered
/// meanwhile.
#[server(endpoint = "admin/signups/approve")]
pub async fn admin_approve_signup(request_id: i64) -> Result<i64, AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    let state = ssr::state()?;
    let customer = crate::server::admin::approvals::approve_request(
        &mut conn,
        &state.config,
        &admin,
        request_id,
    )
    .await
    .map_err(ssr::fail)?;
    Ok(customer.id)
}

/// Rejects a queued signup with a mandatory reason.
///
/// Errors: also [`AppError::NotFound`]; [`AppError::Validation`].
#[server(endpoint = "admin/signups/reject")]
pub async fn admin_reject_signup(
    request_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::approvals::reject_request(&mut conn, &admin, request_id, &reason)
        .await
        .map_err(ssr::fail)?;
    Ok(())
}

/// Every staff admin.
#[server(endpoint = "admin/admins")]
pub async fn admin_list_admins() -> Result<Vec<AdminUserRow>, AppError> {
    let (_, mut conn) = ssr::admin().await?;
    let admins = crate::server::admin::staff::list_admins(&mut conn)
        .await
        .map_err(ssr::fail)?;
    Ok(admins
        .into_iter()
        .map(|a| AdminUserRow {
            id: a.id,
            email: a.email,
            active: a.active,
            deactivated: a.deactivated,
            two_factor: a.two_factor,
            created_at: ssr::iso(a.created_at),
        })
        .collect())
}

/// Invites a new staff admin by email (they set a password from the
/// invite). The address must not belong to a customer account.
///
/// Errors: also [`AppError::Validation`]; [`AppError::Conflict`] for an
/// address in use.
#[server(endpoint = "admin/admins/invite")]
pub async fn admin_invite_admin(#[server(default)] email: String) -> Result<(), AppError> {
    use crate::server::admin::staff::{create_admin, AdminSetup};
    let (admin, mut conn) = ssr::admin().await?;
    let email = crate::types::values::Email::parse(&email).map_err(ssr::invalid)?;
    let links = ssr::state()?.config.email.links.clone();
    create_admin(&mut conn, &links, &admin, &email, AdminSetup::Invite)
        .await
        .map_err(ssr::fail)?;
    Ok(())
}

/// Deactivates staff admin `user_id` with a mandatory `reason`: they can
/// no longer sign in and every session of theirs ends at once (deleted in
/// the transaction that writes the `admin.deactivate` audit entry).
///
/// Errors: also [`AppError::Validation`] for a missing reason, oneself, the
/// last active admin, or one deactivated already; [`AppError::NotFound`]
/// for a user who is no staff admin.
#[server(endpoint = "admin/admins/deactivate")]
pub async fn admin_deactivate_admin(
    user_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::staff::set_admin_active(&mut conn, &admin, user_id, false, &reason)
        .await
        .map_err(ssr::fail)
}

/// Reactivates staff admin `user_id` with a mandatory `reason` (audited
/// `admin.reactivate`); they sign in again with their password and TOTP.
///
/// Errors: also [`AppError::Validation`] for a missing reason or an admin
/// who is active; [`AppError::NotFound`] for a user who is no staff admin.
#[server(endpoint = "admin/admins/reactivate")]
pub async fn admin_reactivate_admin(
    user_id: i64,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::staff::set_admin_active(&mut conn, &admin, user_id, true, &reason)
        .await
        .map_err(ssr::fail)
}

/// Customers shown in the overview's "Top AI usage today".
pub const AI_TOP_CUSTOMERS: i64 = 10;

/// The [`AI_TOP_CUSTOMERS`] customers with the most AI tokens measured
/// today (UTC), most first.
#[server(endpoint = "admin/ai-usage/top")]
pub async fn admin_ai_top_usage() -> Result<Vec<crate::types::ai::AiCustomerUsageRow>, AppError> {
    use crate::server::ai::metering::totals_by_customer;
    let (_, mut conn) = ssr::admin().await?;
    let rows = totals_by_customer(&mut conn, 1, AI_TOP_CUSTOMERS)
        .await
        .map_err(ssr::fail)?;
    Ok(rows
        .into_iter()
        .map(|r| crate::types::ai::AiCustomerUsageRow {
            customer_id: r.customer_id,
            email: r.email,
            calls: r.calls,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
        })
        .collect())
}

/// Sets the customer's AI budget with a mandatory `reason`:
/// `daily_tokens` (tokens per UTC day) and `max_concurrent` (calls in
/// flight), each blank for the configured default or a whole number from 0
/// (no limit); both blank clears the override. Audited as `ai_budget.set`
/// or `ai_budget.clear`; the gateway applies it from the next call.
///
/// Errors: also [`AppError::Validation`] for a missing reason, a negative,
/// fractional or too large value; [`AppError::NotFound`].
#[server(endpoint = "admin/ai-budget/set")]
pub async fn admin_set_ai_budget(
    customer_id: i64,
    #[server(default)] daily_tokens: String,
    #[server(default)] max_concurrent: String,
    #[server(default)] reason: String,
) -> Result<(), AppError> {
    use crate::server::ai::admin::set_customer_budget;
    use crate::types::ai::AiBudgetInput;
    let (admin, mut conn) = ssr::admin().await?;
    let input = AiBudgetInput::parse(&daily_tokens, &max_concurrent).map_err(ssr::invalid)?;
    set_customer_budget(&mut conn, &admin, customer_id, input, &reason)
        .await
        .map_err(ssr::fail)?;
    Ok(())
}

/// Server-side helpers of the functions above.
#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use crate::server::admin::audit::AuditRecord;
    use crate::server::admin::customers::{EmailRow, EventRow};
    use crate::server::admin::ops::EventWithJob;
    use crate::server::admin::{require_admin, Admin};
    use crate::server::billing::customers::Customer;
    use crate::server::billing::BillingError;
    use crate::server::db::DbConn;
    use crate::server::state::AppState;
    use crate::types::admin::{
        AdminAuditRow, AdminCustomerDetail, AdminCustomerRow, AdminEmailRow, AdminEventRow,
        AdminFixRow, AdminKeyRow, AdminLedgerRow, AdminPaymentMethodRow, AdminSignupRow,
    };
    use crate::types::values::{CustomerStatus, ParseError};
    use crate::types::AppError;
    use chrono::{DateTime, Utc};
    use diesel_async::AsyncPgConnection;
    use leptos::prelude::use_context;

    /// The application state from the request's context.
    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from the server function's context");
            AppError::Internal
        })
    }

    /// The signed-in staff admin and a connection; every function starts
    /// here.
    pub async fn admin() -> Result<(Admin, DbConn), AppError> {
        let admin = require_admin().await.map_err(fail_app)?;
        let conn = state()?.conn().await.map_err(fail)?;
        Ok((admin, conn))
    }

    /// A domain error for the UI (internal causes logged), with its status.
    pub fn fail(error: BillingError) -> AppError {
        fail_app(crate::server::signup::to_app_error(error))
    }

    /// A parse error as a validation error, with its status.
    pub fn invalid(error: ParseError) -> AppError {
        fail_app(AppError::Validation(error.0))
    }

    /// Sets the HTTP status for `error` on fetch calls to `/api/admin/…`
    /// (page renders and plain form posts are left alone; see
    /// [`crate::app::server_errors::set_error_status`]) and returns it.
    pub fn fail_app(error: AppError) -> AppError {
        crate::app::server_errors::set_error_status(&error);
        error
    }

    /// A checkbox or boolean field: `true`, `on`, `1`, `yes`.
    pub fn checked(raw: Option<&str>) -> bool {
        matches!(
            raw.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
            Some("true" | "on" | "1" | "yes")
        )
    }

    /// ISO-8601 UTC.
    pub fn iso(at: DateTime<Utc>) -> String {
        crate::app::server_errors::iso_utc(at)
    }

    /// Suspends or reactivates.
    pub async fn set_status(
        customer_id: i64,
        status: CustomerStatus,
        reason: &str,
    ) -> Result<(), AppError> {
        let (admin, mut conn) = admin().await?;
        crate::server::admin::customers::set_customer_status(
            &mut conn,
            &admin,
            customer_id,
            status,
            reason,
        )
        .await
        .map_err(fail)?;
        Ok(())
    }

    /// A customer row.
    pub fn customer_row(c: &Customer) -> AdminCustomerRow {
        AdminCustomerRow {
            id: c.id,
            email: c.email.clone(),
            name: c.name.clone(),
            plan: c.plan.as_str().to_owned(),
            status: c.status.clone(),
            source: c.source.clone(),
            credit_balance: c.credit_balance,
            stripe_customer_id: c.stripe_customer_id.clone(),
            subscription_status: c.subscription_status.map(|s| s.as_str().to_owned()),
            has_payment_method: c.has_payment_method,
            can_use_service: c.can_use_service(),
            disputed_at: c.disputed_at.map(iso),
            created_at: iso(c.created_at),
        }
    }

    /// An event row.
    pub fn event_row(e: EventWithJob) -> AdminEventRow {
        let mut row = plain_event_row(e.event);
        row.job_status = e.job_status;
        row
    }

    fn plain_event_row(e: EventRow) -> AdminEventRow {
        AdminEventRow {
            id: e.id,
            type_: e.type_,
            received_at: iso(e.received_at),
            processed_at: e.processed_at.map(iso),
            attempts: e.attempts,
            last_error: e.last_error,
            status: e.status,
            job_status: None,
        }
    }

    /// A GitHub delivery row.
    pub fn delivery_row(
        d: crate::server::admin::ops::DeliveryRow,
    ) -> crate::types::admin::AdminDeliveryRow {
        crate::types::admin::AdminDeliveryRow {
            type_: match d.action {
                Some(action) => format!("{}.{action}", d.event),
                None => d.event,
            },
            id: d.delivery_id,
            account_login: d.account_login,
            customer_id: d.customer_id,
            status: d.status,
            attempts: d.attempts,
            error: d.error,
            received_at: iso(d.received_at),
            processed_at: d.processed_at.map(iso),
        }
    }

    /// An email row.
    pub fn email_row(e: EmailRow) -> AdminEmailRow {
        AdminEmailRow {
            id: e.id,
            customer_id: e.customer_id,
            kind: e.kind,
            to_address: e.to_address,
            subject: e
                .subject
                .unwrap_or_else(|| "(rendered when sent)".to_owned()),
            status: e.status,
            attempts: e.attempts,
            last_error: e.last_error,
            created_at: iso(e.created_at),
            sent_at: e.sent_at.map(iso),
        }
    }

    /// An audit row.
    pub fn audit_row(a: AuditRecord) -> AdminAuditRow {
        AdminAuditRow {
            id: a.id,
            actor_email: a.actor_email,
            action: a.action,
            target_type: a.target_type,
            target_id: a.target_id,
            customer_id: a.customer_id,
            reason: a.reason,
            before: a.before.map(|v| v.to_string()),
            after: a.after.map(|v| v.to_string()),
            created_at: iso(a.created_at),
        }
    }

    /// A signup request row.
    pub fn signup_row(r: crate::server::admin::approvals::SignupRequest) -> AdminSignupRow {
        AdminSignupRow {
            id: r.id,
            email: r.email,
            name: r.name,
            source: r.source,
            channel: r.channel,
            status: r.status,
            customer_id: r.customer_id,
            reason: r.reason,
            created_at: iso(r.created_at),
        }
    }

    /// `visa •••• 4242, expires 12/2030` (brand and last 4 only), when
    /// Stripe told us the card's details.
    pub fn card_label(p: &crate::server::admin::customers::PaymentMethodRow) -> Option<String> {
        let last4 = p.last4.as_deref()?;
        let brand = p.brand.as_deref().unwrap_or("card");
        Some(match (p.exp_month, p.exp_year) {
            (Some(m), Some(y)) => format!("{brand} •••• {last4}, expires {m:02}/{y}"),
            _ => format!("{brand} •••• {last4}"),
        })
    }

    /// A random form token (the credit form's idempotency key).
    pub fn form_token() -> Result<String, AppError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| {
            tracing::error!(error = %e, "OS RNG failed");
            AppError::Internal
        })?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The customer page's data.
    pub async fn customer_detail(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
    ) -> Result<AdminCustomerDetail, AppError> {
        use crate::server::admin::audit::list_audit;
        let d = crate::server::admin::customers::customer_detail(conn, customer_id)
            .await
            .map_err(fail)?;
        let (audit, _) = list_audit(conn, Some(customer_id), None, 1, 100)
            .await
            .map_err(fail)?;
        let unpaid_fixes = crate::server::admin::customers::unpaid_fixes(conn, customer_id)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|u| crate::types::admin::AdminUnpaidFixRow {
                id: u.fix.id,
                repository: u.fix.repository,
                fix_key: u.fix.fix_key,
                pr_url: u.fix.pr_url,
                created_at: iso(u.fix.created_at),
                charge: u.live_charge.map(|c| {
                    (
                        c.id,
                        c.status.as_str().to_owned(),
                        crate::server::billing::pricing::format_money(c.amount_cents, &c.currency),
                    )
                }),
                declined: i64::try_from(u.declined.len()).unwrap_or(i64::MAX),
                last_failure: u.declined.first().and_then(|c| c.failure_message.clone()),
            })
            .collect();
        Ok(AdminCustomerDetail {
            customer: customer_row(&d.customer),
            current_period_end: d.customer.current_period_end.map(iso),
            users: d.users,
            ledger: d
                .ledger
                .into_iter()
                .map(|e| AdminLedgerRow {
                    id: e.id,
                    kind: e.kind,
                    amount: e.amount,
                    balance_after: e.balance_after,
                    reference: e.reference,
                    created_at: iso(e.created_at),
                })
                .collect(),
            fixes: d
                .fixes
                .into_iter()
                .map(|f| AdminFixRow {
                    id: f.id,
                    repository: f.repository,
                    fix_key: f.fix_key,
                    pr_url: f.pr_url,
                    billing_status: f.billing_status.as_str().to_owned(),
                    created_at: iso(f.created_at),
                    written_off_reason: f.written_off_reason,
                })
                .collect(),
            api_keys: d
                .api_keys
                .into_iter()
                .map(|k| AdminKeyRow {
                    activity: k.activity.into(),
                    id: k.key.id,
                    name: k.key.name,
                    prefix: k.key.prefix,
                    created_at: iso(k.key.created_at),
                    last_used_at: k.key.last_used_at.map(iso),
                    revoked_at: k.key.revoked_at.map(iso),
                    expires_at: k.key.expires_at.map(iso),
                })
                .collect(),
            payment_methods: d
                .payment_methods
                .into_iter()
                .map(|p| AdminPaymentMethodRow {
                    card: card_label(&p),
                    id: p.id,
                    attached: p.attached,
                    is_default: p.is_default,
                    last_event_at: iso(p.last_event_at),
                })
                .collect(),
            billing: crate::app::portal::billing_api::ssr::history_view(conn, customer_id).await?,
            emails: d.emails.into_iter().map(email_row).collect(),
            events: d.events.into_iter().map(plain_event_row).collect(),
            audit: audit.into_iter().map(audit_row).collect(),
            ai: crate::app::portal::api::ssr::ai_usage_view(
                conn,
                &state()?.config,
                customer_id,
                super::ADMIN_AI_DAYS,
            )
            .await?,
            form_token: form_token()?,
            unpaid_fixes,
            payment_failed_at: d.customer.payment_failed_at.map(iso),
        })
    }
}
