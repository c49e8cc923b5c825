//! The serenity gateway client: `/query` interactions and reactions in, to the flow.
//!
//! Each interaction is deferred (an ephemeral "thinking" answer) before anything else, well
//! inside Discord's three seconds; then it is stored in the inbox and handled in the
//! background, and the private answer edits the deferred response. Reactions arrive through
//! the `GUILD_MESSAGE_REACTIONS` intent.
//!
//! Discord delivers each event to the one gateway session of its shard, and gives reactions no
//! event id: run one bot replica per shard. Commands carry their interaction id, so a command
//! is still handled once whatever happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use countersign_discord::DiscordApi;
use serenity::all::{
    ClientBuilder, Context, EventHandler, GatewayIntents, GuildId, Interaction, Reaction,
    ReactionType, Ready, ResumedEvent, ShardManager,
};
use serenity::async_trait;

use super::adapter::respond_handle;
use super::{command, reaction_name};
use crate::chat::{CommandEvent, Inbound, Origin, ReactionEvent};
use crate::flow::Bot;

/// What the requester sees when the bot cannot take the command.
const UNAVAILABLE: &str =
    "Countersign cannot take requests right now (its database is unreachable). Nothing was run; try again in a minute.";

struct Handler {
    bot: Arc<Bot>,
    api: DiscordApi,
    guilds: Vec<GuildId>,
    /// Makes every reaction delivery's inbox key unique within this process.
    deliveries: AtomicU64,
    started: u64,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = self.guilds.len(), "connected to the Discord gateway");
        for guild in &self.guilds {
            if let Err(error) = guild
                .set_commands(&ctx.http, vec![command::definition()])
                .await
            {
                tracing::error!(%error, %guild, "could not register /query in a guild");
            }
        }
    }

    async fn resume(&self, _ctx: Context, _resumed: ResumedEvent) {
        tracing::info!("resumed the Discord gateway session");
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let Interaction::Command(command) = interaction else {
            return;
        };
        if command.data.name != command::NAME {
            return;
        }
        let started = std::time::Instant::now();
        if let Err(error) = self.api.defer(command.id, &command.token, true).await {
            tracing::warn!(%error, "could not defer an interaction");
        }
        let event = Inbound::Command(CommandEvent {
            key: command.id.to_string(),
            origin: Origin {
                platform: "discord".into(),
                channel: command.channel_id.to_string(),
                user: format!("discord:{}", command.user.id),
                respond: Some(respond_handle(command.application_id, &command.token)),
            },
            text: command::text_of(&command.data.options),
        });
        if let Err(error) = self.bot.receive(event).await {
            tracing::error!(%error, "could not store a command");
            if let Err(error) = self
                .api
                .edit_original(command.application_id, &command.token, UNAVAILABLE)
                .await
            {
                tracing::warn!(%error, "could not tell the requester");
            }
        }
        self.bot.metrics().acked(started.elapsed());
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        self.reaction(reaction, true).await;
    }

    async fn reaction_remove(&self, _ctx: Context, reaction: Reaction) {
        self.reaction(reaction, false).await;
    }
}

impl Handler {
    async fn reaction(&self, reaction: Reaction, added: bool) {
        let (Some(user), ReactionType::Unicode(emoji)) = (reaction.user_id, &reaction.emoji) else {
            return;
        };
        let delivery = self.deliveries.fetch_add(1, Ordering::Relaxed);
        let event = Inbound::Reaction(ReactionEvent {
            key: format!(
                "{}-{}-{delivery}-{}-{}",
                self.started, reaction.message_id, user, added
            ),
            platform: "discord".into(),
            user: format!("discord:{user}"),
            channel: reaction.channel_id.to_string(),
            message: reaction.message_id.to_string(),
            reaction: reaction_name(emoji),
            added,
        });
        if let Err(error) = self.bot.receive(event).await {
            self.bot.metrics().flow_error_external();
            tracing::error!(%error, "could not store a reaction; it is lost");
        }
    }
}

/// A running gateway connection.
pub struct DiscordGateway {
    shards: Arc<ShardManager>,
    task: tokio::task::JoinHandle<()>,
}

impl DiscordGateway {
    /// Connects to the gateway with `api`'s token and settings, registers `/query` in `guilds`
    /// and hands interactions and reactions to `bot`.
    pub async fn start(
        bot: Arc<Bot>,
        api: DiscordApi,
        guilds: Vec<GuildId>,
    ) -> anyhow::Result<DiscordGateway> {
        let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS;
        let handler = Handler {
            bot,
            api: api.clone(),
            guilds,
            deliveries: AtomicU64::new(0),
            started: countersign_control::now_ms(),
        };
        let mut client = ClientBuilder::new_with_http(api.gateway_http(), intents)
            .event_handler(handler)
            .await
            .map_err(|error| anyhow::anyhow!("setting up the Discord gateway client: {error}"))?;
        let shards = client.shard_manager.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = client.start().await {
                tracing::error!(%error, "the Discord gateway client stopped");
            }
        });
        Ok(DiscordGateway { shards, task })
    }

    /// Closes the connection and waits for the client to stop.
    pub async fn shutdown(self) {
        self.shards.shutdown_all().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}
