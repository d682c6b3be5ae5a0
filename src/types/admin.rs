//! What the admin console shows (isomorphic). Times are ISO-8601 UTC
//! strings, balances and amounts are credits.

use serde::{Deserialize, Serialize};

/// A customer row of the search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCustomerRow {
    /// Customer id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// `trial`, `payg` or `pro`.
    pub plan: String,
    /// `active` or `suspended`.
    pub status: String,
    /// `direct`, `gh_marketplace` or `early_access`.
    pub source: String,
    /// Credits.
    pub credit_balance: i64,
    /// `cus_…`, once it exists.
    pub stripe_customer_id: Option<String>,
    /// Stripe subscription status.
    pub subscription_status: Option<String>,
    /// Whether a card is on file.
    pub has_payment_method: bool,
    /// Whether the Action may run fixes now.
    pub can_use_service: bool,
    /// When a dispute (chargeback) was last opened against the customer's
    /// payments, if ever.
    pub disputed_at: Option<String>,
    /// Created.
    pub created_at: String,
}

/// One page of the customer search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCustomerPage {
    /// The rows.
    pub rows: Vec<AdminCustomerRow>,
    /// Matches in all.
    pub total: i64,
    /// This page, from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
    /// Customers with a dispute still open, whatever the filters (the
    /// console's notice).
    pub open_disputes: i64,
}

/// A ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLedgerRow {
    /// Entry id.
    pub id: i64,
    /// Ledger kind.
    pub kind: String,
    /// Signed credits.
    pub amount: i64,
    /// Balance after.
    pub balance_after: i64,
    /// Reference (fix, invoice, the admin's reason).
    pub reference: Option<String>,
    /// When.
    pub created_at: String,
}

/// A fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminFixRow {
    /// Fix id.
    pub id: i64,
    /// `owner/name`.
    pub repository: String,
    /// `issue:<n>` or `pr:<n>`.
    pub fix_key: String,
    /// Pull request URL.
    pub pr_url: Option<String>,
    /// `pending`, `credit`, `unpaid`, `charged` or `written_off`.
    pub billing_status: String,
    /// Recorded.
    pub created_at: String,
    /// Why an admin wrote it off (only when `written_off`).
    pub written_off_reason: Option<String>,
}

/// An API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminKeyRow {
    /// Key id.
    pub id: i64,
    /// Label.
    pub name: String,
    /// Display prefix.
    pub prefix: String,
    /// Created.
    pub created_at: String,
    /// Last used.
    pub last_used_at: Option<String>,
    /// Revoked at.
    pub revoked_at: Option<String>,
    /// Expires at (rotated keys).
    pub expires_at: Option<String>,
    /// Fixes first reported with the key, last 30 days and all time, and
    /// AI gateway calls with its virtual keys, last 30 days (as on the
    /// customer's `/keys`: `types::portal::KeyActivityView`).
    pub activity: crate::types::portal::KeyActivityView,
}

/// A payment method: brand and last 4 only, never more of the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPaymentMethodRow {
    /// `pm_…`.
    pub id: String,
    /// E.g. `visa •••• 4242, expires 12/2030`, when Stripe told us.
    pub card: Option<String>,
    /// The default card (charged off-session and by invoices).
    pub is_default: bool,
    /// Attached now.
    pub attached: bool,
    /// Last Stripe event about it.
    pub last_event_at: String,
}

/// An outbox email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEmailRow {
    /// Outbox id.
    pub id: i64,
    /// Customer concerned.
    pub customer_id: Option<i64>,
    /// Template kind.
    pub kind: String,
    /// Recipient.
    pub to_address: String,
    /// Subject.
    pub subject: String,
    /// `queued`, `sending`, `sent`, `failed`.
    pub status: String,
    /// Attempts.
    pub attempts: i32,
    /// Last error.
    pub last_error: Option<String>,
    /// Queued at.
    pub created_at: String,
    /// Sent at.
    pub sent_at: Option<String>,
}

/// A stored Stripe webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventRow {
    /// `evt_…`.
    pub id: String,
    /// Event type.
    pub type_: String,
    /// Received.
    pub received_at: String,
    /// Processed.
    pub processed_at: Option<String>,
    /// Processing attempts.
    pub attempts: i32,
    /// Last error.
    pub last_error: Option<String>,
    /// `received`, `processed`, `failed`.
    pub status: String,
    /// Its processing job's status (`dead`: dead-lettered).
    pub job_status: Option<String>,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventPage {
    /// Rows.
    pub rows: Vec<AdminEventRow>,
    /// Matches in all.
    pub total: i64,
    /// Page from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
    /// Every stored event type (filter choices).
    pub types: Vec<String>,
}

/// One page of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEmailPage {
    /// Rows.
    pub rows: Vec<AdminEmailRow>,
    /// Matches in all.
    pub total: i64,
    /// Page from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
}

/// An audit log entry; `before`/`after` are JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAuditRow {
    /// Entry id.
    pub id: i64,
    /// Admin's email (`cli` for the command line).
    pub actor_email: String,
    /// Action, e.g. `credits.adjust`.
    pub action: String,
    /// Target kind.
    pub target_type: String,
    /// Target id.
    pub target_id: Option<String>,
    /// Customer concerned.
    pub customer_id: Option<i64>,
    /// Reason.
    pub reason: Option<String>,
    /// State before (JSON).
    pub before: Option<String>,
    /// State after (JSON).
    pub after: Option<String>,
    /// When.
    pub created_at: String,
}

/// One page of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAuditPage {
    /// Rows.
    pub rows: Vec<AdminAuditRow>,
    /// Matches in all.
    pub total: i64,
    /// Page from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
}

/// Everything on a customer's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCustomerDetail {
    /// The customer.
    pub customer: AdminCustomerRow,
    /// End of the paid period.
    pub current_period_end: Option<String>,
    /// Users: (email, role).
    pub users: Vec<(String, String)>,
    /// Full ledger, newest first.
    pub ledger: Vec<AdminLedgerRow>,
    /// Fixes with billing status.
    pub fixes: Vec<AdminFixRow>,
    /// API keys.
    pub api_keys: Vec<AdminKeyRow>,
    /// Payment methods.
    pub payment_methods: Vec<AdminPaymentMethodRow>,
    /// Invoices (from Stripe) and charges for fixes, as the customer's
    /// billing history shows them.
    pub billing: crate::types::billing::BillingHistoryView,
    /// Emails sent to the customer.
    pub emails: Vec<AdminEmailRow>,
    /// Webhook events that named its Stripe Customer.
    pub events: Vec<AdminEventRow>,
    /// Audit entries about it.
    pub audit: Vec<AdminAuditRow>,
    /// AI gateway usage per day and per key, and the budget.
    pub ai: crate::types::ai::AiUsageView,
    /// A fresh token for the credit form (its idempotency key: a double
    /// submission applies once); the unpaid fixes' "retry charge" forms use
    /// it too.
    pub form_token: String,
    /// The customer's `unpaid` fixes, oldest first, with their charges.
    pub unpaid_fixes: Vec<AdminUnpaidFixRow>,
    /// When a declined card charge last blocked further card charges (a
    /// new card or an admin's retry clears it).
    pub payment_failed_at: Option<String>,
}

/// An `unpaid` fix on the customer's page, with what is happening to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUnpaidFixRow {
    /// Fix id.
    pub id: i64,
    /// `owner/name`.
    pub repository: String,
    /// `issue:<n>` or `pr:<n>`.
    pub fix_key: String,
    /// Pull request URL.
    pub pr_url: Option<String>,
    /// Recorded.
    pub created_at: String,
    /// Its charge on its way: (id, status `pending` or `invoiced`,
    /// amount like `$29.00`).
    pub charge: Option<(i64, String, String)>,
    /// Declined charges so far.
    pub declined: i64,
    /// Why the newest declined charge failed (our words), if any.
    pub last_failure: Option<String>,
}

/// A feature flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminFlagRow {
    /// Key, e.g. `maintenance`.
    pub key: String,
    /// What it does.
    pub description: String,
    /// Effective value.
    pub on: bool,
    /// Database value.
    pub stored: bool,
    /// The variable that forces it.
    pub env_var: String,
    /// The forced value, if the environment forces it (not switchable).
    pub forced: Option<bool>,
}

/// A signup request of the approval queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSignupRow {
    /// Request id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Source.
    pub source: String,
    /// `signup_form`, `register`, `api_onboard`.
    pub channel: String,
    /// `pending`, `approved`, `rejected`.
    pub status: String,
    /// Provisioned customer.
    pub customer_id: Option<i64>,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Received.
    pub created_at: String,
}

/// One page of signup requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSignupPage {
    /// Rows.
    pub rows: Vec<AdminSignupRow>,
    /// Matches in all.
    pub total: i64,
    /// Page from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
}

/// A staff admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUserRow {
    /// User id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Whether a password is set.
    pub active: bool,
    /// Whether deactivated (cannot sign in).
    pub deactivated: bool,
    /// Whether a TOTP second factor is enrolled.
    pub two_factor: bool,
    /// Created.
    pub created_at: String,
}

/// One job of the queue in the admin console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminJobRow {
    /// Row id.
    pub id: i64,
    /// Job name, e.g. `stripe.charge`.
    pub kind: String,
    /// `dead`, `queued`, `running` or `done`.
    pub status: String,
    /// Runs started.
    pub attempts: i32,
    /// Runs allowed before `dead`.
    pub max_attempts: i32,
    /// The last failure (our own message, never a secret).
    pub last_error: Option<String>,
    /// Enqueued (ISO 8601).
    pub created_at: String,
    /// Due (ISO 8601).
    pub run_at: String,
    /// The payload, JSON text (ids only).
    pub payload: String,
}

/// One page of the job queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminJobPage {
    /// Rows, dead first.
    pub rows: Vec<AdminJobRow>,
    /// Matches in all.
    pub total: i64,
    /// Page from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
    /// Every job kind present (filter choices).
    pub kinds: Vec<String>,
}

/// One reconciliation finding in the admin console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminFindingRow {
    /// Row id.
    pub id: i64,
    /// The run that found it.
    pub run_id: i64,
    /// `ledger_drift`, `fix_payment`, `missing_grant`, `duplicate_grant`
    /// or `refund_not_applied`.
    pub kind: String,
    /// The customer concerned.
    pub customer_id: Option<i64>,
    /// What it is about, e.g. `invoice:in_1`.
    pub subject: String,
    /// The facts, JSON text.
    pub details: String,
    /// Whether "Repair" applies.
    pub repairable: bool,
    /// When it was resolved (ISO 8601).
    pub resolved_at: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// Found (ISO 8601).
    pub created_at: String,
}

/// The reconciliation page: the latest run and its findings plus every
/// older unresolved one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReconciliation {
    /// The latest run's id.
    pub latest_run_id: Option<i64>,
    /// When it finished (ISO 8601).
    pub latest_run_at: Option<String>,
    /// Findings, newest first.
    pub findings: Vec<AdminFindingRow>,
}

/// A stored webhook event or delivery in full (the console's detail page):
/// a Stripe event (`source` `stripe`) or a GitHub Marketplace delivery
/// (`github`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventDetail {
    /// `stripe` or `github`.
    pub source: String,
    /// `evt_…`, or the `X-GitHub-Delivery` GUID.
    pub id: String,
    /// Stripe's event type, or GitHub's event name and action
    /// (`marketplace_purchase.purchased`).
    pub type_: String,
    /// The customer concerned, when known (GitHub deliveries).
    pub customer_id: Option<i64>,
    /// When the sender created it (Stripe events).
    pub created_at: Option<String>,
    /// Received.
    pub received_at: String,
    /// Applied.
    pub processed_at: Option<String>,
    /// Processing attempts.
    pub attempts: i32,
    /// `received`, `processed`, `ignored` or `failed`.
    pub status: String,
    /// The processing job's status, attempts and last error (Stripe).
    pub job_status: Option<String>,
    /// The processing job's attempts.
    pub job_attempts: Option<i32>,
    /// The last processing error (the event's, else its job's).
    pub last_error: Option<String>,
    /// The payload as received, indented JSON, at most 64 KiB.
    pub payload: String,
    /// Whether `payload` was cut at 64 KiB.
    pub payload_truncated: bool,
}

/// A GitHub Marketplace delivery of the webhook log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDeliveryRow {
    /// The `X-GitHub-Delivery` GUID.
    pub id: String,
    /// Event name and action, e.g. `marketplace_purchase.purchased`.
    pub type_: String,
    /// The Marketplace account's login.
    pub account_login: Option<String>,
    /// The customer concerned.
    pub customer_id: Option<i64>,
    /// `processed`, `ignored` or `failed`.
    pub status: String,
    /// Attempts.
    pub attempts: i32,
    /// The last error.
    pub error: Option<String>,
    /// Received.
    pub received_at: String,
    /// Applied.
    pub processed_at: Option<String>,
}

/// One page of GitHub deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDeliveryPage {
    /// Rows.
    pub rows: Vec<AdminDeliveryRow>,
    /// In all.
    pub total: i64,
    /// Page from 1.
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
}

/// An outbox email in full (the console's detail page). Bodies are as
/// stored, with every link's `token=` value shown as `REDACTED` (sent
/// emails were redacted when sent; queued and failed ones are redacted for
/// display only), each at most 64 KiB. The HTML body is shown as text,
/// never rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEmailDetail {
    /// The outbox row.
    pub email: AdminEmailRow,
    /// Plain-text body (`None` until rendered at sending).
    pub text_body: Option<String>,
    /// HTML body source (`None` until rendered at sending).
    pub html_body: Option<String>,
    /// What the worker renders from, indented JSON.
    pub notification: Option<String>,
    /// When the worker tries it next.
    pub next_attempt_at: String,
    /// Whether any of the texts above was cut at 64 KiB.
    pub truncated: bool,
}

/// The part of a customer's portal a staff admin views read-only
/// (`/admin/customers/:id/portal[/<section>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortalSection {
    /// `/dashboard` (the path's section absent or `dashboard`).
    Dashboard,
    /// `/billing` with its history.
    Billing,
    /// `/keys`.
    Keys,
    /// `/credits`.
    Credits,
}

impl PortalSection {
    /// Every section, in the order of the tabs.
    pub const ALL: [Self; 4] = [Self::Dashboard, Self::Billing, Self::Keys, Self::Credits];

    /// `dashboard` (or empty), `billing`, `keys` or `credits`.
    ///
    /// Errors: [`ParseError`](crate::types::values::ParseError) naming the
    /// sections for anything else.
    pub fn parse(input: &str) -> Result<Self, crate::types::values::ParseError> {
        match input.trim() {
            "" | "dashboard" => Ok(Self::Dashboard),
            "billing" => Ok(Self::Billing),
            "keys" => Ok(Self::Keys),
            "credits" => Ok(Self::Credits),
            other => Err(crate::types::values::ParseError(format!(
                "section must be dashboard, billing, keys or credits; got {other:?}"
            ))),
        }
    }

    /// The name in paths and in the audit entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::Billing => "billing",
            Self::Keys => "keys",
            Self::Credits => "credits",
        }
    }

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Dashboard => "Dashboard",
            Self::Billing => "Billing",
            Self::Keys => "API keys",
            Self::Credits => "Credits",
        }
    }

    /// The admin's read-only page of this section for `customer_id`.
    pub fn admin_path(self, customer_id: i64) -> String {
        match self {
            Self::Dashboard => format!("/admin/customers/{customer_id}/portal"),
            other => format!("/admin/customers/{customer_id}/portal/{}", other.as_str()),
        }
    }
}

/// A customer's portal as the customer sees it, for a staff admin
/// (read-only; the same views the portal's server functions answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPortalView {
    /// The customer's id.
    pub customer_id: i64,
    /// The customer's email (named in the read-only banner).
    pub email: String,
    /// The section's data.
    pub data: AdminPortalData,
}

/// One section of [`AdminPortalView`] (the larger views boxed, so the
/// variants stay of a size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminPortalData {
    /// `/dashboard`.
    Dashboard(Box<crate::types::portal::DashboardView>),
    /// `/billing` and `/billing/history`.
    Billing {
        /// The billing page (Stripe.js settings left empty: nothing is
        /// entered here).
        billing: Box<crate::types::billing::BillingView>,
        /// The billing history.
        history: Box<crate::types::billing::BillingHistoryView>,
    },
    /// `/keys`: names, prefixes and states (never a secret or hash).
    Keys(Vec<crate::types::portal::ApiKeyView>),
    /// `/credits`: one page of the ledger.
    Credits(crate::types::portal::LedgerPageView),
}

impl AdminPortalData {
    /// The section this data belongs to.
    pub fn section(&self) -> PortalSection {
        match self {
            Self::Dashboard(_) => PortalSection::Dashboard,
            Self::Billing { .. } => PortalSection::Billing,
            Self::Keys(_) => PortalSection::Keys,
            Self::Credits(_) => PortalSection::Credits,
        }
    }
}
