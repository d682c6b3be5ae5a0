//! The PostgreSQL pool and migrations. Connections (the pool's and the
//! migrations') honour the URL's `sslmode` and `sslrootcert` (see
//! [`connect`]).

pub mod connect;
pub mod queue;
pub mod schema;

pub use connect::{DbTarget, DbUrlError, SslMode};
use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
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
/// fail (and `/health` say so), not start-up; a malformed URL or an
/// unreadable CA file fails here.
pub fn build_pool(
    database_url: &str,
    max_size: usize,
    statement_timeout_seconds: u64,
) -> Result<DbPool, DbSetupError> {
    let target = DbTarget::parse(database_url).map_err(|e| DbSetupError::Pool(e.0))?;
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |_url| {
        let target = target.clone();
        Box::pin(async move {
            let mut conn = target.connect().await?;
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

/// A migration connection (same TLS rules as the pool's), wrapped for
/// diesel's synchronous migration harness.
async fn migration_connection(
    database_url: &str,
) -> Result<AsyncConnectionWrapper<AsyncPgConnection>, DbSetupError> {
    let target = DbTarget::parse(database_url).map_err(|e| DbSetupError::Migration(e.0))?;
    let conn = target
        .connect()
        .await
        .map_err(|e| DbSetupError::Migration(format!("cannot connect: {e}")))?;
    Ok(AsyncConnectionWrapper::from(conn))
}

/// Applies every pending migration; returns the versions applied.
pub async fn run_pending_migrations(database_url: &str) -> Result<Vec<String>, DbSetupError> {
    let mut conn = migration_connection(database_url).await?;
    tokio::task::spawn_blocking(move || {
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        Ok(applied.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}

/// Reverts the newest applied migration (its `down.sql`); returns its
/// version. The rollback runbook's step (`migrate --revert-last`).
pub async fn revert_last_migration(database_url: &str) -> Result<String, DbSetupError> {
    let mut conn = migration_connection(database_url).await?;
    tokio::task::spawn_blocking(move || {
        conn.revert_last_migration(MIGRATIONS)
            .map(|v| v.to_string())
            .map_err(|e| DbSetupError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}

/// Reverts every applied migration (runs each `down.sql`, newest first);
/// returns the versions reverted.
pub async fn revert_all_migrations(database_url: &str) -> Result<Vec<String>, DbSetupError> {
    let mut conn = migration_connection(database_url).await?;
    tokio::task::spawn_blocking(move || {
        let reverted = conn
            .revert_all_migrations(MIGRATIONS)
            .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        Ok(reverted.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}
