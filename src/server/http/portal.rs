//! HTTP pieces of the customer portal outside Leptos's page rendering: the
//! ledger's CSV download, the no-JavaScript create/rotate key forms (their
//! response must show the new secret, see `app::portal::keys`) and the
//! status codes of the portal's server functions.
//!
//! The CSV download is a plain axum route rather than a server function,
//! because a browser link must get a file (`text/csv`, `attachment`) or a
//! plain error, not a server function's JSON. It authenticates through the
//! very same `require_user()` the server functions use, by running it under
//! a Leptos owner with the request's parts in context, exactly as
//! `leptos_axum` does for server functions; so whatever the session layer
//! reads from the request works here too.

pub use crate::app::server_errors::{
    error_status, set_error_status, ACTION_API_PREFIX, SERVER_FN_PREFIX,
};

use crate::app::portal::keys::FormKeyOutcome;
use crate::server::auth::{require_user, CurrentUser};
use crate::server::billing::history::ledger_csv;
use crate::server::http::pages::{parse_form, render_page};
use crate::server::state::AppState;
use crate::types::values::LedgerKind;
use crate::types::AppError;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use leptos::prelude::provide_context;
use leptos::reactive::computed::ScopedFuture;
use leptos::reactive::owner::Owner;
use serde::Deserialize;

/// Runs `require_user()` for a plain axum handler: under a fresh Leptos
/// owner with the request's parts, the state and response options in
/// context (what server functions see).
pub async fn current_user(state: &AppState, parts: Parts) -> Result<CurrentUser, AppError> {
    let owner = Owner::new();
    let state = state.clone();
    owner
        .with(|| {
            ScopedFuture::new(async move {
                provide_context(parts);
                provide_context(state);
                provide_context(leptos_axum::ResponseOptions::default());
                require_user().await
            })
        })
        .await
}

/// Where a signed-out `GET /credits/export.csv` is sent (303).
const SIGN_IN_FOR_CREDITS: &str = "/login?next=/credits";

/// Where a signed-out no-JavaScript key form is sent (303): nothing is
/// created or rotated, and the keys page follows the sign-in.
const SIGN_IN_FOR_KEYS: &str = "/login?next=/keys";

/// The query of [`export_ledger_csv`].
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// A ledger kind, or empty/absent for all.
    #[serde(default)]
    kind: Option<String>,
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// `GET /credits/export.csv?kind=<kind>`: the signed-in customer's ledger
/// (optionally one kind) as a CSV attachment, `rsolv-credits.csv`, columns
/// as in [`crate::server::billing::history::CSV_HEADER`].
///
/// Errors (plain text): 400 for a malformed query or unknown kind, 500
/// when the database fails (cause logged). Without a session: 303 to
/// `/login?next=/credits`.
pub async fn export_ledger_csv(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let query = match axum::extract::Query::<ExportQuery>::try_from_uri(&parts.uri) {
        Ok(axum::extract::Query(query)) => query,
        Err(rejection) => return plain(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let filter = match query
        .kind
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty() && *k != "all")
    {
        None => None,
        Some(kind) => match LedgerKind::parse(kind) {
            Ok(kind) => Some(kind),
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e.0),
        },
    };
    let user = match current_user(&state, parts).await {
        Ok(user) => user,
        // A signed-out browser (an old bookmark, an ended session) is sent
        // to sign in and then to the credits page, whose link downloads
        // the file.
        Err(AppError::Unauthorized) => return Redirect::to(SIGN_IN_FOR_CREDITS).into_response(),
        Err(error) => {
            let status = error_status(&error);
            return plain(status, &format!("{error}: /login"));
        }
    };
    let csv = match state.conn().await {
        Ok(mut conn) => ledger_csv(&mut conn, user.customer_id, filter).await,
        Err(e) => Err(e),
    };
    match csv {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    CONTENT_DISPOSITION,
                    "attachment; filename=\"rsolv-credits.csv\"",
                ),
                (CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error, customer_id = user.customer_id, "CSV export failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "something went wrong on our side; please try again",
            )
        }
    }
}

/// The fields of the no-JavaScript create-key form (missing reads as empty).
#[derive(Debug, Deserialize)]
pub struct CreateKeyForm {
    #[serde(default)]
    name: String,
    /// `never` (or empty), `30`, `90` or `365`.
    #[serde(default)]
    expires: String,
}

/// The fields of the no-JavaScript rotate-key form.
#[derive(Debug, Deserialize)]
pub struct RotateKeyForm {
    #[serde(default)]
    key_id: String,
}

/// `POST /keys/create` (form `name`, `expires`: `never`, `30`, `90` or
/// `365`): for browsers without JavaScript. Creates the key and renders
/// `/keys` with the secret shown once; 200, or the page with the error and
/// 422 (bad name or expiry; nothing written); without a session, 303 to
/// `/login?next=/keys`.
pub async fn submit_create_key_form(State(state): State<AppState>, request: Request) -> Response {
    let (parts, form) = match parse_form::<CreateKeyForm>(&state, request).await {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection,
    };
    let outcome = async {
        let user = current_user(&state, parts.clone()).await?;
        let mut conn = state
            .conn()
            .await
            .map_err(crate::server::signup::to_app_error)?;
        crate::app::portal::api::ssr::create_key_for(&mut conn, &user, &form.name, &form.expires)
            .await
    }
    .await;
    render_keys_page(&state, parts, FormKeyOutcome::Created(outcome)).await
}

/// `POST /keys/rotate` (form `key_id`): for browsers without JavaScript.
/// Rotates the key and renders `/keys` with the new secret shown once; 200,
/// or the page with the error and 404 (not the customer's key), 422
/// (malformed id, revoked or already rotated key); without a session, 303
/// to `/login?next=/keys`.
pub async fn submit_rotate_key_form(State(state): State<AppState>, request: Request) -> Response {
    let (parts, form) = match parse_form::<RotateKeyForm>(&state, request).await {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection,
    };
    let outcome = async {
        let user = current_user(&state, parts.clone()).await?;
        let key_id: i64 = form
            .key_id
            .trim()
            .parse()
            .map_err(|_| AppError::Validation("key_id must be a key's number".into()))?;
        let mut conn = state
            .conn()
            .await
            .map_err(crate::server::signup::to_app_error)?;
        crate::app::portal::api::ssr::rotate_key_for(&mut conn, &user, key_id, &state.config).await
    }
    .await;
    render_keys_page(&state, parts, FormKeyOutcome::Rotated(outcome)).await
}

/// Renders `/keys` (as a GET of that page) with `outcome` in context; the
/// status follows the outcome.
async fn render_keys_page(state: &AppState, parts: Parts, outcome: FormKeyOutcome) -> Response {
    if let FormKeyOutcome::Created(Err(AppError::Unauthorized))
    | FormKeyOutcome::Rotated(Err(AppError::Unauthorized)) = &outcome
    {
        return Redirect::to(SIGN_IN_FOR_KEYS).into_response();
    }
    let status = match &outcome {
        FormKeyOutcome::Created(Ok(_)) | FormKeyOutcome::Rotated(Ok(_)) => StatusCode::OK,
        FormKeyOutcome::Created(Err(e)) | FormKeyOutcome::Rotated(Err(e)) => error_status(e),
    };
    let mut response = render_page(
        state,
        parts,
        Some(Uri::from_static("/keys")),
        status,
        outcome,
    )
    .await;
    // The page holds a secret shown once: never cache it.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
