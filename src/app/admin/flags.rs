//! `/admin/flags`: feature flags and kill switches. A flag forced by an
//! environment variable shows the variable and cannot be switched. Every
//! switch needs a reason (a plain form field: works without JavaScript),
//! kept in the audit log.

use super::api::{admin_list_flags, AdminSetFlag};
use super::{
    ActionOutcome, AdminNav, Badge, LoadError, Loading, CARD, DANGER_BUTTON, INPUT,
    SECONDARY_BUTTON,
};
use crate::types::admin::AdminFlagRow;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

/// The flags page.
#[component]
pub fn AdminFlagsPage() -> impl IntoView {
    let set = ServerAction::<AdminSetFlag>::new();
    let flags = Resource::new(move || set.version().get(), |_| admin_list_flags());
    view! {
        <Title text="Flags · Admin · RSOLV" />
        <AdminNav current="/admin/flags" />
        <h1 class="text-2xl font-bold tracking-tight">"Feature flags and kill switches"</h1>
        <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
            "Changes apply at once on this server and within a few seconds on the others. An environment variable that is set forces its flag."
        </p>
        <div aria-live="polite" class="mt-2"><ActionOutcome value=move || set.value().get() success="Flag switched." /></div>
        <Transition fallback=|| view! { <Loading label="Loading flags…" /> }>
            {move || Suspend::new(async move {
                match flags.await {
                    Ok(rows) => view! {
                        <ul class="mt-4 grid gap-3 md:grid-cols-2" data-testid="flags">
                            {rows.into_iter().map(|f| view! { <FlagCard f set /> }).collect_view()}
                        </ul>
                    }
                    .into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn FlagCard(f: AdminFlagRow, set: ServerAction<AdminSetFlag>) -> impl IntoView {
    let next = !f.stored;
    let testid = format!("flag-{}", f.key);
    let reason_id = format!("flag-reason-{}", f.key);
    // Turning billing off, or maintenance on, stops service: styled as danger.
    let danger = (f.key == "maintenance" && next) || (f.key != "maintenance" && !next);
    view! {
        <li class=CARD data-testid=testid>
            <div class="flex items-center justify-between gap-2">
                <h2 class="font-mono text-sm font-semibold">{f.key.clone()}</h2>
                <Badge text=if f.on { "on".to_owned() } else { "off".to_owned() } />
            </div>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">{f.description.clone()}</p>
            {match f.forced {
                Some(v) => view! {
                    <p class="mt-3 text-sm font-medium text-amber-800 dark:text-amber-200" data-testid="flag-forced">
                        {format!("Forced {} by the environment ({}); not switchable here.", if v { "on" } else { "off" }, f.env_var)}
                    </p>
                }
                .into_any(),
                None => view! {
                    <ActionForm action=set>
                        <input type="hidden" name="key" value=f.key.clone() />
                        <input type="hidden" name="enabled" value=next.to_string() />
                        <label for=reason_id.clone() class="mt-3 block text-sm font-medium">"Reason"</label>
                        <input id=reason_id name="reason" type="text" required maxlength="500" class=INPUT data-testid="flag-reason" />
                        <button type="submit" class=format!("{} mt-3", if danger { DANGER_BUTTON } else { SECONDARY_BUTTON })>
                            {if next { "Switch on" } else { "Switch off" }}
                        </button>
                    </ActionForm>
                    <p class="mt-1 text-xs text-slate-600 dark:text-slate-400">{format!("Can be forced with {}.", f.env_var)}</p>
                }
                .into_any(),
            }}
        </li>
    }
}
