//! The flow end to end on Discord: the real serenity client (gateway and REST) against the fake
//! Discord, real PostgreSQL, Redis and executor (posting into Discord threads).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use countersign_bot::discord::adapter::DiscordAdapter;
use countersign_bot::discord::gateway::DiscordGateway;
use countersign_bot::flow::upkeep;
use countersign_bot::Bot;
use countersign_control::queue::JobQueue;
use countersign_control::store::ControlStore;
use countersign_discord::DiscordApi;
use countersign_shared::audit::AuditEvent;
use countersign_shared::job::JobSigner;
use countersign_shared::policy::Policy;
use countersign_testkit::discord::{query, FakeDiscord, Message, GUILD_ID};
use serenity::all::GuildId;
use tokio_util::sync::CancellationToken;

const ALICE_ID: u64 = 501;
const BOB_ID: u64 = 502;
const CAROL_ID: u64 = 503;
const ERIN_ID: u64 = 505;
const ENGINEERS: u64 = 11;
const DBAS: u64 = 22;
const ENG_CHANNEL: u64 = 6000;
const REVIEW_CHANNEL: u64 = 6001;
const APPROVE: &str = "\u{2705}";
const REJECT: &str = "\u{274C}";

fn policy_text() -> String {
    POLICY
        .replace("review_channel = \"CREVIEW\"", "review_channel = \"6001\"")
        .replace(
            "members = [\"slack-group:SENG\"]",
            "members = [\"discord-role:11\"]",
        )
        .replace(
            "members = [\"slack-group:SDBA\"]",
            "members = [\"discord-role:22\"]",
        )
}

struct DiscordWorld {
    world: World,
    discord: FakeDiscord,
}

struct RunningDiscordBot {
    bot: Arc<Bot>,
    gateway: DiscordGateway,
    cancel: CancellationToken,
    upkeep: tokio::task::JoinHandle<()>,
}

impl RunningDiscordBot {
    async fn stop(self) {
        self.gateway.shutdown().await;
        self.cancel.cancel();
        let _ = self.upkeep.await;
        self.bot.drain(Duration::from_secs(5)).await;
    }
}

impl DiscordWorld {
    async fn new(policy: &str) -> DiscordWorld {
        // The bot's logs, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,countersign_bot=debug,countersign_discord=debug,sqlx=debug")
            .with_test_writer()
            .try_init();
        let mut world = World::with_policy(policy).await;
        let discord = FakeDiscord::start().await;
        discord.set_member_roles(ALICE_ID, &[ENGINEERS]);
        discord.set_member_roles(ERIN_ID, &[ENGINEERS]);
        discord.set_member_roles(BOB_ID, &[DBAS]);
        discord.set_member_roles(CAROL_ID, &[DBAS]);
        let api = DiscordApi::builder("discord-bot-token")
            .base_url(discord.base_url())
            .build()
            .expect("discord api");
        world.start_executor_with(Arc::new(api)).await;
        DiscordWorld { world, discord }
    }

    fn api(&self) -> DiscordApi {
        DiscordApi::builder("discord-bot-token")
            .base_url(self.discord.base_url())
            .request_timeout(Duration::from_secs(3))
            .build()
            .expect("discord api")
    }

    async fn bot(&self, name: &str) -> RunningDiscordBot {
        let store = ControlStore::connect(&self.world.control.url, 8)
            .await
            .expect("store");
        let queue = JobQueue::connect(&self.world.redis_url, &self.world.prefix)
            .await
            .expect("redis");
        let guild = GuildId::new(GUILD_ID);
        let bot = Arc::new(
            Bot::new(
                self.world.policy.clone(),
                store,
                queue,
                JobSigner::from_seed(SEED),
                self.world.config(),
                name,
            )
            .with_adapter(DiscordAdapter::new(self.api(), guild)),
        );
        let before = self.discord.identify_count();
        let gateway = DiscordGateway::start(bot.clone(), self.api(), vec![guild])
            .await
            .expect("gateway");
        self.discord
            .wait_for("the bot's IDENTIFY", WAIT, |d| {
                (d.identify_count() > before).then_some(())
            })
            .await;
        self.discord
            .wait_for("/query registered", WAIT, |d| {
                d.registered_commands()
                    .iter()
                    .any(|c| c.name == "query")
                    .then_some(())
            })
            .await;
        let cancel = CancellationToken::new();
        let upkeep = tokio::spawn(upkeep::run(bot.clone(), cancel.clone()));
        RunningDiscordBot {
            bot,
            gateway,
            cancel,
            upkeep,
        }
    }

    async fn card_containing(&self, channel: u64, needle: &str) -> Message {
        self.discord
            .wait_for(
                &format!("a card in {channel} containing {needle:?}"),
                WAIT,
                |d| {
                    d.messages(channel)
                        .into_iter()
                        .find(|m| m.visible_text().contains(needle))
                },
            )
            .await
    }

    async fn card_shows(&self, card: &Message, needle: &str) {
        self.discord
            .wait_for(&format!("the card to show {needle:?}"), WAIT, |d| {
                d.message(card.channel_id, card.id)
                    .filter(|m| m.visible_text().contains(needle))
                    .map(|_| ())
            })
            .await;
    }

    async fn in_thread(&self, card: &Message, needle: &str) -> Message {
        self.discord
            .wait_for(
                &format!("a thread message containing {needle:?}"),
                WAIT,
                |d| {
                    d.thread(card.id)
                        .into_iter()
                        .find(|m| m.visible_text().contains(needle))
                },
            )
            .await
    }

    async fn private_answer(&self, interaction: u64, needle: &str) -> String {
        self.discord
            .wait_for(
                &format!("the private answer containing {needle:?}"),
                WAIT,
                |d| {
                    let text = d.interaction_responses(interaction).visible_text();
                    text.contains(needle).then_some(text)
                },
            )
            .await
    }

    async fn react(&self, added: bool, user: u64, card: &Message, emoji: &str) {
        assert!(
            self.discord
                .send_reaction(added, user, card.channel_id, card.id, emoji)
                .await,
            "the reaction was not delivered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allowed_select_on_discord_answers_in_a_thread() {
    let world = DiscordWorld::new(&policy_text()).await;
    let bot = world.bot("discord-bot").await;
    // Discord rate-limits the next two message posts: they are waited out and retried.
    world.discord.rate_limit(
        "POST",
        "/channels/*/messages",
        2,
        Duration::from_millis(200),
    );
    let sent = world
        .discord
        .send_command(
            ALICE_ID,
            ENG_CHANNEL,
            query::run(
                "SELECT id, status FROM orders WHERE id = 1",
                Some("shop"),
                None,
            ),
        )
        .await;
    // Deferred (ephemeral) inside Discord's three seconds.
    world
        .discord
        .wait_for("the deferral", Duration::from_secs(3), |d| {
            d.interaction_responses(sent.interaction_id)
                .deferred()
                .then_some(())
        })
        .await;
    assert!(world
        .discord
        .interaction_responses(sent.interaction_id)
        .ephemeral());
    let card = world
        .card_containing(ENG_CHANNEL, "SELECT id, status FROM orders")
        .await;
    let result = world.in_thread(&card, "Audit #").await;
    assert!(
        result.visible_text().contains("open"),
        "{}",
        result.visible_text()
    );
    world.card_shows(&card, "Succeeded").await;
    world.private_answer(sent.interaction_id, "Allowed").await;
    let limited = world
        .discord
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(limited, 2, "both 429s were seen and retried");
    assert!(
        world.discord.problems().is_empty(),
        "{:?}",
        world.discord.problems()
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_on_discord_needs_two_dbas_and_survives_a_gateway_reconnect() {
    let mut world = DiscordWorld::new(&policy_text()).await;
    let bot = world.bot("discord-bot").await;
    let sql = "DELETE FROM orders";
    world
        .discord
        .send_command(
            ALICE_ID,
            ENG_CHANNEL,
            query::run(sql, Some("shop"), Some("clean up")),
        )
        .await;
    let card = world.card_containing(REVIEW_CHANNEL, sql).await;
    let text = card.visible_text();
    for needle in [
        "Awaiting approval",
        "<@501>",
        "clean up",
        "2 approvals from dba",
    ] {
        assert!(text.contains(needle), "card lacks {needle:?}:\n{text}");
    }
    // A thread started from the card, and the approve and reject reactions seeded on it.
    world
        .discord
        .wait_for("the thread and the seeded reactions", WAIT, |d| {
            let thread = d
                .threads()
                .iter()
                .any(|t| t.message_id == card.id && t.parent_channel_id == REVIEW_CHANNEL);
            let seeded = d.bot_reactions();
            let approve = seeded
                .iter()
                .any(|r| r.message_id == card.id && r.emoji == APPROVE);
            let reject = seeded
                .iter()
                .any(|r| r.message_id == card.id && r.emoji == REJECT);
            (thread && approve && reject).then_some(())
        })
        .await;

    world.react(true, ALICE_ID, &card, APPROVE).await;
    world
        .in_thread(&card, "your own approval does not count")
        .await;
    world.react(true, ERIN_ID, &card, APPROVE).await;
    world
        .in_thread(&card, "The approval of <@505> does not count")
        .await;
    world.react(true, BOB_ID, &card, APPROVE).await;
    world.in_thread(&card, "<@502> approved").await;

    // The gateway asks the client to reconnect mid-review: it resumes and nothing is lost.
    let resumes = world.discord.resume_count();
    world.discord.send_reconnect().await;
    world.discord.wait_resumed(resumes + 1, WAIT).await;
    world.react(true, CAROL_ID, &card, APPROVE).await;
    world
        .in_thread(&card, "Approved by <@502> and <@503>")
        .await;
    let result = world.in_thread(&card, "Audit #").await;
    assert!(
        result.visible_text().to_lowercase().contains("rolled back"),
        "{}",
        result.visible_text()
    );
    world.card_shows(&card, "Rolled back").await;
    assert_eq!(world.world.orders().await, 8);
    let id = world.world.request_id(sql).await;
    assert_eq!(
        world.world.events(&id).await,
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
    assert!(
        world.discord.problems().is_empty(),
        "{:?}",
        world.discord.problems()
    );
    bot.stop().await;
    world.world.stop_executor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejection_cancellation_withdrawal_and_denial_on_discord() {
    let world = DiscordWorld::new(&policy_text()).await;
    let bot = world.bot("discord-bot").await;

    let denied = world
        .discord
        .send_command(
            ALICE_ID,
            ENG_CHANNEL,
            query::run("DROP TABLE orders", Some("shop"), None),
        )
        .await;
    world
        .private_answer(
            denied.interaction_id,
            "schema changes go through migrations",
        )
        .await;

    world
        .discord
        .send_command(
            ALICE_ID,
            ENG_CHANNEL,
            query::run(
                "UPDATE orders SET status = 'x' WHERE id = 1",
                Some("shop"),
                None,
            ),
        )
        .await;
    let rejected = world.card_containing(REVIEW_CHANNEL, "WHERE id = 1").await;
    world.react(true, CAROL_ID, &rejected, REJECT).await;
    world
        .in_thread(&rejected, "<@503> rejected the request")
        .await;
    world.card_shows(&rejected, "Rejected").await;

    world
        .discord
        .send_command(
            ALICE_ID,
            ENG_CHANNEL,
            query::run(
                "UPDATE orders SET status = 'x' WHERE id = 2",
                Some("shop"),
                None,
            ),
        )
        .await;
    let cancelled = world.card_containing(REVIEW_CHANNEL, "WHERE id = 2").await;
    let id = world
        .world
        .request_id("UPDATE orders SET status = 'x' WHERE id = 2")
        .await;
    let cancel = world
        .discord
        .send_command(ALICE_ID, ENG_CHANNEL, query::cancel(&id))
        .await;
    world
        .private_answer(cancel.interaction_id, "Cancelled request")
        .await;
    world.in_thread(&cancelled, "cancelled the request").await;
    world.card_shows(&cancelled, "Cancelled").await;

    world
        .discord
        .send_command(
            ALICE_ID,
            ENG_CHANNEL,
            query::run("UPDATE orders SET status = 'all'", Some("shop"), None),
        )
        .await;
    let everything = world
        .card_containing(REVIEW_CHANNEL, "SET status = 'all'")
        .await;
    world.react(true, BOB_ID, &everything, APPROVE).await;
    world.in_thread(&everything, "<@502> approved").await;
    world.react(false, BOB_ID, &everything, APPROVE).await;
    world
        .in_thread(&everything, "<@502> withdrew their approval")
        .await;

    let pending = world
        .discord
        .send_command(CAROL_ID, ENG_CHANNEL, query::pending())
        .await;
    let text = world
        .private_answer(pending.interaction_id, "Waiting for your review")
        .await;
    assert!(text.contains("SET status = 'all'"), "{text}");
    assert!(
        world.discord.problems().is_empty(),
        "{:?}",
        world.discord.problems()
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_discord_request_expires_when_its_approvals_do_not_arrive() {
    let policy = policy_text();
    let world = DiscordWorld::new(&policy).await;
    let bot = world.bot("discord-bot").await;
    let sql = "UPDATE orders SET status = 'late' WHERE id = 5";
    world
        .discord
        .send_command(ALICE_ID, ENG_CHANNEL, query::run(sql, Some("shop"), None))
        .await;
    let card = world.card_containing(REVIEW_CHANNEL, sql).await;
    // The window ends once the card is recorded: a TTL of a second could run out while a slow
    // machine is still posting the card, before there is a thread to say so in.
    world.world.end_approval_window(sql).await;
    world
        .in_thread(&card, "expired before it was approved")
        .await;
    world.card_shows(&card, "Expired").await;
    let _ = Policy::from_str(&policy, "check").expect("policy");
    bot.stop().await;
}
