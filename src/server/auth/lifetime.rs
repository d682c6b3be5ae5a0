//! Two axum middlewares over every request, inside the session layer:
//!
//! - [`enforce_session_lifetime`]: a signed-in session ends (is deleted)
//!   once its idle timeout or its absolute lifetime since sign-in has
//!   passed (`SESSION_*` / `ADMIN_SESSION_*`, see
//!   [`crate::server::config::sessions`]); a signed-in session without a
//!   sign-in time (made before lifetimes were recorded) ends too. The
//!   last-seen time is written at most once a minute, so the idle timeout
//!   is exact to a minute.
//! - [`redirect_admin_pages`]: `GET /admin…` pages are served only to
//!   signed-in staff admins: signed out → `303 /login?next=<path>`, a
//!   customer → `303 /dashboard` (their own home; the console would only
//!   show 403s), a staff admin half-way through sign-in → `/admin/2fa`
//!   (the one admin page they may see). Server functions check on their
//!   own (`require_admin`); this keeps the console's frame from rendering
//!   for anyone else, with or without JavaScript.

use crate::server::auth::accounts::{find_user, session_user};
use crate::server::auth::session::TypedSession;
use crate::server::auth::two_factor::apply_admin_idle;
use crate::server::state::AppState;
use crate::types::AppError;
use axum::extract::{Request, State};
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

fn is_admin_page(request: &Request) -> bool {
    let path = request.uri().path();
    matches!(*request.method(), Method::GET | Method::HEAD)
        && (path == "/admin" || path.starts_with("/admin/"))
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Percent-encodes everything but unreserved characters and `/` (RFC 3986).
fn encode_path(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Redirects `GET /admin…` page requests of anyone but a signed-in staff
/// admin (see the module); everything else passes.
pub async fn redirect_admin_pages(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !is_admin_page(&request) {
        return next.run(request).await;
    }
    let Some(session) = session_of(&request) else {
        return next.run(request).await;
    };
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/admin".into());
    let on_second_factor_page = request.uri().path() == SECOND_FACTOR_PAGE;
    match admin_page_decision(&state, &session, &target, on_second_factor_page).await {
        Ok(None) => next.run(request).await,
        Ok(Some(location)) => see_other(&location),
        Err(error) => {
            tracing::error!(?error, "could not check an admin page's visitor");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `None` to serve the page, or where to send the visitor.
async fn admin_page_decision(
    state: &AppState,
    session: &TypedSession,
    target: &str,
    on_second_factor_page: bool,
) -> Result<Option<String>, AppError> {
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
            return Ok((!on_second_factor_page).then(|| SECOND_FACTOR_PAGE.to_owned()));
        }
        session.log_out().await?;
    }
    match session_user(state, session).await? {
        None => Ok(Some(format!("/login?next={}", encode_path(target)))),
        Some(user) if !user.is_staff_admin() => Ok(Some("/dashboard".to_owned())),
        Some(_) if on_second_factor_page => Ok(Some("/admin".to_owned())),
        Some(_) => Ok(None),
    }
}
