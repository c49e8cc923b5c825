//! The flow end to end in Slack's Socket Mode: real PostgreSQL, Redis and executor, the real
//! slack-morphism client against a fake Slack; assertions on what people see.

mod common;

use common::*;
use countersign_shared::audit::AuditEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allowed_select_runs_at_once_and_its_result_appears_in_the_thread() {
    let mut world = World::new().await;
    world.start_executor().await;
    let bot = world.socket_bot("bot-a").await;

    let sent = world
        .slack
        .send_slash_command(
            ALICE,
            ENG,
            "shop SELECT id, status FROM orders WHERE id <= 3 ORDER BY id",
        )
        .await;
    // Acknowledged (with an empty payload) well inside Slack's three seconds.
    world
        .slack
        .wait_ack(&sent.envelope_id, std::time::Duration::from_secs(3))
        .await;

    let root = world
        .root_containing(ENG, "SELECT id, status FROM orders")
        .await;
    let result = world.reply_containing(&root, "3 rows").await;
    let text = result.visible_text();
    assert!(text.contains("open"), "{text}");
    assert!(text.contains("Audit #"), "{text}");
    world.root_shows(&root, "Succeeded").await;
    // No review: nothing in the review channel.
    assert!(world.slack.messages(REVIEW).is_empty());

    let id = world
        .request_id("SELECT id, status FROM orders WHERE id <= 3 ORDER BY id")
        .await;
    let events = world.events(&id).await;
    assert_eq!(
        events,
        vec![
            AuditEvent::Received,
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::Succeeded
        ]
    );
    assert!(
        world.slack.problems().is_empty(),
        "{:?}",
        world.slack.problems()
    );
    bot.stop().await;
    world.stop_executor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_without_where_needs_two_dbas_and_the_row_guard_holds() {
    let mut world = World::new().await;
    world.start_executor().await;
    let bot = world.socket_bot("bot-a").await;
    let sql = "DELETE FROM orders";
    let sent = world
        .slack
        .send_slash_command(
            ALICE,
            ENG,
            &format!("shop --reason \"clean up test data\" {sql}"),
        )
        .await;

    // The request goes to the review channel with everything a reviewer needs.
    let root = world.root_containing(REVIEW, sql).await;
    let card = root.visible_text();
    for needle in [
        "Awaiting approval",
        "<@UALICE>",
        "shop",
        "clean up test data",
        "write",
        "changes every row of the table",
        "2 approvals from dba",
    ] {
        assert!(card.contains(needle), "card lacks {needle:?}:\n{card}");
    }
    assert!(
        card.to_lowercase().contains("estimate"),
        "no estimate line:\n{card}"
    );
    // The requester hears privately where it went.
    world
        .slack
        .wait_for("the private reply", WAIT, |s| {
            s.responses(&sent.response_url)
                .into_iter()
                .find(|r| r.to_string().contains("needs 2 approvals from dba"))
        })
        .await;
    // The bot seeds the approve and reject reactions.
    let seeded = world.slack.bot_reactions();
    assert!(seeded
        .iter()
        .any(|(_, ts, name)| ts == &root.ts && name == "white_check_mark"));
    assert!(seeded
        .iter()
        .any(|(_, ts, name)| ts == &root.ts && name == "x"));

    // The requester's own approval does not count.
    world
        .slack
        .send_reaction(true, ALICE, "white_check_mark", &root.channel, &root.ts)
        .await;
    world
        .reply_containing(&root, "your own approval does not count")
        .await;
    // An engineer who is not a DBA does not count.
    world
        .slack
        .send_reaction(true, ERIN, "white_check_mark", &root.channel, &root.ts)
        .await;
    world
        .reply_containing(&root, "The approval of <@UERIN> does not count")
        .await;
    // A reaction that means nothing changes nothing.
    world
        .slack
        .send_reaction(true, BOB, "tada", &root.channel, &root.ts)
        .await;
    // The first DBA.
    world
        .slack
        .send_reaction(true, BOB, "white_check_mark", &root.channel, &root.ts)
        .await;
    world.reply_containing(&root, "<@UBOB> approved").await;
    world.root_shows(&root, "UBOB").await;
    assert_eq!(world.orders().await, 8, "nothing runs before the quorum");
    // The second DBA: quorum, queued, run under the row guard (limit 5, 8 rows): rolled back.
    world
        .slack
        .send_reaction(true, CAROL, "white_check_mark", &root.channel, &root.ts)
        .await;
    world
        .reply_containing(&root, "Approved by <@UBOB> and <@UCAROL>")
        .await;
    let result = world.reply_containing(&root, "Audit #").await;
    let text = result.visible_text();
    assert!(text.to_lowercase().contains("rolled back"), "{text}");
    assert_eq!(
        world.orders().await,
        8,
        "the row guard rolled the delete back"
    );
    world.root_shows(&root, "Rolled back").await;

    let id = world.request_id(sql).await;
    let events = world.events(&id).await;
    assert_eq!(
        events,
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
    // Approvals after the fact change nothing.
    world
        .slack
        .send_reaction(true, DAN, "white_check_mark", &root.channel, &root.ts)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(world.events(&id).await.len(), 7);
    assert!(
        world.slack.problems().is_empty(),
        "{:?}",
        world.slack.problems()
    );
    bot.stop().await;
    world.stop_executor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejection_cancellation_withdrawal_and_denial_each_close_with_a_note() {
    let mut world = World::new().await;
    world.start_executor().await;
    let bot = world.socket_bot("bot-a").await;

    // Denied: the reason privately, nothing posted, audited.
    let denied = world
        .slack
        .send_slash_command(ALICE, ENG, "shop DROP TABLE orders")
        .await;
    world
        .slack
        .wait_for("the denial", WAIT, |s| {
            s.responses(&denied.response_url).into_iter().find(|r| {
                r.to_string()
                    .contains("schema changes go through migrations")
            })
        })
        .await;
    let id = world.request_id("DROP TABLE orders").await;
    assert_eq!(
        world.events(&id).await,
        vec![AuditEvent::Received, AuditEvent::Denied]
    );

    // Rejected by a DBA.
    world
        .slack
        .send_slash_command(
            ALICE,
            ENG,
            "shop UPDATE orders SET status = 'x' WHERE id = 1",
        )
        .await;
    let rejected = world.root_containing(REVIEW, "WHERE id = 1").await;
    world
        .slack
        .send_reaction(true, CAROL, "x", &rejected.channel, &rejected.ts)
        .await;
    world
        .reply_containing(&rejected, "<@UCAROL> rejected the request")
        .await;
    world.root_shows(&rejected, "Rejected").await;
    // An approval after the rejection does nothing.
    world
        .slack
        .send_reaction(
            true,
            BOB,
            "white_check_mark",
            &rejected.channel,
            &rejected.ts,
        )
        .await;

    // Cancelled by the requester with /query cancel.
    world
        .slack
        .send_slash_command(
            ALICE,
            ENG,
            "shop UPDATE orders SET status = 'x' WHERE id = 2",
        )
        .await;
    let cancelled = world.root_containing(REVIEW, "WHERE id = 2").await;
    let cancel_id = world
        .request_id("UPDATE orders SET status = 'x' WHERE id = 2")
        .await;
    // Someone else cannot cancel it.
    let not_yours = world
        .slack
        .send_slash_command(ERIN, ENG, &format!("cancel {cancel_id}"))
        .await;
    world
        .slack
        .wait_for("the refusal to cancel", WAIT, |s| {
            s.responses(&not_yours.response_url)
                .into_iter()
                .find(|r| r.to_string().contains("is not yours"))
        })
        .await;
    let mine = world
        .slack
        .send_slash_command(ALICE, ENG, &format!("cancel {cancel_id}"))
        .await;
    world
        .slack
        .wait_for("the cancellation", WAIT, |s| {
            s.responses(&mine.response_url)
                .into_iter()
                .find(|r| r.to_string().contains("Cancelled request"))
        })
        .await;
    world
        .reply_containing(&cancelled, "cancelled the request")
        .await;
    world.root_shows(&cancelled, "Cancelled").await;

    // A withdrawn approval no longer counts: one DBA approves then removes the reaction, a
    // second DBA approves, and the quorum of one is met by the second only.
    world
        .slack
        .send_slash_command(
            ALICE,
            ENG,
            "shop UPDATE orders SET status = 'shipped' WHERE id = 3",
        )
        .await;
    let withdrawn = world.root_containing(REVIEW, "WHERE id = 3").await;
    let wid = world
        .request_id("UPDATE orders SET status = 'shipped' WHERE id = 3")
        .await;
    world
        .slack
        .send_slash_command(
            ALICE,
            ENG,
            "shop UPDATE orders SET status = 'lost' WHERE id = 4",
        )
        .await;
    let two = world.root_containing(REVIEW, "WHERE id = 4").await;
    // On the request that needs two (a DELETE without WHERE would run), test withdrawal instead:
    world
        .slack
        .send_slash_command(ALICE, ENG, "shop UPDATE orders SET status = 'all'")
        .await;
    let everything = world.root_containing(REVIEW, "SET status = 'all'").await;
    world
        .slack
        .send_reaction(
            true,
            BOB,
            "white_check_mark",
            &everything.channel,
            &everything.ts,
        )
        .await;
    world
        .reply_containing(&everything, "<@UBOB> approved")
        .await;
    world
        .slack
        .send_reaction(
            false,
            BOB,
            "white_check_mark",
            &everything.channel,
            &everything.ts,
        )
        .await;
    world
        .reply_containing(&everything, "<@UBOB> withdrew their approval")
        .await;
    world
        .slack
        .send_reaction(
            true,
            CAROL,
            "white_check_mark",
            &everything.channel,
            &everything.ts,
        )
        .await;
    world
        .reply_containing(&everything, "<@UCAROL> approved")
        .await;
    let all_id = world.request_id("UPDATE orders SET status = 'all'").await;
    assert_eq!(
        countersign_control::requests::state_of(&world.store, &all_id)
            .await
            .expect("state"),
        Some(countersign_control::requests::RequestState::Pending),
        "one active approval of two: still pending"
    );
    // The single-approval ones run once a DBA approves.
    world
        .slack
        .send_reaction(
            true,
            DAN,
            "white_check_mark",
            &withdrawn.channel,
            &withdrawn.ts,
        )
        .await;
    world.reply_containing(&withdrawn, "Audit #").await;
    world.root_shows(&withdrawn, "Succeeded").await;
    assert!(world.events(&wid).await.contains(&AuditEvent::Succeeded));
    drop(two);
    assert!(
        world.slack.problems().is_empty(),
        "{:?}",
        world.slack.problems()
    );
    bot.stop().await;
    world.stop_executor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_expires_when_its_approvals_do_not_arrive() {
    let world = World::new().await;
    let bot = world.socket_bot("bot-a").await;
    let sql = "UPDATE orders SET status = 'late' WHERE id = 5";
    world
        .slack
        .send_slash_command(ALICE, ENG, &format!("shop {sql}"))
        .await;
    let root = world.root_containing(REVIEW, sql).await;
    // The window ends once the card is recorded: a TTL of a second could run out while a slow
    // machine is still posting the card, before there is a thread to say so in.
    world.end_approval_window(sql).await;
    world
        .reply_containing(&root, "expired before it was approved")
        .await;
    world.root_shows(&root, "Expired").await;
    // Too late now.
    world
        .slack
        .send_reaction(true, BOB, "white_check_mark", &root.channel, &root.ts)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let id = world.request_id(sql).await;
    assert_eq!(
        world.events(&id).await,
        vec![
            AuditEvent::Received,
            AuditEvent::Pending,
            AuditEvent::Expired
        ]
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn help_pending_and_bad_input_answer_privately() {
    let world = World::new().await;
    let bot = world.socket_bot("bot-a").await;
    world
        .slack
        .send_slash_command(ALICE, ENG, "shop DELETE FROM orders")
        .await;
    world.root_containing(REVIEW, "DELETE FROM orders").await;

    let pending_for_bob = world.slack.send_slash_command(BOB, ENG, "pending").await;
    let text = world
        .slack
        .wait_for("bob's pending list", WAIT, |s| {
            s.responses(&pending_for_bob.response_url).pop()
        })
        .await
        .to_string();
    assert!(text.contains("Waiting for your review"), "{text}");
    assert!(text.contains("DELETE FROM orders"), "{text}");
    let pending_for_alice = world.slack.send_slash_command(ALICE, ENG, "pending").await;
    let text = world
        .slack
        .wait_for("alice's pending list", WAIT, |s| {
            s.responses(&pending_for_alice.response_url).pop()
        })
        .await
        .to_string();
    assert!(text.contains("Your open requests"), "{text}");
    assert!(!text.contains("Waiting for your review"), "{text}");

    let help = world.slack.send_slash_command(ALICE, ENG, "help").await;
    let text = world
        .slack
        .wait_for("help", WAIT, |s| s.responses(&help.response_url).pop())
        .await
        .to_string();
    assert!(text.contains("/query cancel"), "{text}");
    assert!(text.contains("`shop`"), "{text}");

    let bad = world
        .slack
        .send_slash_command(ALICE, ENG, "warehouse SELECT 1")
        .await;
    let text = world
        .slack
        .wait_for("the error", WAIT, |s| s.responses(&bad.response_url).pop())
        .await
        .to_string();
    assert!(text.contains("`warehouse` is not a target"), "{text}");

    // Slack recycles the connection: the bot reconnects and keeps answering.
    let opened = world.slack.sockets_opened();
    world.slack.send_disconnect().await;
    world
        .slack
        .wait_for("a new Socket Mode connection", WAIT, |s| {
            (s.sockets_opened() > opened).then_some(())
        })
        .await;
    let after = world.slack.send_slash_command(ALICE, ENG, "help").await;
    world.slack.wait_ack(&after.envelope_id, WAIT).await;
    world
        .slack
        .wait_for("help after the reconnect", WAIT, |s| {
            s.responses(&after.response_url).pop()
        })
        .await;
    bot.stop().await;
}
