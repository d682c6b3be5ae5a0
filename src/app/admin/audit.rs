//! `/admin/audit?customer_id=&action=&page=`: the append-only audit log of
//! every admin action (who, when, what, before and after).

use super::api::admin_list_audit;
use super::{
    href_with, short_time, AdminNav, LoadError, Loading, Pager, TableScroll, ADMIN_TABLE, CARD,
    INPUT, LINK, SECONDARY_BUTTON, TD, TD_TEXT, TH,
};
use crate::types::admin::AdminAuditRow;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The audit log page.
#[component]
pub fn AdminAuditPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let entries = Resource::new(
        move || (get("customer_id"), get("action"), page()),
        |(customer, action, page)| {
            admin_list_audit(
                customer.trim().parse::<i64>().ok(),
                (!action.is_empty()).then_some(action),
                Some(page),
            )
        },
    );
    view! {
        <Title text="Audit log · Admin · RSOLV" />
        <AdminNav current="/admin/audit" />
        <h1 class="text-2xl font-bold tracking-tight">"Audit log"</h1>
        <form method="get" action="/admin/audit" class=format!("{CARD} mt-4 flex flex-wrap items-end gap-3") role="search">
            <div>
                <label for="au-customer" class="block text-xs font-medium">"Customer id"</label>
                <input id="au-customer" name="customer_id" type="number" class=INPUT prop:value=move || get("customer_id") />
            </div>
            <div>
                <label for="au-action" class="block text-xs font-medium">"Action"</label>
                <select id="au-action" name="action" class=INPUT>
                    {["", "credits.adjust", "customer.provision", "customer.suspend", "customer.reactivate", "api_key.revoke",
                      "stripe_event.replay", "email.resend", "flag.set", "signup.approve", "signup.reject", "admin.create"]
                        .into_iter()
                        .map(|a| view! { <option value=a selected=move || get("action") == a>{if a.is_empty() { "Any" } else { a }}</option> })
                        .collect_view()}
                </select>
            </div>
            <button type="submit" class=SECONDARY_BUTTON>"Filter"</button>
        </form>
        <Transition fallback=|| view! { <Loading label="Loading the audit log…" /> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Ok(list) => {
                        let (customer, action) = (get("customer_id"), get("action"));
                        let href = Callback::new(move |p: i64| href_with("/admin/audit", &[("customer_id", customer.clone()), ("action", action.clone()), ("page", p.to_string())]));
                        view! {
                            <div class=format!("{CARD} mt-4 overflow-hidden p-0")><AuditTable rows=list.rows.clone() /></div>
                            <Pager page=list.page total=list.total per_page=list.per_page href />
                        }
                        .into_any()
                    }
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// A table of audit entries.
#[component]
pub fn AuditTable(rows: Vec<AdminAuditRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="p-3 text-sm text-slate-700 dark:text-slate-300">"No entries."</p> }.into_any();
    }
    view! {
        <TableScroll><table class=ADMIN_TABLE data-testid="audit-table">
            <thead><tr>
                <th scope="col" class=TH>"When"</th><th scope="col" class=TH>"Who"</th><th scope="col" class=TH>"Action"</th>
                <th scope="col" class=TH>"Target"</th><th scope="col" class=TH>"Reason"</th><th scope="col" class=TH>"Before"</th><th scope="col" class=TH>"After"</th>
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {rows.into_iter().map(|a| view! {
                    <tr data-testid="audit-row">
                        <td class=TD>{short_time(&a.created_at)}</td>
                        <td class=format!("{TD} max-w-[12rem] truncate") title=a.actor_email.clone()>{a.actor_email.clone()}</td>
                        <td class=format!("{TD} font-mono text-xs")>{a.action.clone()}</td>
                        <td class=TD>
                            {match a.customer_id {
                                Some(cid) => view! { <a class=LINK href=format!("/admin/customers/{cid}")>{format!("{} {}", a.target_type, a.target_id.clone().unwrap_or_default())}</a> }.into_any(),
                                None => format!("{} {}", a.target_type, a.target_id.clone().unwrap_or_default()).into_any(),
                            }}
                        </td>
                        <td class=TD_TEXT>{a.reason.clone().unwrap_or_default()}</td>
                        <td class=format!("{TD} font-mono text-xs whitespace-normal break-all min-w-[10rem] max-w-[20rem]")>{a.before.clone().unwrap_or_default()}</td>
                        <td class=format!("{TD} font-mono text-xs whitespace-normal break-all min-w-[10rem] max-w-[20rem]")>{a.after.clone().unwrap_or_default()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></TableScroll>
    }
    .into_any()
}
