//! [`SlackAdapter`]: the flow's [`ChatAdapter`] on Slack's Web API.

use std::sync::Arc;

use countersign_control::chat::{
    CardState, ChatError, ChatPoster, PostFuture, ReplyTo, RequestCard, ThreadMessage,
};
use countersign_shared::policy::{Principal, PrincipalKind};
use countersign_slack::{SlackApi, SlackError};

use crate::chat::{ChatAdapter, ChatFuture, Origin};

/// The Slack adapter.
#[derive(Clone)]
pub struct SlackAdapter {
    api: SlackApi,
}

impl SlackAdapter {
    /// An adapter on a Web API client.
    pub fn new(api: SlackApi) -> Arc<SlackAdapter> {
        Arc::new(SlackAdapter { api })
    }

    /// The Web API client.
    pub fn api(&self) -> &SlackApi {
        &self.api
    }
}

fn chat_error(error: SlackError) -> ChatError {
    // Slack's error code (`channel_not_found`, `not_in_channel`) is useful and safe to show in
    // logs; tokens never appear in SlackError's text.
    ChatError::Failed(error.to_string())
}

impl ChatPoster for SlackAdapter {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        self.api.post(to, message)
    }
}

impl ChatAdapter for SlackAdapter {
    fn platform(&self) -> &'static str {
        "slack"
    }

    fn post_card<'a>(&'a self, channel: &'a str, card: &'a RequestCard) -> ChatFuture<'a, ReplyTo> {
        Box::pin(async move {
            let posted = self
                .api
                .post_card(channel, card)
                .await
                .map_err(chat_error)?;
            if card.state == CardState::AwaitingApproval {
                // Seed the reactions so reviewers can click them.
                for name in [&card.approve_reaction, &card.reject_reaction] {
                    if let Err(error) = self
                        .api
                        .add_reaction(&posted.channel, &posted.ts, name)
                        .await
                    {
                        tracing::warn!(%error, "could not seed a reaction on a request");
                    }
                }
            }
            Ok(ReplyTo {
                platform: "slack".into(),
                channel: posted.channel,
                thread: posted.ts,
            })
        })
    }

    fn update_card<'a>(&'a self, root: &'a ReplyTo, card: &'a RequestCard) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            self.api
                .update_card(&root.channel, &root.thread, card)
                .await
                .map_err(chat_error)
        })
    }

    fn reply_private<'a>(&'a self, origin: &'a Origin, text: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            match &origin.respond {
                Some(response_url) => self.api.respond(response_url, text).await,
                None => {
                    let user = origin.user.strip_prefix("slack:").unwrap_or(&origin.user);
                    self.api.post_ephemeral(&origin.channel, user, text).await
                }
            }
            .map_err(chat_error)
        })
    }

    fn groups_of<'a>(
        &'a self,
        user: &'a Principal,
        groups: &'a [Principal],
    ) -> ChatFuture<'a, Vec<Principal>> {
        Box::pin(async move {
            let mut member_of = Vec::new();
            for group in groups {
                if group.kind() != PrincipalKind::SlackGroup {
                    continue;
                }
                let members = self
                    .api
                    .user_group_members(group.id())
                    .await
                    .map_err(chat_error)?;
                if members.iter().any(|m| m == user.id()) {
                    member_of.push(group.clone());
                }
            }
            Ok(member_of)
        })
    }
}
