//! Countersign's side of Discord's REST API, shared by the bot and the executor.
//!
//! The bot posts a request's card with a thread under it, seeds the approve/reject reactions,
//! updates the card as the request moves on, answers `/query` privately (defer, then edit the
//! original answer) and asks which roles a reviewer has; the executor posts results into the
//! request's thread through [`countersign_control::chat::ChatPoster`]. Both do it through one
//! cheaply cloned [`DiscordApi`], which sends serenity's requests. Receiving events (the
//! gateway) lives in the bot, on [`DiscordApi::gateway_http`].
//!
//! A request's conversation on Discord is a [`ReplyTo`](countersign_control::chat::ReplyTo)
//! of `{platform: "discord", channel: <parent channel id>, thread: <thread id>}`. The thread is
//! started from the card, and Discord gives such a thread the card's message id, so `thread`
//! also names the card to update ([`PostedCard::reply_to`]).
//!
//! # Layout
//! - [`client`]: [`DiscordApi`] and its builder, how a call is sent (through serenity's
//!   `Request` and, in production, its rate limiter), 429 handling, and the `ChatPoster`
//!   implementation.
//! - [`render`]: pure functions from [`RequestCard`](countersign_control::chat::RequestCard)
//!   and [`ThreadMessage`](countersign_control::chat::ThreadMessage) to message JSON (content
//!   and an embed), with markdown escaping, mentions, `allowed_mentions` and Discord's size
//!   limits; unit tested without a network.
//! - [`error`]: [`DiscordError`], which keeps "Discord said no" (with Discord's JSON error
//!   code), "rate limited" and "Discord could not be reached" apart.
//! - `members` (private): the short-lived cache behind [`DiscordApi::member_roles`].

#![forbid(unsafe_code)]

pub mod client;
pub mod error;
mod members;
pub mod render;

pub use client::{
    parse_id, DiscordApi, DiscordApiBuilder, PostedCard, DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_RATE_LIMIT_RETRIES, DEFAULT_REQUEST_TIMEOUT, PLATFORM, THREAD_AUTO_ARCHIVE_MINUTES,
};
pub use error::DiscordError;
pub use members::DEFAULT_MEMBER_CACHE_TTL;
