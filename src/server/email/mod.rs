//! Email: the outbox table, written by the domain with a typed notification
//! in the same transaction as the event that causes it
//! ([`crate::server::billing::notifications`], re-exported here), rendered
//! at send time by [`templates`], sent by the [`worker`] through the
//! configured [`transport`].

pub mod templates;
pub mod transport;
pub mod worker;

pub use crate::server::billing::notifications::{enqueue_email, OutgoingEmail};
