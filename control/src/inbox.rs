//! The bot's inbox: every accepted chat event or command, stored before it is acknowledged.
//!
//! [`accept`] inserts the event under its key (a Slack trigger id or event id, a Discord
//! interaction id, an automation request id). A second delivery of the same key (a platform
//! retry, a second replica on the same events, a replayed request) finds the row and is
//! dropped. The replica that accepted it handles it and calls [`finish`]; a replica that died
//! before finishing leaves the row open, and [`reclaim`] hands it to another replica once its
//! claim is stale, so an acknowledged event is never lost. Handlers are idempotent (they resume
//! from the request's stored state), so handling an event twice after a crash changes nothing.

use sqlx::{PgPool, Row};

use crate::store::StoreError;

/// Stores a new event. True when it is new (the caller handles it); false when the key was seen
/// before (drop it).
pub async fn accept(
    pool: &PgPool,
    key: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO cs_inbox (key, kind, payload) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(kind)
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Renews this replica's claim on an event it is still handling, so no other replica takes it
/// over while it works.
pub async fn renew(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE cs_inbox SET claimed_at = now() WHERE key = $1 AND done_at IS NULL")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks an event handled.
pub async fn finish(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE cs_inbox SET done_at = now() WHERE key = $1 AND done_at IS NULL")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// An unfinished event handed to this replica.
#[derive(Debug, Clone)]
pub struct Reclaimed {
    /// Its key.
    pub key: String,
    /// Its kind (`command`, `reaction`, ...).
    pub kind: String,
    /// The event as accepted.
    pub payload: serde_json::Value,
    /// How many times it has been taken, this time included.
    pub attempts: i32,
}

/// Takes up to `limit` events that were accepted more than `stale_after` ago and never
/// finished (their replica died or failed), renewing their claim so that one replica takes
/// each.
pub async fn reclaim(
    pool: &PgPool,
    stale_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Reclaimed>, StoreError> {
    let rows = sqlx::query(
        "UPDATE cs_inbox SET claimed_at = now(), attempts = attempts + 1
         WHERE key IN (SELECT key FROM cs_inbox
                       WHERE done_at IS NULL
                         AND claimed_at < now() - make_interval(secs => $1)
                       ORDER BY claimed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING key, kind, payload, attempts",
    )
    .bind(stale_after.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Reclaimed {
                key: row.try_get("key")?,
                kind: row.try_get("kind")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .collect()
}

/// Gives up on an event that keeps failing: it is marked done so it stops coming back. The
/// caller logs and counts it.
pub async fn abandon(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    finish(pool, key).await
}

/// Deletes finished events older than `older_than` (their keys only guard against late
/// retries). Returns how many went.
pub async fn prune(pool: &PgPool, older_than: std::time::Duration) -> Result<u64, StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM cs_inbox WHERE done_at IS NOT NULL
         AND done_at < now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
