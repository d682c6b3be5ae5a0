//! Integration tests: one binary, a fresh PostgreSQL database per test
//! (cloned from a template migrated once), the real router on port 0.
//!
//! Needs `TEST_DATABASE_URL` (an admin database on the server to use, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test.sh` sets it.
#![cfg(feature = "ssr")]

mod api;
mod auth;
mod harness;
mod money;
mod pages;
