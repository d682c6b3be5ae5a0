//! AI gateway usage and budgets as the portal (`/ai-usage`) and the admin
//! console show them (isomorphic), and the admin's budget input, parsed.
//! Days are `YYYY-MM-DD` (UTC); tokens are counts as the providers
//! reported them.

use crate::types::values::ParseError;
use serde::{Deserialize, Serialize};

/// A UTC day's totals: calls through the gateway, tokens it measured and
/// tokens the Action claimed (`POST /api/v1/usage/report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiDayView {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Calls.
    pub calls: i64,
    /// Tokens measured (input + output).
    pub measured_tokens: i64,
    /// Tokens the Action claimed.
    pub claimed_tokens: i64,
}

/// Calls and tokens of one day, API key, provider and model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiKeyUsageView {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The API key's name.
    pub api_key_name: String,
    /// The API key's display prefix (`rsolv_AbC123`).
    pub api_key_prefix: String,
    /// Virtual keys (one per credential exchange and provider) used.
    pub virtual_keys: i64,
    /// `anthropic`, `openai` or `openrouter`.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Calls.
    pub calls: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
}

/// A customer's limits in force and today's use. `0` means no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiBudgetView {
    /// Tokens (input + output) per UTC day.
    pub daily_tokens: i64,
    /// Whether `daily_tokens` is set for this customer (else the default).
    pub daily_tokens_set: bool,
    /// Calls in flight at once.
    pub max_concurrent: u32,
    /// Whether `max_concurrent` is set for this customer (else the default).
    pub max_concurrent_set: bool,
    /// Tokens used since 00:00 UTC.
    pub used_today: i64,
}

impl AiBudgetView {
    /// Tokens left today, `None` without a daily limit.
    pub fn left_today(&self) -> Option<i64> {
        (self.daily_tokens > 0).then(|| (self.daily_tokens - self.used_today).max(0))
    }
}

/// One customer's AI usage page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiUsageView {
    /// Days covered (today and the days before).
    pub days: i64,
    /// Per day, newest first.
    pub by_day: Vec<AiDayView>,
    /// Per day, API key, provider and model, newest first.
    pub by_key: Vec<AiKeyUsageView>,
    /// The budget.
    pub budget: AiBudgetView,
    /// The gateway's base URL, for `RSOLV_AI_BASE_URL`.
    pub gateway_url: String,
}

/// One customer's usage today, for the admin overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiCustomerUsageRow {
    /// Customer id.
    pub customer_id: i64,
    /// Its email.
    pub email: String,
    /// Calls.
    pub calls: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
}

/// The admin's budget form, parsed: `None` keeps the configured default,
/// `Some(0)` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiBudgetInput {
    daily_tokens: Option<i64>,
    max_concurrent: Option<i32>,
}

impl AiBudgetInput {
    /// Largest daily token budget accepted (one trillion).
    pub const MAX_DAILY_TOKENS: i64 = 1_000_000_000_000;
    /// Largest number of calls in flight accepted.
    pub const MAX_CONCURRENT: i32 = 10_000;

    /// Parses the form's two fields: blank is `None` (the default), else a
    /// whole number from 0 (no limit) to [`Self::MAX_DAILY_TOKENS`] /
    /// [`Self::MAX_CONCURRENT`].
    ///
    /// Errors: a [`ParseError`] naming the field.
    pub fn parse(daily_tokens: &str, max_concurrent: &str) -> Result<Self, ParseError> {
        Ok(Self {
            daily_tokens: field(daily_tokens, "daily token budget", Self::MAX_DAILY_TOKENS)?,
            max_concurrent: field(
                max_concurrent,
                "calls at once",
                i64::from(Self::MAX_CONCURRENT),
            )?
            .map(|n| i32::try_from(n).unwrap_or(Self::MAX_CONCURRENT)),
        })
    }

    /// Tokens per UTC day, `None` for the default.
    pub fn daily_tokens(&self) -> Option<i64> {
        self.daily_tokens
    }

    /// Calls in flight at once, `None` for the default.
    pub fn max_concurrent(&self) -> Option<i32> {
        self.max_concurrent
    }

    /// Whether both fields keep the defaults (the form clears the budget).
    pub fn is_default(&self) -> bool {
        self.daily_tokens.is_none() && self.max_concurrent.is_none()
    }
}

/// Blank → `None`; else a whole number in `0..=max` (`_` and spaces
/// between digit groups allowed).
fn field(raw: &str, name: &str, max: i64) -> Result<Option<i64>, ParseError> {
    let raw: String = raw
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ' ')
        .collect();
    if raw.is_empty() {
        return Ok(None);
    }
    let n: i64 = raw.parse().map_err(|_| {
        ParseError(format!(
            "the {name} must be a whole number (0 for no limit, blank for the default)"
        ))
    })?;
    if n < 0 {
        return Err(ParseError(format!(
            "the {name} must not be negative (0 for no limit, blank for the default)"
        )));
    }
    if n > max {
        return Err(ParseError(format!("the {name} must be at most {max}")));
    }
    Ok(Some(n))
}

/// `1234567` → `1 234 567` (thin spaces between groups of three).
pub fn group_digits(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_input_blank_zero_bounds_and_garbage() {
        let both = AiBudgetInput::parse(" 2_000_000 ", "4").unwrap();
        assert_eq!(
            (both.daily_tokens(), both.max_concurrent()),
            (Some(2_000_000), Some(4))
        );
        assert!(AiBudgetInput::parse("", "  ").unwrap().is_default());
        let zero = AiBudgetInput::parse("0", "").unwrap();
        assert_eq!(
            (zero.daily_tokens(), zero.max_concurrent()),
            (Some(0), None)
        );
        for (daily, concurrent, needle) in [
            ("-1", "", "negative"),
            ("", "-3", "negative"),
            ("1.5", "", "whole number"),
            ("ten", "", "whole number"),
            ("1000000000001", "", "at most"),
            ("", "10001", "at most"),
            ("99999999999999999999", "", "whole number"),
        ] {
            let error = AiBudgetInput::parse(daily, concurrent).unwrap_err();
            assert!(
                error.0.contains(needle),
                "{daily:?} {concurrent:?}: {error:?}"
            );
        }
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1\u{202f}000");
        assert_eq!(group_digits(-1234567), "-1\u{202f}234\u{202f}567");
    }

    #[test]
    fn tokens_left_today() {
        let mut budget = AiBudgetView {
            daily_tokens: 100,
            daily_tokens_set: false,
            max_concurrent: 8,
            max_concurrent_set: false,
            used_today: 130,
        };
        assert_eq!(budget.left_today(), Some(0));
        budget.used_today = 30;
        assert_eq!(budget.left_today(), Some(70));
        budget.daily_tokens = 0;
        assert_eq!(budget.left_today(), None);
    }
}
