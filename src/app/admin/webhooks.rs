//! `/admin/webhooks?status=&type=&page=&gpage=`: the Stripe webhook event
//! log with replay for failed and dead-lettered events, and the GitHub
//! Marketplace deliveries; `/admin/webhooks/{stripe|github}/<id>`: one
//! event in full (payload, status, attempts, errors, times).

use super::api::{admin_get_event, admin_list_deliveries, admin_list_events, AdminReplayEvent};
use super::{
    encode, href_with, short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, Pager,
    PreBlock, TableScroll, ADMIN_TABLE, CARD, INPUT, LINK, SECONDARY_BUTTON, SMALL_BUTTON, TD,
    TD_ID, TH,
};
use crate::types::admin::{AdminDeliveryRow, AdminEventDetail, AdminEventRow};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

/// The detail page of a Stripe event (`source` `stripe`) or a GitHub
/// delivery (`github`).
pub fn event_href(source: &str, id: &str) -> String {
    format!("/admin/webhooks/{source}/{}", encode(id))
}

/// The webhook log page.
#[component]
pub fn AdminWebhooksPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let replay = ServerAction::<AdminReplayEvent>::new();
    let gpage = move || get("gpage").parse::<i64>().unwrap_or(1).max(1);
    let deliveries = Resource::new(gpage, |page| admin_list_deliveries(Some(page)));
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
                            <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
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
        <h2 class="mt-8 text-xl font-semibold tracking-tight">"GitHub Marketplace deliveries"</h2>
        <Transition fallback=|| view! { <Loading label="Loading deliveries…" /> }>
            {move || Suspend::new(async move {
                match deliveries.await {
                    Ok(list) => {
                        let (status, type_) = (get("status"), get("type"));
                        let href = Callback::new(move |p: i64| href_with("/admin/webhooks", &[("status", status.clone()), ("type", type_.clone()), ("gpage", p.to_string())]));
                        view! {
                            <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
                                <DeliveryTable rows=list.rows.clone() />
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

/// A table of GitHub deliveries, each linking to its detail page.
#[component]
fn DeliveryTable(rows: Vec<AdminDeliveryRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="p-3 text-sm text-slate-700 dark:text-slate-300" data-testid="deliveries-empty">"No deliveries."</p> }.into_any();
    }
    view! {
        <TableScroll><table class=ADMIN_TABLE data-testid="deliveries-table">
            <thead><tr>
                <th scope="col" class=TH>"Delivery"</th><th scope="col" class=TH>"Event"</th><th scope="col" class=TH>"Account"</th>
                <th scope="col" class=TH>"Received"</th><th scope="col" class=format!("{TH} text-right")>"Attempts"</th>
                <th scope="col" class=TH>"Status"</th><th scope="col" class=TH>"Error"</th>
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {rows.into_iter().map(|d| view! {
                    <tr data-testid="delivery-row">
                        <td class=TD_ID title=d.id.clone()><a class=LINK href=event_href("github", &d.id)>{d.id.clone()}</a></td>
                        <td class=TD>{d.type_.clone()}</td>
                        <td class=format!("{TD} max-w-[12rem] truncate")>
                            {match d.customer_id {
                                Some(cid) => view! { <a class=LINK href=format!("/admin/customers/{cid}")>{d.account_login.clone().unwrap_or_else(|| format!("Customer {cid}"))}</a> }.into_any(),
                                None => d.account_login.clone().unwrap_or_default().into_any(),
                            }}
                        </td>
                        <td class=TD>{short_time(&d.received_at)}</td>
                        <td class=format!("{TD} text-right tabular-nums")>{d.attempts}</td>
                        <td class=TD><Badge text=d.status.clone() /></td>
                        <td class=format!("{TD} max-w-xs truncate") title=d.error.clone().unwrap_or_default()>{d.error.clone().unwrap_or_default()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></TableScroll>
    }
    .into_any()
}

/// `/admin/webhooks/{stripe|github}/<id>`: one event or delivery in full,
/// with Replay for a failed or dead-lettered Stripe event.
#[component]
pub fn AdminEventDetailPage() -> impl IntoView {
    let params = use_params_map();
    let get = move |k: &str| params.read().get(k).unwrap_or_default();
    let replay = ServerAction::<AdminReplayEvent>::new();
    let event = Resource::new(
        move || (get("source"), get("id"), replay.version().get()),
        |(source, id, _)| admin_get_event(source, id),
    );
    view! {
        <Title text="Webhook event · Admin · RSOLV" />
        <AdminNav current="/admin/webhooks" />
        <p class="mb-2 text-sm"><a class=LINK href="/admin/webhooks">"← All webhook events"</a></p>
        <div aria-live="polite" class="mt-2"><ActionOutcome value=move || replay.value().get() success="Event queued for replay; the job worker applies it shortly." /></div>
        <Transition fallback=|| view! { <Loading label="Loading the event…" /> }>
            {move || Suspend::new(async move {
                match event.await {
                    Ok(e) => view! { <EventDetail e replay /> }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn EventDetail(e: AdminEventDetail, replay: ServerAction<AdminReplayEvent>) -> impl IntoView {
    let dt = "text-xs font-medium uppercase tracking-wide text-slate-600 dark:text-slate-400";
    let dead = e.job_status.as_deref() == Some("dead");
    let can_replay = e.source == "stripe" && (dead || e.status == "failed");
    let status = if dead {
        "dead".to_owned()
    } else {
        e.status.clone()
    };
    let heading = if e.source == "stripe" {
        "Stripe event"
    } else {
        "GitHub delivery"
    };
    let payload_title = if e.payload_truncated {
        "Payload as received (first 64 KiB)"
    } else {
        "Payload as received"
    };
    view! {
        <h1 class="break-words text-2xl font-bold tracking-tight">{format!("{heading}: {}", e.type_)}</h1>
        <p class="mt-1 break-all font-mono text-sm text-slate-700 dark:text-slate-300" data-testid="event-id">{e.id.clone()}</p>
        <section class=format!("{CARD} mt-4 min-w-0") aria-label="Processing">
            <dl class="grid grid-cols-1 gap-x-4 gap-y-2 text-sm sm:grid-cols-[10rem_1fr]" data-testid="event-facts">
                <dt class=dt>"Status"</dt><dd><Badge text=status /></dd>
                <dt class=dt>"Attempts"</dt><dd class="tabular-nums">{e.attempts}</dd>
                {e.job_status.clone().map(|s| view! {
                    <dt class=dt>"Processing job"</dt>
                    <dd>{format!("{s}, {} attempts", e.job_attempts.unwrap_or_default())}</dd>
                })}
                {e.created_at.as_deref().map(|at| view! { <dt class=dt>"Created"</dt><dd>{short_time(at)}</dd> })}
                <dt class=dt>"Received"</dt><dd>{short_time(&e.received_at)}</dd>
                <dt class=dt>"Processed"</dt><dd>{e.processed_at.as_deref().map(short_time).unwrap_or_else(|| "—".into())}</dd>
                {e.customer_id.map(|cid| view! {
                    <dt class=dt>"Customer"</dt><dd><a class=LINK href=format!("/admin/customers/{cid}")>{format!("Customer {cid}")}</a></dd>
                })}
                <dt class=dt>"Last error"</dt>
                <dd class="whitespace-pre-wrap break-words" data-testid="event-error">{e.last_error.clone().unwrap_or_else(|| "—".into())}</dd>
            </dl>
            {can_replay.then(|| view! {
                <ActionForm action=replay attr:class="mt-3">
                    <input type="hidden" name="event_id" value=e.id.clone() />
                    <button type="submit" class=SECONDARY_BUTTON>"Replay this event"</button>
                </ActionForm>
            })}
        </section>
        <PreBlock title=payload_title testid="event-payload" text=e.payload.clone() />
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
        <TableScroll><table class=ADMIN_TABLE data-testid="events-table">
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
                            <td class=TD_ID title=e.id.clone()><a class=LINK href=event_href("stripe", &e.id)>{e.id.clone()}</a></td>
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
        </table></TableScroll>
    }
    .into_any()
}
