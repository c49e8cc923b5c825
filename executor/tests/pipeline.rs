//! End to end through the real components: jobs signed and submitted as the bot does, the
//! executor in this process, the real PostgreSQL (control and target), MariaDB, SQLite and
//! Redis; the thread read back as the user sees it, the audit chain checked.

mod common;

use std::time::Duration;

use common::*;
use countersign_control::outbox::JobState;
use countersign_control::queue::Stream;
use countersign_control::submit::preflight;
use countersign_shared::audit::AuditEvent;
use countersign_shared::job::{JobSigner, PreflightRequest, SignedJob};
use countersign_shared::sql::Category;
use countersign_shared::summary::Outcome;
use countersign_testkit::{MySqlDatabase, PgDatabase, SqliteFile};
use sqlx::Executor as _;

const RUN: [AuditEvent; 3] = [
    AuditEvent::Queued,
    AuditEvent::Running,
    AuditEvent::Succeeded,
];

async fn seeded_postgres() -> PgDatabase {
    let db = PgDatabase::create().await;
    let pool = db.pool().await;
    pool.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, email text NOT NULL, total numeric(10,2) NOT NULL);
         INSERT INTO orders SELECT g, 'user' || g || '@example.com', g * 1.5 FROM generate_series(1, 20) g;",
    )
    .await
    .expect("seed");
    pool.close().await;
    db
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_and_write_run_are_masked_and_audited() {
    let h = Harness::new().await;
    let target = seeded_postgres().await;
    let running = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;

    let read = h.job(
        "pg",
        "SELECT id, email, total FROM orders WHERE id <= 7 ORDER BY id",
        Category::Read,
        None,
    );
    h.submit(&read).await;
    let thread = h.thread(&read.request_id, 1).await;
    let text = &thread[0];
    assert!(text.starts_with("Succeeded on pg: 7 rows in "), "{text}");
    assert!(text.contains("id | email | total"), "{text}");
    assert!(text.contains("1  | ***   | 1.50"), "{text}");
    assert!(text.contains("First 5 of 7 rows shown."), "{text}");
    assert!(text.contains("Masked by policy: email."), "{text}");
    assert!(
        !text.contains("@example.com"),
        "masked data left the executor: {text}"
    );
    assert!(text.contains("\nAudit #"), "{text}");
    assert_eq!(h.events(&read.request_id).await, RUN);

    let write = h.job(
        "pg",
        "UPDATE orders SET total = 0 WHERE id = 3",
        Category::Write,
        Some(5),
    );
    h.submit(&write).await;
    let thread = h.thread(&write.request_id, 1).await;
    assert!(
        thread[0].starts_with("Succeeded on pg: 1 row affected in "),
        "{}",
        thread[0]
    );
    assert_eq!(h.events(&write.request_id).await, RUN);
    let pool = target.pool().await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM orders WHERE total = 0").await,
        1
    );
    h.assert_chain_holds().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_read_and_write_run_and_are_audited() {
    let h = Harness::new().await;
    let target = MySqlDatabase::create().await;
    let pool = target.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE orders (id int PRIMARY KEY, email varchar(100), total decimal(10,2));
         INSERT INTO orders VALUES (1, 'a@example.com', 1.50), (2, 'b@example.com', 3.00), (3, 'c@example.com', 4.50);",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let running = h
        .start(h.config("maria", "e1"), mysql_target(&target.url).await)
        .await;

    let read = h.job(
        "maria",
        "SELECT id, email, total FROM orders ORDER BY id",
        Category::Read,
        None,
    );
    h.submit(&read).await;
    let text = &h.thread(&read.request_id, 1).await[0];
    assert!(text.starts_with("Succeeded on maria: 3 rows"), "{text}");
    assert!(
        text.contains("***") && !text.contains("@example.com"),
        "{text}"
    );
    assert!(text.contains("4.50"), "{text}");
    assert_eq!(h.events(&read.request_id).await, RUN);

    let write = h.job(
        "maria",
        "DELETE FROM orders WHERE id = 2",
        Category::Write,
        Some(5),
    );
    h.submit(&write).await;
    let text = &h.thread(&write.request_id, 1).await[0];
    assert!(
        text.starts_with("Succeeded on maria: 1 row affected"),
        "{text}"
    );
    assert_eq!(h.events(&write.request_id).await, RUN);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 2);
    h.assert_chain_holds().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_and_write_run_and_multi_statement_input_never_reaches_it() {
    let h = Harness::new().await;
    let file = SqliteFile::create();
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&file.url())
            .await
            .expect("open");
        sqlx::raw_sql("CREATE TABLE notes (id integer PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('a'), ('b'), ('c');")
            .execute(&mut conn)
            .await
            .expect("seed");
        conn.close().await.expect("close");
    }
    let running = h
        .start(h.config("lite", "e1"), sqlite_target(&file.url()).await)
        .await;

    let read = h.job(
        "lite",
        "SELECT id, body FROM notes ORDER BY id",
        Category::Read,
        None,
    );
    h.submit(&read).await;
    assert!(h.thread(&read.request_id, 1).await[0].starts_with("Succeeded on lite: 3 rows"));
    assert_eq!(h.events(&read.request_id).await, RUN);

    let write = h.job(
        "lite",
        "INSERT INTO notes (body) VALUES ('d')",
        Category::Write,
        Some(5),
    );
    h.submit(&write).await;
    assert!(
        h.thread(&write.request_id, 1).await[0].starts_with("Succeeded on lite: 1 row affected")
    );

    // sqlx's SQLite driver would run every part: the executor refuses before it gets there.
    let escape = h.job(
        "lite",
        "SELECT 1; DROP TABLE notes",
        Category::Write,
        Some(5),
    );
    h.submit(&escape).await;
    let text = &h.thread(&escape.request_id, 1).await[0];
    assert!(text.starts_with("Refused on lite"), "{text}");
    assert_eq!(
        h.finished(&escape.request_id).await.0,
        JobState::Finished(Outcome::Refused)
    );
    assert_eq!(
        h.events(&escape.request_id).await,
        [AuditEvent::Queued, AuditEvent::Refused]
    );
    let again = h.job(
        "lite",
        "SELECT count(*) AS n FROM notes",
        Category::Read,
        None,
    );
    h.submit(&again).await;
    let text = &h.thread(&again.request_id, 1).await[0];
    assert!(
        text.contains("\n4"),
        "the table is still there with its 4 rows: {text}"
    );
    h.assert_chain_holds().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_expired_replayed_and_out_of_scope_jobs_are_refused_and_audited() {
    let h = Harness::new().await;
    let target = seeded_postgres().await;
    let running = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;
    let pool = target.pool().await;

    // Forged: signed by another key, naming a real request that waits in the outbox.
    let genuine = h.job("pg", "SELECT count(*) FROM orders", Category::Read, None);
    h.outbox_only(&genuine).await;
    let mut forged_job = genuine.clone();
    forged_job.sql = "DELETE FROM orders".into();
    forged_job.sql_sha256 = countersign_shared::job::sql_sha256(&forged_job.sql);
    forged_job.category = countersign_shared::sql::Category::Write;
    let forged = JobSigner::from_seed([7; 32]).sign(&forged_job);
    h.queue
        .publish(Stream::Jobs, "pg", &forged)
        .await
        .expect("publish");
    let thread = h.thread(&genuine.request_id, 1).await;
    assert!(thread[0].starts_with("Refused on pg"), "{}", thread[0]);
    assert!(
        thread[0].contains("signature does not verify"),
        "{}",
        thread[0]
    );
    // The forgery did not cancel the real job: the reconciler publishes it and it runs once.
    assert_eq!(
        h.finished(&genuine.request_id).await,
        (JobState::Finished(Outcome::Succeeded), 1)
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM orders").await, 20);

    // Tampered: the real signature over an edited payload.
    let job = h.job(
        "pg",
        "SELECT id FROM orders WHERE id = 1",
        Category::Read,
        None,
    );
    let signed = h.outbox_only(&job).await;
    let tampered = SignedJob {
        payload: signed.payload.replace("WHERE id = 1", "WHERE id > 0"),
        signature: signed.signature.clone(),
    };
    h.queue
        .publish(Stream::Jobs, "pg", &tampered)
        .await
        .expect("publish");
    let thread = h.thread(&job.request_id, 1).await;
    assert!(
        thread[0].contains("signature does not verify"),
        "{}",
        thread[0]
    );

    // SQL hash: signed, but the hash names other SQL.
    let mut mismatched = h.job("pg", "SELECT 1", Category::Read, None);
    mismatched.sql_sha256 = countersign_shared::job::sql_sha256("SELECT 2");
    h.submit(&mismatched).await;
    let thread = h.thread(&mismatched.request_id, 1).await;
    assert!(
        thread[0].contains("does not match the SQL that was approved"),
        "{}",
        thread[0]
    );

    // Expired.
    let mut expired = h.job("pg", "SELECT 1", Category::Read, None);
    expired.issued_at -= 7200;
    expired.expires_at = countersign_control::now_s() - 10;
    h.submit(&expired).await;
    let thread = h.thread(&expired.request_id, 1).await;
    assert!(thread[0].contains("expired"), "{}", thread[0]);
    assert_eq!(
        h.finished(&expired.request_id).await.0,
        JobState::Finished(Outcome::Refused)
    );

    // Out of scope: approved as a read, but it writes (a writable CTE).
    let scope = h.job(
        "pg",
        "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone",
        Category::Read,
        None,
    );
    h.submit(&scope).await;
    let thread = h.thread(&scope.request_id, 1).await;
    assert!(
        thread[0].contains("only read was approved"),
        "{}",
        thread[0]
    );
    // And the read-only escapes the issue lists, approved as reads, all refused.
    for sql in ["COMMIT; DROP TABLE orders", "SET TRANSACTION READ WRITE"] {
        let escape = h.job("pg", sql, Category::Read, None);
        h.submit(&escape).await;
        let thread = h.thread(&escape.request_id, 1).await;
        assert!(
            thread[0].starts_with("Refused on pg"),
            "{sql}: {}",
            thread[0]
        );
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM orders").await, 20);

    // Replayed: a job that ran, published again.
    let replay = h.job(
        "pg",
        "UPDATE orders SET total = total + 1 WHERE id = 5",
        Category::Write,
        Some(1),
    );
    let signed = h.submit(&replay).await;
    h.thread(&replay.request_id, 1).await;
    h.queue
        .publish(Stream::Jobs, "pg", &signed)
        .await
        .expect("replay");
    let thread = h.thread(&replay.request_id, 2).await;
    assert!(thread[1].starts_with("Refused on pg"), "{}", thread[1]);
    assert!(thread[1].contains("runs at most once"), "{}", thread[1]);
    assert_eq!(
        count(
            &pool,
            "SELECT (total * 100)::bigint FROM orders WHERE id = 5"
        )
        .await,
        850
    );
    assert_eq!(
        h.events(&replay.request_id).await,
        [
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::Succeeded,
            AuditEvent::Refused
        ]
    );

    // Every refusal is in the audit trail.
    for request in [&genuine, &job, &mismatched, &expired, &scope] {
        assert!(
            h.events(&request.request_id)
                .await
                .contains(&AuditEvent::Refused),
            "{} has no refusal entry",
            request.request_id
        );
    }
    let metrics = running.executor.metrics().encode();
    assert!(
        metrics.contains("countersign_executor_refusals_total{reason=\"signature\"} 2"),
        "{metrics}"
    );
    h.assert_chain_holds().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_guard_rolls_back_a_delete_over_its_limit() {
    let h = Harness::new().await;
    let target = seeded_postgres().await;
    let running = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;
    let delete = h.job(
        "pg",
        "DELETE FROM orders WHERE id <= 10",
        Category::Write,
        Some(3),
    );
    h.submit(&delete).await;
    let text = &h.thread(&delete.request_id, 1).await[0];
    assert!(
        text.starts_with("Rolled back on pg: 10 rows affected"),
        "{text}"
    );
    assert!(text.contains("more than the approved limit of 3"), "{text}");
    assert_eq!(
        h.finished(&delete.request_id).await.0,
        JobState::Finished(Outcome::RolledBack)
    );
    assert_eq!(
        h.events(&delete.request_id).await,
        [
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::RolledBack
        ]
    );
    let pool = target.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM orders").await, 20);
    running.stop().await;
}

/// The tightest settings that fit: a read approved as a write still runs read-only, and a
/// signed row limit above the target's is cut to the target's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_approved_as_a_write_runs_read_only_and_no_job_raises_the_row_limit() {
    let h = Harness::new().await;
    let target = seeded_postgres().await;
    let running = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;
    let read = h.job(
        "pg",
        "SELECT current_setting('transaction_read_only') AS read_only",
        Category::Write,
        Some(10),
    );
    h.submit(&read).await;
    let text = &h.thread(&read.request_id, 1).await[0];
    assert!(text.contains("read_only\n---------\non"), "{text}");
    // The target allows 100 rows; a job claiming 1,000 is held to 100.
    let pool = target.pool().await;
    pool.execute("INSERT INTO orders SELECT g, 'bulk' || g || '@example.com', 1 FROM generate_series(21, 220) g")
        .await
        .expect("more rows");
    let delete = h.job(
        "pg",
        "DELETE FROM orders WHERE id > 20",
        Category::Write,
        Some(1000),
    );
    h.submit(&delete).await;
    let text = &h.thread(&delete.request_id, 1).await[0];
    assert!(
        text.starts_with("Rolled back on pg: 200 rows affected"),
        "{text}"
    );
    assert!(text.contains("approved limit of 100"), "{text}");
    assert_eq!(count(&pool, "SELECT count(*) FROM orders").await, 220);
    running.stop().await;
}

/// Submits a write that records its own request id in `hits`, so a second run would show.
async fn submit_hit(h: &Harness) -> countersign_shared::job::Job {
    let mut job = h.job("pg", "", Category::Write, Some(1));
    job.sql = format!("INSERT INTO hits VALUES ('{}')", job.request_id);
    job.sql_sha256 = countersign_shared::job::sql_sha256(&job.sql);
    h.submit(&job).await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_on_one_stream_run_every_job_exactly_once() {
    let h = Harness::new().await;
    let target = PgDatabase::create().await;
    let pool = target.pool().await;
    pool.execute("CREATE TABLE hits (request text NOT NULL)")
        .await
        .expect("table");
    let first = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;
    let second = h
        .start(h.config("pg", "e2"), postgres_target(&target.url).await)
        .await;
    let mut jobs = Vec::new();
    for _ in 0..60 {
        jobs.push(submit_hit(&h).await);
    }
    for job in &jobs {
        assert_eq!(
            h.finished(&job.request_id).await,
            (JobState::Finished(Outcome::Succeeded), 1)
        );
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM hits").await, 60);
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT request) FROM hits").await,
        60
    );
    let claimants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT claimed_by FROM cs_jobs")
        .fetch_all(h.store.pg_pool().expect("the tests run on PostgreSQL"))
        .await
        .expect("claimants");
    assert!(!claimants.is_empty());
    first.stop().await;
    second.stop().await;
    h.assert_chain_holds().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_redis_loses_no_approved_job_and_runs_each_once() {
    let mut redis = countersign_testkit::RedisServer::start();
    let h = Harness::with_redis(&redis.url()).await;
    let target = PgDatabase::create().await;
    let pool = target.pool().await;
    pool.execute("CREATE TABLE hits (request text NOT NULL)")
        .await
        .expect("table");
    let mut jobs = Vec::new();
    for _ in 0..25 {
        jobs.push(submit_hit(&h).await);
    }
    // Everything Redis held is gone: the streams, the group, the messages.
    redis.restart();
    let running = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;
    for job in &jobs {
        assert_eq!(
            h.finished(&job.request_id).await,
            (JobState::Finished(Outcome::Succeeded), 1)
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT request) FROM hits").await,
        25
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM hits").await, 25);
    // Redis goes away and comes back while the executor runs: it reconnects and goes on.
    redis.restart();
    let after = h.job("pg", "SELECT count(*) AS n FROM hits", Category::Read, None);
    h.submit(&after).await;
    let text = &h.thread(&after.request_id, 1).await[0];
    assert!(text.contains("25"), "{text}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_estimates_rows_without_running_the_statement() {
    let h = Harness::new().await;
    let target = seeded_postgres().await;
    let pool = target.pool().await;
    pool.execute("ANALYZE orders").await.expect("analyze");
    let running = h
        .start(h.config("pg", "e1"), postgres_target(&target.url).await)
        .await;
    let request = PreflightRequest {
        id: countersign_testkit::unique_name("pre"),
        target: "pg".into(),
        sql: "DELETE FROM orders WHERE id > 5".into(),
        requester: "console:alice".into(),
        issued_at: countersign_control::now_s(),
        expires_at: countersign_control::now_s() + 30,
    };
    let answer = preflight(&h.queue, &h.signer, &request, Duration::from_secs(10))
        .await
        .expect("preflight")
        .expect("an answer");
    assert!(answer.ok, "{answer:?}");
    let rows = answer.rows.expect("a row estimate");
    assert!((10..=20).contains(&rows), "estimate {rows}");
    assert_eq!(count(&pool, "SELECT count(*) FROM orders").await, 20);
    // A request the bot did not sign gets no answer.
    let mut unsigned = request.clone();
    unsigned.id = countersign_testkit::unique_name("pre");
    let answer = preflight(
        &h.queue,
        &JobSigner::from_seed([9; 32]),
        &unsigned,
        Duration::from_secs(2),
    )
    .await
    .expect("preflight");
    assert_eq!(answer, None);
    running.stop().await;
}
