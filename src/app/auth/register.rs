//! `/register`: creates an account (customer and owner user) and asks the
//! user to confirm the email (`?sent=1` after success; `?pending=1` when the
//! signup waits for an admin's approval).

use crate::app::auth::api::Register;
use crate::app::auth::{
    form_error, AuthCard, ErrorMessage, Field, StatusMessage, SubmitButton, LINK_CLASS,
};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The registration page.
#[component]
pub fn RegisterPage() -> impl IntoView {
    let action = ServerAction::<Register>::new();
    let error = form_error(action.value());
    let query = use_query_map();
    let pending = move || query.read().get("pending").is_some();
    let sent = move || query.read().get("sent").is_some() || pending();
    view! {
        <leptos_meta::Title text="Create your account · RSOLV" />
        <AuthCard title="Create your account">
            <Show
                when=sent
                fallback=move || view! {
                    <ActionForm action=action>
                        <div class="mt-4 space-y-4" data-testid="register-form">
                            <Field id="register-email" name="email" label="Email" kind="email" autocomplete="email" />
                            <Field id="register-name" name="name" label="Name" kind="text" autocomplete="name" />
                            <Field id="register-password" name="password" label="Password" kind="password" autocomplete="new-password"
                                help="12 to 128 characters." />
                            <Field id="register-password-confirm" name="password_confirm" label="Confirm password" kind="password" autocomplete="new-password" />
                            <ErrorMessage message=Signal::derive(error) />
                            <SubmitButton pending=action.pending().into() label="Create account" pending_label="Creating your account…" />
                        </div>
                    </ActionForm>
                    <p class="mt-4 text-sm">"Already have an account? " <a href="/login" class=LINK_CLASS>"Sign in"</a></p>
                }
            >
                {move || if pending() {
                    view! { <StatusMessage text="Thanks! Your signup is waiting for approval. Once it is approved we will email you a link to set your password." /> }
                } else {
                    view! { <StatusMessage text="Check your inbox: we sent you a link to confirm your email. It works once and expires in 7 days." /> }
                }}
                <p class="mt-4 text-sm"><a href="/login" class=LINK_CLASS>"Go to sign in"</a></p>
            </Show>
        </AuthCard>
    }
}
