//! Sign-in throttling: failed attempts are rows in `login_attempts`; an
//! account with [`MAX_FAILURES_PER_ACCOUNT`] failures, or a client IP with
//! [`MAX_FAILURES_PER_IP`], in the last [`WINDOW_MINUTES`] minutes cannot
//! sign in (even with the right password) until enough of them age out.
//! A successful sign-in deletes nothing, so an attacker who knows one
//! password cannot reset the counter for guessing others.

use crate::server::db::schema::login_attempts;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Failed attempts per account (lower-cased email) per window.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Failed attempts per client IP per window.
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// The window, in minutes.
pub const WINDOW_MINUTES: i64 = 15;

fn window_start() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(WINDOW_MINUTES)
}

/// When sign-in is allowed again for this account and IP: `None` when it is
/// allowed now, else the instant the blocking count drops below its limit
/// (the limit-th most recent failure plus the window).
///
/// Errors: the database error.
pub async fn blocked_until(
    conn: &mut AsyncPgConnection,
    email_lower: &str,
    ip: Option<&str>,
) -> Result<Option<DateTime<Utc>>, diesel::result::Error> {
    let window = chrono::Duration::minutes(WINDOW_MINUTES);
    let by_account: Option<DateTime<Utc>> = login_attempts::table
        .filter(login_attempts::email_lower.eq(email_lower))
        .filter(login_attempts::at.gt(window_start()))
        .order(login_attempts::at.desc())
        .offset(MAX_FAILURES_PER_ACCOUNT - 1)
        .select(login_attempts::at)
        .first(conn)
        .await
        .optional()?;
    let by_ip: Option<DateTime<Utc>> = match ip {
        Some(ip) => login_attempts::table
            .filter(login_attempts::ip.eq(ip))
            .filter(login_attempts::at.gt(window_start()))
            .order(login_attempts::at.desc())
            .offset(MAX_FAILURES_PER_IP - 1)
            .select(login_attempts::at)
            .first(conn)
            .await
            .optional()?,
        None => None,
    };
    Ok(by_account
        .into_iter()
        .chain(by_ip)
        .max()
        .map(|at| at + window))
}

/// Records one failed attempt.
///
/// Errors: the database error.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    email_lower: &str,
    ip: Option<&str>,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(login_attempts::table)
        .values((
            login_attempts::email_lower.eq(email_lower),
            login_attempts::ip.eq(ip),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// "try again in N minutes" for a block lasting until `until` (at least 1).
pub fn retry_message(until: DateTime<Utc>) -> String {
    let seconds = (until - Utc::now()).num_seconds().max(1);
    let minutes = (seconds + 59) / 60;
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!("too many failed sign-in attempts; try again in {minutes} {unit}")
}
