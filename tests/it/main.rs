//! Integration tests: one binary, a fresh PostgreSQL database per test
//! (cloned from a template migrated once), the real router on port 0.
//!
//! Needs `TEST_DATABASE_URL` (an admin database on the server to use, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`) and the SMTP sink's
//! `TEST_SMTP_PORT` / `TEST_SMTP_API_URL`; `scripts/test.sh` sets them.
#![cfg(feature = "ssr")]

mod admin;
mod admin_console;
mod admin_security;
mod ai;
mod ai_pages;
mod api;
mod auth;
mod authz;
mod billing;
mod claim;
mod db_tls;
mod email;
mod flags;
mod fuzz_inputs;
mod github;
mod group_commit;
mod harness;
mod jobs;
mod keys;
mod lifecycle;
mod metrics;
mod model;
mod money;
mod navigation;
mod openapi;
mod ops;
mod pages;
mod portal;
mod rate_limit;
mod rollback;
mod security;
mod stripe;
mod unpaid;
