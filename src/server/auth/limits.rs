//! Rate limits of the account flows that cost a stranger nothing and us an
//! argon2 hash or an email (issue 12, scope 3): registration, forgotten
//! password, reset / invite links and password change, each counted per
//! client IP and per account with the one PostgreSQL-backed limiter,
//! [`crate::server::rate_limit::check`]. Registration is in addition
//! counted against the client IP's signup bucket by the HTTP edge (the
//! limit every signup path shares, `RATE_LIMIT_SIGNUPS_PER_MINUTE`).
//!
//! Every check runs before any argon2 and before the flow writes anything;
//! a refusal is [`AppError::RateLimited`] (429) saying when to retry.

use crate::server::client_ip;
use crate::server::rate_limit::{check, Decision};
use crate::server::state::AppState;
use crate::types::AppError;
use std::net::IpAddr;
use std::time::Duration;

/// An account flow with its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `/api/register`: per account (the email); per client IP the HTTP
    /// edge counts it against the signup bucket instead.
    Register,
    /// `/api/forgot_password`: per IP and per account (the email).
    ForgotPassword,
    /// `/api/reset_password` and `/api/accept_invite`: per IP, and per
    /// account (the user the link names).
    SetPasswordByLink,
    /// `/api/change_password`: per IP and per account (the signed-in user).
    ChangePassword,
}

/// One limit: `attempts` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Attempts allowed per window.
    pub attempts: u32,
    /// The window.
    pub window: Duration,
}

const fn limit(attempts: u32, minutes: u64) -> Limit {
    Limit {
        attempts,
        window: Duration::from_secs(minutes * 60),
    }
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::ForgotPassword => "forgot_password",
            Self::SetPasswordByLink => "password_link",
            Self::ChangePassword => "change_password",
        }
    }

    /// `(per IP, per account)` limits. Per account they stop mail bombing
    /// one address and guessing one user's current password; per IP they
    /// bound what one client makes us hash or send.
    pub fn limits(self) -> (Limit, Limit) {
        match self {
            Self::Register => (limit(30, 60), limit(5, 60)),
            Self::ForgotPassword => (limit(20, 60), limit(5, 60)),
            Self::SetPasswordByLink => (limit(20, 15), limit(10, 15)),
            Self::ChangePassword => (limit(20, 15), limit(10, 15)),
        }
    }
}

/// Counts one attempt of `flow` against the client `ip` (when known; IPv6
/// by its /64, [`client_ip::limit_key`]) and
/// against `account` (a lower-cased email or `user:<id>`; when known) and
/// refuses it when either is over its limit ([`Flow::limits`]). Both are
/// counted, on a pooled connection of their own, before the caller does
/// any work.
///
/// Errors: [`AppError::RateLimited`] (`too many attempts; try again in N
/// seconds`); [`AppError::Internal`] when the count fails (logged).
pub async fn check_flow(
    state: &AppState,
    flow: Flow,
    ip: Option<IpAddr>,
    account: Option<&str>,
) -> Result<(), AppError> {
    let (per_ip, per_account) = flow.limits();
    let mut conn = state.pool.get().await.map_err(|error| {
        tracing::error!(%error, "account rate limit: no connection");
        AppError::Internal
    })?;
    let mut refused: Option<Decision> = None;
    let buckets = [
        ip.map(|ip| {
            (
                client_ip::ip_bucket(&format!("auth:{}:ip", flow.name()), ip),
                per_ip,
            )
        }),
        account.map(|a| (format!("auth:{}:account:{a}", flow.name()), per_account)),
    ];
    for (bucket, limit) in buckets.into_iter().flatten() {
        let decision = check(&mut conn, &bucket, limit.attempts, limit.window)
            .await
            .map_err(|error| {
                tracing::error!(%error, "account rate limit could not be checked");
                AppError::Internal
            })?;
        if !decision.allowed {
            refused = Some(match refused {
                Some(other) if other.reset_after_secs > decision.reset_after_secs => other,
                _ => decision,
            });
        }
    }
    match refused {
        None => Ok(()),
        Some(decision) => {
            tracing::info!(flow = flow.name(), "account flow refused by the rate limit");
            crate::server::metrics::rate_limit_refused("account");
            Err(AppError::RateLimited(format!(
                "too many attempts; try again in {} seconds",
                decision.reset_after_secs
            )))
        }
    }
}
