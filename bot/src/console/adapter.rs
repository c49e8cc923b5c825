//! [`ConsoleAdapter`]: the flow's [`ChatAdapter`] (and the executor's [`ChatPoster`]) on the
//! console's [`ConsoleHub`].

use std::sync::Arc;

use countersign_control::chat::{
    CardState, ChatError, ChatPoster, PostFuture, ReplyTo, RequestCard, ThreadMessage,
};
use countersign_shared::policy::Principal;

use super::hub::{ConsoleHub, HubError, BOT_AUTHOR};
use crate::chat::{ChatAdapter, ChatFuture, Origin};

/// The platform name of the console's principals and threads.
pub const PLATFORM: &str = "console";

/// The console adapter: posts cards, thread messages and private answers into the hub.
#[derive(Clone, Debug)]
pub struct ConsoleAdapter {
    hub: Arc<ConsoleHub>,
}

impl ConsoleAdapter {
    /// An adapter on `hub`.
    pub fn new(hub: Arc<ConsoleHub>) -> Arc<ConsoleAdapter> {
        Arc::new(ConsoleAdapter { hub })
    }

    /// The hub it posts into.
    pub fn hub(&self) -> &Arc<ConsoleHub> {
        &self.hub
    }
}

fn chat_error(error: HubError) -> ChatError {
    ChatError::Failed(error.to_string())
}

impl ChatPoster for ConsoleAdapter {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            if to.platform != PLATFORM {
                return Err(ChatError::UnknownPlatform(to.platform.clone()));
            }
            self.hub
                .post(
                    &to.channel,
                    Some(&to.thread),
                    BOT_AUTHOR,
                    &message.text,
                    None,
                    None,
                )
                .map(|_| ())
                .map_err(chat_error)
        })
    }
}

impl ChatAdapter for ConsoleAdapter {
    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn post_card<'a>(&'a self, channel: &'a str, card: &'a RequestCard) -> ChatFuture<'a, ReplyTo> {
        Box::pin(async move {
            let id = self
                .hub
                .post(
                    channel,
                    None,
                    BOT_AUTHOR,
                    &card.render_text(),
                    Some(card.clone()),
                    None,
                )
                .map_err(chat_error)?;
            if card.state == CardState::AwaitingApproval {
                // Seed the reactions so reviewers can click them, as on Slack and Discord.
                for name in [&card.approve_reaction, &card.reject_reaction] {
                    if let Err(error) = self.hub.react(&id, BOT_AUTHOR, name, true) {
                        tracing::warn!(%error, "could not seed a reaction on a request");
                    }
                }
            }
            Ok(ReplyTo {
                platform: PLATFORM.into(),
                channel: channel.to_string(),
                thread: id,
            })
        })
    }

    fn update_card<'a>(&'a self, root: &'a ReplyTo, card: &'a RequestCard) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            self.hub
                .update_card(&root.thread, &card.render_text(), card.clone())
                .map_err(chat_error)
        })
    }

    fn reply_private<'a>(&'a self, origin: &'a Origin, text: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            self.hub
                .post(
                    &origin.channel,
                    None,
                    BOT_AUTHOR,
                    text,
                    None,
                    Some(&origin.user),
                )
                .map(|_| ())
                .map_err(chat_error)
        })
    }

    fn groups_of<'a>(
        &'a self,
        _user: &'a Principal,
        _groups: &'a [Principal],
    ) -> ChatFuture<'a, Vec<Principal>> {
        // The console has no groups: its people hold roles as themselves (`console:bob`).
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn mention(&self, principal: &str) -> String {
        match principal.strip_prefix("console:") {
            Some(name) if self.hub.knows(principal) => format!("@{name}"),
            _ => principal.to_string(),
        }
    }
}
