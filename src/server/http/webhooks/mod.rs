//! Webhook receivers: signature-authenticated adapters that store what they
//! receive and leave the work to the job queue.

pub mod github;
pub mod stripe;
