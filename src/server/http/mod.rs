//! The HTTP adapters: the JSON API, health, the no-JavaScript form handlers
//! and the Leptos SSR routes, in one axum router.

pub mod ai;
pub mod api_v1;
pub mod assets;
pub mod error;
pub mod extract;
pub mod health;
pub mod layers;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod portal;
pub mod rate_limit;
pub mod server_fns;
pub mod webhooks;

use crate::app::{shell, App};
use crate::server::http::error::ApiError;
use crate::server::state::AppState;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list_with_exclusions, LeptosRoutes};

/// The whole application router.
pub fn router(state: AppState) -> Router {
    // The signup and register server functions are mounted below, under
    // the per-IP signup rate limit, instead of by `leptos_routes_with_context`.
    let signup_fn = rate_limit::signup_server_fn_path();
    let register_fn = <crate::app::auth::api::Register as leptos::server_fn::ServerFn>::PATH;
    let routes = generate_route_list_with_exclusions(
        App,
        Some(vec![signup_fn.to_owned(), register_fn.to_owned()]),
    );
    let options = state.leptos_options.clone();
    let router = Router::new()
        .route(health::HEALTH_PATH, get(health))
        .route(health::LIVENESS_PATH, get(health::livez))
        .route(health::READINESS_PATH, get(health::readyz))
        .nest(
            "/api/v1",
            api_v1::routes(&state)
                .fallback(api_not_found)
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    maintenance::refuse_during_maintenance,
                )),
        )
        .nest("/ai", ai::routes(&state))
        .route(
            "/signup",
            post(pages::submit_signup_form).route_layer(middleware::from_fn_with_state(
                state.clone(),
                rate_limit::limit_signups_form,
            )),
        )
        .route("/accept-invite", post(pages::submit_accept_invite_form))
        .route(
            "/register",
            post(pages::submit_signup_form).route_layer(middleware::from_fn_with_state(
                state.clone(),
                rate_limit::limit_signups_form,
            )),
        )
        .route(signup_fn, signup_limited_server_fn(&state))
        .route(register_fn, signup_limited_server_fn(&state))
        .route(
            "/webhooks/stripe",
            post(webhooks::stripe::receive_stripe_webhook),
        )
        .route(
            "/webhooks/github",
            post(webhooks::github::receive_github_webhook),
        )
        .route("/credits/export.csv", get(portal::export_ledger_csv))
        .route("/keys/create", post(portal::submit_create_key_form))
        .route("/keys/rotate", post(portal::submit_rotate_key_form))
        .leptos_routes_with_context(
            &state,
            routes,
            {
                let state = state.clone();
                move || provide_context(state.clone())
            },
            move || shell(options.clone()),
        )
        // Every routed request counted and timed by its route template.
        .route_layer(middleware::from_fn(metrics::track_http))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        // The bundle under /pkg/: cached for a year when its names are
        // content-hashed (see `assets`).
        .layer(middleware::from_fn_with_state(
            assets::AssetCaching::new(&state.leptos_options),
            assets::cache_assets,
        ))
        // A server function's undecodable input is a 4xx, not Leptos's 500.
        .layer(middleware::from_fn(server_fns::input_errors_are_4xx))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // Pages not for this visitor: the portal, `/account` and `/admin/…`
        // signed out → `/login?next=…`; `/admin/…` for a customer →
        // `/dashboard`; a staff admin half-way through sign-in →
        // `/admin/2fa`; `/login` signed in → `next` or home (see
        // `server::auth::lifetime`).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::server::auth::lifetime::redirect_guarded_pages,
        ))
        // Every session's idle timeout and absolute lifetime, before
        // anything reads it.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::server::auth::lifetime::enforce_session_lifetime,
        ))
        // Browser sessions for the Leptos pages and server functions
        // (server functions reach it with `leptos_axum::extract::<Session>()`).
        .layer(crate::server::auth::store::session_layer(
            state.pool.clone(),
            state.config.secure_cookies(),
            state.config.sessions.idle_seconds,
        ))
        // Outermost: cross-origin state-changing requests never reach a
        // handler (see `server::auth::csrf`).
        .layer(axum::middleware::from_fn_with_state(
            crate::server::auth::csrf::CsrfConfig {
                public_origin: state.config.public_base_url().into(),
            },
            crate::server::auth::csrf::verify_origin,
        ));
    // Then request ids, request logs, the timeout and the panic catcher
    // (see `layers`).
    let timeout = std::time::Duration::from_secs(state.config.request_timeout_seconds);
    let router = layers::around_routes(router, timeout);
    // Outermost of all: the browser security headers on every response,
    // errors and timeouts included (CSP with the page's nonce, nosniff,
    // Referrer-Policy, Permissions-Policy, HSTS over https).
    let security =
        layers::SecurityHeaders::new(&state.config.stripe.js_url, state.config.secure_cookies());
    layers::security_headers(router, &security).with_state(state)
}

/// A server function route counted against the client IP's signup bucket
/// (`RATE_LIMIT_SIGNUPS_PER_MINUTE`, shared by every way to sign up).
fn signup_limited_server_fn(state: &AppState) -> axum::routing::MethodRouter<AppState> {
    post({
        let state = state.clone();
        move |request: Request| {
            leptos_axum::handle_server_fns_with_context(
                move || provide_context(state.clone()),
                request,
            )
        }
    })
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        rate_limit::limit_signups_server_fn,
    ))
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API endpoint")
}

/// `GET /health`: 200 `{"status": "ok", "database": "ok"}` when a query
/// succeeds, 503 with `"database": "unreachable"` otherwise. With
/// `CREDENTIAL_VENDING=passthrough` the body also carries
/// `"credential_vending": "passthrough"` and a `"warning"`.
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    use crate::server::config::ai::{CredentialVending, PASSTHROUGH_WARNING};
    let (status, mut body) = database_health(&state).await;
    if state.config.ai.vending == CredentialVending::Passthrough {
        body["credential_vending"] = CredentialVending::Passthrough.as_str().into();
        body["warning"] = PASSTHROUGH_WARNING.into();
    }
    (status, Json(body))
}

async fn database_health(state: &AppState) -> (StatusCode, serde_json::Value) {
    if health::database_ok(state).await {
        (
            StatusCode::OK,
            serde_json::json!({ "status": "ok", "database": "ok" }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "degraded", "database": "unreachable" }),
        )
    }
}
