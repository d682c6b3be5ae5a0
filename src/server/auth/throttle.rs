//! Sign-in throttling: failed attempts are rows in `login_attempts` (the
//! lower-cased email, the client's [`client_ip::limit_key`], the time).
//! Within the last [`WINDOW_MINUTES`] minutes, sign-in is refused (even
//! with the right password) until enough failures age out when:
//!
//! - this account failed [`MAX_FAILURES_PER_ACCOUNT_AND_IP`] times from this
//!   client IP (guessing one password from one place), or
//! - this client IP failed [`MAX_FAILURES_PER_IP`] times on any accounts
//!   (guessing many accounts from one place), or
//! - this account failed [`MAX_FAILURES_PER_ACCOUNT`] times from anywhere
//!   (a distributed guess): the softer limit, so a stranger failing from
//!   their own address never locks the owner out of their own, and even a
//!   distributed attack only pauses sign-in. Its message points to the
//!   password reset, which clears the account's failures ([`clear_account`]).
//!
//! A successful sign-in deletes nothing, so an attacker who knows one
//! password cannot reset the counter for guessing others.

use crate::server::client_ip;
use crate::server::db::schema::login_attempts;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::net::IpAddr;

/// Failed attempts per account from one client IP per window.
pub const MAX_FAILURES_PER_ACCOUNT_AND_IP: i64 = 5;
/// Failed attempts per account from all client IPs together per window
/// (the softer limit).
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 30;
/// Failed attempts per client IP on all accounts per window.
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// The window, in minutes.
pub const WINDOW_MINUTES: i64 = 15;

/// Which limit refuses a sign-in, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// When the blocking count drops below its limit.
    pub until: DateTime<Utc>,
    /// The limit that blocks.
    pub scope: BlockScope,
}

/// The limit behind a [`Block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockScope {
    /// This account from this client IP.
    AccountAndIp,
    /// This client IP on any accounts.
    Ip,
    /// This account from anywhere (the softer limit).
    Account,
}

fn window_start() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(WINDOW_MINUTES)
}

/// Whether sign-in to the account `email_lower` from the client `ip` is
/// refused now: `None` when allowed, else the [`Block`] ending last (a
/// limit's end is its limit-th most recent failure plus the window).
///
/// Errors: the database error.
pub async fn blocked(
    conn: &mut AsyncPgConnection,
    email_lower: &str,
    ip: Option<IpAddr>,
) -> Result<Option<Block>, diesel::result::Error> {
    let key = ip.map(client_ip::limit_key);
    let recent = || login_attempts::table.filter(login_attempts::at.gt(window_start()));
    let account = || recent().filter(login_attempts::email_lower.eq(email_lower));
    let nth = |limit: i64| limit - 1;
    let pair: Option<DateTime<Utc>> = match &key {
        Some(key) => account()
            .filter(login_attempts::ip.eq(key))
            .order(login_attempts::at.desc())
            .offset(nth(MAX_FAILURES_PER_ACCOUNT_AND_IP))
            .select(login_attempts::at)
            .first(conn)
            .await
            .optional()?,
        None => account()
            .filter(login_attempts::ip.is_null())
            .order(login_attempts::at.desc())
            .offset(nth(MAX_FAILURES_PER_ACCOUNT_AND_IP))
            .select(login_attempts::at)
            .first(conn)
            .await
            .optional()?,
    };
    let by_ip: Option<DateTime<Utc>> = match &key {
        Some(key) => recent()
            .filter(login_attempts::ip.eq(key))
            .order(login_attempts::at.desc())
            .offset(nth(MAX_FAILURES_PER_IP))
            .select(login_attempts::at)
            .first(conn)
            .await
            .optional()?,
        None => None,
    };
    let by_account: Option<DateTime<Utc>> = account()
        .order(login_attempts::at.desc())
        .offset(nth(MAX_FAILURES_PER_ACCOUNT))
        .select(login_attempts::at)
        .first(conn)
        .await
        .optional()?;
    let window = chrono::Duration::minutes(WINDOW_MINUTES);
    Ok([
        (pair, BlockScope::AccountAndIp),
        (by_ip, BlockScope::Ip),
        (by_account, BlockScope::Account),
    ]
    .into_iter()
    .filter_map(|(at, scope)| {
        at.map(|at| Block {
            until: at + window,
            scope,
        })
    })
    .max_by_key(|block| block.until))
}

/// Records one failed attempt on `email_lower` from `ip` (stored as its
/// [`client_ip::limit_key`]).
///
/// Errors: the database error.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    email_lower: &str,
    ip: Option<IpAddr>,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(login_attempts::table)
        .values((
            login_attempts::email_lower.eq(email_lower),
            login_attempts::ip.eq(ip.map(client_ip::limit_key)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Forgets the failed attempts on `email_lower`: the owner proved the
/// mailbox (a password reset), so the failures no longer pause sign-in.
///
/// Errors: the database error.
pub async fn clear_account(
    conn: &mut AsyncPgConnection,
    email_lower: &str,
) -> Result<usize, diesel::result::Error> {
    diesel::delete(login_attempts::table.filter(login_attempts::email_lower.eq(email_lower)))
        .execute(conn)
        .await
}

/// The message of a block: when to retry (at least 1 minute), and for
/// the account's own limits the way out, a password reset.
pub fn retry_message(block: Block) -> String {
    let seconds = (block.until - Utc::now()).num_seconds().max(1);
    let minutes = (seconds + 59) / 60;
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    match block.scope {
        BlockScope::AccountAndIp => format!(
            "too many failed sign-in attempts; try again in {minutes} {unit}, \
             or reset your password (\"Forgot your password?\")"
        ),
        BlockScope::Ip => format!(
            "too many failed sign-in attempts from your network; try again in {minutes} {unit}"
        ),
        BlockScope::Account => format!(
            "sign-in to this account is paused after many failed attempts from \
             several places; try again in {minutes} {unit}, or reset your password \
             (\"Forgot your password?\") to sign in now"
        ),
    }
}
