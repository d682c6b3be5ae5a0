//! `/register`: creates an account (customer and owner user) and asks the
//! user to confirm the email (`?sent=1` after success; `?pending=1` when the
//! signup waits for an admin's approval). A signed-in visitor sees a link
//! to their dashboard instead of the form; while signups are closed the
//! page says so instead of the form, and while they wait for approval it
//! says so above it (the route is `SsrMode::Async`, so all of this is
//! rendered on the server).

use crate::app::auth::api::Register;
use crate::app::auth::{
    form_error, signup_gate, AlreadySignedIn, ApprovalNote, AuthCard, ErrorMessage, Field,
    SignupsClosed, StatusMessage, SubmitButton, LINK_CLASS,
};
use crate::types::views::SignupMode;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The registration page.
#[component]
pub fn RegisterPage() -> impl IntoView {
    let query = use_query_map();
    let pending = move || query.read().get("pending").is_some();
    let sent = move || query.read().get("sent").is_some() || pending();
    let gate = signup_gate();
    view! {
        <leptos_meta::Title text="Create your account · RSOLV" />
        <Show
            when=sent
            fallback=move || view! {
                <Suspense fallback=|| view! { <p class="text-sm">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match gate.await {
                            (Ok(Some(user)), _) => view! {
                                <AuthCard title="You already have an account">
                                    <AlreadySignedIn user />
                                </AuthCard>
                            }
                            .into_any(),
                            (_, Ok(SignupMode::Closed)) => view! {
                                <AuthCard title="Signups are closed">
                                    <SignupsClosed />
                                </AuthCard>
                            }
                            .into_any(),
                            (_, mode) => view! {
                                <RegisterForm approval=matches!(mode, Ok(SignupMode::Approval)) />
                            }
                            .into_any(),
                        }
                    })}
                </Suspense>
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

/// The registration form; `approval`: signups wait for approval, said
/// above it.
#[component]
fn RegisterForm(approval: bool) -> impl IntoView {
    let action = ServerAction::<Register>::new();
    let error = form_error(action.value());
    view! {
        <AuthCard title="Create your account">
            {approval.then(|| view! { <ApprovalNote /> })}
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
        </AuthCard>
    }
}
