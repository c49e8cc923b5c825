//! Countersign's side of Slack's Web API, shared by the bot and the executor.
//!
//! The bot posts a request's card, seeds the approve/reject reactions, updates the card as the
//! request moves on, answers slash commands and asks who is in a user group; the executor posts
//! results into the request's thread through [`countersign_control::chat::ChatPoster`]. Both do
//! it through one cheaply cloned [`SlackApi`]. Receiving events (Socket Mode, HTTP) lives in the
//! bot; it builds its listener on [`SlackApi::client`].
//!
//! # Layout
//! - [`client`]: [`SlackApi`] and its builder, the connector that reaches real Slack over HTTPS
//!   or a fake over plain HTTP, and the `ChatPoster` implementation.
//! - [`render`]: pure functions from [`RequestCard`](countersign_control::chat::RequestCard) and
//!   [`ThreadMessage`](countersign_control::chat::ThreadMessage) to Block Kit, with mrkdwn
//!   escaping and Slack's size limits; unit tested without a network.
//! - [`error`]: [`SlackError`], which keeps "Slack said no" (with Slack's error code) apart from
//!   "Slack could not be reached".
//! - `groups` (private): the short-lived cache behind [`SlackApi::user_group_members`].

#![forbid(unsafe_code)]

pub mod client;
pub mod error;
mod groups;
pub mod render;

pub use client::{
    hyper_client, PostedMessage, SlackApi, SlackApiBuilder, SlackConnector, SlackHyperClient,
    DEFAULT_REQUEST_TIMEOUT, PLATFORM,
};
pub use error::SlackError;
pub use groups::DEFAULT_GROUP_CACHE_TTL;
