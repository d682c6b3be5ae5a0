//! `/admin/signups?status=&page=`: the manual approval queue (filled while
//! the `auto_provision` flag is off): approve (provision and invite) or
//! reject with a reason.

use super::api::{admin_list_signups, AdminApproveSignup, AdminRejectSignup};
use super::{
    href_with, short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, Pager, TableScroll,
    ADMIN_TABLE, CARD, INPUT, LINK, SECONDARY_BUTTON, SMALL_BUTTON, TD, TH,
};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The approval queue page.
#[component]
pub fn AdminSignupsPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let approve = ServerAction::<AdminApproveSignup>::new();
    let reject = ServerAction::<AdminRejectSignup>::new();
    let requests = Resource::new(
        move || {
            (
                get("status"),
                page(),
                approve.version().get(),
                reject.version().get(),
            )
        },
        |(status, page, ..)| admin_list_signups((!status.is_empty()).then_some(status), Some(page)),
    );
    view! {
        <Title text="Approval queue · Admin · RSOLV" />
        <AdminNav current="/admin/signups" />
        <h1 class="text-2xl font-bold tracking-tight">"Approval queue"</h1>
        <form method="get" action="/admin/signups" class=format!("{CARD} mt-4 flex flex-wrap items-end gap-3") role="search">
            <div>
                <label for="sg-status" class="block text-xs font-medium">"Status"</label>
                <select id="sg-status" name="status" class=INPUT>
                    {[("", "Pending"), ("approved", "Approved"), ("rejected", "Rejected"), ("all", "All")]
                        .into_iter()
                        .map(|(v, t)| view! { <option value=v selected=move || get("status") == v>{t}</option> })
                        .collect_view()}
                </select>
            </div>
            <button type="submit" class=SECONDARY_BUTTON>"Filter"</button>
        </form>
        <div aria-live="polite" class="mt-2">
            <ActionOutcome value=move || approve.value().get() success="Approved: the customer is provisioned and invited." />
            <ActionOutcome value=move || reject.value().get() success="Rejected." />
        </div>
        <Transition fallback=|| view! { <Loading label="Loading the queue…" /> }>
            {move || Suspend::new(async move {
                match requests.await {
                    Ok(list) => {
                        let status = get("status");
                        let href = Callback::new(move |p: i64| href_with("/admin/signups", &[("status", status.clone()), ("page", p.to_string())]));
                        if list.rows.is_empty() {
                            return view! { <div class=format!("{CARD} mt-4")><p data-testid="signups-empty">"Nothing waiting."</p></div> }.into_any();
                        }
                        view! {
                            <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
                                <TableScroll><table class=ADMIN_TABLE data-testid="signups-table">
                                    <thead><tr>
                                        <th scope="col" class=TH>"Received"</th><th scope="col" class=TH>"Email"</th><th scope="col" class=TH>"Name"</th>
                                        <th scope="col" class=TH>"Via"</th><th scope="col" class=TH>"Status"</th><th scope="col" class=TH>"Decision"</th>
                                    </tr></thead>
                                    <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                                        {list.rows.clone().into_iter().map(|r| {
                                            let rid = r.id;
                                            let approve_label = format!("Approve {}", r.email);
                                            let reject_label = format!("Reject {}", r.email);
                                            view! {
                                                <tr data-testid="signup-row">
                                                    <td class=TD>{short_time(&r.created_at)}</td>
                                                    <td class=format!("{TD} max-w-[14rem] truncate") title=r.email.clone()>{r.email.clone()}</td>
                                                    <td class=format!("{TD} max-w-[12rem] truncate") title=r.name.clone()>{r.name.clone()}</td>
                                                    <td class=TD>{r.channel.clone()} " · " {r.source.clone()}</td>
                                                    <td class=TD><Badge text=r.status.clone() /></td>
                                                    <td class=TD>
                                                        {if r.status == "pending" {
                                                            view! {
                                                                <div class="flex flex-wrap items-center gap-2">
                                                                    <ActionForm action=approve>
                                                                        <input type="hidden" name="request_id" value=rid />
                                                                        <button type="submit" class=SMALL_BUTTON aria-label=approve_label>"Approve"</button>
                                                                    </ActionForm>
                                                                    <ActionForm action=reject>
                                                                        <div class="flex items-center gap-1">
                                                                            <input type="hidden" name="request_id" value=rid />
                                                                            <label for=format!("rj-{rid}") class="sr-only">"Reason"</label>
                                                                            <input id=format!("rj-{rid}") name="reason" required placeholder="Reason" class="rounded border border-slate-300 px-2 py-0.5 text-xs dark:border-slate-700 dark:bg-slate-950" />
                                                                            <button type="submit" class=SMALL_BUTTON aria-label=reject_label>"Reject"</button>
                                                                        </div>
                                                                    </ActionForm>
                                                                </div>
                                                            }
                                                            .into_any()
                                                        } else if let Some(cid) = r.customer_id {
                                                            view! { <a class=LINK href=format!("/admin/customers/{cid}")>"Customer " {cid}</a> }.into_any()
                                                        } else {
                                                            r.reason.clone().unwrap_or_default().into_any()
                                                        }}
                                                    </td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table></TableScroll>
                            </div>
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
