//! `/dashboard`: credit balance, plan, whether fixes can run now (with what
//! to do when they cannot) and a 30-day usage chart drawn as inline SVG on
//! the server, with a data table for screen readers and text browsers.

use super::api::{get_dashboard, USAGE_DAYS};
use super::billing::BillingNotice;
use super::{portal_href, LoadError, Loading, PortalNav, CARD, LINK};
use crate::types::portal::{DashboardView, UsagePointView};
use leptos::prelude::*;
use leptos_meta::Title;

/// The dashboard page.
#[component]
pub fn DashboardPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_dashboard());
    view! {
        <Title text="Dashboard · RSOLV" />
        <PortalNav current="/dashboard" />
        <h1 class="text-2xl font-bold tracking-tight">"Dashboard"</h1>
        <div class="mt-6">
            <Suspense fallback=|| view! { <Loading label="Loading your dashboard…" /> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(view) => view! { <Dashboard view /> }.into_any(),
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

/// The plan's name as the portal writes it.
fn plan_label(plan: &str) -> &'static str {
    match plan {
        "trial" => "Trial",
        "payg" => "Pay as you go",
        "pro" => "Pro",
        _ => "Unknown",
    }
}

/// The line under the plan: the subscription's state when it is not
/// simply active, else whether a card is on file.
fn plan_detail(view: &DashboardView) -> &'static str {
    match view.subscription_status.as_deref() {
        Some("past_due") => "Payment past due",
        Some("unpaid") => "Unpaid: renew on the Billing page",
        Some("incomplete") => "Waiting for the first payment",
        _ if view.has_payment_method => "Card on file",
        _ => "No card on file",
    }
}

/// The dashboard itself, a pure render of `view` (the customer's page and
/// the admin console's read-only view; under [`ReadOnlyPortal`](super::ReadOnlyPortal)
/// its links lead to the admin's tabs).
#[component]
pub fn Dashboard(view: DashboardView) -> impl IntoView {
    let plan = plan_label(&view.plan);
    let detail = plan_detail(&view);
    let first_run = (view.fixes_total == 0 && !view.suspended).then(|| {
        view! { <GettingStarted active_keys=view.active_keys connected=view.action_connected api_url=view.api_url.clone() /> }
    });
    view! {
        <dl class="grid gap-4 sm:grid-cols-3">
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Credits left"</dt>
                <dd class="mt-1 text-3xl font-semibold" data-testid="credit-balance">{view.credit_balance}</dd>
                <dd class="mt-1 text-sm"><a href=portal_href("/credits") class=LINK>"See the ledger"</a></dd>
            </div>
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Plan"</dt>
                <dd class="mt-1 text-3xl font-semibold" data-testid="plan">{plan}</dd>
                <dd class="mt-1 text-sm text-slate-600 dark:text-slate-400" data-testid="plan-detail">
                    {detail} " · " <a href=portal_href("/billing") class=LINK>"Billing"</a>
                </dd>
            </div>
            <div class=CARD>
                <dt class="text-sm text-slate-600 dark:text-slate-400">"Fixes so far"</dt>
                <dd class="mt-1 text-3xl font-semibold" data-testid="fixes-total">{view.fixes_total}</dd>
            </div>
        </dl>
        <ServiceState view=view.clone() />
        <UnpaidFixesNotice count=view.unpaid_fixes />
        <BillingNotice notice=view.notice.clone() />
        {first_run}
        <section class=format!("mt-6 {CARD}") aria-labelledby="usage-heading">
            <h2 id="usage-heading" class="text-lg font-semibold">{format!("Last {USAGE_DAYS} days")}</h2>
            <UsageChart points=view.usage.clone() />
            <UsageTable points=view.usage />
        </section>
    }
}

/// Whether fixes can run, and the next step when they cannot: a link to
/// the page that fixes it, or whom to write to.
#[component]
fn ServiceState(view: DashboardView) -> impl IntoView {
    if view.suspended {
        let mailto = format!("mailto:{}", view.support_email);
        return view! {
            <div role="alert" data-testid="service-state" class="mt-6 rounded-md border border-red-200 bg-red-50 px-4 py-3 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-100">
                <p class="font-semibold">"Your account is suspended."</p>
                <p class="mt-1">
                    "The Action's calls are refused and your API keys do not work until it is restored. Write to "
                    <a href=mailto class="font-medium underline">{view.support_email.clone()}</a>
                    " from your account's email address to find out why and to restore it."
                </p>
            </div>
        }
        .into_any();
    }
    if view.can_use_service && view.active_keys == 0 {
        return view! {
            <div role="status" data-testid="service-state" class="mt-6 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-100">
                <p class="font-semibold">"No API key yet: the Action cannot call RSOLV."</p>
                <p class="mt-1">
                    "Your credits are ready. "
                    <a href=portal_href("/keys") class=LINK>"Create an API key"</a>
                    " and store it as your repository's RSOLV_API_KEY secret."
                </p>
            </div>
        }
        .into_any();
    }
    if view.can_use_service {
        return view! {
            <p role="status" data-testid="service-state" class="mt-6 rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-emerald-900 dark:border-emerald-900 dark:bg-emerald-950 dark:text-emerald-100">
                <span class="font-semibold">"Ready: "</span>
                "the RSOLV Action can open fixes for your repositories."
            </p>
        }
        .into_any();
    }
    view! {
        <div role="alert" data-testid="service-state" class="mt-6 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-100">
            <p class="font-semibold">"No credits left: fixes are paused."</p>
            <p class="mt-1">
                "To keep fixing, add a card to pay per fix or subscribe to Pro on the "
                <a href=portal_href("/billing") class=LINK data-testid="service-state-billing">"Billing page"</a>
                "."
            </p>
        </div>
    }
    .into_any()
}

/// Fixes delivered without credits or a way to pay, with where they are
/// listed and what happens next.
#[component]
fn UnpaidFixesNotice(count: i64) -> impl IntoView {
    (count > 0).then(|| {
        let what = if count == 1 {
            "1 fix is waiting for payment".to_owned()
        } else {
            format!("{count} fixes are waiting for payment")
        };
        view! {
            <p role="status" data-testid="unpaid-fixes-notice" class="mt-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
                <span class="font-semibold">{what}": "</span>
                "each is charged once, oldest first, as soon as you add a card or buy credits. "
                <a href=portal_href("/billing/history") class=LINK>"See them in billing history"</a>
            </p>
        }
    })
}

/// The workflow that runs the Action with the customer's key, for
/// `.github/workflows/rsolv.yml`. `api_url` is this platform's origin: the
/// Action's `api_url` input (ACTION_API.md) and, with `/ai`, its AI
/// client's `RSOLV_AI_BASE_URL` (the gateway, § 8).
pub fn workflow_yaml(api_url: &str) -> String {
    format!(
        "name: RSOLV\n\
         on:\n  \
           issues:\n    \
             types: [labeled]\n  \
           workflow_dispatch:\n\
         permissions:\n  \
           contents: write\n  \
           issues: write\n  \
           pull-requests: write\n\
         jobs:\n  \
           fix:\n    \
             runs-on: ubuntu-latest\n    \
             steps:\n      \
               - uses: actions/checkout@v4\n      \
               - uses: RSOLV-dev/rsolv-action@v1\n        \
                 env:\n          \
                   RSOLV_AI_BASE_URL: {api_url}/ai\n        \
                 with:\n          \
                   api_key: ${{{{ secrets.RSOLV_API_KEY }}}}\n          \
                   api_url: {api_url}\n"
    )
}

/// The first-run checklist, shown until the first fix is recorded: a key,
/// the repository secret, the workflow, the first fix. `connected`: a key
/// has called the Action API, so the secret and the workflow are in place.
#[component]
fn GettingStarted(active_keys: i64, connected: bool, api_url: String) -> impl IntoView {
    let has_key = active_keys > 0 || connected;
    view! {
        <section class=format!("mt-6 {CARD}") aria-labelledby="start-heading" data-testid="getting-started">
            <h2 id="start-heading" class="text-lg font-semibold">"Get your first fix"</h2>
            <p class="mt-1 text-sm text-slate-700 dark:text-slate-300">
                "This list stays here until the Action records your first fix."
            </p>
            <ol class="mt-4 space-y-4 text-sm">
                <Step number=1 done=has_key testid="step-key">
                    <p class="font-medium">{if has_key { "You have an API key." } else { "Create an API key." }}</p>
                    <p class="text-slate-700 dark:text-slate-300">
                        "It is shown once. "
                        <a href=portal_href("/keys") class=LINK>{if has_key { "Manage your keys" } else { "Create one under API keys" }}</a>
                    </p>
                </Step>
                <Step number=2 done=connected testid="step-secret">
                    <p class="font-medium">"Store it as a repository secret named RSOLV_API_KEY."</p>
                    <p class="text-slate-700 dark:text-slate-300">
                        "In GitHub: the repository's Settings → Secrets and variables → Actions → New repository secret."
                    </p>
                </Step>
                <Step number=3 done=connected testid="step-workflow">
                    <p class="font-medium">
                        {if connected { "The Action has connected with your key. The workflow, as .github/workflows/rsolv.yml:" } else { "Add the workflow as .github/workflows/rsolv.yml:" }}
                    </p>
                    <pre tabindex="0" class="relative mt-2 max-w-full overflow-x-auto rounded-md bg-slate-900 p-3 text-xs text-slate-100" data-testid="workflow-yaml"><code>{workflow_yaml(&api_url)}</code></pre>
                    <p class="mt-2 text-slate-700 dark:text-slate-300">
                        "Label an issue to start a run. Each fix uses one credit; the emails we send about your account never contain your key."
                    </p>
                </Step>
                <Step number=4 done=false testid="step-fix">
                    <p class="font-medium">"Your first fix appears here and on the chart below."</p>
                </Step>
            </ol>
        </section>
    }
}

/// One item of [`GettingStarted`]: a numbered circle, a tick once `done`
/// (said to screen readers too), and its text.
#[component]
fn Step(number: u8, done: bool, testid: &'static str, children: Children) -> impl IntoView {
    let circle = if done {
        "mt-0.5 inline-flex h-5 w-5 shrink-0 items-center justify-center rounded-full bg-emerald-600 text-xs font-bold text-white"
    } else {
        "mt-0.5 inline-flex h-5 w-5 shrink-0 items-center justify-center rounded-full border border-slate-400 text-xs dark:border-slate-500"
    };
    view! {
        <li class="flex min-w-0 gap-3" data-testid=testid data-done=done.to_string()>
            <span class=circle aria-hidden="true">{if done { "✓".to_owned() } else { number.to_string() }}</span>
            <div class="min-w-0 flex-1">
                <span class="sr-only">{if done { "Done: " } else { "To do: " }}</span>
                {children()}
            </div>
        </li>
    }
}

/// Chart geometry, in SVG user units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 36.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Bars of fixes per day (left axis) and a line of credits left (right
/// axis). Server-rendered SVG; `role="img"` with a title and description.
#[component]
pub fn UsageChart(points: Vec<UsagePointView>) -> impl IntoView {
    let n = points.len().max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_fixes = points.iter().map(|p| p.fixes).max().unwrap_or(0).max(1) as f64;
    let max_credits = points
        .iter()
        .filter_map(|p| p.credits_left)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = plot_w / n;
    let total_fixes: i64 = points.iter().map(|p| p.fixes).sum();
    let last_credits = points.last().and_then(|p| p.credits_left).unwrap_or(0);
    let first_day = points.first().map(|p| p.day.clone()).unwrap_or_default();
    let last_day = points.last().map(|p| p.day.clone()).unwrap_or_default();
    let description = format!(
        "{total_fixes} fixes between {first_day} and {last_day}, at most {} in a day; {last_credits} credits left at the end.",
        max_fixes as i64
    );
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let h = p.fixes as f64 / max_fixes * plot_h;
            let x = LEFT + i as f64 * slot + slot * 0.15;
            view! {
                <rect
                    x=format!("{x:.1}")
                    y=format!("{:.1}", TOP + plot_h - h)
                    width=format!("{:.1}", slot * 0.7)
                    height=format!("{h:.1}")
                    class="fill-indigo-500 dark:fill-indigo-400"
                >
                    <title>{format!("{}: {} fixes", p.day, p.fixes)}</title>
                </rect>
            }
        })
        .collect_view();
    let line = points
        .iter()
        .enumerate()
        // Days before the account existed have no balance: the line starts
        // at signup instead of drawing a fictitious zero.
        .filter_map(|(i, p)| {
            let credits = p.credits_left?;
            let x = LEFT + (i as f64 + 0.5) * slot;
            let y = TOP + plot_h - credits as f64 / max_credits * plot_h;
            Some(format!("{x:.1},{y:.1}"))
        })
        .collect::<Vec<_>>()
        .join(" ");
    // A dot per day with a balance: a line through one point (an account
    // created today) would draw nothing.
    let dots = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let credits = p.credits_left?;
            let x = LEFT + (i as f64 + 0.5) * slot;
            let y = TOP + plot_h - credits as f64 / max_credits * plot_h;
            Some(view! {
                <circle cx=format!("{x:.1}") cy=format!("{y:.1}") r="3" class="fill-emerald-600 dark:fill-emerald-400" data-testid="credits-point">
                    <title>{format!("{}: {} credits left", p.day, credits)}</title>
                </circle>
            })
        })
        .collect_view();
    view! {
        <figure class="mt-4">
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                class="h-auto w-full text-slate-600 dark:text-slate-400"
                role="img"
                aria-labelledby="usage-title usage-desc"
                data-testid="usage-chart"
            >
                <title id="usage-title">"Fixes per day and credits left"</title>
                <desc id="usage-desc">{description}</desc>
                <line x1=LEFT y1=TOP + plot_h x2=WIDTH - RIGHT y2=TOP + plot_h class="stroke-slate-300 dark:stroke-slate-700" />
                <text x=LEFT - 6.0 y=TOP + 10.0 text-anchor="end" class="fill-current text-[10px]">{max_fixes as i64}</text>
                <text x=LEFT - 6.0 y=TOP + plot_h text-anchor="end" class="fill-current text-[10px]">"0"</text>
                <text x=WIDTH - RIGHT + 6.0 y=TOP + 10.0 class="fill-current text-[10px]">{max_credits as i64}</text>
                <text x=LEFT y=HEIGHT - 8.0 class="fill-current text-[10px]">{first_day}</text>
                <text x=WIDTH - RIGHT y=HEIGHT - 8.0 text-anchor="end" class="fill-current text-[10px]">{last_day}</text>
                {bars}
                <polyline points=line fill="none" stroke-width="2" class="stroke-emerald-600 dark:stroke-emerald-400" />
                {dots}
            </svg>
            <figcaption class="mt-2 flex flex-wrap gap-4 text-sm text-slate-700 dark:text-slate-300">
                <span class="inline-flex items-center gap-2">
                    <span aria-hidden="true" class="inline-block h-3 w-3 rounded-sm bg-indigo-500 dark:bg-indigo-400"></span>
                    "Fixes per day (left scale)"
                </span>
                <span class="inline-flex items-center gap-2">
                    <span aria-hidden="true" class="inline-block h-0.5 w-4 bg-emerald-600 dark:bg-emerald-400"></span>
                    "Credits left (right scale)"
                </span>
            </figcaption>
        </figure>
    }
}

/// The chart's numbers as a table, in a disclosure.
#[component]
fn UsageTable(points: Vec<UsagePointView>) -> impl IntoView {
    view! {
        <details class="mt-4">
            <summary class="cursor-pointer rounded text-sm font-medium focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500">
                "Show the numbers"
            </summary>
            <div class="mt-2 max-h-80 overflow-y-auto">
                <table class="w-full text-left text-sm" data-testid="usage-table">
                    <caption class="sr-only">"Fixes and credits left per day"</caption>
                    <thead>
                        <tr class="border-b border-slate-200 dark:border-slate-800">
                            <th scope="col" class="py-1 pr-4">"Day (UTC)"</th>
                            <th scope="col" class="py-1 pr-4 text-right">"Fixes"</th>
                            <th scope="col" class="py-1 text-right">"Credits left"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {points
                            .into_iter()
                            .rev()
                            .map(|p| view! {
                                <tr class="border-b border-slate-100 dark:border-slate-800/60">
                                    <th scope="row" class="py-1 pr-4 font-normal">{p.day}</th>
                                    <td class="py-1 pr-4 text-right tabular-nums">{p.fixes}</td>
                                    <td class="py-1 text-right tabular-nums">
                                        {p.credits_left.map_or_else(|| "—".to_owned(), |c| c.to_string())}
                                    </td>
                                </tr>
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
        </details>
    }
}

/// Each state of the dashboard rendered on the server: what it says and
/// where it sends the customer (issue 14: nothing false, nothing dead).
#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::types::billing::BillingNoticeView;

    /// A trial customer of today with 5 credits, one key and no fix yet.
    fn trial() -> DashboardView {
        DashboardView {
            name: "Ada".into(),
            credit_balance: 5,
            plan: "trial".into(),
            can_use_service: true,
            suspended: false,
            has_payment_method: false,
            subscription_status: None,
            fixes_total: 0,
            usage: (0..30)
                .map(|i| UsagePointView {
                    day: format!("2026-11-{:02}", i + 1),
                    fixes: 0,
                    credits_left: (i == 29).then_some(5),
                })
                .collect(),
            unpaid_fixes: 0,
            active_keys: 1,
            action_connected: false,
            api_url: "https://rsolv.example".into(),
            support_email: "help@rsolv.example".into(),
            notice: BillingNoticeView {
                billing_enabled: true,
                past_due: false,
                payment_failed: false,
                charges_pending: 0,
                authentication_needed: Vec::new(),
            },
        }
    }

    fn render(view: DashboardView) -> String {
        Owner::new().with(|| view! { <Dashboard view /> }.to_html())
    }

    /// The `href` of the element with `data-testid` = `testid`.
    fn href_of<'a>(html: &'a str, testid: &str) -> Option<&'a str> {
        let at = html.find(&format!(r#"data-testid="{testid}""#))?;
        let tag = &html[html[..at].rfind('<')?..];
        let tag = &tag[..tag.find('>')?];
        let href = &tag[tag.find(r#"href=""#)? + 6..];
        Some(&href[..href.find('"')?])
    }

    /// Text no state may show: promises the product does not keep.
    fn assert_nothing_false(html: &str) {
        for stale in ["coming soon", "contact support to add credits", "Unknown"] {
            assert!(!html.contains(stale), "{stale:?} in {html}");
        }
    }

    #[test]
    fn a_new_trial_customer_is_ready_and_led_to_the_first_fix() {
        let html = render(trial());
        assert_nothing_false(&html);
        assert!(html.contains("Ready: "), "{html}");
        assert!(html.contains(r#"data-testid="getting-started""#));
        assert!(
            html.contains(r#"data-testid="step-key" data-done="true""#),
            "{html}"
        );
        assert!(
            html.contains("api_key: ${{ secrets.RSOLV_API_KEY }}"),
            "{html}"
        );
        assert!(html.contains("api_url: https://rsolv.example\n"), "{html}");
        assert!(
            html.contains("RSOLV_AI_BASE_URL: https://rsolv.example/ai"),
            "{html}"
        );
        assert!(html.contains("RSOLV-dev/rsolv-action@v1"));
        assert!(html.contains("No card on file"));
        // An account created today has one balance point: it is drawn.
        assert_eq!(html.matches(r#"data-testid="credits-point""#).count(), 1);
    }

    #[test]
    fn once_the_action_has_called_with_a_key_the_secret_and_workflow_are_ticked() {
        let before = render(trial());
        for step in ["step-secret", "step-workflow", "step-fix"] {
            assert!(
                before.contains(&format!(r#"data-testid="{step}" data-done="false""#)),
                "{step}: {before}"
            );
        }
        let html = render(DashboardView {
            action_connected: true,
            ..trial()
        });
        assert_nothing_false(&html);
        for step in ["step-key", "step-secret", "step-workflow"] {
            assert!(
                html.contains(&format!(r#"data-testid="{step}" data-done="true""#)),
                "{step}: {html}"
            );
        }
        assert!(html.contains(r#"data-testid="step-fix" data-done="false""#));
        assert!(html.contains("The Action has connected with your key."));
    }

    #[test]
    fn without_a_key_the_dashboard_says_so_and_links_to_the_keys() {
        let html = render(DashboardView {
            active_keys: 0,
            ..trial()
        });
        assert_nothing_false(&html);
        assert!(!html.contains("Ready: "), "{html}");
        assert!(html.contains("No API key yet"), "{html}");
        assert!(html.contains(r#"href="/keys""#));
        assert!(html.contains(r#"data-testid="step-key" data-done="false""#));
    }

    #[test]
    fn at_zero_credits_the_next_step_is_the_billing_page() {
        let html = render(DashboardView {
            credit_balance: 0,
            can_use_service: false,
            ..trial()
        });
        assert_nothing_false(&html);
        assert!(
            html.contains("No credits left: fixes are paused."),
            "{html}"
        );
        assert_eq!(
            href_of(&html, "service-state-billing"),
            Some("/billing"),
            "{html}"
        );
    }

    #[test]
    fn a_suspended_customer_is_told_whom_to_write_to_and_gets_no_checklist() {
        let html = render(DashboardView {
            suspended: true,
            can_use_service: false,
            ..trial()
        });
        assert_nothing_false(&html);
        assert!(html.contains("Your account is suspended."));
        assert!(
            html.contains(r#"href="mailto:help@rsolv.example""#),
            "{html}"
        );
        assert!(!html.contains("Ready: "));
        assert!(!html.contains(r#"data-testid="getting-started""#));
    }

    #[test]
    fn unpaid_fixes_are_counted_with_where_to_see_them() {
        let one = render(DashboardView {
            unpaid_fixes: 1,
            fixes_total: 1,
            ..trial()
        });
        assert!(one.contains("1 fix is waiting for payment"), "{one}");
        assert!(one.contains(r#"href="/billing/history""#));
        // The first fix arrived: the checklist is gone.
        assert!(!one.contains(r#"data-testid="getting-started""#));
        let three = render(DashboardView {
            unpaid_fixes: 3,
            fixes_total: 3,
            ..trial()
        });
        assert!(three.contains("3 fixes are waiting for payment"));
        assert!(!render(trial()).contains("waiting for payment"));
    }

    #[test]
    fn read_only_its_links_stay_in_the_admins_view() {
        let html = Owner::new().with(|| {
            provide_context(crate::app::portal::ReadOnlyPortal { customer_id: 7 });
            view! {
                <Dashboard view=DashboardView { credit_balance: 0, can_use_service: false, unpaid_fixes: 2, fixes_total: 2, ..trial() } />
            }
            .to_html()
        });
        assert_eq!(
            href_of(&html, "service-state-billing"),
            Some("/admin/customers/7/portal/billing"),
            "{html}"
        );
        assert!(html.contains(r#"href="/admin/customers/7/portal/credits""#));
        for portal in [r#"href="/billing"#, r#"href="/credits"#, r#"href="/keys"#] {
            assert!(!html.contains(portal), "{portal} in {html}");
        }
        assert!(
            !html.contains("<form") && !html.contains("<button"),
            "{html}"
        );
    }

    #[test]
    fn a_payment_waiting_for_the_bank_links_its_page() {
        use crate::types::billing::PaymentToAuthenticate;
        let html = render(DashboardView {
            plan: "payg".into(),
            has_payment_method: true,
            notice: BillingNoticeView {
                authentication_needed: vec![PaymentToAuthenticate {
                    charge_id: 42,
                    amount: "$29.00".into(),
                }],
                ..trial().notice
            },
            ..trial()
        });
        assert_nothing_false(&html);
        assert!(
            html.contains(r#"data-testid="notice-authentication-needed""#),
            "{html}"
        );
        assert!(html.contains("confirm a $29.00 payment"), "{html}");
        assert_eq!(
            href_of(&html, "authentication-link"),
            Some("/billing/authenticate?charge=42"),
            "{html}"
        );
        assert!(
            !html.contains("notice-payment-failed"),
            "not a decline: {html}"
        );
    }

    #[test]
    fn pro_card_past_due_and_paused_billing_say_so() {
        let html = render(DashboardView {
            plan: "pro".into(),
            has_payment_method: true,
            subscription_status: Some("past_due".into()),
            notice: BillingNoticeView {
                billing_enabled: false,
                past_due: true,
                payment_failed: true,
                charges_pending: 2,
                authentication_needed: Vec::new(),
            },
            ..trial()
        });
        assert_nothing_false(&html);
        assert!(html.contains(">Pro<"), "{html}");
        assert!(html.contains("Payment past due"));
        assert!(html.contains(r#"data-testid="notice-past-due""#));
        assert!(html.contains(r#"data-testid="notice-payment-failed""#));
        assert!(html.contains(r#"data-testid="notice-billing-paused""#));
        // Nothing is charged while billing is paused: no "being processed".
        assert!(!html.contains(r#"data-testid="notice-charges-pending""#));
        let card = render(DashboardView {
            plan: "payg".into(),
            has_payment_method: true,
            ..trial()
        });
        assert!(card.contains("Pay as you go") && card.contains("Card on file"));
        assert!(!card.contains("notice-"), "{card}");
    }
}
