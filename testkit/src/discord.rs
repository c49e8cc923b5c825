//! A fake Discord for end-to-end tests: the real serenity client and the bot talk to it over real
//! sockets, and tests assert what a Discord user would see.
//!
//! One [`FakeDiscord`] is one HTTP server on `127.0.0.1:<free port>` that serves
//! - the REST API under `/api/v10` (every call recorded as a [`RestCall`]): interaction callbacks
//!   and their webhook follow-ups, message create and edit, threads started from messages, the
//!   bot's own reactions, application command registration, guild members and roles,
//!   `GET /users/@me` and `GET /gateway`, with Discord's JSON shapes, status codes and error bodies
//!   (`{"message":...,"code":...}`). Anything else answers 404 and is listed in
//!   [`FakeDiscord::problems`]. [`FakeDiscord::rate_limit`] makes the next calls to a route answer
//!   429;
//! - the gateway websocket at `/gateway`: Hello (op 10), heartbeat acks (op 11), Identify (op 2)
//!   answered with READY, RESUME (op 6) answered with the missed dispatches and RESUMED, and the
//!   dispatches a test pushes ([`FakeDiscord::send_command`], [`FakeDiscord::send_reaction`]) with
//!   sequence numbers. Reconnect (op 7), invalid session (op 9), close frames and abrupt drops are
//!   under the test's control.
//!
//! Pointing serenity 0.12.5 at it (the rate limiter must be off: with it on, serenity ignores the
//! proxy and calls the real Discord):
//!
//! ```ignore
//! let http = HttpBuilder::new("test-token")
//!     .proxy(fake.base_url())
//!     .ratelimiter_disabled(true)
//!     .build();
//! let client = ClientBuilder::new_with_http(http, intents).event_handler(handler).await?;
//! ```
//!
//! serenity drops a dispatch it cannot parse (as `Event::Unknown`, logged at debug level), which
//! turns a wrong payload into a test that hangs. So every dispatch built here is first parsed with
//! serenity's own `GatewayEvent` and payload types, and a sender panics with a clear message when
//! that fails; every REST reply is parsed with the serenity type the client will read it as before
//! it is sent (a mismatch is answered as an error and listed in [`FakeDiscord::problems`]).
//!
//! The `/query` application command: see [`query`] for the definition the bot registers and the
//! option lists Discord sends for it.
//!
//! Layout: constants, the [`query`] command shape, public records; then [`FakeDiscord`]
//! (configuration, recordings, waits, gateway control and dispatches); then the gateway websocket
//! task; then the REST handler with one function per route; then payload validation (dispatches,
//! message limits, command definitions) and small helpers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use serenity::model::application::{Command as SerenityCommand, Interaction};
use serenity::model::channel::{GuildChannel, Message as SerenityMessage, Reaction};
use serenity::model::event::{Event, GatewayEvent, ResumedEvent};
use serenity::model::gateway::{GatewayIntents, Ready};
use serenity::model::guild::{Member, Role};
use serenity::model::user::CurrentUser;
use serenity::model::Timestamp;
use tokio::sync::{mpsc, watch};

/// The guild (server) everything happens in: interactions, reactions and members carry it.
pub const GUILD_ID: u64 = 2000;
/// The bot's application id (READY's `application.id`; webhook routes must carry it).
pub const APPLICATION_ID: u64 = 3000;
/// The bot's user id (READY's `user`, `GET /users/@me`, the author of the bot's messages).
pub const BOT_USER_ID: u64 = 1000;
/// The bot's user name.
pub const BOT_USERNAME: &str = "countersign";
/// The gateway heartbeat interval sent in Hello unless
/// [`FakeDiscord::set_heartbeat_interval`] says otherwise.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// How long after an interaction Discord accepts its callback (3 s); later callbacks answer
/// `10062 Unknown interaction`. Change it with [`FakeDiscord::set_ack_deadline`].
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(3);
/// Discord's `Cannot send an empty message` error code.
pub const ERROR_EMPTY_MESSAGE: i64 = 50006;
/// Discord's `Invalid Form Body` error code (a field breaks a limit).
pub const ERROR_INVALID_FORM_BODY: i64 = 50035;
/// Discord's `Unknown interaction` error code (unknown, or acknowledged too late).
pub const ERROR_UNKNOWN_INTERACTION: i64 = 10062;
/// Discord's `Interaction has already been acknowledged` error code.
pub const ERROR_ALREADY_ACKNOWLEDGED: i64 = 40060;
/// Discord's `Unknown Message` error code.
pub const ERROR_UNKNOWN_MESSAGE: i64 = 10008;
/// Discord's `Unknown Webhook` error code (a follow-up for an unknown or unacknowledged
/// interaction).
pub const ERROR_UNKNOWN_WEBHOOK: i64 = 10015;
/// Discord's `Unknown Member` error code.
pub const ERROR_UNKNOWN_MEMBER: i64 = 10007;
/// Discord's `A thread has already been created for this message` error code.
pub const ERROR_THREAD_EXISTS: i64 = 160004;

/// The interaction callback type of a deferred response ("the bot is thinking").
pub const CALLBACK_DEFERRED: u64 = 5;
/// The interaction callback type of an immediate message response.
pub const CALLBACK_MESSAGE: u64 = 4;
/// The message flag that makes an interaction response visible to its user only.
pub const FLAG_EPHEMERAL: u64 = 64;

/// One `Invalid Form Body` error: (path such as `embeds.0.title`, Discord's code, message).
type FormError = (String, String, String);

/// The milliseconds of Discord's epoch (2015-01-01) since the Unix epoch, for snowflakes.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// How long a dispatch waits for a connected, identified client before failing the test.
const SESSION_WAIT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the other side's close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(20);

/// The `/query` application command: the definition the bot registers and the option lists
/// Discord sends when someone uses it.
///
/// Discord does not let a command mix subcommands with plain options, and `/query` needs both
/// "run this SQL" and `cancel` / `pending` / `help`, so every form is a subcommand (type 1):
///
/// ```text
/// /query run sql:<SQL> [target:<name>] [reason:<why>]   sql required; target, reason optional
/// /query cancel id:<request id>                          id required
/// /query pending
/// /query help
/// ```
///
/// All four leaf options are strings (type 3); required options come first, as Discord demands.
/// An interaction for `/query run sql:SELECT 1 target:prod` carries
/// `"data":{"name":"query","type":1,"options":[{"name":"run","type":1,"options":[{"name":"sql",
/// "type":3,"value":"SELECT 1"},{"name":"target","type":3,"value":"prod"}]}]}`: options left
/// empty by the user are absent, and a subcommand without options has `"options":[]`.
pub mod query {
    use serde_json::{json, Value};

    /// The command's name.
    pub const NAME: &str = "query";

    /// The definition to register (`PUT /applications/{app}/guilds/{guild}/commands` with
    /// `[definition()]`), as serenity's `CreateCommand` serialises it: see the module docs.
    pub fn definition() -> Value {
        let text = |name: &str, description: &str, required: bool| {
            let mut option = json!({"type": 3, "name": name, "description": description});
            option["required"] = json!(required);
            option
        };
        json!({
            "name": NAME,
            "type": 1,
            "description": "Run SQL against a database, with approval when the policy asks for it",
            "options": [
                {
                    "type": 1, "name": "run", "description": "Run SQL (or ask for approval to)",
                    "options": [
                        text("sql", "The SQL to run", true),
                        text("target", "The database, as the policy names it", false),
                        text("reason", "Why: shown to reviewers", false),
                    ],
                },
                {
                    "type": 1, "name": "cancel",
                    "description": "Cancel one of your pending requests",
                    "options": [text("id", "The request's id", true)],
                },
                {
                    "type": 1, "name": "pending",
                    "description": "What waits for your review, and your open requests",
                    "options": [],
                },
                {"type": 1, "name": "help", "description": "How to use /query", "options": []},
            ],
        })
    }

    /// The options of `/query run sql:<sql> [target:<target>] [reason:<reason>]`.
    pub fn run(sql: &str, target: Option<&str>, reason: Option<&str>) -> Value {
        let mut options = vec![string("sql", sql)];
        if let Some(target) = target {
            options.push(string("target", target));
        }
        if let Some(reason) = reason {
            options.push(string("reason", reason));
        }
        subcommand("run", options)
    }

    /// The options of `/query cancel id:<request_id>`.
    pub fn cancel(request_id: &str) -> Value {
        subcommand("cancel", vec![string("id", request_id)])
    }

    /// The options of `/query pending`.
    pub fn pending() -> Value {
        subcommand("pending", Vec::new())
    }

    /// The options of `/query help`.
    pub fn help() -> Value {
        subcommand("help", Vec::new())
    }

    /// One string option as Discord sends it: `{"name":..,"type":3,"value":..}`.
    pub fn string(name: &str, value: &str) -> Value {
        json!({"name": name, "type": 3, "value": value})
    }

    /// A one-subcommand option list: `[{"name":..,"type":1,"options":[..]}]`.
    pub fn subcommand(name: &str, options: Vec<Value>) -> Value {
        json!([{"name": name, "type": 1, "options": options}])
    }
}

/// One REST call as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RestCall {
    /// The HTTP verb: `GET`, `POST`, `PATCH`, `PUT` or `DELETE`.
    pub method: String,
    /// The path below `/api/v10`, percent-decoded (`/channels/6000/messages/7/reactions/✅/@me`).
    pub path: String,
    /// The query string, if any (`wait=true`).
    pub query: Option<String>,
    /// The JSON body (for a multipart body, its `payload_json` part); `None` when empty.
    pub body: Option<Value>,
    /// Files uploaded in a multipart body.
    pub attachments: Vec<Attachment>,
    /// The `Authorization` header as sent (`Bot <token>`).
    pub authorization: Option<String>,
    /// The status the fake answered.
    pub status: u16,
}

impl RestCall {
    /// Whether the call matches a route pattern such as `POST /channels/*/messages` (method,
    /// space, path with `*` standing for one segment).
    pub fn is(&self, method: &str, route: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && route_matches(route, &self.path)
    }
}

/// A file uploaded with a message (a multipart `files[n]` part).
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The file name.
    pub filename: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One version of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageVersion {
    /// The text.
    pub content: String,
    /// The embeds as sent.
    pub embeds: Vec<Value>,
    /// The message components (buttons, ...) as sent.
    pub components: Vec<Value>,
    /// The files attached.
    pub attachments: Vec<Attachment>,
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOrigin {
    /// `POST /channels/{id}/messages`.
    Channel,
    /// The response to an interaction (callback type 4, or 5 then an edit of `@original`).
    InteractionResponse {
        /// The interaction it answers.
        interaction_id: u64,
    },
    /// A follow-up (`POST /webhooks/{app}/{token}`).
    FollowUp {
        /// The interaction it follows up.
        interaction_id: u64,
    },
}

/// A message the bot posted, in its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its snowflake id.
    pub id: u64,
    /// The channel (or thread) it is in.
    pub channel_id: u64,
    /// The current text.
    pub content: String,
    /// The current embeds.
    pub embeds: Vec<Value>,
    /// The current components.
    pub components: Vec<Value>,
    /// The current files.
    pub attachments: Vec<Attachment>,
    /// Message flags (64: ephemeral).
    pub flags: u64,
    /// How it was posted.
    pub origin: MessageOrigin,
    /// Every version, the one first posted first and the current one last.
    pub versions: Vec<MessageVersion>,
}

impl Message {
    /// What a reader sees, roughly: the content, then each embed's author, title, description,
    /// field names and values and footer, one per line. For assertions such as
    /// `contains("approved")`.
    pub fn visible_text(&self) -> String {
        let mut parts = Vec::new();
        if !self.content.is_empty() {
            parts.push(self.content.clone());
        }
        for embed in &self.embeds {
            embed_texts(embed, &mut parts);
        }
        parts.join("\n")
    }

    /// How many times it was edited.
    pub fn edit_count(&self) -> usize {
        self.versions.len().saturating_sub(1)
    }

    /// Whether only the interaction's user sees it (flag 64).
    pub fn is_ephemeral(&self) -> bool {
        self.flags & FLAG_EPHEMERAL != 0
    }
}

/// A thread started from a message (`POST /channels/{cid}/messages/{mid}/threads`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The thread's id: the id of the message it was started from, as on Discord.
    pub id: u64,
    /// The channel of that message.
    pub parent_channel_id: u64,
    /// The message it was started from (equal to `id`).
    pub message_id: u64,
    /// The thread's name.
    pub name: String,
    /// Minutes of inactivity before it archives, if the bot set it.
    pub auto_archive_duration: Option<u64>,
}

/// A reaction the bot has on a message now (added with `PUT .../reactions/{emoji}/@me` and not
/// removed since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotReaction {
    /// The message's channel.
    pub channel_id: u64,
    /// The message.
    pub message_id: u64,
    /// The emoji, percent-decoded: `✅` for a Unicode emoji, `name:id` for a custom one.
    pub emoji: String,
}

/// Everything the bot did in answer to one interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionResponses {
    /// The interaction's id.
    pub interaction_id: u64,
    /// Its token (the webhook token of its follow-ups).
    pub token: String,
    /// Who used the command.
    pub user_id: u64,
    /// Where.
    pub channel_id: u64,
    /// The bodies of the accepted callbacks (`POST /interactions/{id}/{token}/callback`); at
    /// most one, as Discord refuses a second.
    pub callbacks: Vec<Value>,
    /// The response message (after a type 4 callback, or a type 5 and edits of `@original`).
    pub original: Option<Message>,
    /// Follow-up messages, in posting order.
    pub followups: Vec<Message>,
}

impl InteractionResponses {
    /// The first callback's `type` (5: deferred, 4: message), if the bot answered.
    pub fn callback_type(&self) -> Option<u64> {
        self.callbacks.first()?.get("type")?.as_u64()
    }

    /// Whether the bot deferred (callback type 5).
    pub fn deferred(&self) -> bool {
        self.callback_type() == Some(CALLBACK_DEFERRED)
    }

    /// Whether the response is visible to the user only.
    pub fn ephemeral(&self) -> bool {
        self.original.as_ref().is_some_and(Message::is_ephemeral)
    }

    /// The visible text of the response and the follow-ups, one message after the other.
    pub fn visible_text(&self) -> String {
        self.original
            .iter()
            .chain(&self.followups)
            .map(Message::visible_text)
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An application command the bot registered, in its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredCommand {
    /// The id the fake gave it.
    pub id: u64,
    /// The guild it is registered in; `None` for a global command.
    pub guild_id: Option<u64>,
    /// Its name.
    pub name: String,
    /// The definition as the bot sent it.
    pub definition: Value,
}

/// An Identify (op 2) the gateway received.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    /// The connection it came on (see [`GatewayConnection::id`]).
    pub connection: u64,
    /// The token as sent (`Bot <token>`).
    pub token: String,
    /// The intents bit set.
    pub intents: u64,
    /// The session the fake opened for it (empty when it was refused).
    pub session_id: String,
}

impl Identify {
    /// The intents as serenity's type.
    pub fn gateway_intents(&self) -> GatewayIntents {
        GatewayIntents::from_bits_retain(self.intents)
    }
}

/// A RESUME (op 6) the gateway received.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The connection it came on.
    pub connection: u64,
    /// The session it asked for.
    pub session_id: String,
    /// The last sequence number the client had seen.
    pub seq: u64,
    /// Whether the fake resumed the session (otherwise it answered op 9).
    pub accepted: bool,
}

/// One gateway websocket connection, open or closed.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConnection {
    /// Numbered from 1 in the order they were opened.
    pub id: u64,
    /// The session it carries (after READY or RESUMED).
    pub session_id: Option<String>,
    /// Still open.
    pub open: bool,
    /// The fake told it to go away (op 7, op 9) or it was replaced by a resume: no more
    /// dispatches go there.
    pub draining: bool,
    /// Heartbeats (op 1) received on it.
    pub heartbeats: u64,
    /// The close code the client sent, if it closed cleanly.
    pub client_close_code: Option<u16>,
}

/// What [`FakeDiscord::send_command`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentInteraction {
    /// The interaction's id.
    pub interaction_id: u64,
    /// Its token.
    pub token: String,
    /// The dispatch's sequence number.
    pub seq: u64,
}

/// A fake Discord: REST API and gateway on one local port. Cheap to clone; the server stops
/// when the last clone drops.
#[derive(Clone)]
pub struct FakeDiscord {
    /// Everything the handlers and the test share.
    shared: Arc<Shared>,
    /// Stops the server when the last clone drops.
    _server: Arc<ServerGuard>,
}

/// State shared by the REST handlers, the gateway tasks and the test.
struct Shared {
    /// The port the server listens on, for the URLs it hands out.
    port: u16,
    /// A random tag for tokens and session ids, so two fakes (or two runs) never mix them up.
    tag: String,
    /// The recordings and configuration.
    inner: Mutex<Inner>,
    /// Tells gateway tasks to close when the fake is dropped.
    shutdown: watch::Sender<bool>,
}

/// Everything recorded and configured, behind one lock (never held across an await).
#[derive(Default)]
struct Inner {
    /// Every REST call, in the order answered.
    calls: Vec<RestCall>,
    /// Every message posted (ephemeral ones too), in posting order.
    messages: Vec<Message>,
    /// Threads started from messages, in creation order.
    threads: Vec<Thread>,
    /// The bot's current reactions.
    reactions: Vec<BotReaction>,
    /// Interactions sent, in order.
    interactions: Vec<InteractionState>,
    /// Registered commands (guild and global).
    commands: Vec<RegisteredCommand>,
    /// Each user's roles, for `member` objects and `GET /guilds/{gid}/members/{uid}`.
    members: BTreeMap<u64, Vec<u64>>,
    /// Role names set with [`FakeDiscord::set_role_name`].
    role_names: BTreeMap<u64, String>,
    /// Pending 429 answers.
    rate_limits: Vec<RateLimitRule>,
    /// `Bot <token>` every call and Identify must carry, when set.
    required_token: Option<String>,
    /// The Hello interval for new connections; `None` means the default.
    heartbeat_interval: Option<Duration>,
    /// How late a callback may come; `None` means the default.
    ack_deadline: Option<Duration>,
    /// The last snowflake handed out, so ids strictly increase.
    last_snowflake: u64,
    /// A counter for tokens and session ids.
    counter: u64,
    /// Gateway connections, open and closed.
    connections: Vec<ConnectionState>,
    /// Gateway sessions, by id.
    sessions: HashMap<String, Session>,
    /// Identify payloads received.
    identifies: Vec<Identify>,
    /// RESUME payloads received.
    resumes: Vec<Resume>,
    /// Things the fake could not make sense of, or that Discord would refuse. Listed when a
    /// wait times out.
    problems: Vec<String>,
}

/// The fake's side of one interaction.
struct InteractionState {
    /// The interaction's id.
    id: u64,
    /// Its token.
    token: String,
    /// Who used the command.
    user_id: u64,
    /// Where.
    channel_id: u64,
    /// When it was dispatched, for the 3-second deadline.
    sent_at: Instant,
    /// Accepted callback bodies.
    callbacks: Vec<Value>,
    /// The response message's id, once there is one.
    original: Option<u64>,
    /// Follow-up message ids.
    followups: Vec<u64>,
}

/// The next `remaining` calls matching `method` and `route` answer 429.
struct RateLimitRule {
    /// The HTTP verb.
    method: String,
    /// A path pattern with `*` for one segment.
    route: String,
    /// How many more calls it refuses.
    remaining: usize,
    /// The `retry_after` to announce.
    retry_after: Duration,
}

/// The fake's side of one gateway connection.
struct ConnectionState {
    /// Numbered from 1.
    id: u64,
    /// Frames for the connection's task; `None` once it closed.
    tx: Option<mpsc::UnboundedSender<Outgoing>>,
    /// The session it carries.
    session: Option<String>,
    /// No more dispatches go there.
    draining: bool,
    /// Heartbeats received.
    heartbeats: u64,
    /// The client's close code.
    client_close_code: Option<u16>,
}

/// A gateway session: what RESUME picks up again.
struct Session {
    /// The token it was identified with.
    token: String,
    /// The intents it asked for.
    intents: u64,
    /// The last sequence number used.
    seq: u64,
    /// Every dispatch sent in it, for replay on RESUME.
    log: Vec<(u64, String)>,
    /// Invalidated by a non-resumable op 9.
    valid: bool,
}

/// What a gateway task should do next.
enum Outgoing {
    /// Send a text frame.
    Text(String),
    /// Send a close frame with this code and reason, then wait for the client's close.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// Stops the server and the gateway tasks on drop.
struct ServerGuard {
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
    /// The shared state, to signal the gateway tasks.
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

    fn gateway_url(&self) -> String {
        format!("ws://127.0.0.1:{}/gateway", self.port)
    }

    fn problem(&self, problem: String) {
        self.lock().problem(problem);
    }
}

impl Inner {
    fn problem(&mut self, problem: String) {
        eprintln!("fake discord: {problem}");
        self.problems.push(problem);
    }

    /// A fresh snowflake: the current time in Discord's layout, strictly above the last one.
    fn snowflake(&mut self) -> u64 {
        let now = unix_millis().saturating_sub(DISCORD_EPOCH_MS) << 22;
        self.last_snowflake = now.max(self.last_snowflake + 1);
        self.last_snowflake
    }

    fn next_number(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn roles_of(&self, user_id: u64) -> Vec<u64> {
        self.members.get(&user_id).cloned().unwrap_or_default()
    }

    fn message_mut(&mut self, channel_id: u64, message_id: u64) -> Option<&mut Message> {
        self.messages
            .iter_mut()
            .find(|m| m.channel_id == channel_id && m.id == message_id)
    }

    fn message_by_id(&self, message_id: u64) -> Option<&Message> {
        self.messages.iter().find(|m| m.id == message_id)
    }

    /// The connection dispatches go to now: the newest open one that carries a valid session
    /// and was not told to go away.
    fn current_connection(&self) -> Option<usize> {
        self.connections.iter().rposition(|c| {
            c.tx.is_some()
                && !c.draining
                && c.session
                    .as_ref()
                    .and_then(|s| self.sessions.get(s))
                    .is_some_and(|s| s.valid)
        })
    }

    /// Sends a frame to a connection's task (dropped silently if it just closed: the session
    /// log keeps dispatches for a RESUME).
    fn send_to(&self, connection: u64, outgoing: Outgoing) {
        if let Some(tx) = self
            .connections
            .iter()
            .find(|c| c.id == connection)
            .and_then(|c| c.tx.as_ref())
        {
            let _ = tx.send(outgoing);
        }
    }

    /// Numbers a dispatch in a session, logs it for replay and returns the frame.
    fn sequence(&mut self, session_id: &str, event: &str, d: &Value) -> Option<(u64, String)> {
        let session = self.sessions.get_mut(session_id)?;
        session.seq += 1;
        let seq = session.seq;
        let text = json!({"op": 0, "s": seq, "t": event, "d": d}).to_string();
        session.log.push((seq, text.clone()));
        Some((seq, text))
    }
}

impl FakeDiscord {
    /// Starts the REST and gateway server on `127.0.0.1:<free port>`.
    pub async fn start() -> FakeDiscord {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake discord: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("fake discord: a bound socket has an address")
            .port();
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).expect("the operating system's random source works");
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            port,
            tag: hex::encode(random),
            inner: Mutex::new(Inner::default()),
            shutdown,
        });
        let app = Router::new()
            .route("/gateway", get(gateway))
            .route("/gateway/", get(gateway))
            .fallback(rest)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("fake discord: server stopped: {error}");
            }
        });
        FakeDiscord {
            _server: Arc::new(ServerGuard {
                task,
                shared: shared.clone(),
            }),
            shared,
        }
    }

    /// `http://127.0.0.1:PORT`: what to give serenity's `HttpBuilder::proxy` (serenity replaces
    /// `https://discord.com` with it, so calls arrive under `/api/v10`).
    pub fn base_url(&self) -> String {
        self.shared.base_url()
    }

    /// `ws://127.0.0.1:PORT/gateway`: what `GET /api/v10/gateway` answers (serenity appends
    /// `?v=10`).
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url()
    }

    // ---- configuration

    /// Gives a user these roles in the guild: `member` objects in dispatches and
    /// `GET /guilds/{GUILD_ID}/members/{user_id}` carry them.
    pub fn set_member_roles(&self, user_id: u64, role_ids: &[u64]) {
        self.shared
            .lock()
            .members
            .insert(user_id, role_ids.to_vec());
    }

    /// Names a role, for `GET /guilds/{GUILD_ID}/roles` (unnamed roles are called `role-<id>`).
    pub fn set_role_name(&self, role_id: u64, name: &str) {
        self.shared
            .lock()
            .role_names
            .insert(role_id, name.to_string());
    }

    /// Makes every REST call and Identify carry this token: others get 401 (REST; `GET /gateway`
    /// and the interaction and webhook routes excepted, as on Discord) or close code 4004
    /// (gateway, which makes serenity's `Client::start` fail with `InvalidAuthentication`).
    pub fn require_token(&self, token: &str) {
        self.shared.lock().required_token = Some(token.to_string());
    }

    /// The heartbeat interval in the Hello of connections opened from now on.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.shared.lock().heartbeat_interval = Some(interval);
    }

    /// How long after an interaction its callback is still accepted (default 3 s, as on
    /// Discord). Later callbacks answer 404 `10062 Unknown interaction` and are listed in
    /// [`FakeDiscord::problems`].
    pub fn set_ack_deadline(&self, deadline: Duration) {
        self.shared.lock().ack_deadline = Some(deadline);
    }

    /// Makes the next `times` calls matching `method` and `route` (a path below `/api/v10` with
    /// `*` for one segment, such as `/channels/*/messages`) answer 429 with Discord's body
    /// `{"message":"You are being rate limited.","retry_after":<secs>,"global":false}` and
    /// headers `Retry-After` (whole seconds, rounded up), `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset`, `X-RateLimit-Reset-After` (fractional
    /// seconds), `X-RateLimit-Bucket` and `X-RateLimit-Scope: user`. The refused calls are
    /// recorded with status 429 and change nothing.
    pub fn rate_limit(&self, method: &str, route: &str, times: usize, retry_after: Duration) {
        self.shared.lock().rate_limits.push(RateLimitRule {
            method: method.to_ascii_uppercase(),
            route: route.to_string(),
            remaining: times,
            retry_after,
        });
    }

    // ---- recordings

    /// Every REST call, in the order answered.
    pub fn calls(&self) -> Vec<RestCall> {
        self.shared.lock().calls.clone()
    }

    /// The calls matching a route pattern, such as `("POST", "/channels/*/messages")`.
    pub fn calls_to(&self, method: &str, route: &str) -> Vec<RestCall> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|call| call.is(method, route))
            .cloned()
            .collect()
    }

    /// The messages everyone sees in a channel (or thread), in posting order, each in its
    /// current version: the bot's posts, and interaction responses and follow-ups that are not
    /// ephemeral.
    pub fn messages(&self, channel_id: u64) -> Vec<Message> {
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|m| m.channel_id == channel_id && !m.is_ephemeral())
            .cloned()
            .collect()
    }

    /// One message by channel and id (ephemeral ones included).
    pub fn message(&self, channel_id: u64, message_id: u64) -> Option<Message> {
        self.shared
            .lock()
            .messages
            .iter()
            .find(|m| m.channel_id == channel_id && m.id == message_id)
            .cloned()
    }

    /// The messages posted in a thread (a thread's id is the id of the message it was started
    /// from), in posting order.
    pub fn thread(&self, thread_id: u64) -> Vec<Message> {
        self.messages(thread_id)
    }

    /// The threads started from messages, in creation order.
    pub fn threads(&self) -> Vec<Thread> {
        self.shared.lock().threads.clone()
    }

    /// The reactions the bot has on messages now.
    pub fn bot_reactions(&self) -> Vec<BotReaction> {
        self.shared.lock().reactions.clone()
    }

    /// What the bot did in answer to an interaction sent with [`FakeDiscord::send_command`].
    /// Panics for an id the fake never sent.
    pub fn interaction_responses(&self, interaction_id: u64) -> InteractionResponses {
        let inner = self.shared.lock();
        let state = inner
            .interactions
            .iter()
            .find(|i| i.id == interaction_id)
            .unwrap_or_else(|| {
                panic!("fake discord: no interaction {interaction_id} was sent by this fake")
            });
        InteractionResponses {
            interaction_id,
            token: state.token.clone(),
            user_id: state.user_id,
            channel_id: state.channel_id,
            callbacks: state.callbacks.clone(),
            original: state
                .original
                .and_then(|id| inner.message_by_id(id))
                .cloned(),
            followups: state
                .followups
                .iter()
                .filter_map(|id| inner.message_by_id(*id))
                .cloned()
                .collect(),
        }
    }

    /// The application commands registered now, guild and global.
    pub fn registered_commands(&self) -> Vec<RegisteredCommand> {
        self.shared.lock().commands.clone()
    }

    /// Requests the fake could not make sense of, replies of its own that serenity would not
    /// parse, and things Discord would refuse (bodies over its limits, late or double
    /// acknowledgements, dispatches the bot's intents exclude). Empty in a healthy test.
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
        mut check: impl FnMut(&FakeDiscord) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fake discord: timed out after {timeout:?} waiting for {what}\n{}",
                    self.dump()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Everything recorded, readable: for failure messages.
    pub fn dump(&self) -> String {
        let inner = self.shared.lock();
        let mut out = format!("REST calls ({}):\n", inner.calls.len());
        for call in &inner.calls {
            let body = call.body.as_ref().map(Value::to_string).unwrap_or_default();
            out.push_str(&format!(
                "  {} {} {} auth={} {}\n",
                call.status,
                call.method,
                call.path,
                call.authorization.as_deref().unwrap_or("-"),
                truncate(&body, 400)
            ));
        }
        out.push_str(&format!("messages ({}):\n", inner.messages.len()));
        for message in &inner.messages {
            out.push_str(&format!(
                "  #{} in {} ({:?}, flags {}, {} edit(s)): {}\n",
                message.id,
                message.channel_id,
                message.origin,
                message.flags,
                message.edit_count(),
                truncate(&message.visible_text().replace('\n', " / "), 300)
            ));
        }
        for thread in &inner.threads {
            out.push_str(&format!(
                "thread {} {:?} from message {} in {}\n",
                thread.id, thread.name, thread.message_id, thread.parent_channel_id
            ));
        }
        for reaction in &inner.reactions {
            out.push_str(&format!(
                "bot reaction {} on {} in {}\n",
                reaction.emoji, reaction.message_id, reaction.channel_id
            ));
        }
        for interaction in &inner.interactions {
            out.push_str(&format!(
                "interaction {} by {} in {}: {} callback(s), original {:?}, {} follow-up(s)\n",
                interaction.id,
                interaction.user_id,
                interaction.channel_id,
                interaction.callbacks.len(),
                interaction.original,
                interaction.followups.len()
            ));
        }
        for command in &inner.commands {
            out.push_str(&format!(
                "command /{} (id {}, guild {:?})\n",
                command.name, command.id, command.guild_id
            ));
        }
        out.push_str(&format!(
            "gateway: {} connection(s), {} identify, {} resume\n",
            inner.connections.len(),
            inner.identifies.len(),
            inner.resumes.len()
        ));
        for c in &inner.connections {
            out.push_str(&format!(
                "  connection {}: {} session {:?}{} heartbeats {} client close {:?}\n",
                c.id,
                if c.tx.is_some() { "open" } else { "closed" },
                c.session,
                if c.draining { " draining" } else { "" },
                c.heartbeats,
                c.client_close_code
            ));
        }
        for identify in &inner.identifies {
            out.push_str(&format!(
                "  identify on {}: intents {:#x} session {:?}\n",
                identify.connection, identify.intents, identify.session_id
            ));
        }
        for resume in &inner.resumes {
            out.push_str(&format!(
                "  resume on {}: session {:?} seq {} accepted {}\n",
                resume.connection, resume.session_id, resume.seq, resume.accepted
            ));
        }
        if !inner.problems.is_empty() {
            out.push_str("problems:\n");
            for problem in &inner.problems {
                out.push_str(&format!("  {problem}\n"));
            }
        }
        out
    }

    // ---- gateway state

    /// Waits until a client has identified and got READY on a connection that is still open,
    /// and returns that Identify. Panics after `timeout`.
    pub async fn wait_identified(&self, timeout: Duration) -> Identify {
        self.wait_for("a client to identify", timeout, |fake| {
            let inner = fake.shared.lock();
            let current = inner.current_connection()?;
            let session = inner.connections[current].session.clone()?;
            inner
                .identifies
                .iter()
                .rev()
                .find(|i| i.session_id == session)
                .cloned()
        })
        .await
    }

    /// Waits until `count` RESUMEs have been accepted and the resumed session is live. Panics
    /// after `timeout`.
    pub async fn wait_resumed(&self, count: usize, timeout: Duration) {
        self.wait_for(&format!("{count} accepted RESUME(s)"), timeout, |fake| {
            let inner = fake.shared.lock();
            let accepted = inner.resumes.iter().filter(|r| r.accepted).count();
            (accepted >= count && inner.current_connection().is_some()).then_some(())
        })
        .await
    }

    /// The Identify payloads received, in order.
    pub fn identifies(&self) -> Vec<Identify> {
        self.shared.lock().identifies.clone()
    }

    /// How many Identify payloads were received.
    pub fn identify_count(&self) -> usize {
        self.shared.lock().identifies.len()
    }

    /// The RESUME payloads received, in order.
    pub fn resumes(&self) -> Vec<Resume> {
        self.shared.lock().resumes.clone()
    }

    /// How many RESUME payloads were received (accepted or not).
    pub fn resume_count(&self) -> usize {
        self.shared.lock().resumes.len()
    }

    /// How many gateway connections were opened since the start, closed ones included.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().connections.len()
    }

    /// Every gateway connection so far, in opening order.
    pub fn connections(&self) -> Vec<GatewayConnection> {
        self.shared
            .lock()
            .connections
            .iter()
            .map(|c| GatewayConnection {
                id: c.id,
                session_id: c.session.clone(),
                open: c.tx.is_some(),
                draining: c.draining,
                heartbeats: c.heartbeats,
                client_close_code: c.client_close_code,
            })
            .collect()
    }

    // ---- gateway control

    /// Sends op 7 (reconnect) on the live connection: the client should open a new connection
    /// and RESUME. No more dispatches go to the old connection.
    pub async fn send_reconnect(&self) {
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        inner.send_to(
            connection,
            Outgoing::Text(json!({"op": 7, "d": null}).to_string()),
        );
        mark_draining(&mut inner, connection);
    }

    /// Sends op 9 (invalid session) on the live connection. Resumable: the client should
    /// RESUME on a new connection; not resumable: the session is gone and the client should
    /// identify again.
    pub async fn send_invalid_session(&self, resumable: bool) {
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        inner.send_to(
            connection,
            Outgoing::Text(json!({"op": 9, "d": resumable}).to_string()),
        );
        mark_draining(&mut inner, connection);
        if !resumable {
            let session = inner
                .connections
                .iter()
                .find(|c| c.id == connection)
                .and_then(|c| c.session.clone());
            if let Some(session) = session.and_then(|s| inner.sessions.get_mut(&s)) {
                session.valid = false;
            }
        }
    }

    /// Drops the live connection abruptly (no close frame), as a network failure would; the
    /// session survives, so the client should RESUME.
    pub async fn drop_connection(&self) {
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        inner.send_to(connection, Outgoing::Drop);
        mark_draining(&mut inner, connection);
    }

    /// Closes the live connection with a close frame carrying `code` (4000: unknown error,
    /// resumable; 4004: authentication failed; ...).
    pub async fn close_connection(&self, code: u16) {
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        inner.send_to(
            connection,
            Outgoing::Close(code, "closed by the test".into()),
        );
        mark_draining(&mut inner, connection);
    }

    // ---- dispatches

    /// Sends an INTERACTION_CREATE for the `/query` command (type 2, guild [`GUILD_ID`]), used
    /// by `user_id` in `channel_id`, with `options` as Discord sends them (a JSON array: see
    /// [`query`] for the shapes, or any list of `{"name","type","value"}` objects). The
    /// `member` carries the user's roles from [`FakeDiscord::set_member_roles`].
    ///
    /// When the bot registered a `query` command, the options must fit its definition (Discord
    /// never sends anything else); otherwise this panics, as it does when serenity would not
    /// parse the payload. Waits up to 10 s for an identified client.
    pub async fn send_command(
        &self,
        user_id: u64,
        channel_id: u64,
        options: Value,
    ) -> SentInteraction {
        let (d, interaction_id, token) = {
            let mut inner = self.shared.lock();
            let interaction_id = inner.snowflake();
            let n = inner.next_number();
            let token = format!("itok-{}-{n}", self.shared.tag);
            let registered = inner
                .commands
                .iter()
                .filter(|c| c.name == query::NAME)
                .max_by_key(|c| c.guild_id.is_some())
                .cloned();
            if let Some(command) = &registered {
                let defined = command
                    .definition
                    .get("options")
                    .cloned()
                    .unwrap_or(json!([]));
                if let Err(mismatch) = check_options(&defined, &options, "") {
                    panic!(
                        "fake discord: Discord would not send these /query options, which do not \
                         fit the definition the bot registered ({mismatch}): {options}\n\
                         registered: {}",
                        command.definition
                    );
                }
            }
            let command_id = registered.as_ref().map_or(5000, |c| c.id);
            inner.members.entry(user_id).or_default();
            let roles = inner.roles_of(user_id);
            let mut data = json!({
                "id": command_id.to_string(),
                "name": query::NAME,
                "type": 1,
                "options": options,
            });
            if registered.as_ref().is_some_and(|c| c.guild_id.is_some()) {
                data["guild_id"] = json!(GUILD_ID.to_string());
            }
            let d = json!({
                "id": interaction_id.to_string(),
                "application_id": APPLICATION_ID.to_string(),
                "type": 2,
                "data": data,
                "guild_id": GUILD_ID.to_string(),
                "guild": {"id": GUILD_ID.to_string(), "locale": "en-US", "features": []},
                "channel_id": channel_id.to_string(),
                "channel": {
                    "id": channel_id.to_string(),
                    "type": 0,
                    "name": format!("channel-{channel_id}"),
                    "guild_id": GUILD_ID.to_string(),
                },
                "member": member_json(user_id, &roles, true),
                "token": token,
                "version": 1,
                "app_permissions": "2248473465835073",
                "locale": "en-US",
                "guild_locale": "en-US",
                "entitlements": [],
                "authorizing_integration_owners": {"0": GUILD_ID.to_string()},
                "context": 0,
                "attachment_size_limit": 8_388_608,
            });
            (d, interaction_id, token)
        };
        let parsed = expect_valid_dispatch("INTERACTION_CREATE", &d);
        match parsed {
            Event::InteractionCreate(event) => match event.interaction {
                Interaction::Command(command) => {
                    let member_roles: Vec<u64> = command
                        .member
                        .as_ref()
                        .map(|m| m.roles.iter().map(|r| r.get()).collect())
                        .unwrap_or_default();
                    assert_eq!(
                        (command.user.id.get(), member_roles),
                        (user_id, self.shared.lock().roles_of(user_id)),
                        "fake discord: serenity reads another user or other roles from the \
                         interaction than the fake meant to send"
                    );
                }
                other => panic!("fake discord: serenity reads the command as {other:?}"),
            },
            other => panic!("fake discord: serenity reads INTERACTION_CREATE as {other:?}"),
        }
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        inner.interactions.push(InteractionState {
            id: interaction_id,
            token: token.clone(),
            user_id,
            channel_id,
            sent_at: Instant::now(),
            callbacks: Vec::new(),
            original: None,
            followups: Vec::new(),
        });
        let seq = dispatch_on(&mut inner, connection, "INTERACTION_CREATE", &d);
        SentInteraction {
            interaction_id,
            token,
            seq,
        }
    }

    /// Sends MESSAGE_REACTION_ADD (or, with `added` false, MESSAGE_REACTION_REMOVE): `user_id`
    /// reacted with a Unicode emoji to `message_id` in `channel_id`, in guild [`GUILD_ID`]. An
    /// ADD carries a `member` with the user's roles, as Discord's does.
    ///
    /// Like Discord, the fake only sends it when the client identified with the
    /// `GUILD_MESSAGE_REACTIONS` intent; otherwise nothing is sent, a problem is listed and this
    /// returns `false`. Waits up to 10 s for an identified client.
    pub async fn send_reaction(
        &self,
        added: bool,
        user_id: u64,
        channel_id: u64,
        message_id: u64,
        emoji: &str,
    ) -> bool {
        let event = if added {
            "MESSAGE_REACTION_ADD"
        } else {
            "MESSAGE_REACTION_REMOVE"
        };
        let d = {
            let mut inner = self.shared.lock();
            inner.members.entry(user_id).or_default();
            let mut d = json!({
                "user_id": user_id.to_string(),
                "channel_id": channel_id.to_string(),
                "message_id": message_id.to_string(),
                "guild_id": GUILD_ID.to_string(),
                "emoji": {"id": null, "name": emoji},
                "burst": false,
                "type": 0,
            });
            if added {
                d["member"] = member_json(user_id, &inner.roles_of(user_id), false);
                d["burst_colors"] = json!([]);
                if inner.message_by_id(message_id).is_some() {
                    d["message_author_id"] = json!(BOT_USER_ID.to_string());
                }
            }
            d
        };
        match expect_valid_dispatch(event, &d) {
            Event::ReactionAdd(_) | Event::ReactionRemove(_) => {}
            other => panic!("fake discord: serenity reads {event} as {other:?}"),
        }
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        let intents = session_of(&inner, connection).map_or(0, |s| s.intents);
        if !GatewayIntents::from_bits_retain(intents)
            .contains(GatewayIntents::GUILD_MESSAGE_REACTIONS)
        {
            inner.problem(format!(
                "{event} by {user_id} on message {message_id} not sent: the client identified \
                 with intents {intents:#x}, without GUILD_MESSAGE_REACTIONS (1 << 10), so \
                 Discord would not deliver it"
            ));
            return false;
        }
        dispatch_on(&mut inner, connection, event, &d);
        true
    }

    /// Sends any dispatch (`t` and `d`) on the live connection and returns its sequence
    /// number, after checking that serenity parses it as a known event (panics otherwise).
    /// Intents are not checked. Waits up to 10 s for an identified client.
    pub async fn send_dispatch(&self, event: &str, d: Value) -> u64 {
        expect_valid_dispatch(event, &d);
        let connection = self.wait_session().await;
        let mut inner = self.shared.lock();
        dispatch_on(&mut inner, connection, event, &d)
    }

    /// Sends any text on the live connection, unchecked and unnumbered: for testing how the
    /// bot copes with frames serenity cannot parse.
    pub async fn send_unchecked(&self, text: &str) {
        let connection = self.wait_session().await;
        self.shared
            .lock()
            .send_to(connection, Outgoing::Text(text.to_string()));
    }

    /// Waits for a live, identified connection and returns its id; panics after 10 s.
    async fn wait_session(&self) -> u64 {
        self.wait_for("an identified gateway connection", SESSION_WAIT, |fake| {
            let inner = fake.shared.lock();
            inner.current_connection().map(|i| inner.connections[i].id)
        })
        .await
    }
}

fn session_of(inner: &Inner, connection: u64) -> Option<&Session> {
    let session = inner
        .connections
        .iter()
        .find(|c| c.id == connection)?
        .session
        .as_ref()?;
    inner.sessions.get(session)
}

fn mark_draining(inner: &mut Inner, connection: u64) {
    if let Some(c) = inner.connections.iter_mut().find(|c| c.id == connection) {
        c.draining = true;
    }
}

/// Numbers and sends a checked dispatch on a connection; returns its sequence number.
fn dispatch_on(inner: &mut Inner, connection: u64, event: &str, d: &Value) -> u64 {
    let session = inner
        .connections
        .iter()
        .find(|c| c.id == connection)
        .and_then(|c| c.session.clone())
        .expect("fake discord: the live connection carries a session");
    let (seq, text) = inner
        .sequence(&session, event, d)
        .expect("fake discord: the live connection's session exists");
    inner.send_to(connection, Outgoing::Text(text));
    seq
}

// ---- gateway

/// `/gateway`: a gateway connection.
async fn gateway(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let version = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("v="))
            .map(str::to_string)
    });
    if version.as_deref() != Some("10") {
        shared.problem(format!(
            "a gateway connection asking for version {version:?} (expected ?v=10): {uri}"
        ));
    }
    upgrade.on_upgrade(move |socket| run_gateway(shared, socket))
}

async fn run_gateway(shared: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut shutdown = shared.shutdown.subscribe();
    let (id, interval) = {
        let mut inner = shared.lock();
        let id = inner.connections.len() as u64 + 1;
        inner.connections.push(ConnectionState {
            id,
            tx: Some(tx),
            session: None,
            draining: false,
            heartbeats: 0,
            client_close_code: None,
        });
        (
            id,
            inner
                .heartbeat_interval
                .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL),
        )
    };
    let hello = json!({
        "op": 10,
        "s": null,
        "t": null,
        "d": {"heartbeat_interval": interval.as_millis() as u64, "_trace": ["fake-discord"]},
    });
    if let Err(problem) = check_gateway_frame(&hello) {
        shared.problem(problem);
    }
    let mut open = send_text(&mut socket, hello.to_string()).await;
    while open {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Text(text)) => open = send_text(&mut socket, text).await,
                Some(Outgoing::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    if socket.send(WsMessage::Close(Some(frame))).await.is_ok() {
                        drain(&shared, id, &mut socket).await;
                    }
                    open = false;
                }
                // Dropping the socket closes TCP without a close frame.
                Some(Outgoing::Drop) | None => open = false,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => on_client_frame(&shared, id, text.as_str()),
                Some(Ok(WsMessage::Binary(_))) => {
                    shared.problem(format!("a binary frame from the client on connection {id}"));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    record_close(&shared, id, frame.as_ref().map(|f| f.code));
                    // Keep reading so the close reply is flushed and the client sees a clean end.
                    drain(&shared, id, &mut socket).await;
                    open = false;
                }
                Some(Err(_)) | None => open = false,
                // Pings are answered by the websocket layer while reading.
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed() => {
                let frame = CloseFrame { code: 1001, reason: "fake discord stopped".into() };
                let _ = socket.send(WsMessage::Close(Some(frame))).await;
                open = false;
            }
        }
    }
    let mut inner = shared.lock();
    if let Some(c) = inner.connections.iter_mut().find(|c| c.id == id) {
        c.tx = None;
    }
}

async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket.send(WsMessage::Text(text.into())).await.is_ok()
}

/// Reads until the other side finishes closing (or [`CLOSE_WAIT`] passes).
async fn drain(shared: &Shared, id: u64, socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if let WsMessage::Close(frame) = message {
                record_close(shared, id, frame.as_ref().map(|f| f.code));
            }
        }
    })
    .await;
}

fn record_close(shared: &Shared, id: u64, code: Option<u16>) {
    let mut inner = shared.lock();
    if let Some(c) = inner.connections.iter_mut().find(|c| c.id == id) {
        if c.client_close_code.is_none() {
            c.client_close_code = code.or(Some(1005));
        }
        c.draining = true;
    }
}

/// Handles one text frame from the client: heartbeat, Identify, RESUME or something else.
fn on_client_frame(shared: &Shared, connection: u64, text: &str) {
    let mut inner = shared.lock();
    let frame: Value = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            inner.problem(format!(
                "a gateway frame that is not JSON ({error}) on connection {connection}: {}",
                truncate(text, 300)
            ));
            inner.send_to(
                connection,
                Outgoing::Close(4002, "Error while decoding payload.".into()),
            );
            return;
        }
    };
    let op = frame.get("op").and_then(Value::as_u64);
    let d = frame.get("d").cloned().unwrap_or(Value::Null);
    let has_session = inner
        .connections
        .iter()
        .find(|c| c.id == connection)
        .is_some_and(|c| c.session.is_some());
    match op {
        Some(1) => {
            if let Some(c) = inner.connections.iter_mut().find(|c| c.id == connection) {
                c.heartbeats += 1;
            }
            inner.send_to(connection, Outgoing::Text(json!({"op": 11}).to_string()));
        }
        Some(2) if has_session => {
            inner.problem(format!("a second Identify on connection {connection}"));
            inner.send_to(
                connection,
                Outgoing::Close(4005, "Already authenticated.".into()),
            );
        }
        Some(2) => identify(shared, &mut inner, connection, &d),
        Some(6) => resume(&mut inner, connection, &d),
        Some(3 | 4 | 8) if has_session => {}
        Some(op) if !has_session => {
            inner.problem(format!(
                "op {op} before Identify on connection {connection}: {}",
                truncate(text, 300)
            ));
            inner.send_to(
                connection,
                Outgoing::Close(4003, "Not authenticated.".into()),
            );
        }
        _ => {
            inner.problem(format!(
                "an unknown gateway opcode on connection {connection}: {}",
                truncate(text, 300)
            ));
            inner.send_to(connection, Outgoing::Close(4001, "Unknown opcode.".into()));
        }
    }
}

fn identify(shared: &Shared, inner: &mut Inner, connection: u64, d: &Value) {
    let token = d
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let intents = d.get("intents").and_then(Value::as_u64);
    let Some(intents) = intents else {
        inner.problem(format!("an Identify without intents: {d}"));
        inner.send_to(
            connection,
            Outgoing::Close(4002, "Error while decoding payload.".into()),
        );
        return;
    };
    if let Some(required) = &inner.required_token {
        if !token_matches(&token, required) {
            inner.identifies.push(Identify {
                connection,
                token,
                intents,
                session_id: String::new(),
            });
            inner.send_to(
                connection,
                Outgoing::Close(4004, "Authentication failed.".into()),
            );
            return;
        }
    }
    let n = inner.next_number();
    let session_id = format!("fake-session-{}-{n}", shared.tag);
    inner.sessions.insert(
        session_id.clone(),
        Session {
            token: token.clone(),
            intents,
            seq: 0,
            log: Vec::new(),
            valid: true,
        },
    );
    if let Some(c) = inner.connections.iter_mut().find(|c| c.id == connection) {
        c.session = Some(session_id.clone());
    }
    inner.identifies.push(Identify {
        connection,
        token,
        intents,
        session_id: session_id.clone(),
    });
    let shard = d.get("shard").cloned().unwrap_or(json!([0, 1]));
    let ready = json!({
        "v": 10,
        "user": {
            "id": BOT_USER_ID.to_string(),
            "username": BOT_USERNAME,
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "bot": true,
            "verified": true,
            "mfa_enabled": false,
            "flags": 0,
        },
        "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
        "private_channels": [],
        "presences": [],
        "relationships": [],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": shared.gateway_url(),
        "shard": shard,
        "application": {"id": APPLICATION_ID.to_string(), "flags": 0},
        "_trace": ["fake-discord"],
    });
    if let Err(problem) = check_dispatch("READY", &ready) {
        inner.problem(problem);
    }
    dispatch_on(inner, connection, "READY", &ready);
}

fn resume(inner: &mut Inner, connection: u64, d: &Value) {
    let session_id = d
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let token = d
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let accepted = inner
        .sessions
        .get(&session_id)
        .is_some_and(|s| s.valid && token_matches(&token, &s.token));
    inner.resumes.push(Resume {
        connection,
        session_id: session_id.clone(),
        seq,
        accepted,
    });
    if !accepted {
        inner.send_to(
            connection,
            Outgoing::Text(json!({"op": 9, "d": false}).to_string()),
        );
        return;
    }
    // The session moves here: older connections that carried it get nothing more.
    for c in inner.connections.iter_mut() {
        if c.session.as_deref() == Some(session_id.as_str()) && c.id != connection {
            c.draining = true;
        }
        if c.id == connection {
            c.session = Some(session_id.clone());
        }
    }
    let missed: Vec<String> = inner.sessions[&session_id]
        .log
        .iter()
        .filter(|(s, _)| *s > seq)
        .map(|(_, text)| text.clone())
        .collect();
    for text in missed {
        inner.send_to(connection, Outgoing::Text(text));
    }
    let resumed = json!({"_trace": ["fake-discord"]});
    dispatch_on(inner, connection, "RESUMED", &resumed);
}

fn token_matches(sent: &str, required: &str) -> bool {
    sent == required || sent.strip_prefix("Bot ") == Some(required)
}

// ---- REST

/// A REST answer before it becomes an HTTP response.
enum Reply {
    /// A JSON body with a status.
    Json(StatusCode, Value),
    /// 204 No Content.
    NoContent,
}

fn ok(value: Value) -> Reply {
    Reply::Json(StatusCode::OK, value)
}

fn discord_error(status: StatusCode, code: i64, message: &str) -> Reply {
    Reply::Json(status, json!({"message": message, "code": code}))
}

/// Everything under `/api/...`: one function per route below.
async fn rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_path = uri.path();
    let path = percent_decode(raw_path.strip_prefix("/api/v10").unwrap_or(raw_path));
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut call = RestCall {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        body: None,
        attachments: Vec::new(),
        authorization,
        status: 0,
    };
    let reply = match read_body(&content_type, &body) {
        Ok((json_body, attachments)) => {
            call.body = json_body;
            call.attachments = attachments;
            if !raw_path.starts_with("/api/v10/") {
                shared.problem(format!(
                    "a request outside /api/v10: {method} {uri} (serenity 0.12.5 uses v10)"
                ));
                discord_error(StatusCode::NOT_FOUND, 0, "404: Not Found")
            } else if let Some(limited) = rate_limited(&shared, &call) {
                call.status = 429;
                shared.lock().calls.push(call);
                return limited;
            } else {
                route(&shared, &call)
            }
        }
        Err(problem) => {
            shared.problem(format!("{method} {path}: {problem}"));
            Reply::Json(
                StatusCode::BAD_REQUEST,
                json!({"message": "The request body contains invalid JSON.", "code": 50109}),
            )
        }
    };
    let response = match reply {
        Reply::Json(status, value) => {
            call.status = status.as_u16();
            (status, axum::Json(value)).into_response()
        }
        Reply::NoContent => {
            call.status = 204;
            StatusCode::NO_CONTENT.into_response()
        }
    };
    shared.lock().calls.push(call);
    response
}

/// The 429 answer, when a [`FakeDiscord::rate_limit`] rule takes this call.
fn rate_limited(shared: &Shared, call: &RestCall) -> Option<Response> {
    let retry_after = {
        let mut inner = shared.lock();
        let rule = inner
            .rate_limits
            .iter_mut()
            .find(|r| r.remaining > 0 && call.is(&r.method, &r.route))?;
        rule.remaining -= 1;
        rule.retry_after
    };
    let seconds = retry_after.as_secs_f64();
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        + seconds;
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": seconds,
        "global": false,
    });
    let response = Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::RETRY_AFTER,
            (seconds.ceil() as u64).to_string(),
        )
        .header("x-ratelimit-limit", "5")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", format!("{reset:.3}"))
        .header("x-ratelimit-reset-after", format!("{seconds:.3}"))
        .header("x-ratelimit-bucket", "fake-bucket")
        .header("x-ratelimit-scope", "user")
        .body(axum::body::Body::from(body.to_string()))
        .expect("fake discord: static headers form a valid response");
    Some(response)
}

/// Dispatches one call to its route.
fn route(shared: &Shared, call: &RestCall) -> Reply {
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let body = call.body.as_ref();
    // Discord does not authenticate `GET /gateway` or the interaction and webhook routes (their
    // token is in the path).
    let public = matches!(
        segments.as_slice(),
        ["gateway"] | ["interactions", ..] | ["webhooks", ..]
    );
    if !public {
        let required = shared.lock().required_token.clone();
        if let Some(required) = required {
            let sent = call.authorization.as_deref().unwrap_or_default();
            if !token_matches(sent, &required) {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
        }
    }
    let method = call.method.as_str();
    match (method, segments.as_slice()) {
        ("GET", ["gateway"]) => checked::<serenity::model::gateway::Gateway>(
            shared,
            "GET /gateway",
            json!({"url": shared.gateway_url()}),
        ),
        ("GET", ["gateway", "bot"]) => checked::<serenity::model::gateway::BotGateway>(
            shared,
            "GET /gateway/bot",
            json!({
                "url": shared.gateway_url(),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1,
                },
            }),
        ),
        ("GET", ["users", "@me"]) => checked::<CurrentUser>(
            shared,
            "GET /users/@me",
            json!({
                "id": BOT_USER_ID.to_string(),
                "username": BOT_USERNAME,
                "discriminator": "0",
                "global_name": null,
                "avatar": null,
                "bot": true,
                "verified": true,
                "mfa_enabled": false,
                "flags": 0,
                "public_flags": 0,
            }),
        ),
        ("GET", ["guilds", guild, "members", user]) => get_member(shared, guild, user),
        ("GET", ["guilds", guild, "roles"]) => get_roles(shared, guild),
        ("POST", ["interactions", id, token, "callback"]) => {
            interaction_callback(shared, id, token, body, &call.attachments)
        }
        ("GET", ["webhooks", app, token, "messages", "@original"]) => {
            webhook_message(shared, app, token, None, None, &[])
        }
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
            webhook_message(shared, app, token, None, Some(body), &call.attachments)
        }
        ("GET", ["webhooks", app, token, "messages", id]) => {
            webhook_message(shared, app, token, Some(id), None, &[])
        }
        ("PATCH", ["webhooks", app, token, "messages", id]) => {
            webhook_message(shared, app, token, Some(id), Some(body), &call.attachments)
        }
        ("POST", ["webhooks", app, token]) => followup(shared, app, token, body, &call.attachments),
        ("POST", ["channels", channel, "messages"]) => {
            create_message(shared, channel, body, &call.attachments)
        }
        ("GET", ["channels", channel, "messages", id]) => get_message(shared, channel, id),
        ("PATCH", ["channels", channel, "messages", id]) => {
            edit_message(shared, channel, id, body, &call.attachments)
        }
        ("POST", ["channels", channel, "messages", id, "threads"]) => {
            create_thread(shared, channel, id, body)
        }
        ("PUT", ["channels", channel, "messages", id, "reactions", emoji, "@me"]) => {
            react(shared, channel, id, emoji, true)
        }
        ("DELETE", ["channels", channel, "messages", id, "reactions", emoji, "@me"]) => {
            react(shared, channel, id, emoji, false)
        }
        ("GET", ["applications", app, "commands"]) => list_commands(shared, app, None),
        ("GET", ["applications", app, "guilds", guild, "commands"]) => {
            list_commands(shared, app, Some(guild))
        }
        ("PUT" | "POST", ["applications", app, "commands"]) => {
            register_commands(shared, app, None, method == "PUT", body)
        }
        ("PUT" | "POST", ["applications", app, "guilds", guild, "commands"]) => {
            register_commands(shared, app, Some(guild), method == "PUT", body)
        }
        _ => {
            shared.problem(format!(
                "an unknown route: {} /api/v10{}",
                call.method, call.path
            ));
            discord_error(StatusCode::NOT_FOUND, 0, "Unknown")
        }
    }
}

/// Reads a body: JSON, or multipart with a `payload_json` part and files.
fn read_body(content_type: &str, body: &[u8]) -> Result<(Option<Value>, Vec<Attachment>), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, Vec::new()));
    }
    if content_type.starts_with("multipart/form-data") {
        return parse_multipart(content_type, body);
    }
    serde_json::from_slice::<Value>(body)
        .map(|value| (Some(value), Vec::new()))
        .map_err(|error| {
            format!(
                "a body that is not JSON ({error}; content type {content_type:?}): {}",
                truncate(&String::from_utf8_lossy(body), 300)
            )
        })
}

fn parse_id(text: &str) -> Option<u64> {
    text.parse().ok()
}

fn unknown(shared: &Shared, code: i64, message: &str, what: String) -> Reply {
    shared.problem(what);
    discord_error(StatusCode::NOT_FOUND, code, message)
}

fn guild_ok(shared: &Shared, guild: &str) -> Result<(), Reply> {
    if parse_id(guild) == Some(GUILD_ID) {
        Ok(())
    } else {
        Err(unknown(
            shared,
            10004,
            "Unknown Guild",
            format!("a call for guild {guild}; the fake's guild is {GUILD_ID}"),
        ))
    }
}

fn app_ok(shared: &Shared, app: &str, code: i64, message: &str) -> Result<(), Reply> {
    if parse_id(app) == Some(APPLICATION_ID) {
        Ok(())
    } else {
        Err(unknown(
            shared,
            code,
            message,
            format!(
                "a call for application {app}; the fake's application is {APPLICATION_ID} \
                 (READY carries it)"
            ),
        ))
    }
}

/// `GET /guilds/{gid}/members/{uid}`: members set with [`FakeDiscord::set_member_roles`] or
/// seen in a dispatch.
fn get_member(shared: &Shared, guild: &str, user: &str) -> Reply {
    if let Err(reply) = guild_ok(shared, guild) {
        return reply;
    }
    let roles = parse_id(user).and_then(|id| shared.lock().members.get(&id).cloned());
    match (parse_id(user), roles) {
        (Some(id), Some(roles)) => {
            checked::<Member>(shared, "GET member", member_json(id, &roles, false))
        }
        _ => unknown(
            shared,
            ERROR_UNKNOWN_MEMBER,
            "Unknown Member",
            format!("GET member {user}: not a member (set_member_roles names members)"),
        ),
    }
}

/// `GET /guilds/{gid}/roles`: `@everyone` and every role a member has.
fn get_roles(shared: &Shared, guild: &str) -> Reply {
    if let Err(reply) = guild_ok(shared, guild) {
        return reply;
    }
    let roles = {
        let inner = shared.lock();
        let mut ids: Vec<u64> = inner.members.values().flatten().copied().collect();
        ids.extend(inner.role_names.keys());
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|id| *id != GUILD_ID);
        let mut roles = vec![role_json(GUILD_ID, "@everyone", 0)];
        for (position, id) in ids.iter().enumerate() {
            let name = inner
                .role_names
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("role-{id}"));
            roles.push(role_json(*id, &name, position + 1));
        }
        roles
    };
    checked::<Vec<Role>>(shared, "GET roles", Value::Array(roles))
}

/// `POST /interactions/{id}/{token}/callback`: the acknowledgement, within the deadline, once.
fn interaction_callback(
    shared: &Shared,
    id: &str,
    token: &str,
    body: Option<&Value>,
    attachments: &[Attachment],
) -> Reply {
    let body = body.cloned().unwrap_or(Value::Null);
    let kind = body.get("type").and_then(Value::as_u64);
    let mut inner = shared.lock();
    let deadline = inner.ack_deadline.unwrap_or(DEFAULT_ACK_DEADLINE);
    let Some(index) = inner
        .interactions
        .iter()
        .position(|i| Some(i.id) == parse_id(id) && i.token == token)
    else {
        inner.problem(format!(
            "a callback for an unknown interaction {id} (token {token})"
        ));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_INTERACTION,
            "Unknown interaction",
        );
    };
    let elapsed = inner.interactions[index].sent_at.elapsed();
    if !inner.interactions[index].callbacks.is_empty() {
        inner.problem(format!("a second callback for interaction {id}: {body}"));
        return discord_error(
            StatusCode::BAD_REQUEST,
            ERROR_ALREADY_ACKNOWLEDGED,
            "Interaction has already been acknowledged.",
        );
    }
    if elapsed > deadline {
        inner.problem(format!(
            "interaction {id} acknowledged after {elapsed:?}: Discord allows {deadline:?}"
        ));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_INTERACTION,
            "Unknown interaction",
        );
    }
    let data = body.get("data").cloned().unwrap_or(json!({}));
    let (channel_id, interaction_id) = (
        inner.interactions[index].channel_id,
        inner.interactions[index].id,
    );
    match kind {
        Some(CALLBACK_MESSAGE) | Some(CALLBACK_DEFERRED) => {
            if kind == Some(CALLBACK_MESSAGE) {
                if let Err(reply) = validate_message(&mut inner, &data, attachments, true) {
                    return reply;
                }
            }
            let content = if kind == Some(CALLBACK_MESSAGE) {
                data.clone()
            } else {
                json!({"flags": data.get("flags").cloned().unwrap_or(json!(0))})
            };
            let message = new_message(
                &mut inner,
                channel_id,
                &content,
                attachments,
                MessageOrigin::InteractionResponse { interaction_id },
            );
            inner.interactions[index].original = Some(message);
        }
        // Component updates, autocomplete, modals: recorded, nothing to show.
        Some(1 | 6 | 7 | 8 | 9 | 10 | 12) => {}
        _ => {
            inner.problem(format!(
                "a callback of unknown type for interaction {id}: {body}"
            ));
            return Reply::Json(
                StatusCode::BAD_REQUEST,
                invalid_form_body(&[(
                    "type".into(),
                    "BASE_TYPE_CHOICES".into(),
                    "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.".into(),
                )]),
            );
        }
    }
    inner.interactions[index].callbacks.push(body);
    Reply::NoContent
}

/// Finds the interaction a webhook token belongs to, checking the application id.
fn webhook_interaction(shared: &Shared, app: &str, token: &str) -> Result<usize, Reply> {
    app_ok(shared, app, ERROR_UNKNOWN_WEBHOOK, "Unknown Webhook")?;
    let inner = shared.lock();
    match inner.interactions.iter().position(|i| i.token == token) {
        Some(index) if !inner.interactions[index].callbacks.is_empty() => Ok(index),
        Some(_) => {
            drop(inner);
            Err(unknown(
                shared,
                ERROR_UNKNOWN_WEBHOOK,
                "Unknown Webhook",
                format!(
                    "a webhook call for interaction token {token} before its callback: \
                     Discord answers Unknown Webhook"
                ),
            ))
        }
        None => {
            drop(inner);
            Err(unknown(
                shared,
                ERROR_UNKNOWN_WEBHOOK,
                "Unknown Webhook",
                format!("a webhook call with an unknown interaction token {token}"),
            ))
        }
    }
}

/// `GET`/`PATCH /webhooks/{app}/{token}/messages/{@original|id}`.
fn webhook_message(
    shared: &Shared,
    app: &str,
    token: &str,
    message_id: Option<&str>,
    edit: Option<Option<&Value>>,
    attachments: &[Attachment],
) -> Reply {
    let index = match webhook_interaction(shared, app, token) {
        Ok(index) => index,
        Err(reply) => return reply,
    };
    let mut inner = shared.lock();
    let target = match message_id {
        None => inner.interactions[index].original,
        Some(id) => parse_id(id).filter(|id| {
            inner.interactions[index].original == Some(*id)
                || inner.interactions[index].followups.contains(id)
        }),
    };
    let Some(target) = target else {
        inner.problem(format!(
            "a webhook message call for interaction token {token}: no such message {message_id:?}"
        ));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    };
    if let Some(edit) = edit {
        let edit = edit.cloned().unwrap_or(json!({}));
        if let Err(reply) = validate_message(&mut inner, &edit, attachments, false) {
            return reply;
        }
        let channel_id = inner
            .message_by_id(target)
            .map(|m| m.channel_id)
            .unwrap_or_default();
        apply_edit(&mut inner, channel_id, target, &edit, attachments);
    }
    let message = inner.message_by_id(target).cloned();
    drop(inner);
    match message {
        Some(message) => {
            checked::<SerenityMessage>(shared, "webhook message", message_json(shared, &message))
        }
        None => discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        ),
    }
}

/// `POST /webhooks/{app}/{token}`: a follow-up message.
fn followup(
    shared: &Shared,
    app: &str,
    token: &str,
    body: Option<&Value>,
    attachments: &[Attachment],
) -> Reply {
    let index = match webhook_interaction(shared, app, token) {
        Ok(index) => index,
        Err(reply) => return reply,
    };
    let body = body.cloned().unwrap_or(json!({}));
    let mut inner = shared.lock();
    if let Err(reply) = validate_message(&mut inner, &body, attachments, true) {
        return reply;
    }
    let (channel_id, interaction_id) = (
        inner.interactions[index].channel_id,
        inner.interactions[index].id,
    );
    let id = new_message(
        &mut inner,
        channel_id,
        &body,
        attachments,
        MessageOrigin::FollowUp { interaction_id },
    );
    inner.interactions[index].followups.push(id);
    let message = inner
        .message_by_id(id)
        .cloned()
        .expect("fake discord: the message just stored");
    drop(inner);
    checked::<SerenityMessage>(shared, "follow-up", message_json(shared, &message))
}

/// `POST /channels/{cid}/messages`.
fn create_message(
    shared: &Shared,
    channel: &str,
    body: Option<&Value>,
    attachments: &[Attachment],
) -> Reply {
    let Some(channel_id) = parse_id(channel) else {
        return unknown(
            shared,
            10003,
            "Unknown Channel",
            format!("a message to channel {channel:?}"),
        );
    };
    let body = body.cloned().unwrap_or(json!({}));
    let mut inner = shared.lock();
    if let Err(reply) = validate_message(&mut inner, &body, attachments, true) {
        return reply;
    }
    let id = new_message(
        &mut inner,
        channel_id,
        &body,
        attachments,
        MessageOrigin::Channel,
    );
    let message = inner
        .message_by_id(id)
        .cloned()
        .expect("fake discord: the message just stored");
    drop(inner);
    checked::<SerenityMessage>(shared, "message create", message_json(shared, &message))
}

/// `GET /channels/{cid}/messages/{mid}`.
fn get_message(shared: &Shared, channel: &str, id: &str) -> Reply {
    let message = match (parse_id(channel), parse_id(id)) {
        (Some(channel_id), Some(id)) => {
            shared.lock().message_mut(channel_id, id).map(|m| m.clone())
        }
        _ => None,
    };
    match message {
        Some(message) => {
            checked::<SerenityMessage>(shared, "message get", message_json(shared, &message))
        }
        None => unknown(
            shared,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
            format!("GET message {id} in {channel}: no such message"),
        ),
    }
}

/// `PATCH /channels/{cid}/messages/{mid}`: replaces the fields the edit carries; keeps every
/// version.
fn edit_message(
    shared: &Shared,
    channel: &str,
    id: &str,
    body: Option<&Value>,
    attachments: &[Attachment],
) -> Reply {
    let body = body.cloned().unwrap_or(json!({}));
    let mut inner = shared.lock();
    let (Some(channel_id), Some(message_id)) = (parse_id(channel), parse_id(id)) else {
        inner.problem(format!("an edit of message {id:?} in {channel:?}"));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    };
    if inner.message_mut(channel_id, message_id).is_none() {
        inner.problem(format!(
            "an edit of message {message_id} in {channel_id}: no such message"
        ));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    }
    if let Err(reply) = validate_message(&mut inner, &body, attachments, false) {
        return reply;
    }
    apply_edit(&mut inner, channel_id, message_id, &body, attachments);
    let message = inner
        .message_mut(channel_id, message_id)
        .map(|m| m.clone())
        .expect("fake discord: the message just edited");
    drop(inner);
    checked::<SerenityMessage>(shared, "message edit", message_json(shared, &message))
}

/// `POST /channels/{cid}/messages/{mid}/threads`: the thread takes the message's id.
fn create_thread(shared: &Shared, channel: &str, id: &str, body: Option<&Value>) -> Reply {
    let name = body
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let auto_archive_duration = body
        .and_then(|b| b.get("auto_archive_duration"))
        .and_then(Value::as_u64);
    let mut inner = shared.lock();
    let (Some(channel_id), Some(message_id)) = (parse_id(channel), parse_id(id)) else {
        inner.problem(format!("a thread from message {id:?} in {channel:?}"));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    };
    if inner.message_mut(channel_id, message_id).is_none() {
        inner.problem(format!(
            "a thread from message {message_id} in {channel_id}: no such message"
        ));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    }
    let name_chars = name.chars().count();
    if !(1..=100).contains(&name_chars) {
        let errors = [(
            "name".to_string(),
            "BASE_TYPE_BAD_LENGTH".to_string(),
            "Must be between 1 and 100 in length.".to_string(),
        )];
        inner.problem(format!(
            "a thread name of {name_chars} characters (Discord allows 1 to 100): {name:?}"
        ));
        return Reply::Json(StatusCode::BAD_REQUEST, invalid_form_body(&errors));
    }
    if let Some(minutes) = auto_archive_duration {
        if ![60, 1440, 4320, 10080].contains(&minutes) {
            inner.problem(format!(
                "a thread auto_archive_duration of {minutes} (Discord allows 60, 1440, 4320, \
                 10080)"
            ));
            let errors = [(
                "auto_archive_duration".to_string(),
                "BASE_TYPE_CHOICES".to_string(),
                "Value must be one of {60, 1440, 4320, 10080}.".to_string(),
            )];
            return Reply::Json(StatusCode::BAD_REQUEST, invalid_form_body(&errors));
        }
    }
    if inner.threads.iter().any(|t| t.id == message_id) {
        inner.problem(format!("a second thread from message {message_id}"));
        return discord_error(
            StatusCode::BAD_REQUEST,
            ERROR_THREAD_EXISTS,
            "A thread has already been created for this message",
        );
    }
    inner.threads.push(Thread {
        id: message_id,
        parent_channel_id: channel_id,
        message_id,
        name: name.clone(),
        auto_archive_duration,
    });
    drop(inner);
    let minutes = auto_archive_duration.unwrap_or(1440);
    checked::<GuildChannel>(
        shared,
        "thread create",
        json!({
            "id": message_id.to_string(),
            "type": 11,
            "guild_id": GUILD_ID.to_string(),
            "parent_id": channel_id.to_string(),
            "owner_id": BOT_USER_ID.to_string(),
            "name": name,
            "last_message_id": null,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": false,
                "auto_archive_duration": minutes,
                "archive_timestamp": timestamp(message_id),
                "locked": false,
                "create_timestamp": timestamp(message_id),
            },
        }),
    )
}

/// `PUT`/`DELETE /channels/{cid}/messages/{mid}/reactions/{emoji}/@me`.
fn react(shared: &Shared, channel: &str, id: &str, emoji: &str, add: bool) -> Reply {
    let mut inner = shared.lock();
    let (Some(channel_id), Some(message_id)) = (parse_id(channel), parse_id(id)) else {
        inner.problem(format!("a reaction on message {id:?} in {channel:?}"));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    };
    if inner.message_mut(channel_id, message_id).is_none() {
        inner.problem(format!(
            "a reaction {emoji} on message {message_id} in {channel_id}: no such message"
        ));
        return discord_error(
            StatusCode::NOT_FOUND,
            ERROR_UNKNOWN_MESSAGE,
            "Unknown Message",
        );
    }
    if emoji.is_empty() {
        inner.problem(format!("an empty emoji on message {message_id}"));
        return discord_error(StatusCode::BAD_REQUEST, 10014, "Unknown Emoji");
    }
    let reaction = BotReaction {
        channel_id,
        message_id,
        emoji: emoji.to_string(),
    };
    if add {
        if !inner.reactions.contains(&reaction) {
            inner.reactions.push(reaction);
        }
    } else {
        inner.reactions.retain(|r| *r != reaction);
    }
    Reply::NoContent
}

/// `GET /applications/{app}[/guilds/{gid}]/commands`.
fn list_commands(shared: &Shared, app: &str, guild: Option<&str>) -> Reply {
    if let Err(reply) = app_ok(shared, app, 10002, "Unknown Application") {
        return reply;
    }
    if let Some(guild) = guild {
        if let Err(reply) = guild_ok(shared, guild) {
            return reply;
        }
    }
    let scope = guild.map(|_| GUILD_ID);
    let commands: Vec<Value> = shared
        .lock()
        .commands
        .iter()
        .filter(|c| c.guild_id == scope)
        .map(command_json)
        .collect();
    checked::<Vec<SerenityCommand>>(shared, "GET commands", Value::Array(commands))
}

/// `PUT` (replace all) or `POST` (create or replace one by name) application commands.
fn register_commands(
    shared: &Shared,
    app: &str,
    guild: Option<&str>,
    replace_all: bool,
    body: Option<&Value>,
) -> Reply {
    if let Err(reply) = app_ok(shared, app, 10002, "Unknown Application") {
        return reply;
    }
    if let Some(guild) = guild {
        if let Err(reply) = guild_ok(shared, guild) {
            return reply;
        }
    }
    let scope = guild.map(|_| GUILD_ID);
    let definitions: Vec<Value> = match (replace_all, body) {
        (true, Some(Value::Array(items))) => items.clone(),
        (false, Some(item @ Value::Object(_))) => vec![item.clone()],
        _ => {
            shared.problem(format!(
                "a command registration with a body of the wrong shape (PUT takes an array, \
                 POST an object): {body:?}"
            ));
            return Reply::Json(
                StatusCode::BAD_REQUEST,
                json!({"message": "400: Bad Request", "code": 50109}),
            );
        }
    };
    let mut errors = Vec::new();
    for (index, definition) in definitions.iter().enumerate() {
        let prefix = if replace_all {
            format!("{index}.")
        } else {
            String::new()
        };
        validate_command(definition, &prefix, &mut errors);
    }
    if replace_all {
        let mut names: Vec<&str> = definitions
            .iter()
            .filter_map(|d| d.get("name").and_then(Value::as_str))
            .collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            errors.push((
                "_errors".into(),
                "APPLICATION_COMMANDS_DUPLICATE_NAME".into(),
                "Application command names must be unique".into(),
            ));
        }
    }
    let mut inner = shared.lock();
    if !errors.is_empty() {
        inner.problem(format!(
            "a command registration Discord would refuse: {errors:?}: {}",
            truncate(&Value::Array(definitions).to_string(), 600)
        ));
        return Reply::Json(StatusCode::BAD_REQUEST, invalid_form_body(&errors));
    }
    if replace_all {
        inner.commands.retain(|c| c.guild_id != scope);
    }
    let mut registered = Vec::new();
    for definition in definitions {
        let name = definition
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let existing = inner
            .commands
            .iter()
            .position(|c| c.guild_id == scope && c.name == name);
        let id = match existing {
            Some(index) => inner.commands.remove(index).id,
            None => inner.snowflake(),
        };
        let command = RegisteredCommand {
            id,
            guild_id: scope,
            name,
            definition,
        };
        registered.push(command_json(&command));
        inner.commands.push(command);
    }
    drop(inner);
    if replace_all {
        checked::<Vec<SerenityCommand>>(shared, "PUT commands", Value::Array(registered))
    } else {
        let one = registered.pop().unwrap_or(Value::Null);
        checked::<SerenityCommand>(shared, "POST command", one)
    }
}

// ---- message store

/// Stores a new message from a create body; returns its id.
fn new_message(
    inner: &mut Inner,
    channel_id: u64,
    body: &Value,
    attachments: &[Attachment],
    origin: MessageOrigin,
) -> u64 {
    let id = inner.snowflake();
    let version = MessageVersion {
        content: body
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        embeds: array_field(body, "embeds"),
        components: array_field(body, "components"),
        attachments: attachments.to_vec(),
    };
    inner.messages.push(Message {
        id,
        channel_id,
        content: version.content.clone(),
        embeds: version.embeds.clone(),
        components: version.components.clone(),
        attachments: version.attachments.clone(),
        flags: body.get("flags").and_then(Value::as_u64).unwrap_or(0),
        origin,
        versions: vec![version],
    });
    id
}

/// Applies an edit: fields the edit carries replace the current ones (`null` clears them).
fn apply_edit(
    inner: &mut Inner,
    channel_id: u64,
    message_id: u64,
    edit: &Value,
    attachments: &[Attachment],
) {
    let Some(message) = inner.message_mut(channel_id, message_id) else {
        return;
    };
    if let Some(content) = edit.get("content") {
        message.content = content.as_str().unwrap_or_default().to_string();
    }
    if edit.get("embeds").is_some() {
        message.embeds = array_field(edit, "embeds");
    }
    if edit.get("components").is_some() {
        message.components = array_field(edit, "components");
    }
    if !attachments.is_empty() {
        message.attachments.extend(attachments.iter().cloned());
    } else if edit
        .get("attachments")
        .is_some_and(|a| a.as_array().is_some_and(Vec::is_empty))
    {
        message.attachments.clear();
    }
    message.versions.push(MessageVersion {
        content: message.content.clone(),
        embeds: message.embeds.clone(),
        components: message.components.clone(),
        attachments: message.attachments.clone(),
    });
}

fn array_field(body: &Value, name: &str) -> Vec<Value> {
    body.get(name)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A full message object, as Discord answers message routes.
fn message_json(shared: &Shared, message: &Message) -> Value {
    let interaction = matches!(
        message.origin,
        MessageOrigin::InteractionResponse { .. } | MessageOrigin::FollowUp { .. }
    );
    let embeds: Vec<Value> = message
        .embeds
        .iter()
        .map(|embed| {
            let mut embed = embed.clone();
            if let Some(fields) = embed.as_object_mut() {
                fields.entry("type").or_insert(json!("rich"));
            }
            embed
        })
        .collect();
    let attachments: Vec<Value> = message
        .attachments
        .iter()
        .enumerate()
        .map(|(index, file)| {
            let url = format!(
                "{}/attachments/{}/{}/{}",
                shared.base_url(),
                message.channel_id,
                message.id,
                file.filename
            );
            json!({
                "id": (message.id + index as u64).to_string(),
                "filename": file.filename,
                "size": file.data.len(),
                "url": url,
                "proxy_url": url,
            })
        })
        .collect();
    let edited = if message.edit_count() > 0 {
        json!(Timestamp::now().to_string())
    } else {
        Value::Null
    };
    // 20: the response to a slash command; 0: a plain message.
    let kind = match message.origin {
        MessageOrigin::InteractionResponse { .. } => 20,
        _ => 0,
    };
    let mut value = json!({
        "id": message.id.to_string(),
        "channel_id": message.channel_id.to_string(),
        "author": {
            "id": BOT_USER_ID.to_string(),
            "username": BOT_USERNAME,
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "bot": true,
        },
        "content": message.content,
        "timestamp": timestamp(message.id),
        "edited_timestamp": edited,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments,
        "embeds": embeds,
        "components": message.components,
        "pinned": false,
        "type": kind,
        "flags": message.flags,
    });
    if interaction {
        value["webhook_id"] = json!(APPLICATION_ID.to_string());
        value["application_id"] = json!(APPLICATION_ID.to_string());
    }
    value
}

fn command_json(command: &RegisteredCommand) -> Value {
    let mut value = command.definition.clone();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("id".into(), json!(command.id.to_string()));
        fields.insert("application_id".into(), json!(APPLICATION_ID.to_string()));
        fields.insert("version".into(), json!(command.id.to_string()));
        fields.entry("type").or_insert(json!(1));
        fields
            .entry("default_member_permissions")
            .or_insert(Value::Null);
        fields.entry("nsfw").or_insert(json!(false));
        fields.entry("description").or_insert(json!(""));
        if let Some(guild) = command.guild_id {
            fields.insert("guild_id".into(), json!(guild.to_string()));
        }
    }
    value
}

fn user_json(user_id: u64) -> Value {
    json!({
        "id": user_id.to_string(),
        "username": format!("user{user_id}"),
        "discriminator": "0",
        "global_name": format!("User {user_id}"),
        "avatar": null,
        "public_flags": 0,
    })
}

/// A guild member object; interaction members also carry `permissions`.
fn member_json(user_id: u64, roles: &[u64], with_permissions: bool) -> Value {
    let mut member = json!({
        "user": user_json(user_id),
        "nick": null,
        "avatar": null,
        "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    });
    if with_permissions {
        member["permissions"] = json!("2248473465835073");
    }
    member
}

fn role_json(id: u64, name: &str, position: usize) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "color": 0,
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": "0",
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

/// The RFC 3339 time of a snowflake.
fn timestamp(snowflake: u64) -> String {
    let millis = (snowflake >> 22) + DISCORD_EPOCH_MS;
    Timestamp::from_millis(millis as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "2024-01-01T00:00:00.000Z".to_string())
}

// ---- validation

/// Returns `reply` if serenity parses it as `T`; otherwise records the problem and answers with
/// an error, so the mistake shows instead of a confusing failure in the client.
fn checked<T: DeserializeOwned>(shared: &Shared, what: &str, reply: Value) -> Reply {
    match serde_json::from_value::<T>(reply.clone()) {
        Ok(_) => ok(reply),
        Err(parse_error) => {
            shared.problem(format!(
                "the fake's reply to {what} does not parse as {}: {parse_error}: {reply}",
                std::any::type_name::<T>()
            ));
            discord_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                0,
                "fake discord reply invalid",
            )
        }
    }
}

/// Parses a whole gateway frame the way serenity's shard reads it.
fn check_gateway_frame(frame: &Value) -> Result<GatewayEvent, String> {
    serde_json::from_value::<GatewayEvent>(frame.clone())
        .map_err(|error| format!("serenity does not parse this gateway frame ({error}): {frame}"))
}

/// Checks a dispatch as serenity reads it: a `GatewayEvent::Dispatch` whose event is not
/// `Unknown`. For the payloads the fake sends, the typed parse names the missing field.
fn check_dispatch(event: &str, d: &Value) -> Result<Event, String> {
    let frame = json!({"op": 0, "s": 1, "t": event, "d": d});
    let typed: Result<(), serde_json::Error> = match event {
        "INTERACTION_CREATE" => serde_json::from_value::<Interaction>(d.clone()).map(drop),
        "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE" => {
            serde_json::from_value::<Reaction>(d.clone()).map(drop)
        }
        "READY" => serde_json::from_value::<Ready>(d.clone()).map(drop),
        "RESUMED" => serde_json::from_value::<ResumedEvent>(d.clone()).map(drop),
        _ => Ok(()),
    };
    if let Err(error) = typed {
        return Err(format!(
            "serenity does not parse this {event} payload ({error}), so it would become \
             Event::Unknown and be dropped silently: {d}"
        ));
    }
    match check_gateway_frame(&frame)? {
        GatewayEvent::Dispatch(_, Event::Unknown(_)) => Err(format!(
            "serenity parses this {event} dispatch as Event::Unknown (a missing or wrong field, \
             or an unknown event name), so a client would drop it silently: {frame}"
        )),
        GatewayEvent::Dispatch(_, parsed) => Ok(parsed),
        other => Err(format!(
            "serenity reads this dispatch as {other:?}: {frame}"
        )),
    }
}

fn expect_valid_dispatch(event: &str, d: &Value) -> Event {
    check_dispatch(event, d)
        .unwrap_or_else(|problem| panic!("fake discord built a bad dispatch: {problem}"))
}

/// Checks a message body against Discord's limits; on failure records a problem and returns
/// the 400 Discord would answer.
fn validate_message(
    inner: &mut Inner,
    body: &Value,
    attachments: &[Attachment],
    create: bool,
) -> Result<(), Reply> {
    let errors = message_limit_errors(body);
    if !errors.is_empty() {
        inner.problem(format!(
            "a message Discord would refuse ({}): {}",
            errors
                .iter()
                .map(|(path, _, message)| format!("{path}: {message}"))
                .collect::<Vec<_>>()
                .join("; "),
            truncate(&body.to_string(), 600)
        ));
        return Err(Reply::Json(
            StatusCode::BAD_REQUEST,
            invalid_form_body(&errors),
        ));
    }
    let empty_text = body
        .get("content")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let no_embeds = array_field(body, "embeds").is_empty();
    let no_components = array_field(body, "components").is_empty();
    let no_files = attachments.is_empty() && body.get("sticker_ids").is_none();
    if create && empty_text && no_embeds && no_components && no_files {
        inner.problem(format!("an empty message: {body}"));
        return Err(discord_error(
            StatusCode::BAD_REQUEST,
            ERROR_EMPTY_MESSAGE,
            "Cannot send an empty message",
        ));
    }
    Ok(())
}

/// Discord's message limits: content 2000 characters, 10 embeds, titles 256, descriptions
/// 4096, 25 fields of name 256 and value 1024 (neither empty), footers 2048, author names 256,
/// 6000 characters over all embeds. Returns (path, code, message) for each breach.
fn message_limit_errors(body: &Value) -> Vec<FormError> {
    let mut errors = Vec::new();
    let too_long = |max: usize| {
        (
            "BASE_TYPE_MAX_LENGTH".to_string(),
            format!("Must be {max} or fewer in length."),
        )
    };
    let check = |path: String, text: Option<&str>, max: usize, errors: &mut Vec<_>| -> usize {
        let length = text.map_or(0, |t| t.chars().count());
        if length > max {
            let (code, message) = too_long(max);
            errors.push((path, code, message));
        }
        length
    };
    check(
        "content".into(),
        body.get("content").and_then(Value::as_str),
        2000,
        &mut errors,
    );
    let embeds = array_field(body, "embeds");
    if embeds.len() > 10 {
        errors.push((
            "embeds".into(),
            "BASE_TYPE_MAX_LENGTH".into(),
            "Must be 10 or fewer in length.".into(),
        ));
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let text = |pointer: &str| embed.pointer(pointer).and_then(Value::as_str);
        total += check(
            format!("embeds.{i}.title"),
            text("/title"),
            256,
            &mut errors,
        );
        total += check(
            format!("embeds.{i}.description"),
            text("/description"),
            4096,
            &mut errors,
        );
        total += check(
            format!("embeds.{i}.footer.text"),
            text("/footer/text"),
            2048,
            &mut errors,
        );
        total += check(
            format!("embeds.{i}.author.name"),
            text("/author/name"),
            256,
            &mut errors,
        );
        let fields = array_field(embed, "fields");
        if fields.len() > 25 {
            errors.push((
                format!("embeds.{i}.fields"),
                "BASE_TYPE_MAX_LENGTH".into(),
                "Must be 25 or fewer in length.".into(),
            ));
        }
        for (j, field) in fields.iter().enumerate() {
            for (key, max) in [("name", 256), ("value", 1024)] {
                let value = field.get(key).and_then(Value::as_str);
                if value.is_none_or(str::is_empty) {
                    errors.push((
                        format!("embeds.{i}.fields.{j}.{key}"),
                        "BASE_TYPE_REQUIRED".into(),
                        "This field is required".into(),
                    ));
                }
                total += check(
                    format!("embeds.{i}.fields.{j}.{key}"),
                    value,
                    max,
                    &mut errors,
                );
            }
        }
    }
    if total > 6000 {
        errors.push((
            "embeds".into(),
            "MAX_EMBED_SIZE_EXCEEDED".into(),
            "Embed size exceeds maximum size of 6000".into(),
        ));
    }
    errors
}

/// Discord's `Invalid Form Body` answer, errors nested by path as Discord nests them (serenity
/// flattens them back into `DiscordJsonSingleError { path, code, message }`).
fn invalid_form_body(errors: &[FormError]) -> Value {
    let mut tree = Map::new();
    for (path, code, message) in errors {
        let mut node = &mut tree;
        for part in path.split('.').filter(|p| !p.is_empty() && *p != "_errors") {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fake discord: error tree nodes are objects");
        }
        let list = node.entry("_errors").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(json!({"code": code, "message": message}));
        }
    }
    json!({"message": "Invalid Form Body", "code": ERROR_INVALID_FORM_BODY, "errors": tree})
}

/// Discord's rules for a command definition: a lowercase name of 1 to 32 characters, a
/// description of 1 to 100 for slash commands, at most 25 options with unique names, required
/// options before optional ones, subcommands not mixed with other options.
fn validate_command(definition: &Value, prefix: &str, errors: &mut Vec<FormError>) {
    let kind = definition.get("type").and_then(Value::as_u64).unwrap_or(1);
    check_name(definition, &format!("{prefix}name"), errors);
    if kind == 1 {
        check_description(definition, &format!("{prefix}description"), errors);
        let options = array_field(definition, "options");
        check_option_list(&options, &format!("{prefix}options"), 0, errors);
    }
}

fn check_name(item: &Value, path: &str, errors: &mut Vec<FormError>) {
    let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
    let valid_chars = name
        .chars()
        .all(|c| c == '-' || c == '_' || (c.is_alphanumeric() && !c.is_uppercase()));
    if !(1..=32).contains(&name.chars().count()) || !valid_chars {
        errors.push((
            path.into(),
            "APPLICATION_COMMAND_INVALID_NAME".into(),
            format!("Command name is invalid: {name:?}"),
        ));
    }
}

fn check_description(item: &Value, path: &str, errors: &mut Vec<FormError>) {
    let length = item
        .get("description")
        .and_then(Value::as_str)
        .map_or(0, |d| d.chars().count());
    if !(1..=100).contains(&length) {
        errors.push((
            path.into(),
            "BASE_TYPE_BAD_LENGTH".into(),
            "Must be between 1 and 100 in length.".into(),
        ));
    }
}

fn check_option_list(options: &[Value], path: &str, depth: usize, errors: &mut Vec<FormError>) {
    if options.len() > 25 {
        errors.push((
            path.into(),
            "BASE_TYPE_MAX_LENGTH".into(),
            "Must be 25 or fewer in length.".into(),
        ));
    }
    let kinds: Vec<u64> = options
        .iter()
        .map(|o| o.get("type").and_then(Value::as_u64).unwrap_or(0))
        .collect();
    let nesting = kinds.iter().filter(|k| **k == 1 || **k == 2).count();
    if nesting > 0 && nesting < kinds.len() {
        errors.push((
            path.into(),
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID".into(),
            "Sub-command and sub-command group option types are mutually exclusive to all other \
             types"
                .into(),
        ));
    }
    let mut names: Vec<&str> = options
        .iter()
        .filter_map(|o| o.get("name").and_then(Value::as_str))
        .collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        errors.push((
            path.into(),
            "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS".into(),
            "Command option names must be unique".into(),
        ));
    }
    let mut optional_seen = false;
    for (i, option) in options.iter().enumerate() {
        let here = format!("{path}.{i}");
        check_name(option, &format!("{here}.name"), errors);
        check_description(option, &format!("{here}.description"), errors);
        let kind = kinds[i];
        if !(1..=11).contains(&kind) {
            errors.push((
                format!("{here}.type"),
                "BASE_TYPE_CHOICES".into(),
                "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.".into(),
            ));
        }
        let required = option
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if kind == 1 || kind == 2 {
            // A subcommand holds options; a group holds subcommands; nothing nests deeper.
            let allowed = (kind == 1 && depth <= 1) || (kind == 2 && depth == 0);
            if !allowed {
                errors.push((
                    format!("{here}.type"),
                    "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID".into(),
                    "Sub-commands nest at most two levels".into(),
                ));
            }
            check_option_list(
                &array_field(option, "options"),
                &format!("{here}.options"),
                depth + 1,
                errors,
            );
        } else if required && optional_seen {
            errors.push((
                format!("{here}.required"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID".into(),
                "Required options must be placed before non-required options".into(),
            ));
        } else if !required {
            optional_seen = true;
        }
    }
}

/// Checks that options a test sends fit a registered definition, the way Discord guarantees:
/// every option defined with the right type, required ones present, one subcommand at a
/// level of subcommands.
fn check_options(defined: &Value, sent: &Value, path: &str) -> Result<(), String> {
    let defined = defined.as_array().cloned().unwrap_or_default();
    let Some(sent) = sent.as_array() else {
        return Err(format!("{path}options is not an array"));
    };
    let has_subcommands = defined
        .iter()
        .any(|d| matches!(d.get("type").and_then(Value::as_u64), Some(1 | 2)));
    if has_subcommands && sent.len() != 1 {
        return Err(format!(
            "{path}: a command with subcommands gets exactly one, not {}",
            sent.len()
        ));
    }
    for option in sent {
        let name = option
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = option.get("type").and_then(Value::as_u64);
        let Some(definition) = defined
            .iter()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(name))
        else {
            return Err(format!("{path}{name} is not defined"));
        };
        let defined_kind = definition.get("type").and_then(Value::as_u64);
        if kind != defined_kind {
            return Err(format!(
                "{path}{name} has type {kind:?}, defined as {defined_kind:?}"
            ));
        }
        if matches!(kind, Some(1 | 2)) {
            let inner_defined = definition.get("options").cloned().unwrap_or(json!([]));
            let inner_sent = option.get("options").cloned().unwrap_or(json!([]));
            check_options(&inner_defined, &inner_sent, &format!("{path}{name}."))?;
        }
    }
    for definition in &defined {
        let required = definition
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let name = definition
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if required
            && !sent
                .iter()
                .any(|o| o.get("name").and_then(Value::as_str) == Some(name))
        {
            return Err(format!("{path}{name} is required"));
        }
    }
    Ok(())
}

// ---- helpers

/// Whether `path` matches `route`, segment by segment, `*` matching any one segment.
fn route_matches(route: &str, path: &str) -> bool {
    let route: Vec<&str> = route.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_matches('/').split('/').collect();
    route.len() == path.len() && route.iter().zip(&path).all(|(r, p)| *r == "*" || r == p)
}

/// Decodes `%XX` escapes (serenity percent-encodes Unicode emoji in reaction routes).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a `multipart/form-data` body as serenity sends uploads: a `payload_json` part and
/// `files[n]` parts.
fn parse_multipart(
    content_type: &str,
    body: &[u8],
) -> Result<(Option<Value>, Vec<Attachment>), String> {
    let boundary = content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .ok_or_else(|| format!("a multipart body without a boundary ({content_type})"))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut payload = None;
    let mut files = Vec::new();
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(at) = find(body, &delimiter, from) {
        starts.push(at);
        from = at + delimiter.len();
    }
    for pair in starts.windows(2) {
        let part = &body[pair[0] + delimiter.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = find(part, b"\r\n\r\n", 0) else {
            return Err("a multipart part without headers".into());
        };
        let headers = String::from_utf8_lossy(&part[..split]).to_string();
        let data = &part[split + 4..];
        let disposition = headers
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default();
        let parameter = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        match (parameter("name").as_deref(), parameter("filename")) {
            (Some("payload_json"), _) => {
                payload =
                    Some(serde_json::from_slice::<Value>(data).map_err(|error| {
                        format!("a payload_json part that is not JSON ({error})")
                    })?);
            }
            (_, Some(filename)) => files.push(Attachment {
                filename,
                data: data.to_vec(),
            }),
            (name, None) => return Err(format!("an unexpected multipart part {name:?}")),
        }
    }
    Ok((payload, files))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

/// The texts of an embed a reader sees.
fn embed_texts(embed: &Value, out: &mut Vec<String>) {
    for pointer in ["/author/name", "/title", "/description"] {
        if let Some(text) = embed.pointer(pointer).and_then(Value::as_str) {
            out.push(text.to_string());
        }
    }
    for field in array_field(embed, "fields") {
        for key in ["name", "value"] {
            if let Some(text) = field.get(key).and_then(Value::as_str) {
                out.push(text.to_string());
            }
        }
    }
    if let Some(text) = embed.pointer("/footer/text").and_then(Value::as_str) {
        out.push(text.to_string());
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_shared() -> Shared {
        let (shutdown, _) = watch::channel(false);
        Shared {
            port: 1,
            tag: "t".into(),
            inner: Mutex::new(Inner::default()),
            shutdown,
        }
    }

    #[test]
    fn snowflakes_increase_strictly_and_carry_the_time() {
        let mut inner = Inner::default();
        let ids: Vec<u64> = (0..5000).map(|_| inner.snowflake()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        let when = Timestamp::parse(&timestamp(ids[0])).expect("an RFC 3339 time");
        let now = Timestamp::now().unix_timestamp();
        assert!((when.unix_timestamp() - now).abs() < 60, "{when}");
    }

    #[test]
    fn reaction_routes_are_percent_decoded() {
        assert_eq!(percent_decode("%E2%9C%85"), "✅");
        assert_eq!(percent_decode("approve:123"), "approve:123");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn route_patterns_match_one_segment_per_star() {
        assert!(route_matches(
            "/channels/*/messages",
            "/channels/6000/messages"
        ));
        assert!(!route_matches(
            "/channels/*/messages",
            "/channels/6000/messages/1/threads"
        ));
        assert!(!route_matches("/channels/*/messages", "/channels/messages"));
    }

    #[test]
    fn a_dispatch_missing_a_field_is_refused_with_the_reason() {
        let d = json!({"channel_id": "1", "message_id": "2", "emoji": {"name": "x"}, "type": 0});
        let problem = check_dispatch("MESSAGE_REACTION_ADD", &d).expect_err("no burst");
        assert!(problem.contains("burst"), "{problem}");
        let problem = check_dispatch("NOT_AN_EVENT", &json!({})).expect_err("unknown event");
        assert!(problem.contains("Unknown"), "{problem}");
    }

    #[test]
    fn a_reply_serenity_would_not_parse_is_refused_and_listed() {
        let shared = test_shared();
        let reply = checked::<SerenityMessage>(&shared, "message create", json!({"id": "1"}));
        assert!(matches!(
            reply,
            Reply::Json(StatusCode::INTERNAL_SERVER_ERROR, _)
        ));
        assert_eq!(shared.lock().problems.len(), 1);
    }

    #[test]
    fn invalid_form_bodies_nest_errors_the_way_serenity_flattens_them() {
        let body = invalid_form_body(&[
            (
                "embeds.0.description".into(),
                "BASE_TYPE_MAX_LENGTH".into(),
                "Too long".into(),
            ),
            (
                "content".into(),
                "BASE_TYPE_MAX_LENGTH".into(),
                "Too long".into(),
            ),
        ]);
        let parsed: serenity::http::DiscordJsonError =
            serde_json::from_value(body).expect("serenity parses Discord's error body");
        assert_eq!(parsed.code, ERROR_INVALID_FORM_BODY as isize);
        let mut paths: Vec<String> = parsed.errors.iter().map(|e| e.path.clone()).collect();
        paths.sort();
        assert_eq!(paths, ["content", "embeds.0.description"]);
    }

    #[test]
    fn message_limits_are_discords() {
        assert!(message_limit_errors(&json!({"content": "x".repeat(2000)})).is_empty());
        let errors = message_limit_errors(&json!({"content": "x".repeat(2001)}));
        assert_eq!(errors[0].0, "content");
        let fields: Vec<Value> = (0..26)
            .map(|i| json!({"name": i.to_string(), "value": "v"}))
            .collect();
        let errors = message_limit_errors(&json!({"embeds": [{"fields": fields}]}));
        assert_eq!(errors[0].0, "embeds.0.fields");
        let errors =
            message_limit_errors(&json!({"embeds": [{"fields": [{"name": "n", "value": ""}]}]}));
        assert_eq!(errors[0].0, "embeds.0.fields.0.value");
        let half = json!({"description": "x".repeat(4000)});
        let big = json!({"embeds": [half, half]});
        assert_eq!(message_limit_errors(&big)[0].1, "MAX_EMBED_SIZE_EXCEEDED");
    }

    #[test]
    fn the_query_definition_is_one_discord_accepts() {
        let mut errors = Vec::new();
        validate_command(&query::definition(), "", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let command = command_json(&RegisteredCommand {
            id: 9,
            guild_id: Some(GUILD_ID),
            name: query::NAME.into(),
            definition: query::definition(),
        });
        serde_json::from_value::<SerenityCommand>(command).expect("serenity parses it");
    }

    #[test]
    fn command_definitions_discord_refuses_are_refused() {
        let optional_first = json!({"name": "q", "description": "d", "options": [
            {"type": 3, "name": "a", "description": "d"},
            {"type": 3, "name": "b", "description": "d", "required": true},
        ]});
        let mixed = json!({"name": "q", "description": "d", "options": [
            {"type": 1, "name": "a", "description": "d", "options": []},
            {"type": 3, "name": "b", "description": "d"},
        ]});
        let shouting = json!({"name": "Query", "description": "d"});
        for (definition, code) in [
            (
                optional_first,
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
            ),
            (mixed, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID"),
            (shouting, "APPLICATION_COMMAND_INVALID_NAME"),
        ] {
            let mut errors = Vec::new();
            validate_command(&definition, "", &mut errors);
            assert!(
                errors.iter().any(|e| e.1 == code),
                "{definition}: {errors:?}"
            );
        }
    }

    #[test]
    fn options_must_fit_the_registered_definition() {
        let defined = query::definition()["options"].clone();
        assert_eq!(
            check_options(&defined, &query::run("SELECT 1", Some("prod"), None), ""),
            Ok(())
        );
        assert_eq!(check_options(&defined, &query::pending(), ""), Ok(()));
        let without_sql = query::subcommand("run", vec![query::string("target", "prod")]);
        assert!(check_options(&defined, &without_sql, "").is_err());
        let flat = json!([query::string("sql", "SELECT 1")]);
        assert!(check_options(&defined, &flat, "").is_err());
    }

    #[test]
    fn multipart_uploads_give_the_payload_and_the_files() {
        let body = concat!(
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"files[0]\"; filename=\"result.csv\"\r\n",
            "Content-Type: text/csv\r\n\r\n",
            "a,b\r\n1,2\r\n",
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"payload_json\"\r\n\r\n",
            "{\"content\":\"hi\"}\r\n",
            "--XyZ--\r\n",
        )
        .as_bytes();
        let (payload, files) =
            parse_multipart("multipart/form-data; boundary=XyZ", body).expect("parses");
        assert_eq!(payload, Some(json!({"content": "hi"})));
        assert_eq!(files[0].filename, "result.csv");
        assert_eq!(files[0].data, b"a,b\r\n1,2");
    }
}
