//! Countersign's durable control plane: what the bot and the executor share through the
//! control database and Redis, and the trait they post to chat through.
//!
//! The control database is the truth (DESIGN.md sections 2 and 3); Redis is transport only. It
//! has two backends, picked by the URL given to [`store::ControlStore::connect`]:
//! - PostgreSQL (`postgres://`), in production: every bot replica and executor shares it;
//! - SQLite (`sqlite:`), for `countersign dev`: the bot and the executor in one process on a
//!   machine without PostgreSQL. Transactions that read then write take the write lock first
//!   (`BEGIN IMMEDIATE`), so the claim-once and quorum guarantees hold there too.
//!
//! Every function of the modules below takes a [`store::ControlStore`] and runs its backend's
//! SQL.
//!
//! Layout:
//! - [`store`]: [`store::ControlStore`], the pool of either backend, and its migrations
//!   ([`migrate`]).
//! - [`audit_log`]: the append-only, hash-chained audit trail: entries are written inside the
//!   transaction of the transition they record, then sealed into the chain in batches.
//! - [`outbox`]: signed jobs in the outbox; claiming a job once (a conditional update), leases,
//!   outcomes, and what the reconciler re-publishes or declares unknown.
//! - [`requests`]: the bot's requests and approvals, each transition a conditional update with
//!   its audit entry.
//! - [`queue`]: Redis streams per target with a consumer group: publish, read, acknowledge,
//!   reclaim stuck deliveries; and the preflight request/reply channel.
//! - [`inbox`]: the bot's inbox: chat events stored before they are acknowledged, handled once
//!   across replicas, taken over when a replica dies.
//! - [`signals`]: the shutdown signals (SIGTERM, Ctrl-C) every binary stops on.
//! - [`secrets`]: secrets from the environment or mounted files, for the binaries.
//! - [`submit`]: the bot's side: write a job to the outbox and publish it; ask for a preflight.
//! - [`chat`]: where a request's thread is ([`chat::ReplyTo`]), the [`chat::ChatPoster`] trait
//!   and a recording implementation for tests.
#![forbid(unsafe_code)]

pub mod audit_log;
pub mod chat;
pub mod inbox;
pub mod migrate;
pub mod outbox;
pub mod queue;
pub mod requests;
pub mod secrets;
pub mod signals;
pub mod store;
pub mod submit;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    now_ms() / 1000
}
