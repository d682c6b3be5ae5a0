//! The customer portal's parsed values and views (isomorphic: the server
//! builds them, the pages render them).

use crate::types::values::ParseError;
use serde::{Deserialize, Serialize};

/// An API key's label: trimmed, 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    /// Longest name, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Parses `input` (trimmed first).
    ///
    /// Errors: a [`ParseError`] naming the field when it is empty, longer
    /// than [`ApiKeyName::MAX_CHARS`] characters or has control characters.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(ParseError("key name must not be empty".into()));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(ParseError(format!(
                "key name must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(ParseError(
                "key name must not contain control characters".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a new key works: never expires (the default), or 30, 90 or 365
/// days from its creation. The only values the create form offers, and the
/// only ones the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiKeyExpiry {
    /// The key works until it is revoked or rotated.
    Never,
    /// The key stops working this many days after creation.
    Days(u16),
}

impl ApiKeyExpiry {
    /// The day counts offered besides "never".
    pub const DAYS: [u16; 3] = [30, 90, 365];

    /// Parses the form value: empty or `never` is [`ApiKeyExpiry::Never`];
    /// `30`, `90` or `365` (surrounding whitespace ignored) a day count.
    ///
    /// Errors: a [`ParseError`] naming the accepted values for anything else.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let input = input.trim();
        if input.is_empty() || input == "never" {
            return Ok(Self::Never);
        }
        match input.parse::<u16>() {
            Ok(days) if Self::DAYS.contains(&days) => Ok(Self::Days(days)),
            _ => Err(ParseError(
                "expiry must be never, 30, 90 or 365 days".into(),
            )),
        }
    }

    /// The day count, `None` for a key that never expires.
    pub fn days(self) -> Option<u16> {
        match self {
            Self::Never => None,
            Self::Days(days) => Some(days),
        }
    }
}

/// Where a key stands, as of the moment the view was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeyStatusView {
    /// Accepted by the API.
    Active,
    /// Rotated, or created with an expiry: accepted until `expires_at`
    /// (ISO-8601 UTC).
    Expiring {
        /// End of the grace period or of the chosen lifetime.
        expires_at: String,
    },
    /// Past its rotation grace or chosen expiry (ISO-8601 UTC).
    Expired {
        /// When it stopped working.
        expires_at: String,
    },
    /// Revoked at `revoked_at` (ISO-8601 UTC).
    Revoked {
        /// When.
        revoked_at: String,
    },
    /// Neither revoked nor expired, but refused (403) while the customer
    /// is suspended.
    Suspended,
}

/// One API key as the portal lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// Row id (used by the revoke and rotate forms; the server checks it
    /// belongs to the signed-in customer).
    pub id: i64,
    /// The customer's label.
    pub name: String,
    /// Display prefix, e.g. `rsolv_AbC123`.
    pub prefix: String,
    /// Created (ISO-8601 UTC).
    pub created_at: String,
    /// Last use (ISO-8601 UTC), if ever used.
    pub last_used_at: Option<String>,
    /// Active, expiring, expired or revoked.
    pub status: KeyStatusView,
    /// What the key did, in the key list (`portal/keys`); `None` in the
    /// answers of create, rotate and revoke, which do not count.
    pub activity: Option<KeyActivityView>,
}

/// One key's counts (the domain's `api_keys::KeyActivity`): only the
/// customer's own fixes and calls, revoked and expired keys included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyActivityView {
    /// Fixes first reported with this key within the last
    /// [`KeyActivityView::DAYS`] days (a fix counts once, for the key
    /// whose report created it).
    pub fixes_recent: i64,
    /// Fixes first reported with this key, all time.
    pub fixes_total: i64,
    /// AI gateway calls made with the virtual keys this key obtained,
    /// within the last [`KeyActivityView::DAYS`] days.
    pub ai_calls_recent: i64,
}

impl KeyActivityView {
    /// The window of the recent counts, in days of 24 hours back from the
    /// moment the page was built.
    pub const DAYS: i64 = 30;
}

/// A key just created or rotated in: the only time its secret is shown.
/// `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKeyView {
    /// The new key's row.
    pub key: ApiKeyView,
    /// The full secret (`rsolv_…`), shown once.
    pub secret: String,
    /// For a rotation: the old key's prefix and the end of its grace period
    /// (ISO-8601 UTC).
    pub replaced: Option<(String, String)>,
}

impl std::fmt::Debug for NewKeyView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKeyView")
            .field("key", &self.key)
            .field("secret", &"REDACTED")
            .field("replaced", &self.replaced)
            .finish()
    }
}

/// The fix a ledger entry paid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixRefView {
    /// `owner/name`.
    pub repository: String,
    /// Issue number, if known.
    pub issue_number: Option<i64>,
    /// Pull request number, if known.
    pub pr_number: Option<i64>,
    /// Pull request link, if known.
    pub pr_url: Option<String>,
}

impl FixRefView {
    /// `https://github.com/<repository>`.
    pub fn repository_url(&self) -> String {
        format!("https://github.com/{}", self.repository)
    }

    /// The issue's GitHub link, if the number is known.
    pub fn issue_url(&self) -> Option<String> {
        self.issue_number
            .map(|n| format!("https://github.com/{}/issues/{n}", self.repository))
    }

    /// The pull request's link: the reported one when it parses as an https
    /// GitHub URL ([`crate::types::urls::GitHubUrl`]), else one built from
    /// the number.
    pub fn pull_url(&self) -> Option<String> {
        crate::types::urls::github_link(self.pr_url.as_deref()).or_else(|| {
            self.pr_number
                .map(|n| format!("https://github.com/{}/pull/{n}", self.repository))
        })
    }
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRowView {
    /// Entry id.
    pub id: i64,
    /// A `LedgerKind` spelling.
    pub kind: String,
    /// Signed credits.
    pub amount: i64,
    /// Balance right after, in credits.
    pub balance_after: i64,
    /// When (ISO-8601 UTC).
    pub created_at: String,
    /// The fix it paid for, for `fix_consumed` entries.
    pub fix: Option<FixRefView>,
}

/// One page of the ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPageView {
    /// The rows.
    pub rows: Vec<LedgerRowView>,
    /// Entries matching the filter, all pages.
    pub total: i64,
    /// This page, from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
    /// The kind filter applied, if any.
    pub kind: Option<String>,
}

impl LedgerPageView {
    /// Number of pages (at least 1).
    pub fn pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page.max(1)).max(1)
    }
}

/// One day of the usage chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePointView {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Fixes first recorded that day.
    pub fixes: i64,
    /// Credits left at the end of that day; `None` before the account existed.
    pub credits_left: Option<i64>,
}

/// The dashboard's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardView {
    /// Account name.
    pub name: String,
    /// Credits left.
    pub credit_balance: i64,
    /// `trial`, `payg` or `pro`.
    pub plan: String,
    /// Whether the Action may run fixes now.
    pub can_use_service: bool,
    /// Whether the account is suspended.
    pub suspended: bool,
    /// Whether a card is on file.
    pub has_payment_method: bool,
    /// Stripe subscription status, if subscribed.
    pub subscription_status: Option<String>,
    /// Fixes recorded, all time.
    pub fixes_total: i64,
    /// The last 30 days, oldest first.
    pub usage: Vec<UsagePointView>,
    /// Fixes delivered but not paid yet (listed on `/billing/history`).
    pub unpaid_fixes: i64,
    /// API keys that can call the Action API now (not revoked, not
    /// expired).
    pub active_keys: i64,
    /// Whether any of the customer's keys has called the Action API
    /// (`last_used_at` set): the secret and the workflow are in place, so
    /// the first-run checklist ticks them off.
    #[serde(default)]
    pub action_connected: bool,
    /// The platform's public origin (`PUBLIC_BASE_URL`), the workflow's
    /// `api_url` input.
    pub api_url: String,
    /// Where to write for help (`SUPPORT_EMAIL`).
    pub support_email: String,
    /// The billing notices (kill switch, past due, declined card, charges
    /// in progress), read with the rest so the page has one resource.
    pub notice: crate::types::billing::BillingNoticeView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_expiries() {
        assert_eq!(ApiKeyExpiry::parse("").unwrap(), ApiKeyExpiry::Never);
        assert_eq!(ApiKeyExpiry::parse("never").unwrap(), ApiKeyExpiry::Never);
        for days in ApiKeyExpiry::DAYS {
            assert_eq!(
                ApiKeyExpiry::parse(&format!(" {days} ")).unwrap(),
                ApiKeyExpiry::Days(days)
            );
        }
        for bad in [
            "0", "1", "29", "31", "-30", "3650", "30d", "forever", "90.0",
        ] {
            assert!(ApiKeyExpiry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names() {
        assert_eq!(ApiKeyName::parse("  CI  ").unwrap().as_str(), "CI");
        assert!(ApiKeyName::parse("").is_err());
        assert!(ApiKeyName::parse("   ").is_err());
        assert!(ApiKeyName::parse("a\nb").is_err());
        assert!(ApiKeyName::parse(&"é".repeat(100)).is_ok());
        assert!(ApiKeyName::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn pages_and_links() {
        let page = |total| LedgerPageView {
            rows: vec![],
            total,
            page: 1,
            per_page: 20,
            kind: None,
        };
        assert_eq!(page(0).pages(), 1);
        assert_eq!(page(20).pages(), 1);
        assert_eq!(page(21).pages(), 2);
        let fix = FixRefView {
            repository: "acme/api".into(),
            issue_number: Some(7),
            pr_number: Some(9),
            pr_url: Some("javascript:alert(1)".into()),
        };
        assert_eq!(
            fix.pull_url().as_deref(),
            Some("https://github.com/acme/api/pull/9")
        );
        assert_eq!(
            fix.issue_url().as_deref(),
            Some("https://github.com/acme/api/issues/7")
        );
    }
}
