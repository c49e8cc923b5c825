//! HTTP mode's refusals, and the bot's durability: a restart mid-review, two replicas on the
//! same events, an event a dead replica never finished.

mod common;

use std::time::Duration;

use common::*;
use countersign_shared::audit::AuditEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_mode_refuses_forged_stale_and_replayed_requests_and_acknowledges_real_ones() {
    let mut world = World::new().await;
    world.start_executor().await;
    let bot = world.http_bot("bot-http").await;
    let sender = world.slack.http_sender(&bot.url(), SIGNING_SECRET);
    let forger = world
        .slack
        .http_sender(&bot.url(), "not the signing secret");

    // Slack's one-time URL check.
    let challenge = sender.send_url_verification("c-123").await;
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    assert!(challenge.body.contains("c-123"));

    // A real command: acknowledged at once, then run.
    let reply = sender
        .send_command(ALICE, ENG, "shop SELECT count(*) AS n FROM orders")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.elapsed < Duration::from_secs(3),
        "{:?}",
        reply.elapsed
    );
    let root = world
        .root_containing(ENG, "SELECT count(*) AS n FROM orders")
        .await;
    world.reply_containing(&root, "Audit #").await;

    // Forged: signed with another secret. Nothing is run, nothing is posted.
    let forged = forger
        .send_command(ALICE, ENG, "shop SELECT 'forged' AS f")
        .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    // Stale: a correct signature on a timestamp ten minutes old.
    let body = b"token=x&team_id=T1&channel_id=CENG&user_id=UALICE&command=%2Fquery&text=shop+SELECT+%27stale%27&response_url=http%3A%2F%2F127.0.0.1%2Fr&trigger_id=1.2.stale";
    let old = (countersign_control::now_s() - 600).to_string();
    let stale = sender
        .send_raw(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            body,
            &old,
            Some(&sender.sign(&old, body)),
        )
        .await;
    assert_eq!(stale.status, 401, "{}", stale.body);
    assert!(stale.body.contains("too old"), "{}", stale.body);
    // Unsigned.
    let now = countersign_control::now_s().to_string();
    let unsigned = sender
        .send_raw(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            body,
            &now,
            None,
        )
        .await;
    assert_eq!(unsigned.status, 401);
    // Replayed: the same signed bytes twice inside the window.
    let fresh = body.to_vec();
    let fresh = String::from_utf8(fresh)
        .expect("utf8")
        .replace("stale", "replay")
        .into_bytes();
    let signature = sender.sign(&now, &fresh);
    let first = sender
        .send_raw(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &fresh,
            &now,
            Some(&signature),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = sender
        .send_raw(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &fresh,
            &now,
            Some(&signature),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    // The 200 comes once the event is in the inbox; the request is recorded after it. The
    // refused copies never reach the inbox, so two requests is the end state.
    let deadline = tokio::time::Instant::now() + WAIT;
    let requests = loop {
        let requests: Vec<String> =
            sqlx::query_scalar("SELECT sql FROM cs_requests ORDER BY created_at")
                .fetch_all(world.store.pg_pool().expect("the tests run on PostgreSQL"))
                .await
                .expect("requests");
        if requests.len() >= 2 || tokio::time::Instant::now() > deadline {
            break requests;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        requests,
        vec![
            "SELECT count(*) AS n FROM orders".to_string(),
            "SELECT 'replay'".to_string()
        ],
        "only the real and the first replayed command became requests"
    );
    let metrics = reqwest_metrics(&bot.url()).await;
    assert!(
        metrics.contains("countersign_bot_http_refused_total{kind=\"bad_signature\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("countersign_bot_http_refused_total{kind=\"stale\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("countersign_bot_http_refused_total{kind=\"replay\"} 1"),
        "{metrics}"
    );

    // Reactions arrive over HTTP too.
    sender
        .send_command(
            ALICE,
            ENG,
            "shop UPDATE orders SET status = 'paid' WHERE id = 7",
        )
        .await;
    let review = world.root_containing(REVIEW, "WHERE id = 7").await;
    let approved = sender
        .send_reaction(true, BOB, "white_check_mark", &review.channel, &review.ts)
        .await;
    assert_eq!(approved.status, 200);
    world.reply_containing(&review, "Audit #").await;
    world.root_shows(&review, "Succeeded").await;
    bot.stop().await;
    world.stop_executor().await;
}

/// GET /metrics over plain HTTP.
async fn reqwest_metrics(base: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bot_restarted_mid_review_loses_nothing() {
    let mut world = World::new().await;
    world.start_executor().await;
    let first = world.socket_bot("bot-1").await;
    // Needs two DBA approvals; one arrives before the restart, one after.
    let sql = "DELETE FROM orders";
    world
        .slack
        .send_slash_command(ALICE, ENG, &format!("shop {sql}"))
        .await;
    let root = world.root_containing(REVIEW, sql).await;
    world
        .slack
        .send_reaction(true, BOB, "white_check_mark", &root.channel, &root.ts)
        .await;
    world.reply_containing(&root, "<@UBOB> approved").await;
    first.stop().await;

    // A new process: nothing in memory, everything from PostgreSQL.
    let second = world.socket_bot("bot-2").await;
    world
        .slack
        .send_reaction(true, CAROL, "white_check_mark", &root.channel, &root.ts)
        .await;
    world
        .reply_containing(&root, "Approved by <@UBOB> and <@UCAROL>")
        .await;
    world.reply_containing(&root, "Audit #").await;
    // Eight rows against a limit of five: run once, rolled back by the row guard.
    world.root_shows(&root, "Rolled back").await;
    assert_eq!(world.orders().await, 8);
    let id = world.request_id(sql).await;
    assert_eq!(
        world.events(&id).await,
        vec![
            AuditEvent::Received,
            AuditEvent::Pending,
            AuditEvent::Approved,
            AuditEvent::Approved,
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::RolledBack
        ]
    );
    second.stop().await;
    world.stop_executor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_a_dead_replica_accepted_but_never_handled_is_handled_by_another() {
    let mut world = World::new().await;
    world.start_executor().await;
    // A replica accepted (and acknowledged) this command, then died before handling it.
    let (frame, sent) = world
        .slack
        .slash_command_frame(ALICE, ENG, "shop SELECT 41 + 1 AS answer");
    let payload = &frame["payload"];
    let inbound = serde_json::json!({
        "kind": "command",
        "key": sent.trigger_id,
        "origin": {
            "platform": "slack",
            "channel": ENG,
            "user": "slack:UALICE",
            "respond": payload["response_url"],
        },
        "text": "shop SELECT 41 + 1 AS answer",
    });
    sqlx::query(
        "INSERT INTO cs_inbox (key, kind, payload, claimed_at) VALUES ($1, 'command', $2, now() - interval '1 minute')",
    )
    .bind(format!("slack:command:{}", sent.trigger_id))
    .bind(&inbound)
    .execute(world.store.pg_pool().expect("the tests run on PostgreSQL"))
    .await
    .expect("inbox");

    let survivor = world.socket_bot("bot-survivor").await;
    let root = world.root_containing(ENG, "SELECT 41 + 1 AS answer").await;
    let result = world.reply_containing(&root, "Audit #").await;
    assert!(
        result.visible_text().contains("42"),
        "{}",
        result.visible_text()
    );
    world
        .slack
        .wait_for("the requester's private answer", WAIT, |s| {
            s.responses(&sent.response_url).into_iter().next()
        })
        .await;
    survivor.stop().await;
    world.stop_executor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_the_same_events_post_once_and_count_each_reaction_once() {
    let mut world = World::new().await;
    world.start_executor().await;
    let one = world.socket_bot("replica-1").await;
    let two = world.socket_bot("replica-2").await;
    world.slack.wait_socket_connected(2, WAIT).await;

    let sql = "UPDATE orders SET status = 'all'";
    let (command, _) = world
        .slack
        .slash_command_frame(ALICE, ENG, &format!("shop {sql}"));
    world.slack.send_envelope_to_all(command).await;
    let root = world.root_containing(REVIEW, sql).await;
    for (user, note) in [(BOB, "<@UBOB> approved"), (CAROL, "Approved by")] {
        let (reaction, _) =
            world
                .slack
                .reaction_frame(true, user, "white_check_mark", &root.channel, &root.ts);
        world.slack.send_envelope_to_all(reaction).await;
        // One reviewer after the other: two approvals that land together are queued with a
        // single "Approved by" note and no progress note, which this test would miscount.
        world.reply_containing(&root, note).await;
    }
    world.reply_containing(&root, "Audit #").await;
    // Eight rows against a limit of five: the row guard rolls it back, once.
    world.root_shows(&root, "Rolled back").await;
    // Give any duplicate a chance to show up.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let roots: Vec<_> = world
        .slack
        .messages(REVIEW)
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .collect();
    assert_eq!(roots.len(), 1, "one root message");
    let thread = world.thread_texts(&root);
    let approvals = thread.iter().filter(|t| t.contains("approved.")).count();
    let quorum = thread.iter().filter(|t| t.contains("Approved by")).count();
    let results = thread.iter().filter(|t| t.contains("Audit #")).count();
    assert_eq!((approvals, quorum, results), (1, 1, 1), "{thread:#?}");
    let id = world.request_id(sql).await;
    let events = world.events(&id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == AuditEvent::Approved)
            .count(),
        2,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| **e == AuditEvent::Queued).count(),
        1,
        "{events:?}"
    );
    let duplicates = one.bot.metrics().encode() + &two.bot.metrics().encode();
    assert!(
        duplicates.contains("countersign_bot_duplicate_events_total"),
        "{duplicates}"
    );
    one.stop().await;
    two.stop().await;
    world.stop_executor().await;
}
