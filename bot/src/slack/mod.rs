//! The Slack adapter.
//!
//! - [`adapter`]: [`adapter::SlackAdapter`], the flow's [`crate::chat::ChatAdapter`] on the
//!   Slack Web API client of `countersign-slack`.
//! - [`socket`]: Socket Mode (the default): the bot connects out to Slack, no inbound URL.
//! - [`events`]: the HTTP Events API and slash commands over HTTP, each request's signature
//!   checked ([`signature`]).
//! - [`convert`]: Slack's payloads turned into the flow's events.

pub mod adapter;
pub mod convert;
pub mod events;
pub mod signature;
pub mod socket;
