//! `SlackApi` against a fake Slack over real sockets: the requests it sends (verb, path, Bearer
//! token, JSON body), what it makes of Slack's answers, and the user-group cache.

mod fake;

use std::future::Future;
use std::time::Duration;

use countersign_control::chat::{
    CardRequirement, CardState, ChatError, ChatPoster, ReplyTo, RequestCard, ThreadMessage,
};
use countersign_shared::summary::{Outcome, ResultSummary};
use countersign_slack::{SlackApi, SlackError};
use fake::FakeSlack;

const TOKEN: &str = "xoxb-test-token-1234";

/// The connector has no timeout of its own: bound every wait.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("Slack call took over 10 s")
}

fn api(fake: &FakeSlack) -> SlackApi {
    SlackApi::new(TOKEN, Some(&fake.api_url())).expect("client")
}

fn card() -> RequestCard {
    RequestCard {
        request_id: "r-7f3a".into(),
        requester: "slack:U024BE7LH".into(),
        target: "orders-prod".into(),
        sql: "DELETE FROM orders WHERE id = 42".into(),
        reason: Some("ticket 981".into()),
        category: "write".into(),
        review_reasons: vec!["Writes to orders need a DBA".into()],
        estimated_rows: Some(1),
        estimate_notes: vec![],
        requirements: vec![CardRequirement {
            wanted: "1 approval from slack-group:S0DBA".into(),
            satisfied: false,
        }],
        approvers: vec![],
        state: CardState::AwaitingApproval,
        state_detail: None,
        expires_at_ms: Some(1_700_003_600_000),
        approve_reaction: "white_check_mark".into(),
        reject_reaction: "x".into(),
    }
}

#[tokio::test]
async fn a_card_is_posted_and_updated_over_plain_http_with_the_bot_token() {
    let fake = FakeSlack::start().await;
    let api = api(&fake);

    let posted = within(api.post_card("C1", &card())).await.expect("posted");
    assert_eq!(posted.channel, "C1");
    assert_eq!(posted.ts, "1700000000.000001");

    let mut updated = card();
    updated.state = CardState::Queued;
    updated.approvers = vec!["slack:U0BOB".into()];
    within(api.update_card(&posted.channel, &posted.ts, &updated))
        .await
        .expect("updated");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.verb, "POST");
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer xoxb-test-token-1234")
        );
        assert!(
            request
                .content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            request.content_type
        );
    }
    let post = &requests[0];
    assert_eq!(post.path, "/api/chat.postMessage", "no doubled slash");
    assert_eq!(post.body["channel"], "C1");
    assert_eq!(post.body["unfurl_links"], false);
    assert!(post.body["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("Awaiting approval: write request r-7f3a")));
    let blocks = post.body["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":hourglass_flowing_sand: *Awaiting approval*"
    );
    assert!(
        post.body.get("thread_ts").is_none(),
        "a card is a root message"
    );

    let update = &requests[1];
    assert_eq!(update.path, "/api/chat.update");
    assert_eq!(update.body["channel"], "C1");
    assert_eq!(update.body["ts"], "1700000000.000001");
    assert_eq!(
        update.body["blocks"][0]["text"]["text"],
        ":inbox_tray: *Queued*"
    );
}

#[tokio::test]
async fn results_go_into_the_requests_thread_through_chat_poster() {
    let fake = FakeSlack::start().await;
    let api = api(&fake);
    let to = ReplyTo {
        platform: "slack".into(),
        channel: "C1".into(),
        thread: "1700000000.000042".into(),
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
    within(poster.post(&to, &ThreadMessage::note("Approved by slack:U0BOB")))
        .await
        .expect("posted");

    let posts = fake.calls("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert!(posts
        .iter()
        .all(|p| p.body["thread_ts"] == "1700000000.000042"));
    assert_eq!(
        posts[0].body["blocks"][0]["text"]["text"],
        ":white_check_mark: *Succeeded on orders-prod: 1 row affected in 12 ms*"
    );
    assert_eq!(
        posts[1].body["blocks"][0]["text"]["text"],
        "Approved by <@U0BOB>"
    );

    let discord = ReplyTo {
        platform: "discord".into(),
        ..to.clone()
    };
    assert_eq!(
        within(poster.post(&discord, &ThreadMessage::note("x"))).await,
        Err(ChatError::UnknownPlatform("discord".into()))
    );
    assert_eq!(
        fake.requests().len(),
        2,
        "nothing sent for another platform"
    );
}

#[tokio::test]
async fn slacks_refusals_become_typed_errors() {
    let fake = FakeSlack::start().await;
    let api = api(&fake);

    let error = within(api.post_card("C404", &card()))
        .await
        .expect_err("refused");
    assert_eq!(
        error,
        SlackError::Refused {
            method: "chat.postMessage",
            code: "channel_not_found".into(),
            retry_after: None,
        }
    );
    assert!(!error.is_retryable());

    let to = ReplyTo {
        platform: "slack".into(),
        channel: "C404".into(),
        thread: "1.2".into(),
    };
    assert_eq!(
        within(api.post(&to, &ThreadMessage::note("x"))).await,
        Err(ChatError::Failed(
            "Slack refused chat.postMessage: channel_not_found".into()
        ))
    );

    let limited = within(api.post_in_thread("CBUSY", "1.2", &ThreadMessage::note("x")))
        .await
        .expect_err("rate limited");
    assert_eq!(limited.code(), Some("ratelimited"));
    assert!(limited.is_retryable());
    assert!(matches!(
        limited,
        SlackError::Refused { retry_after: Some(wait), .. } if wait == Duration::from_secs(3)
    ));
}

#[tokio::test]
async fn an_unreachable_or_silent_slack_is_not_a_refusal_and_errors_never_show_the_token() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/api", closed.local_addr().expect("address"));
    drop(closed);
    let api = SlackApi::new(TOKEN, Some(&url)).expect("client");
    let error = within(api.post_card("C1", &card()))
        .await
        .expect_err("unreachable");
    assert!(
        matches!(
            &error,
            SlackError::Unreachable {
                method: "chat.postMessage",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let shown = format!("{error} {error:?} {api:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(!shown.contains("test-token"), "{shown}");
    assert!(error.to_string().contains("tcp connect error"), "{error}");

    let fake = FakeSlack::start().await;
    let impatient = SlackApi::builder(TOKEN)
        .api_url(fake.api_url())
        .request_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let error = within(impatient.post_in_thread("CSLOW", "1.2", &ThreadMessage::note("x")))
        .await
        .expect_err("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 200 ms timeout, not the fake's 5 s"
    );
    assert_eq!(
        error.to_string(),
        "could not reach Slack for chat.postMessage: no answer within 200 ms"
    );

    assert!(matches!(
        SlackApi::new(TOKEN, Some("ftp://example.com/api")),
        Err(SlackError::Config(_))
    ));
    assert!(matches!(
        SlackApi::new(" ", None),
        Err(SlackError::Config(_))
    ));
}

#[tokio::test]
async fn group_members_are_cached_within_the_ttl_and_failures_are_not() {
    let fake = FakeSlack::start().await;
    let api = api(&fake);

    let members = within(api.user_group_members("S0DBA"))
        .await
        .expect("members");
    assert_eq!(members, vec!["U1".to_string(), "U2".to_string()]);
    // Another clone shares the cache; lookups on several tasks at once still make no call.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.user_group_members("S0DBA").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(within(task).await.expect("task"), Ok(members.clone()));
    }
    let calls = fake.calls("usergroups.users.list");
    assert_eq!(calls.len(), 1, "the cache answered within the TTL");
    assert_eq!(calls[0].verb, "GET");
    assert_eq!(calls[0].query.as_deref(), Some("usergroup=S0DBA"));
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer xoxb-test-token-1234")
    );

    for _ in 0..2 {
        let error = within(api.user_group_members("SBAD"))
            .await
            .expect_err("refused");
        assert_eq!(error.code(), Some("no_such_subteam"));
    }
    assert_eq!(
        fake.calls("usergroups.users.list").len(),
        3,
        "errors are not cached"
    );

    let short = SlackApi::builder(TOKEN)
        .api_url(fake.api_url())
        .group_cache_ttl(Duration::from_secs(1))
        .build()
        .expect("client");
    within(short.user_group_members("S0DBA"))
        .await
        .expect("members");
    within(short.user_group_members("S0DBA"))
        .await
        .expect("members");
    assert_eq!(fake.calls("usergroups.users.list").len(), 4);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    within(short.user_group_members("S0DBA"))
        .await
        .expect("members");
    assert_eq!(
        fake.calls("usergroups.users.list").len(),
        5,
        "asked again after the TTL"
    );
}

#[tokio::test]
async fn reactions_ephemeral_messages_and_command_responses() {
    let fake = FakeSlack::start().await;
    let api = api(&fake);

    within(api.add_reaction("C1", "1700000000.000001", ":white_check_mark:"))
        .await
        .expect("reacted");
    within(api.add_reaction("C1", "1700000000.000001", "already"))
        .await
        .expect("already_reacted counts as done");
    let reactions = fake.calls("reactions.add");
    assert_eq!(reactions[0].body["name"], "white_check_mark");
    assert_eq!(reactions[0].body["timestamp"], "1700000000.000001");
    assert_eq!(reactions[0].body["channel"], "C1");

    within(api.post_ephemeral("C1", "U1", "No such request <r-1> & co"))
        .await
        .expect("posted");
    let ephemeral = &fake.calls("chat.postEphemeral")[0];
    assert_eq!(ephemeral.body["user"], "U1");
    assert_eq!(
        ephemeral.body["text"],
        "No such request &lt;r-1&gt; &amp; co"
    );

    let response_url = format!("{}/commands/T1/1/abc", fake.base);
    within(api.respond(&response_url, "Submitted r-7f3a for slack-group:S0DBA"))
        .await
        .expect("responded");
    let response = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/commands/T1/1/abc")
        .expect("response_url called");
    assert_eq!(response.verb, "POST");
    assert_eq!(
        response.authorization, None,
        "a response_url takes no token"
    );
    assert_eq!(response.body["response_type"], "ephemeral");
    assert_eq!(
        response.body["text"],
        "Submitted r-7f3a for <!subteam^S0DBA>"
    );

    assert!(matches!(
        within(api.respond("not a url", "x")).await,
        Err(SlackError::Config(_))
    ));
}

#[tokio::test]
async fn the_client_drives_slack_morphisms_socket_mode_listener_against_the_same_url() {
    use slack_morphism::prelude::{
        SlackApiToken, SlackApiTokenValue, SlackClientEventsListenerEnvironment,
        SlackClientSocketModeConfig, SlackClientSocketModeListener, SlackHyperListenerEnvironment,
        SlackSocketModeListenerCallbacks,
    };
    use std::sync::Arc;

    let fake = FakeSlack::start().await;
    let api = api(&fake);
    let environment: Arc<SlackHyperListenerEnvironment> =
        Arc::new(SlackClientEventsListenerEnvironment::new(api.client()));
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new().with_max_connections_count(1),
        environment,
        SlackSocketModeListenerCallbacks::new(),
    );
    let app_token = SlackApiToken::new(SlackApiTokenValue("xapp-test".into()));
    within(listener.listen_for(&app_token))
        .await
        .expect("registered");
    within(listener.start()).await;
    let opened = within(async {
        loop {
            if let Some(call) = fake.calls("apps.connections.open").into_iter().next() {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    listener.shutdown().await;
    assert_eq!(opened.verb, "POST");
    assert_eq!(opened.authorization.as_deref(), Some("Bearer xapp-test"));
}
