//! The customer portal: `/dashboard`, `/credits`, `/keys`, `/billing`
//! (with `/billing/authenticate`) and `/ai-usage`, each in its own file, their server functions in [`api`]
//! (billing's in [`billing_api`]). A signed-out visit is redirected to
//! `/login?next=<page>` before the page renders (`server::auth::lifetime`);
//! a session that ends while a page is open shows its "please sign in"
//! state. Every page works before hydration (forms are `ActionForm`s or
//! plain GET forms).

pub mod ai_usage;
pub mod api;
pub mod authenticate;
pub mod billing;
pub mod billing_api;
pub mod credits;
pub mod dashboard;
pub mod keys;

use crate::types::AppError;
use leptos::prelude::*;

/// Classes of a card.
pub(crate) const CARD: &str =
    "rounded-xl border border-slate-200 bg-white p-5 shadow-sm dark:border-slate-800 dark:bg-slate-900";

/// Classes of a primary button.
pub(crate) const BUTTON: &str = "inline-flex items-center justify-center rounded-md bg-indigo-600 px-4 py-2 text-sm \
     font-semibold text-white hover:bg-indigo-700 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 \
     focus-visible:ring-offset-2 disabled:opacity-60 dark:focus-visible:ring-offset-slate-900";

/// Classes of a destructive button.
pub(crate) const DANGER_BUTTON: &str = "inline-flex items-center justify-center rounded-md bg-red-700 px-4 py-2 text-sm \
     font-semibold text-white hover:bg-red-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-red-500 \
     focus-visible:ring-offset-2 disabled:opacity-60 dark:focus-visible:ring-offset-slate-900";

/// Classes of a secondary button or button-like link.
pub(crate) const SECONDARY_BUTTON: &str = "inline-flex items-center justify-center rounded-md border border-slate-300 \
     px-3 py-2 text-sm font-medium text-slate-800 hover:bg-slate-100 focus:outline-none focus-visible:ring-2 \
     focus-visible:ring-indigo-500 dark:border-slate-700 dark:text-slate-100 dark:hover:bg-slate-800";

/// Classes of a text link.
pub(crate) const LINK: &str =
    "text-indigo-700 underline hover:text-indigo-900 focus:outline-none focus-visible:ring-2 \
     focus-visible:ring-indigo-500 dark:text-indigo-300 dark:hover:text-indigo-200";

/// Classes of a text input or select.
pub(crate) const INPUT: &str =
    "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-slate-900 \
     shadow-sm focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500 \
     dark:border-slate-700 dark:bg-slate-950 dark:text-slate-100";

/// Classes of a dense table.
pub(crate) const TABLE: &str = "min-w-full divide-y divide-slate-200 text-sm dark:divide-slate-800";
/// Classes of a table header cell.
pub(crate) const TH: &str = "whitespace-nowrap px-2 py-2 text-left text-xs font-semibold uppercase tracking-wide text-slate-600 dark:text-slate-400";
/// Classes of a table cell.
pub(crate) const TD: &str = "whitespace-nowrap px-2 py-1.5 align-top";

/// The portal's section links; `current` is the page's path.
#[component]
pub fn PortalNav(current: &'static str) -> impl IntoView {
    let links = [
        ("/dashboard", "Dashboard"),
        ("/credits", "Credits"),
        ("/keys", "API keys"),
        ("/billing", "Billing"),
        ("/ai-usage", "AI usage"),
    ];
    view! { <crate::app::SectionNav label="Account" links=links.to_vec() current=current /> }
}

/// Provided as context by the admin console's read-only view of a
/// customer's portal (`/admin/customers/:id/portal…`): the portal's pure
/// components then link to that view's tabs ([`portal_href`]) and leave
/// out every form, button and link that acts ([`read_only`]). Absent on
/// the customer's own pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOnlyPortal {
    /// The customer being viewed.
    pub customer_id: i64,
}

impl ReadOnlyPortal {
    /// The admin's read-only tab for the portal page `path` (with any
    /// query): `/dashboard`, `/billing` and `/billing/history`, `/keys`,
    /// `/credits?…` (its `page` kept); another path as it is.
    pub fn href(self, path: &str) -> String {
        use crate::types::admin::PortalSection;
        let (page, query) = path.split_once('?').unwrap_or((path, ""));
        let section = match page {
            "/dashboard" => PortalSection::Dashboard,
            "/billing" | "/billing/history" => PortalSection::Billing,
            "/keys" => PortalSection::Keys,
            "/credits" => PortalSection::Credits,
            _ => return path.to_owned(),
        };
        let base = section.admin_path(self.customer_id);
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| section == PortalSection::Credits && pair.starts_with("page="))
            .collect();
        if kept.is_empty() {
            base
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    }
}

/// `path`, a portal page, as the current viewer reaches it: itself on the
/// customer's own pages, the admin's read-only tab under [`ReadOnlyPortal`].
pub fn portal_href(path: &str) -> String {
    match use_context::<ReadOnlyPortal>() {
        Some(viewer) => viewer.href(path),
        None => path.to_owned(),
    }
}

/// Whether the portal is being rendered read-only for an admin
/// ([`ReadOnlyPortal`] in context).
pub fn read_only() -> bool {
    use_context::<ReadOnlyPortal>().is_some()
}

/// What a page shows instead of its content when loading it failed:
/// a sign-in prompt for [`AppError::Unauthorized`] (leading back to this
/// page), else an alert.
///
/// A signed-out request for a portal page is redirected to sign in before
/// it renders (`server::auth::lifetime`); the prompt shows only when the
/// session ended while the page was open (client-side navigation, or a
/// form posted after sign-out).
#[component]
pub fn LoadError(error: AppError) -> impl IntoView {
    match error {
        AppError::Unauthorized => {
            let location = leptos_router::hooks::use_location();
            let href = move || {
                let (path, search) = (location.pathname.get(), location.search.get());
                let target = if search.is_empty() {
                    path
                } else {
                    format!("{path}?{search}")
                };
                crate::types::urls::sign_in_url(&target)
            };
            view! {
                <div class=CARD data-testid="sign-in-required">
                    <h2 class="text-lg font-semibold">"Please sign in"</h2>
                    <p class="mt-2 text-slate-700 dark:text-slate-300">
                        "Your session has ended. Sign in again to see this page."
                    </p>
                    <p class="mt-4">
                        <a href=href rel="external" class=BUTTON>"Sign in"</a>
                    </p>
                </div>
            }
            .into_any()
        }
        other => view! { <Alert message=other.to_string() /> }.into_any(),
    }
}

/// An error message, announced to screen readers.
#[component]
pub fn Alert(message: String) -> impl IntoView {
    view! {
        <p role="alert" class="rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">
            {message}
        </p>
    }
}

/// A success message, announced politely.
#[component]
pub fn Notice(message: String) -> impl IntoView {
    view! {
        <p role="status" class="rounded-md border border-emerald-200 bg-emerald-50 px-3 py-2 text-sm text-emerald-900 dark:border-emerald-900 dark:bg-emerald-950 dark:text-emerald-100">
            {message}
        </p>
    }
}

/// A placeholder while data loads.
#[component]
pub fn Loading(label: &'static str) -> impl IntoView {
    view! {
        <p role="status" aria-live="polite" class="animate-pulse text-sm text-slate-600 dark:text-slate-400">
            {label}
        </p>
    }
}

/// `2026-11-21T13:05:09Z` → `2026-11-21 13:05 UTC` (other input unchanged).
pub fn short_time(iso: &str) -> String {
    match (iso.get(..10), iso.get(11..16)) {
        (Some(day), Some(time)) if iso.len() >= 16 => format!("{day} {time} UTC"),
        _ => iso.to_owned(),
    }
}

/// A ledger kind as people read it.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "signup_bonus" => "Signup bonus",
        "billing_bonus" => "Billing bonus",
        "subscription_grant" => "Subscription credits",
        "fix_consumed" => "Fix",
        "purchase" => "Purchase",
        "admin_adjustment" => "Adjustment",
        "refund" => "Refund",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_links_lead_to_the_admins_tabs() {
        let viewer = ReadOnlyPortal { customer_id: 7 };
        assert_eq!(viewer.href("/dashboard"), "/admin/customers/7/portal");
        assert_eq!(viewer.href("/billing"), "/admin/customers/7/portal/billing");
        assert_eq!(
            viewer.href("/billing/history"),
            "/admin/customers/7/portal/billing"
        );
        assert_eq!(viewer.href("/keys"), "/admin/customers/7/portal/keys");
        assert_eq!(
            viewer.href("/credits?kind=refund&page=3"),
            "/admin/customers/7/portal/credits?page=3"
        );
        assert_eq!(
            viewer.href("/keys?confirm_revoke=3"),
            "/admin/customers/7/portal/keys"
        );
        assert_eq!(viewer.href("mailto:a@b.example"), "mailto:a@b.example");
        assert_eq!(portal_href("/billing"), "/billing");
    }

    #[test]
    fn times_and_labels() {
        assert_eq!(short_time("2026-11-21T13:05:09Z"), "2026-11-21 13:05 UTC");
        assert_eq!(short_time("soon"), "soon");
        assert_eq!(kind_label("fix_consumed"), "Fix");
    }
}
