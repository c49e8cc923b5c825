//! `/query cancel <id>`: the requester withdraws a request that waits for review.

use countersign_control::requests::{self, RequestState};

use super::{card, Bot, FlowError};
use crate::chat::Origin;

/// Cancels the request if `origin`'s user asked for it and it is still pending; returns what
/// the user is told.
pub async fn run(bot: &Bot, origin: &Origin, request_id: &str) -> Result<String, FlowError> {
    let store = &bot.store;
    let Some(stored) = requests::load(store, request_id).await? else {
        return Ok(format!("There is no request `{request_id}`."));
    };
    if stored.requester != origin.user {
        return Ok(format!(
            "Request `{request_id}` is not yours: only its requester can cancel it (reviewers reject it with :{}:).",
            bot.config.reject_reactions.first().map_or("x", String::as_str)
        ));
    }
    if stored.state != RequestState::Pending {
        let now = super::card::shown_state(&stored);
        return Ok(format!(
            "Request `{request_id}` is {now}; only a request waiting for review can be cancelled."
        ));
    }
    if !requests::transition(
        store,
        request_id,
        RequestState::Pending,
        RequestState::Cancelled,
        &origin.user,
        &["cancelled by the requester".to_string()],
    )
    .await?
    {
        let now = requests::state_of(store, request_id)
            .await?
            .map_or("gone", RequestState::as_str);
        return Ok(format!(
            "Request `{request_id}` changed meanwhile (now {now}); nothing was cancelled."
        ));
    }
    let thread = match stored.reply_to.clone() {
        Some(thread) => Some(thread),
        None => super::card::wait_for_thread(bot, request_id).await?,
    };
    let platform = thread
        .as_ref()
        .map_or(origin.platform.as_str(), |r| r.platform.as_str());
    let who = bot.mention(platform, &origin.user);
    card::refresh_with(bot, request_id, Some(format!("Cancelled by {who}."))).await?;
    bot.note(
        thread.as_ref(),
        &format!("{who} cancelled the request. It will not run."),
    )
    .await;
    Ok(format!("Cancelled request `{request_id}`."))
}
