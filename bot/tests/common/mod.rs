//! The bot's end-to-end world: a fake Slack, a control database, a target database with an
//! `orders` table, a Redis key space, a real executor posting through the real Slack client,
//! and bots (Socket Mode or HTTP mode) built the way `countersign-bot` builds them.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use countersign_bot::automation::{Automation, ServiceTokens};
use countersign_bot::flow::upkeep;
use countersign_bot::http::{self, Health};
use countersign_bot::slack::adapter::SlackAdapter;
use countersign_bot::slack::events::SlackHttp;
use countersign_bot::slack::socket::SocketMode;
use countersign_bot::{Bot, BotConfig};
use countersign_control::audit_log;
use countersign_control::queue::JobQueue;
use countersign_control::store::ControlStore;
use countersign_executor::execute::{postgres::PgTarget, TargetDb};
use countersign_executor::{Executor, ExecutorConfig, Services};
use countersign_shared::audit::AuditEvent;
use countersign_shared::job::JobSigner;
use countersign_shared::policy::Policy;
use countersign_slack::SlackApi;
pub use countersign_testkit::slack::{FakeSlack, Message};
use countersign_testkit::{free_port, unique_name, PgDatabase};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// People: alice and erin are engineers; bob, carol and dan are DBAs (dan is an engineer too).
pub const ALICE: &str = "UALICE";
pub const BOB: &str = "UBOB";
pub const CAROL: &str = "UCAROL";
pub const DAN: &str = "UDAN";
pub const ERIN: &str = "UERIN";
/// Where engineers type commands, and where reviews go.
pub const ENG: &str = "CENG";
pub const REVIEW: &str = "CREVIEW";

pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const SERVICE_TOKEN: &str = "cst_test-token-for-nightly";

pub const POLICY: &str = include_str!("policy.toml");

pub const SEED: [u8; 32] = [7; 32];

pub const WAIT: Duration = Duration::from_secs(20);

pub struct World {
    pub slack: FakeSlack,
    pub control: PgDatabase,
    pub target: PgDatabase,
    pub store: ControlStore,
    pub redis_url: String,
    pub prefix: String,
    pub policy: Arc<Policy>,
    pub signer: JobSigner,
    executor: Option<(CancellationToken, JoinHandle<()>)>,
}

impl World {
    pub async fn new() -> World {
        World::with_policy(POLICY).await
    }

    pub async fn with_policy(policy_text: &str) -> World {
        let slack = FakeSlack::start().await;
        slack.set_user_group("SENG", &[ALICE, DAN, ERIN]);
        slack.set_user_group("SDBA", &[BOB, CAROL, DAN]);
        let control = PgDatabase::create().await;
        let store = ControlStore::connect(&control.url, 8)
            .await
            .expect("control store");
        let target = PgDatabase::create().await;
        let pool = target.pool().await;
        sqlx::query("CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL)")
            .execute(&pool)
            .await
            .expect("orders");
        sqlx::query("INSERT INTO orders SELECT g, 'open' FROM generate_series(1, 8) g")
            .execute(&pool)
            .await
            .expect("rows");
        World {
            slack,
            control,
            target,
            store,
            redis_url: countersign_testkit::redis_url(),
            prefix: countersign_testkit::redis_namespace(),
            policy: Arc::new(Policy::from_str(policy_text, "test-policy").expect("policy")),
            signer: JobSigner::from_seed(SEED),
            executor: None,
        }
    }

    pub fn slack_api(&self) -> SlackApi {
        SlackApi::builder("xoxb-test-bot-token")
            .api_url(self.slack.api_url())
            .build()
            .expect("slack api")
    }

    /// Starts an executor for `shop` that posts into Slack threads through the real client.
    pub async fn start_executor(&mut self) {
        let poster = Arc::new(self.slack_api());
        self.start_executor_with(poster).await;
    }

    /// Starts an executor for `shop` posting through `poster`.
    pub async fn start_executor_with(
        &mut self,
        poster: Arc<dyn countersign_control::chat::ChatPoster>,
    ) {
        let mut config = ExecutorConfig::new("shop", unique_name("executor"));
        config.stream_prefix = self.prefix.clone();
        config.reconcile_every = Duration::from_millis(200);
        let queue = JobQueue::connect(&self.redis_url, &self.prefix)
            .await
            .expect("redis");
        let db = TargetDb::Postgres(
            PgTarget::connect(&self.target.url, 4)
                .await
                .expect("target"),
        );
        let executor = Executor::new(
            config,
            self.policy.clone(),
            self.signer.verifier(),
            Services {
                store: self.store.clone(),
                queue,
                db,
                poster,
            },
        )
        .expect("executor");
        let cancel = CancellationToken::new();
        let task = {
            let cancel = cancel.clone();
            tokio::spawn(async move { executor.run(cancel).await })
        };
        self.executor = Some((cancel, task));
    }

    pub fn config(&self) -> BotConfig {
        BotConfig {
            upkeep_every: Duration::from_millis(100),
            takeover_after: Duration::from_secs(30),
            preflight_timeout: Duration::from_secs(2),
            automation_channel: Some(("slack".into(), ENG.into())),
            ..BotConfig::default()
        }
    }

    pub async fn bot(&self, name: &str) -> Arc<Bot> {
        self.bot_with(name, self.config()).await
    }

    pub async fn bot_with(&self, name: &str, config: BotConfig) -> Arc<Bot> {
        let store = ControlStore::connect(&self.control.url, 8)
            .await
            .expect("store");
        let queue = JobQueue::connect(&self.redis_url, &self.prefix)
            .await
            .expect("redis");
        Arc::new(
            Bot::new(
                self.policy.clone(),
                store,
                queue,
                JobSigner::from_seed(SEED),
                config,
                name,
            )
            .with_adapter(SlackAdapter::new(self.slack_api())),
        )
    }

    /// A bot in Socket Mode (one connection), with its upkeep loop.
    pub async fn socket_bot(&self, name: &str) -> RunningBot {
        let bot = self.bot(name).await;
        self.run_socket(bot).await
    }

    pub async fn run_socket(&self, bot: Arc<Bot>) -> RunningBot {
        let before = self.slack.sockets_opened();
        let socket = SocketMode::start(bot.clone(), self.slack_api().client(), "xapp-test", 1)
            .await
            .expect("socket mode");
        self.slack
            .wait_for("the bot's socket", WAIT, |s| {
                (s.sockets_opened() > before).then_some(())
            })
            .await;
        let cancel = CancellationToken::new();
        let upkeep = tokio::spawn(upkeep::run(bot.clone(), cancel.clone()));
        RunningBot {
            bot,
            socket: Some(socket),
            base_url: None,
            cancel,
            tasks: vec![upkeep],
        }
    }

    /// A bot in HTTP mode with the automation endpoint, on a free port.
    pub async fn http_bot(&self, name: &str) -> RunningBot {
        let bot = self.bot(name).await;
        let tokens = ServiceTokens::parse(&format!(
            "nightly sha256:{}\n",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                SERVICE_TOKEN.as_bytes()
            ))
        ))
        .expect("tokens");
        let app = http::router(Health::new(bot.clone()))
            .merge(SlackHttp::new(bot.clone(), SIGNING_SECRET.as_bytes().to_vec()).router())
            .merge(Automation::new(bot.clone(), tokens).router());
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("listen");
        let cancel = CancellationToken::new();
        let server = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
            })
        };
        let upkeep = tokio::spawn(upkeep::run(bot.clone(), cancel.clone()));
        RunningBot {
            bot,
            socket: None,
            base_url: Some(format!("http://127.0.0.1:{port}")),
            cancel,
            tasks: vec![server, upkeep],
        }
    }

    /// The root message in `channel` whose text mentions `needle`.
    pub async fn root_containing(&self, channel: &str, needle: &str) -> Message {
        self.slack
            .wait_for(
                &format!("a root message in {channel} containing {needle:?}"),
                WAIT,
                |s| {
                    s.messages(channel)
                        .into_iter()
                        .find(|m| m.thread_ts.is_none() && m.visible_text().contains(needle))
                },
            )
            .await
    }

    /// Waits for a reply in the thread containing `needle`.
    pub async fn reply_containing(&self, root: &Message, needle: &str) -> Message {
        self.slack
            .wait_for(&format!("a reply containing {needle:?}"), WAIT, |s| {
                s.thread(&root.channel, &root.ts)
                    .into_iter()
                    .find(|m| m.visible_text().contains(needle))
            })
            .await
    }

    /// Waits until the root message shows `needle`.
    pub async fn root_shows(&self, root: &Message, needle: &str) -> Message {
        self.slack
            .wait_for(&format!("the root message to show {needle:?}"), WAIT, |s| {
                s.message(&root.channel, &root.ts)
                    .filter(|m| m.visible_text().contains(needle))
            })
            .await
    }

    pub fn thread_texts(&self, root: &Message) -> Vec<String> {
        self.slack
            .thread(&root.channel, &root.ts)
            .iter()
            .map(Message::visible_text)
            .collect()
    }

    pub async fn orders(&self) -> i64 {
        let pool = self.target.pool().await;
        sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&pool)
            .await
            .expect("count")
    }

    /// The audit events of a request, sealed.
    pub async fn events(&self, request_id: &str) -> Vec<AuditEvent> {
        audit_log::seal_all(&self.store).await.expect("seal");
        audit_log::records_for_request(&self.store, request_id)
            .await
            .expect("records")
            .into_iter()
            .map(|r| r.entry.event)
            .collect()
    }

    /// The id of the only request in the control store whose SQL is `sql`.
    pub async fn request_id(&self, sql: &str) -> String {
        sqlx::query_scalar("SELECT id FROM cs_requests WHERE sql = $1")
            .bind(sql)
            .fetch_one(self.store.pg_pool().expect("the tests run on PostgreSQL"))
            .await
            .expect("request id")
    }

    /// Makes the request's approval window end now, as if its TTL had run out, once its root
    /// message is recorded (the thread the expiry note goes to): the bot's upkeep expires it on
    /// its next pass.
    pub async fn end_approval_window(&self, sql: &str) {
        let id = self.request_id(sql).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ended = sqlx::query(
                "UPDATE cs_requests SET expires_at = now() - interval '1 minute'
                 WHERE id = $1 AND root_ts IS NOT NULL",
            )
            .bind(&id)
            .execute(self.store.pg_pool().expect("the tests run on PostgreSQL"))
            .await
            .expect("end the approval window")
            .rows_affected();
            if ended == 1 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} never recorded its root message"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_executor(&mut self) {
        if let Some((cancel, task)) = self.executor.take() {
            cancel.cancel();
            let _ = task.await;
        }
    }
}

pub struct RunningBot {
    pub bot: Arc<Bot>,
    pub socket: Option<SocketMode>,
    pub base_url: Option<String>,
    pub cancel: CancellationToken,
    pub tasks: Vec<JoinHandle<()>>,
}

impl RunningBot {
    pub async fn stop(self) {
        if let Some(socket) = &self.socket {
            socket.shutdown().await;
        }
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.bot.drain(Duration::from_secs(5)).await;
    }

    pub fn url(&self) -> String {
        self.base_url.clone().expect("an HTTP bot")
    }
}
