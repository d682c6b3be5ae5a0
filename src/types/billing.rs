//! What the billing pages show (`/billing`, `/billing/history`, the
//! dashboard's billing notice). Amounts arrive formatted (`$29.00`): the
//! server does the exact integer arithmetic.

use serde::{Deserialize, Serialize};

/// The page where the customer authenticates a card payment their bank
/// asks them to confirm (3-D Secure): `?charge=<charge id>`.
pub const AUTHENTICATE_PAYMENT_PATH: &str = "/billing/authenticate";

/// `/billing/authenticate?charge=<charge_id>`: the link of the
/// `charge_requires_action` email and of the dashboard's notice. Holds no
/// secret (the page asks for one only for the signed-in owner).
pub fn authenticate_payment_path(charge_id: i64) -> String {
    format!("{AUTHENTICATE_PAYMENT_PATH}?charge={charge_id}")
}

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
    /// Card payments waiting for the customer's authentication (3-D
    /// Secure), oldest first.
    #[serde(default)]
    pub authentication_needed: Vec<PaymentToAuthenticate>,
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
    /// The charge whose card payment waits for the customer's bank check
    /// (3-D Secure), when there is one: its page,
    /// `/billing/authenticate?charge=<id>`, pays the fix now.
    #[serde(default)]
    pub authenticate_charge: Option<i64>,
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
    /// Card payments waiting for the customer's authentication (3-D
    /// Secure), oldest first: each a notice linking its page.
    #[serde(default)]
    pub authentication_needed: Vec<PaymentToAuthenticate>,
}

/// A card payment the customer's bank asks them to confirm (a charge
/// `requires_action`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentToAuthenticate {
    /// Our charge id (the page's `charge` parameter).
    pub charge_id: i64,
    /// The amount, formatted (`$29.00`).
    pub amount: String,
}

impl PaymentToAuthenticate {
    /// Its page, `/billing/authenticate?charge=<id>`.
    pub fn href(&self) -> String {
        authenticate_payment_path(self.charge_id)
    }
}

/// The authentication page (`/billing/authenticate?charge=<id>`): one of
/// the signed-in customer's charges, without any secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthenticationView {
    /// Our charge id.
    pub charge_id: i64,
    /// The amount, formatted (`$29.00`).
    pub amount: String,
    /// What it pays for, e.g. `RSOLV fix 12 (pay as you go)` and the fix's
    /// repository, issue and pull request.
    pub description: String,
    /// The charge's status: `requires_action` (the page offers the bank's
    /// check), `pending`, `succeeded`, `failed`, `refunded`, `invoiced`.
    pub status: String,
    /// Why it failed, in our words, when it did.
    pub failure: Option<String>,
    /// False while the kill switch is on (nothing can be confirmed).
    pub billing_enabled: bool,
    /// Stripe.js URL.
    pub stripe_js_url: String,
    /// Publishable key for Stripe.js.
    pub publishable_key: String,
}

/// What Stripe.js needs to run the bank's check for one charge, for the
/// owner's browser only. `Debug` leaves the client secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthenticationSecret {
    /// For `stripe.confirmCardPayment` (never logged, stored or put in a URL).
    pub client_secret: String,
    /// The card to confirm with (`pm_…`), when Stripe wants it named.
    pub payment_method: Option<String>,
}

impl std::fmt::Debug for PaymentAuthenticationSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentAuthenticationSecret")
            .field("client_secret", &"REDACTED")
            .field("payment_method", &self.payment_method)
            .finish()
    }
}

/// The outcome of the bank's check, as the server settled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthenticationResult {
    /// The charge's status now (`succeeded`, `failed`, `requires_action`, …).
    pub status: String,
    /// What happened and what to do next, for the customer.
    pub message: String,
}
