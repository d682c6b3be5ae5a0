//! What the billing pages show (`/billing`, `/billing/history`, the
//! dashboard's billing notice). Amounts arrive formatted (`$29.00`): the
//! server does the exact integer arithmetic.

use serde::{Deserialize, Serialize};

/// A card on file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// `pm_…`.
    pub id: String,
    /// E.g. `Visa`.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// `MM/YYYY`, or empty when unknown.
    pub expiry: String,
    /// Charged off-session and by invoices.
    pub is_default: bool,
}

/// The billing page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingView {
    /// False while the kill switch is on: no Stripe call is made, fixes are
    /// recorded for later billing.
    pub billing_enabled: bool,
    /// Whether cards can be added now (billing on, Stripe.js configured,
    /// the Stripe Customer exists).
    pub can_add_cards: bool,
    /// Stripe.js URL.
    pub stripe_js_url: String,
    /// Publishable key for Stripe.js.
    pub publishable_key: String,
    /// The consent text next to the checkbox.
    pub consent_text: String,
    /// `trial`, `payg` or `pro`.
    pub plan: String,
    /// Stripe subscription status, if any.
    pub subscription_status: Option<String>,
    /// Whether the subscription ends at the period end.
    pub cancel_at_period_end: bool,
    /// End of the current period (ISO 8601), if subscribed.
    pub current_period_end: Option<String>,
    /// A pay-as-you-go charge was declined and is not yet paid.
    pub payment_failed: bool,
    /// Cards on file.
    pub cards: Vec<CardView>,
    /// Pro price per month, formatted.
    pub pro_price: String,
    /// Credits per paid Pro period.
    pub pro_credits: i64,
    /// When a Pro subscription started today renews, e.g. `1 January 2027`
    /// (one month on, UTC; Stripe bills monthly on the anniversary).
    pub pro_renews_on: String,
    /// Price of a Pro fix beyond the credits, formatted.
    pub overage_price: String,
    /// Pay-as-you-go price of a fix, formatted.
    pub payg_price: String,
    /// Credits left.
    pub credit_balance: i64,
    /// Which credits expire, one sentence from the pricing catalog
    /// (issue 9's credit policy).
    pub credit_policy: String,
    /// Whether the Action may run fixes now (`billing::plan::can_use_service`).
    pub can_use_service: bool,
    /// Whether the account is suspended (the Action's calls are refused).
    pub suspended: bool,
    /// Fixes delivered but not paid yet (listed on `/billing/history`).
    pub unpaid_fixes: i64,
    /// Where to write for help (`SUPPORT_EMAIL`).
    pub support_email: String,
}

/// A SetupIntent for the card form. `Debug` leaves the client secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupIntentView {
    /// `seti_…`.
    pub setup_intent_id: String,
    /// For `stripe.confirmCardSetup`.
    pub client_secret: String,
}

impl std::fmt::Debug for SetupIntentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupIntentView")
            .field("setup_intent_id", &self.setup_intent_id)
            .field("client_secret", &"REDACTED")
            .finish()
    }
}

/// One invoice or charge in the billing history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItemView {
    /// `Invoice RSOLV-0001`, `Fix charge`, `Overage item`.
    pub description: String,
    /// Formatted amount.
    pub amount: String,
    /// `paid`, `open`, `succeeded`, `pending`, `failed`, …
    pub status: String,
    /// ISO 8601.
    pub date: String,
    /// Stripe's invoice page, where it provides one.
    pub url: Option<String>,
    /// Why a charge failed.
    pub failure: Option<String>,
}

/// The billing history page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingHistoryView {
    /// False while the kill switch is on.
    pub billing_enabled: bool,
    /// Invoices from Stripe, newest first.
    pub invoices: Vec<HistoryItemView>,
    /// Set when the invoices could not be read (kill switch, Stripe down).
    pub invoices_note: Option<String>,
    /// Our charges for fixes, newest first.
    pub charges: Vec<HistoryItemView>,
    /// Fixes not paid yet, oldest first, with what will happen to them.
    pub unpaid_fixes: Vec<UnpaidFixView>,
}

/// A fix recorded but not paid yet (issue 9: the customer sees it and what
/// will happen to it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpaidFixView {
    /// Fix id.
    pub id: i64,
    /// E.g. `acme/api issue #17 (PR #42)`.
    pub label: String,
    /// When it was first reported (ISO 8601).
    pub date: String,
    /// What happens next, e.g. "Billed when you add a card or when credits
    /// arrive."
    pub next: String,
}

/// The dashboard's billing notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingNoticeView {
    /// False while the kill switch is on.
    pub billing_enabled: bool,
    /// The Pro subscription's payment failed.
    pub past_due: bool,
    /// A pay-as-you-go charge was declined.
    pub payment_failed: bool,
    /// Fixes waiting for a charge.
    pub charges_pending: i64,
}
