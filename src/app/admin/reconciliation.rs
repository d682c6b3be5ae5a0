//! `/admin/reconciliation`: the latest reconciliation run's findings and
//! older unresolved ones, "Run now", and "Repair" for the safe kinds (issue
//! 9, scope 7). The server functions check the admin role themselves.

use super::{
    short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, TableScroll, ADMIN_TABLE, CARD,
    SECONDARY_BUTTON, SMALL_BUTTON, TD, TD_ID, TH,
};
use crate::types::admin::{AdminFindingRow, AdminReconciliation};
use crate::types::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

/// The latest run and the findings to look at.
///
/// Errors: [`AppError::Unauthorized`], [`AppError::Forbidden`].
#[server(endpoint = "admin/reconciliation")]
pub async fn admin_get_reconciliation() -> Result<AdminReconciliation, AppError> {
    use super::api::ssr;
    let (_, mut conn) = ssr::admin().await?;
    let (latest, rows) = crate::server::billing::reconciliation::list_findings(&mut conn)
        .await
        .map_err(ssr::fail)?;
    Ok(AdminReconciliation {
        latest_run_id: latest.map(|(id, _)| id),
        latest_run_at: latest.and_then(|(_, at)| at).map(ssr::iso),
        findings: rows
            .into_iter()
            .map(|f| AdminFindingRow {
                id: f.id,
                run_id: f.run_id,
                kind: f.kind,
                customer_id: f.customer_id,
                subject: f.subject,
                details: f.details.to_string(),
                repairable: f.repairable,
                resolved_at: f.resolved_at.map(ssr::iso),
                resolved_by: f.resolved_by,
                created_at: ssr::iso(f.created_at),
            })
            .collect(),
    })
}

/// Enqueues a reconciliation run now (audit entry `reconciliation.run`).
///
/// Errors: as [`admin_get_reconciliation`].
#[server(endpoint = "admin/reconciliation/run")]
pub async fn admin_run_reconciliation() -> Result<(), AppError> {
    use super::api::ssr;
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::reconciliation::request_run(&mut conn, &admin)
        .await
        .map_err(ssr::fail)
}

/// Repairs a finding (audit entry `reconciliation.repair`); answers the
/// credits granted (0 when it was done already).
///
/// Errors: as [`admin_get_reconciliation`]; [`AppError::NotFound`];
/// [`AppError::Validation`] for a finding that cannot be repaired.
#[server(endpoint = "admin/reconciliation/repair")]
pub async fn admin_repair_finding(#[server(default)] finding_id: i64) -> Result<i64, AppError> {
    use super::api::ssr;
    use crate::server::billing::reconciliation::Repaired;
    let (admin, mut conn) = ssr::admin().await?;
    let state = ssr::state()?;
    let outcome = crate::server::admin::reconciliation::repair_finding(
        &mut conn,
        &state.config.pricing,
        &admin,
        finding_id,
    )
    .await
    .map_err(ssr::fail)?;
    Ok(match outcome {
        Repaired::Granted { credits, .. } => credits,
        Repaired::AlreadyDone => 0,
    })
}

/// The reconciliation page.
#[component]
pub fn AdminReconciliationPage() -> impl IntoView {
    let run = ServerAction::<AdminRunReconciliation>::new();
    let repair = ServerAction::<AdminRepairFinding>::new();
    let data = Resource::new(
        move || run.version().get() + repair.version().get(),
        |_| admin_get_reconciliation(),
    );
    view! {
        <Title text="Reconciliation · Admin · RSOLV" />
        <AdminNav current="/admin/reconciliation" />
        <h1 class="text-2xl font-bold tracking-tight">"Reconciliation"</h1>
        <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
            "Runs nightly: re-sums every ledger, checks every billed fix is paid once, every paid Pro invoice granted once, every refund applied."
        </p>
        <div aria-live="polite" class="mt-2">
            <ActionOutcome value=move || run.value().get() success="Run queued; reload in a moment." />
            <ActionOutcome value=move || repair.value().get() success="Repaired." />
        </div>
        <ActionForm action=run attr:class="mt-3">
            <button type="submit" class=SECONDARY_BUTTON>"Run now"</button>
        </ActionForm>
        <Transition fallback=|| view! { <Loading label="Loading findings…" /> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(r) => view! {
                        <p class="mt-3 text-sm" data-testid="latest-run">
                            {match (r.latest_run_id, r.latest_run_at.clone()) {
                                (Some(id), Some(at)) => format!("Latest run #{id}, finished {}", short_time(&at)),
                                _ => "No run yet.".to_owned(),
                            }}
                        </p>
                        <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
                            <FindingTable rows=r.findings.clone() repair />
                        </div>
                    }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn FindingTable(
    rows: Vec<AdminFindingRow>,
    repair: ServerAction<AdminRepairFinding>,
) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="p-3 text-sm" data-testid="findings-empty">"No drift found."</p> }
            .into_any();
    }
    view! {
        <TableScroll><table class=ADMIN_TABLE data-testid="findings-table">
            <thead><tr>
                <th scope="col" class=TH>"Run"</th><th scope="col" class=TH>"Kind"</th><th scope="col" class=TH>"Customer"</th>
                <th scope="col" class=TH>"Subject"</th><th scope="col" class=TH>"Details"</th><th scope="col" class=TH>"Resolved"</th>
                <th scope="col" class=TH><span class="sr-only">"Actions"</span></th>
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {rows.into_iter().map(|f| {
                    let open = f.resolved_at.is_none();
                    view! {
                        <tr data-testid="finding-row">
                            <td class=format!("{TD} tabular-nums")>{f.run_id}</td>
                            <td class=TD><Badge text=f.kind.clone() /></td>
                            <td class=TD>{f.customer_id.map(|id| view! { <a class=super::LINK href=format!("/admin/customers/{id}")>{id}</a> })}</td>
                            <td class=TD_ID title=f.subject.clone()>{f.subject.clone()}</td>
                            <td class=format!("{TD} font-mono text-xs max-w-[20rem] truncate") title=f.details.clone()>{f.details.clone()}</td>
                            <td class=TD>{f.resolved_at.as_deref().map(|at| format!("{} by {}", short_time(at), f.resolved_by.clone().unwrap_or_default()))}</td>
                            <td class=TD>
                                {(open && f.repairable).then(|| view! {
                                    <ActionForm action=repair>
                                        <input type="hidden" name="finding_id" value=f.id.to_string() />
                                        <button type="submit" class=SMALL_BUTTON aria-label=format!("Repair {}", f.subject)>"Repair"</button>
                                    </ActionForm>
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table></TableScroll>
    }
    .into_any()
}
