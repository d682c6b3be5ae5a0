//! Everything that never ships to the browser: configuration, the database,
//! the billing domain, and the HTTP adapters (JSON API, Leptos SSR).

pub mod admin;
pub mod ai;
pub mod auth;
pub mod bench_reference;
pub mod billing;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod db;
pub mod disposable_email;
pub mod email;
pub mod flags;
pub mod http;
pub mod jobs;
pub mod marketplace;
pub mod metrics;
pub mod preflight;
pub mod rate_limit;
pub mod signup;
pub mod state;
pub mod stripe;
