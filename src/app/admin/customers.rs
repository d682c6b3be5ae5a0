//! `/admin?q=&plan=&status=&source=&cannot_use_service=&payment_failed=&sort=&page=`:
//! the customer search (a GET form: shareable URLs, no JavaScript needed)
//! and the form that provisions a customer by hand; above them, the
//! customers with the most AI tokens today (nothing at all for a viewer who
//! is not a staff admin: the search's own error is the page's one alert).

use super::api::{admin_ai_top_usage, admin_search_customers, AdminProvisionCustomer};
use super::{
    href_with, AdminNav, Badge, LoadError, Loading, Pager, TableScroll, ADMIN_TABLE, BUTTON, CARD,
    INPUT, LINK, SECONDARY_BUTTON, TD, TD_ID, TH,
};
use crate::types::admin::AdminCustomerPage;
use crate::types::ai::{group_digits, AiCustomerUsageRow};
use crate::types::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

const PARAMS: [&str; 6] = ["q", "plan", "status", "source", "problem", "sort"];

/// The customer search page.
#[component]
pub fn AdminCustomersPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let provision = ServerAction::<AdminProvisionCustomer>::new();
    let found = Resource::new(
        move || (PARAMS.map(get), page(), provision.version().get()),
        |(p, page, _)| {
            let o = |s: &String| (!s.is_empty()).then(|| s.clone());
            admin_search_customers(
                o(&p[0]),
                o(&p[1]),
                o(&p[2]),
                o(&p[3]),
                o(&p[4]),
                o(&p[5]),
                Some(page),
            )
        },
    );
    let select = move |name: &'static str,
                       label: &'static str,
                       options: &'static [(&'static str, &'static str)]| {
        view! {
            <div>
                <label for=format!("f-{name}") class="block text-xs font-medium">{label}</label>
                <select id=format!("f-{name}") name=name class=INPUT>
                    {options
                        .iter()
                        .map(|(value, text)| view! { <option value=*value selected=move || get(name) == *value>{*text}</option> })
                        .collect_view()}
                </select>
            </div>
        }
    };
    view! {
        <Title text="Customers · Admin · RSOLV" />
        <AdminNav current="/admin" />
        <h1 class="text-2xl font-bold tracking-tight">"Customers"</h1>
        <form method="get" action="/admin" class=format!("{CARD} mt-4 grid gap-3 sm:grid-cols-2 lg:grid-cols-4") data-testid="customer-search" role="search">
            <div class="sm:col-span-2">
                <label for="f-q" class="block text-xs font-medium">"Email, name, Stripe id or API-key prefix"</label>
                <input id="f-q" name="q" type="search" class=INPUT prop:value=move || get("q") placeholder="ada@example.com, cus_…, rsolv_Ab…" />
            </div>
            {select("plan", "Plan", &[("", "Any"), ("trial", "Trial"), ("payg", "Pay as you go"), ("pro", "Pro")])}
            {select("status", "Status", &[("", "Any"), ("active", "Active"), ("suspended", "Suspended")])}
            {select("source", "Source", &[("", "Any"), ("direct", "Direct"), ("early_access", "Early access"), ("gh_marketplace", "GitHub Marketplace")])}
            {select("sort", "Sort", &[("", "Newest first"), ("oldest", "Oldest first"), ("email", "Email A–Z"), ("balance_desc", "Balance, largest first"), ("balance_asc", "Balance, smallest first")])}
            {select("problem", "Problem", &[("", "Any"), ("cannot_use_service", "Cannot use service"), ("payment_failed", "Payment failed"), ("disputed", "Disputed")])}
            <div class="flex items-end gap-2">
                <button type="submit" class=BUTTON>"Search"</button>
                <a href="/admin" class=SECONDARY_BUTTON>"Reset"</a>
            </div>
        </form>
        <div class="mt-4">
            <Transition fallback=|| view! { <Loading label="Loading customers…" /> }>
                {move || Suspend::new(async move {
                    match found.await {
                        Ok(list) => {
                            let params: Vec<(&'static str, String)> = PARAMS.iter().map(|k| (*k, get(k))).collect();
                            let disputes = list.open_disputes;
                            view! {
                                {(disputes > 0).then(|| view! {
                                    <div role="alert" data-testid="disputes-notice" class="mb-4 rounded-lg border border-red-300 bg-red-50 p-3 text-sm text-red-900 dark:border-red-800 dark:bg-red-950 dark:text-red-200">
                                        {format!("{disputes} customer(s) with an open payment dispute: answer it in the Stripe Dashboard before its due date. ")}
                                        <a class=LINK href="/admin?problem=disputed">"Show them"</a>
                                    </div>
                                })}
                                <CustomerTable list params />
                            }.into_any()
                        }
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
        <TopAiUsage />
        <ProvisionForm action=provision />
    }
}

/// "Top AI usage today": the customers with the most tokens measured since
/// 00:00 UTC, linking to their pages. Renders nothing for a viewer who is
/// not a staff admin (the search above already says so, in the page's only
/// alert), and a plain line, not a second alert, for another failure.
#[component]
fn TopAiUsage() -> impl IntoView {
    let top = Resource::new(|| (), |_| admin_ai_top_usage());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match top.await {
                    Ok(rows) => view! { <TopAiTable rows /> }.into_any(),
                    Err(AppError::Unauthorized | AppError::Forbidden) => ().into_any(),
                    Err(error) => view! {
                        <p class="mt-8 text-sm text-slate-700 dark:text-slate-300">
                            {format!("Top AI usage today could not be loaded: {error}")}
                        </p>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn TopAiTable(rows: Vec<AiCustomerUsageRow>) -> impl IntoView {
    view! {
        <section class=format!("{CARD} mt-8 min-w-0") aria-labelledby="ai-top-title" data-testid="ai-top-usage">
            <h2 id="ai-top-title" class="text-lg font-semibold">"Top AI usage today"</h2>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
                "Tokens the AI gateway measured since 00:00 UTC, most first. Budgets are set on each customer's page."
            </p>
            {if rows.is_empty() {
                view! { <p class="mt-3 text-sm text-slate-700 dark:text-slate-300">"No AI calls today."</p> }.into_any()
            } else {
                view! {
                    <TableScroll><table class=format!("{ADMIN_TABLE} mt-3") data-testid="ai-top-table">
                        <thead><tr>
                            <th scope="col" class=TH>"Customer"</th>
                            <th scope="col" class=TH>"Email"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Calls"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Input tokens"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Output tokens"</th>
                            <th scope="col" class=format!("{TH} text-right")>"Total tokens"</th>
                        </tr></thead>
                        <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                            {rows.into_iter().map(|r| view! {
                                <tr data-testid="ai-top-row">
                                    <td class=TD><a class=LINK href=format!("/admin/customers/{}", r.customer_id)>{format!("Customer {}", r.customer_id)}</a></td>
                                    <td class=format!("{TD} max-w-[16rem] truncate") title=r.email.clone()>{r.email.clone()}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.calls)}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.input_tokens)}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.output_tokens)}</td>
                                    <td class=format!("{TD} text-right tabular-nums")>{group_digits(r.input_tokens.saturating_add(r.output_tokens))}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table></TableScroll>
                }
                .into_any()
            }}
        </section>
    }
}

#[component]
fn CustomerTable(list: AdminCustomerPage, params: Vec<(&'static str, String)>) -> impl IntoView {
    let href = Callback::new(move |page: i64| {
        let mut p = params.clone();
        p.push(("page", page.to_string()));
        href_with("/admin", &p)
    });
    if list.rows.is_empty() {
        return view! {
            <div class=CARD data-testid="customers-empty">
                <p class="text-slate-700 dark:text-slate-300">"No customer matches these filters."</p>
            </div>
        }
        .into_any();
    }
    view! {
        <div class=format!("{CARD} overflow-hidden p-0")>
            <TableScroll><table class=ADMIN_TABLE data-testid="customers-table">
                <thead>
                    <tr>
                        <th scope="col" class=TH>"Id"</th>
                        <th scope="col" class=TH>"Customer"</th>
                        <th scope="col" class=TH>"Plan"</th>
                        <th scope="col" class=TH>"Status"</th>
                        <th scope="col" class=TH>"Source"</th>
                        <th scope="col" class=format!("{TH} text-right")>"Balance"</th>
                        <th scope="col" class=TH>"Stripe"</th>
                        <th scope="col" class=TH>"Service"</th>
                        <th scope="col" class=TH>"Created"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                    {list
                        .rows
                        .into_iter()
                        .map(|c| view! {
                            <tr data-testid="customer-row">
                                <td class=TD>{c.id}</td>
                                <td class=format!("{TD} max-w-[16rem] truncate") title=c.email.clone()>
                                    <a class=LINK href=format!("/admin/customers/{}", c.id)>{c.email.clone()}</a>
                                    <div class="truncate text-xs text-slate-600 dark:text-slate-400">{c.name.clone()}</div>
                                </td>
                                <td class=TD>{c.plan.clone()}</td>
                                <td class=TD>
                                    <Badge text=c.status.clone() />
                                    {c.disputed_at.is_some().then(|| view! { <Badge text="disputed".to_owned() /> })}
                                </td>
                                <td class=TD>{c.source.clone()}</td>
                                <td class=format!("{TD} text-right tabular-nums")>{c.credit_balance}</td>
                                <td class=TD_ID title=c.stripe_customer_id.clone().unwrap_or_default()>{c.stripe_customer_id.clone().unwrap_or_else(|| "—".into())}</td>
                                <td class=TD>
                                    {if c.can_use_service {
                                        view! { <Badge text="ok".to_owned() /> }.into_any()
                                    } else {
                                        view! { <Badge text="blocked".to_owned() /> }.into_any()
                                    }}
                                </td>
                                <td class=TD>{c.created_at.get(..10).unwrap_or_default().to_owned()}</td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table></TableScroll>
        </div>
        <Pager page=list.page total=list.total per_page=list.per_page href />
    }
    .into_any()
}

#[component]
fn ProvisionForm(action: ServerAction<AdminProvisionCustomer>) -> impl IntoView {
    let value = action.value();
    view! {
        <section class=format!("{CARD} mt-8") aria-labelledby="provision-title">
            <h2 id="provision-title" class="text-lg font-semibold">"Provision a customer"</h2>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
                "Creates the account with the signup bonus and a first API key; the owner receives an invite email to set a password."
            </p>
            <ActionForm action=action>
                <div class="mt-4 grid gap-3 sm:grid-cols-2 lg:grid-cols-4" data-testid="provision-form">
                    <div>
                        <label for="p-email" class="block text-sm font-medium">"Email"</label>
                        <input id="p-email" name="email" type="email" required class=INPUT autocomplete="off" />
                    </div>
                    <div>
                        <label for="p-name" class="block text-sm font-medium">"Name"</label>
                        <input id="p-name" name="name" type="text" required maxlength="200" class=INPUT autocomplete="off" />
                    </div>
                    <div>
                        <label for="p-source" class="block text-sm font-medium">"Source"</label>
                        <select id="p-source" name="source" class=INPUT>
                            <option value="early_access">"Early access"</option>
                            <option value="direct">"Direct"</option>
                        </select>
                    </div>
                    <div>
                        <label for="p-credits" class="block text-sm font-medium">"Starting credits (optional)"</label>
                        <input id="p-credits" name="starting_credits" type="number" min="0" step="1" class=INPUT />
                    </div>
                </div>
                <div class="mt-4 flex items-center gap-3">
                    <button type="submit" class=BUTTON disabled=move || action.pending().get()>
                        {move || if action.pending().get() { "Provisioning…" } else { "Provision and invite" }}
                    </button>
                </div>
            </ActionForm>
            <div class="mt-3" aria-live="polite">
                {move || match value.get() {
                    Some(Ok(id)) => view! {
                        <p role="status" class="text-sm">
                            "Customer provisioned and invited. "
                            <a class=LINK href=format!("/admin/customers/{id}")>"Open customer " {id}</a>
                        </p>
                    }
                    .into_any(),
                    Some(Err(error)) => view! { <super::Alert message=error.to_string() /> }.into_any(),
                    None => ().into_any(),
                }}
            </div>
        </section>
    }
}
