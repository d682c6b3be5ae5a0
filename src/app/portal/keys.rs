//! `/keys`: the customer's API keys (name, prefix, created, last used,
//! status, and what each did: fixes first reported with it in the last 30
//! days and all time, AI gateway calls in the last 30 days), creating one
//! (its secret shown once), and revoking or rotating one after a
//! confirmation step. The confirmation is a page state
//! (`?confirm_revoke=<id>`, `?confirm_rotate=<id>`) reached by a plain link,
//! so it works without JavaScript.
//!
//! Revoking posts an `ActionForm`. Creating and rotating return a secret
//! that must be shown in the response to the very POST that made it, which
//! Leptos's no-JavaScript server-function path cannot do (it redirects back
//! to the page, and a secret never goes in a URL). So those two forms post
//! to `POST /keys/create` and `POST /keys/rotate`
//! (`server::http::portal`), which render this page around the outcome;
//! once hydrated, the same forms dispatch the server functions instead.

use super::api::{list_keys, CreateKey, RevokeKey, RotateKey};
use super::{
    short_time, Alert, LoadError, Loading, Notice, PortalNav, BUTTON, CARD, DANGER_BUTTON, INPUT,
    LINK, SECONDARY_BUTTON,
};
use crate::types::portal::{
    ApiKeyExpiry, ApiKeyName, ApiKeyView, KeyActivityView, KeyStatusView, NewKeyView,
};
use crate::types::AppError;
use leptos::form::{ActionForm, FromFormData};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The outcome of a no-JavaScript create or rotate form, provided as
/// context by the server when it renders the page for `POST /keys/create`
/// or `POST /keys/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FormKeyOutcome {
    /// `POST /keys/create`.
    Created(Result<NewKeyView, AppError>),
    /// `POST /keys/rotate`.
    Rotated(Result<NewKeyView, AppError>),
}

/// What the page is asking the customer to confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Revoking key `id` (`?confirm_revoke=<id>`).
    Revoke(i64),
    /// Rotating key `id` (`?confirm_rotate=<id>`).
    Rotate(i64),
}

/// The key list's actions, on the customer's own page; without them
/// ([`KeyList`]'s `actions` `None`) the list is read-only (the admin
/// console's view).
#[derive(Clone, Copy)]
pub struct KeyActions {
    /// Revoke a key.
    pub revoke: ServerAction<RevokeKey>,
    /// Rotate a key.
    pub rotate: ServerAction<RotateKey>,
}

/// The API keys page.
#[component]
pub fn KeysPage() -> impl IntoView {
    let create = ServerAction::<CreateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let rotate = ServerAction::<RotateKey>::new();
    let keys = Resource::new(
        move || {
            (
                create.version().get(),
                revoke.version().get(),
                rotate.version().get(),
            )
        },
        |_| list_keys(),
    );
    let from_form: Option<FormKeyOutcome> =
        SharedValue::new(use_context::<FormKeyOutcome>).into_inner();
    let (created_by_form, rotated_by_form) = match from_form {
        Some(FormKeyOutcome::Created(outcome)) => (Some(outcome), None),
        Some(FormKeyOutcome::Rotated(outcome)) => (None, Some(outcome)),
        None => (None, None),
    };
    let created = move || create.value().get().or_else(|| created_by_form.clone());
    let rotated = move || rotate.value().get().or_else(|| rotated_by_form.clone());
    let query = use_query_map();
    let confirm = move || {
        let query = query.read();
        let id = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
        id("confirm_revoke")
            .map(Confirm::Revoke)
            .or_else(|| id("confirm_rotate").map(Confirm::Rotate))
    };

    view! {
        <Title text="API keys · RSOLV" />
        <PortalNav current="/keys" />
        <h1 class="text-2xl font-bold tracking-tight">"API keys"</h1>
        <p class="mt-2 max-w-2xl text-slate-700 dark:text-slate-300">
            "The RSOLV Action authenticates with one of these keys, stored as the "
            <code class="font-mono">"RSOLV_API_KEY"</code>
            " secret of your repository. Keys are shown once, when they are created."
        </p>
        <div class="mt-6 space-y-3" data-testid="key-messages">
            {move || created().map(|outcome| match outcome {
                Ok(new) => view! { <NewKey new /> }.into_any(),
                Err(error) => view! { <Alert message=format!("The key was not created: {error}") /> }.into_any(),
            })}
            {move || rotated().map(|outcome| match outcome {
                Ok(new) => view! { <NewKey new /> }.into_any(),
                Err(error) => view! { <Alert message=format!("The key was not rotated: {error}") /> }.into_any(),
            })}
            {move || revoke.value().get().map(|outcome| match outcome {
                Ok(key) => view! {
                    <Notice message=format!(
                        "Key “{}” ({}…) is revoked: calls made with it are refused from now on.",
                        key.name, key.prefix
                    ) />
                }
                .into_any(),
                Err(error) => view! { <Alert message=format!("The key was not revoked: {error}") /> }.into_any(),
            })}
        </div>
        <CreateKeyForm action=create />
        <section class=format!("mt-6 {CARD}") aria-labelledby="keys-heading">
            <h2 id="keys-heading" class="text-lg font-semibold">"Your keys"</h2>
            <Transition fallback=|| view! { <Loading label="Loading your keys…" /> }>
                {move || {
                    let confirm = confirm();
                    Suspend::new(async move {
                        match keys.await {
                            Ok(list) => view! { <KeyList list confirm actions=Some(KeyActions { revoke, rotate }) /> }.into_any(),
                            Err(error) => view! { <LoadError error /> }.into_any(),
                        }
                    })
                }}
            </Transition>
        </section>
    }
}

#[component]
fn CreateKeyForm(action: ServerAction<CreateKey>) -> impl IntoView {
    let pending = action.pending();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match CreateKey::from_event(&ev) {
            Ok(args) => {
                action.dispatch(args);
            }
            Err(_) => action.value().set(Some(Err(AppError::Validation(
                "please give the key a name".into(),
            )))),
        }
    };
    view! {
        <section class=format!("mt-6 {CARD}") aria-labelledby="create-heading">
            <h2 id="create-heading" class="text-lg font-semibold">"Create a key"</h2>
            <form method="post" action="/keys/create" on:submit=on_submit class="mt-3 flex flex-col gap-3 sm:flex-row sm:items-end" data-testid="create-key-form">
                <div class="flex-1">
                    <label for="key-name" class="block text-sm font-medium">"Name"</label>
                    <input
                        id="key-name"
                        name="name"
                        type="text"
                        required
                        maxlength=ApiKeyName::MAX_CHARS.to_string()
                        placeholder="e.g. acme/api CI"
                        aria-describedby="key-name-hint"
                        class=INPUT
                    />
                    <p id="key-name-hint" class="mt-1 text-xs text-slate-600 dark:text-slate-400">
                        "1 to 100 characters, to tell your keys apart."
                    </p>
                </div>
                <div>
                    <label for="key-expires" class="block text-sm font-medium">"Expires"</label>
                    <select id="key-expires" name="expires" class=INPUT aria-describedby="key-expires-hint" data-testid="key-expires">
                        <option value="never" selected>"Never"</option>
                        {ApiKeyExpiry::DAYS
                            .iter()
                            .map(|days| view! { <option value=days.to_string()>{format!("In {days} days")}</option> })
                            .collect_view()}
                    </select>
                    <p id="key-expires-hint" class="mt-1 text-xs text-slate-600 dark:text-slate-400">
                        "After that, calls with it are refused."
                    </p>
                </div>
                <button type="submit" class=BUTTON disabled=move || pending.get() aria-busy=move || pending.get().to_string()>
                    {move || if pending.get() { "Creating…" } else { "Create key" }}
                </button>
            </form>
        </section>
    }
}

/// The keys, a pure render of `list` (name, prefix, status, created, last
/// used; never a secret); with `actions`, Rotate and Revoke links and the
/// confirmation step `confirm` is on.
#[component]
pub fn KeyList(
    list: Vec<ApiKeyView>,
    confirm: Option<Confirm>,
    actions: Option<KeyActions>,
) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p class="mt-3 text-slate-700 dark:text-slate-300" data-testid="keys-empty">
                {if actions.is_some() {
                    "You have no API keys. Create one above to connect the RSOLV Action."
                } else {
                    "No API keys."
                }}
            </p>
        }
        .into_any();
    }
    view! {
        <p class="mt-1 text-sm text-slate-600 dark:text-slate-400" data-testid="key-activity-hint">
            "A fix counts once, for the key whose report first recorded it. AI calls are the calls through the AI gateway with the credentials the key obtained."
        </p>
        <ul class="mt-3 divide-y divide-slate-200 dark:divide-slate-800" data-testid="key-list">
            {list
                .into_iter()
                .map(|key| {
                    let confirming = match confirm {
                        Some(Confirm::Revoke(id)) if id == key.id && can_revoke(&key) => Some(Confirm::Revoke(id)),
                        Some(Confirm::Rotate(id)) if id == key.id && can_rotate(&key) => Some(Confirm::Rotate(id)),
                        _ => None,
                    };
                    view! { <KeyItem key confirming actions /> }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

/// Revoked and expired keys have nothing left to revoke; a suspended
/// account's keys can still be revoked (for good, after the suspension).
fn can_revoke(key: &ApiKeyView) -> bool {
    matches!(
        key.status,
        KeyStatusView::Active | KeyStatusView::Expiring { .. } | KeyStatusView::Suspended
    )
}

fn can_rotate(key: &ApiKeyView) -> bool {
    key.status == KeyStatusView::Active
}

#[component]
fn KeyItem(
    key: ApiKeyView,
    confirming: Option<Confirm>,
    actions: Option<KeyActions>,
) -> impl IntoView {
    let (badge, badge_class) = match &key.status {
        KeyStatusView::Active => (
            "Active".to_owned(),
            "bg-emerald-100 text-emerald-900 dark:bg-emerald-950 dark:text-emerald-200",
        ),
        KeyStatusView::Expiring { expires_at } => (
            format!("Expires on {}", short_time(expires_at)),
            "bg-amber-100 text-amber-950 dark:bg-amber-950 dark:text-amber-100",
        ),
        KeyStatusView::Expired { expires_at } => (
            format!("Expired {}", short_time(expires_at)),
            "bg-slate-200 text-slate-800 dark:bg-slate-800 dark:text-slate-200",
        ),
        KeyStatusView::Revoked { revoked_at } => (
            format!("Revoked {}", short_time(revoked_at)),
            "bg-red-100 text-red-900 dark:bg-red-950 dark:text-red-200",
        ),
        KeyStatusView::Suspended => (
            "Suspended: refused while your account is suspended".to_owned(),
            "bg-red-100 text-red-900 dark:bg-red-950 dark:text-red-200",
        ),
    };
    let revocable = actions.is_some() && can_revoke(&key);
    let rotatable = actions.is_some() && can_rotate(&key);
    let id = key.id;
    let label = format!("{} ({}…)", key.name, key.prefix);
    view! {
        <li class="py-4" data-testid="key-item" data-key-id=id.to_string()>
            <div class="flex flex-col gap-3 sm:flex-row sm:items-start sm:justify-between">
                <div class="min-w-0">
                    <p class="flex flex-wrap items-center gap-2">
                        <span class="font-medium break-all">{key.name.clone()}</span>
                        <code class="rounded bg-slate-100 px-1.5 py-0.5 font-mono text-xs dark:bg-slate-800">{format!("{}…", key.prefix)}</code>
                        <span class=format!("rounded-full px-2 py-0.5 text-xs font-medium {badge_class}") data-testid="key-status">{badge}</span>
                    </p>
                    <p class="mt-1 text-sm text-slate-600 dark:text-slate-400">
                        "Created " <time datetime=key.created_at.clone()>{short_time(&key.created_at)}</time>
                        " · "
                        {match key.last_used_at.clone() {
                            Some(at) => view! { "Last used " <time datetime=at.clone()>{short_time(&at)}</time> }.into_any(),
                            None => view! { "Never used" }.into_any(),
                        }}
                    </p>
                    {key.activity.map(|activity| view! { <KeyActivity activity /> })}
                </div>
                <div class="flex shrink-0 gap-2">
                    {rotatable.then(|| view! {
                        <a href=format!("/keys?confirm_rotate={id}") class=SECONDARY_BUTTON aria-label=format!("Rotate {label}")>"Rotate"</a>
                    })}
                    {revocable.then(|| view! {
                        <a href=format!("/keys?confirm_revoke={id}") class=SECONDARY_BUTTON aria-label=format!("Revoke {label}")>"Revoke"</a>
                    })}
                </div>
            </div>
            {match (confirming, actions) {
                (Some(Confirm::Revoke(_)), Some(KeyActions { revoke, .. })) => view! { <ConfirmRevoke id label=label.clone() action=revoke /> }.into_any(),
                (Some(Confirm::Rotate(_)), Some(KeyActions { rotate, .. })) => view! { <ConfirmRotate id label=label.clone() action=rotate /> }.into_any(),
                _ => ().into_any(),
            }}
        </li>
    }
}

/// A key's counts, each labelled with its window.
#[component]
fn KeyActivity(activity: KeyActivityView) -> impl IntoView {
    let days = KeyActivityView::DAYS;
    view! {
        <dl class="mt-1 flex flex-wrap gap-x-4 gap-y-1 text-sm text-slate-600 dark:text-slate-400" data-testid="key-activity">
            <div class="flex gap-1">
                <dt>"Fixes reported:"</dt>
                <dd data-testid="key-fixes">
                    {format!("{} in the last {days} days · {} in all", activity.fixes_recent, activity.fixes_total)}
                </dd>
            </div>
            <div class="flex gap-1">
                <dt>"AI calls:"</dt>
                <dd data-testid="key-ai-calls">{format!("{} in the last {days} days", activity.ai_calls_recent)}</dd>
            </div>
        </dl>
    }
}

#[component]
fn ConfirmRevoke(id: i64, label: String, action: ServerAction<RevokeKey>) -> impl IntoView {
    let pending = action.pending();
    view! {
        <div role="group" aria-labelledby=format!("confirm-revoke-{id}") class="mt-3 rounded-md border border-red-300 bg-red-50 p-4 dark:border-red-900 dark:bg-red-950" data-testid="confirm-revoke">
            <p id=format!("confirm-revoke-{id}") class="font-semibold text-red-900 dark:text-red-100">{format!("Revoke {label}?")}</p>
            <p class="mt-1 text-sm text-red-900 dark:text-red-100">
                "Calls made with this key are refused at once. Workflows still using it will fail until you give them another key. This cannot be undone."
            </p>
            <ActionForm action attr:class="mt-3 flex flex-wrap gap-2">
                <input type="hidden" name="key_id" value=id.to_string() />
                <button type="submit" class=DANGER_BUTTON disabled=move || pending.get() aria-busy=move || pending.get().to_string()>
                    {move || if pending.get() { "Revoking…" } else { "Yes, revoke it" }}
                </button>
                <a href="/keys" class=SECONDARY_BUTTON>"Cancel"</a>
            </ActionForm>
        </div>
    }
}

#[component]
fn ConfirmRotate(id: i64, label: String, action: ServerAction<RotateKey>) -> impl IntoView {
    let pending = action.pending();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Ok(args) = RotateKey::from_event(&ev) {
            action.dispatch(args);
        }
    };
    view! {
        <div role="group" aria-labelledby=format!("confirm-rotate-{id}") class="mt-3 rounded-md border border-amber-300 bg-amber-50 p-4 dark:border-amber-800 dark:bg-amber-950" data-testid="confirm-rotate">
            <p id=format!("confirm-rotate-{id}") class="font-semibold text-amber-950 dark:text-amber-100">{format!("Rotate {label}?")}</p>
            <p class="mt-1 text-sm text-amber-950 dark:text-amber-100">
                "You get a new key, shown once. The old key keeps working for a grace period so you can update your repositories' secrets, then it stops."
            </p>
            <form method="post" action="/keys/rotate" on:submit=on_submit class="mt-3 flex flex-wrap gap-2">
                <input type="hidden" name="key_id" value=id.to_string() />
                <button type="submit" class=BUTTON disabled=move || pending.get() aria-busy=move || pending.get().to_string()>
                    {move || if pending.get() { "Rotating…" } else { "Yes, rotate it" }}
                </button>
                <a href="/keys" class=SECONDARY_BUTTON>"Cancel"</a>
            </form>
        </div>
    }
}

/// A key's secret, shown once, with a copy button.
#[component]
fn NewKey(new: NewKeyView) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let secret = new.secret.clone();
    let copy = move |_| crate::app::copy_to_clipboard(secret.clone(), copied);
    let heading = match &new.replaced {
        Some(_) => format!("Key “{}” rotated", new.key.name),
        None => format!("Key “{}” created", new.key.name),
    };
    view! {
        <div role="status" class=CARD data-testid="new-key">
            <h2 class="text-lg font-semibold">{heading}</h2>
            {new.replaced.clone().map(|(prefix, until)| view! {
                <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
                    {format!("The old key ({prefix}…) keeps working until {}.", short_time(&until))}
                </p>
            })}
            <p class="mt-3 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100" role="note">
                "This is the only time this key is shown. Store it as the "
                <code class="font-mono">"RSOLV_API_KEY"</code>
                " secret of your repository now."
            </p>
            <label for="new-api-key" class="mt-3 block text-sm font-medium">"Your new API key"</label>
            <div class="mt-1 flex items-stretch gap-2">
                <code id="new-api-key" data-testid="new-api-key" tabindex="0" class="relative block min-w-0 flex-1 overflow-x-auto whitespace-nowrap rounded-md bg-slate-100 px-3 py-2 font-mono text-sm dark:bg-slate-800">
                    {new.secret.clone()}
                </code>
                <button type="button" aria-label="Copy the new API key" on:click=copy class=SECONDARY_BUTTON>
                    {move || match copied.get() {
                        Some(true) => "Copied",
                        Some(false) => "Copy failed: select the key",
                        None => "Copy",
                    }}
                </button>
            </div>
            <p class="sr-only" aria-live="polite">{move || (copied.get() == Some(true)).then_some("API key copied to the clipboard")}</p>
            <p class="mt-3 text-sm"><a href="/keys" class=LINK>"Done"</a></p>
        </div>
    }
}
