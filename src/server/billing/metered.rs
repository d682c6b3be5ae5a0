//! The payment processor with metrics: a decorator over any
//! [`PaymentProcessor`] that times every call at the port boundary and
//! counts it by outcome ([`crate::server::metrics::PROCESSOR_CALLS_TOTAL`],
//! [`crate::server::metrics::PROCESSOR_CALL_DURATION_SECONDS`]). The wiring
//! wraps the Stripe implementation in it; the domain sees only the port.

use crate::server::billing::ports::{
    CancelMode, CardSnapshot, ChargeRequest, InvoiceItemRequest, InvoiceSnapshot,
    NewProcessorCustomer, PaymentProcessor, ProcessorCharge, ProcessorCustomer, ProcessorError,
    ProcessorInvoiceItem, SetupIntentSnapshot, SubscribeRequest, SubscriptionSnapshot,
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

#[async_trait]
impl<P: PaymentProcessor> PaymentProcessor for Metered<P> {
    async fn create_customer(
        &self,
        customer: &NewProcessorCustomer,
    ) -> Result<ProcessorCustomer, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.create_customer(customer).await;
        observe("create_customer", &result, started);
        result
    }

    async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<ProcessorCustomer>, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.find_customers(customer_id, email).await;
        observe("find_customers", &result, started);
        result
    }

    async fn create_setup_intent(
        &self,
        customer: &str,
        customer_id: i64,
        idempotency_key: &str,
    ) -> Result<SetupIntentSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self
            .inner
            .create_setup_intent(customer, customer_id, idempotency_key)
            .await;
        observe("create_setup_intent", &result, started);
        result
    }

    async fn setup_intent(&self, id: &str) -> Result<SetupIntentSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.setup_intent(id).await;
        observe("setup_intent", &result, started);
        result
    }

    async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<CardSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self
            .inner
            .attach_payment_method(payment_method, customer)
            .await;
        observe("attach_payment_method", &result, started);
        result
    }

    async fn detach_payment_method(&self, payment_method: &str) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let result = self.inner.detach_payment_method(payment_method).await;
        observe("detach_payment_method", &result, started);
        result
    }

    async fn set_default_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let result = self
            .inner
            .set_default_payment_method(customer, payment_method)
            .await;
        observe("set_default_payment_method", &result, started);
        result
    }

    async fn charge_off_session(
        &self,
        charge: &ChargeRequest,
    ) -> Result<ProcessorCharge, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.charge_off_session(charge).await;
        observe("charge_off_session", &result, started);
        result
    }

    async fn find_charges(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.find_charges(customer, charge_id).await;
        observe("find_charges", &result, started);
        result
    }

    async fn payment_intent(&self, id: &str) -> Result<ProcessorCharge, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.payment_intent(id).await;
        observe("payment_intent", &result, started);
        result
    }

    async fn create_invoice_item(
        &self,
        item: &InvoiceItemRequest,
    ) -> Result<ProcessorInvoiceItem, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.create_invoice_item(item).await;
        observe("create_invoice_item", &result, started);
        result
    }

    async fn find_invoice_items(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorInvoiceItem>, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.find_invoice_items(customer, charge_id).await;
        observe("find_invoice_items", &result, started);
        result
    }

    async fn subscribe(
        &self,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.subscribe(request).await;
        observe("subscribe", &result, started);
        result
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        mode: CancelMode,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.cancel_subscription(id, mode).await;
        observe("cancel_subscription", &result, started);
        result
    }

    async fn resume_subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.resume_subscription(id).await;
        observe("resume_subscription", &result, started);
        result
    }

    async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.subscription(id).await;
        observe("subscription", &result, started);
        result
    }

    async fn invoice(&self, id: &str) -> Result<InvoiceSnapshot, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.invoice(id).await;
        observe("invoice", &result, started);
        result
    }

    async fn list_invoices(
        &self,
        customer: &str,
        limit: u8,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.list_invoices(customer, limit).await;
        observe("list_invoices", &result, started);
        result
    }

    async fn payment_intents_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.payment_intents_since(since).await;
        observe("payment_intents_since", &result, started);
        result
    }

    async fn invoices_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        let started = Instant::now();
        let result = self.inner.invoices_since(since).await;
        observe("invoices_since", &result, started);
        result
    }
}
