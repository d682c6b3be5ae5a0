//! Phase records: what the Action stores after scan, validation and
//! mitigation (ACTION_API.md §§ 3–4). A stored mitigation with
//! `data.fixed == true` is the billable "fix deployed" event and is
//! recorded as a fix in the same transaction (store first, bill from what is
//! stored).

use crate::server::billing::fixes::{pr_number_from_url, record_fix_in_tx, Fix, FixReport};
use crate::server::billing::notifications::EmailLinks;
use crate::server::billing::BillingError;
use crate::server::db::schema::phase_records;
use crate::types::urls::github_link;
use crate::types::values::{ParseError, Phase, Repository};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// A git commit id: 4 to 64 hexadecimal characters (abbreviated SHA-1 up to
/// full SHA-256), stored lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSha(String);

impl CommitSha {
    /// Parses a commit id.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        if !(4..=64).contains(&trimmed.len()) || !trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseError(
                "commitSha must be 4 to 64 hexadecimal characters".into(),
            ));
        }
        Ok(Self(trimmed.to_ascii_lowercase()))
    }

    /// The lower-case hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A parsed phase report.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Which phase.
    pub phase: Phase,
    /// The repository.
    pub repository: Repository,
    /// The scanned commit.
    pub commit_sha: CommitSha,
    /// The issue (required for validation and mitigation; > 0).
    pub issue_number: Option<i64>,
    /// The phase's data object, stored as given.
    pub data: serde_json::Value,
    /// The API key that sent it (the Action API's authenticated key); a
    /// deployed fix this report creates records it
    /// ([`FixReport::api_key_id`]). `None` from [`PhaseReport::new`].
    pub api_key_id: Option<i64>,
}

impl PhaseReport {
    /// Builds a report, enforcing the contract's rules: `data` is an object,
    /// `issueNumber` is required (and positive) for validation and
    /// mitigation, and a mitigation's `fixed` (if present) is a boolean.
    pub fn new(
        phase: Phase,
        repository: Repository,
        commit_sha: CommitSha,
        issue_number: Option<i64>,
        data: serde_json::Value,
    ) -> Result<Self, ParseError> {
        if !data.is_object() {
            return Err(ParseError("data must be a JSON object".into()));
        }
        if phase != Phase::Scan && issue_number.is_none() {
            return Err(ParseError(format!(
                "issueNumber is required for the {phase} phase"
            )));
        }
        if issue_number.is_some_and(|n| n <= 0) {
            return Err(ParseError("issueNumber must be positive".into()));
        }
        if phase == Phase::Mitigation && data.get("fixed").is_some_and(|f| !f.is_boolean()) {
            return Err(ParseError("data.fixed must be a boolean".into()));
        }
        Ok(Self {
            phase,
            repository,
            commit_sha,
            issue_number,
            data,
            api_key_id: None,
        })
    }

    /// Whether this report is the billable "fix deployed" event.
    pub fn is_fix_deployed(&self) -> bool {
        self.phase == Phase::Mitigation
            && self.data.get("fixed") == Some(&serde_json::Value::Bool(true))
    }
}

/// A stored phase record.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = phase_records, check_for_backend(diesel::pg::Pg))]
pub struct PhaseRecord {
    /// Row id (returned to the Action as `id`).
    pub id: i64,
    /// Owner.
    pub customer_id: i64,
    /// `owner/name`.
    pub repository: String,
    /// Commit id (lower-case hex).
    pub commit_sha: String,
    /// A [`Phase`] spelling.
    pub phase: String,
    /// The issue, or 0 for a scan.
    pub issue_number: i64,
    /// The phase's data as the Action sent it.
    pub data: serde_json::Value,
    /// First stored.
    pub created_at: DateTime<Utc>,
    /// Last overwritten.
    pub updated_at: DateTime<Utc>,
}

/// Stores a phase report (the latest report for the same repository,
/// commit, phase and issue replaces the earlier one) and, for a deployed
/// fix, records the fix and bills it when reports bill (under bill on
/// merge it stays `pending`) (see [`record_fix`](crate::server::billing::fixes::record_fix);
/// `links` for the low-credit email, `pricing` for a charge beyond the
/// credits), all in one transaction.
///
/// Returns the record and, for a deployed fix, the fix.
/// Errors: [`BillingError::Database`].
pub async fn store_phase(
    conn: &mut AsyncPgConnection,
    pricing: &crate::server::billing::pricing::PricingCatalog,
    customer_id: i64,
    report: &PhaseReport,
    links: &EmailLinks,
) -> Result<(PhaseRecord, Option<Fix>), BillingError> {
    conn.transaction(async |conn| {
        let record = diesel::insert_into(phase_records::table)
            .values((
                phase_records::customer_id.eq(customer_id),
                phase_records::repository.eq(report.repository.as_str()),
                phase_records::commit_sha.eq(report.commit_sha.as_str()),
                phase_records::phase.eq(report.phase.as_str()),
                phase_records::issue_number.eq(report.issue_number.unwrap_or(0)),
                phase_records::data.eq(&report.data),
            ))
            .on_conflict((
                phase_records::customer_id,
                phase_records::repository,
                phase_records::commit_sha,
                phase_records::phase,
                phase_records::issue_number,
            ))
            .do_update()
            .set((
                phase_records::data.eq(excluded(phase_records::data)),
                phase_records::updated_at.eq(diesel::dsl::now),
            ))
            .returning(PhaseRecord::as_returning())
            .get_result(conn)
            .await?;
        let fix = if report.is_fix_deployed() {
            // Only an https GitHub link is kept; anything else is absent.
            let pr_url = github_link(report.data.get("prUrl").and_then(|v| v.as_str()));
            let mut fix = FixReport::new(
                report.repository.clone(),
                report.issue_number,
                pr_url.as_deref().and_then(pr_number_from_url),
            )?;
            fix.pr_url = pr_url;
            fix.fix_commit = report
                .data
                .get("fixCommit")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            fix.api_key_id = report.api_key_id;
            Some(record_fix_in_tx(conn, pricing, customer_id, &fix, links).await?)
        } else {
            None
        };
        Ok((record, fix))
    })
    .await
}

/// The records stored for a repository and commit, optionally narrowed to
/// one issue (scan records always included), oldest first.
pub async fn find_phases(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    repository: &Repository,
    commit_sha: &CommitSha,
    issue_number: Option<i64>,
) -> Result<Vec<PhaseRecord>, BillingError> {
    let mut query = phase_records::table
        .filter(phase_records::customer_id.eq(customer_id))
        .filter(phase_records::repository.eq(repository.as_str()))
        .filter(phase_records::commit_sha.eq(commit_sha.as_str()))
        .select(PhaseRecord::as_select())
        .order(phase_records::id.asc())
        .into_boxed();
    if let Some(issue) = issue_number {
        query = query.filter(
            phase_records::issue_number
                .eq(issue)
                .or(phase_records::phase.eq(Phase::Scan.as_str())),
        );
    }
    Ok(query.load(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo() -> Repository {
        Repository::parse("acme/api").unwrap()
    }

    fn sha() -> CommitSha {
        CommitSha::parse("4b825dc642cb6eb9a060e54bf8d69288fbee4904").unwrap()
    }

    #[test]
    fn commit_sha_rules() {
        assert_eq!(CommitSha::parse("ABCDEF0").unwrap().as_str(), "abcdef0");
        assert!(CommitSha::parse("xyz").is_err());
        assert!(CommitSha::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn issue_number_is_required_after_the_scan() {
        assert!(PhaseReport::new(Phase::Scan, repo(), sha(), None, json!({})).is_ok());
        let err = PhaseReport::new(Phase::Validation, repo(), sha(), None, json!({})).unwrap_err();
        assert_eq!(err.0, "issueNumber is required for the validation phase");
        assert!(PhaseReport::new(Phase::Mitigation, repo(), sha(), Some(1), json!([])).is_err());
        assert!(PhaseReport::new(
            Phase::Mitigation,
            repo(),
            sha(),
            Some(1),
            json!({"fixed": "yes"})
        )
        .is_err());
    }

    #[test]
    fn only_a_fixed_mitigation_is_billable() {
        let fixed = PhaseReport::new(
            Phase::Mitigation,
            repo(),
            sha(),
            Some(1),
            json!({"fixed": true}),
        )
        .unwrap();
        let not_fixed = PhaseReport::new(
            Phase::Mitigation,
            repo(),
            sha(),
            Some(1),
            json!({"fixed": false}),
        )
        .unwrap();
        let validation = PhaseReport::new(
            Phase::Validation,
            repo(),
            sha(),
            Some(1),
            json!({"fixed": true}),
        )
        .unwrap();
        assert!(fixed.is_fix_deployed());
        assert!(!not_fixed.is_fix_deployed());
        assert!(!validation.is_fix_deployed());
    }
}
