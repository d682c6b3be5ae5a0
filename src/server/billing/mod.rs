//! The billing domain: customers, API keys, the credit ledger, fixes, phase
//! records, usage, pricing, charges and the ports it needs from the outside
//! ([`ports::PaymentProcessor`]). Plain async functions over
//! `&mut AsyncPgConnection`: no HTTP, no sessions, no Leptos. Every adapter
//! (JSON API, server functions, webhooks) calls these.

pub mod api_keys;
pub mod authentication;
pub mod charges;
pub mod customers;
pub mod error;
pub mod fix_recorder;
pub mod fixes;
pub mod history;
pub mod ledger;
pub mod metered;
pub mod notifications;
pub mod payment_methods;
pub mod phases;
pub mod placeholder;
pub mod plan;
pub mod ports;
pub mod pricing;
pub mod reconciliation;
pub mod refunds;
pub mod status;
pub mod subscriptions;
pub mod usage;
pub mod work;

pub use error::BillingError;
