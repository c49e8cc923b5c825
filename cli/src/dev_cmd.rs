//! `countersign dev`: the bot, an executor per target and the local console in one process, on
//! embedded defaults — the control store in a SQLite file, an in-process queue, a demo SQLite
//! target with sample data, the example policy — so the whole flow can be tried in a minute.
//!
//! Every default is configuration: `--control-database-url postgres://...` keeps the control
//! store in PostgreSQL, `--queue-url redis://...` uses Redis, `--target prod=postgres://...`
//! serves another of the policy's targets. The code paths are the production ones: the console
//! is a chat adapter like Slack and Discord, the executors are the real executors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use countersign_bot::console::{ConsoleAdapter, ConsoleHub, ConsoleTarget, ConsoleUser, Workspace};
use countersign_bot::{http, Bot, BotConfig};
use countersign_control::chat::ChatPoster;
use countersign_control::queue::JobQueue;
use countersign_control::store::ControlStore;
use countersign_executor::execute::TargetDb;
use countersign_executor::{Executor, ExecutorConfig, Services};
use countersign_shared::job::JobSigner;
use countersign_shared::policy::{Policy, PrincipalKind};
use tokio_util::sync::CancellationToken;

/// The example policy, built in (deploy/policy.example.toml).
const EXAMPLE_POLICY: &str = include_str!("../../deploy/policy.example.toml");

/// The demo target's tables and rows.
const DEMO_SQL: &str = include_str!("dev_demo.sql");

/// The channel the console opens on; its default target is `demo`.
const DEMO_CHANNEL: &str = "#demo";

/// `countersign dev` options.
#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Where the console listens. It has no sign-in: keep it on 127.0.0.1.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// Where the control store, the demo database, the console's messages and the signing key
    /// are kept between runs.
    #[arg(long, default_value = ".countersign-dev")]
    pub data_dir: PathBuf,
    /// Start from nothing: delete what an earlier run left in the data directory.
    #[arg(long)]
    pub fresh: bool,
    /// A policy file instead of the built-in example policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The control store (default: a SQLite file in the data directory). A `postgres://` URL
    /// uses PostgreSQL, as production does.
    #[arg(long)]
    pub control_database_url: Option<String>,
    /// The queue between bot and executors (default: in-process). A `redis://` URL uses Redis.
    #[arg(long)]
    pub queue_url: Option<String>,
    /// Serve one more of the policy's targets: `NAME=URL` (repeatable). Without any, the demo
    /// SQLite database serves the `demo` target.
    #[arg(long = "target", value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// One more person in the console's user switcher, besides the policy's `console:` members
    /// (repeatable). People without a role show how the policy treats outsiders.
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Seconds the bot waits for an executor's row estimate before it decides without one.
    #[arg(long, default_value_t = 2.0)]
    pub preflight_seconds: f64,
}

/// Runs `countersign dev` until Ctrl-C or SIGTERM.
pub fn run(args: DevArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            crate::report(&anyhow::Error::new(error).context("starting the async runtime"));
            return ExitCode::from(1);
        }
    };
    init_logs();
    runtime.block_on(async {
        let dev = match DevServer::start(args).await {
            Ok(dev) => dev,
            Err(error) => {
                crate::report(&error);
                return ExitCode::from(1);
            }
        };
        print_banner(&dev);
        countersign_control::signals::shutdown_requested().await;
        eprintln!("stopping: finishing what is in hand…");
        dev.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,countersign=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_banner(dev: &DevServer) {
    let people: Vec<String> = dev
        .hub
        .users()
        .iter()
        .map(|user| {
            if user.roles.is_empty() {
                format!("{} (no role)", user.name)
            } else {
                format!("{} ({})", user.name, user.roles.join(", "))
            }
        })
        .collect();
    println!();
    println!("  Countersign dev console: http://{}/", dev.address);
    println!();
    println!("  People:   {}", people.join(", "));
    println!("  Targets:  {}", dev.served.join(", "));
    println!("  Data:     {}", dev.data_dir.display());
    println!();
    println!("  Open the address, pick a person, and type for example");
    println!("    /query DELETE FROM sessions");
    println!("  It needs two approvals from dba: switch to bob, then carol, and click ✅.");
    println!();
    println!("  Ctrl-C stops it; the data directory keeps everything for the next run.");
    println!();
}

/// A running `countersign dev`.
pub struct DevServer {
    /// Where the console answers.
    pub address: SocketAddr,
    /// The console's workspace.
    pub hub: Arc<ConsoleHub>,
    /// The bot.
    pub bot: Arc<Bot>,
    /// The targets served by an executor.
    pub served: Vec<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    stop: CancellationToken,
    executors: Vec<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl DevServer {
    /// Sets everything up and starts serving; returns once the console answers.
    pub async fn start(args: DevArgs) -> Result<DevServer> {
        if !args.listen.ip().is_loopback() {
            eprintln!(
                "countersign dev: warning: the console has no sign-in, and {} is reachable from other machines",
                args.listen
            );
        }
        let preflight_timeout = std::time::Duration::try_from_secs_f64(args.preflight_seconds)
            .ok()
            .filter(|timeout| !timeout.is_zero())
            .context("--preflight-seconds must be a positive number of seconds")?;
        // The address first: a console that cannot listen should fail before anything starts.
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let data_dir = args.data_dir.clone();
        if args.fresh {
            clear_data_dir(&data_dir)?;
        }
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("reading the data directory {}", data_dir.display()))?;

        let policy = match &args.policy {
            Some(path) => Policy::load(path)
                .map_err(|error| anyhow::anyhow!("{error}"))
                .with_context(|| format!("loading the policy {}", path.display()))?,
            None => Policy::from_str(EXAMPLE_POLICY, "policy.example.toml (built in)")
                .map_err(|error| anyhow::anyhow!("{error}"))
                .context("loading the built-in example policy")?,
        };
        let policy = Arc::new(policy);
        let signer = signing_key(&data_dir.join("signing.key"))?;

        let control_url = args
            .control_database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("control.db").display()));
        let store = ControlStore::connect(&control_url, 8)
            .await
            .context("opening the control store")?;
        let queue_url = args
            .queue_url
            .clone()
            .unwrap_or_else(|| "memory://countersign-dev".into());
        let queue = JobQueue::connect(&queue_url, "countersign-dev")
            .await
            .context("connecting to the queue")?;

        let mut targets = Vec::new();
        for pair in &args.targets {
            let Some((name, url)) = pair.split_once('=') else {
                bail!("--target takes NAME=URL, not `{pair}`");
            };
            targets.push((name.to_string(), url.to_string()));
        }
        if targets.is_empty() {
            if policy.target("demo").is_none() {
                bail!("the policy has no `demo` target: name the targets to serve with --target NAME=URL");
            }
            let demo = data_dir.join("demo.db");
            seed_demo(&demo).await?;
            targets.push(("demo".into(), format!("sqlite://{}", demo.display())));
        }

        let users = console_users(&policy, &args.users)?;
        let mut channels = vec![DEMO_CHANNEL.to_string()];
        for target in policy.targets() {
            if let Some(channel) = &target.review_channel {
                if !channels.contains(channel) {
                    channels.push(channel.clone());
                }
            }
        }
        let hub = Arc::new(
            ConsoleHub::open(
                users.clone(),
                channels.clone(),
                Some(data_dir.join("console.json")),
            )
            .context("opening the console's messages")?,
        );
        let adapter = ConsoleAdapter::new(hub.clone());

        let stop = CancellationToken::new();
        let mut executors = Vec::new();
        let mut served = Vec::new();
        // Executors post results into the console's threads.
        let poster: Arc<dyn ChatPoster> = adapter.clone();
        for (name, url) in &targets {
            let settings = policy
                .target(name)
                .with_context(|| format!("--target {name}: the policy has no such target"))?;
            let db = TargetDb::connect(settings.driver, url, 4)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("connecting to the `{name}` database"))?;
            let mut config = ExecutorConfig::new(name, format!("dev-executor-{name}"));
            config.stream_prefix = "countersign-dev".into();
            config.workers = 4;
            let executor = Executor::new(
                config,
                policy.clone(),
                signer.verifier(),
                Services {
                    store: store.clone(),
                    queue: queue.clone(),
                    db,
                    poster: poster.clone(),
                },
            )
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| format!("setting up the `{name}` executor"))?;
            let stop = stop.clone();
            executors.push(tokio::spawn(async move { executor.run(stop).await }));
            served.push(format!("{name} ({})", settings.driver.as_str()));
        }

        let default_target = policy.target("demo").map(|_| "demo".to_string());
        let mut channel_targets = std::collections::HashMap::new();
        if let Some(target) = &default_target {
            channel_targets.insert(DEMO_CHANNEL.to_string(), target.clone());
        }
        let config = BotConfig {
            channel_targets,
            default_target,
            preflight_timeout,
            ..BotConfig::default()
        };
        let workspace = Workspace {
            users,
            channels,
            targets: policy
                .targets()
                .iter()
                .map(|target| ConsoleTarget {
                    name: target.name.clone(),
                    driver: target.driver.as_str().to_string(),
                    served: targets.iter().any(|(name, _)| *name == target.name),
                })
                .collect(),
            examples: vec![
                "/query SELECT * FROM customers".into(),
                "/query DELETE FROM sessions".into(),
                "/query UPDATE orders SET status = 'shipped' WHERE id = 3".into(),
                "/query --reason \"new report\" CREATE INDEX orders_status ON orders (status)"
                    .into(),
                "/query pending".into(),
                "/query help".into(),
            ],
            approve_reaction: config
                .approve_reactions
                .first()
                .cloned()
                .unwrap_or_default(),
            reject_reaction: config.reject_reactions.first().cloned().unwrap_or_default(),
        };
        let bot = Arc::new(
            Bot::new(policy.clone(), store, queue, signer, config, "dev-bot")
                .with_adapter(adapter.clone()),
        );

        let address = listener.local_addr().context("reading the bound address")?;
        let app = countersign_bot::console::web::router(bot.clone(), hub.clone(), workspace)
            .merge(http::router(http::Health::new(bot.clone())));
        let mut background = Vec::new();
        {
            let stop = stop.clone();
            background.push(tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the console's HTTP server stopped");
                }
            }));
        }
        background.push(tokio::spawn(countersign_bot::flow::upkeep::run(
            bot.clone(),
            stop.clone(),
        )));
        {
            let hub = hub.clone();
            let stop = stop.clone();
            background.push(tokio::spawn(async move { hub.save_loop(stop).await }));
        }
        Ok(DevServer {
            address,
            hub,
            bot,
            served,
            data_dir,
            stop,
            executors,
            background,
        })
    }

    /// Stops taking requests, lets the executors drain and saves the console.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if !self.bot.drain(Duration::from_secs(10)).await {
            tracing::warn!("some events were still being handled; the next run finishes them");
        }
        for task in self.executors.into_iter().chain(self.background) {
            let _ = task.await;
        }
    }
}

/// The console's people: every `console:` member of the policy's roles, then the extra names.
fn console_users(policy: &Policy, extra: &[String]) -> Result<Vec<ConsoleUser>> {
    let mut users: Vec<ConsoleUser> = Vec::new();
    for role in policy.roles() {
        for member in &role.members {
            if member.kind() != PrincipalKind::Console {
                continue;
            }
            match users.iter_mut().find(|user| user.name == member.id()) {
                Some(user) => user.roles.push(role.name.clone()),
                None => users.push(ConsoleUser {
                    name: member.id().to_string(),
                    roles: vec![role.name.clone()],
                }),
            }
        }
    }
    for name in extra {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            bail!("--user {name:?}: use letters, digits, `_`, `-` or `.`");
        }
        if !users.iter().any(|user| user.name == *name) {
            users.push(ConsoleUser {
                name: name.clone(),
                roles: Vec::new(),
            });
        }
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    if users.is_empty() {
        bail!("the policy names no console people (`console:<name>` in a role's members), and no --user was given");
    }
    Ok(users)
}

/// Reads the signing key from `path`, or makes one and keeps it there (readable by the owner
/// only), so jobs queued before a restart still verify after it.
fn signing_key(path: &Path) -> Result<JobSigner> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        return JobSigner::from_text(text.trim())
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| format!("reading the signing key {}", path.display()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    let signer = JobSigner::from_seed(seed);
    write_private(path, &signer.to_text())
        .with_context(|| format!("writing the signing key {}", path.display()))?;
    Ok(signer)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Creates the demo database with its sample data, unless it exists.
async fn seed_demo(path: &Path) -> Result<()> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    if path.exists() {
        return Ok(());
    }
    let partial = path.with_extension("db.partial");
    let _ = std::fs::remove_file(&partial);
    let mut connection = SqliteConnectOptions::new()
        .filename(&partial)
        .create_if_missing(true)
        .connect()
        .await
        .with_context(|| format!("creating the demo database {}", partial.display()))?;
    sqlx::raw_sql(DEMO_SQL)
        .execute(&mut connection)
        .await
        .context("filling the demo database")?;
    connection.close().await.ok();
    // Renamed only once complete, so an interrupted first run seeds again.
    std::fs::rename(&partial, path)
        .with_context(|| format!("creating the demo database {}", path.display()))?;
    Ok(())
}

/// Removes what `countersign dev` keeps in `dir`, and nothing else.
fn clear_data_dir(dir: &Path) -> Result<()> {
    const OURS: [&str; 11] = [
        "control.db",
        "control.db-wal",
        "control.db-shm",
        "demo.db",
        "demo.db-wal",
        "demo.db-shm",
        "demo.db.partial",
        "console.json",
        "console.json.tmp",
        "signing.key",
        "control.db-journal",
    ];
    for name in OURS {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("removing {}", path.display()))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policys_console_people_are_the_users() {
        let policy = Policy::from_str(EXAMPLE_POLICY, "example").expect("policy");
        let users = console_users(&policy, &["erin".into()]).expect("users");
        // Sorted by name, so the switcher reads the same whatever the policy's order.
        let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "dave", "erin"]);
        assert_eq!(users[0].roles, ["engineer"]);
        assert_eq!(users[1].roles, ["dba"]);
        assert!(users[4].roles.is_empty());
        assert!(console_users(&policy, &["bad name".into()]).is_err());
    }

    #[tokio::test]
    async fn the_demo_database_is_seeded_once() {
        let dir = std::env::temp_dir().join(format!("cs-dev-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("demo.db");
        let _ = std::fs::remove_file(&path);
        seed_demo(&path).await.expect("seed");
        seed_demo(&path).await.expect("seeding again leaves it");
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .expect("open");
        use sqlx::ConnectOptions;
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&mut connection)
            .await
            .expect("count");
        assert!(sessions > 0 && sessions < 100, "{sessions} sessions");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_signing_key_is_kept_between_runs() {
        let dir = std::env::temp_dir().join(format!("cs-dev-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("signing.key");
        let _ = std::fs::remove_file(&path);
        let first = signing_key(&path).expect("made");
        let second = signing_key(&path).expect("read");
        assert_eq!(first.to_text(), second.to_text());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).ok();
    }
}
