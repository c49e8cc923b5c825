//! A fake Slack for end-to-end tests: the real slack-morphism client and the bot talk to it over
//! real sockets, and tests assert what a user would see.
//!
//! One [`FakeSlack`] is one HTTP server on `127.0.0.1:<free port>` that serves
//! - the Web API under `/api/{method}` (POST JSON or GET query, both recorded as [`ApiCall`]s):
//!   `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `reactions.add`,
//!   `usergroups.users.list`, `users.info`, `auth.test` and `apps.connections.open`, with Slack's
//!   JSON shapes; anything else answers `unknown_method`;
//! - Socket Mode at `/link/`: the URL `apps.connections.open` hands out. Each connection gets the
//!   `hello` frame, then the envelopes a test pushes, one connection per envelope in turn (as Slack
//!   does) or all at once (to test deduplication); acknowledgements are recorded;
//! - `response_url`s at `/response/{n}`, recording what is posted there.
//!
//! [`SlackHttpSender`] plays Slack's side of the HTTP Events API: it signs slash commands and events
//! the way Slack does and posts them to a bot's endpoints.
//!
//! slack-morphism drops a malformed event silently (as `Unknown`), which turns a wrong frame into a
//! test that hangs. So every frame and request body built here is first parsed with
//! slack-morphism's own types (the Socket Mode envelope is private in slack-morphism 2.31.1, so it
//! is mirrored here around slack-morphism's public payload types), and a builder panics with a
//! clear message when that fails; every
//! Web API reply is parsed with the matching slack-morphism response type before it is sent (a
//! mismatch is answered as an error and listed in [`FakeSlack::problems`]).
//!
//! Layout: identities and public records first; then [`FakeSlack`] (recordings, waits, Socket
//! Mode frames); then the HTTP handlers (websocket, response URLs, the Web API with one function
//! per method); then frame validation; then [`SlackHttpSender`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;
use slack_morphism::prelude::{
    SlackApiAppsConnectionOpenResponse, SlackApiAuthTestResponse,
    SlackApiChatPostEphemeralResponse, SlackApiChatPostMessageResponse, SlackApiChatUpdateResponse,
    SlackApiReactionsAddResponse, SlackApiUserGroupsUsersListResponse, SlackApiUsersInfoResponse,
    SlackCommandEvent, SlackEventCallbackBody, SlackInteractionEvent, SlackPushEvent,
    SlackPushEventCallback,
};
use tokio::sync::{mpsc, watch};

/// The workspace (team) id every frame and reply carries.
pub const TEAM_ID: &str = "T1";
/// The workspace's domain, as slash commands carry it.
pub const TEAM_DOMAIN: &str = "countersign-test";
/// The Slack app's id.
pub const APP_ID: &str = "A1";
/// The bot's user id (`auth.test`, and `item_user` of reactions to messages the bot posted).
pub const BOT_USER_ID: &str = "UBOT";
/// The bot's bot id.
pub const BOT_ID: &str = "BBOT";
/// The slash command the fake sends.
pub const COMMAND: &str = "/query";
/// Where [`SlackHttpSender::send_command`] posts, below the bot's base URL.
pub const COMMANDS_PATH: &str = "/slack/commands";
/// Where [`SlackHttpSender::send_reaction`] and [`SlackHttpSender::send_url_verification`] post.
pub const EVENTS_PATH: &str = "/slack/events";

/// The first message timestamp handed out; later ones count up from it.
const BASE_TS_SECONDS: u64 = 1_700_000_000;
/// How long a push waits for a Socket Mode connection before failing the test.
const SOCKET_WAIT: Duration = Duration::from_secs(10);
/// How long [`SlackHttpSender`] waits for the bot's answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(20);

/// One Web API call as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// The method name, such as `chat.postMessage`.
    pub method: String,
    /// The HTTP verb: `POST` or `GET`.
    pub http_method: String,
    /// The bearer token (or a `token` parameter), if any.
    pub token: Option<String>,
    /// The parameters as a JSON object: the JSON body of a POST, the query string of a GET (every
    /// value a string).
    pub params: Value,
}

impl ApiCall {
    /// A parameter as a string (numbers and booleans are printed), if present.
    pub fn param(&self, name: &str) -> Option<String> {
        value_as_string(self.params.get(name)?)
    }
}

/// One version of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageVersion {
    /// The `text` (the notification fallback when there are blocks).
    pub text: Option<String>,
    /// The Block Kit blocks as sent.
    pub blocks: Option<Value>,
}

/// A message the bot posted with `chat.postMessage`, in its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The channel it is in.
    pub channel: String,
    /// Its timestamp, which identifies it within the channel.
    pub ts: String,
    /// The root message's timestamp when this is a reply in a thread.
    pub thread_ts: Option<String>,
    /// The current text.
    pub text: Option<String>,
    /// The current blocks.
    pub blocks: Option<Value>,
    /// Every version, the one first posted first and the current one last.
    pub versions: Vec<MessageVersion>,
}

impl Message {
    /// What a reader sees, roughly: the text followed by every text inside the blocks, one per
    /// line. For assertions such as `contains("approved")`.
    pub fn visible_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(text) = &self.text {
            parts.push(text.clone());
        }
        if let Some(blocks) = &self.blocks {
            collect_texts(blocks, &mut parts);
        }
        parts.join("\n")
    }

    /// How many times it was updated.
    pub fn update_count(&self) -> usize {
        self.versions.len().saturating_sub(1)
    }
}

/// An ephemeral message (`chat.postEphemeral`): seen by one user only.
#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    /// The channel it was shown in.
    pub channel: String,
    /// The only user who sees it.
    pub user: String,
    /// Its text.
    pub text: Option<String>,
    /// Its blocks.
    pub blocks: Option<Value>,
    /// The thread it was shown in, if any.
    pub thread_ts: Option<String>,
}

/// What [`FakeSlack::send_slash_command`] sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SentCommand {
    /// The envelope's id, which the acknowledgement must carry.
    pub envelope_id: String,
    /// The command's `trigger_id`.
    pub trigger_id: String,
    /// The command's `response_url`, served by the fake (see [`FakeSlack::responses`]).
    pub response_url: String,
}

/// The bot's answer to a request from [`SlackHttpSender`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    /// The HTTP status; 0 when no HTTP response came (connection refused or dropped, or the
    /// request timed out), with the reason in `body`.
    pub status: u16,
    /// The response body.
    pub body: String,
    /// How long the bot took to answer.
    pub elapsed: Duration,
    /// The slash command's `trigger_id`, for commands.
    pub trigger_id: Option<String>,
    /// The slash command's `response_url`, for commands.
    pub response_url: Option<String>,
}

/// A fake Slack: Web API, Socket Mode and response URLs on one local port. Cheap to clone; the
/// server stops when the last clone drops.
#[derive(Clone)]
pub struct FakeSlack {
    /// Everything the handlers and the test share.
    shared: Arc<Shared>,
    /// Stops the server when the last clone drops.
    _server: Arc<ServerGuard>,
}

/// State shared by the HTTP handlers, the websocket tasks and the test.
struct Shared {
    /// The port the server listens on, for the URLs it hands out.
    port: u16,
    /// A random prefix for ids, so ids from two fakes (or two runs) never collide.
    id_prefix: String,
    /// The recordings and configuration.
    inner: Mutex<Inner>,
    /// Tells websocket tasks to close when the fake is dropped.
    shutdown: watch::Sender<bool>,
}

/// Everything recorded and configured, behind one lock (never held across an await).
#[derive(Default)]
struct Inner {
    /// Every Web API call, in arrival order.
    calls: Vec<ApiCall>,
    /// Every message posted, in posting order.
    messages: Vec<Message>,
    /// Every ephemeral message, in posting order.
    ephemerals: Vec<Ephemeral>,
    /// Reactions added with `reactions.add`: (channel, ts, name).
    reactions: Vec<(String, String, String)>,
    /// User groups and their members, for `usergroups.users.list`.
    user_groups: HashMap<String, Vec<String>>,
    /// What was posted to each response URL, by URL.
    responses: HashMap<String, Vec<Value>>,
    /// A counter for timestamps, tickets, envelope, event and trigger ids.
    counter: u64,
    /// Open Socket Mode connections.
    sockets: Vec<SocketEntry>,
    /// Socket Mode connections accepted so far, closed ones included.
    sockets_opened: usize,
    /// Which live connection gets the next envelope.
    round_robin: usize,
    /// Acknowledgements received: (envelope id, payload).
    acks: Vec<(String, Option<Value>)>,
    /// Things the fake could not make sense of, or its own replies that slack-morphism would not
    /// parse. Listed when a wait times out.
    problems: Vec<String>,
}

/// One open Socket Mode connection.
struct SocketEntry {
    /// Identifies the connection in the list.
    id: u64,
    /// Text frames for the connection's task to send.
    tx: mpsc::UnboundedSender<String>,
    /// A `disconnect` was sent: no more envelopes go there.
    draining: bool,
}

/// Stops the accept loop and the websocket tasks on drop.
struct ServerGuard {
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
    /// The shared state, to signal the websocket tasks.
    shared: Arc<Shared>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
        self.task.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves usable data behind.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn next_number(&self) -> u64 {
        let mut inner = self.lock();
        inner.counter += 1;
        inner.counter
    }

    fn new_response_url(&self) -> String {
        let url = format!("{}/response/{}", self.base_url(), self.next_number());
        self.lock().responses.insert(url.clone(), Vec::new());
        url
    }

    fn new_trigger_id(&self) -> String {
        let n = self.next_number();
        format!("{n}.{n}.{}", self.id_prefix.to_lowercase())
    }

    fn problem(&self, problem: String) {
        eprintln!("fake slack: {problem}");
        self.lock().problems.push(problem);
    }
}

impl FakeSlack {
    /// Starts the HTTP and websocket server on `127.0.0.1:<free port>`.
    pub async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake slack: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("fake slack: a bound socket has an address")
            .port();
        let mut random = [0u8; 3];
        getrandom::fill(&mut random).expect("the operating system's random source works");
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            port,
            id_prefix: hex::encode_upper(random),
            inner: Mutex::new(Inner::default()),
            shutdown,
        });
        let app = Router::new()
            .route("/link/", get(socket_mode))
            .route("/link", get(socket_mode))
            .route("/response/{n}", post(response_url))
            .fallback(web_api)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("fake slack: server stopped: {error}");
            }
        });
        FakeSlack {
            _server: Arc::new(ServerGuard {
                task,
                shared: shared.clone(),
            }),
            shared,
        }
    }

    /// The Web API base URL to give slack-morphism's `with_slack_api_url`:
    /// `http://127.0.0.1:PORT/api`, without a trailing slash, because slack-morphism joins it
    /// with the method as `{url}/{method}` (its default is `https://slack.com/api`). A URL with
    /// the trailing slash works too: the fake ignores the doubled slash.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.shared.base_url())
    }

    /// `http://127.0.0.1:PORT`: the fake's root.
    pub fn base_url(&self) -> String {
        self.shared.base_url()
    }

    /// Configures a user group: `usergroups.users.list` answers with these members.
    pub fn set_user_group(&self, group_id: &str, members: &[&str]) {
        self.shared.lock().user_groups.insert(
            group_id.to_string(),
            members.iter().map(|m| m.to_string()).collect(),
        );
    }

    /// Every Web API call recorded, in arrival order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.shared.lock().calls.clone()
    }

    /// The calls to one method, such as `chat.postMessage`.
    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|call| call.method == method)
            .cloned()
            .collect()
    }

    /// Messages in a channel, top-level and replies, in posting order, each in its current
    /// version (after `chat.update`).
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    /// One message by channel and timestamp.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Message> {
        self.shared
            .lock()
            .messages
            .iter()
            .find(|m| m.channel == channel && m.ts == ts)
            .cloned()
    }

    /// The replies in a thread (messages whose `thread_ts` is the root's ts, the root excluded),
    /// in posting order.
    pub fn thread(&self, channel: &str, root_ts: &str) -> Vec<Message> {
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|m| {
                m.channel == channel && m.thread_ts.as_deref() == Some(root_ts) && m.ts != root_ts
            })
            .cloned()
            .collect()
    }

    /// Ephemeral messages (`chat.postEphemeral`), in posting order.
    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.shared.lock().ephemerals.clone()
    }

    /// Reactions the bot added with `reactions.add`: (channel, ts, name).
    pub fn bot_reactions(&self) -> Vec<(String, String, String)> {
        self.shared.lock().reactions.clone()
    }

    /// A fresh `response_url` served by the fake: `http://127.0.0.1:PORT/response/<n>`. What is
    /// posted there is recorded (see [`FakeSlack::responses`]).
    pub fn new_response_url(&self) -> String {
        self.shared.new_response_url()
    }

    /// The JSON bodies posted to a response URL, in order.
    pub fn responses(&self, response_url: &str) -> Vec<Value> {
        self.shared
            .lock()
            .responses
            .get(response_url)
            .cloned()
            .unwrap_or_default()
    }

    /// Requests the fake could not make sense of, and replies of its own that slack-morphism
    /// would not parse. Empty in a healthy test.
    pub fn problems(&self) -> Vec<String> {
        self.shared.lock().problems.clone()
    }

    /// Polls `check` every 20 ms until it returns `Some` or `timeout` passes. On timeout it
    /// panics, naming `what` and listing everything recorded, so a hanging test fails with a
    /// clear message.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&FakeSlack) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fake slack: timed out after {timeout:?} waiting for {what}\n{}",
                    self.dump()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Everything recorded, readable: for failure messages.
    pub fn dump(&self) -> String {
        let inner = self.shared.lock();
        let mut out = format!("recorded Web API calls ({}):\n", inner.calls.len());
        for call in &inner.calls {
            let params = call.params.to_string();
            let params = if params.len() > 400 {
                format!("{}...", truncate(&params, 400))
            } else {
                params
            };
            out.push_str(&format!(
                "  {} {} token={} {}\n",
                call.http_method,
                call.method,
                call.token.as_deref().unwrap_or("-"),
                params
            ));
        }
        let live = inner.sockets.iter().filter(|s| !s.draining).count();
        out.push_str(&format!(
            "socket mode: {live} live connection(s), {} opened in all\n",
            inner.sockets_opened
        ));
        out.push_str(&format!("acknowledgements ({}):\n", inner.acks.len()));
        for (envelope_id, payload) in &inner.acks {
            match payload {
                Some(payload) => out.push_str(&format!("  {envelope_id} {payload}\n")),
                None => out.push_str(&format!("  {envelope_id}\n")),
            }
        }
        let posted: usize = inner.responses.values().map(Vec::len).sum();
        out.push_str(&format!("posts to response URLs: {posted}\n"));
        if !inner.problems.is_empty() {
            out.push_str("problems:\n");
            for problem in &inner.problems {
                out.push_str(&format!("  {problem}\n"));
            }
        }
        out
    }

    // ---- Socket Mode

    /// Waits until at least `count` Socket Mode connections are open (and not told to
    /// disconnect); panics after `timeout`.
    pub async fn wait_socket_connected(&self, count: usize, timeout: Duration) {
        self.wait_for(
            &format!("{count} Socket Mode connection(s)"),
            timeout,
            |fake| (fake.socket_count() >= count).then_some(()),
        )
        .await;
    }

    /// Socket Mode connections open now (those told to disconnect excluded).
    pub fn socket_count(&self) -> usize {
        self.shared
            .lock()
            .sockets
            .iter()
            .filter(|s| !s.draining)
            .count()
    }

    /// Socket Mode connections accepted since the start, closed ones included: grows by one on
    /// each reconnection.
    pub fn sockets_opened(&self) -> usize {
        self.shared.lock().sockets_opened
    }

    /// Builds a `slash_commands` envelope for `/query` (fresh envelope id, trigger id and
    /// response URL) without sending it. Checked with slack-morphism's types.
    pub fn slash_command_frame(
        &self,
        user: &str,
        channel: &str,
        text: &str,
    ) -> (Value, SentCommand) {
        let sent = SentCommand {
            envelope_id: self.new_envelope_id(),
            trigger_id: self.shared.new_trigger_id(),
            response_url: self.shared.new_response_url(),
        };
        let frame = json!({
            "type": "slash_commands",
            "envelope_id": sent.envelope_id,
            "accepts_response_payload": true,
            "payload": {
                "token": "fake-verification-token",
                "team_id": TEAM_ID,
                "team_domain": TEAM_DOMAIN,
                "channel_id": channel,
                "channel_name": channel.to_lowercase(),
                "user_id": user,
                "user_name": user.to_lowercase(),
                "command": COMMAND,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": sent.response_url,
                "trigger_id": sent.trigger_id,
            },
        });
        expect_valid_socket_frame(&frame);
        (frame, sent)
    }

    /// Builds an `events_api` envelope with a `reaction_added` (or, with `added` false,
    /// `reaction_removed`) event and a fresh event id, without sending it. Returns the frame and
    /// its envelope id. Checked with slack-morphism's types.
    pub fn reaction_frame(
        &self,
        added: bool,
        user: &str,
        reaction: &str,
        channel: &str,
        ts: &str,
    ) -> (Value, String) {
        let envelope_id = self.new_envelope_id();
        let frame = json!({
            "type": "events_api",
            "envelope_id": envelope_id,
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": self.reaction_callback(added, user, reaction, channel, ts),
        });
        expect_valid_socket_frame(&frame);
        (frame, envelope_id)
    }

    /// Sends a slash command (`/query`, team [`TEAM_ID`]) to one Socket Mode connection.
    /// Waits up to 10 s for a connection, then panics.
    pub async fn send_slash_command(&self, user: &str, channel: &str, text: &str) -> SentCommand {
        let (frame, sent) = self.slash_command_frame(user, channel, text);
        self.push_to_one(frame.to_string()).await;
        sent
    }

    /// Sends a `reaction_added` (or `reaction_removed`) event to one Socket Mode connection and
    /// returns the envelope id. Waits up to 10 s for a connection, then panics.
    pub async fn send_reaction(
        &self,
        added: bool,
        user: &str,
        reaction: &str,
        channel: &str,
        ts: &str,
    ) -> String {
        let (frame, envelope_id) = self.reaction_frame(added, user, reaction, channel, ts);
        self.push_to_one(frame.to_string()).await;
        envelope_id
    }

    /// Sends one envelope to every open connection, as Slack sometimes does on a reconnect: for
    /// testing deduplication. Panics if slack-morphism would not parse it, or when no connection
    /// opens within 10 s.
    pub async fn send_envelope_to_all(&self, frame: Value) {
        expect_valid_socket_frame(&frame);
        self.wait_socket_connected(1, SOCKET_WAIT).await;
        let text = frame.to_string();
        for tx in self.live_senders() {
            let _ = tx.send(text.clone());
        }
    }

    /// Sends any text to one connection, unchecked: for testing how the bot copes with frames
    /// slack-morphism cannot parse.
    pub async fn send_unchecked(&self, text: &str) {
        self.push_to_one(text.to_string()).await;
    }

    /// The acknowledgements received so far: (envelope id, payload).
    pub fn acks(&self) -> Vec<(String, Option<Value>)> {
        self.shared.lock().acks.clone()
    }

    /// Waits for the acknowledgement of an envelope and returns its payload (`None` when it had
    /// none, as for events). Panics after `timeout`.
    pub async fn wait_ack(&self, envelope_id: &str, timeout: Duration) -> Option<Value> {
        self.wait_for(
            &format!("the acknowledgement of envelope {envelope_id}"),
            timeout,
            |fake| {
                fake.shared
                    .lock()
                    .acks
                    .iter()
                    .find(|(id, _)| id == envelope_id)
                    .map(|(_, payload)| payload.clone())
            },
        )
        .await
    }

    /// Sends `{"type":"disconnect","reason":"refresh_requested",...}` to every open connection,
    /// as Slack does before it recycles a connection; the client should open a new one. Those
    /// connections get no more envelopes.
    pub async fn send_disconnect(&self) {
        let frame = json!({
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": { "host": "fake-slack" },
        });
        expect_valid_socket_frame(&frame);
        let text = frame.to_string();
        let mut inner = self.shared.lock();
        for socket in inner.sockets.iter_mut().filter(|s| !s.draining) {
            let _ = socket.tx.send(text.clone());
            socket.draining = true;
        }
    }

    // ---- HTTP mode

    /// A sender that posts signed requests to a bot's HTTP endpoints (`{bot_base_url}/slack/...`)
    /// the way Slack does, with response URLs served by this fake.
    pub fn http_sender(&self, bot_base_url: &str, signing_secret: &str) -> SlackHttpSender {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        SlackHttpSender {
            base_url: bot_base_url.trim_end_matches('/').to_string(),
            signing_secret: signing_secret.to_string(),
            fake: self.clone(),
            client,
        }
    }

    // ---- internals

    fn new_envelope_id(&self) -> String {
        format!(
            "env-{}-{:06}",
            self.shared.id_prefix.to_lowercase(),
            self.shared.next_number()
        )
    }

    /// The `event_callback` body for a reaction, shared by Socket Mode and HTTP.
    fn reaction_callback(
        &self,
        added: bool,
        user: &str,
        reaction: &str,
        channel: &str,
        ts: &str,
    ) -> Value {
        let n = self.shared.next_number();
        let now = unix_now();
        let mut event = json!({
            "type": if added { "reaction_added" } else { "reaction_removed" },
            "user": user,
            "reaction": reaction,
            "item": { "type": "message", "channel": channel, "ts": ts },
            "event_ts": format!("{now}.{:06}", n % 1_000_000),
        });
        // Slack names the author of the message reacted to; here that is the bot when it posted it.
        if self.message(channel, ts).is_some() {
            event["item_user"] = json!(BOT_USER_ID);
        }
        json!({
            "token": "fake-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": format!("Ev{}{:06}", self.shared.id_prefix, n),
            "event_time": now,
            "authorizations": [{
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": true,
                "is_enterprise_install": false,
            }],
            "is_ext_shared_channel": false,
        })
    }

    fn live_senders(&self) -> Vec<mpsc::UnboundedSender<String>> {
        self.shared
            .lock()
            .sockets
            .iter()
            .filter(|s| !s.draining)
            .map(|s| s.tx.clone())
            .collect()
    }

    /// Hands a frame to the next live connection in turn, waiting for one if there is none.
    async fn push_to_one(&self, text: String) {
        let deadline = Instant::now() + SOCKET_WAIT;
        loop {
            let picked = {
                let mut inner = self.shared.lock();
                let live: Vec<_> = inner
                    .sockets
                    .iter()
                    .filter(|s| !s.draining)
                    .map(|s| s.tx.clone())
                    .collect();
                if live.is_empty() {
                    None
                } else {
                    let index = inner.round_robin % live.len();
                    inner.round_robin = inner.round_robin.wrapping_add(1);
                    Some(live[index].clone())
                }
            };
            if let Some(tx) = picked {
                if tx.send(text.clone()).is_ok() {
                    return;
                }
                // That connection just closed: try the next one.
                continue;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fake slack: no Socket Mode connection within {SOCKET_WAIT:?} to send {}\n{}",
                    truncate(&text, 300),
                    self.dump()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

// ---- HTTP handlers

/// `/link/`: a Socket Mode connection.
async fn socket_mode(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| run_socket(shared, socket))
}

async fn run_socket(shared: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut shutdown = shared.shutdown.subscribe();
    let (id, hello) = {
        let mut inner = shared.lock();
        inner.counter += 1;
        let id = inner.counter;
        inner.sockets.push(SocketEntry {
            id,
            tx,
            draining: false,
        });
        inner.sockets_opened += 1;
        let live = inner.sockets.iter().filter(|s| !s.draining).count();
        let hello = json!({
            "type": "hello",
            "num_connections": live,
            "debug_info": {
                "host": "fake-slack",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": { "app_id": APP_ID },
        });
        (id, hello)
    };
    if let Err(problem) = check_socket_frame(&hello) {
        shared.problem(problem);
    }
    if socket
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                outgoing = rx.recv() => match outgoing {
                    Some(text) => {
                        if socket.send(WsMessage::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(WsMessage::Text(text))) => record_ack(&shared, text.as_str()),
                    Some(Ok(WsMessage::Binary(_))) => {
                        shared.problem("a binary frame on a Socket Mode connection".to_string());
                    }
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                    // Pings are answered by the websocket layer while reading.
                    Some(Ok(_)) => {}
                },
                _ = shutdown.changed() => {
                    let _ = socket.send(WsMessage::Close(None)).await;
                    break;
                }
            }
        }
    }
    shared.lock().sockets.retain(|s| s.id != id);
}

fn record_ack(shared: &Shared, text: &str) {
    let parsed: Result<Value, _> = serde_json::from_str(text);
    match parsed {
        Ok(Value::Object(mut ack)) => match ack.remove("envelope_id") {
            Some(Value::String(envelope_id)) => {
                let payload = ack.remove("payload");
                shared.lock().acks.push((envelope_id, payload));
            }
            _ => shared.problem(format!("a Socket Mode frame without envelope_id: {text}")),
        },
        _ => shared.problem(format!(
            "a Socket Mode frame that is not a JSON object: {text}"
        )),
    }
}

/// `/response/{n}`: a response URL. Slack answers `ok` as plain text.
async fn response_url(
    State(shared): State<Arc<Shared>>,
    Path(n): Path<String>,
    body: Bytes,
) -> Response {
    let url = format!("{}/response/{n}", shared.base_url());
    match serde_json::from_slice::<Value>(&body) {
        Ok(value) => {
            shared.lock().responses.entry(url).or_default().push(value);
            (StatusCode::OK, "ok").into_response()
        }
        Err(error) => {
            shared.problem(format!(
                "a post to {url} that is not JSON ({error}): {}",
                String::from_utf8_lossy(&body)
            ));
            (StatusCode::BAD_REQUEST, "invalid_payload").into_response()
        }
    }
}

/// The Web API: `/api/{method}`, any verb.
async fn web_api(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(name) = uri
        .path()
        .strip_prefix("/api/")
        .map(|rest| rest.trim_start_matches('/').to_string())
    else {
        shared.problem(format!("a request outside the Web API: {method} {uri}"));
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let params = match request_params(&uri, &headers, &body) {
        Ok(params) => params,
        Err(problem) => {
            shared.problem(format!("{method} {name}: {problem}"));
            return Json(json!({ "ok": false, "error": "invalid_arguments" })).into_response();
        }
    };
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| params.get("token").and_then(value_as_string));
    shared.lock().calls.push(ApiCall {
        method: name.clone(),
        http_method: method.to_string(),
        token,
        params: Value::Object(params.clone()),
    });
    let reply = answer(&shared, &name, &params);
    Json(reply).into_response()
}

/// Reads the parameters of a Web API call: the query string, then the body (JSON or form).
fn request_params(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    if let Some(query) = uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|error| format!("unreadable query string ({error}): {query}"))?;
        for (key, value) in pairs {
            params.insert(key, Value::String(value));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|error| format!("unreadable form body ({error})"))?;
        for (key, value) in pairs {
            params.insert(key, Value::String(value));
        }
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => params.extend(fields),
            Ok(other) => return Err(format!("a JSON body that is not an object: {other}")),
            Err(error) => {
                return Err(format!(
                    "a body that is not JSON ({error}; content type {content_type:?}): {}",
                    String::from_utf8_lossy(body)
                ))
            }
        }
    }
    Ok(params)
}

/// The parameters of one Web API call.
struct Params<'a>(&'a Map<String, Value>);

impl Params<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(value_as_string)
    }

    /// Blocks come as a JSON array, or as a JSON string in a form or query.
    fn blocks(&self) -> Option<Value> {
        match self.0.get("blocks") {
            Some(Value::String(text)) => serde_json::from_str(text).ok(),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.clone()),
        }
    }
}

/// Answers one Web API call; each reply is checked against slack-morphism's response type.
fn answer(shared: &Shared, method: &str, params: &Map<String, Value>) -> Value {
    let params = Params(params);
    match method {
        "chat.postMessage" => post_message(shared, &params),
        "chat.update" => update_message(shared, &params),
        "chat.postEphemeral" => post_ephemeral(shared, &params),
        "reactions.add" => add_reaction(shared, &params),
        "usergroups.users.list" => user_group_members(shared, &params),
        "users.info" => user_info(shared, &params),
        "auth.test" => checked::<SlackApiAuthTestResponse>(
            shared,
            method,
            json!({
                "ok": true,
                "url": format!("https://{TEAM_DOMAIN}.slack.com/"),
                "team": "Countersign Test",
                "user": "countersign",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }),
        ),
        "apps.connections.open" => {
            let ticket = shared.next_number();
            checked::<SlackApiAppsConnectionOpenResponse>(
                shared,
                method,
                json!({
                    "ok": true,
                    "url": format!("ws://127.0.0.1:{}/link/?ticket={ticket}", shared.port),
                }),
            )
        }
        _ => error("unknown_method"),
    }
}

/// `chat.postMessage`: stores the message under a fresh timestamp.
fn post_message(shared: &Shared, params: &Params<'_>) -> Value {
    let Some(channel) = params.get("channel") else {
        return error("channel_not_found");
    };
    let text = params.get("text");
    let blocks = params.blocks();
    if text.is_none() && blocks.is_none() {
        return error("no_text");
    }
    let thread_ts = params.get("thread_ts");
    let ts = {
        let mut inner = shared.lock();
        inner.counter += 1;
        let ts = message_ts(inner.counter);
        inner.messages.push(Message {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.clone(),
            text: text.clone(),
            blocks: blocks.clone(),
            versions: vec![MessageVersion {
                text: text.clone(),
                blocks,
            }],
        });
        ts
    };
    let mut message = json!({
        "type": "message",
        "ts": ts,
        "text": text.unwrap_or_default(),
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
    });
    if let Some(thread_ts) = thread_ts {
        message["thread_ts"] = json!(thread_ts);
    }
    checked::<SlackApiChatPostMessageResponse>(
        shared,
        "chat.postMessage",
        json!({ "ok": true, "channel": channel, "ts": ts, "message": message }),
    )
}

/// `chat.update`: replaces what the update carries, keeps the rest (as Slack does), and keeps
/// every version.
fn update_message(shared: &Shared, params: &Params<'_>) -> Value {
    let (Some(channel), Some(ts)) = (params.get("channel"), params.get("ts")) else {
        return error("message_not_found");
    };
    let text = params.get("text");
    let blocks = params.blocks();
    let updated = {
        let mut inner = shared.lock();
        let found = inner
            .messages
            .iter_mut()
            .find(|m| m.channel == channel && m.ts == ts);
        found.map(|message| {
            if text.is_some() {
                message.text = text;
            }
            if blocks.is_some() {
                message.blocks = blocks;
            }
            message.versions.push(MessageVersion {
                text: message.text.clone(),
                blocks: message.blocks.clone(),
            });
            (message.text.clone(), message.thread_ts.clone())
        })
    };
    let Some((current_text, thread_ts)) = updated else {
        return error("message_not_found");
    };
    let current_text = current_text.unwrap_or_default();
    let mut reply = json!({
        "ok": true,
        "channel": channel,
        "ts": ts,
        "text": current_text,
        "message": { "text": current_text, "user": BOT_USER_ID, "bot_id": BOT_ID },
    });
    if let Some(thread_ts) = thread_ts {
        reply["thread_ts"] = json!(thread_ts);
    }
    checked::<SlackApiChatUpdateResponse>(shared, "chat.update", reply)
}

/// `chat.postEphemeral`: recorded, seen by one user.
fn post_ephemeral(shared: &Shared, params: &Params<'_>) -> Value {
    let (Some(channel), Some(user)) = (params.get("channel"), params.get("user")) else {
        return error("user_not_in_channel");
    };
    let ts = {
        let mut inner = shared.lock();
        inner.counter += 1;
        inner.ephemerals.push(Ephemeral {
            channel,
            user,
            text: params.get("text"),
            blocks: params.blocks(),
            thread_ts: params.get("thread_ts"),
        });
        message_ts(inner.counter)
    };
    checked::<SlackApiChatPostEphemeralResponse>(
        shared,
        "chat.postEphemeral",
        json!({ "ok": true, "message_ts": ts }),
    )
}

/// `reactions.add`: recorded; the same reaction twice is refused, as Slack does.
fn add_reaction(shared: &Shared, params: &Params<'_>) -> Value {
    let (Some(channel), Some(ts), Some(name)) = (
        params.get("channel"),
        params.get("timestamp"),
        params.get("name"),
    ) else {
        return error("invalid_arguments");
    };
    let reaction = (channel, ts, name);
    {
        let mut inner = shared.lock();
        if inner.reactions.contains(&reaction) {
            return error("already_reacted");
        }
        inner.reactions.push(reaction);
    }
    checked::<SlackApiReactionsAddResponse>(shared, "reactions.add", json!({ "ok": true }))
}

/// `usergroups.users.list`: the members set with [`FakeSlack::set_user_group`].
fn user_group_members(shared: &Shared, params: &Params<'_>) -> Value {
    let members = params
        .get("usergroup")
        .and_then(|group| shared.lock().user_groups.get(&group).cloned());
    match members {
        Some(users) => checked::<SlackApiUserGroupsUsersListResponse>(
            shared,
            "usergroups.users.list",
            json!({ "ok": true, "users": users }),
        ),
        None => error("no_such_subteam"),
    }
}

/// `users.info`: a small, valid user for any id.
fn user_info(shared: &Shared, params: &Params<'_>) -> Value {
    let Some(user) = params.get("user") else {
        return error("user_not_found");
    };
    let name = user.to_lowercase();
    checked::<SlackApiUsersInfoResponse>(
        shared,
        "users.info",
        json!({
            "ok": true,
            "user": {
                "id": user,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": format!("User {user}"),
                "deleted": false,
                "is_bot": user == BOT_USER_ID,
                "is_admin": false,
                "tz": "Etc/UTC",
                "profile": {
                    "display_name": name,
                    "real_name": format!("User {user}"),
                    "team": TEAM_ID,
                },
            },
        }),
    )
}

fn error(code: &str) -> Value {
    json!({ "ok": false, "error": code })
}

/// Returns `reply` if slack-morphism parses it as `T`; otherwise records the problem and answers
/// with an error, so the mistake shows instead of a confusing failure in the client.
fn checked<T: DeserializeOwned>(shared: &Shared, method: &str, reply: Value) -> Value {
    match serde_json::from_value::<T>(reply.clone()) {
        Ok(_) => reply,
        Err(parse_error) => {
            shared.problem(format!(
                "the fake's reply to {method} does not parse as {}: {parse_error}: {reply}",
                std::any::type_name::<T>()
            ));
            error("fake_slack_reply_invalid")
        }
    }
}

// ---- frames and validation

/// slack-morphism's Socket Mode envelope (`SlackSocketModeEvent` in its private
/// `models::socket_mode` module, unreachable from outside in 2.31.1), mirrored field for field;
/// the payloads are slack-morphism's own public types.
#[derive(Deserialize)]
#[serde(tag = "type")]
#[allow(dead_code, clippy::large_enum_variant)] // Only parsed, never kept.
enum SocketFrame {
    #[serde(rename = "hello")]
    Hello {
        connection_info: ConnectionInfo,
        num_connections: u32,
        debug_info: DebugInfo,
    },
    #[serde(rename = "disconnect")]
    Disconnect {
        reason: String,
        debug_info: DebugInfo,
    },
    #[serde(rename = "interactive")]
    Interactive {
        envelope_id: String,
        accepts_response_payload: bool,
        payload: SlackInteractionEvent,
    },
    #[serde(rename = "events_api")]
    EventsApi {
        envelope_id: String,
        accepts_response_payload: bool,
        payload: SlackPushEventCallback,
    },
    #[serde(rename = "slash_commands")]
    SlashCommands {
        envelope_id: String,
        accepts_response_payload: bool,
        payload: SlackCommandEvent,
    },
}

/// Mirrors slack-morphism's `SlackSocketModeConnectionInfo`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ConnectionInfo {
    app_id: String,
}

/// Mirrors slack-morphism's `SlackSocketModeDebugInfo`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct DebugInfo {
    host: String,
    started: Option<String>,
    build_number: Option<u64>,
    approximate_connection_time: Option<u64>,
}

/// Checks a Socket Mode frame the way slack-morphism's listener reads it: as its envelope, with
/// events that are not `Unknown`.
fn check_socket_frame(frame: &Value) -> Result<(), String> {
    let parsed: SocketFrame = serde_json::from_value(frame.clone()).map_err(|error| {
        format!("slack-morphism does not parse this Socket Mode frame ({error}): {frame}")
    })?;
    if let SocketFrame::EventsApi { payload, .. } = &parsed {
        check_event_body(&payload.event, frame)?;
    }
    Ok(())
}

fn check_event_body(event: &SlackEventCallbackBody, whole: &Value) -> Result<(), String> {
    if let SlackEventCallbackBody::Unknown(_) = event {
        return Err(format!(
            "slack-morphism parses this event as Unknown (a missing or wrong field), so a listener \
             would drop it silently: {whole}"
        ));
    }
    Ok(())
}

fn expect_valid_socket_frame(frame: &Value) {
    if let Err(problem) = check_socket_frame(frame) {
        panic!("fake slack built a bad frame: {problem}");
    }
}

/// Checks an HTTP Events API body as slack-morphism's push-event extractor reads it.
fn expect_valid_push_event(body: &str) {
    match serde_json::from_str::<SlackPushEvent>(body) {
        Ok(SlackPushEvent::EventCallback(callback)) => {
            if let Err(problem) = check_event_body(&callback.event, &json!(body)) {
                panic!("fake slack built a bad event: {problem}");
            }
        }
        Ok(_) => {}
        Err(error) => {
            panic!("fake slack built an event slack-morphism does not parse ({error}): {body}")
        }
    }
}

/// Message timestamps: `1700000000.000100`, `1700000000.000200`, ... strictly increasing.
fn message_ts(n: u64) -> String {
    let micros = n * 100;
    format!(
        "{}.{:06}",
        BASE_TS_SECONDS + micros / 1_000_000,
        micros % 1_000_000
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn value_as_string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Every string under a `text` key (Block Kit nests `{"type":"mrkdwn","text":"..."}`).
fn collect_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_texts(item, out)),
        Value::Object(fields) => {
            for (key, field) in fields {
                match field {
                    Value::String(text) if key == "text" => out.push(text.clone()),
                    _ => collect_texts(field, out),
                }
            }
        }
        _ => {}
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

// ---- HTTP Events API sender

/// Posts signed slash commands and events to a bot's HTTP endpoints, the way Slack does.
pub struct SlackHttpSender {
    /// The bot's base URL, without a trailing slash.
    base_url: String,
    /// The app's signing secret.
    signing_secret: String,
    /// For response URLs, trigger ids and event ids.
    fake: FakeSlack,
    /// A plain-HTTP client.
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Body,
    >,
}

impl SlackHttpSender {
    /// Posts a slash command (`/query`) to `{base}/slack/commands`, form-encoded like Slack and
    /// signed now. The reply carries the `trigger_id` and `response_url` used.
    pub async fn send_command(&self, user: &str, channel: &str, text: &str) -> HttpReply {
        let trigger_id = self.fake.shared.new_trigger_id();
        let response_url = self.fake.new_response_url();
        let fields = [
            ("token", "fake-verification-token"),
            ("team_id", TEAM_ID),
            ("team_domain", TEAM_DOMAIN),
            ("channel_id", channel),
            ("channel_name", &channel.to_lowercase()),
            ("user_id", user),
            ("user_name", &user.to_lowercase()),
            ("command", COMMAND),
            ("text", text),
            ("api_app_id", APP_ID),
            ("is_enterprise_install", "false"),
            ("response_url", &response_url),
            ("trigger_id", &trigger_id),
        ];
        let form = serde_urlencoded::to_string(fields)
            .expect("fake slack: string pairs always form-encode");
        if let Err(error) = serde_urlencoded::from_str::<SlackCommandEvent>(&form) {
            panic!("fake slack built a command slack-morphism does not parse ({error}): {form}");
        }
        let mut reply = self
            .send_signed(
                COMMANDS_PATH,
                "application/x-www-form-urlencoded",
                form.as_bytes(),
            )
            .await;
        reply.trigger_id = Some(trigger_id);
        reply.response_url = Some(response_url);
        reply
    }

    /// Posts a `reaction_added` (or, with `added` false, `reaction_removed`) event callback to
    /// `{base}/slack/events`, as JSON, signed now.
    pub async fn send_reaction(
        &self,
        added: bool,
        user: &str,
        reaction: &str,
        channel: &str,
        ts: &str,
    ) -> HttpReply {
        let body = self
            .fake
            .reaction_callback(added, user, reaction, channel, ts)
            .to_string();
        expect_valid_push_event(&body);
        self.send_signed(EVENTS_PATH, "application/json", body.as_bytes())
            .await
    }

    /// Posts the one-time `url_verification` challenge to `{base}/slack/events`, signed now.
    pub async fn send_url_verification(&self, challenge: &str) -> HttpReply {
        let body = json!({
            "token": "fake-verification-token",
            "challenge": challenge,
            "type": "url_verification",
        })
        .to_string();
        expect_valid_push_event(&body);
        self.send_signed(EVENTS_PATH, "application/json", body.as_bytes())
            .await
    }

    /// Sends these exact bytes to `{base}{path}` with this timestamp and signature header (`None`
    /// leaves the header out): for forged, stale and replayed requests.
    pub async fn send_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        timestamp: &str,
        signature: Option<&str>,
    ) -> HttpReply {
        let url = format!("{}{path}", self.base_url);
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(
                http::header::USER_AGENT,
                "Slackbot 1.0 (+https://api.slack.com/robots)",
            )
            .header("x-slack-request-timestamp", timestamp);
        if let Some(signature) = signature {
            request = request.header("x-slack-signature", signature);
        }
        let request = request
            .body(Body::from(body.to_vec()))
            .unwrap_or_else(|error| panic!("fake slack: cannot build a request to {url}: {error}"));
        let started = Instant::now();
        let no_answer = |reason: String| HttpReply {
            status: 0,
            body: reason,
            elapsed: started.elapsed(),
            trigger_id: None,
            response_url: None,
        };
        let response = match tokio::time::timeout(HTTP_TIMEOUT, self.client.request(request)).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return no_answer(format!("no HTTP response from {url}: {error}")),
            Err(_) => return no_answer(format!("no HTTP response from {url} in {HTTP_TIMEOUT:?}")),
        };
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(Body::new(response.into_body()), 16 << 20).await;
        match body {
            Ok(bytes) => HttpReply {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                elapsed: started.elapsed(),
                trigger_id: None,
                response_url: None,
            },
            Err(error) => no_answer(format!("the body from {url} broke off: {error}")),
        }
    }

    /// The signature Slack puts on (timestamp, body): `v0=` and the lowercase hex of
    /// HMAC-SHA256(signing secret, `v0:{timestamp}:{body}`).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn send_signed(&self, path: &str, content_type: &str, body: &[u8]) -> HttpReply {
        let timestamp = unix_now().to_string();
        let signature = self.sign(&timestamp, body);
        self.send_raw(path, content_type, body, &timestamp, Some(&signature))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_timestamps_increase_strictly() {
        assert_eq!(message_ts(1), "1700000000.000100");
        assert_eq!(message_ts(10_000), "1700000001.000000");
        let all: Vec<String> = (1..20_050).map(message_ts).collect();
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn visible_text_includes_block_texts() {
        let message = Message {
            channel: "C1".into(),
            ts: message_ts(1),
            thread_ts: None,
            text: Some("fallback".into()),
            blocks: Some(json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Approved*"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "by U2"}]}
            ])),
            versions: vec![],
        };
        assert_eq!(message.visible_text(), "fallback\n*Approved*\nby U2");
    }

    #[test]
    fn a_reply_slack_morphism_would_not_parse_is_refused_and_listed() {
        let (shutdown, _) = watch::channel(false);
        let shared = Shared {
            port: 1,
            id_prefix: "X".into(),
            inner: Mutex::new(Inner::default()),
            shutdown,
        };
        let reply = checked::<SlackApiChatPostMessageResponse>(
            &shared,
            "chat.postMessage",
            json!({"ok": true, "channel": "C1"}),
        );
        assert_eq!(reply["error"], "fake_slack_reply_invalid");
        assert_eq!(shared.lock().problems.len(), 1);
    }

    #[test]
    fn a_reaction_event_missing_a_field_is_refused() {
        let frame = json!({
            "type": "events_api", "envelope_id": "e", "accepts_response_payload": false,
            "payload": {"team_id": "T1", "api_app_id": "A1", "event_id": "Ev1",
                "event_time": 1_700_000_000,
                "event": {"type": "reaction_added", "user": "U1", "reaction": "x",
                          "event_ts": "1.2"}}
        });
        let problem = check_socket_frame(&frame).expect_err("no item: Unknown");
        assert!(problem.contains("Unknown"), "{problem}");
    }
}
