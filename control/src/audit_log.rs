//! The audit trail in PostgreSQL: append-only and hash-chained.
//!
//! Writing an entry ([`enqueue`]) is an insert into `cs_audit_queue` inside the transaction of
//! the transition it records, so a transition and its entry commit together or not at all.
//! Sealing ([`seal_pending`]) moves queued entries into the chain (`cs_audit`) in one
//! transaction that holds the head row's lock: each record gets the next sequence number and the
//! previous record's hash. Any process may seal; the lock makes them take turns. `cs_audit`
//! refuses UPDATE, DELETE and TRUNCATE (a trigger), and [`verify`] recomputes every hash and
//! link and compares the end of the chain with the recorded head.
//!
//! [`AuditSealer`] batches sealing for a busy process: callers wait for their entry's record
//! (for the audit line posted in chat) while one seal pass serves all of them.

use std::collections::HashMap;

use countersign_shared::audit::{AuditEntry, AuditRecord, ChainReport, ChainVerifier};
use futures_util::TryStreamExt;
use sqlx::{PgExecutor, PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Most entries sealed in one transaction.
pub const SEAL_BATCH: i64 = 2000;

/// An entry as the queue stores it.
pub fn entry_text(entry: &AuditEntry) -> Result<String, StoreError> {
    serde_json::to_string(entry).map_err(|error| StoreError::Corrupt {
        what: "audit entry",
        detail: error.to_string(),
    })
}

/// Queues an audit entry inside the caller's transaction. Returns the entry's event id, by
/// which its sealed record is found later.
pub async fn enqueue<'c>(
    executor: impl PgExecutor<'c>,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let text = entry_text(entry)?;
    let id: i64 = sqlx::query_scalar("INSERT INTO cs_audit_queue (entry) VALUES ($1) RETURNING id")
        .bind(text)
        .fetch_one(executor)
        .await?;
    Ok(id)
}

/// Seals up to [`SEAL_BATCH`] queued entries into the chain. Returns the records it sealed, by
/// event id.
pub async fn seal_pending(pool: &PgPool) -> Result<HashMap<i64, AuditRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    // The head's lock first: sealers take turns, and none waits on another's queue rows.
    let head = sqlx::query("SELECT seq, hash FROM cs_audit_head FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    let mut seq: i64 = head.try_get("seq")?;
    let mut prev_hash: String = head.try_get("hash")?;
    let mut queued: Vec<(i64, String)> = sqlx::query_as(
        "DELETE FROM cs_audit_queue
         WHERE id IN (SELECT id FROM cs_audit_queue ORDER BY id LIMIT $1)
         RETURNING id, entry",
    )
    .bind(SEAL_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if queued.is_empty() {
        tx.rollback().await?;
        return Ok(HashMap::new());
    }
    queued.sort_unstable_by_key(|(id, _)| *id);
    let mut seqs = Vec::with_capacity(queued.len());
    let mut event_ids = Vec::with_capacity(queued.len());
    let mut request_ids = Vec::with_capacity(queued.len());
    let mut texts = Vec::with_capacity(queued.len());
    let mut hashes = Vec::with_capacity(queued.len());
    let mut prev_hashes = Vec::with_capacity(queued.len());
    let mut sealed = HashMap::with_capacity(queued.len());
    for (event_id, text) in queued {
        let entry: AuditEntry =
            serde_json::from_str(&text).map_err(|error| StoreError::Corrupt {
                what: "queued audit entry",
                detail: format!("event {event_id}: {error}"),
            })?;
        seq += 1;
        let request_id = entry.request_id.clone();
        let record = AuditRecord::seal(entry, seq as u64, &prev_hash);
        let record_text = serde_json::to_string(&record).map_err(|error| StoreError::Corrupt {
            what: "audit record",
            detail: error.to_string(),
        })?;
        prev_hashes.push(std::mem::replace(&mut prev_hash, record.hash.clone()));
        seqs.push(seq);
        event_ids.push(event_id);
        request_ids.push(request_id);
        hashes.push(record.hash.clone());
        texts.push(record_text);
        sealed.insert(event_id, record);
    }
    sqlx::query(
        "WITH sealed AS (
             INSERT INTO cs_audit (seq, event_id, request_id, record, hash, prev_hash)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]))
         UPDATE cs_audit_head SET seq = $7, hash = $8",
    )
    .bind(&seqs)
    .bind(&event_ids)
    .bind(&request_ids)
    .bind(&texts)
    .bind(&hashes)
    .bind(&prev_hashes)
    .bind(seq)
    .bind(&prev_hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(sealed)
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

/// The sealed records of the given events (those not sealed yet are absent).
pub async fn records_for_events(
    pool: &PgPool,
    event_ids: &[i64],
) -> Result<HashMap<i64, AuditRecord>, StoreError> {
    let rows = sqlx::query("SELECT event_id, record FROM cs_audit WHERE event_id = ANY($1)")
        .bind(event_ids)
        .fetch_all(pool)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let event_id: i64 = row.try_get("event_id")?;
        let text: String = row.try_get("record")?;
        found.insert(event_id, parse_record(&text)?);
    }
    Ok(found)
}

/// The sealed records of one request, in chain order.
pub async fn records_for_request(
    pool: &PgPool,
    request_id: &str,
) -> Result<Vec<AuditRecord>, StoreError> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT record FROM cs_audit WHERE request_id = $1 ORDER BY seq")
            .bind(request_id)
            .fetch_all(pool)
            .await?;
    rows.iter().map(|text| parse_record(text)).collect()
}

fn parse_record(text: &str) -> Result<AuditRecord, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        what: "audit record",
        detail: error.to_string(),
    })
}

/// Streams every sealed record's stored JSON line, in sequence order, to `each`.
pub async fn for_each_record_line(
    pool: &PgPool,
    mut each: impl FnMut(&str) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut rows =
        sqlx::query_scalar::<_, String>("SELECT record FROM cs_audit ORDER BY seq").fetch(pool);
    let mut count = 0;
    while let Some(line) = rows.try_next().await? {
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
    let mut rows = sqlx::query("SELECT seq, record FROM cs_audit ORDER BY seq").fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let text: String = row.try_get("record")?;
        match serde_json::from_str::<AuditRecord>(&text) {
            Ok(record) => verifier.push(&record),
            Err(_) => {
                let seq: i64 = row.try_get("seq")?;
                verifier.push_unreadable(seq as u64);
            }
        }
    }
    Ok(verifier.finish_with_head(head_seq, &head_hash))
}

type SealReply = oneshot::Sender<Result<AuditRecord, String>>;

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
                        found.extend(records_for_events(&pool, &missing).await?);
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

    /// Seals the event's entry (with whatever else is queued) and returns its record.
    pub async fn sealed(&self, event_id: i64) -> Result<AuditRecord, StoreError> {
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
