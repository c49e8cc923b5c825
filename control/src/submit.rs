//! The bot's side of the hand-over: write an approved job to the outbox and publish it, and ask
//! an executor for a preflight estimate.

use std::time::Duration;

use countersign_shared::job::{Job, JobSigner, PreflightRequest, SignedJob};
use serde::{Deserialize, Serialize};

use crate::chat::ReplyTo;
use crate::outbox;
use crate::queue::{JobQueue, QueueError, Stream};
use crate::store::{Backed, ControlStore, StoreError};
use sqlx::{PgPool, SqlitePool};

/// Why re-publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The control database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// How a submitted job reached Redis.
#[derive(Debug)]
pub enum Published {
    /// Published at once.
    Now,
    /// Redis failed; the job is durable in the outbox and the reconciler publishes it.
    Later(QueueError),
}

/// Writes a signed job (and its `queued` audit entry) to the outbox, then publishes it. Fails
/// only when the outbox write fails (then nothing was queued); if publishing fails the job is
/// still durable and the reconciler publishes it ([`Published::Later`]).
pub async fn submit_job(
    store: &ControlStore,
    queue: &JobQueue,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<Published, StoreError> {
    outbox::insert_job(store, signed, job, reply_to, actor).await?;
    let entry = match queue.publish(Stream::Jobs, &job.target, signed).await {
        Ok(entry) => entry,
        Err(error) => {
            tracing::warn!(%error, request = %job.request_id, "publishing a job failed; the reconciler will publish it");
            return Ok(Published::Later(error));
        }
    };
    outbox::mark_published(store, &job.request_id, &entry).await?;
    Ok(Published::Now)
}

/// Publishes again the queued jobs of a target whose message Redis lost (restarted, flushed,
/// trimmed), or that were never published, once they have waited `older_than`. A job whose
/// stream entry is still in Redis is only waiting for a free executor and is left alone, so a
/// backlog causes no duplicates. Returns how many were published.
///
/// On PostgreSQL one reconciler at a time decides for a target (an advisory lock held by the
/// transaction that records the publications). SQLite has no lock that could be held while
/// Redis answers without stopping every other writer: there two reconcilers on one file may
/// both publish a job again, and the claim runs it once.
pub async fn republish_lost(
    store: &ControlStore,
    queue: &JobQueue,
    target: &str,
    older_than: Duration,
    limit: i64,
) -> Result<usize, SubmitError> {
    match store.pools() {
        Backed::Postgres(pool) => {
            let mut tx = pool.begin().await.map_err(StoreError::from)?;
            let candidates = outbox::lock_unclaimed(&mut tx, target, older_than, limit).await?;
            if candidates.is_empty() {
                tx.rollback().await.map_err(StoreError::from)?;
                return Ok(0);
            }
            let outcome = publish_missing(queue, target, &candidates).await?;
            for (request_id, entry) in &outcome.published {
                outbox::mark_published_in(&mut tx, request_id, entry).await?;
            }
            outbox::touch_published(
                Backed::<_, &SqlitePool>::Postgres(&mut *tx),
                &outcome.still_waiting,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(outcome.published.len())
        }
        Backed::Sqlite(pool) => {
            let candidates = outbox::unclaimed_sqlite(pool, target, older_than, limit).await?;
            if candidates.is_empty() {
                return Ok(0);
            }
            let outcome = publish_missing(queue, target, &candidates).await?;
            for (request_id, entry) in &outcome.published {
                outbox::mark_published(store, request_id, entry).await?;
            }
            outbox::touch_published(Backed::<&PgPool, _>::Sqlite(pool), &outcome.still_waiting)
                .await?;
            Ok(outcome.published.len())
        }
    }
}

/// What [`publish_missing`] did.
struct Republished {
    /// (request id, stream entry) of each job published again.
    published: Vec<(String, String)>,
    /// The jobs whose stream entry is still in Redis.
    still_waiting: Vec<String>,
}

/// Publishes the candidates whose stream entry Redis no longer holds.
async fn publish_missing(
    queue: &JobQueue,
    target: &str,
    candidates: &[outbox::ToPublish],
) -> Result<Republished, SubmitError> {
    let recorded: Vec<&str> = candidates
        .iter()
        .filter_map(|c| c.stream_entry.as_deref())
        .collect();
    let present = queue.entries_exist(Stream::Jobs, target, &recorded).await?;
    let mut outcome = Republished {
        published: Vec::new(),
        still_waiting: Vec::new(),
    };
    let mut present = present.into_iter();
    for candidate in candidates {
        let in_redis = candidate.stream_entry.is_some() && present.next().unwrap_or(false);
        if in_redis {
            outcome.still_waiting.push(candidate.request_id.clone());
            continue;
        }
        let entry = queue
            .publish(Stream::Jobs, target, &candidate.signed)
            .await?;
        outcome
            .published
            .push((candidate.request_id.clone(), entry));
    }
    Ok(outcome)
}

/// An executor's answer to a preflight request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightAnswer {
    /// Whether the statement could be planned.
    pub ok: bool,
    /// The planner's row estimate.
    #[serde(default)]
    pub rows: Option<u64>,
    /// Notes for reviewers (cascading foreign keys, triggers).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Why it could not be planned.
    #[serde(default)]
    pub error: Option<String>,
}

/// Signs and sends a preflight request, and waits up to `timeout` for the answer. None when no
/// executor answered in time.
pub async fn preflight(
    queue: &JobQueue,
    signer: &JobSigner,
    request: &PreflightRequest,
    timeout: Duration,
) -> Result<Option<PreflightAnswer>, QueueError> {
    let signed = signer.sign_preflight(request);
    queue
        .publish(Stream::Preflight, &request.target, &signed)
        .await?;
    let answer = queue.wait_reply(&request.id, timeout).await?;
    Ok(answer.and_then(|value| serde_json::from_value(value).ok()))
}
