//! `/account`: who is signed in, change password (signs out the other
//! sessions), log out, log out of all devices.

use crate::app::auth::api::{current_user, ChangePassword, Logout, LogoutAll};
use crate::app::auth::{
    form_error, AuthCard, ErrorMessage, Field, StatusMessage, SubmitButton, LINK_CLASS,
};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The account page. A signed-out request is redirected to sign in
/// (`server::auth::lifetime`); the page asks to sign in only when the
/// session ended while the app was open. Its route renders with
/// `SsrMode::Async`, so the page is complete without JavaScript.
#[component]
pub fn AccountPage() -> impl IntoView {
    let user = Resource::new_blocking(|| (), |_| current_user());
    view! {
        <leptos_meta::Title text="Account · RSOLV" />
        <Suspense fallback=|| view! { <p class="text-sm">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(user)) => view! { <AccountForms email=user.email /> }.into_any(),
                    Ok(None) => view! {
                        <AuthCard title="Your account">
                            <p class="mt-2" role="status">
                                "Please " <a href="/login?next=/account" class=LINK_CLASS>"sign in"</a> " to see your account."
                            </p>
                        </AuthCard>
                    }
                    .into_any(),
                    Err(error) => view! {
                        <AuthCard title="Your account">
                            <p role="alert" class="mt-2 text-red-800 dark:text-red-200">{error.to_string()}</p>
                        </AuthCard>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AccountForms(email: String) -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let logout = ServerAction::<Logout>::new();
    let logout_all = ServerAction::<LogoutAll>::new();
    let change_error = form_error(change.value());
    let query = use_query_map();
    let changed = move || query.read().get("notice").as_deref() == Some("password_changed");
    let secondary = "inline-flex items-center justify-center rounded-md border border-slate-300 px-4 py-2 text-sm font-medium \
                     hover:bg-slate-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 \
                     dark:border-slate-700 dark:hover:bg-slate-800";
    view! {
        <div class="space-y-6">
            <AuthCard title="Your account">
                <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">
                    "Signed in as " <span class="font-medium" data-testid="account-email">{email}</span> "."
                </p>
                <div class="mt-4 flex flex-wrap gap-3">
                    <ActionForm action=logout>
                        <button type="submit" class=secondary>"Log out"</button>
                    </ActionForm>
                    <ActionForm action=logout_all>
                        <button type="submit" class=secondary>"Log out of all devices"</button>
                    </ActionForm>
                </div>
            </AuthCard>
            <AuthCard title="Change password">
                {move || changed().then(|| view! { <StatusMessage text="Your password was changed. Your other sessions were signed out." /> })}
                <ActionForm action=change>
                    <div class="mt-4 space-y-4" data-testid="change-password-form">
                        <Field id="current-password" name="current_password" label="Current password" kind="password" autocomplete="current-password" />
                        <Field id="new-password" name="new_password" label="New password" kind="password" autocomplete="new-password"
                            help="12 to 128 characters. Your other devices will be signed out." />
                        <Field id="new-password-confirm" name="new_password_confirm" label="Confirm new password" kind="password" autocomplete="new-password" />
                        <ErrorMessage message=Signal::derive(change_error) />
                        <SubmitButton pending=change.pending().into() label="Change password" pending_label="Saving…" />
                    </div>
                </ActionForm>
            </AuthCard>
        </div>
    }
}
