//! `/confirm-email?token=…`: one button that confirms the email (a POST, so
//! link scanners that only fetch the page do not use the link up).

use crate::app::auth::api::ConfirmEmail;
use crate::app::auth::{
    form_error, fresh_key, token_param, AuthCard, ErrorMessage, FreshKey, SubmitButton,
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
        <Meta name="referrer" content="same-origin" />
        <AuthCard title="Confirm your email">
            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"Confirm this address to finish setting up your account."</p>
            <ActionForm action=action>
                <div class="mt-4 space-y-4" data-testid="confirm-email-form">
                    <input type="hidden" name="token" prop:value=move || token.get() value=move || token.get() />
                    <ErrorMessage message=Signal::derive(error) />
                    <SubmitButton pending=action.pending().into() label="Confirm my email" pending_label="Confirming…" />
                </div>
            </ActionForm>
            <FreshKey value=key />
        </AuthCard>
    }
}
