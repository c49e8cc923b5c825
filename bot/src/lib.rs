//! The Countersign bot: chat adapters (Slack, Discord, local console), command parsing, the
//! approval flow and job signing. It holds the signing key and chat tokens, never database
//! credentials.
//!
//! Layout:
//! - [`command`]: what people type after `/query`, parsed the same for every chat adapter.
//! - [`chat`]: the [`chat::ChatAdapter`] trait the flow talks to, and the platform-independent
//!   events ([`chat::Inbound`]) adapters hand over.
//! - [`flow`]: the approval flow on the control store: one module per command, reactions, the
//!   root message, the upkeep loop.
//! - [`slack`]: the Slack adapter: Socket Mode and the HTTP Events API with signature checks.
//! - [`discord`]: the Discord adapter: the `/query` application command, threads from request
//!   messages, reactions through the gateway.
//! - [`console`]: the local console: a chat in the browser for `countersign dev`, same flow.
//! - [`automation`]: the authenticated HTTP endpoint scripts and scheduled jobs submit through.
//! - [`http`]: the HTTP server: health, readiness, metrics, Slack's HTTP endpoints, automation.
//! - [`metrics`]: Prometheus metrics.
#![forbid(unsafe_code)]

pub mod automation;
pub mod chat;
pub mod command;
pub mod console;
pub mod discord;
pub mod flow;
pub mod http;
pub mod metrics;
pub mod slack;

pub use countersign_shared as shared;
pub use flow::{Bot, BotConfig};
