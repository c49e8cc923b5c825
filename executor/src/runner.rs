//! The executor's job loop: read a delivery, trust nothing in it, claim it once, run it under
//! guards, audit, post, acknowledge.
//!
//! For each delivery, in order:
//! 1. the envelope's signature, SQL hash and expiry ([`JobVerifier::verify`]);
//! 2. the job's target is this executor's target;
//! 3. the SQL is classified again, with the target's dialect and the policy's options: one
//!    statement, no worse than the approved category ([`check_scope`]);
//! 4. the masking plan for its results (a statement whose masked data a rename would expose is
//!    refused);
//! 5. the claim: a conditional update in the outbox, matching the payload byte for byte;
//! 6. the run ([`crate::execute`]), with the claim's lease renewed while it lasts;
//! 7. the outcome and its audit entry in one transaction; the entry sealed; the summary with
//!    its audit line posted into the thread; the delivery acknowledged.
//!
//! Every refusal is audited and, when the request's thread is known, reported there. A
//! delivery is acknowledged only once what it caused is durable; if the control database is
//! unavailable it stays pending and is delivered again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_control::audit_log::{AuditSealer, SealedRef};
use countersign_control::chat::{ChatPoster, ReplyTo, ThreadMessage};
use countersign_control::outbox::{self, Claim, Finished, JobState};
use countersign_control::queue::{Delivery, JobQueue, Stream};
use countersign_control::store::{ControlStore, StoreError};
use countersign_control::{now_ms, now_s};
use countersign_shared::audit::{AuditEntry, AuditEvent};
use countersign_shared::job::{check_scope, Job, JobError, JobVerifier, SignedJob};
use countersign_shared::masking::{plan_masking, MaskPlan};
use countersign_shared::policy::{Policy, TargetSettings};
use countersign_shared::sql::{classify, Category};
use countersign_shared::summary::{Outcome, ResultSummary};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ExecutorConfig;
use crate::execute::{ExecError, Executed, Limits, Mode, TargetDb};
use crate::metrics::Metrics;

/// Most rows kept for a summary, whatever the target allows.
pub const MAX_KEPT_ROWS: u64 = 50;

/// Why an executor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The policy has no such target.
    #[error("the policy has no target named `{0}`")]
    UnknownTarget(String),
}

/// The services one executor works with.
pub struct Services {
    /// The control plane's PostgreSQL.
    pub store: ControlStore,
    /// The Redis streams.
    pub queue: JobQueue,
    /// The target database.
    pub db: TargetDb,
    /// Where results and refusals are posted.
    pub poster: Arc<dyn ChatPoster>,
}

/// One executor. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ExecutorConfig,
    pub(crate) actor: String,
    pub(crate) policy: Arc<Policy>,
    pub(crate) settings: Arc<TargetSettings>,
    pub(crate) verifier: JobVerifier,
    pub(crate) store: ControlStore,
    pub(crate) sealer: AuditSealer,
    pub(crate) queue: JobQueue,
    pub(crate) db: TargetDb,
    pub(crate) poster: Arc<dyn ChatPoster>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) draining: AtomicBool,
    pub(crate) posted: PostedMarker,
}

/// Records, in batches, that summaries reached their threads. Until it is recorded, the
/// reconciler would post a summary again after `repost_after`; a lost mark costs at most one
/// repeated message, never a lost one.
#[derive(Clone)]
pub(crate) struct PostedMarker {
    sender: tokio::sync::mpsc::UnboundedSender<String>,
}

impl PostedMarker {
    fn spawn(store: ControlStore) -> PostedMarker {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = receiver.try_recv() {
                    batch.push(more);
                }
                if let Err(error) = outbox::mark_posted(&store, &batch).await {
                    tracing::warn!(%error, jobs = batch.len(), "recording posted summaries failed; they may be posted again");
                }
            }
        });
        PostedMarker { sender }
    }

    fn mark(&self, request_id: &str) {
        let _ = self.sender.send(request_id.to_string());
    }
}

/// A refusal: the reason code for metrics, and the user-facing reason.
struct Refusal {
    code: &'static str,
    reason: String,
}

impl Refusal {
    fn new(code: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

fn job_error_code(error: &JobError) -> &'static str {
    match error {
        JobError::BadSignature => "signature",
        JobError::Malformed(_) => "malformed",
        JobError::SqlHashMismatch => "sql_hash",
        JobError::Expired { .. } => "expired",
        JobError::IssuedInFuture { .. } => "issued_in_future",
        JobError::OutOfScope { .. } => "scope",
        JobError::Unclassifiable(_) => "unclassifiable",
    }
}

impl Executor {
    /// An executor for `config.target`, as the policy describes it.
    pub fn new(
        config: ExecutorConfig,
        policy: Arc<Policy>,
        verifier: JobVerifier,
        services: Services,
    ) -> Result<Executor, SetupError> {
        let settings = policy
            .target(&config.target)
            .cloned()
            .ok_or_else(|| SetupError::UnknownTarget(config.target.clone()))?;
        let sealer = AuditSealer::spawn(services.store.clone());
        let posted = PostedMarker::spawn(services.store.clone());
        Ok(Executor {
            inner: Arc::new(Inner {
                actor: config.actor(),
                config,
                policy,
                settings,
                verifier,
                sealer,
                store: services.store,
                queue: services.queue,
                db: services.db,
                poster: services.poster,
                metrics: Arc::new(Metrics::new()),
                draining: AtomicBool::new(false),
                posted,
            }),
        })
    }

    /// The executor's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Whether the executor can take jobs: not draining, and its control database, Redis and
    /// target database answer. The error says which one does not.
    pub async fn readiness(&self) -> Result<(), String> {
        let inner = &self.inner;
        if inner.draining.load(Ordering::Relaxed) {
            return Err("draining: shutting down".into());
        }
        inner
            .store
            .ping()
            .await
            .map_err(|_| "the control database does not answer".to_string())?;
        inner
            .queue
            .pending_count(Stream::Jobs, &inner.config.target)
            .await
            .map_err(|_| "redis does not answer".to_string())?;
        inner
            .db
            .ping()
            .await
            .map_err(|_| "the target database does not answer".to_string())?;
        Ok(())
    }

    /// Runs until `shutdown` is cancelled, then stops taking jobs and lets the ones in hand
    /// finish within the drain period.
    pub async fn run(&self, shutdown: CancellationToken) {
        let inner = self.inner.clone();
        let target = inner.config.target.clone();
        for stream in [Stream::Jobs, Stream::Preflight] {
            while let Err(error) = inner.queue.ensure_group(stream, &target).await {
                tracing::warn!(%error, "cannot create the consumer group yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        let background = TaskTracker::new();
        background.spawn(crate::reconcile::run(inner.clone(), shutdown.clone()));
        // The preflight loop blocks on its own Redis connection, so it never delays jobs.
        let preflight_queue = loop {
            match inner.queue.reader().await {
                Ok(queue) => break queue,
                Err(error) => {
                    tracing::warn!(%error, "cannot open the preflight connection yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        background.spawn(crate::preflight::run(
            inner.clone(),
            preflight_queue,
            shutdown.clone(),
        ));
        let jobs = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(inner.config.workers.max(1)));
        let mut last_reclaim = Instant::now();
        let mut failures: u32 = 0;
        tracing::info!(target = %target, executor = %inner.config.executor_id, "taking jobs");
        loop {
            let first_slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let free = slots.available_permits() + 1;
            let reclaim_due = last_reclaim.elapsed() >= inner.config.reclaim_idle / 2;
            let read = async {
                if reclaim_due {
                    let reclaimed = inner
                        .queue
                        .reclaim(
                            Stream::Jobs,
                            &target,
                            &inner.config.executor_id,
                            inner.config.reclaim_idle,
                            free,
                        )
                        .await?;
                    if !reclaimed.is_empty() {
                        return Ok(reclaimed);
                    }
                }
                inner
                    .queue
                    .read(
                        Stream::Jobs,
                        &target,
                        &inner.config.executor_id,
                        free,
                        Duration::from_millis(500),
                    )
                    .await
            };
            let deliveries = tokio::select! {
                _ = shutdown.cancelled() => break,
                result = read => result,
            };
            if reclaim_due {
                last_reclaim = Instant::now();
            }
            let deliveries = match deliveries {
                Ok(deliveries) => {
                    failures = 0;
                    deliveries
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
                    tracing::warn!(%error, ?pause, "reading jobs from redis failed; retrying");
                    drop(first_slot);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            };
            let mut first_slot = Some(first_slot);
            for delivery in deliveries {
                let slot = match first_slot.take() {
                    Some(slot) => slot,
                    None => match slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                };
                let inner = inner.clone();
                jobs.spawn(async move {
                    inner.metrics.in_flight.inc();
                    handle(&inner, delivery).await;
                    inner.metrics.in_flight.dec();
                    drop(slot);
                });
            }
        }
        inner.draining.store(true, Ordering::Relaxed);
        jobs.close();
        let in_hand = jobs.len();
        tracing::info!(in_hand, drain = ?inner.config.drain, "stopping: finishing the jobs in hand");
        if tokio::time::timeout(inner.config.drain, jobs.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = jobs.len(),
                "the drain period ended with jobs still running; their leases will run out and the reconciler will decide them"
            );
        }
        background.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), background.wait()).await;
        tracing::info!("stopped");
    }
}

/// Whether a handled delivery may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// Everything it caused is durable.
    Yes,
    /// Leave it pending, so it is delivered again (the job went back to the queue under us).
    No,
}

/// Handles one delivery to the end. Acknowledges it unless the control database failed, the
/// job was taken back while it ran, or it is a redelivery of a job still running elsewhere.
pub(crate) async fn handle(inner: &Inner, delivery: Delivery) {
    let started = Instant::now();
    tracing::debug!(delivery = %delivery.id, delivered = delivery.delivered, "delivery");
    let result = match &delivery.envelope {
        Ok(signed) => handle_envelope(inner, signed, delivery.delivered, started).await,
        Err(problem) => refuse_untrusted(
            inner,
            None,
            Refusal::new("malformed", problem.clone()),
            started,
        )
        .await
        .map(|()| Ack::Yes),
    };
    match result {
        Ok(Ack::Yes) => {
            if let Err(error) = inner
                .queue
                .ack(Stream::Jobs, &inner.config.target, &[delivery.id])
                .await
            {
                // Left pending: it is reclaimed, found claimed, and acknowledged then.
                tracing::warn!(%error, "acknowledging a delivery failed");
            }
        }
        Ok(Ack::No) => {}
        Err(error) => {
            tracing::error!(%error, delivery = %delivery.id, "the control database failed; the delivery stays pending and will be retried");
        }
    }
}

async fn handle_envelope(
    inner: &Inner,
    signed: &SignedJob,
    delivered: usize,
    started: Instant,
) -> Result<Ack, StoreError> {
    let job = match inner.verifier.verify(signed, now_s()) {
        Ok(job) => job,
        Err(error) => {
            let refusal = Refusal::new(job_error_code(&error), error.to_string());
            return match error {
                // Signed by us, so the payload can be trusted to name its request.
                JobError::Expired { .. } | JobError::IssuedInFuture { .. } => {
                    match serde_json::from_str::<Job>(&signed.payload) {
                        Ok(job) => refuse_genuine(inner, &job, signed, refusal, started)
                            .await
                            .map(|()| Ack::Yes),
                        Err(_) => refuse_untrusted(inner, Some(signed), refusal, started)
                            .await
                            .map(|()| Ack::Yes),
                    }
                }
                _ => refuse_untrusted(inner, Some(signed), refusal, started)
                    .await
                    .map(|()| Ack::Yes),
            };
        }
    };
    if job.target != inner.config.target {
        let refusal = Refusal::new(
            "wrong_target",
            format!(
                "the job is for target `{}`, but this executor serves `{}`",
                job.target, inner.config.target
            ),
        );
        return refuse_and_report(inner, &job, None, refusal, started)
            .await
            .map(|()| Ack::Yes);
    }
    if job.policy_version != inner.policy.version() {
        tracing::info!(
            request = %job.request_id,
            "the job was decided under another policy version; its SQL is checked against this one"
        );
    }
    let classification = classify(
        &job.sql,
        inner.settings.dialect,
        inner.policy.classify_options(),
    );
    if let Err(error) = check_scope(&job, &classification) {
        let refusal = Refusal::new(job_error_code(&error), error.to_string());
        return refuse_genuine(inner, &job, signed, refusal, started)
            .await
            .map(|()| Ack::Yes);
    }
    if classification.statements.len() != 1 {
        let refusal = Refusal::new(
            "multi_statement",
            format!(
                "the job holds {} statements; the executor runs exactly one",
                classification.statements.len()
            ),
        );
        return refuse_genuine(inner, &job, signed, refusal, started)
            .await
            .map(|()| Ack::Yes);
    }
    let mask = match plan_masking(&job.sql, inner.settings.dialect, &inner.policy) {
        Ok(plan) => plan,
        Err(refusal) => {
            let refusal = Refusal::new("masking", refusal.to_string());
            return refuse_genuine(inner, &job, signed, refusal, started)
                .await
                .map(|()| Ack::Yes);
        }
    };
    let running = AuditEntry {
        sql: Some(job.sql.clone()),
        approvers: job.approvers.clone(),
        decision: Some(job.category.as_str().to_string()),
        ..AuditEntry::new(
            AuditEvent::Running,
            now_ms(),
            &job.request_id,
            &inner.actor,
            &job.target,
        )
    };
    tracing::debug!(request = %job.request_id, elapsed = ?started.elapsed(), "checked");
    let claim = outbox::claim(
        &inner.store,
        &job.request_id,
        &signed.payload,
        &inner.config.executor_id,
        inner.config.lease,
        &running,
    )
    .await?;
    let claimed = match claim {
        Claim::Claimed(claimed) => claimed,
        Claim::AlreadyClaimed {
            state,
            claimed_by,
            reply_to,
        } => {
            if delivered > 1 {
                // Redis delivering its own pending entry again (its first consumer died or was
                // slow): nothing to report.
                let decided = matches!(JobState::parse(&state), Some(JobState::Finished(_)));
                if !decided {
                    // Still running under another executor's lease. If that executor died, the
                    // reconciler puts a read back in the queue once the lease runs out, and
                    // this entry is what brings it back: left pending, it is reclaimed again.
                    tracing::debug!(request = %job.request_id, %state, "redelivery of a job still running elsewhere; left pending");
                    return Ok(Ack::No);
                }
                tracing::debug!(request = %job.request_id, %state, "redelivery of a finished job");
                inner.metrics.refusal("redelivery");
                return Ok(Ack::Yes);
            }
            let by = claimed_by.unwrap_or_else(|| "an executor".into());
            let refusal = Refusal::new(
                "replay",
                format!(
                    "another copy of this job arrived after it was claimed by {by} (now {state}); it was refused: a job runs at most once"
                ),
            );
            return refuse_and_report(inner, &job, reply_to, refusal, started)
                .await
                .map(|()| Ack::Yes);
        }
        Claim::PayloadMismatch { reply_to } => {
            let refusal = Refusal::new(
                "not_in_outbox",
                "the delivered job differs from the one approved for this request; it was refused",
            );
            return refuse_and_report(inner, &job, reply_to, refusal, started)
                .await
                .map(|()| Ack::Yes);
        }
        Claim::NotFound => {
            let refusal = Refusal::new(
                "not_in_outbox",
                "no approved job with this request id exists; it was refused",
            );
            return refuse_and_report(inner, &job, None, refusal, started)
                .await
                .map(|()| Ack::Yes);
        }
    };
    tracing::debug!(request = %job.request_id, elapsed = ?started.elapsed(), "claimed");
    let summary = run_claimed(inner, &job, classification.category, &mask).await;
    tracing::debug!(request = %job.request_id, elapsed = ?started.elapsed(), outcome = summary.outcome.as_str(), "ran");
    let entry = AuditEntry {
        sql: Some(job.sql.clone()),
        approvers: job.approvers.clone(),
        rows: summary
            .rows_affected
            .or(summary.table.as_ref().map(|t| t.total_rows)),
        duration_ms: Some(summary.duration_ms),
        error: summary.reason.clone(),
        ..AuditEntry::new(
            match summary.outcome {
                Outcome::Succeeded => AuditEvent::Succeeded,
                Outcome::RolledBack => AuditEvent::RolledBack,
                _ => AuditEvent::Failed,
            },
            now_ms(),
            &job.request_id,
            &inner.actor,
            &job.target,
        )
    };
    let Some(sealed) = outbox::finish(
        &inner.store,
        &job.request_id,
        &inner.config.executor_id,
        &summary,
        &entry,
    )
    .await?
    else {
        tracing::warn!(request = %job.request_id, "the job's lease ran out before it finished; the reconciler has decided it");
        // Not acknowledged: if the job went back to the queue, this delivery brings it back.
        return Ok(Ack::No);
    };
    let sealed = match sealed {
        Finished::Sealed(sealed) => Some(sealed),
        Finished::Queued(event) => inner.sealer.sealed(event).await.ok(),
    };
    tracing::debug!(request = %job.request_id, elapsed = ?started.elapsed(), "finished and sealed");
    let mut summary = summary;
    summary.audit_ref = sealed.as_ref().map(SealedRef::reference);
    let outcome = summary.outcome;
    if let Some(reply_to) = &claimed.reply_to {
        post(inner, reply_to, &ThreadMessage::summary(summary)).await;
    }
    inner.posted.mark(&job.request_id);
    inner
        .metrics
        .job(outcome.as_str(), started.elapsed().as_secs_f64());
    Ok(Ack::Yes)
}

fn limits(inner: &Inner, job: &Job) -> Limits {
    let settings = &inner.settings;
    Limits {
        statement_timeout: settings.statement_timeout,
        // The approved limit is part of the signed job; it can lower the target's, never
        // raise it.
        row_limit: job
            .row_limit
            .map_or(settings.row_limit, |limit| limit.min(settings.row_limit)),
        keep_rows: settings.max_result_rows.min(MAX_KEPT_ROWS) as usize,
        count_cap: inner.config.count_cap,
    }
}

/// Runs a claimed job, renewing its lease while it runs. `category` is the executor's own
/// classification: a statement that classifies as a read runs read-only even when more was
/// approved (the tightest settings that fit).
async fn run_claimed(
    inner: &Inner,
    job: &Job,
    category: Category,
    mask: &MaskPlan,
) -> ResultSummary {
    let mode = if category == Category::Read {
        Mode::Read
    } else {
        Mode::Write
    };
    let limits = limits(inner, job);
    let mask_columns = |names: &[&str]| mask.columns_to_mask(names);
    let started = Instant::now();
    let run = inner.db.run(&job.sql, mode, &limits, &mask_columns);
    tokio::pin!(run);
    let renew_every = inner.config.lease / 3;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = tokio::time::sleep(renew_every) => {
                match outbox::renew_lease(&inner.store, &job.request_id, &inner.config.executor_id, inner.config.lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(request = %job.request_id, "the job's lease was taken back while it ran"),
                    Err(error) => tracing::warn!(%error, "renewing a lease failed"),
                }
            }
        }
    };
    let duration = started.elapsed();
    inner
        .metrics
        .statement_seconds
        .observe(duration.as_secs_f64());
    let mut summary = ResultSummary {
        request_id: job.request_id.clone(),
        target: job.target.clone(),
        outcome: Outcome::Succeeded,
        rows_affected: None,
        table: None,
        duration_ms: duration.as_millis() as u64,
        reason: None,
        audit_ref: None,
    };
    match result {
        Ok(Executed::Done {
            rows_affected,
            table,
        }) => {
            summary.rows_affected = rows_affected;
            summary.table = table;
        }
        Ok(Executed::RolledBack {
            rows_affected,
            row_limit,
        }) => {
            summary.outcome = Outcome::RolledBack;
            summary.rows_affected = Some(rows_affected);
            summary.reason = Some(format!(
                "The statement touched {rows_affected} rows, more than the approved limit of {row_limit}; it was rolled back and nothing changed."
            ));
        }
        Err(error) => {
            summary.outcome = Outcome::Failed;
            summary.reason = Some(user_reason(&error, !mask.is_empty()));
        }
    }
    summary
}

/// What chat is told about an execution error: short, without connection details. Where the
/// policy masks data, quoted values in the database's message are blanked (`'…'`): MySQL's
/// "Duplicate entry 'alice@example.com' for key 'email'" would otherwise show a masked value.
fn user_reason(error: &ExecError, masking: bool) -> String {
    match error {
        ExecError::Unavailable(_) => {
            "The target database could not be reached; nothing was run. Try again later.".into()
        }
        other => {
            let mut text = other.to_string();
            if let Some(first) = text.find('\n') {
                text.truncate(first);
            }
            if masking {
                text = blank_quoted(&text);
            }
            countersign_shared::summary::truncate_chars(&text, 300)
        }
    }
}

/// Replaces the content of every single-quoted part of `text` with `…`.
fn blank_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '\'' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('…');
    }
    out
}

fn refused_summary(job_request: &str, target: &str, reason: &str) -> ResultSummary {
    ResultSummary {
        request_id: job_request.to_string(),
        target: target.to_string(),
        outcome: Outcome::Refused,
        rows_affected: None,
        table: None,
        duration_ms: 0,
        reason: Some(reason.to_string()),
        audit_ref: None,
    }
}

fn refusal_entry(
    inner: &Inner,
    request_id: &str,
    target: &str,
    sql: Option<&str>,
    reason: &str,
) -> AuditEntry {
    AuditEntry {
        sql: sql.map(str::to_string),
        error: Some(reason.to_string()),
        ..AuditEntry::new(
            AuditEvent::Refused,
            now_ms(),
            request_id,
            &inner.actor,
            target,
        )
    }
}

/// Refuses a genuine job (its signature holds) that must not run: marks it refused in the
/// outbox when the delivery is the outbox's own payload, audits, reports.
async fn refuse_genuine(
    inner: &Inner,
    job: &Job,
    signed: &SignedJob,
    refusal: Refusal,
    started: Instant,
) -> Result<(), StoreError> {
    refuse_signed(inner, job, Some(signed), None, refusal, started).await
}

/// Refuses a job that is signed but not runnable here (replay, wrong target, not in the
/// outbox): audits and reports, leaving the outbox alone.
async fn refuse_and_report(
    inner: &Inner,
    job: &Job,
    reply_to: Option<ReplyTo>,
    refusal: Refusal,
    started: Instant,
) -> Result<(), StoreError> {
    refuse_signed(inner, job, None, reply_to, refusal, started).await
}

/// Audits and reports a refused signed job; with `outbox_payload`, also marks the outbox's job
/// refused if that payload is the stored one (so the reconciler stops offering it).
async fn refuse_signed(
    inner: &Inner,
    job: &Job,
    outbox_payload: Option<&SignedJob>,
    reply_to: Option<ReplyTo>,
    refusal: Refusal,
    started: Instant,
) -> Result<(), StoreError> {
    inner.metrics.refusal(refusal.code);
    let summary = refused_summary(&job.request_id, &job.target, &refusal.reason);
    let entry = refusal_entry(
        inner,
        &job.request_id,
        &job.target,
        Some(&job.sql),
        &refusal.reason,
    );
    let store = &inner.store;
    let event = match outbox_payload {
        Some(signed) => {
            outbox::refuse_queued(store, &job.request_id, &signed.payload, &summary, &entry).await?
        }
        None => countersign_control::audit_log::enqueue(store, &entry).await?,
    };
    let reply_to = match reply_to {
        Some(reply_to) => Some(reply_to),
        None => outbox::reply_to_of(store, &job.request_id).await?,
    };
    finish_refusal(inner, &job.request_id, reply_to, summary, event, started).await?;
    if outbox_payload.is_some() {
        inner.posted.mark(&job.request_id);
    }
    Ok(())
}

/// Refuses an envelope whose content cannot be trusted (bad signature, malformed). The request
/// id it claims is used only to find a thread to warn, and is recorded as claimed.
async fn refuse_untrusted(
    inner: &Inner,
    signed: Option<&SignedJob>,
    refusal: Refusal,
    started: Instant,
) -> Result<(), StoreError> {
    inner.metrics.refusal(refusal.code);
    let claimed_id = signed
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s.payload).ok())
        .and_then(|v| v.get("request_id")?.as_str().map(str::to_string))
        .filter(|id| id.len() <= 200);
    let request_id = claimed_id.clone().unwrap_or_else(|| "-".into());
    let mut entry = refusal_entry(
        inner,
        &request_id,
        &inner.config.target,
        None,
        &refusal.reason,
    );
    entry
        .reasons
        .push("the envelope is not trusted; its request id is as claimed, not verified".into());
    let event = countersign_control::audit_log::enqueue(&inner.store, &entry).await?;
    let reply_to = match &claimed_id {
        Some(id) => outbox::reply_to_of(&inner.store, id).await?,
        None => None,
    };
    let summary = refused_summary(
        &request_id,
        &inner.config.target,
        &format!(
            "A job naming this request was refused and did not run: {}.",
            refusal.reason
        ),
    );
    tracing::warn!(request = %request_id, reason = %refusal.reason, "refused an untrusted job");
    finish_refusal(inner, &request_id, reply_to, summary, event, started).await
}

async fn finish_refusal(
    inner: &Inner,
    request_id: &str,
    reply_to: Option<ReplyTo>,
    mut summary: ResultSummary,
    event: i64,
    started: Instant,
) -> Result<(), StoreError> {
    let record = inner.sealer.sealed(event).await.ok();
    summary.audit_ref = record.as_ref().map(SealedRef::reference);
    tracing::info!(request = %request_id, reason = ?summary.reason, "refused a job");
    if let Some(reply_to) = reply_to {
        post(inner, &reply_to, &ThreadMessage::summary(summary)).await;
    }
    inner
        .metrics
        .job(Outcome::Refused.as_str(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Posts, logging (not failing) when chat is unavailable: the outcome is already durable.
pub(crate) async fn post(inner: &Inner, reply_to: &ReplyTo, message: &ThreadMessage) {
    if let Err(error) = inner.poster.post(reply_to, message).await {
        tracing::warn!(%error, thread = %reply_to.thread, "posting to the thread failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_in_database_errors_are_blanked_where_data_is_masked() {
        let error =
            ExecError::Database("Duplicate entry 'alice@example.com' for key 'users.email'".into());
        assert_eq!(
            user_reason(&error, true),
            "the database refused the statement: Duplicate entry '…' for key '…'"
        );
        assert!(user_reason(&error, false).contains("alice@example.com"));
        assert_eq!(blank_quoted("unclosed 'secret"), "unclosed '…");
    }
}
