//! The executor's pipeline against the same SELECT run directly with sqlx, measured in one run.
//!
//!   cargo bench -p countersign-executor --bench pipeline
//!
//! Pipeline = sign, write to the outbox with its audit entry, publish on Redis, verify,
//! re-classify, claim, execute (read-only transaction with its guards), record the outcome with
//! its audit entry, seal the audit chain, post the summary. Measured:
//! - latency: one job at a time, until the summary is posted, timed from the outbox write and
//!   from the publish; p50 and p99, beside the same statement run directly on a sqlx pool (p50,
//!   p99), and the difference of the medians ("added latency");
//! - throughput: many jobs submitted at once by concurrent submitters, until every summary is
//!   posted, beside the direct statement's throughput at the same concurrency.
//!
//! Settings: BENCH_JOBS (throughput jobs, default 5000), BENCH_LATENCY_JOBS (default 500),
//! BENCH_CONCURRENCY (default 32). Needs PostgreSQL and Redis (scripts/services.sh).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use countersign_control::chat::{ChatPoster, PostFuture, ReplyTo, ThreadMessage};
use countersign_control::outbox;
use countersign_control::queue::{JobQueue, Stream};
use countersign_executor::{Executor, Services};
use countersign_shared::sql::Category;
use countersign_testkit::PgDatabase;
use sqlx::Executor as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A poster that tells the bench when a thread got its result, and counts anything else.
struct Signal {
    results: mpsc::UnboundedSender<(String, Instant)>,
    other: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ChatPoster for Signal {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            if message.text.starts_with("Succeeded") {
                let _ = self.results.send((to.thread.clone(), Instant::now()));
            } else if let Ok(mut other) = self.other.lock() {
                other.push(message.text.clone());
            }
            Ok(())
        })
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const SQL: &str = "SELECT id, name FROM items WHERE id = 4242";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("BENCH_TRACE").is_some() {
        // Per-stage timings of each job (delivery, claimed, ran, finished and sealed).
        let _ = tracing_subscriber::fmt()
            .with_env_filter("countersign_executor=debug")
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let jobs = env_usize("BENCH_JOBS", 5000);
    let latency_jobs = env_usize("BENCH_LATENCY_JOBS", 500);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let h = Arc::new(Harness::new().await);
    let target = PgDatabase::create().await;
    // The fastest plain sqlx: no ping before each query.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(&target.url)
        .await
        .expect("target pool");
    pool.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100000) g;
         ANALYZE items;",
    )
    .await
    .expect("seed");

    // Direct baseline: the same statement through sqlx, prepared, on a pool.
    for _ in 0..200 {
        sqlx::query(SQL).fetch_all(&pool).await.expect("warm up");
    }
    let mut direct = Vec::with_capacity(latency_jobs);
    for _ in 0..latency_jobs {
        let started = Instant::now();
        sqlx::query(SQL).fetch_all(&pool).await.expect("direct");
        direct.push(started.elapsed());
    }
    direct.sort();
    let started = Instant::now();
    let per_task = jobs / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                sqlx::query(SQL).fetch_all(&pool).await.expect("direct");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let direct_rate = (per_task * concurrency) as f64 / started.elapsed().as_secs_f64();

    // The pipeline.
    let (sender, mut posted) = mpsc::unbounded_channel();
    let other = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Production timings; the executor has its own pool, as it would in its own process.
    let mut config = countersign_executor::ExecutorConfig::new("pg", "bench");
    config.stream_prefix = h.prefix.clone();
    config.workers = concurrency;
    let executor_store = countersign_control::store::ControlStore::connect(&h.control.url, 24)
        .await
        .expect("executor's control pool");
    let executor = Executor::new(
        config,
        h.policy.clone(),
        h.signer.verifier(),
        Services {
            store: executor_store,
            queue: JobQueue::connect(&h.redis_url, &h.prefix)
                .await
                .expect("redis"),
            db: countersign_executor::execute::TargetDb::Postgres(
                countersign_executor::execute::postgres::PgTarget::connect(&target.url, 16)
                    .await
                    .expect("target"),
            ),
            poster: Arc::new(Signal {
                results: sender,
                other: other.clone(),
            }),
        },
    )
    .expect("executor");
    let shutdown = CancellationToken::new();
    let run = {
        let executor = executor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { executor.run(shutdown).await })
    };
    for _ in 0..50 {
        h.submit(&h.job("pg", SQL, Category::Read, None)).await;
        posted.recv().await.expect("posted");
    }
    // Each job as the bot hands it over: the outbox write (the approval's transaction), then
    // the publish. Timed from the outbox write, and from the publish (where the pipeline
    // starts: publish, verify, claim, execute, audit, post).
    let mut pipeline = Vec::with_capacity(latency_jobs);
    let mut from_publish = Vec::with_capacity(latency_jobs);
    for _ in 0..latency_jobs {
        let job = h.job("pg", SQL, Category::Read, None);
        let started = Instant::now();
        let signed = h.signer.sign(&job);
        let reply_to = Harness::reply_to(&job.request_id);
        outbox::insert_job(&h.store, &signed, &job, Some(&reply_to), "bot:bench")
            .await
            .expect("outbox");
        let published = Instant::now();
        let entry = h
            .queue
            .publish(Stream::Jobs, "pg", &signed)
            .await
            .expect("publish");
        outbox::mark_published(&h.store, &job.request_id, &entry)
            .await
            .expect("mark published");
        let (thread, at) = posted.recv().await.expect("posted");
        assert_eq!(thread, job.request_id);
        pipeline.push(at - started);
        from_publish.push(at - published);
    }
    pipeline.sort();
    from_publish.sort();

    let started = Instant::now();
    let mut submitters = Vec::new();
    for _ in 0..concurrency {
        let h = h.clone();
        submitters.push(tokio::spawn(async move {
            for _ in 0..per_task {
                h.submit(&h.job("pg", SQL, Category::Read, None)).await;
            }
        }));
    }
    let total = per_task * concurrency;
    for _ in 0..total {
        tokio::time::timeout(Duration::from_secs(120), posted.recv())
            .await
            .expect("jobs keep finishing")
            .expect("posted");
    }
    let elapsed = started.elapsed();
    for submitter in submitters {
        submitter.await.expect("submitter");
    }
    let pipeline_rate = total as f64 / elapsed.as_secs_f64();
    h.assert_chain_holds().await;
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM cs_audit")
        .fetch_one(h.store.pg_pool().expect("the bench runs on PostgreSQL"))
        .await
        .expect("count");
    shutdown.cancel();
    run.await.expect("executor");

    println!("pipeline bench: {SQL}");
    println!(
        "  direct sqlx      latency p50 {:.3} ms  p99 {:.3} ms   ({latency_jobs} sequential)",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99))
    );
    println!(
        "  pipeline         latency p50 {:.3} ms  p99 {:.3} ms   ({latency_jobs} sequential, outbox write to posted summary)",
        ms(percentile(&pipeline, 0.5)),
        ms(percentile(&pipeline, 0.99))
    );
    println!(
        "  from publish     latency p50 {:.3} ms  p99 {:.3} ms   (the same jobs, timed from the publish)",
        ms(percentile(&from_publish, 0.5)),
        ms(percentile(&from_publish, 0.99))
    );
    println!(
        "  added latency    p50 {:.3} ms from the publish, {:.3} ms including the outbox write",
        ms(percentile(&from_publish, 0.5)) - ms(percentile(&direct, 0.5)),
        ms(percentile(&pipeline, 0.5)) - ms(percentile(&direct, 0.5))
    );
    println!(
        "  direct sqlx      throughput {direct_rate:.0} statements/s  (concurrency {concurrency})"
    );
    println!(
        "  pipeline         throughput {pipeline_rate:.0} jobs/s  ({total} jobs in {:.2} s, {concurrency} submitters, {} workers)",
        elapsed.as_secs_f64(),
        concurrency
    );
    println!("  audit records    {audited} sealed, chain verified");
    let other = other.lock().map(|o| o.clone()).unwrap_or_default();
    println!("  other messages   {} (refusals, duplicates)", other.len());
    for text in other.iter().take(3) {
        println!("    {}", text.lines().next().unwrap_or_default());
    }
}
