//! Two axum middlewares over every request, inside the session layer:
//!
//! - [`enforce_session_lifetime`]: a signed-in session ends (is deleted)
//!   once its idle timeout or its absolute lifetime since sign-in has
//!   passed (`SESSION_*` / `ADMIN_SESSION_*`, see
//!   [`crate::server::config::sessions`]); a signed-in session without a
//!   sign-in time (made before lifetimes were recorded) ends too. The
//!   last-seen time is written at most once a minute, so the idle timeout
//!   is exact to a minute.
//! - [`redirect_guarded_pages`]: `GET` (and `HEAD`) of a page that is not
//!   for this visitor is answered `303 See Other` with the page that is
//!   ([`GuardedPage`] lists them):
//!   - `/admin…` is served only to signed-in staff admins: signed out →
//!     `/login?next=<path with query>`, a customer → `/dashboard` (their
//!     own home; the console would only show 403s);
//!   - the customer portal and `/account` ([`SIGNED_IN_PAGES`]) are served
//!     to anyone signed in: signed out → `/login?next=<path with query>`
//!     (a staff admin still gets the portal's own 403 answer there);
//!   - on either, a staff admin half-way through sign-in →
//!     `/admin/2fa` (the one page they may see);
//!   - `/login` is served only to the signed out: a signed-in visitor goes
//!     to its `next` when that is a local path, else to their home
//!     (`/dashboard`, or `/admin` for a staff admin).
//!
//!   Server functions check on their own (`require_user`,
//!   `require_admin`); this keeps a page's frame from rendering for anyone
//!   it is not for, with or without JavaScript, and brings them back to it
//!   after sign-in (`next`, checked by `types::urls::local_path`).

use crate::server::auth::accounts::{find_user, session_user};
use crate::server::auth::session::TypedSession;
use crate::server::auth::two_factor::apply_admin_idle;
use crate::server::state::AppState;
use crate::types::urls::{local_path, sign_in_url};
use crate::types::AppError;
use axum::extract::{Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How stale the recorded last-seen time may get before a request
/// rewrites it, in seconds.
pub const TOUCH_EVERY_SECONDS: i64 = 60;

/// The page where staff admins give their second factor (or enrol).
pub const SECOND_FACTOR_PAGE: &str = "/admin/2fa";

fn session_of(request: &Request) -> Option<TypedSession> {
    request
        .extensions()
        .get::<tower_sessions::Session>()
        .cloned()
        .map(TypedSession)
}

/// Ends sessions past their idle timeout or absolute lifetime (see the
/// module). A store failure is logged and answered 500.
pub async fn enforce_session_lifetime(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(session) = session_of(&request) {
        if let Err(error) = apply_lifetime(&state, &session).await {
            tracing::error!(?error, "could not check the session's lifetime");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    next.run(request).await
}

async fn apply_lifetime(state: &AppState, session: &TypedSession) -> Result<(), AppError> {
    // Drops an expired pending second-factor step.
    session.pending_second_factor().await?;
    if session.user_id().await?.is_none() {
        return Ok(());
    }
    let Some(mut record) = session.sign_in_record().await? else {
        tracing::info!("signed out a session without a sign-in time");
        session.log_out().await?;
        return Ok(());
    };
    let now = chrono::Utc::now().timestamp();
    let (idle, absolute) = state.config.sessions.limits(record.staff_admin);
    if now - record.at >= absolute || now - record.seen >= idle {
        tracing::info!(
            staff_admin = record.staff_admin,
            expired = if now - record.at >= absolute {
                "absolute"
            } else {
                "idle"
            },
            "session expired"
        );
        session.log_out().await?;
        return Ok(());
    }
    if now - record.seen >= TOUCH_EVERY_SECONDS.min(idle) {
        record.seen = now;
        session.set_sign_in_record(record).await?;
        if record.staff_admin {
            apply_admin_idle(session, &state.config.sessions);
        }
    }
    Ok(())
}

/// The customer portal's pages and the account page: served to anyone
/// signed in, the signed out are sent to sign in (see the module). Exact
/// paths, as routed in `app::App`.
pub const SIGNED_IN_PAGES: [&str; 8] = [
    "/dashboard",
    "/credits",
    "/keys",
    "/billing",
    "/billing/history",
    "/billing/authenticate",
    "/ai-usage",
    "/account",
];

/// The sign-in page, served to the signed out only.
pub const SIGN_IN_PAGE: &str = "/login";

/// A page [`redirect_guarded_pages`] serves only to some visitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardedPage {
    /// `/admin` and `/admin/…`: signed-in staff admins.
    Admin,
    /// One of [`SIGNED_IN_PAGES`]: anyone signed in.
    SignedIn,
    /// [`SIGN_IN_PAGE`]: the signed out.
    SignedOut,
}

impl GuardedPage {
    /// The guard of a `method` request for `path` (no query), `None` for
    /// everything else (other pages, server functions, forms, assets).
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return None;
        }
        if path == "/admin" || path.starts_with("/admin/") {
            Some(Self::Admin)
        } else if SIGNED_IN_PAGES.contains(&path) {
            Some(Self::SignedIn)
        } else if path == SIGN_IN_PAGE {
            Some(Self::SignedOut)
        } else {
            None
        }
    }
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The query's `next` parameter (percent-decoded), if any.
fn next_param(request: &Request) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct NextParam {
        next: Option<String>,
    }
    Query::<NextParam>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(q)| q.next)
}

/// Redirects `GET` page requests of visitors a page is not for (see the
/// module); everything else passes. A store or database failure is logged
/// and answered 500.
pub async fn redirect_guarded_pages(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(page) = GuardedPage::of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let Some(session) = session_of(&request) else {
        return next.run(request).await;
    };
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let visit = Visit {
        page,
        target: &target,
        on_second_factor_page: request.uri().path() == SECOND_FACTOR_PAGE,
        next: next_param(&request),
    };
    match page_decision(&state, &session, visit).await {
        Ok(None) => next.run(request).await,
        Ok(Some(location)) => see_other(&location),
        Err(error) => {
            tracing::error!(?error, ?page, "could not check a page's visitor");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A guarded page request, as [`page_decision`] needs it.
struct Visit<'a> {
    page: GuardedPage,
    /// The path and query asked for.
    target: &'a str,
    on_second_factor_page: bool,
    /// The query's `next` parameter, not yet checked.
    next: Option<String>,
}

/// `None` to serve the page, or where to send the visitor.
async fn page_decision(
    state: &AppState,
    session: &TypedSession,
    visit: Visit<'_>,
) -> Result<Option<String>, AppError> {
    if visit.page != GuardedPage::SignedOut {
        if let Some(pending) = session.pending_second_factor().await? {
            // The password was right; only the second factor's page is theirs.
            let mut conn = state.conn().await.map_err(|error| {
                tracing::error!(%error, "no database connection");
                AppError::Internal
            })?;
            let live = find_user(&mut conn, pending.user_id)
                .await?
                .is_some_and(|u| u.is_staff_admin() && u.deactivated_at.is_none());
            if live {
                return Ok((!visit.on_second_factor_page).then(|| SECOND_FACTOR_PAGE.to_owned()));
            }
            session.log_out().await?;
        }
    }
    let user = session_user(state, session).await?;
    Ok(match (visit.page, user) {
        (GuardedPage::SignedOut, None) => None,
        (GuardedPage::SignedOut, Some(user)) => Some(
            visit
                .next
                .as_deref()
                .and_then(local_path)
                .unwrap_or_else(|| home_of(user.is_staff_admin()).to_owned()),
        ),
        (GuardedPage::Admin | GuardedPage::SignedIn, None) => Some(sign_in_url(visit.target)),
        (GuardedPage::SignedIn, Some(_)) => None,
        (GuardedPage::Admin, Some(user)) if !user.is_staff_admin() => Some("/dashboard".to_owned()),
        (GuardedPage::Admin, Some(_)) if visit.on_second_factor_page => Some("/admin".to_owned()),
        (GuardedPage::Admin, Some(_)) => None,
    })
}

/// Where a signed-in user starts: `/admin` for a staff admin, else
/// `/dashboard`.
pub fn home_of(staff_admin: bool) -> &'static str {
    if staff_admin {
        "/admin"
    } else {
        "/dashboard"
    }
}
