//! AI usage reports from the Action (ACTION_API.md § 2).

use crate::server::billing::BillingError;
use crate::server::db::schema::usage_reports;
use crate::types::values::ParseError;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A parsed usage report: provider name (1–64 characters of lower-case
/// letters, digits, `-`, `_`, `.`), tokens and requests (non-negative), an
/// optional job id (at most 200 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    provider: String,
    tokens_used: i64,
    request_count: i64,
    job_id: Option<String>,
}

impl UsageReport {
    /// Parses the fields of a report.
    pub fn new(
        provider: &str,
        tokens_used: i64,
        request_count: i64,
        job_id: Option<&str>,
    ) -> Result<Self, ParseError> {
        let provider_ok = (1..=64).contains(&provider.len())
            && provider.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !provider_ok {
            return Err(ParseError(
                "provider must be 1 to 64 lower-case letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if tokens_used < 0 || request_count < 0 {
            return Err(ParseError(
                "tokens_used and request_count must not be negative".into(),
            ));
        }
        if job_id.is_some_and(|j| j.len() > 200) {
            return Err(ParseError("job_id must be at most 200 characters".into()));
        }
        Ok(Self {
            provider: provider.to_owned(),
            tokens_used,
            request_count,
            job_id: job_id.map(str::to_owned),
        })
    }
}

/// Stores a report; returns its id.
pub async fn record_usage(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    report: &UsageReport,
) -> Result<i64, BillingError> {
    Ok(diesel::insert_into(usage_reports::table)
        .values((
            usage_reports::customer_id.eq(customer_id),
            usage_reports::provider.eq(&report.provider),
            usage_reports::tokens_used.eq(report.tokens_used),
            usage_reports::request_count.eq(report.request_count),
            usage_reports::job_id.eq(report.job_id.as_deref()),
        ))
        .returning(usage_reports::id)
        .get_result(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_rules() {
        assert!(UsageReport::new("anthropic", 12345, 3, Some("build")).is_ok());
        assert!(UsageReport::new("", 1, 1, None).is_err());
        assert!(UsageReport::new("Anthropic", 1, 1, None).is_err());
        assert!(UsageReport::new("openai", -1, 1, None).is_err());
        assert!(UsageReport::new("openai", 1, 1, Some(&"j".repeat(201))).is_err());
    }
}
