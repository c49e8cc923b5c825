//! Redis streams: how signed jobs and preflight requests travel to executors.
//!
//! Each target has a jobs stream (`<prefix>:jobs:<target>`) read by the consumer group
//! `executors`: each delivery goes to one executor, stays pending until acknowledged, and is
//! reclaimed by another executor when it sits unacknowledged too long (XAUTOCLAIM). Redis is
//! transport only: losing a stream loses nothing, because the outbox in PostgreSQL is re-published
//! by the reconciler. A read that finds the group gone (Redis restarted or flushed) creates it
//! again. Connections reconnect by themselves; callers retry a failed call after a pause.
//!
//! Preflight requests use a second stream per target (`<prefix>:preflight:<target>`), same
//! group; the answer goes to a list (`<prefix>:preflight-reply:<id>`) the bot waits on.

use std::time::Duration;

use countersign_shared::job::SignedJob;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;

/// The consumer group every executor joins.
pub const GROUP: &str = "executors";

/// Streams are trimmed to about this many entries (the outbox keeps the truth).
pub const STREAM_MAX_LEN: usize = 100_000;

/// How long a preflight reply waits in Redis for the bot to take it.
const REPLY_TTL_SECONDS: i64 = 60;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// One message read from a stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id (for acknowledgement).
    pub id: String,
    /// The signed envelope, or why the entry is not one.
    pub envelope: Result<SignedJob, String>,
    /// How many times Redis has delivered this entry (1 for a first delivery).
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

/// A connection to the streams.
///
/// Blocking reads (XREADGROUP BLOCK, BLPOP) hold their connection until they return, and every
/// command sent on a connection waits behind them, so each loop that blocks needs a connection of
/// its own: [`JobQueue::reader`] makes one. Other commands share one multiplexed connection.
#[derive(Clone)]
pub struct JobQueue {
    client: redis::Client,
    config: ConnectionManagerConfig,
    commands: ConnectionManager,
    blocking: ConnectionManager,
    prefix: String,
}

impl JobQueue {
    /// Connects to Redis. `prefix` starts every key (`countersign` in production; tests use
    /// their own).
    pub async fn connect(url: &str, prefix: &str) -> Result<JobQueue, QueueError> {
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
            client,
            config,
            commands,
            blocking,
            prefix: prefix.to_string(),
        })
    }

    /// The same queue with a blocking connection of its own, for a second reading loop.
    pub async fn reader(&self) -> Result<JobQueue, QueueError> {
        let blocking =
            ConnectionManager::new_with_config(self.client.clone(), self.config.clone()).await?;
        Ok(JobQueue {
            blocking,
            ..self.clone()
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

    /// Appends a signed envelope to a target's stream. Returns the entry id.
    pub async fn publish(
        &self,
        stream: Stream,
        target: &str,
        signed: &SignedJob,
    ) -> Result<String, QueueError> {
        let body = serde_json::to_string(signed).unwrap_or_default();
        let mut conn = self.commands.clone();
        let id: String = conn
            .xadd_maxlen(
                self.key(stream, target),
                redis::streams::StreamMaxlen::Approx(STREAM_MAX_LEN),
                "*",
                &[("envelope", body)],
            )
            .await?;
        Ok(id)
    }

    /// Creates the consumer group (and the stream) if missing.
    pub async fn ensure_group(&self, stream: Stream, target: &str) -> Result<(), QueueError> {
        let mut conn = self.commands.clone();
        let created: Result<(), redis::RedisError> = conn
            .xgroup_create_mkstream(self.key(stream, target), GROUP, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Reads new entries for `consumer`, waiting up to `block` for one. Re-creates the group
    /// when Redis lost it.
    pub async fn read(
        &self,
        stream: Stream,
        target: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let key = self.key(stream, target);
        let options = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(count)
            .block(block.as_millis() as usize);
        let mut conn = self.blocking.clone();
        let reply: Result<Option<StreamReadReply>, redis::RedisError> =
            conn.xread_options(&[&key], &[">"], &options).await;
        let reply = match reply {
            Err(error) if error.code() == Some("NOGROUP") => {
                self.ensure_group(stream, target).await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .map(|entry| delivery(entry, 1))
            .collect())
    }

    /// Takes over entries delivered to some consumer but not acknowledged for `min_idle`
    /// (their executor died or hung).
    pub async fn reclaim(
        &self,
        stream: Stream,
        target: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut conn = self.commands.clone();
        let reply: Result<StreamAutoClaimReply, redis::RedisError> = conn
            .xautoclaim_options(
                self.key(stream, target),
                GROUP,
                consumer,
                min_idle.as_millis() as usize,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await;
        match reply {
            Ok(reply) => Ok(reply
                .claimed
                .into_iter()
                .map(|entry| {
                    let delivered = entry.delivered_count.unwrap_or(2);
                    delivery(entry, delivered)
                })
                .collect()),
            Err(error) if error.code() == Some("NOGROUP") => {
                self.ensure_group(stream, target).await?;
                Ok(Vec::new())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Acknowledges entries: they will not be delivered again.
    pub async fn ack(
        &self,
        stream: Stream,
        target: &str,
        ids: &[String],
    ) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.commands.clone();
        let _: i64 = conn.xack(self.key(stream, target), GROUP, ids).await?;
        Ok(())
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
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XRANGE")
                .arg(&key)
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

    /// Stores a preflight answer for the bot to take.
    pub async fn reply(&self, id: &str, answer: &serde_json::Value) -> Result<(), QueueError> {
        let key = self.reply_key(id);
        let mut conn = self.commands.clone();
        redis::pipe()
            .rpush(&key, answer.to_string())
            .ignore()
            .expire(&key, REPLY_TTL_SECONDS)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Waits up to `timeout` for a preflight answer.
    pub async fn wait_reply(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>, QueueError> {
        // Many requests may wait at once: each on a connection of its own.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(timeout + Duration::from_secs(5)));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let popped: Option<(String, String)> = conn
            .blpop(self.reply_key(id), timeout.as_secs_f64())
            .await?;
        Ok(popped.and_then(|(_, text)| serde_json::from_str(&text).ok()))
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.commands.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Entries of a target's stream that are delivered and not yet acknowledged.
    pub async fn pending_count(&self, stream: Stream, target: &str) -> Result<u64, QueueError> {
        let mut conn = self.commands.clone();
        let reply: redis::streams::StreamPendingReply =
            conn.xpending(self.key(stream, target), GROUP).await?;
        Ok(reply.count() as u64)
    }
}

fn delivery(entry: redis::streams::StreamId, delivered: usize) -> Delivery {
    let envelope = match entry.get::<String>("envelope") {
        Some(text) => serde_json::from_str::<SignedJob>(&text)
            .map_err(|error| format!("the stream entry is not a signed envelope: {error}")),
        None => Err("the stream entry has no `envelope` field".to_string()),
    };
    Delivery {
        id: entry.id,
        envelope,
        delivered,
    }
}
