//! `/admin/customers/:id`: one customer's profile, plan and subscription,
//! balance and full ledger, unpaid fixes, fixes, API keys (with each key's
//! fixes and AI calls, as on `/keys`), payment methods,
//! emails, webhook events, audit entries and AI usage, with the admin's
//! actions: adjust credits (reason required), charge an unpaid fix again
//! or write it off (reason required; both in the "Unpaid fixes" list),
//! suspend / reactivate, set the AI budget (reason required) and revoke a
//! key (suspend and revoke each behind a confirmation step reached by a
//! plain link: `?confirm=suspend`, `?confirm_revoke=<key id>`). Every table
//! scrolls inside its card.

use super::api::{
    admin_get_customer, AdminAdjustCredits, AdminReactivateCustomer, AdminRetryFixCharge,
    AdminRevokeKey, AdminSetAiBudget, AdminSuspendCustomer, AdminWriteOffFix, ADMIN_AI_DAYS,
};
use super::{
    short_time, use_id_param, ActionOutcome, AdminNav, Badge, LoadError, Loading, TableScroll,
    ADMIN_TABLE, BUTTON, CARD, DANGER_BUTTON, INPUT, LINK, SECONDARY_BUTTON, SMALL_BUTTON, TD,
    TD_ID, TD_TEXT, TH,
};
use crate::app::portal::ai_usage::{BudgetCard, DayTable};
use crate::types::admin::AdminCustomerDetail;
use crate::types::ai::AiUsageView;
use crate::types::portal::KeyActivityView;
use crate::types::urls::safe_href;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The customer page.
#[component]
pub fn AdminCustomerPage() -> impl IntoView {
    let query = use_query_map();
    let id = use_id_param();
    let adjust = ServerAction::<AdminAdjustCredits>::new();
    let suspend = ServerAction::<AdminSuspendCustomer>::new();
    let reactivate = ServerAction::<AdminReactivateCustomer>::new();
    let revoke = ServerAction::<AdminRevokeKey>::new();
    let write_off = ServerAction::<AdminWriteOffFix>::new();
    let retry = ServerAction::<AdminRetryFixCharge>::new();
    let ai_budget = ServerAction::<AdminSetAiBudget>::new();
    let detail = Resource::new(
        move || {
            (
                id(),
                adjust.version().get(),
                suspend.version().get(),
                reactivate.version().get(),
                revoke.version().get(),
                write_off.version().get(),
                retry.version().get(),
                ai_budget.version().get(),
            )
        },
        |(id, ..)| admin_get_customer(id),
    );
    let confirm = move || query.read().get("confirm").unwrap_or_default();
    let confirm_revoke = move || {
        query
            .read()
            .get("confirm_revoke")
            .and_then(|v| v.parse::<i64>().ok())
    };
    view! {
        <Title text="Customer · Admin · RSOLV" />
        <AdminNav current="/admin" />
        <p class="mb-2 text-sm"><a class=LINK href="/admin">"← All customers"</a></p>
        <Transition fallback=|| view! { <Loading label="Loading the customer…" /> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(d) => view! {
                        <Detail d confirm=confirm() confirm_revoke=confirm_revoke() adjust suspend reactivate revoke write_off retry ai_budget />
                    }
                    .into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Detail(
    d: AdminCustomerDetail,
    confirm: String,
    confirm_revoke: Option<i64>,
    adjust: ServerAction<AdminAdjustCredits>,
    suspend: ServerAction<AdminSuspendCustomer>,
    reactivate: ServerAction<AdminReactivateCustomer>,
    revoke: ServerAction<AdminRevokeKey>,
    write_off: ServerAction<AdminWriteOffFix>,
    retry: ServerAction<AdminRetryFixCharge>,
    ai_budget: ServerAction<AdminSetAiBudget>,
) -> impl IntoView {
    let c = d.customer.clone();
    let id = c.id;
    let here = format!("/admin/customers/{id}");
    let here2 = here.clone();
    let suspended = c.status == "suspended";
    let dt = "text-xs font-medium uppercase tracking-wide text-slate-600 dark:text-slate-400";
    let for_unpaid = d.clone();
    view! {
        <div class="flex flex-wrap items-center gap-3">
            <h1 class="min-w-0 break-words text-2xl font-bold tracking-tight" data-testid="customer-name">{c.name.clone()}</h1>
            <Badge text=c.status.clone() />
            {(!c.can_use_service).then(|| view! { <Badge text="cannot use service".to_owned() /> })}
            {c.disputed_at.as_deref().map(|at| view! { <span data-testid="disputed"><Badge text=format!("disputed {}", short_time(at)) /></span> })}
        </div>
        <p class="mt-1 break-words text-slate-700 dark:text-slate-300">{c.email.clone()} " · customer " {id}</p>
        <p class="mt-2 text-sm">
            <a class=LINK href=format!("/admin/customers/{id}/portal") data-testid="view-portal">"View portal (read-only)"</a>
        </p>

        <div class="mt-6 grid gap-4 lg:grid-cols-3">
            <section class=format!("{CARD} min-w-0") aria-labelledby="profile-title">
                <h2 id="profile-title" class="font-semibold">"Profile and plan"</h2>
                <dl class="mt-3 grid grid-cols-2 gap-x-3 gap-y-2 text-sm">
                    <dt class=dt>"Plan"</dt><dd>{c.plan.clone()}</dd>
                    <dt class=dt>"Source"</dt><dd>{c.source.clone()}</dd>
                    <dt class=dt>"Stripe"</dt><dd class="break-all font-mono text-xs">{c.stripe_customer_id.clone().unwrap_or_else(|| "—".into())}</dd>
                    <dt class=dt>"Subscription"</dt><dd>{c.subscription_status.clone().unwrap_or_else(|| "none".into())}</dd>
                    <dt class=dt>"Period end"</dt><dd>{d.current_period_end.as_deref().map(short_time).unwrap_or_else(|| "—".into())}</dd>
                    <dt class=dt>"Card on file"</dt><dd>{if c.has_payment_method { "yes" } else { "no" }}</dd>
                    <dt class=dt>"Created"</dt><dd>{short_time(&c.created_at)}</dd>
                    <dt class=dt>"Users"</dt>
                    <dd class="break-all">{d.users.iter().map(|(e, r)| view! { <div>{e.clone()} " (" {r.clone()} ")"</div> }).collect_view()}</dd>
                </dl>
            </section>

            <section class=format!("{CARD} min-w-0") aria-labelledby="credits-title">
                <h2 id="credits-title" class="font-semibold">"Credits"</h2>
                <p class="mt-2 text-3xl font-semibold tabular-nums" data-testid="admin-balance">{c.credit_balance}</p>
                <ActionForm action=adjust>
                    <div class="mt-3 space-y-2" data-testid="adjust-form">
                        <input type="hidden" name="customer_id" value=id />
                        <input type="hidden" name="form_token" value=d.form_token.clone() />
                        <div>
                            <label for="adj-amount" class="block text-sm font-medium">"Amount (credits; negative removes)"</label>
                            <input id="adj-amount" name="amount" type="number" step="1" required class=INPUT
                                // Cleared after each adjustment, so a second click is a new, deliberate one.
                                prop:value=move || { adjust.version().get(); String::new() } />
                        </div>
                        <div>
                            <label for="adj-reason" class="block text-sm font-medium">"Reason (required, kept in the ledger and audit log)"</label>
                            <input id="adj-reason" name="reason" type="text" required maxlength="500" class=INPUT
                                prop:value=move || { adjust.version().get(); String::new() } />
                        </div>
                        <button type="submit" class=BUTTON disabled=move || adjust.pending().get()>"Adjust credits"</button>
                    </div>
                </ActionForm>
                <div class="mt-2" aria-live="polite"><ActionOutcome value=move || adjust.value().get() success="Credits adjusted." /></div>
            </section>

            <section class=format!("{CARD} min-w-0") aria-labelledby="status-title">
                <h2 id="status-title" class="font-semibold">"Access"</h2>
                {if suspended {
                    view! {
                        <p class="mt-2 text-sm">"Suspended: the Action API answers 403 for every key."</p>
                        <ActionForm action=reactivate>
                            <div class="mt-3 space-y-2">
                                <input type="hidden" name="customer_id" value=id />
                                <label for="react-reason" class="block text-sm font-medium">"Reason"</label>
                                <input id="react-reason" name="reason" type="text" required maxlength="500" class=INPUT />
                                <button type="submit" class=BUTTON>"Reactivate"</button>
                            </div>
                        </ActionForm>
                    }
                    .into_any()
                } else if confirm == "suspend" {
                    view! {
                        <div role="alertdialog" aria-labelledby="suspend-q" class="mt-3 rounded-md border border-red-300 p-3 dark:border-red-800">
                            <p id="suspend-q" class="text-sm font-medium">"Suspend this customer? Every request of the Action will get 403 until reactivated."</p>
                            <ActionForm action=suspend>
                                <div class="mt-2 space-y-2">
                                    <input type="hidden" name="customer_id" value=id />
                                    <label for="susp-reason" class="block text-sm font-medium">"Reason"</label>
                                    <input id="susp-reason" name="reason" type="text" required maxlength="500" class=INPUT />
                                    <div class="flex gap-2">
                                        <button type="submit" class=DANGER_BUTTON>"Suspend"</button>
                                        <a href=here2.clone() class=SECONDARY_BUTTON>"Cancel"</a>
                                    </div>
                                </div>
                            </ActionForm>
                        </div>
                    }
                    .into_any()
                } else {
                    view! {
                        <p class="mt-2 text-sm">"Active."</p>
                        <a href=format!("{here2}?confirm=suspend") class=format!("{DANGER_BUTTON} mt-3")>"Suspend…"</a>
                    }
                    .into_any()
                }}
                <div class="mt-2" aria-live="polite">
                    <ActionOutcome value=move || suspend.value().get() success="Customer suspended." />
                    <ActionOutcome value=move || reactivate.value().get() success="Customer reactivated." />
                </div>
            </section>
        </div>

        <Section title="API keys">
            <div aria-live="polite"><ActionOutcome value=move || revoke.value().get() success="Key revoked; the customer was emailed." /></div>
            <TableScroll><table class=ADMIN_TABLE data-testid="keys-table">
                <thead><tr>
                    <th scope="col" class=TH>"Name"</th><th scope="col" class=TH>"Prefix"</th><th scope="col" class=TH>"Created"</th>
                    <th scope="col" class=TH>"Last used"</th>
                    <th scope="col" class=TH>{format!("Fixes ({} d / all)", KeyActivityView::DAYS)}</th>
                    <th scope="col" class=TH>{format!("AI calls ({} d)", KeyActivityView::DAYS)}</th>
                    <th scope="col" class=TH>"State"</th><th scope="col" class=TH><span class="sr-only">"Actions"</span></th>
                </tr></thead>
                <tbody>
                    {d.api_keys.iter().map(|k| {
                        let state = if k.revoked_at.is_some() { "revoked" } else if k.expires_at.is_some() { "expiring" } else { "active" };
                        let kid = k.id;
                        let here = here.clone();
                        view! {
                            <tr>
                                <td class=format!("{TD} max-w-[14rem] truncate") title=k.name.clone()>{k.name.clone()}</td>
                                <td class=format!("{TD} font-mono text-xs")>{k.prefix.clone()} "…"</td>
                                <td class=TD>{short_time(&k.created_at)}</td>
                                <td class=TD>{k.last_used_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
                                <td class=format!("{TD} tabular-nums") data-testid="key-fixes">{format!("{} / {}", k.activity.fixes_recent, k.activity.fixes_total)}</td>
                                <td class=format!("{TD} tabular-nums") data-testid="key-ai-calls">{k.activity.ai_calls_recent}</td>
                                <td class=TD><Badge text=state.to_owned() /></td>
                                <td class=TD>
                                    {if k.revoked_at.is_some() {
                                        ().into_any()
                                    } else if confirm_revoke == Some(kid) {
                                        view! {
                                            <ActionForm action=revoke>
                                                <div class="flex flex-wrap items-center gap-1">
                                                    <input type="hidden" name="customer_id" value=id />
                                                    <input type="hidden" name="key_id" value=kid />
                                                    <label for=format!("rv-{kid}") class="sr-only">"Reason"</label>
                                                    <input id=format!("rv-{kid}") name="reason" type="text" required placeholder="Reason" class="rounded border border-slate-300 px-2 py-0.5 text-xs dark:border-slate-700 dark:bg-slate-950" />
                                                    <button type="submit" class="rounded bg-red-700 px-2 py-0.5 text-xs font-semibold text-white hover:bg-red-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-red-500">"Revoke now"</button>
                                                    <a href=here class=SMALL_BUTTON>"Cancel"</a>
                                                </div>
                                            </ActionForm>
                                        }
                                        .into_any()
                                    } else {
                                        view! { <a href=format!("{here}?confirm_revoke={kid}") class=SMALL_BUTTON>"Revoke…"</a> }.into_any()
                                    }}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table></TableScroll>
        </Section>

        <AiSection ai=d.ai.clone() customer_id=id action=ai_budget />

        <Section title="Payment methods">
            {if d.payment_methods.is_empty() {
                view! { <p class="text-sm text-slate-700 dark:text-slate-300">"No payment method on file."</p> }.into_any()
            } else {
                view! {
                    <TableScroll><table class=ADMIN_TABLE>
                        <thead><tr><th scope="col" class=TH>"Card"</th><th scope="col" class=TH>"Payment method"</th><th scope="col" class=TH>"Default"</th><th scope="col" class=TH>"Attached"</th><th scope="col" class=TH>"Last event"</th></tr></thead>
                        <tbody>
                            {d.payment_methods.iter().map(|p| view! {
                                <tr>
                                    <td class=TD>{p.card.clone().unwrap_or_else(|| "—".into())}</td>
                                    <td class=TD_ID title=p.id.clone()>{p.id.clone()}</td>
                                    <td class=TD>{if p.is_default { "default" } else { "" }}</td>
                                    <td class=TD>{if p.attached { "yes" } else { "no" }}</td>
                                    <td class=TD>{short_time(&p.last_event_at)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table></TableScroll>
                }
                .into_any()
            }}
        </Section>

        <Section title="Invoices and charges">
            {d.billing.invoices_note.clone().map(|note| view! {
                <p class="mb-2 text-sm text-amber-800 dark:text-amber-300" role="status">{note}</p>
            })}
            <BillingTable caption="Invoices (from Stripe)" testid="invoices-table" items=d.billing.invoices.clone() />
            <BillingTable caption="Charges for fixes" testid="charges-table" items=d.billing.charges.clone() />
        </Section>

        <Section title="Ledger">
            <TableScroll><table class=ADMIN_TABLE data-testid="ledger-table">
                <thead><tr>
                    <th scope="col" class=TH>"When"</th><th scope="col" class=TH>"Kind"</th><th scope="col" class=format!("{TH} text-right")>"Amount"</th>
                    <th scope="col" class=format!("{TH} text-right")>"Balance"</th><th scope="col" class=TH>"Reference"</th>
                </tr></thead>
                <tbody>
                    {d.ledger.iter().map(|e| view! {
                        <tr>
                            <td class=TD>{short_time(&e.created_at)}</td>
                            <td class=TD>{crate::app::portal::kind_label(&e.kind)}</td>
                            <td class=format!("{TD} text-right tabular-nums")>{if e.amount > 0 { format!("+{}", e.amount) } else { e.amount.to_string() }}</td>
                            <td class=format!("{TD} text-right tabular-nums")>{e.balance_after}</td>
                            <td class=TD_TEXT>{e.reference.clone().unwrap_or_default()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table></TableScroll>
        </Section>

        <UnpaidFixes d=for_unpaid write_off retry />

        <Section title="Fixes">
            {if d.fixes.is_empty() {
                view! { <p class="text-sm text-slate-700 dark:text-slate-300">"No fixes yet."</p> }.into_any()
            } else {
                view! {
                    <TableScroll><table class=ADMIN_TABLE>
                        <thead><tr><th scope="col" class=TH>"Fix"</th><th scope="col" class=TH>"Repository"</th><th scope="col" class=TH>"Billing"</th><th scope="col" class=TH>"When"</th></tr></thead>
                        <tbody data-testid="fixes-table">
                            {d.fixes.iter().map(|f| {
                                view! {
                                <tr>
                                    <td class=TD>{match f.pr_url.as_deref().and_then(safe_href) { Some(url) => view! { <a class=LINK href=url rel="noopener noreferrer">{f.fix_key.clone()}</a> }.into_any(), None => f.fix_key.clone().into_any() }}</td>
                                    <td class=format!("{TD} max-w-[14rem] truncate") title=f.repository.clone()>{f.repository.clone()}</td>
                                    <td class=format!("{TD} whitespace-normal")>
                                        <Badge text=f.billing_status.clone() />
                                        {f.written_off_reason.clone().map(|r| view! { <span class="ml-1 text-xs">{r}</span> })}
                                    </td>
                                    <td class=TD>{short_time(&f.created_at)}</td>
                                </tr>
                            }}).collect_view()}
                        </tbody>
                    </table></TableScroll>
                }
                .into_any()
            }}
        </Section>

        <Section title="Emails">
            <super::emails::EmailTable rows=d.emails.clone() resend=None />
        </Section>

        <Section title="Webhook events">
            <super::webhooks::EventTable rows=d.events.clone() replay=None />
        </Section>

        <Section title="Audit log">
            <super::audit::AuditTable rows=d.audit.clone() />
        </Section>
    }
}

/// The customer's unpaid fixes with what is happening to each (a charge on
/// its way, declined charges) and the admin's two actions: "Retry charge"
/// (a credit if any, else a new card charge; the page's form token makes a
/// double submission apply once) and "Write off" (reason required; never
/// billed).
#[component]
fn UnpaidFixes(
    d: AdminCustomerDetail,
    write_off: ServerAction<AdminWriteOffFix>,
    retry: ServerAction<AdminRetryFixCharge>,
) -> impl IntoView {
    let id = d.customer.id;
    let token = d.form_token.clone();
    let small_input = "rounded border border-slate-300 px-2 py-0.5 text-xs dark:border-slate-700 dark:bg-slate-950";
    view! {
        <section class=format!("{CARD} mt-6 min-w-0") aria-labelledby="unpaid-title" data-testid="unpaid-fixes">
            <h2 id="unpaid-title" class="font-semibold">"Unpaid fixes"</h2>
            <div class="mt-1 text-sm text-slate-700 dark:text-slate-300">
                {d.payment_failed_at.as_deref().map(|at| view! {
                    <p data-testid="payment-failed">
                        {format!("A declined card charge ({}) blocks new card charges until the customer adds a card; retrying a fix lifts the block.", short_time(at))}
                    </p>
                })}
            </div>
            <div aria-live="polite" class="mt-2">
                {move || match retry.value().get() {
                    Some(Ok(message)) => view! { <super::Notice message /> }.into_any(),
                    Some(Err(error)) => view! { <super::Alert message=error.to_string() /> }.into_any(),
                    None => ().into_any(),
                }}
                <ActionOutcome value=move || write_off.value().get() success="Fix written off." />
            </div>
            {if d.unpaid_fixes.is_empty() {
                view! { <p class="mt-2 text-sm text-slate-700 dark:text-slate-300" data-testid="unpaid-empty">"None: every fix is paid, pending its billing call or written off."</p> }.into_any()
            } else {
                view! {
                    <TableScroll><table class=format!("{ADMIN_TABLE} mt-2")>
                        <thead><tr>
                            <th scope="col" class=TH>"Fix"</th><th scope="col" class=TH>"Repository"</th><th scope="col" class=TH>"Recorded"</th>
                            <th scope="col" class=TH>"Payment"</th><th scope="col" class=TH><span class="sr-only">"Actions"</span></th>
                        </tr></thead>
                        <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                            {d.unpaid_fixes.iter().map(|f| {
                                let fid = f.id;
                                let token = token.clone();
                                let state = match &f.charge {
                                    Some((cid, status, amount)) => format!("Charge {cid} ({amount}) {status}"),
                                    None if f.declined > 0 => format!(
                                        "{} declined charge{}{}",
                                        f.declined,
                                        if f.declined == 1 { "" } else { "s" },
                                        f.last_failure.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                                    ),
                                    None => "No charge: nothing could pay when it was recorded".to_owned(),
                                };
                                let charging = f.charge.is_some();
                                view! {
                                    <tr data-testid="unpaid-fix-row">
                                        <td class=TD>{match f.pr_url.as_deref().and_then(safe_href) { Some(url) => view! { <a class=LINK href=url rel="noopener noreferrer">{f.fix_key.clone()}</a> }.into_any(), None => f.fix_key.clone().into_any() }}</td>
                                        <td class=format!("{TD} max-w-[14rem] truncate") title=f.repository.clone()>{f.repository.clone()}</td>
                                        <td class=TD>{short_time(&f.created_at)}</td>
                                        <td class=TD_TEXT>{state}</td>
                                        <td class=TD>
                                            {(!charging).then(|| view! {
                                                <div class="flex flex-col gap-2">
                                                    <ActionForm action=retry>
                                                        <input type="hidden" name="customer_id" value=id />
                                                        <input type="hidden" name="fix_id" value=fid />
                                                        <input type="hidden" name="form_token" value=token.clone() />
                                                        <button type="submit" class=SMALL_BUTTON aria-label=format!("Retry the charge for fix {fid}") disabled=move || retry.pending().get()>"Retry charge"</button>
                                                    </ActionForm>
                                                    <ActionForm action=write_off>
                                                        <div class="flex flex-wrap items-center gap-1">
                                                            <input type="hidden" name="customer_id" value=id />
                                                            <input type="hidden" name="fix_id" value=fid />
                                                            <label for=format!("wo-{fid}") class="sr-only">{format!("Reason for writing off fix {fid}")}</label>
                                                            <input id=format!("wo-{fid}") name="reason" type="text" required maxlength="500" placeholder="Reason" class=small_input />
                                                            <button type="submit" class=SMALL_BUTTON aria-label=format!("Write off fix {fid}")>"Write off"</button>
                                                        </div>
                                                    </ActionForm>
                                                </div>
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table></TableScroll>
                }
                .into_any()
            }}
        </section>
    }
}

/// The customer's AI gateway usage per day, its budget, and the form that
/// sets the budget (blank: the default; 0: no limit; both blank clears it).
#[component]
fn AiSection(
    ai: AiUsageView,
    customer_id: i64,
    action: ServerAction<AdminSetAiBudget>,
) -> impl IntoView {
    let b = ai.budget.clone();
    let daily = if b.daily_tokens_set {
        b.daily_tokens.to_string()
    } else {
        String::new()
    };
    let concurrent = if b.max_concurrent_set {
        b.max_concurrent.to_string()
    } else {
        String::new()
    };
    view! {
        <section class="mt-6" aria-labelledby="ai-title" data-testid="admin-ai-usage">
            <h2 id="ai-title" class="mb-2 font-semibold">"AI usage"</h2>
            <BudgetCard budget=ai.budget.clone() />
            <div class="mt-4 grid gap-4 lg:grid-cols-3">
                <div class=format!("{CARD} min-w-0 lg:col-span-2")>
                    <h3 class="mb-2 text-sm font-semibold">{format!("Per day, last {ADMIN_AI_DAYS} days (UTC)")}</h3>
                    <TableScroll><DayTable days=ai.by_day.clone() /></TableScroll>
                </div>
                <div class=CARD>
                    <h3 class="text-sm font-semibold">"AI budget"</h3>
                    <p class="mt-1 text-xs text-slate-600 dark:text-slate-400">
                        "Blank keeps the default, 0 means no limit; both blank clears the override. The gateway applies it from the next call."
                    </p>
                    <ActionForm action=action>
                        <div class="mt-3 space-y-2" data-testid="ai-budget-form">
                            <input type="hidden" name="customer_id" value=customer_id />
                            <div>
                                <label for="ai-daily" class="block text-sm font-medium">"Daily token budget"</label>
                                <input id="ai-daily" name="daily_tokens" type="number" min="0" step="1" class=INPUT value=daily placeholder="default" />
                            </div>
                            <div>
                                <label for="ai-concurrent" class="block text-sm font-medium">"Calls at once"</label>
                                <input id="ai-concurrent" name="max_concurrent" type="number" min="0" step="1" class=INPUT value=concurrent placeholder="default" />
                            </div>
                            <div>
                                <label for="ai-reason" class="block text-sm font-medium">"Reason for the budget change (required, kept in the audit log)"</label>
                                <input id="ai-reason" name="reason" type="text" required maxlength="500" class=INPUT
                                    prop:value=move || { action.version().get(); String::new() } />
                            </div>
                            <button type="submit" class=BUTTON disabled=move || action.pending().get()>"Save AI budget"</button>
                        </div>
                    </ActionForm>
                    <div class="mt-2" aria-live="polite"><ActionOutcome value=move || action.value().get() success="AI budget saved." /></div>
                </div>
            </div>
        </section>
    }
}

/// A titled card holding a table.
/// Invoices or charges: description, amount, status, date, link.
#[component]
fn BillingTable(
    caption: &'static str,
    testid: &'static str,
    items: Vec<crate::types::billing::HistoryItemView>,
) -> impl IntoView {
    if items.is_empty() {
        return view! {
            <p class="mb-3 text-sm text-slate-700 dark:text-slate-300">{format!("{caption}: none.")}</p>
        }
        .into_any();
    }
    view! {
        <TableScroll><table class=format!("{ADMIN_TABLE} mb-4") data-testid=testid>
            <caption class="mb-1 text-left text-sm font-medium">{caption}</caption>
            <thead><tr>
                <th scope="col" class=TH>"What"</th>
                <th scope="col" class=TH>"Amount"</th>
                <th scope="col" class=TH>"Status"</th>
                <th scope="col" class=TH>"Date"</th>
                <th scope="col" class=TH>"Link"</th>
            </tr></thead>
            <tbody>
                {items.into_iter().map(|i| view! {
                    <tr>
                        <td class=TD_TEXT>{i.description}{i.failure.map(|f| view! { <span class="block text-xs text-red-700 dark:text-red-400">{f}</span> })}</td>
                        <td class=format!("{TD} tabular-nums")>{i.amount}</td>
                        <td class=TD>{i.status}</td>
                        <td class=TD>{short_time(&i.date)}</td>
                        <td class=TD>{i.url.as_deref().and_then(safe_href).map(|u| view! { <a class=LINK href=u rel="noopener noreferrer" target="_blank">"Invoice"</a> })}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></TableScroll>
    }
    .into_any()
}

#[component]
fn Section(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class=format!("{CARD} mt-6 min-w-0") aria-label=title>
            <h2 class="mb-2 font-semibold">{title}</h2>
            {children()}
        </section>
    }
}
