//! The Stripe calls of billing: SetupIntents and PaymentMethods (cards),
//! PaymentIntents (pay-as-you-go charges), invoice items (Pro overage),
//! Subscriptions, Invoices and the Pro Plan.
//!
//! They go through async-stripe's generic request builder with
//! form-encoded parameters we write ourselves, and read the answer into
//! small serde structs holding only the fields we use (see STRIPE.md: the
//! crate's typed responses reject localstripe's objects, and its generated
//! request crates are slow to build). Every call that creates or charges
//! carries an idempotency key derived from our own row id.

use crate::server::stripe::client::{StripeApi, StripeCallError};
use crate::server::stripe::{CHARGE_ID_METADATA, CUSTOMER_ID_METADATA};
use ::stripe::{IdempotencyKey, RequestStrategy};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use stripe_client_core::{RequestBuilder, StripeMethod};

/// Form parameters in Stripe's bracket notation, e.g. `("items[0][plan]", "plan_x")`.
pub type Params = Vec<(String, String)>;

fn encode(params: &[(String, String)]) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, v);
    }
    Some(out.finish())
}

/// A reference Stripe writes as an id or, expanded, as an object with an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRef(pub String);

impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        value
            .as_str()
            .map(str::to_owned)
            .or_else(|| value.get("id")?.as_str().map(str::to_owned))
            .map(IdRef)
            .ok_or_else(|| serde::de::Error::custom("not an id or an object with an id"))
    }
}

/// A SetupIntent (`seti_…`). `Debug` leaves out the client secret.
#[derive(Clone, Deserialize)]
pub struct SetupIntent {
    /// `seti_…`.
    pub id: String,
    /// Given to Stripe.js in the browser.
    pub client_secret: Option<String>,
    /// Its Stripe Customer.
    pub customer: Option<IdRef>,
    /// `requires_payment_method`, `succeeded`, …
    pub status: String,
    /// The card it set up, once confirmed.
    pub payment_method: Option<IdRef>,
}

impl std::fmt::Debug for SetupIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupIntent")
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

/// Card details of a PaymentMethod.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct CardDetails {
    /// `visa`, `mastercard`, …
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Expiry month, 1–12.
    pub exp_month: Option<i32>,
    /// Expiry year, four digits.
    pub exp_year: Option<i32>,
}

/// A PaymentMethod (`pm_…`).
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentMethod {
    /// `pm_…`.
    pub id: String,
    /// The Stripe Customer it is attached to.
    pub customer: Option<IdRef>,
    /// Card details (card payment methods only).
    #[serde(default)]
    pub card: Option<CardDetails>,
}

/// An error of a PaymentIntent's last attempt.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentError {
    /// `card_error` for a decline (localstripe may omit it).
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    /// E.g. `card_declined`.
    pub code: Option<String>,
    /// The issuer's reason, e.g. `insufficient_funds`.
    pub decline_code: Option<String>,
    /// For people (logs only: never shown to customers).
    pub message: Option<String>,
    /// The card the failed attempt used (Stripe moves it here when an
    /// off-session attempt needs authentication).
    pub payment_method: Option<IdRef>,
}

/// A PaymentIntent (`pi_…`). `Debug` leaves out the client secret.
#[derive(Clone, Deserialize)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// `succeeded`, `processing`, `requires_payment_method`, `requires_action`, …
    pub status: String,
    /// Minor units.
    pub amount: i64,
    /// Lower case.
    pub currency: Option<String>,
    /// Its Stripe Customer.
    pub customer: Option<IdRef>,
    /// Created, unix seconds.
    pub created: Option<i64>,
    /// Metadata; ours holds `rsolv_charge_id`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Why the last attempt failed.
    pub last_payment_error: Option<PaymentError>,
    /// Its card, when it has one.
    pub payment_method: Option<IdRef>,
    /// Given to Stripe.js in the customer's browser to complete an
    /// authentication (a secret: never logged, stored or put in a URL).
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for PaymentIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentIntent")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("customer", &self.customer)
            .field("created", &self.created)
            .field("metadata", &self.metadata)
            .field("last_payment_error", &self.last_payment_error)
            .field("payment_method", &self.payment_method)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An invoice item (`ii_…`).
#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceItem {
    /// `ii_…`.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// Metadata; ours holds `rsolv_charge_id`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The invoice that billed it, once billed.
    pub invoice: Option<IdRef>,
}

/// A Subscription (`sub_…`).
#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    /// `sub_…`.
    pub id: String,
    /// `active`, `past_due`, `canceled`, `incomplete`, …
    pub status: String,
    /// Its Stripe Customer.
    pub customer: Option<IdRef>,
    /// Metadata; ours holds `rsolv_customer_id`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Start of the current period, unix seconds (older API versions).
    pub current_period_start: Option<i64>,
    /// Ends at the period end when true.
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// End of the current period, unix seconds (older API versions).
    pub current_period_end: Option<i64>,
    /// Items (newer API versions keep the period here).
    pub items: Option<serde_json::Value>,
    /// The first/most recent invoice.
    pub latest_invoice: Option<IdRef>,
    /// Created, unix seconds.
    pub created: Option<i64>,
}

impl Subscription {
    /// The period start, wherever the API version keeps it.
    pub fn period_start(&self) -> Option<i64> {
        self.current_period_start.or_else(|| {
            self.items
                .as_ref()?
                .pointer("/data/0/current_period_start")?
                .as_i64()
        })
    }

    /// The period end, wherever the API version keeps it.
    pub fn period_end(&self) -> Option<i64> {
        self.current_period_end.or_else(|| {
            self.items
                .as_ref()?
                .pointer("/data/0/current_period_end")?
                .as_i64()
        })
    }
}

/// An Invoice (`in_…`).
#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    /// `in_…`.
    pub id: String,
    /// Human number, e.g. `RSOLV-0001`.
    pub number: Option<String>,
    /// `draft`, `open`, `paid`, `void`, `uncollectible`.
    pub status: Option<String>,
    /// Minor units due.
    #[serde(default)]
    pub amount_due: i64,
    /// Minor units paid.
    #[serde(default)]
    pub amount_paid: i64,
    /// Currency, lower case.
    pub currency: Option<String>,
    /// Created, unix seconds (localstripe: `date`).
    pub created: Option<i64>,
    /// Older name of `created`.
    pub date: Option<i64>,
    /// Stripe's page for the invoice (null on localstripe).
    pub hosted_invoice_url: Option<String>,
    /// The invoice's PDF (null on localstripe).
    pub invoice_pdf: Option<String>,
    /// The subscription it bills (older API versions).
    pub subscription: Option<IdRef>,
    /// Whether it is paid (older API versions).
    pub paid: Option<bool>,
    /// Its Stripe Customer.
    pub customer: Option<IdRef>,
    /// `subscription_create`, `subscription_cycle`, `manual`, …
    pub billing_reason: Option<String>,
    /// Billing period start, unix seconds.
    pub period_start: Option<i64>,
    /// Billing period end, unix seconds.
    pub period_end: Option<i64>,
    /// Newer API versions name the subscription here.
    pub parent: Option<serde_json::Value>,
    /// Its lines (first page).
    pub lines: Option<serde_json::Value>,
    /// Collection attempts so far.
    pub attempt_count: Option<i64>,
    /// Whether collection was attempted.
    pub attempted: Option<bool>,
}

impl Invoice {
    /// Whether it has been paid.
    pub fn is_paid(&self) -> bool {
        self.status.as_deref() == Some("paid") || self.paid == Some(true)
    }

    /// The subscription it bills, wherever the API version keeps it.
    pub fn subscription_id(&self) -> Option<String> {
        if let Some(IdRef(id)) = &self.subscription {
            return Some(id.clone());
        }
        let parent = self.parent.as_ref()?;
        parent
            .pointer("/subscription_details/subscription")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.get("id")?.as_str().map(str::to_owned))
            })
    }

    /// Its lines (first page), empty when absent.
    fn line_list(&self) -> &[serde_json::Value] {
        self.lines
            .as_ref()
            .and_then(|l| l.get("data")?.as_array())
            .map_or(&[], Vec::as_slice)
    }

    /// The invoice items (`ii_…`) on its lines, wherever the API version
    /// names them (`parent.invoice_item_details.invoice_item`,
    /// `invoice_item`, or a line whose own id is `ii_…`, as on localstripe).
    pub fn invoice_item_ids(&self) -> Vec<String> {
        self.line_list()
            .iter()
            .filter_map(line_invoice_item)
            .collect()
    }

    /// Why it was made; localstripe leaves `billing_reason` null, and there
    /// a subscription line that is not a proration means a period is paid
    /// (`subscription_cycle`).
    pub fn inferred_billing_reason(&self) -> Option<&str> {
        self.billing_reason.as_deref().or_else(|| {
            self.line_list()
                .iter()
                .any(|line| {
                    line.get("type").and_then(|t| t.as_str()) == Some("subscription")
                        && line.get("proration").and_then(|p| p.as_bool()) != Some(true)
                })
                .then_some("subscription_cycle")
        })
    }

    /// End of the subscription period its lines pay for (unix seconds): the
    /// latest `period.end` of a line that is not an invoice item. Stripe's
    /// invoice-level `period_end` is not that period.
    pub fn subscription_period_end(&self) -> Option<i64> {
        self.line_list()
            .iter()
            .filter(|line| line_invoice_item(line).is_none())
            .filter_map(|line| line.pointer("/period/end")?.as_i64())
            .max()
    }
}

/// The invoice item an invoice line bills, across API versions.
fn line_invoice_item(line: &serde_json::Value) -> Option<String> {
    let id_or_object = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .or_else(|| v.get("id")?.as_str().map(str::to_owned))
    };
    line.pointer("/parent/invoice_item_details/invoice_item")
        .or_else(|| line.get("invoice_item"))
        .and_then(id_or_object)
        .filter(|id| !id.is_empty())
        .or_else(|| {
            line.get("id")
                .and_then(|v| v.as_str())
                .filter(|id| id.starts_with("ii_"))
                .map(str::to_owned)
        })
}

/// A charge as Stripe lists them (to find a PaymentIntent whose answer
/// was lost).
#[derive(Debug, Clone, Deserialize)]
pub struct ChargeRef {
    /// `ch_…`.
    pub id: String,
    /// The PaymentIntent that made it.
    pub payment_intent: Option<IdRef>,
}

/// One page of a Stripe list.
#[derive(Deserialize)]
pub struct List<T> {
    /// The objects.
    pub data: Vec<T>,
    /// Whether more pages follow.
    #[serde(default)]
    pub has_more: bool,
}

impl StripeApi {
    /// One call: `method` on `/v1{path}` with form `params` (query string
    /// for GET), an idempotency key when given; the answer read as `T`.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: StripeMethod,
        path: &str,
        params: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeCallError> {
        let mut builder = RequestBuilder::new(method, path);
        match method {
            StripeMethod::Get | StripeMethod::Delete => builder.query = encode(params),
            StripeMethod::Post => builder.body = encode(params),
        }
        let mut request = builder.customize::<miniserde::json::Value>();
        if let Some(key) = idempotency_key {
            let key =
                IdempotencyKey::new(key).map_err(|e| StripeCallError::Transport(e.to_string()))?;
            request = request.request_strategy(RequestStrategy::Idempotent(key));
        }
        let value = request.send(&self.client).await?;
        let text = miniserde::json::to_string(&value);
        serde_json::from_str(&text)
            .map_err(|e| StripeCallError::Transport(format!("unreadable answer from Stripe: {e}")))
    }

    /// Creates a SetupIntent for saving a card for off-session use.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn create_setup_intent(
        &self,
        stripe_customer_id: &str,
        customer_id: i64,
        idempotency_key: &str,
    ) -> Result<SetupIntent, StripeCallError> {
        self.call(
            StripeMethod::Post,
            "/setup_intents",
            &p(&[
                ("customer", stripe_customer_id),
                ("usage", "off_session"),
                ("payment_method_types[0]", "card"),
                (
                    &format!("metadata[{CUSTOMER_ID_METADATA}]"),
                    &customer_id.to_string(),
                ),
            ]),
            Some(idempotency_key),
        )
        .await
    }

    /// Reads a SetupIntent.
    ///
    /// Errors: [`StripeCallError`] (404 for an unknown id).
    pub async fn get_setup_intent(&self, id: &str) -> Result<SetupIntent, StripeCallError> {
        self.call(
            StripeMethod::Get,
            &format!("/setup_intents/{}", path_id(id)?),
            &[],
            None,
        )
        .await
    }

    /// Reads a PaymentMethod.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn get_payment_method(&self, id: &str) -> Result<PaymentMethod, StripeCallError> {
        self.call(
            StripeMethod::Get,
            &format!("/payment_methods/{}", path_id(id)?),
            &[],
            None,
        )
        .await
    }

    /// Attaches a PaymentMethod to a Stripe Customer (localstripe's
    /// SetupIntent confirm does not; on Stripe it is a no-op when already
    /// attached to the same customer).
    ///
    /// Errors: [`StripeCallError`] (402 when the card is declined).
    pub async fn attach_payment_method(
        &self,
        id: &str,
        stripe_customer_id: &str,
    ) -> Result<PaymentMethod, StripeCallError> {
        self.call(
            StripeMethod::Post,
            &format!("/payment_methods/{}/attach", path_id(id)?),
            &p(&[("customer", stripe_customer_id)]),
            Some(&format!("payment_method:attach:{id}")),
        )
        .await
    }

    /// Detaches a PaymentMethod from its customer.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn detach_payment_method(&self, id: &str) -> Result<PaymentMethod, StripeCallError> {
        self.call(
            StripeMethod::Post,
            &format!("/payment_methods/{}/detach", path_id(id)?),
            &[],
            None,
        )
        .await
    }

    /// Sets the customer's default PaymentMethod (used by invoices).
    ///
    /// Errors: [`StripeCallError`].
    pub async fn set_default_payment_method(
        &self,
        stripe_customer_id: &str,
        payment_method_id: &str,
    ) -> Result<(), StripeCallError> {
        let _: serde_json::Value = self
            .call(
                StripeMethod::Post,
                &format!("/customers/{}", path_id(stripe_customer_id)?),
                &p(&[(
                    "invoice_settings[default_payment_method]",
                    payment_method_id,
                )]),
                None,
            )
            .await?;
        Ok(())
    }

    /// Creates and confirms an off-session PaymentIntent of `amount_cents`
    /// on `payment_method_id`, with our charge id and `metadata` in its
    /// metadata.
    ///
    /// Errors: [`StripeCallError`]; a declined card is
    /// `Api { status: 402, .. }`.
    #[expect(clippy::too_many_arguments, reason = "one Stripe object's fields")]
    pub async fn create_payment_intent(
        &self,
        stripe_customer_id: &str,
        payment_method_id: &str,
        amount_cents: i64,
        currency: &str,
        charge_id: i64,
        metadata: &BTreeMap<String, String>,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeCallError> {
        let mut params = p(&[
            ("amount", &amount_cents.to_string()),
            ("currency", currency),
            ("customer", stripe_customer_id),
            ("payment_method", payment_method_id),
            ("confirm", "true"),
            ("off_session", "true"),
            (
                &format!("metadata[{CHARGE_ID_METADATA}]"),
                &charge_id.to_string(),
            ),
        ]);
        for (k, v) in metadata {
            params.push((format!("metadata[{k}]"), v.clone()));
        }
        self.call(
            StripeMethod::Post,
            "/payment_intents",
            &params,
            Some(idempotency_key),
        )
        .await
    }

    /// Reads a PaymentIntent.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn get_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeCallError> {
        self.call(
            StripeMethod::Get,
            &format!("/payment_intents/{}", path_id(id)?),
            &[],
            None,
        )
        .await
    }

    /// The PaymentIntents of the customer's recent charges (at most 100)
    /// whose metadata names our `charge_id`: how a retry finds the
    /// PaymentIntent of an earlier attempt whose answer was lost.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn find_payment_intents(
        &self,
        stripe_customer_id: &str,
        charge_id: i64,
    ) -> Result<Vec<PaymentIntent>, StripeCallError> {
        let charges: List<ChargeRef> = self
            .call(
                StripeMethod::Get,
                "/charges",
                &p(&[("customer", stripe_customer_id), ("limit", "100")]),
                None,
            )
            .await?;
        let mut found = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for charge in charges.data {
            let Some(IdRef(pi)) = charge.payment_intent else {
                continue;
            };
            if !seen.insert(pi.clone()) {
                continue;
            }
            let intent = self.get_payment_intent(&pi).await?;
            if intent.metadata.get(CHARGE_ID_METADATA) == Some(&charge_id.to_string()) {
                found.push(intent);
            }
        }
        Ok(found)
    }

    /// Adds a pending invoice item (billed with the subscription's next
    /// invoice) with our charge id in its metadata.
    ///
    /// Errors: [`StripeCallError`].
    #[expect(clippy::too_many_arguments, reason = "one Stripe object's fields")]
    pub async fn create_invoice_item(
        &self,
        stripe_customer_id: &str,
        subscription_id: Option<&str>,
        amount_cents: i64,
        currency: &str,
        description: &str,
        charge_id: i64,
        idempotency_key: &str,
    ) -> Result<InvoiceItem, StripeCallError> {
        let mut params = p(&[
            ("customer", stripe_customer_id),
            ("amount", &amount_cents.to_string()),
            ("currency", currency),
            ("description", description),
            (
                &format!("metadata[{CHARGE_ID_METADATA}]"),
                &charge_id.to_string(),
            ),
        ]);
        if let Some(sub) = subscription_id {
            params.push(("subscription".into(), sub.into()));
        }
        self.call(
            StripeMethod::Post,
            "/invoiceitems",
            &params,
            Some(idempotency_key),
        )
        .await
    }

    /// The customer's pending invoice items whose metadata names our
    /// `charge_id`.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn find_invoice_items(
        &self,
        stripe_customer_id: &str,
        charge_id: i64,
    ) -> Result<Vec<InvoiceItem>, StripeCallError> {
        let list: List<InvoiceItem> = self
            .call(
                StripeMethod::Get,
                "/invoiceitems",
                &p(&[("customer", stripe_customer_id), ("limit", "100")]),
                None,
            )
            .await?;
        Ok(list
            .data
            .into_iter()
            .filter(|i| i.metadata.get(CHARGE_ID_METADATA) == Some(&charge_id.to_string()))
            .collect())
    }

    /// Makes sure Plan `plan` exists on a local Stripe stand-in (creating
    /// its Product and Plan at `amount_cents` of `currency` a month). Call
    /// it only against a local stand-in with a plan id: against real Stripe
    /// the operator creates the Price in the dashboard.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn ensure_local_plan(
        &self,
        plan: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<(), StripeCallError> {
        match self
            .call::<serde_json::Value>(StripeMethod::Get, &format!("/plans/{plan}"), &[], None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StripeCallError::Api { status: 404, .. }) => {}
            Err(other) => return Err(other),
        }
        let product = format!("prod_{plan}");
        let created: Result<serde_json::Value, _> = self
            .call(
                StripeMethod::Post,
                "/products",
                &p(&[("id", &product), ("name", "RSOLV Pro")]),
                None,
            )
            .await;
        if let Err(error) = created {
            // Already created by a concurrent call: fine.
            if !matches!(error, StripeCallError::Api { status: 400, .. }) {
                return Err(error);
            }
        }
        let created: Result<serde_json::Value, _> = self
            .call(
                StripeMethod::Post,
                "/plans",
                &p(&[
                    ("id", plan),
                    ("product", &product),
                    ("amount", &amount_cents.to_string()),
                    ("currency", currency),
                    ("interval", "month"),
                ]),
                None,
            )
            .await;
        match created {
            Ok(_) | Err(StripeCallError::Api { status: 400, .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Reads an invoice.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn get_invoice(&self, id: &str) -> Result<Invoice, StripeCallError> {
        self.call(
            StripeMethod::Get,
            &format!("/invoices/{}", path_id(id)?),
            &[],
            None,
        )
        .await
    }

    /// The customer's invoices, newest first (at most `limit`, ≤ 100).
    ///
    /// Errors: [`StripeCallError`].
    pub async fn list_invoices(
        &self,
        stripe_customer_id: &str,
        limit: u8,
    ) -> Result<Vec<Invoice>, StripeCallError> {
        let list: List<Invoice> = self
            .call(
                StripeMethod::Get,
                "/invoices",
                &p(&[
                    ("customer", stripe_customer_id),
                    ("limit", &limit.min(100).to_string()),
                ]),
                None,
            )
            .await?;
        Ok(list.data)
    }
}

/// Form parameters from string pairs.
pub(super) fn p(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A Stripe id safe to put in a path (letters, digits, `_`).
pub(super) fn path_id(id: &str) -> Result<&str, StripeCallError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(id)
    } else {
        Err(StripeCallError::api(400, "malformed Stripe id"))
    }
}
