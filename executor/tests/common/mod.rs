//! The executor's end-to-end harness: a control database, a Redis key space and a policy of the
//! test's own; jobs signed and submitted the way the bot does it; executors run in-process or
//! as the real binary; the thread read back as a user would see it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_control::audit_log;
use countersign_control::chat::{JsonLinesPoster, RecordingPoster, ReplyTo};
use countersign_control::outbox::{self, JobState};
use countersign_control::queue::JobQueue;
use countersign_control::store::ControlStore;
use countersign_control::submit::submit_job;
use countersign_executor::execute::{
    mysql::MySqlTarget, postgres::PgTarget, sqlite::SqliteTarget, TargetDb,
};
use countersign_executor::{Executor, ExecutorConfig, Services};
use countersign_shared::audit::AuditEvent;
use countersign_shared::job::{sql_sha256, Job, JobSigner, SignedJob};
use countersign_shared::policy::Policy;
use countersign_shared::sql::Category;
use countersign_testkit::{unique_name, PgDatabase};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The policy every executor test uses: one target per driver, `email` masked.
pub const POLICY: &str = r#"
[settings]
default_approval_ttl = "1h"

[[targets]]
name = "pg"
driver = "postgres"
default_schema = "public"
row_limit = 100
max_result_rows = 5
statement_timeout = "5s"

[[targets]]
name = "maria"
driver = "mysql"
row_limit = 100
max_result_rows = 5
statement_timeout = "5s"

[[targets]]
name = "lite"
driver = "sqlite"
row_limit = 100
max_result_rows = 5
statement_timeout = "5s"

[roles.engineer]
members = ["console:alice"]

[[permissions]]
role = "engineer"
targets = ["*"]
categories = ["read", "write"]

[masking]
columns = ["email"]
"#;

/// Seed of the bot's signing key in tests.
pub const BOT_SEED: [u8; 32] = [42; 32];

pub struct Harness {
    pub control: PgDatabase,
    pub store: ControlStore,
    pub redis_url: String,
    pub queue: JobQueue,
    pub prefix: String,
    pub signer: JobSigner,
    pub policy: Arc<Policy>,
    pub poster: RecordingPoster,
    pub dir: PathBuf,
    pub policy_text: String,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_redis(&countersign_testkit::redis_url()).await
    }

    pub async fn with_redis(redis_url: &str) -> Harness {
        Harness::with_policy(redis_url, POLICY).await
    }

    pub async fn with_policy(redis_url: &str, policy_text: &str) -> Harness {
        let control = PgDatabase::create().await;
        let store = ControlStore::connect(&control.url, 8)
            .await
            .expect("control store");
        let prefix = countersign_testkit::redis_namespace();
        let queue = JobQueue::connect(redis_url, &prefix).await.expect("redis");
        let dir = std::env::temp_dir().join(unique_name("countersign-executor-test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Harness {
            control,
            store,
            redis_url: redis_url.to_string(),
            queue,
            prefix,
            signer: JobSigner::from_seed(BOT_SEED),
            policy: Arc::new(Policy::from_str(policy_text, "test-policy").expect("policy")),
            poster: RecordingPoster::new(),
            dir,
            policy_text: policy_text.to_string(),
        }
    }

    pub fn config(&self, target: &str, id: &str) -> ExecutorConfig {
        let mut config = ExecutorConfig::new(target, id);
        config.stream_prefix = self.prefix.clone();
        // No in-process test lets a lease run out or a delivery go idle, so both are long: a
        // loaded machine that renews late must not end a lease under a running job.
        config.lease = Duration::from_secs(15);
        config.reclaim_idle = Duration::from_secs(5);
        config.republish_after = Duration::from_secs(1);
        config.reconcile_every = Duration::from_millis(200);
        config.repost_after = Duration::from_secs(5);
        config.drain = Duration::from_secs(10);
        config
    }

    /// Starts an executor in this process.
    pub async fn start(&self, config: ExecutorConfig, db: TargetDb) -> Running {
        let queue = JobQueue::connect(&self.redis_url, &self.prefix)
            .await
            .expect("redis");
        let executor = Executor::new(
            config,
            self.policy.clone(),
            self.signer.verifier(),
            Services {
                store: self.store.clone(),
                queue,
                db,
                poster: Arc::new(self.poster.clone()),
            },
        )
        .expect("executor");
        let shutdown = CancellationToken::new();
        let task = {
            let executor = executor.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { executor.run(shutdown).await })
        };
        Running {
            executor,
            shutdown,
            task,
        }
    }

    pub fn job(&self, target: &str, sql: &str, category: Category, row_limit: Option<u64>) -> Job {
        Job {
            request_id: unique_name("req"),
            target: target.into(),
            sql: sql.into(),
            sql_sha256: sql_sha256(sql),
            requester: "console:alice".into(),
            approvers: vec!["console:bob".into()],
            policy_version: self.policy.version().into(),
            category,
            row_limit,
            issued_at: countersign_control::now_s(),
            expires_at: countersign_control::now_s() + 3600,
        }
    }

    pub fn reply_to(request_id: &str) -> ReplyTo {
        ReplyTo {
            platform: "console".into(),
            channel: "general".into(),
            thread: request_id.into(),
        }
    }

    /// Signs a job and submits it as the bot does: outbox, then Redis.
    pub async fn submit(&self, job: &Job) -> SignedJob {
        let signed = self.signer.sign(job);
        submit_job(
            &self.store,
            &self.queue,
            &signed,
            job,
            Some(&Harness::reply_to(&job.request_id)),
            "bot:test",
        )
        .await
        .expect("submit");
        signed
    }

    /// Writes a job to the outbox without publishing it (as if Redis lost the message).
    pub async fn outbox_only(&self, job: &Job) -> SignedJob {
        let signed = self.signer.sign(job);
        outbox::insert_job(
            &self.store,
            &signed,
            job,
            Some(&Harness::reply_to(&job.request_id)),
            "bot:test",
        )
        .await
        .expect("insert");
        signed
    }

    /// Waits until the request's thread holds at least `n` messages (from this process's
    /// executors), and returns them.
    pub async fn thread(&self, request_id: &str, n: usize) -> Vec<String> {
        wait_for(&format!("{n} messages in thread {request_id}"), || {
            let messages = self.poster.thread(request_id);
            (messages.len() >= n).then_some(messages)
        })
        .await
    }

    /// The audit events of a request, in chain order (sealing what is queued first).
    pub async fn events(&self, request_id: &str) -> Vec<AuditEvent> {
        audit_log::seal_all(&self.store).await.expect("seal");
        audit_log::records_for_request(&self.store, request_id)
            .await
            .expect("records")
            .into_iter()
            .map(|r| r.entry.event)
            .collect()
    }

    pub async fn state(&self, request_id: &str) -> Option<(JobState, i32)> {
        outbox::state_of(&self.store, request_id)
            .await
            .expect("state")
    }

    /// Waits until the job reaches a finished state.
    pub async fn finished(&self, request_id: &str) -> (JobState, i32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((state, attempts)) = self.state(request_id).await {
                if matches!(state, JobState::Finished(_)) {
                    return (state, attempts);
                }
            }
            assert!(Instant::now() < deadline, "job {request_id} did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The whole chain must verify.
    pub async fn assert_chain_holds(&self) {
        audit_log::seal_all(&self.store).await.expect("seal");
        let report = audit_log::verify(&self.store).await.expect("verify");
        assert!(report.holds(), "audit chain breaks: {:?}", report.breaks);
    }

    /// The public key file and policy file for running the binary.
    pub fn write_files(&self) -> (PathBuf, PathBuf) {
        let key = self.dir.join("bot.pub");
        std::fs::write(&key, self.signer.verifier().to_text()).expect("write key");
        let policy = self.dir.join("policy.toml");
        std::fs::write(&policy, &self.policy_text).expect("write policy");
        (key, policy)
    }

    /// Starts the real executor binary. Thread messages go to `chat_log`.
    pub fn spawn_binary(
        &self,
        target: &str,
        id: &str,
        target_url: &str,
        chat_log: &Path,
        listen_port: u16,
    ) -> ExecutorProcess {
        self.spawn_binary_with(target, id, target_url, chat_log, listen_port, &[])
    }

    /// Starts the real executor binary with extra flags.
    pub fn spawn_binary_with(
        &self,
        target: &str,
        id: &str,
        target_url: &str,
        chat_log: &Path,
        listen_port: u16,
        extra: &[&str],
    ) -> ExecutorProcess {
        let (key, policy) = self.write_files();
        Command::new(env!("CARGO_BIN_EXE_countersign-executor"))
            .args(extra)
            .args(["--policy"])
            .arg(&policy)
            .args(["--target", target, "--executor-id", id])
            .args(["--public-key"])
            .arg(&key)
            .args(["--listen", &format!("127.0.0.1:{listen_port}")])
            .args(["--stream-prefix", &self.prefix])
            // As in production, a lease outlasts the reclaim time, so a dead executor's pending
            // entries are reclaimed while its lease still holds the job (the kill test depends
            // on it); 5 s is long enough for a live executor to renew on a loaded machine.
            .args([
                "--lease-seconds",
                "5",
                "--reclaim-seconds",
                "1",
                "--republish-seconds",
                "1",
            ])
            .args([
                "--reconcile-seconds",
                "0.2",
                "--drain-seconds",
                "10",
                "--log-format",
                "text",
            ])
            .args(["--chat-log"])
            .arg(chat_log)
            .env("COUNTERSIGN_TARGET_DATABASE_URL", target_url)
            .env("COUNTERSIGN_CONTROL_DATABASE_URL", &self.control.url)
            .env("COUNTERSIGN_REDIS_URL", &self.redis_url)
            .env("COUNTERSIGN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map(ExecutorProcess)
            .expect("start countersign-executor")
    }
}

/// A running executor binary, killed when dropped: a failing test leaves no process behind.
pub struct ExecutorProcess(Child);

impl std::ops::Deref for ExecutorProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ExecutorProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ExecutorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The texts a binary executor posted into a thread.
pub fn logged_thread(chat_log: &Path, request_id: &str) -> Vec<String> {
    JsonLinesPoster::read(chat_log)
        .into_iter()
        .filter(|(to, _)| to.thread == request_id)
        .map(|(_, message)| message.text)
        .collect()
}

pub struct Running {
    pub executor: Executor,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("executor task");
    }
}

pub async fn postgres_target(url: &str) -> TargetDb {
    TargetDb::Postgres(PgTarget::connect(url, 4).await.expect("pg target"))
}

pub async fn mysql_target(url: &str) -> TargetDb {
    TargetDb::MySql(MySqlTarget::connect(url, 4).await.expect("mysql target"))
}

pub async fn sqlite_target(url: &str) -> TargetDb {
    TargetDb::Sqlite(SqliteTarget::connect(url, 4).await.expect("sqlite target"))
}

/// Polls `check` until it gives a value, for up to 30 seconds.
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
