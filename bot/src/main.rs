//! `countersign-bot`: the chat side of Countersign. It decides requests against the policy,
//! runs the review in chat threads, signs approved jobs and hands them to the executors through
//! the outbox and Redis. It never holds database credentials.
//!
//! Secrets come only from the environment (or files named by `*_FILE` variables) and are never
//! logged: COUNTERSIGN_CONTROL_DATABASE_URL, COUNTERSIGN_REDIS_URL, COUNTERSIGN_SIGNING_KEY,
//! SLACK_BOT_TOKEN, SLACK_APP_TOKEN (Socket Mode), SLACK_SIGNING_SECRET (HTTP mode),
//! DISCORD_BOT_TOKEN (with `--discord-guilds`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use countersign_bot::automation::{self, Automation, ServiceTokens};
use countersign_bot::discord::adapter::DiscordAdapter;
use countersign_bot::discord::gateway::DiscordGateway;
use countersign_bot::http::{self, Health};
use countersign_bot::slack::adapter::SlackAdapter;
use countersign_bot::slack::events::SlackHttp;
use countersign_bot::slack::socket::SocketMode;
use countersign_bot::{Bot, BotConfig};
use countersign_control::queue::JobQueue;
use countersign_control::store::ControlStore;
use countersign_shared::job::JobSigner;
use countersign_shared::policy::Policy;
use countersign_slack::SlackApi;
use tokio_util::sync::CancellationToken;

/// How the bot hears from Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SlackMode {
    /// Socket Mode: the bot connects out; no inbound URL (needs SLACK_APP_TOKEN).
    Socket,
    /// The HTTP Events API: Slack posts to /slack/commands and /slack/events (needs
    /// SLACK_SIGNING_SECRET).
    Http,
    /// No Slack (the automation endpoint only, or another adapter).
    Off,
}

/// The Countersign bot.
#[derive(Parser, Debug)]
#[command(name = "countersign-bot", version)]
struct Args {
    /// The policy file.
    #[arg(long, env = "COUNTERSIGN_POLICY")]
    policy: PathBuf,
    /// Where /healthz, /readyz, /metrics, the Slack HTTP endpoints and the automation endpoint
    /// listen.
    #[arg(long, env = "COUNTERSIGN_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// How Slack reaches the bot.
    #[arg(
        long,
        env = "COUNTERSIGN_SLACK_MODE",
        value_enum,
        default_value = "socket"
    )]
    slack_mode: SlackMode,
    /// The Slack Web API base URL (tests point it at a fake Slack).
    #[arg(long, env = "COUNTERSIGN_SLACK_API_URL")]
    slack_api_url: Option<String>,
    /// Socket Mode websockets kept open.
    #[arg(long, env = "COUNTERSIGN_SLACK_CONNECTIONS", default_value_t = 2)]
    slack_connections: u32,
    /// Discord guild ids to serve (comma-separated): `/query` is registered in each, and the
    /// first one's roles are the policy's `discord-role:` groups. Discord is on when this is set
    /// (needs DISCORD_BOT_TOKEN).
    #[arg(long, env = "COUNTERSIGN_DISCORD_GUILDS", value_delimiter = ',')]
    discord_guilds: Vec<u64>,
    /// The Discord API base URL (tests point it at a fake Discord).
    #[arg(long, env = "COUNTERSIGN_DISCORD_API_URL")]
    discord_api_url: Option<String>,
    /// Reactions that approve (comma-separated names without colons).
    #[arg(
        long,
        env = "COUNTERSIGN_APPROVE_REACTIONS",
        default_value = "white_check_mark",
        value_delimiter = ','
    )]
    approve_reactions: Vec<String>,
    /// Reactions that reject.
    #[arg(
        long,
        env = "COUNTERSIGN_REJECT_REACTIONS",
        default_value = "x",
        value_delimiter = ','
    )]
    reject_reactions: Vec<String>,
    /// Default target per channel: `CHANNEL_ID=target`, comma-separated.
    #[arg(long, env = "COUNTERSIGN_CHANNEL_TARGETS", value_delimiter = ',')]
    channel_targets: Vec<String>,
    /// The target used when a command names none and its channel has no default.
    #[arg(long, env = "COUNTERSIGN_DEFAULT_TARGET")]
    default_target: Option<String>,
    /// Service token hashes for the automation endpoint (`countersign keys service-token`);
    /// without it the endpoint is off.
    #[arg(long, env = "COUNTERSIGN_SERVICE_TOKENS_FILE")]
    service_tokens: Option<PathBuf>,
    /// Where automation requests are posted when their target names no review channel
    /// (a Slack channel id or name, or a Discord channel id).
    #[arg(long, env = "COUNTERSIGN_AUTOMATION_CHANNEL")]
    automation_channel: Option<String>,
    /// The platform of the automation channel: `slack` or `discord`.
    #[arg(long, env = "COUNTERSIGN_AUTOMATION_PLATFORM", default_value = "slack", value_parser = ["slack", "discord"])]
    automation_platform: String,
    /// The first part of every Redis key (the executors' must match).
    #[arg(long, env = "COUNTERSIGN_STREAM_PREFIX", default_value = "countersign")]
    stream_prefix: String,
    /// Minutes a signed job stays valid once queued.
    #[arg(long, env = "COUNTERSIGN_JOB_TTL_MINUTES", default_value_t = 15)]
    job_ttl_minutes: u64,
    /// Seconds to wait for an executor's row estimate.
    #[arg(long, env = "COUNTERSIGN_PREFLIGHT_SECONDS", default_value_t = 2.0)]
    preflight_seconds: f64,
    /// Seconds between upkeep passes (expiry, card updates, takeovers).
    #[arg(long, env = "COUNTERSIGN_UPKEEP_SECONDS", default_value_t = 1.0)]
    upkeep_seconds: f64,
    /// Seconds an unfinished event waits before another replica takes it over.
    #[arg(long, env = "COUNTERSIGN_TAKEOVER_SECONDS", default_value_t = 30.0)]
    takeover_seconds: f64,
    /// Control database connections.
    #[arg(long, env = "COUNTERSIGN_CONTROL_POOL", default_value_t = 16)]
    control_pool: u32,
    /// Seconds to finish work in hand on SIGTERM.
    #[arg(long, env = "COUNTERSIGN_DRAIN_SECONDS", default_value_t = 20.0)]
    drain_seconds: f64,
    /// This replica's name (default: host name and process id).
    #[arg(long, env = "COUNTERSIGN_BOT_ID")]
    bot_id: Option<String>,
    /// Log format: `json` (production) or `text`.
    #[arg(long, env = "COUNTERSIGN_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{flag} must be a positive number of seconds"))
}

fn init_logs(format: &str) {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,sqlx=warn,slack_morphism=warn")
        });
    // serenity's debug spans record request routes, which hold interaction tokens: never below
    // warn, whatever COUNTERSIGN_LOG says.
    if let Ok(directive) = "serenity=warn".parse() {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    init_logs(&args.log_format);
    if let Err(error) = run(args).await {
        eprintln!("countersign-bot: {error:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let policy = Policy::load(&args.policy)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading the policy {}", args.policy.display()))?;
    let policy = Arc::new(policy);
    let signer = JobSigner::from_text(&secret("COUNTERSIGN_SIGNING_KEY")?)
        .map_err(|error| anyhow::anyhow!("COUNTERSIGN_SIGNING_KEY: {error}"))?;
    let store = ControlStore::connect(
        &secret("COUNTERSIGN_CONTROL_DATABASE_URL")?,
        args.control_pool,
    )
    .await
    .context("connecting to the control database")?;
    let queue = JobQueue::connect(&secret("COUNTERSIGN_REDIS_URL")?, &args.stream_prefix)
        .await
        .context("connecting to Redis")?;
    let mut channel_targets = HashMap::new();
    for pair in &args.channel_targets {
        let Some((channel, target)) = pair.split_once('=') else {
            bail!("--channel-targets takes CHANNEL=target pairs, not `{pair}`");
        };
        if policy.target(target).is_none() {
            bail!("--channel-targets names `{target}`, which the policy does not define");
        }
        channel_targets.insert(channel.to_string(), target.to_string());
    }
    let config = BotConfig {
        approve_reactions: args.approve_reactions.clone(),
        reject_reactions: args.reject_reactions.clone(),
        job_ttl: Duration::from_secs(args.job_ttl_minutes * 60),
        preflight_timeout: seconds(args.preflight_seconds, "preflight-seconds")?,
        channel_targets,
        default_target: args.default_target.clone(),
        automation_channel: args
            .automation_channel
            .clone()
            .map(|channel| (args.automation_platform.clone(), channel)),
        upkeep_every: seconds(args.upkeep_seconds, "upkeep-seconds")?,
        takeover_after: seconds(args.takeover_seconds, "takeover-seconds")?,
    };
    let name = args.bot_id.clone().unwrap_or_else(|| {
        format!(
            "bot-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
            std::process::id()
        )
    });
    let mut bot = Bot::new(policy.clone(), store, queue, signer, config, name);
    let mut slack_client = None;
    if args.slack_mode != SlackMode::Off {
        let mut builder = SlackApi::builder(secret("SLACK_BOT_TOKEN")?);
        if let Some(url) = &args.slack_api_url {
            builder = builder.api_url(url.clone());
        }
        let api = builder.build().context("setting up the Slack client")?;
        slack_client = Some(api.client());
        bot = bot.with_adapter(SlackAdapter::new(api));
    }
    let mut discord = None;
    if let Some(first) = args.discord_guilds.first() {
        let guild = serenity::all::GuildId::new(
            std::num::NonZeroU64::new(*first)
                .context("--discord-guilds: a guild id is never 0")?
                .get(),
        );
        let mut builder = countersign_discord::DiscordApi::builder(secret("DISCORD_BOT_TOKEN")?);
        if let Some(url) = &args.discord_api_url {
            builder = builder.base_url(url.clone());
        }
        let api = builder.build().context("setting up the Discord client")?;
        bot = bot.with_adapter(DiscordAdapter::new(api.clone(), guild));
        discord = Some(api);
    }
    let bot = Arc::new(bot);

    let health = Health::new(bot.clone());
    let mut app = http::router(health.clone());
    if args.slack_mode == SlackMode::Http {
        let signing_secret = secret("SLACK_SIGNING_SECRET")?;
        app = app.merge(SlackHttp::new(bot.clone(), signing_secret.into_bytes()).router());
    }
    if let Some(path) = &args.service_tokens {
        let tokens = ServiceTokens::load(path)?;
        if args.automation_channel.is_none() {
            bail!("--service-tokens needs --automation-channel: where requests that need review are posted");
        }
        for service in automation::unknown_services(&tokens, &policy) {
            tracing::warn!(%service, "a service token names a service no policy role holds; its requests will be denied");
        }
        app = app.merge(Automation::new(bot.clone(), tokens).router());
    }

    let cancel = CancellationToken::new();
    let upkeep = tokio::spawn(countersign_bot::flow::upkeep::run(
        bot.clone(),
        cancel.clone(),
    ));
    let socket = match (args.slack_mode, slack_client) {
        (SlackMode::Socket, Some(client)) => Some(
            SocketMode::start(
                bot.clone(),
                client,
                &secret("SLACK_APP_TOKEN")?,
                args.slack_connections,
            )
            .await?,
        ),
        _ => None,
    };

    let gateway = match discord {
        Some(api) => {
            let guilds = args
                .discord_guilds
                .iter()
                .filter_map(|id| std::num::NonZeroU64::new(*id))
                .map(|id| serenity::all::GuildId::new(id.get()))
                .collect();
            Some(DiscordGateway::start(bot.clone(), api, guilds).await?)
        }
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, mode = ?args.slack_mode, "countersign-bot is up");
    let shutdown = {
        let health = health.clone();
        let cancel = cancel.clone();
        async move {
            countersign_control::signals::shutdown_requested().await;
            tracing::info!("shutting down: no new requests; finishing those in hand");
            health.start_draining();
            cancel.cancel();
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    if let Some(socket) = socket {
        socket.shutdown().await;
    }
    if let Some(gateway) = gateway {
        gateway.shutdown().await;
    }
    let drain = seconds(args.drain_seconds, "drain-seconds")?;
    if tokio::time::timeout(drain, upkeep).await.is_err() {
        tracing::warn!("the upkeep loop did not stop in time");
    }
    // Events still being handled are in the inbox: another replica (or this one, restarted)
    // finishes any that do not finish here within the drain time.
    if !bot.drain(drain).await {
        tracing::warn!("some events were still being handled; another replica will finish them");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Reads a secret from `NAME`, or from the file `NAME_FILE` names.
fn secret(name: &str) -> Result<String> {
    Ok(countersign_control::secrets::required(name)?)
}
