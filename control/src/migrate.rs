//! Schema migrations, embedded in the binary and run at start-up.
//!
//! Each backend has its own set ([`MIGRATIONS`] for PostgreSQL, [`SQLITE_MIGRATIONS`] for
//! SQLite: the same tables, columns, constraints and indexes in each dialect, under the same
//! versions). Each migration runs once, in order, in its own transaction, recorded in
//! `cs_schema_migrations`. Several processes starting together serialise: on PostgreSQL on an
//! advisory lock, on SQLite on the write lock each migration's `BEGIN IMMEDIATE` takes (the
//! version is checked again inside it), so exactly one applies each migration.

use sqlx::{Connection, PgPool, SqlitePool};

use crate::store::{Backed, ControlStore};

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../migrations/0001_control_plane.sql"),
    ),
    (
        2,
        "bot: root messages, cards, inbox",
        include_str!("../migrations/0002_bot.sql"),
    ),
];

/// The SQLite migrations, in order: (version, name, SQL), the same versions as [`MIGRATIONS`].
pub const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../migrations_sqlite/0001_control_plane.sql"),
    ),
    (
        2,
        "bot: root messages, cards, inbox",
        include_str!("../migrations_sqlite/0002_bot.sql"),
    ),
];

/// An arbitrary constant that names Countersign's migration lock.
const MIGRATION_LOCK: i64 = 0x636f_756e_7465_7273;

/// Applies the migrations the store's database has not seen yet. Returns how many ran.
pub async fn run(store: &ControlStore) -> Result<usize, sqlx::Error> {
    match store.pools() {
        Backed::Postgres(pool) => run_postgres(pool).await,
        Backed::Sqlite(pool) => run_sqlite(pool).await,
    }
}

async fn run_postgres(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = apply(&mut conn).await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply(conn: &mut sqlx::PgConnection) -> Result<usize, sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS cs_schema_migrations (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM cs_schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let mut tx = conn.begin().await?;
        // Migration files hold several statements; they are ours, not user input.
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO cs_schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        applied += 1;
    }
    Ok(applied)
}

async fn run_sqlite(pool: &SqlitePool) -> Result<usize, sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS cs_schema_migrations (
            version INTEGER PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL
                DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)))",
    )
    .execute(pool)
    .await?;
    let mut applied = 0;
    for (version, name, sql) in SQLITE_MIGRATIONS {
        // The write lock first, then the check: a second process waits here, then finds the
        // version recorded.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM cs_schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            tx.rollback().await?;
            continue;
        }
        // Migration files hold several statements; they are ours, not user input.
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO cs_schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        applied += 1;
    }
    Ok(applied)
}
