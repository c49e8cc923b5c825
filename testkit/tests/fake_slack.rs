//! The fake Slack speaks Slack's protocol: the real slack-morphism client, Socket Mode listener,
//! HTTP listener and signature verifier all work against it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use countersign_testkit::slack::{FakeSlack, BOT_USER_ID, COMMANDS_PATH, EVENTS_PATH};
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

type Connector = SlackClientHyperConnector<HttpConnector>;
type Client = SlackClient<Connector>;
type Environment = SlackClientEventsListenerEnvironment<Connector>;

const WAIT: Duration = Duration::from_secs(10);

/// A slack-morphism client over plain HTTP, pointed at the fake.
fn client_for(fake: &FakeSlack) -> Arc<Client> {
    Arc::new(SlackClient::new(
        SlackClientHyperConnector::with_connector(HttpConnector::new())
            .with_slack_api_url(&fake.api_url()),
    ))
}

/// Bounds a client call: the connector has no timeout of its own.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

fn text(text: &str) -> SlackMessageContent {
    SlackMessageContent::new().with_text(text.to_string())
}

fn api_error_code<T: std::fmt::Debug>(result: ClientResult<T>) -> String {
    match result {
        Err(SlackClientError::ApiError(error)) => error.code,
        other => panic!("expected a Slack API error, got {other:?}"),
    }
}

/// What the bot-side callbacks saw; handed to them as user state.
#[derive(Default)]
struct Received {
    commands: Mutex<Vec<SlackCommandEvent>>,
    events: Mutex<Vec<SlackPushEventCallback>>,
}

impl Received {
    fn commands(&self) -> Vec<SlackCommandEvent> {
        self.commands.lock().expect("lock").clone()
    }

    fn events(&self) -> Vec<SlackPushEventCallback> {
        self.events.lock().expect("lock").clone()
    }
}

async fn received(state: &SlackClientEventsUserState) -> Arc<Received> {
    state
        .read()
        .await
        .get_user_state::<Arc<Received>>()
        .cloned()
        .expect("the Received state is registered")
}

async fn on_command(
    event: SlackCommandEvent,
    client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    received(&state)
        .await
        .commands
        .lock()
        .expect("lock")
        .push(event.clone());
    client
        .respond_to_event(
            &event.response_url,
            &SlackApiPostWebhookMessageRequest::new(text("working on it")),
        )
        .await?;
    Ok(SlackCommandEventResponse::new(text("Got it")))
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    received(&state)
        .await
        .events
        .lock()
        .expect("lock")
        .push(event);
    Ok(())
}

fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) -> HttpStatusCode {
    eprintln!("slack listener error: {error}");
    HttpStatusCode::BAD_REQUEST
}

/// A real slack-morphism Socket Mode listener on the fake, with the app-level token `xapp-test`.
async fn socket_mode_listener(
    fake: &FakeSlack,
    connections: u32,
) -> (SlackClientSocketModeListener<Connector>, Arc<Received>) {
    let received = Arc::new(Received::default());
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client_for(fake))
            .with_error_handler(on_error)
            .with_user_state(received.clone()),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_push_events(on_push);
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(connections)
        .with_initial_backoff_in_seconds(0);
    let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
    listener
        .listen_for(&SlackApiToken::new("xapp-test".into()))
        .await
        .expect("register the app token");
    listener.start().await;
    (listener, received)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[tokio::test]
async fn the_real_client_posts_updates_and_reads_groups_through_the_fake() {
    let fake = FakeSlack::start().await;
    fake.set_user_group("S_DBA", &["U1", "U2"]);
    let client = client_for(&fake);
    let token = SlackApiToken::new("xoxb-test".into());
    let session = client.open_session(&token);

    let root = within(
        "chat.postMessage",
        session.chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C1".into(),
            text("Request #1: waiting for approval"),
        )),
    )
    .await
    .expect("chat.postMessage");
    assert_eq!(root.channel.to_string(), "C1");
    let reply = within(
        "a reply in the thread",
        session.chat_post_message(
            &SlackApiChatPostMessageRequest::new("C1".into(), text("Running"))
                .with_thread_ts(root.ts.clone()),
        ),
    )
    .await
    .expect("chat.postMessage in a thread");
    assert!(reply.ts.value() > root.ts.value(), "timestamps increase");

    let blocks = vec![SlackBlock::Section(SlackSectionBlock::new().with_text(
        SlackBlockText::MarkDown(SlackBlockMarkDownText::new("*Approved* by <@U2>".into())),
    ))];
    within(
        "chat.update",
        session.chat_update(&SlackApiChatUpdateRequest::new(
            "C1".into(),
            text("Request #1: approved").with_blocks(blocks),
            root.ts.clone(),
        )),
    )
    .await
    .expect("chat.update");
    let missing = within(
        "chat.update of an unknown message",
        session.chat_update(&SlackApiChatUpdateRequest::new(
            "C1".into(),
            text("nothing"),
            "1.000001".into(),
        )),
    )
    .await;
    assert_eq!(api_error_code(missing), "message_not_found");

    let members = within(
        "usergroups.users.list",
        session.usergroups_users_list(&SlackApiUserGroupsUsersListRequest::new("S_DBA".into())),
    )
    .await
    .expect("usergroups.users.list");
    let members: Vec<String> = members.users.iter().map(|u| u.to_string()).collect();
    assert_eq!(members, ["U1", "U2"]);
    let unknown = within(
        "usergroups.users.list of an unknown group",
        session.usergroups_users_list(&SlackApiUserGroupsUsersListRequest::new("S_NONE".into())),
    )
    .await;
    assert_eq!(api_error_code(unknown), "no_such_subteam");

    let user = within(
        "users.info",
        session.users_info(&SlackApiUsersInfoRequest::new("U1".into())),
    )
    .await
    .expect("users.info");
    assert_eq!(user.user.id.to_string(), "U1");
    let me = within("auth.test", session.auth_test())
        .await
        .expect("auth.test");
    assert_eq!(me.user_id.to_string(), BOT_USER_ID);
    within(
        "reactions.add",
        session.reactions_add(&SlackApiReactionsAddRequest::new(
            "C1".into(),
            "hourglass".into(),
            root.ts.clone(),
        )),
    )
    .await
    .expect("reactions.add");
    within(
        "chat.postEphemeral",
        session.chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            "C1".into(),
            "U3".into(),
            text("You cannot approve your own request"),
        )),
    )
    .await
    .expect("chat.postEphemeral");

    // What a user would see.
    let messages = fake.messages("C1");
    assert_eq!(messages.len(), 2);
    let current = fake
        .message("C1", root.ts.value())
        .expect("the root message");
    assert_eq!(current.text.as_deref(), Some("Request #1: approved"));
    assert!(current.visible_text().contains("*Approved* by <@U2>"));
    assert_eq!(current.update_count(), 1);
    assert_eq!(
        current.versions[0].text.as_deref(),
        Some("Request #1: waiting for approval")
    );
    let thread = fake.thread("C1", root.ts.value());
    assert_eq!(thread.len(), 1);
    assert_eq!(thread[0].text.as_deref(), Some("Running"));
    assert_eq!(
        fake.bot_reactions(),
        [(
            "C1".to_string(),
            root.ts.to_string(),
            "hourglass".to_string()
        )]
    );
    assert_eq!(fake.ephemerals()[0].user, "U3");

    // How it was said: writes are JSON POSTs, reads are GETs, all with the bearer token.
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].http_method, "POST");
    assert_eq!(posts[0].token.as_deref(), Some("xoxb-test"));
    assert_eq!(posts[1].param("thread_ts"), Some(root.ts.to_string()));
    let reads = fake.calls_to("usergroups.users.list");
    assert_eq!(reads[0].http_method, "GET");
    assert_eq!(reads[0].param("usergroup").as_deref(), Some("S_DBA"));
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.token.as_deref() == Some("xoxb-test")));
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn unknown_methods_are_refused_and_recorded() {
    let fake = FakeSlack::start().await;
    let session_client = client_for(&fake);
    let token = SlackApiToken::new("xoxb-test".into());
    let session = session_client.open_session(&token);
    let result = within(
        "conversations.info",
        session.conversations_info(&SlackApiConversationsInfoRequest::new("C1".into())),
    )
    .await;
    assert_eq!(api_error_code(result), "unknown_method");
    assert_eq!(fake.calls_to("conversations.info").len(), 1);
}

#[tokio::test]
async fn a_socket_mode_listener_gets_commands_and_reactions_and_reconnects_on_disconnect() {
    let fake = FakeSlack::start().await;
    let (listener, received) = socket_mode_listener(&fake, 1).await;
    fake.wait_socket_connected(1, WAIT).await;
    let open = fake.calls_to("apps.connections.open");
    assert_eq!(open[0].http_method, "POST");
    assert_eq!(open[0].token.as_deref(), Some("xapp-test"));

    // A slash command: the callback's answer comes back in the acknowledgement.
    let sent = fake.send_slash_command("U1", "C1", "SELECT 1").await;
    let ack = fake.wait_ack(&sent.envelope_id, WAIT).await;
    assert_eq!(ack.expect("a command ack has a payload")["text"], "Got it");
    let commands = received.commands();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].user_id.to_string(), "U1");
    assert_eq!(commands[0].channel_id.to_string(), "C1");
    assert_eq!(commands[0].command.to_string(), "/query");
    assert_eq!(commands[0].text.as_deref(), Some("SELECT 1"));
    assert_eq!(commands[0].trigger_id.to_string(), sent.trigger_id);
    assert_eq!(commands[0].response_url.value().as_str(), sent.response_url);
    let response = fake
        .wait_for("the post to the response URL", WAIT, |fake| {
            fake.responses(&sent.response_url).first().cloned()
        })
        .await;
    assert_eq!(response["text"], "working on it");

    // A reaction to a message the bot posted: the event arrives, the ack has no payload.
    let session_client = client_for(&fake);
    let token = SlackApiToken::new("xoxb-test".into());
    let posted = within(
        "chat.postMessage",
        session_client.open_session(&token).chat_post_message(
            &SlackApiChatPostMessageRequest::new("C1".into(), text("Request #1")),
        ),
    )
    .await
    .expect("chat.postMessage");
    let envelope = fake
        .send_reaction(true, "U2", "white_check_mark", "C1", posted.ts.value())
        .await;
    assert_eq!(fake.wait_ack(&envelope, WAIT).await, None);
    let envelope = fake
        .send_reaction(false, "U2", "white_check_mark", "C1", posted.ts.value())
        .await;
    assert_eq!(fake.wait_ack(&envelope, WAIT).await, None);
    let events = received.events();
    assert_eq!(events.len(), 2);
    assert_ne!(events[0].event_id, events[1].event_id);
    match &events[0].event {
        SlackEventCallbackBody::ReactionAdded(added) => {
            assert_eq!(added.user.to_string(), "U2");
            assert_eq!(added.reaction.to_string(), "white_check_mark");
            assert_eq!(
                added.item_user.as_ref().map(|u| u.to_string()).as_deref(),
                Some(BOT_USER_ID)
            );
            match &added.item {
                SlackReactionsItem::Message(message) => {
                    assert_eq!(message.origin.ts, posted.ts);
                    assert_eq!(
                        message
                            .origin
                            .channel
                            .as_ref()
                            .map(|c| c.to_string())
                            .as_deref(),
                        Some("C1")
                    );
                }
                other => panic!("expected a message item, got {other:?}"),
            }
        }
        other => panic!("expected reaction_added, got {other:?}"),
    }
    assert!(matches!(
        events[1].event,
        SlackEventCallbackBody::ReactionRemoved(_)
    ));

    // A disconnect frame: the client asks for a new URL and connects again.
    fake.send_disconnect().await;
    fake.wait_for("a reconnection after disconnect", WAIT, |fake| {
        (fake.sockets_opened() >= 2 && fake.socket_count() == 1).then_some(())
    })
    .await;
    assert!(fake.calls_to("apps.connections.open").len() >= 2);
    let again = fake.send_slash_command("U1", "C1", "SELECT 2").await;
    assert!(fake.wait_ack(&again.envelope_id, WAIT).await.is_some());

    listener.shutdown().await;
    fake.wait_for("the client to close its connection", WAIT, |fake| {
        (fake.socket_count() == 0).then_some(())
    })
    .await;
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn an_envelope_sent_to_all_connections_reaches_each_of_them() {
    let fake = FakeSlack::start().await;
    let (listener, received) = socket_mode_listener(&fake, 2).await;
    fake.wait_socket_connected(2, WAIT).await;

    let (frame, envelope_id) =
        fake.reaction_frame(true, "U2", "white_check_mark", "C1", "1.000100");
    fake.send_envelope_to_all(frame).await;
    fake.wait_for("both acknowledgements", WAIT, |fake| {
        let acks = fake.acks();
        (acks.iter().filter(|(id, _)| *id == envelope_id).count() == 2).then_some(())
    })
    .await;
    let events = received.events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].event_id, events[1].event_id,
        "the same event twice"
    );

    // One envelope goes to one connection.
    let sent = fake.send_slash_command("U1", "C1", "SELECT 1").await;
    fake.wait_ack(&sent.envelope_id, WAIT).await;
    let sent = fake.send_slash_command("U1", "C1", "SELECT 2").await;
    fake.wait_ack(&sent.envelope_id, WAIT).await;
    assert_eq!(received.commands().len(), 2);

    listener.shutdown().await;
}

#[tokio::test]
async fn the_http_sender_signs_like_slack() {
    let fake = FakeSlack::start().await;
    let sender = fake.http_sender("http://127.0.0.1:9", "shh-secret");
    let verifier = SlackEventSignatureVerifier::new(&"shh-secret".into());
    let timestamp = unix_now().to_string();
    let body = "command=%2Fquery&text=SELECT+1";
    let signature = sender.sign(&timestamp, body.as_bytes());
    assert!(signature.starts_with("v0="));
    assert_eq!(signature, signature.to_lowercase());
    verifier
        .verify(&signature, body, &timestamp)
        .expect("slack-morphism accepts the signature");
    assert!(verifier
        .verify(&signature, "command=%2Fquery&text=DROP", &timestamp)
        .is_err());
    let other = fake.http_sender("http://127.0.0.1:9", "another-secret");
    assert!(verifier
        .verify(&other.sign(&timestamp, body.as_bytes()), body, &timestamp)
        .is_err());
}

async fn command_route(
    Extension(environment): Extension<Arc<Environment>>,
    Extension(event): Extension<SlackCommandEvent>,
) -> axum::Json<SlackCommandEventResponse> {
    received(&environment.user_state)
        .await
        .commands
        .lock()
        .expect("lock")
        .push(event);
    axum::Json(SlackCommandEventResponse::new(text("Got it")))
}

async fn events_route(
    Extension(environment): Extension<Arc<Environment>>,
    Extension(event): Extension<SlackPushEvent>,
) -> Response {
    match event {
        SlackPushEvent::UrlVerification(verification) => verification.challenge.into_response(),
        SlackPushEvent::EventCallback(callback) => {
            received(&environment.user_state)
                .await
                .events
                .lock()
                .expect("lock")
                .push(callback);
            axum::http::StatusCode::OK.into_response()
        }
        _ => axum::http::StatusCode::OK.into_response(),
    }
}

#[tokio::test]
async fn slack_morphisms_http_listener_accepts_the_senders_requests_and_refuses_forgeries() {
    let fake = FakeSlack::start().await;
    let received = Arc::new(Received::default());
    let environment: Arc<Environment> = Arc::new(
        SlackClientEventsListenerEnvironment::new(client_for(&fake))
            .with_user_state(received.clone()),
    );
    let listener = SlackEventsAxumListener::<HttpConnector>::new(environment);
    let secret: SlackSigningSecret = "shh-secret".into();
    let app = axum::Router::new()
        .route(
            COMMANDS_PATH,
            post(command_route).layer(
                listener
                    .events_layer(&secret)
                    .with_event_extractor(SlackEventsExtractors::command_event()),
            ),
        )
        .route(
            EVENTS_PATH,
            post(events_route).layer(
                listener
                    .events_layer(&secret)
                    .with_event_extractor(SlackEventsExtractors::push_event()),
            ),
        );
    let bot = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bot_url = format!("http://{}", bot.local_addr().expect("address"));
    let server = tokio::spawn(async move { axum::serve(bot, app).await });
    let sender = fake.http_sender(&bot_url, "shh-secret");

    let reply = sender.send_command("U1", "C1", "SELECT 1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("Got it"), "{}", reply.body);
    let commands = received.commands();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].text.as_deref(), Some("SELECT 1"));
    assert_eq!(Some(commands[0].trigger_id.to_string()), reply.trigger_id);
    assert_eq!(
        Some(commands[0].response_url.value().to_string()),
        reply.response_url
    );

    let reply = sender
        .send_reaction(true, "U2", "white_check_mark", "C1", "1700000000.000100")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(matches!(
        received.events()[0].event,
        SlackEventCallbackBody::ReactionAdded(_)
    ));

    let reply = sender.send_url_verification("challenge-123").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "challenge-123"));

    // Forged, unsigned and stale requests are refused before any handler runs.
    let body = b"team_id=T1&channel_id=C1&user_id=U1&command=%2Fquery&text=DROP&response_url=http%3A%2F%2F127.0.0.1%2Fr&trigger_id=1.2.3";
    let now = unix_now().to_string();
    let form = "application/x-www-form-urlencoded";
    let forged = sender
        .send_raw(COMMANDS_PATH, form, body, &now, Some("v0=00"))
        .await;
    assert_eq!(forged.status, 400);
    let unsigned = sender.send_raw(COMMANDS_PATH, form, body, &now, None).await;
    assert_eq!(unsigned.status, 400);
    let stale = (unix_now() - 600).to_string();
    let stale_reply = sender
        .send_raw(
            COMMANDS_PATH,
            form,
            body,
            &stale,
            Some(&sender.sign(&stale, body)),
        )
        .await;
    assert_eq!(stale_reply.status, 400);
    let fresh = sender
        .send_raw(
            COMMANDS_PATH,
            form,
            body,
            &now,
            Some(&sender.sign(&now, body)),
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(received.commands().len(), 2);

    server.abort();
}

#[tokio::test]
async fn a_sender_without_a_bot_reports_no_response() {
    let fake = FakeSlack::start().await;
    let port = countersign_testkit::free_port();
    let sender = fake.http_sender(&format!("http://127.0.0.1:{port}"), "secret");
    let reply = sender.send_url_verification("x").await;
    assert_eq!(reply.status, 0);
    assert!(reply.body.contains("no HTTP response"), "{}", reply.body);
}

#[tokio::test]
async fn an_api_url_with_a_trailing_slash_works_too() {
    let fake = FakeSlack::start().await;
    let client = SlackClient::new(
        SlackClientHyperConnector::with_connector(HttpConnector::new())
            .with_slack_api_url(&format!("{}/", fake.api_url())),
    );
    let token = SlackApiToken::new("xoxb-test".into());
    within("auth.test", client.open_session(&token).auth_test())
        .await
        .expect("auth.test through .../api//auth.test");
    assert_eq!(fake.calls_to("auth.test").len(), 1);
}

#[tokio::test]
#[should_panic(expected = "timed out after")]
async fn a_wait_that_times_out_fails_the_test_with_what_was_recorded() {
    let fake = FakeSlack::start().await;
    fake.wait_for(
        "a message that never comes",
        Duration::from_millis(100),
        |fake| fake.messages("C1").first().cloned(),
    )
    .await;
}
