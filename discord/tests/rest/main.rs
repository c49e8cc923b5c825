//! `DiscordApi` against a fake Discord over real sockets, through serenity: the requests it
//! sends (verb, path, `Bot` token, JSON body), what it makes of Discord's answers, 429s, and
//! the member-role cache.

mod fake;

use std::future::Future;
use std::time::{Duration, Instant};

use countersign_control::chat::{
    CardRequirement, CardState, ChatError, ChatPoster, ReplyTo, RequestCard, ThreadMessage,
};
use countersign_discord::error::{MISSING_PERMISSIONS, UNKNOWN_CHANNEL, UNKNOWN_MEMBER};
use countersign_discord::{DiscordApi, DiscordError, PostedCard};
use countersign_shared::summary::{Outcome, ResultSummary};
use fake::FakeDiscord;
use serenity::model::id::{ApplicationId, ChannelId, GuildId, InteractionId, MessageId, UserId};

const TOKEN: &str = "test-bot-token-1234";

/// Bound every wait, so a broken fake fails a test instead of hanging it.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("Discord call took over 10 s")
}

fn api(fake: &FakeDiscord) -> DiscordApi {
    DiscordApi::new(TOKEN, Some(&fake.base)).expect("client")
}

const CHANNEL: ChannelId = ChannelId::new(6000);

fn card() -> RequestCard {
    RequestCard {
        request_id: "r-7f3a".into(),
        requester: "discord:80351110224678912".into(),
        target: "orders-prod".into(),
        sql: "DELETE FROM orders WHERE id = 42".into(),
        reason: Some("ticket 981".into()),
        category: "write".into(),
        review_reasons: vec!["Writes to orders need a DBA".into()],
        estimated_rows: Some(1),
        estimate_notes: vec![],
        requirements: vec![CardRequirement {
            wanted: "1 approval from discord-role:456".into(),
            satisfied: false,
        }],
        approvers: vec![],
        state: CardState::AwaitingApproval,
        state_detail: None,
        expires_at_ms: Some(1_700_003_600_000),
        approve_reaction: "✅".into(),
        reject_reaction: "❌".into(),
    }
}

#[tokio::test]
async fn a_card_is_posted_as_a_message_then_a_thread_is_started_from_it_with_the_bot_token() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);

    let posted = within(api.post_card(CHANNEL, &card()))
        .await
        .expect("posted");
    assert_eq!(
        posted,
        PostedCard {
            channel_id: CHANNEL,
            message_id: MessageId::new(8001),
            thread_id: ChannelId::new(8001),
        }
    );
    assert_eq!(
        posted.reply_to(),
        ReplyTo {
            platform: "discord".into(),
            channel: "6000".into(),
            thread: "8001".into(),
        }
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for request in &requests {
        assert_eq!(request.verb, "POST");
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bot test-bot-token-1234")
        );
    }
    let create = &requests[0];
    assert_eq!(create.path, "/api/v10/channels/6000/messages");
    assert_eq!(create.body["content"], "⏳ **Awaiting approval**");
    assert_eq!(
        create.body["allowed_mentions"],
        serde_json::json!({ "parse": ["users"] })
    );
    let embed = &create.body["embeds"][0];
    assert_eq!(embed["title"], "Request r-7f3a");
    assert_eq!(embed["color"], 0xF1C40F);
    assert!(embed["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("```sql\nDELETE FROM orders WHERE id = 42\n```")));
    assert_eq!(embed["fields"][0]["value"], "<@80351110224678912>");

    let thread = &requests[1];
    assert_eq!(thread.path, "/api/v10/channels/6000/messages/8001/threads");
    assert_eq!(thread.body["name"], "query r-7f3a");
    assert_eq!(thread.body["auto_archive_duration"], 10_080);

    let mut updated = card();
    updated.state = CardState::Queued;
    updated.approvers = vec!["discord:789".into()];
    within(api.update_card(posted.channel_id, posted.message_id, &updated))
        .await
        .expect("updated");
    let update = &fake.requests()[2];
    assert_eq!(update.verb, "PATCH");
    assert_eq!(update.path, "/api/v10/channels/6000/messages/8001");
    assert_eq!(update.body["content"], "📥 **Queued**");
    assert_eq!(update.body["embeds"][0]["color"], 0x3498DB);
    assert_eq!(
        update.authorization.as_deref(),
        Some("Bot test-bot-token-1234")
    );
}

#[tokio::test]
async fn results_go_into_the_requests_thread_through_chat_poster() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);
    let to = ReplyTo {
        platform: "discord".into(),
        channel: "6000".into(),
        thread: "8042".into(),
    };
    let summary = ResultSummary {
        request_id: "r-7f3a".into(),
        target: "orders-prod".into(),
        outcome: Outcome::Succeeded,
        rows_affected: Some(1),
        table: None,
        duration_ms: 12,
        reason: None,
        audit_ref: Some("#42 3f9a1c2b".into()),
    };
    let poster: &dyn ChatPoster = &api;
    within(poster.post(&to, &ThreadMessage::summary(summary)))
        .await
        .expect("posted");
    within(poster.post(
        &to,
        &ThreadMessage::note("Approved by discord:789 @everyone"),
    ))
    .await
    .expect("posted");

    let posts = fake.calls("/api/v10/channels/8042/messages");
    assert_eq!(posts.len(), 2, "both went to the thread's channel");
    assert_eq!(
        posts[0].body["content"],
        "✅ **Succeeded on orders-prod: 1 row affected in 12 ms**"
    );
    assert_eq!(
        posts[0].body["embeds"][0]["footer"]["text"],
        "🔒 Audit #42 3f9a1c2b  ·  Request r-7f3a"
    );
    assert_eq!(
        posts[1].body["content"],
        "Approved by <@789> @\u{2060}everyone"
    );
    assert_eq!(posts[1].body["embeds"], serde_json::json!([]));
    assert!(posts
        .iter()
        .all(|p| p.body["allowed_mentions"] == serde_json::json!({ "parse": ["users"] })));

    let slack = ReplyTo {
        platform: "slack".into(),
        ..to.clone()
    };
    assert_eq!(
        within(poster.post(&slack, &ThreadMessage::note("x"))).await,
        Err(ChatError::UnknownPlatform("slack".into()))
    );
    let not_an_id = ReplyTo {
        thread: "1700000000.000100".into(),
        ..to.clone()
    };
    assert!(matches!(
        within(poster.post(&not_an_id, &ThreadMessage::note("x"))).await,
        Err(ChatError::Failed(_))
    ));
    assert_eq!(fake.requests().len(), 2, "nothing sent for either");
}

#[tokio::test]
async fn reactions_are_added_and_an_interaction_is_deferred_then_answered_privately() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);

    within(api.add_reaction(CHANNEL, MessageId::new(8001), "✅"))
        .await
        .expect("reacted");
    let reaction = &fake.requests()[0];
    assert_eq!(reaction.verb, "PUT");
    assert_eq!(
        reaction.path,
        "/api/v10/channels/6000/messages/8001/reactions/%E2%9C%85/@me"
    );
    assert!(matches!(
        api.add_reaction(CHANNEL, MessageId::new(8001), " ").await,
        Err(DiscordError::Config(_))
    ));

    within(api.defer(InteractionId::new(4000), "itok", true))
        .await
        .expect("deferred");
    within(api.defer(InteractionId::new(4001), "itok2", false))
        .await
        .expect("deferred");
    let deferred = fake.calls("/api/v10/interactions/4000/itok/callback");
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].verb, "POST");
    assert_eq!(
        deferred[0].body,
        serde_json::json!({ "type": 5, "data": { "flags": 64 } })
    );
    assert_eq!(
        fake.calls("/api/v10/interactions/4001/itok2/callback")[0].body,
        serde_json::json!({ "type": 5 })
    );

    within(api.edit_original(
        ApplicationId::new(3000),
        "itok",
        "Submitted r-7f3a for discord-role:456 <#1>",
    ))
    .await
    .expect("answered");
    let answer = &fake.calls("/api/v10/webhooks/3000/itok/messages/@original")[0];
    assert_eq!(answer.verb, "PATCH");
    assert_eq!(
        answer.body["content"],
        "Submitted r-7f3a for <@&456> \\<#1>"
    );
    assert_eq!(
        answer.body["allowed_mentions"],
        serde_json::json!({ "parse": ["users"] })
    );
}

#[tokio::test]
async fn member_roles_are_cached_within_the_ttl_and_failures_are_not() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);
    let guild = GuildId::new(2000);
    let path = "/api/v10/guilds/2000/members/5001";

    let roles = within(api.member_roles(guild, UserId::new(5001)))
        .await
        .expect("roles");
    assert_eq!(roles, vec!["456".to_string(), "457".to_string()]);
    // Clones share the cache; lookups on several tasks at once still make no call.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.member_roles(guild, UserId::new(5001)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(within(task).await.expect("task"), Ok(roles.clone()));
    }
    let calls = fake.calls(path);
    assert_eq!(calls.len(), 1, "the cache answered within the TTL");
    assert_eq!(calls[0].verb, "GET");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bot test-bot-token-1234")
    );

    for _ in 0..2 {
        let error = within(api.member_roles(guild, UserId::new(404)))
            .await
            .expect_err("not a member");
        assert_eq!(error.code(), Some(UNKNOWN_MEMBER));
    }
    assert_eq!(
        fake.calls("/api/v10/guilds/2000/members/404").len(),
        2,
        "errors are not cached"
    );

    let short = DiscordApi::builder(TOKEN)
        .base_url(&fake.base)
        .member_cache_ttl(Duration::from_secs(1))
        .build()
        .expect("client");
    within(short.member_roles(guild, UserId::new(5001)))
        .await
        .expect("roles");
    within(short.member_roles(guild, UserId::new(5001)))
        .await
        .expect("roles");
    assert_eq!(fake.calls(path).len(), 2, "a new client has its own cache");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    within(short.member_roles(guild, UserId::new(5001)))
        .await
        .expect("roles");
    assert_eq!(fake.calls(path).len(), 3, "asked again after the TTL");
}

#[tokio::test]
async fn a_429_is_waited_out_and_sent_again_within_bounds() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);
    let path = "/api/v10/channels/8042/messages";
    let note = ThreadMessage::note("Approved");

    // Once, asking for 300 ms in the body and 10 s in the header: the body's wait is the one
    // taken, then the post goes through.
    fake.rate_limit_with_header(path, 1, 0.3, 10, false);
    let started = Instant::now();
    within(api.post_in_thread(ChannelId::new(8042), &note))
        .await
        .expect("posted after the wait");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the body's 0.3 s, not the header's 10 s"
    );
    assert_eq!(fake.calls(path).len(), 2, "sent once more");

    // Always: sent 1 + 2 times, then the typed error with Discord's wait.
    let patient = DiscordApi::builder(TOKEN)
        .base_url(&fake.base)
        .rate_limit_retries(2)
        .build()
        .expect("client");
    fake.rate_limit(path, 100, 0.05, true);
    let error = within(patient.post_in_thread(ChannelId::new(8042), &note))
        .await
        .expect_err("rate limited");
    assert_eq!(
        error,
        DiscordError::RateLimited {
            action: "messages.create",
            retry_after: Duration::from_millis(50),
            global: true,
        }
    );
    assert!(error.is_retryable());
    assert_eq!(fake.calls(path).len(), 2 + 3);

    // A wait longer than we allow fails at once.
    fake.rate_limit(path, 1, 60.0, false);
    let started = Instant::now();
    let error = within(api.post_in_thread(ChannelId::new(8042), &note))
        .await
        .expect_err("rate limited");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        error,
        DiscordError::RateLimited { retry_after, global: false, .. } if retry_after == Duration::from_secs(60)
    ));
    assert_eq!(fake.calls(path).len(), 2 + 3 + 1);
}

#[tokio::test]
async fn discords_json_errors_become_typed_errors() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);

    let error = within(api.post_card(ChannelId::new(404), &card()))
        .await
        .expect_err("refused");
    assert_eq!(
        error,
        DiscordError::Refused {
            action: "messages.create",
            status: 404,
            code: UNKNOWN_CHANNEL,
            message: "Unknown Channel".into(),
        }
    );
    assert!(!error.is_retryable());
    let to = ReplyTo {
        platform: "discord".into(),
        channel: "6000".into(),
        thread: "404".into(),
    };
    assert_eq!(
        within(api.post(&to, &ThreadMessage::note("x"))).await,
        Err(ChatError::Failed(
            "Discord refused messages.create: Unknown Channel (error 10003, HTTP 404)".into()
        ))
    );

    // A thread Discord will not create: the card is taken down again, the error is the
    // thread's.
    let error = within(api.post_card(ChannelId::new(7403), &card()))
        .await
        .expect_err("no thread");
    assert_eq!(error.code(), Some(MISSING_PERMISSIONS));
    assert!(matches!(
        error,
        DiscordError::Refused {
            action: "threads.create",
            status: 403,
            ..
        }
    ));
    let deleted = fake
        .requests()
        .into_iter()
        .find(|r| r.verb == "DELETE")
        .expect("the card was deleted");
    assert!(deleted.path.starts_with("/api/v10/channels/7403/messages/"));

    let error = within(api.update_card(ChannelId::new(7502), MessageId::new(1), &card()))
        .await
        .expect_err("bad gateway");
    assert_eq!(
        error,
        DiscordError::Unreachable {
            action: "messages.edit",
            reason: "Discord answered HTTP 502".into(),
        }
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn an_unreachable_or_silent_discord_is_not_a_refusal_and_errors_never_show_tokens() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let api = DiscordApi::new(TOKEN, Some(&url)).expect("client");
    let error = within(api.defer(InteractionId::new(4000), "secret-interaction-token", true))
        .await
        .expect_err("unreachable");
    assert!(
        matches!(
            &error,
            DiscordError::Unreachable {
                action: "interactions.defer",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let shown = format!("{error} {error:?} {api:?}");
    for secret in [
        TOKEN,
        "test-bot-token",
        "secret-interaction-token",
        "/callback",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(error.to_string().contains("Connection refused"), "{error}");

    let fake = FakeDiscord::start().await;
    let impatient = DiscordApi::builder(TOKEN)
        .base_url(&fake.base)
        .request_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let started = Instant::now();
    let error = within(impatient.post_in_thread(ChannelId::new(7999), &ThreadMessage::note("x")))
        .await
        .expect_err("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 200 ms timeout, not the fake's 5 s"
    );
    assert_eq!(
        error.to_string(),
        "could not reach Discord for messages.create: no answer within 200 ms"
    );
}

#[tokio::test]
async fn serenitys_own_http_clients_talk_to_the_same_discord() {
    let fake = FakeDiscord::start().await;
    let api = api(&fake);
    let gateway = within(api.http().get_gateway()).await.expect("gateway");
    assert_eq!(gateway.url, "ws://127.0.0.1:1");
    within(api.gateway_http().get_gateway())
        .await
        .expect("gateway");
    let calls = fake.calls("/api/v10/gateway");
    assert_eq!(calls.len(), 2);
    assert!(calls
        .iter()
        .all(|c| c.authorization.as_deref() == Some("Bot test-bot-token-1234")));
}

/// Why `DiscordApi` reads 429s itself: with its rate limiter off, serenity's `Http` turns a
/// 429 into `HttpError::UnsuccessfulRequest` with only the status, and since Discord's 429 body
/// has no `code`, not even its message: the wait Discord asked for is gone.
#[tokio::test]
async fn serenity_alone_loses_a_429s_retry_after() {
    use serenity::http::HttpError;
    let fake = FakeDiscord::start().await;
    let api = api(&fake);
    fake.rate_limit("/api/v10/gateway", 1, 0.3, false);
    let error = within(api.http().get_gateway())
        .await
        .expect_err("serenity does not retry");
    let serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) = error else {
        panic!("unexpected error shape: {error:?}");
    };
    assert_eq!(response.status_code.as_u16(), 429);
    assert_eq!(response.error.code, -1);
    assert!(
        response
            .error
            .message
            .starts_with("[Serenity] Could not decode json"),
        "{}",
        response.error.message
    );
    assert!(!format!("{response:?}").contains("retry_after"));
}
