//! Peak memory of the executor binary while it summarises a SELECT of 10 million rows.
//!
//!   cargo bench -p countersign-executor --bench summary_memory
//!
//! Runs the real `countersign-executor` (release build) against PostgreSQL with a count cap
//! above the row count, so every row streams through it; submits the read; waits for the
//! summary; reads the process's peak resident set (VmHWM in /proc/<pid>/status, what
//! `/usr/bin/time -v` reports as "Maximum resident set size") before stopping it.
//! BENCH_ROWS overrides the row count. Needs PostgreSQL and Redis (scripts/services.sh).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use countersign_shared::sql::Category;
use countersign_testkit::{free_port, PgDatabase};

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc status")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let policy = POLICY.replace("statement_timeout = \"5s\"", "statement_timeout = \"10m\"");
        let h = Harness::with_policy(&countersign_testkit::redis_url(), &policy).await;
        let target = PgDatabase::create().await;
        let chat_log = h.dir.join("chat.jsonl");
        let cap = (rows * 2).to_string();
        let mut child = h.spawn_binary_with(
            "pg",
            "memory",
            &target.url,
            &chat_log,
            free_port(),
            &["--count-cap", &cap],
        );
        let pid = child.id();
        // Let it connect and settle before the baseline.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let baseline = status_kib(pid, "VmRSS:");
        let sql = format!(
            "SELECT g AS n, md5(g::text) AS digest, now() AS at FROM generate_series(1, {rows}) g"
        );
        let job = h.job("pg", &sql, Category::Read, None);
        let started = Instant::now();
        h.submit(&job).await;
        let text = wait_for("the summary", || {
            logged_thread(&chat_log, &job.request_id).into_iter().next()
        })
        .await;
        let elapsed = started.elapsed();
        let peak = status_kib(pid, "VmHWM:");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = child.wait();
        let headline = text.lines().next().unwrap_or_default().to_string();
        assert!(
            headline.starts_with(&format!("Succeeded on pg: {rows} rows")),
            "{text}"
        );
        println!("summary memory bench: {rows} rows streamed through the executor");
        println!("  summary          {headline}");
        println!("  elapsed          {:.2} s (submit to posted summary)", elapsed.as_secs_f64());
        println!("  executor RSS     {:.1} MiB before the job", baseline as f64 / 1024.0);
        println!(
            "  executor peak    {:.1} MiB (VmHWM, the whole process's peak resident set; target < 64 MiB)",
            peak as f64 / 1024.0
        );
    });
}
