//! Slash commands through Slack's HTTP mode, at a fixed rate: how fast the bot acknowledges
//! them, how much memory it needs, and whether the work behind the acknowledgements keeps up.
//!
//! The release `countersign-bot` binary runs as a child process in HTTP mode (signature checks
//! on), against a fresh control database, a Redis key space of its own and a fake Slack. The
//! load is open-loop: command `i` is sent at `start + i / rate` on a task of its own, so a slow
//! answer never delays the next send, and latency is measured from the scheduled time (nothing
//! hidden by coordinated omission) as well as from the actual send. The mix is 80 % allowed
//! reads (`SELECT ... WHERE id = N`: root message, signed job queued; no executor runs, so jobs
//! stay queued), 10 % writes that need approval (`UPDATE ... WHERE id = N`: a preflight that no
//! executor answers, bounded by `--preflight-seconds 0.5`, then a review post) and 10 %
//! `/query help`.
//!
//! Commands go through the fake Slack's signed sender, whose hyper client keeps connections
//! alive and opens another only when every open one is busy.
//!
//! Printed: commands sent and answers by status, acknowledgement latency percentiles (overall,
//! per kind, and the worst seconds, which tell a stall from steady contention), the achieved
//! rate, the bot's peak memory (VmHWM), CPU by process (bot, PostgreSQL, Redis, this process,
//! anything else), what the bot's control connections were busy with (`pg_stat_activity`), how
//! long the background work took to drain after the load, requests and jobs by state, what the
//! fake Slack received, and the bot's own `countersign_bot_ack_duration_seconds` histogram. The
//! target is p99 under 100 ms at 200 commands/s. On a small machine the figures only mean
//! something when nothing else runs (a build): the run warns when other work took CPU.
//!
//! Run it with `cargo bench -p countersign-bot --bench slash_commands` (it needs PostgreSQL and
//! Redis: `scripts/services.sh`). Cargo builds the bot binary with the bench profile (release)
//! and hands its path over as `CARGO_BIN_EXE_countersign-bot`; `BENCH_BOT_BIN` points at another
//! build. Knobs: `BENCH_RATE` (commands/s, default 200), `BENCH_SECONDS` (default 30),
//! `BENCH_CONTROL_POOL` (the bot's `--control-pool`, default the bot's own 16). Without
//! `--bench` (as in `cargo test --all-targets`) it does nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use countersign_shared::job::JobSigner;
use countersign_testkit::slack::FakeSlack;
use countersign_testkit::{free_port, redis_namespace, redis_url, unique_name, PgDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-bench-bot-token";
/// Engineers type the commands; DAN is a DBA too.
const ENGINEERS: [&str; 3] = ["UALICE", "UDAN", "UERIN"];
const DBAS: [&str; 3] = ["UBOB", "UCAROL", "UDAN"];
/// Where commands are typed; the policy sends reviews to CREVIEW.
const CHANNEL: &str = "CENG";
/// How long the background work may take to drain once the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// The integration tests' policy (bot/tests/common/policy.toml).
const POLICY: &str = include_str!("../tests/common/policy.toml");

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "slash_commands: skipped (run it with `cargo bench -p countersign-bot --bench slash_commands`)"
        );
        return;
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(run(settings));
}

/// What the run does, from `BENCH_*` variables.
struct Settings {
    /// Commands per second.
    rate: f64,
    /// How long the load lasts.
    seconds: f64,
    /// The bot's `--control-pool`, when set.
    control_pool: Option<u32>,
    /// The bot binary.
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        fn number<T: std::str::FromStr>(name: &str) -> Option<T> {
            let text = std::env::var(name).ok()?;
            Some(
                text.parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not `{text}`")),
            )
        }
        let binary = std::env::var_os("BENCH_BOT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_countersign-bot")));
        assert!(
            binary.is_file(),
            "no bot binary at {}: build it with `cargo build --release -p countersign-bot --bin countersign-bot` (or let `cargo bench` build it)",
            binary.display()
        );
        let settings = Settings {
            rate: number("BENCH_RATE").unwrap_or(200.0),
            seconds: number("BENCH_SECONDS").unwrap_or(30.0),
            control_pool: number("BENCH_CONTROL_POOL"),
            binary,
        };
        assert!(
            settings.rate > 0.0 && settings.seconds > 0.0,
            "BENCH_RATE and BENCH_SECONDS must be positive"
        );
        settings
    }
}

/// The kinds of command in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// An allowed read: root message and a queued job.
    Read,
    /// A write that needs approval: preflight (unanswered), then a review post.
    Write,
    /// `/query help`: a private reply only.
    Help,
}

/// Command `i` of the run: 8 reads, 1 write and 1 help in every 10.
fn command(i: usize) -> (Kind, String) {
    let id = i + 1;
    match i % 10 {
        3 => (
            Kind::Write,
            format!("shop UPDATE orders SET status = 'x' WHERE id = {id}"),
        ),
        7 => (Kind::Help, "help".to_string()),
        _ => (
            Kind::Read,
            format!("shop SELECT id FROM orders WHERE id = {id}"),
        ),
    }
}

/// One command's fate.
struct Sent {
    kind: Kind,
    /// From the scheduled send time to the answer.
    from_scheduled: Duration,
    /// From the actual send to the answer.
    from_send: Duration,
    /// When it was actually sent.
    sent_at: Instant,
    status: u16,
    /// The answer's body (empty for a plain acknowledgement).
    body: String,
    trigger_id: Option<String>,
    response_url: Option<String>,
}

async fn run(settings: Settings) {
    println!(
        "== slash_commands: {:.0} commands/s for {:.0} s through HTTP mode (signed) ==",
        settings.rate, settings.seconds
    );
    println!("bot binary: {}", settings.binary.display());

    // ---- the world
    let fake = FakeSlack::start().await;
    fake.set_user_group("SENG", &ENGINEERS);
    fake.set_user_group("SDBA", &DBAS);
    let control = PgDatabase::create().await;
    let prefix = redis_namespace();
    let dir = std::env::temp_dir().join(unique_name("countersign-bench"));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write the policy file");
    let port = free_port();
    let mut bot = BotProcess::start(&settings, &dir, &policy, port, &fake, &control.url, &prefix);
    bot.wait_ready().await;
    let pid = bot.pid();
    // Named, so the activity sampler tells the bench's connections from the bot's.
    let options: sqlx::postgres::PgConnectOptions = control
        .url
        .parse()
        .expect("the control database URL parses");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.application_name("bench"))
        .await
        .expect("connect to the control database");
    let base = format!("http://127.0.0.1:{port}");
    let sender = Arc::new(fake.http_sender(&base, SIGNING_SECRET));
    let rss_ready_kb = proc_status_kb(pid, "VmRSS").unwrap_or(0);

    // A few commands first, so the measured ones do not pay for the first connections.
    let warmup = 20;
    for _ in 0..warmup {
        let reply = sender.send_command(ENGINEERS[0], CHANNEL, "help").await;
        assert_eq!(reply.status, 200, "warm-up command refused: {}", reply.body);
    }

    // ---- the load
    let memory = MemorySampler::start(pid);
    let activity = ActivitySampler::start(pool.clone(), control.name.clone());
    let total = (settings.rate * settings.seconds).round() as usize;
    let cpu_before = CpuSnapshot::take(pid);
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + Duration::from_secs_f64(i as f64 / settings.rate);
        tokio::time::sleep_until(scheduled).await;
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let (kind, text) = command(i);
            let user = ENGINEERS[i % ENGINEERS.len()];
            let sent_at = Instant::now();
            let reply = sender.send_command(user, CHANNEL, &text).await;
            let done = Instant::now();
            Sent {
                kind,
                from_scheduled: done - scheduled,
                from_send: done - sent_at,
                sent_at,
                status: reply.status,
                body: reply.body,
                trigger_id: reply.trigger_id,
                response_url: reply.response_url,
            }
        }));
    }
    let mut results = Vec::with_capacity(total);
    for task in tasks {
        results.push(task.await.expect("a sending task panicked"));
    }
    let load_done = Instant::now();
    let activity = activity.stop().await;
    let cpu_load = CpuSnapshot::take(pid).since(&cpu_before, pid);

    // ---- the backlog
    let drain_started = Instant::now();
    let mut open = i64::MAX;
    while drain_started.elapsed() < DRAIN_LIMIT {
        open = sqlx::query_scalar("SELECT count(*) FROM cs_inbox WHERE done_at IS NULL")
            .fetch_one(&pool)
            .await
            .expect("count unfinished inbox rows");
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_in = drain_started.elapsed();
    let cpu_all = CpuSnapshot::take(pid).since(&cpu_before, pid);
    let peak_rss_sampled_kb = memory.stop().await;
    let hwm_kb = proc_status_kb(pid, "VmHWM");
    let rss_kb = proc_status_kb(pid, "VmRSS");

    // ---- what happened
    report_load(&settings, &results, load_done - start);
    println!("-- bot process (pid {pid})");
    println!(
        "peak memory VmHWM: {}   VmRSS at end: {}   VmRSS peak sampled every 50 ms: {}   VmRSS when ready: {}",
        mib(hwm_kb),
        mib(rss_kb),
        mib(Some(peak_rss_sampled_kb)),
        mib(Some(rss_ready_kb)),
    );
    cpu_load.print("during the load");
    cpu_all.print("load and drain");
    activity.print();

    println!("-- background work");
    if open == 0 {
        let last_scheduled =
            start + Duration::from_secs_f64(total.saturating_sub(1) as f64 / settings.rate);
        println!(
            "inbox drained {:.2} s after the last answer ({:.2} s after the last scheduled send)",
            drained_in.as_secs_f64(),
            (drain_started + drained_in - last_scheduled).as_secs_f64(),
        );
    } else {
        println!("inbox NOT drained: {open} events still unfinished after {DRAIN_LIMIT:?}");
    }
    let inbox_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM cs_inbox")
        .fetch_one(&pool)
        .await
        .expect("count inbox rows");
    println!(
        "inbox rows: {inbox_rows} (expected {}: {total} commands + {warmup} warm-up)",
        total + warmup
    );
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM cs_requests GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await
            .expect("count requests by state");
    let reads = results.iter().filter(|r| r.kind == Kind::Read).count();
    let writes = results.iter().filter(|r| r.kind == Kind::Write).count();
    let helps = results.iter().filter(|r| r.kind == Kind::Help).count();
    println!(
        "requests by state: {} (sent {reads} reads → queued, {writes} writes → pending, {helps} help → no request)",
        states
            .iter()
            .map(|(state, n)| format!("{state}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM cs_jobs GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await
            .expect("count jobs by state");
    let published: i64 = sqlx::query_scalar("SELECT count(*) FROM cs_job_publications")
        .fetch_one(&pool)
        .await
        .expect("count job publications");
    println!(
        "jobs by state: {}   published on Redis: {published}",
        jobs.iter()
            .map(|(state, n)| format!("{state}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let posted = fake.calls_to("chat.postMessage").len();
    println!(
        "fake Slack: chat.postMessage {posted} (expected {}), chat.update {}, reactions.add {}, chat.postEphemeral {}",
        reads + writes,
        fake.calls_to("chat.update").len(),
        fake.calls_to("reactions.add").len(),
        fake.calls_to("chat.postEphemeral").len(),
    );
    let answered = results
        .iter()
        .filter_map(|r| r.response_url.as_deref())
        .filter(|url| !fake.responses(url).is_empty())
        .count();
    println!("private replies on response URLs: {answered} of {total}");
    let problems = fake.problems();
    if !problems.is_empty() {
        println!(
            "fake Slack problems ({}): {:?}",
            problems.len(),
            &problems[..problems.len().min(5)]
        );
    }

    println!("-- the bot's /metrics");
    match http_get(port, "/metrics").await {
        Ok((200, text)) => report_metrics(&text),
        Ok((status, text)) => println!("/metrics answered {status}: {text}"),
        Err(error) => println!("/metrics failed: {error}"),
    }

    // ---- clean up
    let exit = bot.stop().await;
    println!("-- bot stopped: {exit}");
    bot.print_log_summary();
    pool.close().await;
    drop(control);
    delete_redis_keys(&[
        format!("{prefix}:jobs:shop"),
        format!("{prefix}:preflight:shop"),
    ])
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn report_load(settings: &Settings, results: &[Sent], load_took: Duration) {
    let total = results.len();
    println!("-- load");
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for result in results {
        *statuses.entry(result.status).or_default() += 1;
    }
    let unavailable = results
        .iter()
        .filter(|r| r.status == 200 && !r.body.is_empty())
        .count();
    println!(
        "commands sent: {total}   by status: {}   200 with an error text: {unavailable}",
        statuses
            .iter()
            .map(|(status, n)| format!("{status}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let bad: Vec<&Sent> = results
        .iter()
        .filter(|r| r.status != 200 || !r.body.is_empty())
        .collect();
    if !bad.is_empty() {
        println!("NOT ACKNOWLEDGED: {} commands; first answers:", bad.len());
        for result in bad.iter().take(5) {
            println!("  {} {}", result.status, result.body.trim());
        }
    }
    let trigger_ids: HashSet<&str> = results
        .iter()
        .filter_map(|r| r.trigger_id.as_deref())
        .collect();
    println!("unique trigger ids: {} of {total}", trigger_ids.len());
    let first = results.iter().map(|r| r.sent_at).min();
    let last = results.iter().map(|r| r.sent_at).max();
    if let (Some(first), Some(last)) = (first, last) {
        let span = (last - first).as_secs_f64();
        let rate = if span > 0.0 {
            (total - 1) as f64 / span
        } else {
            0.0
        };
        println!(
            "send rate: {rate:.1}/s achieved (target {:.1}/s), sends over {span:.2} s, last answer {:.2} s after the first scheduled send",
            settings.rate,
            load_took.as_secs_f64()
        );
    }
    let mut from_scheduled: Vec<Duration> = results.iter().map(|r| r.from_scheduled).collect();
    let mut from_send: Vec<Duration> = results.iter().map(|r| r.from_send).collect();
    print_latency("ack latency from scheduled time", &mut from_scheduled);
    print_latency("ack latency from actual send   ", &mut from_send);
    let mut lag: Vec<Duration> = results
        .iter()
        .map(|r| r.from_scheduled.saturating_sub(r.from_send))
        .collect();
    print_latency("  send lag behind schedule (timer, spawn)", &mut lag);
    for kind in [Kind::Read, Kind::Write, Kind::Help] {
        let mut of_kind: Vec<Duration> = results
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.from_scheduled)
            .collect();
        print_latency(&format!("  {kind:?} (from scheduled)"), &mut of_kind);
    }
    let slow = results
        .iter()
        .filter(|r| r.from_scheduled > Duration::from_millis(100))
        .count();
    println!(
        "answers over 100 ms (from scheduled): {slow} ({:.2} %)",
        100.0 * slow as f64 / total.max(1) as f64
    );
    // Slow answers spread evenly mean steady contention; bunched in a second or two they mean
    // a stall (a slow WAL flush, a burst of background work).
    let per_second = (settings.rate.round() as usize).max(1);
    let mut seconds: Vec<(usize, Duration, usize)> = results
        .chunks(per_second)
        .enumerate()
        .map(|(second, chunk)| {
            let worst = chunk
                .iter()
                .map(|r| r.from_scheduled)
                .max()
                .unwrap_or_default();
            let over = chunk
                .iter()
                .filter(|r| r.from_scheduled > Duration::from_millis(100))
                .count();
            (second, worst, over)
        })
        .collect();
    seconds.sort_by_key(|second| std::cmp::Reverse(second.1));
    println!(
        "worst seconds of the load (second: max, answers over 100 ms): {}",
        seconds
            .iter()
            .take(5)
            .map(|(second, worst, over)| format!(
                "{second}: {:.0} ms, {over}",
                worst.as_secs_f64() * 1000.0
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

fn print_latency(label: &str, values: &mut [Duration]) {
    values.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={})",
        ms(percentile(values, 50.0)),
        ms(percentile(values, 90.0)),
        ms(percentile(values, 99.0)),
        ms(percentile(values, 99.9)),
        ms(values.last().copied().unwrap_or_default()),
        values.len()
    );
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mib(kb: Option<u64>) -> String {
    match kb {
        Some(kb) => format!("{:.1} MiB", kb as f64 / 1024.0),
        None => "unknown".to_string(),
    }
}

/// Prints the bot's acknowledgement histogram and the counters that tell what the flow did.
fn report_metrics(text: &str) {
    let mut count = 0.0;
    let mut sum = 0.0;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name == "countersign_bot_ack_duration_seconds_count" {
            count = value;
        } else if name == "countersign_bot_ack_duration_seconds_sum" {
            sum = value;
        } else if let Some(le) = name
            .strip_prefix("countersign_bot_ack_duration_seconds_bucket{le=\"")
            .and_then(|rest| rest.strip_suffix("\"}"))
        {
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            buckets.push((le, value));
        }
    }
    let upper = |q: f64| {
        buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= q * count)
            .map_or(f64::NAN, |(le, _)| *le * 1000.0)
    };
    println!(
        "countersign_bot_ack_duration_seconds: count {count}  sum {sum:.3} s  mean {:.3} ms  p50 ≤ {:.2} ms  p99 ≤ {:.2} ms (bucket bounds; handler time inside the bot)",
        if count > 0.0 { sum / count * 1000.0 } else { 0.0 },
        upper(0.5),
        upper(0.99)
    );
    let wanted = [
        "countersign_bot_command_duration_seconds_count",
        "countersign_bot_command_duration_seconds_sum",
        "countersign_bot_requests_total",
        "countersign_bot_jobs_queued_total",
        "countersign_bot_flow_errors_total",
        "countersign_bot_chat_errors_total",
        "countersign_bot_http_refused_total",
        "countersign_bot_duplicate_events_total",
    ];
    for line in text.lines() {
        if wanted.iter().any(|name| line.starts_with(name)) {
            println!("{line}");
        }
    }
}

/// The bot as a child process; killed on drop if still running.
struct BotProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl BotProcess {
    fn start(
        settings: &Settings,
        dir: &Path,
        policy: &Path,
        port: u16,
        fake: &FakeSlack,
        control_url: &str,
        prefix: &str,
    ) -> BotProcess {
        let log = dir.join("bot.log");
        let stderr = std::fs::File::create(&log).expect("create the bot's log file");
        let mut command = Command::new(&settings.binary);
        command
            .arg("--slack-mode")
            .arg("http")
            .arg("--slack-api-url")
            .arg(fake.api_url())
            .arg("--policy")
            .arg(policy)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--stream-prefix")
            .arg(prefix)
            .arg("--preflight-seconds")
            .arg("0.5")
            .arg("--drain-seconds")
            .arg("10")
            .arg("--log-format")
            .arg("text")
            .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
            .env("SLACK_BOT_TOKEN", BOT_TOKEN)
            .env("COUNTERSIGN_CONTROL_DATABASE_URL", control_url)
            .env("COUNTERSIGN_REDIS_URL", redis_url())
            .env(
                "COUNTERSIGN_SIGNING_KEY",
                JobSigner::from_seed([7; 32]).to_text(),
            )
            .env("COUNTERSIGN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(pool) = settings.control_pool {
            command.arg("--control-pool").arg(pool.to_string());
            println!("bot --control-pool {pool}");
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", settings.binary.display()));
        BotProcess { child, port, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the bot exited ({status}) before it was ready:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok((200, _)) = http_get(self.port, "/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the bot was not ready in 60 s:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits for the bot to finish (killing it after 30 s).
    async fn stop(&mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return describe_exit(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return "did not stop within 30 s of SIGTERM; killed".to_string();
                }
            }
        }
    }

    /// How many lines the bot logged (at `warn` and above), and the first few.
    fn print_log_summary(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        println!("bot log lines at warn or above: {}", lines.len());
        for line in lines.iter().take(8) {
            println!("  {line}");
        }
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    if status.success() {
        "exited cleanly".to_string()
    } else {
        format!("exited with {status}")
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU ticks of a process (`/proc/<pid>/stat` fields 14 and 15).
fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Busy and total ticks of the whole machine (`/proc/stat`).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let values: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU ticks of every process, by pid: (command name, user plus system ticks).
fn all_process_ticks() -> HashMap<u32, (String, u64)> {
    let mut all = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if let Some(ticks) = proc_cpu_ticks(&pid.to_string()) {
            all.insert(pid, (stat[open + 1..close].to_string(), ticks));
        }
    }
    all
}

/// CPU used so far by the bot, this process, PostgreSQL, Redis and the machine.
struct CpuSnapshot {
    at: Instant,
    bot: u64,
    bench: u64,
    processes: HashMap<u32, (String, u64)>,
    machine_busy: u64,
    machine_total: u64,
}

impl CpuSnapshot {
    fn take(pid: u32) -> CpuSnapshot {
        let (machine_busy, machine_total) = machine_ticks().unwrap_or((0, 0));
        CpuSnapshot {
            at: Instant::now(),
            bot: proc_cpu_ticks(&pid.to_string()).unwrap_or(0),
            bench: proc_cpu_ticks("self").unwrap_or(0),
            processes: all_process_ticks(),
            machine_busy,
            machine_total,
        }
    }

    /// The CPU used between `before` and this snapshot.
    fn since(&self, before: &CpuSnapshot, bot_pid: u32) -> CpuUsage {
        let ticks = clock_ticks_per_second();
        let wall = (self.at - before.at).as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = (self.machine_busy - before.machine_busy) as f64
            / (self.machine_total - before.machine_total).max(1) as f64;
        // Processes started inside the window (PostgreSQL backends) count from zero; processes
        // that ended inside it are missed.
        let used_by = |name: &str| {
            let total: u64 = self
                .processes
                .iter()
                .filter(|(_, (comm, _))| comm == name)
                .map(|(pid, (_, now))| {
                    let earlier = match before.processes.get(pid) {
                        Some((comm, earlier)) if comm == name => *earlier,
                        _ => 0,
                    };
                    now.saturating_sub(earlier)
                })
                .sum();
            total as f64 / ticks
        };
        let mut others: HashMap<&str, u64> = HashMap::new();
        for (pid, (comm, now)) in &self.processes {
            if *pid == bot_pid || *pid == std::process::id() {
                continue;
            }
            if comm == "postgres" || comm == "redis-server" {
                continue;
            }
            let earlier = match before.processes.get(pid) {
                Some((was, earlier)) if was == comm => *earlier,
                _ => 0,
            };
            *others.entry(comm.as_str()).or_default() += now.saturating_sub(earlier);
        }
        let mut others: Vec<(String, f64)> = others
            .into_iter()
            .filter(|(_, used)| *used > 0)
            .map(|(comm, used)| (comm.to_string(), used as f64 / ticks))
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1));
        others.truncate(3);
        CpuUsage {
            wall,
            others,
            bot: (self.bot - before.bot) as f64 / ticks,
            bench: (self.bench - before.bench) as f64 / ticks,
            postgres: used_by("postgres"),
            redis: used_by("redis-server"),
            machine: busy * cores * wall,
            cores,
        }
    }
}

/// CPU seconds used over a stretch of wall time.
struct CpuUsage {
    wall: f64,
    /// The busiest other processes: (command name, CPU seconds).
    others: Vec<(String, f64)>,
    bot: f64,
    bench: f64,
    postgres: f64,
    redis: f64,
    machine: f64,
    cores: f64,
}

impl CpuUsage {
    fn print(&self, label: &str) {
        let share = |seconds: f64| 100.0 * seconds / self.wall;
        println!(
            "CPU {label} ({:.1} s wall): machine {:.0} % of {} cores busy; in % of one core: bot {:.0} ({:.1} s), PostgreSQL {:.0}, Redis {:.0}, bench process with the fake Slack {:.0}, everything else {:.0}",
            self.wall,
            share(self.machine) / self.cores,
            self.cores,
            share(self.bot),
            self.bot,
            share(self.postgres),
            share(self.redis),
            share(self.bench),
            share(self.machine - self.bot - self.bench - self.postgres - self.redis),
        );
        let other = share(self.machine - self.bot - self.bench - self.postgres - self.redis);
        if other > 25.0 {
            println!(
                "WARNING: other work used {other:.0} % of a core during the run; the latency figures are not representative. Busiest: {}",
                self.others
                    .iter()
                    .map(|(comm, used)| format!("{comm} {:.0} %", share(*used)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

/// Samples what the bot's control-database connections do during the load
/// (`pg_stat_activity` every 100 ms): are they all busy (the pool is the queue), and on what
/// do the busy ones wait (`IO:WALSync` is the commit flush; none is CPU).
struct ActivitySampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Activity>,
}

/// What [`ActivitySampler`] saw.
#[derive(Default)]
struct Activity {
    samples: u64,
    /// Connections open, summed over samples.
    open: u64,
    /// Connections running a statement (or in a transaction), summed over samples.
    busy: u64,
    /// The most seen busy at once.
    busy_max: i64,
    /// Samples where every open connection was busy.
    all_busy: u64,
    /// Busy connections by wait event, summed over samples.
    waits: BTreeMap<String, u64>,
}

impl ActivitySampler {
    fn start(pool: sqlx::PgPool, database: String) -> ActivitySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Activity::default();
                while !stop.load(Ordering::Relaxed) {
                    let rows: Vec<(String, String, i64)> = sqlx::query_as(
                        "SELECT coalesce(state, ''), \
                                coalesce(wait_event_type || ':' || wait_event, 'running (CPU)'), \
                                count(*) \
                         FROM pg_stat_activity \
                         WHERE datname = $1 AND pid <> pg_backend_pid() \
                           AND application_name <> 'bench' AND backend_type = 'client backend' \
                         GROUP BY 1, 2",
                    )
                    .bind(&database)
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
                    let open: i64 = rows.iter().map(|(_, _, n)| n).sum();
                    let busy: i64 = rows
                        .iter()
                        .filter(|(state, _, _)| state != "idle")
                        .map(|(_, _, n)| n)
                        .sum();
                    for (state, wait, n) in &rows {
                        if state != "idle" {
                            *seen.waits.entry(format!("{state} / {wait}")).or_default() +=
                                *n as u64;
                        }
                    }
                    seen.samples += 1;
                    seen.open += open as u64;
                    seen.busy += busy as u64;
                    seen.busy_max = seen.busy_max.max(busy);
                    if open > 0 && busy == open {
                        seen.all_busy += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                seen
            })
        };
        ActivitySampler { stop, task }
    }

    async fn stop(self) -> Activity {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

impl Activity {
    fn print(&self) {
        let n = self.samples.max(1) as f64;
        println!(
            "bot's control connections during the load ({} samples): open {:.1} on average; busy {:.1} on average, {} at most; all busy in {:.0} % of samples",
            self.samples,
            self.open as f64 / n,
            self.busy as f64 / n,
            self.busy_max,
            100.0 * self.all_busy as f64 / n,
        );
        let mut waits: Vec<(&String, &u64)> = self.waits.iter().collect();
        waits.sort_by_key(|wait| std::cmp::Reverse(*wait.1));
        println!(
            "  busy connections by what they wait on (average per sample): {}",
            waits
                .iter()
                .take(6)
                .map(|(wait, count)| format!("{wait} {:.2}", **count as f64 / n))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Samples a process's resident memory until stopped; returns the peak seen (kB).
struct MemorySampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySampler {
    fn start(pid: u32) -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let stop = stop.clone();
            let peak = peak.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = proc_status_kb(pid, "VmRSS") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        MemorySampler { stop, peak, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// A plain HTTP/1.1 GET on the bot's port: (status, body).
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("no answer in 10 s"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head}")))?;
    Ok((status, body.to_string()))
}

/// Deletes the run's Redis streams (a plain `DEL` in RESP; skipped for URLs with credentials).
async fn delete_redis_keys(keys: &[String]) {
    let url = redis_url();
    let address = url
        .strip_prefix("redis://")
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_string());
    let Some(address) = address.filter(|a| !a.contains('@')) else {
        println!("left the Redis keys {keys:?} in place (cannot parse {url} for cleanup)");
        return;
    };
    let mut request = format!("*{}\r\n$3\r\nDEL\r\n", keys.len() + 1);
    for key in keys {
        request.push_str(&format!("${}\r\n{key}\r\n", key.len()));
    }
    let result = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&reply[..n]).trim().to_string())
    }
    .await;
    match result {
        Ok(reply) if reply.starts_with(':') => {}
        Ok(reply) => println!("redis DEL of the run's keys answered {reply}"),
        Err(error) => println!("could not delete the run's Redis keys: {error}"),
    }
}
