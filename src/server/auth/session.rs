//! A typed view of the browser session (zero2prod's `TypedSession`): the
//! only keys the application reads or writes, with their types.
//!
//! A session is in one of three states: signed out (no keys); half-way
//! through a staff admin's sign-in ([`PendingSecondFactor`]: the password
//! was right, the second factor not yet given; signed in for nothing); or
//! signed in (the user's id and a [`SignIn`] record).

use crate::server::auth::store::{
    session_key, PENDING_SECOND_FACTOR_KEY, SIGN_IN_KEY, USER_ID_KEY,
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

/// The session store failed (internal: log it, answer 500).
#[derive(Debug, thiserror::Error)]
#[error("session store error: {0}")]
pub struct SessionError(String);

impl From<tower_sessions::session::Error> for SessionError {
    fn from(e: tower_sessions::session::Error) -> Self {
        Self(e.to_string())
    }
}

/// A completed sign-in (session key [`SIGN_IN_KEY`]); times are Unix
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    /// When the user signed in (the absolute lifetime counts from here).
    pub at: i64,
    /// The last request seen, to within a minute (the idle timeout counts
    /// from here).
    pub seen: i64,
    /// A staff admin's session (who passed the second factor): the admins'
    /// shorter lifetimes apply.
    pub staff_admin: bool,
}

/// A staff admin who gave the right password and must now give a TOTP or
/// recovery code (session key [`PENDING_SECOND_FACTOR_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSecondFactor {
    /// The admin's user id.
    pub user_id: i64,
    /// When the password was given, Unix seconds (the step expires
    /// [`PENDING_SECOND_FACTOR_SECONDS`] later).
    pub at: i64,
    /// A local path to go to once signed in (already checked by
    /// `types::urls::local_path`).
    pub next: Option<String>,
}

/// How long a staff admin has, after the password, to give the second
/// factor: 10 minutes.
pub const PENDING_SECOND_FACTOR_SECONDS: i64 = 600;

/// The session of the current request.
#[derive(Clone, Debug)]
pub struct TypedSession(pub Session);

impl TypedSession {
    /// Gives the session a fresh id (the old record is deleted), so an id
    /// planted before sign-in is worthless afterwards.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        Ok(self.0.cycle_id().await?)
    }

    /// Records `user_id` as signed in now ([`SignIn`]), ending any pending
    /// second-factor step.
    pub async fn sign_in(&self, user_id: i64, staff_admin: bool) -> Result<(), SessionError> {
        let now = chrono::Utc::now().timestamp();
        self.0.remove_value(PENDING_SECOND_FACTOR_KEY).await?;
        self.0.insert(USER_ID_KEY, user_id).await?;
        self.0
            .insert(
                SIGN_IN_KEY,
                SignIn {
                    at: now,
                    seen: now,
                    staff_admin,
                },
            )
            .await?;
        Ok(())
    }

    /// Records `user_id` as the signed-in user, keeping the [`SignIn`]
    /// record (a new id after a password change keeps the session's
    /// lifetime). A new sign-in uses [`TypedSession::sign_in`].
    pub async fn insert_user_id(&self, user_id: i64) -> Result<(), SessionError> {
        Ok(self.0.insert(USER_ID_KEY, user_id).await?)
    }

    /// The signed-in user's id, if any.
    pub async fn user_id(&self) -> Result<Option<i64>, SessionError> {
        Ok(self.0.get::<i64>(USER_ID_KEY).await?)
    }

    /// The sign-in record, if signed in since lifetimes were recorded.
    pub async fn sign_in_record(&self) -> Result<Option<SignIn>, SessionError> {
        Ok(self.0.get::<SignIn>(SIGN_IN_KEY).await?)
    }

    /// Stores `record` (the last-seen time moved on).
    pub async fn set_sign_in_record(&self, record: SignIn) -> Result<(), SessionError> {
        Ok(self.0.insert(SIGN_IN_KEY, record).await?)
    }

    /// Marks the session as half-way through `user_id`'s sign-in: not
    /// signed in (any signed-in user is removed) until the second factor.
    pub async fn begin_second_factor(&self, user_id: i64) -> Result<(), SessionError> {
        self.0.remove_value(USER_ID_KEY).await?;
        self.0.remove_value(SIGN_IN_KEY).await?;
        self.0
            .insert(
                PENDING_SECOND_FACTOR_KEY,
                PendingSecondFactor {
                    user_id,
                    at: chrono::Utc::now().timestamp(),
                    next: None,
                },
            )
            .await?;
        Ok(())
    }

    /// Sets where to go once the pending second factor is given (no-op
    /// without a pending step).
    pub async fn set_second_factor_next(&self, next: Option<String>) -> Result<(), SessionError> {
        if let Some(mut pending) = self.pending_second_factor_record().await? {
            pending.next = next;
            self.0.insert(PENDING_SECOND_FACTOR_KEY, pending).await?;
        }
        Ok(())
    }

    /// The pending second-factor step, if any, expired or not.
    pub async fn pending_second_factor_record(
        &self,
    ) -> Result<Option<PendingSecondFactor>, SessionError> {
        Ok(self
            .0
            .get::<PendingSecondFactor>(PENDING_SECOND_FACTOR_KEY)
            .await?)
    }

    /// The pending second-factor step if it has not expired
    /// ([`PENDING_SECOND_FACTOR_SECONDS`]); an expired one is removed.
    pub async fn pending_second_factor(&self) -> Result<Option<PendingSecondFactor>, SessionError> {
        let Some(pending) = self.pending_second_factor_record().await? else {
            return Ok(None);
        };
        if chrono::Utc::now().timestamp() - pending.at > PENDING_SECOND_FACTOR_SECONDS {
            self.0.remove_value(PENDING_SECOND_FACTOR_KEY).await?;
            return Ok(None);
        }
        Ok(Some(pending))
    }

    /// Signs out: deletes the record server-side and expires the cookie.
    pub async fn log_out(&self) -> Result<(), SessionError> {
        Ok(self.0.flush().await?)
    }

    /// The row key (SHA-256 hex) of this session, once it has an id.
    pub fn row_key(&self) -> Option<String> {
        self.0.id().map(|id| session_key(&id))
    }
}
