//! Accounts: registration, email confirmation, sign-in, the account page
//! (sign out, sign out everywhere, change password), forgotten and reset
//! passwords, invites; one file per route, the server functions in
//! [`api`], and the header's account links ([`AuthNav`]).
//!
//! Every form is an `ActionForm`: a plain `POST /api/<endpoint>` before
//! hydration (the server redirects to the outcome's page, or back with
//! `?error=`), a fetch with client-side navigation after.

pub mod accept_invite;
pub mod account;
pub mod api;
pub mod confirm_email;
pub mod forgot_password;
pub mod login;
pub mod register;
pub mod reset_password;
pub mod two_factor;

use crate::types::views::{FirstKeyView, SignupMode};
use crate::types::AppError;
use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_query_map};

/// Classes of a text input.
pub const INPUT_CLASS: &str =
    "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-slate-900 \
    shadow-sm focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500 \
    dark:border-slate-700 dark:bg-slate-950 dark:text-slate-100";

/// Classes of a primary submit button.
pub const BUTTON_CLASS: &str = "inline-flex w-full items-center justify-center rounded-md bg-indigo-600 px-4 py-2 font-semibold text-white \
    hover:bg-indigo-700 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 \
    disabled:opacity-60 dark:focus-visible:ring-offset-slate-900";

/// Classes of a link.
pub const LINK_CLASS: &str =
    "text-indigo-700 underline hover:text-indigo-900 focus:outline-none focus-visible:ring-2 \
    focus-visible:ring-indigo-500 dark:text-indigo-300 dark:hover:text-indigo-100";

/// The card around an auth form, with its heading.
#[component]
pub fn AuthCard(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <section class="mx-auto max-w-md rounded-xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <h1 class="text-2xl font-semibold tracking-tight">{title}</h1>
            {children()}
        </section>
    }
}

/// A labelled input.
#[component]
pub fn Field(
    /// The element id (the label points at it).
    id: &'static str,
    /// The form field's name (the server function's argument).
    name: &'static str,
    /// The visible label.
    label: &'static str,
    /// `email`, `password`, `text`.
    kind: &'static str,
    /// The `autocomplete` hint.
    autocomplete: &'static str,
    /// Help shown under the input (linked by `aria-describedby`).
    #[prop(optional)]
    help: Option<&'static str>,
) -> impl IntoView {
    let help_id = format!("{id}-help");
    let described = help.map(|_| help_id.clone());
    view! {
        <div>
            <label for=id class="block text-sm font-medium">{label}</label>
            <input id=id name=name type=kind autocomplete=autocomplete required class=INPUT_CLASS aria-describedby=described />
            {help.map(|text| view! { <p id=help_id class="mt-1 text-xs text-slate-600 dark:text-slate-400">{text}</p> })}
        </div>
    }
}

/// A submit button that is disabled and relabelled while `pending`.
#[component]
pub fn SubmitButton(
    pending: Signal<bool>,
    label: &'static str,
    pending_label: &'static str,
) -> impl IntoView {
    view! {
        <button type="submit" class=BUTTON_CLASS disabled=move || pending.get() aria-busy=move || pending.get().to_string()>
            {move || if pending.get() { pending_label } else { label }}
        </button>
    }
}

/// The error to show for a form: the action's latest error once hydrated,
/// else the `error` query parameter set by a plain form post's redirect.
pub fn form_error<T, S>(value: S) -> impl Fn() -> Option<String> + Copy
where
    S: Get<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    let query = use_query_map();
    move || match value.get() {
        Some(Err(error)) => Some(error.to_string()),
        Some(Ok(_)) => None,
        None => query.read().get("error"),
    }
}

/// An error message (`role="alert"`), when there is one.
#[component]
pub fn ErrorMessage(message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|text| {
            view! {
                <p role="alert" data-testid="form-error" class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">{text}</p>
            }
        })
    }
}

/// A success or information message (`role="status"`).
#[component]
pub fn StatusMessage(#[prop(into)] text: String) -> impl IntoView {
    view! {
        <p role="status" data-testid="form-status" class="mt-4 rounded-md bg-emerald-50 px-3 py-2 text-sm text-emerald-900 dark:bg-emerald-950 dark:text-emerald-100">{text}</p>
    }
}

/// The owner's first API key, answered by a server function that took the
/// first proof of the email (see [`api::FIRST_KEY_NOTE`]): shown once, with
/// where to put it, why earlier keys stopped (if any did) and a link to
/// sign in.
#[component]
pub fn FreshKey(value: Signal<Option<FirstKeyView>>) -> impl IntoView {
    move || {
        value.get().map(|issued| {
            view! {
                <div role="status" data-testid="fresh-api-key-panel" class="mt-4 space-y-2 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-100">
                    <p>{api::FIRST_KEY_NOTE}</p>
                    {(issued.revoked_keys > 0).then(|| view! { <p data-testid="revoked-keys-note">{api::REVOKED_KEYS_NOTE}</p> })}
                    <code data-testid="fresh-api-key" class="block break-all font-mono">{issued.api_key}</code>
                    {(!issued.api_url.is_empty()).then(|| view! {
                        <p>"Then add this workflow to the repository as .github/workflows/rsolv.yml:"</p>
                        <pre tabindex="0" class="relative max-w-full overflow-x-auto rounded-md bg-slate-900 p-3 text-xs text-slate-100" data-testid="fresh-key-workflow"><code>{crate::app::portal::dashboard::workflow_yaml(&issued.api_url)}</code></pre>
                    })}
                    <p>"Next: sign in. Your dashboard keeps these steps and ticks them off until your first fix."</p>
                    <a href="/login?next=/dashboard" class="font-semibold underline">"Continue to sign in"</a>
                </div>
            }
        })
    }
}

/// The key in a server action's latest value, for [`FreshKey`].
pub fn fresh_key<S>(value: S) -> Signal<Option<FirstKeyView>>
where
    S: Get<Value = Option<Result<Option<FirstKeyView>, AppError>>> + Copy + Send + Sync + 'static,
{
    Signal::derive(move || match value.get() {
        Some(Ok(key)) => key,
        _ => None,
    })
}

/// The `token` query parameter of a mailed link.
pub fn token_param() -> Memo<String> {
    let query = use_query_map();
    Memo::new(move |_| query.read().get("token").unwrap_or_default())
}

/// What a signup page needs before it shows its form: who is signed in
/// (`None` when nobody is) and whether signups are taken.
pub type SignupGate = (
    Result<Option<api::UserView>, AppError>,
    Result<SignupMode, AppError>,
);

/// Loads the [`SignupGate`] for a signup page (the home page,
/// `/register`); those routes render with `SsrMode::Async`, so the page
/// says it without JavaScript.
pub fn signup_gate() -> Resource<SignupGate> {
    Resource::new(
        || (),
        |_| async { (api::current_user().await, api::signup_mode().await) },
    )
}

/// Where a signed-in user starts: their dashboard, or the admin console
/// for a staff admin.
pub fn home_link(user: &api::UserView) -> (&'static str, &'static str) {
    if user.role == "staff_admin" {
        ("/admin", "Go to the admin console")
    } else {
        ("/dashboard", "Go to your dashboard")
    }
}

/// Shown instead of a signup form to a signed-in visitor: who they are
/// and the way to their dashboard.
#[component]
pub fn AlreadySignedIn(user: api::UserView) -> impl IntoView {
    let (href, label) = home_link(&user);
    view! {
        <div class="mt-4 space-y-4 text-sm text-slate-700 dark:text-slate-300" role="status" data-testid="signed-in-panel">
            <p>"You are signed in as " <span class="font-medium break-all">{user.email}</span> "."</p>
            <a href=href class=BUTTON_CLASS data-testid="signed-in-home">{label}</a>
        </div>
    }
}

/// Shown instead of a signup form while signups are closed.
#[component]
pub fn SignupsClosed() -> impl IntoView {
    view! {
        <div class="mt-4 space-y-3 text-sm text-slate-700 dark:text-slate-300" role="status" data-testid="signups-closed">
            <p>"We are not taking new accounts at the moment. Please come back later."</p>
            <p>"Already have an account? " <a href="/login" class=LINK_CLASS>"Sign in"</a></p>
        </div>
    }
}

/// Said above a signup form while signups wait for an admin's approval.
#[component]
pub fn ApprovalNote() -> impl IntoView {
    view! {
        <p class="mt-4 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-100" data-testid="signups-need-approval">
            "New accounts are approved by hand at the moment: after you sign up, your account waits for approval, and we email you once it is approved."
        </p>
    }
}

/// The header's account links: "Sign in" / "Register" when signed out;
/// "Dashboard" / "Account" / "Log out" when signed in. Refetched on every
/// navigation, so it follows sign-in and sign-out. Without JavaScript the
/// links show only on routes rendered with `SsrMode::Async` (the account
/// pages are): out-of-order streaming sends them in a chunk that a script
/// swaps in.
#[component]
pub fn AuthNav() -> impl IntoView {
    let location = use_location();
    let user = Resource::new_blocking(move || location.pathname.get(), |_| api::current_user());
    let logout = ServerAction::<api::Logout>::new();
    let nav_link = "rounded px-2 py-1 text-sm font-medium text-slate-700 hover:text-slate-950 focus:outline-none \
                    focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-slate-300 dark:hover:text-white";
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(user)) => view! {
                        <div class="flex items-center gap-2" data-testid="nav-signed-in">
                            // Staff admins have the admin console instead of a dashboard.
                            {if user.role == "staff_admin" {
                                view! { <a href="/admin" class=nav_link data-testid="nav-admin">"Admin"</a> }.into_any()
                            } else {
                                view! { <a href="/dashboard" class=nav_link>"Dashboard"</a> }.into_any()
                            }}
                            <a href="/account" class=nav_link>"Account"</a>
                            <ActionForm action=logout>
                                <button type="submit" class=nav_link>"Log out"</button>
                            </ActionForm>
                        </div>
                    }
                    .into_any(),
                    _ => view! {
                        <div class="flex items-center gap-2" data-testid="nav-signed-out">
                            <a href="/login" class=nav_link>"Sign in"</a>
                            <a href="/register" class=nav_link>"Register"</a>
                        </div>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}
