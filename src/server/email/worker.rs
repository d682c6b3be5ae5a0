//! The outbox worker: claims due rows of `email_outbox` with
//! `FOR UPDATE SKIP LOCKED`, sends them through the [`Mailer`] and records
//! the outcome.
//!
//! Life of a row: `queued` → (claimed: `sending`, `attempts + 1`, a lease in
//! `locked_until`, committed at once) → delivery → `sent` (`sent_at`), or
//! back to `queued` with `next_attempt_at` pushed out by an exponential,
//! jittered backoff and `last_error` recorded, or `failed` after
//! `EMAIL_MAX_ATTEMPTS` attempts (or at once for a permanent rejection) for
//! the admin to look at.
//!
//! Never twice, and the one exception: a `sent` or `failed` row is never
//! claimed again, and a row being sent is leased to one worker. The only way
//! an email goes out twice is a worker that dies (or loses the database)
//! after the SMTP server accepted the message and before the `sent` update
//! commits: the lease then expires and another worker sends it again
//! (at-least-once). The window is kept to one single-row `UPDATE` right
//! after the server's `250 OK` (retried three times on a database error),
//! no batching of acknowledgements, and shutdown never interrupts a delivery
//! in flight. Both copies carry the same `Message-ID`.
//!
//! `attempts` counts claims, so a delivery that crashed the worker counts
//! too; a row whose lease expired after its last allowed attempt is marked
//! `failed` rather than sent again.
//!
//! No usable token at rest (issue 12, scope 7): the update that marks a row
//! `sent` also replaces the value of every `token=` link parameter in its
//! stored bodies and notification with [`REDACTED_TOKEN`]
//! ([`redact_link_tokens`]), so a reset, invite or confirmation link
//! survives only in the recipient's mailbox. Queued and failed rows keep
//! their link (the admin can resend a failed one); the tokens themselves
//! are stored only as SHA-256 (`user_tokens`) and expire.

use crate::server::billing::notifications::NotificationRecord;
use crate::server::billing::BillingError;
use crate::server::config::EmailConfig;
use crate::server::config::EmailLinks;
use crate::server::db::schema::email_outbox;
use crate::server::email::templates::{render_notification, Rendered};
use crate::server::email::transport::{Mailer, SendError};
use crate::server::state::AppState;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Integer};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::future::Future;
use std::time::Duration;

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = email_outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxEmail {
    /// Row id.
    pub id: i64,
    /// The customer it concerns, if any.
    pub customer_id: Option<i64>,
    /// Template kind (`welcome`, `low_credit`, …).
    pub kind: String,
    /// Recipient address.
    pub to_address: String,
    /// Subject line; `None` until rendered at send time.
    pub subject: Option<String>,
    /// Plain-text body; `None` until rendered at send time.
    pub text_body: Option<String>,
    /// HTML body; `None` until rendered at send time.
    pub html_body: Option<String>,
    /// Unique key (`welcome:<customer id>`, …).
    pub idempotency_key: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Claims so far.
    pub attempts: i32,
    /// Not claimed before this time.
    pub next_attempt_at: DateTime<Utc>,
    /// While `sending`: the lease's end; after it another worker may claim it.
    pub locked_until: Option<DateTime<Utc>>,
    /// Why the last attempt failed (no secrets).
    pub last_error: Option<String>,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Accepted by the transport at.
    pub sent_at: Option<DateTime<Utc>>,
    /// What the domain queued
    /// ([`crate::server::billing::notifications::NotificationRecord`]);
    /// rendered into the subject and bodies at send time.
    pub notification: Option<serde_json::Value>,
}

impl OutboxEmail {
    /// The row's notification, rendered with `links` (`PUBLIC_BASE_URL`).
    ///
    /// Errors: a message when the row has no notification or it cannot be
    /// read (the row is then failed: retrying cannot help).
    pub fn render(&self, links: &EmailLinks) -> Result<Rendered, String> {
        let value = self
            .notification
            .clone()
            .ok_or_else(|| "the row has neither a notification nor a rendering".to_owned())?;
        let record: NotificationRecord =
            serde_json::from_value(value).map_err(|e| format!("unreadable notification: {e}"))?;
        Ok(render_notification(links, &record))
    }
}

/// Longest `last_error` stored, in characters.
const MAX_ERROR_CHARS: usize = 500;

/// The lease of a claimed row: twice the send timeout plus 30 s, so a
/// delivery still running can never see its row claimed by another worker.
pub fn lease(config: &EmailConfig) -> Duration {
    Duration::from_secs(config.send_timeout_seconds * 2 + 30)
}

/// The wait before attempt `attempts + 1` after `attempts` failed ones:
/// `base · 2^(attempts-1)`, capped at `max`, then scaled by a factor in
/// [0.5, 1.0] drawn from `jitter` (a number in [0, 1)), so that many emails
/// failing together do not retry together.
pub fn backoff(attempts: i32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let delay = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Marks `failed` the rows still `sending` whose lease expired after their
/// last allowed attempt (the worker died while sending); returns how many.
async fn fail_exhausted_leases(
    conn: &mut AsyncPgConnection,
    max_attempts: i32,
) -> Result<usize, BillingError> {
    Ok(diesel::sql_query(
        "UPDATE email_outbox SET status = 'failed', locked_until = NULL, \
             last_error = 'the lease expired during the last allowed attempt (worker stopped or timed out while sending)' \
         WHERE status = 'sending' AND locked_until < now() AND attempts >= $1",
    )
    .bind::<Integer, _>(max_attempts)
    .execute(conn)
    .await?)
}

/// Claims the next due row (queued and due, or sending with an expired
/// lease and attempts left) in one committed statement: status `sending`,
/// `attempts + 1`, lease until now + `lease`.
async fn claim_one(
    conn: &mut AsyncPgConnection,
    lease: Duration,
    max_attempts: i32,
) -> Result<Option<OutboxEmail>, BillingError> {
    Ok(diesel::sql_query(
        "UPDATE email_outbox SET status = 'sending', attempts = attempts + 1, \
             locked_until = now() + make_interval(secs => $1) \
         WHERE id = ( \
             SELECT id FROM email_outbox \
             WHERE (status = 'queued' AND next_attempt_at <= now()) \
                OR (status = 'sending' AND locked_until < now() AND attempts < $2) \
             ORDER BY next_attempt_at, id \
             LIMIT 1 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<Integer, _>(max_attempts)
    .get_result(conn)
    .await
    .optional()?)
}

/// What replaces a mailed token in a sent row.
pub const REDACTED_TOKEN: &str = "REDACTED";

/// `text` with the value of every `token=` parameter (the characters a
/// token or its URL encoding can hold) replaced by [`REDACTED_TOKEN`].
pub fn redact_link_tokens(text: &str) -> String {
    const PARAM: &str = "token=";
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '%' | '.' | '~' | '+');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PARAM) {
        let value_start = at + PARAM.len();
        out.push_str(&rest[..value_start]);
        let tail = &rest[value_start..];
        let end = tail.find(|c| !is_token_char(c)).unwrap_or(tail.len());
        if end > 0 {
            out.push_str(REDACTED_TOKEN);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// [`redact_link_tokens`] over every string in a stored notification.
fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = redact_link_tokens(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// Marks the claimed row sent, its links' tokens redacted; false when the
/// lease was lost meanwhile.
async fn mark_sent(conn: &mut AsyncPgConnection, row: &OutboxEmail) -> Result<bool, BillingError> {
    let redact = |body: &Option<String>| body.as_deref().map(redact_link_tokens);
    let notification = row.notification.clone().map(|mut value| {
        redact_json(&mut value);
        value
    });
    let updated = diesel::update(
        email_outbox::table
            .find(row.id)
            .filter(email_outbox::status.eq("sending"))
            .filter(email_outbox::attempts.eq(row.attempts)),
    )
    .set((
        email_outbox::status.eq("sent"),
        email_outbox::sent_at.eq(diesel::dsl::now),
        email_outbox::locked_until.eq(None::<DateTime<Utc>>),
        email_outbox::last_error.eq(None::<String>),
        email_outbox::text_body.eq(redact(&row.text_body)),
        email_outbox::html_body.eq(redact(&row.html_body)),
        email_outbox::notification.eq(notification),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Records a failed attempt: back to `queued` after a backoff, or `failed`.
async fn mark_failed(
    conn: &mut AsyncPgConnection,
    config: &EmailConfig,
    row: &OutboxEmail,
    error: &SendError,
) -> Result<&'static str, BillingError> {
    let status = if error.is_permanent() || row.attempts >= config.max_attempts {
        "failed"
    } else {
        "queued"
    };
    let delay = backoff(
        row.attempts,
        Duration::from_secs(config.retry_base_seconds),
        Duration::from_secs(config.retry_max_seconds),
        fastrand::f64(),
    );
    let message: String = error.to_string().chars().take(MAX_ERROR_CHARS).collect();
    diesel::sql_query(
        "UPDATE email_outbox SET status = $1, locked_until = NULL, last_error = $2, \
             next_attempt_at = now() + make_interval(secs => $3) \
         WHERE id = $4 AND status = 'sending' AND attempts = $5",
    )
    .bind::<diesel::sql_types::Text, _>(status)
    .bind::<diesel::sql_types::Text, _>(&message)
    .bind::<Double, _>(delay.as_secs_f64())
    .bind::<BigInt, _>(row.id)
    .bind::<Integer, _>(row.attempts)
    .execute(conn)
    .await?;
    Ok(status)
}

/// Processes one batch: sends up to `EMAIL_BATCH_SIZE` due emails, one
/// claim at a time; returns how many rows it claimed (sent or failed).
/// Safe to run concurrently with other workers: each row goes to one.
///
/// Errors: [`BillingError::Pool`] / [`BillingError::Database`] when the
/// outbox cannot be read or updated (delivery failures are not errors: they
/// are recorded on the row).
pub async fn run_once(state: &AppState) -> Result<usize, BillingError> {
    let config = &state.config.email;
    let mailer = Mailer::new(config);
    let mut conn = state.conn().await?;
    let expired = fail_exhausted_leases(&mut conn, config.max_attempts).await?;
    if expired > 0 {
        tracing::warn!(
            count = expired,
            "emails marked failed: lease expired on their last attempt"
        );
    }
    let mut processed = 0;
    while processed < config.batch_size {
        let Some(row) = claim_one(&mut conn, lease(config), config.max_attempts).await? else {
            break;
        };
        processed += 1;
        let row = match render_row(&mut conn, &config.links, row).await? {
            Rendering::Ready(row) => row,
            Rendering::Failed(row, error) => {
                let status = mark_failed(&mut conn, config, &row, &error).await?;
                tracing::error!(outbox_id = row.id, kind = %row.kind, status, error = %error, "email not rendered");
                continue;
            }
        };
        match mailer.send(&row).await {
            Ok(()) => record_sent(&mut conn, &row).await,
            Err(error) => {
                let status = mark_failed(&mut conn, config, &row, &error).await?;
                tracing::warn!(
                    outbox_id = row.id,
                    kind = %row.kind,
                    attempt = row.attempts,
                    status,
                    error = %error,
                    "email delivery failed"
                );
            }
        }
    }
    Ok(processed)
}

/// Renders a claimed row's notification (unless it was rendered by an
/// earlier attempt) and stores the rendering on the row, so that a retry
/// and the admin console see exactly what is sent; [`Rendering::Failed`]
/// when it cannot be rendered (a permanent failure).
///
/// Errors: [`BillingError`] when the row cannot be updated.
async fn render_row(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    mut row: OutboxEmail,
) -> Result<Rendering, BillingError> {
    if row.subject.is_some() && row.text_body.is_some() && row.html_body.is_some() {
        return Ok(Rendering::Ready(row));
    }
    let rendered = match row.render(links) {
        Ok(rendered) => rendered,
        Err(message) => return Ok(Rendering::Failed(row, SendError::Build(message))),
    };
    diesel::update(email_outbox::table.find(row.id))
        .set((
            email_outbox::subject.eq(&rendered.subject),
            email_outbox::text_body.eq(&rendered.text_body),
            email_outbox::html_body.eq(&rendered.html_body),
        ))
        .execute(conn)
        .await?;
    row.subject = Some(rendered.subject);
    row.text_body = Some(rendered.text_body);
    row.html_body = Some(rendered.html_body);
    Ok(Rendering::Ready(row))
}

/// What [`render_row`] made of a claimed row.
enum Rendering {
    /// Rendered (now or by an earlier attempt): send it.
    Ready(OutboxEmail),
    /// Cannot be rendered: fail it with this error.
    Failed(OutboxEmail, SendError),
}

/// Marks a delivered row sent, retrying a failed update three times: every
/// moment between the server's acceptance and this commit is a window in
/// which a crash means a second delivery.
async fn record_sent(conn: &mut AsyncPgConnection, row: &OutboxEmail) {
    for attempt in 1..=3 {
        match mark_sent(conn, row).await {
            Ok(true) => {
                tracing::info!(outbox_id = row.id, kind = %row.kind, "email sent");
                return;
            }
            Ok(false) => {
                tracing::warn!(
                    outbox_id = row.id,
                    "email sent after its lease was taken over: it may be delivered twice"
                );
                return;
            }
            Err(error) => {
                tracing::error!(outbox_id = row.id, attempt, error = %error, "cannot mark email sent");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    tracing::error!(
        outbox_id = row.id,
        "email sent but not marked: it will be sent again when its lease expires"
    );
}

/// Polls the outbox every `EMAIL_POLL_INTERVAL_SECONDS` (at once again
/// while batches come back full) until `shutdown` completes. A batch in
/// progress is finished first: shutdown never interrupts a delivery.
pub async fn run_forever(state: AppState, shutdown: impl Future<Output = ()>) {
    let config = &state.config.email;
    let mut interval = tokio::time::interval(Duration::from_secs(config.poll_interval_seconds));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    tracing::info!(
        poll_interval_seconds = config.poll_interval_seconds,
        "email worker started"
    );
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = interval.tick() => {}
        }
        match run_once(&state).await {
            Ok(n) if n >= config.batch_size => interval.reset_immediately(),
            Ok(_) => {}
            Err(error) => tracing::error!(error = %error, "email worker: outbox unavailable"),
        }
    }
    tracing::info!("email worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_link_tokens(
                "Set it: https://x.test/accept-invite?token=Ab-_9%2B.~ now\n\
                 <a href=\"https://x.test/reset-password?token=QQ\">go</a> token=\n"
            ),
            "Set it: https://x.test/accept-invite?token=REDACTED now\n\
             <a href=\"https://x.test/reset-password?token=REDACTED\">go</a> token=\n"
        );
        assert_eq!(redact_link_tokens("no links"), "no links");
        assert_eq!(
            redact_link_tokens("token=ab&token=cd"),
            "token=REDACTED&token=REDACTED"
        );
        let mut value =
            serde_json::json!({"kind": "invite", "link": "https://x/?token=secret", "n": 1});
        redact_json(&mut value);
        assert_eq!(value["link"], "https://x/?token=REDACTED");
        assert_eq!(value["n"], 1);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_down_to_half() {
        let base = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(1, base, max, 0.999_999).as_secs(), 59);
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_secs(120));
        assert_eq!(backoff(7, base, max, 0.0), Duration::from_secs(1800));
        assert_eq!(backoff(50, base, max, 0.0), Duration::from_secs(1800));
        assert_eq!(backoff(0, base, max, 0.0), Duration::from_secs(30));
        for i in 0..100 {
            let d = backoff(4, base, max, f64::from(i) / 100.0);
            assert!(
                d >= Duration::from_secs(240) && d <= Duration::from_secs(480),
                "{d:?}"
            );
        }
    }
}
