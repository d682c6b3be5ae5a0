//! `/accept-invite?token=…`: sets a password from a mailed single-use link.

use crate::app::auth::api::AcceptInvite;
use crate::app::auth::{
    form_error, fresh_key, token_param, AuthCard, ErrorMessage, Field, FreshKey, SubmitButton,
};
use leptos::prelude::*;
use leptos_meta::Meta;

/// The page behind the `/accept-invite` link.
#[component]
pub fn AcceptInvitePage() -> impl IntoView {
    let action = ServerAction::<AcceptInvite>::new();
    let error = form_error(action.value());
    let token = token_param();
    let key = fresh_key(action.value());
    view! {
        <leptos_meta::Title text="Set your password · RSOLV" />
        <Meta name="referrer" content="same-origin" />
        <AuthCard title="Set your password">
            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"Choose a password to sign in to your RSOLV account. This also confirms your email."</p>
            <ActionForm action=action>
                <div class="mt-4 space-y-4" data-testid="accept-invite-form">
                    <input type="hidden" name="token" prop:value=move || token.get() value=move || token.get() />
                    <Field id="accept-invite-password" name="password" label="New password" kind="password" autocomplete="new-password"
                        help="12 to 128 characters." />
                    <Field id="accept-invite-password-confirm" name="password_confirm" label="Confirm new password" kind="password" autocomplete="new-password" />
                    <ErrorMessage message=Signal::derive(error) />
                    <SubmitButton pending=action.pending().into() label="Set my password" pending_label="Saving…" />
                </div>
            </ActionForm>
            <FreshKey value=key />
        </AuthCard>
    }
}
