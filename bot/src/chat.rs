//! What the flow needs from a chat platform ([`ChatAdapter`]), and the platform-independent
//! events adapters hand to the flow ([`Inbound`]).

use countersign_control::chat::{ChatError, ChatPoster, ReplyTo, RequestCard};
use countersign_shared::policy::Principal;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A future returned by [`ChatAdapter`] methods.
pub type ChatFuture<'a, T> = BoxFuture<'a, Result<T, ChatError>>;

/// One chat platform, as the flow uses it. Posting into a thread is [`ChatPoster::post`].
pub trait ChatAdapter: ChatPoster {
    /// `slack`, `discord` or `console`: the platform of the principals and threads it serves.
    fn platform(&self) -> &'static str;

    /// Posts a request's root message in `channel`; the message becomes the request's thread.
    fn post_card<'a>(&'a self, channel: &'a str, card: &'a RequestCard) -> ChatFuture<'a, ReplyTo>;

    /// Replaces a root message's content.
    fn update_card<'a>(&'a self, root: &'a ReplyTo, card: &'a RequestCard) -> ChatFuture<'a, ()>;

    /// Answers the person who typed a command, visible to them only where the platform allows.
    fn reply_private<'a>(&'a self, origin: &'a Origin, text: &'a str) -> ChatFuture<'a, ()>;

    /// Which of `groups` (principals of this platform's group kind) `user` belongs to.
    fn groups_of<'a>(
        &'a self,
        user: &'a Principal,
        groups: &'a [Principal],
    ) -> ChatFuture<'a, Vec<Principal>>;

    /// How a principal is written in notes and cards. The default keeps the principal
    /// (`slack:U1`): renderers such as Slack's turn principals of their platform into mentions
    /// while escaping everything else, so user text can never forge one.
    fn mention(&self, principal: &str) -> String {
        principal.to_string()
    }
}

/// Where a command came from and how to answer its author privately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The adapter's platform (`slack`, `discord`, `console`, `automation`).
    pub platform: String,
    /// The channel the command was typed in (or the automation's review channel).
    pub channel: String,
    /// Who typed it (a principal).
    pub user: String,
    /// How to answer privately: Slack's `response_url`, Discord's interaction token, ...
    pub respond: Option<String>,
}

/// A `/query` command as an adapter received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEvent {
    /// The platform's unique id of this invocation (Slack's trigger id, Discord's interaction
    /// id): a second delivery with the same key is dropped, and the request id derives from it.
    pub key: String,
    /// Who, where, and how to answer.
    pub origin: Origin,
    /// What followed `/query`.
    pub text: String,
}

/// A reaction added to or removed from a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionEvent {
    /// The platform's unique id of this event (Slack's event id, or a digest of the event for
    /// platforms without one).
    pub key: String,
    /// The platform.
    pub platform: String,
    /// Who reacted (a principal).
    pub user: String,
    /// The channel of the message.
    pub channel: String,
    /// The message reacted to (Slack `ts`, Discord message id).
    pub message: String,
    /// The reaction's name (`white_check_mark`), without colons.
    pub reaction: String,
    /// Added (true) or removed (false).
    pub added: bool,
}

/// Anything an adapter hands to the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inbound {
    /// A `/query` command.
    Command(CommandEvent),
    /// A reaction added or removed.
    Reaction(ReactionEvent),
}

impl Inbound {
    /// The inbox key: unique per event, the same for every delivery of it.
    pub fn key(&self) -> String {
        match self {
            Inbound::Command(command) => {
                format!("{}:command:{}", command.origin.platform, command.key)
            }
            Inbound::Reaction(reaction) => format!("{}:event:{}", reaction.platform, reaction.key),
        }
    }

    /// `command` or `reaction`.
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Command(_) => "command",
            Inbound::Reaction(_) => "reaction",
        }
    }
}
