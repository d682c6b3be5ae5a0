//! The PostgreSQL pool and migrations.

pub mod queue;
pub mod schema;

use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The connection pool type kept in the application state.
pub type DbPool = Pool<AsyncPgConnection>;

/// One pooled connection.
pub type DbConn = Object<AsyncPgConnection>;

/// Errors while creating the pool or migrating.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// The pool could not be built.
    #[error("could not build the database pool: {0}")]
    Pool(String),
    /// A migration failed (the message names it).
    #[error("migration failed: {0}")]
    Migration(String),
}

/// Builds the pool. Every new connection gets `statement_timeout` set to
/// `statement_timeout_seconds`, so no query can hold a connection forever.
/// Connections are opened lazily: a database that is down makes requests
/// fail (and `/health` say so), not start-up.
pub fn build_pool(
    database_url: &str,
    max_size: usize,
    statement_timeout_seconds: u64,
) -> Result<DbPool, DbSetupError> {
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            diesel::sql_query(format!(
                "SET statement_timeout = '{statement_timeout_seconds}s'"
            ))
            .execute(&mut conn)
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .runtime(deadpool_runtime())
        .build()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

fn deadpool_runtime() -> deadpool::Runtime {
    deadpool::Runtime::Tokio1
}

/// Applies every pending migration; returns the versions applied.
pub async fn run_pending_migrations(database_url: &str) -> Result<Vec<String>, DbSetupError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        Ok(applied.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}

/// Reverts every applied migration (runs each `down.sql`, newest first);
/// returns the versions reverted.
pub async fn revert_all_migrations(database_url: &str) -> Result<Vec<String>, DbSetupError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        let reverted = conn
            .revert_all_migrations(MIGRATIONS)
            .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        Ok(reverted.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}
