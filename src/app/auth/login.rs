//! `/login`: email and password; shows the outcome of the flows that end
//! here (`?notice=`) and errors. `?next=<local path>` (set by the page
//! guard, `server::auth::lifetime`, for the portal, `/account` and
//! `/admin…`) is where sign-in leads. Signed-in visitors never see this
//! page: the guard sends them to `next` or their home.

use crate::app::auth::api::Login;
use crate::app::auth::{
    form_error, AuthCard, ErrorMessage, Field, StatusMessage, SubmitButton, LINK_CLASS,
};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The fixed text for each `notice` value (anything else shows nothing).
fn notice_text(notice: &str) -> Option<&'static str> {
    Some(match notice {
        "confirmed" => "Your email is confirmed. You can sign in now.",
        "signed_out" => "You are signed out.",
        "signed_out_everywhere" => "You are signed out on all your devices.",
        "password_reset" => "Your password was changed. Sign in with the new one.",
        "password_set" => "Your password is set and your email confirmed. You can sign in now.",
        _ => return None,
    })
}

/// The sign-in page.
#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<Login>::new();
    let error = form_error(action.value());
    let query = use_query_map();
    let notice = move || query.read().get("notice").and_then(|n| notice_text(&n));
    // Where to return after sign-in (checked again on the server: local
    // paths only).
    let next = move || query.read().get("next").unwrap_or_default();
    view! {
        <leptos_meta::Title text="Sign in · RSOLV" />
        <AuthCard title="Sign in">
            {move || notice().map(|text| view! { <StatusMessage text /> })}
            <ActionForm action=action>
                <input type="hidden" name="next" value=next />
                <div class="mt-4 space-y-4" data-testid="login-form">
                    <Field id="login-email" name="email" label="Email" kind="email" autocomplete="username" />
                    <Field id="login-password" name="password" label="Password" kind="password" autocomplete="current-password" />
                    <ErrorMessage message=Signal::derive(error) />
                    <SubmitButton pending=action.pending().into() label="Sign in" pending_label="Signing in…" />
                </div>
            </ActionForm>
            <p class="mt-4 text-sm">
                <a href="/forgot-password" class=LINK_CLASS>"Forgot your password?"</a>
                " · "
                <a href="/register" class=LINK_CLASS>"Create an account"</a>
            </p>
        </AuthCard>
    }
}
