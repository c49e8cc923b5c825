//! The reconciler: makes the outbox, not Redis, the truth.
//!
//! Every few seconds, in every executor (the database decides which one acts on a job):
//! - queued jobs whose message Redis lost (restarted, flushed, trimmed), or that were never
//!   published, are published again; a message still waiting in its stream is left alone;
//! - running jobs whose lease ran out (their executor died) are decided: a read is queued once
//!   more, a write becomes `unknown` and is never run again; the thread is told;
//! - finished jobs whose summary was not marked posted (the executor died before posting) are
//!   posted;
//! - audit entries still waiting in the queue are sealed into the chain.

use std::sync::Arc;

use countersign_control::chat::ThreadMessage;
use countersign_control::outbox;
use countersign_control::store::StoreError;
use countersign_control::submit::{republish_lost, SubmitError};
use countersign_shared::summary::{Outcome, ResultSummary};
use tokio_util::sync::CancellationToken;

use countersign_control::audit_log::SealedRef;

use crate::runner::{post, Inner};

/// Runs until `shutdown`.
pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(inner.config.reconcile_every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = pass(&inner).await {
            tracing::warn!(%error, "a reconciler pass failed; retrying at the next one");
        }
    }
}

/// One pass.
pub(crate) async fn pass(inner: &Inner) -> Result<(), StoreError> {
    let target = &inner.config.target;
    let store = &inner.store;
    for abandoned in
        outbox::expire_leases(store, target, &inner.actor, inner.config.max_read_attempts).await?
    {
        let record = inner.sealer.sealed(abandoned.event).await.ok();
        let (action, text) = if abandoned.requeued {
            ("requeued", "The executor running this read stopped before it finished; the read runs once more.".to_string())
        } else {
            ("unknown", "The executor running this job stopped in the middle of it. Whether it committed cannot be known, so it will not run again: check the database, then decide whether to submit it anew.".to_string())
        };
        inner.metrics.reconciled(action, 1);
        tracing::warn!(request = %abandoned.request_id, action, "a job's executor stopped");
        if !abandoned.requeued {
            inner.metrics.job(Outcome::Unknown.as_str(), 0.0);
        }
        if let Some(reply_to) = &abandoned.reply_to {
            let message = if abandoned.requeued {
                ThreadMessage::note(match &record {
                    Some(record) => format!("{text}\nAudit {}", record.reference()),
                    None => text,
                })
            } else {
                ThreadMessage::summary(ResultSummary {
                    request_id: abandoned.request_id.clone(),
                    target: target.clone(),
                    outcome: Outcome::Unknown,
                    rows_affected: None,
                    table: None,
                    duration_ms: 0,
                    reason: Some(text),
                    audit_ref: record.as_ref().map(SealedRef::reference),
                })
            };
            post(inner, reply_to, &message).await;
        }
    }
    match republish_lost(
        &inner.store,
        &inner.queue,
        target,
        inner.config.republish_after,
        500,
    )
    .await
    {
        Ok(published) => inner.metrics.reconciled("republished", published),
        Err(SubmitError::Store(error)) => return Err(error),
        Err(SubmitError::Queue(error)) => {
            tracing::warn!(%error, "re-publishing jobs failed; the next pass tries again");
        }
    }
    // Entries no finished job has sealed yet (a claim whose job still runs, a bot's entries)
    // join the chain within a pass.
    countersign_control::audit_log::seal_pending(store).await?;
    for unposted in outbox::unposted(store, target, inner.config.repost_after, 100).await? {
        inner.metrics.reconciled("reposted", 1);
        if let Some(reply_to) = &unposted.reply_to {
            post(inner, reply_to, &ThreadMessage::summary(unposted.summary)).await;
        }
    }
    Ok(())
}
