//! The admin console under `/admin` (staff admins only; every server
//! function in [`api`] checks the role on the server): customers
//! ([`customers`], [`customer`]), the approval queue ([`signups`]), the
//! Stripe webhook log and GitHub deliveries with each event in full
//! ([`webhooks`]), the email outbox with each email in full ([`emails`]),
//! feature flags with a confirmation step ([`flags`]), the audit log
//! ([`audit`]), staff admins ([`admins`]) and a customer's portal as they
//! see it, read-only and audited ([`portal_view`]). Filters are plain GET forms
//! (shareable URLs, no JavaScript needed); actions are `ActionForm`s.
//! Every table sits in a [`TableScroll`]: it scrolls inside its card and
//! the page itself never scrolls sideways.

pub mod admins;
pub mod api;
pub mod audit;
pub mod customer;
pub mod customers;
pub mod emails;
pub mod flags;
pub mod jobs;
pub mod portal_view;
pub mod reconciliation;
pub mod signups;
pub mod webhooks;

pub(crate) use crate::app::portal::{
    short_time, Alert, LoadError, Loading, Notice, BUTTON, CARD, DANGER_BUTTON, INPUT, LINK,
    SECONDARY_BUTTON, TD, TH,
};
use crate::types::AppError;
use leptos::prelude::*;

/// Classes of an admin table: the width of its scroller, never narrower
/// than 40rem (a narrow window scrolls the table inside its card instead of
/// squeezing its columns; see [`TableScroll`]).
pub(crate) const ADMIN_TABLE: &str =
    "w-full min-w-[40rem] divide-y divide-slate-200 text-sm dark:divide-slate-800";

/// Classes of a cell holding a long identifier (`evt_…`, `pm_…`, an email):
/// cut to 14rem with an ellipsis; put the whole value in `title`.
pub(crate) const TD_ID: &str =
    "whitespace-nowrap px-2 py-1.5 align-top max-w-[14rem] truncate font-mono text-xs";

/// Classes of a cell holding free text (reasons, errors, references):
/// wrapped within 20rem, long words broken.
pub(crate) const TD_TEXT: &str =
    "px-2 py-1.5 align-top min-w-[10rem] max-w-[20rem] whitespace-normal break-words";

/// The scroller around every admin table: the table scrolls sideways
/// inside its card, so the page itself never does (at 1280 px and at
/// 390 px alike).
#[component]
pub fn TableScroll(children: Children) -> impl IntoView {
    view! { <div class="relative max-w-full overflow-x-auto" tabindex="0" data-table-scroll="x">{children()}</div> }
}

/// A labelled block of preformatted text (a payload, an email body):
/// wrapped, scrolled inside a box at most 32rem high, never wider than its
/// card.
#[component]
pub fn PreBlock(title: &'static str, testid: &'static str, text: String) -> impl IntoView {
    view! {
        <section class=format!("{CARD} mt-4 min-w-0") aria-label=title>
            <h2 class="mb-2 font-semibold">{title}</h2>
            <pre
                class="relative max-h-[32rem] overflow-auto whitespace-pre-wrap break-all rounded bg-slate-100 p-3 font-mono text-xs dark:bg-slate-950"
                data-testid=testid
                tabindex="0"
            >
                {text}
            </pre>
        </section>
    }
}

/// Classes of a small button inside a table.
pub(crate) const SMALL_BUTTON: &str =
    "inline-flex items-center rounded border border-slate-300 px-2 py-0.5 text-xs font-medium \
     hover:bg-slate-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 \
     dark:border-slate-700 dark:hover:bg-slate-800";

/// The route's `:id` segment as a number, read reactively: the customer
/// or email the page shows. `0` when it is absent or not a number; the
/// server functions answer "not found" for that id.
pub fn use_id_param() -> impl Fn() -> i64 + Copy + Send + Sync + 'static {
    let params = leptos_router::hooks::use_params_map();
    move || {
        params
            .read()
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    }
}

/// The console's section links; `current` is the section's path.
#[component]
pub fn AdminNav(current: &'static str) -> impl IntoView {
    let links = [
        ("/admin", "Customers"),
        ("/admin/signups", "Approval queue"),
        ("/admin/webhooks", "Webhooks"),
        ("/admin/emails", "Emails"),
        ("/admin/jobs", "Jobs"),
        ("/admin/reconciliation", "Reconciliation"),
        ("/admin/flags", "Flags"),
        ("/admin/audit", "Audit log"),
        ("/admin/admins", "Admins"),
    ];
    view! { <crate::app::SectionNav label="Admin" links=links.to_vec() current=current /> }
}

/// A coloured status word (`active`, `suspended`, `failed`, `sent`, …).
#[component]
pub fn Badge(text: String) -> impl IntoView {
    let tone = match text.as_str() {
        "active" | "processed" | "sent" | "approved" | "done" | "on" | "credit" | "charged" => {
            "bg-emerald-100 text-emerald-900 dark:bg-emerald-950 dark:text-emerald-200"
        }
        "suspended" | "failed" | "dead" | "rejected" | "unpaid" | "revoked" | "past_due"
        | "disputed" => "bg-red-100 text-red-900 dark:bg-red-950 dark:text-red-200",
        "queued" | "sending" | "received" | "pending" | "running" | "expiring" => {
            "bg-amber-100 text-amber-900 dark:bg-amber-950 dark:text-amber-100"
        }
        _ => "bg-slate-100 text-slate-800 dark:bg-slate-800 dark:text-slate-200",
    };
    view! { <span class=format!("inline-block rounded px-1.5 py-0.5 text-xs font-medium {tone}")>{text}</span> }
}

/// "Page N of M" with previous/next links built by `href(page)`.
#[component]
pub fn Pager(page: i64, total: i64, per_page: i64, href: Callback<i64, String>) -> impl IntoView {
    let pages = ((total + per_page - 1) / per_page).max(1);
    view! {
        <nav aria-label="Pages" class="mt-3 flex items-center justify-between text-sm">
            <span class="text-slate-700 dark:text-slate-300" data-testid="pager-summary">
                {format!("{total} in all · page {page} of {pages}")}
            </span>
            <span class="flex gap-2">
                {(page > 1).then(|| view! { <a class=SECONDARY_BUTTON href=href.run(page - 1) rel="prev">"Previous"</a> })}
                {(page < pages).then(|| view! { <a class=SECONDARY_BUTTON href=href.run(page + 1) rel="next">"Next"</a> })}
            </span>
        </nav>
    }
}

/// The outcome of an action: a success notice or an error alert.
#[component]
pub fn ActionOutcome<T, F>(value: F, success: &'static str) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    F: Fn() -> Option<Result<T, AppError>> + Send + Sync + 'static,
{
    move || match value() {
        Some(Ok(_)) => view! { <Notice message=success.to_owned() /> }.into_any(),
        Some(Err(error)) => view! { <Alert message=error.to_string() /> }.into_any(),
        None => ().into_any(),
    }
}

/// `path?k=v&…` from the non-empty pairs (values percent-encoded).
pub fn href_with(path: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `raw` percent-encoded for a query value or a path segment (only
/// unreserved characters are left as they are).
pub(crate) fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_skip_empty_values_and_encode() {
        assert_eq!(href_with("/admin", &[("q", String::new())]), "/admin");
        assert_eq!(
            href_with("/admin", &[("q", "a b&c".into()), ("page", "2".into())]),
            "/admin?q=a%20b%26c&page=2"
        );
    }
}
