//! `/admin/flags`: feature flags and kill switches. A flag forced by an
//! environment variable shows the variable and cannot be switched.
//!
//! Switching takes two steps and works without JavaScript: the card's
//! "Switch off…" / "Switch on…" is a plain link to
//! `/admin/flags?confirm=<key>&to=on|off`, which shows a confirmation panel
//! naming the switch and what switching it does, with the mandatory reason
//! (kept in the audit log) and the button that switches. No single click
//! flips a flag. A confirmation link whose target is the flag's value
//! already (e.g. followed again after the switch) shows no panel.

use super::api::{admin_list_flags, AdminSetFlag};
use super::{
    ActionOutcome, AdminNav, Badge, LoadError, Loading, CARD, DANGER_BUTTON, INPUT,
    SECONDARY_BUTTON,
};
use crate::types::admin::AdminFlagRow;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// What switching flag `key` to `on` does, in the operator's words (the
/// confirmation panel says it before anything changes); `None` for a key
/// this console does not know (the panel shows the flag's description).
pub fn switch_effect(key: &str, on: bool) -> Option<&'static str> {
    Some(match (key, on) {
        ("billing_enabled", false) => {
            "No call is made to Stripe: card charges, subscriptions and new Stripe customers wait in the job queue until billing is switched on again."
        }
        ("billing_enabled", true) => {
            "Calls to Stripe resume: the Stripe jobs waiting in the queue run."
        }
        ("auto_provision", false) => {
            "New signups and the Action's onboarding wait in the approval queue until an admin approves them."
        }
        ("auto_provision", true) => {
            "New signups and the Action's onboarding are provisioned at once, without approval."
        }
        ("signups_enabled", false) => "Every new signup is refused until signups are switched on again.",
        ("signups_enabled", true) => "New signups are accepted again.",
        ("maintenance", true) => {
            "The Action API answers 503 (Retry-After) to every request: every customer's runs stop until maintenance is switched off."
        }
        ("maintenance", false) => "The Action API serves requests again.",
        ("use_legacy_claude_adapter", true) => {
            "The credential exchange tells the Action to use its legacy Claude adapter, from each customer's next run."
        }
        ("use_legacy_claude_adapter", false) => {
            "The Action uses its current Claude adapter again, from each customer's next run."
        }
        _ => return None,
    })
}

/// Whether switching `key` to `on` stops service (billing off, signups
/// off, maintenance on): its button is styled as danger.
fn stops_service(key: &str, on: bool) -> bool {
    if key == "maintenance" {
        on
    } else {
        !on
    }
}

/// `/admin/flags?confirm=<key>&to=on|off`: the confirmation step's URL.
pub fn confirm_href(key: &str, on: bool) -> String {
    super::href_with(
        "/admin/flags",
        &[
            ("confirm", key.to_owned()),
            ("to", if on { "on" } else { "off" }.to_owned()),
        ],
    )
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// The flags page.
#[component]
pub fn AdminFlagsPage() -> impl IntoView {
    let query = use_query_map();
    let set = ServerAction::<AdminSetFlag>::new();
    let flags = Resource::new(move || set.version().get(), |_| admin_list_flags());
    // The switch being confirmed: (key, target value).
    let confirming = move || {
        let q = query.read();
        let key = q.get("confirm")?;
        let to = match q.get("to").as_deref() {
            Some("on") => true,
            Some("off") => false,
            _ => return None,
        };
        Some((key, to))
    };
    view! {
        <Title text="Flags · Admin · RSOLV" />
        <AdminNav current="/admin/flags" />
        <h1 class="text-2xl font-bold tracking-tight">"Feature flags and kill switches"</h1>
        <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
            "Changes apply at once on this server and within a few seconds on the others. An environment variable that is set forces its flag. Every switch is confirmed first and needs a reason, kept in the audit log."
        </p>
        <div aria-live="polite" class="mt-2"><ActionOutcome value=move || set.value().get() success="Flag switched." /></div>
        <Transition fallback=|| view! { <Loading label="Loading flags…" /> }>
            {move || Suspend::new(async move {
                let confirming = confirming();
                match flags.await {
                    Ok(rows) => view! {
                        <ul class="mt-4 grid gap-3 md:grid-cols-2" data-testid="flags">
                            {rows
                                .into_iter()
                                .map(|f| {
                                    let target = confirming
                                        .as_ref()
                                        .filter(|(key, _)| *key == f.key)
                                        .map(|(_, to)| *to);
                                    view! { <FlagCard f set target /> }
                                })
                                .collect_view()}
                        </ul>
                    }
                    .into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// One flag; `target` is the value the admin asked to switch it to (the
/// confirmation step), if this flag is being confirmed.
#[component]
fn FlagCard(
    f: AdminFlagRow,
    set: ServerAction<AdminSetFlag>,
    target: Option<bool>,
) -> impl IntoView {
    let next = !f.stored;
    let testid = format!("flag-{}", f.key);
    let anchor = format!("flag-{}", f.key);
    view! {
        <li class=format!("{CARD} min-w-0") data-testid=testid id=anchor>
            <div class="flex items-center justify-between gap-2">
                <h2 class="break-all font-mono text-sm font-semibold">{f.key.clone()}</h2>
                <Badge text=on_off(f.on).to_owned() />
            </div>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">{f.description.clone()}</p>
            {match (f.forced, target) {
                (Some(v), _) => view! {
                    <p class="mt-3 text-sm font-medium text-amber-800 dark:text-amber-200" data-testid="flag-forced">
                        {format!("Forced {} by the environment ({}); not switchable here.", on_off(v), f.env_var)}
                    </p>
                }
                .into_any(),
                (None, Some(to)) if to == next => view! { <ConfirmSwitch f=f.clone() set to /> }.into_any(),
                (None, target) => view! {
                    {target.map(|to| view! {
                        <p class="mt-3 text-sm" role="status" data-testid="flag-already">
                            {format!("{} is {} already; nothing to switch.", f.key, on_off(to))}
                        </p>
                    })}
                    <a
                        href=confirm_href(&f.key, next)
                        class=format!("{} mt-3", if stops_service(&f.key, next) { DANGER_BUTTON } else { SECONDARY_BUTTON })
                        data-testid="flag-switch"
                    >
                        {if next { "Switch on…" } else { "Switch off…" }}
                    </a>
                    <p class="mt-1 text-xs text-slate-600 dark:text-slate-400">{format!("Can be forced with {}.", f.env_var)}</p>
                }
                .into_any(),
            }}
        </li>
    }
}

/// The confirmation step: what switching `f` to `to` does, the reason, and
/// the button that switches (or Cancel).
#[component]
fn ConfirmSwitch(f: AdminFlagRow, set: ServerAction<AdminSetFlag>, to: bool) -> impl IntoView {
    let reason_id = format!("flag-reason-{}", f.key);
    let question_id = format!("flag-confirm-{}", f.key);
    let labelled_by = question_id.clone();
    let effect = switch_effect(&f.key, to)
        .map(str::to_owned)
        .unwrap_or_else(|| f.description.clone());
    let danger = stops_service(&f.key, to);
    view! {
        <div
            role="alertdialog"
            aria-labelledby=labelled_by
            class="mt-3 rounded-md border border-red-300 p-3 dark:border-red-800"
            data-testid="flag-confirm"
        >
            <p id=question_id class="text-sm font-semibold">{format!("Switch {} {}?", f.key, on_off(to))}</p>
            <p class="mt-1 text-sm" data-testid="flag-effect">{effect}</p>
            <ActionForm action=set>
                <input type="hidden" name="key" value=f.key.clone() />
                <input type="hidden" name="enabled" value=to.to_string() />
                <label for=reason_id.clone() class="mt-3 block text-sm font-medium">"Reason (required, kept in the audit log)"</label>
                <input id=reason_id name="reason" type="text" required maxlength="500" class=INPUT data-testid="flag-reason" />
                <div class="mt-3 flex flex-wrap gap-2">
                    <button type="submit" class=if danger { DANGER_BUTTON } else { SECONDARY_BUTTON } disabled=move || set.pending().get()>
                        {format!("Yes, switch {} {}", f.key, on_off(to))}
                    </button>
                    <a href="/admin/flags" class=SECONDARY_BUTTON>"Cancel"</a>
                </div>
            </ActionForm>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_switch_says_what_it_does_both_ways() {
        for key in [
            "billing_enabled",
            "auto_provision",
            "signups_enabled",
            "maintenance",
            "use_legacy_claude_adapter",
        ] {
            assert!(switch_effect(key, true).is_some(), "{key} on");
            assert!(switch_effect(key, false).is_some(), "{key} off");
        }
        assert_eq!(switch_effect("no_such_flag", true), None);
        assert!(stops_service("maintenance", true) && stops_service("billing_enabled", false));
        assert!(!stops_service("maintenance", false) && !stops_service("signups_enabled", true));
        assert_eq!(
            confirm_href("billing_enabled", false),
            "/admin/flags?confirm=billing_enabled&to=off"
        );
    }
}
