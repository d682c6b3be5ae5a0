//! `/accept-invite?token=…`: sets a password from a mailed single-use link
//! and shows the owner's first API key, once, with what to do with it.
//!
//! The form works without JavaScript: it posts to `POST /accept-invite`
//! (`server::http::pages::submit_accept_invite_form`), which renders this
//! page around the outcome ([`FormAcceptInviteOutcome`]), so the key is
//! shown without ever entering a URL. Once hydrated, the form calls the
//! [`AcceptInvite`] server function instead.

use crate::app::auth::api::AcceptInvite;
use crate::app::auth::{
    form_error, fresh_key, token_param, AuthCard, ErrorMessage, Field, FreshKey, SubmitButton,
};
use crate::types::views::FirstKeyView;
use crate::types::AppError;
use leptos::form::FromFormData;
use leptos::prelude::*;
use leptos_meta::Meta;

/// The outcome of a no-JavaScript submission of the set-password form,
/// provided as context by the server when it renders the page for
/// `POST /accept-invite`: the first API key (shown once), `None` when the
/// account already had one, or the error.
#[derive(Debug, Clone)]
pub struct FormAcceptInviteOutcome(pub Result<Option<FirstKeyView>, AppError>);

/// The page behind the `/accept-invite` link.
#[component]
pub fn AcceptInvitePage() -> impl IntoView {
    let from_form: Option<Result<Option<FirstKeyView>, AppError>> =
        SharedValue::new(|| use_context::<FormAcceptInviteOutcome>().map(|outcome| outcome.0))
            .into_inner();
    let action = ServerAction::<AcceptInvite>::new();
    let value = Signal::derive(move || action.value().get().or_else(|| from_form.clone()));
    let error = form_error(value);
    let token = token_param();
    let key = fresh_key(value);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        if let Ok(args) = AcceptInvite::from_event(&ev) {
            ev.prevent_default();
            action.dispatch(args);
        }
    };
    view! {
        <leptos_meta::Title text="Set your password · RSOLV" />
        <Meta name="referrer" content="same-origin" />
        <AuthCard title="Set your password">
            <Show
                when=move || key.get().is_none()
                fallback=|| ()
            >
                <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"Choose a password to sign in to your RSOLV account. This also confirms your email."</p>
                <form method="post" action="/accept-invite" on:submit=on_submit>
                    <div class="mt-4 space-y-4" data-testid="accept-invite-form">
                        <input type="hidden" name="token" prop:value=move || token.get() value=move || token.get() />
                        <Field id="accept-invite-password" name="password" label="New password" kind="password" autocomplete="new-password"
                            help="12 to 128 characters." />
                        <Field id="accept-invite-password-confirm" name="password_confirm" label="Confirm new password" kind="password" autocomplete="new-password" />
                        <ErrorMessage message=Signal::derive(error) />
                        <SubmitButton pending=action.pending().into() label="Set my password" pending_label="Saving…" />
                    </div>
                </form>
            </Show>
            <FreshKey value=key />
        </AuthCard>
    }
}
