//! The executor binary as it runs in production: killed mid-job, stopped with SIGTERM, probed
//! on its HTTP endpoints.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use countersign_control::outbox::JobState;
use countersign_shared::audit::AuditEvent;
use countersign_shared::sql::Category;
use countersign_shared::summary::Outcome;
use countersign_testkit::{free_port, PgDatabase};
use sqlx::{Connection, Executor as _};

async fn seeded() -> PgDatabase {
    let db = PgDatabase::create().await;
    let pool = db.pool().await;
    pool.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL);
         INSERT INTO orders SELECT g, g FROM generate_series(1, 10) g;",
    )
    .await
    .expect("seed");
    pool.close().await;
    db
}

/// Waits until the job is claimed (state `running`).
async fn until_running(h: &Harness, request_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(h.state(request_id).await, Some((JobState::Running, _))) {
        assert!(Instant::now() < deadline, "job {request_id} never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until PostgreSQL shows a session waiting on a lock (the job is blocked mid-statement).
async fn until_blocked(admin: &sqlx::PgPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(admin)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the job never blocked");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Opens a transaction holding an exclusive lock on `orders`, so jobs on it block inside their
/// statements until the connection rolls back.
async fn lock_orders(url: &str) -> sqlx::PgConnection {
    let mut locker = sqlx::PgConnection::connect(url).await.expect("connect");
    locker.execute("BEGIN").await.expect("begin");
    locker
        .execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    locker
}

fn kill(child: &mut std::process::Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_killed_mid_statement_becomes_unknown_and_a_read_runs_once_more() {
    let h = Harness::new().await;
    let target = seeded().await;
    let pool = target.pool().await;
    let chat_log = h.dir.join("chat.jsonl");

    // Hold a lock so both jobs block inside their statements.
    let mut locker = lock_orders(&target.url).await;

    let mut first = h.spawn_binary("pg", "first", &target.url, &chat_log, free_port());
    let write = h.job(
        "pg",
        "UPDATE orders SET total = total + 100 WHERE id = 1",
        Category::Write,
        Some(1),
    );
    h.submit(&write).await;
    until_running(&h, &write.request_id).await;
    until_blocked(&pool).await;
    let read = h.job(
        "pg",
        "SELECT sum(total) AS total FROM orders",
        Category::Read,
        None,
    );
    h.submit(&read).await;
    until_running(&h, &read.request_id).await;
    kill(&mut first);
    locker.execute("ROLLBACK").await.expect("unlock");

    let mut second = h.spawn_binary("pg", "second", &target.url, &chat_log, free_port());
    assert_eq!(
        h.finished(&write.request_id).await,
        (JobState::Finished(Outcome::Unknown), 1)
    );
    assert_eq!(
        h.finished(&read.request_id).await,
        (JobState::Finished(Outcome::Succeeded), 2)
    );
    let write_thread = wait_for("the unknown outcome in the thread", || {
        let thread = logged_thread(&chat_log, &write.request_id);
        (!thread.is_empty()).then_some(thread)
    })
    .await;
    assert!(
        write_thread[0].starts_with("Outcome unknown on pg"),
        "{}",
        write_thread[0]
    );
    assert!(
        write_thread[0].contains("will not run again"),
        "{}",
        write_thread[0]
    );
    let read_thread = wait_for("the read's result in the thread", || {
        let thread = logged_thread(&chat_log, &read.request_id);
        (thread.len() >= 2).then_some(thread)
    })
    .await;
    assert!(read_thread[0].contains("runs once more"), "{read_thread:?}");
    assert!(
        read_thread[1].starts_with("Succeeded on pg: 1 row"),
        "{read_thread:?}"
    );
    assert!(
        read_thread[1].contains("55"),
        "the read saw the uncommitted write rolled back: {read_thread:?}"
    );

    // Give the second executor time to see the old deliveries again: the write never reruns.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.state(&write.request_id).await,
        Some((JobState::Finished(Outcome::Unknown), 1))
    );
    let total: i32 = sqlx::query_scalar("SELECT total FROM orders WHERE id = 1")
        .fetch_one(&pool)
        .await
        .expect("total");
    assert_eq!(
        total, 1,
        "the killed write did not commit and was not run again"
    );
    assert_eq!(
        h.events(&write.request_id).await,
        [
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::OutcomeUnknown
        ]
    );
    assert_eq!(
        h.events(&read.request_id).await,
        [
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::Succeeded
        ]
    );
    kill(&mut second);
    h.assert_chain_holds().await;
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_job_in_hand_and_the_probes_tell_the_state() {
    let h = Harness::new().await;
    let target = seeded().await;
    let pool = target.pool().await;
    let chat_log = h.dir.join("chat.jsonl");
    let port = free_port();
    let mut child = h.spawn_binary("pg", "drain", &target.url, &chat_log, port);

    let (status, _) = wait_for_async(|| http_get(port, "/healthz")).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(port, "/readyz").await {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut locker = lock_orders(&target.url).await;
    let write = h.job(
        "pg",
        "UPDATE orders SET total = 0 WHERE id = 2",
        Category::Write,
        Some(1),
    );
    h.submit(&write).await;
    until_running(&h, &write.request_id).await;
    until_blocked(&pool).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    // Draining: not ready any more, still alive, the job still in hand.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(port, "/readyz").await {
            Some((503, body)) => {
                assert!(body.contains("draining"), "{body}");
                break;
            }
            _ => {
                assert!(Instant::now() < deadline, "readiness never dropped");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    // A job submitted while draining is not taken by this executor.
    let late = h.job("pg", "SELECT 1 AS one", Category::Read, None);
    h.submit(&late).await;
    let metrics = http_get(port, "/metrics").await.expect("metrics").1;
    assert!(
        metrics.contains("countersign_executor_jobs_in_flight 1"),
        "{metrics}"
    );
    locker.execute("ROLLBACK").await.expect("unlock");

    let exit = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    assert!(
        exit.success(),
        "the executor exits cleanly after draining: {exit:?}"
    );
    assert_eq!(
        h.state(&write.request_id).await,
        Some((JobState::Finished(Outcome::Succeeded), 1))
    );
    let thread = logged_thread(&chat_log, &write.request_id);
    assert!(
        thread[0].starts_with("Succeeded on pg: 1 row affected"),
        "{thread:?}"
    );
    assert_eq!(h.state(&late.request_id).await, Some((JobState::Queued, 0)));
}

async fn wait_for_async<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_target_url_of_another_driver_is_refused_at_start_with_the_reason() {
    let h = Harness::new().await;
    let (key, policy) = h.write_files();
    // The test policy's `pg` target is PostgreSQL; a MySQL URL with a password must be refused
    // before anything connects, and the password must not be echoed.
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-executor"))
        .args(["--policy"])
        .arg(&policy)
        .args(["--target", "pg", "--public-key"])
        .arg(&key)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--stream-prefix", &h.prefix])
        .env(
            "COUNTERSIGN_TARGET_DATABASE_URL",
            "mysql://app:hunter2@127.0.0.1:3306/orders",
        )
        .env("COUNTERSIGN_CONTROL_DATABASE_URL", &h.control.url)
        .env("COUNTERSIGN_REDIS_URL", &h.redis_url)
        .output()
        .expect("run countersign-executor");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the policy's driver for this target is PostgreSQL, but its URL starts with `mysql:`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}
