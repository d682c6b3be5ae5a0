//! Form handlers for browsers without JavaScript: each parses the posted
//! form, calls the domain, and renders the same Leptos page around the
//! outcome (provided as context, serialised for hydration).

use crate::app::auth::accept_invite::FormAcceptInviteOutcome;
use crate::app::home::FormSignupOutcome;
use crate::app::shell;
use crate::server::http::portal::error_status;
use crate::server::signup::signup;
use crate::server::state::AppState;
use crate::types::views::{FirstKeyView, SignupView};
use crate::types::AppError;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use leptos::prelude::provide_context;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The signup form's fields (missing fields read as empty, so the page can
/// say which one is required).
#[derive(Debug, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

/// `POST /signup` and `POST /register` (the no-JavaScript signup form):
/// signs the customer up (`server::signup::signup`) and renders the page
/// posted from with "check your email" (the same for a new and a registered
/// address) or the error; 422 with the page for invalid input, 409 while
/// signups are closed.
pub async fn submit_signup_form(State(state): State<AppState>, request: Request) -> Response {
    let (parts, form) = match parse_form::<SignupForm>(&state, request).await {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection,
    };
    let outcome = signup(&state, &form.email, &form.name).await;
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        Err(error) => error_status(error),
    };
    render_signup_page(&state, parts, outcome, status).await
}

/// The set-password form of an invite link (missing fields read as empty,
/// so the page can say what is wrong).
#[derive(Debug, Deserialize)]
pub struct AcceptInviteForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// `POST /accept-invite` (the no-JavaScript form of the invite link's
/// page; hydrated, the page calls the `accept_invite` server function):
/// sets the owner's first password
/// (`server::auth::accounts::set_password_with_token`, purpose invite) and
/// renders `/accept-invite` with the first API key shown once (200,
/// `Cache-Control: no-store`: the page holds a secret), or 303 to
/// `/login?notice=password_set` when no key was issued; 422 (bad password
/// or unknown, used or expired link) or 429 (throttled) with the page and
/// the error. The key never enters a URL.
pub async fn submit_accept_invite_form(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    use crate::server::auth::accounts::{self, TokenPurpose};
    let (parts, form) = match parse_form::<AcceptInviteForm>(&state, request).await {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection,
    };
    let ip = crate::server::client_ip::from_parts(&parts, &state.config);
    let outcome = accounts::set_password_with_token(
        &state,
        &form.token,
        TokenPurpose::Invite,
        (&form.password, &form.password_confirm),
        ip,
    )
    .await
    .map(|issued| {
        issued.map(|issued| FirstKeyView {
            api_key: issued.plain.expose().to_owned(),
            revoked_keys: u32::try_from(issued.revoked).unwrap_or(u32::MAX),
            api_url: state.config.email.links.base().to_owned(),
        })
    });
    let status = match &outcome {
        Ok(Some(_)) => StatusCode::OK,
        Ok(None) => return Redirect::to("/login?notice=password_set").into_response(),
        Err(error) => error_status(error),
    };
    let path = Uri::try_from(format!(
        "/accept-invite?token={}",
        crate::app::auth::api::encode_query_value(&form.token)
    ))
    .unwrap_or_else(|_| Uri::from_static("/accept-invite"));
    let mut response = render_page(
        &state,
        parts,
        Some(path),
        status,
        FormAcceptInviteOutcome(outcome),
    )
    .await;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Renders the page (as for `GET` of the request's path: the home page or
/// `/register`) around a signup `outcome`, answered with `status`.
pub async fn render_signup_page(
    state: &AppState,
    parts: Parts,
    outcome: Result<SignupView, AppError>,
    status: StatusCode,
) -> Response {
    render_page(state, parts, None, status, FormSignupOutcome(outcome)).await
}

/// Reads an urlencoded form body, keeping the request's head for rendering
/// the answer page. A malformed body is answered by axum's form rejection
/// (4xx), returned as `Err`.
pub async fn parse_form<T: DeserializeOwned>(
    state: &AppState,
    request: Request,
) -> Result<(Parts, T), Response> {
    let (parts, body) = request.into_parts();
    match Form::<T>::from_request(Request::from_parts(parts.clone(), body), state).await {
        Ok(Form(form)) => Ok((parts, form)),
        Err(rejection) => Err(rejection.into_response()),
    }
}

/// Renders the app as for a `GET` of `path` (default: the request's own
/// path) with `outcome` provided as context, answered with `status`. The
/// page is rendered whole (async mode), so it is complete without
/// JavaScript.
pub async fn render_page<T: Clone + Send + Sync + 'static>(
    state: &AppState,
    parts: Parts,
    path: Option<Uri>,
    status: StatusCode,
    outcome: T,
) -> Response {
    let options = state.leptos_options.clone();
    let render = leptos_axum::render_app_async_with_context(
        {
            let state = state.clone();
            move || {
                provide_context(state.clone());
                provide_context(outcome.clone());
            }
        },
        move || shell(options.clone()),
    );
    let mut page_request = Request::from_parts(parts, Body::empty());
    *page_request.method_mut() = Method::GET;
    if let Some(path) = path {
        *page_request.uri_mut() = path;
    }
    let mut response = render(page_request).await;
    *response.status_mut() = status;
    response
}
