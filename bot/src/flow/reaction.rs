//! Reactions on a request's root message: approve, reject, withdraw.
//!
//! - An approving reaction counts only from a person (not the requester) who belongs to a group
//!   a requirement asks for; anyone else gets a short note saying why it does not count. Once
//!   the approvals meet every requirement, the job is signed with the approvers and queued in
//!   the same transaction that moves the request to `queued`.
//! - A rejecting reaction from an eligible reviewer rejects the request; from the requester it
//!   cancels it.
//! - Removing an approving reaction before the job is queued withdraws the approval.
//!
//! Approvals are rows keyed by (request, approver), and every state change is conditional, so
//! the same reaction seen twice (a retry, a second replica) counts once.

use countersign_control::requests::{
    self, ApprovalChange, ApproveAndQueue, RequestState, StoredRequest,
};
use countersign_shared::policy::{Identity, QuorumStatus};

use super::query::{publish, queue_job, requirements_of, signed_job};
use super::{card, Bot, FlowError};
use crate::chat::ReactionEvent;

enum Kind {
    Approve,
    Reject,
}

/// Handles one reaction event.
pub async fn handle(bot: &Bot, event: &ReactionEvent) -> Result<(), FlowError> {
    let kind = if bot.config.approve_reactions.contains(&event.reaction) {
        Kind::Approve
    } else if bot.config.reject_reactions.contains(&event.reaction) {
        Kind::Reject
    } else {
        return Ok(());
    };
    let store = &bot.store;
    let Some(stored) = find_root(bot, event).await? else {
        // Not one of our root messages.
        return Ok(());
    };
    if stored.state != RequestState::Pending {
        if event.added && matches!(kind, Kind::Approve) && stored.requester != event.user {
            bot.metrics.approval("too_late");
        }
        return Ok(());
    }
    let who = bot.mention(&event.platform, &event.user);
    match (kind, event.added) {
        (Kind::Approve, true) => approve(bot, &stored, event, &who).await,
        (Kind::Approve, false) => {
            if requests::withdraw(store, &stored.id, &event.user).await? {
                bot.metrics.approval("withdrawn");
                card::refresh(bot, &stored.id).await?;
                bot.note(
                    stored.reply_to.as_ref(),
                    &format!("{who} withdrew their approval."),
                )
                .await;
            }
            Ok(())
        }
        (Kind::Reject, true) => reject(bot, &stored, event, &who).await,
        (Kind::Reject, false) => Ok(()),
    }
}

/// The request whose root message the reaction is on. A reviewer can react the moment Slack
/// shows the message, before the bot has recorded its id: while a root message is being posted,
/// an unknown message is looked up again for a few seconds before it is taken as not ours.
async fn find_root(bot: &Bot, event: &ReactionEvent) -> Result<Option<StoredRequest>, FlowError> {
    let store = &bot.store;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // In-flight first, then the lookup: a root recorded between the two is found by the
        // lookup; one claimed after the in-flight check was not shown yet, so nobody reacted.
        let in_flight =
            requests::roots_in_flight(store, std::time::Duration::from_secs(10)).await?;
        let found =
            requests::find_by_root(store, &event.platform, &event.channel, &event.message).await?;
        if found.is_some() || !in_flight || tokio::time::Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether `reviewer` counts for at least one of the request's requirements, or why not.
fn eligibility(
    bot: &Bot,
    stored: &StoredRequest,
    requester: &Identity,
    reviewer: &Identity,
) -> Result<(), String> {
    let Some(requirements) = requirements_of(stored.decision.as_ref()) else {
        return Err("this request's approval requirements could not be read".into());
    };
    let status =
        bot.policy
            .check_approvals(&requirements, requester, std::slice::from_ref(reviewer));
    if let Some(ignored) = status.ignored.first() {
        return Err(ignored.why.clone());
    }
    if status.requirements.iter().any(|r| !r.counted.is_empty()) {
        Ok(())
    } else {
        let wanted: Vec<String> = requirements.iter().map(|r| r.describe()).collect();
        Err(format!("this request needs {}", wanted.join(" and ")))
    }
}

/// The requester's and the reviewer's identities when the reacting reviewer counts for one of
/// the request's requirements; otherwise posts why `what` ("The approval of <@U1>") does not
/// count, and returns `None`.
async fn counting_reviewer(
    bot: &Bot,
    stored: &StoredRequest,
    event: &ReactionEvent,
    what: &str,
) -> Result<Option<(Identity, Identity)>, FlowError> {
    let requester = bot.identity(&stored.requester).await?;
    let reviewer = bot.identity(&event.user).await?;
    match eligibility(bot, stored, &requester, &reviewer) {
        Ok(()) => Ok(Some((requester, reviewer))),
        Err(why) => {
            bot.metrics.approval("ignored_not_eligible");
            bot.note(
                stored.reply_to.as_ref(),
                &format!("{what} does not count: {why}."),
            )
            .await;
            Ok(None)
        }
    }
}

async fn approve(
    bot: &Bot,
    stored: &StoredRequest,
    event: &ReactionEvent,
    who: &str,
) -> Result<(), FlowError> {
    let store = &bot.store;
    if event.user == stored.requester {
        bot.metrics.approval("ignored_self");
        bot.note(
            stored.reply_to.as_ref(),
            &format!(
                "{who}, your own approval does not count: someone else has to review this request."
            ),
        )
        .await;
        return Ok(());
    }
    let Some((requester, reviewer)) =
        counting_reviewer(bot, stored, event, &format!("The approval of {who}")).await?
    else {
        return Ok(());
    };
    if completes_quorum(bot, stored, &requester, reviewer).await? {
        return Ok(());
    }
    match requests::approve(store, &stored.id, &event.user).await? {
        ApprovalChange::Counted => {
            bot.metrics.approval("counted");
            check_quorum(bot, stored, &requester, Some(who)).await
        }
        // Counted before (this event handled again after a failure): finish the quorum check
        // that may not have run, without a second note.
        ApprovalChange::AlreadyCounted => check_quorum(bot, stored, &requester, None).await,
        ApprovalChange::NotPending => Ok(()),
    }
}

/// When this approval completes the quorum, writes it and the job in one transaction
/// ([`requests::approve_and_queue`]), publishes the job and says so: true. False when it does
/// not complete the quorum, or the approvals changed meanwhile (then the caller records the
/// approval alone and checks the quorum again, so concurrent approvals never stall).
async fn completes_quorum(
    bot: &Bot,
    stored: &StoredRequest,
    requester: &Identity,
    reviewer: Identity,
) -> Result<bool, FlowError> {
    let store = &bot.store;
    let active = requests::active_approvers(store, &stored.id).await?;
    let principal = reviewer.principal.to_string();
    if active.contains(&principal) {
        return Ok(false);
    }
    let mut identities = bot.identities(&active).await?;
    identities.push(reviewer);
    let Some(requirements) = requirements_of(stored.decision.as_ref()) else {
        return Ok(false);
    };
    let status = bot
        .policy
        .check_approvals(&requirements, requester, &identities);
    if !status.satisfied || requirements.is_empty() {
        return Ok(false);
    }
    let counted = counted_approvers(&identities, &status);
    let (job, signed) = signed_job(bot, stored, &counted);
    let outcome = requests::approve_and_queue(
        store,
        &principal,
        &active,
        &signed,
        &job,
        stored.reply_to.as_ref(),
        &bot.name,
    )
    .await?;
    if outcome == ApproveAndQueue::Changed {
        return Ok(false);
    }
    bot.metrics.approval("counted");
    publish(bot, &job, &signed).await?;
    announce_queued(bot, stored, &counted).await?;
    Ok(true)
}

fn counted_approvers(identities: &[Identity], status: &QuorumStatus) -> Vec<String> {
    identities
        .iter()
        .filter(|i| !status.ignored.iter().any(|g| g.approver == i.principal))
        .map(|i| i.principal.to_string())
        .collect()
}

async fn announce_queued(
    bot: &Bot,
    stored: &StoredRequest,
    counted: &[String],
) -> Result<(), FlowError> {
    let platform = stored_platform(stored);
    let names: Vec<String> = counted.iter().map(|p| bot.mention(&platform, p)).collect();
    card::refresh(bot, &stored.id).await?;
    bot.note(
        stored.reply_to.as_ref(),
        &format!(
            "Approved by {}. Queued for the executor; the result will appear here.",
            names.join(" and ")
        ),
    )
    .await;
    Ok(())
}

/// Queues the request when its active approvals meet every requirement; otherwise reports the
/// progress.
async fn check_quorum(
    bot: &Bot,
    stored: &StoredRequest,
    requester: &Identity,
    new_approver: Option<&str>,
) -> Result<(), FlowError> {
    let store = &bot.store;
    let approvers = requests::active_approvers(store, &stored.id).await?;
    let identities = bot.identities(&approvers).await?;
    let requirements = requirements_of(stored.decision.as_ref()).unwrap_or_default();
    let status = bot
        .policy
        .check_approvals(&requirements, requester, &identities);
    // Fail closed: a request whose requirements did not read back is never satisfied.
    let satisfied = status.satisfied && !requirements.is_empty();
    if satisfied {
        let counted = counted_approvers(&identities, &status);
        if queue_job(
            bot,
            stored,
            RequestState::Pending,
            &counted,
            stored.reply_to.as_ref(),
        )
        .await?
        {
            announce_queued(bot, stored, &counted).await?;
        }
        return Ok(());
    }
    card::refresh(bot, &stored.id).await?;
    if let Some(who) = new_approver {
        let missing = status.missing();
        let still = if missing.is_empty() {
            String::new()
        } else {
            format!(" Still needed: {}.", missing.join("; "))
        };
        bot.note(stored.reply_to.as_ref(), &format!("{who} approved.{still}"))
            .await;
    }
    Ok(())
}

async fn reject(
    bot: &Bot,
    stored: &StoredRequest,
    event: &ReactionEvent,
    who: &str,
) -> Result<(), FlowError> {
    let store = &bot.store;
    if event.user == stored.requester {
        if requests::transition(
            store,
            &stored.id,
            RequestState::Pending,
            RequestState::Cancelled,
            &event.user,
            &["cancelled by the requester's reaction".to_string()],
        )
        .await?
        {
            card::refresh_with(bot, &stored.id, Some(format!("Cancelled by {who}."))).await?;
            bot.note(
                stored.reply_to.as_ref(),
                &format!("{who} cancelled the request. It will not run."),
            )
            .await;
        }
        return Ok(());
    }
    if counting_reviewer(bot, stored, event, &format!("The rejection by {who}"))
        .await?
        .is_none()
    {
        return Ok(());
    }
    if requests::transition(
        store,
        &stored.id,
        RequestState::Pending,
        RequestState::Rejected,
        &event.user,
        &[format!("rejected by {}", event.user)],
    )
    .await?
    {
        bot.metrics.approval("rejected");
        card::refresh_with(bot, &stored.id, Some(format!("Rejected by {who}."))).await?;
        bot.note(
            stored.reply_to.as_ref(),
            &format!("{who} rejected the request. It will not run."),
        )
        .await;
    }
    Ok(())
}

fn stored_platform(stored: &StoredRequest) -> String {
    stored
        .reply_to
        .as_ref()
        .map(|r| r.platform.clone())
        .unwrap_or_default()
}
