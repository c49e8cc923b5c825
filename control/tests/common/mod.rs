//! Each scenario runs against both backends of the control store: PostgreSQL (a fresh
//! database from the test kit) and SQLite (a fresh file in a temporary directory).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use countersign_control::store::ControlStore;
use countersign_testkit::PgDatabase;

/// A migrated store and what keeps its database alive.
pub struct TestStore {
    /// The store.
    pub store: ControlStore,
    _keep: Keep,
}

enum Keep {
    Postgres(PgDatabase),
    Sqlite(TempDir),
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory under the system's temporary directory.
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "countersign-control-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store on a fresh PostgreSQL database.
pub async fn postgres() -> TestStore {
    let db = PgDatabase::create().await;
    let store = ControlStore::connect(&db.url, 4)
        .await
        .expect("connect and migrate");
    TestStore {
        store,
        _keep: Keep::Postgres(db),
    }
}

/// A store on a fresh SQLite file (its directory does not exist yet: connecting creates it).
pub async fn sqlite() -> TestStore {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/state/control.db", dir.0.display());
    let store = ControlStore::connect(&url, 4)
        .await
        .expect("connect and migrate");
    TestStore {
        store,
        _keep: Keep::Sqlite(dir),
    }
}

/// Runs statements of the test's own on the store's database.
pub async fn execute(store: &ControlStore, sql: &str) -> Result<u64, sqlx::Error> {
    if let Some(pool) = store.pg_pool() {
        return Ok(sqlx::raw_sql(sql).execute(pool).await?.rows_affected());
    }
    let pool = store.sqlite_pool().expect("postgres or sqlite");
    Ok(sqlx::raw_sql(sql).execute(pool).await?.rows_affected())
}

/// Defines, for each scenario `async fn name(store: ControlStore)`, the tests
/// `postgres::name` and `sqlite::name`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = crate::common::postgres().await;
                    super::$scenario(db.store.clone()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = crate::common::sqlite().await;
                    super::$scenario(db.store.clone()).await;
                }
            )*
        }
    };
}
