//! `/admin/emails?status=&page=`: the email outbox (queued, sent, failed)
//! with resend for failed emails.

use super::api::{admin_list_emails, AdminResendEmail};
use super::{
    href_with, short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, Pager, CARD, INPUT,
    LINK, SECONDARY_BUTTON, SMALL_BUTTON, TABLE, TD, TH,
};
use crate::types::admin::AdminEmailRow;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The outbox page.
#[component]
pub fn AdminEmailsPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let resend = ServerAction::<AdminResendEmail>::new();
    let emails = Resource::new(
        move || (get("status"), page(), resend.version().get()),
        |(status, page, _)| admin_list_emails((!status.is_empty()).then_some(status), Some(page)),
    );
    view! {
        <Title text="Emails · Admin · RSOLV" />
        <AdminNav current="/admin/emails" />
        <h1 class="text-2xl font-bold tracking-tight">"Email outbox"</h1>
        <form method="get" action="/admin/emails" class=format!("{CARD} mt-4 flex flex-wrap items-end gap-3") role="search">
            <div>
                <label for="em-status" class="block text-xs font-medium">"Status"</label>
                <select id="em-status" name="status" class=INPUT>
                    {[("", "Any"), ("queued", "Queued"), ("sending", "Sending"), ("sent", "Sent"), ("failed", "Failed")]
                        .into_iter()
                        .map(|(v, t)| view! { <option value=v selected=move || get("status") == v>{t}</option> })
                        .collect_view()}
                </select>
            </div>
            <button type="submit" class=SECONDARY_BUTTON>"Filter"</button>
        </form>
        <div aria-live="polite" class="mt-2"><ActionOutcome value=move || resend.value().get() success="Email queued again." /></div>
        <Transition fallback=|| view! { <Loading label="Loading emails…" /> }>
            {move || Suspend::new(async move {
                match emails.await {
                    Ok(list) => {
                        let status = get("status");
                        let href = Callback::new(move |p: i64| href_with("/admin/emails", &[("status", status.clone()), ("page", p.to_string())]));
                        view! {
                            <div class=format!("{CARD} mt-4 overflow-x-auto p-0")>
                                <EmailTable rows=list.rows.clone() resend=Some(resend) />
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

/// A table of outbox emails; with `resend`, failed ones get a Resend button.
#[component]
pub fn EmailTable(
    rows: Vec<AdminEmailRow>,
    resend: Option<ServerAction<AdminResendEmail>>,
) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="p-3 text-sm text-slate-700 dark:text-slate-300">"No emails."</p> }.into_any();
    }
    view! {
        <table class=TABLE data-testid="emails-table">
            <thead><tr>
                <th scope="col" class=TH>"Queued"</th><th scope="col" class=TH>"Kind"</th><th scope="col" class=TH>"To"</th>
                <th scope="col" class=TH>"Subject"</th><th scope="col" class=TH>"Status"</th><th scope="col" class=format!("{TH} text-right")>"Attempts"</th>
                <th scope="col" class=TH>"Error"</th>
                {resend.is_some().then(|| view! { <th scope="col" class=TH><span class="sr-only">"Actions"</span></th> })}
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {rows.into_iter().map(|e| view! {
                    <tr data-testid="email-row">
                        <td class=TD>{short_time(&e.created_at)}</td>
                        <td class=TD>{e.kind.clone()}</td>
                        <td class=TD>
                            {match e.customer_id {
                                Some(cid) => view! { <a class=LINK href=format!("/admin/customers/{cid}")>{e.to_address.clone()}</a> }.into_any(),
                                None => e.to_address.clone().into_any(),
                            }}
                        </td>
                        <td class=format!("{TD} max-w-xs truncate")>{e.subject.clone()}</td>
                        <td class=TD><Badge text=e.status.clone() /></td>
                        <td class=format!("{TD} text-right tabular-nums")>{e.attempts}</td>
                        <td class=format!("{TD} max-w-xs truncate") title=e.last_error.clone().unwrap_or_default()>{e.last_error.clone().unwrap_or_default()}</td>
                        {resend.map(|action| view! {
                            <td class=TD>
                                {(e.status == "failed").then(|| view! {
                                    <ActionForm action>
                                        <input type="hidden" name="email_id" value=e.id />
                                        <button type="submit" class=SMALL_BUTTON aria-label=format!("Resend email {}", e.id)>"Resend"</button>
                                    </ActionForm>
                                })}
                            </td>
                        })}
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
