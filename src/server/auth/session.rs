//! A typed view of the browser session (zero2prod's `TypedSession`): the
//! only keys the application reads or writes, with their types.

use crate::server::auth::store::{session_key, USER_ID_KEY};
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

/// The session of the current request.
#[derive(Clone, Debug)]
pub struct TypedSession(pub Session);

impl TypedSession {
    /// Gives the session a fresh id (the old record is deleted), so an id
    /// planted before sign-in is worthless afterwards.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        Ok(self.0.cycle_id().await?)
    }

    /// Records `user_id` as signed in.
    pub async fn insert_user_id(&self, user_id: i64) -> Result<(), SessionError> {
        Ok(self.0.insert(USER_ID_KEY, user_id).await?)
    }

    /// The signed-in user's id, if any.
    pub async fn user_id(&self) -> Result<Option<i64>, SessionError> {
        Ok(self.0.get::<i64>(USER_ID_KEY).await?)
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
