//! The [`PaymentProcessor`] port implemented over Stripe (and localstripe,
//! the same code with another base URL): wire structs in
//! [`super::billing_api`], translated here into the domain's types, and
//! Stripe's errors into [`ProcessorError`].
//!
//! Localstripe quirks handled here: `Idempotency-Key` is ignored (so the
//! domain never relies on it alone: it looks objects up by our metadata and
//! leases a charge while creating); a SetupIntent's confirm does not attach
//! the card (the domain attaches it explicitly); detaching a card already
//! detached answers 400 (treated as done); PaymentIntents are found through
//! the customer's charges list; invoices keep their subscription in
//! `subscription` (older API) or `parent.subscription_details`; lists reject
//! `created[gte]` (filtered here instead).

use crate::server::billing::ports::{
    BillingReason, CancelMode, CardSnapshot, ChargeAuthentication, ChargeRequest,
    InvoiceItemRequest, InvoiceSnapshot, NewProcessorCustomer, PaymentProcessor, ProcessorCharge,
    ProcessorChargeStatus, ProcessorCustomer, ProcessorError, ProcessorInvoiceItem,
    SetupIntentSnapshot, SetupStatus, SubscribeRequest, SubscriptionSnapshot,
};
use crate::server::stripe::billing_api::{
    p, path_id, IdRef, Invoice, InvoiceItem, List, PaymentIntent, PaymentMethod, SetupIntent,
    Subscription,
};
use crate::server::stripe::client::{StripeApi, StripeCallError, StripeCustomer};
use crate::server::stripe::{StripeSettings, CHARGE_ID_METADATA, CUSTOMER_ID_METADATA};
use crate::types::values::SubscriptionStatus;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use stripe_client_core::StripeMethod;

impl From<StripeCallError> for ProcessorError {
    /// Stripe's answer → the domain's: only a `card_error` (HTTP 402) is a
    /// decline; 409 a conflict; 429, 5xx and transport failures an outage;
    /// 404 / `resource_missing` not found; 401, 403 and other 4xx our
    /// mistake. The key never appears in a message (Stripe's 401 message
    /// quotes part of it, so it is dropped).
    fn from(error: StripeCallError) -> Self {
        match error {
            StripeCallError::Disabled | StripeCallError::NotConfigured => Self::Disabled,
            StripeCallError::Transport(message) => Self::Unavailable(message),
            StripeCallError::Api {
                status,
                message,
                error_type,
                code,
                decline_code,
                ..
            } => {
                if status == 402 || error_type.as_deref() == Some("card_error") {
                    Self::Declined { code, decline_code }
                } else if status == 409 {
                    Self::Conflict(message)
                } else if status == 429 || status >= 500 {
                    Self::Unavailable(format!("Stripe answered {status}: {message}"))
                } else if status == 401 || status == 403 {
                    Self::Misconfigured(format!(
                        "Stripe rejected the API key ({status}): check STRIPE_SECRET_KEY"
                    ))
                } else if status == 404 || code.as_deref() == Some("resource_missing") {
                    Self::NotFound(message)
                } else {
                    Self::Misconfigured(format!(
                        "Stripe answered {status} ({}): {message}",
                        code.or(error_type).unwrap_or_else(|| "no code".into())
                    ))
                }
            }
        }
    }
}

/// The Stripe payment processor. Checks the `billing_enabled` kill switch
/// and the key before every call ([`ProcessorError::Disabled`]); the HTTP
/// client is built on first use and reused.
pub struct StripeProcessor {
    settings: StripeSettings,
    api: OnceLock<StripeApi>,
}

impl std::fmt::Debug for StripeProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProcessor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn at(unix: Option<i64>) -> Option<DateTime<Utc>> {
    unix.and_then(|s| DateTime::from_timestamp(s, 0))
}

fn id_of(r: &Option<IdRef>) -> Option<String> {
    r.as_ref().map(|IdRef(id)| id.clone())
}

/// Stripe's error code for an off-session payment the bank wants the
/// customer to authenticate.
const AUTHENTICATION_REQUIRED: &str = "authentication_required";

/// A PaymentIntent in the domain's words (see
/// [`ProcessorChargeStatus`]; both of Stripe's shapes of "needs the
/// customer's authentication" are [`ProcessorChargeStatus::RequiresAction`]).
pub fn charge_from_intent(intent: PaymentIntent) -> ProcessorCharge {
    let status = match intent.status.as_str() {
        "succeeded" | "requires_capture" => ProcessorChargeStatus::Succeeded,
        "processing" => ProcessorChargeStatus::Processing,
        "canceled" => ProcessorChargeStatus::Canceled,
        // The bank wants the customer to authenticate (3-D Secure):
        // localstripe's shape (and Stripe's for an on-session confirm).
        "requires_action" => ProcessorChargeStatus::RequiresAction,
        other => match &intent.last_payment_error {
            // Stripe's off-session shape: the attempt failed with
            // `authentication_required` and the PaymentIntent waits for a
            // payment method (`requires_payment_method`); the customer can
            // still complete it on-session with the same card.
            Some(e)
                if other == "requires_payment_method"
                    && e.code.as_deref() == Some(AUTHENTICATION_REQUIRED) =>
            {
                ProcessorChargeStatus::RequiresAction
            }
            Some(e) if e.error_type.as_deref().is_none_or(|t| t == "card_error") => {
                ProcessorChargeStatus::Declined {
                    code: e.code.clone(),
                    decline_code: e.decline_code.clone(),
                }
            }
            _ => ProcessorChargeStatus::Incomplete(other.to_owned()),
        },
    };
    ProcessorCharge {
        charge_id: intent
            .metadata
            .get(CHARGE_ID_METADATA)
            .and_then(|v| v.parse().ok()),
        customer: id_of(&intent.customer),
        created: at(intent.created),
        currency: intent.currency,
        amount_cents: intent.amount,
        status,
        id: intent.id,
    }
}

/// The PaymentIntent of a 402 card error `authentication_required` (an
/// off-session payment the bank wants the customer to authenticate), when
/// Stripe named it; `None` for every other error.
fn authentication_required(error: &StripeCallError) -> Option<String> {
    match error {
        StripeCallError::Api {
            status: 402,
            code: Some(code),
            payment_intent: Some(pi),
            ..
        } if code == AUTHENTICATION_REQUIRED => Some(pi.clone()),
        _ => None,
    }
}

fn customer_from(c: StripeCustomer) -> ProcessorCustomer {
    ProcessorCustomer {
        customer_id: c.rsolv_customer_id(),
        id: c.id,
        email: c.email,
    }
}

fn setup_from(s: SetupIntent) -> SetupIntentSnapshot {
    SetupIntentSnapshot {
        customer: id_of(&s.customer),
        payment_method: id_of(&s.payment_method),
        status: if s.status == "succeeded" {
            SetupStatus::Succeeded
        } else {
            SetupStatus::Other(s.status)
        },
        client_secret: s.client_secret,
        id: s.id,
    }
}

fn card_from(pm: PaymentMethod) -> CardSnapshot {
    let card = pm.card.unwrap_or_default();
    CardSnapshot {
        customer: id_of(&pm.customer),
        id: pm.id,
        brand: card.brand,
        last4: card.last4,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
    }
}

fn item_from(i: InvoiceItem) -> ProcessorInvoiceItem {
    ProcessorInvoiceItem {
        charge_id: i
            .metadata
            .get(CHARGE_ID_METADATA)
            .and_then(|v| v.parse().ok()),
        invoice: id_of(&i.invoice),
        id: i.id,
        amount_cents: i.amount,
    }
}

/// A Subscription in the domain's words, as it was at `observed_at`.
///
/// Errors: [`ProcessorError::Unavailable`] without a customer or with a
/// status outside Stripe's list (an answer we cannot use).
pub fn subscription_from(
    s: Subscription,
    observed_at: DateTime<Utc>,
) -> Result<SubscriptionSnapshot, ProcessorError> {
    let Some(processor_customer_id) = id_of(&s.customer) else {
        return Err(ProcessorError::Unavailable(format!(
            "subscription {} without a customer",
            s.id
        )));
    };
    let status = SubscriptionStatus::parse(&s.status)
        .map_err(|e| ProcessorError::Unavailable(format!("subscription {}: {}", s.id, e.0)))?;
    Ok(SubscriptionSnapshot {
        customer_id: s
            .metadata
            .get(CUSTOMER_ID_METADATA)
            .and_then(|v| v.parse().ok()),
        processor_customer_id,
        status,
        current_period_start: at(s.period_start()),
        current_period_end: at(s.period_end()),
        latest_invoice: id_of(&s.latest_invoice),
        created: at(s.created),
        cancel_at_period_end: s.cancel_at_period_end,
        id: s.id,
        observed_at,
    })
}

/// An Invoice in the domain's words, as it was at `observed_at`.
///
/// Errors: [`ProcessorError::Unavailable`] without a customer.
pub fn invoice_from(
    i: Invoice,
    observed_at: DateTime<Utc>,
) -> Result<InvoiceSnapshot, ProcessorError> {
    let Some(processor_customer_id) = id_of(&i.customer) else {
        return Err(ProcessorError::Unavailable(format!(
            "invoice {} without a customer",
            i.id
        )));
    };
    let paid = i.is_paid();
    let attempt_count = i.attempt_count.unwrap_or(0);
    let attempted = i.attempted == Some(true) || attempt_count > 0;
    Ok(InvoiceSnapshot {
        processor_customer_id,
        subscription_id: i.subscription_id(),
        invoice_item_ids: i.invoice_item_ids(),
        billing_reason: i.inferred_billing_reason().map(BillingReason::parse),
        period_end: at(i.subscription_period_end()),
        payment_failed: !paid && attempted && i.status.as_deref() == Some("open"),
        paid,
        attempt_count,
        created: at(i.created.or(i.date)),
        number: i.number,
        status: i.status,
        amount_due_cents: i.amount_due,
        amount_paid_cents: i.amount_paid,
        currency: i.currency.unwrap_or_else(|| "usd".to_owned()),
        // A link from outside: kept only when it is a plain https URL.
        hosted_url: i
            .hosted_invoice_url
            .as_deref()
            .and_then(crate::types::urls::safe_href),
        pdf_url: i
            .invoice_pdf
            .as_deref()
            .and_then(crate::types::urls::safe_href),
        id: i.id,
        observed_at,
    })
}

impl StripeProcessor {
    /// A processor over `settings` (no call is made until used).
    pub fn new(settings: StripeSettings) -> Self {
        Self {
            settings,
            api: OnceLock::new(),
        }
    }

    /// The client, when billing is on and a key is set.
    fn api(&self) -> Result<&StripeApi, ProcessorError> {
        if !self.settings.can_call_stripe() {
            return Err(ProcessorError::Disabled);
        }
        if let Some(api) = self.api.get() {
            return Ok(api);
        }
        let built = StripeApi::new(&self.settings)?;
        // A concurrent first call may have won: either client will do.
        let _ = self.api.set(built);
        self.api
            .get()
            .ok_or_else(|| ProcessorError::Unavailable("no Stripe client".into()))
    }

    /// The `created[gte]` filter of a list; localstripe rejects it
    /// ("Unexpected created"), so there the list is filtered here only.
    fn created_since(&self, since: DateTime<Utc>) -> Vec<(String, String)> {
        if self.settings.is_local_stand_in() {
            Vec::new()
        } else {
            vec![("created[gte]".to_owned(), since.timestamp().to_string())]
        }
    }

    /// Every page of a list at `path` with `params` (at most `max_pages`
    /// pages of 100).
    async fn list_all<T>(
        &self,
        path: &str,
        params: &[(String, String)],
        max_pages: usize,
        id: impl Fn(&T) -> String,
    ) -> Result<Vec<T>, ProcessorError>
    where
        T: serde::de::DeserializeOwned,
    {
        let api = self.api()?;
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..max_pages {
            let mut page_params = params.to_vec();
            page_params.push(("limit".into(), "100".into()));
            if let Some(a) = &after {
                page_params.push(("starting_after".into(), a.clone()));
            }
            let page: List<T> = api
                .call(StripeMethod::Get, path, &page_params, None)
                .await?;
            let more = page.has_more;
            after = page.data.last().map(&id);
            out.extend(page.data);
            if !more || after.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl PaymentProcessor for StripeProcessor {
    async fn create_customer(
        &self,
        customer: &NewProcessorCustomer,
    ) -> Result<ProcessorCustomer, ProcessorError> {
        let created = self
            .api()?
            .create_customer(customer.customer_id, &customer.email, &customer.name)
            .await?;
        Ok(customer_from(created))
    }

    async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<ProcessorCustomer>, ProcessorError> {
        let found = self.api()?.find_customers(customer_id, email).await?;
        Ok(found.into_iter().map(customer_from).collect())
    }

    async fn create_setup_intent(
        &self,
        customer: &str,
        customer_id: i64,
        idempotency_key: &str,
    ) -> Result<SetupIntentSnapshot, ProcessorError> {
        let intent = self
            .api()?
            .create_setup_intent(customer, customer_id, idempotency_key)
            .await?;
        Ok(setup_from(intent))
    }

    async fn setup_intent(&self, id: &str) -> Result<SetupIntentSnapshot, ProcessorError> {
        Ok(setup_from(self.api()?.get_setup_intent(id).await?))
    }

    async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<CardSnapshot, ProcessorError> {
        let pm = self
            .api()?
            .attach_payment_method(payment_method, customer)
            .await?;
        Ok(card_from(pm))
    }

    async fn detach_payment_method(&self, payment_method: &str) -> Result<(), ProcessorError> {
        match self.api()?.detach_payment_method(payment_method).await {
            // Already detached (Stripe answers 400, localstripe 400 or 404):
            // the wanted state.
            Ok(_)
            | Err(StripeCallError::Api {
                status: 400 | 404, ..
            }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    async fn set_default_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<(), ProcessorError> {
        Ok(self
            .api()?
            .set_default_payment_method(customer, payment_method)
            .await?)
    }

    async fn charge_off_session(
        &self,
        charge: &ChargeRequest,
    ) -> Result<ProcessorCharge, ProcessorError> {
        let answer = self
            .api()?
            .create_payment_intent(
                &charge.customer,
                &charge.payment_method,
                charge.amount_cents,
                &charge.currency,
                charge.charge_id,
                &charge.metadata,
                &charge.idempotency_key,
            )
            .await;
        match answer {
            Ok(intent) => Ok(charge_from_intent(intent)),
            // Stripe answers an off-session payment the bank wants
            // authenticated with a 402 naming the PaymentIntent it left
            // waiting: not a decline, the customer can complete it.
            Err(error) => match authentication_required(&error) {
                Some(payment_intent) => Ok(ProcessorCharge {
                    id: payment_intent,
                    status: ProcessorChargeStatus::RequiresAction,
                    amount_cents: charge.amount_cents,
                    currency: Some(charge.currency.clone()),
                    charge_id: Some(charge.charge_id),
                    customer: Some(charge.customer.clone()),
                    created: None,
                }),
                None => Err(error.into()),
            },
        }
    }

    async fn find_charges(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        let found = self
            .api()?
            .find_payment_intents(customer, charge_id)
            .await?;
        Ok(found.into_iter().map(charge_from_intent).collect())
    }

    async fn payment_intent(&self, id: &str) -> Result<ProcessorCharge, ProcessorError> {
        Ok(charge_from_intent(
            self.api()?.get_payment_intent(id).await?,
        ))
    }

    async fn charge_authentication(
        &self,
        id: &str,
    ) -> Result<ChargeAuthentication, ProcessorError> {
        let intent = self.api()?.get_payment_intent(id).await?;
        let client_secret = intent.client_secret.clone().ok_or_else(|| {
            ProcessorError::Unavailable(format!("PaymentIntent {id} without a client secret"))
        })?;
        // After an off-session `authentication_required` Stripe keeps the
        // card on the error only; localstripe keeps it on the intent.
        let payment_method = id_of(&intent.payment_method).or_else(|| {
            intent
                .last_payment_error
                .as_ref()
                .and_then(|e| id_of(&e.payment_method))
        });
        Ok(ChargeAuthentication {
            charge: charge_from_intent(intent),
            client_secret,
            payment_method,
        })
    }

    async fn charge_customer(&self, charge_id: &str) -> Result<Option<String>, ProcessorError> {
        let charge: serde_json::Value = self
            .api()?
            .call(
                StripeMethod::Get,
                &format!("/charges/{}", path_id(charge_id)?),
                &[],
                None,
            )
            .await?;
        let customer = charge.get("customer");
        Ok(customer
            .and_then(|c| c.as_str().or_else(|| c.get("id")?.as_str()))
            .filter(|c| !c.is_empty())
            .map(str::to_owned))
    }

    async fn create_invoice_item(
        &self,
        item: &InvoiceItemRequest,
    ) -> Result<ProcessorInvoiceItem, ProcessorError> {
        let created = self
            .api()?
            .create_invoice_item(
                &item.customer,
                item.subscription.as_deref(),
                item.amount_cents,
                &item.currency,
                &item.description,
                item.charge_id,
                &item.idempotency_key,
            )
            .await?;
        Ok(item_from(created))
    }

    async fn find_invoice_items(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorInvoiceItem>, ProcessorError> {
        let found = self.api()?.find_invoice_items(customer, charge_id).await?;
        Ok(found.into_iter().map(item_from).collect())
    }

    async fn subscribe(
        &self,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        // A `price_…` is sent as a price, anything else as a Plan
        // (localstripe has Plans, not Prices; there the plan is created
        // when missing).
        if self.settings.is_local_stand_in() && !request.price.starts_with("price_") {
            self.api()?
                .ensure_local_plan(&request.price, request.amount_cents, &request.currency)
                .await?;
        }
        let item = if request.price.starts_with("price_") {
            "items[0][price]"
        } else {
            "items[0][plan]"
        };
        let sub: Subscription = self
            .api()?
            .call(
                StripeMethod::Post,
                "/subscriptions",
                &[
                    ("customer".to_owned(), request.customer.clone()),
                    (item.to_owned(), request.price.clone()),
                    (
                        format!("metadata[{CUSTOMER_ID_METADATA}]"),
                        request.customer_id.to_string(),
                    ),
                ],
                Some(&request.idempotency_key),
            )
            .await?;
        subscription_from(sub, Utc::now())
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        mode: CancelMode,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        let api = self.api()?;
        let path = format!("/subscriptions/{}", path_id(id)?);
        let sub: Subscription = match mode {
            CancelMode::AtPeriodEnd => {
                api.call(
                    StripeMethod::Post,
                    &path,
                    &p(&[("cancel_at_period_end", "true")]),
                    None,
                )
                .await?
            }
            CancelMode::Now { invoice_now } => {
                let params = if invoice_now {
                    p(&[("invoice_now", "true"), ("prorate", "false")])
                } else {
                    Vec::new()
                };
                api.call(StripeMethod::Delete, &path, &params, None).await?
            }
        };
        subscription_from(sub, Utc::now())
    }

    async fn resume_subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        let sub: Subscription = self
            .api()?
            .call(
                StripeMethod::Post,
                &format!("/subscriptions/{}", path_id(id)?),
                &p(&[("cancel_at_period_end", "false")]),
                None,
            )
            .await?;
        subscription_from(sub, Utc::now())
    }

    async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        let sub: Subscription = self
            .api()?
            .call(
                StripeMethod::Get,
                &format!("/subscriptions/{}", path_id(id)?),
                &[],
                None,
            )
            .await?;
        subscription_from(sub, Utc::now())
    }

    async fn invoice(&self, id: &str) -> Result<InvoiceSnapshot, ProcessorError> {
        invoice_from(self.api()?.get_invoice(id).await?, Utc::now())
    }

    async fn list_invoices(
        &self,
        customer: &str,
        limit: u8,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        let list = self.api()?.list_invoices(customer, limit).await?;
        let now = Utc::now();
        list.into_iter().map(|i| invoice_from(i, now)).collect()
    }

    async fn payment_intents_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        let params = self.created_since(since);
        let intents: Vec<PaymentIntent> = self
            .list_all("/payment_intents", &params, 50, |i: &PaymentIntent| {
                i.id.clone()
            })
            .await?;
        let since_unix = since.timestamp();
        Ok(intents
            .into_iter()
            .filter(|i| i.created.is_none_or(|c| c >= since_unix))
            .map(charge_from_intent)
            .collect())
    }

    async fn invoices_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        let params = self.created_since(since);
        let invoices: Vec<Invoice> = self
            .list_all("/invoices", &params, 50, |i: &Invoice| i.id.clone())
            .await?;
        let since_unix = since.timestamp();
        let now = Utc::now();
        invoices
            .into_iter()
            .filter(|i| i.created.or(i.date).is_none_or(|c| c >= since_unix))
            .map(|i| invoice_from(i, now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: u16, error_type: &str, code: Option<&str>) -> StripeCallError {
        StripeCallError::Api {
            status,
            message: "Stripe says something".into(),
            error_type: Some(error_type.into()),
            code: code.map(str::to_owned),
            decline_code: None,
            payment_intent: None,
        }
    }

    #[test]
    fn only_card_errors_are_declines() {
        let declined: ProcessorError = api_error(402, "card_error", Some("card_declined")).into();
        assert_eq!(
            declined,
            ProcessorError::Declined {
                code: Some("card_declined".into()),
                decline_code: None
            }
        );
        let cases = [
            (409, "idempotency_error", None),
            (401, "invalid_request_error", None),
            (403, "invalid_request_error", None),
            (400, "invalid_request_error", Some("parameter_missing")),
            (404, "invalid_request_error", Some("resource_missing")),
            (429, "rate_limit_error", None),
            (500, "api_error", None),
            (503, "api_error", None),
        ];
        for (status, kind, code) in cases {
            let error: ProcessorError = api_error(status, kind, code).into();
            assert!(!error.is_decline(), "{status}: {error:?}");
            assert!(error.is_retryable(), "{status}: {error:?}");
        }
        assert!(matches!(
            ProcessorError::from(api_error(409, "idempotency_error", None)),
            ProcessorError::Conflict(_)
        ));
        assert!(matches!(
            ProcessorError::from(api_error(503, "api_error", None)),
            ProcessorError::Unavailable(_)
        ));
        assert!(matches!(
            ProcessorError::from(api_error(404, "invalid_request_error", None)),
            ProcessorError::NotFound(_)
        ));
        let unauthorised = ProcessorError::from(api_error(401, "invalid_request_error", None));
        assert!(matches!(unauthorised, ProcessorError::Misconfigured(_)));
        assert!(
            !unauthorised.to_string().contains("something"),
            "no key echo"
        );
        assert!(matches!(
            ProcessorError::from(StripeCallError::Transport("timeout".into())),
            ProcessorError::Unavailable(_)
        ));
        assert_eq!(
            ProcessorError::from(StripeCallError::Disabled),
            ProcessorError::Disabled
        );
    }

    fn intent(json: serde_json::Value) -> PaymentIntent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn payment_intents_map_to_domain_statuses() {
        let paid = charge_from_intent(intent(serde_json::json!({
            "id": "pi_1", "status": "succeeded", "amount": 2900, "currency": "usd",
            "metadata": {"rsolv_charge_id": "7"}
        })));
        assert_eq!(paid.status, ProcessorChargeStatus::Succeeded);
        assert_eq!(paid.charge_id, Some(7));
        let declined = charge_from_intent(intent(serde_json::json!({
            "id": "pi_2", "status": "requires_payment_method", "amount": 2900,
            "last_payment_error": {"type": "card_error", "code": "card_declined",
                                   "decline_code": "insufficient_funds", "message": "raw"}
        })));
        assert_eq!(
            declined.status,
            ProcessorChargeStatus::Declined {
                code: Some("card_declined".into()),
                decline_code: Some("insufficient_funds".into())
            }
        );
        // Both of Stripe's shapes of "the bank wants the customer to
        // authenticate" need the customer, neither is a decline.
        let action = charge_from_intent(intent(serde_json::json!({
            "id": "pi_4", "status": "requires_action", "amount": 2900,
            "client_secret": "pi_4_secret_x"
        })));
        assert_eq!(action.status, ProcessorChargeStatus::RequiresAction);
        let off_session = charge_from_intent(intent(serde_json::json!({
            "id": "pi_5", "status": "requires_payment_method", "amount": 2900,
            "last_payment_error": {"type": "card_error", "code": "authentication_required",
                                   "payment_method": {"id": "pm_1"}}
        })));
        assert_eq!(off_session.status, ProcessorChargeStatus::RequiresAction);
        // A failed authentication is a decline (our advice says what to do).
        let failed = charge_from_intent(intent(serde_json::json!({
            "id": "pi_6", "status": "requires_payment_method", "amount": 2900,
            "last_payment_error": {"code": "payment_intent_authentication_failure"}
        })));
        assert_eq!(
            failed.status,
            ProcessorChargeStatus::Declined {
                code: Some("payment_intent_authentication_failure".into()),
                decline_code: None
            }
        );
        let secret = intent(serde_json::json!({
            "id": "pi_7", "status": "requires_action", "amount": 1, "client_secret": "pi_7_secret_x"
        }));
        assert!(!format!("{secret:?}").contains("pi_7_secret_x"));
        let unconfirmed = charge_from_intent(intent(serde_json::json!({
            "id": "pi_3", "status": "requires_confirmation", "amount": 2900
        })));
        assert_eq!(
            unconfirmed.status,
            ProcessorChargeStatus::Incomplete("requires_confirmation".into())
        );
    }

    #[test]
    fn an_off_session_authentication_required_names_its_payment_intent() {
        let error = StripeCallError::Api {
            status: 402,
            message: "This payment requires authentication".into(),
            error_type: Some("card_error".into()),
            code: Some("authentication_required".into()),
            decline_code: None,
            payment_intent: Some("pi_9".into()),
        };
        assert_eq!(authentication_required(&error).as_deref(), Some("pi_9"));
        let declined = StripeCallError::Api {
            status: 402,
            message: "Your card was declined".into(),
            error_type: Some("card_error".into()),
            code: Some("card_declined".into()),
            decline_code: None,
            payment_intent: Some("pi_10".into()),
        };
        assert_eq!(authentication_required(&declined), None);
        // Without the PaymentIntent it stays a decline (nothing to complete).
        let unnamed: ProcessorError =
            api_error(402, "card_error", Some("authentication_required")).into();
        assert!(unnamed.is_decline());
    }

    #[test]
    fn invoices_name_their_subscription_and_items_in_either_api_version() {
        let old: Invoice = serde_json::from_value(serde_json::json!({
            "id": "in_1", "customer": "cus_1", "subscription": "sub_1", "status": "paid",
            "billing_reason": "subscription_cycle", "amount_paid": 61400,
            "lines": {"data": [{"id": "ii_a"}, {"id": "il_b", "invoice_item": "ii_b"}]}
        }))
        .unwrap();
        let snapshot = invoice_from(old, Utc::now()).unwrap();
        assert_eq!(snapshot.subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(snapshot.invoice_item_ids, vec!["ii_a", "ii_b"]);
        assert!(snapshot.paid);
        let new: Invoice = serde_json::from_value(serde_json::json!({
            "id": "in_2", "customer": "cus_1", "status": "open",
            "parent": {"subscription_details": {"subscription": "sub_2"}},
            "lines": {"data": [{"id": "il_c", "parent": {"invoice_item_details": {"invoice_item": "ii_c"}}}]}
        }))
        .unwrap();
        let snapshot = invoice_from(new, Utc::now()).unwrap();
        assert_eq!(snapshot.subscription_id.as_deref(), Some("sub_2"));
        assert_eq!(snapshot.invoice_item_ids, vec!["ii_c"]);
        assert!(!snapshot.paid);
    }
}
