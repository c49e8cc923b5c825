//! The bot's side of the hand-over: write an approved job to the outbox and publish it, and ask
//! an executor for a preflight estimate.

use std::time::Duration;

use countersign_shared::job::{Job, JobSigner, PreflightRequest, SignedJob};
use serde::{Deserialize, Serialize};

use crate::chat::ReplyTo;
use crate::outbox;
use crate::queue::{JobQueue, QueueError, Stream};
use crate::store::{ControlStore, StoreError};

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The outbox write failed: nothing was queued.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed after the outbox write; the reconciler publishes the job later.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Writes a signed job (and its `queued` audit entry) to the outbox, then publishes it. If
/// publishing fails the job is still durable and the reconciler publishes it.
pub async fn submit_job(
    store: &ControlStore,
    queue: &JobQueue,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<(), SubmitError> {
    let mut tx = store.pool().begin().await.map_err(StoreError::from)?;
    outbox::insert_job(&mut tx, signed, job, reply_to, actor).await?;
    tx.commit().await.map_err(StoreError::from)?;
    queue.publish(Stream::Jobs, &job.target, signed).await?;
    outbox::mark_published(store.pool(), std::slice::from_ref(&job.request_id)).await?;
    Ok(())
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
