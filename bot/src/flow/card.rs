//! A request's root message ("card"): built from what is stored, refreshed after every change.
//!
//! The card kept in `cs_requests.card` holds what does not change (the SQL, the reasons, the
//! estimate) and the last state detail; [`current`] fills in the state, the approvers and the
//! requirements from the request and its job as they are now. [`refresh`] updates the posted
//! message and records what it shows, so the upkeep loop can tell which cards fell behind
//! (a job the executor finished).

use countersign_control::chat::{CardState, RequestCard};
use countersign_control::requests::{self, RequestState, StoredRequest};
use countersign_shared::summary::ResultSummary;

use super::query::requirements_of;
use super::{Bot, FlowError};

/// The state a stored request's card shows, as stored in `card_shown`.
pub fn shown_state(stored: &StoredRequest) -> String {
    match (stored.state, &stored.job_state) {
        (RequestState::Queued, Some(job)) => job.clone(),
        (state, _) => state.as_str().to_string(),
    }
}

fn card_state(stored: &StoredRequest) -> CardState {
    match stored.state {
        RequestState::Received | RequestState::Queued => stored
            .job_state
            .as_deref()
            .and_then(CardState::from_job_state)
            .unwrap_or(CardState::Queued),
        RequestState::Pending => CardState::AwaitingApproval,
        RequestState::Rejected => CardState::Rejected,
        RequestState::Expired => CardState::Expired,
        RequestState::Cancelled => CardState::Cancelled,
        // A denied request has no card; show it as refused if one is ever asked for.
        RequestState::Denied => CardState::Refused,
    }
}

/// The card as it should look now.
pub async fn current(bot: &Bot, stored: &StoredRequest) -> Result<RequestCard, FlowError> {
    let mut card: RequestCard = stored
        .card
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| FlowError::Corrupt(format!("request {} has no card", stored.id)))?;
    card.state = card_state(stored);
    let approvers = requests::active_approvers(&bot.store, &stored.id).await?;
    match card.state {
        CardState::AwaitingApproval => {
            let requirements = requirements_of(stored.decision.as_ref()).unwrap_or_default();
            let requester = bot.identity(&stored.requester).await?;
            let identities = bot.identities(&approvers).await?;
            let status = bot
                .policy
                .check_approvals(&requirements, &requester, &identities);
            for (shown, status) in card.requirements.iter_mut().zip(&status.requirements) {
                shown.satisfied = status.satisfied;
            }
        }
        CardState::Rejected | CardState::Expired | CardState::Cancelled => {}
        _ => {
            // Queued or beyond: whatever was required was met when it was queued.
            for requirement in &mut card.requirements {
                requirement.satisfied = true;
            }
        }
    }
    card.approvers = approvers;
    if let Some(summary) = stored
        .job_summary
        .clone()
        .and_then(|v| serde_json::from_value::<ResultSummary>(v).ok())
    {
        let mut detail = summary.headline();
        if let Some(reason) = &summary.reason {
            detail.push_str(" — ");
            detail.push_str(reason);
        }
        card.state_detail = Some(detail);
    }
    Ok(card)
}

/// The request's thread, waiting a few seconds for a root message being posted right now (a
/// request cancelled the moment it appeared): its note belongs in that thread.
pub async fn wait_for_thread(
    bot: &Bot,
    request_id: &str,
) -> Result<Option<countersign_control::chat::ReplyTo>, FlowError> {
    let store = &bot.store;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let in_flight =
            requests::roots_in_flight(store, std::time::Duration::from_secs(10)).await?;
        let thread = requests::load(store, request_id)
            .await?
            .and_then(|stored| stored.reply_to);
        if thread.is_some() || !in_flight || tokio::time::Instant::now() >= deadline {
            return Ok(thread);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Updates a request's posted card to its current state and records what it shows. A request
/// without a root message is left alone; `detail` (who rejected, ...) is kept on the card from
/// now on.
pub async fn refresh(bot: &Bot, request_id: &str) -> Result<(), FlowError> {
    refresh_with(bot, request_id, None).await
}

/// [`refresh`] with a new state detail line.
pub async fn refresh_with(
    bot: &Bot,
    request_id: &str,
    detail: Option<String>,
) -> Result<(), FlowError> {
    let store = &bot.store;
    let Some(stored) = requests::load(store, request_id).await? else {
        return Ok(());
    };
    let mut card = current(bot, &stored).await?;
    if detail.is_some() {
        card.state_detail = detail;
    }
    let card_json = serde_json::to_value(&card).map_err(|e| FlowError::Corrupt(e.to_string()))?;
    let Some(root) = &stored.reply_to else {
        requests::set_card(store, request_id, &card_json, "", false).await?;
        return Ok(());
    };
    bot.adapter(&root.platform)?
        .update_card(root, &card)
        .await?;
    requests::set_card(
        store,
        request_id,
        &card_json,
        &shown_state(&stored),
        card.state.is_final(),
    )
    .await?;
    Ok(())
}
