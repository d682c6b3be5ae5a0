//! `/admin/admins`: the staff admins, and the form that invites another.

use super::api::{admin_list_admins, AdminInviteAdmin};
use super::{
    short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, BUTTON, CARD, INPUT, TABLE, TD,
    TH,
};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

/// The admins page.
#[component]
pub fn AdminAdminsPage() -> impl IntoView {
    let invite = ServerAction::<AdminInviteAdmin>::new();
    let admins = Resource::new(move || invite.version().get(), |_| admin_list_admins());
    view! {
        <Title text="Admins · Admin · RSOLV" />
        <AdminNav current="/admin/admins" />
        <h1 class="text-2xl font-bold tracking-tight">"Staff admins"</h1>
        <Transition fallback=|| view! { <Loading label="Loading admins…" /> }>
            {move || Suspend::new(async move {
                match admins.await {
                    Ok(rows) => view! {
                        <div class=format!("{CARD} mt-4 overflow-x-auto p-0")>
                            <table class=TABLE>
                                <thead><tr><th scope="col" class=TH>"Email"</th><th scope="col" class=TH>"State"</th><th scope="col" class=TH>"Since"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|a| view! {
                                        <tr>
                                            <td class=TD>{a.email}</td>
                                            <td class=TD><Badge text=if a.active { "active".to_owned() } else { "invited".to_owned() } /></td>
                                            <td class=TD>{short_time(&a.created_at)}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
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
