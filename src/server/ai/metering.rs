//! Metering: the tokens of every proxied call, read from the provider's own
//! usage fields, stored per customer, API key, virtual key and model
//! (`ai_usage`); the per-customer budget; the per-day views.
//!
//! Usage fields read (input includes Anthropic's cache reads and writes):
//! - Anthropic, whole answer: `usage.input_tokens` (+
//!   `cache_creation_input_tokens` + `cache_read_input_tokens`),
//!   `usage.output_tokens`;
//! - Anthropic, streamed: `message_start`'s `message.usage`, then each
//!   `message_delta`'s `usage` (cumulative; the last one wins);
//! - OpenAI / OpenRouter: `usage.prompt_tokens`, `usage.completion_tokens`,
//!   in the answer or, streamed, in the chunk that carries `usage` (the
//!   gateway asks for it with `stream_options.include_usage`).

use crate::server::billing::BillingError;
use crate::server::db::schema::{ai_budgets, ai_usage};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// Longest SSE line kept while looking for usage; a longer line is skipped.
const MAX_SSE_LINE: usize = 1024 * 1024;

/// Longest model name stored (`ai_usage.model`).
pub const MAX_MODEL_LEN: usize = 200;

/// What a call's answer reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// The model the provider named (else the request's).
    pub model: Option<String>,
    /// Input tokens (0 when none were reported).
    pub input_tokens: i64,
    /// Output tokens (0 when none were reported).
    pub output_tokens: i64,
}

/// Reads usage from an answer's bytes as they pass, without holding them
/// back: server-sent events line by line, or a JSON answer buffered up to
/// a cap and parsed at the end.
#[derive(Debug)]
pub struct UsageMeter {
    sse: bool,
    buffer: Vec<u8>,
    cap: usize,
    overflowed: bool,
    measured: Measured,
}

impl UsageMeter {
    /// A meter for an answer that is server-sent events (`sse`) or one JSON
    /// document of at most `json_cap` bytes (beyond it usage is not read).
    pub fn new(sse: bool, json_cap: usize) -> Self {
        Self {
            sse,
            buffer: Vec::new(),
            cap: if sse { MAX_SSE_LINE } else { json_cap },
            overflowed: false,
            measured: Measured::default(),
        }
    }

    /// Takes the next chunk of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.sse {
            let mut rest = chunk;
            while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
                if !self.overflowed {
                    self.buffer.extend_from_slice(&rest[..pos]);
                    let line = std::mem::take(&mut self.buffer);
                    self.sse_line(&line);
                }
                self.overflowed = false;
                rest = &rest[pos + 1..];
            }
            self.append(rest);
        } else {
            self.append(chunk);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.buffer.len() + bytes.len() > self.cap {
            self.buffer = Vec::new();
            self.overflowed = true;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let Some(data) = line.trim_end_matches('\r').strip_prefix("data:") else {
            return;
        };
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return;
        }
        if let Ok(value) = serde_json::from_str::<Value>(data) {
            self.absorb(&value);
        }
    }

    /// What was read so far; the end of the answer.
    pub fn finish(mut self) -> Measured {
        if !self.overflowed {
            let rest = std::mem::take(&mut self.buffer);
            if self.sse {
                self.sse_line(&rest);
            } else if let Ok(value) = serde_json::from_slice::<Value>(&rest) {
                self.absorb(&value);
            }
        }
        self.measured
    }

    fn absorb(&mut self, value: &Value) {
        if let Some(message) = value.get("message").filter(|m| m.is_object()) {
            self.absorb_model(message);
            if let Some(usage) = message.get("usage") {
                self.absorb_usage(usage);
            }
        }
        self.absorb_model(value);
        if let Some(usage) = value.get("usage") {
            self.absorb_usage(usage);
        }
    }

    fn absorb_model(&mut self, value: &Value) {
        if let Some(model) = value.get("model").and_then(Value::as_str) {
            self.measured.model = Some(model.chars().take(MAX_MODEL_LEN).collect());
        }
    }

    fn absorb_usage(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_i64).map(|n| n.max(0));
        if let Some(input) = field("input_tokens").or_else(|| field("prompt_tokens")) {
            let cached = field("cache_creation_input_tokens").unwrap_or(0)
                + field("cache_read_input_tokens").unwrap_or(0);
            self.measured.input_tokens = input.saturating_add(cached);
        }
        if let Some(output) = field("output_tokens").or_else(|| field("completion_tokens")) {
            self.measured.output_tokens = output;
        }
    }
}

/// One proxied call, as stored in `ai_usage`.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The customer.
    pub customer_id: i64,
    /// The API key that obtained the virtual key.
    pub api_key_id: i64,
    /// The virtual key used.
    pub virtual_key_id: i64,
    /// `anthropic`, `openai` or `openrouter`.
    pub provider: &'static str,
    /// The model (the provider's name for it when it said, else the
    /// request's; `unknown` when neither did).
    pub model: String,
    /// Input tokens as the provider reported them.
    pub input_tokens: i64,
    /// Output tokens as the provider reported them.
    pub output_tokens: i64,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the answer was server-sent events.
    pub streamed: bool,
    /// Whether the answer reached its end (false: the client went away or
    /// the provider broke off).
    pub completed: bool,
}

/// Stores one call; returns its id.
///
/// Errors: [`BillingError::Database`].
pub async fn record_call(
    conn: &mut AsyncPgConnection,
    call: &CallRecord,
) -> Result<i64, BillingError> {
    Ok(diesel::insert_into(ai_usage::table)
        .values((
            ai_usage::customer_id.eq(call.customer_id),
            ai_usage::api_key_id.eq(call.api_key_id),
            ai_usage::virtual_key_id.eq(call.virtual_key_id),
            ai_usage::provider.eq(call.provider),
            ai_usage::model.eq(call.model.chars().take(MAX_MODEL_LEN).collect::<String>()),
            ai_usage::input_tokens.eq(call.input_tokens.max(0)),
            ai_usage::output_tokens.eq(call.output_tokens.max(0)),
            ai_usage::status.eq(i16::try_from(call.status).unwrap_or(i16::MAX)),
            ai_usage::streamed.eq(call.streamed),
            ai_usage::completed.eq(call.completed),
        ))
        .returning(ai_usage::id)
        .get_result(conn)
        .await?)
}

/// A customer's limits: the configured defaults, overridden by its
/// `ai_budgets` row. `0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Calls in flight at once (per instance).
    pub max_concurrent: u32,
    /// Tokens (input + output) per UTC day.
    pub daily_tokens: i64,
}

/// The customer's budget: `defaults` overridden by its `ai_budgets` row.
///
/// Errors: [`BillingError::Database`].
pub async fn budget_for(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    defaults: Budget,
) -> Result<Budget, BillingError> {
    Ok(budget_override(conn, customer_id).await?.apply(defaults))
}

/// A customer's `ai_budgets` row as stored: `None` keeps the configured
/// default, `Some(0)` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetOverride {
    /// Calls in flight at once (per instance).
    pub max_concurrent: Option<i32>,
    /// Tokens (input + output) per UTC day.
    pub daily_tokens: Option<i64>,
}

impl BudgetOverride {
    /// The limits in force: `defaults` where this keeps them.
    pub fn apply(self, defaults: Budget) -> Budget {
        Budget {
            max_concurrent: self
                .max_concurrent
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(defaults.max_concurrent),
            daily_tokens: self.daily_tokens.unwrap_or(defaults.daily_tokens),
        }
    }

    /// Whether it keeps both defaults (no row, or a row of NULLs).
    pub fn is_default(self) -> bool {
        self.max_concurrent.is_none() && self.daily_tokens.is_none()
    }
}

/// The customer's override row (both `None` when it has none).
///
/// Errors: [`BillingError::Database`].
pub async fn budget_override(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<BudgetOverride, BillingError> {
    let row: Option<(Option<i32>, Option<i64>)> = ai_budgets::table
        .find(customer_id)
        .select((ai_budgets::max_concurrent, ai_budgets::daily_tokens))
        .first(conn)
        .await
        .optional()?;
    let (max_concurrent, daily_tokens) = row.unwrap_or((None, None));
    Ok(BudgetOverride {
        max_concurrent,
        daily_tokens,
    })
}

/// Sets (or with `None`s, clears back to the defaults) the customer's
/// budget override.
///
/// Errors: [`BillingError::Database`] (e.g. a negative value).
pub async fn set_budget(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    max_concurrent: Option<i32>,
    daily_tokens: Option<i64>,
) -> Result<(), BillingError> {
    diesel::insert_into(ai_budgets::table)
        .values((
            ai_budgets::customer_id.eq(customer_id),
            ai_budgets::max_concurrent.eq(max_concurrent),
            ai_budgets::daily_tokens.eq(daily_tokens),
        ))
        .on_conflict(ai_budgets::customer_id)
        .do_update()
        .set((
            ai_budgets::max_concurrent.eq(max_concurrent),
            ai_budgets::daily_tokens.eq(daily_tokens),
            ai_budgets::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The start of the UTC day containing `at`.
fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(at)
}

/// Tokens (input + output) the customer used since the start of today
/// (UTC), as measured.
///
/// Errors: [`BillingError::Database`].
pub async fn tokens_used_today(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<i64, BillingError> {
    Ok(ai_usage::table
        .filter(ai_usage::customer_id.eq(customer_id))
        .filter(ai_usage::created_at.ge(day_start(Utc::now())))
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COALESCE(SUM(input_tokens + output_tokens), 0)::int8",
        ))
        .get_result(conn)
        .await?)
}

/// One line of the usage views: a UTC day, an API key (display prefix and
/// name), a provider and a model, with the calls, the virtual keys they
/// used and the tokens measured.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DailyKeyUsage {
    /// The UTC day.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub day: NaiveDate,
    /// The API key's display prefix (`rsolv_AbC123`).
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub api_key_prefix: String,
    /// The API key's name (its label in the portal).
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub api_key_name: String,
    /// Distinct virtual keys (one per exchange and provider) the calls used.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub virtual_keys: i64,
    /// The provider.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub provider: String,
    /// The model.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub model: String,
    /// Calls.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub calls: i64,
    /// Input tokens.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub input_tokens: i64,
    /// Output tokens.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub output_tokens: i64,
}

/// The customer's measured usage per UTC day, API key, provider and model
/// over the last `days` days, newest first.
///
/// Errors: [`BillingError::Database`].
pub async fn usage_by_day_and_key(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    days: i64,
) -> Result<Vec<DailyKeyUsage>, BillingError> {
    use diesel::sql_types::{BigInt, Timestamptz};
    let since = day_start(Utc::now()) - chrono::Duration::days(days.max(1) - 1);
    Ok(diesel::sql_query(
        "SELECT (u.created_at AT TIME ZONE 'UTC')::date AS day, k.prefix AS api_key_prefix, \
                k.name AS api_key_name, count(DISTINCT u.virtual_key_id)::int8 AS virtual_keys, \
                u.provider, u.model, count(*)::int8 AS calls, \
                COALESCE(SUM(u.input_tokens), 0)::int8 AS input_tokens, \
                COALESCE(SUM(u.output_tokens), 0)::int8 AS output_tokens \
         FROM ai_usage u JOIN api_keys k ON k.id = u.api_key_id \
         WHERE u.customer_id = $1 AND u.created_at >= $2 \
         GROUP BY 1, k.id, 2, 3, u.provider, u.model ORDER BY 1 DESC, 2, u.provider, u.model",
    )
    .bind::<BigInt, _>(customer_id)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await?)
}

/// A UTC day's tokens: measured by the gateway and claimed by the Action.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DailyTotals {
    /// The UTC day.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub day: NaiveDate,
    /// Calls through the gateway.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub calls: i64,
    /// Tokens measured (input + output).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub measured_tokens: i64,
    /// Tokens the Action claimed (`usage_reports.tokens_used`, summed).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub claimed_tokens: i64,
}

/// The customer's (or, with `None`, every customer's) tokens per UTC day
/// over the last `days` days, measured beside claimed, newest first.
///
/// Errors: [`BillingError::Database`].
pub async fn totals_by_day(
    conn: &mut AsyncPgConnection,
    customer_id: Option<i64>,
    days: i64,
) -> Result<Vec<DailyTotals>, BillingError> {
    use diesel::sql_types::{BigInt, Nullable, Timestamptz};
    let since = day_start(Utc::now()) - chrono::Duration::days(days.max(1) - 1);
    Ok(diesel::sql_query(
        "WITH m AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*)::int8 AS calls, \
                           SUM(input_tokens + output_tokens)::int8 AS tokens \
                    FROM ai_usage WHERE ($1 IS NULL OR customer_id = $1) AND created_at >= $2 GROUP BY 1), \
              c AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, SUM(tokens_used)::int8 AS tokens \
                    FROM usage_reports WHERE ($1 IS NULL OR customer_id = $1) AND created_at >= $2 GROUP BY 1) \
         SELECT COALESCE(m.day, c.day) AS day, COALESCE(m.calls, 0) AS calls, \
                COALESCE(m.tokens, 0) AS measured_tokens, COALESCE(c.tokens, 0) AS claimed_tokens \
         FROM m FULL JOIN c ON c.day = m.day ORDER BY 1 DESC",
    )
    .bind::<Nullable<BigInt>, _>(customer_id)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await?)
}

/// One customer's measured usage over a period, for the admin console.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct CustomerTotals {
    /// The customer.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub customer_id: i64,
    /// Its email.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub email: String,
    /// Calls.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub calls: i64,
    /// Input tokens.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub input_tokens: i64,
    /// Output tokens.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub output_tokens: i64,
}

/// Measured usage per customer over the last `days` days, most tokens
/// first, at most `limit` customers.
///
/// Errors: [`BillingError::Database`].
pub async fn totals_by_customer(
    conn: &mut AsyncPgConnection,
    days: i64,
    limit: i64,
) -> Result<Vec<CustomerTotals>, BillingError> {
    use diesel::sql_types::{BigInt, Timestamptz};
    let since = day_start(Utc::now()) - chrono::Duration::days(days.max(1) - 1);
    Ok(diesel::sql_query(
        "SELECT u.customer_id, c.email, count(*)::int8 AS calls, \
                COALESCE(SUM(u.input_tokens), 0)::int8 AS input_tokens, \
                COALESCE(SUM(u.output_tokens), 0)::int8 AS output_tokens \
         FROM ai_usage u JOIN customers c ON c.id = u.customer_id \
         WHERE u.created_at >= $1 GROUP BY 1, 2 \
         ORDER BY SUM(u.input_tokens + u.output_tokens) DESC, 1 LIMIT $2",
    )
    .bind::<Timestamptz, _>(since)
    .bind::<BigInt, _>(limit.clamp(1, 1000))
    .load(conn)
    .await?)
}

/// A customer's AI usage as the portal and the admin console show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerUsage {
    /// Tokens per UTC day, measured beside claimed, newest first.
    pub by_day: Vec<DailyTotals>,
    /// Calls and tokens per day, API key, provider and model, newest first.
    pub by_key: Vec<DailyKeyUsage>,
    /// The customer's override row, as stored.
    pub stored: BudgetOverride,
    /// The limits in force (the defaults where the row keeps them).
    pub budget: Budget,
    /// Tokens used since 00:00 UTC (what the daily budget counts).
    pub used_today: i64,
}

/// The customer's usage over the last `days` days and its budget
/// (`defaults` overridden by its `ai_budgets` row), read in one
/// repeatable-read snapshot so the views agree with each other.
///
/// Errors: [`BillingError::Database`].
pub async fn customer_usage(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    days: i64,
    defaults: Budget,
) -> Result<CustomerUsage, BillingError> {
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run(async |conn| {
            let stored = budget_override(conn, customer_id).await?;
            Ok(CustomerUsage {
                by_day: totals_by_day(conn, Some(customer_id), days).await?,
                by_key: usage_by_day_and_key(conn, customer_id, days).await?,
                stored,
                budget: stored.apply(defaults),
                used_today: tokens_used_today(conn, customer_id).await?,
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_stream_split_anywhere() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\r\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        for split in [1, 7, 50, stream.len()] {
            let mut meter = UsageMeter::new(true, 1024);
            for chunk in stream.as_bytes().chunks(split) {
                meter.feed(chunk);
            }
            let m = meter.finish();
            assert_eq!(
                (m.model.as_deref(), m.input_tokens, m.output_tokens),
                (Some("claude-x"), 25, 15)
            );
        }
    }

    #[test]
    fn openai_stream_and_whole_answers() {
        let stream = "data: {\"model\":\"gpt-x\",\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        let mut meter = UsageMeter::new(true, 1024);
        meter.feed(stream.as_bytes());
        assert_eq!(meter.finish().input_tokens, 11);
        let mut meter = UsageMeter::new(false, 1024);
        meter.feed(br#"{"model":"claude-y","usage":{"input_tokens":3,"cache_read_input_tokens":4,"output_tokens":5}}"#);
        let m = meter.finish();
        assert_eq!((m.input_tokens, m.output_tokens), (7, 5));
        let mut meter = UsageMeter::new(false, 8);
        meter.feed(br#"{"usage":{"prompt_tokens":3,"completion_tokens":5}}"#);
        assert_eq!(
            meter.finish(),
            Measured::default(),
            "beyond the cap: unread"
        );
    }
}
