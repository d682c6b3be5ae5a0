//! The portal's server functions. Each is a public HTTP endpoint (POST,
//! form-encoded, under `/api/portal/…`): it authenticates on its own with
//! `require_user()` and scopes every query to the signed-in user's
//! customer; ids from the client are only used together with that
//! customer id, so another customer's id reads as not found.
//!
//! Errors (all functions): [`AppError::Unauthorized`] without a session
//! (HTTP 401 for fetch calls), [`AppError::Internal`] when the database
//! fails (cause logged); others as listed.

use crate::types::portal::{ApiKeyView, DashboardView, LedgerPageView, NewKeyView};
use crate::types::AppError;
use leptos::prelude::*;

/// Ledger rows per page on `/credits`.
pub const LEDGER_PER_PAGE: i64 = 20;

/// Days shown in the dashboard's usage chart.
pub const USAGE_DAYS: i64 = 30;

/// The dashboard: balance, plan, whether the service is usable, and the
/// last [`USAGE_DAYS`] days of usage.
#[server(endpoint = "portal/dashboard")]
pub async fn get_dashboard() -> Result<DashboardView, AppError> {
    let (user, mut conn) = ssr::session().await?;
    ssr::dashboard_view(&mut conn, &ssr::state()?.config, user.customer_id).await
}

/// One page of the credit ledger, newest first. `kind` is a ledger kind
/// (`fix_consumed`, `signup_bonus`, …) or empty for all; `page` counts
/// from 1 (default 1), [`LEDGER_PER_PAGE`] rows each.
///
/// Errors: also [`AppError::Validation`] for an unknown kind.
#[server(endpoint = "portal/ledger")]
pub async fn get_ledger(
    kind: Option<String>,
    page: Option<i64>,
) -> Result<LedgerPageView, AppError> {
    let (user, mut conn) = ssr::session().await?;
    ssr::ledger_view(
        &mut conn,
        user.customer_id,
        kind.as_deref(),
        page.unwrap_or(1),
    )
    .await
}

/// The signed-in customer's API keys, newest first (never their secrets),
/// each with its counts ([`ApiKeyView::activity`]: fixes first reported
/// with it in the last 30 days and all time, AI calls in the last 30 days;
/// the customer's own only, revoked keys included).
/// While the customer is suspended, keys that are neither revoked nor
/// expired are listed as [`KeyStatusView::Suspended`](crate::types::portal::KeyStatusView::Suspended)
/// (the API answers 403 for them).
#[server(endpoint = "portal/keys")]
pub async fn list_keys() -> Result<Vec<ApiKeyView>, AppError> {
    let (user, mut conn) = ssr::session().await?;
    ssr::keys_view(&mut conn, user.customer_id).await
}

/// Creates an API key named `name` (1–100 characters) that expires after
/// `expires` days (`30`, `90` or `365`; absent, empty or `never` for a key
/// that never expires); the secret is in the answer and nowhere else, ever.
///
/// Errors: also [`AppError::Validation`] for a bad name or expiry (nothing
/// is written).
#[server(endpoint = "portal/keys/create")]
pub async fn create_key(name: String, expires: Option<String>) -> Result<NewKeyView, AppError> {
    let (user, mut conn) = ssr::session().await?;
    ssr::create_key_for(&mut conn, &user, &name, expires.as_deref().unwrap_or("")).await
}

/// Revokes one of the customer's keys at once (the API answers 401 for it
/// from now on); an email tells the customer.
///
/// Errors: also [`AppError::NotFound`] when `key_id` is not the customer's.
#[server(endpoint = "portal/keys/revoke")]
pub async fn revoke_key(key_id: i64) -> Result<ApiKeyView, AppError> {
    use crate::server::billing::api_keys;
    let (user, mut conn) = ssr::session().await?;
    let links = ssr::state()?.config.email.links.clone();
    let key = api_keys::revoke_api_key(&mut conn, &links, user.customer_id, key_id)
        .await
        .map_err(ssr::fail)?;
    tracing::info!(
        customer_id = user.customer_id,
        api_key_id = key.id,
        "API key revoked"
    );
    Ok(ssr::key_view(&key, chrono::Utc::now()))
}

/// Rotates one of the customer's keys: a replacement (shown once) and the
/// old key working until the end of the grace period
/// (`API_KEY_ROTATION_GRACE_HOURS`); an email tells the customer.
///
/// Errors: also [`AppError::NotFound`] when `key_id` is not the customer's,
/// [`AppError::Validation`] when the key is revoked or already rotated.
#[server(endpoint = "portal/keys/rotate")]
pub async fn rotate_key(key_id: i64) -> Result<NewKeyView, AppError> {
    let (user, mut conn) = ssr::session().await?;
    ssr::rotate_key_for(&mut conn, &user, key_id, &ssr::state()?.config).await
}

/// Days shown on `/ai-usage` (today and the days before).
pub const AI_USAGE_DAYS: i64 = 30;

/// The signed-in customer's AI gateway usage over the last
/// [`AI_USAGE_DAYS`] days (per day, and per day, API key, provider and
/// model) and its budget with today's use. Never another customer's rows.
#[server(endpoint = "portal/ai-usage")]
pub async fn get_ai_usage() -> Result<crate::types::ai::AiUsageView, AppError> {
    let (user, mut conn) = ssr::session().await?;
    let config = ssr::state()?.config;
    ssr::ai_usage_view(&mut conn, &config, user.customer_id, AI_USAGE_DAYS).await
}

/// Server-side helpers of the functions above.
#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use crate::app::server_errors::iso_utc;
    use crate::server::auth::{require_user, CurrentUser};
    use crate::server::billing::api_keys::ApiKey;
    use crate::server::billing::history::{HistoryRow, UsagePoint};
    use crate::server::billing::BillingError;
    use crate::server::db::DbConn;
    use crate::server::state::AppState;
    use crate::types::portal::{
        ApiKeyView, FixRefView, KeyStatusView, LedgerRowView, NewKeyView, UsagePointView,
    };
    use crate::types::values::LedgerKind;
    use crate::types::AppError;
    use chrono::{DateTime, Utc};
    use leptos::prelude::use_context;

    /// The application state from the request's context.
    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from the server function's context");
            AppError::Internal
        })
    }

    /// The signed-in user and a connection; every function starts here.
    pub async fn session() -> Result<(CurrentUser, DbConn), AppError> {
        let user = require_user().await.map_err(fail_app)?;
        let conn = state()?.conn().await.map_err(fail)?;
        Ok((user, conn))
    }

    /// Maps a domain error for the UI (internal causes logged) and sets the
    /// response status.
    pub fn fail(error: BillingError) -> AppError {
        fail_app(crate::server::signup::to_app_error(error))
    }

    /// Sets the HTTP status for `error` on fetch calls (plain form posts
    /// keep Leptos's redirect back to the page) and returns it.
    pub fn fail_app(error: AppError) -> AppError {
        crate::app::server_errors::set_error_status(&error);
        error
    }

    /// Creates a key named `name` for `user`'s customer, expiring as the
    /// form value `expires` says ([`ApiKeyExpiry::parse`]: empty or
    /// `never`, `30`, `90`, `365` days) (shared by the server function and
    /// the no-JavaScript form handler).
    ///
    /// Errors: [`AppError::Validation`] for a bad name or expiry (nothing
    /// written); [`AppError::Internal`].
    ///
    /// [`ApiKeyExpiry::parse`]: crate::types::portal::ApiKeyExpiry::parse
    pub async fn create_key_for(
        conn: &mut diesel_async::AsyncPgConnection,
        user: &CurrentUser,
        name: &str,
        expires: &str,
    ) -> Result<NewKeyView, AppError> {
        use crate::server::billing::api_keys;
        use crate::types::portal::{ApiKeyExpiry, ApiKeyName};
        let name = ApiKeyName::parse(name).map_err(|e| fail_app(AppError::Validation(e.0)))?;
        let expiry =
            ApiKeyExpiry::parse(expires).map_err(|e| fail_app(AppError::Validation(e.0)))?;
        let (key, plain) = api_keys::create_api_key_expiring(conn, user.customer_id, &name, expiry)
            .await
            .map_err(fail)?;
        tracing::info!(
            customer_id = user.customer_id,
            api_key_id = key.id,
            expires_in_days = expiry.days(),
            "API key created"
        );
        Ok(NewKeyView {
            key: key_view(&key, Utc::now()),
            secret: plain.expose().to_owned(),
            replaced: None,
        })
    }

    /// Rotates `user`'s key `key_id` with the configured grace period and
    /// email links (shared by the server function and the no-JavaScript
    /// form handler).
    ///
    /// Errors: [`AppError::NotFound`] when the key is not the customer's,
    /// [`AppError::Validation`] when it is revoked or already rotated;
    /// [`AppError::Internal`].
    pub async fn rotate_key_for(
        conn: &mut diesel_async::AsyncPgConnection,
        user: &CurrentUser,
        key_id: i64,
        config: &crate::server::config::Config,
    ) -> Result<NewKeyView, AppError> {
        use crate::server::billing::api_keys;
        let rotated = api_keys::rotate_api_key(
            conn,
            &config.email.links,
            user.customer_id,
            key_id,
            chrono::Duration::hours(config.api_key_rotation_grace_hours),
        )
        .await
        .map_err(fail)?;
        tracing::info!(
            customer_id = user.customer_id,
            old_api_key_id = rotated.old.id,
            new_api_key_id = rotated.new.id,
            "API key rotated"
        );
        let now = Utc::now();
        Ok(NewKeyView {
            key: key_view(&rotated.new, now),
            secret: rotated.plain.expose().to_owned(),
            replaced: Some((
                rotated.old.prefix.clone(),
                rotated.old.expires_at.map(iso_utc).unwrap_or_default(),
            )),
        })
    }

    /// Customer `customer_id`'s dashboard: balance, plan, whether the
    /// service is usable, the last [`USAGE_DAYS`](super::USAGE_DAYS) days
    /// of usage and the billing notices. Shared by the portal (the
    /// session's customer) and the admin console's read-only view.
    ///
    /// Errors: [`AppError::NotFound`] for an unknown customer;
    /// [`AppError::Internal`] (cause logged).
    pub async fn dashboard_view(
        conn: &mut diesel_async::AsyncPgConnection,
        config: &crate::server::config::Config,
        customer_id: i64,
    ) -> Result<crate::types::portal::DashboardView, AppError> {
        use crate::server::billing::{customers, fixes, history};
        use crate::types::values::CustomerStatus;
        let customer = customers::find_customer(conn, customer_id)
            .await
            .map_err(fail)?;
        let (fixes_total, unpaid_fixes) =
            fixes::count_fixes(conn, customer_id).await.map_err(fail)?;
        let usage = history::usage_series(conn, customer_id, super::USAGE_DAYS)
            .await
            .map_err(fail)?;
        let now = Utc::now();
        let keys = crate::server::billing::api_keys::list_api_keys(conn, customer_id)
            .await
            .map_err(fail)?;
        let active_keys = keys
            .iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > now))
            .count();
        let action_connected = keys.iter().any(|k| k.last_used_at.is_some());
        let notice = crate::app::portal::billing_api::ssr::notice_view(conn, customer_id).await?;
        Ok(crate::types::portal::DashboardView {
            can_use_service: customer.can_use_service(),
            suspended: customer.status() == CustomerStatus::Suspended,
            name: customer.name.clone(),
            credit_balance: customer.credit_balance,
            plan: customer.plan.as_str().to_owned(),
            has_payment_method: customer.has_payment_method,
            subscription_status: customer.subscription_status.map(|s| s.as_str().to_owned()),
            fixes_total,
            usage: usage.into_iter().map(usage_point).collect(),
            unpaid_fixes,
            active_keys: i64::try_from(active_keys).unwrap_or(i64::MAX),
            action_connected,
            api_url: config.email.links.base().to_owned(),
            support_email: config.email.support.clone(),
            notice,
        })
    }

    /// Customer `customer_id`'s API keys, newest first (never their
    /// secrets or hashes); while the customer is suspended, keys neither
    /// revoked nor expired are [`KeyStatusView::Suspended`]. Shared by the
    /// portal and the admin console's read-only view.
    ///
    /// Errors: [`AppError::NotFound`]; [`AppError::Internal`].
    pub async fn keys_view(
        conn: &mut diesel_async::AsyncPgConnection,
        customer_id: i64,
    ) -> Result<Vec<ApiKeyView>, AppError> {
        use crate::server::billing::{api_keys, customers};
        use crate::types::values::CustomerStatus;
        let suspended = customers::find_customer(conn, customer_id)
            .await
            .map_err(fail)?
            .status()
            == CustomerStatus::Suspended;
        let now = Utc::now();
        let keys = api_keys::list_api_keys_with_activity(conn, customer_id, now)
            .await
            .map_err(fail)?;
        Ok(keys
            .into_iter()
            .map(|k| ApiKeyView {
                activity: Some(k.activity.into()),
                ..key_view_for(&k.key, now, suspended)
            })
            .collect())
    }

    /// Page `page` (from 1) of customer `customer_id`'s ledger, newest
    /// first, [`LEDGER_PER_PAGE`](super::LEDGER_PER_PAGE) rows, of `kind`
    /// (empty, absent or `all` for every kind). Shared by the portal and
    /// the admin console's read-only view.
    ///
    /// Errors: [`AppError::Validation`] for an unknown kind;
    /// [`AppError::Internal`].
    pub async fn ledger_view(
        conn: &mut diesel_async::AsyncPgConnection,
        customer_id: i64,
        kind: Option<&str>,
        page: i64,
    ) -> Result<crate::types::portal::LedgerPageView, AppError> {
        use crate::server::billing::history;
        let filter = parse_kind(kind).map_err(fail_app)?;
        let found =
            history::list_entries_page(conn, customer_id, filter, page, super::LEDGER_PER_PAGE)
                .await
                .map_err(fail)?;
        Ok(crate::types::portal::LedgerPageView {
            rows: found.rows.into_iter().map(ledger_row).collect(),
            total: found.total,
            page: found.page,
            per_page: found.per_page,
            kind: filter.map(|k| k.as_str().to_owned()),
        })
    }

    /// `None` for an empty or absent kind, else the parsed kind.
    pub fn parse_kind(kind: Option<&str>) -> Result<Option<LedgerKind>, AppError> {
        match kind.map(str::trim).filter(|k| !k.is_empty() && *k != "all") {
            None => Ok(None),
            Some(k) => LedgerKind::parse(k)
                .map(Some)
                .map_err(|e| AppError::Validation(e.0)),
        }
    }

    /// A key as the portal shows it, its status as of `now`, for a customer
    /// that is not suspended.
    pub fn key_view(key: &ApiKey, now: DateTime<Utc>) -> ApiKeyView {
        key_view_for(key, now, false)
    }

    /// A key as the portal shows it, its status as of `now`; with
    /// `suspended`, a key that is neither revoked nor expired shows as
    /// [`KeyStatusView::Suspended`] (the API refuses it with 403).
    pub fn key_view_for(key: &ApiKey, now: DateTime<Utc>, suspended: bool) -> ApiKeyView {
        let status = match (key.revoked_at, key.expires_at) {
            (Some(at), _) => KeyStatusView::Revoked {
                revoked_at: iso_utc(at),
            },
            (None, Some(at)) if at <= now => KeyStatusView::Expired {
                expires_at: iso_utc(at),
            },
            (None, _) if suspended => KeyStatusView::Suspended,
            (None, Some(at)) => KeyStatusView::Expiring {
                expires_at: iso_utc(at),
            },
            (None, None) => KeyStatusView::Active,
        };
        ApiKeyView {
            id: key.id,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            created_at: iso_utc(key.created_at),
            last_used_at: key.last_used_at.map(iso_utc),
            status,
            activity: None,
        }
    }

    /// A ledger row for the page.
    pub fn ledger_row(row: HistoryRow) -> LedgerRowView {
        LedgerRowView {
            id: row.entry.id,
            kind: row.entry.kind,
            amount: row.entry.amount,
            balance_after: row.entry.balance_after,
            created_at: iso_utc(row.entry.created_at),
            fix: row.fix.map(|f| FixRefView {
                repository: f.repository,
                issue_number: f.issue_number,
                pr_number: f.pr_number,
                pr_url: f.pr_url,
            }),
        }
    }

    /// Customer `customer_id`'s AI usage over `days` days and its budget
    /// (the configured defaults overridden by its row), as the portal and
    /// the admin console show them.
    ///
    /// Errors: [`AppError::Internal`] (cause logged).
    pub async fn ai_usage_view(
        conn: &mut diesel_async::AsyncPgConnection,
        config: &crate::server::config::Config,
        customer_id: i64,
        days: i64,
    ) -> Result<crate::types::ai::AiUsageView, AppError> {
        use crate::server::ai::metering::{customer_usage, Budget};
        use crate::types::ai::{AiBudgetView, AiDayView, AiKeyUsageView, AiUsageView};
        let defaults = Budget {
            max_concurrent: config.ai.max_concurrent_per_customer,
            daily_tokens: config.ai.daily_token_budget,
        };
        let usage = customer_usage(conn, customer_id, days, defaults)
            .await
            .map_err(fail)?;
        let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
        Ok(AiUsageView {
            days,
            by_day: usage
                .by_day
                .into_iter()
                .map(|t| AiDayView {
                    day: day(t.day),
                    calls: t.calls,
                    measured_tokens: t.measured_tokens,
                    claimed_tokens: t.claimed_tokens,
                })
                .collect(),
            by_key: usage
                .by_key
                .into_iter()
                .map(|u| AiKeyUsageView {
                    day: day(u.day),
                    api_key_name: u.api_key_name,
                    api_key_prefix: u.api_key_prefix,
                    virtual_keys: u.virtual_keys,
                    provider: u.provider,
                    model: u.model,
                    calls: u.calls,
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                })
                .collect(),
            budget: AiBudgetView {
                daily_tokens: usage.budget.daily_tokens,
                daily_tokens_set: usage.stored.daily_tokens.is_some(),
                max_concurrent: usage.budget.max_concurrent,
                max_concurrent_set: usage.stored.max_concurrent.is_some(),
                used_today: usage.used_today,
            },
            gateway_url: config.email.links.page("/ai"),
        })
    }

    /// A chart point.
    pub fn usage_point(point: UsagePoint) -> UsagePointView {
        UsagePointView {
            day: point.day.format("%Y-%m-%d").to_string(),
            fixes: point.fixes,
            credits_left: point.credits_left,
        }
    }
}
