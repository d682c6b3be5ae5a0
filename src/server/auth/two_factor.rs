//! The staff admins' second factor (OWASP ASVS 2.8, level 2): TOTP
//! (RFC 6238 through `totp-rs`: HMAC-SHA-1, 6 digits, 30-second steps, one
//! step of clock skew either way) and one-time recovery codes.
//!
//! - **Enrolment** happens at the first sign-in: a staff admin without a
//!   confirmed secret who gave the right password gets a fresh 160-bit
//!   secret (shown as base32 and an `otpauth://` URL) and is signed in only
//!   once a code from it is confirmed; then [`RECOVERY_CODE_COUNT`]
//!   recovery codes are shown, once.
//! - **Sign-in**: after the password, a TOTP code or an unused recovery
//!   code (which is then used up). A code of a step already accepted (or an
//!   earlier one) is refused, so a code seen over a shoulder cannot be
//!   replayed. Wrong codes are failures of the sign-in throttle
//!   ([`throttle`]), counted for the admin's email and client IP like wrong
//!   passwords, so codes cannot be guessed.
//! - **Storage**: the TOTP secret must be readable to check codes, so it is
//!   stored as is (`admin_totp`), held in [`SecretSlice`]/[`SecretString`]
//!   in memory and never logged. Recovery codes are 80 random bits each and
//!   stored as SHA-256 only: with that much entropy a fast hash cannot be
//!   reversed by guessing (argon2 would add nothing but cost, as for API
//!   keys and mailed tokens).

use crate::server::auth::accounts::{find_user, User};
use crate::server::auth::session::TypedSession;
use crate::server::auth::throttle;
use crate::server::config::sessions::SessionSettings;
use crate::server::db::schema::{admin_recovery_codes, admin_totp};
use crate::server::state::AppState;
use crate::types::AppError;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use totp_rs::{Algorithm, TOTP};

/// Seconds per TOTP step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// Steps of clock skew accepted either side of now.
pub const TOTP_SKEW_STEPS: i64 = 1;
/// Bytes of a TOTP secret (160 bits, RFC 4226's recommendation).
pub const TOTP_SECRET_BYTES: usize = 20;
/// The issuer shown by authenticator apps.
pub const TOTP_ISSUER: &str = "RSOLV";
/// Recovery codes made at enrolment.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Random bytes per recovery code (80 bits; 16 base32 characters).
pub const RECOVERY_CODE_BYTES: usize = 10;
/// Longest code field looked at, in bytes; longer is a wrong code.
pub const MAX_CODE_BYTES: usize = 64;

/// The message for a wrong, used or malformed code.
pub const BAD_CODE: &str = "incorrect or already used code";

/// What a staff admin enrolling sees: the secret for manual entry and the
/// URL authenticator apps read. Both hold the secret: `Debug` redacts them.
#[derive(Debug)]
pub struct Enrolment {
    /// The secret in base32 (RFC 4648, no padding).
    pub secret_base32: SecretString,
    /// `otpauth://totp/RSOLV:<email>?secret=…&issuer=RSOLV&…`.
    pub otpauth_url: SecretString,
}

/// How the second factor was given.
#[derive(Debug)]
pub enum SecondFactor {
    /// A TOTP code of an enrolled admin.
    Totp,
    /// The first TOTP code of a new secret: enrolment is complete, and
    /// these recovery codes (shown once, stored hashed) were made.
    Enrolled {
        /// The recovery codes, `xxxx-xxxx-xxxx-xxxx`.
        recovery_codes: Vec<SecretString>,
    },
    /// A recovery code, now used up.
    RecoveryCode {
        /// Unused recovery codes left.
        remaining: i64,
    },
}

/// The TOTP of `secret` for `email` (no skew: [`matching_step`] walks the
/// steps itself to learn which one matched).
fn totp(secret: &[u8], email: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        TOTP_DIGITS,
        0,
        TOTP_STEP_SECONDS,
        secret.to_vec(),
        Some(TOTP_ISSUER.to_owned()),
        email.to_owned(),
    )
}

/// The step (Unix time / 30) whose code is `code`, among now and
/// [`TOTP_SKEW_STEPS`] either side, compared in constant time; `None` when
/// none matches.
pub fn matching_step(secret: &[u8], code: &str, now_unix: i64) -> Option<i64> {
    let totp = totp(secret, "");
    let now_step = now_unix / TOTP_STEP_SECONDS as i64;
    (now_step - TOTP_SKEW_STEPS..=now_step + TOTP_SKEW_STEPS)
        .filter(|step| *step >= 0)
        .find(|step| totp.check(code, (*step as u64) * TOTP_STEP_SECONDS))
}

fn sha256(code: &str) -> Vec<u8> {
    Sha256::digest(code.as_bytes()).to_vec()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AppError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| {
        tracing::error!(%error, "OS RNG failed");
        AppError::Internal
    })?;
    Ok(bytes)
}

/// A new recovery code: 80 random bits as 16 lower-case base32 characters
/// in groups of four.
fn new_recovery_code() -> Result<String, AppError> {
    let raw = base32_lower(&random_bytes::<RECOVERY_CODE_BYTES>()?);
    Ok(raw
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-"))
}

fn base32_lower(bytes: &[u8]) -> String {
    totp_rs::Secret::Raw(bytes.to_vec())
        .to_encoded()
        .to_string()
        .to_ascii_lowercase()
}

/// A code as typed, parsed: spaces and dashes dropped, lower-cased.
#[derive(Debug, PartialEq, Eq)]
enum Code {
    /// Six digits.
    Totp(String),
    /// Sixteen base32 characters.
    Recovery(String),
}

fn parse_code(raw: &str) -> Option<Code> {
    if raw.len() > MAX_CODE_BYTES {
        return None;
    }
    let code: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if code.len() == TOTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        Some(Code::Totp(code))
    } else if code.len() == 16 && code.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')) {
        Some(Code::Recovery(code))
    } else {
        None
    }
}

/// A stored TOTP row: (secret, confirmed at, last used step).
type TotpRow = (Vec<u8>, Option<chrono::DateTime<Utc>>, Option<i64>);

/// The stored TOTP row of a user: (secret, confirmed, last used step).
async fn totp_row(
    conn: &mut AsyncPgConnection,
    user_id: i64,
) -> Result<Option<(SecretSlice<u8>, bool, Option<i64>)>, AppError> {
    let row: Option<TotpRow> = admin_totp::table
        .find(user_id)
        .select((
            admin_totp::secret,
            admin_totp::confirmed_at,
            admin_totp::last_used_step,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(secret, confirmed, step)| (SecretSlice::from(secret), confirmed.is_some(), step)))
}

/// Whether `user_id` has a confirmed TOTP secret.
///
/// Errors: [`AppError::Internal`].
pub async fn has_confirmed_totp(
    conn: &mut AsyncPgConnection,
    user_id: i64,
) -> Result<bool, AppError> {
    Ok(diesel::select(diesel::dsl::exists(
        admin_totp::table
            .find(user_id)
            .filter(admin_totp::confirmed_at.is_not_null()),
    ))
    .get_result(conn)
    .await?)
}

/// For a staff admin without a confirmed secret: the secret to enrol (a
/// new one, or the one shown before and not yet confirmed, so reloading the
/// page shows the same); `None` when enrolled already.
///
/// Errors: [`AppError::Internal`].
pub async fn enrolment(
    conn: &mut AsyncPgConnection,
    user: &User,
) -> Result<Option<Enrolment>, AppError> {
    if totp_row(conn, user.id).await?.is_none() {
        diesel::insert_into(admin_totp::table)
            .values((
                admin_totp::user_id.eq(user.id),
                admin_totp::secret.eq(random_bytes::<TOTP_SECRET_BYTES>()?.to_vec()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    let Some((secret, confirmed, _)) = totp_row(conn, user.id).await? else {
        tracing::error!(user_id = user.id, "TOTP row missing right after its insert");
        return Err(AppError::Internal);
    };
    if confirmed {
        return Ok(None);
    }
    let totp = totp(secret.expose_secret(), &user.email);
    Ok(Some(Enrolment {
        secret_base32: totp.get_secret_base32().into(),
        otpauth_url: totp.get_url().into(),
    }))
}

/// The staff admin of the session's pending second-factor step.
///
/// Errors: [`AppError::Unauthorized`] without a live pending step (none,
/// expired after 10 minutes) or when the user is gone, deactivated or no
/// staff admin (the session is signed out); [`AppError::Internal`].
pub async fn pending_admin(state: &AppState, session: &TypedSession) -> Result<User, AppError> {
    let Some(pending) = session.pending_second_factor().await? else {
        return Err(AppError::Unauthorized);
    };
    let mut conn = state.conn().await.map_err(|error| {
        tracing::error!(%error, "no database connection");
        AppError::Internal
    })?;
    match find_user(&mut conn, pending.user_id).await? {
        Some(user) if user.is_staff_admin() && user.deactivated_at.is_none() => Ok(user),
        _ => {
            session.log_out().await?;
            Err(AppError::Unauthorized)
        }
    }
}

/// Checks `code` (a TOTP code, or a recovery code once enrolled) for the
/// session's pending staff admin and, when right, signs them in: a new
/// session id, a [`crate::server::auth::session::SignIn`] as a staff admin,
/// the admins' idle timeout. Returns the admin, how the factor was given,
/// and the pending `next` path.
///
/// Errors: [`AppError::Unauthorized`] (see [`pending_admin`]);
/// [`AppError::RateLimited`] while the sign-in throttle blocks the admin
/// or the client IP (checked before the code); [`AppError::Validation`]
/// with [`BAD_CODE`] for a wrong, replayed, used or malformed code (counted
/// as a sign-in failure); [`AppError::Internal`].
pub async fn verify_second_factor(
    state: &AppState,
    session: &TypedSession,
    code: &str,
    ip: Option<IpAddr>,
) -> Result<(User, SecondFactor, Option<String>), AppError> {
    let user = pending_admin(state, session).await?;
    let next = session.pending_second_factor().await?.and_then(|p| p.next);
    let mut conn = state.conn().await.map_err(|error| {
        tracing::error!(%error, "no database connection");
        AppError::Internal
    })?;
    let account = user.email.trim().to_lowercase();
    if let Some(block) = throttle::blocked(&mut conn, &account, ip).await? {
        return Err(AppError::RateLimited(throttle::retry_message(block)));
    }
    let outcome = match parse_code(code) {
        Some(code) => check_code(&mut conn, &user, code).await?,
        None => None,
    };
    let Some(factor) = outcome else {
        throttle::record_failure(&mut conn, &account, ip).await?;
        tracing::info!(user_id = user.id, "wrong second factor");
        return Err(AppError::Validation(BAD_CODE.into()));
    };
    session.cycle_id().await?;
    session.sign_in(user.id, true).await?;
    apply_admin_idle(session, &state.config.sessions);
    tracing::info!(
        user_id = user.id,
        how = factor_name(&factor),
        "staff admin signed in"
    );
    Ok((user, factor, next))
}

/// Gives an admin's session the admins' idle timeout as its row expiry.
pub fn apply_admin_idle(session: &TypedSession, settings: &SessionSettings) {
    session
        .0
        .set_expiry(Some(tower_sessions::Expiry::OnInactivity(
            time::Duration::seconds(settings.admin_idle_seconds),
        )));
}

fn factor_name(factor: &SecondFactor) -> &'static str {
    match factor {
        SecondFactor::Totp => "totp",
        SecondFactor::Enrolled { .. } => "totp enrolment",
        SecondFactor::RecoveryCode { .. } => "recovery code",
    }
}

/// `Some(how)` when `code` is right for `user` (and is used up: the step
/// recorded, the recovery code marked used, the enrolment confirmed);
/// `None` when wrong, replayed or used.
async fn check_code(
    conn: &mut AsyncPgConnection,
    user: &User,
    code: Code,
) -> Result<Option<SecondFactor>, AppError> {
    let Some((secret, confirmed, last_step)) = totp_row(conn, user.id).await? else {
        return Ok(None);
    };
    match code {
        Code::Totp(code) => {
            let Some(step) = matching_step(secret.expose_secret(), &code, Utc::now().timestamp())
            else {
                return Ok(None);
            };
            if last_step.is_some_and(|last| step <= last) {
                return Ok(None);
            }
            if confirmed {
                // One statement: of two concurrent uses of a code, one wins.
                let updated = diesel::update(
                    admin_totp::table.find(user.id).filter(
                        admin_totp::last_used_step
                            .is_null()
                            .or(admin_totp::last_used_step.lt(step)),
                    ),
                )
                .set(admin_totp::last_used_step.eq(step))
                .execute(conn)
                .await?;
                Ok((updated == 1).then_some(SecondFactor::Totp))
            } else {
                confirm_enrolment(conn, user.id, step).await
            }
        }
        Code::Recovery(code) if confirmed => {
            let used = diesel::update(
                admin_recovery_codes::table
                    .filter(admin_recovery_codes::user_id.eq(user.id))
                    .filter(admin_recovery_codes::code_hash.eq(sha256(&code)))
                    .filter(admin_recovery_codes::used_at.is_null()),
            )
            .set(admin_recovery_codes::used_at.eq(Utc::now()))
            .execute(conn)
            .await?;
            if used != 1 {
                return Ok(None);
            }
            let remaining = admin_recovery_codes::table
                .filter(admin_recovery_codes::user_id.eq(user.id))
                .filter(admin_recovery_codes::used_at.is_null())
                .count()
                .get_result(conn)
                .await?;
            Ok(Some(SecondFactor::RecoveryCode { remaining }))
        }
        Code::Recovery(_) => Ok(None),
    }
}

/// Confirms `user_id`'s secret with the code of `step` and replaces their
/// recovery codes with [`RECOVERY_CODE_COUNT`] new ones, in one
/// transaction; `None` when another request confirmed it meanwhile.
async fn confirm_enrolment(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    step: i64,
) -> Result<Option<SecondFactor>, AppError> {
    let codes = (0..RECOVERY_CODE_COUNT)
        .map(|_| new_recovery_code())
        .collect::<Result<Vec<_>, _>>()?;
    conn.transaction(async |conn| {
        let confirmed = diesel::update(
            admin_totp::table
                .find(user_id)
                .filter(admin_totp::confirmed_at.is_null()),
        )
        .set((
            admin_totp::confirmed_at.eq(Utc::now()),
            admin_totp::last_used_step.eq(step),
        ))
        .execute(conn)
        .await?;
        if confirmed != 1 {
            return Ok(None);
        }
        diesel::delete(
            admin_recovery_codes::table.filter(admin_recovery_codes::user_id.eq(user_id)),
        )
        .execute(conn)
        .await?;
        let rows: Vec<_> = codes
            .iter()
            .map(|code| {
                (
                    admin_recovery_codes::user_id.eq(user_id),
                    admin_recovery_codes::code_hash.eq(sha256(&code.replace('-', ""))),
                )
            })
            .collect();
        diesel::insert_into(admin_recovery_codes::table)
            .values(rows)
            .execute(conn)
            .await?;
        Ok::<_, AppError>(Some(SecondFactor::Enrolled {
            recovery_codes: codes.into_iter().map(SecretString::from).collect(),
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_by_shape() {
        assert_eq!(parse_code(" 123 456 "), Some(Code::Totp("123456".into())));
        assert_eq!(
            parse_code("ABCD-efgh-2345-7777"),
            Some(Code::Recovery("abcdefgh23457777".into()))
        );
        for bad in [
            "",
            "12345",
            "1234567",
            "abcd-efgh-2345-777",
            "abcd-efgh-2345-7771",
            &"1".repeat(65),
        ] {
            assert_eq!(parse_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        let secret = [7u8; TOTP_SECRET_BYTES];
        let now = 1_800_000_000_i64;
        let step = now / 30;
        let code_at = |s: i64| totp(&secret, "").generate((s as u64) * 30);
        assert_eq!(matching_step(&secret, &code_at(step), now), Some(step));
        assert_eq!(
            matching_step(&secret, &code_at(step - 1), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(step + 1), now),
            Some(step + 1)
        );
        assert_eq!(matching_step(&secret, &code_at(step - 2), now), None);
        assert_eq!(matching_step(&secret, &code_at(step + 2), now), None);
    }

    #[test]
    fn recovery_codes_are_16_base32_characters_in_groups() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), 19);
        assert!(matches!(parse_code(&code), Some(Code::Recovery(_))));
    }
}
