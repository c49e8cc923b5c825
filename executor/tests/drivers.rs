//! The driver layer against real PostgreSQL, MariaDB and SQLite: reads, writes, the row guard,
//! read-only walls, multi-statement refusal, timeouts, masking, streaming caps and estimates.
//! Each test has a database of its own (see `countersign-testkit`).

use std::time::{Duration, Instant};

use countersign_executor::execute::mysql::MySqlTarget;
use countersign_executor::execute::postgres::PgTarget;
use countersign_executor::execute::sqlite::SqliteTarget;
use countersign_executor::execute::{ExecError, Executed, Limits, Mode, TargetDb};
use countersign_shared::summary::{Cell, ResultTable};
use countersign_testkit::{MySqlDatabase, PgDatabase, SqliteFile};

fn limits(timeout_ms: u64, row_limit: u64, keep_rows: usize, count_cap: u64) -> Limits {
    Limits {
        statement_timeout: Duration::from_millis(timeout_ms),
        row_limit,
        keep_rows,
        count_cap,
    }
}

fn generous() -> Limits {
    limits(5_000, 1_000, 10, 1_000)
}

fn no_mask(names: &[&str]) -> Vec<bool> {
    vec![false; names.len()]
}

fn text(value: &str) -> Cell {
    Cell::Text(value.to_string())
}

/// A finished run's rows affected and table; panics on anything else.
fn done(result: Result<Executed, ExecError>) -> (Option<u64>, Option<ResultTable>) {
    match result {
        Ok(Executed::Done {
            rows_affected,
            table,
        }) => (rows_affected, table),
        other => panic!("expected the statement to finish, got {other:?}"),
    }
}

fn table(result: Result<Executed, ExecError>) -> ResultTable {
    done(result).1.expect("the statement returned columns")
}

fn database_error(result: Result<Executed, ExecError>) -> String {
    match result {
        Err(ExecError::Database(message)) => message,
        other => panic!("expected a database error, got {other:?}"),
    }
}

fn refused(result: Result<Executed, ExecError>) -> String {
    match result {
        Err(ExecError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn read(db: &TargetDb, sql: &str) -> Result<Executed, ExecError> {
    db.run(sql, Mode::Read, &generous(), &no_mask).await
}

async fn write(db: &TargetDb, sql: &str) -> Result<Executed, ExecError> {
    db.run(sql, Mode::Write, &generous(), &no_mask).await
}

async fn count(db: &TargetDb, sql: &str) -> String {
    let rows = table(read(db, sql).await).rows;
    match rows.first().and_then(|row| row.first()) {
        Some(Cell::Text(n)) => n.clone(),
        other => panic!("expected a count, got {other:?}"),
    }
}

// -------------------------------------------------------------------------------------------
// PostgreSQL

async fn postgres() -> (PgDatabase, TargetDb) {
    let database = PgDatabase::create().await;
    let pool = database.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(10,2), \
                         created timestamp, active bool, note text, doc jsonb); \
         INSERT INTO t VALUES \
           (1, 'alice', 12.50, '2024-01-02 03:04:05', true, NULL, '{\"a\": 1}'), \
           (2, 'bob', 0.05, '2024-02-03 04:05:06.25', false, 'x', '[1, 2]'), \
           (3, 'carol', -7.00, '2024-03-04 05:06:07', NULL, 'y', 'null');",
    )
    .execute(&pool)
    .await
    .expect("create the test table");
    pool.close().await;
    let target = PgTarget::connect(&database.url, 4)
        .await
        .expect("a PostgreSQL target");
    (database, TargetDb::Postgres(target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_keeps_the_first_rows_with_their_types_and_counts_all() {
    let (_database, db) = postgres().await;
    let result = db
        .run(
            "SELECT id, name, amount, created, active, note, doc FROM t ORDER BY id",
            Mode::Read,
            &limits(5_000, 1_000, 2, 1_000),
            &no_mask,
        )
        .await;
    let (rows_affected, table) = done(result);
    assert_eq!(rows_affected, None);
    let table = table.expect("a table");
    assert_eq!(
        table.columns,
        ["id", "name", "amount", "created", "active", "note", "doc"]
    );
    assert_eq!(table.masked, vec![false; 7]);
    assert_eq!(table.total_rows, 3);
    assert!(!table.total_capped);
    assert_eq!(
        table.rows,
        vec![
            vec![
                text("1"),
                text("alice"),
                text("12.50"),
                text("2024-01-02 03:04:05"),
                text("true"),
                Cell::Null,
                text("{\"a\": 1}"),
            ],
            vec![
                text("2"),
                text("bob"),
                text("0.05"),
                text("2024-02-03 04:05:06.250"),
                text("false"),
                text("x"),
                text("[1, 2]"),
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_odd_types_render_or_are_named_never_panic() {
    let (database, db) = postgres().await;
    let pool = database.pool().await;
    sqlx::raw_sql("CREATE TYPE mood AS ENUM ('happy', 'sad')")
        .execute(&pool)
        .await
        .expect("create the enum");
    pool.close().await;
    let table = table(
        read(
            &db,
            "SELECT 'infinity'::timestamp, '-infinity'::date, 'NaN'::numeric, \
                    ARRAY[1, NULL, 3], ARRAY['a b', 'c'], \
                    interval '1 year 2 mons 3 days 04:05:06', \
                    '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid, '\\xdeadbeef'::bytea, \
                    point(1, 2), 'happy'::mood, '12:34:56+02'::timetz, 1.5::float8, \
                    'x'::\"char\", 32767::int2, 9007199254740993::int8, \
                    '2024-05-06 07:08:09+00'::timestamptz, '1999-12-31'::date, \
                    12345678901234567890.000001::numeric",
        )
        .await,
    );
    assert_eq!(
        table.rows[0],
        vec![
            text("infinity"),
            text("-infinity"),
            text("NaN"),
            text("{1,NULL,3}"),
            text("{\"a b\",c}"),
            text("1 year 2 mons 3 days 04:05:06"),
            text("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            text("\\xdeadbeef"),
            Cell::Unrendered("POINT".to_string()),
            text("happy"),
            text("12:34:56+02"),
            text("1.5"),
            text("x"),
            text("32767"),
            text("9007199254740993"),
            text("2024-05-06 07:08:09+00"),
            text("1999-12-31"),
            text("12345678901234567890.000001"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_zero_rows_still_name_their_columns() {
    let (_database, db) = postgres().await;
    let table = table(read(&db, "SELECT id, name FROM t WHERE id < 0").await);
    assert_eq!(table.columns, ["id", "name"]);
    assert_eq!(table.total_rows, 0);
    assert!(table.rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_count_cap_stops_counting_and_says_so() {
    let (_database, db) = postgres().await;
    let started = Instant::now();
    let table = table(
        db.run(
            "SELECT g FROM generate_series(1, 5000000) g",
            Mode::Read,
            &limits(20_000, 1_000, 3, 100),
            &no_mask,
        )
        .await,
    );
    assert_eq!(table.total_rows, 100);
    assert!(table.total_capped);
    assert_eq!(
        table.rows,
        vec![vec![text("1")], vec![text("2")], vec![text("3")]]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the rest of the result was not awaited"
    );
    // The pool still works after the abandoned result.
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_masked_columns_are_never_decoded() {
    let (_database, db) = postgres().await;
    let mask = |names: &[&str]| names.iter().map(|n| *n == "name").collect::<Vec<_>>();
    let table = table(
        db.run(
            "SELECT id, name FROM t ORDER BY id",
            Mode::Read,
            &generous(),
            &mask,
        )
        .await,
    );
    assert_eq!(table.masked, [false, true]);
    assert_eq!(table.rows[0], vec![text("1"), Cell::Masked]);
    assert!(table.rows.iter().all(|row| row[1] == Cell::Masked));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_mask_that_answers_short_masks_the_rest() {
    let (_database, db) = postgres().await;
    let short = |_: &[&str]| vec![false];
    let table = table(
        db.run("SELECT id, name FROM t", Mode::Read, &generous(), &short)
            .await,
    );
    assert_eq!(table.masked, [false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_write_commits_and_reports_rows_affected() {
    let (_database, db) = postgres().await;
    let (affected, table) = done(write(&db, "UPDATE t SET note = 'z' WHERE id <= 2").await);
    assert_eq!(affected, Some(2));
    assert_eq!(table, None);
    assert_eq!(
        count(&db, "SELECT count(*) FROM t WHERE note = 'z'").await,
        "2"
    );

    let (affected, table) = done(write(&db, "DELETE FROM t WHERE id = 3 RETURNING id, name").await);
    assert_eq!(affected, Some(1));
    let table = table.expect("RETURNING gives a table");
    assert_eq!(table.rows, vec![vec![text("3"), text("carol")]]);
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_row_guard_rolls_back_a_delete_over_the_limit() {
    let (_database, db) = postgres().await;
    let result = db
        .run(
            "DELETE FROM t",
            Mode::Write,
            &limits(5_000, 2, 10, 1_000),
            &no_mask,
        )
        .await
        .expect("runs");
    assert_eq!(
        result,
        Executed::RolledBack {
            rows_affected: 3,
            row_limit: 2
        }
    );
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_row_guard_counts_returned_rows_past_the_count_cap() {
    let (_database, db) = postgres().await;
    let result = db
        .run(
            "DELETE FROM t RETURNING id",
            Mode::Write,
            &limits(5_000, 2, 1, 1),
            &no_mask,
        )
        .await
        .expect("runs");
    assert!(matches!(result, Executed::RolledBack { row_limit: 2, .. }));
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_delete_in_read_mode_fails_read_only() {
    let (_database, db) = postgres().await;
    let message = database_error(read(&db, "DELETE FROM t").await);
    assert_eq!(message, "cannot execute DELETE in a read-only transaction");
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_set_transaction_read_write_cannot_escape_read_mode() {
    let (_database, db) = postgres().await;
    let message = database_error(read(&db, "SET TRANSACTION READ WRITE").await);
    assert!(
        message.contains("must be set before any query"),
        "unexpected message: {message}"
    );
    let message = database_error(read(&db, "DELETE FROM t").await);
    assert!(message.contains("read-only transaction"));
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writable_cte_in_read_mode_fails() {
    let (_database, db) = postgres().await;
    let message = database_error(
        read(
            &db,
            "WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d",
        )
        .await,
    );
    assert!(message.contains("read-only transaction"), "{message}");
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_then_drop_is_refused_and_the_table_survives() {
    let (_database, db) = postgres().await;
    for mode in [Mode::Read, Mode::Write] {
        let reason = refused(
            db.run("COMMIT; DROP TABLE t", mode, &generous(), &no_mask)
                .await,
        );
        assert!(reason.contains("one statement"), "{reason}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ddl_is_refused_in_read_mode() {
    let (_database, db) = postgres().await;
    refused(read(&db, "DROP TABLE t").await);
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeout_cancels_the_statement() {
    let (_database, db) = postgres().await;
    let started = Instant::now();
    let result = db
        .run(
            "SELECT pg_sleep(60)",
            Mode::Read,
            &limits(200, 1_000, 10, 1_000),
            &no_mask,
        )
        .await;
    assert_eq!(result, Err(ExecError::Timeout(Duration::from_millis(200))));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_carry_the_database_message() {
    let (database, db) = postgres().await;
    let message = database_error(read(&db, "SELECT missing FROM t").await);
    assert_eq!(message, "column \"missing\" does not exist");
    assert!(!message.contains(&database.name));
    db.ping().await.expect("ping");
}

async fn postgres_with_cascade_and_trigger() -> (PgDatabase, TargetDb) {
    let database = PgDatabase::create().await;
    let pool = database.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE orders (id int PRIMARY KEY, note text); \
         CREATE TABLE order_items (id int, order_id int REFERENCES orders (id) ON DELETE CASCADE); \
         CREATE TABLE audit (order_id int); \
         CREATE FUNCTION audit_fn() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN INSERT INTO audit VALUES (OLD.id); RETURN OLD; END $$; \
         CREATE TRIGGER audit_orders AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION audit_fn(); \
         INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 1000) g; \
         ANALYZE orders;",
    )
    .execute(&pool)
    .await
    .expect("create the tables");
    pool.close().await;
    let target = PgTarget::connect(&database.url, 2).await.expect("target");
    (database, TargetDb::Postgres(target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_estimate_gives_rows_and_names_cascades_and_triggers() {
    let (_database, db) = postgres_with_cascade_and_trigger().await;
    let estimate = db
        .estimate(
            "DELETE FROM orders WHERE id <= 100",
            &["orders".to_string()],
            Duration::from_secs(5),
        )
        .await
        .expect("estimate");
    let rows = estimate.rows.expect("a row estimate");
    assert!((50..=200).contains(&rows), "estimate {rows}");
    let notes = estimate.notes.join("\n");
    assert!(
        notes.contains("order_items") && notes.contains("ON DELETE CASCADE"),
        "{notes}"
    );
    assert!(
        notes.contains("orders has triggers (audit_orders)"),
        "{notes}"
    );
    // Nothing ran.
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, "1000");
    assert_eq!(count(&db, "SELECT count(*) FROM audit").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_estimate_refuses_explain_analyze_and_several_statements() {
    let (_database, db) = postgres_with_cascade_and_trigger().await;
    for sql in [
        "EXPLAIN ANALYZE DELETE FROM orders",
        "SELECT 1; DELETE FROM orders",
    ] {
        let result = db.estimate(sql, &[], Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(ExecError::Refused(_))),
            "{sql}: {result:?}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, "1000");
}

// -------------------------------------------------------------------------------------------
// MariaDB / MySQL

async fn mysql() -> (MySqlDatabase, TargetDb) {
    let database = MySqlDatabase::create().await;
    let pool = database.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(10,2), \
                         created DATETIME, active BOOLEAN, note TEXT, doc JSON) ENGINE=InnoDB; \
         INSERT INTO t VALUES \
           (1, 'alice', 12.50, '2024-01-02 03:04:05', TRUE, NULL, '{\"a\": 1}'), \
           (2, 'bob', 0.05, '2024-02-03 04:05:06', FALSE, 'x', '[1, 2]'), \
           (3, 'carol', -7.00, '2024-03-04 05:06:07', NULL, 'y', 'null');",
    )
    .execute(&pool)
    .await
    .expect("create the test table");
    pool.close().await;
    let target = MySqlTarget::connect(&database.url, 4)
        .await
        .expect("a MySQL target");
    (database, TargetDb::MySql(target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_read_keeps_the_first_rows_with_their_types_and_counts_all() {
    let (_database, db) = mysql().await;
    let table = table(
        db.run(
            "SELECT id, name, amount, created, active, note, doc FROM t ORDER BY id",
            Mode::Read,
            &limits(5_000, 1_000, 2, 1_000),
            &no_mask,
        )
        .await,
    );
    assert_eq!(
        table.columns,
        ["id", "name", "amount", "created", "active", "note", "doc"]
    );
    assert_eq!(table.total_rows, 3);
    assert!(!table.total_capped);
    assert_eq!(
        table.rows,
        vec![
            vec![
                text("1"),
                text("alice"),
                text("12.50"),
                text("2024-01-02 03:04:05"),
                text("true"),
                Cell::Null,
                text("{\"a\": 1}"),
            ],
            vec![
                text("2"),
                text("bob"),
                text("0.05"),
                text("2024-02-03 04:05:06"),
                text("false"),
                text("x"),
                text("[1, 2]"),
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_odd_types_render_or_are_named() {
    let (_database, db) = mysql().await;
    let table = table(
        read(
            &db,
            "SELECT CAST(18446744073709551615 AS UNSIGNED), 1.5e0, X'DEADBEEF', \
                    CAST('12:34:56' AS TIME), DATE('2024-05-06'), NULL",
        )
        .await,
    );
    assert_eq!(
        table.rows[0],
        vec![
            text("18446744073709551615"),
            text("1.5"),
            text("\\xdeadbeef"),
            text("12:34:56"),
            text("2024-05-06"),
            Cell::Null,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_count_cap_stops_counting_and_says_so() {
    let (_database, db) = mysql().await;
    let table = table(
        db.run(
            "WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000) \
             SELECT x FROM c",
            Mode::Read,
            &limits(20_000, 1_000, 2, 10),
            &no_mask,
        )
        .await,
    );
    assert_eq!(table.total_rows, 10);
    assert!(table.total_capped);
    assert_eq!(table.rows, vec![vec![text("1")], vec![text("2")]]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_masked_columns_are_never_decoded() {
    let (_database, db) = mysql().await;
    let mask = |names: &[&str]| names.iter().map(|n| *n == "name").collect::<Vec<_>>();
    let table = table(
        db.run(
            "SELECT id, name FROM t ORDER BY id",
            Mode::Read,
            &generous(),
            &mask,
        )
        .await,
    );
    assert_eq!(table.masked, [false, true]);
    assert_eq!(table.rows[0], vec![text("1"), Cell::Masked]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_write_commits_and_reports_rows_affected() {
    let (_database, db) = mysql().await;
    let (affected, table) = done(write(&db, "UPDATE t SET note = 'z' WHERE id <= 2").await);
    assert_eq!(affected, Some(2));
    assert_eq!(table, None);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM t WHERE note = 'z'").await,
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_row_guard_rolls_back_a_delete_over_the_limit() {
    let (_database, db) = mysql().await;
    let result = db
        .run(
            "DELETE FROM t",
            Mode::Write,
            &limits(5_000, 2, 10, 1_000),
            &no_mask,
        )
        .await
        .expect("runs");
    assert_eq!(
        result,
        Executed::RolledBack {
            rows_affected: 3,
            row_limit: 2
        }
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_delete_in_read_mode_fails_read_only() {
    let (_database, db) = mysql().await;
    let message = database_error(read(&db, "DELETE FROM t").await);
    assert!(message.contains("READ ONLY transaction"), "{message}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_ddl_that_commits_implicitly_is_refused_in_read_mode() {
    let (_database, db) = mysql().await;
    for sql in ["DROP TABLE t", "TRUNCATE TABLE t", "COMMIT"] {
        refused(read(&db, sql).await);
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_commit_then_drop_is_refused_and_the_table_survives() {
    let (_database, db) = mysql().await;
    for mode in [Mode::Read, Mode::Write] {
        refused(
            db.run("COMMIT; DROP TABLE t", mode, &generous(), &no_mask)
                .await,
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_statement_timeout_stops_the_statement() {
    let (_database, db) = mysql().await;
    let started = Instant::now();
    let result = db
        .run(
            "SELECT SLEEP(60)",
            Mode::Read,
            &limits(300, 1_000, 10, 1_000),
            &no_mask,
        )
        .await;
    assert_eq!(result, Err(ExecError::Timeout(Duration::from_millis(300))));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_session_changes_do_not_outlive_their_run() {
    let (_database, db) = mysql().await;
    done(write(&db, "SET SESSION sql_mode = 'ANSI_QUOTES'").await);
    // With ANSI_QUOTES "x" would be a column; in the pinned mode it is a string.
    for _ in 0..6 {
        let table = table(read(&db, "SELECT \"x\" AS v").await);
        assert_eq!(table.rows[0], vec![text("x")]);
    }
}

async fn mysql_with_cascade_and_trigger() -> (MySqlDatabase, TargetDb) {
    let database = MySqlDatabase::create().await;
    let pool = database.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE orders (id INT PRIMARY KEY, note TEXT) ENGINE=InnoDB; \
         CREATE TABLE order_items (id INT, order_id INT, \
           CONSTRAINT items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE) \
           ENGINE=InnoDB; \
         CREATE TABLE audit (order_id INT) ENGINE=InnoDB; \
         CREATE TRIGGER audit_orders AFTER DELETE ON orders FOR EACH ROW \
           INSERT INTO audit VALUES (OLD.id); \
         INSERT INTO orders (id, note) \
           WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) \
           SELECT x, 'x' FROM c; \
         ANALYZE TABLE orders;",
    )
    .execute(&pool)
    .await
    .expect("create the tables");
    pool.close().await;
    let target = MySqlTarget::connect(&database.url, 2)
        .await
        .expect("target");
    (database, TargetDb::MySql(target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_estimate_gives_rows_and_names_cascades_and_triggers() {
    let (_database, db) = mysql_with_cascade_and_trigger().await;
    let estimate = db
        .estimate(
            "DELETE FROM orders WHERE id <= 100",
            &["orders".to_string()],
            Duration::from_secs(5),
        )
        .await
        .expect("estimate");
    let rows = estimate.rows.expect("a row estimate");
    assert!((50..=1000).contains(&rows), "estimate {rows}");
    let notes = estimate.notes.join("\n");
    assert!(
        notes.contains("order_items") && notes.contains("ON DELETE CASCADE"),
        "{notes}"
    );
    assert!(
        notes.contains("orders has triggers (audit_orders)"),
        "{notes}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders").await, "1000");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, "0");
    let refused = db
        .estimate("SELECT 1; DELETE FROM orders", &[], Duration::from_secs(5))
        .await;
    assert!(matches!(refused, Err(ExecError::Refused(_))), "{refused:?}");
}

// -------------------------------------------------------------------------------------------
// SQLite

async fn sqlite() -> (SqliteFile, TargetDb) {
    sqlite_with(1, "").await
}

async fn sqlite_with(max_connections: u32, extra_setup: &str) -> (SqliteFile, TargetDb) {
    let file = SqliteFile::create();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&file.url())
        .await
        .expect("open the file");
    let setup = format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC, created TEXT, \
                         active BOOLEAN, note TEXT, doc TEXT, raw BLOB); \
         INSERT INTO t VALUES \
           (1, 'alice', 12.5, '2024-01-02 03:04:05', 1, NULL, '{{\"a\": 1}}', X'DEADBEEF'), \
           (2, 'bob', 0.05, '2024-02-03 04:05:06', 0, 'x', '[1, 2]', NULL), \
           (3, 'carol', -7, '2024-03-04 05:06:07', NULL, 'y', 'null', NULL); \
         {extra_setup}"
    );
    sqlx::raw_sql(&setup)
        .execute(&pool)
        .await
        .expect("create the test table");
    pool.close().await;
    let target = SqliteTarget::connect(&file.url(), max_connections)
        .await
        .expect("a SQLite target");
    (file, TargetDb::Sqlite(target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_keeps_the_first_rows_with_their_types_and_counts_all() {
    let (_file, db) = sqlite().await;
    let table = table(
        db.run(
            "SELECT id, name, amount, created, active, note, doc, raw FROM t ORDER BY id",
            Mode::Read,
            &limits(5_000, 1_000, 2, 1_000),
            &no_mask,
        )
        .await,
    );
    assert_eq!(
        table.columns,
        ["id", "name", "amount", "created", "active", "note", "doc", "raw"]
    );
    assert_eq!(table.total_rows, 3);
    assert!(!table.total_capped);
    assert_eq!(
        table.rows,
        vec![
            vec![
                text("1"),
                text("alice"),
                text("12.5"),
                text("2024-01-02 03:04:05"),
                text("true"),
                Cell::Null,
                text("{\"a\": 1}"),
                text("\\xdeadbeef"),
            ],
            vec![
                text("2"),
                text("bob"),
                text("0.05"),
                text("2024-02-03 04:05:06"),
                text("false"),
                text("x"),
                text("[1, 2]"),
                Cell::Null,
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_count_cap_stops_counting_and_says_so() {
    let (_file, db) = sqlite().await;
    let table = table(
        db.run(
            "WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
            Mode::Read,
            &limits(20_000, 1_000, 2, 50),
            &no_mask,
        )
        .await,
    );
    assert_eq!(table.total_rows, 50);
    assert!(table.total_capped);
    assert_eq!(table.rows, vec![vec![text("1")], vec![text("2")]]);
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_masked_columns_are_never_decoded() {
    let (_file, db) = sqlite().await;
    let mask = |names: &[&str]| names.iter().map(|n| *n == "name").collect::<Vec<_>>();
    let table = table(
        db.run(
            "SELECT id, name FROM t ORDER BY id",
            Mode::Read,
            &generous(),
            &mask,
        )
        .await,
    );
    assert_eq!(table.masked, [false, true]);
    assert_eq!(table.rows[0], vec![text("1"), Cell::Masked]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_commits_and_reports_rows_affected() {
    let (_file, db) = sqlite().await;
    let (affected, table) = done(write(&db, "UPDATE t SET note = 'z' WHERE id <= 2").await);
    assert_eq!(affected, Some(2));
    assert_eq!(table, None);
    assert_eq!(
        count(&db, "SELECT count(*) FROM t WHERE note = 'z'").await,
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_row_guard_rolls_back_a_delete_over_the_limit() {
    let (_file, db) = sqlite().await;
    let result = db
        .run(
            "DELETE FROM t",
            Mode::Write,
            &limits(5_000, 2, 10, 1_000),
            &no_mask,
        )
        .await
        .expect("runs");
    assert_eq!(
        result,
        Executed::RolledBack {
            rows_affected: 3,
            row_limit: 2
        }
    );
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_fail_in_read_mode() {
    let (_file, db) = sqlite().await;
    for sql in ["DELETE FROM t", "INSERT INTO t (id) VALUES (9)"] {
        let message = database_error(read(&db, sql).await);
        assert!(message.contains("readonly"), "{sql}: {message}");
    }
    // Switching query_only off does not open the read-only connection for writing.
    let _ = read(&db, "PRAGMA query_only = OFF").await;
    database_error(read(&db, "DELETE FROM t").await);
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_several_statements_are_refused_and_the_table_survives() {
    let (_file, db) = sqlite().await;
    for (sql, mode) in [
        ("SELECT 1; DROP TABLE t", Mode::Read),
        ("SELECT 1; DROP TABLE t", Mode::Write),
        ("COMMIT; DROP TABLE t", Mode::Write),
    ] {
        refused(db.run(sql, mode, &generous(), &no_mask).await);
    }
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_runaway_query_is_interrupted_at_the_timeout() {
    let (_file, db) = sqlite_with(1, "").await;
    let started = Instant::now();
    let result = db
        .run(
            "WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT count(*) FROM c",
            Mode::Read,
            &limits(300, 1_000, 10, 1_000),
            &no_mask,
        )
        .await;
    assert_eq!(result, Err(ExecError::Timeout(Duration::from_millis(300))));
    assert!(started.elapsed() < Duration::from_secs(20));
    // The only read connection is free again: the statement really stopped (a runaway query
    // would hold it for good).
    let started = Instant::now();
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_estimate_parses_and_names_cascades_and_triggers() {
    let (_file, db) = sqlite_with(
        2,
        "CREATE TABLE items (id INTEGER, t_id INTEGER REFERENCES t (id) ON DELETE CASCADE); \
         CREATE TABLE audit (t_id INTEGER); \
         CREATE TRIGGER audit_t AFTER DELETE ON t BEGIN INSERT INTO audit VALUES (OLD.id); END;",
    )
    .await;
    let estimate = db
        .estimate(
            "DELETE FROM t WHERE id = 1",
            &["t".to_string()],
            Duration::from_secs(5),
        )
        .await
        .expect("estimate");
    assert_eq!(estimate.rows, None);
    let notes = estimate.notes.join("\n");
    assert!(
        notes.contains("items") && notes.contains("ON DELETE CASCADE"),
        "{notes}"
    );
    assert!(notes.contains("t has triggers (audit_t)"), "{notes}");
    let missing = db
        .estimate("DELETE FROM nowhere", &[], Duration::from_secs(5))
        .await;
    assert!(
        matches!(&missing, Err(ExecError::Database(m)) if m.contains("no such table")),
        "{missing:?}"
    );
    let several = db
        .estimate("SELECT 1; DROP TABLE t", &[], Duration::from_secs(5))
        .await;
    assert!(matches!(several, Err(ExecError::Refused(_))), "{several:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM t").await, "3");
    db.ping().await.expect("ping");
}
