//! `/admin/jobs?status=&kind=&page=`: the job queue, dead jobs first, with
//! "Retry now" per dead job and "Retry all dead" of one kind (issue 9,
//! scope 5). The server functions check the admin role themselves.

use super::{
    href_with, short_time, ActionOutcome, AdminNav, Badge, LoadError, Loading, Pager, TableScroll,
    ADMIN_TABLE, CARD, INPUT, SECONDARY_BUTTON, SMALL_BUTTON, TD, TD_ID, TH,
};
use crate::types::admin::{AdminJobPage, AdminJobRow};
use crate::types::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The job queue: `status` `dead`, `queued`, `running` or `done` (empty:
/// all), `kind` an exact job name; dead first; `page` from 1.
///
/// Errors: [`AppError::Unauthorized`], [`AppError::Forbidden`];
/// [`AppError::Validation`] for an unknown status.
#[server(endpoint = "admin/jobs")]
pub async fn admin_list_jobs(
    #[server(default)] status: Option<String>,
    #[server(default)] kind: Option<String>,
    #[server(default)] page: Option<i64>,
) -> Result<AdminJobPage, AppError> {
    use super::api::ssr;
    use crate::server::admin::jobs::{list_jobs, JOBS_PER_PAGE};
    let (_, mut conn) = ssr::admin().await?;
    let page = page.unwrap_or(1).max(1);
    let (rows, total, kinds) = list_jobs(&mut conn, status.as_deref(), kind.as_deref(), page)
        .await
        .map_err(ssr::fail)?;
    Ok(AdminJobPage {
        rows: rows
            .into_iter()
            .map(|j| AdminJobRow {
                id: j.id,
                kind: j.kind,
                status: j.status,
                attempts: j.attempts,
                max_attempts: j.max_attempts,
                last_error: j.last_error,
                created_at: ssr::iso(j.created_at),
                run_at: ssr::iso(j.run_at),
                payload: j.payload.to_string(),
            })
            .collect(),
        total,
        page,
        per_page: JOBS_PER_PAGE,
        kinds,
    })
}

/// Re-drives one dead job now (audit entry `job.retry`).
///
/// Errors: as [`admin_list_jobs`]; [`AppError::NotFound`];
/// [`AppError::Validation`] for a job that is not dead.
#[server(endpoint = "admin/jobs/retry")]
pub async fn admin_retry_job(#[server(default)] job_id: i64) -> Result<(), AppError> {
    use super::api::ssr;
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::jobs::retry_dead_job(&mut conn, &admin, job_id)
        .await
        .map_err(ssr::fail)
}

/// Re-drives every dead job of `kind` now (one audit entry
/// `job.retry_kind`); answers how many.
///
/// Errors: as [`admin_list_jobs`]; [`AppError::Validation`] for an empty
/// kind.
#[server(endpoint = "admin/jobs/retry-kind")]
pub async fn admin_retry_jobs_of_kind(#[server(default)] kind: String) -> Result<usize, AppError> {
    use super::api::ssr;
    let (admin, mut conn) = ssr::admin().await?;
    crate::server::admin::jobs::retry_dead_jobs_of_kind(&mut conn, &admin, &kind)
        .await
        .map_err(ssr::fail)
}

/// The job queue page.
#[component]
pub fn AdminJobsPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.read().get(k).unwrap_or_default();
    let page = move || get("page").parse::<i64>().unwrap_or(1).max(1);
    let retry = ServerAction::<AdminRetryJob>::new();
    let retry_kind = ServerAction::<AdminRetryJobsOfKind>::new();
    let jobs = Resource::new(
        move || {
            (
                get("status"),
                get("kind"),
                page(),
                retry.version().get() + retry_kind.version().get(),
            )
        },
        |(status, kind, page, _)| {
            admin_list_jobs(
                (!status.is_empty()).then_some(status),
                (!kind.is_empty()).then_some(kind),
                Some(page),
            )
        },
    );
    view! {
        <Title text="Jobs · Admin · RSOLV" />
        <AdminNav current="/admin/jobs" />
        <h1 class="text-2xl font-bold tracking-tight">"Background jobs"</h1>
        <div aria-live="polite" class="mt-2">
            <ActionOutcome value=move || retry.value().get() success="Job queued again; the worker runs it shortly." />
            <ActionOutcome value=move || retry_kind.value().get() success="Dead jobs of that kind queued again." />
        </div>
        <Transition fallback=|| view! { <Loading label="Loading jobs…" /> }>
            {move || Suspend::new(async move {
                match jobs.await {
                    Ok(list) => {
                        let (status, kind) = (get("status"), get("kind"));
                        let href = Callback::new({
                            let (status, kind) = (status.clone(), kind.clone());
                            move |p: i64| href_with("/admin/jobs", &[("status", status.clone()), ("kind", kind.clone()), ("page", p.to_string())])
                        });
                        view! {
                            <form method="get" action="/admin/jobs" class=format!("{CARD} mt-4 flex flex-wrap items-end gap-3") role="search">
                                <div>
                                    <label for="job-status" class="block text-xs font-medium">"Status"</label>
                                    <select id="job-status" name="status" class=INPUT>
                                        {[("", "Any"), ("dead", "Dead"), ("queued", "Queued"), ("running", "Running"), ("done", "Done")]
                                            .into_iter()
                                            .map(|(v, t)| view! { <option value=v selected=status == v>{t}</option> })
                                            .collect_view()}
                                    </select>
                                </div>
                                <div>
                                    <label for="job-kind" class="block text-xs font-medium">"Kind"</label>
                                    <select id="job-kind" name="kind" class=INPUT>
                                        <option value="">"Any"</option>
                                        {list.kinds.iter().map(|k| view! { <option value=k.clone() selected=*k == kind>{k.clone()}</option> }).collect_view()}
                                    </select>
                                </div>
                                <button type="submit" class=SECONDARY_BUTTON>"Filter"</button>
                            </form>
                            {(!kind.is_empty()).then(|| view! {
                                <ActionForm action=retry_kind attr:class="mt-3">
                                    <input type="hidden" name="kind" value=kind.clone() />
                                    <button type="submit" class=SECONDARY_BUTTON>{format!("Retry all dead {kind} jobs")}</button>
                                </ActionForm>
                            })}
                            <div class=format!("{CARD} mt-4 overflow-hidden p-0")>
                                <JobTable rows=list.rows.clone() retry />
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

/// A table of jobs; dead ones get a "Retry now" button.
#[component]
fn JobTable(rows: Vec<AdminJobRow>, retry: ServerAction<AdminRetryJob>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="p-3 text-sm text-slate-700 dark:text-slate-300" data-testid="jobs-empty">"No jobs."</p> }.into_any();
    }
    view! {
        <TableScroll><table class=ADMIN_TABLE data-testid="jobs-table">
            <thead><tr>
                <th scope="col" class=TH>"Job"</th><th scope="col" class=TH>"Kind"</th><th scope="col" class=TH>"Status"</th>
                <th scope="col" class=format!("{TH} text-right")>"Attempts"</th><th scope="col" class=TH>"Enqueued"</th>
                <th scope="col" class=TH>"Due"</th><th scope="col" class=TH>"Last error"</th><th scope="col" class=TH>"Payload"</th>
                <th scope="col" class=TH><span class="sr-only">"Actions"</span></th>
            </tr></thead>
            <tbody class="divide-y divide-slate-100 dark:divide-slate-800">
                {rows.into_iter().map(|j| {
                    let dead = j.status == "dead";
                    view! {
                        <tr data-testid="job-row">
                            <td class=format!("{TD} tabular-nums")>{j.id}</td>
                            <td class=format!("{TD} font-mono text-xs")>{j.kind.clone()}</td>
                            <td class=TD><Badge text=j.status.clone() /></td>
                            <td class=format!("{TD} text-right tabular-nums")>{format!("{} / {}", j.attempts, j.max_attempts)}</td>
                            <td class=TD>{short_time(&j.created_at)}</td>
                            <td class=TD>{short_time(&j.run_at)}</td>
                            <td class=format!("{TD} max-w-xs truncate") title=j.last_error.clone().unwrap_or_default()>{j.last_error.clone().unwrap_or_default()}</td>
                            <td class=format!("{TD_ID} max-w-[20rem]") title=j.payload.clone()>{j.payload.clone()}</td>
                            <td class=TD>
                                {dead.then(|| view! {
                                    <ActionForm action=retry>
                                        <input type="hidden" name="job_id" value=j.id.to_string() />
                                        <button type="submit" class=SMALL_BUTTON aria-label=format!("Retry job {} now", j.id)>"Retry now"</button>
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
