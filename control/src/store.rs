//! The PostgreSQL control store: one pool, migrated at start-up.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

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
}

/// The control plane's PostgreSQL.
#[derive(Clone, Debug)]
pub struct ControlStore {
    pool: PgPool,
}

impl ControlStore {
    /// Connects (lazily, up to `max_connections`) and runs pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<ControlStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // No ping before every query: a broken connection fails its query, and every caller
            // of the store retries (a delivery stays pending, a reconciler pass comes again).
            .test_before_acquire(false)
            .connect(url)
            .await?;
        let store = ControlStore { pool };
        crate::migrate::run(&store.pool).await?;
        Ok(store)
    }

    /// Wraps an existing pool (migrations are the caller's business).
    pub fn from_pool(pool: PgPool) -> ControlStore {
        ControlStore { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
