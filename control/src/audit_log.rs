//! The audit trail in PostgreSQL: append-only and hash-chained.
//!
//! Writing an entry ([`enqueue`]) is an insert into `cs_audit_queue` inside the transaction of
//! the transition it records, so a transition and its entry commit together or not at all. The
//! queue holds the entry's content text exactly as it is hashed
//! ([`countersign_shared::audit::content_text`]). Sealing ([`seal_pending`], the SQL function
//! `cs_audit_seal`) moves queued entries into the chain (`cs_audit`) in one round trip, holding
//! the head row's lock: each record gets the next sequence number, the previous record's hash,
//! and its own hash, computed by PostgreSQL with the same formula as
//! [`countersign_shared::audit::record_hash`]. Any process may seal; the lock makes them take
//! turns. `cs_audit` refuses UPDATE, DELETE and TRUNCATE (a trigger), and [`verify`] recomputes
//! every hash and link in Rust and compares the end of the chain with the recorded head.
//!
//! On SQLite (`countersign dev`) the same happens in Rust: sealing runs in a `BEGIN IMMEDIATE`
//! transaction (the database's write lock stands for the head row's lock), computes each hash
//! with [`countersign_shared::audit::record_hash`], and triggers refuse UPDATE and DELETE on
//! `cs_audit`.
//!
//! [`AuditSealer`] batches sealing for a busy process: callers wait for their entry's place in
//! the chain (for the audit line posted in chat) while one seal pass serves all of them.

use std::collections::HashMap;

use countersign_shared::audit::{
    content_text, record_hash, AuditEntry, AuditRecord, ChainReport, ChainVerifier,
};
use futures_util::TryStreamExt;
use sqlx::{PgExecutor, Row, SqliteConnection, SqliteExecutor};
use tokio::sync::{mpsc, oneshot};

use crate::store::{on_backend, Backed, ControlStore, StoreError, Tx};

/// Most entries sealed in one transaction.
pub const SEAL_BATCH: i64 = 2000;

/// Where a sealed entry stands in the chain: enough for the audit line in chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRef {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's hash.
    pub hash: String,
}

impl SealedRef {
    /// The reference posted in chat ([`countersign_shared::audit::reference`]).
    pub fn reference(&self) -> String {
        countersign_shared::audit::reference(self.seq, &self.hash)
    }
}

fn sealed_ref<'r, R: Row>(row: &'r R) -> Result<(i64, SealedRef), StoreError>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let event_id: i64 = row.try_get("event_id")?;
    let seq: i64 = row.try_get("seq")?;
    Ok((
        event_id,
        SealedRef {
            seq: seq as u64,
            hash: row.try_get("hash")?,
        },
    ))
}

/// Queues an audit entry on its own (the transition it records is already durable). Returns
/// the entry's event id, by which its sealed record is found later.
pub async fn enqueue(store: &ControlStore, entry: &AuditEntry) -> Result<i64, StoreError> {
    enqueue_on(store.on(), entry).await
}

/// Queues an audit entry inside the caller's transaction. Returns the entry's event id.
pub(crate) async fn enqueue_in(tx: &mut Tx, entry: &AuditEntry) -> Result<i64, StoreError> {
    enqueue_on(tx.on(), entry).await
}

async fn enqueue_on<'c>(
    on: Backed<impl PgExecutor<'c>, impl SqliteExecutor<'c>>,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let id: i64 = on_backend!(on, |db| sqlx::query_scalar(
        "INSERT INTO cs_audit_queue (request_id, entry) VALUES ($1, $2) RETURNING id",
    )
    .bind(&entry.request_id)
    .bind(content_text(entry))
    .fetch_one(db)
    .await?);
    Ok(id)
}

/// Seals up to [`SEAL_BATCH`] queued entries into the chain, in one round trip (PostgreSQL) or
/// one transaction (SQLite). Returns where each landed, by event id.
pub async fn seal_pending(store: &ControlStore) -> Result<HashMap<i64, SealedRef>, StoreError> {
    match store.pools() {
        Backed::Postgres(pool) => {
            let rows = sqlx::query("SELECT event_id, seq, hash FROM cs_audit_seal($1)")
                .bind(SEAL_BATCH as i32)
                .fetch_all(pool)
                .await?;
            rows.iter().map(sealed_ref).collect()
        }
        Backed::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let sealed = seal_sqlite(&mut tx, SEAL_BATCH).await?;
            tx.commit().await?;
            Ok(sealed.into_iter().collect())
        }
    }
}

/// SQLite's `cs_audit_seal`: seals up to `batch` queued entries, oldest first, and moves the
/// head. The caller's transaction must hold the write lock (`BEGIN IMMEDIATE`), so sealers take
/// turns. Returns what it sealed, in chain order.
pub(crate) async fn seal_sqlite(
    conn: &mut SqliteConnection,
    batch: i64,
) -> Result<Vec<(i64, SealedRef)>, StoreError> {
    let head = sqlx::query("SELECT seq, hash FROM cs_audit_head")
        .fetch_one(&mut *conn)
        .await?;
    let mut seq: i64 = head.try_get("seq")?;
    let mut hash: String = head.try_get("hash")?;
    let queued =
        sqlx::query("SELECT id, request_id, entry FROM cs_audit_queue ORDER BY id LIMIT $1")
            .bind(batch)
            .fetch_all(&mut *conn)
            .await?;
    let mut sealed = Vec::with_capacity(queued.len());
    let mut last_id = None;
    for row in &queued {
        let id: i64 = row.try_get("id")?;
        let request_id: String = row.try_get("request_id")?;
        let entry: String = row.try_get("entry")?;
        seq += 1;
        let next = record_hash(&hash, seq as u64, &entry);
        sqlx::query(
            "INSERT INTO cs_audit (seq, event_id, request_id, content, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(seq)
        .bind(id)
        .bind(&request_id)
        .bind(&entry)
        .bind(&hash)
        .bind(&next)
        .execute(&mut *conn)
        .await?;
        hash = next;
        sealed.push((
            id,
            SealedRef {
                seq: seq as u64,
                hash: hash.clone(),
            },
        ));
        last_id = Some(id);
    }
    if let Some(last_id) = last_id {
        // The entries taken are the oldest ones, and nobody else writes while this transaction
        // holds the write lock: they are exactly those up to the last id taken.
        sqlx::query("DELETE FROM cs_audit_queue WHERE id <= $1")
            .bind(last_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE cs_audit_head SET seq = $1, hash = $2")
            .bind(seq)
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(sealed)
}

/// Seals until nothing is queued. Returns how many records were sealed.
pub async fn seal_all(store: &ControlStore) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let sealed = seal_pending(store).await?.len();
        total += sealed;
        if (sealed as i64) < SEAL_BATCH {
            return Ok(total);
        }
    }
}

/// Where the given events landed in the chain (those not sealed yet are absent).
pub async fn sealed_events(
    store: &ControlStore,
    event_ids: &[i64],
) -> Result<HashMap<i64, SealedRef>, StoreError> {
    match store.pools() {
        Backed::Postgres(pool) => {
            let rows =
                sqlx::query("SELECT event_id, seq, hash FROM cs_audit WHERE event_id = ANY($1)")
                    .bind(event_ids)
                    .fetch_all(pool)
                    .await?;
            rows.iter().map(sealed_ref).collect()
        }
        Backed::Sqlite(pool) => {
            let rows = sqlx::query(
                "SELECT event_id, seq, hash FROM cs_audit
                 WHERE event_id IN (SELECT value FROM json_each($1))",
            )
            .bind(json_list(event_ids)?)
            .fetch_all(pool)
            .await?;
            rows.iter().map(sealed_ref).collect()
        }
    }
}

/// A list as a JSON array, for SQLite's `json_each` (it has no array parameters).
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|error| StoreError::Corrupt {
        what: "parameter list",
        detail: error.to_string(),
    })
}

fn record_from<'r, R: Row>(row: &'r R) -> Result<AuditRecord, StoreError>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = row.try_get("seq")?;
    let content: String = row.try_get("content")?;
    AuditRecord::from_stored(
        seq as u64,
        &content,
        row.try_get("prev_hash")?,
        row.try_get("hash")?,
    )
    .map_err(|error| StoreError::Corrupt {
        what: "audit record",
        detail: format!("#{seq}: {error}"),
    })
}

/// The sealed records of one request, in chain order.
pub async fn records_for_request(
    store: &ControlStore,
    request_id: &str,
) -> Result<Vec<AuditRecord>, StoreError> {
    on_backend!(store.on(), |db| {
        let rows = sqlx::query(
            "SELECT seq, content, prev_hash, hash FROM cs_audit WHERE request_id = $1 ORDER BY seq",
        )
        .bind(request_id)
        .fetch_all(db)
        .await?;
        rows.iter().map(record_from).collect()
    })
}

/// Streams every sealed record, in sequence order, as one JSON object per call to `each`
/// (the [`AuditRecord`] shape: chain fields beside the entry's).
pub async fn for_each_record_line(
    store: &ControlStore,
    mut each: impl FnMut(&str) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    on_backend!(store.on(), |db| {
        let mut rows =
            sqlx::query("SELECT seq, content, prev_hash, hash FROM cs_audit ORDER BY seq")
                .fetch(db);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            let record = record_from(&row)?;
            let line = serde_json::to_string(&record).map_err(|error| StoreError::Corrupt {
                what: "audit record",
                detail: error.to_string(),
            })?;
            each(&line)?;
            count += 1;
        }
        Ok(count)
    })
}

/// The head the store recorded: the last sealed sequence number and its hash.
pub async fn head(store: &ControlStore) -> Result<(u64, String), StoreError> {
    on_backend!(store.on(), |db| {
        let row = sqlx::query("SELECT seq, hash FROM cs_audit_head")
            .fetch_one(db)
            .await?;
        let seq: i64 = row.try_get("seq")?;
        Ok((seq as u64, row.try_get("hash")?))
    })
}

/// Verifies the whole chain: every record's hash, every link, the order, and the end of the
/// chain against the recorded head. A record that is not valid JSON counts as edited.
pub async fn verify(store: &ControlStore) -> Result<ChainReport, StoreError> {
    let (head_seq, head_hash) = head(store).await?;
    let mut verifier = ChainVerifier::new();
    on_backend!(store.on(), |db| {
        let mut rows =
            sqlx::query("SELECT seq, content, prev_hash, hash FROM cs_audit ORDER BY seq")
                .fetch(db);
        while let Some(row) = rows.try_next().await? {
            match record_from(&row) {
                Ok(record) => verifier.push(&record),
                Err(_) => {
                    let seq: i64 = row.try_get("seq")?;
                    verifier.push_unreadable(seq as u64);
                }
            }
        }
    });
    Ok(verifier.finish_with_head(head_seq, &head_hash))
}

type SealReply = oneshot::Sender<Result<SealedRef, String>>;

/// Seals in batches for a whole process. Cheap to clone.
#[derive(Clone)]
pub struct AuditSealer {
    requests: mpsc::UnboundedSender<(i64, SealReply)>,
}

impl AuditSealer {
    /// Starts the sealing task on the current runtime.
    pub fn spawn(store: ControlStore) -> AuditSealer {
        let (requests, mut receiver) = mpsc::unbounded_channel::<(i64, SealReply)>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut waiting = vec![first];
                while let Ok(more) = receiver.try_recv() {
                    waiting.push(more);
                }
                let result = async {
                    // Seal everything queued; answer from what this pass sealed, and look up
                    // the rest (sealed by another process in the meantime).
                    let mut found = HashMap::new();
                    loop {
                        let sealed = seal_pending(&store).await?;
                        let full = sealed.len() as i64 >= SEAL_BATCH;
                        found.extend(
                            sealed
                                .into_iter()
                                .filter(|(id, _)| waiting.iter().any(|(wanted, _)| wanted == id)),
                        );
                        if !full {
                            break;
                        }
                    }
                    let missing: Vec<i64> = waiting
                        .iter()
                        .map(|(id, _)| *id)
                        .filter(|id| !found.contains_key(id))
                        .collect();
                    if !missing.is_empty() {
                        found.extend(sealed_events(&store, &missing).await?);
                    }
                    Ok::<_, StoreError>(found)
                }
                .await;
                match result {
                    Ok(mut found) => {
                        for (id, reply) in waiting {
                            let _ = reply.send(found.remove(&id).ok_or_else(|| {
                                format!("audit event {id} was not found after sealing")
                            }));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "sealing the audit trail failed");
                        for (_, reply) in waiting {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                }
            }
        });
        AuditSealer { requests }
    }

    /// Seals the event's entry (with whatever else is queued) and returns its place.
    pub async fn sealed(&self, event_id: i64) -> Result<SealedRef, StoreError> {
        let (reply, receive) = oneshot::channel();
        self.requests
            .send((event_id, reply))
            .map_err(|_| StoreError::Sealer("the sealing task has stopped".into()))?;
        receive
            .await
            .map_err(|_| StoreError::Sealer("the sealing task has stopped".into()))?
            .map_err(StoreError::Sealer)
    }
}
