//! The bot's inbox: every accepted chat event or command, stored before it is acknowledged.
//!
//! [`accept`] inserts the event under its key (a Slack trigger id or event id, a Discord
//! interaction id, an automation request id). A second delivery of the same key (a platform
//! retry, a second replica on the same events, a replayed request) finds the row and is
//! dropped. The replica that accepted it handles it and calls [`finish`]; a replica that died
//! before finishing leaves the row open, and [`reclaim`] hands it to another replica once its
//! claim is stale, so an acknowledged event is never lost. Handlers are idempotent (they resume
//! from the request's stored state), so handling an event twice after a crash changes nothing.

use crate::store::{on_backend, ControlStore, StoreError, StoreRow};

/// Stores a new event. True when it is new (the caller handles it); false when the key was seen
/// before (drop it).
pub async fn accept(
    store: &ControlStore,
    key: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<bool, StoreError> {
    let inserted = on_backend!(store.on(),
        postgres: "INSERT INTO cs_inbox (key, kind, payload) VALUES ($1, $2, $3)
                   ON CONFLICT (key) DO NOTHING",
        sqlite: "INSERT INTO cs_inbox (key, kind, payload, received_at, claimed_at)
                 VALUES ($1, $2, $3, (SELECT ms FROM cs_now), (SELECT ms FROM cs_now))
                 ON CONFLICT (key) DO NOTHING",
        |db, sql| sqlx::query(sql)
            .bind(key)
            .bind(kind)
            .bind(payload)
            .execute(db)
            .await?
            .rows_affected()
    );
    Ok(inserted == 1)
}

/// Renews this replica's claim on an event it is still handling, so no other replica takes it
/// over while it works.
pub async fn renew(store: &ControlStore, key: &str) -> Result<(), StoreError> {
    on_backend!(store.on(),
        postgres: "UPDATE cs_inbox SET claimed_at = now() WHERE key = $1 AND done_at IS NULL",
        sqlite: "UPDATE cs_inbox SET claimed_at = (SELECT ms FROM cs_now)
                 WHERE key = $1 AND done_at IS NULL",
        |db, sql| {
            sqlx::query(sql).bind(key).execute(db).await?;
        }
    );
    Ok(())
}

/// Marks an event handled.
pub async fn finish(store: &ControlStore, key: &str) -> Result<(), StoreError> {
    on_backend!(store.on(),
        postgres: "UPDATE cs_inbox SET done_at = now() WHERE key = $1 AND done_at IS NULL",
        sqlite: "UPDATE cs_inbox SET done_at = (SELECT ms FROM cs_now)
                 WHERE key = $1 AND done_at IS NULL",
        |db, sql| {
            sqlx::query(sql).bind(key).execute(db).await?;
        }
    );
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
    store: &ControlStore,
    stale_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Reclaimed>, StoreError> {
    let rows: Vec<StoreRow> = on_backend!(store.on(),
        postgres: "UPDATE cs_inbox SET claimed_at = now(), attempts = attempts + 1
                   WHERE key IN (SELECT key FROM cs_inbox
                                 WHERE done_at IS NULL
                                   AND claimed_at < now() - make_interval(secs => $1)
                                 ORDER BY claimed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING key, kind, payload, attempts",
        // One statement: SQLite runs it under the write lock, so one replica takes each.
        sqlite: "UPDATE cs_inbox SET claimed_at = (SELECT ms FROM cs_now), attempts = attempts + 1
                 WHERE key IN (SELECT key FROM cs_inbox
                               WHERE done_at IS NULL
                                 AND claimed_at
                                     < (SELECT ms FROM cs_now) - CAST($1 * 1000 AS INTEGER)
                               ORDER BY claimed_at LIMIT $2)
                 RETURNING key, kind, payload, attempts",
        |db, sql| sqlx::query(sql)
            .bind(stale_after.as_secs_f64())
            .bind(limit)
            .fetch_all(db)
            .await?
            .into_iter()
            .map(StoreRow::from)
            .collect()
    );
    rows.iter()
        .map(|row| {
            Ok(Reclaimed {
                key: row.get("key")?,
                kind: row.get("kind")?,
                payload: row.get("payload")?,
                attempts: row.get("attempts")?,
            })
        })
        .collect()
}

/// Gives up on an event that keeps failing: it is marked done so it stops coming back. The
/// caller logs and counts it.
pub async fn abandon(store: &ControlStore, key: &str) -> Result<(), StoreError> {
    finish(store, key).await
}

/// Deletes finished events older than `older_than` (their keys only guard against late
/// retries). Returns how many went.
pub async fn prune(
    store: &ControlStore,
    older_than: std::time::Duration,
) -> Result<u64, StoreError> {
    Ok(on_backend!(store.on(),
        postgres: "DELETE FROM cs_inbox WHERE done_at IS NOT NULL
                   AND done_at < now() - make_interval(secs => $1)",
        sqlite: "DELETE FROM cs_inbox WHERE done_at IS NOT NULL
                 AND done_at < (SELECT ms FROM cs_now) - CAST($1 * 1000 AS INTEGER)",
        |db, sql| sqlx::query(sql)
            .bind(older_than.as_secs_f64())
            .execute(db)
            .await?
            .rows_affected()
    ))
}
