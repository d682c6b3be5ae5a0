//! `/credits?kind=&page=`: the credit ledger, newest first, with the fix
//! each debit paid for, a kind filter (a plain GET form, so it works
//! without JavaScript), pagination links and the CSV export.

use super::api::get_ledger;
use super::{
    kind_label, short_time, LoadError, Loading, PortalNav, CARD, INPUT, LINK, SECONDARY_BUTTON,
};
use crate::types::portal::{LedgerPageView, LedgerRowView};
use crate::types::urls::safe_href;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The ledger kinds offered by the filter, with their labels.
const KINDS: [&str; 7] = [
    "fix_consumed",
    "signup_bonus",
    "billing_bonus",
    "subscription_grant",
    "purchase",
    "refund",
    "admin_adjustment",
];

/// `/credits?kind=&page=` with the given values (empty ones left out).
fn credits_href(kind: &str, page: i64) -> String {
    let mut params = Vec::new();
    if !kind.is_empty() {
        params.push(format!("kind={kind}"));
    }
    if page > 1 {
        params.push(format!("page={page}"));
    }
    if params.is_empty() {
        "/credits".to_owned()
    } else {
        format!("/credits?{}", params.join("&"))
    }
}

/// The credits page.
#[component]
pub fn CreditsPage() -> impl IntoView {
    let query = use_query_map();
    // Only known kinds are echoed into links; anything else goes to the
    // server, which answers with a validation error.
    let kind = move || query.read().get("kind").unwrap_or_default();
    let page = move || {
        query
            .read()
            .get("page")
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(1)
            .max(1)
    };
    let ledger = Resource::new(
        move || (kind(), page()),
        |(kind, page)| get_ledger((!kind.is_empty()).then_some(kind), Some(page)),
    );
    view! {
        <Title text="Credits · RSOLV" />
        <PortalNav current="/credits" />
        <div class="flex flex-wrap items-end justify-between gap-4">
            <h1 class="text-2xl font-bold tracking-tight">"Credits"</h1>
            <form method="get" action="/credits" class="flex items-end gap-2" data-testid="kind-filter">
                <div>
                    <label for="kind" class="block text-sm font-medium">"Show"</label>
                    <select id="kind" name="kind" class=INPUT>
                        <option value="" selected=move || kind().is_empty()>"All entries"</option>
                        {KINDS
                            .into_iter()
                            .map(|k| view! {
                                <option value=k selected=move || kind() == k>{kind_label(k)}</option>
                            })
                            .collect_view()}
                    </select>
                </div>
                <button type="submit" class=SECONDARY_BUTTON>"Apply"</button>
            </form>
        </div>
        <div class="mt-6">
            <Transition fallback=|| view! { <Loading label="Loading the ledger…" /> }>
                {move || Suspend::new(async move {
                    match ledger.await {
                        Ok(view) => view! { <Ledger view /> }.into_any(),
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

/// One page of the ledger, a pure render of `view`, with the CSV export
/// and page links (under [`ReadOnlyPortal`](super::ReadOnlyPortal): the
/// admin's tab's pages, and no export, a route of the customer's session).
#[component]
pub fn Ledger(view: LedgerPageView) -> impl IntoView {
    let kind = view.kind.clone().unwrap_or_default();
    let pages = view.pages();
    let page = view.page;
    let export = if kind.is_empty() {
        "/credits/export.csv".to_owned()
    } else {
        format!("/credits/export.csv?kind={kind}")
    };
    let summary = format!(
        "{} {} · page {page} of {pages}",
        view.total,
        if view.total == 1 { "entry" } else { "entries" }
    );
    let empty = view.rows.is_empty();
    view! {
        <div class=CARD>
            <div class="flex flex-wrap items-center justify-between gap-2">
                <p class="text-sm text-slate-700 dark:text-slate-300" data-testid="ledger-summary">{summary}</p>
                {(!super::read_only()).then(|| view! {
                    <a href=export rel="external" download="rsolv-credits.csv" class=SECONDARY_BUTTON data-testid="export-csv">
                        "Export CSV"
                    </a>
                })}
            </div>
            {if empty {
                view! {
                    <p class="mt-6 text-slate-700 dark:text-slate-300" data-testid="ledger-empty">
                        {if kind.is_empty() {
                            "No credit movements yet. Your first fixes will show here."
                        } else {
                            "No entries of this kind."
                        }}
                    </p>
                }
                .into_any()
            } else {
                view! {
                    <div class="relative mt-4 overflow-x-auto" tabindex="0">
                        <table class="w-full min-w-[40rem] text-left text-sm" data-testid="ledger-table">
                            <caption class="sr-only">"Credit ledger, newest first"</caption>
                            <thead>
                                <tr class="border-b border-slate-200 text-slate-600 dark:border-slate-800 dark:text-slate-400">
                                    <th scope="col" class="py-2 pr-4 font-medium">"Date"</th>
                                    <th scope="col" class="py-2 pr-4 font-medium">"What"</th>
                                    <th scope="col" class="py-2 pr-4 font-medium">"Fix"</th>
                                    <th scope="col" class="py-2 pr-4 text-right font-medium">"Amount"</th>
                                    <th scope="col" class="py-2 text-right font-medium">"Balance"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {view.rows.into_iter().map(|row| view! { <LedgerRow row /> }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }
                .into_any()
            }}
            <Pagination kind page pages />
        </div>
    }
}

#[component]
fn LedgerRow(row: LedgerRowView) -> impl IntoView {
    let amount = if row.amount > 0 {
        format!("+{}", row.amount)
    } else {
        format!("−{}", row.amount.unsigned_abs())
    };
    let spoken = if row.amount > 0 {
        format!("plus {}", row.amount)
    } else {
        format!("minus {}", row.amount.unsigned_abs())
    };
    let amount_class = if row.amount > 0 {
        "py-2 pr-4 text-right tabular-nums font-medium text-emerald-800 dark:text-emerald-300"
    } else {
        "py-2 pr-4 text-right tabular-nums font-medium text-slate-900 dark:text-slate-100"
    };
    let fix = row.fix.map(|fix| {
        let repo_url = safe_href(&fix.repository_url());
        let issue = fix.issue_url().as_deref().and_then(safe_href).map(|url| {
            let n = fix.issue_number.unwrap_or_default();
            view! { " · " <a href=url class=LINK rel="external noopener" target="_blank">{format!("issue #{n}")}</a> }
        });
        let pull = fix.pull_url().as_deref().and_then(safe_href).map(|url| {
            let label = fix
                .pr_number
                .map_or_else(|| "pull request".to_owned(), |n| format!("PR #{n}"));
            view! { " · " <a href=url class=LINK rel="external noopener" target="_blank">{label}</a> }
        });
        let repository = fix.repository.clone();
        view! {
            {match repo_url {
                Some(url) => view! { <a href=url class=LINK rel="external noopener" target="_blank">{repository}</a> }.into_any(),
                None => repository.into_any(),
            }}
            {issue}
            {pull}
        }
    });
    view! {
        <tr class="border-b border-slate-100 dark:border-slate-800/60" data-testid="ledger-row">
            <td class="whitespace-nowrap py-2 pr-4">
                <time datetime=row.created_at.clone()>{short_time(&row.created_at)}</time>
            </td>
            <td class="py-2 pr-4">{kind_label(&row.kind)}</td>
            <td class="py-2 pr-4">{fix}</td>
            <td class=amount_class>
                <span class="sr-only">{spoken}</span>
                <span aria-hidden="true">{amount}</span>
            </td>
            <td class="py-2 text-right tabular-nums">{row.balance_after}</td>
        </tr>
    }
}

#[component]
fn Pagination(kind: String, page: i64, pages: i64) -> impl IntoView {
    if pages <= 1 && page <= 1 {
        return ().into_any();
    }
    let prev = (page > 1).then(|| super::portal_href(&credits_href(&kind, (page - 1).min(pages))));
    let next = (page < pages).then(|| super::portal_href(&credits_href(&kind, page + 1)));
    view! {
        <nav aria-label="Ledger pages" class="mt-4 flex items-center justify-between gap-2 text-sm">
            {match prev {
                Some(href) => view! { <a href=href rel="prev" class=SECONDARY_BUTTON>"← Newer"</a> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
            <span class="text-slate-600 dark:text-slate-400">{format!("Page {page} of {pages}")}</span>
            {match next {
                Some(href) => view! { <a href=href rel="next" class=SECONDARY_BUTTON>"Older →"</a> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
        </nav>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs() {
        assert_eq!(credits_href("", 1), "/credits");
        assert_eq!(credits_href("refund", 1), "/credits?kind=refund");
        assert_eq!(credits_href("", 3), "/credits?page=3");
        assert_eq!(credits_href("refund", 2), "/credits?kind=refund&page=2");
    }
}
