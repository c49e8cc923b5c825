//! Socket Mode: the bot opens a websocket to Slack (no inbound URL), receives slash commands and
//! events as envelopes, and acknowledges each once its event is in the inbox.
//!
//! slack-morphism sends the acknowledgement when the callback returns, so the callback only
//! stores the event ([`Bot::receive`]) and returns; the work runs after, in the background.

use std::sync::Arc;
use std::time::Instant;

use countersign_slack::SlackHyperClient;
use slack_morphism::prelude::{
    SlackApiToken, SlackApiTokenValue, SlackClientEventsListenerEnvironment,
    SlackClientEventsUserState, SlackClientSocketModeConfig, SlackClientSocketModeListener,
    SlackCommandEvent, SlackCommandEventResponse, SlackMessageContent, SlackPushEventCallback,
    SlackSocketModeListenerCallbacks,
};

use super::convert::{self, Pushed};
use crate::flow::Bot;

type Connector = countersign_slack::SlackConnector;

/// A running Socket Mode connection.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<Connector>,
}

struct UserState {
    bot: Arc<Bot>,
}

async fn bot_of(states: &SlackClientEventsUserState) -> Option<Arc<Bot>> {
    let storage = states.read().await;
    storage
        .get_user_state::<UserState>()
        .map(|s| Arc::clone(&s.bot))
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<SlackCommandEventResponse, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let Some(bot) = bot_of(&states).await else {
        return Ok(SlackCommandEventResponse::new(SlackMessageContent::new()));
    };
    let reply = match bot.receive(convert::command(&event)).await {
        Ok(_) => SlackMessageContent::new(),
        Err(error) => {
            tracing::error!(%error, "could not store a command");
            SlackMessageContent::new().with_text(
                "Countersign cannot take requests right now (its database is unreachable). Nothing was run; try again in a minute.".into(),
            )
        }
    };
    bot.metrics().acked(started.elapsed());
    Ok(SlackCommandEventResponse::new(reply))
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let Some(bot) = bot_of(&states).await else {
        return Ok(());
    };
    match convert::push(&event) {
        Pushed::Event(inbound) => {
            if let Err(error) = bot.receive(inbound).await {
                // Not acknowledged (see `on_error`): Slack delivers it again.
                tracing::error!(%error, "could not store an event; leaving it unacknowledged");
                bot.metrics().flow_error_external();
                return Err(Box::new(NotStored));
            }
        }
        Pushed::Ignored => {}
        Pushed::Unreadable(what) => {
            bot.metrics().unknown_event();
            tracing::warn!("ignored {what}");
        }
    }
    bot.metrics().acked(started.elapsed());
    Ok(())
}

/// An event that could not be stored in the inbox.
#[derive(Debug, thiserror::Error)]
#[error("the event could not be stored")]
struct NotStored;

/// slack-morphism asks what to answer for a failed envelope: a 2xx status acknowledges it,
/// anything else leaves it unacknowledged so Slack delivers it again. Only an event the bot
/// could not store is left unacknowledged; a malformed frame would only come back malformed.
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    _states: SlackClientEventsUserState,
) -> http::StatusCode {
    if error.downcast_ref::<NotStored>().is_some() {
        return http::StatusCode::SERVICE_UNAVAILABLE;
    }
    tracing::warn!(%error, "Slack Socket Mode error");
    http::StatusCode::OK
}

impl SocketMode {
    /// Connects with the app-level token (`xapp-...`) and starts receiving. `connections` is
    /// how many websockets to keep open (Slack's default is 2, for smooth reconnects).
    pub async fn start(
        bot: Arc<Bot>,
        client: Arc<SlackHyperClient>,
        app_token: &str,
        connections: u32,
    ) -> anyhow::Result<SocketMode> {
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_push_events(on_push);
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client)
                .with_error_handler(on_error)
                .with_user_state(UserState { bot }),
        );
        let config = SlackClientSocketModeConfig::new().with_max_connections_count(connections);
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        let token = SlackApiToken::new(SlackApiTokenValue(app_token.to_string()));
        listener
            .listen_for(&token)
            .await
            .map_err(|error| anyhow::anyhow!("Slack Socket Mode could not connect: {error}"))?;
        listener.start().await;
        Ok(SocketMode { listener })
    }

    /// Closes the connections.
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}
