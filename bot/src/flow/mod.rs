//! The approval flow, the same for every chat adapter: one module per command, plus reactions,
//! the root message ("card") and the upkeep loop.
//!
//! - [`Bot`]: the policy, the control store, the job queue, the signing key and the adapters.
//!   [`Bot::receive`] stores an event in the inbox (before the adapter acknowledges it) and
//!   handles it in the background; [`Bot::handle`] handles one stored event.
//! - [`query`], [`cancel`], [`pending`], [`help`]: the commands.
//! - [`reaction`]: approvals, rejections and withdrawals by reaction.
//! - [`card`]: building and refreshing a request's root message.
//! - [`upkeep`]: expiry, cards that fell behind (a job finished), root messages a dead replica
//!   never posted, inbox events a dead replica never finished.
//!
//! Every step is idempotent and resumes from the state in PostgreSQL, so a restarted bot or a
//! second replica carries on where another stopped, and never posts a request twice or counts a
//! reaction twice.

pub mod cancel;
pub mod card;
pub mod help;
pub mod pending;
pub mod query;
pub mod reaction;
pub mod upkeep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use countersign_control::chat::{ReplyTo, ThreadMessage};
use countersign_control::queue::JobQueue;
use countersign_control::store::{ControlStore, StoreError};
use countersign_control::{inbox, now_ms};
use countersign_shared::job::JobSigner;
use countersign_shared::policy::{Identity, Policy, Principal, PrincipalKind};
use sha2::{Digest, Sha256};

use crate::chat::{ChatAdapter, CommandEvent, Inbound, Origin};
use crate::command::{self, Command};
use crate::metrics::Metrics;

/// How the bot behaves; everything has a sensible default.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Reactions that approve (names without colons).
    pub approve_reactions: Vec<String>,
    /// Reactions that reject.
    pub reject_reactions: Vec<String>,
    /// How long a signed job stays valid for the executor once queued.
    pub job_ttl: Duration,
    /// How long to wait for an executor's row estimate before posting without one.
    pub preflight_timeout: Duration,
    /// Default target per channel id.
    pub channel_targets: HashMap<String, String>,
    /// The target used when the command names none and the channel has no default.
    pub default_target: Option<String>,
    /// Where requests from the automation endpoint that need approval are posted, when their
    /// target names no review channel: (platform, channel).
    pub automation_channel: Option<(String, String)>,
    /// How often the upkeep loop runs.
    pub upkeep_every: Duration,
    /// How long an unfinished inbox event or root-message claim waits before another replica
    /// takes it over.
    pub takeover_after: Duration,
}

impl Default for BotConfig {
    fn default() -> BotConfig {
        BotConfig {
            approve_reactions: vec!["white_check_mark".into()],
            reject_reactions: vec!["x".into()],
            job_ttl: Duration::from_secs(15 * 60),
            preflight_timeout: Duration::from_secs(2),
            channel_targets: HashMap::new(),
            default_target: None,
            automation_channel: None,
            upkeep_every: Duration::from_secs(1),
            takeover_after: Duration::from_secs(30),
        }
    }
}

/// Why the flow could not do something. Never shown to users as is: they get a short reason.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The control database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chat platform failed.
    #[error(transparent)]
    Chat(#[from] countersign_control::chat::ChatError),
    /// No adapter serves this platform.
    #[error("no chat adapter for platform `{0}`")]
    NoAdapter(String),
    /// Stored data did not read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// The bot: shared by every adapter and the automation endpoint.
pub struct Bot {
    pub(crate) policy: Arc<Policy>,
    pub(crate) store: ControlStore,
    pub(crate) queue: JobQueue,
    pub(crate) signer: JobSigner,
    pub(crate) adapters: HashMap<&'static str, Arc<dyn ChatAdapter>>,
    pub(crate) config: BotConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) name: String,
    pub(crate) tasks: tokio_util::task::TaskTracker,
}

impl Bot {
    /// A bot on these services. `name` identifies this replica in logs and audit entries.
    pub fn new(
        policy: Arc<Policy>,
        store: ControlStore,
        queue: JobQueue,
        signer: JobSigner,
        config: BotConfig,
        name: impl Into<String>,
    ) -> Bot {
        Bot {
            policy,
            store,
            queue,
            signer,
            adapters: HashMap::new(),
            config,
            metrics: Arc::new(Metrics::new()),
            name: name.into(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Adds a chat adapter (one per platform).
    pub fn with_adapter(mut self, adapter: Arc<dyn ChatAdapter>) -> Bot {
        self.adapters.insert(adapter.platform(), adapter);
        self
    }

    /// The metrics this bot counts.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The control store.
    pub fn store(&self) -> &ControlStore {
        &self.store
    }

    /// Waits (up to `limit`) for the events being handled to finish; for shutdown. Events not
    /// finished in time stay in the inbox for another replica.
    pub async fn drain(&self, limit: std::time::Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }

    /// The configuration.
    pub fn config(&self) -> &BotConfig {
        &self.config
    }

    pub(crate) fn adapter(&self, platform: &str) -> Result<&Arc<dyn ChatAdapter>, FlowError> {
        self.adapters
            .get(platform)
            .ok_or_else(|| FlowError::NoAdapter(platform.to_string()))
    }

    /// Stores an event in the inbox and handles it in the background. Returns false (and does
    /// nothing) when the event was seen before. Adapters acknowledge the platform after this
    /// returns, so an acknowledged event is durable.
    pub async fn receive(self: &Arc<Self>, event: Inbound) -> Result<bool, StoreError> {
        let key = event.key();
        let payload = serde_json::to_value(&event).unwrap_or(serde_json::Value::Null);
        if !inbox::accept(&self.store, &key, event.kind(), &payload).await? {
            self.metrics.duplicate_event(event.kind());
            tracing::debug!(%key, "event seen before; dropped");
            return Ok(false);
        }
        let bot = Arc::clone(self);
        self.tasks
            .spawn(async move { bot.handle_and_finish(&key, event).await });
        Ok(true)
    }

    /// Handles a stored event and marks it finished. A failure leaves it unfinished, so the
    /// upkeep loop retries it later.
    pub(crate) async fn handle_and_finish(&self, key: &str, event: Inbound) {
        // Keep the claim fresh while handling, so a slow event (a preflight, a rate-limited
        // chat call) is never taken over by another replica while this one still works on it.
        let every = (self.config.takeover_after / 3).max(std::time::Duration::from_millis(100));
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                if let Err(error) = inbox::renew(&self.store, key).await {
                    tracing::warn!(%error, %key, "could not renew the claim on an event");
                }
            }
        };
        let handled = tokio::select! {
            biased;
            handled = self.handle(event) => handled,
            () = renew => unreachable!("the renewal loop never ends"),
        };
        match handled {
            Ok(()) => {
                if let Err(error) = inbox::finish(&self.store, key).await {
                    tracing::warn!(%error, %key, "could not mark an event finished; it will be handled again");
                }
            }
            Err(error) => {
                self.metrics.flow_error();
                tracing::warn!(%error, %key, "handling an event failed; it will be retried");
            }
        }
    }

    /// Handles one event.
    pub async fn handle(&self, event: Inbound) -> Result<(), FlowError> {
        match event {
            Inbound::Command(command) => self.handle_command(command).await,
            Inbound::Reaction(reaction) => reaction::handle(self, &reaction).await,
        }
    }

    async fn handle_command(&self, event: CommandEvent) -> Result<(), FlowError> {
        let started = std::time::Instant::now();
        let targets: Vec<&str> = self
            .policy
            .targets()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        let default_target = self
            .config
            .channel_targets
            .get(&event.origin.channel)
            .or(self.config.default_target.as_ref())
            .map(String::as_str);
        let reply = match command::parse(&event.text, &targets, default_target) {
            Err(error) => Some(error.to_string()),
            Ok(Command::Help) => Some(help::text(self)),
            Ok(Command::Pending) => Some(pending::text(self, &event.origin).await?),
            Ok(Command::Cancel { request_id }) => {
                Some(cancel::run(self, &event.origin, &request_id).await?)
            }
            Ok(Command::Query {
                target,
                sql,
                reason,
            }) => {
                let outcome = query::run(
                    self,
                    query::Submission {
                        request_id: request_id_for(&event.origin.platform, &event.key),
                        origin: event.origin.clone(),
                        target,
                        sql,
                        reason,
                    },
                )
                .await?;
                Some(outcome.private_reply())
            }
        };
        if let Some(text) = reply {
            let adapter = self.adapter(&event.origin.platform)?;
            if let Err(error) = adapter.reply_private(&event.origin, &text).await {
                tracing::warn!(%error, "could not answer the requester privately");
            }
        }
        self.metrics.command_handled(started.elapsed());
        Ok(())
    }

    /// The identity of a chat user: the principal and the policy's groups of its platform it
    /// belongs to (asked of the platform, cached by the adapter).
    pub(crate) async fn identity(&self, principal: &str) -> Result<Identity, FlowError> {
        let principal = Principal::parse(principal)
            .map_err(|error| FlowError::Corrupt(format!("principal: {error}")))?;
        let group_kind = match principal.kind() {
            PrincipalKind::SlackUser => Some(("slack", PrincipalKind::SlackGroup)),
            PrincipalKind::DiscordUser => Some(("discord", PrincipalKind::DiscordRole)),
            _ => None,
        };
        let Some((platform, kind)) = group_kind else {
            return Ok(Identity::new(principal));
        };
        let candidates: Vec<Principal> = self
            .policy
            .roles()
            .iter()
            .flat_map(|role| role.members.iter())
            .filter(|member| member.kind() == kind)
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if candidates.is_empty() {
            return Ok(Identity::new(principal));
        }
        let adapter = self.adapter(platform)?;
        let groups = adapter.groups_of(&principal, &candidates).await?;
        Ok(Identity::new(principal).with_groups(groups))
    }

    /// The identities of several principals (approvers), in order.
    pub(crate) async fn identities(
        &self,
        principals: &[String],
    ) -> Result<Vec<Identity>, FlowError> {
        let mut identities = Vec::with_capacity(principals.len() + 1);
        for principal in principals {
            identities.push(self.identity(principal).await?);
        }
        Ok(identities)
    }

    /// Posts a note into a request's thread; a failure is logged, not raised (the state change
    /// it reports is already stored and shown on the card).
    pub(crate) async fn note(&self, thread: Option<&ReplyTo>, text: &str) {
        let Some(thread) = thread else { return };
        let Ok(adapter) = self.adapter(&thread.platform) else {
            return;
        };
        if let Err(error) = adapter.post(thread, &ThreadMessage::note(text)).await {
            self.metrics.chat_error();
            tracing::warn!(%error, "could not post a note into a thread");
        }
    }

    /// A principal as a mention on its thread's platform.
    pub(crate) fn mention(&self, platform: &str, principal: &str) -> String {
        match self.adapters.get(platform) {
            Some(adapter) => adapter.mention(principal),
            None => principal.to_string(),
        }
    }
}

/// The request id for an invocation: short enough to type (`/query cancel q7k2m9x4pd`), the
/// same for every delivery of the same invocation.
pub fn request_id_for(platform: &str, key: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let digest = Sha256::digest(format!("{platform}\n{key}").as_bytes());
    let mut id = String::with_capacity(11);
    id.push('q');
    for byte in digest.iter().take(10) {
        id.push(ALPHABET[(*byte as usize) % ALPHABET.len()] as char);
    }
    id
}

pub(crate) fn now() -> u64 {
    now_ms()
}

impl Origin {
    /// The origin of a request from the automation endpoint.
    pub fn automation(service: &str, channel: &str) -> Origin {
        Origin {
            platform: "automation".into(),
            channel: channel.into(),
            user: format!("service:{service}"),
            respond: None,
        }
    }
}
