//! The payment processor with metrics: a decorator over any
//! [`PaymentProcessor`] that times every call at the port boundary and
//! counts it by outcome ([`crate::server::metrics::PROCESSOR_CALLS_TOTAL`],
//! [`crate::server::metrics::PROCESSOR_CALL_DURATION_SECONDS`]). The wiring
//! wraps the Stripe implementation in it; the domain sees only the port.

use crate::server::billing::ports::{
    CancelMode, CardSnapshot, ChargeAuthentication, ChargeRequest, InvoiceItemRequest,
    InvoiceSnapshot, NewProcessorCustomer, PaymentProcessor, ProcessorCharge, ProcessorCustomer,
    ProcessorError, ProcessorInvoiceItem, SetupIntentSnapshot, SubscribeRequest,
    SubscriptionSnapshot,
};
use crate::server::metrics;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Instant;

/// `inner` with every call recorded (see the module doc).
pub struct Metered<P> {
    inner: P,
}

impl<P: PaymentProcessor> Metered<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        Self { inner }
    }
}

/// The outcome label of a call's result.
fn outcome<T>(result: &Result<T, ProcessorError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ProcessorError::Declined { .. }) => "declined",
        Err(ProcessorError::Unavailable(_)) => "unavailable",
        Err(ProcessorError::Conflict(_)) => "conflict",
        Err(ProcessorError::Misconfigured(_)) => "misconfigured",
        Err(ProcessorError::NotFound(_)) => "not_found",
        Err(ProcessorError::Disabled) => "disabled",
    }
}

fn observe<T>(operation: &'static str, result: &Result<T, ProcessorError>, started: Instant) {
    metrics::processor_call(operation, outcome(result), started.elapsed());
}

/// Awaits `$call`, records it as `$operation` ([`observe`]) and answers
/// its result.
macro_rules! timed {
    ($operation:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        observe($operation, &result, started);
        result
    }};
}

#[async_trait]
impl<P: PaymentProcessor> PaymentProcessor for Metered<P> {
    async fn charge_customer(&self, charge_id: &str) -> Result<Option<String>, ProcessorError> {
        timed!("charge_customer", self.inner.charge_customer(charge_id))
    }

    async fn create_customer(
        &self,
        customer: &NewProcessorCustomer,
    ) -> Result<ProcessorCustomer, ProcessorError> {
        timed!("create_customer", self.inner.create_customer(customer))
    }

    async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<ProcessorCustomer>, ProcessorError> {
        timed!(
            "find_customers",
            self.inner.find_customers(customer_id, email)
        )
    }

    async fn create_setup_intent(
        &self,
        customer: &str,
        customer_id: i64,
        idempotency_key: &str,
    ) -> Result<SetupIntentSnapshot, ProcessorError> {
        timed!(
            "create_setup_intent",
            self.inner
                .create_setup_intent(customer, customer_id, idempotency_key)
        )
    }

    async fn setup_intent(&self, id: &str) -> Result<SetupIntentSnapshot, ProcessorError> {
        timed!("setup_intent", self.inner.setup_intent(id))
    }

    async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<CardSnapshot, ProcessorError> {
        timed!(
            "attach_payment_method",
            self.inner.attach_payment_method(payment_method, customer)
        )
    }

    async fn detach_payment_method(&self, payment_method: &str) -> Result<(), ProcessorError> {
        timed!(
            "detach_payment_method",
            self.inner.detach_payment_method(payment_method)
        )
    }

    async fn set_default_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<(), ProcessorError> {
        timed!(
            "set_default_payment_method",
            self.inner
                .set_default_payment_method(customer, payment_method)
        )
    }

    async fn charge_off_session(
        &self,
        charge: &ChargeRequest,
    ) -> Result<ProcessorCharge, ProcessorError> {
        timed!("charge_off_session", self.inner.charge_off_session(charge))
    }

    async fn find_charges(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        timed!("find_charges", self.inner.find_charges(customer, charge_id))
    }

    async fn payment_intent(&self, id: &str) -> Result<ProcessorCharge, ProcessorError> {
        timed!("payment_intent", self.inner.payment_intent(id))
    }

    async fn charge_authentication(
        &self,
        id: &str,
    ) -> Result<ChargeAuthentication, ProcessorError> {
        timed!(
            "charge_authentication",
            self.inner.charge_authentication(id)
        )
    }

    async fn create_invoice_item(
        &self,
        item: &InvoiceItemRequest,
    ) -> Result<ProcessorInvoiceItem, ProcessorError> {
        timed!("create_invoice_item", self.inner.create_invoice_item(item))
    }

    async fn find_invoice_items(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorInvoiceItem>, ProcessorError> {
        timed!(
            "find_invoice_items",
            self.inner.find_invoice_items(customer, charge_id)
        )
    }

    async fn subscribe(
        &self,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        timed!("subscribe", self.inner.subscribe(request))
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        mode: CancelMode,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        timed!(
            "cancel_subscription",
            self.inner.cancel_subscription(id, mode)
        )
    }

    async fn resume_subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        timed!("resume_subscription", self.inner.resume_subscription(id))
    }

    async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        timed!("subscription", self.inner.subscription(id))
    }

    async fn invoice(&self, id: &str) -> Result<InvoiceSnapshot, ProcessorError> {
        timed!("invoice", self.inner.invoice(id))
    }

    async fn list_invoices(
        &self,
        customer: &str,
        limit: u8,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        timed!("list_invoices", self.inner.list_invoices(customer, limit))
    }

    async fn payment_intents_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        timed!(
            "payment_intents_since",
            self.inner.payment_intents_since(since)
        )
    }

    async fn invoices_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        timed!("invoices_since", self.inner.invoices_since(since))
    }
}
