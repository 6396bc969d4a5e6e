//! The state store: one SQL database (SQLite file by default) reached through `sqlx`, with
//! versioned migrations embedded from `orchestrator/migrations/`. A later service adds its tables
//! with a further numbered migration there; `Store::open` applies whatever is pending.
//!
//! SQL here stays portable to PostgreSQL: `$N` placeholders, TEXT ids, BIGINT microsecond
//! timestamps, BOOLEAN flags, JSON as TEXT, no SQLite-only functions.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened at the given location.
    #[error("cannot open the state database {location}: {source}")]
    Open {
        /// Path or URL of the database.
        location: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the state database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A row with the same unique key exists.
    #[error("{0}")]
    Conflict(String),
    /// No such row.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for ("project", "image", ...).
        kind: &'static str,
        /// The id or name given.
        id: String,
    },
    /// Password hashing failed.
    #[error(transparent)]
    Password(#[from] crate::identity::PasswordError),
}

impl StoreError {
    /// A `NotFound` for `kind` with `id`.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Maps a unique-constraint violation to `Conflict(msg)`, anything else to `Db`.
    pub(crate) fn conflict_or(err: sqlx::Error, msg: impl FnOnce() -> String) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(msg()),
            _ => StoreError::Db(err),
        }
    }
}

/// Handle to the state database; cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::connect(opts, 8, &path.display().to_string()).await
    }

    /// Opens a database by sqlx URL (`sqlite::memory:`, `sqlite:///path`); for tests and tools.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Open {
            location: url.to_string(),
            source,
        })?;
        // An in-memory database lives in one connection; a pool of one keeps it whole.
        let max = if url.contains(":memory:") { 1 } else { 8 };
        Self::connect(opts.create_if_missing(true), max, url).await
    }

    async fn connect(
        opts: SqliteConnectOptions,
        max_connections: u32,
        location: &str,
    ) -> Result<Store, StoreError> {
        // WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
        let opts = opts
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                location: location.to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        tracing::debug!(location, "state store open and migrated");
        Ok(Store { pool })
    }

    /// The connection pool, for modules that add their own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Now, in microseconds since the Unix epoch (the store's time unit).
pub fn now_micros() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A new random id: 32 lowercase hex digits, as keystone and glance ids look to clients.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_file_database_and_migrates_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).await.unwrap();
        store.close().await;
        // Reopening applies nothing new and keeps the schema.
        let store = Store::open(&path).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM domains")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn dollar_placeholders_bind_by_number() {
        let store = Store::open_url("sqlite::memory:").await.unwrap();
        let (a, b): (i64, String) = sqlx::query_as("SELECT $2, $1")
            .bind("one")
            .bind(2_i64)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!((a, b.as_str()), (2, "one"));
    }
}
