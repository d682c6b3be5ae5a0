//! `/reset-password?token=…`: sets a password from a mailed single-use link.

use crate::app::auth::api::ResetPassword;
use crate::app::auth::{
    form_error, fresh_key, token_param, AuthCard, ErrorMessage, Field, FreshKey, SubmitButton,
};
use leptos::prelude::*;
use leptos_meta::Meta;

/// The page behind the `/reset-password` link.
#[component]
pub fn ResetPasswordPage() -> impl IntoView {
    let action = ServerAction::<ResetPassword>::new();
    let error = form_error(action.value());
    let token = token_param();
    let key = fresh_key(action.value());
    view! {
        <leptos_meta::Title text="Choose a new password · RSOLV" />
        <Meta name="referrer" content="same-origin" />
        <AuthCard title="Choose a new password">
            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"The link in your email works once and expires in 1 hour."</p>
            <ActionForm action=action>
                <div class="mt-4 space-y-4" data-testid="reset-password-form">
                    <input type="hidden" name="token" prop:value=move || token.get() value=move || token.get() />
                    <Field id="reset-password-password" name="password" label="New password" kind="password" autocomplete="new-password"
                        help="12 to 128 characters." />
                    <Field id="reset-password-password-confirm" name="password_confirm" label="Confirm new password" kind="password" autocomplete="new-password" />
                    <ErrorMessage message=Signal::derive(error) />
                    <SubmitButton pending=action.pending().into() label="Set the new password" pending_label="Saving…" />
                </div>
            </ActionForm>
            <FreshKey value=key />
        </AuthCard>
    }
}
