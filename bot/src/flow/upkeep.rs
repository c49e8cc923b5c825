//! The upkeep loop: what happens with nobody typing.
//!
//! Every [`super::BotConfig::upkeep_every`]:
//! - pending requests past their expiry are expired (once, across replicas), with a note and
//!   the card updated;
//! - cards that fell behind their request or job (the executor started or finished the job)
//!   are updated;
//! - requests whose root message a dead replica never posted get it;
//! - inbox events a dead replica never finished are handled (given up after a few attempts,
//!   loudly).

use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_control::{inbox, requests};
use tokio_util::sync::CancellationToken;

use super::{card, query, Bot, FlowError};
use crate::chat::Inbound;

/// Attempts after which an inbox event that keeps failing is given up.
const MAX_ATTEMPTS: i32 = 5;

/// Runs the loop until `cancel` fires.
pub async fn run(bot: Arc<Bot>, cancel: CancellationToken) {
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(bot.config.upkeep_every) => {}
        }
        if let Err(error) = pass(&bot).await {
            bot.metrics.flow_error();
            tracing::warn!(%error, "upkeep pass failed; trying again next time");
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = Instant::now();
            match inbox::prune(&bot.store, Duration::from_secs(7 * 86_400)).await {
                Ok(pruned) => tracing::debug!(pruned, "pruned the inbox"),
                Err(error) => tracing::warn!(%error, "pruning the inbox failed"),
            }
        }
    }
}

/// One pass of the loop (public for tests that drive time themselves).
pub async fn pass(bot: &Arc<Bot>) -> Result<(), FlowError> {
    let store = &bot.store;
    for expired in requests::expire_due(store, &bot.name).await? {
        bot.metrics.expired();
        card::refresh_with(
            bot,
            &expired.id,
            Some("Expired: the approvals did not arrive in time.".into()),
        )
        .await?;
        bot.note(
            expired.reply_to.as_ref(),
            "This request expired before it was approved. It will not run; ask again with `/query` if it is still needed.",
        )
        .await;
    }
    for id in requests::stale_cards(store, 100).await? {
        if let Err(error) = card::refresh(bot, &id).await {
            tracing::warn!(%error, request = %id, "could not update a card");
        }
    }
    for id in requests::missing_roots(store, bot.config.takeover_after, 20).await? {
        if let Some(stored) = requests::load(store, &id).await? {
            tracing::info!(request = %id, "posting a root message another replica did not post");
            query::resume(bot, &stored).await?;
        }
    }
    for event in inbox::reclaim(store, bot.config.takeover_after, 20).await? {
        if event.attempts > MAX_ATTEMPTS {
            bot.metrics.flow_error();
            tracing::error!(key = %event.key, attempts = event.attempts, "an event keeps failing; giving up on it");
            inbox::abandon(store, &event.key).await?;
            continue;
        }
        match serde_json::from_value::<Inbound>(event.payload) {
            Ok(inbound) => bot.handle_and_finish(&event.key, inbound).await,
            Err(error) => {
                tracing::error!(%error, key = %event.key, "an inbox event does not read back; giving up on it");
                inbox::abandon(store, &event.key).await?;
            }
        }
    }
    Ok(())
}
