//! Form handlers for browsers without JavaScript: each parses the posted
//! form, calls the domain, and renders the same Leptos page around the
//! outcome (provided as context, serialised for hydration).

use crate::app::home::FormSignupOutcome;
use crate::app::shell;
use crate::server::signup::signup;
use crate::server::state::AppState;
use crate::types::views::SignupView;
use crate::types::AppError;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use leptos::prelude::provide_context;
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

/// `POST /signup`: provisions the customer and renders the home page with
/// the key (once) or the error; 422 with the page for invalid input, 409
/// for a registered email.
pub async fn submit_signup_form(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form =
        match Form::<SignupForm>::from_request(Request::from_parts(parts.clone(), body), &state)
            .await
        {
            Ok(Form(form)) => form,
            Err(rejection) => return rejection.into_response(),
        };
    let outcome = signup(&state, &form.email, &form.name).await;
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        Err(crate::types::AppError::Validation(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        Err(crate::types::AppError::Conflict(_)) => StatusCode::CONFLICT,
        Err(crate::types::AppError::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    render_signup_page(&state, parts, outcome, status).await
}

/// Renders the home page (as for `GET` of the request's path) around a
/// signup `outcome`, answered with `status`.
pub async fn render_signup_page(
    state: &AppState,
    parts: Parts,
    outcome: Result<SignupView, AppError>,
    status: StatusCode,
) -> Response {
    let options = state.leptos_options.clone();
    let render = leptos_axum::render_app_to_stream_with_context(
        {
            let state = state.clone();
            let outcome = FormSignupOutcome(outcome);
            move || {
                provide_context(state.clone());
                provide_context(outcome.clone());
            }
        },
        move || shell(options.clone()),
    );
    let mut page_request = Request::from_parts(parts, Body::empty());
    *page_request.method_mut() = Method::GET;
    let mut response = render(page_request).await;
    *response.status_mut() = status;
    response
}
