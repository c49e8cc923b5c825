//! Schema migrations, embedded in the binary and run at start-up.
//!
//! Each migration runs once, in order, in its own transaction, recorded in
//! `cs_schema_migrations`. Several processes starting together serialise on an advisory lock,
//! so exactly one applies each migration.

use sqlx::{Connection, PgPool};

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

/// An arbitrary constant that names Countersign's migration lock.
const MIGRATION_LOCK: i64 = 0x636f_756e_7465_7273;

/// Applies the migrations the database has not seen yet. Returns how many ran.
pub async fn run(pool: &PgPool) -> Result<usize, sqlx::Error> {
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
