//! The fake Discord speaks Discord's protocol: the real serenity client (gateway, event handler,
//! REST) works against it, and what the bot did is recorded the way a user would see it.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use countersign_testkit::discord::{
    query, FakeDiscord, MessageOrigin, APPLICATION_ID, BOT_USER_ID, CALLBACK_DEFERRED,
    ERROR_ALREADY_ACKNOWLEDGED, ERROR_INVALID_FORM_BODY, ERROR_UNKNOWN_INTERACTION,
    ERROR_UNKNOWN_WEBHOOK, GUILD_ID,
};
use serde_json::{json, Value};
use serenity::all::{
    AutoArchiveDuration, ChannelId, Client, ClientBuilder, Command, CommandDataOptionValue,
    CommandInteraction, CommandOptionType, Context, CreateCommand, CreateCommandOption,
    CreateEmbed, CreateInteractionResponseFollowup, CreateMessage, CreateThread,
    EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, GuildId, Http, HttpBuilder,
    Interaction, Reaction, ReactionType, Ready, ResumedEvent, ShardManager, UserId,
};
use serenity::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "test-token";
const CHANNEL: u64 = 6000;
const ALICE: u64 = 1001;
const BOB: u64 = 1002;
const DBA_ROLE: u64 = 7001;
const ONCALL_ROLE: u64 = 7002;

/// What the bot's event handler saw.
#[derive(Debug)]
enum Seen {
    Ready(Box<Ready>),
    Resumed,
    Command(Box<CommandInteraction>),
    ReactionAdd(Box<Reaction>),
    ReactionRemove(Box<Reaction>),
}

/// A serenity event handler that forwards what it sees to the test.
struct Forward(mpsc::UnboundedSender<Seen>);

#[async_trait]
impl EventHandler for Forward {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let _ = self.0.send(Seen::Ready(Box::new(ready)));
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        let _ = self.0.send(Seen::Resumed);
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        if let Interaction::Command(command) = interaction {
            let _ = self.0.send(Seen::Command(Box::new(command)));
        }
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        let _ = self.0.send(Seen::ReactionAdd(Box::new(reaction)));
    }

    async fn reaction_remove(&self, _ctx: Context, reaction: Reaction) {
        let _ = self.0.send(Seen::ReactionRemove(Box::new(reaction)));
    }
}

/// A real serenity client connected to the fake, running in a task of its own.
struct Bot {
    http: Arc<Http>,
    shard_manager: Arc<ShardManager>,
    task: JoinHandle<Result<(), serenity::Error>>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// serenity's HTTP client pointed at the fake (the rate limiter off: with it on, serenity
/// ignores the proxy).
fn http_for(fake: &FakeDiscord) -> Http {
    HttpBuilder::new(TOKEN)
        .proxy(fake.base_url())
        .ratelimiter_disabled(true)
        .build()
}

/// Builds the client (which asks the fake for the gateway URL) and starts it.
async fn start_bot(fake: &FakeDiscord, intents: GatewayIntents) -> Bot {
    let (tx, seen) = mpsc::unbounded_channel();
    let builder = ClientBuilder::new_with_http(http_for(fake), intents).event_handler(Forward(tx));
    let mut client: Client = within("building the client", builder.into_future())
        .await
        .expect("the client builds");
    let bot = Bot {
        http: client.http.clone(),
        shard_manager: client.shard_manager.clone(),
        task: tokio::spawn(async move { client.start().await }),
        seen,
    };
    fake.wait_identified(WAIT).await;
    bot
}

impl Bot {
    /// The next thing the handler saw; panics after [`WAIT`].
    async fn next(&mut self, what: &str) -> Seen {
        within(what, self.seen.recv())
            .await
            .expect("the handler's channel stays open")
    }

    /// Skips READY (and anything else) until a command arrives.
    async fn next_command(&mut self) -> CommandInteraction {
        loop {
            if let Seen::Command(command) = self.next("a command").await {
                return *command;
            }
        }
    }

    /// Asserts that nothing reaches the handler for a while.
    async fn expect_nothing(&mut self, quiet: Duration) {
        if let Ok(Some(seen)) = tokio::time::timeout(quiet, self.seen.recv()).await {
            panic!("expected nothing, the handler saw {seen:?}");
        }
    }

    /// Shuts the shard manager down and waits for `start()` to return.
    async fn stop(self) -> Result<(), serenity::Error> {
        self.shard_manager.shutdown_all().await;
        within("Client::start to return", self.task)
            .await
            .expect("the client task does not panic")
    }
}

/// Bounds a future: serenity's calls have no timeout of their own.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// The Discord error code and status of a failed REST call.
fn discord_error<T: std::fmt::Debug>(result: serenity::Result<T>) -> (u16, isize, String) {
    match result {
        Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response))) => (
            response.status_code.as_u16(),
            response.error.code,
            response.error.message,
        ),
        other => panic!("expected a Discord error response, got {other:?}"),
    }
}

fn string_value(value: &CommandDataOptionValue) -> &str {
    value.as_str().expect("a string option")
}

/// `/query` as the bot would register it with serenity's builders: the shape of
/// [`query::definition`].
fn query_command() -> CreateCommand {
    let text = |name: &str, description: &str, required: bool| {
        CreateCommandOption::new(CommandOptionType::String, name, description).required(required)
    };
    CreateCommand::new("query")
        .description("Run SQL against a database, with approval when the policy asks for it")
        .add_option(
            CreateCommandOption::new(CommandOptionType::SubCommand, "run", "Run SQL")
                .add_sub_option(text("sql", "The SQL to run", true))
                .add_sub_option(text("target", "The database", false))
                .add_sub_option(text("reason", "Why: shown to reviewers", false)),
        )
        .add_option(
            CreateCommandOption::new(CommandOptionType::SubCommand, "cancel", "Cancel a request")
                .add_sub_option(text("id", "The request's id", true)),
        )
        .add_option(CreateCommandOption::new(
            CommandOptionType::SubCommand,
            "pending",
            "What waits for you",
        ))
        .add_option(CreateCommandOption::new(
            CommandOptionType::SubCommand,
            "help",
            "How to use /query",
        ))
}

/// A command definition's shape without the prose: `run/sql:3!` for a required string.
fn shape(options: &Value, prefix: &str, out: &mut Vec<String>) {
    for option in options.as_array().into_iter().flatten() {
        let name = format!("{prefix}{}", option["name"].as_str().unwrap_or_default());
        let required = if option["required"] == json!(true) {
            "!"
        } else {
            ""
        };
        out.push(format!("{name}:{}{required}", option["type"]));
        shape(&option["options"], &format!("{name}/"), out);
    }
}

fn all_intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS
}

#[tokio::test]
async fn an_event_handler_receives_commands_and_reactions_pushed_by_the_fake() {
    let fake = FakeDiscord::start().await;
    fake.set_member_roles(ALICE, &[DBA_ROLE, ONCALL_ROLE]);
    fake.set_member_roles(BOB, &[DBA_ROLE]);
    let mut bot = start_bot(&fake, all_intents()).await;

    let identify = fake.wait_identified(WAIT).await;
    assert_eq!(identify.token, format!("Bot {TOKEN}"));
    assert!(identify
        .gateway_intents()
        .contains(GatewayIntents::GUILD_MESSAGE_REACTIONS));
    let Seen::Ready(ready) = bot.next("READY").await else {
        panic!("READY comes first");
    };
    assert_eq!(ready.application.id.get(), APPLICATION_ID);
    assert_eq!(ready.user.id.get(), BOT_USER_ID);
    assert_eq!(ready.guilds[0].id.get(), GUILD_ID);
    assert_eq!(ready.session_id, identify.session_id);

    // `/query run`: a subcommand with its options, the member with roles.
    let sent = fake
        .send_command(
            ALICE,
            CHANNEL,
            query::run("SELECT 1", Some("prod"), Some("audit")),
        )
        .await;
    let command = bot.next_command().await;
    assert_eq!(command.id.get(), sent.interaction_id);
    assert_eq!(command.token, sent.token);
    assert_eq!(command.data.name, "query");
    assert_eq!(command.user.id.get(), ALICE);
    assert_eq!(command.guild_id.map(|g| g.get()), Some(GUILD_ID));
    assert_eq!(command.channel_id.get(), CHANNEL);
    let member = command
        .member
        .as_ref()
        .expect("a guild interaction has a member");
    let roles: Vec<u64> = member.roles.iter().map(|r| r.get()).collect();
    assert_eq!(roles, [DBA_ROLE, ONCALL_ROLE]);
    assert_eq!(command.data.options.len(), 1);
    let run = &command.data.options[0];
    assert_eq!(run.name, "run");
    let CommandDataOptionValue::SubCommand(options) = &run.value else {
        panic!("run is a subcommand: {run:?}");
    };
    let named: Vec<(&str, &str)> = options
        .iter()
        .map(|o| (o.name.as_str(), string_value(&o.value)))
        .collect();
    assert_eq!(
        named,
        [("sql", "SELECT 1"), ("target", "prod"), ("reason", "audit")]
    );

    // A subcommand without options, and a flat option list (allowed while no `query` command
    // is registered).
    fake.send_command(BOB, CHANNEL, query::pending()).await;
    let pending = bot.next_command().await;
    assert_eq!(pending.data.options[0].name, "pending");
    assert_eq!(
        pending.data.options[0].value,
        CommandDataOptionValue::SubCommand(vec![])
    );
    let flat = json!([
        query::string("sql", "SELECT 2"),
        query::string("target", "staging")
    ]);
    fake.send_command(BOB, CHANNEL, flat).await;
    let flat = bot.next_command().await;
    assert_eq!(flat.data.options[0].name, "sql");
    assert_eq!(string_value(&flat.data.options[1].value), "staging");

    // Reactions: ADD carries the member and its roles, REMOVE does not.
    assert!(fake.send_reaction(true, BOB, CHANNEL, 8000, "✅").await);
    let Seen::ReactionAdd(added) = bot.next("a reaction add").await else {
        panic!("a reaction add");
    };
    assert_eq!(added.user_id.map(|u| u.get()), Some(BOB));
    assert_eq!(added.channel_id.get(), CHANNEL);
    assert_eq!(added.message_id.get(), 8000);
    assert_eq!(added.guild_id.map(|g| g.get()), Some(GUILD_ID));
    assert!(added.emoji.unicode_eq("✅"));
    let roles: Vec<u64> = added
        .member
        .as_ref()
        .expect("an ADD has a member")
        .roles
        .iter()
        .map(|r| r.get())
        .collect();
    assert_eq!(roles, [DBA_ROLE]);
    assert!(fake.send_reaction(false, BOB, CHANNEL, 8000, "✅").await);
    let Seen::ReactionRemove(removed) = bot.next("a reaction remove").await else {
        panic!("a reaction remove");
    };
    assert_eq!(removed.user_id.map(|u| u.get()), Some(BOB));
    assert!(removed.emoji.unicode_eq("✅"));
    assert!(removed.member.is_none());

    bot.stop().await.expect("the client stops cleanly");
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn rest_calls_are_recorded_the_way_a_user_would_see_them() {
    let fake = FakeDiscord::start().await;
    fake.set_member_roles(ALICE, &[DBA_ROLE]);
    let mut bot = start_bot(&fake, all_intents()).await;
    let http = bot.http.clone();

    // Register /query in the guild: the definition comes back with ids.
    let registered = within(
        "command registration",
        GuildId::new(GUILD_ID).set_commands(&http, vec![query_command()]),
    )
    .await
    .expect("register /query");
    assert_eq!(registered[0].name, "query");
    assert_eq!(registered[0].guild_id.map(|g| g.get()), Some(GUILD_ID));
    let commands = fake.registered_commands();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].id, registered[0].id.get());
    let (mut ours, mut documented) = (Vec::new(), Vec::new());
    shape(&commands[0].definition["options"], "", &mut ours);
    shape(&query::definition()["options"], "", &mut documented);
    assert_eq!(
        ours, documented,
        "serenity's builders produce the documented shape"
    );

    // A global command, created one at a time.
    let global = within(
        "global command registration",
        Command::create_global_command(
            &http,
            CreateCommand::new("countersign-about").description("About Countersign"),
        ),
    )
    .await
    .expect("register a global command");
    assert_eq!(global.guild_id, None);
    let commands = fake.registered_commands();
    assert_eq!(commands.len(), 2);
    assert_eq!(
        (commands[1].guild_id, commands[1].name.as_str()),
        (None, "countersign-about")
    );
    assert_eq!(fake.calls_to("POST", "/applications/*/commands").len(), 1);

    // A command: defer at once, then edit the response and follow up privately.
    let sent = fake
        .send_command(
            ALICE,
            CHANNEL,
            query::run("DELETE FROM t", Some("prod"), None),
        )
        .await;
    let command = bot.next_command().await;
    within("defer", command.defer(&http)).await.expect("defer");
    within(
        "edit the response",
        command.edit_response(
            &http,
            EditInteractionResponse::new().content("Request #1 is waiting for approval"),
        ),
    )
    .await
    .expect("edit the original response");
    within(
        "follow up",
        command.create_followup(
            &http,
            CreateInteractionResponseFollowup::new()
                .content("Only you see this")
                .ephemeral(true),
        ),
    )
    .await
    .expect("follow up");
    let responses = fake.interaction_responses(sent.interaction_id);
    assert_eq!(responses.callback_type(), Some(CALLBACK_DEFERRED));
    assert!(responses.deferred() && !responses.ephemeral());
    let original = responses.original.as_ref().expect("a response message");
    assert_eq!(original.content, "Request #1 is waiting for approval");
    assert_eq!(original.versions[0].content, "", "deferred: thinking first");
    assert!(responses.followups[0].is_ephemeral());
    assert_eq!(
        responses.visible_text(),
        "Request #1 is waiting for approval\nOnly you see this"
    );

    // The request message with an embed, a thread from it, a post in the thread, an edit,
    // a reaction.
    let channel = ChannelId::new(CHANNEL);
    let posted = within(
        "message create",
        channel.send_message(
            &http,
            CreateMessage::new().content("Request #1").embed(
                CreateEmbed::new()
                    .title("DELETE on prod")
                    .description("```sql\nDELETE FROM t\n```")
                    .field("Requested by", "<@1001>", true),
            ),
        ),
    )
    .await
    .expect("create a message");
    assert_eq!(posted.author.id.get(), BOT_USER_ID);
    let thread = within(
        "thread create",
        channel.create_thread_from_message(
            &http,
            posted.id,
            CreateThread::new("Request #1").auto_archive_duration(AutoArchiveDuration::OneDay),
        ),
    )
    .await
    .expect("start a thread");
    assert_eq!(
        thread.id.get(),
        posted.id.get(),
        "a thread takes the message's id"
    );
    assert_eq!(thread.parent_id, Some(channel));
    within(
        "post in the thread",
        thread.id.say(&http, "Approved by <@1002>"),
    )
    .await
    .expect("post in the thread");
    let edited = within(
        "message edit",
        channel.edit_message(
            &http,
            posted.id,
            EditMessage::new().content("Request #1: done"),
        ),
    )
    .await
    .expect("edit the message");
    assert_eq!(edited.content, "Request #1: done");
    within(
        "reaction",
        channel.create_reaction(&http, posted.id, ReactionType::Unicode("✅".into())),
    )
    .await
    .expect("react");

    // Reads: the bot's user and a member's roles.
    let me = within("GET /users/@me", http.get_current_user())
        .await
        .expect("the current user");
    assert_eq!(me.id.get(), BOT_USER_ID);
    let member = within(
        "GET member",
        http.get_member(GuildId::new(GUILD_ID), UserId::new(ALICE)),
    )
    .await
    .expect("a member");
    assert_eq!(
        member.roles.iter().map(|r| r.get()).collect::<Vec<_>>(),
        [DBA_ROLE]
    );

    // What a user sees.
    let messages = fake.messages(CHANNEL);
    assert_eq!(messages.len(), 2, "the response and the request message");
    assert!(matches!(
        messages[0].origin,
        MessageOrigin::InteractionResponse { .. }
    ));
    let request = fake.message(CHANNEL, posted.id.get()).expect("the request");
    assert_eq!(request.content, "Request #1: done");
    assert_eq!(request.versions[0].content, "Request #1");
    assert_eq!(request.edit_count(), 1);
    assert_eq!(request.embeds[0]["title"], "DELETE on prod");
    assert!(request.visible_text().contains("Requested by\n<@1001>"));
    let threads = fake.threads();
    assert_eq!(threads.len(), 1);
    assert_eq!(
        (
            threads[0].parent_channel_id,
            threads[0].message_id,
            threads[0].name.as_str()
        ),
        (CHANNEL, posted.id.get(), "Request #1")
    );
    assert_eq!(threads[0].auto_archive_duration, Some(1440));
    let in_thread = fake.thread(thread.id.get());
    assert_eq!(in_thread.len(), 1);
    assert_eq!(in_thread[0].content, "Approved by <@1002>");
    let reactions = fake.bot_reactions();
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0].emoji, "✅");
    assert_eq!(reactions[0].message_id, posted.id.get());

    // How it was said.
    let callback = &fake.calls_to("POST", "/interactions/*/*/callback")[0];
    assert_eq!(callback.status, 204);
    assert_eq!(callback.body.as_ref().expect("a body")["type"], 5);
    assert_eq!(
        fake.calls_to("PATCH", "/webhooks/*/*/messages/@original")
            .len(),
        1
    );
    let reaction_call = &fake.calls_to("PUT", "/channels/*/messages/*/reactions/*/@me")[0];
    assert_eq!(
        reaction_call.path,
        format!(
            "/channels/{CHANNEL}/messages/{}/reactions/✅/@me",
            posted.id
        )
    );
    let registration = &fake.calls_to("PUT", "/applications/*/guilds/*/commands")[0];
    assert_eq!(
        registration.path,
        format!("/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands")
    );
    assert!(fake
        .calls()
        .iter()
        .all(|call| call.authorization.as_deref() == Some("Bot test-token")));

    // With /query registered, Discord only sends options that fit it: the fake refuses to
    // send anything else.
    fake.send_command(ALICE, CHANNEL, query::cancel("req_1"))
        .await;
    assert_eq!(bot.next_command().await.data.options[0].name, "cancel");
    let unfit = tokio::spawn({
        let fake = fake.clone();
        async move {
            fake.send_command(ALICE, CHANNEL, json!([query::string("sql", "SELECT 1")]))
                .await
        }
    })
    .await;
    assert!(unfit.is_err_and(|error| error.is_panic()));

    bot.stop().await.expect("the client stops cleanly");
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn op_7_makes_the_client_resume_and_keep_receiving_dispatches() {
    let fake = FakeDiscord::start().await;
    let mut bot = start_bot(&fake, all_intents()).await;
    let identify = fake.wait_identified(WAIT).await;
    assert!(matches!(bot.next("READY").await, Seen::Ready(_)));

    fake.send_reconnect().await;
    fake.wait_resumed(1, WAIT).await;
    assert!(matches!(bot.next("RESUMED").await, Seen::Resumed));
    let resume = &fake.resumes()[0];
    assert!(resume.accepted);
    assert_eq!(resume.session_id, identify.session_id);
    assert_eq!(resume.seq, 1, "the client had seen READY");
    assert_eq!(fake.identify_count(), 1, "resumed, not identified again");
    assert_eq!(fake.connection_count(), 2);
    let sent = fake.send_command(ALICE, CHANNEL, query::help()).await;
    assert_eq!(bot.next_command().await.id.get(), sent.interaction_id);

    // A dropped connection: the client resumes again, and a dispatch sent just before the drop
    // arrives exactly once (read before the drop, or replayed on RESUME).
    fake.send_reaction(true, BOB, CHANNEL, 8000, "❌").await;
    fake.drop_connection().await;
    fake.wait_resumed(2, WAIT).await;
    // The first copy may take its time on a loaded machine; a second one would come right after.
    let first = loop {
        match bot.next("the reaction sent before the drop").await {
            Seen::ReactionAdd(reaction) => break reaction,
            Seen::Resumed => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(first.emoji.unicode_eq("❌"));
    while let Ok(Some(seen)) =
        tokio::time::timeout(Duration::from_millis(500), bot.seen.recv()).await
    {
        match seen {
            Seen::Resumed => {}
            other => panic!("the reaction arrives once; then came {other:?}"),
        }
    }
    assert!(fake.send_reaction(true, BOB, CHANNEL, 8000, "✅").await);
    let Seen::ReactionAdd(after) = bot.next("a reaction after the second resume").await else {
        panic!("a reaction add");
    };
    assert!(after.emoji.unicode_eq("✅"));
    assert_eq!(fake.identify_count(), 1);
    let connections = fake.connections();
    assert_eq!(connections.len(), 3);
    assert!(connections
        .iter()
        .all(|c| c.session_id.as_deref() == Some(identify.session_id.as_str())));

    bot.stop().await.expect("the client stops cleanly");
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn a_session_that_cannot_be_resumed_makes_the_client_identify_again() {
    let fake = FakeDiscord::start().await;
    let mut bot = start_bot(&fake, all_intents()).await;
    let first = fake.wait_identified(WAIT).await;
    assert!(matches!(bot.next("READY").await, Seen::Ready(_)));

    fake.send_invalid_session(false).await;
    let second = fake
        .wait_for("a second Identify", WAIT, |fake| {
            fake.identifies().get(1).cloned()
        })
        .await;
    assert_ne!(second.session_id, first.session_id);
    assert!(matches!(bot.next("a second READY").await, Seen::Ready(_)));
    let sent = fake.send_command(ALICE, CHANNEL, query::help()).await;
    assert_eq!(bot.next_command().await.id.get(), sent.interaction_id);

    bot.stop().await.expect("the client stops cleanly");
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn a_429_surfaces_as_an_error_when_serenitys_rate_limiter_is_off() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    let channel = ChannelId::new(CHANNEL);
    fake.rate_limit(
        "POST",
        "/channels/*/messages",
        1,
        Duration::from_millis(200),
    );

    // With the rate limiter off serenity does not wait and retry: the 429 is the caller's.
    let limited = within("a rate-limited post", channel.say(&http, "first try")).await;
    let (status, code, message) = discord_error(limited);
    assert_eq!(status, 429);
    // Discord's 429 body has no `code`, so serenity reports -1 and its own decoding message;
    // `retry_after` and the headers are not exposed: decide on the status.
    assert_eq!(code, -1);
    assert!(message.contains("Could not decode"), "{message}");
    let retried = within("the retry", channel.say(&http, "second try"))
        .await
        .expect("the next call goes through");
    assert_eq!(retried.content, "second try");

    let calls = fake.calls_to("POST", "/channels/*/messages");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let messages = fake.messages(CHANNEL);
    assert_eq!(messages.len(), 1, "the refused call changed nothing");
    assert_eq!(messages[0].content, "second try");

    // The raw answer, as a bot doing its own retries (or a proxy) sees it.
    fake.rate_limit(
        "POST",
        "/channels/*/messages",
        1,
        Duration::from_millis(1500),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<String>();
    let request = http::Request::post(format!(
        "{}/api/v10/channels/{CHANNEL}/messages",
        fake.base_url()
    ))
    .header("authorization", format!("Bot {TOKEN}"))
    .header("content-type", "application/json")
    .body(r#"{"content":"raw"}"#.to_string())
    .expect("a valid request");
    let response = within("a raw request", client.request(request))
        .await
        .expect("the fake answers");
    assert_eq!(response.status(), 429);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("retry-after"), "2", "whole seconds, rounded up");
    assert_eq!(header("x-ratelimit-reset-after"), "1.500");
    assert_eq!(header("x-ratelimit-remaining"), "0");
    assert_eq!(header("x-ratelimit-scope"), "user");
    let body = within(
        "the 429 body",
        axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20),
    )
    .await
    .expect("a body");
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(
        body,
        json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false})
    );
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn a_bot_without_the_reactions_intent_gets_no_reactions_and_a_problem_is_listed() {
    let fake = FakeDiscord::start().await;
    let mut bot = start_bot(&fake, GatewayIntents::GUILDS).await;
    assert!(matches!(bot.next("READY").await, Seen::Ready(_)));

    assert!(!fake.send_reaction(true, BOB, CHANNEL, 8000, "✅").await);
    bot.expect_nothing(Duration::from_millis(300)).await;
    let problems = fake.problems();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("GUILD_MESSAGE_REACTIONS"),
        "{problems:?}"
    );
    // Interactions need no intent.
    fake.send_command(ALICE, CHANNEL, query::help()).await;
    bot.next_command().await;

    bot.stop().await.expect("the client stops cleanly");
}

#[tokio::test]
async fn shutting_down_the_shard_manager_closes_the_connection_cleanly() {
    let fake = FakeDiscord::start().await;
    fake.set_heartbeat_interval(Duration::from_millis(100));
    let bot = start_bot(&fake, all_intents()).await;
    // Heartbeats are answered, so the shard stays up.
    fake.wait_for("two heartbeats", WAIT, |fake| {
        (fake.connections()[0].heartbeats >= 2).then_some(())
    })
    .await;
    bot.stop().await.expect("Client::start returns Ok");
    let closed = fake
        .wait_for("the connection to close", WAIT, |fake| {
            fake.connections().into_iter().find(|c| !c.open)
        })
        .await;
    assert_eq!(closed.client_close_code, Some(1000));
    assert_eq!(fake.connection_count(), 1);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn what_discord_refuses_the_fake_refuses_and_lists() {
    let fake = FakeDiscord::start().await;
    let mut bot = start_bot(&fake, all_intents()).await;
    let http = bot.http.clone();

    // An acknowledgement after the deadline (shortened so the test need not wait 3 s), and a
    // second one.
    fake.set_ack_deadline(Duration::from_millis(100));
    fake.send_command(ALICE, CHANNEL, query::help()).await;
    let late = bot.next_command().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, code, _) = discord_error(within("a late defer", late.defer(&http)).await);
    assert_eq!((status, code), (404, ERROR_UNKNOWN_INTERACTION as isize));
    fake.set_ack_deadline(countersign_testkit::discord::DEFAULT_ACK_DEADLINE);
    fake.send_command(ALICE, CHANNEL, query::help()).await;
    let twice = bot.next_command().await;
    within("defer", twice.defer(&http)).await.expect("defer");
    let (status, code, _) = discord_error(within("a second defer", twice.defer(&http)).await);
    assert_eq!((status, code), (400, ERROR_ALREADY_ACKNOWLEDGED as isize));

    // A follow-up before any acknowledgement.
    fake.send_command(ALICE, CHANNEL, query::help()).await;
    let early = bot.next_command().await;
    let result = within(
        "an early edit",
        early.edit_response(&http, EditInteractionResponse::new().content("too early")),
    )
    .await;
    assert_eq!(discord_error(result).1, ERROR_UNKNOWN_WEBHOOK as isize);

    // Content over 2000 characters (serenity's builders check that, the raw call does not).
    let too_long = json!({"content": "x".repeat(2001)});
    let result = within(
        "an oversized message",
        http.send_message(ChannelId::new(CHANNEL), vec![], &too_long),
    )
    .await;
    match result {
        Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response))) => {
            assert_eq!(response.status_code.as_u16(), 400);
            assert_eq!(response.error.code, ERROR_INVALID_FORM_BODY as isize);
            assert_eq!(response.error.errors[0].path, "content");
        }
        other => panic!("expected Invalid Form Body, got {other:?}"),
    }

    // An unknown route: 404 with a Discord error body.
    let result = within(
        "an unknown route",
        http.get_channel(ChannelId::new(CHANNEL)),
    )
    .await;
    assert_eq!(discord_error(result), (404, 0, "Unknown".to_string()));

    bot.stop().await.expect("the client stops cleanly");
    let problems = fake.problems();
    assert_eq!(problems.len(), 5, "{problems:#?}");
    for (problem, expected) in problems.iter().zip([
        "acknowledged after",
        "a second callback",
        "before its callback",
        "Must be 2000 or fewer",
        "an unknown route: GET /api/v10/channels/6000",
    ]) {
        assert!(
            problem.contains(expected),
            "{problem:?} should mention {expected:?}"
        );
    }
    assert!(fake.dump().contains("problems:"));
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_rest_and_the_gateway() {
    let fake = FakeDiscord::start().await;
    fake.require_token("the-right-token");
    let http = http_for(&fake);
    let result = within("GET /users/@me", http.get_current_user()).await;
    assert_eq!(discord_error(result).0, 401);

    let builder = ClientBuilder::new_with_http(http_for(&fake), all_intents());
    let mut client: Client = within("building the client", builder.into_future())
        .await
        .expect("the client builds: GET /gateway needs no token");
    let result = within("Client::start", client.start()).await;
    assert!(
        matches!(
            result,
            Err(serenity::Error::Gateway(
                serenity::gateway::GatewayError::InvalidAuthentication
            ))
        ),
        "{result:?}"
    );
    assert_eq!(fake.identifies()[0].token, format!("Bot {TOKEN}"));
    assert!(fake.identifies()[0].session_id.is_empty());
}
