//! The bot's side of the hand-over: write an approved job to the outbox and publish it, and ask
//! an executor for a preflight estimate.

use std::time::Duration;

use countersign_shared::job::{Job, JobSigner, PreflightRequest, SignedJob};
use serde::{Deserialize, Serialize};

use crate::chat::ReplyTo;
use crate::outbox;
use crate::queue::{JobQueue, QueueError, Stream};
use crate::store::{ControlStore, StoreError};

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
    let mut tx = store.pool().begin().await?;
    outbox::insert_job(&mut tx, signed, job, reply_to, actor).await?;
    tx.commit().await?;
    if let Err(error) = queue.publish(Stream::Jobs, &job.target, signed).await {
        tracing::warn!(%error, request = %job.request_id, "publishing a job failed; the reconciler will publish it");
        return Ok(Published::Later(error));
    }
    outbox::mark_published(store.pool(), std::slice::from_ref(&job.request_id)).await?;
    Ok(Published::Now)
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
