//! The Leptos UI: the HTML shell, the router and one module per area.

pub mod admin;
pub mod auth;
pub mod home;
pub mod portal;
#[cfg(feature = "ssr")]
pub mod server_errors;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use leptos_router::SsrMode;

/// The response header through which [`shell`] hands the page's CSP nonce
/// (the one Leptos puts on its inline hydration and resource scripts) to
/// the security-header layer (`server::http::layers::security_headers`),
/// which names it in the Content-Security-Policy and removes this header.
pub const CSP_NONCE_HEADER: &str = "x-rsolv-csp-nonce";

/// The HTML document around the app (server-rendered only). Hands the
/// page's script nonce to the security headers ([`CSP_NONCE_HEADER`]).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let (Some(nonce), Some(response)) = (
            leptos::nonce::use_nonce(),
            use_context::<leptos_axum::ResponseOptions>(),
        ) {
            if let Ok(value) = axum::http::HeaderValue::from_str(&nonce) {
                response
                    .insert_header(axum::http::HeaderName::from_static(CSP_NONCE_HEADER), value);
            }
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HashedStylesheet options=options.clone() id="leptos" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 antialiased dark:bg-slate-950 dark:text-slate-100">
                <App />
            </body>
        </html>
    }
}

/// The application: routes and page chrome.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // `data-app-hydrated="true"` on <main> once the client app runs (effects
    // run only in the browser): the end-to-end specs wait for it before
    // using controls that need JavaScript.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <Title text="RSOLV" />
        <Router>
            <header class="border-b border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900">
                <nav class="mx-auto flex max-w-5xl items-center justify-between px-4 py-3" aria-label="Main">
                    <a href="/" class="text-lg font-semibold tracking-tight focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500">
                        "RSOLV"
                    </a>
                    <span class="hidden text-sm text-slate-600 sm:inline dark:text-slate-400">"Automated security fixes"</span>
                    <auth::AuthNav />
                </nav>
            </header>
            <main class="mx-auto max-w-5xl px-4 py-10" data-app-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=NotFound>
                    // Async: who is signed in and whether signups are open
                    // decide what the page offers, without JavaScript too.
                    <Route path=path!("/") view=home::HomePage ssr=SsrMode::Async />
                    <Route path=path!("/signup") view=home::HomePage ssr=SsrMode::Async />
                    // Async: rendered whole on the server, so the pages' data
                    // shows without JavaScript (out-of-order streaming needs it).
                    <Route path=path!("/dashboard") view=portal::dashboard::DashboardPage ssr=SsrMode::Async />
                    <Route path=path!("/credits") view=portal::credits::CreditsPage ssr=SsrMode::Async />
                    <Route path=path!("/keys") view=portal::keys::KeysPage ssr=SsrMode::Async />
                    <Route path=path!("/billing") view=portal::billing::BillingPage ssr=SsrMode::Async />
                    <Route path=path!("/billing/history") view=portal::billing::BillingHistoryPage ssr=SsrMode::Async />
                    <Route path=path!("/billing/authenticate") view=portal::authenticate::PaymentAuthenticationPage ssr=SsrMode::Async />
                    <Route path=path!("/ai-usage") view=portal::ai_usage::AiUsagePage ssr=SsrMode::Async />
                    // Account pages: Async renders every resource (header nav,
                    // account) in place, so they show
                    // without JavaScript.
                    <Route path=path!("/register") view=auth::register::RegisterPage ssr=SsrMode::Async />
                    <Route path=path!("/confirm-email") view=auth::confirm_email::ConfirmEmailPage ssr=SsrMode::Async />
                    <Route path=path!("/login") view=auth::login::LoginPage ssr=SsrMode::Async />
                    <Route path=path!("/account") view=auth::account::AccountPage ssr=SsrMode::Async />
                    <Route path=path!("/forgot-password") view=auth::forgot_password::ForgotPasswordPage ssr=SsrMode::Async />
                    <Route path=path!("/reset-password") view=auth::reset_password::ResetPasswordPage ssr=SsrMode::Async />
                    // The admin console (staff admins; every server function checks the role).
                    <Route path=path!("/admin/2fa") view=auth::two_factor::TwoFactorPage ssr=SsrMode::Async />
                    <Route path=path!("/admin") view=admin::customers::AdminCustomersPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/customers/:id") view=admin::customer::AdminCustomerPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/customers/:id/portal") view=admin::portal_view::AdminPortalPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/customers/:id/portal/:section") view=admin::portal_view::AdminPortalPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/signups") view=admin::signups::AdminSignupsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/webhooks") view=admin::webhooks::AdminWebhooksPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/webhooks/:source/:id") view=admin::webhooks::AdminEventDetailPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/jobs") view=admin::jobs::AdminJobsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/reconciliation") view=admin::reconciliation::AdminReconciliationPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/emails") view=admin::emails::AdminEmailsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/emails/:id") view=admin::emails::AdminEmailDetailPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/flags") view=admin::flags::AdminFlagsPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/audit") view=admin::audit::AdminAuditPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/admins") view=admin::admins::AdminAdminsPage ssr=SsrMode::Async />
                    <Route path=path!("/accept-invite") view=auth::accept_invite::AcceptInvitePage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}

/// The 404 page.
#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(axum::http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Page not found · RSOLV" />
        <h1 class="text-2xl font-semibold">"Page not found"</h1>
        <p class="mt-2"><a class="text-indigo-700 underline dark:text-indigo-300" href="/">"Back to the home page"</a></p>
    }
}

/// A row of section links (the portal's and the admin console's), `links`
/// as (path, label); the one whose path is `current` is marked
/// `aria-current="page"`. `label` names the `<nav>` landmark.
#[component]
pub fn SectionNav(
    label: &'static str,
    links: Vec<(&'static str, &'static str)>,
    current: &'static str,
) -> impl IntoView {
    view! {
        <nav aria-label=label class="mb-6 flex flex-wrap gap-1 border-b border-slate-200 pb-3 dark:border-slate-800">
            {links
                .into_iter()
                .map(|(href, text)| {
                    let active = href == current;
                    view! {
                        <a
                            href=href
                            aria-current=active.then_some("page")
                            class=if active {
                                "rounded-md bg-indigo-50 px-3 py-1.5 text-sm font-semibold text-indigo-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:bg-indigo-950 dark:text-indigo-200"
                            } else {
                                "rounded-md px-3 py-1.5 text-sm font-medium text-slate-700 hover:bg-slate-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-slate-300 dark:hover:bg-slate-800"
                            }
                        >
                            {text}
                        </a>
                    }
                })
                .collect_view()}
        </nav>
    }
}

/// Copies `text` to the clipboard and records in `copied` whether it worked
/// (`Some(true)` / `Some(false)`). Only the hydrated app can copy: during
/// server rendering this does nothing.
pub fn copy_to_clipboard(text: String, copied: RwSignal<Option<bool>>) {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move {
        let ok = match web_sys::window() {
            Some(window) => {
                let promise = window.navigator().clipboard().write_text(&text);
                wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
            }
            None => false,
        };
        copied.set(Some(ok));
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (text, copied);
}
