//! Stripe: the API client ([`client`]), webhook signatures
//! ([`signature`]) and the jobs that talk to Stripe ([`jobs`]).
//!
//! Production talks to `https://api.stripe.com`; development and tests talk
//! to localstripe on 127.0.0.1 through the same code (only
//! `STRIPE_API_BASE` and the key differ). The settings are parsed by
//! [`crate::server::config::stripe`] (config is a leaf) and re-exported here.

pub mod billing_api;
pub mod charges;
pub mod client;
pub mod events;
pub mod jobs;
pub mod processor;
pub mod signature;
pub mod trigger;

pub use crate::server::config::stripe::{
    StripeSettings, DEFAULT_API_BASE, DEFAULT_JS_URL, DEFAULT_PRO_PRICE_ID,
};

/// The idempotency key of the Stripe Customer created for our customer
/// `customer_id`: `customer:create:<id>`.
pub fn customer_create_key(customer_id: i64) -> String {
    format!("customer:create:{customer_id}")
}

/// The metadata key on a Stripe Customer holding our customer id.
pub const CUSTOMER_ID_METADATA: &str = "rsolv_customer_id";

/// The metadata key on a PaymentIntent or invoice item holding our
/// `charges.id`.
pub const CHARGE_ID_METADATA: &str = "rsolv_charge_id";
