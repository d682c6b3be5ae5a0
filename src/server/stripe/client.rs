//! The Stripe API client (async-stripe 1.0 request builders over hyper +
//! rustls). Responses are read into our own small structs holding only the
//! fields we use, which keeps us working against localstripe and across
//! Stripe API versions.

use crate::server::stripe::{customer_create_key, StripeSettings, CUSTOMER_ID_METADATA};
use ::stripe::{
    Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest,
};
use ::stripe_core::customer::{CreateCustomer, ListCustomer};
use std::collections::HashMap;
use std::time::Duration;

/// Per-attempt timeout of a Stripe call.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A failed Stripe call. Messages hold no secret.
#[derive(Debug, thiserror::Error)]
pub enum StripeCallError {
    /// `STRIPE_SECRET_KEY` is not set.
    #[error("STRIPE_SECRET_KEY is not set")]
    NotConfigured,
    /// `BILLING_ENABLED=false`: no call was made.
    #[error("billing is disabled (BILLING_ENABLED=false)")]
    Disabled,
    /// Stripe answered with an error (4xx/5xx).
    #[error("Stripe answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stripe's error message (for logs; never shown to customers).
        message: String,
        /// Stripe's error type: `card_error`, `invalid_request_error`,
        /// `idempotency_error`, `api_error`, …
        error_type: Option<String>,
        /// Stripe's error code, e.g. `card_declined`, `resource_missing`.
        code: Option<String>,
        /// The card issuer's reason for a decline, e.g. `insufficient_funds`.
        decline_code: Option<String>,
        /// The PaymentIntent a card error is about (`error.payment_intent.id`),
        /// e.g. the one an off-session charge left waiting for the
        /// customer's authentication (`code: authentication_required`).
        payment_intent: Option<String>,
    },
    /// Stripe could not be reached, timed out, or answered something we
    /// could not read. The call may have taken effect: retry with the same
    /// idempotency key and re-read.
    #[error("Stripe unreachable or unreadable: {0}")]
    Transport(String),
}

impl StripeCallError {
    /// Whether trying again later may succeed (transport failures, 429 and
    /// 5xx; not 4xx mistakes or missing configuration).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::NotConfigured | Self::Disabled => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

impl StripeCallError {
    /// An API error with only a status and a message (for our own checks).
    pub fn api(status: u16, message: impl Into<String>) -> Self {
        Self::Api {
            status,
            message: message.into(),
            error_type: None,
            code: None,
            decline_code: None,
            payment_intent: None,
        }
    }
}

impl From<StripeError> for StripeCallError {
    fn from(error: StripeError) -> Self {
        match error {
            StripeError::Stripe(errors, status) => Self::Api {
                status,
                message: errors
                    .message
                    .clone()
                    .unwrap_or_else(|| "no message".into()),
                error_type: Some(errors.type_.to_string()),
                code: errors.code.as_ref().map(|c| c.to_string()),
                decline_code: errors.decline_code.clone(),
                payment_intent: errors.payment_intent.as_ref().map(|pi| pi.id.to_string()),
            },
            StripeError::Timeout => Self::Transport("timeout".into()),
            StripeError::JSONDeserialize(m)
            | StripeError::ClientError(m)
            | StripeError::ConfigError(m) => Self::Transport(m),
        }
    }
}

/// The fields of a Stripe Customer we use.
#[derive(Debug, Clone, PartialEq, Eq, miniserde::Deserialize)]
pub struct StripeCustomer {
    /// `cus_…`.
    pub id: String,
    /// Email on the Stripe Customer.
    pub email: Option<String>,
    /// Metadata; ours is `rsolv_customer_id`.
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

impl StripeCustomer {
    /// Our customer id from the metadata, if present and numeric.
    pub fn rsolv_customer_id(&self) -> Option<i64> {
        self.metadata
            .as_ref()?
            .get(CUSTOMER_ID_METADATA)?
            .parse()
            .ok()
    }
}

#[derive(miniserde::Deserialize)]
struct CustomerList {
    data: Vec<StripeCustomer>,
}

/// A configured Stripe client. `Debug` shows no key.
pub struct StripeApi {
    pub(super) client: Client,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApi { .. }")
    }
}

impl StripeApi {
    /// A client for `settings.api_base` with `settings.secret_key`.
    ///
    /// Errors: [`StripeCallError::Disabled`] when billing is off,
    /// [`StripeCallError::NotConfigured`] without a key,
    /// [`StripeCallError::Transport`] for an unusable base URL.
    pub fn new(settings: &StripeSettings) -> Result<Self, StripeCallError> {
        if !settings.billing_enabled() {
            return Err(StripeCallError::Disabled);
        }
        let key = settings
            .secret_key
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret)
            .ok_or(StripeCallError::NotConfigured)?;
        let client = ClientBuilder::new(key)
            .url(format!("{}/", settings.api_base))
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { client })
    }

    /// The Stripe Customers whose email is `email` and whose metadata names
    /// our `customer_id` (at most 100 are looked at). Stripe's search API
    /// would match on metadata alone, but localstripe lacks it.
    ///
    /// Errors: [`StripeCallError`].
    pub async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<StripeCustomer>, StripeCallError> {
        let list = ListCustomer::new()
            .email(email)
            .limit(100)
            .build()
            .customize::<CustomerList>()
            .send(&self.client)
            .await?;
        Ok(list
            .data
            .into_iter()
            .filter(|c| c.rsolv_customer_id() == Some(customer_id))
            .collect())
    }

    /// Creates the Stripe Customer for our `customer_id`, with metadata
    /// `rsolv_customer_id` and idempotency key `customer:create:<id>`.
    ///
    /// Errors: [`StripeCallError`]; after a transport error the customer may
    /// exist (find it with [`StripeApi::find_customers`]).
    pub async fn create_customer(
        &self,
        customer_id: i64,
        email: &str,
        name: &str,
    ) -> Result<StripeCustomer, StripeCallError> {
        let key = IdempotencyKey::new(customer_create_key(customer_id))
            .map_err(|e| StripeCallError::Transport(e.to_string()))?;
        let metadata = HashMap::from([(CUSTOMER_ID_METADATA.to_owned(), customer_id.to_string())]);
        Ok(CreateCustomer::new()
            .email(email)
            .name(name)
            .metadata(metadata)
            .build()
            .customize::<StripeCustomer>()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await?)
    }
}
