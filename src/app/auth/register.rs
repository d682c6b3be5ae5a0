//! `/register`: the same signup as the home page ([`SignupCard`]: email and
//! name, then a mailed link to set the password, whose page shows the first
//! API key once), without the product pitch, for links that say "create an
//! account". Without JavaScript the form posts to `POST /register`, which
//! renders this page around the outcome.
//!
//! The password-first `POST /api/register` server function
//! ([`crate::app::auth::api::register`]) stays for scripted sign-ups; its
//! no-JS answer redirects here with `?sent=1` (or `?pending=1` while signups
//! wait for approval), which this page says instead of the form.

use crate::app::auth::{AuthCard, StatusMessage, LINK_CLASS};
use crate::app::home::SignupCard;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The registration page.
#[component]
pub fn RegisterPage() -> impl IntoView {
    let query = use_query_map();
    let pending = move || query.read().get("pending").is_some();
    let sent = move || query.read().get("sent").is_some() || pending();
    view! {
        <leptos_meta::Title text="Create your account · RSOLV" />
        <Show
            when=sent
            fallback=|| view! {
                <div class="mx-auto w-full max-w-md">
                    <SignupCard form_action="/register" />
                </div>
            }
        >
            <AuthCard title="Create your account">
                {move || if pending() {
                    view! { <StatusMessage text="Thanks! Your signup is waiting for approval. Once it is approved we will email you a link to set your password." /> }
                } else {
                    view! { <StatusMessage text="Check your inbox: we sent you a link to confirm your email. It works once and expires in 7 days." /> }
                }}
                <p class="mt-4 text-sm"><a href="/login" class=LINK_CLASS>"Go to sign in"</a></p>
            </AuthCard>
        </Show>
    }
}
