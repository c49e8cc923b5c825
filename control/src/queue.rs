//! The job transport: how signed jobs and preflight requests travel to executors.
//!
//! Each target has a jobs stream (`<prefix>:jobs:<target>`) read by the consumer group
//! `executors`: each delivery goes to one executor, stays pending until acknowledged, and is
//! reclaimed by another executor when it sits unacknowledged too long (XAUTOCLAIM). The queue is
//! transport only: losing a stream loses nothing, because the outbox in the control store is
//! re-published by the reconciler. A read that finds the group gone (Redis restarted or flushed)
//! creates it again. Connections reconnect by themselves; callers retry a failed call after a
//! pause.
//!
//! Preflight requests use a second stream per target (`<prefix>:preflight:<target>`), same
//! group; the answer goes to a list (`<prefix>:preflight-reply:<id>`) the bot waits on.
//!
//! Two backends sit behind the one [`JobQueue`] type, with the same API and the same semantics,
//! so that switching between them is configuration only ([`JobQueue::connect`] takes the URL):
//!
//! - **Redis** (`redis://...`, any URL redis-rs accepts): Redis streams, a consumer group, XAUTOCLAIM, and
//!   a list with BLPOP for preflight replies. Bot and executors in separate processes.
//! - **In-process** (`memory://` or `memory://<name>`, or [`JobQueue::in_memory`]): the same
//!   model kept in the process's memory, for `countersign dev` (bot and executor in one process,
//!   no Redis on the machine). Streams are bounded deques of `<ms>-<seq>` entries trimmed to
//!   [`STREAM_MAX_LEN`]; the group keeps its last delivered id and a pending list (delivery
//!   time and count per entry), and reclaim walks that list as XAUTOCLAIM does. Blocking reads
//!   and reply waits sleep on a [`tokio::sync::Notify`] that a publish (or a reply) wakes, so
//!   they return as soon as there is something to take and never poll. Replies expire after the same TTL as
//!   in Redis. Nothing survives the process, which is fine: the outbox keeps the truth. All
//!   connections to one `memory://<name>` URL in a process share one queue, as all connections
//!   to one Redis share its keys; [`JobQueue::in_memory`] makes a private one.
//!
//! Differences that remain: the in-process backend trims streams exactly to [`STREAM_MAX_LEN`]
//! (Redis trims approximately, by whole nodes, so it may keep a few more); it does not record
//! which consumer holds a pending entry (nothing in the API asks); and Redis's blocking
//! connection gives up on a read blocked for more than 30 seconds, where the in-process one
//! waits as long as it was told.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use countersign_shared::job::SignedJob;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamPendingCountReply, StreamReadOptions,
    StreamReadReply,
};
use redis::AsyncCommands;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The consumer group every executor joins.
pub const GROUP: &str = "executors";

/// Streams are trimmed to about this many entries (the outbox keeps the truth).
pub const STREAM_MAX_LEN: usize = 100_000;

/// The URL scheme of the in-process backend: `memory://` or `memory://<name>` for
/// [`JobQueue::connect`].
pub const MEMORY_SCHEME: &str = "memory://";

/// How long a preflight reply waits in Redis for the bot to take it.
const REPLY_TTL_SECONDS: i64 = 60;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The in-process queue refused the command, where Redis would have refused it too (an
    /// invalid entry id, a missing consumer group, a zero count).
    #[error("in-process queue: {0}")]
    InProcess(String),
}

/// One message read from a stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id (for acknowledgement).
    pub id: String,
    /// The signed envelope, or why the entry is not one.
    pub envelope: Result<SignedJob, String>,
    /// How many times the queue has delivered this entry (1 for a first delivery).
    pub delivered: usize,
}

/// Which stream of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Signed jobs.
    Jobs,
    /// Signed preflight requests.
    Preflight,
}

/// A connection to the streams, over Redis or in-process (see the module documentation).
///
/// Redis: blocking reads (XREADGROUP BLOCK, BLPOP) hold their connection until they return,
/// and every command sent on a connection waits behind them, so each loop that blocks needs a
/// connection of its own: [`JobQueue::reader`] makes one. Other commands share one multiplexed
/// connection.
///
/// In-process: clones and [`JobQueue::reader`] results share the same streams; blocking calls
/// never hold anything that other calls wait behind.
#[derive(Clone)]
pub struct JobQueue {
    backend: Backend,
    prefix: String,
}

#[derive(Clone)]
enum Backend {
    Redis(Box<RedisQueue>),
    Memory(Arc<MemoryQueue>),
}

impl JobQueue {
    /// Connects to the queue at `url`: Redis for a `redis://` URL (or any redis-rs takes), the
    /// in-process queue named `<name>` for `memory://<name>` (every connection to one name in
    /// a process shares its streams; `memory://` is the name ""). `prefix` starts every key
    /// (`countersign` in production; tests use their own).
    pub async fn connect(url: &str, prefix: &str) -> Result<JobQueue, QueueError> {
        if let Some(name) = url.strip_prefix(MEMORY_SCHEME) {
            return Ok(JobQueue {
                backend: Backend::Memory(MemoryQueue::named(name)),
                prefix: prefix.to_string(),
            });
        }
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_max_delay(Duration::from_secs(2));
        let commands = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        // Blocking reads wait longer than a normal reply.
        let config = config.set_response_timeout(Some(Duration::from_secs(30)));
        let blocking = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(JobQueue {
            backend: Backend::Redis(Box::new(RedisQueue {
                client,
                config,
                commands,
                blocking,
            })),
            prefix: prefix.to_string(),
        })
    }

    /// A new, private in-process queue (no Redis): for `countersign dev` and tests. Its clones
    /// and [`JobQueue::reader`] results share its streams; nothing else does.
    pub fn in_memory(prefix: &str) -> JobQueue {
        JobQueue {
            backend: Backend::Memory(Arc::new(MemoryQueue::default())),
            prefix: prefix.to_string(),
        }
    }

    /// Whether this queue is the in-process one.
    pub fn is_in_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    /// The same queue with a blocking connection of its own, for a second reading loop (an
    /// in-process queue needs none: it returns a clone).
    pub async fn reader(&self) -> Result<JobQueue, QueueError> {
        let backend = match &self.backend {
            Backend::Redis(redis) => {
                let blocking =
                    ConnectionManager::new_with_config(redis.client.clone(), redis.config.clone())
                        .await?;
                Backend::Redis(Box::new(RedisQueue {
                    blocking,
                    ..(**redis).clone()
                }))
            }
            Backend::Memory(memory) => Backend::Memory(memory.clone()),
        };
        Ok(JobQueue {
            backend,
            prefix: self.prefix.clone(),
        })
    }

    /// The key of a target's stream.
    pub fn key(&self, stream: Stream, target: &str) -> String {
        match stream {
            Stream::Jobs => format!("{}:jobs:{target}", self.prefix),
            Stream::Preflight => format!("{}:preflight:{target}", self.prefix),
        }
    }

    fn reply_key(&self, id: &str) -> String {
        format!("{}:preflight-reply:{id}", self.prefix)
    }

    /// Appends a signed envelope to a target's stream (creating the stream, not the group, when
    /// missing) and trims the stream to [`STREAM_MAX_LEN`]. Returns the entry id.
    pub async fn publish(
        &self,
        stream: Stream,
        target: &str,
        signed: &SignedJob,
    ) -> Result<String, QueueError> {
        let key = self.key(stream, target);
        let body = serde_json::to_string(signed).unwrap_or_default();
        match &self.backend {
            Backend::Redis(redis) => redis.publish(&key, body).await,
            Backend::Memory(memory) => Ok(memory.publish(&key, body)),
        }
    }

    /// Creates the consumer group (and the stream) if missing. A new group starts at the
    /// beginning of the stream: it delivers the entries already there.
    pub async fn ensure_group(&self, stream: Stream, target: &str) -> Result<(), QueueError> {
        let key = self.key(stream, target);
        match &self.backend {
            Backend::Redis(redis) => redis.ensure_group(&key).await,
            Backend::Memory(memory) => {
                memory.ensure_group(&key);
                Ok(())
            }
        }
    }

    /// Reads new entries (never delivered to the group) for `consumer`, at most `count` (0: no
    /// limit), waiting up to `block` for one; a `block` under a millisecond waits without limit,
    /// as XREADGROUP BLOCK 0 does. When the group is missing, creates it and returns nothing at
    /// once. An entry that is not a signed envelope comes back with the reason in
    /// [`Delivery::envelope`].
    pub async fn read(
        &self,
        stream: Stream,
        target: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let key = self.key(stream, target);
        match &self.backend {
            Backend::Redis(redis) => {
                let read = redis.read(&key, consumer, count, block).await?;
                match read {
                    Some(deliveries) => Ok(deliveries),
                    None => {
                        self.ensure_group(stream, target).await?;
                        Ok(Vec::new())
                    }
                }
            }
            Backend::Memory(memory) => Ok(memory.read(&key, count, block).await),
        }
    }

    /// Takes over, for `consumer`, up to `count` entries delivered to some consumer but not
    /// acknowledged for at least `min_idle` (their executor died or hung). Each comes back with
    /// its delivery count increased, and is idle again from now. Pending entries that were
    /// trimmed from the stream meanwhile are dropped from the pending list. When the group is
    /// missing, creates it and returns nothing.
    pub async fn reclaim(
        &self,
        stream: Stream,
        target: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let key = self.key(stream, target);
        let reclaimed = match &self.backend {
            Backend::Redis(redis) => redis.reclaim(&key, consumer, min_idle, count).await?,
            Backend::Memory(memory) => memory.reclaim(&key, min_idle, count, Instant::now())?,
        };
        match reclaimed {
            Some(deliveries) => Ok(deliveries),
            None => {
                self.ensure_group(stream, target).await?;
                Ok(Vec::new())
            }
        }
    }

    /// Acknowledges entries: they will not be delivered again. Unknown ids are ignored; a
    /// malformed id is an error (and nothing is acknowledged).
    pub async fn ack(
        &self,
        stream: Stream,
        target: &str,
        ids: &[String],
    ) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.key(stream, target);
        match &self.backend {
            Backend::Redis(redis) => redis.ack(&key, ids).await,
            Backend::Memory(memory) => memory.ack(&key, ids),
        }
    }

    /// For each entry id, whether the entry is still in the target's stream.
    pub async fn entries_exist(
        &self,
        stream: Stream,
        target: &str,
        ids: &[&str],
    ) -> Result<Vec<bool>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key(stream, target);
        match &self.backend {
            Backend::Redis(redis) => redis.entries_exist(&key, ids).await,
            Backend::Memory(memory) => memory.entries_exist(&key, ids),
        }
    }

    /// Stores a preflight answer for the bot to take. Answers not taken expire after
    /// `REPLY_TTL_SECONDS` (60 s, counted from the last answer stored under the id).
    pub async fn reply(&self, id: &str, answer: &serde_json::Value) -> Result<(), QueueError> {
        let key = self.reply_key(id);
        match &self.backend {
            Backend::Redis(redis) => redis.reply(&key, answer).await,
            Backend::Memory(memory) => {
                memory.reply(&key, answer.to_string(), Instant::now());
                Ok(())
            }
        }
    }

    /// Waits up to `timeout` for a preflight answer and takes it (the oldest first, when several
    /// were stored). A zero `timeout` waits without limit, as BLPOP 0 does. None when none came
    /// in time, or when the answer stored is not JSON.
    pub async fn wait_reply(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>, QueueError> {
        let key = self.reply_key(id);
        let text = match &self.backend {
            Backend::Redis(redis) => redis.wait_reply(&key, timeout).await?,
            Backend::Memory(memory) => memory.wait_reply(&key, timeout).await,
        };
        Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Checks that the queue answers (Redis: PING; the in-process queue always does).
    pub async fn ping(&self) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(redis) => redis.ping().await,
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Entries of a target's stream that are delivered and not yet acknowledged. An error when
    /// the stream or its group does not exist yet.
    pub async fn pending_count(&self, stream: Stream, target: &str) -> Result<u64, QueueError> {
        let key = self.key(stream, target);
        match &self.backend {
            Backend::Redis(redis) => redis.pending_count(&key).await,
            Backend::Memory(memory) => memory.pending_count(&key),
        }
    }
}

/// Parses a stream entry's `envelope` field (None: the entry has no such field).
fn envelope(field: Option<&str>) -> Result<SignedJob, String> {
    match field {
        Some(text) => serde_json::from_str::<SignedJob>(text)
            .map_err(|error| format!("the stream entry is not a signed envelope: {error}")),
        None => Err("the stream entry has no `envelope` field".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

#[derive(Clone)]
struct RedisQueue {
    client: redis::Client,
    config: ConnectionManagerConfig,
    commands: ConnectionManager,
    blocking: ConnectionManager,
}

impl RedisQueue {
    async fn publish(&self, key: &str, body: String) -> Result<String, QueueError> {
        let mut conn = self.commands.clone();
        let id: String = conn
            .xadd_maxlen(
                key,
                redis::streams::StreamMaxlen::Approx(STREAM_MAX_LEN),
                "*",
                &[("envelope", body)],
            )
            .await?;
        Ok(id)
    }

    async fn ensure_group(&self, key: &str) -> Result<(), QueueError> {
        let mut conn = self.commands.clone();
        let created: Result<(), redis::RedisError> =
            conn.xgroup_create_mkstream(key, GROUP, "0").await;
        match created {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// None: the group is missing.
    async fn read(
        &self,
        key: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Option<Vec<Delivery>>, QueueError> {
        let options = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(count)
            .block(block.as_millis() as usize);
        let mut conn = self.blocking.clone();
        let reply: Result<Option<StreamReadReply>, redis::RedisError> =
            conn.xread_options(&[key], &[">"], &options).await;
        let reply = match reply {
            Err(error) if error.code() == Some("NOGROUP") => return Ok(None),
            other => other?,
        };
        Ok(Some(
            reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
                .map(|entry| redis_delivery(entry, 1))
                .collect(),
        ))
    }

    /// None: the group is missing.
    async fn reclaim(
        &self,
        key: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Option<Vec<Delivery>>, QueueError> {
        let mut conn = self.commands.clone();
        let reply: Result<StreamAutoClaimReply, redis::RedisError> = conn
            .xautoclaim_options(
                key,
                GROUP,
                consumer,
                min_idle.as_millis() as usize,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await;
        let claimed = match reply {
            Ok(reply) => reply.claimed,
            Err(error) if error.code() == Some("NOGROUP") => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        // XAUTOCLAIM does not say how often each entry was delivered: ask the pending list.
        let counts = self.delivery_counts(key, &claimed).await;
        Ok(Some(
            claimed
                .into_iter()
                .map(|entry| {
                    let delivered = entry
                        .delivered_count
                        .or_else(|| counts.get(&entry.id).copied())
                        .unwrap_or(2);
                    redis_delivery(entry, delivered)
                })
                .collect(),
        ))
    }

    /// How often each of `entries` was delivered, from XPENDING; empty when that fails (the
    /// entries are claimed already: a reclaimed delivery then counts as a second one).
    async fn delivery_counts(
        &self,
        key: &str,
        entries: &[redis::streams::StreamId],
    ) -> HashMap<String, usize> {
        if entries.is_empty() {
            return HashMap::new();
        }
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.xpending_count(key, GROUP, &entry.id, &entry.id, 1);
        }
        let mut conn = self.commands.clone();
        let replies: Result<Vec<StreamPendingCountReply>, redis::RedisError> =
            pipe.query_async(&mut conn).await;
        match replies {
            Ok(replies) => replies
                .into_iter()
                .flat_map(|reply| reply.ids)
                .map(|pending| (pending.id, pending.times_delivered))
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "cannot read the delivery counts of reclaimed entries");
                HashMap::new()
            }
        }
    }

    async fn ack(&self, key: &str, ids: &[String]) -> Result<(), QueueError> {
        let mut conn = self.commands.clone();
        let _: i64 = conn.xack(key, GROUP, ids).await?;
        Ok(())
    }

    async fn entries_exist(&self, key: &str, ids: &[&str]) -> Result<Vec<bool>, QueueError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XRANGE")
                .arg(key)
                .arg(*id)
                .arg(*id)
                .arg("COUNT")
                .arg(1);
        }
        let mut conn = self.commands.clone();
        let replies: Vec<Vec<redis::Value>> = pipe.query_async(&mut conn).await?;
        Ok(replies
            .into_iter()
            .map(|entries| !entries.is_empty())
            .collect())
    }

    async fn reply(&self, key: &str, answer: &serde_json::Value) -> Result<(), QueueError> {
        let mut conn = self.commands.clone();
        redis::pipe()
            .rpush(key, answer.to_string())
            .ignore()
            .expire(key, REPLY_TTL_SECONDS)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn wait_reply(&self, key: &str, timeout: Duration) -> Result<Option<String>, QueueError> {
        // Many requests may wait at once: each on a connection of its own.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(timeout + Duration::from_secs(5)));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let popped: Option<(String, String)> = conn.blpop(key, timeout.as_secs_f64()).await?;
        Ok(popped.map(|(_, text)| text))
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.commands.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn pending_count(&self, key: &str) -> Result<u64, QueueError> {
        let mut conn = self.commands.clone();
        let reply: redis::streams::StreamPendingReply = conn.xpending(key, GROUP).await?;
        Ok(reply.count() as u64)
    }
}

fn redis_delivery(entry: redis::streams::StreamId, delivered: usize) -> Delivery {
    let field = entry.get::<String>("envelope");
    Delivery {
        envelope: envelope(field.as_deref()),
        id: entry.id,
        delivered,
    }
}

// ---------------------------------------------------------------------------------------------
// In-process

/// A stream entry id, `<ms>-<seq>` as in Redis: milliseconds since the epoch when it was
/// added, and a sequence number among the entries of that millisecond.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// The id after `self` at `now_ms`: never smaller, even when the clock goes back.
    fn next(self, now_ms: u64) -> EntryId {
        if now_ms > self.ms {
            EntryId { ms: now_ms, seq: 0 }
        } else if self.seq == u64::MAX {
            EntryId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            }
        } else {
            EntryId {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }

    /// Parses `<ms>-<seq>` or `<ms>` (Redis reads a missing sequence as `default_seq`: 0 for
    /// the start of a range, the largest for its end).
    fn parse(text: &str, default_seq: u64) -> Result<EntryId, QueueError> {
        let invalid =
            || QueueError::InProcess(format!("invalid stream id {text:?} (expected <ms>-<seq>)"));
        let number = |part: &str| -> Result<u64, QueueError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse::<u64>().map_err(|_| invalid())
        };
        match text.split_once('-') {
            Some((ms, seq)) => Ok(EntryId {
                ms: number(ms)?,
                seq: number(seq)?,
            }),
            None => Ok(EntryId {
                ms: number(text)?,
                seq: default_seq,
            }),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The in-process backend: every stream and reply list, behind one lock that no `await` ever
/// holds.
#[derive(Default)]
struct MemoryQueue {
    state: Mutex<MemoryState>,
    /// Woken (all waiters) whenever a reply is stored.
    replies_changed: Notify,
}

#[derive(Default)]
struct MemoryState {
    streams: HashMap<String, MemoryStream>,
    replies: HashMap<String, ReplyList>,
}

#[derive(Default)]
struct MemoryStream {
    /// Ordered by id; at most [`STREAM_MAX_LEN`].
    entries: VecDeque<MemoryEntry>,
    /// The last id handed out (it stays when its entry is trimmed).
    last_id: EntryId,
    /// The consumer group [`GROUP`], once created.
    group: Option<MemoryGroup>,
    /// Woken (all waiters) whenever an entry is added. Streams are never removed, so a waiter
    /// may keep it across the lock.
    added: Arc<Notify>,
}

struct MemoryEntry {
    id: EntryId,
    /// The `envelope` field.
    body: String,
}

#[derive(Default)]
struct MemoryGroup {
    /// The newest entry ever delivered to the group: `read` delivers entries after it.
    last_delivered: EntryId,
    /// Delivered, not yet acknowledged (the PEL), by id. Unlike Redis it does not record which
    /// consumer holds each entry: nothing in the API asks.
    pending: BTreeMap<EntryId, Pending>,
}

struct Pending {
    delivered_at: Instant,
    times_delivered: usize,
}

struct ReplyList {
    values: VecDeque<String>,
    expires_at: Instant,
}

impl MemoryStream {
    fn entry(&self, id: EntryId) -> Option<&MemoryEntry> {
        let index = self
            .entries
            .binary_search_by(|entry| entry.id.cmp(&id))
            .ok()?;
        self.entries.get(index)
    }
}

fn reply_ttl() -> Duration {
    Duration::from_secs(REPLY_TTL_SECONDS.unsigned_abs())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn no_group(key: &str) -> QueueError {
    QueueError::InProcess(format!(
        "NOGROUP no such key '{key}' or consumer group '{GROUP}'"
    ))
}

impl MemoryQueue {
    /// The queue every `memory://<name>` connection of this process shares. It lives as long as
    /// the process, as a Redis server outlives its clients.
    fn named(name: &str) -> Arc<MemoryQueue> {
        static NAMED: OnceLock<Mutex<HashMap<String, Arc<MemoryQueue>>>> = OnceLock::new();
        let mut named = NAMED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        named.entry(name.to_string()).or_default().clone()
    }

    /// The state. Nothing panics while holding the lock, but a poisoned lock still holds
    /// consistent data (every change is complete before anything that could fail), so take it.
    fn state(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, key: &str, body: String) -> String {
        let mut state = self.state();
        let stream = state.streams.entry(key.to_string()).or_default();
        let id = stream.last_id.next(unix_ms());
        stream.last_id = id;
        stream.entries.push_back(MemoryEntry { id, body });
        while stream.entries.len() > STREAM_MAX_LEN {
            stream.entries.pop_front();
        }
        stream.added.notify_waiters();
        id.to_string()
    }

    fn ensure_group(&self, key: &str) {
        let mut state = self.state();
        let stream = state.streams.entry(key.to_string()).or_default();
        stream.group.get_or_insert_with(MemoryGroup::default);
    }

    async fn read(&self, key: &str, count: usize, block: Duration) -> Vec<Delivery> {
        // None: no limit (a zero block, or one too far away to count).
        let deadline = if block.as_millis() == 0 {
            None
        } else {
            Instant::now().checked_add(block)
        };
        let limit = if count == 0 { usize::MAX } else { count };
        let added = {
            let state = self.state();
            match state.streams.get(key) {
                Some(stream) if stream.group.is_some() => stream.added.clone(),
                _ => {
                    drop(state);
                    // As Redis answers NOGROUP at once, and `read` then creates the group.
                    self.ensure_group(key);
                    return Vec::new();
                }
            }
        };
        loop {
            // Registered before looking, so a publish between the look and the wait still
            // wakes this reader (`notify_waiters` reaches every `Notified` already created).
            let woken = added.notified();
            let taken = self.take_new(key, limit, Instant::now());
            if !taken.is_empty() {
                return taken;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, woken).await.is_err() {
                        return Vec::new();
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Delivers up to `limit` entries after the group's last delivered id. Does not wait, so a
    /// cancelled `read` never loses entries.
    fn take_new(&self, key: &str, limit: usize, now: Instant) -> Vec<Delivery> {
        let mut state = self.state();
        let Some(stream) = state.streams.get_mut(key) else {
            return Vec::new();
        };
        let Some(group) = stream.group.as_mut() else {
            return Vec::new();
        };
        let start = stream
            .entries
            .partition_point(|entry| entry.id <= group.last_delivered);
        let mut taken = Vec::new();
        for entry in stream.entries.range(start..).take(limit) {
            group.last_delivered = entry.id;
            group.pending.insert(
                entry.id,
                Pending {
                    delivered_at: now,
                    times_delivered: 1,
                },
            );
            taken.push(Delivery {
                id: entry.id.to_string(),
                envelope: envelope(Some(&entry.body)),
                delivered: 1,
            });
        }
        taken
    }

    /// XAUTOCLAIM from `0-0`: looks at most `10 * count` pending entries, in id order. None:
    /// the group is missing.
    fn reclaim(
        &self,
        key: &str,
        min_idle: Duration,
        count: usize,
        now: Instant,
    ) -> Result<Option<Vec<Delivery>>, QueueError> {
        let mut state = self.state();
        let Some(stream) = state.streams.get_mut(key) else {
            return Ok(None);
        };
        let Some(group) = stream.group.as_mut() else {
            return Ok(None);
        };
        if count == 0 {
            return Err(QueueError::InProcess("COUNT must be > 0".to_string()));
        }
        let mut attempts = count.saturating_mul(10);
        let mut left = count;
        let mut trimmed = Vec::new();
        let mut claimed = Vec::new();
        for (id, pending) in group.pending.iter_mut() {
            if attempts == 0 || left == 0 {
                break;
            }
            attempts -= 1;
            let Some(entry) = stream
                .entries
                .binary_search_by(|entry| entry.id.cmp(id))
                .ok()
                .and_then(|index| stream.entries.get(index))
            else {
                // Trimmed while pending: Redis drops it from the pending list here.
                trimmed.push(*id);
                continue;
            };
            if now.saturating_duration_since(pending.delivered_at) < min_idle {
                continue;
            }
            pending.delivered_at = now;
            pending.times_delivered = pending.times_delivered.saturating_add(1);
            claimed.push(Delivery {
                id: id.to_string(),
                envelope: envelope(Some(&entry.body)),
                delivered: pending.times_delivered,
            });
            left -= 1;
        }
        for id in trimmed {
            group.pending.remove(&id);
        }
        Ok(Some(claimed))
    }

    fn ack(&self, key: &str, ids: &[String]) -> Result<(), QueueError> {
        // Every id is checked before any is acknowledged, as XACK does.
        let ids = ids
            .iter()
            .map(|id| EntryId::parse(id, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.state();
        if let Some(group) = state
            .streams
            .get_mut(key)
            .and_then(|stream| stream.group.as_mut())
        {
            for id in ids {
                group.pending.remove(&id);
            }
        }
        Ok(())
    }

    fn entries_exist(&self, key: &str, ids: &[&str]) -> Result<Vec<bool>, QueueError> {
        let ranges = ids
            .iter()
            .map(|id| Ok((EntryId::parse(id, 0)?, EntryId::parse(id, u64::MAX)?)))
            .collect::<Result<Vec<_>, QueueError>>()?;
        let state = self.state();
        let Some(stream) = state.streams.get(key) else {
            return Ok(vec![false; ids.len()]);
        };
        Ok(ranges
            .into_iter()
            .map(|(start, end)| {
                if start == end {
                    return stream.entry(start).is_some();
                }
                let first = stream.entries.partition_point(|entry| entry.id < start);
                stream
                    .entries
                    .get(first)
                    .is_some_and(|entry| entry.id <= end)
            })
            .collect())
    }

    fn pending_count(&self, key: &str) -> Result<u64, QueueError> {
        let state = self.state();
        let group = state
            .streams
            .get(key)
            .and_then(|stream| stream.group.as_ref())
            .ok_or_else(|| no_group(key))?;
        Ok(group.pending.len() as u64)
    }

    /// RPUSH and EXPIRE: the list's time to live starts again with each answer. Drops the
    /// lists that expired, so unanswered ids do not pile up.
    fn reply(&self, key: &str, text: String, now: Instant) {
        let mut state = self.state();
        state.replies.retain(|_, list| list.expires_at > now);
        let list = state
            .replies
            .entry(key.to_string())
            .or_insert_with(|| ReplyList {
                values: VecDeque::new(),
                expires_at: now,
            });
        list.values.push_back(text);
        list.expires_at = now + reply_ttl();
        drop(state);
        self.replies_changed.notify_waiters();
    }

    /// LPOP on a list that has not expired at `now`; an emptied list is removed.
    fn take_reply(&self, key: &str, now: Instant) -> Option<String> {
        let mut state = self.state();
        state.replies.retain(|_, list| list.expires_at > now);
        let list = state.replies.get_mut(key)?;
        let text = list.values.pop_front();
        if list.values.is_empty() {
            state.replies.remove(key);
        }
        text
    }

    async fn wait_reply(&self, key: &str, timeout: Duration) -> Option<String> {
        // None: no limit (a zero timeout, or one too far away to count).
        let deadline = if timeout.is_zero() {
            None
        } else {
            Instant::now().checked_add(timeout)
        };
        loop {
            let woken = self.replies_changed.notified();
            if let Some(text) = self.take_reply(key, Instant::now()) {
                return Some(text);
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, woken).await.is_err() {
                        return None;
                    }
                }
                None => woken.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_grow_even_when_the_clock_goes_back() {
        let id = EntryId { ms: 10, seq: 4 };
        assert_eq!(id.next(11), EntryId { ms: 11, seq: 0 });
        assert_eq!(id.next(10), EntryId { ms: 10, seq: 5 });
        assert_eq!(id.next(3), EntryId { ms: 10, seq: 5 });
        assert_eq!(id.to_string(), "10-4");
    }

    #[test]
    fn entry_ids_parse_like_redis() {
        assert!(matches!(
            EntryId::parse("17-3", 0),
            Ok(EntryId { ms: 17, seq: 3 })
        ));
        assert!(matches!(
            EntryId::parse("17", u64::MAX),
            Ok(EntryId {
                ms: 17,
                seq: u64::MAX
            })
        ));
        for bad in [
            "",
            "-",
            "a-1",
            "1-",
            "1-2-3",
            "+1",
            "-1",
            "99999999999999999999",
        ] {
            assert!(EntryId::parse(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replies_expire_and_are_dropped() {
        let queue = MemoryQueue::default();
        let now = Instant::now();
        queue.reply("a", "1".into(), now);
        queue.reply("a", "2".into(), now);
        assert_eq!(queue.take_reply("a", now).as_deref(), Some("1"));
        // The time to live runs from the last answer, like EXPIRE after each RPUSH.
        let later = now + reply_ttl() - Duration::from_millis(1);
        queue.reply("b", "3".into(), now);
        assert_eq!(queue.take_reply("a", later).as_deref(), Some("2"));
        assert_eq!(queue.take_reply("a", later), None);
        let expired = now + reply_ttl();
        assert_eq!(queue.take_reply("b", expired), None);
        // Expired lists are gone, not just hidden.
        queue.reply("c", "4".into(), expired);
        assert_eq!(queue.state().replies.len(), 1);
    }

    #[test]
    fn a_stream_keeps_its_last_entries() {
        let queue = MemoryQueue::default();
        let mut ids = Vec::new();
        for n in 0..STREAM_MAX_LEN + 3 {
            ids.push(queue.publish("s", n.to_string()));
        }
        let state = queue.state();
        let stream = &state.streams["s"];
        assert_eq!(stream.entries.len(), STREAM_MAX_LEN);
        assert_eq!(
            stream.entries.front().map(|entry| entry.id.to_string()),
            Some(ids[3].clone())
        );
    }
}
