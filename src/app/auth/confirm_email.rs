//! `/confirm-email?token=…`: the password chosen at registration and a
//! button that confirms the email (a POST, so link scanners that only fetch
//! the page do not use the link up; the password, so a stranger who
//! registered the address cannot have its owner confirm it for them).

use crate::app::auth::api::ConfirmEmail;
use crate::app::auth::{
    form_error, fresh_key, token_param, AuthCard, ErrorMessage, Field, FreshKey, SubmitButton,
};
use leptos::prelude::*;
use leptos_meta::Meta;

/// The email confirmation page.
#[component]
pub fn ConfirmEmailPage() -> impl IntoView {
    let action = ServerAction::<ConfirmEmail>::new();
    let error = form_error(action.value());
    let token = token_param();
    let key = fresh_key(action.value());
    view! {
        <leptos_meta::Title text="Confirm your email · RSOLV" />
        <Meta name="referrer" content="same-origin" />
        <AuthCard title="Confirm your email">
            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"Enter the password you chose when you registered to confirm this address."</p>
            <ActionForm action=action>
                <div class="mt-4 space-y-4" data-testid="confirm-email-form">
                    <input type="hidden" name="token" prop:value=move || token.get() value=move || token.get() />
                    <Field id="confirm-password" name="password" label="Password" kind="password" autocomplete="current-password" />
                    <ErrorMessage message=Signal::derive(error) />
                    <SubmitButton pending=action.pending().into() label="Confirm my email" pending_label="Confirming…" />
                </div>
            </ActionForm>
            <FreshKey value=key />
        </AuthCard>
    }
}
