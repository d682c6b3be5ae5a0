//! The account flows behind the auth pages: email confirmation, invites, sign-in, sign-out, password change and reset.
//! Server functions parse nothing themselves: they pass the raw form fields
//! here, and every flow answers with [`AppError`] (internal causes logged).

use crate::server::auth::emails::{account_email, AccountEmail};
use crate::server::auth::limits::{check_flow, Flow};
use crate::server::auth::password::{hash_password, verify_password, Password, PasswordError};
use crate::server::auth::session::{SessionError, TypedSession};
use crate::server::auth::throttle;
use crate::server::billing::api_keys::{issue_key_at_first_proof, FirstProofKey};
use crate::server::billing::customers::{provision_customer, NewCustomer, Provisioned};
use crate::server::billing::error::is_unique_violation;
use crate::server::billing::error::to_app_error;
use crate::server::billing::notifications::{self, enqueue_email, Recipient};
use crate::server::billing::BillingError;
use crate::server::config::Config;
use crate::server::db::schema::{sessions, user_tokens, users};
use crate::server::state::AppState;
use crate::types::values::Email;
use crate::types::AppError;
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The one answer for an unknown email, a wrong password, or a user without
/// a password yet: nothing tells them apart.
pub const BAD_CREDENTIALS: &str = "incorrect email or password";

/// Longest email looked up or recorded, in bytes (RFC 5321's 254, as
/// [`Email::parse`]).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Confirmation and invite links live this long.
pub const LONG_TOKEN_TTL: chrono::Duration = chrono::Duration::days(7);
/// Password-reset links live this long.
pub const RESET_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(1);

/// The role of a customer's first user.
pub const ROLE_OWNER: &str = "owner";

/// The role of RSOLV's own staff admins (no customer account; see
/// `server::admin`).
pub const ROLE_STAFF_ADMIN: &str = "staff_admin";

/// A user row. `Debug` leaves out the password hash.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    /// Row id.
    pub id: i64,
    /// The customer account; `None` for a staff admin (role
    /// [`ROLE_STAFF_ADMIN`]), who belongs to no customer.
    pub customer_id: Option<i64>,
    /// Email as entered; unique case-insensitively.
    pub email: String,
    /// Argon2id PHC string; `None` until an invited user sets a password.
    pub password_hash: Option<String>,
    /// `owner` (later also `admin`, `member`).
    pub role: String,
    /// When the email was confirmed.
    pub email_confirmed_at: Option<DateTime<Utc>>,
    /// When a staff admin was deactivated (cannot sign in, no sessions);
    /// `None` while active.
    pub deactivated_at: Option<DateTime<Utc>>,
}

impl User {
    /// A staff admin (role [`ROLE_STAFF_ADMIN`], no customer account).
    pub fn is_staff_admin(&self) -> bool {
        self.role == ROLE_STAFF_ADMIN && self.customer_id.is_none()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("customer_id", &self.customer_id)
            .field("email", &self.email)
            .field("password_set", &self.password_hash.is_some())
            .field("role", &self.role)
            .field("email_confirmed_at", &self.email_confirmed_at)
            .field("deactivated_at", &self.deactivated_at)
            .finish()
    }
}

/// What a mailed token is for (the `purpose` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Confirms a registered email.
    EmailConfirmation,
    /// Resets a forgotten password.
    PasswordReset,
    /// Lets an owner provisioned without a password set one.
    Invite,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::EmailConfirmation => "email_confirmation",
            Self::PasswordReset => "password_reset",
            Self::Invite => "invite",
        }
    }
}

/// How a provisioned customer's owner user starts.
#[derive(Debug)]
pub enum OwnerSetup {
    /// Registered with this argon2id hash; a confirmation email is queued.
    Password(String),
    /// No password; an invite email (set a password, confirms the email)
    /// is queued.
    Invite,
}

fn internal(context: &'static str, error: impl std::fmt::Display) -> AppError {
    tracing::error!(%error, context, "internal error in an account flow");
    AppError::Internal
}

impl From<SessionError> for AppError {
    fn from(error: SessionError) -> Self {
        internal("session", error)
    }
}

impl From<PasswordError> for AppError {
    fn from(error: PasswordError) -> Self {
        internal("password hashing", error)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        internal("database", error)
    }
}

fn db(error: diesel::result::Error) -> AppError {
    error.into()
}

fn sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a single-use token for `user_id`; returns its row id and the
/// token (32 random bytes, URL-safe base64). Only its SHA-256 is stored.
///
/// Errors: [`BillingError::Database`]; the OS RNG failing is reported as
/// [`BillingError::Pool`] (internal either way: logged, answered with 500).
pub async fn issue_token(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    purpose: TokenPurpose,
    ttl: chrono::Duration,
) -> Result<(i64, String), BillingError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| BillingError::Pool(format!("OS RNG: {e}")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let id = diesel::insert_into(user_tokens::table)
        .values((
            user_tokens::user_id.eq(user_id),
            user_tokens::purpose.eq(purpose.as_str()),
            user_tokens::token_hash.eq(sha256(&token)),
            user_tokens::expires_at.eq(Utc::now() + ttl),
        ))
        .returning(user_tokens::id)
        .get_result(conn)
        .await?;
    Ok((id, token))
}

/// The condition "this is `token`, of `purpose`, unused and not expired"
/// on `user_tokens`, shared by [`consume_token`] and [`token_user`];
/// `None` for an empty token or one over 128 bytes (never issued, so not
/// hashed or looked up).
fn live_token(
    token: &str,
    purpose: TokenPurpose,
) -> Option<
    Box<
        dyn BoxableExpression<
            user_tokens::table,
            diesel::pg::Pg,
            SqlType = diesel::sql_types::Bool,
        >,
    >,
> {
    if token.is_empty() || token.len() > 128 {
        return None;
    }
    Some(Box::new(
        user_tokens::token_hash
            .eq(sha256(token))
            .and(user_tokens::purpose.eq(purpose.as_str()))
            .and(user_tokens::used_at.is_null())
            .and(user_tokens::expires_at.gt(Utc::now())),
    ))
}

/// Marks the token used if it exists for `purpose`, is unused and has not
/// expired, in one statement (two concurrent uses cannot both succeed);
/// returns the user's id, or `None`.
pub async fn consume_token(
    conn: &mut AsyncPgConnection,
    token: &str,
    purpose: TokenPurpose,
) -> Result<Option<i64>, diesel::result::Error> {
    let Some(live) = live_token(token, purpose) else {
        return Ok(None);
    };
    diesel::update(user_tokens::table.filter(live))
        .set(user_tokens::used_at.eq(Utc::now()))
        .returning(user_tokens::user_id)
        .get_result(conn)
        .await
        .optional()
}

/// The user a token of `purpose` names, if it exists, is unused and has not
/// expired; the token is left as it is ([`consume_token`] uses it).
///
/// Errors: the database error.
pub async fn token_user(
    conn: &mut AsyncPgConnection,
    token: &str,
    purpose: TokenPurpose,
) -> Result<Option<i64>, diesel::result::Error> {
    let Some(live) = live_token(token, purpose) else {
        return Ok(None);
    };
    user_tokens::table
        .filter(live)
        .select(user_tokens::user_id)
        .first(conn)
        .await
        .optional()
}

/// Provisions a customer (see [`provision_customer`]) together with its
/// owner user and the owner's first email, in one transaction: with
/// [`OwnerSetup::Password`] a confirmation email, with
/// [`OwnerSetup::Invite`] an invite to set a password. Links point at
/// `config.email.links` (`PUBLIC_BASE_URL`). No API key yet: the owner's
/// first key is issued when they follow that email ([`claim_account`]).
///
/// Errors: [`BillingError::EmailTaken`] when a customer or user has the
/// email (any case); [`BillingError::Database`] otherwise.
pub async fn provision_with_owner(
    conn: &mut AsyncPgConnection,
    config: &Config,
    new: &NewCustomer,
    owner: OwnerSetup,
) -> Result<Provisioned, BillingError> {
    conn.transaction(async |conn| {
        let provisioned =
            provision_customer(conn, &config.pricing, new, &config.email.links).await?;
        let customer_id = provisioned.customer.id;
        let (password_hash, purpose, which) = match owner {
            OwnerSetup::Password(hash) => (
                Some(hash),
                TokenPurpose::EmailConfirmation,
                AccountEmail::Confirmation,
            ),
            OwnerSetup::Invite => (None, TokenPurpose::Invite, AccountEmail::Invite),
        };
        let inserted = diesel::insert_into(users::table)
            .values((
                users::customer_id.eq(customer_id),
                users::email.eq(new.email.as_str()),
                users::password_hash.eq(password_hash),
                users::role.eq(ROLE_OWNER),
            ))
            .returning(users::id)
            .get_result::<i64>(conn)
            .await;
        let user_id = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Err(BillingError::EmailTaken),
            Err(e) => return Err(e.into()),
        };
        let (token_id, token) = issue_token(conn, user_id, purpose, LONG_TOKEN_TTL).await?;
        enqueue_email(
            conn,
            &account_email(
                which,
                &config.email.links,
                Some(customer_id),
                new.email.as_str(),
                &token,
                token_id,
            ),
        )
        .await?;
        Ok(provisioned)
    })
    .await
}

async fn conn(state: &AppState) -> Result<crate::server::db::DbConn, AppError> {
    state.conn().await.map_err(to_app_error)
}

fn validation(e: crate::types::values::ParseError) -> AppError {
    AppError::Validation(e.0)
}

/// Parses a new password and checks its confirmation.
///
/// Errors: [`AppError::Validation`] for a password breaking the rules or
/// passwords not matching.
pub fn new_password(password: &str, confirm: &str) -> Result<Password, AppError> {
    let password = Password::parse(password).map_err(validation)?;
    if password.expose() != confirm {
        return Err(AppError::Validation(
            "the two passwords do not match".into(),
        ));
    }
    Ok(password)
}

async fn find_user_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> Result<Option<User>, AppError> {
    users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(users.email) = lower(")
                .bind::<diesel::sql_types::Text, _>(email.trim().to_owned())
                .sql(")"),
        )
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
        .map_err(db)
}

/// Loads a user by id.
///
/// Errors: [`AppError::Internal`] on database failure.
pub async fn find_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
) -> Result<Option<User>, AppError> {
    users::table
        .find(user_id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
        .map_err(db)
}

/// `/confirm-email`: checks the password chosen at registration, then
/// consumes the confirmation token and marks the email confirmed, in one
/// transaction with claiming the account (see [`claim_account`]): returns
/// the owner's API key to show once on a first proof.
///
/// The password is required so that a stranger who registered someone
/// else's address cannot have the owner confirm it for them (and then sign
/// in with the password they chose): the owner, not knowing it, takes the
/// address back with a password reset instead. The link is checked first
/// (cheap), then the sign-in throttle ([`throttle`], per account and client
/// `ip`), then argon2; a wrong password counts as a failed sign-in.
///
/// Errors: [`AppError::Validation`] when the link is unknown, used or
/// expired, or the password is wrong; [`AppError::RateLimited`];
/// [`AppError::Internal`].
pub async fn confirm_email(
    state: &AppState,
    token: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<Option<FirstProofKey>, AppError> {
    let mut conn = conn(state).await?;
    let token = token.trim().to_owned();
    let user_id = token_user(&mut conn, &token, TokenPurpose::EmailConfirmation)
        .await
        .map_err(db)?
        .ok_or_else(invalid_link)?;
    let user = find_user(&mut conn, user_id)
        .await?
        .ok_or_else(invalid_link)?;
    let email_lower = user.email.to_lowercase();
    if let Some(block) = throttle::blocked(&mut conn, &email_lower, ip)
        .await
        .map_err(db)?
    {
        return Err(AppError::RateLimited(throttle::retry_message(block)));
    }
    let ok = match Password::presented(password) {
        Some(password) => verify_password(password, user.password_hash.clone()).await?,
        None => false,
    };
    if !ok {
        throttle::record_failure(&mut conn, &email_lower, ip)
            .await
            .map_err(db)?;
        return Err(AppError::Validation(CONFIRM_NEEDS_PASSWORD.into()));
    }
    conn.transaction(async |conn| {
        let user_id = consume_token(conn, &token, TokenPurpose::EmailConfirmation)
            .await
            .map_err(db)?
            .ok_or_else(invalid_link)?;
        mark_confirmed(conn, user_id, FirstKey::OnlyToReplace).await
    })
    .await
}

/// The answer to a wrong password on `/confirm-email`.
pub const CONFIRM_NEEDS_PASSWORD: &str = "incorrect password: enter the password chosen when this \
    account was registered. If you did not register, ignore the email, or reset the password \
    (Forgot password) to take the address back";

fn invalid_link() -> AppError {
    AppError::Validation("this link is invalid, already used or expired; ask for a new one".into())
}

/// Marks the user's email confirmed; on the first proof (the row changed)
/// claims the account ([`claim_account`]) in the caller's transaction.
async fn mark_confirmed(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    first_key: FirstKey,
) -> Result<Option<FirstProofKey>, AppError> {
    let first: Option<User> = diesel::update(
        users::table
            .find(user_id)
            .filter(users::email_confirmed_at.is_null()),
    )
    .set((
        users::email_confirmed_at.eq(Utc::now()),
        users::updated_at.eq(Utc::now()),
    ))
    .returning(User::as_returning())
    .get_result(conn)
    .await
    .optional()
    .map_err(db)?;
    match first {
        Some(user) => claim_account(conn, &user, first_key).await,
        None => Ok(None),
    }
}

/// Whether a first proof of the email issues the owner a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstKey {
    /// Always (an invite accepted, a password reset by a mailed link: the
    /// owner had no way to see a key before).
    Issue,
    /// Only to replace keys it revokes (a `/register` confirmation: the
    /// owner chose a password, signs in next and creates keys under API
    /// keys, as the registration page says).
    OnlyToReplace,
}

/// Claiming an account (issue 12 item 5): when a customer's owner first
/// proves the email (confirmation link, invite accepted, password reset by
/// a mailed link), the owner's API key is issued, in the caller's
/// transaction, and any key issued before the proof revoked with an
/// `api_key_reissued` email ([`issue_key_at_first_proof`]). Returns the
/// key, to show once in the response to the request that carried the
/// proof; `None` for users who are not a customer's owner, and for a
/// `/register` confirmation that revoked nothing ([`FirstKey`]).
async fn claim_account(
    conn: &mut AsyncPgConnection,
    user: &User,
    first_key: FirstKey,
) -> Result<Option<FirstProofKey>, AppError> {
    let Some(customer_id) = user.customer_id.filter(|_| user.role == ROLE_OWNER) else {
        return Ok(None);
    };
    let to = Recipient {
        customer_id: Some(customer_id),
        email: &user.email,
        name: "",
    };
    let issued = issue_key_at_first_proof(conn, customer_id, &to, first_key == FirstKey::Issue)
        .await
        .map_err(to_app_error)?;
    let Some(issued) = issued else {
        return Ok(None);
    };
    tracing::info!(
        user_id = user.id,
        customer_id,
        revoked = issued.revoked,
        "account claimed: the owner's API key issued at the first proof of the email"
    );
    Ok(Some(issued))
}

/// `/login`: signs `email` in on this session (new session id), unless the
/// account or `ip` is throttled. A staff admin is not signed in yet: the
/// session only records the password step
/// ([`TypedSession::begin_second_factor`]) and `/admin/2fa` asks for the
/// TOTP or a recovery code (see `server::auth::two_factor`).
///
/// Errors: [`AppError::RateLimited`] with when to retry;
/// [`AppError::Validation`] with [`BAD_CREDENTIALS`] for an unknown email,
/// a wrong password, a user without a password or a deactivated staff
/// admin (indistinguishable, in time too: a former admin's leaked password
/// tells nobody that it was right), or asking to confirm the email first
/// (only once the password was right); [`AppError::Internal`].
pub async fn log_in(
    state: &AppState,
    session: &TypedSession,
    email: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<User, AppError> {
    let email_lower = email.trim().to_lowercase();
    if email_lower.is_empty() || password.is_empty() {
        return Err(AppError::Validation("enter your email and password".into()));
    }
    // No account has an email over the limit: answered before any argon2
    // or database write (an over-long key would fail the attempts index).
    if email_lower.len() > MAX_EMAIL_BYTES {
        return Err(AppError::Validation(BAD_CREDENTIALS.into()));
    }
    let mut conn = conn(state).await?;
    if let Some(block) = throttle::blocked(&mut conn, &email_lower, ip)
        .await
        .map_err(db)?
    {
        return Err(AppError::RateLimited(throttle::retry_message(block)));
    }
    let user = find_user_by_email(&mut conn, &email_lower).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // An over-long password can be no one's: a failure like any other.
    let ok = match Password::presented(password) {
        Some(password) => verify_password(password, stored).await?,
        None => false,
    };
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            throttle::record_failure(&mut conn, &email_lower, ip)
                .await
                .map_err(db)?;
            return Err(AppError::Validation(BAD_CREDENTIALS.into()));
        }
    };
    if user.deactivated_at.is_some() {
        tracing::info!(user_id = user.id, "deactivated user refused at sign-in");
        return Err(AppError::Validation(BAD_CREDENTIALS.into()));
    }
    if user.email_confirmed_at.is_none() {
        return Err(AppError::Validation(
            "please confirm your email first: follow the link in the email we sent you".into(),
        ));
    }
    session.cycle_id().await?;
    if user.is_staff_admin() {
        session.begin_second_factor(user.id).await?;
        tracing::info!(user_id = user.id, "password accepted; second factor next");
    } else {
        session.sign_in(user.id, false).await?;
        tracing::info!(user_id = user.id, "signed in");
    }
    Ok(user)
}

/// The signed-in user of `session`, if the session names a user who still
/// exists and is not deactivated. A session naming a deleted or
/// deactivated user is signed out.
///
/// Errors: [`AppError::Internal`].
pub async fn session_user(
    state: &AppState,
    session: &TypedSession,
) -> Result<Option<User>, AppError> {
    let Some(user_id) = session.user_id().await? else {
        return Ok(None);
    };
    let mut conn = conn(state).await?;
    match find_user(&mut conn, user_id).await? {
        Some(user) if user.deactivated_at.is_none() => Ok(Some(user)),
        _ => {
            session.log_out().await?;
            Ok(None)
        }
    }
}

async fn delete_sessions(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    except: Option<&str>,
) -> Result<usize, AppError> {
    let mine = sessions::table.filter(sessions::user_id.eq(user_id));
    match except {
        Some(keep) => {
            diesel::delete(mine.filter(sessions::id.ne(keep)))
                .execute(conn)
                .await
        }
        None => diesel::delete(mine).execute(conn).await,
    }
    .map_err(db)
}

/// Log out of all devices: deletes every session of `user_id` (this one
/// too) and expires this cookie.
///
/// Errors: [`AppError::Internal`].
pub async fn log_out_everywhere(
    state: &AppState,
    session: &TypedSession,
    user_id: i64,
) -> Result<(), AppError> {
    let mut conn = conn(state).await?;
    delete_sessions(&mut conn, user_id, None).await?;
    session.log_out().await?;
    Ok(())
}

/// Change password (signed in): checks `current`, stores `new`, signs out
/// every other session of the user, voids their unused reset and invite
/// links, queues a notice email, and gives this session a new id. Rate
/// limited per user and per client IP ([`Flow::ChangePassword`]) before any
/// argon2.
///
/// Errors: [`AppError::Validation`] for a wrong current password or a new
/// one breaking the rules or not matching; [`AppError::RateLimited`];
/// [`AppError::Internal`].
pub async fn change_password(
    state: &AppState,
    session: &TypedSession,
    user: &User,
    current: &str,
    (new, confirm): (&str, &str),
    ip: Option<IpAddr>,
) -> Result<(), AppError> {
    let new = new_password(new, confirm)?;
    let current = Password::presented(current)
        .ok_or_else(|| AppError::Validation("the current password is incorrect".into()))?;
    // Counted before the argon2 verification: guesses of the current
    // password are bounded per user and per client.
    check_flow(
        state,
        Flow::ChangePassword,
        ip,
        Some(&format!("user:{}", user.id)),
    )
    .await?;
    if !verify_password(current, user.password_hash.clone()).await? {
        return Err(AppError::Validation(
            "the current password is incorrect".into(),
        ));
    }
    let hash = hash_password(new).await?;
    let mut conn = conn(state).await?;
    let keep = session.row_key();
    conn.transaction(async |conn| {
        set_password(conn, user.id, &hash).await?;
        password_changed(conn, user, keep.as_deref()).await
    })
    .await?;
    session.cycle_id().await?;
    session.insert_user_id(user.id).await?;
    tracing::info!(user_id = user.id, "password changed");
    Ok(())
}

/// What a new password ends, in the caller's transaction: every session of
/// `user` but `keep` (this browser's, after a change; none after a reset),
/// every unused password-reset and invite link of the user, and a notice
/// to the user ("your password was changed; if it was not you, reset it").
async fn password_changed(
    conn: &mut AsyncPgConnection,
    user: &User,
    keep: Option<&str>,
) -> Result<(), AppError> {
    delete_sessions(conn, user.id, keep).await?;
    diesel::update(
        user_tokens::table
            .filter(user_tokens::user_id.eq(user.id))
            .filter(user_tokens::purpose.eq_any([
                TokenPurpose::PasswordReset.as_str(),
                TokenPurpose::Invite.as_str(),
            ]))
            .filter(user_tokens::used_at.is_null()),
    )
    .set(user_tokens::used_at.eq(Utc::now()))
    .execute(conn)
    .await
    .map_err(db)?;
    let recipient = Recipient {
        customer_id: user.customer_id,
        email: &user.email,
        name: "",
    };
    let key = format!(
        "{}:{}:{}",
        notifications::kind::PASSWORD_CHANGED,
        user.id,
        Utc::now().timestamp_micros()
    );
    enqueue_email(conn, &notifications::password_changed(&recipient, key))
        .await
        .map_err(to_app_error)?;
    Ok(())
}

async fn set_password(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    hash: &str,
) -> Result<(), AppError> {
    diesel::update(users::table.find(user_id))
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(db)
}

/// Shortest time `/forgot-password` takes, so that known and unknown emails
/// answer alike.
pub const FORGOT_PASSWORD_MIN_DURATION: std::time::Duration = std::time::Duration::from_millis(300);

/// `/forgot-password`: for an existing user, queues a reset email (link
/// valid 1 hour); for anyone else does nothing. Always answers `Ok` after
/// at least [`FORGOT_PASSWORD_MIN_DURATION`].
///
/// Rate limited per email and per client `ip` ([`Flow::ForgotPassword`]).
///
/// Errors: [`AppError::Validation`] for a malformed email (says nothing
/// about accounts); [`AppError::RateLimited`]; [`AppError::Internal`].
pub async fn forgot_password(
    state: &AppState,
    email: &str,
    ip: Option<IpAddr>,
) -> Result<(), AppError> {
    let deadline = tokio::time::Instant::now() + FORGOT_PASSWORD_MIN_DURATION;
    let email = Email::parse(email).map_err(validation)?;
    // Counted for every well-formed email, known or not, so the limit says
    // nothing about which emails have accounts.
    let account = email.as_str().to_lowercase();
    check_flow(state, Flow::ForgotPassword, ip, Some(&account)).await?;
    let outcome = async {
        let mut conn = conn(state).await?;
        if let Some(user) = find_user_by_email(&mut conn, email.as_str()).await? {
            conn.transaction(async |conn| {
                let (token_id, token) =
                    issue_token(conn, user.id, TokenPurpose::PasswordReset, RESET_TOKEN_TTL)
                        .await?;
                enqueue_email(
                    conn,
                    &account_email(
                        AccountEmail::PasswordReset,
                        &state.config.email.links,
                        user.customer_id,
                        &user.email,
                        &token,
                        token_id,
                    ),
                )
                .await
                .map(|_| ())
            })
            .await
            .map_err(to_app_error)?;
        }
        Ok(())
    }
    .await;
    tokio::time::sleep_until(deadline).await;
    outcome
}

/// `/reset-password` and `/accept-invite`: consumes the token, sets the
/// password, confirms the email (the link proved the user reads it),
/// signs out every session of the user and forgets the account's failed
/// sign-ins; a reset also voids the user's other reset and invite links
/// and queues a notice email. A first proof of the email claims the
/// account ([`claim_account`]) in the same transaction: the owner's API key
/// is returned, to show once.
///
/// The password rules and the link are checked, and the attempt counted
/// per client `ip` and per user ([`Flow::SetPasswordByLink`]), before the
/// new password is hashed.
///
/// Errors: [`AppError::Validation`] for password rules or an unknown,
/// used or expired link; [`AppError::RateLimited`]; [`AppError::Internal`].
pub async fn set_password_with_token(
    state: &AppState,
    token: &str,
    purpose: TokenPurpose,
    (password, confirm): (&str, &str),
    ip: Option<IpAddr>,
) -> Result<Option<FirstProofKey>, AppError> {
    let password = new_password(password, confirm)?;
    let token = token.trim().to_owned();
    check_flow(state, Flow::SetPasswordByLink, ip, None).await?;
    // The link is checked before any argon2: a stranger without a valid
    // link never makes us hash. It is consumed below, atomically.
    let mut conn = conn(state).await?;
    let user_id = token_user(&mut conn, &token, purpose)
        .await
        .map_err(db)?
        .ok_or_else(invalid_link)?;
    check_flow(
        state,
        Flow::SetPasswordByLink,
        None,
        Some(&format!("user:{user_id}")),
    )
    .await?;
    let hash = hash_password(password).await?;
    conn.transaction(async |conn| {
        let user_id = consume_token(conn, &token, purpose)
            .await
            .map_err(db)?
            .ok_or_else(invalid_link)?;
        set_password(conn, user_id, &hash).await?;
        let fresh_key = mark_confirmed(conn, user_id, FirstKey::Issue).await?;
        let user = find_user(conn, user_id).await?.ok_or_else(invalid_link)?;
        match purpose {
            // A reset ends the old password's sessions and links, with a notice.
            TokenPurpose::PasswordReset => password_changed(conn, &user, None).await?,
            // A first password: nothing to notify; no session can exist.
            _ => {
                delete_sessions(conn, user_id, None).await?;
            }
        }
        // The link proved the mailbox: failed sign-ins no longer pause
        // the account (the way out the throttle's message points to).
        throttle::clear_account(conn, &user.email.to_lowercase())
            .await
            .map_err(db)?;
        tracing::info!(
            user_id,
            purpose = purpose.as_str(),
            "password set from a mailed link"
        );
        Ok::<_, AppError>(fresh_key)
    })
    .await
}
