//! The control store: one connection pool on one of two backends, migrated at start-up.
//!
//! - **PostgreSQL** (`postgres://` or `postgresql://` URLs) is the production backend: every
//!   bot replica and executor shares it, and row locks, `SKIP LOCKED` and advisory locks let
//!   them work side by side.
//! - **SQLite** (`sqlite:` URLs, e.g. `sqlite:///var/lib/countersign/control.db`,
//!   `sqlite://control.db?mode=rwc` or `sqlite::memory:`) is for `countersign dev`: the bot and
//!   the executor in one process on a machine without PostgreSQL. The file is created if missing
//!   and runs in WAL mode with a busy timeout. SQLite has no row locks, so every transaction that
//!   reads and then writes starts with `BEGIN IMMEDIATE` (it takes the database's write lock
//!   first, so what it read cannot change before it writes), and every other write is a single
//!   statement, which SQLite runs atomically. An in-memory database lives in one connection.
//!
//! The modules of this crate take a [`ControlStore`] and run the SQL of its backend.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{
    Decode, PgConnection, PgPool, Postgres, Row, Sqlite, SqliteConnection, Transaction, Type,
};

/// Why the control store failed. Internal detail stays in logs; chat gets a short reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused a query.
    #[error("control database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Sealing the audit trail failed.
    #[error("sealing the audit trail failed: {0}")]
    Sealer(String),
    /// A stored value does not have the shape this version expects.
    #[error("control database holds a malformed {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The URL names no backend the control store supports.
    #[error("unsupported control database URL (expected postgres://, postgresql:// or sqlite:): {scheme}")]
    UnsupportedUrl {
        /// The URL's scheme (never the whole URL: it may hold a password).
        scheme: String,
    },
}

/// Which database a [`ControlStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: production, shared by every replica.
    Postgres,
    /// SQLite: one file (or memory) for `countersign dev`.
    Sqlite,
}

/// One value per backend: a pool, a transaction, a connection. [`on_backend!`] runs the same
/// code on either.
#[derive(Debug, Clone)]
pub(crate) enum Backed<P, S> {
    /// The PostgreSQL one.
    Postgres(P),
    /// The SQLite one.
    Sqlite(S),
}

/// Runs the same code on whichever backend a [`Backed`] value holds: the body is compiled once
/// with `$x` bound to the PostgreSQL value and once with the SQLite one. The second form also
/// binds `$sql` to the statement text of the backend at hand.
macro_rules! on_backend {
    ($value:expr, |$x:ident| $body:expr) => {
        match $value {
            $crate::store::Backed::Postgres($x) => $body,
            $crate::store::Backed::Sqlite($x) => $body,
        }
    };
    ($value:expr, postgres: $postgres:expr, sqlite: $sqlite:expr, |$x:ident, $sql:ident| $body:expr) => {
        match $value {
            $crate::store::Backed::Postgres($x) => {
                let $sql: &str = $postgres;
                $body
            }
            $crate::store::Backed::Sqlite($x) => {
                let $sql: &str = $sqlite;
                $body
            }
        }
    };
}
pub(crate) use on_backend;

/// A transaction on either backend (SQLite ones began with `BEGIN IMMEDIATE`).
pub(crate) type Tx = Backed<Transaction<'static, Postgres>, Transaction<'static, Sqlite>>;

impl Tx {
    /// The transaction's connection, to run statements on with [`on_backend!`].
    pub(crate) fn on(&mut self) -> Backed<&mut PgConnection, &mut SqliteConnection> {
        match self {
            Backed::Postgres(tx) => Backed::Postgres(&mut **tx),
            Backed::Sqlite(tx) => Backed::Sqlite(&mut **tx),
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        on_backend!(self, |tx| tx.commit().await?);
        Ok(())
    }

    /// Rolls back.
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        on_backend!(self, |tx| tx.rollback().await?);
        Ok(())
    }
}

/// A result row from either backend: `StoreRow::from` turns either driver's row into one, so
/// the code that reads it is written once.
pub(crate) type StoreRow = Backed<PgRow, SqliteRow>;

impl From<PgRow> for StoreRow {
    fn from(row: PgRow) -> StoreRow {
        Backed::Postgres(row)
    }
}

impl From<SqliteRow> for StoreRow {
    fn from(row: SqliteRow) -> StoreRow {
        Backed::Sqlite(row)
    }
}

impl StoreRow {
    /// Reads a column.
    pub(crate) fn get<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: for<'r> Decode<'r, Postgres>
            + Type<Postgres>
            + for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>,
    {
        Ok(on_backend!(self, |row| row.try_get(column)?))
    }
}

/// The control plane's database: a PostgreSQL or a SQLite pool.
#[derive(Clone, Debug)]
pub struct ControlStore {
    pools: Backed<PgPool, SqlitePool>,
}

/// How long a SQLite statement waits for another connection's write lock before it fails.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl ControlStore {
    /// Connects (up to `max_connections`) and runs pending migrations. The URL picks the
    /// backend: `postgres://` / `postgresql://` for PostgreSQL, `sqlite:` for SQLite (the file
    /// is created if missing; `sqlite::memory:` keeps the store in one connection's memory).
    pub async fn connect(url: &str, max_connections: u32) -> Result<ControlStore, StoreError> {
        let store = ControlStore::connect_with(url, max_connections, true).await?;
        crate::migrate::run(&store).await?;
        Ok(store)
    }

    /// Connects like [`ControlStore::connect`] without running migrations (for tools that only
    /// read). A SQLite file is created only when the URL asks for it (`?mode=rwc`).
    pub async fn open(url: &str, max_connections: u32) -> Result<ControlStore, StoreError> {
        ControlStore::connect_with(url, max_connections, false).await
    }

    async fn connect_with(
        url: &str,
        max_connections: u32,
        create: bool,
    ) -> Result<ControlStore, StoreError> {
        match Backend::of_url(url)? {
            Backend::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    // No ping before every query: a broken connection fails its query, and
                    // every caller of the store retries (a delivery stays pending, a
                    // reconciler pass comes again).
                    .test_before_acquire(false)
                    .connect(url)
                    .await?;
                Ok(ControlStore::from_pool(pool))
            }
            Backend::Sqlite => Ok(ControlStore {
                pools: Backed::Sqlite(open_sqlite(url, max_connections, create).await?),
            }),
        }
    }

    /// Wraps an existing PostgreSQL pool (migrations are the caller's business).
    pub fn from_pool(pool: PgPool) -> ControlStore {
        ControlStore {
            pools: Backed::Postgres(pool),
        }
    }

    /// Wraps an existing SQLite pool (migrations and the pool's settings are the caller's
    /// business: WAL and a busy timeout are needed when several connections share a file).
    pub fn from_sqlite_pool(pool: SqlitePool) -> ControlStore {
        ControlStore {
            pools: Backed::Sqlite(pool),
        }
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Backed::Postgres(_) => Backend::Postgres,
            Backed::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The PostgreSQL pool, when this store runs on PostgreSQL (for tests and tools that run
    /// their own SQL).
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.pools {
            Backed::Postgres(pool) => Some(pool),
            Backed::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, when this store runs on SQLite (for tests and tools that run their own
    /// SQL).
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pools {
            Backed::Postgres(_) => None,
            Backed::Sqlite(pool) => Some(pool),
        }
    }

    /// The pool of the backend at hand.
    pub(crate) fn pools(&self) -> &Backed<PgPool, SqlitePool> {
        &self.pools
    }

    /// The pool of the backend at hand as an executor, to run statements on with
    /// [`on_backend!`].
    pub(crate) fn on(&self) -> Backed<&PgPool, &SqlitePool> {
        match &self.pools {
            Backed::Postgres(pool) => Backed::Postgres(pool),
            Backed::Sqlite(pool) => Backed::Sqlite(pool),
        }
    }

    /// Begins a transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken at once,
    /// so nothing the transaction reads can change before it writes (what `FOR UPDATE` gives on
    /// PostgreSQL), and it never fails half-way for want of the lock.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pools {
            Backed::Postgres(pool) => Backed::Postgres(pool.begin().await?),
            Backed::Sqlite(pool) => Backed::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Checks the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self.on(), |db| {
            sqlx::query("SELECT 1").execute(db).await?;
        });
        Ok(())
    }

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        on_backend!(&self.pools, |pool| pool.close().await);
    }
}

impl Backend {
    /// The backend a control database URL names.
    pub fn of_url(url: &str) -> Result<Backend, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "sqlite" => Ok(Backend::Sqlite),
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }
}

async fn open_sqlite(
    url: &str,
    max_connections: u32,
    create: bool,
) -> Result<SqlitePool, StoreError> {
    let in_memory = url.starts_with("sqlite::memory:") || url.contains("mode=memory");
    let mut options = SqliteConnectOptions::from_str(url)?;
    if create && !in_memory {
        options = options.create_if_missing(true);
        // A fresh machine may not have the file's directory yet.
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
        }
    }
    let options = options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = if in_memory {
        // An in-memory database lives as long as its connection: keep exactly one, for ever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(max_connections.max(1))
    }
    .acquire_timeout(SQLITE_BUSY_TIMEOUT)
    .connect_with(options)
    .await?;
    Ok(pool)
}
