//! `/billing`: plan and Pro subscription (subscribe, cancel now or at the
//! period end, resume), cards on file (default, remove) and the card form;
//! `/billing/history`: invoices and charges; [`BillingNotice`] on the
//! dashboard.
//!
//! Subscribing, cancelling, resuming, choosing the default card and
//! removing a card are `ActionForm`s (they work before hydration);
//! cancelling and removing go through a confirmation state reached by a
//! plain link (`?confirm_cancel=now|period_end`, `?confirm_remove=<pm>`).
//! Entering a card needs JavaScript by nature (the card number goes to
//! Stripe through Stripe.js, never to us): `/billing-card.js` mounts the
//! card element and runs the SetupIntent flow; the page says so without it.

use super::billing_api::{
    get_billing, get_billing_history, CancelSubscription, RemoveCard, ResumeSubscription,
    SetDefaultCard, SubscribePro,
};
use super::{
    short_time, Alert, LoadError, Loading, Notice, PortalNav, BUTTON, CARD, DANGER_BUTTON, LINK,
    SECONDARY_BUTTON,
};
use crate::types::billing::{
    BillingHistoryView, BillingNoticeView, BillingView, CardView, HistoryItemView,
    PaymentToAuthenticate, UnpaidFixView,
};
use crate::types::urls::safe_href;
use crate::types::values::SubscriptionStatus;
use crate::types::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// Once `action` has an outcome, loads `/billing` afresh with it in the
/// query (browser only).
fn reload_after<A, T>(action: ServerAction<A>, ok: fn(T) -> String)
where
    A: leptos::server_fn::ServerFn<Output = T, Error = AppError> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    Effect::new(move |_| {
        let Some(outcome) = action.value().get() else {
            return;
        };
        let (key, text) = match outcome {
            Ok(value) => ("notice", ok(value)),
            Err(error) => ("error", error.to_string()),
        };
        #[cfg(feature = "hydrate")]
        {
            let query: String = js_sys_encode(&text);
            let _ = leptos::prelude::window()
                .location()
                .set_href(&format!("/billing?{key}={query}"));
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (key, text);
    });
}

/// Percent-encodes `text` for a query value.
#[cfg(feature = "hydrate")]
fn js_sys_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// What the page asks the customer to confirm (a page state reached by a
/// plain link: `?confirm_subscribe=pro`, `?confirm_cancel=now|period_end`,
/// `?confirm_remove=<pm>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Subscribing to Pro.
    Subscribe,
    /// Cancelling Pro at once.
    CancelNow,
    /// Cancelling Pro at the end of the period.
    CancelAtPeriodEnd,
    /// Removing the card with this payment method id.
    Remove(String),
}

/// The billing page's actions, on the customer's own page. Without them
/// ([`Billing`]'s `actions` `None`) the page renders read-only: no form,
/// button or link that acts (the admin console's view).
#[derive(Clone, Copy)]
pub struct BillingActions {
    /// Subscribe to Pro.
    pub subscribe: ServerAction<SubscribePro>,
    /// Cancel now or at the period end.
    pub cancel: ServerAction<CancelSubscription>,
    /// Resume a subscription ending at the period end.
    pub resume: ServerAction<ResumeSubscription>,
    /// Make a card the default.
    pub set_default: ServerAction<SetDefaultCard>,
    /// Remove a card.
    pub remove: ServerAction<RemoveCard>,
}

impl BillingActions {
    /// New server actions (in the current reactive owner).
    pub fn new() -> Self {
        Self {
            subscribe: ServerAction::new(),
            cancel: ServerAction::new(),
            resume: ServerAction::new(),
            set_default: ServerAction::new(),
            remove: ServerAction::new(),
        }
    }
}

impl Default for BillingActions {
    fn default() -> Self {
        Self::new()
    }
}

/// The billing page.
#[component]
pub fn BillingPage() -> impl IntoView {
    let actions = BillingActions::new();
    let BillingActions {
        subscribe,
        cancel,
        resume,
        set_default,
        remove,
    } = actions;
    let data = Resource::new(
        move || {
            (
                subscribe.version().get(),
                cancel.version().get(),
                resume.version().get(),
                set_default.version().get(),
                remove.version().get(),
            )
        },
        |_| get_billing(),
    );
    let query = use_query_map();
    let confirm = move || {
        let query = query.read();
        if query.get("confirm_subscribe").as_deref() == Some("pro") {
            return Some(Confirm::Subscribe);
        }
        match query.get("confirm_cancel").as_deref() {
            Some("now") => Some(Confirm::CancelNow),
            Some("period_end") => Some(Confirm::CancelAtPeriodEnd),
            _ => query.get("confirm_remove").map(Confirm::Remove),
        }
    };
    // After an action, the page is loaded afresh with its outcome in the
    // query (`?notice=` / `?error=`): the server renders the new state in
    // full, as it does for the no-JavaScript form posts.
    reload_after(subscribe, |m: String| m);
    reload_after(cancel, |m: String| m);
    reload_after(resume, |m: String| m);
    reload_after(set_default, |()| "Default card changed.".to_owned());
    reload_after(remove, |()| "Card removed.".to_owned());
    let notice = move || {
        let query = query.read();
        query
            .get("card_added")
            .map(|_| "Card saved.".to_owned())
            .or_else(|| query.get("notice"))
    };
    let error = move || query.read().get("error");

    view! {
        <Title text="Billing · RSOLV" />
        <PortalNav current="/billing" />
        <div class="flex flex-wrap items-baseline justify-between gap-2">
            <h1 class="text-2xl font-bold tracking-tight">"Billing"</h1>
            <a href="/billing/history" class=LINK>"Billing history"</a>
        </div>
        <div class="mt-4 space-y-3" data-testid="billing-messages">
            {notice().map(|text| view! { <Notice message=text /> })}
            {error().map(|text| view! { <Alert message=text /> })}
        </div>
        <Transition fallback=|| view! { <Loading label="Loading billing…" /> }>
            {move || {
                let confirm = confirm();
                Suspend::new(async move {
                    match data.await {
                        Ok(view) => view! {
                            <Billing view confirm actions=Some(actions) />
                        }.into_any(),
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// The billing page itself, a pure render of `view`: notices, the plan
/// and cards, and (with `actions`) what the customer can do about them;
/// `confirm` is the confirmation step the page is on. With `actions`
/// `None` it is read-only (the admin console's view of a customer's
/// portal).
#[component]
pub fn Billing(
    view: BillingView,
    confirm: Option<Confirm>,
    actions: Option<BillingActions>,
) -> impl IntoView {
    let paused = (!view.billing_enabled).then(|| view! {
        <p role="status" data-testid="billing-paused" class="mt-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
            <span class="font-semibold">"Billing is paused. "</span>
            "No card is charged right now: fixes are recorded and billed when billing resumes. Cards and plans cannot be changed meanwhile."
        </p>
    });
    let failed = view.payment_failed.then(|| view! {
        <p role="alert" class="mt-4 rounded-md border border-red-300 bg-red-50 px-4 py-3 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-100">
            <span class="font-semibold">"Your card was declined. "</span>
            "Fixes beyond your credits are paused. Add a working card below: the unpaid fixes are charged to it and fixes resume."
        </p>
    });
    view! {
        {paused}
        {failed}
        <AccountState view=view.clone() />
        <AuthenticationNotices payments=view.authentication_needed.clone() />
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <Plan view=view.clone() confirm=confirm.clone() actions />
            <section class=CARD aria-labelledby="cards-heading" data-testid="payment-methods">
                <h2 id="cards-heading" class="text-lg font-semibold">"Payment methods"</h2>
                <Cards cards=view.cards.clone() confirm=confirm.clone() actions enabled=view.billing_enabled pro_needs_card=on_pro(&view) && !view.cancel_at_period_end />
                {actions.is_some().then(|| view! { <AddCard view=view.clone() /> })}
            </section>
        </div>
    }
}

/// Where the account stands when fixes may not run or wait for payment:
/// suspended (whom to write to), no credits and no way to pay (fixes are
/// paused: add a card or subscribe), no credits but a card (each fix is
/// charged), fixes waiting for payment (where they are listed). Renders
/// nothing otherwise.
#[component]
fn AccountState(view: BillingView) -> impl IntoView {
    let amber = "mt-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100";
    let state = if view.suspended {
        let mailto = format!("mailto:{}", view.support_email);
        Some(view! {
            <div role="alert" data-testid="billing-suspended" class="mt-4 rounded-md border border-red-300 bg-red-50 px-4 py-3 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-100">
                <p>
                    <span class="font-semibold">"Your account is suspended. "</span>
                    "The Action's calls are refused and your API keys do not work until it is restored. Write to "
                    <a href=mailto class="font-medium underline">{view.support_email.clone()}</a>
                    " from your account's email address to find out why."
                </p>
            </div>
        }.into_any())
    } else if view.credit_balance <= 0 && !view.can_use_service {
        Some(view! {
            <p role="status" data-testid="billing-no-credits" class=amber>
                <span class="font-semibold">"No credits left: fixes are paused. "</span>
                {if view.payment_failed {
                    "Add a working card below to pay for fixes again.".to_owned()
                } else {
                    format!("Add a card below to pay {} per fix, or subscribe to Pro.", view.payg_price)
                }}
            </p>
        }.into_any())
    } else if view.credit_balance <= 0 && !on_pro(&view) {
        Some(
            view! {
                <p role="status" data-testid="billing-no-credits" class=amber>
                    <span class="font-semibold">"No credits left. "</span>
                    {format!("Each fix is charged {} to your card.", view.payg_price)}
                </p>
            }
            .into_any(),
        )
    } else {
        None
    };
    let unpaid = (view.unpaid_fixes > 0).then(|| {
        let what = if view.unpaid_fixes == 1 {
            "1 fix is waiting for payment".to_owned()
        } else {
            format!("{} fixes are waiting for payment", view.unpaid_fixes)
        };
        view! {
            <p role="status" data-testid="billing-unpaid-fixes" class=amber>
                <span class="font-semibold">{what}": "</span>
                "each is charged once, oldest first, as soon as you add a card or buy credits. "
                <a href=super::portal_href("/billing/history") class=LINK>"See them in billing history"</a>
            </p>
        }
    });
    view! { {state} {unpaid} }
}

/// Whether the customer has an open Pro subscription (active, trialing,
/// past due…: one whose invoices still come).
fn on_pro(view: &BillingView) -> bool {
    view.subscription_status
        .as_deref()
        .and_then(|s| SubscriptionStatus::parse(s).ok())
        .is_some_and(SubscriptionStatus::is_open)
}

/// `Visa •••• 4242` of the default card (or the first, when none is
/// marked), `None` without a card.
fn default_card_label(cards: &[CardView]) -> Option<String> {
    cards
        .iter()
        .find(|c| c.is_default)
        .or(cards.first())
        .map(|c| format!("{} •••• {}", c.brand, c.last4))
}

fn status_label(status: Option<&str>) -> &'static str {
    status
        .and_then(|s| SubscriptionStatus::parse(s).ok())
        .map_or("Not subscribed", SubscriptionStatus::label)
}

#[component]
fn Plan(
    view: BillingView,
    confirm: Option<Confirm>,
    actions: Option<BillingActions>,
) -> impl IntoView {
    let subscribed = on_pro(&view);
    let plan = match view.plan.as_str() {
        "pro" => "Pro",
        "payg" => "Pay as you go",
        _ => "Trial",
    };
    let period_end = view
        .current_period_end
        .as_deref()
        .map(short_time)
        .unwrap_or_default();
    let can_subscribe = view.billing_enabled && !view.cards.is_empty();
    view! {
        <section class=CARD aria-labelledby="plan-heading" data-testid="plan-section">
            <h2 id="plan-heading" class="text-lg font-semibold">"Plan"</h2>
            <p class="mt-2 text-3xl font-semibold" data-testid="billing-plan">{plan}</p>
            <p class="mt-1 text-sm text-slate-600 dark:text-slate-400">
                {format!("{} credits left", view.credit_balance)}
            </p>
            <p class="mt-1 text-sm text-slate-600 dark:text-slate-400" data-testid="credit-policy">
                {view.credit_policy.clone()}
            </p>
            {if subscribed {
                view! {
                    <div data-testid="subscription">
                    <dl class="mt-4 space-y-1 text-sm">
                        <div class="flex gap-2"><dt class="text-slate-600 dark:text-slate-400">"Subscription:"</dt>
                            <dd data-testid="subscription-status">{status_label(view.subscription_status.as_deref())}</dd></div>
                        <div class="flex gap-2"><dt class="text-slate-600 dark:text-slate-400">"Price:"</dt>
                            <dd data-testid="pro-price">{format!("{} a month", view.pro_price)}</dd></div>
                        <div class="flex gap-2"><dt class="text-slate-600 dark:text-slate-400">"Current period ends:"</dt>
                            <dd>{period_end.clone()}</dd></div>
                        {(!view.cancel_at_period_end).then(|| view! {
                            <div class="flex flex-wrap gap-x-2"><dt class="text-slate-600 dark:text-slate-400">"Next charge:"</dt>
                                <dd data-testid="pro-next-charge">{format!(
                                    "{} on {period_end}, plus {} for each fix beyond your credits this period",
                                    view.pro_price, view.overage_price
                                )}</dd></div>
                        })}
                        <div class="flex flex-wrap gap-x-2"><dt class="text-slate-600 dark:text-slate-400">"Card:"</dt>
                            <dd data-testid="pro-card">{default_card_label(&view.cards).unwrap_or_else(|| "none: add one below".to_owned())}</dd></div>
                    </dl>
                    {(view.subscription_status.as_deref() == Some("past_due")).then(|| view! {
                        <p class="mt-3 text-sm font-medium text-red-800 dark:text-red-300" data-testid="past-due-next-step">
                            "The last payment failed. Stripe will try it again with your default card: add a working card below and make it the default."
                        </p>
                    })}
                    {if view.cancel_at_period_end {
                        view! {
                            <div>
                            <p class="mt-4 text-sm" data-testid="ends-at-period-end">
                                {format!("Your subscription ends on {period_end}. Until then you keep Pro.")}
                            </p>
                            {actions.map(|BillingActions { resume, .. }| {
                                let pending = resume.pending();
                                view! {
                                    <ActionForm action=resume attr:class="mt-3">
                                        <button type="submit" class=BUTTON disabled=move || pending.get() || !view.billing_enabled>
                                            {move || if pending.get() { "Resuming…" } else { "Resume subscription" }}
                                        </button>
                                    </ActionForm>
                                }
                            })}
                            </div>
                        }.into_any()
                    } else if let Some(BillingActions { cancel, .. }) = actions {
                        view! {
                            <div>
                            <div class="mt-4 flex flex-wrap gap-2">
                                <a href="/billing?confirm_cancel=period_end" rel="external" class=SECONDARY_BUTTON>"Cancel at period end"</a>
                                <a href="/billing?confirm_cancel=now" rel="external" class=SECONDARY_BUTTON>"Cancel now"</a>
                            </div>
                            {match confirm {
                                Some(Confirm::CancelNow) => view! { <ConfirmCancel when="now" action=cancel /> }.into_any(),
                                Some(Confirm::CancelAtPeriodEnd) => view! { <ConfirmCancel when="period_end" action=cancel /> }.into_any(),
                                _ => ().into_any(),
                            }}
                            </div>
                        }.into_any()
                    } else {
                        ().into_any()
                    }}
                    </div>
                }.into_any()
            } else {
                view! {
                    <div>
                    <div class="mt-4 rounded-lg border border-indigo-200 bg-indigo-50 p-4 dark:border-indigo-900 dark:bg-indigo-950">
                        <h3 class="font-semibold">{format!("Pro · {}/month", view.pro_price)}</h3>
                        <ul class="mt-2 list-disc space-y-1 pl-5 text-sm text-slate-700 dark:text-slate-300">
                            <li>{format!("{} credits every paid month", view.pro_credits)}</li>
                            <li>{format!("{} per fix beyond them, on the next invoice", view.overage_price)}</li>
                            <li>"Cancel any time: now, or at the end of the period"</li>
                        </ul>
                        {match actions {
                            None => ().into_any(),
                            Some(_) if can_subscribe => view! {
                                <a href="/billing?confirm_subscribe=pro" rel="external" class=format!("mt-3 {BUTTON}") data-testid="subscribe-pro">"Subscribe to Pro…"</a>
                            }.into_any(),
                            Some(_) => view! {
                                <button type="button" class=format!("mt-3 {BUTTON}") data-testid="subscribe-pro" disabled=true>"Subscribe to Pro…"</button>
                            }.into_any(),
                        }}
                        {actions.filter(|_| confirm == Some(Confirm::Subscribe) && can_subscribe).map(|BillingActions { subscribe, .. }| {
                            let pending = subscribe.pending();
                            view! { <ConfirmSubscribe view=view.clone() action=subscribe pending /> }
                        })}
                        {(!can_subscribe && view.billing_enabled).then(|| view! {
                            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">"Add a card first."</p>
                        })}
                    </div>
                    <p class="mt-3 text-sm text-slate-600 dark:text-slate-400">
                        {format!("Without a subscription, each fix beyond your credits costs {} with a card on file.", view.payg_price)}
                    </p>
                    </div>
                }.into_any()
            }}
        </section>
    }
}

/// What subscribing will do, before it charges: the price, today's charge,
/// the card it goes to and the renewal date (issue 14: money actions are
/// confirmed).
#[component]
fn ConfirmSubscribe(
    view: BillingView,
    action: ServerAction<SubscribePro>,
    pending: Memo<bool>,
) -> impl IntoView {
    let card = default_card_label(&view.cards).unwrap_or_default();
    let price = view.pro_price.clone();
    view! {
        <div role="group" aria-labelledby="confirm-subscribe-title" class="mt-3 rounded-md border border-indigo-300 bg-white p-4 dark:border-indigo-800 dark:bg-slate-900" data-testid="confirm-subscribe">
            <p id="confirm-subscribe-title" class="font-semibold">{format!("Subscribe to Pro for {price} a month?")}</p>
            <dl class="mt-2 space-y-1 text-sm">
                <div class="flex flex-wrap gap-x-2"><dt class="text-slate-600 dark:text-slate-400">"Charged today:"</dt>
                    <dd class="font-medium" data-testid="confirm-subscribe-today">{price.clone()}</dd></div>
                <div class="flex flex-wrap gap-x-2"><dt class="text-slate-600 dark:text-slate-400">"Card:"</dt>
                    <dd class="font-medium" data-testid="confirm-subscribe-card">{card}</dd></div>
                <div class="flex flex-wrap gap-x-2"><dt class="text-slate-600 dark:text-slate-400">"Renews:"</dt>
                    <dd class="font-medium" data-testid="confirm-subscribe-renews">{format!("on {} and every month after, {price} each time, until you cancel", view.pro_renews_on)}</dd></div>
            </dl>
            <p class="mt-2 text-sm text-slate-700 dark:text-slate-300">
                {format!("Each paid month adds {} credits; fixes beyond them cost {} each on the next invoice.", view.pro_credits, view.overage_price)}
            </p>
            <ActionForm action attr:class="mt-3 flex flex-wrap gap-2">
                <button type="submit" class=BUTTON data-testid="confirm-subscribe-button" disabled=move || pending.get()>
                    {move || if pending.get() { "Subscribing…".to_owned() } else { format!("Yes, subscribe and pay {price}") }}
                </button>
                <a href="/billing" rel="external" class=SECONDARY_BUTTON>"Not now"</a>
            </ActionForm>
        </div>
    }
}

#[component]
fn ConfirmCancel(when: &'static str, action: ServerAction<CancelSubscription>) -> impl IntoView {
    let pending = action.pending();
    let (title, text, button) = if when == "now" {
        (
            "Cancel Pro now?",
            "Your subscription ends at once; no refund for the rest of the period. Credits you have stay.",
            "Yes, cancel now",
        )
    } else {
        (
            "Cancel Pro at the end of the period?",
            "You keep Pro until the period ends, then it stops. You can resume until then.",
            "Yes, cancel at period end",
        )
    };
    view! {
        <div role="group" aria-labelledby="confirm-cancel" class="mt-3 rounded-md border border-red-300 bg-red-50 p-4 dark:border-red-900 dark:bg-red-950" data-testid="confirm-cancel">
            <p id="confirm-cancel" class="font-semibold text-red-900 dark:text-red-100">{title}</p>
            <p class="mt-1 text-sm text-red-900 dark:text-red-100">{text}</p>
            <ActionForm action attr:class="mt-3 flex flex-wrap gap-2">
                <input type="hidden" name="when" value=when />
                <button type="submit" class=DANGER_BUTTON disabled=move || pending.get()>
                    {move || if pending.get() { "Cancelling…" } else { button }}
                </button>
                <a href="/billing" rel="external" class=SECONDARY_BUTTON>"Keep it"</a>
            </ActionForm>
        </div>
    }
}

#[component]
fn Cards(
    cards: Vec<CardView>,
    confirm: Option<Confirm>,
    actions: Option<BillingActions>,
    enabled: bool,
    pro_needs_card: bool,
) -> impl IntoView {
    let only_card = cards.len() == 1;
    if cards.is_empty() {
        return view! {
            <p class="mt-3 text-slate-700 dark:text-slate-300" data-testid="cards-empty">"No card on file."</p>
        }
        .into_any();
    }
    // Read-only: the cards as they are, no action.
    let Some(BillingActions {
        set_default,
        remove,
        ..
    }) = actions
    else {
        return view! {
            <ul class="mt-3 divide-y divide-slate-200 dark:divide-slate-800" data-testid="card-list">
                {cards.into_iter().map(|card| view! { <li class="py-3" data-testid="card-item"><CardLabel card /></li> }).collect_view()}
            </ul>
        }
        .into_any();
    };
    view! {
        <ul class="mt-3 divide-y divide-slate-200 dark:divide-slate-800" data-testid="card-list">
            {cards.into_iter().map(|card| {
                let confirming = confirm == Some(Confirm::Remove(card.id.clone()));
                let label = format!("{} ending {}", card.brand, card.last4);
                let id = card.id.clone();
                let is_default = card.is_default;
                view! {
                    <li class="py-3" data-testid="card-item">
                        <div class="flex flex-wrap items-center justify-between gap-2">
                            <CardLabel card />
                            <div class="flex gap-2">
                                {(!is_default && enabled).then(|| {
                                    let id = id.clone();
                                    let label = label.clone();
                                    view! {
                                        <ActionForm action=set_default>
                                            <input type="hidden" name="payment_method_id" value=id />
                                            <button type="submit" class=SECONDARY_BUTTON aria-label=format!("Make {label} the default")>"Make default"</button>
                                        </ActionForm>
                                    }
                                })}
                                {enabled.then(|| {
                                    let label = label.clone();
                                    view! {
                                        <a href=format!("/billing?confirm_remove={id}") rel="external" class=SECONDARY_BUTTON aria-label=format!("Remove {label}")>"Remove"</a>
                                    }
                                })}
                            </div>
                        </div>
                        {confirming.then(|| {
                            let pending = remove.pending();
                            let id = id.clone();
                            view! {
                                <div role="group" aria-label=format!("Remove {label}?") class="mt-3 rounded-md border border-red-300 bg-red-50 p-4 dark:border-red-900 dark:bg-red-950" data-testid="confirm-remove">
                                    <p class="font-semibold text-red-900 dark:text-red-100">{format!("Remove {label}?")}</p>
                                    {if only_card && pro_needs_card {
                                        // The domain refuses it (payment_methods::remove_card):
                                        // say so instead of offering a button that fails.
                                        view! {
                                            <p class="mt-1 text-sm text-red-900 dark:text-red-100" data-testid="confirm-remove-consequence">
                                                "It pays for your Pro subscription, so it cannot be removed: add another card first, or cancel Pro."
                                            </p>
                                            <div class="mt-3 flex flex-wrap gap-2">
                                                <a href="/billing" rel="external" class=SECONDARY_BUTTON>"Keep it"</a>
                                            </div>
                                        }.into_any()
                                    } else {
                                        view! {
                                            {only_card.then(|| view! {
                                                <p class="mt-1 text-sm text-red-900 dark:text-red-100" data-testid="confirm-remove-consequence">
                                                    "It is your only card: fixes beyond your credits pause until you add a card."
                                                </p>
                                            })}
                                            <ActionForm action=remove attr:class="mt-3 flex flex-wrap gap-2">
                                                <input type="hidden" name="payment_method_id" value=id />
                                                <button type="submit" class=DANGER_BUTTON disabled=move || pending.get()>"Yes, remove it"</button>
                                                <a href="/billing" rel="external" class=SECONDARY_BUTTON>"Keep it"</a>
                                            </ActionForm>
                                        }.into_any()
                                    }}
                                </div>
                            }
                        })}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}

/// A card's brand, last 4 digits, expiry and whether it is the default.
#[component]
fn CardLabel(card: CardView) -> impl IntoView {
    view! {
        <p>
            <span class="font-medium">{format!("{} •••• {}", card.brand, card.last4)}</span>
            {(!card.expiry.is_empty()).then(|| view! {
                <span class="ml-2 text-sm text-slate-600 dark:text-slate-400">{format!("expires {}", card.expiry)}</span>
            })}
            {card.is_default.then(|| view! {
                <span class="ml-2 rounded-full bg-indigo-100 px-2 py-0.5 text-xs font-medium text-indigo-900 dark:bg-indigo-950 dark:text-indigo-200" data-testid="default-card">"Default"</span>
            })}
        </p>
    }
}

/// Loads `/billing-card.js` once the app runs in the browser (also after
/// client-side navigation, where server-rendered scripts would not run):
/// the card form's script, which also runs the bank's check on
/// `/billing/authenticate`.
pub(crate) fn load_card_script() {
    #[cfg(feature = "hydrate")]
    {
        let document = leptos::prelude::document();
        if document
            .get_element_by_id("rsolv-billing-card-js")
            .is_none()
        {
            if let Ok(script) = document.create_element("script") {
                let _ = script.set_attribute("id", "rsolv-billing-card-js");
                let _ = script.set_attribute("src", "/billing-card.js");
                if let Some(head) = document.head() {
                    let _ = head.append_child(&script);
                }
            }
        }
    }
}

#[component]
fn AddCard(view: BillingView) -> impl IntoView {
    if !view.can_add_cards {
        return view! {
            <p class="mt-4 text-sm text-slate-700 dark:text-slate-300" data-testid="cards-unavailable">
                {if view.billing_enabled {
                    "Cards cannot be added right now (your billing account is being set up). Please try again in a minute."
                } else {
                    "Cards cannot be added while billing is paused."
                }}
            </p>
        }
        .into_any();
    }
    Effect::new(move |_| load_card_script());
    view! {
        <form
            class="mt-5 border-t border-slate-200 pt-4 dark:border-slate-800"
            data-card-form=""
            data-testid="card-form"
            data-stripe-js=view.stripe_js_url.clone()
            data-publishable-key=view.publishable_key.clone()
            aria-labelledby="add-card-heading"
        >
            <h3 id="add-card-heading" class="font-semibold">"Add a card"</h3>
            <noscript>
                <p class="mt-2 text-sm">"Entering a card needs JavaScript: the card number goes straight to Stripe, never to us."</p>
            </noscript>
            <label class="mt-3 block text-sm font-medium" for="card-element">"Card"</label>
            <div id="card-element" data-card-element="" class="mt-1 min-h-10 rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-950"></div>
            <div class="mt-3 flex items-start gap-2">
                <input id="card-consent" name="consent" type="checkbox" aria-required="true" class="mt-1 h-4 w-4 rounded border-slate-400 text-indigo-600 focus:ring-indigo-500" />
                <label for="card-consent" class="text-sm text-slate-700 dark:text-slate-300">{view.consent_text.clone()}</label>
            </div>
            <p class="mt-2 min-h-5" aria-live="polite" data-card-message=""></p>
            <button type="submit" class=format!("mt-2 {BUTTON}") disabled=true data-testid="save-card">"Save card"</button>
            <p class="mt-2 text-xs text-slate-600 dark:text-slate-400">"Your first card adds 5 free credits. Card details are handled by Stripe."</p>
        </form>
    }
    .into_any()
}

/// The billing history page.
#[component]
pub fn BillingHistoryPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_billing_history());
    view! {
        <Title text="Billing history · RSOLV" />
        <PortalNav current="/billing" />
        <div class="flex flex-wrap items-baseline justify-between gap-2">
            <h1 class="text-2xl font-bold tracking-tight">"Billing history"</h1>
            <a href="/billing" class=LINK>"Back to billing"</a>
        </div>
        <Suspense fallback=|| view! { <Loading label="Loading your billing history…" /> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(history) => view! { <BillingHistory history /> }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The billing history itself, a pure render of `history`: invoices, the
/// fixes waiting for payment and the charges for fixes (the customer's
/// page and the admin console's read-only view, where the invoices'
/// payment links are left out).
#[component]
pub fn BillingHistory(history: BillingHistoryView) -> impl IntoView {
    let empty = if history.unpaid_fixes.is_empty() {
        "No charges yet: fixes so far were paid with credits."
    } else {
        "No charges yet."
    };
    view! {
        {(!history.billing_enabled).then(|| view! {
            <p role="status" class="mt-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
                "Billing is paused: fixes are recorded and billed when it resumes."
            </p>
        })}
        <HistoryTable title="Invoices" testid="invoices" rows=history.invoices note=history.invoices_note empty="No invoices yet." />
        <UnpaidFixes rows=history.unpaid_fixes.clone() />
        <HistoryTable title="Charges for fixes" testid="charges" rows=history.charges note=None empty />
    }
}

/// Fixes recorded but not paid yet, with what will happen to each (issue 9).
#[component]
fn UnpaidFixes(rows: Vec<UnpaidFixView>) -> impl IntoView {
    (!rows.is_empty()).then(|| view! {
        <section class=format!("mt-6 {CARD}") data-testid="unpaid-fixes">
            <h2 class="text-lg font-semibold">"Fixes waiting for payment"</h2>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
                "These fixes were delivered when you had no credits left and no way to pay. Each is billed once, oldest first, as soon as you can pay."
            </p>
            <ul class="mt-3 divide-y divide-slate-200 text-sm dark:divide-slate-800">
                {rows.into_iter().map(|row| {
                    // Pay now: the bank's check of its waiting card payment
                    // (never in the admin's read-only view).
                    let pay_now = row.authenticate_charge.filter(|_| !super::read_only()).map(|charge| view! {
                        <a href=format!("/billing/authenticate?charge={charge}") class=LINK data-testid="unpaid-fix-pay-now">"Confirm the payment"</a>
                    });
                    view! {
                        <li class="py-2" data-testid="unpaid-fix-row">
                            <time datetime=row.date.clone() class="mr-2 whitespace-nowrap">{short_time(&row.date)}</time>
                            <span class="font-medium">{row.label}</span>
                            <span class="block text-slate-700 dark:text-slate-300">{row.next} " " {pay_now}</span>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    })
}

/// A history row's status in words: Stripe's invoice statuses and our
/// charge statuses; an unknown one as it is.
fn history_status_label(status: &str) -> String {
    match status {
        "paid" | "succeeded" => "Paid",
        "open" => "Open: awaiting payment",
        "draft" => "Draft",
        "void" => "Void",
        "uncollectible" => "Uncollectible",
        "pending" | "processing" => "Processing",
        "requires_action" => "Needs your authentication",
        "failed" => "Failed",
        "refunded" => "Refunded",
        "partially_refunded" => "Partly refunded",
        other => return other.to_owned(),
    }
    .to_owned()
}

#[component]
fn HistoryTable(
    title: &'static str,
    testid: &'static str,
    rows: Vec<HistoryItemView>,
    note: Option<String>,
    empty: &'static str,
) -> impl IntoView {
    let read_only = super::read_only();
    let body = if rows.is_empty() {
        view! { <p class="mt-3 text-slate-700 dark:text-slate-300">{note.clone().unwrap_or_else(|| empty.to_owned())}</p> }.into_any()
    } else {
        view! {
            {note.clone().map(|n| view! { <p class="mt-2 text-sm text-amber-800 dark:text-amber-200">{n}</p> })}
            <div class="relative mt-3 overflow-x-auto" tabindex="0">
                <table class="w-full text-left text-sm">
                    <thead class="text-slate-600 dark:text-slate-400">
                        <tr>
                            <th scope="col" class="py-2 pr-4 font-medium">"Date"</th>
                            <th scope="col" class="py-2 pr-4 font-medium">"Description"</th>
                            <th scope="col" class="py-2 pr-4 text-right font-medium">"Amount"</th>
                            <th scope="col" class="py-2 pr-4 font-medium">"Status"</th>
                            <th scope="col" class="py-2 font-medium">"Invoice"</th>
                        </tr>
                    </thead>
                    <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                        {rows.into_iter().map(|row| view! {
                            <tr data-testid=format!("{testid}-row")>
                                <td class="py-2 pr-4 whitespace-nowrap"><time datetime=row.date.clone()>{short_time(&row.date)}</time></td>
                                <td class="py-2 pr-4">{row.description.clone()}
                                    {row.failure.clone().map(|f| view! { <span class="block text-xs text-red-700 dark:text-red-300">{f}</span> })}
                                </td>
                                <td class="py-2 pr-4 text-right font-mono">{row.amount.clone()}</td>
                                <td class="py-2 pr-4">{history_status_label(&row.status)}</td>
                                // Read-only: Stripe's hosted invoice page can pay the invoice.
                                <td class="py-2">{match row.url.as_deref().and_then(safe_href).filter(|_| !read_only) {
                                    Some(url) => view! { <a href=url class=LINK rel="external noopener" target="_blank">"View"</a> }.into_any(),
                                    None => view! { <span class="text-slate-500 dark:text-slate-400">"—"</span> }.into_any(),
                                }}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        }.into_any()
    };
    view! {
        <section class=format!("mt-6 {CARD}") data-testid=testid>
            <h2 class="text-lg font-semibold">{title}</h2>
            {body}
        </section>
    }
}

/// The dashboard's billing notices: card payments waiting for the
/// customer's authentication (each with its link), billing paused, a Pro
/// payment past due, a declined card, fix charges in progress. Renders nothing when all
/// is well. Pure: the data comes with the dashboard's one resource (a
/// resource of its own, created inside the dashboard's `Suspend`, raced it
/// during hydration).
#[component]
pub fn BillingNotice(notice: BillingNoticeView) -> impl IntoView {
    let mut items = Vec::new();
    if !notice.billing_enabled {
        items.push(("billing-paused", "Billing is paused: no card is charged right now. Fixes are recorded and billed when billing resumes.".to_owned()));
    }
    if notice.past_due {
        items.push(("past-due", "The payment for your Pro subscription failed, so it is past due. Update your card on the Billing page; Stripe will try again.".to_owned()));
    }
    if notice.payment_failed {
        items.push(("payment-failed", "A card charge for a fix was declined: fixes beyond your credits are paused until you add a working card on the Billing page.".to_owned()));
    }
    if notice.charges_pending > 0 && notice.billing_enabled {
        let n = notice.charges_pending;
        let text = if n == 1 {
            "1 charge for a fix is being processed by the card's bank.".to_owned()
        } else {
            format!("{n} charges for fixes are being processed by the card's bank.")
        };
        items.push(("charges-pending", text));
    }
    let notices = items
        .into_iter()
        .map(|(id, text)| view! {
            <p role="status" data-testid=format!("notice-{id}") class="mt-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
                {text} " " <a href=super::portal_href("/billing") class=LINK>"Go to Billing"</a>
            </p>
        })
        .collect_view();
    view! {
        <AuthenticationNotices payments=notice.authentication_needed />
        {notices}
    }
}

/// One notice per card payment the customer's bank asks them to confirm
/// (3-D Secure), each linking its page `/billing/authenticate?charge=<id>`
/// (`data-testid="notice-authentication-needed"`, the link
/// `authentication-link`). Renders nothing without one.
#[component]
pub fn AuthenticationNotices(payments: Vec<PaymentToAuthenticate>) -> impl IntoView {
    payments
        .into_iter()
        .map(|p| {
            let href = p.href();
            // The admin's read-only view says it without the customer's link.
            let link = (!super::read_only()).then(|| view! {
                <a href=href class=LINK data-testid="authentication-link">"Confirm the payment"</a>
            });
            view! {
                <p role="alert" data-testid="notice-authentication-needed" class="mt-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
                    <span class="font-semibold">{format!("Your bank asks you to confirm a {} payment. ", p.amount)}</span>
                    "The fix is recorded; it is paid once you confirm. "
                    {link}
                </p>
            }
        })
        .collect_view()
}

/// Each state of the billing page rendered on the server: what it costs,
/// what the customer can do next and what is disabled (issue 14: nothing
/// false, nothing dead), and the read-only render the admin console uses.
#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    /// A trial customer of today: 5 credits, no card, billing on.
    fn trial() -> BillingView {
        BillingView {
            billing_enabled: true,
            can_add_cards: true,
            stripe_js_url: "https://js.stripe.com/v3".into(),
            publishable_key: "pk_test_123".into(),
            consent_text: "I authorise RSOLV to charge this card.".into(),
            plan: "trial".into(),
            subscription_status: None,
            cancel_at_period_end: false,
            current_period_end: None,
            payment_failed: false,
            cards: Vec::new(),
            pro_price: "$599.00".into(),
            pro_credits: 60,
            pro_renews_on: "1 January 2027".into(),
            overage_price: "$15.00".into(),
            payg_price: "$29.00".into(),
            credit_balance: 5,
            credit_policy: "Credits never expire.".into(),
            can_use_service: true,
            suspended: false,
            unpaid_fixes: 0,
            support_email: "help@rsolv.example".into(),
            authentication_needed: Vec::new(),
        }
    }

    fn visa() -> CardView {
        CardView {
            id: "pm_visa".into(),
            brand: "Visa".into(),
            last4: "4242".into(),
            expiry: "12/2030".into(),
            is_default: true,
        }
    }

    /// Pay as you go with a Visa on file.
    fn with_card() -> BillingView {
        BillingView {
            plan: "payg".into(),
            cards: vec![visa()],
            ..trial()
        }
    }

    /// Pro, active, renewing on 1 January 2027.
    fn pro() -> BillingView {
        BillingView {
            plan: "pro".into(),
            subscription_status: Some("active".into()),
            current_period_end: Some("2027-01-01T00:00:00Z".into()),
            credit_balance: 60,
            ..with_card()
        }
    }

    /// The customer's page (with its actions) on confirmation step `confirm`.
    fn render_on(view: BillingView, confirm: Option<Confirm>) -> String {
        Owner::new().with(|| {
            let actions = Some(BillingActions::new());
            view! { <Billing view confirm actions /> }.to_html()
        })
    }

    fn render(view: BillingView) -> String {
        render_on(view, None)
    }

    /// The admin console's read-only render.
    fn render_read_only(view: BillingView) -> String {
        Owner::new().with(|| {
            provide_context(super::super::ReadOnlyPortal { customer_id: 7 });
            view! { <Billing view confirm=None actions=None /> }.to_html()
        })
    }

    /// The element with `data-testid` = `testid`, from its tag to the end
    /// of the page.
    fn from<'a>(html: &'a str, testid: &str) -> &'a str {
        let at = html
            .find(&format!(r#"data-testid="{testid}""#))
            .unwrap_or_else(|| panic!("no {testid} in {html}"));
        &html[html[..at].rfind('<').unwrap()..]
    }

    /// The text of the element with `data-testid` = `testid` up to its
    /// first child's end (enough for one-line values).
    fn text_of(html: &str, testid: &str) -> String {
        let rest = from(html, testid);
        let inner = &rest[rest.find('>').unwrap() + 1..];
        let mut text = String::new();
        let mut in_tag = false;
        for c in inner[..inner.find("</").unwrap()].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text
    }

    /// Text no state may show: promises the product does not keep.
    fn assert_nothing_false(html: &str) {
        for stale in ["coming soon", "contact support to add credits", "Unknown"] {
            assert!(!html.contains(stale), "{stale:?} in {html}");
        }
    }

    #[test]
    fn a_trial_customer_without_a_card_is_told_to_add_one_before_pro() {
        let html = render(trial());
        assert_nothing_false(&html);
        assert_eq!(text_of(&html, "billing-plan"), "Trial");
        assert!(html.contains("5 credits left"), "{html}");
        assert!(html.contains("Credits never expire."));
        assert!(html.contains(r#"data-testid="cards-empty""#));
        // Pro is offered with its price, but cannot be bought without a card.
        assert!(html.contains("Pro · $599.00/month"), "{html}");
        assert!(html.contains("60 credits every paid month"));
        assert!(html.contains("$15.00 per fix beyond them, on the next invoice"));
        let subscribe = from(&html, "subscribe-pro");
        assert!(subscribe.starts_with("<button"), "{subscribe}");
        assert!(subscribe[..subscribe.find('>').unwrap()].contains("disabled"));
        assert!(html.contains("Add a card first."));
        assert!(html.contains("each fix beyond your credits costs $29.00 with a card on file"));
        // The card form is there, with the consent to tick.
        assert!(html.contains(r#"data-testid="card-form""#));
        assert!(html.contains("I authorise RSOLV to charge this card."));
        assert!(html.contains("Your first card adds 5 free credits."));
        for quiet in [
            "billing-paused",
            "billing-suspended",
            "billing-no-credits",
            "billing-unpaid-fixes",
        ] {
            assert!(!html.contains(quiet), "{quiet} in {html}");
        }
    }

    #[test]
    fn with_a_card_pro_can_be_subscribed_after_a_confirmation_naming_price_card_and_renewal() {
        let html = render(with_card());
        assert_nothing_false(&html);
        assert_eq!(text_of(&html, "billing-plan"), "Pay as you go");
        let card = text_of(&html, "card-item");
        assert!(card.contains("Visa •••• 4242"), "{card}");
        assert!(html.contains("expires 12/2030"));
        assert!(html.contains(r#"data-testid="default-card""#));
        assert!(!html.contains("Add a card first."));
        let subscribe = from(&html, "subscribe-pro");
        assert!(subscribe.starts_with("<a"), "{subscribe}");
        assert!(subscribe.contains(r#"href="/billing?confirm_subscribe=pro""#));
        // The only card can be removed (no Pro needs it), after confirming.
        assert!(html.contains(r#"href="/billing?confirm_remove=pm_visa""#));
        assert!(!html.contains("confirm-subscribe\""));

        let confirm = render_on(with_card(), Some(Confirm::Subscribe));
        assert!(
            confirm.contains("Subscribe to Pro for $599.00 a month?"),
            "{confirm}"
        );
        assert_eq!(text_of(&confirm, "confirm-subscribe-today"), "$599.00");
        assert!(text_of(&confirm, "confirm-subscribe-card").contains("Visa •••• 4242"));
        assert!(text_of(&confirm, "confirm-subscribe-renews")
            .contains("on 1 January 2027 and every month after, $599.00 each time"));
        assert!(confirm.contains("Yes, subscribe and pay $599.00"));

        let remove = render_on(with_card(), Some(Confirm::Remove("pm_visa".into())));
        assert!(
            text_of(&remove, "confirm-remove-consequence").contains(
                "It is your only card: fixes beyond your credits pause until you add a card."
            ),
            "{remove}"
        );
        assert!(remove.contains("Yes, remove it"));
    }

    #[test]
    fn pro_shows_its_price_next_charge_and_card_and_keeps_the_card_it_needs() {
        let html = render(pro());
        assert_nothing_false(&html);
        assert_eq!(text_of(&html, "billing-plan"), "Pro");
        assert_eq!(text_of(&html, "subscription-status"), "Active");
        assert_eq!(text_of(&html, "pro-price"), "$599.00 a month");
        assert_eq!(
            text_of(&html, "pro-next-charge"),
            "$599.00 on 2027-01-01 00:00 UTC, plus $15.00 for each fix beyond your credits this period"
        );
        assert!(text_of(&html, "pro-card").contains("Visa •••• 4242"));
        assert!(html.contains(r#"href="/billing?confirm_cancel=period_end""#));
        assert!(html.contains(r#"href="/billing?confirm_cancel=now""#));
        // Subscribed: no offer to subscribe again.
        assert!(!html.contains(r#"data-testid="subscribe-pro""#));
        assert!(!html.contains("past-due-next-step"));

        let cancel = render_on(pro(), Some(Confirm::CancelAtPeriodEnd));
        assert!(
            cancel.contains("Cancel Pro at the end of the period?"),
            "{cancel}"
        );
        assert!(cancel.contains("You keep Pro until the period ends"));
        let now = render_on(pro(), Some(Confirm::CancelNow));
        assert!(
            now.contains("no refund for the rest of the period"),
            "{now}"
        );

        // The one card pays for Pro: removing it is refused up front.
        let remove = render_on(pro(), Some(Confirm::Remove("pm_visa".into())));
        assert!(
            text_of(&remove, "confirm-remove-consequence")
                .contains("It pays for your Pro subscription, so it cannot be removed"),
            "{remove}"
        );
        assert!(!remove.contains("Yes, remove it"));
    }

    #[test]
    fn pro_cancelling_at_the_period_end_says_until_when_and_offers_resume() {
        let html = render(BillingView {
            cancel_at_period_end: true,
            ..pro()
        });
        assert_nothing_false(&html);
        assert_eq!(
            text_of(&html, "ends-at-period-end"),
            "Your subscription ends on 2027-01-01 00:00 UTC. Until then you keep Pro."
        );
        assert!(html.contains("Resume subscription"));
        // Nothing more is charged, and there is nothing left to cancel.
        assert!(!html.contains("pro-next-charge"), "{html}");
        assert!(!html.contains("confirm_cancel"));
        // The card may go: no renewal needs it.
        let remove = render_on(
            BillingView {
                cancel_at_period_end: true,
                ..pro()
            },
            Some(Confirm::Remove("pm_visa".into())),
        );
        assert!(remove.contains("Yes, remove it"), "{remove}");
    }

    #[test]
    fn past_due_says_the_payment_failed_and_what_to_do() {
        let html = render(BillingView {
            subscription_status: Some("past_due".into()),
            ..pro()
        });
        assert_nothing_false(&html);
        assert_eq!(text_of(&html, "billing-plan"), "Pro");
        assert_eq!(
            text_of(&html, "subscription-status"),
            "Past due: payment failed"
        );
        assert!(text_of(&html, "past-due-next-step")
            .contains("add a working card below and make it the default"));
        // A declined pay-as-you-go charge says so too.
        let declined = render(BillingView {
            payment_failed: true,
            ..with_card()
        });
        assert!(declined.contains("Your card was declined."), "{declined}");
        assert!(declined.contains(
            "Add a working card below: the unpaid fixes are charged to it and fixes resume."
        ));
    }

    #[test]
    fn a_suspended_customer_is_told_the_action_is_refused_and_whom_to_write_to() {
        let html = render(BillingView {
            suspended: true,
            can_use_service: false,
            ..with_card()
        });
        assert_nothing_false(&html);
        let state = text_of(&html, "billing-suspended");
        assert!(state.contains("Your account is suspended."), "{state}");
        assert!(html.contains(
            "The Action's calls are refused and your API keys do not work until it is restored."
        ));
        assert!(html.contains(r#"href="mailto:help@rsolv.example""#));
        // Suspension, not credits, is what stops fixes.
        assert!(!html.contains("billing-no-credits"));
    }

    #[test]
    fn at_zero_credits_the_page_says_whether_fixes_pause_or_are_charged() {
        let paused = render(BillingView {
            credit_balance: 0,
            can_use_service: false,
            ..trial()
        });
        assert_nothing_false(&paused);
        assert!(paused.contains("0 credits left"));
        let notice = from(&paused, "billing-no-credits");
        assert!(
            notice.contains("No credits left: fixes are paused."),
            "{paused}"
        );
        assert!(notice.contains("Add a card below to pay $29.00 per fix, or subscribe to Pro."));
        let declined = render(BillingView {
            credit_balance: 0,
            can_use_service: false,
            payment_failed: true,
            ..with_card()
        });
        assert!(
            declined.contains("Add a working card below to pay for fixes again."),
            "{declined}"
        );
        let charged = render(BillingView {
            credit_balance: 0,
            ..with_card()
        });
        assert!(
            charged.contains("Each fix is charged $29.00 to your card."),
            "{charged}"
        );
        assert!(!charged.contains("fixes are paused"));
        // On Pro, fixes beyond the credits go on the next invoice (the
        // next-charge line says so): no pay-as-you-go notice.
        let pro = render(BillingView {
            credit_balance: 0,
            ..pro()
        });
        assert!(!pro.contains("billing-no-credits"), "{pro}");
    }

    #[test]
    fn unpaid_fixes_are_counted_with_where_to_see_them() {
        let one = render(BillingView {
            unpaid_fixes: 1,
            credit_balance: 0,
            can_use_service: false,
            ..trial()
        });
        let notice = from(&one, "billing-unpaid-fixes");
        assert!(notice.contains("1 fix is waiting for payment"), "{notice}");
        assert!(notice.contains(
            "each is charged once, oldest first, as soon as you add a card or buy credits."
        ));
        assert!(notice.contains(r#"href="/billing/history""#));
        let three = render(BillingView {
            unpaid_fixes: 3,
            ..with_card()
        });
        assert!(three.contains("3 fixes are waiting for payment"), "{three}");
    }

    #[test]
    fn while_billing_is_paused_nothing_can_be_bought_or_changed() {
        let view = BillingView {
            billing_enabled: false,
            can_add_cards: false,
            cards: vec![
                visa(),
                CardView {
                    id: "pm_mc".into(),
                    brand: "Mastercard".into(),
                    last4: "4444".into(),
                    expiry: String::new(),
                    is_default: false,
                },
            ],
            ..with_card()
        };
        let html = render(view.clone());
        assert_nothing_false(&html);
        assert!(
            text_of(&html, "billing-paused").contains("Billing is paused."),
            "{html}"
        );
        assert!(html.contains("No card is charged right now: fixes are recorded and billed when billing resumes. Cards and plans cannot be changed meanwhile."));
        assert_eq!(
            text_of(&html, "cards-unavailable"),
            "Cards cannot be added while billing is paused."
        );
        assert!(!html.contains(r#"data-testid="card-form""#));
        assert!(!html.contains("Make default") && !html.contains("confirm_remove"));
        let subscribe = from(&html, "subscribe-pro");
        assert!(
            subscribe.starts_with("<button")
                && subscribe[..subscribe.find('>').unwrap()].contains("disabled")
        );
        // Resuming Pro is disabled too.
        let ending = render(BillingView {
            billing_enabled: false,
            can_add_cards: false,
            cancel_at_period_end: true,
            ..pro()
        });
        let at = ending.find("Resume subscription").unwrap();
        let button = &ending[ending[..at].rfind("<button").unwrap()..at];
        assert!(button.contains("disabled"), "{ending}");
    }

    #[test]
    fn the_read_only_render_shows_every_state_and_nothing_that_acts() {
        for view in [
            trial(),
            with_card(),
            pro(),
            BillingView {
                cancel_at_period_end: true,
                ..pro()
            },
            BillingView {
                subscription_status: Some("past_due".into()),
                ..pro()
            },
            BillingView {
                suspended: true,
                can_use_service: false,
                ..trial()
            },
            BillingView {
                credit_balance: 0,
                can_use_service: false,
                unpaid_fixes: 2,
                ..trial()
            },
            BillingView {
                billing_enabled: false,
                can_add_cards: false,
                ..with_card()
            },
        ] {
            let html = render_read_only(view.clone());
            for acting in [
                "<form",
                "<button",
                "<input",
                "confirm_",
                "card-form",
                "Resume subscription",
                "pk_test_123",
            ] {
                assert!(!html.contains(acting), "{acting} in {html}");
            }
            // What the customer sees is all there.
            assert!(html.contains(r#"data-testid="billing-plan""#));
            assert!(html.contains(&format!("{} credits left", view.credit_balance)));
            if !view.cards.is_empty() {
                assert!(
                    text_of(&html, "card-item").contains("Visa •••• 4242"),
                    "{html}"
                );
            }
            // Links stay in the admin's view.
            assert!(!html.contains(r#"href="/billing"#), "{html}");
        }
        let unpaid = render_read_only(BillingView {
            unpaid_fixes: 2,
            ..trial()
        });
        assert!(
            unpaid.contains(r#"href="/admin/customers/7/portal/billing""#),
            "{unpaid}"
        );
    }

    #[test]
    fn a_payment_waiting_for_the_bank_links_its_page_except_read_only() {
        use crate::types::billing::PaymentToAuthenticate;
        let waiting = BillingView {
            authentication_needed: vec![PaymentToAuthenticate {
                charge_id: 42,
                amount: "$29.00".into(),
            }],
            ..with_card()
        };
        let html = render(waiting.clone());
        assert!(html.contains("confirm a $29.00 payment"), "{html}");
        assert!(
            html.contains(r#"href="/billing/authenticate?charge=42""#),
            "{html}"
        );
        let html = render_read_only(waiting);
        assert!(html.contains("confirm a $29.00 payment"), "{html}");
        assert!(!html.contains("/billing/authenticate"), "{html}");
    }

    #[test]
    fn an_unpaid_fix_whose_payment_waits_for_the_bank_can_be_paid_now() {
        let history = BillingHistoryView {
            billing_enabled: true,
            invoices: Vec::new(),
            invoices_note: None,
            charges: Vec::new(),
            unpaid_fixes: vec![
                UnpaidFixView {
                    id: 1,
                    label: "acme/api issue #1".into(),
                    date: "2026-12-01T10:00:00Z".into(),
                    next: "Your bank asks you to confirm the card payment; the fix is paid once you do.".into(),
                    authenticate_charge: Some(42),
                },
                UnpaidFixView {
                    id: 2,
                    label: "acme/api issue #2".into(),
                    date: "2026-12-01T11:00:00Z".into(),
                    next: "A card charge is being made.".into(),
                    authenticate_charge: None,
                },
            ],
        };
        let html =
            Owner::new().with(|| view! { <BillingHistory history=history.clone() /> }.to_html());
        assert_eq!(
            html.matches(r#"data-testid="unpaid-fix-pay-now""#).count(),
            1,
            "{html}"
        );
        assert!(
            html.contains(r#"href="/billing/authenticate?charge=42""#),
            "{html}"
        );
        let read_only = Owner::new().with(|| {
            provide_context(super::super::ReadOnlyPortal { customer_id: 7 });
            view! { <BillingHistory history /> }.to_html()
        });
        assert!(
            read_only.contains("confirm the card payment"),
            "{read_only}"
        );
        assert!(!read_only.contains("/billing/authenticate"), "{read_only}");
    }
}
