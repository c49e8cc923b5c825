//! Slack's payloads (as slack-morphism reads them) turned into the flow's events.

use slack_morphism::prelude::{
    SlackCommandEvent, SlackEventCallbackBody, SlackPushEventCallback, SlackReactionsItem,
};

use crate::chat::{CommandEvent, Inbound, Origin, ReactionEvent};

/// A slash command as the flow's event.
pub fn command(event: &SlackCommandEvent) -> Inbound {
    Inbound::Command(CommandEvent {
        key: event.trigger_id.to_string(),
        origin: Origin {
            platform: "slack".into(),
            channel: event.channel_id.to_string(),
            user: format!("slack:{}", event.user_id),
            respond: Some(event.response_url.0.to_string()),
        },
        text: event.text.clone().unwrap_or_default(),
    })
}

/// What an Events API callback means to the flow.
#[derive(Debug)]
pub enum Pushed {
    /// A reaction on a message.
    Event(Inbound),
    /// An event the bot does not act on (another reaction target, another event type).
    Ignored,
    /// An event slack-morphism could not read (a shape it does not model): logged and counted,
    /// never dropped silently.
    Unreadable(String),
}

/// An Events API callback as the flow's event.
pub fn push(callback: &SlackPushEventCallback) -> Pushed {
    let (user, reaction, item, added) = match &callback.event {
        SlackEventCallbackBody::ReactionAdded(e) => (&e.user, &e.reaction, &e.item, true),
        SlackEventCallbackBody::ReactionRemoved(e) => (&e.user, &e.reaction, &e.item, false),
        SlackEventCallbackBody::Unknown(_) => {
            return Pushed::Unreadable(format!(
                "event {} of an unreadable shape",
                callback.event_id
            ))
        }
        _ => return Pushed::Ignored,
    };
    let SlackReactionsItem::Message(message) = item else {
        return Pushed::Ignored;
    };
    let Some(channel) = &message.origin.channel else {
        return Pushed::Unreadable(format!(
            "reaction event {} without a channel",
            callback.event_id
        ));
    };
    Pushed::Event(Inbound::Reaction(ReactionEvent {
        key: callback.event_id.to_string(),
        platform: "slack".into(),
        user: format!("slack:{user}"),
        channel: channel.to_string(),
        message: message.origin.ts.to_string(),
        reaction: reaction.to_string(),
        added,
    }))
}
