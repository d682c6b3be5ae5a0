//! The account server functions. Each is a public `POST /api/<endpoint>`
//! taking a form-encoded body (field names = argument names), so the pages'
//! `ActionForm`s work before hydration. Every one authenticates on its own
//! where it needs a user.
//!
//! Success ends in a redirect (`leptos_axum::redirect`) to the page that
//! shows the outcome. Errors answer `{"kind": ..., "message": ...}` with a
//! matching status (422 validation, 401, 403, 409, 429, 500), except for a
//! plain HTML form post (no JavaScript), which is redirected back to its
//! page with `?error=<message>` so the page can show it.

use crate::types::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The signed-in user, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// The user's email.
    pub email: String,
    /// The customer account's id; `None` for a staff admin.
    pub customer_id: Option<i64>,
    /// `owner` (later also `admin`, `member`).
    pub role: String,
}

/// Finishes a server function: on error, sets the status (or, for a plain
/// form post, redirects to `page` with the message in `error`).
#[cfg(feature = "ssr")]
pub(crate) fn finish<T>(result: Result<T, AppError>, page: &str) -> Result<T, AppError> {
    use axum::http::header::ACCEPT;
    let Err(error) = result else {
        return result;
    };
    let plain_form = use_context::<axum::http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
    });
    if plain_form {
        let separator = if page.contains('?') { '&' } else { '?' };
        leptos_axum::redirect(&format!(
            "{page}{separator}error={}",
            encode_query_value(&error.to_string())
        ));
    } else if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(crate::app::server_errors::error_status(&error));
    }
    Err(error)
}

/// What the page says beside the owner's first key (shown once after the
/// first proof of the email).
pub const FIRST_KEY_NOTE: &str = "Your email is confirmed and your account is ready. This is your API key: copy it now, it is shown only once (we never email keys). Store it as the RSOLV_API_KEY secret of the repository that runs the RSOLV Action. If you lose it, sign in and create a new key under API keys.";

/// Added to [`FIRST_KEY_NOTE`] when the proof revoked keys issued before it.
pub const REVOKED_KEYS_NOTE: &str = "The API keys issued for this account before you proved the address (by whoever signed up with it) stopped working; we emailed you why.";

/// Redirects to `done`, unless the proof issued the owner's first key:
/// then the key is the answer (no redirect, so it never enters a URL or a
/// log).
#[cfg(feature = "ssr")]
fn done_or_first_key(
    issued: Option<crate::server::billing::api_keys::FirstProofKey>,
    done: &str,
) -> Option<crate::types::views::FirstKeyView> {
    match issued {
        Some(issued) => Some(crate::types::views::FirstKeyView {
            api_key: issued.plain.expose().to_owned(),
            revoked_keys: u32::try_from(issued.revoked).unwrap_or(u32::MAX),
            api_url: crate::server::auth::app_state()
                .map(|state| state.config.email.links.base().to_owned())
                .unwrap_or_default(),
        }),
        None => {
            leptos_axum::redirect(done);
            None
        }
    }
}

/// `page?token=<token>`: the page a mailed link opened, to come back to.
#[cfg(feature = "ssr")]
fn with_token(page: &str, token: &str) -> String {
    format!("{page}?token={}", encode_query_value(token))
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for
/// one query value.
#[cfg(feature = "ssr")]
pub(crate) fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `POST /api/register` (email, name, password, password_confirm):
/// creates the account and queues the confirmation email; redirects to
/// `/register?sent=1` (`/register?pending=1` when queued for approval).
///
/// A registered email gets the same answer (the owner is mailed "you
/// already have an account" instead).
///
/// Errors: 422 naming the bad field, 429 over
/// the per-email limit or the client IP's signup limit (no password is
/// hashed then, nor for a password over the length limit).
#[server(endpoint = "register")]
pub async fn register(
    #[server(default)] email: String,
    #[server(default)] name: String,
    #[server(default)] password: String,
    #[server(default)] password_confirm: String,
) -> Result<(), AppError> {
    use crate::server::auth::app_state;
    use crate::server::auth::limits::{check_flow, Flow};
    let result = async {
        let state = app_state()?;
        // Per account here (per client IP: the signup limit at the edge),
        // before any parsing, argon2 or write; an email over the length
        // limit is refused by the parsing below without being counted.
        let account = email.trim().to_lowercase();
        if !account.is_empty() && account.len() <= crate::server::auth::accounts::MAX_EMAIL_BYTES {
            check_flow(&state, Flow::Register, None, Some(&account)).await?;
        }
        let registered =
            crate::server::signup::register(&state, &email, &name, &password, &password_confirm)
                .await?;
        leptos_axum::redirect(match registered {
            crate::server::signup::Registered::ConfirmationSent(_) => "/register?sent=1",
            crate::server::signup::Registered::PendingApproval => "/register?pending=1",
        });
        Ok(())
    }
    .await;
    finish(result, "/register")
}

/// `POST /api/confirm_email` (token, password: the one chosen at
/// registration, see `accounts::confirm_email`): confirms the email; redirects to
/// `/login?notice=confirmed`. On the first proof of the email (claiming
/// the account) answers 200 with the owner's first API key instead, shown
/// this once (no redirect; see [`FIRST_KEY_NOTE`]).
///
/// Errors: 422 for an unknown, used or expired link or a wrong password;
/// 429 while the account's sign-ins are throttled.
#[server(endpoint = "confirm_email")]
pub async fn confirm_email(
    #[server(default)] token: String,
    #[server(default)] password: String,
) -> Result<Option<crate::types::views::FirstKeyView>, AppError> {
    use crate::server::auth::{accounts, app_state, client_ip};
    let result = async {
        let fresh = accounts::confirm_email(&app_state()?, &token, &password, client_ip()).await?;
        Ok(done_or_first_key(fresh, "/login?notice=confirmed"))
    }
    .await;
    finish(result, &with_token("/confirm-email", &token))
}

/// `POST /api/login` (email, password, optional next): checks the password
/// with a new session id. A customer is signed in and redirected to `next`
/// when it is a local path (`types::urls::local_path`; anything else is
/// ignored), else `/dashboard`; a failed plain form post goes back to
/// `/login?next=…&error=…`, so the next try still leads there. A staff admin is not signed in yet: they
/// are redirected to `/admin/2fa` for the second factor (or its
/// enrolment), which leads on to `next` or `/admin`.
///
/// Errors: 422 "incorrect email or password" (unknown email, wrong password
/// alike) or "please confirm your email first"; 429 after too many
/// failures for the account or the client IP.
#[server(endpoint = "login")]
pub async fn login(
    #[server(default)] email: String,
    #[server(default)] password: String,
    #[server(default)] next: Option<String>,
) -> Result<(), AppError> {
    use crate::server::auth::{accounts, app_state, client_ip, current_session};
    use crate::types::urls::{local_path, sign_in_url};
    let next = next.as_deref().and_then(local_path);
    let result = async {
        let state = app_state()?;
        let session = current_session().await?;
        let ip = client_ip();
        let user = accounts::log_in(&state, &session, &email, &password, ip).await?;
        if user.is_staff_admin() {
            session.set_second_factor_next(next.clone()).await?;
            leptos_axum::redirect(crate::server::auth::lifetime::SECOND_FACTOR_PAGE);
        } else {
            leptos_axum::redirect(next.as_deref().unwrap_or("/dashboard"));
        }
        Ok(())
    }
    .await;
    // A failed plain form post goes back to the form, still leading to `next`.
    let page = next
        .as_deref()
        .map_or_else(|| "/login".to_owned(), sign_in_url);
    finish(result, &page)
}

/// `POST /api/logout`: signs this session out (deleted server-side);
/// redirects to `/login?notice=signed_out`. Signed-out callers get the same.
#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    use crate::server::auth::current_session;
    let result = async {
        current_session().await?.log_out().await?;
        leptos_axum::redirect("/login?notice=signed_out");
        Ok(())
    }
    .await;
    finish(result, "/account")
}

/// `POST /api/logout_all`: deletes every session of the signed-in user;
/// redirects to `/login?notice=signed_out_everywhere`.
///
/// Errors: 401 when not signed in.
#[server(endpoint = "logout_all")]
pub async fn logout_all() -> Result<(), AppError> {
    use crate::server::auth::{accounts, app_state, require_user_row};
    let result = async {
        let (session, user) = require_user_row().await?;
        accounts::log_out_everywhere(&app_state()?, &session, user.id).await?;
        leptos_axum::redirect("/login?notice=signed_out_everywhere");
        Ok(())
    }
    .await;
    finish(result, "/account")
}

/// `POST /api/change_password` (current_password, new_password,
/// new_password_confirm): changes the password and signs out every other
/// session; redirects to `/account?notice=password_changed`.
///
/// Errors: 401 when not signed in; 422 for a wrong current password or a
/// new one breaking the rules.
#[server(endpoint = "change_password")]
pub async fn change_password(
    #[server(default)] current_password: String,
    #[server(default)] new_password: String,
    #[server(default)] new_password_confirm: String,
) -> Result<(), AppError> {
    use crate::server::auth::{accounts, app_state, client_ip, require_user_row};
    let result = async {
        let (session, user) = require_user_row().await?;
        accounts::change_password(
            &app_state()?,
            &session,
            &user,
            &current_password,
            (&new_password, &new_password_confirm),
            client_ip(),
        )
        .await?;
        leptos_axum::redirect("/account?notice=password_changed");
        Ok(())
    }
    .await;
    finish(result, "/account")
}

/// `POST /api/forgot_password` (email): queues a reset email if the account
/// exists; always redirects to `/forgot-password?sent=1` (same answer, same
/// time, whether or not it exists).
///
/// Errors: 422 for a malformed email; 429 over the per-email or per-IP
/// limit.
#[server(endpoint = "forgot_password")]
pub async fn forgot_password(#[server(default)] email: String) -> Result<(), AppError> {
    use crate::server::auth::{accounts, app_state, client_ip};
    let result = async {
        accounts::forgot_password(&app_state()?, &email, client_ip()).await?;
        leptos_axum::redirect("/forgot-password?sent=1");
        Ok(())
    }
    .await;
    finish(result, "/forgot-password")
}

/// `POST /api/reset_password` (token, password, password_confirm): sets a
/// new password from a reset link (single use, 1 hour), signs out every
/// session; redirects to `/login?notice=password_reset` (or answers the
/// owner's first API key once, as [`confirm_email`], on a first proof of the email).
///
/// Errors: 422 for password rules or an unknown, used or expired link.
#[server(endpoint = "reset_password")]
pub async fn reset_password(
    #[server(default)] token: String,
    #[server(default)] password: String,
    #[server(default)] password_confirm: String,
) -> Result<Option<crate::types::views::FirstKeyView>, AppError> {
    use crate::server::auth::accounts::TokenPurpose;
    set_password_by_link(
        (&token, TokenPurpose::PasswordReset),
        (&password, &password_confirm),
        "/login?notice=password_reset",
        "/reset-password",
    )
    .await
}

/// `POST /api/accept_invite` (token, password, password_confirm): sets the
/// first password of an invited owner (single use, 7 days) and confirms the
/// email; redirects to `/login?notice=password_set` (or answers the owner's
/// first API key once, as [`confirm_email`]).
///
/// Errors: 422 for password rules or an unknown, used or expired link.
#[server(endpoint = "accept_invite")]
pub async fn accept_invite(
    #[server(default)] token: String,
    #[server(default)] password: String,
    #[server(default)] password_confirm: String,
) -> Result<Option<crate::types::views::FirstKeyView>, AppError> {
    use crate::server::auth::accounts::TokenPurpose;
    set_password_by_link(
        (&token, TokenPurpose::Invite),
        (&password, &password_confirm),
        "/login?notice=password_set",
        "/accept-invite",
    )
    .await
}

/// Sets a password from an emailed link (`token` of `purpose`), then
/// redirects to `done`; errors go back to the link's page `page?token=…`.
#[cfg(feature = "ssr")]
async fn set_password_by_link(
    (token, purpose): (&str, crate::server::auth::accounts::TokenPurpose),
    (password, password_confirm): (&str, &str),
    done: &str,
    page: &str,
) -> Result<Option<crate::types::views::FirstKeyView>, AppError> {
    use crate::server::auth::{accounts, app_state, client_ip};
    let result = async {
        let fresh = accounts::set_password_with_token(
            &app_state()?,
            token,
            purpose,
            (password, password_confirm),
            client_ip(),
        )
        .await?;
        Ok(done_or_first_key(fresh, done))
    }
    .await;
    finish(result, &with_token(page, token))
}

/// `POST /api/signup_mode`: whether signups are open, wait for approval
/// or are closed now (public: the signup pages say it before their form
/// is filled; the signup paths still decide on their own).
///
/// Errors: 500 on a wiring failure only.
#[server(endpoint = "signup_mode")]
pub async fn signup_mode() -> Result<crate::types::views::SignupMode, AppError> {
    use crate::server::auth::app_state;
    let result = app_state().map(|state| crate::server::signup::signup_mode(state.flags()));
    finish(result, "/")
}

/// `POST /api/current_user`: the signed-in user, or `None`.
///
/// Errors: 500 on server failure only.
#[server(endpoint = "current_user")]
pub async fn current_user() -> Result<Option<UserView>, AppError> {
    use crate::server::auth::accounts::session_user;
    use crate::server::auth::{app_state, current_session};
    let result = async {
        let user = session_user(&app_state()?, &current_session().await?).await?;
        Ok(user.map(|u| UserView {
            email: u.email,
            customer_id: u.customer_id,
            role: u.role,
        }))
    }
    .await;
    finish(result, "/")
}
