//! `/forgot-password`: asks for an email and always answers the same
//! (`?sent=1`), whether or not an account has it.

use crate::app::auth::api::ForgotPassword;
use crate::app::auth::{
    form_error, AuthCard, ErrorMessage, Field, StatusMessage, SubmitButton, LINK_CLASS,
};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The forgotten-password page.
#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let action = ServerAction::<ForgotPassword>::new();
    let error = form_error(action.value());
    let query = use_query_map();
    let sent = move || query.read().get("sent").is_some();
    view! {
        <leptos_meta::Title text="Reset your password · RSOLV" />
        <AuthCard title="Forgot your password?">
            <Show
                when=sent
                fallback=move || view! {
                    <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"Enter your account's email and we will send you a link to choose a new password."</p>
                    <ActionForm action=action>
                        <div class="mt-4 space-y-4" data-testid="forgot-password-form">
                            <Field id="forgot-email" name="email" label="Email" kind="email" autocomplete="email" />
                            <ErrorMessage message=Signal::derive(error) />
                            <SubmitButton pending=action.pending().into() label="Send the link" pending_label="Sending…" />
                        </div>
                    </ActionForm>
                }
            >
                <StatusMessage text="If an account uses this email, we sent it a link to reset the password. The link expires in 1 hour." />
            </Show>
            <p class="mt-4 text-sm"><a href="/login" class=LINK_CLASS>"Back to sign in"</a></p>
        </AuthCard>
    }
}
