//! [`DiscordAdapter`]: the flow's [`ChatAdapter`] on Discord's REST API.
//!
//! - A request's root message is the card, with a thread started from it. The request's
//!   `ReplyTo` is `{platform: "discord", channel: <parent channel>, thread: <thread id>}`; the
//!   thread's id is the card's message id, which is also what reactions on the card name.
//! - Private answers edit the deferred interaction response (ephemeral), so `origin.respond`
//!   holds `<application id>:<interaction token>`.
//! - Groups are the guild's roles (`discord-role:<id>`), looked up per member and cached.

use std::sync::Arc;

use countersign_control::chat::{
    CardState, ChatError, ChatPoster, PostFuture, ReplyTo, RequestCard, ThreadMessage,
};
use countersign_discord::{parse_id, DiscordApi, DiscordError};
use countersign_shared::policy::{Principal, PrincipalKind};
use serenity::all::{ApplicationId, ChannelId, GuildId, MessageId, UserId};

use super::reaction_unicode;
use crate::chat::{ChatAdapter, ChatFuture, Origin};

/// The Discord adapter.
#[derive(Clone)]
pub struct DiscordAdapter {
    api: DiscordApi,
    guild: GuildId,
}

impl DiscordAdapter {
    /// An adapter on a REST client, for the guild whose roles are the policy's groups.
    pub fn new(api: DiscordApi, guild: GuildId) -> Arc<DiscordAdapter> {
        Arc::new(DiscordAdapter { api, guild })
    }

    /// The REST client.
    pub fn api(&self) -> &DiscordApi {
        &self.api
    }
}

fn chat_error(error: DiscordError) -> ChatError {
    ChatError::Failed(error.to_string())
}

fn id<T: From<std::num::NonZeroU64>>(text: &str) -> Result<T, ChatError> {
    parse_id(text).map_err(chat_error)
}

/// `<application id>:<interaction token>`, what a Discord origin's `respond` holds.
pub fn respond_handle(application: ApplicationId, token: &str) -> String {
    format!("{application}:{token}")
}

impl ChatPoster for DiscordAdapter {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        self.api.post(to, message)
    }
}

impl ChatAdapter for DiscordAdapter {
    fn platform(&self) -> &'static str {
        "discord"
    }

    fn post_card<'a>(&'a self, channel: &'a str, card: &'a RequestCard) -> ChatFuture<'a, ReplyTo> {
        Box::pin(async move {
            let channel: ChannelId = id(channel)?;
            let mut shown = card.clone();
            shown.approve_reaction = reaction_unicode(&card.approve_reaction);
            shown.reject_reaction = reaction_unicode(&card.reject_reaction);
            let posted = self
                .api
                .post_card(channel, &shown)
                .await
                .map_err(chat_error)?;
            if card.state == CardState::AwaitingApproval {
                for emoji in [&shown.approve_reaction, &shown.reject_reaction] {
                    if let Err(error) = self
                        .api
                        .add_reaction(posted.channel_id, posted.message_id, emoji)
                        .await
                    {
                        tracing::warn!(%error, "could not seed a reaction on a request");
                    }
                }
            }
            Ok(posted.reply_to())
        })
    }

    fn update_card<'a>(&'a self, root: &'a ReplyTo, card: &'a RequestCard) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let channel: ChannelId = id(&root.channel)?;
            let message: MessageId = id(&root.thread)?;
            let mut shown = card.clone();
            shown.approve_reaction = reaction_unicode(&card.approve_reaction);
            shown.reject_reaction = reaction_unicode(&card.reject_reaction);
            self.api
                .update_card(channel, message, &shown)
                .await
                .map_err(chat_error)
        })
    }

    fn reply_private<'a>(&'a self, origin: &'a Origin, text: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let Some((application, token)) =
                origin.respond.as_deref().and_then(|r| r.split_once(':'))
            else {
                return Err(ChatError::Failed(
                    "no interaction to answer on Discord".into(),
                ));
            };
            let application: ApplicationId = id(application)?;
            self.api
                .edit_original(application, token, text)
                .await
                .map_err(chat_error)
        })
    }

    fn groups_of<'a>(
        &'a self,
        user: &'a Principal,
        groups: &'a [Principal],
    ) -> ChatFuture<'a, Vec<Principal>> {
        Box::pin(async move {
            let user_id: UserId = id(user.id())?;
            let roles = match self.api.member_roles(self.guild, user_id).await {
                Ok(roles) => roles,
                // Not a member of the guild: no roles, so no groups.
                Err(error) if error.code() == Some(countersign_discord::error::UNKNOWN_MEMBER) => {
                    Vec::new()
                }
                Err(error) => return Err(chat_error(error)),
            };
            Ok(groups
                .iter()
                .filter(|g| g.kind() == PrincipalKind::DiscordRole)
                .filter(|g| roles.iter().any(|r| r == g.id()))
                .cloned()
                .collect())
        })
    }
}
