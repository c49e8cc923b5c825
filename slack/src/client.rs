//! [`SlackApi`]: the Web API calls Countersign makes, over slack-morphism.
//!
//! One connector type, [`SlackConnector`] (slack-morphism's `SlackClientHyperConnector` over
//! hyper-rustls's `HttpsConnector<HttpConnector>`), serves both real Slack (HTTPS only, the
//! connector slack-morphism builds itself) and a local fake (`http://127.0.0.1:PORT/api`, the
//! same connector built to allow plain HTTP). So the bot's Socket Mode listener can name one
//! client type, [`SlackHyperClient`], whichever it talks to.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use countersign_control::chat::{
    ChatError, ChatPoster, PostFuture, ReplyTo, RequestCard, ThreadMessage,
};
use serde::Serialize;
use slack_morphism::prelude::{
    SlackApiChatPostEphemeralRequest, SlackApiChatPostMessageRequest, SlackApiChatUpdateRequest,
    SlackApiPostWebhookMessageResponse, SlackApiReactionsAddRequest,
    SlackApiUserGroupsUsersListRequest, SlackBlock, SlackChannelId, SlackMessageContent,
    SlackReactionName, SlackTs, SlackUserGroupId, SlackUserId,
};
use slack_morphism::{
    ClientResult, SlackApiToken, SlackApiTokenValue, SlackClient, SlackClientApiCallContext,
    SlackClientHttpConnector, SlackClientSession,
};

use crate::error::SlackError;
use crate::groups::{GroupCache, DEFAULT_GROUP_CACHE_TTL};
use crate::render::{card_blocks, note_text, thread_blocks};

/// The Slack client type the bot's Socket Mode listener takes (as `Arc<SlackHyperClient>`).
/// It is slack-morphism's own `SlackHyperClient`, so every slack-morphism API that names that
/// type accepts it.
pub type SlackHyperClient = slack_morphism::hyper_tokio::SlackHyperClient;

/// The HTTP connector inside [`SlackHyperClient`]: slack-morphism's hyper connector over
/// `hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>`.
pub type SlackConnector = slack_morphism::hyper_tokio::SlackClientHyperHttpsConnector;

/// The `platform` of a [`ReplyTo`] this crate serves.
pub const PLATFORM: &str = "slack";

/// How long one call may wait for Slack by default (slack-morphism's connector has no timeout
/// of its own, so a half-open connection would otherwise hang a post forever).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest text we send as a plain message (ephemeral replies); Slack advises under 4,000.
const PLAIN_TEXT_MAX: usize = 4000;

/// A root message as Slack knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    /// The channel id Slack posted into (Slack answers with the id even when given a name).
    pub channel: String,
    /// The message's `ts`: its id in the channel, and the thread's id for replies.
    pub ts: String,
}

/// Builds the slack-morphism client: with no `api_url`, slack-morphism's HTTPS-only connector
/// to `https://slack.com/api`; with one (a fake Slack such as `http://127.0.0.1:PORT/api/`), a
/// connector that also speaks plain HTTP, pointed there. A trailing `/` is dropped, since
/// slack-morphism adds its own before the method name.
pub fn hyper_client(api_url: Option<&str>) -> Result<Arc<SlackHyperClient>, SlackError> {
    let connector = match api_url {
        None => SlackConnector::new()
            .map_err(|error| SlackError::Config(format!("no TLS root certificates: {error}")))?,
        Some(api_url) => {
            let parsed = url::Url::parse(api_url).map_err(|error| {
                SlackError::Config(format!("the Slack API URL is not a URL: {error}"))
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let https = match parsed.scheme() {
                "https" => hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(provider)
                    .map_err(|error| {
                        SlackError::Config(format!("no TLS root certificates: {error}"))
                    })?
                    .https_only()
                    .enable_http2()
                    .build(),
                "http" => {
                    // Plain HTTP needs no roots, but a `response_url` may still be HTTPS: use
                    // the system's roots when there are any.
                    let builder = hyper_rustls::HttpsConnectorBuilder::new();
                    let builder = match builder.with_provider_and_native_roots(provider.clone()) {
                        Ok(builder) => builder,
                        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                            .with_tls_config(no_roots_tls_config(provider)?),
                    };
                    builder.https_or_http().enable_http2().build()
                }
                other => {
                    return Err(SlackError::Config(format!(
                        "the Slack API URL must be http or https, not {other}"
                    )))
                }
            };
            SlackConnector::with_connector(https).with_slack_api_url(api_url.trim_end_matches('/'))
        }
    };
    Ok(Arc::new(SlackClient::new(connector)))
}

/// A TLS configuration that trusts nothing: for a plain-HTTP fake on a machine without root
/// certificates.
fn no_roots_tls_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ClientConfig, SlackError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SlackError::Config(format!("TLS setup failed: {error}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// Settings for a [`SlackApi`]; start with [`SlackApi::builder`].
#[derive(Clone)]
pub struct SlackApiBuilder {
    /// The bot token (`xoxb-...`).
    bot_token: String,
    /// Where the Web API is, when not `https://slack.com/api`.
    api_url: Option<String>,
    /// How long a user group's members are trusted.
    group_cache_ttl: Duration,
    /// How long one call may wait for Slack.
    request_timeout: Duration,
}

impl std::fmt::Debug for SlackApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApiBuilder")
            .field("bot_token", &"<redacted>")
            .field("api_url", &self.api_url)
            .field("group_cache_ttl", &self.group_cache_ttl)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl SlackApiBuilder {
    /// Talks to the Web API at `url` (e.g. `http://127.0.0.1:PORT/api/` for a fake) instead of
    /// `https://slack.com/api`.
    pub fn api_url(mut self, url: impl Into<String>) -> SlackApiBuilder {
        self.api_url = Some(url.into());
        self
    }

    /// Keeps a user group's members for `ttl` (default 60 s; zero asks Slack every time).
    pub fn group_cache_ttl(mut self, ttl: Duration) -> SlackApiBuilder {
        self.group_cache_ttl = ttl;
        self
    }

    /// Gives up on a call after `timeout` (default 30 s) with [`SlackError::Unreachable`].
    pub fn request_timeout(mut self, timeout: Duration) -> SlackApiBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<SlackApi, SlackError> {
        if self.bot_token.trim().is_empty() {
            return Err(SlackError::Config("the bot token is empty".into()));
        }
        let client = hyper_client(self.api_url.as_deref())?;
        Ok(SlackApi {
            inner: Arc::new(Inner {
                client,
                token: SlackApiToken::new(SlackApiTokenValue(self.bot_token)),
                groups: GroupCache::new(self.group_cache_ttl),
                request_timeout: self.request_timeout,
            }),
        })
    }
}

/// Countersign's calls to Slack's Web API with the bot token. Cheap to clone: clones share the
/// connection pool and the user-group cache.
#[derive(Clone)]
pub struct SlackApi {
    /// The shared state.
    inner: Arc<Inner>,
}

/// What clones of a [`SlackApi`] share.
struct Inner {
    /// slack-morphism's client (connection pool, API URL).
    client: Arc<SlackHyperClient>,
    /// The bot token; slack-morphism's `Debug` shows only its length.
    token: SlackApiToken,
    /// User group members, briefly.
    groups: GroupCache,
    /// How long one call may wait for Slack.
    request_timeout: Duration,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("bot_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl SlackApi {
    /// A client for `bot_token` against `https://slack.com/api`, or `api_url` when given.
    pub fn new(
        bot_token: impl Into<String>,
        api_url: Option<&str>,
    ) -> Result<SlackApi, SlackError> {
        let mut builder = SlackApi::builder(bot_token);
        if let Some(url) = api_url {
            builder = builder.api_url(url);
        }
        builder.build()
    }

    /// Settings for a client with `bot_token`: the default API URL and a 60 s group cache.
    pub fn builder(bot_token: impl Into<String>) -> SlackApiBuilder {
        SlackApiBuilder {
            bot_token: bot_token.into(),
            api_url: None,
            group_cache_ttl: DEFAULT_GROUP_CACHE_TTL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The underlying slack-morphism client (for the Socket Mode listener: wrap it in a
    /// `SlackClientEventsListenerEnvironment`). It talks to the same API URL.
    pub fn client(&self) -> Arc<SlackHyperClient> {
        self.inner.client.clone()
    }

    /// A session with the bot token.
    fn session(&self) -> SlackClientSession<'_, SlackConnector> {
        self.inner.client.open_session(&self.inner.token)
    }

    /// Runs one call to `method`, bounded by the request timeout, mapping its error.
    async fn call<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = ClientResult<T>>,
    ) -> Result<T, SlackError> {
        match tokio::time::timeout(self.inner.request_timeout, call).await {
            Ok(result) => result.map_err(|error| SlackError::from_client(method, error)),
            Err(_) => Err(SlackError::Unreachable {
                method,
                reason: format!(
                    "no answer within {} ms",
                    self.inner.request_timeout.as_millis()
                ),
            }),
        }
    }

    /// Posts a request's card as a new top-level message in `channel`.
    pub async fn post_card(
        &self,
        channel: &str,
        card: &RequestCard,
    ) -> Result<PostedMessage, SlackError> {
        let (text, blocks) = card_blocks(card);
        let request = post_request(channel, text, blocks);
        let response = self
            .call(
                "chat.postMessage",
                self.session().chat_post_message(&request),
            )
            .await?;
        tracing::debug!(channel, ts = %response.ts.0, request_id = %card.request_id, "posted a card");
        Ok(PostedMessage {
            channel: response.channel.0,
            ts: response.ts.0,
        })
    }

    /// Replaces the card at `ts` in `channel` (the state changed, an approval arrived).
    pub async fn update_card(
        &self,
        channel: &str,
        ts: &str,
        card: &RequestCard,
    ) -> Result<(), SlackError> {
        let (text, blocks) = card_blocks(card);
        let request = SlackApiChatUpdateRequest::new(
            SlackChannelId(channel.to_string()),
            SlackMessageContent::new()
                .with_text(text)
                .with_blocks(blocks),
            SlackTs(ts.to_string()),
        );
        self.call("chat.update", self.session().chat_update(&request))
            .await?;
        tracing::debug!(channel, ts, request_id = %card.request_id, "updated a card");
        Ok(())
    }

    /// Posts `message` as a reply in the thread under `thread_ts`; returns the reply's `ts`.
    pub async fn post_in_thread(
        &self,
        channel: &str,
        thread_ts: &str,
        message: &ThreadMessage,
    ) -> Result<String, SlackError> {
        let (text, blocks) = thread_blocks(message);
        let request =
            post_request(channel, text, blocks).with_thread_ts(SlackTs(thread_ts.to_string()));
        let response = self
            .call(
                "chat.postMessage",
                self.session().chat_post_message(&request),
            )
            .await?;
        tracing::debug!(channel, thread_ts, ts = %response.ts.0, "posted in a thread");
        Ok(response.ts.0)
    }

    /// Adds the reaction `name` (without colons, e.g. `white_check_mark`) to the message at
    /// `ts`. A reaction the bot already added counts as success, so seeding can be retried.
    pub async fn add_reaction(
        &self,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> Result<(), SlackError> {
        let request = SlackApiReactionsAddRequest::new(
            SlackChannelId(channel.to_string()),
            SlackReactionName(name.trim_matches(':').to_string()),
            SlackTs(ts.to_string()),
        );
        match self
            .call("reactions.add", self.session().reactions_add(&request))
            .await
        {
            Ok(_) => Ok(()),
            Err(SlackError::Refused { code, .. }) if code == "already_reacted" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Answers a slash command through its `response_url` with a reply only the user sees
    /// (`response_type: ephemeral`). `text` is our own text, read as by [`note_text`]: ```
    /// fences kept, `slack:U1` principals and rendered `<@U1>` / `<!subteam^S1>` mentions shown
    /// as mentions, every other `&`, `<`, `>` escaped.
    ///
    /// This is what slack-morphism's `respond_to_event` does (same connector call, no token,
    /// the URL kept out of its logs), with `response_type` spelled out, which its
    /// `SlackApiPostWebhookMessageRequest` has no field for.
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), SlackError> {
        #[derive(Serialize)]
        struct EphemeralResponse {
            response_type: &'static str,
            text: String,
        }
        const METHOD: &str = "response_url";
        let url = url::Url::parse(response_url)
            .map_err(|_| SlackError::Config("the response_url is not a URL".into()))?;
        let body = EphemeralResponse {
            response_type: "ephemeral",
            text: note_text(text, PLAIN_TEXT_MAX),
        };
        let span = tracing::debug_span!("slack_response_url");
        let context = SlackClientApiCallContext {
            rate_control_params: None,
            token: None,
            tracing_span: &span,
            // slack-morphism logs a hash instead of the URL, which is a credential.
            is_sensitive_url: true,
        };
        let connector = &self.inner.client.http_api.connector;
        let _: SlackApiPostWebhookMessageResponse = self
            .call(METHOD, connector.http_post_uri(url, &body, context))
            .await?;
        Ok(())
    }

    /// Posts a message only `user` sees in `channel`. `text` is plain text as for
    /// [`SlackApi::respond`].
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        let request = SlackApiChatPostEphemeralRequest::new(
            SlackChannelId(channel.to_string()),
            SlackUserId(user.to_string()),
            SlackMessageContent::new().with_text(note_text(text, PLAIN_TEXT_MAX)),
        );
        self.call(
            "chat.postEphemeral",
            self.session().chat_post_ephemeral(&request),
        )
        .await?;
        Ok(())
    }

    /// The user ids in the user group `group_id` (`S...`), through a short cache: within the
    /// TTL, repeated and concurrent lookups of a group make one `usergroups.users.list` call.
    /// Failures are not cached.
    pub async fn user_group_members(&self, group_id: &str) -> Result<Vec<String>, SlackError> {
        self.inner
            .groups
            .get_or_fetch(group_id, || async {
                let request =
                    SlackApiUserGroupsUsersListRequest::new(SlackUserGroupId(group_id.to_string()));
                let response = self
                    .call(
                        "usergroups.users.list",
                        self.session().usergroups_users_list(&request),
                    )
                    .await?;
                tracing::debug!(
                    group_id,
                    members = response.users.len(),
                    "fetched a user group"
                );
                Ok(response.users.into_iter().map(|user| user.0).collect())
            })
            .await
    }
}

/// A `chat.postMessage` request with blocks and fallback text. Links in SQL and results are
/// not unfurled: previews of internal URLs in a production-data channel help nobody.
fn post_request(
    channel: &str,
    text: String,
    blocks: Vec<SlackBlock>,
) -> SlackApiChatPostMessageRequest {
    SlackApiChatPostMessageRequest::new(
        SlackChannelId(channel.to_string()),
        SlackMessageContent::new()
            .with_text(text)
            .with_blocks(blocks),
    )
    .with_unfurl_links(false)
    .with_unfurl_media(false)
}

/// Posts into a request's Slack thread: `to.thread` is the root message's `ts`.
impl ChatPoster for SlackApi {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            if to.platform != PLATFORM {
                return Err(ChatError::UnknownPlatform(to.platform.clone()));
            }
            self.post_in_thread(&to.channel, &to.thread, message)
                .await
                .map(|_| ())
                .map_err(|error| ChatError::Failed(error.to_string()))
        })
    }
}
