//! `/admin/webhooks?status=&type=&page=`: the Stripe webhook event log with
//! replay for failed and dead-lettered events.

use super::api::{admin_list_events, AdminReplayEvent};
use super::{
    href_with, short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, Pager, CARD, INPUT,
    SECONDARY_BUTTON, SMALL_BUTTON, TABLE, TD, TH,
};
use crate::types::admin::AdminEventRow;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The webhook log page.
#[component]
pub fn AdminWebhooksPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let replay = ServerAction::<AdminReplayEvent>::new();
    let events = Resource::new(
        move || (get("status"), get("type"), page(), replay.version().get()),
        |(status, type_, page, _)| {
            admin_list_events(
                (!status.is_empty()).then_some(status),
                (!type_.is_empty()).then_some(type_),
                Some(page),
            )
        },
    );
    view! {
        <Title text="Webhooks · Admin · RSOLV" />
        <AdminNav current="/admin/webhooks" />
        <h1 class="text-2xl font-bold tracking-tight">"Stripe webhook events"</h1>
        <div aria-live="polite" class="mt-2"><ActionOutcome value=move || replay.value().get() success="Event queued for replay; the job worker applies it shortly." /></div>
        <Transition fallback=|| view! { <Loading label="Loading events…" /> }>
            {move || Suspend::new(async move {
                match events.await {
                    Ok(list) => {
                        let (status, type_) = (get("status"), get("type"));
                        let href = Callback::new({
                            let (status, type_) = (status.clone(), type_.clone());
                            move |p: i64| href_with("/admin/webhooks", &[("status", status.clone()), ("type", type_.clone()), ("page", p.to_string())])
                        });
                        view! {
                            <form method="get" action="/admin/webhooks" class=format!("{CARD} mt-4 flex flex-wrap items-end gap-3") role="search">
                                <div>
                                    <label for="ev-status" class="block text-xs font-medium">"Status"</label>
                                    <select id="ev-status" name="status" class=INPUT>
                                        {[("", "Any"), ("received", "Received"), ("processed", "Processed"), ("failed", "Failed"), ("dead", "Dead-lettered")]
                                            .into_iter()
                                            .map(|(v, t)| view! { <option value=v selected=status == v>{t}</option> })
                                            .collect_view()}
                                    </select>
                                </div>
                                <div>
                                    <label for="ev-type" class="block text-xs font-medium">"Type"</label>
                                    <select id="ev-type" name="type" class=INPUT>
                                        <option value="">"Any"</option>
                                        {list.types.iter().map(|t| view! { <option value=t.clone() selected=*t == type_>{t.clone()}</option> }).collect_view()}
                                    </select>
                                </div>
                                <button type="submit" class=SECONDARY_BUTTON>"Filter"</button>
                            </form>
                            <div class=format!("{CARD} mt-4 overflow-x-auto p-0")>
                                <EventTable rows=list.rows.clone() replay=Some(replay) />
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

/// A table of events; with `replay`, failed and dead events get a Replay
/// button.
#[component]
pub fn EventTable(
    rows: Vec<AdminEventRow>,
    replay: Option<ServerAction<AdminReplayEvent>>,
) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="p-3 text-sm text-slate-700 dark:text-slate-300" data-testid="events-empty">"No events."</p> }.into_any();
    }
    view! {
        <table class=TABLE data-testid="events-table">
            <thead><tr>
                <th scope="col" class=TH>"Event"</th><th scope="col" class=TH>"Type"</th><th scope="col" class=TH>"Received"</th>
                <th scope="col" class=TH>"Processed"</th><th scope="col" class=format!("{TH} text-right")>"Attempts"</th>
                <th scope="col" class=TH>"Status"</th><th scope="col" class=TH>"Error"</th>
                {replay.is_some().then(|| view! { <th scope="col" class=TH><span class="sr-only">"Actions"</span></th> })}
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {rows.into_iter().map(|e| {
                    let dead = e.job_status.as_deref() == Some("dead");
                    let status = if dead { "dead".to_owned() } else { e.status.clone() };
                    let can_replay = dead || e.status == "failed";
                    view! {
                        <tr data-testid="event-row">
                            <td class=format!("{TD} font-mono text-xs")>{e.id.clone()}</td>
                            <td class=TD>{e.type_.clone()}</td>
                            <td class=TD>{short_time(&e.received_at)}</td>
                            <td class=TD>{e.processed_at.as_deref().map(short_time).unwrap_or_else(|| "—".into())}</td>
                            <td class=format!("{TD} text-right tabular-nums")>{e.attempts}</td>
                            <td class=TD><Badge text=status /></td>
                            <td class=format!("{TD} max-w-xs truncate") title=e.last_error.clone().unwrap_or_default()>{e.last_error.clone().unwrap_or_default()}</td>
                            {replay.map(|action| view! {
                                <td class=TD>
                                    {can_replay.then(|| view! {
                                        <ActionForm action>
                                            <input type="hidden" name="event_id" value=e.id.clone() />
                                            <button type="submit" class=SMALL_BUTTON aria-label=format!("Replay {}", e.id)>"Replay"</button>
                                        </ActionForm>
                                    })}
                                </td>
                            })}
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
