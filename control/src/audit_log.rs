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
//! [`AuditSealer`] batches sealing for a busy process: callers wait for their entry's place in
//! the chain (for the audit line posted in chat) while one seal pass serves all of them.

use std::collections::HashMap;

use countersign_shared::audit::{
    content_text, AuditEntry, AuditRecord, ChainReport, ChainVerifier,
};
use futures_util::TryStreamExt;
use sqlx::{PgExecutor, PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

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

fn sealed_ref(row: &sqlx::postgres::PgRow) -> Result<(i64, SealedRef), StoreError> {
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

/// Queues an audit entry inside the caller's transaction. Returns the entry's event id, by
/// which its sealed record is found later.
pub async fn enqueue<'c>(
    executor: impl PgExecutor<'c>,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO cs_audit_queue (request_id, entry) VALUES ($1, $2) RETURNING id",
    )
    .bind(&entry.request_id)
    .bind(content_text(entry))
    .fetch_one(executor)
    .await?;
    Ok(id)
}

/// Seals up to [`SEAL_BATCH`] queued entries into the chain, in one round trip. Returns where
/// each landed, by event id.
pub async fn seal_pending(pool: &PgPool) -> Result<HashMap<i64, SealedRef>, StoreError> {
    let rows = sqlx::query("SELECT event_id, seq, hash FROM cs_audit_seal($1)")
        .bind(SEAL_BATCH as i32)
        .fetch_all(pool)
        .await?;
    rows.iter().map(sealed_ref).collect()
}

/// Seals until nothing is queued. Returns how many records were sealed.
pub async fn seal_all(pool: &PgPool) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let sealed = seal_pending(pool).await?.len();
        total += sealed;
        if (sealed as i64) < SEAL_BATCH {
            return Ok(total);
        }
    }
}

/// Where the given events landed in the chain (those not sealed yet are absent).
pub async fn sealed_events(
    pool: &PgPool,
    event_ids: &[i64],
) -> Result<HashMap<i64, SealedRef>, StoreError> {
    let rows = sqlx::query("SELECT event_id, seq, hash FROM cs_audit WHERE event_id = ANY($1)")
        .bind(event_ids)
        .fetch_all(pool)
        .await?;
    rows.iter().map(sealed_ref).collect()
}

fn record_from(row: &sqlx::postgres::PgRow) -> Result<AuditRecord, StoreError> {
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
    pool: &PgPool,
    request_id: &str,
) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, content, prev_hash, hash FROM cs_audit WHERE request_id = $1 ORDER BY seq",
    )
    .bind(request_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(record_from).collect()
}

/// Streams every sealed record, in sequence order, as one JSON object per call to `each`
/// (the [`AuditRecord`] shape: chain fields beside the entry's).
pub async fn for_each_record_line(
    pool: &PgPool,
    mut each: impl FnMut(&str) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut rows =
        sqlx::query("SELECT seq, content, prev_hash, hash FROM cs_audit ORDER BY seq").fetch(pool);
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
}

/// The head the store recorded: the last sealed sequence number and its hash.
pub async fn head(pool: &PgPool) -> Result<(u64, String), StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM cs_audit_head")
        .fetch_one(pool)
        .await?;
    let seq: i64 = row.try_get("seq")?;
    Ok((seq as u64, row.try_get("hash")?))
}

/// Verifies the whole chain: every record's hash, every link, the order, and the end of the
/// chain against the recorded head. A record that is not valid JSON counts as edited.
pub async fn verify(pool: &PgPool) -> Result<ChainReport, StoreError> {
    let (head_seq, head_hash) = head(pool).await?;
    let mut verifier = ChainVerifier::new();
    let mut rows =
        sqlx::query("SELECT seq, content, prev_hash, hash FROM cs_audit ORDER BY seq").fetch(pool);
    while let Some(row) = rows.try_next().await? {
        match record_from(&row) {
            Ok(record) => verifier.push(&record),
            Err(_) => {
                let seq: i64 = row.try_get("seq")?;
                verifier.push_unreadable(seq as u64);
            }
        }
    }
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
    pub fn spawn(pool: PgPool) -> AuditSealer {
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
                        let sealed = seal_pending(&pool).await?;
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
                        found.extend(sealed_events(&pool, &missing).await?);
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
