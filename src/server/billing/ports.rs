//! What billing needs from the outside world, named by the domain (STYLE.md
//! "Ports"): the [`PaymentProcessor`]. Domain types in, domain types out;
//! no Stripe wire structs. The Stripe implementation lives in
//! `server::stripe::processor` with every localstripe quirk; `AppState`
//! holds one `Arc<dyn PaymentProcessor>`.
//!
//! Ids of the processor's objects (customer `cus_…`, payment method `pm_…`,
//! subscription `sub_…`, …) are passed as `&str`: the domain stores them and
//! gives them back, it never interprets them. Amounts are integer minor
//! units (cents) with a lower-case ISO 4217 currency.

use crate::types::values::SubscriptionStatus;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Why a call to the payment processor failed. Only [`Declined`] is the
/// card's (or the customer's) fault; everything else is ours or the
/// processor's, and is retried without telling the customer (issue 9:
/// "only a real card decline marks the card declined").
///
/// Messages hold no secret and are for logs and operators, never for the
/// customer.
///
/// [`Declined`]: ProcessorError::Declined
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// The card issuer (or the processor's fraud checks) refused the card:
    /// Stripe's `card_error` (HTTP 402), or a PaymentIntent whose
    /// `last_payment_error` is a card error. `code` is Stripe's error code
    /// (e.g. `card_declined`, `expired_card`, `authentication_required`),
    /// `decline_code` the issuer's reason (e.g. `insufficient_funds`).
    #[error("the card was declined (code {code:?}, decline code {decline_code:?})")]
    Declined {
        /// Stripe's error code.
        code: Option<String>,
        /// The issuer's reason, when given.
        decline_code: Option<String>,
    },
    /// The processor could not be reached, timed out, rate-limited us (429)
    /// or failed (5xx), or answered something unreadable. The call may have
    /// taken effect: retry with the same idempotency key, and look for the
    /// object before creating it again.
    #[error("the payment processor is unreachable or unavailable: {0}")]
    Unavailable(String),
    /// Another request with the same idempotency key is in flight, or the
    /// object is locked (Stripe 409): retry soon.
    #[error("a concurrent request holds this object at the payment processor: {0}")]
    Conflict(String),
    /// The processor refused our request: bad key (401), not allowed (403)
    /// or an invalid request (400). A configuration mistake or a bug: retry
    /// with backoff, log loudly, never blame the card.
    #[error("the payment processor refused our request (configuration or a bug): {0}")]
    Misconfigured(String),
    /// The object does not exist at the processor (404, `resource_missing`).
    #[error("not found at the payment processor: {0}")]
    NotFound(String),
    /// Billing is switched off (the `billing_enabled` flag) or no key is
    /// configured: no call was made. Retry once billing is back.
    #[error("billing is paused (disabled or not configured): no call was made")]
    Disabled,
}

impl ProcessorError {
    /// Whether this is a real card decline (the only error that marks a
    /// charge failed and tells the customer).
    pub fn is_decline(&self) -> bool {
        matches!(self, Self::Declined { .. })
    }

    /// Whether trying again (same idempotency key) may succeed: every error
    /// but a decline. [`ProcessorError::Misconfigured`] and
    /// [`ProcessorError::NotFound`] need a person, but retrying with backoff
    /// is harmless and picks up a fixed configuration.
    pub fn is_retryable(&self) -> bool {
        !self.is_decline()
    }
}

/// What the customer is told about a declined card: what happened and what
/// to do, never the processor's raw message. `code` / `decline_code` as in
/// [`ProcessorError::Declined`].
pub fn decline_advice(code: Option<&str>, decline_code: Option<&str>) -> &'static str {
    match (code, decline_code) {
        (Some("expired_card"), _) | (_, Some("expired_card")) => {
            "the card has expired. Please add a card that is valid."
        }
        (_, Some("insufficient_funds")) => {
            "the card has insufficient funds. Please use another card or contact your bank."
        }
        (Some("authentication_required"), _) | (_, Some("authentication_required")) => {
            "your bank asks you to confirm payments with this card. Please add the card again \
             (confirming it with your bank) or use another card."
        }
        (Some("incorrect_cvc" | "invalid_cvc"), _) | (_, Some("incorrect_cvc")) => {
            "the card's security code was not accepted. Please add the card again or use another card."
        }
        (Some("payment_intent_authentication_failure"), _) => {
            "the bank's check (3-D Secure) was not completed, so the card was not charged. \
             Please add another card, or add this card again and confirm it with your bank."
        }
        (Some("no_payment_method"), _) => "no card is on file. Please add a card.",
        _ => "the card was declined. Please use another card or contact your bank.",
    }
}

/// A Customer at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorCustomer {
    /// The processor's id (`cus_…`).
    pub id: String,
    /// Our `customers.id`, from the processor's metadata, when present.
    pub customer_id: Option<i64>,
    /// The email on it.
    pub email: Option<String>,
}

/// A Customer to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProcessorCustomer {
    /// Our `customers.id` (stored in the processor's metadata).
    pub customer_id: i64,
    /// Billing email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Stable for the life of the customer (`customer:create:<id>`).
    pub idempotency_key: String,
}

/// State of a SetupIntent (saving a card for later off-session charges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupStatus {
    /// Confirmed: the card can be charged off-session.
    Succeeded,
    /// Anything else, as the processor names it (e.g.
    /// `requires_payment_method`, `requires_action`).
    Other(String),
}

/// A SetupIntent. `Debug` leaves out the client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SetupIntentSnapshot {
    /// `seti_…`.
    pub id: String,
    /// Given to the browser's card form (secret for the customer only;
    /// never logged).
    pub client_secret: Option<String>,
    /// The processor's customer id.
    pub customer: Option<String>,
    /// Where it stands.
    pub status: SetupStatus,
    /// The card it set up, once confirmed.
    pub payment_method: Option<String>,
}

impl std::fmt::Debug for SetupIntentSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupIntentSnapshot")
            .field("id", &self.id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("customer", &self.customer)
            .field("status", &self.status)
            .field("payment_method", &self.payment_method)
            .finish()
    }
}

/// A card (payment method) at the processor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardSnapshot {
    /// `pm_…`.
    pub id: String,
    /// The processor's customer it is attached to.
    pub customer: Option<String>,
    /// `visa`, `mastercard`, …
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Expiry month, 1–12.
    pub exp_month: Option<i32>,
    /// Expiry year, four digits.
    pub exp_year: Option<i32>,
}

/// An off-session charge of a saved card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Our `charges.id` (stored in the processor's metadata as
    /// `rsolv_charge_id`, which is how [`PaymentProcessor::find_charges`]
    /// finds it again).
    pub charge_id: i64,
    /// The processor's customer id.
    pub customer: String,
    /// The card to charge (`pm_…`).
    pub payment_method: String,
    /// Minor units (cents), > 0.
    pub amount_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// `charge:<charge id>`, the same for every attempt of this charge.
    pub idempotency_key: String,
    /// More metadata (e.g. `rsolv_fix_id`).
    pub metadata: BTreeMap<String, String>,
}

/// Where a charge stands at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorChargeStatus {
    /// Money taken (or authorised and captured automatically).
    Succeeded,
    /// Still being processed (e.g. a bank debit): look again later.
    Processing,
    /// The card was declined (see [`ProcessorError::Declined`]).
    Declined {
        /// Stripe's error code.
        code: Option<String>,
        /// The issuer's reason.
        decline_code: Option<String>,
    },
    /// The card's bank asks the customer to authenticate this payment
    /// (3-D Secure / SCA) before it is made: Stripe's `requires_action`,
    /// or an off-session attempt answered `authentication_required`
    /// (the PaymentIntent is then `requires_payment_method`). Neither paid
    /// nor declined: only the customer, on-session, can complete it
    /// ([`PaymentProcessor::charge_authentication`] gives their browser
    /// what Stripe.js needs).
    RequiresAction,
    /// Cancelled at the processor: no money will come from it.
    Canceled,
    /// Created but neither paid nor declined (e.g. not confirmed yet); the
    /// processor's status word.
    Incomplete(String),
}

/// A charge (PaymentIntent) at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorCharge {
    /// `pi_…`.
    pub id: String,
    /// Where it stands.
    pub status: ProcessorChargeStatus,
    /// Minor units.
    pub amount_cents: i64,
    /// Lower-case ISO 4217 (when the processor said).
    pub currency: Option<String>,
    /// Our `charges.id` from its metadata, when present.
    pub charge_id: Option<i64>,
    /// The processor's customer id.
    pub customer: Option<String>,
    /// Created.
    pub created: Option<DateTime<Utc>>,
}

/// What the customer's browser needs to complete the authentication of a
/// charge that is [`ProcessorChargeStatus::RequiresAction`] (Stripe.js
/// `confirmCardPayment`). `Debug` leaves out the client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChargeAuthentication {
    /// The charge as the processor reports it now.
    pub charge: ProcessorCharge,
    /// The PaymentIntent's client secret (for the customer's browser only:
    /// never logged, stored, emailed or put in a URL).
    pub client_secret: String,
    /// The card to confirm it with (`pm_…`), when the processor detached
    /// it from the PaymentIntent (Stripe does after an off-session
    /// `authentication_required`).
    pub payment_method: Option<String>,
}

impl std::fmt::Debug for ChargeAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargeAuthentication")
            .field("charge", &self.charge)
            .field("client_secret", &"<redacted>")
            .field("payment_method", &self.payment_method)
            .finish()
    }
}

/// An amount added to the customer's next subscription invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceItemRequest {
    /// Our `charges.id` (metadata `rsolv_charge_id`).
    pub charge_id: i64,
    /// The processor's customer id.
    pub customer: String,
    /// The subscription whose next invoice bills it.
    pub subscription: Option<String>,
    /// Minor units, > 0.
    pub amount_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// Shown on the invoice.
    pub description: String,
    /// `charge:<charge id>`.
    pub idempotency_key: String,
}

/// An invoice item at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorInvoiceItem {
    /// `ii_…`.
    pub id: String,
    /// Minor units.
    pub amount_cents: i64,
    /// Our `charges.id` from its metadata.
    pub charge_id: Option<i64>,
    /// The invoice it was billed on, once billed.
    pub invoice: Option<String>,
}

/// A new Pro subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Our `customers.id` (metadata `rsolv_customer_id`).
    pub customer_id: i64,
    /// The processor's customer id (its default card pays).
    pub customer: String,
    /// The recurring price (`price_…`) or plan id.
    pub price: String,
    /// What the price charges per period, in cents of `currency`: used only
    /// to create the plan on a local stand-in that does not have it yet.
    pub amount_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// Stable for this subscription attempt.
    pub idempotency_key: String,
}

/// How a subscription is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelMode {
    /// Ends now. With `invoice_now` the pending invoice items (overage) are
    /// billed on a final invoice instead of being left uncollected.
    Now {
        /// Bill pending items now (Stripe's `invoice_now`).
        invoice_now: bool,
    },
    /// Ends at the end of the paid period (can be resumed until then).
    AtPeriodEnd,
}

/// A subscription as the payment processor reports it now. The Stripe
/// adapter builds it from a `sub_…` object, whether re-read through this
/// port or taken from a webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    /// The processor's id, `sub_…`.
    pub id: String,
    /// The processor's customer id, `cus_…`.
    pub processor_customer_id: String,
    /// Our `customers.id` from its metadata, when it carries one.
    pub customer_id: Option<i64>,
    /// Its status.
    pub status: SubscriptionStatus,
    /// Ends at the period end (resumable until then).
    pub cancel_at_period_end: bool,
    /// Start of the current period.
    pub current_period_start: Option<DateTime<Utc>>,
    /// End of the current period.
    pub current_period_end: Option<DateTime<Utc>>,
    /// Its most recent invoice, `in_…`.
    pub latest_invoice: Option<String>,
    /// Created.
    pub created: Option<DateTime<Utc>>,
    /// When this state was true: our clock when read from the processor,
    /// the event's time when taken from an event.
    pub observed_at: DateTime<Utc>,
}

/// Why an invoice was made (Stripe's `billing_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingReason {
    /// The subscription's first invoice.
    SubscriptionCreate,
    /// A renewal: a new period.
    SubscriptionCycle,
    /// A change (proration, e.g. a plan switch or a cancel with
    /// `invoice_now`).
    SubscriptionUpdate,
    /// A usage threshold was reached.
    SubscriptionThreshold,
    /// Made by hand (one-off).
    Manual,
    /// Anything else (`upcoming`, `quote_accept`, …).
    Other,
}

impl BillingReason {
    /// Reads Stripe's spelling; unknown values are [`BillingReason::Other`].
    pub fn parse(text: &str) -> Self {
        match text {
            "subscription_create" => Self::SubscriptionCreate,
            "subscription_cycle" => Self::SubscriptionCycle,
            "subscription_update" => Self::SubscriptionUpdate,
            "subscription_threshold" => Self::SubscriptionThreshold,
            "manual" => Self::Manual,
            _ => Self::Other,
        }
    }

    /// Whether a paid invoice for this reason pays for a new Pro period
    /// (issue 9: creation or renewal only).
    pub fn starts_a_period(self) -> bool {
        matches!(self, Self::SubscriptionCreate | Self::SubscriptionCycle)
    }

    /// The one rule for "this invoice pays for a Pro period" (issue 9,
    /// "Pro"): paid, money collected (`amount_paid_cents > 0`: no $0 or
    /// fully credited invoice), and made for creation or renewal. `reason`
    /// `None` (an API version that does not say) counts as a renewal, as
    /// the processor adapter infers it. Used by the grant
    /// (`subscriptions::apply_invoice_snapshot`) and by reconciliation, for
    /// processor invoices and stored events alike.
    pub fn pays_for_a_period(reason: Option<Self>, paid: bool, amount_paid_cents: i64) -> bool {
        paid && amount_paid_cents > 0 && reason.unwrap_or(Self::SubscriptionCycle).starts_a_period()
    }
}

/// An invoice as the payment processor reports it now. Amounts in minor
/// units (cents) of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceSnapshot {
    /// The processor's id, `in_…`.
    pub id: String,
    /// Its human number, e.g. `RSOLV-0001`.
    pub number: Option<String>,
    /// The processor's customer id, `cus_…`.
    pub processor_customer_id: String,
    /// The subscription it bills, if any.
    pub subscription_id: Option<String>,
    /// `draft`, `open`, `paid`, `void`, `uncollectible`.
    pub status: Option<String>,
    /// Paid in full.
    pub paid: bool,
    /// A collection attempt failed and the invoice is still open.
    pub payment_failed: bool,
    /// Why it was made; `None` when the processor did not say.
    pub billing_reason: Option<BillingReason>,
    /// Cents collected.
    pub amount_paid_cents: i64,
    /// Cents due.
    pub amount_due_cents: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// Collection attempts so far.
    pub attempt_count: i64,
    /// End of the subscription period its subscription line pays for.
    pub period_end: Option<DateTime<Utc>>,
    /// The processor ids of the invoice items on it (`ii_…`): our overage
    /// charges among them are paid when it is.
    pub invoice_item_ids: Vec<String>,
    /// Created.
    pub created: Option<DateTime<Utc>>,
    /// The processor's page for it (none on localstripe).
    pub hosted_url: Option<String>,
    /// The invoice's PDF (none on localstripe); like `hosted_url`, only a
    /// URL that passed `types::urls::safe_href`.
    pub pdf_url: Option<String>,
    /// When this state was true (as for [`SubscriptionSnapshot`]).
    pub observed_at: DateTime<Utc>,
}

impl InvoiceSnapshot {
    /// Whether this invoice pays for a Pro period
    /// ([`BillingReason::pays_for_a_period`]).
    pub fn pays_for_a_period(&self) -> bool {
        BillingReason::pays_for_a_period(self.billing_reason, self.paid, self.amount_paid_cents)
    }
}

/// What billing needs from a payment processor (issue 9 § 3). Implemented
/// for Stripe by `server::stripe::processor::StripeProcessor`.
///
/// Every creating call takes an idempotency key that is stable for the life
/// of the thing it creates; callers also look the object up (by our id in
/// its metadata) before creating it again after an error, since a failed
/// answer may hide a success.
///
/// Errors: [`ProcessorError`] on every method; only
/// [`PaymentProcessor::charge_off_session`] (and attaching a card) can
/// answer [`ProcessorError::Declined`].
#[async_trait]
pub trait PaymentProcessor: Send + Sync {
    /// Creates the processor's Customer for our customer.
    async fn create_customer(
        &self,
        customer: &NewProcessorCustomer,
    ) -> Result<ProcessorCustomer, ProcessorError>;

    /// The processor's Customers with `email` whose metadata names our
    /// `customer_id` (finds one an earlier, lost call created).
    async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<ProcessorCustomer>, ProcessorError>;

    /// Creates a SetupIntent for saving a card for off-session charges.
    async fn create_setup_intent(
        &self,
        customer: &str,
        customer_id: i64,
        idempotency_key: &str,
    ) -> Result<SetupIntentSnapshot, ProcessorError>;

    /// Reads a SetupIntent.
    async fn setup_intent(&self, id: &str) -> Result<SetupIntentSnapshot, ProcessorError>;

    /// Attaches card `payment_method` to `customer` (a no-op when already
    /// attached to it).
    async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<CardSnapshot, ProcessorError>;

    /// Detaches a card from its customer.
    async fn detach_payment_method(&self, payment_method: &str) -> Result<(), ProcessorError>;

    /// Makes `payment_method` the customer's default (charged by invoices).
    async fn set_default_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<(), ProcessorError>;

    /// Charges a saved card off-session, confirming at once. A decline is
    /// [`ProcessorError::Declined`] (or, for a charge found later, status
    /// [`ProcessorChargeStatus::Declined`]); a payment the bank wants the
    /// customer to authenticate answers `Ok` with status
    /// [`ProcessorChargeStatus::RequiresAction`] (whichever way the
    /// processor says it).
    async fn charge_off_session(
        &self,
        charge: &ChargeRequest,
    ) -> Result<ProcessorCharge, ProcessorError>;

    /// The customer's charges whose metadata names our `charge_id` (recent
    /// ones; finds the charge of an attempt whose answer was lost).
    async fn find_charges(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError>;

    /// Reads a charge (PaymentIntent `pi_…`).
    async fn payment_intent(&self, id: &str) -> Result<ProcessorCharge, ProcessorError>;

    /// Reads a charge (PaymentIntent `pi_…`) with the client secret the
    /// customer's browser needs to authenticate it. Call only for the
    /// signed-in owner of the charge.
    async fn charge_authentication(&self, id: &str)
        -> Result<ChargeAuthentication, ProcessorError>;

    /// The processor's customer (`cus_…`) of the card payment `charge_id`
    /// (`ch_…`, e.g. the one a dispute names); `None` when it has none.
    async fn charge_customer(&self, charge_id: &str) -> Result<Option<String>, ProcessorError>;

    /// Adds an amount to the subscription's next invoice.
    async fn create_invoice_item(
        &self,
        item: &InvoiceItemRequest,
    ) -> Result<ProcessorInvoiceItem, ProcessorError>;

    /// The customer's invoice items whose metadata names our `charge_id`.
    async fn find_invoice_items(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorInvoiceItem>, ProcessorError>;

    /// Subscribes the customer (its default card pays the first invoice).
    async fn subscribe(
        &self,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionSnapshot, ProcessorError>;

    /// Cancels a subscription now (optionally invoicing pending items) or
    /// at the period end.
    async fn cancel_subscription(
        &self,
        id: &str,
        mode: CancelMode,
    ) -> Result<SubscriptionSnapshot, ProcessorError>;

    /// Undoes a cancellation at the period end.
    async fn resume_subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError>;

    /// Reads a subscription as it is now.
    async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError>;

    /// Reads an invoice as it is now.
    async fn invoice(&self, id: &str) -> Result<InvoiceSnapshot, ProcessorError>;

    /// The customer's invoices, newest first (at most `limit`, ≤ 100).
    async fn list_invoices(
        &self,
        customer: &str,
        limit: u8,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError>;

    /// Every charge (PaymentIntent) created at or after `since`, for
    /// reconciliation.
    async fn payment_intents_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError>;

    /// Every invoice created at or after `since`, for reconciliation.
    async fn invoices_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_decline_is_the_cards_fault() {
        let declined = ProcessorError::Declined {
            code: Some("card_declined".into()),
            decline_code: None,
        };
        assert!(declined.is_decline() && !declined.is_retryable());
        for other in [
            ProcessorError::Unavailable("503".into()),
            ProcessorError::Conflict("409".into()),
            ProcessorError::Misconfigured("401".into()),
            ProcessorError::NotFound("pi".into()),
            ProcessorError::Disabled,
        ] {
            assert!(!other.is_decline() && other.is_retryable(), "{other:?}");
        }
    }

    #[test]
    fn advice_says_what_to_do_and_never_echoes_the_processor() {
        assert!(decline_advice(None, Some("insufficient_funds")).contains("insufficient funds"));
        assert!(decline_advice(Some("expired_card"), None).contains("expired"));
        assert!(decline_advice(Some("weird_code"), Some("weird")).contains("another card"));
    }

    #[test]
    fn only_paid_creation_and_renewal_with_money_pay_for_a_period() {
        use BillingReason::*;
        for reason in [None, Some(SubscriptionCreate), Some(SubscriptionCycle)] {
            assert!(
                BillingReason::pays_for_a_period(reason, true, 1),
                "{reason:?}"
            );
            assert!(
                !BillingReason::pays_for_a_period(reason, true, 0),
                "{reason:?} $0"
            );
            assert!(
                !BillingReason::pays_for_a_period(reason, false, 59900),
                "{reason:?} unpaid"
            );
        }
        for reason in [SubscriptionUpdate, SubscriptionThreshold, Manual, Other] {
            assert!(
                !BillingReason::pays_for_a_period(Some(reason), true, 59900),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn only_creation_and_renewal_start_a_period() {
        for (text, starts) in [
            ("subscription_create", true),
            ("subscription_cycle", true),
            ("subscription_update", false),
            ("subscription_threshold", false),
            ("manual", false),
            ("upcoming", false),
        ] {
            assert_eq!(
                BillingReason::parse(text).starts_a_period(),
                starts,
                "{text}"
            );
        }
    }
}
