//! Requests and approvals: the bot's durable state, each transition audited.
//!
//! States (DESIGN.md section 2): `received → denied | pending → approved | rejected | expired |
//! cancelled`; an allowed or approved request is `queued` once its job is in the outbox (from
//! there the job's own states in [`crate::outbox`] take over). Every transition is a
//! conditional update (`WHERE state = <expected>`) with its audit entry in the same statement or
//! transaction, so two bot replicas handling the same event change a request once, and a
//! request restarted bots find again is exactly where it was.
//!
//! On SQLite every such transaction starts with `BEGIN IMMEDIATE`: it holds the database's
//! write lock from its first read, which stands for PostgreSQL's row locks (`FOR SHARE`,
//! `FOR UPDATE`), so an approval that completes a quorum is checked and written atomically.
//!
//! Approvals are rows keyed by request and approver: the same reaction seen twice counts once;
//! removing it before execution withdraws it (`withdrawn_at`), adding it again restores it.

use countersign_shared::audit::{AuditEntry, AuditEvent};
use countersign_shared::job::{Job, SignedJob};
use sqlx::{PgExecutor, SqliteExecutor};

use crate::audit_log::{enqueue_in, json_list};
use crate::chat::ReplyTo;
use crate::now_ms;
use crate::outbox;
use crate::store::{on_backend, Backed, Backend, ControlStore, StoreError, StoreRow, Tx};

/// A request's state in the bot's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Arrived; not decided yet.
    Received,
    /// The policy denied it.
    Denied,
    /// Waiting for approvals.
    Pending,
    /// Approved (or allowed) and its job written to the outbox.
    Queued,
    /// A reviewer rejected it.
    Rejected,
    /// Its approvals did not arrive in time.
    Expired,
    /// The requester cancelled it.
    Cancelled,
}

impl RequestState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::Denied => "denied",
            RequestState::Pending => "pending",
            RequestState::Queued => "queued",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<RequestState> {
        Some(match text {
            "received" => RequestState::Received,
            "denied" => RequestState::Denied,
            "pending" => RequestState::Pending,
            "queued" => RequestState::Queued,
            "rejected" => RequestState::Rejected,
            "expired" => RequestState::Expired,
            "cancelled" => RequestState::Cancelled,
            _ => return None,
        })
    }

    /// The audit event that records arriving in this state.
    fn event(self) -> AuditEvent {
        match self {
            RequestState::Received => AuditEvent::Received,
            RequestState::Denied => AuditEvent::Denied,
            RequestState::Pending => AuditEvent::Pending,
            RequestState::Queued => AuditEvent::Queued,
            RequestState::Rejected => AuditEvent::Rejected,
            RequestState::Expired => AuditEvent::Expired,
            RequestState::Cancelled => AuditEvent::Cancelled,
        }
    }
}

/// A request as it arrives, decided.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Its id (unique; a chat event's id makes a retried delivery a no-op).
    pub id: String,
    /// Who asked (a principal).
    pub requester: String,
    /// The target's name.
    pub target: String,
    /// The SQL exactly as it will run.
    pub sql: String,
    /// The requester's justification.
    pub reason: Option<String>,
    /// The classification's category.
    pub category: String,
    /// The policy version that decided.
    pub policy_version: String,
    /// The decision in JSON (outcome, reasons, requirements), for the record and the thread.
    pub decision: serde_json::Value,
    /// The decision's reasons, for the audit trail.
    pub reasons: Vec<String>,
    /// Where the conversation is.
    pub reply_to: Option<ReplyTo>,
    /// When a pending request expires (Unix milliseconds).
    pub expires_at_ms: Option<u64>,
    /// Where it came from and how to answer the requester privately (adapter-specific JSON).
    pub origin: Option<serde_json::Value>,
    /// The root message's content (a [`crate::chat::RequestCard`] in JSON) to post.
    pub card: Option<serde_json::Value>,
}

/// What recording a new request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Recorded now.
    New,
    /// A request with this id already existed (a redelivered event, another replica).
    AlreadyThere,
}

fn entry(event: AuditEvent, id: &str, actor: &str, target: &str) -> AuditEntry {
    AuditEntry::new(event, now_ms(), id, actor, target)
}

fn reply_to_json(reply_to: Option<&ReplyTo>) -> Option<serde_json::Value> {
    reply_to.and_then(|r| serde_json::to_value(r).ok())
}

/// Records a request in its first decided state (`denied`, `pending`, or `received` when the
/// caller queues it at once with [`queue`]), with the `received` and decision audit entries, in
/// one transaction. A second call with the same id changes nothing.
pub async fn create(
    store: &ControlStore,
    request: &NewRequest,
    state: RequestState,
) -> Result<Created, StoreError> {
    let mut tx = store.begin().await?;
    let inserted = on_backend!(tx.on(),
        postgres: "INSERT INTO cs_requests (id, requester, target, sql, sql_sha256, reason, state,
                                            category, policy_version, decision, expires_at,
                                            reply_to, origin, card)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                           to_timestamp($11::double precision / 1000), $12, $13, $14)
                   ON CONFLICT (id) DO NOTHING",
        sqlite: "INSERT INTO cs_requests (id, requester, target, sql, sql_sha256, reason, state,
                                          category, policy_version, decision, expires_at,
                                          reply_to, origin, card, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CAST($11 AS INTEGER),
                         $12, $13, $14, (SELECT ms FROM cs_now), (SELECT ms FROM cs_now))
                 ON CONFLICT (id) DO NOTHING",
        |db, sql| sqlx::query(sql)
    .bind(&request.id)
    .bind(&request.requester)
    .bind(&request.target)
    .bind(&request.sql)
    .bind(countersign_shared::job::sql_sha256(&request.sql))
    .bind(&request.reason)
    .bind(state.as_str())
    .bind(&request.category)
    .bind(&request.policy_version)
    .bind(&request.decision)
    .bind(request.expires_at_ms.map(|ms| ms as f64))
    .bind(reply_to_json(request.reply_to.as_ref()))
    .bind(&request.origin)
    .bind(&request.card)
    .execute(db)
    .await?
    .rows_affected());
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(Created::AlreadyThere);
    }
    let received = AuditEntry {
        sql: Some(request.sql.clone()),
        reasons: request.reason.iter().cloned().collect(),
        ..entry(
            AuditEvent::Received,
            &request.id,
            &request.requester,
            &request.target,
        )
    };
    enqueue_in(&mut tx, &received).await?;
    if state != RequestState::Received {
        let decided = AuditEntry {
            sql: Some(request.sql.clone()),
            decision: Some(state.as_str().to_string()),
            reasons: request.reasons.clone(),
            ..entry(state.event(), &request.id, "policy", &request.target)
        };
        enqueue_in(&mut tx, &decided).await?;
    }
    tx.commit().await?;
    Ok(Created::New)
}

/// Moves a request from `from` to `to` if it is still in `from`, with the audit entry (actor,
/// reasons). False when it was not in `from` (someone else moved it first).
pub async fn transition(
    store: &ControlStore,
    id: &str,
    from: RequestState,
    to: RequestState,
    actor: &str,
    reasons: &[String],
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let moved: Option<String> = on_backend!(tx.on(),
        postgres: "UPDATE cs_requests SET state = $3, updated_at = now() WHERE id = $1 AND state = $2
                   RETURNING target",
        sqlite: "UPDATE cs_requests SET state = $3, updated_at = (SELECT ms FROM cs_now)
                 WHERE id = $1 AND state = $2
                 RETURNING target",
        |db, sql| sqlx::query_scalar(sql)
            .bind(id)
            .bind(from.as_str())
            .bind(to.as_str())
            .fetch_optional(db)
            .await?
    );
    let Some(target) = moved else {
        tx.rollback().await?;
        return Ok(false);
    };
    let record = AuditEntry {
        decision: Some(to.as_str().to_string()),
        reasons: reasons.to_vec(),
        approvers: active_approvers_in(&mut tx, id).await?,
        ..entry(to.event(), id, actor, &target)
    };
    enqueue_in(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(true)
}

/// Queues a request's signed job: the request moves from `from` (`pending` when approved,
/// `received` when the policy allowed it) to `queued` and the job enters the outbox, in one
/// transaction. False when the request had left `from` (cancelled, expired, queued by another
/// replica): then no job is written. The caller publishes the job afterwards.
pub async fn queue(
    store: &ControlStore,
    from: RequestState,
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let moved = on_backend!(tx.on(),
        postgres: "UPDATE cs_requests SET state = 'queued', updated_at = now()
                   WHERE id = $1 AND state = $2 AND sql_sha256 = $3",
        sqlite: "UPDATE cs_requests SET state = 'queued', updated_at = (SELECT ms FROM cs_now)
                 WHERE id = $1 AND state = $2 AND sql_sha256 = $3",
        |db, sql| sqlx::query(sql)
            .bind(&job.request_id)
            .bind(from.as_str())
            .bind(&job.sql_sha256)
            .execute(db)
            .await?
            .rows_affected()
    );
    if moved != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    outbox::insert_job_in(&mut tx, signed, job, reply_to, actor).await?;
    tx.commit().await?;
    Ok(true)
}

/// A request's state.
pub async fn state_of(store: &ControlStore, id: &str) -> Result<Option<RequestState>, StoreError> {
    let state: Option<String> = on_backend!(store.on(), |db| sqlx::query_scalar(
        "SELECT state FROM cs_requests WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(db)
    .await?);
    state
        .map(|s| {
            RequestState::parse(&s).ok_or(StoreError::Corrupt {
                what: "request state",
                detail: s,
            })
        })
        .transpose()
}

/// What an approval reaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalChange {
    /// A new (or restored) approval, audited.
    Counted,
    /// This approver's approval was already there: nothing changed.
    AlreadyCounted,
    /// The request is not pending any more: nothing changed.
    NotPending,
}

/// Adds an approval, or restores a withdrawn one. False when it was already active.
async fn insert_approval(tx: &mut Tx, id: &str, approver: &str) -> Result<bool, StoreError> {
    let changed = on_backend!(tx.on(),
        postgres: "INSERT INTO cs_approvals (request_id, approver) VALUES ($1, $2)
                   ON CONFLICT (request_id, approver) DO UPDATE
                       SET withdrawn_at = NULL, approved_at = now()
                       WHERE cs_approvals.withdrawn_at IS NOT NULL",
        sqlite: "INSERT INTO cs_approvals (request_id, approver, approved_at)
                 VALUES ($1, $2, (SELECT ms FROM cs_now))
                 ON CONFLICT (request_id, approver) DO UPDATE
                     SET withdrawn_at = NULL, approved_at = excluded.approved_at
                     WHERE cs_approvals.withdrawn_at IS NOT NULL",
        |db, sql| sqlx::query(sql)
            .bind(id)
            .bind(approver)
            .execute(db)
            .await?
            .rows_affected()
    );
    Ok(changed == 1)
}

/// Records an approval of a pending request (idempotent), with its audit entry.
pub async fn approve(
    store: &ControlStore,
    id: &str,
    approver: &str,
) -> Result<ApprovalChange, StoreError> {
    let mut tx = store.begin().await?;
    let pending: Option<String> = on_backend!(tx.on(),
        postgres: "SELECT target FROM cs_requests WHERE id = $1 AND state = 'pending' FOR SHARE",
        // The transaction's write lock keeps the request pending until it commits.
        sqlite: "SELECT target FROM cs_requests WHERE id = $1 AND state = 'pending'",
        |db, sql| sqlx::query_scalar(sql).bind(id).fetch_optional(db).await?
    );
    let Some(target) = pending else {
        tx.rollback().await?;
        return Ok(ApprovalChange::NotPending);
    };
    if !insert_approval(&mut tx, id, approver).await? {
        tx.rollback().await?;
        return Ok(ApprovalChange::AlreadyCounted);
    }
    let record = AuditEntry {
        approvers: active_approvers_in(&mut tx, id).await?,
        ..entry(AuditEvent::Approved, id, approver, &target)
    };
    enqueue_in(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(ApprovalChange::Counted)
}

/// What [`approve_and_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproveAndQueue {
    /// The approval and the job were written together; the request is queued.
    Queued,
    /// The approvals changed since the caller read them (or the request left `pending`):
    /// nothing was written; record the approval alone and check the quorum again.
    Changed,
}

/// Records the approval that completes a request's quorum and queues its signed job in one
/// transaction: the request row is locked, the active approvers must still be `expected` (the
/// set the caller checked the quorum with, without this approver), then the approval, the move
/// to `queued` and the job (each with its audit entry) are written together.
pub async fn approve_and_queue(
    store: &ControlStore,
    approver: &str,
    expected: &[String],
    signed: &SignedJob,
    job: &Job,
    reply_to: Option<&ReplyTo>,
    actor: &str,
) -> Result<ApproveAndQueue, StoreError> {
    let mut tx = store.begin().await?;
    let pending: Option<String> = on_backend!(tx.on(),
        postgres: "SELECT target FROM cs_requests
                   WHERE id = $1 AND state = 'pending' AND sql_sha256 = $2 FOR UPDATE",
        // The transaction's write lock keeps the request and its approvals as read here
        // until it commits.
        sqlite: "SELECT target FROM cs_requests
                 WHERE id = $1 AND state = 'pending' AND sql_sha256 = $2",
        |db, sql| sqlx::query_scalar(sql)
            .bind(&job.request_id)
            .bind(&job.sql_sha256)
            .fetch_optional(db)
            .await?
    );
    let Some(target) = pending else {
        tx.rollback().await?;
        return Ok(ApproveAndQueue::Changed);
    };
    if active_approvers_in(&mut tx, &job.request_id).await? != expected {
        tx.rollback().await?;
        return Ok(ApproveAndQueue::Changed);
    }
    if !insert_approval(&mut tx, &job.request_id, approver).await? {
        tx.rollback().await?;
        return Ok(ApproveAndQueue::Changed);
    }
    let approved = AuditEntry {
        approvers: active_approvers_in(&mut tx, &job.request_id).await?,
        ..entry(AuditEvent::Approved, &job.request_id, approver, &target)
    };
    enqueue_in(&mut tx, &approved).await?;
    on_backend!(tx.on(),
        postgres: "UPDATE cs_requests SET state = 'queued', updated_at = now() WHERE id = $1",
        sqlite: "UPDATE cs_requests SET state = 'queued', updated_at = (SELECT ms FROM cs_now)
                 WHERE id = $1",
        |db, sql| {
            sqlx::query(sql).bind(&job.request_id).execute(db).await?;
        }
    );
    outbox::insert_job_in(&mut tx, signed, job, reply_to, actor).await?;
    tx.commit().await?;
    Ok(ApproveAndQueue::Queued)
}

/// Withdraws an approval (its reaction was removed) while the request is still pending. True
/// when an approval was withdrawn.
pub async fn withdraw(store: &ControlStore, id: &str, approver: &str) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let withdrawn: Option<String> = on_backend!(tx.on(),
        postgres: "UPDATE cs_approvals a SET withdrawn_at = now()
                   FROM cs_requests r
                   WHERE a.request_id = $1 AND a.approver = $2 AND a.withdrawn_at IS NULL
                     AND r.id = a.request_id AND r.state = 'pending'
                   RETURNING r.target",
        // SQLite's RETURNING cannot name a joined table: the target comes from a subquery.
        sqlite: "UPDATE cs_approvals SET withdrawn_at = (SELECT ms FROM cs_now)
                 WHERE request_id = $1 AND approver = $2 AND withdrawn_at IS NULL
                   AND EXISTS (SELECT 1 FROM cs_requests r WHERE r.id = $1 AND r.state = 'pending')
                 RETURNING (SELECT r.target FROM cs_requests r WHERE r.id = $1) AS target",
        |db, sql| sqlx::query_scalar(sql)
            .bind(id)
            .bind(approver)
            .fetch_optional(db)
            .await?
    );
    let Some(target) = withdrawn else {
        tx.rollback().await?;
        return Ok(false);
    };
    let record = AuditEntry {
        approvers: active_approvers_in(&mut tx, id).await?,
        ..entry(AuditEvent::ApprovalWithdrawn, id, approver, &target)
    };
    enqueue_in(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(true)
}

/// The approvers whose approval currently counts, in the order they approved.
pub async fn active_approvers(store: &ControlStore, id: &str) -> Result<Vec<String>, StoreError> {
    active_approvers_on(store.on(), id).await
}

async fn active_approvers_in(tx: &mut Tx, id: &str) -> Result<Vec<String>, StoreError> {
    active_approvers_on(tx.on(), id).await
}

async fn active_approvers_on<'c>(
    on: Backed<impl PgExecutor<'c>, impl SqliteExecutor<'c>>,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(on_backend!(on, |db| sqlx::query_scalar(
        "SELECT approver FROM cs_approvals WHERE request_id = $1 AND withdrawn_at IS NULL
         ORDER BY approved_at, approver",
    )
    .bind(id)
    .fetch_all(db)
    .await?))
}

/// An expired request, for its thread.
#[derive(Debug, Clone)]
pub struct ExpiredRequest {
    /// The request's id.
    pub id: String,
    /// Its thread.
    pub reply_to: Option<ReplyTo>,
}

/// Moves every pending request past its expiry to `expired`, each with its audit entry, in one
/// transaction (so two replicas expire each request once).
pub async fn expire_due(
    store: &ControlStore,
    actor: &str,
) -> Result<Vec<ExpiredRequest>, StoreError> {
    let mut tx = store.begin().await?;
    let rows: Vec<StoreRow> = on_backend!(tx.on(),
        postgres: "UPDATE cs_requests SET state = 'expired', updated_at = now()
                   WHERE id IN (SELECT id FROM cs_requests
                                WHERE state = 'pending' AND expires_at < now()
                                FOR UPDATE SKIP LOCKED)
                   RETURNING id, target, reply_to",
        sqlite: "UPDATE cs_requests SET state = 'expired', updated_at = (SELECT ms FROM cs_now)
                 WHERE state = 'pending' AND expires_at < (SELECT ms FROM cs_now)
                 RETURNING id, target, reply_to",
        |db, sql| sqlx::query(sql)
            .fetch_all(db)
            .await?
            .into_iter()
            .map(StoreRow::from)
            .collect()
    );
    let mut expired = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.get("id")?;
        let target: String = row.get("target")?;
        let reply_to: Option<serde_json::Value> = row.get("reply_to")?;
        let record = AuditEntry {
            decision: Some("expired".into()),
            reasons: vec!["the approvals did not arrive before the request expired".into()],
            ..entry(AuditEvent::Expired, &id, actor, &target)
        };
        enqueue_in(&mut tx, &record).await?;
        expired.push(ExpiredRequest {
            id,
            reply_to: reply_to.and_then(|v| serde_json::from_value(v).ok()),
        });
    }
    tx.commit().await?;
    Ok(expired)
}

/// A request as stored, with its job's state when it has one.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    /// Its id.
    pub id: String,
    /// Who asked (a principal).
    pub requester: String,
    /// The target's name.
    pub target: String,
    /// The SQL.
    pub sql: String,
    /// The justification.
    pub reason: Option<String>,
    /// Its state.
    pub state: RequestState,
    /// The classification's category.
    pub category: Option<String>,
    /// The policy version that decided.
    pub policy_version: Option<String>,
    /// The decision in JSON.
    pub decision: Option<serde_json::Value>,
    /// When it expires, if pending (Unix milliseconds).
    pub expires_at_ms: Option<u64>,
    /// Its thread, once the root message is posted.
    pub reply_to: Option<ReplyTo>,
    /// Where it came from (adapter-specific JSON).
    pub origin: Option<serde_json::Value>,
    /// The card in JSON, as last rendered.
    pub card: Option<serde_json::Value>,
    /// The state the posted card shows.
    pub card_shown: Option<String>,
    /// The job's state (`queued`, `running`, `succeeded`, ...), once queued.
    pub job_state: Option<String>,
    /// The job's result summary in JSON, once finished.
    pub job_summary: Option<serde_json::Value>,
    /// When it was created (Unix milliseconds).
    pub created_at_ms: u64,
}

const STORED_COLUMNS: &str = "r.id, r.requester, r.target, r.sql, r.reason, r.state, r.category,
    r.policy_version, r.decision,
    (extract(epoch FROM r.expires_at) * 1000)::bigint AS expires_ms,
    (extract(epoch FROM r.created_at) * 1000)::bigint AS created_ms,
    r.reply_to, r.origin, r.card, r.card_shown, j.state AS job_state, j.summary AS job_summary";

/// [`STORED_COLUMNS`] on SQLite, whose times are milliseconds already.
const SQLITE_STORED_COLUMNS: &str = "r.id, r.requester, r.target, r.sql, r.reason, r.state,
    r.category, r.policy_version, r.decision,
    r.expires_at AS expires_ms, r.created_at AS created_ms,
    r.reply_to, r.origin, r.card, r.card_shown, j.state AS job_state, j.summary AS job_summary";

/// A query for stored requests on the store's backend: the columns, the join, then `rest`.
fn stored_query(store: &ControlStore, rest: &str) -> String {
    let columns = match store.backend() {
        Backend::Postgres => STORED_COLUMNS,
        Backend::Sqlite => SQLITE_STORED_COLUMNS,
    };
    format!("SELECT {columns} FROM cs_requests r LEFT JOIN cs_jobs j ON j.request_id = r.id {rest}")
}

fn stored_from(row: &StoreRow) -> Result<StoredRequest, StoreError> {
    let state: String = row.get("state")?;
    let reply_to: Option<serde_json::Value> = row.get("reply_to")?;
    let expires_ms: Option<i64> = row.get("expires_ms")?;
    let created_ms: Option<i64> = row.get("created_ms")?;
    Ok(StoredRequest {
        id: row.get("id")?,
        requester: row.get("requester")?,
        target: row.get("target")?,
        sql: row.get("sql")?,
        reason: row.get("reason")?,
        state: RequestState::parse(&state).ok_or(StoreError::Corrupt {
            what: "request state",
            detail: state.clone(),
        })?,
        category: row.get("category")?,
        policy_version: row.get("policy_version")?,
        decision: row.get("decision")?,
        expires_at_ms: expires_ms.map(|ms| ms.max(0) as u64),
        reply_to: reply_to.and_then(|v| serde_json::from_value(v).ok()),
        origin: row.get("origin")?,
        card: row.get("card")?,
        card_shown: row.get("card_shown")?,
        job_state: row.get("job_state")?,
        job_summary: row.get("job_summary")?,
        created_at_ms: created_ms.unwrap_or(0).max(0) as u64,
    })
}

/// Loads a request.
pub async fn load(store: &ControlStore, id: &str) -> Result<Option<StoredRequest>, StoreError> {
    let sql = stored_query(store, "WHERE r.id = $1");
    let row: Option<StoreRow> = on_backend!(store.on(), |db| sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(StoreRow::from));
    row.as_ref().map(stored_from).transpose()
}

/// Finds the request whose root message is `(platform, channel, ts)` (a reaction's message).
pub async fn find_by_root(
    store: &ControlStore,
    platform: &str,
    channel: &str,
    ts: &str,
) -> Result<Option<StoredRequest>, StoreError> {
    let sql = stored_query(
        store,
        "WHERE r.root_platform = $1 AND r.root_channel = $2 AND r.root_ts = $3",
    );
    let row: Option<StoreRow> = on_backend!(store.on(), |db| sqlx::query(&sql)
        .bind(platform)
        .bind(channel)
        .bind(ts)
        .fetch_optional(db)
        .await?
        .map(StoreRow::from));
    row.as_ref().map(stored_from).transpose()
}

/// Requests in `states`, newest first, up to `limit`; only `requester`'s when given.
pub async fn list(
    store: &ControlStore,
    states: &[RequestState],
    requester: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredRequest>, StoreError> {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let rows: Vec<StoreRow> = match store.pools() {
        Backed::Postgres(pool) => {
            let sql = stored_query(
                store,
                "WHERE r.state = ANY($1) AND ($2::text IS NULL OR r.requester = $2)
                 ORDER BY r.created_at DESC LIMIT $3",
            );
            sqlx::query(&sql)
                .bind(&names)
                .bind(requester)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(StoreRow::from)
                .collect()
        }
        Backed::Sqlite(pool) => {
            // Milliseconds can tie: the insertion order breaks ties.
            let sql = stored_query(
                store,
                "WHERE r.state IN (SELECT value FROM json_each($1))
                   AND ($2 IS NULL OR r.requester = $2)
                 ORDER BY r.created_at DESC, r.rowid DESC LIMIT $3",
            );
            sqlx::query(&sql)
                .bind(json_list(&names)?)
                .bind(requester)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(StoreRow::from)
                .collect()
        }
    };
    rows.iter().map(stored_from).collect()
}

/// Takes the right to post a request's root message: true when no root message is recorded
/// and nobody else took the right in the last `stale_after` (a replica that died mid-post).
pub async fn claim_root(
    store: &ControlStore,
    id: &str,
    stale_after: std::time::Duration,
) -> Result<bool, StoreError> {
    let claimed = on_backend!(store.on(),
        postgres: "UPDATE cs_requests SET root_claimed_at = now()
                   WHERE id = $1 AND root_ts IS NULL
                     AND (root_claimed_at IS NULL
                          OR root_claimed_at < now() - make_interval(secs => $2))",
        sqlite: "UPDATE cs_requests SET root_claimed_at = (SELECT ms FROM cs_now)
                 WHERE id = $1 AND root_ts IS NULL
                   AND (root_claimed_at IS NULL
                        OR root_claimed_at < (SELECT ms FROM cs_now) - CAST($2 * 1000 AS INTEGER))",
        |db, sql| sqlx::query(sql)
            .bind(id)
            .bind(stale_after.as_secs_f64())
            .execute(db)
            .await?
            .rows_affected()
    );
    Ok(claimed == 1)
}

/// Whether some root message is being posted now (claimed within `within`, not yet recorded):
/// a reaction on a message the bot does not know yet may be on it.
pub async fn roots_in_flight(
    store: &ControlStore,
    within: std::time::Duration,
) -> Result<bool, StoreError> {
    Ok(on_backend!(store.on(),
        postgres: "SELECT EXISTS (SELECT 1 FROM cs_requests
                                  WHERE root_ts IS NULL
                                    AND root_claimed_at > now() - make_interval(secs => $1))",
        sqlite: "SELECT EXISTS (SELECT 1 FROM cs_requests
                                WHERE root_ts IS NULL
                                  AND root_claimed_at
                                      > (SELECT ms FROM cs_now) - CAST($1 * 1000 AS INTEGER))",
        |db, sql| sqlx::query_scalar(sql)
            .bind(within.as_secs_f64())
            .fetch_one(db)
            .await?
    ))
}

/// Records where the root message was posted: the request's thread from now on.
pub async fn set_root(
    store: &ControlStore,
    id: &str,
    root: &ReplyTo,
    card_shown: &str,
) -> Result<(), StoreError> {
    on_backend!(store.on(), |db| {
        sqlx::query(
            "UPDATE cs_requests SET root_platform = $2, root_channel = $3, root_ts = $4,
                    reply_to = $5, card_shown = $6
             WHERE id = $1",
        )
        .bind(id)
        .bind(&root.platform)
        .bind(&root.channel)
        .bind(&root.thread)
        .bind(reply_to_json(Some(root)))
        .bind(card_shown)
        .execute(db)
        .await?;
    });
    Ok(())
}

/// Records the card as rendered now and the state it shows; `is_final` once nothing will change
/// it again.
pub async fn set_card(
    store: &ControlStore,
    id: &str,
    card: &serde_json::Value,
    shown: &str,
    is_final: bool,
) -> Result<(), StoreError> {
    on_backend!(store.on(), |db| {
        sqlx::query(
            "UPDATE cs_requests SET card = $2, card_shown = $3, card_final = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(card)
        .bind(shown)
        .bind(is_final)
        .execute(db)
        .await?;
    });
    Ok(())
}

/// Requests whose posted card may be behind: a root message exists, the card is not final, and
/// the state it shows differs from the request's (or its job's) state now.
pub async fn stale_cards(store: &ControlStore, limit: i64) -> Result<Vec<String>, StoreError> {
    Ok(on_backend!(store.on(),
        postgres: "SELECT r.id FROM cs_requests r LEFT JOIN cs_jobs j ON j.request_id = r.id
                   WHERE r.root_ts IS NOT NULL AND NOT r.card_final
                     AND r.card_shown IS DISTINCT FROM
                         CASE WHEN r.state = 'queued' THEN coalesce(j.state, 'queued') ELSE r.state END
                   ORDER BY r.updated_at LIMIT $1",
        sqlite: "SELECT r.id FROM cs_requests r LEFT JOIN cs_jobs j ON j.request_id = r.id
                 WHERE r.root_ts IS NOT NULL AND NOT r.card_final
                   AND r.card_shown IS NOT
                       CASE WHEN r.state = 'queued' THEN coalesce(j.state, 'queued') ELSE r.state END
                 ORDER BY r.updated_at, r.rowid LIMIT $1",
        |db, sql| sqlx::query_scalar(sql).bind(limit).fetch_all(db).await?
    ))
}

/// Requests that should have a root message but have none (the replica that should have posted
/// it died), created more than `older_than` ago.
pub async fn missing_roots(
    store: &ControlStore,
    older_than: std::time::Duration,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(on_backend!(store.on(),
        postgres: "SELECT id FROM cs_requests
                   WHERE root_ts IS NULL AND card IS NOT NULL
                     AND state IN ('pending', 'queued', 'received')
                     AND created_at < now() - make_interval(secs => $1)
                     AND (root_claimed_at IS NULL
                          OR root_claimed_at < now() - make_interval(secs => $1))
                   ORDER BY created_at LIMIT $2",
        sqlite: "SELECT id FROM cs_requests
                 WHERE root_ts IS NULL AND card IS NOT NULL
                   AND state IN ('pending', 'queued', 'received')
                   AND created_at < (SELECT ms FROM cs_now) - CAST($1 * 1000 AS INTEGER)
                   AND (root_claimed_at IS NULL
                        OR root_claimed_at < (SELECT ms FROM cs_now) - CAST($1 * 1000 AS INTEGER))
                 ORDER BY created_at, rowid LIMIT $2",
        |db, sql| sqlx::query_scalar(sql)
            .bind(older_than.as_secs_f64())
            .bind(limit)
            .fetch_all(db)
            .await?
    ))
}
