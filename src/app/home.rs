//! The home page: what RSOLV is, and the signup form: it provisions a
//! customer whose owner is emailed a link to set a password, where the
//! first API key is shown once (a registered address gets the same answer
//! and a "you already have an account" email). A signed-in visitor sees a
//! link to their dashboard instead of the form; while signups are closed
//! the page says so instead of the form, and while they wait for approval
//! it says so above it (rendered on the server: the route is
//! `SsrMode::Async`).
//!
//! The form works without JavaScript: it is a plain `POST /signup` that the
//! server answers with this page rendered around the outcome (see
//! `server::http::pages::submit_signup_form`). Once hydrated, submission goes
//! through the [`Signup`] server function instead, without a page load.

use crate::app::auth::{signup_gate, AlreadySignedIn, ApprovalNote, SignupsClosed};
use crate::types::views::{SignupMode, SignupView};
use crate::types::AppError;
use leptos::form::FromFormData;
use leptos::prelude::*;

/// The outcome of a no-JavaScript form submission, provided as context by
/// the server when it renders the page for `POST /signup`.
#[derive(Debug, Clone)]
pub struct FormSignupOutcome(pub Result<SignupView, AppError>);

/// Signs a customer up (source `direct`) from the signup form: see
/// `server::signup::signup` (same answer for new and registered addresses;
/// no key in it).
///
/// Errors: [`AppError::Validation`] for a malformed email or name,
/// [`AppError::Conflict`] while signups are closed, [`AppError::Internal`]
/// on server failure.
#[server(endpoint = "signup")]
pub async fn signup(email: String, name: String) -> Result<SignupView, AppError> {
    let state = use_context::<crate::server::state::AppState>().ok_or(AppError::Internal)?;
    crate::server::signup::signup(&state, &email, &name)
        .await
        .inspect_err(crate::app::server_errors::set_error_status)
}

/// `/` and `/signup`: what RSOLV is, beside the [`SignupCard`].
#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <leptos_meta::Title text="RSOLV · Automated security fixes for your repositories" />
        <div class="grid gap-10 md:grid-cols-2">
            <section>
                <h1 class="text-3xl font-bold tracking-tight sm:text-4xl">"Security fixes, opened as pull requests."</h1>
                <p class="mt-4 text-lg text-slate-700 dark:text-slate-300">
                    "The RSOLV GitHub Action finds vulnerabilities, proves them with a failing test and opens a pull request with the fix. "
                    "Your first 5 fixes are free."
                </p>
                <ul class="mt-6 space-y-2 text-slate-700 dark:text-slate-300">
                    <li>"• One credit pays for one deployed fix, however often it is reported."</li>
                    <li>"• Add a card for pay-as-you-go ($29.00 per fix), or go Pro: $599.00/month with 60 fixes."</li>
                </ul>
            </section>
            <SignupCard form_action="/signup" />
        </div>
    }
}

/// The one way to sign up, on the home page and on `/register`: email and
/// name, then a mailed link to set the password, whose page shows the first
/// API key once. Says instead of the form when the visitor is signed in or
/// signups are closed, and above it when signups wait for approval.
///
/// `form_action`: where the form posts without JavaScript (`/signup` or
/// `/register`: both are `server::http::pages::submit_signup_form`, which
/// renders that page around the outcome); hydrated, it calls [`Signup`].
/// The element carries `data-hydrated` for the end-to-end specs.
#[component]
pub fn SignupCard(form_action: &'static str) -> impl IntoView {
    let from_form: Option<Result<SignupView, AppError>> =
        SharedValue::new(|| use_context::<FormSignupOutcome>().map(|outcome| outcome.0))
            .into_inner();
    let action = ServerAction::<Signup>::new();
    let client_error = RwSignal::new(None::<String>);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    let outcome = move || action.value().get().or_else(|| from_form.clone());
    // Signed in, or signups closed: said instead of the form.
    let gate = signup_gate();
    let pending = action.pending();

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match Signup::from_event(&ev) {
            Ok(args) => {
                client_error.set(None);
                action.dispatch(args);
            }
            Err(_) => client_error.set(Some("Please fill in both fields.".into())),
        }
    };

    view! {
        <section
            class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900"
            data-hydrated=move || hydrated.get().to_string()
        >
            {move || match outcome() {
                Some(Ok(view)) => view! { <SignupSuccess view /> }.into_any(),
                other => {
                    let server_error = match other {
                        Some(Err(error)) => Some(error.to_string()),
                        _ => None,
                    };
                    view! {
                        <Suspense fallback=|| view! { <p class="text-sm">"Loading…"</p> }>
                            {move || {
                                let server_error = server_error.clone();
                                Suspend::new(async move {
                                    match gate.await {
                                        (Ok(Some(user)), _) => view! {
                                            <h2 class="text-xl font-semibold">"Welcome back"</h2>
                                            <AlreadySignedIn user />
                                        }
                                        .into_any(),
                                        (_, Ok(SignupMode::Closed)) => view! {
                                            <h2 class="text-xl font-semibold">"Signups are closed"</h2>
                                            <SignupsClosed />
                                        }
                                        .into_any(),
                                        (_, mode) => view! {
                                            <SignupForm
                                                form_action
                                                on_submit
                                                pending=pending.into()
                                                server_error
                                                client_error=client_error.read_only()
                                                approval=matches!(mode, Ok(SignupMode::Approval))
                                            />
                                        }
                                        .into_any(),
                                    }
                                })
                            }}
                        </Suspense>
                    }
                    .into_any()
                }
            }}
        </section>
    }
}

#[component]
fn SignupForm(
    /// Where the form posts without JavaScript.
    form_action: &'static str,
    on_submit: impl Fn(leptos::ev::SubmitEvent) + 'static,
    pending: Signal<bool>,
    server_error: Option<String>,
    client_error: ReadSignal<Option<String>>,
    /// Signups wait for approval: said above the form.
    approval: bool,
) -> impl IntoView {
    let input_class = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-slate-900 \
                       shadow-sm focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500 \
                       dark:border-slate-700 dark:bg-slate-950 dark:text-slate-100";
    let error = move || client_error.get().or_else(|| server_error.clone());
    view! {
        <h2 class="text-xl font-semibold">"Create your account"</h2>
        <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
            "We email you a link to set your password; that page shows your API key. "
            "Already have an account? " <a href="/login" class="font-semibold underline">"Sign in"</a>
        </p>
        {approval.then(|| view! { <ApprovalNote /> })}
        <form method="post" action=form_action class="mt-4 space-y-4" data-testid="signup-form" on:submit=on_submit novalidate>
            <div>
                <label for="signup-email" class="block text-sm font-medium">"Email"</label>
                <input id="signup-email" name="email" type="email" autocomplete="email" required class=input_class />
            </div>
            <div>
                <label for="signup-name" class="block text-sm font-medium">"Name"</label>
                <input id="signup-name" name="name" type="text" autocomplete="name" required maxlength="200" class=input_class />
            </div>
            {move || error().map(|message| view! {
                <p role="alert" class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">{message}</p>
            })}
            <button
                type="submit"
                class="inline-flex w-full items-center justify-center rounded-md bg-indigo-600 px-4 py-2 font-semibold text-white \
                       hover:bg-indigo-700 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 \
                       disabled:opacity-60"
                disabled=move || pending.get()
                aria-busy=move || pending.get().to_string()
            >
                {move || if pending.get() { "Creating your account…" } else { "Create account" }}
            </button>
        </form>
    }
}

#[component]
fn SignupSuccess(view: SignupView) -> impl IntoView {
    if view.pending_approval {
        return view! {
            <h2 class="text-xl font-semibold">"Thanks, your signup is waiting for approval"</h2>
            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300" role="status" data-testid="signup-pending">
                "We will email " <span class="font-medium">{view.email.clone()}</span>
                " as soon as your account is approved, with a link to set your password."
            </p>
        }
        .into_any();
    }
    view! {
        <h2 class="text-xl font-semibold">"Check your email"</h2>
        <div class="mt-2 space-y-3 text-sm text-slate-700 dark:text-slate-300" role="status" data-testid="signup-check-email">
            <p>
                "We sent an email to " <span class="font-medium break-all">{view.email.clone()}</span>
                " with a link to set your password. It expires in 7 days."
            </p>
            <p>
                "After you set it, that page shows your API key, once: store it as the "
                <code class="font-mono">"RSOLV_API_KEY"</code>
                " secret of the repository that runs the RSOLV Action. Your first 5 fixes are free."
            </p>
            <p>
                "If this address already has an account, the email says so instead, with a link to sign in. "
                "Nothing arrived? Check your spam folder, or "
                <a href="/forgot-password" class="font-semibold underline">"ask for a new link"</a>
                "."
            </p>
        </div>
    }
    .into_any()
}
