//! The job outbox: signed jobs as rows, claimed once, leased while they run.
//!
//! A job's row is written in the same transaction as the approval (or allow decision) that
//! produced it, with a `queued` audit entry; Redis only carries a copy. The executor claims a
//! job with a conditional update (`queued` → `running`, matching the delivered payload
//! byte for byte), so a job delivered twice runs once, and a payload that differs from the
//! outbox's never runs. While it runs, the claim holds a lease the executor renews; a lease that
//! runs out means the executor died: the reconciler ([`expire_leases`]) re-queues a read once and
//! declares a write `unknown`, never running it again.
//!
//! On SQLite the PostgreSQL-only pieces (statements that write in a CTE, `SKIP LOCKED`, the
//! PL/pgSQL functions) become short `BEGIN IMMEDIATE` transactions or single statements, which
//! hold the database's write lock: a job is still claimed once.
//!
//! States: `queued → running → succeeded | failed | rolled_back | unknown`, and
//! `queued → refused` for a genuine job the executor would not run (expired, out of scope).

use std::time::Duration;

use countersign_shared::audit::{content_text, AuditEntry, AuditEvent};
use countersign_shared::job::{Job, SignedJob};
use countersign_shared::sql::Category;
use countersign_shared::summary::{Outcome, ResultSummary};
use sqlx::{PgConnection, PgExecutor, Row, SqliteConnection, SqliteExecutor, SqlitePool};

use crate::audit_log::{self, json_list, SealedRef};
use crate::chat::ReplyTo;
use crate::now_ms;
use crate::store::{on_backend, Backed, ControlStore, StoreError, StoreRow, Tx};

/// A job's state in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for an executor.
    Queued,
    /// Claimed; an executor holds its lease.
    Running,
    /// Finished with this outcome.
    Finished(Outcome),
}

impl JobState {
    /// The state's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finished(outcome) => outcome.as_str(),
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<JobState> {
        Some(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Finished(Outcome::Succeeded),
            "failed" => JobState::Finished(Outcome::Failed),
            "rolled_back" => JobState::Finished(Outcome::RolledBack),
            "refused" => JobState::Finished(Outcome::Refused),
            "unknown" => JobState::Finished(Outcome::Unknown),
            _ => return None,
        })
    }
}

fn reply_to_json(reply_to: Option<&ReplyTo>) -> Option<serde_json::Value> {
    reply_to.and_then(|r| serde_json::to_value(r).ok())
}

fn reply_to_from(row: &StoreRow) -> Result<Option<ReplyTo>, StoreError> {
    let value: Option<serde_json::Value> = row.get("reply_to")?;
    value
        .map(|v| {
            serde_json::from_value(v).map_err(|error| StoreError::Corrupt {
                what: "reply_to",
                detail: error.to_string(),
            })
        })
        .transpose()
}

fn summary_json(summary: &ResultSummary) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(summary).map_err(|error| StoreError::Corrupt {
        what: "result summary",
        detail: error.to_string(),
    })
}

/// The `queued` audit entry of a job entering the outbox.
fn queued_entry(job: &Job, actor: &str) -> AuditEntry {
    AuditEntry {
        sql: Some(job.sql.clone()),
        approvers: job.approvers.clone(),
        decision: Some(job.category.as_str().to_string()),
        ..AuditEntry::new(
            AuditEvent::Queued,
            now_ms(),
            &job.request_id,
            actor,
            &job.target,
        )
    }
}

/// Writes a signed job to the outbox with its `queued` audit entry, on its own (one statement on
/// PostgreSQL, one transaction on SQLite). Returns the audit event id.
pub async fn insert_job(
    store: &ControlStore,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<i64, StoreError> {
    match store.pools() {
        Backed::Postgres(pool) => insert_job_pg(pool, signed, job, reply_to, actor).await,
        Backed::Sqlite(_) => {
            let mut tx = store.begin().await?;
            let event = insert_job_in(&mut tx, signed, job, reply_to, actor).await?;
            tx.commit().await?;
            Ok(event)
        }
    }
}

/// Writes a signed job to the outbox with its `queued` audit entry inside the caller's
/// transaction (the one that records the approval). Returns the audit event id.
pub(crate) async fn insert_job_in(
    tx: &mut Tx,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<i64, StoreError> {
    match tx {
        Backed::Postgres(tx) => insert_job_pg(&mut **tx, signed, job, reply_to, actor).await,
        Backed::Sqlite(tx) => insert_job_sqlite(tx, signed, job, reply_to, actor).await,
    }
}

async fn insert_job_pg<'c>(
    executor: impl PgExecutor<'c>,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<i64, StoreError> {
    // One statement: the job and its audit entry.
    let event: i64 = sqlx::query_scalar(
        "WITH job AS (
             INSERT INTO cs_jobs (request_id, target, payload, signature, category, reply_to)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING request_id)
         INSERT INTO cs_audit_queue (request_id, entry) SELECT $1, $7 FROM job RETURNING id",
    )
    .bind(&job.request_id)
    .bind(&job.target)
    .bind(&signed.payload)
    .bind(&signed.signature)
    .bind(job.category.as_str())
    .bind(reply_to_json(reply_to))
    .bind(content_text(&queued_entry(job, actor)))
    .fetch_one(executor)
    .await?;
    Ok(event)
}

/// SQLite: the job, then its audit entry, in the caller's transaction.
async fn insert_job_sqlite(
    conn: &mut SqliteConnection,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO cs_jobs (request_id, target, payload, signature, category, reply_to,
                              created_at)
         VALUES ($1, $2, $3, $4, $5, $6, (SELECT ms FROM cs_now))",
    )
    .bind(&job.request_id)
    .bind(&job.target)
    .bind(&signed.payload)
    .bind(&signed.signature)
    .bind(job.category.as_str())
    .bind(reply_to_json(reply_to))
    .execute(&mut *conn)
    .await?;
    let event: i64 = sqlx::query_scalar(
        "INSERT INTO cs_audit_queue (request_id, entry) VALUES ($1, $2) RETURNING id",
    )
    .bind(&job.request_id)
    .bind(content_text(&queued_entry(job, actor)))
    .fetch_one(&mut *conn)
    .await?;
    Ok(event)
}

/// Records that a job was published to Redis as stream entry `entry`.
pub async fn mark_published(
    store: &ControlStore,
    request_id: &str,
    entry: &str,
) -> Result<(), StoreError> {
    mark_published_on(store.on(), request_id, entry).await
}

async fn mark_published_on<'c>(
    on: Backed<impl PgExecutor<'c>, impl SqliteExecutor<'c>>,
    request_id: &str,
    entry: &str,
) -> Result<(), StoreError> {
    // On PostgreSQL committed asynchronously (see the SQL function): a lost mark costs a second
    // delivery, which the claim turns away.
    on_backend!(on,
        postgres: "SELECT cs_mark_published($1, $2)",
        sqlite: "INSERT INTO cs_job_publications (request_id, stream_entry, published_at)
                 VALUES ($1, $2, (SELECT ms FROM cs_now))
                 ON CONFLICT (request_id) DO UPDATE SET stream_entry = excluded.stream_entry,
                                                        published_at = excluded.published_at",
        |db, sql| {
            sqlx::query(sql).bind(request_id).bind(entry).execute(db).await?;
        }
    );
    Ok(())
}

/// A job this executor now holds.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// How many times it has been claimed, this claim included.
    pub attempts: i32,
    /// Its thread.
    pub reply_to: Option<ReplyTo>,
}

/// What a claim found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The job is ours to run.
    Claimed(ClaimedJob),
    /// It was claimed before (a duplicate delivery or a replay): it must not run again.
    AlreadyClaimed {
        /// Its state now.
        state: String,
        /// Who claimed it.
        claimed_by: Option<String>,
        /// Its thread.
        reply_to: Option<ReplyTo>,
    },
    /// The outbox holds a different payload for this request id: the delivery is not the job
    /// that was approved.
    PayloadMismatch {
        /// Its thread.
        reply_to: Option<ReplyTo>,
    },
    /// No job with this request id was ever approved.
    NotFound,
}

/// Claims a job: `queued` → `running` if and only if the delivered payload is the outbox's,
/// with the `running` audit entry in the same transaction.
pub async fn claim(
    store: &ControlStore,
    request_id: &str,
    payload: &str,
    executor: &str,
    lease: Duration,
    running: &AuditEntry,
) -> Result<Claim, StoreError> {
    let claimed: Option<StoreRow> = match store.pools() {
        Backed::Postgres(pool) => {
            // One statement: the conditional claim and, only if it matched, its audit entry.
            sqlx::query(
                "WITH claimed AS (
                     UPDATE cs_jobs SET state = 'running', attempts = attempts + 1, claimed_by = $3,
                            claimed_at = now(), lease_until = now() + $4 * interval '1 millisecond'
                     WHERE request_id = $1 AND state = 'queued' AND payload = $2
                     RETURNING attempts, reply_to),
                 audit AS (INSERT INTO cs_audit_queue (request_id, entry)
                           SELECT $1, $5 FROM claimed RETURNING id)
                 SELECT claimed.attempts, claimed.reply_to FROM claimed, audit",
            )
            .bind(request_id)
            .bind(payload)
            .bind(executor)
            .bind(lease.as_millis() as f64)
            .bind(content_text(running))
            .fetch_optional(pool)
            .await?
            .map(StoreRow::from)
        }
        Backed::Sqlite(pool) => {
            // The write lock first: the conditional claim and its audit entry commit together,
            // and a second claimer finds the job running.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let claimed = sqlx::query(
                "UPDATE cs_jobs SET state = 'running', attempts = attempts + 1, claimed_by = $3,
                        claimed_at = (SELECT ms FROM cs_now),
                        lease_until = (SELECT ms FROM cs_now) + CAST($4 AS INTEGER)
                 WHERE request_id = $1 AND state = 'queued' AND payload = $2
                 RETURNING attempts, reply_to",
            )
            .bind(request_id)
            .bind(payload)
            .bind(executor)
            .bind(lease.as_millis() as f64)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_some() {
                sqlx::query("INSERT INTO cs_audit_queue (request_id, entry) VALUES ($1, $2)")
                    .bind(request_id)
                    .bind(content_text(running))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            claimed.map(StoreRow::from)
        }
    };
    if let Some(row) = claimed {
        return Ok(Claim::Claimed(ClaimedJob {
            attempts: row.get("attempts")?,
            reply_to: reply_to_from(&row)?,
        }));
    }
    let existing: Option<StoreRow> = on_backend!(store.on(), |db| {
        sqlx::query(
        "SELECT state, claimed_by, reply_to, payload = $2 AS same FROM cs_jobs WHERE request_id = $1",
    )
    .bind(request_id)
    .bind(payload)
    .fetch_optional(db)
    .await?
    .map(StoreRow::from)
    });
    let Some(row) = existing else {
        return Ok(Claim::NotFound);
    };
    let reply_to = reply_to_from(&row)?;
    if !row.get::<bool>("same")? {
        return Ok(Claim::PayloadMismatch { reply_to });
    }
    Ok(Claim::AlreadyClaimed {
        state: row.get("state")?,
        claimed_by: row.get("claimed_by")?,
        reply_to,
    })
}

/// Where a request's thread is, if the outbox knows the request.
pub async fn reply_to_of(
    store: &ControlStore,
    request_id: &str,
) -> Result<Option<ReplyTo>, StoreError> {
    let row: Option<StoreRow> = on_backend!(store.on(), |db| sqlx::query(
        "SELECT reply_to FROM cs_jobs WHERE request_id = $1"
    )
    .bind(request_id)
    .fetch_optional(db)
    .await?
    .map(StoreRow::from));
    match row {
        Some(row) => reply_to_from(&row),
        None => Ok(None),
    }
}

/// Extends a running job's lease. False when the lease was lost (the reconciler took it).
pub async fn renew_lease(
    store: &ControlStore,
    request_id: &str,
    executor: &str,
    lease: Duration,
) -> Result<bool, StoreError> {
    let updated = on_backend!(store.on(),
        postgres: "UPDATE cs_jobs SET lease_until = now() + $3 * interval '1 millisecond'
                   WHERE request_id = $1 AND state = 'running' AND claimed_by = $2",
        sqlite: "UPDATE cs_jobs SET lease_until = (SELECT ms FROM cs_now) + CAST($3 AS INTEGER)
                 WHERE request_id = $1 AND state = 'running' AND claimed_by = $2",
        |db, sql| sqlx::query(sql)
            .bind(request_id)
            .bind(executor)
            .bind(lease.as_millis() as f64)
            .execute(db)
            .await?
            .rows_affected()
    );
    Ok(updated == 1)
}

/// A finished job's audit entry: sealed already, or queued under this event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Sealed in the same round trip.
    Sealed(SealedRef),
    /// Another transaction was sealing: the entry waits in the queue (seal it with the
    /// [`crate::audit_log::AuditSealer`]).
    Queued(i64),
}

/// Records a running job's outcome and its audit entry in one round trip (the SQL function
/// `cs_job_finish`), sealing the chain up to that entry unless another transaction is sealing.
/// On SQLite the same happens in one `BEGIN IMMEDIATE` transaction, which always seals (it holds
/// the write lock, so no other transaction is sealing). Returns None when this executor no
/// longer held the job (its lease ran out).
pub async fn finish(
    store: &ControlStore,
    request_id: &str,
    executor: &str,
    summary: &ResultSummary,
    entry: &AuditEntry,
) -> Result<Option<Finished>, StoreError> {
    let summary_json = summary_json(summary)?;
    match store.pools() {
        Backed::Postgres(pool) => {
            let row =
                sqlx::query("SELECT event_id, seq, hash FROM cs_job_finish($1, $2, $3, $4, $5)")
                    .bind(request_id)
                    .bind(executor)
                    .bind(summary.outcome.as_str())
                    .bind(summary_json)
                    .bind(content_text(entry))
                    .fetch_optional(pool)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            let seq: Option<i64> = row.try_get("seq")?;
            let hash: Option<String> = row.try_get("hash")?;
            Ok(Some(match (seq, hash) {
                (Some(seq), Some(hash)) => Finished::Sealed(SealedRef {
                    seq: seq as u64,
                    hash,
                }),
                _ => Finished::Queued(row.try_get("event_id")?),
            }))
        }
        Backed::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let updated = sqlx::query(
                "UPDATE cs_jobs SET state = $3, finished_at = (SELECT ms FROM cs_now),
                        lease_until = NULL, summary = $4
                 WHERE request_id = $1 AND state = 'running' AND claimed_by = $2",
            )
            .bind(request_id)
            .bind(executor)
            .bind(summary.outcome.as_str())
            .bind(summary_json)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            let mine: i64 = sqlx::query_scalar(
                "INSERT INTO cs_audit_queue (request_id, entry) VALUES ($1, $2) RETURNING id",
            )
            .bind(request_id)
            .bind(content_text(entry))
            .fetch_one(&mut *tx)
            .await?;
            // Seal everything queued up to and including this entry (older entries keep
            // their order).
            let sealed = audit_log::seal_sqlite(&mut tx, i64::from(i32::MAX)).await?;
            tx.commit().await?;
            Ok(Some(
                match sealed.into_iter().find(|(event, _)| *event == mine) {
                    Some((_, sealed)) => Finished::Sealed(sealed),
                    None => Finished::Queued(mine),
                },
            ))
        }
    }
}

/// Marks a genuine, still-queued job refused (it expired, or re-classifies out of scope), with
/// its audit entry. Only the exact outbox payload can do this, so a forged delivery cannot
/// cancel a real job. Returns the audit event id.
pub async fn refuse_queued(
    store: &ControlStore,
    request_id: &str,
    payload: &str,
    summary: &ResultSummary,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let mut tx = store.begin().await?;
    let summary_json = summary_json(summary)?;
    on_backend!(tx.on(),
        postgres: "UPDATE cs_jobs SET state = 'refused', finished_at = now(), summary = $3
                   WHERE request_id = $1 AND state = 'queued' AND payload = $2",
        sqlite: "UPDATE cs_jobs SET state = 'refused', finished_at = (SELECT ms FROM cs_now),
                        summary = $3
                 WHERE request_id = $1 AND state = 'queued' AND payload = $2",
        |db, sql| {
            sqlx::query(sql)
                .bind(request_id)
                .bind(payload)
                .bind(summary_json)
                .execute(db)
                .await?;
        }
    );
    let event = audit_log::enqueue_in(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(event)
}

/// Records that finished jobs' summaries reached their threads.
pub async fn mark_posted(store: &ControlStore, request_ids: &[String]) -> Result<(), StoreError> {
    match store.pools() {
        Backed::Postgres(pool) => {
            sqlx::query("UPDATE cs_jobs SET posted_at = now() WHERE request_id = ANY($1)")
                .bind(request_ids)
                .execute(pool)
                .await?;
        }
        Backed::Sqlite(pool) => {
            sqlx::query(
                "UPDATE cs_jobs SET posted_at = (SELECT ms FROM cs_now)
                 WHERE request_id IN (SELECT value FROM json_each($1))",
            )
            .bind(json_list(request_ids)?)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// A queued job that may need publishing (again).
#[derive(Debug, Clone)]
pub struct ToPublish {
    /// The request id.
    pub request_id: String,
    /// The signed job, as stored.
    pub signed: SignedJob,
    /// The stream entry it was last published as, if any.
    pub stream_entry: Option<String>,
}

fn to_publish(row: &StoreRow) -> Result<ToPublish, StoreError> {
    Ok(ToPublish {
        request_id: row.get("request_id")?,
        signed: SignedJob {
            payload: row.get("payload")?,
            signature: row.get("signature")?,
        },
        stream_entry: row.get("stream_entry")?,
    })
}

/// The queued jobs of a target that have waited unclaimed longer than `older_than` since they
/// were created or last published. Returns nothing when another reconciler holds the target's
/// re-publishing lock (taken here, in the caller's transaction): one reconciler at a time
/// decides whether each needs publishing again, without locking the jobs, so claims never wait.
pub(crate) async fn lock_unclaimed(
    tx: &mut PgConnection,
    target: &str,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<ToPublish>, StoreError> {
    let ours: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('cs-republish:' || $1))")
            .bind(target)
            .fetch_one(&mut *tx)
            .await?;
    if !ours {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT j.request_id, j.payload, j.signature, p.stream_entry
         FROM cs_jobs j LEFT JOIN cs_job_publications p USING (request_id)
         WHERE j.target = $1 AND j.state = 'queued'
           AND coalesce(p.published_at, j.created_at) < now() - $2 * interval '1 millisecond'
         ORDER BY j.created_at LIMIT $3",
    )
    .bind(target)
    .bind(older_than.as_millis() as f64)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter()
        .map(|row| to_publish(&StoreRow::from(row)))
        .collect()
}

/// SQLite's [`lock_unclaimed`], without a lock: SQLite has no lock that could be held while
/// the caller talks to Redis without stopping every other writer. Two reconcilers on one file
/// may both publish a job again; the claim runs it once.
pub(crate) async fn unclaimed_sqlite(
    pool: &SqlitePool,
    target: &str,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<ToPublish>, StoreError> {
    let rows = sqlx::query(
        "SELECT j.request_id, j.payload, j.signature, p.stream_entry
         FROM cs_jobs j LEFT JOIN cs_job_publications p USING (request_id)
         WHERE j.target = $1 AND j.state = 'queued'
           AND coalesce(p.published_at, j.created_at) < (SELECT ms FROM cs_now) - CAST($2 AS INTEGER)
         ORDER BY j.created_at, j.rowid LIMIT $3",
    )
    .bind(target)
    .bind(older_than.as_millis() as f64)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| to_publish(&StoreRow::from(row)))
        .collect()
}

/// Records that a job was published, inside the re-publishing transaction (PostgreSQL).
pub(crate) async fn mark_published_in(
    tx: &mut PgConnection,
    request_id: &str,
    entry: &str,
) -> Result<(), StoreError> {
    mark_published_on(Backed::<_, &SqlitePool>::Postgres(tx), request_id, entry).await
}

/// Records that jobs' stream entries were found still waiting in Redis.
pub(crate) async fn touch_published<'c>(
    on: Backed<impl PgExecutor<'c>, impl SqliteExecutor<'c>>,
    request_ids: &[String],
) -> Result<(), StoreError> {
    match on {
        Backed::Postgres(db) => {
            sqlx::query(
                "UPDATE cs_job_publications SET published_at = now() WHERE request_id = ANY($1)",
            )
            .bind(request_ids)
            .execute(db)
            .await?;
        }
        Backed::Sqlite(db) => {
            sqlx::query(
                "UPDATE cs_job_publications SET published_at = (SELECT ms FROM cs_now)
                 WHERE request_id IN (SELECT value FROM json_each($1))",
            )
            .bind(json_list(request_ids)?)
            .execute(db)
            .await?;
        }
    }
    Ok(())
}

/// A job whose executor stopped holding it.
#[derive(Debug, Clone)]
pub struct Abandoned {
    /// The request id.
    pub request_id: String,
    /// Its thread.
    pub reply_to: Option<ReplyTo>,
    /// True: a read, queued again; false: declared `unknown` and never run again.
    pub requeued: bool,
    /// The audit event recording what was decided.
    pub event: i64,
}

/// Jobs of a target whose lease ran out (their executor died or hung): reads claimed fewer than
/// `max_read_attempts` times go back to `queued`; everything else becomes `unknown`. Each with
/// its audit entry, in one transaction, so only one reconciler decides each job.
pub async fn expire_leases(
    store: &ControlStore,
    target: &str,
    actor: &str,
    max_read_attempts: i32,
) -> Result<Vec<Abandoned>, StoreError> {
    let mut tx = store.begin().await?;
    let rows: Vec<StoreRow> = on_backend!(tx.on(),
        postgres: "UPDATE cs_jobs SET
                       state = CASE WHEN category = $2 AND attempts < $3 THEN 'queued' ELSE 'unknown' END,
                       lease_until = NULL,
                       finished_at = CASE WHEN category = $2 AND attempts < $3 THEN NULL ELSE now() END
                   WHERE request_id IN (
                       SELECT request_id FROM cs_jobs
                       WHERE target = $1 AND state = 'running' AND lease_until < now()
                       FOR UPDATE SKIP LOCKED)
                   RETURNING request_id, state, reply_to, payload, claimed_by, attempts",
        sqlite: "UPDATE cs_jobs SET
                     state = CASE WHEN category = $2 AND attempts < $3 THEN 'queued' ELSE 'unknown' END,
                     lease_until = NULL,
                     finished_at = CASE WHEN category = $2 AND attempts < $3 THEN NULL
                                        ELSE (SELECT ms FROM cs_now) END
                 WHERE target = $1 AND state = 'running' AND lease_until < (SELECT ms FROM cs_now)
                 RETURNING request_id, state, reply_to, payload, claimed_by, attempts",
        |db, sql| sqlx::query(sql)
            .bind(target)
            .bind(Category::Read.as_str())
            .bind(max_read_attempts)
            .fetch_all(db)
            .await?
            .into_iter()
            .map(StoreRow::from)
            .collect()
    );
    let mut abandoned = Vec::with_capacity(rows.len());
    for row in rows {
        let request_id: String = row.get("request_id")?;
        let state: String = row.get("state")?;
        let claimed_by: Option<String> = row.get("claimed_by")?;
        let attempts: i32 = row.get("attempts")?;
        let requeued = state == "queued";
        let who = claimed_by.unwrap_or_else(|| "an executor".into());
        let mut entry = AuditEntry::new(
            if requeued {
                AuditEvent::Queued
            } else {
                AuditEvent::OutcomeUnknown
            },
            now_ms(),
            &request_id,
            actor,
            target,
        );
        if requeued {
            entry.reasons.push(format!(
                "{who} stopped while running this read (attempt {attempts}); it runs once more"
            ));
        } else {
            entry.error = Some(format!(
                "{who} stopped while running this job; whether it committed cannot be known, so it will not run again"
            ));
        }
        let event = audit_log::enqueue_in(&mut tx, &entry).await?;
        abandoned.push(Abandoned {
            reply_to: reply_to_from(&row)?,
            request_id,
            requeued,
            event,
        });
    }
    tx.commit().await?;
    Ok(abandoned)
}

/// A finished job whose summary may not have reached its thread.
#[derive(Debug, Clone)]
pub struct Unposted {
    /// The request id.
    pub request_id: String,
    /// Its thread.
    pub reply_to: Option<ReplyTo>,
    /// The stored summary.
    pub summary: ResultSummary,
}

/// Finished jobs of a target whose summaries were not marked posted `older_than` after they
/// finished (the executor died between finishing and posting).
pub async fn unposted(
    store: &ControlStore,
    target: &str,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<Unposted>, StoreError> {
    let rows: Vec<StoreRow> = on_backend!(store.on(),
        postgres: "UPDATE cs_jobs SET posted_at = now()
                   WHERE request_id IN (
                       SELECT request_id FROM cs_jobs
                       WHERE target = $1 AND posted_at IS NULL AND finished_at IS NOT NULL
                         AND summary IS NOT NULL
                         AND finished_at < now() - $2 * interval '1 millisecond'
                       LIMIT $3 FOR UPDATE SKIP LOCKED)
                   RETURNING request_id, reply_to, summary",
        // One statement: SQLite runs it under the write lock, so one reconciler takes each.
        sqlite: "UPDATE cs_jobs SET posted_at = (SELECT ms FROM cs_now)
                 WHERE request_id IN (
                     SELECT request_id FROM cs_jobs
                     WHERE target = $1 AND posted_at IS NULL AND finished_at IS NOT NULL
                       AND summary IS NOT NULL
                       AND finished_at < (SELECT ms FROM cs_now) - CAST($2 AS INTEGER)
                     LIMIT $3)
                 RETURNING request_id, reply_to, summary",
        |db, sql| sqlx::query(sql)
            .bind(target)
            .bind(older_than.as_millis() as f64)
            .bind(limit)
            .fetch_all(db)
            .await?
            .into_iter()
            .map(StoreRow::from)
            .collect()
    );
    rows.iter()
        .map(|row| {
            let summary: serde_json::Value = row.get("summary")?;
            Ok(Unposted {
                request_id: row.get("request_id")?,
                reply_to: reply_to_from(row)?,
                summary: serde_json::from_value(summary).map_err(|error| StoreError::Corrupt {
                    what: "result summary",
                    detail: error.to_string(),
                })?,
            })
        })
        .collect()
}

/// A job's state and how many times it was claimed (for tests and the CLI).
pub async fn state_of(
    store: &ControlStore,
    request_id: &str,
) -> Result<Option<(JobState, i32)>, StoreError> {
    let row: Option<StoreRow> = on_backend!(store.on(), |db| sqlx::query(
        "SELECT state, attempts FROM cs_jobs WHERE request_id = $1"
    )
    .bind(request_id)
    .fetch_optional(db)
    .await?
    .map(StoreRow::from));
    let Some(row) = row else { return Ok(None) };
    let state: String = row.get("state")?;
    let parsed = JobState::parse(&state).ok_or(StoreError::Corrupt {
        what: "job state",
        detail: state,
    })?;
    Ok(Some((parsed, row.get("attempts")?)))
}
