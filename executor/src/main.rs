//! `countersign-executor`: runs the executor for one target database.
//!
//! Settings come from flags or the environment; secrets (database URLs) only from the
//! environment or from files named by `*_FILE` variables, and are never logged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use countersign_control::chat::{
    ChatPoster, JsonLinesPoster, PlatformPoster, PostFuture, ReplyTo, ThreadMessage,
};
use countersign_control::queue::JobQueue;
use countersign_control::store::ControlStore;
use countersign_executor::execute::TargetDb;
use countersign_executor::{Executor, ExecutorConfig, Services};
use countersign_shared::job::JobVerifier;
use countersign_shared::policy::Policy;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs Countersign's executor for one target database.
///
/// Secrets are read from the environment (or from the file a `*_FILE` variable names):
/// COUNTERSIGN_TARGET_DATABASE_URL (the target's credentials), COUNTERSIGN_CONTROL_DATABASE_URL
/// (the control PostgreSQL), COUNTERSIGN_REDIS_URL, and SLACK_BOT_TOKEN / DISCORD_BOT_TOKEN
/// (optional: post results into Slack or Discord threads).
#[derive(Parser, Debug)]
#[command(name = "countersign-executor", version)]
struct Args {
    /// The policy file (targets, masking, read-only functions).
    #[arg(long, env = "COUNTERSIGN_POLICY")]
    policy: PathBuf,
    /// The policy's name of the target this executor serves.
    #[arg(long, env = "COUNTERSIGN_TARGET")]
    target: String,
    /// The bot's public key file (`countersign keys generate` writes it).
    #[arg(long, env = "COUNTERSIGN_PUBLIC_KEY_FILE")]
    public_key: PathBuf,
    /// Where /healthz, /readyz and /metrics listen.
    #[arg(long, env = "COUNTERSIGN_LISTEN", default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// This executor's name (default: host name and process id).
    #[arg(long, env = "COUNTERSIGN_EXECUTOR_ID")]
    executor_id: Option<String>,
    /// The first part of every Redis key.
    #[arg(long, env = "COUNTERSIGN_STREAM_PREFIX", default_value = "countersign")]
    stream_prefix: String,
    /// Jobs handled at once.
    #[arg(long, env = "COUNTERSIGN_WORKERS", default_value_t = 16)]
    workers: usize,
    /// Seconds a claim holds before another executor may decide the job.
    #[arg(long, env = "COUNTERSIGN_LEASE_SECONDS", default_value_t = 15.0)]
    lease_seconds: f64,
    /// Seconds an unacknowledged delivery waits before another executor takes it.
    #[arg(long, env = "COUNTERSIGN_RECLAIM_SECONDS", default_value_t = 5.0)]
    reclaim_seconds: f64,
    /// Seconds a published, unclaimed job waits before it is published again.
    #[arg(long, env = "COUNTERSIGN_REPUBLISH_SECONDS", default_value_t = 10.0)]
    republish_seconds: f64,
    /// Seconds between reconciler passes.
    #[arg(long, env = "COUNTERSIGN_RECONCILE_SECONDS", default_value_t = 2.0)]
    reconcile_seconds: f64,
    /// Seconds the job in hand may take to finish after SIGTERM.
    #[arg(long, env = "COUNTERSIGN_DRAIN_SECONDS", default_value_t = 25.0)]
    drain_seconds: f64,
    /// Rows counted in a result before counting stops.
    #[arg(long, env = "COUNTERSIGN_COUNT_CAP", default_value_t = 1_000_000)]
    count_cap: u64,
    /// Connections to the target database.
    #[arg(long, env = "COUNTERSIGN_TARGET_CONNECTIONS", default_value_t = 8)]
    target_connections: u32,
    /// Append thread messages as JSON lines to this file instead of posting them to chat
    /// (for tests, or an executor without chat).
    #[arg(long, env = "COUNTERSIGN_CHAT_LOG")]
    chat_log: Option<PathBuf>,
    /// The Slack Web API base URL (tests point it at a fake Slack). Results are posted to Slack
    /// threads when SLACK_BOT_TOKEN is set.
    #[arg(long, env = "COUNTERSIGN_SLACK_API_URL")]
    slack_api_url: Option<String>,
    /// The Discord API base URL (tests point it at a fake Discord). Results are posted to
    /// Discord threads when DISCORD_BOT_TOKEN is set.
    #[arg(long, env = "COUNTERSIGN_DISCORD_API_URL")]
    discord_api_url: Option<String>,
    /// Log format.
    #[arg(long, env = "COUNTERSIGN_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{flag} must be a positive number of seconds"))
}

/// Logs thread messages when no chat is configured, so nothing is silently dropped.
struct LogPoster;

impl ChatPoster for LogPoster {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            tracing::info!(platform = %to.platform, channel = %to.channel, thread = %to.thread, text = %message.text, "thread message (no chat adapter configured)");
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    init_logging(&args.log_format);
    if let Err(error) = run(args).await {
        tracing::error!("{error:#}");
        eprintln!("countersign-executor: {error:#}");
        std::process::exit(1);
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: Args) -> Result<()> {
    let policy = Policy::load(&args.policy).map_err(|error| anyhow::anyhow!("{error}"))?;
    let settings = policy.target(&args.target).cloned().with_context(|| {
        format!(
            "the policy {} has no target named `{}`",
            args.policy.display(),
            args.target
        )
    })?;
    let key_text = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("reading the public key {}", args.public_key.display()))?;
    let verifier = JobVerifier::from_text(&key_text)
        .with_context(|| format!("reading the public key {}", args.public_key.display()))?;
    let executor_id = args.executor_id.clone().unwrap_or_else(default_executor_id);
    let mut config = ExecutorConfig::new(&args.target, executor_id);
    config.stream_prefix = args.stream_prefix.clone();
    config.workers = args.workers.max(1);
    config.lease = seconds(args.lease_seconds, "lease-seconds")?;
    config.reclaim_idle = seconds(args.reclaim_seconds, "reclaim-seconds")?;
    config.republish_after = seconds(args.republish_seconds, "republish-seconds")?;
    config.reconcile_every = seconds(args.reconcile_seconds, "reconcile-seconds")?;
    config.drain = seconds(args.drain_seconds, "drain-seconds")?;
    config.count_cap = args.count_cap;
    tracing::info!(?config, "starting");

    let target_url = secret("COUNTERSIGN_TARGET_DATABASE_URL")?;
    let control_url = secret("COUNTERSIGN_CONTROL_DATABASE_URL")?;
    let redis_url = secret("COUNTERSIGN_REDIS_URL")?;
    let store = ControlStore::connect(&control_url, (config.workers as u32 + 4).min(32))
        .await
        .context("connecting to the control database and applying migrations")?;
    let queue = JobQueue::connect(&redis_url, &config.stream_prefix)
        .await
        .context("connecting to redis")?;
    let db = TargetDb::connect(settings.driver, &target_url, args.target_connections)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the target database: {e}"))?;
    let poster: Arc<dyn ChatPoster> = match &args.chat_log {
        Some(path) => Arc::new(
            JsonLinesPoster::open(path)
                .with_context(|| format!("opening the chat log {}", path.display()))?,
        ),
        None => {
            let mut platforms = PlatformPoster::new();
            if let Some(token) = optional_secret("SLACK_BOT_TOKEN")? {
                let mut builder = countersign_slack::SlackApi::builder(token);
                if let Some(url) = &args.slack_api_url {
                    builder = builder.api_url(url.clone());
                }
                platforms = platforms.with(
                    "slack",
                    Arc::new(builder.build().context("setting up the Slack client")?),
                );
            }
            if let Some(token) = optional_secret("DISCORD_BOT_TOKEN")? {
                let mut builder = countersign_discord::DiscordApi::builder(token);
                if let Some(url) = &args.discord_api_url {
                    builder = builder.base_url(url.clone());
                }
                platforms = platforms.with(
                    "discord",
                    Arc::new(builder.build().context("setting up the Discord client")?),
                );
            }
            if platforms.is_empty() {
                Arc::new(LogPoster)
            } else {
                Arc::new(platforms)
            }
        }
    };
    let executor = Executor::new(
        config,
        Arc::new(policy),
        verifier,
        Services {
            store,
            queue,
            db,
            poster,
        },
    )?;

    let shutdown = CancellationToken::new();
    let listener = countersign_executor::http::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %args.listen, "serving /healthz, /readyz and /metrics");
    // The probes keep answering while the executor drains (readiness says so), and stop after.
    let http_shutdown = CancellationToken::new();
    let http = tokio::spawn(countersign_executor::http::serve(
        listener,
        executor.clone(),
        http_shutdown.clone(),
    ));
    let signals = shutdown.clone();
    tokio::spawn(async move {
        countersign_control::signals::shutdown_requested().await;
        tracing::info!("shutdown requested");
        signals.cancel();
    });
    executor.run(shutdown.clone()).await;
    http_shutdown.cancel();
    let _ = http.await;
    Ok(())
}

fn default_executor_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "executor".into());
    format!("{host}-{}", std::process::id())
}

/// Reads a secret from `NAME`, or from the file `NAME_FILE` names.
fn secret(name: &str) -> Result<String> {
    Ok(countersign_control::secrets::required(name)?)
}

/// Reads an optional secret from `NAME`, or from the file `NAME_FILE` names.
fn optional_secret(name: &str) -> Result<Option<String>> {
    Ok(countersign_control::secrets::optional(name)?)
}
