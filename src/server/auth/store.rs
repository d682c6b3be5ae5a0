//! A tower-sessions [`SessionStore`] over our diesel pool (table `sessions`),
//! the session layer's settings, and the cleanup of expired sessions and old
//! sign-in attempts.
//!
//! Rows are keyed by the SHA-256 (hex) of the session id, so the table never
//! holds a usable cookie value. The signed-in user's id (session key
//! [`USER_ID_KEY`]) is copied into the `user_id` column on every save, so
//! all of a user's sessions can be found and deleted ("log out of all
//! devices", password changes).

use crate::server::db::schema::{login_attempts, sessions};
use crate::server::db::DbPool;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error as StoreError, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};

/// The session key holding the signed-in user's id (an `i64`).
pub const USER_ID_KEY: &str = "user_id";

/// The session key of a staff admin who gave the right password but not
/// yet the second factor (a [`crate::server::auth::session::PendingSecondFactor`]):
/// not signed in for anything but `/admin/2fa`.
pub const PENDING_SECOND_FACTOR_KEY: &str = "second_factor_pending";

/// The session key of a completed sign-in (a
/// [`crate::server::auth::session::SignIn`]: when, last seen, whether a
/// staff admin), which the session lifetimes are measured from.
pub const SIGN_IN_KEY: &str = "sign_in";

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rsolv_session";

/// Sessions stored in PostgreSQL through the application's pool.
#[derive(Clone)]
pub struct DieselSessionStore {
    pool: DbPool,
}

impl std::fmt::Debug for DieselSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DieselSessionStore")
    }
}

impl DieselSessionStore {
    /// A store over `pool`.
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

/// The row key for a session id: lower-case hex SHA-256 of its cookie form.
pub fn session_key(id: &Id) -> String {
    Sha256::digest(id.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_chrono(t: time::OffsetDateTime) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp(t.unix_timestamp(), t.nanosecond())
        .ok_or_else(|| StoreError::Encode("session expiry out of range".into()))
}

fn to_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime, StoreError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| StoreError::Decode(e.to_string()))
}

type Row = (String, serde_json::Value, DateTime<Utc>, Option<i64>);

fn to_row(record: &Record) -> Result<Row, StoreError> {
    let data = serde_json::to_value(&record.data).map_err(|e| StoreError::Encode(e.to_string()))?;
    // A session half-way through a staff admin's sign-in belongs to that
    // user too, so deleting a user's sessions ends it as well.
    let user_id = record
        .data
        .get(USER_ID_KEY)
        .and_then(|v| v.as_i64())
        .or_else(|| {
            record
                .data
                .get(PENDING_SECOND_FACTOR_KEY)
                .and_then(|v| v.get("user_id"))
                .and_then(|v| v.as_i64())
        });
    Ok((
        session_key(&record.id),
        data,
        to_chrono(record.expiry_date)?,
        user_id,
    ))
}

#[async_trait]
impl SessionStore for DieselSessionStore {
    async fn create(&self, record: &mut Record) -> tower_sessions::session_store::Result<()> {
        let mut conn = self.pool.get().await.map_err(backend)?;
        // A collision of 128-bit random ids is practically impossible; still,
        // never overwrite someone else's session: pick a new id instead.
        for _ in 0..8 {
            let (id, data, expiry, user_id) = to_row(record)?;
            let inserted = diesel::insert_into(sessions::table)
                .values((
                    sessions::id.eq(id),
                    sessions::data.eq(data),
                    sessions::expiry_date.eq(expiry),
                    sessions::user_id.eq(user_id),
                ))
                .on_conflict_do_nothing()
                .execute(&mut conn)
                .await
                .map_err(backend)?;
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(StoreError::Backend(
            "could not allocate a session id".into(),
        ))
    }

    async fn save(&self, record: &Record) -> tower_sessions::session_store::Result<()> {
        let mut conn = self.pool.get().await.map_err(backend)?;
        let (id, data, expiry, user_id) = to_row(record)?;
        // Only existing sessions are updated: a session deleted meanwhile
        // (logged out elsewhere) must stay deleted.
        diesel::update(sessions::table.find(id))
            .set((
                sessions::data.eq(data),
                sessions::expiry_date.eq(expiry),
                sessions::user_id.eq(user_id),
            ))
            .execute(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> tower_sessions::session_store::Result<Option<Record>> {
        let mut conn = self.pool.get().await.map_err(backend)?;
        let row: Option<(serde_json::Value, DateTime<Utc>)> = sessions::table
            .find(session_key(id))
            .filter(sessions::expiry_date.gt(Utc::now()))
            .select((sessions::data, sessions::expiry_date))
            .first(&mut conn)
            .await
            .optional()
            .map_err(backend)?;
        row.map(|(data, expiry)| {
            Ok(Record {
                id: *id,
                data: serde_json::from_value(data)
                    .map_err(|e| StoreError::Decode(e.to_string()))?,
                expiry_date: to_time(expiry)?,
            })
        })
        .transpose()
    }

    async fn delete(&self, id: &Id) -> tower_sessions::session_store::Result<()> {
        let mut conn = self.pool.get().await.map_err(backend)?;
        diesel::delete(sessions::table.find(session_key(id)))
            .execute(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for DieselSessionStore {
    async fn delete_expired(&self) -> tower_sessions::session_store::Result<()> {
        let mut conn = self.pool.get().await.map_err(backend)?;
        diesel::delete(sessions::table.filter(sessions::expiry_date.le(Utc::now())))
            .execute(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The session layer: cookie [`SESSION_COOKIE`], `HttpOnly`,
/// `SameSite=Lax`, `Secure` when `secure` (the public base URL is https),
/// path `/`, its row expiring after `idle_seconds` without a save (the
/// customers' idle timeout; `server::auth::lifetime` enforces the idle
/// timeout and absolute lifetime of each session precisely, staff admins'
/// shorter ones included).
pub fn session_layer(
    pool: DbPool,
    secure: bool,
    idle_seconds: i64,
) -> SessionManagerLayer<DieselSessionStore> {
    SessionManagerLayer::new(DieselSessionStore::new(pool))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(idle_seconds)))
}

/// Deletes expired sessions and sign-in attempts older than a day; returns
/// the number of rows removed.
///
/// Errors: the database error, as text.
pub async fn delete_expired_rows(pool: &DbPool) -> Result<usize, String> {
    let store = DieselSessionStore::new(pool.clone());
    store.delete_expired().await.map_err(|e| e.to_string())?;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    diesel::delete(
        login_attempts::table.filter(login_attempts::at.lt(Utc::now() - chrono::Duration::days(1))),
    )
    .execute(&mut conn)
    .await
    .map_err(|e| e.to_string())
}

/// Runs [`delete_expired_rows`] every `period` forever (spawn it once per
/// server process); failures are logged and retried next period.
pub async fn delete_expired_periodically(pool: DbPool, period: std::time::Duration) {
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        if let Err(error) = delete_expired_rows(&pool).await {
            tracing::warn!(%error, "could not delete expired sessions");
        }
    }
}
