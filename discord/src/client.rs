//! [`DiscordApi`]: the REST calls Countersign makes, through serenity.
//!
//! # How a call is sent
//! Each call is a serenity [`Request`] (serenity's route, `Authorization: Bot <token>`, its
//! user agent), answered bodies are read with serenity's model types. What we do not use is
//! [`Http::request`]: it turns every non-2xx answer into `HttpError::UnsuccessfulRequest`,
//! whose `ErrorResponse` keeps only the status, the URL and the body parsed as
//! `{code, message, errors}`. A 429's `Retry-After` header and its body's `retry_after` and
//! `global` are dropped there (and since Discord's 429 body has no `code`, the decode fails and
//! the error reads `code: -1`, `"[Serenity] Could not decode json ..."`). So [`DiscordApi`]
//! sends the same `Request` itself and looks at the raw answer:
//!
//! - with a base URL (a fake Discord in tests), serenity's rate limiter is off (with it on,
//!   serenity ignores the proxy URL): the request is built with `Request::build` against the
//!   base URL and sent on the shared reqwest client;
//! - without one (production), it goes through serenity's own `Ratelimiter::perform`, which
//!   waits out route buckets and 429s that carry `Retry-After` by itself (as long as Discord
//!   asks; the request timeout bounds it), and hands back any other 429.
//!
//! A 429 that reaches us is waited out (its body's `retry_after`, else `Retry-After`, else
//! `X-RateLimit-Reset-After`, else one second) and the call is sent again, at most
//! [`DEFAULT_RATE_LIMIT_RETRIES`] times and only when the wait is at most
//! [`DEFAULT_MAX_RETRY_WAIT`] (both settable); otherwise it fails at once with
//! [`DiscordError::RateLimited`] saying how long Discord asked for. A 429 means Discord did not
//! act on the request, so sending it again cannot post twice. Timeouts are not retried: a
//! timed-out call may have taken effect.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use countersign_control::chat::{
    ChatError, ChatPoster, PostFuture, ReplyTo, RequestCard, ThreadMessage,
};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serenity::http::{Http, HttpBuilder, LightMethod, Request, Route, StatusCode};
use serenity::model::channel::{GuildChannel, Message, ReactionType};
use serenity::model::guild::Member;
use serenity::model::id::{ApplicationId, ChannelId, GuildId, InteractionId, MessageId, UserId};

use crate::error::{DiscordError, THREAD_ALREADY_CREATED};
use crate::members::{MemberCache, DEFAULT_MEMBER_CACHE_TTL};
use crate::render::{card_message, note_message, thread_message, thread_name, DiscordMessage};

/// The `platform` of a [`ReplyTo`] this crate serves.
pub const PLATFORM: &str = "discord";

/// How long one attempt of a call may wait for Discord by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a call that Discord answered with 429 is sent again by default.
pub const DEFAULT_RATE_LIMIT_RETRIES: u32 = 3;

/// The longest 429 wait that is waited out by default; a longer one fails at once.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// How long a thread under a card stays open without activity, in minutes (Discord's
/// longest: a week). Posting into an archived thread reopens it anyway.
pub const THREAD_AUTO_ARCHIVE_MINUTES: u16 = 10_080;

/// The wait assumed when a 429 does not say how long.
const FALLBACK_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Interaction response type 5: "thinking...", answered later by editing the original.
const DEFERRED_CHANNEL_MESSAGE: u8 = 5;

/// Message flag 64: only the person who used the command sees the answer.
const EPHEMERAL: u64 = 64;

/// A card as Discord knows it once posted, with the thread under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostedCard {
    /// The channel the card was posted in (the thread's parent).
    pub channel_id: ChannelId,
    /// The card's message; [`DiscordApi::update_card`] edits it.
    pub message_id: MessageId,
    /// The thread started from the card. Discord gives a thread started from a message that
    /// message's id, so this is `message_id` as a channel id.
    pub thread_id: ChannelId,
}

impl PostedCard {
    /// Where the request's conversation is: `{platform: "discord", channel: <parent channel
    /// id>, thread: <thread id>}`. Since the thread id is the card's message id, a `ReplyTo`
    /// also names the card: `update_card(channel, thread)`.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            platform: PLATFORM.to_string(),
            channel: self.channel_id.to_string(),
            thread: self.thread_id.to_string(),
        }
    }
}

/// Parses a Discord id (a snowflake: a non-zero `u64` in decimal), e.g. from a
/// [`ReplyTo`], into any of serenity's id types.
pub fn parse_id<T: From<NonZeroU64>>(text: &str) -> Result<T, DiscordError> {
    text.trim()
        .parse::<NonZeroU64>()
        .map(T::from)
        .map_err(|_| DiscordError::Config(format!("`{text}` is not a Discord id")))
}

/// Settings for a [`DiscordApi`]; start with [`DiscordApi::builder`].
#[derive(Clone)]
pub struct DiscordApiBuilder {
    /// The bot token (with or without the `Bot ` prefix).
    bot_token: String,
    /// Where the REST API is, when not `https://discord.com`.
    base_url: Option<String>,
    /// How long a member's roles are trusted.
    member_cache_ttl: Duration,
    /// How long one attempt may wait for Discord.
    request_timeout: Duration,
    /// How many times a 429 is waited out.
    rate_limit_retries: u32,
    /// The longest 429 wait that is waited out.
    max_retry_wait: Duration,
}

impl std::fmt::Debug for DiscordApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordApiBuilder")
            .field("bot_token", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("member_cache_ttl", &self.member_cache_ttl)
            .field("request_timeout", &self.request_timeout)
            .field("rate_limit_retries", &self.rate_limit_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish()
    }
}

impl DiscordApiBuilder {
    /// Talks to the REST API under `url` (scheme, host and port, e.g. `http://127.0.0.1:PORT`
    /// for a fake that serves `/api/v10/...`) instead of `https://discord.com`. This is
    /// serenity's proxy setting, and it turns serenity's rate limiter off (with it on, serenity
    /// ignores the proxy); 429s are still waited out and retried here.
    pub fn base_url(mut self, url: impl Into<String>) -> DiscordApiBuilder {
        self.base_url = Some(url.into());
        self
    }

    /// Keeps a member's roles for `ttl` (default 60 s; zero asks Discord every time).
    pub fn member_cache_ttl(mut self, ttl: Duration) -> DiscordApiBuilder {
        self.member_cache_ttl = ttl;
        self
    }

    /// Gives up on one attempt of a call after `timeout` (default 30 s) with
    /// [`DiscordError::Unreachable`].
    pub fn request_timeout(mut self, timeout: Duration) -> DiscordApiBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Sends a call Discord answered with 429 again at most `retries` times (default 3; zero
    /// fails at the first 429).
    pub fn rate_limit_retries(mut self, retries: u32) -> DiscordApiBuilder {
        self.rate_limit_retries = retries;
        self
    }

    /// Waits out a 429 only when Discord asks for at most `wait` (default 10 s); a longer
    /// wait fails at once with [`DiscordError::RateLimited`].
    pub fn max_retry_wait(mut self, wait: Duration) -> DiscordApiBuilder {
        self.max_retry_wait = wait;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<DiscordApi, DiscordError> {
        let token = self.bot_token.trim();
        let untrimmed = self.bot_token.trim_start();
        if untrimmed
            .strip_prefix("Bot ")
            .unwrap_or(untrimmed)
            .trim()
            .is_empty()
        {
            return Err(DiscordError::Config("the bot token is empty".into()));
        }
        let base_url = match self.base_url {
            None => None,
            Some(url) => Some(checked_base_url(&url)?),
        };
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .build()
            .map_err(|_| DiscordError::Config("the HTTP client could not be built".into()))?;
        let http = http_for(token, &client, base_url.as_deref());
        Ok(DiscordApi {
            inner: Arc::new(Inner {
                http: Arc::new(http),
                client,
                base_url,
                members: MemberCache::new(self.member_cache_ttl),
                request_timeout: self.request_timeout,
                rate_limit_retries: self.rate_limit_retries,
                max_retry_wait: self.max_retry_wait,
            }),
        })
    }
}

/// A base URL serenity can put in place of `https://discord.com`: http or https, no query,
/// without a trailing `/`.
fn checked_base_url(url: &str) -> Result<String, DiscordError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|_| DiscordError::Config("the Discord base URL is not a URL".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(DiscordError::Config(format!(
            "the Discord base URL must be http or https, not {}",
            parsed.scheme()
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(DiscordError::Config(
            "the Discord base URL must not have a query or fragment".into(),
        ));
    }
    Ok(url.trim().trim_end_matches('/').to_string())
}

/// serenity's `Http` for `token` on `client`: against `base_url` with its rate limiter off, or
/// against Discord with its rate limiter on.
fn http_for(token: &str, client: &reqwest::Client, base_url: Option<&str>) -> Http {
    let builder = HttpBuilder::new(token).client(client.clone());
    match base_url {
        Some(url) => builder.proxy(url).ratelimiter_disabled(true).build(),
        None => builder.build(),
    }
}

/// Countersign's calls to Discord's REST API with the bot token. Cheap to clone: clones share
/// serenity's `Http` (and its rate limiter), the connection pool and the member cache.
#[derive(Clone)]
pub struct DiscordApi {
    /// The shared state.
    inner: Arc<Inner>,
}

/// What clones of a [`DiscordApi`] share.
struct Inner {
    /// serenity's client: the token, the base URL, the rate limiter (in production).
    http: Arc<Http>,
    /// The reqwest client inside `http`, which serenity keeps private; we send on it when the
    /// rate limiter is off.
    client: reqwest::Client,
    /// The base URL when not Discord's.
    base_url: Option<String>,
    /// Members' roles, briefly.
    members: MemberCache,
    /// How long one attempt may wait for Discord.
    request_timeout: Duration,
    /// How many times a 429 is waited out.
    rate_limit_retries: u32,
    /// The longest 429 wait that is waited out.
    max_retry_wait: Duration,
}

impl std::fmt::Debug for DiscordApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordApi")
            .field("bot_token", &"<redacted>")
            .field("base_url", &self.inner.base_url)
            .field("rate_limiter", &self.inner.http.ratelimiter.is_some())
            .finish_non_exhaustive()
    }
}

/// A 429 as Discord describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RateLimit {
    /// How long to wait.
    retry_after: Duration,
    /// Whether it is the bot's global limit.
    global: bool,
}

impl RateLimit {
    /// Reads a 429: the body's `retry_after` (seconds, fractional) and `global`, else the
    /// `Retry-After`, `X-RateLimit-Reset-After` and `X-RateLimit-Global` headers.
    fn read(headers: &HeaderMap, body: &[u8]) -> RateLimit {
        #[derive(Deserialize)]
        struct Body {
            retry_after: Option<f64>,
            #[serde(default)]
            global: bool,
        }
        let body = serde_json::from_slice::<Body>(body).ok();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        };
        let seconds = |text: &str| text.parse::<f64>().ok();
        let retry_after = body
            .as_ref()
            .and_then(|body| body.retry_after)
            .or_else(|| header("retry-after").and_then(seconds))
            .or_else(|| header("x-ratelimit-reset-after").and_then(seconds))
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .unwrap_or(FALLBACK_RETRY_AFTER);
        let global = body.is_some_and(|body| body.global)
            || header("x-ratelimit-global").is_some()
            || header("x-ratelimit-scope") == Some("global");
        RateLimit {
            retry_after,
            global,
        }
    }
}

impl DiscordApi {
    /// A client for `bot_token` against `https://discord.com` (serenity's rate limiter on), or
    /// against `base_url` when given (rate limiter off; see [`DiscordApiBuilder::base_url`]).
    pub fn new(
        bot_token: impl Into<String>,
        base_url: Option<&str>,
    ) -> Result<DiscordApi, DiscordError> {
        let mut builder = DiscordApi::builder(bot_token);
        if let Some(url) = base_url {
            builder = builder.base_url(url);
        }
        builder.build()
    }

    /// Settings for a client with `bot_token`: Discord itself, a 60 s member cache, 30 s
    /// timeouts, up to 3 retries of 429s that ask for at most 10 s.
    pub fn builder(bot_token: impl Into<String>) -> DiscordApiBuilder {
        DiscordApiBuilder {
            bot_token: bot_token.into(),
            base_url: None,
            member_cache_ttl: DEFAULT_MEMBER_CACHE_TTL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            rate_limit_retries: DEFAULT_RATE_LIMIT_RETRIES,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
        }
    }

    /// serenity's `Http` this client sends with (same token, base URL and rate limiter), for
    /// serenity calls of the bot's own (registering the `/query` command, ...).
    pub fn http(&self) -> Arc<Http> {
        self.inner.http.clone()
    }

    /// A new serenity `Http` configured like this client's (token, base URL, rate limiter on or
    /// off) on the same connection pool, for the bot's gateway client:
    /// `ClientBuilder::new_with_http(api.gateway_http(), intents)`. serenity takes the `Http`
    /// by value there, so it cannot be the `Arc` of [`DiscordApi::http`]; its rate limiter is
    /// its own.
    pub fn gateway_http(&self) -> Http {
        http_for(
            self.inner.http.token(),
            &self.inner.client,
            self.inner.base_url.as_deref(),
        )
    }

    /// Posts a request's card in `channel_id` and starts a thread from it (`query <request
    /// id>`), where the request's conversation continues. If the thread cannot be made, the
    /// card is deleted again (best effort) so that trying again does not leave a second card.
    pub async fn post_card(
        &self,
        channel_id: ChannelId,
        card: &RequestCard,
    ) -> Result<PostedCard, DiscordError> {
        let posted = self
            .create_message("messages.create", channel_id, &card_message(card))
            .await?;
        let thread_id = match self
            .create_thread(channel_id, posted.id, &thread_name(card))
            .await
        {
            Ok(thread_id) => thread_id,
            Err(error) => {
                if let Err(cleanup) = self.delete_message(channel_id, posted.id).await {
                    tracing::warn!(
                        channel_id = %channel_id,
                        message_id = %posted.id,
                        error = %cleanup,
                        "could not delete a card whose thread failed"
                    );
                }
                return Err(error);
            }
        };
        tracing::debug!(
            channel_id = %channel_id,
            message_id = %posted.id,
            thread_id = %thread_id,
            request_id = %card.request_id,
            "posted a card"
        );
        Ok(PostedCard {
            channel_id,
            message_id: posted.id,
            thread_id,
        })
    }

    /// Starts a public thread named `name` from the message `message_id` in `channel_id` and
    /// returns its id (the message's id). A message that already has a thread counts as
    /// success, so the step can be retried.
    pub async fn create_thread(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        name: &str,
    ) -> Result<ChannelId, DiscordError> {
        const ACTION: &str = "threads.create";
        #[derive(Serialize)]
        struct CreateThread<'a> {
            name: &'a str,
            auto_archive_duration: u16,
        }
        let body = json_body(&CreateThread {
            name,
            auto_archive_duration: THREAD_AUTO_ARCHIVE_MINUTES,
        })?;
        let request = Request::new(
            Route::ChannelMessageThreads {
                channel_id,
                message_id,
            },
            LightMethod::Post,
        )
        .body(Some(body));
        match self.call(ACTION, request).await {
            Ok(answer) => Ok(decode::<GuildChannel>(ACTION, &answer)?.id),
            Err(error) if error.code() == Some(THREAD_ALREADY_CREATED) => {
                Ok(ChannelId::new(message_id.get()))
            }
            Err(error) => Err(error),
        }
    }

    /// Replaces the card `message_id` in `channel_id` (the state changed, an approval
    /// arrived). With a [`ReplyTo`], that is `(channel, thread)`.
    pub async fn update_card(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        card: &RequestCard,
    ) -> Result<(), DiscordError> {
        let request = Request::new(
            Route::ChannelMessage {
                channel_id,
                message_id,
            },
            LightMethod::Patch,
        )
        .body(Some(json_body(&card_message(card))?));
        self.call("messages.edit", request).await?;
        tracing::debug!(
            channel_id = %channel_id,
            message_id = %message_id,
            request_id = %card.request_id,
            "updated a card"
        );
        Ok(())
    }

    /// Posts `message` into the thread `thread_id` (a result summary as an embed, a note as
    /// plain content); returns the new message's id.
    pub async fn post_in_thread(
        &self,
        thread_id: ChannelId,
        message: &ThreadMessage,
    ) -> Result<MessageId, DiscordError> {
        let posted = self
            .create_message("messages.create", thread_id, &thread_message(message))
            .await?;
        tracing::debug!(thread_id = %thread_id, message_id = %posted.id, "posted in a thread");
        Ok(posted.id)
    }

    /// Adds the bot's reaction `emoji` (Unicode such as `✅`, or a custom emoji as
    /// `<:name:id>`) to the message. Adding a reaction the bot already added succeeds, so
    /// seeding can be retried.
    pub async fn add_reaction(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        emoji: &str,
    ) -> Result<(), DiscordError> {
        let reaction = ReactionType::try_from(emoji.trim())
            .map_err(|_| DiscordError::Config(format!("`{emoji}` is not an emoji")))?;
        // Percent-encoded for the path, as serenity's own `create_reaction` does.
        let data = reaction.as_data();
        let request = Request::new(
            Route::ChannelMessageReactionMe {
                channel_id,
                message_id,
                reaction: &data,
            },
            LightMethod::Put,
        );
        self.call("reactions.add", request).await?;
        Ok(())
    }

    /// Acknowledges an interaction (a `/query` command) within Discord's 3 seconds with a
    /// deferred answer ("thinking..."), only visible to its user when `ephemeral`. Answer it
    /// later with [`DiscordApi::edit_original`]. The interaction `token` is a credential: it
    /// is never logged or put in an error.
    pub async fn defer(
        &self,
        interaction_id: InteractionId,
        token: &str,
        ephemeral: bool,
    ) -> Result<(), DiscordError> {
        let body = if ephemeral {
            serde_json::json!({ "type": DEFERRED_CHANNEL_MESSAGE, "data": { "flags": EPHEMERAL } })
        } else {
            serde_json::json!({ "type": DEFERRED_CHANNEL_MESSAGE })
        };
        let request = Request::new(
            Route::InteractionResponse {
                interaction_id,
                token,
            },
            LightMethod::Post,
        )
        .body(Some(json_body(&body)?));
        self.call("interactions.defer", request).await?;
        Ok(())
    }

    /// Replaces a deferred interaction's answer with `text` (our own text, rendered as by
    /// [`note_text`](crate::render::note_text)); it stays as private as the deferral was.
    pub async fn edit_original(
        &self,
        application_id: ApplicationId,
        token: &str,
        text: &str,
    ) -> Result<(), DiscordError> {
        let request = Request::new(
            Route::WebhookOriginalInteractionResponse {
                application_id,
                token,
            },
            LightMethod::Patch,
        )
        .body(Some(json_body(&note_message(text))?));
        self.call("interactions.edit_original", request).await?;
        Ok(())
    }

    /// The role ids `user_id` has in `guild_id`, through a short cache: within the TTL,
    /// repeated and concurrent lookups of a member make one `GET /guilds/{id}/members/{id}`.
    /// Failures are not cached; a user who is not a member is refused with
    /// [`UNKNOWN_MEMBER`](crate::error::UNKNOWN_MEMBER).
    pub async fn member_roles(
        &self,
        guild_id: GuildId,
        user_id: UserId,
    ) -> Result<Vec<String>, DiscordError> {
        const ACTION: &str = "members.get";
        self.inner
            .members
            .get_or_fetch(guild_id, user_id, || async {
                let request =
                    Request::new(Route::GuildMember { guild_id, user_id }, LightMethod::Get);
                let answer = self.call(ACTION, request).await?;
                let member: Member = decode(ACTION, &answer)?;
                tracing::debug!(
                    guild_id = %guild_id,
                    user_id = %user_id,
                    roles = member.roles.len(),
                    "fetched a member's roles"
                );
                Ok(member.roles.iter().map(ToString::to_string).collect())
            })
            .await
    }

    /// Posts `message` in `channel_id`.
    async fn create_message(
        &self,
        action: &'static str,
        channel_id: ChannelId,
        message: &DiscordMessage,
    ) -> Result<Message, DiscordError> {
        let request = Request::new(Route::ChannelMessages { channel_id }, LightMethod::Post)
            .body(Some(json_body(message)?));
        let answer = self.call(action, request).await?;
        decode(action, &answer)
    }

    /// Deletes one of the bot's messages.
    async fn delete_message(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<(), DiscordError> {
        let request = Request::new(
            Route::ChannelMessage {
                channel_id,
                message_id,
            },
            LightMethod::Delete,
        );
        self.call("messages.delete", request).await?;
        Ok(())
    }

    /// Sends `request`, waiting out and retrying 429s within the bounds set; returns the
    /// answer's body on success.
    async fn call(
        &self,
        action: &'static str,
        request: Request<'_>,
    ) -> Result<Vec<u8>, DiscordError> {
        let mut retries = 0u32;
        loop {
            let (status, headers, body) = self.attempt(action, request.clone()).await?;
            if status.is_success() {
                return Ok(body);
            }
            if status != StatusCode::TOO_MANY_REQUESTS {
                return Err(DiscordError::from_status(action, status, &body));
            }
            let limit = RateLimit::read(&headers, &body);
            if retries >= self.inner.rate_limit_retries
                || limit.retry_after > self.inner.max_retry_wait
            {
                return Err(DiscordError::RateLimited {
                    action,
                    retry_after: limit.retry_after,
                    global: limit.global,
                });
            }
            retries += 1;
            tracing::warn!(
                action,
                retry_after_ms = u64::try_from(limit.retry_after.as_millis()).unwrap_or(u64::MAX),
                global = limit.global,
                retry = retries,
                "Discord rate limited a call; waiting before sending it again"
            );
            tokio::time::sleep(limit.retry_after).await;
        }
    }

    /// One exchange with Discord, bounded by the request timeout: the status, headers and body.
    async fn attempt(
        &self,
        action: &'static str,
        request: Request<'_>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), DiscordError> {
        let inner = &self.inner;
        let exchange = async {
            let response = match &inner.http.ratelimiter {
                Some(limiter) => limiter
                    .perform(request)
                    .await
                    .map_err(|error| DiscordError::from_serenity(action, error))?,
                None => {
                    let built = request
                        .build(
                            &inner.client,
                            inner.http.token(),
                            inner.http.proxy.as_deref(),
                        )
                        .map_err(|error| DiscordError::from_serenity(action, error))?
                        .build()
                        .map_err(|error| DiscordError::from_reqwest(action, error))?;
                    inner
                        .client
                        .execute(built)
                        .await
                        .map_err(|error| DiscordError::from_reqwest(action, error))?
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|error| DiscordError::from_reqwest(action, error))?;
            Ok((status, headers, body.to_vec()))
        };
        match tokio::time::timeout(inner.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(DiscordError::timed_out(action, inner.request_timeout)),
        }
    }
}

/// A JSON request body.
fn json_body(value: &impl Serialize) -> Result<Vec<u8>, DiscordError> {
    serde_json::to_vec(value)
        .map_err(|error| DiscordError::Config(format!("a request body did not serialize: {error}")))
}

/// An answer's body read as serenity's model type `T`.
fn decode<T: DeserializeOwned>(action: &'static str, body: &[u8]) -> Result<T, DiscordError> {
    serde_json::from_slice(body).map_err(|error| DiscordError::unexpected(action, &error))
}

/// Posts into a request's Discord thread: `to.thread` is the thread's channel id (`to.channel`,
/// its parent, is not needed to post).
impl ChatPoster for DiscordApi {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            if to.platform != PLATFORM {
                return Err(ChatError::UnknownPlatform(to.platform.clone()));
            }
            let thread_id: ChannelId =
                parse_id(&to.thread).map_err(|error| ChatError::Failed(error.to_string()))?;
            self.post_in_thread(thread_id, message)
                .await
                .map(|_| ())
                .map_err(|error| ChatError::Failed(error.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_429_is_read_from_the_body_first_then_the_headers() {
        let body = br#"{"message":"You are being rate limited.","retry_after":0.25,"global":true}"#;
        assert_eq!(
            RateLimit::read(&headers(&[("retry-after", "1")]), body),
            RateLimit {
                retry_after: Duration::from_millis(250),
                global: true
            }
        );
        assert_eq!(
            RateLimit::read(
                &headers(&[("retry-after", "2"), ("x-ratelimit-global", "true")]),
                b""
            ),
            RateLimit {
                retry_after: Duration::from_secs(2),
                global: true
            }
        );
        assert_eq!(
            RateLimit::read(
                &headers(&[
                    ("x-ratelimit-reset-after", "0.5"),
                    ("x-ratelimit-scope", "user")
                ]),
                b"<html>"
            ),
            RateLimit {
                retry_after: Duration::from_millis(500),
                global: false
            }
        );
        assert_eq!(
            RateLimit::read(&HeaderMap::new(), br#"{"retry_after":-3}"#).retry_after,
            FALLBACK_RETRY_AFTER
        );
    }

    #[test]
    fn ids_parse_as_snowflakes_only() {
        let id: ChannelId = parse_id("80351110224678912").expect("id");
        assert_eq!(id.get(), 80_351_110_224_678_912);
        assert!(parse_id::<ChannelId>("0").is_err());
        assert!(parse_id::<ChannelId>("-1").is_err());
        assert!(parse_id::<ChannelId>("1700000000.000100").is_err());
    }

    #[test]
    fn a_reply_to_names_the_parent_channel_and_the_thread() {
        let posted = PostedCard {
            channel_id: ChannelId::new(6000),
            message_id: MessageId::new(8001),
            thread_id: ChannelId::new(8001),
        };
        assert_eq!(
            posted.reply_to(),
            ReplyTo {
                platform: "discord".into(),
                channel: "6000".into(),
                thread: "8001".into(),
            }
        );
    }

    #[test]
    fn base_urls_are_checked_and_tokens_never_show() {
        assert!(matches!(
            DiscordApi::new("t", Some("ftp://example.com")),
            Err(DiscordError::Config(_))
        ));
        assert!(matches!(
            DiscordApi::new("t", Some("not a url")),
            Err(DiscordError::Config(_))
        ));
        assert!(matches!(
            DiscordApi::new("Bot  ", None),
            Err(DiscordError::Config(_))
        ));
        let api = DiscordApi::new("secret-token-1", Some("http://127.0.0.1:9/")).expect("client");
        let shown = format!("{api:?} {:?}", DiscordApi::builder("secret-token-1"));
        assert!(!shown.contains("secret-token"), "{shown}");
        assert_eq!(api.http().proxy.as_deref(), Some("http://127.0.0.1:9"));
        assert!(api.http().ratelimiter.is_none());
        assert!(api.gateway_http().ratelimiter.is_none());
        assert_eq!(api.gateway_http().token(), "Bot secret-token-1");
        let production = DiscordApi::new("secret-token-1", None).expect("client");
        assert!(production.http().ratelimiter.is_some());
        assert!(production.http().proxy.is_none());
    }
}
