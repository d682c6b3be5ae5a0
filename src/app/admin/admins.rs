//! `/admin/admins`: the staff admins (state, two-factor enrolment), the
//! deactivate / reactivate forms (reason required; a deactivated admin's
//! sessions end at once), and the form that invites another.

use super::api::{admin_list_admins, AdminDeactivateAdmin, AdminInviteAdmin, AdminReactivateAdmin};
use super::{
    short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, TableScroll, ADMIN_TABLE,
    BUTTON, CARD, DANGER_BUTTON, INPUT, SECONDARY_BUTTON, TD, TH,
};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

/// The admins page.
#[component]
pub fn AdminAdminsPage() -> impl IntoView {
    let invite = ServerAction::<AdminInviteAdmin>::new();
    let deactivate = ServerAction::<AdminDeactivateAdmin>::new();
    let reactivate = ServerAction::<AdminReactivateAdmin>::new();
    let admins = Resource::new(
        move || {
            (
                invite.version().get(),
                deactivate.version().get(),
                reactivate.version().get(),
            )
        },
        |_| admin_list_admins(),
    );
    view! {
        <Title text="Admins · Admin · RSOLV" />
        <AdminNav current="/admin/admins" />
        <h1 class="text-2xl font-bold tracking-tight">"Staff admins"</h1>
        <div aria-live="polite" class="mt-2">
            <ActionOutcome value=move || deactivate.value().get() success="Admin deactivated; their sessions ended." />
            <ActionOutcome value=move || reactivate.value().get() success="Admin reactivated." />
        </div>
        <Transition fallback=|| view! { <Loading label="Loading admins…" /> }>
            {move || Suspend::new(async move {
                match admins.await {
                    Ok(rows) => view! {
                        <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
                            <TableScroll><table class=ADMIN_TABLE>
                                <thead><tr><th scope="col" class=TH>"Email"</th><th scope="col" class=TH>"State"</th><th scope="col" class=TH>"Two-factor"</th><th scope="col" class=TH>"Since"</th><th scope="col" class=TH>"Access"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|a| {
                                        let state = if a.deactivated { "deactivated" } else if a.active { "active" } else { "invited" };
                                        let reason_id = format!("admin-reason-{}", a.id);
                                        view! {
                                            <tr data-testid=format!("admin-row-{}", a.id)>
                                                <td class=format!("{TD} max-w-[14rem] truncate") title=a.email.clone()>{a.email.clone()}</td>
                                                <td class=TD><Badge text=state.to_owned() /></td>
                                                <td class=TD>{if a.two_factor { "enrolled" } else { "at next sign-in" }}</td>
                                                <td class=TD>{short_time(&a.created_at)}</td>
                                                <td class=TD>
                                                    <AccessForm user_id=a.id deactivated=a.deactivated reason_id deactivate reactivate />
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table></TableScroll>
                        </div>
                    }
                    .into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
        <section class=format!("{CARD} mt-6") aria-labelledby="invite-title">
            <h2 id="invite-title" class="font-semibold">"Invite an admin"</h2>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">"They receive an email to set a password. Use an address that has no customer account."</p>
            <ActionForm action=invite>
                <div class="mt-3 flex flex-wrap items-end gap-2">
                    <div>
                        <label for="inv-email" class="block text-sm font-medium">"Email"</label>
                        <input id="inv-email" name="email" type="email" required class=INPUT />
                    </div>
                    <button type="submit" class=BUTTON>"Send invite"</button>
                </div>
            </ActionForm>
            <div aria-live="polite" class="mt-2"><ActionOutcome value=move || invite.value().get() success="Invite sent." /></div>
        </section>
    }
}

/// The deactivate (or reactivate) form of one admin: a reason and a button.
#[component]
fn AccessForm(
    user_id: i64,
    deactivated: bool,
    reason_id: String,
    deactivate: ServerAction<AdminDeactivateAdmin>,
    reactivate: ServerAction<AdminReactivateAdmin>,
) -> impl IntoView {
    let fields = move || {
        view! {
            <input type="hidden" name="user_id" value=user_id.to_string() />
            <label for=reason_id.clone() class="sr-only">"Reason"</label>
            <input id=reason_id.clone() name="reason" type="text" required maxlength="500" placeholder="Reason" class=INPUT />
        }
    };
    if deactivated {
        view! {
            <ActionForm action=reactivate>
                <div class="flex flex-wrap items-end gap-2">
                    {fields()}
                    <button type="submit" class=SECONDARY_BUTTON>"Reactivate"</button>
                </div>
            </ActionForm>
        }
        .into_any()
    } else {
        view! {
            <ActionForm action=deactivate>
                <div class="flex flex-wrap items-end gap-2">
                    {fields()}
                    <button type="submit" class=DANGER_BUTTON>"Deactivate"</button>
                </div>
            </ActionForm>
        }
        .into_any()
    }
}
