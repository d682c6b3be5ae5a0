//! GitHub Marketplace: customers who buy RSOLV through a GitHub Marketplace
//! listing. GitHub bills them; we receive `marketplace_purchase` webhook
//! events at `POST /webhooks/github`
//! ([`crate::server::http::webhooks::github`]), verify their signature
//! ([`signature`]), record every delivery and apply it to provisioning and
//! the plan ([`events`]). Customers on a plan mapped to `pro` get their
//! monthly credits from [`credits`] (GitHub sends no renewal event).
//!
//! Settings: `GITHUB_WEBHOOK_SECRET` (the app's webhook secret(s)) and
//! `GITHUB_MARKETPLACE_PLANS` (Marketplace plan id → catalog plan), parsed by
//! [`crate::server::config::github`].

pub mod credits;
pub mod events;
pub mod jobs;
pub mod signature;

pub use crate::server::config::github::GitHubSettings;
