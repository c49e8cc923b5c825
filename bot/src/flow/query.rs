//! `/query [target] [--reason "..."] <sql>`: decide, then deny, queue at once, or post the
//! request for review.
//!
//! 1. The policy decides without an estimate. A statement that needs approval gets the
//!    executor's preflight row estimate (bounded wait) and is decided again with it, so rules
//!    on estimated rows see real numbers; without an answer the rule applies (fail closed).
//! 2. The request is recorded with its decision and the card it will show ([`requests::create`],
//!    idempotent per request id).
//! 3. [`resume`] carries it on from whatever is stored: posts the root message if none is
//!    recorded (one replica claims that), and queues an allowed request's signed job.

use countersign_control::chat::{CardRequirement, CardState, ReplyTo, RequestCard};
use countersign_control::requests::{self, NewRequest, RequestState, StoredRequest};
use countersign_control::submit;
use countersign_shared::job::{sql_sha256, Job, PreflightRequest, SignedJob};
use countersign_shared::policy::{ApprovalMode, ApprovalRequirement, Decision, Outcome, Request};
use countersign_shared::sql::Category;
use serde::Serialize;

use super::{card, now, Bot, FlowError};
use crate::chat::Origin;

/// A query to decide.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The request's id (derived from the platform's event id, or given by the automation
    /// caller).
    pub request_id: String,
    /// Who asked, where, and how to answer.
    pub origin: Origin,
    /// The target.
    pub target: String,
    /// The SQL.
    pub sql: String,
    /// The justification.
    pub reason: Option<String>,
}

/// What became of a query, for the requester (and the automation endpoint's JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum QueryOutcome {
    /// The policy refused it.
    Denied {
        /// The request's id.
        request_id: String,
        /// Why.
        reasons: Vec<String>,
    },
    /// Allowed; its job is queued for the executor.
    Queued {
        /// The request's id.
        request_id: String,
        /// Its thread, where the result will appear.
        thread: Option<ReplyTo>,
    },
    /// Posted for review.
    Pending {
        /// The request's id.
        request_id: String,
        /// Its thread.
        thread: Option<ReplyTo>,
        /// Who must approve.
        requirements: Vec<String>,
        /// When it expires (Unix milliseconds).
        expires_at_ms: Option<u64>,
    },
    /// Already decided earlier (a repeated submission with the same id): its state now.
    Existing {
        /// The request's id.
        request_id: String,
        /// Its state (`pending`, `queued`, ...).
        request_state: String,
    },
}

impl QueryOutcome {
    /// The request's id.
    pub fn request_id(&self) -> &str {
        match self {
            QueryOutcome::Denied { request_id, .. }
            | QueryOutcome::Queued { request_id, .. }
            | QueryOutcome::Pending { request_id, .. }
            | QueryOutcome::Existing { request_id, .. } => request_id,
        }
    }

    /// What the requester is told privately.
    pub fn private_reply(&self) -> String {
        match self {
            QueryOutcome::Denied { request_id, reasons } => {
                let mut text = format!("Denied (request `{request_id}`):");
                for reason in reasons {
                    text.push_str("\n• ");
                    text.push_str(reason);
                }
                text
            }
            QueryOutcome::Queued { request_id, .. } => format!(
                "Allowed: request `{request_id}` is running; the result will appear in its thread."
            ),
            QueryOutcome::Pending {
                request_id,
                requirements,
                ..
            } => format!(
                "Request `{request_id}` needs {}. It is posted for review; `/query cancel {request_id}` withdraws it.",
                requirements.join(" and ")
            ),
            QueryOutcome::Existing {
                request_id,
                request_state,
            } => format!("Request `{request_id}` is already {request_state}."),
        }
    }
}

/// Decides a query and carries it as far as it goes without people.
pub async fn run(bot: &Bot, submission: Submission) -> Result<QueryOutcome, FlowError> {
    let store = &bot.store;
    if let Some(stored) = requests::load(store, &submission.request_id).await? {
        // A redelivery, a takeover after a crash, or an automation retry: carry on.
        resume(bot, &stored).await?;
        return match outcome_of(bot, &submission.request_id).await? {
            QueryOutcome::Queued { request_id, .. } => {
                let now = requests::load(store, &request_id).await?;
                Ok(QueryOutcome::Existing {
                    request_state: now
                        .as_ref()
                        .map_or_else(|| "queued".to_string(), super::card::shown_state),
                    request_id,
                })
            }
            other => Ok(other),
        };
    }
    let requester = bot.identity(&submission.origin.user).await?;
    let mut decision = bot.policy.decide(&Request {
        target: &submission.target,
        requester: &requester,
        sql: &submission.sql,
        estimated_rows: None,
    });
    let mut estimate = Estimate::default();
    if matches!(decision.outcome, Outcome::NeedsApproval(_)) {
        estimate = preflight(bot, &submission).await;
        decision = bot.policy.decide(&Request {
            target: &submission.target,
            requester: &requester,
            sql: &submission.sql,
            estimated_rows: estimate.rows,
        });
    }
    bot.metrics.decision(decision.outcome.as_str());
    let (state, expires_at_ms) = match &decision.outcome {
        Outcome::Deny => (RequestState::Denied, None),
        Outcome::Allow => (RequestState::Received, None),
        Outcome::NeedsApproval(_) => {
            let ttl = decision.outcome.approval_ttl().unwrap_or_default();
            (RequestState::Pending, Some(now() + ttl.as_millis() as u64))
        }
    };
    let requirements = decision.outcome.requirements();
    let card = RequestCard {
        request_id: submission.request_id.clone(),
        requester: submission.origin.user.clone(),
        target: submission.target.clone(),
        sql: submission.sql.clone(),
        reason: submission.reason.clone(),
        category: decision.classification.category.as_str().to_string(),
        review_reasons: review_reasons(&decision),
        estimated_rows: estimate.rows,
        estimate_notes: estimate.notes,
        requirements: requirements
            .iter()
            .map(|r| CardRequirement {
                wanted: r.describe(),
                satisfied: false,
            })
            .collect(),
        approvers: Vec::new(),
        state: if state == RequestState::Pending {
            CardState::AwaitingApproval
        } else {
            CardState::Queued
        },
        state_detail: None,
        expires_at_ms,
        approve_reaction: bot
            .config
            .approve_reactions
            .first()
            .cloned()
            .unwrap_or_default(),
        reject_reaction: bot
            .config
            .reject_reactions
            .first()
            .cloned()
            .unwrap_or_default(),
    };
    let request = NewRequest {
        id: submission.request_id.clone(),
        requester: submission.origin.user.clone(),
        target: submission.target.clone(),
        sql: submission.sql.clone(),
        reason: submission.reason.clone(),
        category: decision.classification.category.as_str().to_string(),
        policy_version: decision.policy_version.clone(),
        decision: decision.to_json(),
        reasons: decision.reasons.clone(),
        reply_to: None,
        expires_at_ms,
        origin: serde_json::to_value(&submission.origin).ok(),
        card: (state != RequestState::Denied)
            .then(|| serde_json::to_value(&card).ok())
            .flatten(),
    };
    requests::create(store, &request, state).await?;
    if state == RequestState::Denied {
        return Ok(QueryOutcome::Denied {
            request_id: submission.request_id,
            reasons: decision.reasons,
        });
    }
    if let Some(stored) = requests::load(store, &submission.request_id).await? {
        resume(bot, &stored).await?;
    }
    outcome_of(bot, &submission.request_id).await
}

/// The outcome of a stored request, as the requester is told.
pub async fn outcome_of(bot: &Bot, request_id: &str) -> Result<QueryOutcome, FlowError> {
    let stored = requests::load(&bot.store, request_id)
        .await?
        .ok_or_else(|| FlowError::Corrupt(format!("request {request_id} vanished")))?;
    Ok(match stored.state {
        RequestState::Denied => QueryOutcome::Denied {
            request_id: stored.id,
            reasons: decision_reasons(stored.decision.as_ref()),
        },
        RequestState::Pending => QueryOutcome::Pending {
            requirements: requirements_of(stored.decision.as_ref())
                .unwrap_or_default()
                .iter()
                .map(ApprovalRequirement::describe)
                .collect(),
            request_id: stored.id,
            thread: stored.reply_to,
            expires_at_ms: stored.expires_at_ms,
        },
        RequestState::Queued => QueryOutcome::Queued {
            request_id: stored.id,
            thread: stored.reply_to,
        },
        state => QueryOutcome::Existing {
            request_id: stored.id,
            request_state: match (state, stored.job_state) {
                (RequestState::Queued, Some(job)) => job,
                (state, _) => state.as_str().to_string(),
            },
        },
    })
}

/// Carries a stored request on: posts its root message if none is recorded, and queues an
/// allowed request's job.
pub async fn resume(bot: &Bot, stored: &StoredRequest) -> Result<(), FlowError> {
    let store = &bot.store;
    let mut thread = stored.reply_to.clone();
    if thread.is_none()
        && matches!(
            stored.state,
            RequestState::Received | RequestState::Pending | RequestState::Queued
        )
        && requests::claim_root(store, &stored.id, bot.config.takeover_after).await?
    {
        thread = Some(post_root(bot, stored).await?);
    }
    if stored.state == RequestState::Received {
        queue_job(bot, stored, RequestState::Received, &[], thread.as_ref()).await?;
        card::refresh(bot, &stored.id).await?;
    }
    Ok(())
}

/// Where a request's root message goes: the target's review channel for a request that needs
/// approval (when the policy names one), else where it was asked; automation requests go to
/// the review channel or the configured automation channel.
fn root_destination(bot: &Bot, stored: &StoredRequest) -> Result<(String, String), FlowError> {
    let origin: Origin = stored
        .origin
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| FlowError::Corrupt(format!("request {} has no origin", stored.id)))?;
    let review_channel = bot
        .policy
        .target(&stored.target)
        .and_then(|t| t.review_channel.clone());
    let needs_review = stored.state == RequestState::Pending;
    if origin.platform == "automation" {
        let (platform, fallback) = bot
            .config
            .automation_channel
            .clone()
            .ok_or_else(|| FlowError::Corrupt("no automation channel is configured".into()))?;
        let channel = if needs_review {
            review_channel.unwrap_or(fallback)
        } else {
            fallback
        };
        return Ok((platform, channel));
    }
    let channel = match review_channel {
        Some(review) if needs_review => review,
        _ => origin.channel.clone(),
    };
    Ok((origin.platform, channel))
}

async fn post_root(bot: &Bot, stored: &StoredRequest) -> Result<ReplyTo, FlowError> {
    let (platform, channel) = root_destination(bot, stored)?;
    let adapter = bot.adapter(&platform)?;
    let card = card::current(bot, stored).await?;
    let root = adapter.post_card(&channel, &card).await?;
    requests::set_root(&bot.store, &stored.id, &root, &card::shown_state(stored)).await?;
    if card.state == CardState::AwaitingApproval {
        tracing::info!(request = %stored.id, channel = %root.channel, "posted for review");
    }
    Ok(root)
}

/// The request's job, signed: approved as it was classified, with `approvers`, valid for the
/// configured job TTL from now.
pub(crate) fn signed_job(
    bot: &Bot,
    stored: &StoredRequest,
    approvers: &[String],
) -> (Job, SignedJob) {
    let issued_at = now() / 1000;
    let category = stored
        .category
        .as_deref()
        .and_then(Category::parse)
        .unwrap_or(Category::Unknown);
    let job = Job {
        request_id: stored.id.clone(),
        target: stored.target.clone(),
        sql: stored.sql.clone(),
        sql_sha256: sql_sha256(&stored.sql),
        requester: stored.requester.clone(),
        approvers: approvers.to_vec(),
        policy_version: stored.policy_version.clone().unwrap_or_default(),
        category,
        row_limit: stored
            .decision
            .as_ref()
            .and_then(|d| d.get("row_limit"))
            .and_then(serde_json::Value::as_u64),
        issued_at,
        expires_at: issued_at + bot.config.job_ttl.as_secs(),
    };
    let signed = bot.signer.sign(&job);
    (job, signed)
}

/// Publishes a job already in the outbox. A Redis failure is logged, not raised: the job is
/// durable and the executors' reconciler publishes it.
pub(crate) async fn publish(bot: &Bot, job: &Job, signed: &SignedJob) -> Result<(), FlowError> {
    let stream = countersign_control::queue::Stream::Jobs;
    match bot.queue.publish(stream, &job.target, signed).await {
        Ok(entry) => {
            let store = &bot.store;
            countersign_control::outbox::mark_published(store, &job.request_id, &entry).await?;
        }
        Err(error) => {
            tracing::warn!(%error, request = %job.request_id, "publishing a job failed; the reconciler will publish it");
        }
    }
    bot.metrics.queued();
    Ok(())
}

/// Signs the request's job and queues it (request to `queued` and the job into the outbox in
/// one transaction), then publishes it. False when the request had already left `from`.
pub(crate) async fn queue_job(
    bot: &Bot,
    stored: &StoredRequest,
    from: RequestState,
    approvers: &[String],
    thread: Option<&ReplyTo>,
) -> Result<bool, FlowError> {
    let (job, signed) = signed_job(bot, stored, approvers);
    if !requests::queue(&bot.store, from, &signed, &job, thread, &bot.name).await? {
        return Ok(false);
    }
    publish(bot, &job, &signed).await?;
    Ok(true)
}

#[derive(Debug, Default)]
struct Estimate {
    rows: Option<u64>,
    notes: Vec<String>,
}

async fn preflight(bot: &Bot, submission: &Submission) -> Estimate {
    let issued_at = now() / 1000;
    let request = PreflightRequest {
        id: format!("{}-preflight", submission.request_id),
        target: submission.target.clone(),
        sql: submission.sql.clone(),
        requester: submission.origin.user.clone(),
        issued_at,
        expires_at: issued_at + bot.config.preflight_timeout.as_secs().max(1) + 5,
    };
    let answer = submit::preflight(
        &bot.queue,
        &bot.signer,
        &request,
        bot.config.preflight_timeout,
    )
    .await;
    match answer {
        Ok(Some(answer)) if answer.ok => Estimate {
            rows: answer.rows,
            notes: answer.notes,
        },
        Ok(Some(answer)) => Estimate {
            rows: None,
            notes: vec![format!(
                "No row estimate: {}",
                answer
                    .error
                    .unwrap_or_else(|| "the planner gave none".into())
            )],
        },
        Ok(None) => Estimate {
            rows: None,
            notes: vec![format!(
                "No row estimate: no executor answered within {} s.",
                bot.config.preflight_timeout.as_secs_f32()
            )],
        },
        Err(error) => {
            tracing::warn!(%error, "preflight failed");
            Estimate {
                rows: None,
                notes: vec!["No row estimate: the job queue is unreachable.".into()],
            }
        }
    }
}

/// Why a request needs review: the reasons of its approval requirements.
fn review_reasons(decision: &Decision) -> Vec<String> {
    let mut reasons: Vec<String> = decision
        .outcome
        .requirements()
        .iter()
        .map(|r| r.reason.clone())
        .filter(|r| !r.is_empty())
        .collect();
    reasons.dedup();
    if reasons.is_empty() && !decision.outcome.requirements().is_empty() {
        reasons = decision.reasons.clone();
    }
    reasons
}

/// The reasons stored with a decision.
pub(crate) fn decision_reasons(decision: Option<&serde_json::Value>) -> Vec<String> {
    decision
        .and_then(|d| d.get("reasons"))
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

/// The approval requirements stored with a decision. Fails closed: `None` when any of them does
/// not read back (then no approval can satisfy the request), and an empty list only when the
/// decision asked for none.
pub(crate) fn requirements_of(
    decision: Option<&serde_json::Value>,
) -> Option<Vec<ApprovalRequirement>> {
    let list = decision?.pointer("/approval/requirements")?.as_array()?;
    list.iter()
        .map(|r| {
            Some(ApprovalRequirement {
                rule: r.get("rule")?.as_str()?.to_string(),
                from: serde_json::from_value(r.get("from")?.clone()).ok()?,
                count: u32::try_from(r.get("count")?.as_u64()?).ok()?,
                mode: ApprovalMode::parse(r.get("mode")?.as_str()?)?,
                ttl: std::time::Duration::from_secs(r.get("ttl_seconds")?.as_u64()?),
                reason: r.get("reason")?.as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(requirements: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"outcome": "needs_approval", "approval": {"requirements": requirements}})
    }

    #[test]
    fn stored_requirements_read_back() {
        let stored = decision(serde_json::json!([{
            "rule": "writes", "from": ["dba", "oncall"], "count": 2, "mode": "all_of",
            "ttl": "1h", "ttl_seconds": 3600, "reason": "a second pair of eyes"
        }]));
        let requirements = requirements_of(Some(&stored)).expect("readable");
        assert_eq!(requirements.len(), 1);
        assert_eq!(requirements[0].count, 2);
        assert_eq!(requirements[0].mode, ApprovalMode::AllOf);
        assert_eq!(
            requirements[0].from,
            vec!["dba".to_string(), "oncall".to_string()]
        );
    }

    #[test]
    fn unreadable_requirements_fail_closed() {
        // One requirement of two lost its count: nothing is read, so nothing can satisfy it.
        let stored = decision(serde_json::json!([
            {"rule": "a", "from": ["dba"], "count": 1, "mode": "any_of", "ttl_seconds": 60, "reason": ""},
            {"rule": "b", "from": ["dba"], "mode": "any_of", "ttl_seconds": 60, "reason": ""}
        ]));
        assert!(requirements_of(Some(&stored)).is_none());
        assert!(requirements_of(Some(&serde_json::json!({"outcome": "allow"}))).is_none());
        assert!(requirements_of(None).is_none());
    }

    #[test]
    fn request_ids_are_short_stable_and_distinct() {
        let id = crate::flow::request_id_for("slack", "1.2.abc");
        assert_eq!(id, crate::flow::request_id_for("slack", "1.2.abc"));
        assert_ne!(id, crate::flow::request_id_for("discord", "1.2.abc"));
        assert_eq!(id.len(), 11);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
