//! `/ai-usage`: the signed-in customer's AI gateway usage over the last
//! [`AI_USAGE_DAYS`] days, per day (measured beside what the Action
//! reported) and per day, API key, provider and model, with the account's
//! budget and today's use. Server-rendered whole (no JavaScript needed).

use super::api::{get_ai_usage, AI_USAGE_DAYS};
use super::{LoadError, Loading, PortalNav, CARD, TABLE, TD, TH};
use crate::types::ai::{group_digits, AiBudgetView, AiDayView, AiKeyUsageView, AiUsageView};
use leptos::prelude::*;
use leptos_meta::Title;

/// The AI usage page.
#[component]
pub fn AiUsagePage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_ai_usage());
    view! {
        <Title text="AI usage · RSOLV" />
        <PortalNav current="/ai-usage" />
        <h1 class="text-2xl font-bold tracking-tight">"AI usage"</h1>
        <p class="mt-1 text-slate-700 dark:text-slate-300">
            {format!(
                "The AI calls the RSOLV Action made through the platform's gateway in the last {AI_USAGE_DAYS} days, \
                 with the tokens the providers reported. Days are UTC."
            )}
        </p>
        <div class="mt-6">
            <Suspense fallback=|| view! { <Loading label="Loading your AI usage…" /> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(view) => view! { <AiUsage view /> }.into_any(),
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn AiUsage(view: AiUsageView) -> impl IntoView {
    let empty = view.by_day.iter().all(|d| d.calls == 0) && view.by_key.is_empty();
    view! {
        <BudgetCard budget=view.budget.clone() />
        {if empty {
            view! {
                <section class=format!("mt-6 {CARD}") data-testid="ai-usage-empty" aria-labelledby="ai-empty-title">
                    <h2 id="ai-empty-title" class="text-lg font-semibold">"No AI calls yet"</h2>
                    <p class="mt-2 text-slate-700 dark:text-slate-300">
                        "No AI calls yet: the Action's AI calls go through "
                        <code class="font-mono text-sm">"RSOLV_AI_BASE_URL"</code>
                        ". Set it to "
                        <code class="font-mono text-sm" data-testid="ai-gateway-url">{view.gateway_url.clone()}</code>
                        " in the workflow that runs the Action; its calls and tokens then show here."
                    </p>
                </section>
            }
            .into_any()
        } else {
            view! {
                <section class=format!("relative mt-6 overflow-x-auto {CARD}") tabindex="0" aria-labelledby="ai-days-title">
                    <h2 id="ai-days-title" class="mb-2 text-lg font-semibold">"Per day"</h2>
                    <DayTable days=view.by_day.clone() />
                </section>
                <KeyTable rows=view.by_key.clone() />
            }
            .into_any()
        }}
    }
}

/// A limit as people read it: `0` is no limit.
pub(crate) fn limit_label(n: i64, unit: &str) -> String {
    if n == 0 {
        "no limit".to_owned()
    } else {
        format!("{} {unit}", group_digits(n))
    }
}

/// The budget in force and today's use.
#[component]
pub(crate) fn BudgetCard(budget: AiBudgetView) -> impl IntoView {
    let source = |set: bool| {
        if set {
            "set for this account"
        } else {
            "default"
        }
    };
    let left = budget.left_today();
    view! {
        <dl class="grid gap-4 sm:grid-cols-3" data-testid="ai-budget">
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Daily token budget"</dt>
                <dd class="mt-1 text-2xl font-semibold tabular-nums" data-testid="ai-daily-budget">
                    {limit_label(budget.daily_tokens, "tokens")}
                </dd>
                <dd class="mt-1 text-sm text-slate-600 dark:text-slate-400">
                    {format!("{}; resets at 00:00 UTC", source(budget.daily_tokens_set))}
                </dd>
            </div>
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Used today"</dt>
                <dd class="mt-1 text-2xl font-semibold tabular-nums" data-testid="ai-used-today">
                    {format!("{} tokens", group_digits(budget.used_today))}
                </dd>
                <dd class="mt-1 text-sm text-slate-600 dark:text-slate-400">
                    {match left {
                        Some(0) => "Budget used up: calls get 429 until 00:00 UTC".to_owned(),
                        Some(n) => format!("{} tokens left today", group_digits(n)),
                        None => "No daily limit".to_owned(),
                    }}
                </dd>
            </div>
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Calls at once"</dt>
                <dd class="mt-1 text-2xl font-semibold tabular-nums" data-testid="ai-max-concurrent">
                    {if budget.max_concurrent == 0 {
                        "no limit".to_owned()
                    } else {
                        format!("at most {}", group_digits(i64::from(budget.max_concurrent)))
                    }}
                </dd>
                <dd class="mt-1 text-sm text-slate-600 dark:text-slate-400">{source(budget.max_concurrent_set)}</dd>
            </div>
        </dl>
    }
}

/// Calls and tokens per day: a table, or a line saying there were none.
#[component]
pub(crate) fn DayTable(days: Vec<AiDayView>) -> impl IntoView {
    if days.is_empty() {
        return view! { <p class="text-sm text-slate-700 dark:text-slate-300">"No AI calls in this period."</p> }.into_any();
    }
    view! {
        <table class=TABLE data-testid="ai-days-table">
            <caption class="sr-only">"AI calls and tokens per day"</caption>
            <thead><tr>
                <th scope="col" class=TH>"Day (UTC)"</th>
                <th scope="col" class=format!("{TH} text-right")>"Calls"</th>
                <th scope="col" class=format!("{TH} text-right")>"Tokens measured"</th>
                <th scope="col" class=format!("{TH} text-right")>"Tokens reported by the Action"</th>
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {days.into_iter().map(|d| view! {
                    <tr data-testid="ai-day-row">
                        <th scope="row" class=format!("{TD} font-normal")>{d.day}</th>
                        <td class=format!("{TD} text-right tabular-nums")>{group_digits(d.calls)}</td>
                        <td class=format!("{TD} text-right tabular-nums")>{group_digits(d.measured_tokens)}</td>
                        <td class=format!("{TD} text-right tabular-nums")>{group_digits(d.claimed_tokens)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Calls and tokens per day, API key, provider and model.
#[component]
fn KeyTable(rows: Vec<AiKeyUsageView>) -> impl IntoView {
    view! {
        <section class=format!("relative mt-6 overflow-x-auto {CARD}") tabindex="0" aria-labelledby="ai-keys-title">
            <h2 id="ai-keys-title" class="mb-2 text-lg font-semibold">"Per API key and model"</h2>
            <p class="mb-2 text-sm text-slate-700 dark:text-slate-300">
                "Each run of the Action exchanges its API key for short-lived virtual keys, one per provider; "
                "the calls are counted under the API key that obtained them."
            </p>
            {if rows.is_empty() {
                view! { <p class="text-sm text-slate-700 dark:text-slate-300">"No AI calls in this period."</p> }.into_any()
            } else {
                view! {
                    <table class=TABLE data-testid="ai-keys-table">
                        <caption class="sr-only">"AI calls and tokens per day, API key, provider and model"</caption>
                        <thead><tr>
                            <th scope="col" class=TH>"Day (UTC)"</th>
                            <th scope="col" class=TH>"API key"</th>
                            <th scope="col" class=TH>"Provider"</th>
                            <th scope="col" class=TH>"Model"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Virtual keys"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Calls"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Input tokens"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Output tokens"</th>
                        </tr></thead>
                        <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                            {rows.into_iter().map(|r| view! {
                                <tr data-testid="ai-key-row">
                                    <td class=TD>{r.day}</td>
                                    <td class=TD>
                                        {r.api_key_name}
                                        <span class="ml-1 font-mono text-xs text-slate-600 dark:text-slate-400">{format!("{}…", r.api_key_prefix)}</span>
                                    </td>
                                    <td class=TD>{r.provider}</td>
                                    <td class=format!("{TD} font-mono text-xs")>{r.model}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.virtual_keys)}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.calls)}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.input_tokens)}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.output_tokens)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}
