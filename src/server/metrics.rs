//! The platform's Prometheus metrics (issue 11 § 2): every metric name in
//! one place ([`CATALOG`]), typed recording functions for the code that
//! observes something, and the gauges computed from the database on each
//! scrape ([`refresh_from_database`]).
//!
//! A leaf: it imports nothing of the crate, so the domain, integrations,
//! adapters and wiring all record through it. Recording goes through the
//! `metrics` facade; until [`install`] sets the Prometheus recorder (the
//! wiring does when `METRICS_ADDR` is set) every call is a cheap no-op.
//! The scrape itself (`GET /metrics` on its own listener) is
//! `server::http::metrics`.
//!
//! Gauges read from the database (queue depth, backlog, outbox, business
//! totals, reconciliation) describe the shared database, so every instance
//! reports the same value: aggregate them with `max`, not `sum`. Counters
//! and histograms recorded in code (HTTP, processor calls, failures) are per
//! instance: aggregate them with `sum`. The alert rules and the dashboard in
//! `ops/` use exactly these names; a test checks that every name they use is
//! in [`CATALOG`].

use diesel::sql_types::{BigInt, Double, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// HTTP requests answered, by `method`, `route` (the router's template,
/// e.g. `/api/v1/fix-attempts/{id}/billing`) and `status` (e.g. `200`).
/// Counter, per instance.
pub const HTTP_REQUESTS_TOTAL: &str = "rsolv_http_requests_total";
/// Time from the request reaching the router to the response head, in
/// seconds, by `method`, `route` and `status`. Histogram, per instance.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "rsolv_http_request_duration_seconds";
/// Connections the pool may open (`DATABASE_POOL_SIZE`). Gauge.
pub const DB_POOL_MAX_CONNECTIONS: &str = "rsolv_db_pool_max_connections";
/// Connections the pool holds open now. Gauge.
pub const DB_POOL_CONNECTIONS: &str = "rsolv_db_pool_connections";
/// Connections checked out by a task now. Gauge.
pub const DB_POOL_CONNECTIONS_IN_USE: &str = "rsolv_db_pool_connections_in_use";
/// Tasks waiting for a connection now. Gauge.
pub const DB_POOL_WAITING: &str = "rsolv_db_pool_waiting";
/// Jobs `queued` in the job queue, by `kind` (due or scheduled). Gauge from
/// the database.
pub const JOB_QUEUE_DEPTH: &str = "rsolv_job_queue_depth";
/// How late the oldest due `queued` job is (now − its `run_at`), in
/// seconds, by `kind`; 0 when none is due. Gauge from the database.
pub const JOB_QUEUE_OLDEST_AGE_SECONDS: &str = "rsolv_job_queue_oldest_age_seconds";
/// Jobs in the dead-letter state (`dead`, waiting for a person), by `kind`.
/// Gauge from the database.
pub const JOBS_DEAD: &str = "rsolv_jobs_dead";
/// Failed job runs, by `kind` and `outcome` (`retry`: will run again;
/// `dead`: attempts exhausted or a permanent error). Counter, per instance.
pub const JOB_FAILURES_TOTAL: &str = "rsolv_job_failures_total";
/// Webhook events received and not yet applied (Stripe: not `processed`;
/// GitHub: `failed`), by `source` (`stripe`, `github`). Gauge from the
/// database.
pub const WEBHOOK_BACKLOG: &str = "rsolv_webhook_backlog";
/// Age of the oldest event in [`WEBHOOK_BACKLOG`], in seconds, by `source`;
/// 0 when the backlog is empty. Gauge from the database.
pub const WEBHOOK_BACKLOG_OLDEST_AGE_SECONDS: &str = "rsolv_webhook_backlog_oldest_age_seconds";
/// From an event's receipt to its effects committing, in seconds, by
/// `source`. Histogram, per instance.
pub const WEBHOOK_PROCESSING_LAG_SECONDS: &str = "rsolv_webhook_processing_lag_seconds";
/// Failed attempts to apply a webhook event, by `source`. Counter, per
/// instance.
pub const WEBHOOK_FAILURES_TOTAL: &str = "rsolv_webhook_failures_total";
/// Rows in the email outbox that are not yet sent, by `status` (`queued`,
/// `sending`, `failed`). Gauge from the database.
pub const EMAIL_OUTBOX: &str = "rsolv_email_outbox";
/// Age of the oldest `queued` email, in seconds; 0 when none. Gauge from the
/// database.
pub const EMAIL_OUTBOX_OLDEST_AGE_SECONDS: &str = "rsolv_email_outbox_oldest_age_seconds";
/// Calls to the payment processor, by `operation` (the port's method, e.g.
/// `charge_off_session`) and `outcome` (`ok`, `declined`, `unavailable`,
/// `conflict`, `misconfigured`, `not_found`, `disabled`). Counter, per
/// instance.
pub const PROCESSOR_CALLS_TOTAL: &str = "rsolv_processor_calls_total";
/// Duration of a payment-processor call, in seconds, by `operation`.
/// Histogram, per instance.
pub const PROCESSOR_CALL_DURATION_SECONDS: &str = "rsolv_processor_call_duration_seconds";
/// Requests refused by a rate limit, by `limit` (`signup`, `action`).
/// Counter, per instance.
pub const RATE_LIMIT_REFUSALS_TOTAL: &str = "rsolv_rate_limit_refusals_total";
/// Open findings of the latest reconciliation run, by `kind`
/// (`ledger_drift`, `fix_payment`, `missing_grant`, `duplicate_grant`,
/// `refund_not_applied`). Gauge from the database.
pub const RECONCILIATION_FINDINGS: &str = "rsolv_reconciliation_findings";
/// Σ |cached balance − ledger sum| over the latest reconciliation run's
/// open `ledger_drift` findings, in credits; must be 0. Gauge from the
/// database.
pub const LEDGER_DRIFT_CREDITS: &str = "rsolv_ledger_drift_credits";
/// Customers, by sign-up `source` (e.g. `direct`, `web`,
/// `github_marketplace`). Gauge from the database: its increase is the
/// sign-ups.
pub const CUSTOMERS: &str = "rsolv_customers";
/// Fixes, by `billing_status` (the billing outcome: `credit`, `charged`,
/// `unpaid`, …). Gauge from the database.
pub const FIXES: &str = "rsolv_fixes";
/// Charges, by `status` (`pending`, `invoiced`, `succeeded`, `failed`,
/// `refunded`). Gauge from the database.
pub const CHARGES: &str = "rsolv_charges";
/// Cents ever charged successfully (charges `succeeded` or later
/// `refunded`), all currencies added. Counter from the database (never
/// decreases).
pub const CHARGED_CENTS_TOTAL: &str = "rsolv_charged_cents_total";
/// Charge attempts settled by the `stripe.charge` job, by `outcome` (the
/// status reached: `succeeded`, `failed` (declined or no card) or
/// `invoiced` (overage on the next invoice)). Counter, per instance: the
/// payment failure rate.
pub const CHARGE_ATTEMPTS_TOTAL: &str = "rsolv_charge_attempts_total";
/// Scrapes whose database gauges could not be refreshed (they keep their
/// last values). Counter, per instance.
pub const METRICS_REFRESH_ERRORS_TOTAL: &str = "rsolv_metrics_refresh_errors_total";
/// Resident set size of this process, in bytes (`/proc/self/statm`). Gauge.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "rsolv_process_resident_memory_bytes";
/// The memory this process may use, in bytes: its cgroup's `memory.max`,
/// else the machine's `MemTotal`. Gauge.
pub const PROCESS_MEMORY_LIMIT_BYTES: &str = "rsolv_process_memory_limit_bytes";
/// User + system CPU time this process used, in seconds
/// (`/proc/self/stat`). Monotonic gauge: use `rate()`.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "rsolv_process_cpu_seconds_total";

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (exposed as `<name>`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (exposed as `<name>_bucket`, `_sum`,
    /// `_count`).
    Histogram,
}

/// Every metric the platform registers: name, kind and help text (the
/// `# HELP` line).
pub const CATALOG: &[(&str, Kind, &str)] = &[
    (
        HTTP_REQUESTS_TOTAL,
        Kind::Counter,
        "HTTP requests answered, by method, route template and status",
    ),
    (
        HTTP_REQUEST_DURATION_SECONDS,
        Kind::Histogram,
        "HTTP request latency in seconds, by method, route template and status",
    ),
    (
        DB_POOL_MAX_CONNECTIONS,
        Kind::Gauge,
        "Connections the database pool may open",
    ),
    (
        DB_POOL_CONNECTIONS,
        Kind::Gauge,
        "Connections the database pool holds open",
    ),
    (
        DB_POOL_CONNECTIONS_IN_USE,
        Kind::Gauge,
        "Database connections checked out",
    ),
    (
        DB_POOL_WAITING,
        Kind::Gauge,
        "Tasks waiting for a database connection",
    ),
    (JOB_QUEUE_DEPTH, Kind::Gauge, "Queued jobs, by kind"),
    (
        JOB_QUEUE_OLDEST_AGE_SECONDS,
        Kind::Gauge,
        "Seconds the oldest due queued job is late, by kind",
    ),
    (
        JOBS_DEAD,
        Kind::Gauge,
        "Jobs in the dead-letter state, by kind",
    ),
    (
        JOB_FAILURES_TOTAL,
        Kind::Counter,
        "Failed job runs, by kind and outcome (retry, dead)",
    ),
    (
        WEBHOOK_BACKLOG,
        Kind::Gauge,
        "Webhook events received and not applied, by source",
    ),
    (
        WEBHOOK_BACKLOG_OLDEST_AGE_SECONDS,
        Kind::Gauge,
        "Age in seconds of the oldest unapplied webhook event, by source",
    ),
    (
        WEBHOOK_PROCESSING_LAG_SECONDS,
        Kind::Histogram,
        "Seconds from a webhook's receipt to its effects, by source",
    ),
    (
        WEBHOOK_FAILURES_TOTAL,
        Kind::Counter,
        "Failed attempts to apply a webhook event, by source",
    ),
    (
        EMAIL_OUTBOX,
        Kind::Gauge,
        "Unsent emails in the outbox, by status",
    ),
    (
        EMAIL_OUTBOX_OLDEST_AGE_SECONDS,
        Kind::Gauge,
        "Age in seconds of the oldest queued email",
    ),
    (
        PROCESSOR_CALLS_TOTAL,
        Kind::Counter,
        "Payment processor calls, by operation and outcome",
    ),
    (
        PROCESSOR_CALL_DURATION_SECONDS,
        Kind::Histogram,
        "Payment processor call latency in seconds, by operation",
    ),
    (
        RATE_LIMIT_REFUSALS_TOTAL,
        Kind::Counter,
        "Requests refused by a rate limit, by limit",
    ),
    (
        RECONCILIATION_FINDINGS,
        Kind::Gauge,
        "Open findings of the latest reconciliation run, by kind",
    ),
    (
        LEDGER_DRIFT_CREDITS,
        Kind::Gauge,
        "Credits by which cached balances differ from the ledger (latest reconciliation)",
    ),
    (CUSTOMERS, Kind::Gauge, "Customers, by sign-up source"),
    (FIXES, Kind::Gauge, "Fixes, by billing status"),
    (CHARGES, Kind::Gauge, "Charges, by status"),
    (
        CHARGED_CENTS_TOTAL,
        Kind::Counter,
        "Cents charged successfully, all time",
    ),
    (
        CHARGE_ATTEMPTS_TOTAL,
        Kind::Counter,
        "Charge attempts settled, by outcome (succeeded, failed, invoiced)",
    ),
    (
        METRICS_REFRESH_ERRORS_TOTAL,
        Kind::Counter,
        "Scrapes whose database gauges could not be refreshed",
    ),
    (
        PROCESS_RESIDENT_MEMORY_BYTES,
        Kind::Gauge,
        "Resident memory of the process in bytes",
    ),
    (
        PROCESS_MEMORY_LIMIT_BYTES,
        Kind::Gauge,
        "Memory the process may use in bytes (cgroup limit or MemTotal)",
    ),
    (
        PROCESS_CPU_SECONDS_TOTAL,
        Kind::Gauge,
        "CPU seconds (user + system) used by the process",
    ),
];

/// Upper bounds of the latency buckets (seconds) of HTTP and processor
/// calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the webhook lag buckets (seconds).
const LAG_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global `metrics`
/// recorder (once; later calls return the same handle) and describes every
/// metric of [`CATALOG`].
///
/// Panics if another global recorder was installed by someone else (a
/// wiring bug).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, kind, _) in CATALOG {
                if *kind == Kind::Histogram {
                    let buckets = if *name == WEBHOOK_PROCESSING_LAG_SECONDS {
                        LAG_BUCKETS
                    } else {
                        LATENCY_BUCKETS
                    };
                    builder = builder
                        .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                        .expect("buckets are not empty");
                }
            }
            let handle = builder
                .install_recorder()
                .expect("no other metrics recorder is installed");
            for (name, kind, help) in CATALOG {
                match kind {
                    Kind::Counter => metrics::describe_counter!(*name, *help),
                    Kind::Gauge => metrics::describe_gauge!(*name, *help),
                    Kind::Histogram => metrics::describe_histogram!(*name, *help),
                }
            }
            handle
        })
        .clone()
}

/// The text exposition of every metric (Prometheus format 0.0.4), after
/// reading the process's memory and CPU; installs the recorder if needed.
pub fn render() -> String {
    let handle = install();
    record_process();
    handle.run_upkeep();
    handle.render()
}

/// One answered HTTP request.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels).record(elapsed.as_secs_f64());
}

/// The pool's state now: `max` connections allowed, `size` open,
/// `available` idle among them, `waiting` tasks.
pub fn pool(max: usize, size: usize, available: usize, waiting: usize) {
    metrics::gauge!(DB_POOL_MAX_CONNECTIONS).set(max as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS).set(size as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS_IN_USE).set(size.saturating_sub(available) as f64);
    metrics::gauge!(DB_POOL_WAITING).set(waiting as f64);
}

/// A job run of `kind` failed; `dead` when it will not run again.
pub fn job_failed(kind: &str, dead: bool) {
    let outcome = if dead { "dead" } else { "retry" };
    metrics::counter!(JOB_FAILURES_TOTAL, "kind" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// A webhook event from `source` (`stripe`, `github`) was applied `lag`
/// after it was received.
pub fn webhook_processed(source: &'static str, lag: Duration) {
    metrics::histogram!(WEBHOOK_PROCESSING_LAG_SECONDS, "source" => source)
        .record(lag.as_secs_f64());
}

/// An attempt to apply a webhook event from `source` failed.
pub fn webhook_failed(source: &'static str) {
    metrics::counter!(WEBHOOK_FAILURES_TOTAL, "source" => source).increment(1);
}

/// A payment-processor call `operation` took `elapsed` and ended with
/// `outcome` (`ok` or the error's kind, see [`PROCESSOR_CALLS_TOTAL`]).
pub fn processor_call(operation: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(PROCESSOR_CALLS_TOTAL, "operation" => operation, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(PROCESSOR_CALL_DURATION_SECONDS, "operation" => operation)
        .record(elapsed.as_secs_f64());
}

/// A request was refused by the rate limit `limit` (`signup`, `action`).
pub fn rate_limit_refused(limit: &'static str) {
    metrics::counter!(RATE_LIMIT_REFUSALS_TOTAL, "limit" => limit).increment(1);
}

/// The `stripe.charge` job settled a charge in status `outcome`
/// (`succeeded`, `failed`, `invoiced`).
pub fn charge_attempt(outcome: &'static str) {
    metrics::counter!(CHARGE_ATTEMPTS_TOTAL, "outcome" => outcome).increment(1);
}

/// (gauge name, label name) → the label values it was last set for.
type SeenLabels = BTreeMap<(&'static str, &'static str), BTreeSet<String>>;

/// Label sets each database gauge family had at the last refresh, so that
/// a label that disappeared (a kind with no queued job left) drops to 0
/// instead of keeping its last value.
static SEEN: OnceLock<Mutex<SeenLabels>> = OnceLock::new();

/// Sets gauge `name` for each `(label value, value)` of `rows` (label
/// `label`), and to 0 for label values seen before but absent now.
fn set_family(name: &'static str, label: &'static str, rows: &[(String, f64)]) {
    let seen = SEEN.get_or_init(Default::default);
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let previous = seen.entry((name, label)).or_default();
    let now: BTreeSet<String> = rows.iter().map(|(l, _)| l.clone()).collect();
    for gone in previous.difference(&now) {
        metrics::gauge!(name, label => gone.clone()).set(0.0);
    }
    for (value, v) in rows {
        metrics::gauge!(name, label => value.clone()).set(*v);
    }
    *previous = now;
}

#[derive(QueryableByName)]
struct LabelledRow {
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Double)]
    age: f64,
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

async fn labelled(
    conn: &mut AsyncPgConnection,
    sql: &'static str,
) -> Result<Vec<LabelledRow>, diesel::result::Error> {
    diesel::sql_query(sql).load(conn).await
}

fn counts(rows: &[LabelledRow]) -> Vec<(String, f64)> {
    rows.iter()
        .map(|r| (r.label.clone(), r.count as f64))
        .collect()
}

fn ages(rows: &[LabelledRow]) -> Vec<(String, f64)> {
    rows.iter().map(|r| (r.label.clone(), r.age)).collect()
}

/// Refreshes every gauge read from the database (queue, webhooks, outbox,
/// reconciliation, business totals): a handful of aggregate queries, run
/// by each scrape.
///
/// Errors: the first database error (gauges refreshed before it keep their
/// new values, the others their old ones).
pub async fn refresh_from_database(
    conn: &mut AsyncPgConnection,
) -> Result<(), diesel::result::Error> {
    let jobs = labelled(
        conn,
        "SELECT kind AS label, count(*) AS count, \
           COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now())), 0)::float8 AS age \
         FROM jobs WHERE status = 'queued' GROUP BY kind",
    )
    .await?;
    set_family(JOB_QUEUE_DEPTH, "kind", &counts(&jobs));
    set_family(JOB_QUEUE_OLDEST_AGE_SECONDS, "kind", &ages(&jobs));
    let dead = labelled(
        conn,
        "SELECT kind AS label, count(*) AS count, 0::float8 AS age \
         FROM jobs WHERE status = 'dead' GROUP BY kind",
    )
    .await?;
    set_family(JOBS_DEAD, "kind", &counts(&dead));
    let backlog = labelled(
        conn,
        "SELECT 'stripe' AS label, count(*) AS count, \
           COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0)::float8 AS age \
         FROM stripe_events WHERE status <> 'processed' \
         UNION ALL \
         SELECT 'github', count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0)::float8 \
         FROM github_deliveries WHERE status = 'failed'",
    )
    .await?;
    set_family(WEBHOOK_BACKLOG, "source", &counts(&backlog));
    set_family(
        WEBHOOK_BACKLOG_OLDEST_AGE_SECONDS,
        "source",
        &ages(&backlog),
    );
    let outbox = labelled(
        conn,
        "SELECT s.status AS label, count(e.id) AS count, \
           COALESCE(EXTRACT(EPOCH FROM now() - min(e.created_at)), 0)::float8 AS age \
         FROM (VALUES ('queued'), ('sending'), ('failed')) AS s(status) \
         LEFT JOIN email_outbox e ON e.status = s.status GROUP BY s.status",
    )
    .await?;
    set_family(EMAIL_OUTBOX, "status", &counts(&outbox));
    let queued_age = outbox
        .iter()
        .find(|r| r.label == "queued")
        .map_or(0.0, |r| r.age);
    metrics::gauge!(EMAIL_OUTBOX_OLDEST_AGE_SECONDS).set(queued_age);
    let findings = labelled(
        conn,
        "SELECT k.kind AS label, count(f.id) AS count, \
           COALESCE(sum(abs((f.details->>'cached_balance')::bigint \
                            - (f.details->>'ledger_sum')::bigint)) \
                    FILTER (WHERE f.kind = 'ledger_drift'), 0)::float8 AS age \
         FROM (VALUES ('ledger_drift'), ('fix_payment'), ('missing_grant'), \
                      ('duplicate_grant'), ('refund_not_applied')) AS k(kind) \
         LEFT JOIN reconciliation_findings f ON f.kind = k.kind AND f.resolved_at IS NULL \
           AND f.run_id = (SELECT max(id) FROM reconciliation_runs) \
         GROUP BY k.kind",
    )
    .await?;
    set_family(RECONCILIATION_FINDINGS, "kind", &counts(&findings));
    // The `age` column carries the drift in credits for `ledger_drift`.
    let drift = findings
        .iter()
        .find(|r| r.label == "ledger_drift")
        .map_or(0.0, |r| r.age);
    metrics::gauge!(LEDGER_DRIFT_CREDITS).set(drift);
    let customers = labelled(
        conn,
        "SELECT source AS label, count(*) AS count, 0::float8 AS age FROM customers GROUP BY source",
    )
    .await?;
    set_family(CUSTOMERS, "source", &counts(&customers));
    let fixes = labelled(
        conn,
        "SELECT billing_status AS label, count(*) AS count, 0::float8 AS age \
         FROM fixes GROUP BY billing_status",
    )
    .await?;
    set_family(FIXES, "billing_status", &counts(&fixes));
    let charges = labelled(
        conn,
        "SELECT status AS label, count(*) AS count, 0::float8 AS age FROM charges GROUP BY status",
    )
    .await?;
    set_family(CHARGES, "status", &counts(&charges));
    let cents: Number = diesel::sql_query(
        "SELECT COALESCE(sum(amount_cents), 0)::bigint AS value FROM charges \
         WHERE status IN ('succeeded', 'refunded')",
    )
    .get_result(conn)
    .await?;
    metrics::counter!(CHARGED_CENTS_TOTAL).absolute(u64::try_from(cents.value).unwrap_or(0));
    Ok(())
}

/// A database refresh failed (see [`METRICS_REFRESH_ERRORS_TOTAL`]).
pub fn refresh_failed() {
    metrics::counter!(METRICS_REFRESH_ERRORS_TOTAL).increment(1);
}

/// Reads this process's memory and CPU from `/proc` (Linux; elsewhere the
/// gauges are not set).
fn record_process() {
    let page = 4096.0;
    if let Some(rss_pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
    {
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(rss_pages * page);
    }
    if let Some(ticks) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_ticks(&s))
    {
        // USER_HZ is 100 on every Linux ABI this runs on.
        metrics::gauge!(PROCESS_CPU_SECONDS_TOTAL).set(ticks as f64 / 100.0);
    }
    if let Some(limit) = memory_limit() {
        metrics::gauge!(PROCESS_MEMORY_LIMIT_BYTES).set(limit as f64);
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock
/// ticks. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0: utime (14) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The cgroup v2 `memory.max` when it is a number, else `MemTotal`.
fn memory_limit() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    cgroup.or_else(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_counts_fields_after_the_command_name() {
        let stat = "4242 (rsolv (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    /// Every `rsolv_…` metric name in `text` (a histogram's `_bucket`,
    /// `_sum` and `_count` series are named by the histogram).
    fn names_used(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(pos) = text[i..].find("rsolv_") {
            let start = i + pos;
            let boundary = start == 0 || {
                let c = bytes[start - 1] as char;
                !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '/' || c == '.')
            };
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |n| start + n);
            if boundary && !text[end..].starts_with(['-', '.', '(']) {
                let name = &text[start..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        let base = name.strip_suffix(suffix)?;
                        CATALOG
                            .iter()
                            .any(|(n, k, _)| *n == base && *k == Kind::Histogram)
                            .then_some(base)
                    })
                    .unwrap_or(name);
                out.insert(base.to_owned());
            }
            i = end.max(start + 1);
        }
        out
    }

    #[test]
    fn alerts_and_dashboard_use_only_registered_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let registered: BTreeSet<&str> = CATALOG.iter().map(|(n, _, _)| *n).collect();
        let mut used_anywhere = BTreeSet::new();
        for file in [
            "ops/prometheus/alerts.yml",
            "ops/prometheus/alerts_test.yml",
            "ops/grafana/rsolv-platform.json",
        ] {
            let text = std::fs::read_to_string(root.join(file)).expect(file);
            let used = names_used(&text);
            assert!(!used.is_empty(), "{file} names no metric");
            for name in &used {
                assert!(
                    registered.contains(name.as_str()),
                    "{file} uses {name}, which src/server/metrics.rs does not register"
                );
            }
            used_anywhere.extend(used);
        }
        // The dashboard shows every metric.
        let dashboard = names_used(
            &std::fs::read_to_string(root.join("ops/grafana/rsolv-platform.json")).unwrap(),
        );
        for name in &registered {
            assert!(
                dashboard.contains(*name),
                "the dashboard does not show {name}"
            );
        }
    }

    #[test]
    fn names_used_finds_metrics_and_histogram_series() {
        let used = names_used(
            "rate(rsolv_http_request_duration_seconds_bucket[5m]) / rsolv_db_pool_waiting{x=\"y\"} rsolv-platform",
        );
        assert!(used.contains(HTTP_REQUEST_DURATION_SECONDS));
        assert!(used.contains(DB_POOL_WAITING));
        assert!(!used.iter().any(|n| n.contains("platform")));
    }

    #[test]
    fn catalog_names_are_unique_and_prefixed() {
        let mut names = BTreeSet::new();
        for (name, kind, help) in CATALOG {
            assert!(name.starts_with("rsolv_"), "{name}");
            assert!(!help.is_empty(), "{name}");
            assert!(names.insert(*name), "{name} listed twice");
            if *kind == Kind::Counter {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
        }
    }
}
