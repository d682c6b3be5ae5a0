//! The GitHub Marketplace job types (name and payload, see
//! [`BackgroundJob`]); the worker (`server::jobs`) registers what runs them:
//! [`super::events::apply_pending_change_job`] and
//! [`super::credits::grant_period_job`].

use crate::server::db::queue::BackgroundJob;
use crate::server::marketplace::credits::KIND_GITHUB_GRANT_PERIOD;
use crate::server::marketplace::events::KIND_GITHUB_APPLY_PENDING_CHANGE;
use serde::{Deserialize, Serialize};

/// Apply a pending plan change once it is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPendingChangeJob {
    /// The `github_pending_changes` row's id.
    pub pending_change_id: i64,
}

impl BackgroundJob for ApplyPendingChangeJob {
    const JOB_NAME: &'static str = KIND_GITHUB_APPLY_PENDING_CHANGE;
}

/// Grant one Marketplace Pro billing period's credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantPeriodJob {
    /// The GitHub account's id.
    pub github_account_id: i64,
    /// The periods' anchor, RFC 3339.
    pub anchor: String,
    /// The period's index from the anchor (0 = the first).
    pub index: i32,
    /// When the grant is due, RFC 3339 (the later of the period's start and
    /// what was already granted through); absent in jobs queued before it
    /// existed, which fall back to the period's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl BackgroundJob for GrantPeriodJob {
    const JOB_NAME: &'static str = KIND_GITHUB_GRANT_PERIOD;
}
