//! `/admin/customers/:id/portal[/billing|/keys|/credits]`: a customer's
//! portal as the customer sees it, for staff admins, read-only. The pages
//! are the portal's own pure components ([`Dashboard`], [`Billing`] with
//! [`BillingHistory`], [`KeyList`], [`Ledger`]) fed by the views the
//! portal's server functions answer, rendered under [`ReadOnlyPortal`]:
//! no form, button or link that acts, and links between sections stay in
//! this view. A banner names whose portal it is; every load is audited
//! (`customer.view_portal`, see [`admin_view_portal`]).

use super::api::admin_view_portal;
use super::{use_id_param, AdminNav, LoadError, Loading, CARD, LINK};
use crate::app::portal::billing::{Billing, BillingHistory};
use crate::app::portal::credits::Ledger;
use crate::app::portal::dashboard::Dashboard;
use crate::app::portal::keys::KeyList;
use crate::app::portal::ReadOnlyPortal;
use crate::types::admin::{AdminPortalData, AdminPortalView, PortalSection};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

/// The read-only portal page: `:id` the customer, `:section` absent
/// (dashboard), `billing`, `keys` or `credits`; `?page=` for the ledger.
#[component]
pub fn AdminPortalPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = use_id_param();
    let section = move || params.read().get("section").unwrap_or_default();
    let page = move || query.read().get("page").and_then(|p| p.parse::<i64>().ok());
    let data = Resource::new(
        move || (id(), section(), page()),
        |(id, section, page)| admin_view_portal(id, section, page),
    );
    view! {
        <Title text="Customer portal (read-only) · Admin · RSOLV" />
        <AdminNav current="/admin" />
        <p class="mb-2 text-sm">
            <a class=LINK href=move || format!("/admin/customers/{}", id())>"← Back to the customer"</a>
        </p>
        <Transition fallback=|| view! { <Loading label="Loading the customer's portal…" /> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <ReadOnly view /> }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The banner, the section tabs and the section, rendered read-only.
#[component]
fn ReadOnly(view: AdminPortalView) -> impl IntoView {
    provide_context(ReadOnlyPortal {
        customer_id: view.customer_id,
    });
    let current = view.data.section();
    let customer_id = view.customer_id;
    let tab = "rounded-md px-3 py-1.5 text-sm font-medium text-slate-700 hover:bg-slate-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-slate-300 dark:hover:bg-slate-800";
    let active_tab = "rounded-md bg-indigo-50 px-3 py-1.5 text-sm font-semibold text-indigo-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:bg-indigo-950 dark:text-indigo-200";
    let section = match view.data {
        AdminPortalData::Dashboard(view) => view! { <Dashboard view=*view /> }.into_any(),
        AdminPortalData::Billing { billing, history } => view! {
            <Billing view=*billing confirm=None actions=None />
            <h2 class="mt-8 text-xl font-bold tracking-tight">"Billing history"</h2>
            <BillingHistory history=*history />
        }
        .into_any(),
        AdminPortalData::Keys(list) => view! {
            <section class=CARD aria-labelledby="keys-heading">
                <h2 id="keys-heading" class="text-lg font-semibold">"API keys"</h2>
                <KeyList list confirm=None actions=None />
            </section>
        }
        .into_any(),
        AdminPortalData::Credits(view) => view! { <Ledger view /> }.into_any(),
    };
    view! {
        <div role="note" data-testid="read-only-banner" class="mb-4 rounded-md border border-amber-400 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
            <p class="font-semibold break-words">{format!("Viewing {}'s portal as an admin — read-only", view.email)}</p>
            <p class="mt-1 text-sm">"Nothing can be changed from here. Each view is recorded in the audit log."</p>
        </div>
        <nav aria-label="Portal sections" class="mb-6 flex flex-wrap gap-1 border-b border-slate-200 pb-3 dark:border-slate-800">
            {PortalSection::ALL
                .into_iter()
                .map(|s| {
                    let active = s == current;
                    view! {
                        <a href=s.admin_path(customer_id) aria-current=active.then_some("page") class=if active { active_tab } else { tab }>
                            {s.label()}
                        </a>
                    }
                })
                .collect_view()}
        </nav>
        <h1 class="sr-only">{format!("{} (read-only)", current.label())}</h1>
        <div data-testid="read-only-portal">{section}</div>
    }
}
