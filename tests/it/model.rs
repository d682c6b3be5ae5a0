//! Generative, model-based test of the money rules (issue 9, Scope 8).
//!
//! Random sequences of operations are applied to the real domain and router
//! on PostgreSQL with an in-memory payment processor ([`MemProcessor`],
//! Stripe-like: the same idempotency key gives back the same object; it
//! keeps subscriptions, invoices and invoice items and queues the webhook
//! events Stripe would send):
//! - fix reports by issue, by pull request or both, through the phase store
//!   or the fix-attempt API, repeated and racing;
//! - cards that work, decline, or need the customer's authentication
//!   (3-D Secure: the charge waits `requires_action` until the customer
//!   completes or fails the bank's check); admin credit grants; refunds;
//! - subscribe, cancel (now or at the period end), resume; the processor
//!   renewing (paid or failed), ending or expiring the subscription, and
//!   the customer paying the open invoice;
//! - webhook deliveries shuffled, duplicated and in the same second (all
//!   signed and posted to `/webhooks/stripe`); job runs with a lost
//!   processor answer.
//!
//! After every operation the customer's rows are checked against the money
//! invariants (balance = Σ ledger ≥ 0; one fix row per identity; every
//! billed fix paid by exactly one credit or one charge; at most one live
//! charge per fix and one PaymentIntent per charge; ledger keys unique, so
//! at most one grant per invoice; every grant for a paid creation or
//! renewal invoice of this customer with money collected). After a final
//! drain (every event delivered, every job run): the customer's
//! subscription is the processor's latest in its current state; every paid
//! period of an open subscription is granted; an overage charge is paid
//! exactly when its invoice is; no charge pending; no fix left unpaid
//! without a charge while the customer can pay. One database for the whole
//! run, a new customer per case. `PROPTEST_CASES` overrides the case count
//! (300).

use crate::harness::{email, leptos_options, stripe_config, TestDb};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestError, TestRunner};
use rsolv_platform::server::admin::customers::adjust_credits;
use rsolv_platform::server::admin::Admin;
use rsolv_platform::server::billing::customers::find_customer;
use rsolv_platform::server::billing::ledger::ledger_sum;
use rsolv_platform::server::billing::payment_methods::{
    add_card, begin_card_setup, list_cards, remove_card, Consent,
};
use rsolv_platform::server::billing::ports::*;
use rsolv_platform::server::billing::refunds::{apply_refund, RefundOutcome, RefundSnapshot};
use rsolv_platform::server::billing::subscriptions::{cancel, resume, subscribe_pro};
use rsolv_platform::server::billing::BillingError;
use rsolv_platform::server::db::schema::{charges, credit_ledger_entries, customers, fixes};
use rsolv_platform::server::http::router;
use rsolv_platform::server::jobs::run_until_idle;
use rsolv_platform::server::state::AppState;
use rsolv_platform::types::values::SubscriptionStatus;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

// --- The in-memory payment processor ------------------------------------------

/// A PaymentIntent the processor made, with the key and our charge id.
#[derive(Debug, Clone)]
struct Intent {
    key: String,
    charge: ProcessorCharge,
}

#[derive(Debug, Default)]
struct MemState {
    next: u64,
    /// (processor id, our customer id, email).
    customers: Vec<(String, i64, String)>,
    setups: HashMap<String, SetupIntentSnapshot>,
    /// Card id → (customer, declines?).
    cards: HashMap<String, (String, bool)>,
    /// Cards whose bank asks the customer to authenticate every payment.
    needs_auth: std::collections::HashSet<String>,
    intents: Vec<Intent>,
    /// The next creating call records its object, then answers
    /// `Unavailable` (a lost answer).
    lose_next_answer: bool,
    /// Processor customer → default card.
    defaults: HashMap<String, String>,
    /// Subscriptions, oldest first, with their idempotency key and price
    /// (cents per period).
    subs: Vec<(SubscriptionSnapshot, String, i64)>,
    /// Invoices, oldest first.
    invoices: Vec<InvoiceSnapshot>,
    /// Invoice items with their customer and idempotency key.
    items: Vec<(ProcessorInvoiceItem, String, String)>,
    /// Webhook events not delivered yet, oldest first.
    events: Vec<Value>,
}

/// A Pro period in the model: 30 days.
const PERIOD_DAYS: i64 = 30;

impl MemState {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_mem_{}", self.next)
    }

    /// Whether the customer's default card declines (`None`: no card).
    fn default_declines(&self, customer: &str) -> Option<bool> {
        let pm = self.defaults.get(customer)?;
        self.cards.get(pm).map(|(_, declines)| *declines)
    }

    /// Whether the customer's default card needs authentication.
    fn default_needs_auth(&self, customer: &str) -> bool {
        self.defaults
            .get(customer)
            .is_some_and(|pm| self.needs_auth.contains(pm))
    }

    /// Queues a webhook event about `object` (what Stripe would send).
    fn emit(&mut self, type_: &str, object: Value) {
        let id = self.new_id("evt");
        self.events.push(json!({
            "id": id, "object": "event", "type": type_,
            "created": Utc::now().timestamp(),
            "data": {"object": object},
        }));
    }

    fn emit_subscription(&mut self, type_: &str, i: usize) {
        let (sub, _, _) = &self.subs[i];
        let object = json!({
            "id": sub.id, "object": "subscription", "customer": sub.processor_customer_id,
            "status": sub.status.as_str(), "cancel_at_period_end": sub.cancel_at_period_end,
            "current_period_start": sub.current_period_start.map(|t| t.timestamp()),
            "current_period_end": sub.current_period_end.map(|t| t.timestamp()),
            "latest_invoice": sub.latest_invoice, "created": sub.created.map(|t| t.timestamp()),
            "metadata": {"rsolv_customer_id": sub.customer_id.map(|c| c.to_string())},
        });
        self.emit(type_, object);
    }

    fn emit_invoice(&mut self, i: usize) {
        let inv = &self.invoices[i];
        let type_ = if inv.paid {
            "invoice.paid"
        } else if inv.payment_failed {
            "invoice.payment_failed"
        } else {
            return;
        };
        let reason = match inv.billing_reason {
            Some(BillingReason::SubscriptionCreate) => "subscription_create",
            Some(BillingReason::SubscriptionCycle) => "subscription_cycle",
            _ => "subscription_update",
        };
        let object = json!({
            "id": inv.id, "object": "invoice", "customer": inv.processor_customer_id,
            "subscription": inv.subscription_id, "status": inv.status, "paid": inv.paid,
            "billing_reason": reason, "amount_paid": inv.amount_paid_cents,
            "amount_due": inv.amount_due_cents, "currency": inv.currency,
            "attempt_count": inv.attempt_count,
        });
        self.emit(type_, object);
    }

    /// Tries to collect invoice `i` with its customer's default card.
    fn collect(&mut self, i: usize) -> bool {
        let declines = self
            .default_declines(&self.invoices[i].processor_customer_id)
            .unwrap_or(true);
        let inv = &mut self.invoices[i];
        inv.attempt_count += 1;
        if declines {
            inv.payment_failed = true;
            inv.status = Some("open".into());
            false
        } else {
            inv.paid = true;
            inv.payment_failed = false;
            inv.status = Some("paid".into());
            inv.amount_paid_cents = inv.amount_due_cents;
            true
        }
    }

    /// Makes an invoice of subscription `sub` for `amount` cents plus the
    /// customer's pending invoice items and collects it; `None` when there
    /// is nothing to bill.
    fn invoice_subscription(
        &mut self,
        sub: usize,
        reason: BillingReason,
        amount: i64,
    ) -> Option<usize> {
        let (customer, sub_id, period_end) = {
            let s = &self.subs[sub].0;
            (
                s.processor_customer_id.clone(),
                s.id.clone(),
                s.current_period_end,
            )
        };
        let id = self.new_id("in");
        let mut item_ids = Vec::new();
        let mut due = amount;
        for (item, c, _) in &mut self.items {
            if *c == customer && item.invoice.is_none() {
                item.invoice = Some(id.clone());
                item_ids.push(item.id.clone());
                due += item.amount_cents;
            }
        }
        if due == 0 {
            return None;
        }
        self.invoices.push(InvoiceSnapshot {
            id: id.clone(),
            number: None,
            processor_customer_id: customer,
            subscription_id: Some(sub_id),
            status: Some("open".into()),
            paid: false,
            payment_failed: false,
            billing_reason: Some(reason),
            amount_paid_cents: 0,
            amount_due_cents: due,
            currency: "usd".into(),
            attempt_count: 0,
            period_end,
            invoice_item_ids: item_ids,
            created: Some(Utc::now()),
            hosted_url: None,
            pdf_url: None,
            observed_at: Utc::now(),
        });
        let i = self.invoices.len() - 1;
        self.collect(i);
        self.subs[sub].0.latest_invoice = Some(id);
        Some(i)
    }

    /// The customer's latest subscription.
    fn latest_sub(&self, customer: &str) -> Option<usize> {
        self.subs
            .iter()
            .rposition(|(s, _, _)| s.processor_customer_id == customer)
    }
}

/// Stripe-like enough for the charge flow; everything else `NotFound`.
#[derive(Debug, Default)]
struct MemProcessor {
    state: Mutex<MemState>,
}

impl MemProcessor {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the browser does with the card form: confirms SetupIntent
    /// `seti` with a new card that works or declines.
    fn confirm_setup(&self, seti: &str, declines: bool) {
        let mut s = self.lock();
        s.next += 1;
        let pm = format!("pm_mem_{}", s.next);
        let setup = s.setups.get_mut(seti).expect("setup intent");
        setup.status = SetupStatus::Succeeded;
        setup.payment_method = Some(pm.clone());
        let customer = setup.customer.clone().unwrap_or_default();
        s.cards.insert(pm, (customer, declines));
    }

    /// As [`MemProcessor::confirm_setup`] with a working card whose bank
    /// asks the customer to authenticate every payment.
    fn confirm_setup_needing_authentication(&self, seti: &str) {
        self.confirm_setup(seti, false);
        let mut s = self.lock();
        let pm = s.setups[seti].payment_method.clone().expect("its card");
        s.needs_auth.insert(pm);
    }

    /// What Stripe.js does when the customer completes (or fails) the
    /// bank's check of PaymentIntent `pi`.
    fn authenticate(&self, pi: &str, success: bool) {
        let mut s = self.lock();
        if let Some(intent) = s.intents.iter_mut().find(|i| i.charge.id == pi) {
            if intent.charge.status == ProcessorChargeStatus::RequiresAction {
                intent.charge.status = if success {
                    ProcessorChargeStatus::Succeeded
                } else {
                    ProcessorChargeStatus::Declined {
                        code: Some("payment_intent_authentication_failure".into()),
                        decline_code: None,
                    }
                };
            }
        }
    }

    /// PaymentIntents per our charge id.
    fn intents_per_charge(&self) -> HashMap<i64, usize> {
        let mut per = HashMap::new();
        for i in &self.lock().intents {
            if let Some(id) = i.charge.charge_id {
                *per.entry(id).or_insert(0) += 1;
            }
        }
        per
    }

    /// The processor moves the customer's latest subscription to its next
    /// period: a renewal invoice collected with the default card (the
    /// subscription `active` or `past_due`), or the end of a subscription
    /// set to cancel at the period end (pending items billed on a final
    /// invoice), or an `incomplete` one expiring.
    fn renew(&self, customer: &str) {
        let mut s = self.lock();
        let Some(i) = s.latest_sub(customer) else {
            return;
        };
        let (status, at_end, price) = {
            let (sub, _, price) = &s.subs[i];
            (sub.status, sub.cancel_at_period_end, *price)
        };
        match status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue if at_end => {
                s.subs[i].0.status = SubscriptionStatus::Canceled;
                s.subs[i].0.cancel_at_period_end = false;
                let inv = s.invoice_subscription(i, BillingReason::SubscriptionUpdate, 0);
                s.emit_subscription("customer.subscription.deleted", i);
                if let Some(inv) = inv {
                    s.emit_invoice(inv);
                }
            }
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                let sub = &mut s.subs[i].0;
                let end = sub.current_period_end.unwrap_or_else(Utc::now);
                sub.current_period_start = Some(end);
                sub.current_period_end = Some(end + chrono::Duration::days(PERIOD_DAYS));
                let inv = s
                    .invoice_subscription(i, BillingReason::SubscriptionCycle, price)
                    .expect("a renewal bills the price");
                s.subs[i].0.status = if s.invoices[inv].paid {
                    SubscriptionStatus::Active
                } else {
                    SubscriptionStatus::PastDue
                };
                s.emit_subscription("customer.subscription.updated", i);
                s.emit_invoice(inv);
            }
            SubscriptionStatus::Incomplete => {
                s.subs[i].0.status = SubscriptionStatus::IncompleteExpired;
                let latest = s.subs[i].0.latest_invoice.clone();
                if let Some(inv) = s
                    .invoices
                    .iter_mut()
                    .find(|v| Some(&v.id) == latest.as_ref())
                {
                    if !inv.paid {
                        inv.status = Some("void".into());
                    }
                }
                s.emit_subscription("customer.subscription.updated", i);
            }
            _ => {}
        }
    }

    /// The customer pays the latest open invoice of their latest
    /// subscription with the default card (Stripe's "pay invoice"); a paid
    /// first or past-due invoice makes the subscription `active`.
    fn pay_open_invoice(&self, customer: &str) {
        let mut s = self.lock();
        let Some(i) = s.latest_sub(customer) else {
            return;
        };
        let sub_id = s.subs[i].0.id.clone();
        let Some(inv) = s.invoices.iter().rposition(|v| {
            v.subscription_id.as_deref() == Some(&sub_id) && v.status.as_deref() == Some("open")
        }) else {
            return;
        };
        let paid = s.collect(inv);
        s.emit_invoice(inv);
        let status = s.subs[i].0.status;
        if paid
            && matches!(
                status,
                SubscriptionStatus::Incomplete | SubscriptionStatus::PastDue
            )
        {
            s.subs[i].0.status = SubscriptionStatus::Active;
            s.emit_subscription("customer.subscription.updated", i);
        }
    }

    fn take_events(&self) -> Vec<Value> {
        std::mem::take(&mut self.lock().events)
    }

    fn find_intent(&self, pi: &str) -> Option<ProcessorCharge> {
        self.lock()
            .intents
            .iter()
            .find(|i| i.charge.id == pi)
            .map(|i| i.charge.clone())
    }
}

fn not_found<T>(what: &str) -> Result<T, ProcessorError> {
    Err(ProcessorError::NotFound(what.to_owned()))
}

fn answer(charge: ProcessorCharge) -> Result<ProcessorCharge, ProcessorError> {
    match &charge.status {
        ProcessorChargeStatus::Declined { code, decline_code } => Err(ProcessorError::Declined {
            code: code.clone(),
            decline_code: decline_code.clone(),
        }),
        _ => Ok(charge),
    }
}

#[async_trait]
impl PaymentProcessor for MemProcessor {
    async fn create_customer(
        &self,
        customer: &NewProcessorCustomer,
    ) -> Result<ProcessorCustomer, ProcessorError> {
        let mut s = self.lock();
        let id = match s.customers.iter().find(|c| c.1 == customer.customer_id) {
            Some(c) => c.0.clone(),
            None => {
                s.next += 1;
                let id = format!("cus_mem_{}", s.next);
                s.customers
                    .push((id.clone(), customer.customer_id, customer.email.clone()));
                id
            }
        };
        Ok(ProcessorCustomer {
            id,
            customer_id: Some(customer.customer_id),
            email: Some(customer.email.clone()),
        })
    }

    async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<ProcessorCustomer>, ProcessorError> {
        Ok(self
            .lock()
            .customers
            .iter()
            .filter(|c| c.1 == customer_id && c.2 == email)
            .map(|c| ProcessorCustomer {
                id: c.0.clone(),
                customer_id: Some(c.1),
                email: Some(c.2.clone()),
            })
            .collect())
    }

    async fn create_setup_intent(
        &self,
        customer: &str,
        _customer_id: i64,
        _idempotency_key: &str,
    ) -> Result<SetupIntentSnapshot, ProcessorError> {
        let mut s = self.lock();
        s.next += 1;
        let setup = SetupIntentSnapshot {
            id: format!("seti_mem_{}", s.next),
            client_secret: None,
            customer: Some(customer.to_owned()),
            status: SetupStatus::Other("requires_payment_method".into()),
            payment_method: None,
        };
        s.setups.insert(setup.id.clone(), setup.clone());
        Ok(setup)
    }

    async fn setup_intent(&self, id: &str) -> Result<SetupIntentSnapshot, ProcessorError> {
        match self.lock().setups.get(id) {
            Some(s) => Ok(s.clone()),
            None => not_found(id),
        }
    }

    async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<CardSnapshot, ProcessorError> {
        let s = self.lock();
        let Some((_, declines)) = s.cards.get(payment_method) else {
            return not_found(payment_method);
        };
        Ok(CardSnapshot {
            id: payment_method.to_owned(),
            customer: Some(customer.to_owned()),
            brand: Some("visa".into()),
            last4: Some(if *declines { "0002" } else { "4242" }.into()),
            exp_month: Some(12),
            exp_year: Some(2040),
        })
    }

    async fn detach_payment_method(&self, payment_method: &str) -> Result<(), ProcessorError> {
        let mut s = self.lock();
        let Some((customer, _)) = s.cards.remove(payment_method) else {
            return not_found(payment_method);
        };
        // Stripe: detaching the default card leaves the customer without one.
        if s.defaults.get(&customer).map(String::as_str) == Some(payment_method) {
            s.defaults.remove(&customer);
        }
        let object = json!({
            "id": payment_method, "object": "payment_method", "type": "card", "customer": null,
        });
        let id = s.new_id("evt");
        s.events.push(json!({
            "id": id, "object": "event", "type": "payment_method.detached",
            "created": Utc::now().timestamp(),
            "data": {"object": object, "previous_attributes": {"customer": customer}},
        }));
        Ok(())
    }

    async fn set_default_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<(), ProcessorError> {
        self.lock()
            .defaults
            .insert(customer.to_owned(), payment_method.to_owned());
        Ok(())
    }

    async fn charge_off_session(
        &self,
        charge: &ChargeRequest,
    ) -> Result<ProcessorCharge, ProcessorError> {
        let mut s = self.lock();
        // Stripe: the same idempotency key answers the same PaymentIntent.
        if let Some(i) = s.intents.iter().find(|i| i.key == charge.idempotency_key) {
            return answer(i.charge.clone());
        }
        let declines = match s.cards.get(&charge.payment_method) {
            Some((_, declines)) => *declines,
            None => return not_found(&charge.payment_method),
        };
        let needs_auth = s.needs_auth.contains(&charge.payment_method);
        s.next += 1;
        let made = ProcessorCharge {
            id: format!("pi_mem_{}", s.next),
            status: if declines {
                ProcessorChargeStatus::Declined {
                    code: Some("card_declined".into()),
                    decline_code: Some("generic_decline".into()),
                }
            } else if needs_auth {
                ProcessorChargeStatus::RequiresAction
            } else {
                ProcessorChargeStatus::Succeeded
            },
            amount_cents: charge.amount_cents,
            currency: Some(charge.currency.clone()),
            charge_id: Some(charge.charge_id),
            customer: Some(charge.customer.clone()),
            created: Some(Utc::now()),
        };
        s.intents.push(Intent {
            key: charge.idempotency_key.clone(),
            charge: made.clone(),
        });
        if std::mem::take(&mut s.lose_next_answer) {
            return Err(ProcessorError::Unavailable("injected: answer lost".into()));
        }
        answer(made)
    }

    async fn charge_authentication(
        &self,
        id: &str,
    ) -> Result<ChargeAuthentication, ProcessorError> {
        match self.find_intent(id) {
            Some(charge) => Ok(ChargeAuthentication {
                client_secret: format!("{id}_secret_mem"),
                payment_method: None,
                charge,
            }),
            None => not_found(id),
        }
    }

    async fn find_charges(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        Ok(self
            .lock()
            .intents
            .iter()
            .filter(|i| {
                i.charge.charge_id == Some(charge_id)
                    && i.charge.customer.as_deref() == Some(customer)
            })
            .map(|i| i.charge.clone())
            .collect())
    }

    async fn payment_intent(&self, id: &str) -> Result<ProcessorCharge, ProcessorError> {
        match self.find_intent(id) {
            Some(c) => Ok(c),
            None => not_found(id),
        }
    }

    async fn charge_customer(&self, charge_id: &str) -> Result<Option<String>, ProcessorError> {
        let pi = charge_id.strip_prefix("ch_").unwrap_or(charge_id);
        match self.find_intent(pi) {
            Some(c) => Ok(c.customer),
            None => not_found(charge_id),
        }
    }

    async fn create_invoice_item(
        &self,
        item: &InvoiceItemRequest,
    ) -> Result<ProcessorInvoiceItem, ProcessorError> {
        let mut s = self.lock();
        if let Some((found, _, _)) = s.items.iter().find(|i| i.2 == item.idempotency_key) {
            return Ok(found.clone());
        }
        let made = ProcessorInvoiceItem {
            id: s.new_id("ii"),
            amount_cents: item.amount_cents,
            charge_id: Some(item.charge_id),
            invoice: None,
        };
        s.items.push((
            made.clone(),
            item.customer.clone(),
            item.idempotency_key.clone(),
        ));
        if std::mem::take(&mut s.lose_next_answer) {
            return Err(ProcessorError::Unavailable("injected: answer lost".into()));
        }
        Ok(made)
    }

    async fn find_invoice_items(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorInvoiceItem>, ProcessorError> {
        Ok(self
            .lock()
            .items
            .iter()
            .filter(|(i, c, _)| c == customer && i.charge_id == Some(charge_id))
            .map(|(i, _, _)| i.clone())
            .collect())
    }

    async fn subscribe(
        &self,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        let mut s = self.lock();
        if let Some((sub, _, _)) = s.subs.iter().find(|x| x.1 == request.idempotency_key) {
            return Ok(SubscriptionSnapshot {
                observed_at: Utc::now(),
                ..sub.clone()
            });
        }
        if s.default_declines(&request.customer).is_none() {
            return Err(ProcessorError::Misconfigured(
                "this customer has no default card".into(),
            ));
        }
        let now = Utc::now();
        let id = s.new_id("sub");
        s.subs.push((
            SubscriptionSnapshot {
                id,
                processor_customer_id: request.customer.clone(),
                customer_id: Some(request.customer_id),
                status: SubscriptionStatus::Incomplete,
                cancel_at_period_end: false,
                current_period_start: Some(now),
                current_period_end: Some(now + chrono::Duration::days(PERIOD_DAYS)),
                latest_invoice: None,
                created: Some(now),
                observed_at: now,
            },
            request.idempotency_key.clone(),
            request.amount_cents,
        ));
        let i = s.subs.len() - 1;
        let inv = s
            .invoice_subscription(i, BillingReason::SubscriptionCreate, request.amount_cents)
            .expect("the first invoice bills the price");
        if s.invoices[inv].paid {
            s.subs[i].0.status = SubscriptionStatus::Active;
        }
        s.emit_subscription("customer.subscription.created", i);
        s.emit_invoice(inv);
        Ok(s.subs[i].0.clone())
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        mode: CancelMode,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        let mut s = self.lock();
        let Some(i) = s.subs.iter().position(|x| x.0.id == id) else {
            return not_found(id);
        };
        match mode {
            CancelMode::AtPeriodEnd => {
                s.subs[i].0.cancel_at_period_end = true;
                s.emit_subscription("customer.subscription.updated", i);
            }
            CancelMode::Now { invoice_now } => {
                s.subs[i].0.status = SubscriptionStatus::Canceled;
                s.subs[i].0.cancel_at_period_end = false;
                let inv = if invoice_now {
                    s.invoice_subscription(i, BillingReason::SubscriptionUpdate, 0)
                } else {
                    None
                };
                s.emit_subscription("customer.subscription.deleted", i);
                if let Some(inv) = inv {
                    s.emit_invoice(inv);
                }
            }
        }
        Ok(SubscriptionSnapshot {
            observed_at: Utc::now(),
            ..s.subs[i].0.clone()
        })
    }

    async fn resume_subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        let mut s = self.lock();
        let Some(i) = s.subs.iter().position(|x| x.0.id == id) else {
            return not_found(id);
        };
        s.subs[i].0.cancel_at_period_end = false;
        s.emit_subscription("customer.subscription.updated", i);
        Ok(SubscriptionSnapshot {
            observed_at: Utc::now(),
            ..s.subs[i].0.clone()
        })
    }

    async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        match self.lock().subs.iter().find(|x| x.0.id == id) {
            Some((sub, _, _)) => Ok(SubscriptionSnapshot {
                observed_at: Utc::now(),
                ..sub.clone()
            }),
            None => not_found(id),
        }
    }

    async fn invoice(&self, id: &str) -> Result<InvoiceSnapshot, ProcessorError> {
        match self.lock().invoices.iter().find(|v| v.id == id) {
            Some(inv) => Ok(InvoiceSnapshot {
                observed_at: Utc::now(),
                ..inv.clone()
            }),
            None => not_found(id),
        }
    }

    async fn list_invoices(
        &self,
        customer: &str,
        limit: u8,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        Ok(self
            .lock()
            .invoices
            .iter()
            .rev()
            .filter(|v| v.processor_customer_id == customer)
            .take(usize::from(limit))
            .cloned()
            .collect())
    }

    async fn payment_intents_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        Ok(self
            .lock()
            .intents
            .iter()
            .filter(|i| i.charge.created.is_some_and(|c| c >= since))
            .map(|i| i.charge.clone())
            .collect())
    }

    async fn invoices_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        Ok(self
            .lock()
            .invoices
            .iter()
            .filter(|v| v.created.is_some_and(|c| c >= since))
            .cloned()
            .collect())
    }
}

// --- Operations -------------------------------------------------------------------

/// Which numbers a report of fix `k` (issue `k`, pull request `100 + k`)
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    IssueOnly,
    PrOnly,
    Both,
}

/// One report: fix `k` in 1..=3, its numbers, and whether it goes through
/// the phase store (`POST /api/v1/phases/store`, mitigation `fixed: true`)
/// or the fix-attempt API (`POST /api/v1/fix-attempts`). Issue-only reports
/// use the phase store, PR-only ones the fix-attempt API.
#[derive(Debug, Clone, Copy)]
struct Report {
    k: i64,
    how: How,
    via_phase: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// One report.
    Report(Report),
    /// The same report twice in a row.
    Duplicate(Report),
    /// Two reports at once (two requests, two connections).
    Race(Report, Report),
    /// A card is added (portal flow): working or declining.
    AddCard { declines: bool },
    /// A working card whose bank asks the customer to authenticate every
    /// payment is added (portal flow).
    AddAuthCard,
    /// The customer completes (or fails) the bank's check of their oldest
    /// payment waiting for it, on `/billing/authenticate` (Stripe.js, then
    /// the page's complete call).
    Authenticate { success: bool },
    /// The customer removes the default card (portal flow; refused for the
    /// last card of a subscription that needs it).
    RemoveCard,
    /// An admin grants `n` credits.
    Grant { n: i64 },
    /// The job queue runs until idle; the first charge's answer may be lost.
    RunJobs { lose_first_answer: bool },
    /// The processor reports a full refund of the customer's `pick`-th
    /// succeeded charge (if any).
    Refund { pick: usize },
    /// The customer subscribes to Pro in the portal (refused without a
    /// card or while subscribed).
    Subscribe,
    /// The customer cancels: now (pending overage billed at once) or at
    /// the period end.
    Cancel { at_period_end: bool },
    /// The customer resumes a subscription set to cancel.
    Resume,
    /// The processor starts the next period (renewal invoice, or the end
    /// of a cancelling or incomplete subscription).
    Renew,
    /// The customer pays the open invoice with the current default card.
    PayInvoice,
    /// The processor delivers the webhook events waiting so far, in an
    /// order shuffled by `seed`, each twice when `duplicate`; they are
    /// applied at the next job run.
    Deliver { seed: u64, duplicate: bool },
    /// Shorthand for the way to Pro most cases would otherwise rarely find
    /// (so overage is exercised): a working card, subscribe, deliver the
    /// events, run the jobs. Expanded by [`expand`] before the case runs.
    BecomePro,
}

/// `ops` with every [`Op::BecomePro`] replaced by the operations it
/// stands for.
fn expand(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .flat_map(|op| match op {
            Op::BecomePro => vec![
                Op::AddCard { declines: false },
                Op::Subscribe,
                Op::Deliver {
                    seed: 1,
                    duplicate: false,
                },
                Op::RunJobs {
                    lose_first_answer: false,
                },
            ],
            other => vec![other.clone()],
        })
        .collect()
}

fn report_strategy() -> impl Strategy<Value = Report> {
    (
        1..=3i64,
        prop_oneof![Just(How::IssueOnly), Just(How::PrOnly), Just(How::Both)],
        any::<bool>(),
    )
        .prop_map(|(k, how, via_phase)| Report {
            k,
            how,
            via_phase: match how {
                How::IssueOnly => true,
                How::PrOnly => false,
                How::Both => via_phase,
            },
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => report_strategy().prop_map(Op::Report),
        1 => report_strategy().prop_map(Op::Duplicate),
        2 => (report_strategy(), report_strategy()).prop_map(|(a, b)| Op::Race(a, b)),
        2 => any::<bool>().prop_map(|declines| Op::AddCard { declines }),
        2 => Just(Op::AddAuthCard),
        3 => any::<bool>().prop_map(|success| Op::Authenticate { success }),
        1 => Just(Op::RemoveCard),
        1 => Just(Op::BecomePro),
        2 => (1..=3i64).prop_map(|n| Op::Grant { n }),
        3 => any::<bool>().prop_map(|lose_first_answer| Op::RunJobs { lose_first_answer }),
        1 => (0..3usize).prop_map(|pick| Op::Refund { pick }),
        2 => Just(Op::Subscribe),
        1 => any::<bool>().prop_map(|at_period_end| Op::Cancel { at_period_end }),
        1 => Just(Op::Resume),
        2 => Just(Op::Renew),
        1 => Just(Op::PayInvoice),
        2 => (any::<u64>(), any::<bool>()).prop_map(|(seed, duplicate)| Op::Deliver { seed, duplicate }),
    ]
}

// --- The reference model ----------------------------------------------------------

/// What the reports of one fix identity left, as the identity rules of
/// `record_fix_in_tx` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Rows {
    #[default]
    None,
    /// One row known by its issue only.
    Issue,
    /// One row known by its pull request only.
    Pr,
    /// One row with both numbers.
    Linked,
    /// Two rows (issue-only and PR-only), not yet linked; or left apart by
    /// a merge because both carry a card charge.
    Two,
}

impl Rows {
    fn after(self, how: How) -> Rows {
        use Rows::*;
        match (self, how) {
            (Linked, _) | (_, How::Both) => Linked,
            (None, How::IssueOnly) | (Issue, How::IssueOnly) => Issue,
            (None, How::PrOnly) | (Pr, How::PrOnly) => Pr,
            (Issue, How::PrOnly) | (Pr, How::IssueOnly) | (Two, _) => Two,
        }
    }

    fn count(self) -> usize {
        match self {
            Rows::None => 0,
            Rows::Issue | Rows::Pr | Rows::Linked => 1,
            Rows::Two => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    None,
    Working,
    Declining,
    /// Works once the customer authenticates each payment.
    NeedsAuthentication,
}

#[derive(Debug)]
struct Model {
    rows: [Rows; 4],
    /// The card added last (the default one).
    card: Card,
}

// --- The system under test ---------------------------------------------------------

struct Env {
    state: AppState,
    mem: Arc<MemProcessor>,
    base: String,
    client: reqwest::Client,
    db_url: String,
}

static CASE: AtomicU64 = AtomicU64::new(0);

/// What the run exercised (printed at the end, so a run that never reached
/// a rule shows it): subscriptions made, webhook events delivered, Pro
/// grants, paid overage charges, charged fixes, bank checks (3-D Secure)
/// completed or failed.
struct Coverage {
    subscriptions: AtomicU64,
    events: AtomicU64,
    grants: AtomicU64,
    overage_paid: AtomicU64,
    charged_fixes: AtomicU64,
    authentications: AtomicU64,
}

static COVERAGE: Coverage = Coverage {
    subscriptions: AtomicU64::new(0),
    events: AtomicU64::new(0),
    grants: AtomicU64::new(0),
    overage_paid: AtomicU64::new(0),
    charged_fixes: AtomicU64::new(0),
    authentications: AtomicU64::new(0),
};

impl Env {
    async fn onboard(&self) -> (i64, String) {
        let n = CASE.fetch_add(1, Ordering::SeqCst);
        let address = email(&format!("model{n}"));
        let response = self
            .client
            .post(format!("{}/api/v1/customers/onboard", self.base))
            .json(&json!({"email": address, "name": "Model Customer", "source": "direct"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let mut conn = self.conn().await;
        let customer_id = crate::harness::customer_id_by_email(&mut conn, &address).await;
        let key = crate::harness::issue_key(&mut conn, customer_id).await;
        // Only a verified owner may add a card (no claim here: the key stays).
        diesel::sql_query("UPDATE users SET email_confirmed_at = now() WHERE customer_id = $1")
            .bind::<diesel::sql_types::BigInt, _>(customer_id)
            .execute(&mut self.conn().await)
            .await
            .unwrap();
        (customer_id, key)
    }

    async fn send(&self, key: &str, r: Report) -> (u16, Value) {
        let (issue, pr) = match r.how {
            How::IssueOnly => (Some(r.k), None),
            How::PrOnly => (None, Some(100 + r.k)),
            How::Both => (Some(r.k), Some(100 + r.k)),
        };
        let (path, body) = if r.via_phase {
            let mut data = json!({"fixed": true});
            if let Some(pr) = pr {
                data["prUrl"] = json!(format!("https://github.com/acme/api/pull/{pr}"));
            }
            (
                "/api/v1/phases/store",
                json!({"phase": "mitigation", "data": data, "repo": "acme/api",
                       "issueNumber": issue, "commitSha": SHA}),
            )
        } else {
            let mut body = json!({"github_org": "acme", "repo_name": "api"});
            if let Some(issue) = issue {
                body["issue_number"] = json!(issue);
            }
            if let Some(pr) = pr {
                body["pr_number"] = json!(pr);
            }
            ("/api/v1/fix-attempts", body)
        };
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(
            matches!(status, 200 | 201 | 402),
            "report {r:?}: {status} {value}"
        );
        (status, value)
    }

    /// POSTs one event to `/webhooks/stripe`, signed as Stripe signs.
    async fn deliver(&self, event: &Value) {
        COVERAGE.events.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(event).unwrap();
        let header = rsolv_platform::server::stripe::signature::sign(
            crate::harness::WEBHOOK_SECRET,
            Utc::now().timestamp(),
            &body,
        );
        let response = self
            .client
            .post(format!("{}/webhooks/stripe", self.base))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "webhook {event}");
    }

    async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db_url).await.unwrap()
    }

    async fn run_jobs(&self) {
        run_until_idle(&self.state).await.expect("job queue");
    }

    /// Makes every waiting job due now (as time passing would: retries
    /// after a lost answer wait for their backoff).
    async fn make_jobs_due(&self, conn: &mut AsyncPgConnection) {
        diesel::sql_query("UPDATE jobs SET run_at = now() WHERE run_at > now()")
            .execute(conn)
            .await
            .unwrap();
    }
}

/// The customer's rows as the checks need them.
struct Snapshot {
    balance: i64,
    ledger_sum: i64,
    payment_failed: bool,
    /// (id, issue, pr, billing status).
    fixes: Vec<(i64, Option<i64>, Option<i64>, String)>,
    /// (kind, idempotency key).
    ledger: Vec<(String, String)>,
    /// (id, fix id, status, payment intent, amount cents).
    charges: Vec<(i64, i64, String, Option<String>, i64)>,
    /// Overage charges: (id, status, invoice item).
    overage: Vec<(i64, String, Option<String>)>,
    /// The customer row.
    customer: rsolv_platform::server::billing::customers::Customer,
}

async fn snapshot(conn: &mut AsyncPgConnection, customer_id: i64) -> Snapshot {
    let (balance, failed_at): (i64, Option<DateTime<Utc>>) = customers::table
        .find(customer_id)
        .select((customers::credit_balance, customers::payment_failed_at))
        .first(conn)
        .await
        .unwrap();
    Snapshot {
        balance,
        ledger_sum: ledger_sum(conn, customer_id).await.unwrap(),
        payment_failed: failed_at.is_some(),
        fixes: fixes::table
            .filter(fixes::customer_id.eq(customer_id))
            .order(fixes::id.asc())
            .select((
                fixes::id,
                fixes::issue_number,
                fixes::pr_number,
                fixes::billing_status,
            ))
            .load(conn)
            .await
            .unwrap(),
        ledger: credit_ledger_entries::table
            .filter(credit_ledger_entries::customer_id.eq(customer_id))
            .select((
                credit_ledger_entries::kind,
                credit_ledger_entries::idempotency_key,
            ))
            .load(conn)
            .await
            .unwrap(),
        charges: charges::table
            .filter(charges::customer_id.eq(customer_id))
            .order(charges::id.asc())
            .select((
                charges::id,
                charges::fix_id,
                charges::status,
                charges::stripe_payment_intent_id,
                charges::amount_cents,
            ))
            .load(conn)
            .await
            .unwrap(),
        overage: charges::table
            .filter(charges::customer_id.eq(customer_id))
            .filter(charges::kind.eq("overage"))
            .order(charges::id.asc())
            .select((
                charges::id,
                charges::status,
                charges::stripe_invoice_item_id,
            ))
            .load(conn)
            .await
            .unwrap(),
        customer: find_customer(conn, customer_id).await.unwrap(),
    }
}

impl Snapshot {
    fn rows_of(&self, k: i64) -> Vec<i64> {
        self.fixes
            .iter()
            .filter(|f| f.1 == Some(k) || f.2 == Some(100 + k))
            .map(|f| f.0)
            .collect()
    }

    fn live_charges(&self, fix_id: i64) -> usize {
        self.charges
            .iter()
            .filter(|c| c.1 == fix_id && c.2 != "failed")
            .count()
    }
}

/// Every invariant, after operation `step` (for the message).
fn check(s: &Snapshot, model: &mut Model, mem: &MemProcessor, step: &str) {
    assert_eq!(
        s.balance, s.ledger_sum,
        "{step}: cached balance differs from the ledger"
    );
    assert!(s.balance >= 0, "{step}: negative balance {}", s.balance);

    // One fix per identity, as the identity rules say.
    for k in 1..=3 {
        let rows = s.rows_of(k);
        let expected = model.rows[k as usize];
        if expected == Rows::Linked && rows.len() == 2 {
            // The documented exception: both rows carry a card charge (of
            // any status) and are left apart for an admin.
            assert!(
                rows.iter().all(|id| s.charges.iter().any(|c| c.1 == *id)),
                "{step}: fix {k} reported with both numbers is still two rows {rows:?} \
                 without card charges on both: {:?}",
                s.charges
            );
            model.rows[k as usize] = Rows::Two;
            continue;
        }
        assert_eq!(
            rows.len(),
            expected.count(),
            "{step}: fix {k} has rows {rows:?}, the model expects {expected:?}; fixes {:?}",
            s.fixes
        );
    }
    assert_eq!(
        s.fixes.len(),
        (1..=3).map(|k| s.rows_of(k).len()).sum::<usize>(),
        "{step}: a fix row belongs to no reported identity: {:?}",
        s.fixes
    );

    // Idempotency keys are unique per customer.
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (_, key) in &s.ledger {
        *keys.entry(key).or_insert(0) += 1;
    }
    assert!(
        keys.values().all(|n| *n == 1),
        "{step}: a ledger idempotency key is used twice: {:?}",
        s.ledger
    );

    let intents = mem.intents_per_charge();
    for (id, _, _, status) in &s.fixes {
        let consumed = s
            .ledger
            .iter()
            .filter(|(kind, key)| kind == "fix_consumed" && *key == format!("fix:{id}"))
            .count();
        let succeeded = s
            .charges
            .iter()
            .filter(|c| c.1 == *id && c.2 == "succeeded")
            .count();
        match status.as_str() {
            "credit" => {
                assert_eq!(consumed, 1, "{step}: credit fix {id} without its one debit");
                assert_eq!(succeeded, 0, "{step}: credit fix {id} was also charged");
            }
            "charged" => {
                assert_eq!(succeeded, 1, "{step}: charged fix {id}: {:?}", s.charges);
                assert_eq!(consumed, 1, "{step}: charged fix {id} without its debit");
            }
            _ => {}
        }
        assert!(
            s.live_charges(*id) <= 1,
            "{step}: fix {id} has more than one live charge: {:?}",
            s.charges
        );
    }
    for (charge_id, ..) in &s.charges {
        let n = intents.get(charge_id).copied().unwrap_or(0);
        assert!(
            n <= 1,
            "{step}: charge {charge_id} has {n} PaymentIntents at the processor"
        );
    }

    // Pro credits: only for a paid creation or renewal invoice of this
    // customer with money collected (at most once: keys are unique above).
    let state = mem.lock();
    for (kind, key) in &s.ledger {
        let Some(invoice) = key.strip_prefix("invoice:") else {
            continue;
        };
        assert_eq!(kind, "subscription_grant", "{step}: {key} is a {kind}");
        let found = state.invoices.iter().find(|v| v.id == invoice);
        assert!(
            found.is_some_and(|v| v.pays_for_a_period()
                && Some(&v.processor_customer_id) == s.customer.stripe_customer_id.as_ref()),
            "{step}: grant {key} for an invoice that pays for no period of this customer: {found:?}"
        );
    }
}

/// A refusal the portal shows the customer (no card, already subscribed,
/// nothing to cancel): part of the model, not a failure.
fn refused_or_done<T: std::fmt::Debug>(what: &str, result: Result<T, BillingError>) {
    match result {
        Ok(_) | Err(BillingError::Invalid(_)) => {}
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// A permutation of `0..n` from `seed` (a small LCG: reproducible).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (x >> 33) as usize % (i + 1));
    }
    order
}

async fn apply(
    env: &Env,
    customer_id: i64,
    cus: &str,
    key: &str,
    i: usize,
    op: &Op,
    model: &mut Model,
) {
    let pricing = &env.state.config.pricing;
    match op {
        Op::Subscribe => {
            let mut conn = env.conn().await;
            refused_or_done(
                "subscribe",
                subscribe_pro(
                    env.mem.as_ref(),
                    "price_pro",
                    &mut conn,
                    pricing,
                    customer_id,
                )
                .await,
            );
        }
        Op::Cancel { at_period_end } => {
            let mut conn = env.conn().await;
            refused_or_done(
                "cancel",
                cancel(
                    env.mem.as_ref(),
                    &mut conn,
                    &env.state.config.pricing,
                    customer_id,
                    *at_period_end,
                )
                .await,
            );
        }
        Op::Resume => {
            let mut conn = env.conn().await;
            refused_or_done(
                "resume",
                resume(
                    env.mem.as_ref(),
                    &mut conn,
                    &env.state.config.pricing,
                    customer_id,
                )
                .await,
            );
        }
        Op::Renew => env.mem.renew(cus),
        Op::PayInvoice => env.mem.pay_open_invoice(cus),
        Op::BecomePro => unreachable!("expanded before the case runs"),
        Op::Deliver { seed, duplicate } => {
            let events = env.mem.take_events();
            for j in shuffled(events.len(), *seed) {
                env.deliver(&events[j]).await;
                if *duplicate {
                    env.deliver(&events[j]).await;
                }
            }
        }
        Op::Report(r) => {
            env.send(key, *r).await;
            model.rows[r.k as usize] = model.rows[r.k as usize].after(r.how);
        }
        Op::Duplicate(r) => {
            env.send(key, *r).await;
            env.send(key, *r).await;
            model.rows[r.k as usize] = model.rows[r.k as usize].after(r.how);
        }
        Op::Race(a, b) => {
            tokio::join!(env.send(key, *a), env.send(key, *b));
            // Serialised by the customer's lock; the model's outcome is the
            // same in either order.
            model.rows[a.k as usize] = model.rows[a.k as usize].after(a.how);
            model.rows[b.k as usize] = model.rows[b.k as usize].after(b.how);
        }
        Op::AddCard { declines } => {
            save_card(env, customer_id, |mem, seti| {
                mem.confirm_setup(seti, *declines)
            })
            .await;
            model.card = if *declines {
                Card::Declining
            } else {
                Card::Working
            };
        }
        Op::AddAuthCard => {
            save_card(env, customer_id, |mem, seti| {
                mem.confirm_setup_needing_authentication(seti)
            })
            .await;
            model.card = Card::NeedsAuthentication;
        }
        Op::Authenticate { success } => {
            use rsolv_platform::server::billing::authentication::complete_authentication;
            let mut conn = env.conn().await;
            let waiting: Option<(i64, Option<String>)> = charges::table
                .filter(charges::customer_id.eq(customer_id))
                .filter(charges::status.eq("requires_action"))
                .order(charges::id.asc())
                .select((charges::id, charges::stripe_payment_intent_id))
                .first(&mut conn)
                .await
                .optional()
                .expect("charges");
            if let Some((charge_id, Some(pi))) = waiting {
                COVERAGE.authentications.fetch_add(1, Ordering::Relaxed);
                env.mem.authenticate(&pi, *success);
                let status = complete_authentication(
                    &mut conn,
                    env.mem.as_ref(),
                    &env.state.config.pricing,
                    &env.state.config.email.links,
                    customer_id,
                    charge_id,
                )
                .await
                .expect("complete authentication");
                assert_eq!(
                    status.as_str(),
                    if *success { "succeeded" } else { "failed" },
                    "charge {charge_id} after the bank's check"
                );
            }
        }
        Op::RemoveCard => {
            let mut conn = env.conn().await;
            let (_, default) = list_cards(&mut conn, customer_id).await.expect("cards");
            if let Some(card) = default {
                refused_or_done(
                    "remove card",
                    remove_card(
                        env.mem.as_ref(),
                        &mut conn,
                        &env.state.config.pricing,
                        customer_id,
                        &card,
                    )
                    .await,
                );
            }
            // The card that pays now: the processor's default (the
            // replacement the portal chose), if any.
            let (declines, needs_auth) = {
                let s = env.mem.lock();
                (s.default_declines(cus), s.default_needs_auth(cus))
            };
            model.card = match declines {
                None => Card::None,
                Some(true) => Card::Declining,
                Some(false) if needs_auth => Card::NeedsAuthentication,
                Some(false) => Card::Working,
            };
        }
        Op::Grant { n } => {
            let mut conn = env.conn().await;
            adjust_credits(
                &mut conn,
                &env.state.config.pricing,
                &Admin::cli(),
                customer_id,
                *n,
                "model test grant",
                &format!("model-{customer_id}-{i}"),
            )
            .await
            .expect("admin grant");
        }
        Op::RunJobs { lose_first_answer } => {
            env.mem.lock().lose_next_answer = *lose_first_answer;
            env.run_jobs().await;
            env.mem.lock().lose_next_answer = false;
        }
        Op::Refund { pick } => {
            let mut conn = env.conn().await;
            let s = snapshot(&mut conn, customer_id).await;
            let paid: Vec<_> = s
                .charges
                .iter()
                .filter(|c| c.2 == "succeeded" && c.3.is_some())
                .collect();
            if let Some((_, _, _, Some(pi), amount)) = paid.get(*pick).map(|c| (*c).clone()) {
                let refund = RefundSnapshot {
                    processor_charge_id: format!("ch_{pi}"),
                    payment_intent_id: Some(pi.clone()),
                    amount_cents: amount,
                    amount_refunded_cents: amount,
                };
                let outcome = conn
                    .transaction(async |c| apply_refund(c, &refund).await)
                    .await
                    .expect("refund");
                assert!(
                    matches!(outcome, RefundOutcome::Refunded { .. }),
                    "{outcome:?}"
                );
            }
        }
    }
}

/// Delivers every waiting event in order and runs every job, retries
/// included, until nothing is left.
/// Saves a card for `customer_id` as the portal does (SetupIntent, the
/// customer's confirmation through `confirm`, then `add_card` with consent).
async fn save_card(env: &Env, customer_id: i64, confirm: impl FnOnce(&MemProcessor, &str)) {
    let mut conn = env.conn().await;
    let setup = begin_card_setup(env.mem.as_ref(), &mut conn, customer_id)
        .await
        .expect("card setup");
    confirm(env.mem.as_ref(), &setup.id);
    add_card(
        env.mem.as_ref(),
        &mut conn,
        &env.state.config.pricing,
        customer_id,
        &setup.id,
        &Consent {
            given: true,
            user_id: None,
            ip: None,
            user_agent: Some("model test".into()),
        },
    )
    .await
    .expect("add card");
}

async fn drain(env: &Env, conn: &mut AsyncPgConnection) {
    for _ in 0..3 {
        for event in env.mem.take_events() {
            env.deliver(&event).await;
        }
        env.make_jobs_due(conn).await;
        env.run_jobs().await;
    }
}

async fn run_case(env: &Env, ops: &[Op]) {
    let (customer_id, key) = env.onboard().await;
    env.run_jobs().await; // the processor's Customer
    let mut model = Model {
        rows: [Rows::None; 4],
        card: Card::None,
    };
    let mut conn = env.conn().await;
    let cus = find_customer(&mut conn, customer_id)
        .await
        .unwrap()
        .stripe_customer_id
        .expect("the processor's customer is recorded");
    for (i, op) in expand(ops).iter().enumerate() {
        apply(env, customer_id, &cus, &key, i, op, &mut model).await;
        let s = snapshot(&mut conn, customer_id).await;
        check(&s, &mut model, &env.mem, &format!("after op {i} {op:?}"));
    }
    drain(env, &mut conn).await;
    let s = snapshot(&mut conn, customer_id).await;
    check(&s, &mut model, &env.mem, "after the drain");

    // The customer's subscription is the processor's latest one, in its
    // current state, whatever order the events came in.
    let (latest, paid_periods, items_paid) = {
        let state = env.mem.lock();
        let latest = state.latest_sub(&cus).map(|i| state.subs[i].0.clone());
        let paid_periods: Vec<String> = latest
            .iter()
            .flat_map(|sub| {
                state
                    .invoices
                    .iter()
                    .filter(|v| {
                        v.subscription_id.as_ref() == Some(&sub.id) && v.pays_for_a_period()
                    })
                    .map(|v| v.id.clone())
            })
            .collect();
        let items_paid: HashMap<String, bool> = state
            .items
            .iter()
            .map(|(item, _, _)| {
                let paid = item
                    .invoice
                    .as_ref()
                    .is_some_and(|inv| state.invoices.iter().any(|v| &v.id == inv && v.paid));
                (item.id.clone(), paid)
            })
            .collect();
        (latest, paid_periods, items_paid)
    };
    if let Some(sub) = &latest {
        assert_eq!(
            (
                s.customer.stripe_subscription_id.as_deref(),
                s.customer.subscription_status
            ),
            (Some(sub.id.as_str()), Some(sub.status)),
            "after the drain: the customer's subscription differs from the processor's {sub:?}"
        );
        // Every period the open subscription was paid for is granted.
        if sub.status.counts_as_pro() {
            for invoice in &paid_periods {
                let key = format!("invoice:{invoice}");
                assert!(
                    s.ledger.iter().any(|(_, k)| *k == key),
                    "after the drain: paid invoice {invoice} of the open subscription granted no \
                     credits; ledger {:?}",
                    s.ledger
                );
            }
        }
    }
    // An overage charge is paid exactly when its invoice item's invoice is.
    for (id, status, item) in &s.overage {
        assert_ne!(
            status, "pending",
            "after the drain: overage charge {id} still pending"
        );
        if let Some(item) = item {
            let paid = items_paid.get(item).copied().unwrap_or(false);
            assert_eq!(
                status == "succeeded" || status == "refunded",
                paid,
                "after the drain: overage charge {id} is {status}, its item {item} paid: {paid}"
            );
        }
    }

    // No fix left unpaid, without a charge on its way, while the customer
    // can pay.
    let pro = s.customer.stripe_subscription_id.is_some()
        && s.customer
            .subscription_status
            .is_some_and(SubscriptionStatus::counts_as_pro);
    let granted = rsolv_platform::server::billing::subscriptions::period_credits_granted(
        &mut conn,
        customer_id,
    )
    .await
    .unwrap();
    let can_pay = s.balance > 0
        || if pro {
            granted
        } else {
            // A card that needs authentication still gets a charge for
            // every fix (it waits for the customer, live).
            matches!(model.card, Card::Working | Card::NeedsAuthentication) && !s.payment_failed
        };
    let unpaid: Vec<_> = s
        .fixes
        .iter()
        .filter(|f| f.3 == "unpaid" && s.live_charges(f.0) == 0)
        .collect();
    assert!(
        !can_pay || unpaid.is_empty(),
        "after the drain: fixes {unpaid:?} unpaid although the customer can pay \
         (balance {}, card {:?}, payment failed {}, pro {pro}, period granted {granted}); charges {:?}",
        s.balance,
        model.card,
        s.payment_failed,
        s.charges
    );
    let count = |n: usize| n as u64;
    COVERAGE.subscriptions.fetch_add(
        count(
            env.mem
                .lock()
                .subs
                .iter()
                .filter(|x| x.0.processor_customer_id == cus)
                .count(),
        ),
        Ordering::Relaxed,
    );
    COVERAGE.grants.fetch_add(
        count(
            s.ledger
                .iter()
                .filter(|(_, k)| k.starts_with("invoice:"))
                .count(),
        ),
        Ordering::Relaxed,
    );
    COVERAGE.overage_paid.fetch_add(
        count(s.overage.iter().filter(|o| o.1 == "succeeded").count()),
        Ordering::Relaxed,
    );
    COVERAGE.charged_fixes.fetch_add(
        count(s.fixes.iter().filter(|f| f.3 == "charged").count()),
        Ordering::Relaxed,
    );
    let pending: Vec<_> = s.charges.iter().filter(|c| c.2 == "pending").collect();
    assert!(
        pending.is_empty(),
        "after the drain: charges still pending {pending:?}"
    );
}

/// Failing sequences the random search found, kept as fixed cases.
fn regressions() -> Vec<Vec<Op>> {
    vec![
        // Pro cancelled at the period end, the period renewed (the
        // subscription ends; its events not delivered yet), then a fix:
        // recorded while the platform still saw Pro with the period's
        // credits not granted, it stayed unpaid once Pro had ended, although
        // the card worked (fixed: applying a subscription settles unpaid
        // fixes under the plan in force).
        vec![
            Op::BecomePro,
            Op::Renew,
            Op::Cancel {
                at_period_end: true,
            },
            Op::Renew,
            Op::Race(
                Report {
                    k: 1,
                    how: How::IssueOnly,
                    via_phase: true,
                },
                Report {
                    k: 1,
                    how: How::PrOnly,
                    via_phase: false,
                },
            ),
        ],
    ]
}

#[test]
fn money_invariants_hold_for_random_operation_sequences() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(TestDb::new());
    let mem = Arc::new(MemProcessor::default());
    let env = runtime.block_on(async {
        // No free credits and one Pro credit per period, so fixes beyond
        // grants go to the card (or, on Pro, to overage) often; the key
        // only lets the Stripe-calling jobs be claimed (calls go to `mem`).
        let config = stripe_config(
            &db.url,
            "http://127.0.0.1:9",
            &[
                ("PRICING_TRIAL_CREDITS", "0"),
                ("PRICING_BILLING_BONUS_CREDITS", "0"),
                ("PRICING_PRO_CREDITS_PER_PERIOD", "1"),
                ("RATE_LIMIT_ACTION_PER_HOUR", "1000000"),
                ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1000000"),
            ],
        );
        let processor: Arc<dyn PaymentProcessor> = mem.clone();
        let state = AppState::new(config, leptos_options(), processor).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app =
            router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Env {
            state,
            mem: mem.clone(),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            db_url: db.url.clone(),
        }
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let started = std::time::Instant::now();
    // Sequences the random search once found failing, run every time first.
    for ops in regressions() {
        runtime.block_on(run_case(&env, &ops));
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..25), |ops| {
        runtime.block_on(run_case(&env, &ops));
        Ok(())
    });
    let c = |n: &AtomicU64| n.load(Ordering::Relaxed);
    eprintln!(
        "model test: {cases} cases in {:.1} s; {} subscriptions, {} webhook deliveries, \
         {} Pro grants, {} overage charges paid, {} fixes charged, {} bank checks",
        started.elapsed().as_secs_f64(),
        c(&COVERAGE.subscriptions),
        c(&COVERAGE.events),
        c(&COVERAGE.grants),
        c(&COVERAGE.overage_paid),
        c(&COVERAGE.charged_fixes),
        c(&COVERAGE.authentications),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!("{reason}\nminimal failing operation sequence:\n{ops:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
    drop(env);
    runtime.shutdown_background();
    drop(db);
}
