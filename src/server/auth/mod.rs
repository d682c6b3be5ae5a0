//! Authentication of browser sessions: users and their passwords
//! ([`password`], argon2id), sessions stored in PostgreSQL ([`store`],
//! tower-sessions), the typed session ([`session`]), sign-in throttling
//! ([`throttle`]), CSRF protection ([`csrf`]), and the account flows
//! ([`accounts`]: register, confirm, sign in/out, change/reset password,
//! invites) with their emails ([`emails`]), and the rate limits of those
//! flows ([`limits`]); staff admins' second factor ([`two_factor`]); the
//! session lifetimes and the `/admin` page guard ([`lifetime`]).

pub mod accounts;
pub mod csrf;
pub mod emails;
pub mod lifetime;
pub mod limits;
pub mod password;
pub mod session;
pub mod store;
pub mod throttle;
pub mod two_factor;

use crate::server::auth::accounts::{session_user, User};
use crate::server::auth::session::TypedSession;
use crate::server::state::AppState;
use crate::types::AppError;

/// The signed-in user, as server functions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// The user's id.
    pub user_id: i64,
    /// The customer account the user belongs to (all data access is scoped
    /// to it).
    pub customer_id: i64,
    /// The user's email.
    pub email: String,
}

impl CurrentUser {
    /// The customer user `user`, or `None` for a staff admin (who has no
    /// customer account).
    pub fn of_customer(user: &User) -> Option<Self> {
        Some(Self {
            user_id: user.id,
            customer_id: user.customer_id?,
            email: user.email.clone(),
        })
    }
}

/// For server functions and SSR: the session of the current request.
///
/// Errors: [`AppError::Internal`] when the session layer is missing (a
/// wiring bug, logged).
pub async fn current_session() -> Result<TypedSession, AppError> {
    leptos_axum::extract::<tower_sessions::Session>()
        .await
        .map(TypedSession)
        .map_err(|error| {
            tracing::error!(%error, "no session on the request: is the session layer wired?");
            AppError::Internal
        })
}

/// For server functions: the application state.
///
/// Errors: [`AppError::Internal`] when it was not provided (a wiring bug).
pub fn app_state() -> Result<AppState, AppError> {
    leptos::prelude::use_context::<AppState>().ok_or(AppError::Internal)
}

/// For server functions: the client's IP, found by the one rule of
/// [`crate::server::client_ip`] (the TCP peer; under
/// `TRUST_PROXY_HEADERS`, the rightmost `X-Forwarded-For` address that is
/// not one of `TRUSTED_PROXIES`), else `None`.
pub fn client_ip() -> Option<std::net::IpAddr> {
    let parts = leptos::prelude::use_context::<axum::http::request::Parts>()?;
    let state = app_state().ok()?;
    crate::server::client_ip::from_parts(&parts, &state.config)
}

/// The signed-in user and the full user row, for the account flows.
///
/// Errors: [`AppError::Unauthorized`] when nobody is signed in (no session,
/// a session deleted by a sign-out elsewhere, or a deleted user);
/// [`AppError::Internal`].
pub async fn require_user_row() -> Result<(TypedSession, User), AppError> {
    let state = app_state()?;
    let session = current_session().await?;
    match session_user(&state, &session).await? {
        Some(user) => Ok((session, user)),
        None => Err(AppError::Unauthorized),
    }
}

/// For server functions: the signed-in user of the current request. Reads
/// the session (whose row is gone once signed out, here or from "log out
/// of all devices"), then loads the user, who must still exist.
///
/// Errors: [`AppError::Unauthorized`] when nobody is signed in;
/// [`AppError::Forbidden`] for a staff admin (no customer account);
/// [`AppError::Internal`] on a database or wiring failure.
pub async fn require_user() -> Result<CurrentUser, AppError> {
    let (_, user) = require_user_row().await?;
    CurrentUser::of_customer(&user).ok_or(AppError::Forbidden)
}
