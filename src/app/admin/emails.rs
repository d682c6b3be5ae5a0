//! `/admin/emails?status=&page=`: the email outbox (queued, sent, failed)
//! with resend for failed emails; `/admin/emails/<id>`: one email in full
//! (bodies as stored, links' tokens shown `REDACTED`; status, attempts,
//! error, times).

use super::api::{admin_get_email, admin_list_emails, AdminResendEmail};
use super::{
    href_with, short_time, use_id_param, ActionOutcome, AdminNav, Badge, LoadError, Loading, Pager,
    PreBlock, TableScroll, ADMIN_TABLE, CARD, INPUT, LINK, SECONDARY_BUTTON, SMALL_BUTTON, TD, TH,
};
use crate::types::admin::{AdminEmailDetail, AdminEmailRow};
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
                            <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
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
        <TableScroll><table class=ADMIN_TABLE data-testid="emails-table">
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
                        <td class=format!("{TD} max-w-[14rem] truncate") title=e.to_address.clone()>
                            {match e.customer_id {
                                Some(cid) => view! { <a class=LINK href=format!("/admin/customers/{cid}")>{e.to_address.clone()}</a> }.into_any(),
                                None => e.to_address.clone().into_any(),
                            }}
                        </td>
                        <td class=format!("{TD} max-w-xs truncate") title=e.subject.clone()><a class=LINK href=format!("/admin/emails/{}", e.id)>{e.subject.clone()}</a></td>
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
        </table></TableScroll>
    }
    .into_any()
}

/// `/admin/emails/<id>`: one outbox email in full, with Resend when it
/// failed.
#[component]
pub fn AdminEmailDetailPage() -> impl IntoView {
    let id = use_id_param();
    let resend = ServerAction::<AdminResendEmail>::new();
    let email = Resource::new(
        move || (id(), resend.version().get()),
        |(id, _)| admin_get_email(id),
    );
    view! {
        <Title text="Email · Admin · RSOLV" />
        <AdminNav current="/admin/emails" />
        <p class="mb-2 text-sm"><a class=LINK href="/admin/emails">"← All emails"</a></p>
        <div aria-live="polite" class="mt-2"><ActionOutcome value=move || resend.value().get() success="Email queued again." /></div>
        <Transition fallback=|| view! { <Loading label="Loading the email…" /> }>
            {move || Suspend::new(async move {
                match email.await {
                    Ok(d) => view! { <EmailDetail d resend /> }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn EmailDetail(d: AdminEmailDetail, resend: ServerAction<AdminResendEmail>) -> impl IntoView {
    let e = d.email.clone();
    let dt = "text-xs font-medium uppercase tracking-wide text-slate-600 dark:text-slate-400";
    let not_rendered = "(not rendered yet: the worker renders the body when it sends the email)";
    view! {
        <h1 class="break-words text-2xl font-bold tracking-tight" data-testid="email-subject">{e.subject.clone()}</h1>
        <section class=format!("{CARD} mt-4 min-w-0") aria-label="Delivery">
            <dl class="grid grid-cols-1 gap-x-4 gap-y-2 text-sm sm:grid-cols-[10rem_1fr]" data-testid="email-facts">
                <dt class=dt>"To"</dt>
                <dd class="break-all">
                    {match e.customer_id {
                        Some(cid) => view! { <a class=LINK href=format!("/admin/customers/{cid}")>{e.to_address.clone()}</a> }.into_any(),
                        None => e.to_address.clone().into_any(),
                    }}
                </dd>
                <dt class=dt>"Kind"</dt><dd class="font-mono text-xs">{e.kind.clone()}</dd>
                <dt class=dt>"Status"</dt><dd><Badge text=e.status.clone() /></dd>
                <dt class=dt>"Attempts"</dt><dd class="tabular-nums">{e.attempts}</dd>
                <dt class=dt>"Queued"</dt><dd>{short_time(&e.created_at)}</dd>
                <dt class=dt>"Sent"</dt><dd>{e.sent_at.as_deref().map(short_time).unwrap_or_else(|| "—".into())}</dd>
                {(e.status != "sent").then(|| view! { <dt class=dt>"Next attempt"</dt><dd>{short_time(&d.next_attempt_at)}</dd> })}
                <dt class=dt>"Last error"</dt>
                <dd class="whitespace-pre-wrap break-words" data-testid="email-error">{e.last_error.clone().unwrap_or_else(|| "—".into())}</dd>
            </dl>
            {(e.status == "failed").then(|| view! {
                <ActionForm action=resend attr:class="mt-3">
                    <input type="hidden" name="email_id" value=e.id />
                    <button type="submit" class=SECONDARY_BUTTON>"Resend this email"</button>
                </ActionForm>
            })}
            <p class="mt-3 text-xs text-slate-600 dark:text-slate-400">
                "Links' tokens are shown as REDACTED: nobody reading the outbox can use a customer's sign-in or reset link."
                {d.truncated.then_some(" Long texts are cut at 64 KiB.")}
            </p>
        </section>
        <PreBlock title="Text body" testid="email-text" text=d.text_body.clone().unwrap_or_else(|| not_rendered.to_owned()) />
        <PreBlock title="HTML body (source)" testid="email-html" text=d.html_body.clone().unwrap_or_else(|| not_rendered.to_owned()) />
        {d.notification.clone().map(|n| view! { <PreBlock title="Notification (what the body is rendered from)" testid="email-notification" text=n /> })}
    }
}
