//! `/dashboard`: credit balance, plan, whether fixes can run now (with what
//! to do when they cannot) and a 30-day usage chart drawn as inline SVG on
//! the server, with a data table for screen readers and text browsers.

use super::api::{get_dashboard, USAGE_DAYS};
use super::{LoadError, Loading, PortalNav, CARD, LINK};
use crate::types::portal::{DashboardView, UsagePointView};
use leptos::prelude::*;
use leptos_meta::Title;

/// The dashboard page.
#[component]
pub fn DashboardPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_dashboard());
    view! {
        <Title text="Dashboard · RSOLV" />
        <PortalNav current="/dashboard" />
        <h1 class="text-2xl font-bold tracking-tight">"Dashboard"</h1>
        <div class="mt-6">
            <Suspense fallback=|| view! { <Loading label="Loading your dashboard…" /> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(view) => view! { <Dashboard view /> }.into_any(),
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn Dashboard(view: DashboardView) -> impl IntoView {
    let plan = match view.plan.as_str() {
        "trial" => "Trial",
        "payg" => "Pay as you go",
        "pro" => "Pro",
        _ => "Unknown",
    };
    view! {
        <dl class="grid gap-4 sm:grid-cols-3">
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Credits left"</dt>
                <dd class="mt-1 text-3xl font-semibold" data-testid="credit-balance">{view.credit_balance}</dd>
                <dd class="mt-1 text-sm"><a href="/credits" class=LINK>"See the ledger"</a></dd>
            </div>
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Plan"</dt>
                <dd class="mt-1 text-3xl font-semibold" data-testid="plan">{plan}</dd>
                <dd class="mt-1 text-sm text-slate-600 dark:text-slate-400">
                    {if view.has_payment_method { "Card on file" } else { "No card on file" }}
                </dd>
            </div>
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Fixes so far"</dt>
                <dd class="mt-1 text-3xl font-semibold">{view.fixes_total}</dd>
            </div>
        </dl>
        <ServiceState view=view.clone() />
        <super::billing::BillingNotice />
        <section class=format!("mt-6 {CARD}") aria-labelledby="usage-heading">
            <h2 id="usage-heading" class="text-lg font-semibold">{format!("Last {USAGE_DAYS} days")}</h2>
            <UsageChart points=view.usage.clone() />
            <UsageTable points=view.usage />
        </section>
    }
}

/// Whether fixes can run, and the call to action when they cannot.
#[component]
fn ServiceState(view: DashboardView) -> impl IntoView {
    if view.can_use_service {
        return view! {
            <p role="status" data-testid="service-state" class="mt-6 rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-emerald-900 dark:border-emerald-900 dark:bg-emerald-950 dark:text-emerald-100">
                <span class="font-semibold">"Ready: "</span>
                "the RSOLV Action can open fixes for your repositories."
            </p>
        }
        .into_any();
    }
    if view.suspended {
        return view! {
            <div role="alert" data-testid="service-state" class="mt-6 rounded-md border border-red-200 bg-red-50 px-4 py-3 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-100">
                <p class="font-semibold">"Your account is suspended."</p>
                <p class="mt-1">"The Action's calls are refused. Contact support to restore it."</p>
            </div>
        }
        .into_any();
    }
    view! {
        <div role="alert" data-testid="service-state" class="mt-6 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-100">
            <p class="font-semibold">"No credits left: fixes are paused."</p>
            <p class="mt-1">
                "Add a card to pay per fix, or subscribe to Pro, to keep fixing. "
                "Billing in the portal is coming soon; until then, contact support to add credits."
            </p>
        </div>
    }
    .into_any()
}

/// Chart geometry, in SVG user units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 36.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Bars of fixes per day (left axis) and a line of credits left (right
/// axis). Server-rendered SVG; `role="img"` with a title and description.
#[component]
pub fn UsageChart(points: Vec<UsagePointView>) -> impl IntoView {
    let n = points.len().max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_fixes = points.iter().map(|p| p.fixes).max().unwrap_or(0).max(1) as f64;
    let max_credits = points
        .iter()
        .filter_map(|p| p.credits_left)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = plot_w / n;
    let total_fixes: i64 = points.iter().map(|p| p.fixes).sum();
    let last_credits = points.last().and_then(|p| p.credits_left).unwrap_or(0);
    let first_day = points.first().map(|p| p.day.clone()).unwrap_or_default();
    let last_day = points.last().map(|p| p.day.clone()).unwrap_or_default();
    let description = format!(
        "{total_fixes} fixes between {first_day} and {last_day}, at most {} in a day; {last_credits} credits left at the end.",
        max_fixes as i64
    );
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let h = p.fixes as f64 / max_fixes * plot_h;
            let x = LEFT + i as f64 * slot + slot * 0.15;
            view! {
                <rect
                    x=format!("{x:.1}")
                    y=format!("{:.1}", TOP + plot_h - h)
                    width=format!("{:.1}", slot * 0.7)
                    height=format!("{h:.1}")
                    class="fill-indigo-500 dark:fill-indigo-400"
                >
                    <title>{format!("{}: {} fixes", p.day, p.fixes)}</title>
                </rect>
            }
        })
        .collect_view();
    let line = points
        .iter()
        .enumerate()
        // Days before the account existed have no balance: the line starts
        // at signup instead of drawing a fictitious zero.
        .filter_map(|(i, p)| {
            let credits = p.credits_left?;
            let x = LEFT + (i as f64 + 0.5) * slot;
            let y = TOP + plot_h - credits as f64 / max_credits * plot_h;
            Some(format!("{x:.1},{y:.1}"))
        })
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <figure class="mt-4">
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                class="h-auto w-full text-slate-600 dark:text-slate-400"
                role="img"
                aria-labelledby="usage-title usage-desc"
                data-testid="usage-chart"
            >
                <title id="usage-title">"Fixes per day and credits left"</title>
                <desc id="usage-desc">{description}</desc>
                <line x1=LEFT y1=TOP + plot_h x2=WIDTH - RIGHT y2=TOP + plot_h class="stroke-slate-300 dark:stroke-slate-700" />
                <text x=LEFT - 6.0 y=TOP + 10.0 text-anchor="end" class="fill-current text-[10px]">{max_fixes as i64}</text>
                <text x=LEFT - 6.0 y=TOP + plot_h text-anchor="end" class="fill-current text-[10px]">"0"</text>
                <text x=WIDTH - RIGHT + 6.0 y=TOP + 10.0 class="fill-current text-[10px]">{max_credits as i64}</text>
                <text x=LEFT y=HEIGHT - 8.0 class="fill-current text-[10px]">{first_day}</text>
                <text x=WIDTH - RIGHT y=HEIGHT - 8.0 text-anchor="end" class="fill-current text-[10px]">{last_day}</text>
                {bars}
                <polyline points=line fill="none" stroke-width="2" class="stroke-emerald-600 dark:stroke-emerald-400" />
            </svg>
            <figcaption class="mt-2 flex flex-wrap gap-4 text-sm text-slate-700 dark:text-slate-300">
                <span class="inline-flex items-center gap-2">
                    <span aria-hidden="true" class="inline-block h-3 w-3 rounded-sm bg-indigo-500 dark:bg-indigo-400"></span>
                    "Fixes per day (left scale)"
                </span>
                <span class="inline-flex items-center gap-2">
                    <span aria-hidden="true" class="inline-block h-0.5 w-4 bg-emerald-600 dark:bg-emerald-400"></span>
                    "Credits left (right scale)"
                </span>
            </figcaption>
        </figure>
    }
}

/// The chart's numbers as a table, in a disclosure.
#[component]
fn UsageTable(points: Vec<UsagePointView>) -> impl IntoView {
    view! {
        <details class="mt-4">
            <summary class="cursor-pointer rounded text-sm font-medium focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500">
                "Show the numbers"
            </summary>
            <div class="mt-2 max-h-80 overflow-y-auto">
                <table class="w-full text-left text-sm" data-testid="usage-table">
                    <caption class="sr-only">"Fixes and credits left per day"</caption>
                    <thead>
                        <tr class="border-b border-slate-200 dark:border-slate-800">
                            <th scope="col" class="py-1 pr-4">"Day (UTC)"</th>
                            <th scope="col" class="py-1 pr-4 text-right">"Fixes"</th>
                            <th scope="col" class="py-1 text-right">"Credits left"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {points
                            .into_iter()
                            .rev()
                            .map(|p| view! {
                                <tr class="border-b border-slate-100 dark:border-slate-800/60">
                                    <th scope="row" class="py-1 pr-4 font-normal">{p.day}</th>
                                    <td class="py-1 pr-4 text-right tabular-nums">{p.fixes}</td>
                                    <td class="py-1 text-right tabular-nums">
                                        {p.credits_left.map_or_else(|| "—".to_owned(), |c| c.to_string())}
                                    </td>
                                </tr>
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
        </details>
    }
}
