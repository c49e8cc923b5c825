//! Every trap of DESIGN.md section 5, and the guarantees of `classify`: fail closed, never panic,
//! never overflow the stack.

use countersign_shared::sql::{
    classify, Category, Classification, ClassifyError, ClassifyOptions, Dialect, Flag,
};

fn pg(sql: &str) -> Classification {
    classify(sql, Dialect::Postgres, &ClassifyOptions::default())
}

fn in_dialect(dialect: Dialect, sql: &str) -> Classification {
    classify(sql, dialect, &ClassifyOptions::default())
}

fn only(c: &Classification) -> &countersign_shared::sql::StatementClass {
    assert!(c.is_ok(), "expected a classification, got {:?}", c.error);
    assert_eq!(c.statements.len(), 1, "expected one statement: {c:?}");
    &c.statements[0]
}

fn tables(list: &[countersign_shared::sql::TableName]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn assert_not_read(c: &Classification) {
    assert_ne!(c.category, Category::Read, "classified read: {c:?}");
    assert!(!c.is_read());
}

#[test]
fn a_plain_select_is_a_read_with_its_tables() {
    let c = pg(
        "SELECT o.id, u.name FROM public.orders o JOIN Users u ON u.id = o.user_id WHERE o.id = 42",
    );
    let s = only(&c);
    assert_eq!(c.category, Category::Read);
    assert_eq!(s.verbs, ["SELECT"]);
    assert_eq!(tables(&s.tables_read), ["public.orders", "users"]);
    assert!(s.tables_written.is_empty());
    assert_eq!(s.has_where, None);
    assert!(s.flags.is_empty());
}

#[test]
fn data_modifying_cte_is_a_write() {
    let c = pg("WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d");
    let s = only(&c);
    assert_eq!(s.category, Category::Write);
    assert!(s.flags.contains(&Flag::WritableCte));
    assert_eq!(tables(&s.tables_written), ["orders"]);
    assert!(s.verbs.contains(&"DELETE".to_string()));
}

#[test]
fn writable_cte_nested_in_a_subquery_is_found() {
    let c = pg("SELECT * FROM (WITH u AS (UPDATE accounts SET balance = 0 RETURNING id) SELECT id FROM u) x");
    let s = only(&c);
    assert_eq!(s.category, Category::Write);
    assert_eq!(s.has_where, Some(false));
    assert!(s.flags.contains(&Flag::MissingWhere));
    assert!(s.flags.contains(&Flag::WritableCte));
}

#[test]
fn leading_with_before_dml_is_a_write_with_its_verb_first() {
    let c = pg("WITH old AS (SELECT id FROM orders WHERE created < now()) DELETE FROM orders WHERE id IN (SELECT id FROM old)");
    let s = only(&c);
    assert_eq!(s.category, Category::Write);
    assert_eq!(s.verbs[0], "DELETE");
    assert_eq!(s.has_where, Some(true));
    assert_eq!(tables(&s.tables_written), ["orders"]);
    assert_eq!(tables(&s.tables_read), ["orders"]);
}

#[test]
fn select_into_creates_a_table() {
    let s_ = pg("SELECT * INTO backup_orders FROM orders");
    let s = only(&s_);
    assert_eq!(s.category, Category::Ddl);
    assert!(s.flags.contains(&Flag::SelectInto));
    assert_eq!(tables(&s.tables_written), ["backup_orders"]);
}

#[test]
fn select_into_without_columns_is_refused() {
    // sqlparser reads this as a column named INTO aliased backup.
    let c = pg("SELECT INTO backup FROM orders");
    assert!(!c.is_ok());
    assert_eq!(c.category, Category::Unknown);
}

#[test]
fn explain_analyze_of_a_write_is_the_write() {
    for sql in [
        "EXPLAIN ANALYZE DELETE FROM orders",
        "EXPLAIN (ANALYZE) DELETE FROM orders",
        "EXPLAIN (ANALYZE true, COSTS off) DELETE FROM orders",
        "EXPLAIN (ANALYZE 1) DELETE FROM orders",
        "EXPLAIN (ANALYZE on) DELETE FROM orders",
    ] {
        let c = pg(sql);
        let s = only(&c);
        assert_eq!(s.category, Category::Write, "{sql}");
        assert!(s.flags.contains(&Flag::ExplainAnalyze), "{sql}");
    }
}

#[test]
fn explain_analyze_explicitly_off_is_not_flagged_but_is_still_judged_by_its_statement() {
    let c = pg("EXPLAIN (ANALYZE false) DELETE FROM orders");
    let s = only(&c);
    assert!(!s.flags.contains(&Flag::ExplainAnalyze));
    assert_eq!(s.category, Category::Write);
}

#[test]
fn explain_of_a_read_is_a_read() {
    assert!(pg("EXPLAIN SELECT * FROM orders").is_read());
    assert!(pg("EXPLAIN ANALYZE SELECT * FROM orders WHERE id = 1").is_read());
}

#[test]
fn prepare_is_judged_by_what_it_prepares() {
    let c = pg("PREPARE wipe AS DELETE FROM orders");
    let s = only(&c);
    assert_eq!(s.category, Category::Write);
    assert!(s.flags.contains(&Flag::Prepare));
    assert_eq!(tables(&s.tables_written), ["orders"]);
}

#[test]
fn execute_of_an_unseen_statement_is_unknown() {
    assert_eq!(pg("EXECUTE wipe").category, Category::Unknown);
}

#[test]
fn locking_clauses_are_writes() {
    for sql in [
        "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
        "SELECT * FROM orders FOR SHARE",
        "SELECT * FROM orders FOR UPDATE SKIP LOCKED",
        "SELECT * FROM (SELECT * FROM orders FOR UPDATE) o",
    ] {
        let c = pg(sql);
        let s = only(&c);
        assert_eq!(s.category, Category::Write, "{sql}");
        assert!(s.flags.contains(&Flag::LockingClause), "{sql}");
    }
}

#[test]
fn locking_clauses_sqlparser_cannot_read_are_refused() {
    // sqlparser 0.63 knows no FOR NO KEY UPDATE (PostgreSQL) or LOCK IN SHARE MODE (MySQL).
    assert_not_read(&pg("SELECT * FROM orders FOR NO KEY UPDATE"));
    assert_not_read(&in_dialect(
        Dialect::Mysql,
        "SELECT * FROM orders LOCK IN SHARE MODE",
    ));
}

#[test]
fn side_effect_functions_are_never_reads() {
    let cases = [
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            Category::Admin,
        ),
        ("SELECT pg_cancel_backend(123)", Category::Admin),
        ("SELECT pg_read_file('/etc/passwd')", Category::Admin),
        ("SELECT * FROM pg_ls_dir('.')", Category::Admin),
        ("SELECT lo_import('/etc/passwd')", Category::Write),
        ("SELECT lo_export(16384, '/tmp/x')", Category::Admin),
        (
            "SELECT query_to_xml('DELETE FROM orders', true, false, '')",
            Category::Admin,
        ),
        (
            "SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(a int)",
            Category::Admin,
        ),
        (
            "SELECT set_config('search_path', 'evil', false)",
            Category::Session,
        ),
        ("SELECT nextval('orders_id_seq')", Category::Write),
        ("SELECT setval('orders_id_seq', 1)", Category::Write),
        ("SELECT pg_advisory_lock(1)", Category::Session),
        ("SELECT pg_sleep(100)", Category::Session),
        ("SELECT * FROM pg_sleep(100)", Category::Session),
        ("SELECT pg_catalog.pg_reload_conf()", Category::Admin),
        (
            "SELECT table_to_xml('salaries', true, false, '')",
            Category::Admin,
        ),
        (
            "SELECT id FROM orders WHERE pg_notify('ch', 'x') IS NOT NULL",
            Category::Write,
        ),
    ];
    for (sql, category) in cases {
        let c = pg(sql);
        let s = only(&c);
        assert_eq!(s.category, category, "{sql}");
        assert!(s.flags.contains(&Flag::SideEffectFunction), "{sql}");
        assert!(!s.risky_functions.is_empty(), "{sql}");
    }
}

#[test]
fn mysql_and_sqlite_side_effect_functions_are_never_reads() {
    for sql in [
        "SELECT SLEEP(10)",
        "SELECT GET_LOCK('x', 10)",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT BENCHMARK(1000000, MD5('x'))",
    ] {
        assert_not_read(&in_dialect(Dialect::Mysql, sql));
    }
    assert_eq!(
        in_dialect(Dialect::Sqlite, "SELECT load_extension('/tmp/evil.so')").category,
        Category::Admin
    );
}

#[test]
fn unknown_functions_fail_closed_unless_declared_pure() {
    let c = pg("SELECT my_schema.do_things(id) FROM orders");
    assert_eq!(c.category, Category::Unknown);
    assert!(only(&c).flags.contains(&Flag::UnknownFunction));
    // A built-in name qualified with another schema may be a user's function of that name.
    assert_eq!(pg("SELECT public.lower('X')").category, Category::Unknown);

    let mut options = ClassifyOptions::default();
    options.pure_functions.insert("my_schema.do_things".into());
    let c = classify(
        "SELECT my_schema.do_things(id) FROM orders",
        Dialect::Postgres,
        &options,
    );
    assert!(c.is_read());
}

#[test]
fn builtin_functions_keep_a_read_a_read() {
    assert!(pg("SELECT count(*), max(total), lower(name), coalesce(a, b), now() - interval '1 day', jsonb_build_object('a', 1) FROM orders GROUP BY name").is_read());
    assert!(pg("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t").is_read());
    assert!(pg("SELECT * FROM generate_series(1, 10) g").is_read());
    assert!(pg("SELECT pg_catalog.now()").is_read());
    assert!(in_dialect(
        Dialect::Mysql,
        "SELECT DATE_FORMAT(NOW(), '%Y'), IFNULL(a, 0), GROUP_CONCAT(b) FROM t GROUP BY c"
    )
    .is_read());
    assert!(in_dialect(
        Dialect::Sqlite,
        "SELECT strftime('%Y', created), ifnull(a, 0), group_concat(b) FROM t"
    )
    .is_read());
}

#[test]
fn from_only_names_the_real_table() {
    let c = pg("SELECT * FROM ONLY payroll");
    assert!(c.is_read());
    assert_eq!(tables(&only(&c).tables_read), ["payroll"]);
    let c = pg("DELETE FROM ONLY payroll WHERE id = 1");
    let s = only(&c);
    assert_eq!(s.category, Category::Write);
    assert_eq!(tables(&s.tables_written), ["payroll"]);
    assert!(!tables(&s.tables_read).contains(&"only".to_string()));
}

#[test]
fn from_only_with_parentheses_is_refused() {
    // sqlparser reads `ONLY (payroll)` as a call to a function named ONLY.
    let c = pg("SELECT * FROM ONLY (payroll)");
    assert!(!c.is_ok());
}

#[test]
fn tables_of_drop_grant_vacuum_copy_truncate_are_named() {
    let cases: [(&str, Category, &[&str]); 6] = [
        (
            "DROP TABLE orders, public.users",
            Category::Ddl,
            &["orders", "public.users"],
        ),
        (
            "GRANT SELECT ON payroll TO intern",
            Category::Privilege,
            &["payroll"],
        ),
        (
            "REVOKE ALL ON TABLE payroll FROM intern",
            Category::Privilege,
            &["payroll"],
        ),
        ("VACUUM FULL orders", Category::Admin, &["orders"]),
        ("TRUNCATE orders", Category::Ddl, &["orders"]),
        (
            "COPY orders FROM '/tmp/orders.csv'",
            Category::Admin,
            &["orders"],
        ),
    ];
    for (sql, category, written) in cases {
        let c = pg(sql);
        let s = only(&c);
        assert_eq!(s.category, category, "{sql}");
        assert_eq!(tables(&s.tables_written), written, "{sql}");
    }
    let c = pg("COPY payroll TO '/tmp/payroll.csv'");
    let s = only(&c);
    assert_eq!(s.category, Category::Admin);
    assert_eq!(tables(&s.tables_read), ["payroll"]);
}

#[test]
fn table_functions_are_not_tables() {
    let c = pg("SELECT * FROM generate_series(1, 3) AS g(n) JOIN orders ON true");
    assert_eq!(tables(&only(&c).tables_read), ["orders"]);
}

#[test]
fn unquoted_names_fold_as_the_target_folds_them() {
    let c = pg(r#"SELECT * FROM Public.Orders JOIN "MixedCase" ON true"#);
    assert_eq!(
        tables(&only(&c).tables_read),
        ["public.orders", "MixedCase"]
    );
    let c = in_dialect(Dialect::Mysql, "SELECT * FROM Orders JOIN `Users` ON true");
    assert_eq!(tables(&only(&c).tables_read), ["Orders", "Users"]);
    let c = in_dialect(
        Dialect::Sqlite,
        r#"SELECT * FROM Orders JOIN "Users" ON true"#,
    );
    assert_eq!(tables(&only(&c).tables_read), ["orders", "users"]);
}

#[test]
fn cte_names_hide_only_where_they_are_in_scope() {
    // The CTE's own body names the real table (non-recursive WITH).
    let c = pg("WITH salaries AS (SELECT * FROM salaries WHERE id = 1) SELECT * FROM salaries");
    assert_eq!(tables(&only(&c).tables_read), ["salaries"]);
    // A CTE in a subquery does not hide the outer query's real table of the same name.
    let c = pg("SELECT * FROM payroll, (WITH payroll AS (SELECT 1 AS x) SELECT x FROM payroll) p");
    assert_eq!(tables(&only(&c).tables_read), ["payroll"]);
    // A plain CTE reference is not a table.
    let c = pg("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent");
    assert_eq!(tables(&only(&c).tables_read), ["orders"]);
    // A later CTE may refer to an earlier one.
    let c = pg("WITH a AS (SELECT * FROM orders), b AS (SELECT * FROM a) SELECT * FROM b");
    assert_eq!(tables(&only(&c).tables_read), ["orders"]);
}

#[test]
fn copy_from_stdin_is_refused_so_nothing_hides_behind_it() {
    for sql in [
        "COPY orders FROM STDIN",
        "COPY orders FROM STDIN; DROP TABLE orders",
    ] {
        let c = pg(sql);
        assert!(!c.is_ok(), "{sql}");
        assert_eq!(c.category, Category::Unknown);
    }
}

#[test]
fn empty_and_comment_only_input_is_refused() {
    for sql in [
        "",
        "   \n\t",
        "-- just a comment",
        "/* block */",
        ";",
        " ; ; ",
    ] {
        let c = pg(sql);
        assert_eq!(c.error, Some(ClassifyError::Empty), "{sql:?}");
        assert_eq!(c.category, Category::Unknown);
    }
}

#[test]
fn executable_comments_are_refused_in_every_dialect() {
    for dialect in Dialect::ALL {
        for sql in [
            "SELECT 1 /*! ; DROP TABLE orders */",
            "SELECT /*!50000 1, */ 2",
            "SELECT 1 /*M! , sleep(10) */",
            "SELECT 1 /*m!100000 x */",
        ] {
            let c = in_dialect(dialect, sql);
            assert_eq!(
                c.error,
                Some(ClassifyError::ExecutableComment),
                "{dialect}: {sql}"
            );
        }
    }
}

#[test]
fn double_dash_is_read_the_way_each_database_reads_it() {
    // PostgreSQL and SQLite: `--1` starts a comment. MySQL: it is minus minus one, and the rest
    // of the line is SQL.
    let c = pg("SELECT 1 --1; DROP TABLE orders");
    assert!(c.is_read());
    let c = in_dialect(Dialect::Sqlite, "SELECT 1 --1; DROP TABLE orders");
    assert!(c.is_read());
    let c = in_dialect(Dialect::Mysql, "SELECT 1 --1; DROP TABLE orders");
    assert_eq!(c.category, Category::Ddl);
    assert_eq!(c.statements.len(), 2);
}

#[test]
fn nested_block_comments_follow_the_dialect() {
    // PostgreSQL nests block comments: everything up to the last */ is comment.
    let c = pg("/* outer /* inner */ DROP TABLE orders; */ SELECT 1");
    assert!(c.is_read());
    // MySQL does not: the DROP is real SQL.
    let c = in_dialect(
        Dialect::Mysql,
        "/* outer /* inner */ DROP TABLE orders; /* */ SELECT 1",
    );
    assert_not_read(&c);
}

#[test]
fn multi_statement_input_is_flagged_and_summarised_by_its_worst_part() {
    let c = pg("SELECT 1; DELETE FROM orders");
    assert!(c.is_ok());
    assert_eq!(c.statements.len(), 2);
    assert_eq!(c.category, Category::Write);
    assert!(c
        .statements
        .iter()
        .all(|s| s.flags.contains(&Flag::MultiStatement)));
    // COMMIT; DROP inside what looks like one read: still two statements.
    let c = pg("SELECT 1; COMMIT; DROP TABLE orders");
    assert_eq!(c.statements.len(), 3);
    assert_eq!(c.category, Category::Ddl);
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let sql = format!("SELECT '{}'", "x".repeat(70_000));
    let c = pg(&sql);
    assert!(matches!(
        c.error,
        Some(ClassifyError::TooLarge { max: 65536, .. })
    ));
    let message = c.error.expect("error").to_string();
    assert!(
        message.contains("over the limit of 65536 bytes"),
        "{message}"
    );

    let options = ClassifyOptions {
        max_input_bytes: 10,
        ..ClassifyOptions::default()
    };
    assert!(!classify("SELECT 12345678", Dialect::Postgres, &options).is_ok());
}

#[test]
fn unparseable_input_is_unknown_with_the_parsers_reason() {
    let c = pg("SELEC * FROM orders");
    assert_eq!(c.category, Category::Unknown);
    let message = c.error.expect("error").to_string();
    assert!(
        message.starts_with("the SQL could not be parsed"),
        "{message}"
    );
}

#[test]
fn statement_kinds_get_their_categories() {
    let cases = [
        ("INSERT INTO orders (id) VALUES (1)", Category::Write),
        ("UPDATE orders SET total = 0 WHERE id = 1", Category::Write),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            Category::Write,
        ),
        ("CREATE TABLE x (id int)", Category::Ddl),
        ("ALTER TABLE orders ADD COLUMN note text", Category::Ddl),
        ("CREATE INDEX ON orders (created)", Category::Ddl),
        ("CREATE ROLE intern", Category::Privilege),
        ("ALTER ROLE intern SUPERUSER", Category::Privilege),
        ("DROP ROLE intern", Category::Privilege),
        ("SET ROLE admin", Category::Privilege),
        ("SET SESSION AUTHORIZATION admin", Category::Privilege),
        ("SET statement_timeout = 0", Category::Session),
        ("SET TRANSACTION READ WRITE", Category::Session),
        ("BEGIN", Category::Session),
        ("COMMIT", Category::Session),
        ("SHOW search_path", Category::Read),
        ("VACUUM", Category::Admin),
        ("ANALYZE orders", Category::Admin),
        (
            "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE",
            Category::Admin,
        ),
        ("CALL do_things()", Category::Unknown),
        ("NOTIFY channel", Category::Write),
        ("LISTEN channel", Category::Session),
        (
            "DECLARE c CURSOR FOR SELECT * FROM orders",
            Category::Session,
        ),
    ];
    for (sql, category) in cases {
        let c = pg(sql);
        assert!(c.is_ok(), "{sql}: {:?}", c.error);
        assert_eq!(c.category, category, "{sql}");
    }
    assert_eq!(
        in_dialect(Dialect::Mysql, "SET GLOBAL max_connections = 1").category,
        Category::Admin
    );
    assert_eq!(
        in_dialect(Dialect::Mysql, "SELECT @x := 1").category,
        Category::Session
    );
    assert_eq!(
        in_dialect(Dialect::Mysql, "SELECT id INTO @x FROM t LIMIT 1").category,
        Category::Session
    );
    assert_eq!(
        in_dialect(Dialect::Sqlite, "ATTACH DATABASE '/tmp/x.db' AS x").category,
        Category::Admin
    );
    assert_not_read(&in_dialect(Dialect::Sqlite, "PRAGMA journal_mode = DELETE"));
    assert_not_read(&in_dialect(Dialect::Sqlite, "PRAGMA integrity_check = 5"));
    assert!(in_dialect(Dialect::Sqlite, "PRAGMA integrity_check").is_read());
}

#[test]
fn update_and_delete_report_their_where_clause() {
    let c = pg("UPDATE orders SET total = 0");
    let s = only(&c);
    assert_eq!(s.has_where, Some(false));
    assert!(s.flags.contains(&Flag::MissingWhere));
    let c = pg("DELETE FROM orders WHERE id = 42");
    let s = only(&c);
    assert_eq!(s.has_where, Some(true));
    assert!(!s.flags.contains(&Flag::MissingWhere));
    assert_eq!(pg("INSERT INTO t VALUES (1)").statements[0].has_where, None);
}

#[test]
fn mysql_multi_table_delete_names_every_table_it_may_write() {
    let c = in_dialect(
        Dialect::Mysql,
        "DELETE o FROM orders o JOIN users u ON u.id = o.user_id WHERE u.banned",
    );
    let s = only(&c);
    assert_eq!(s.category, Category::Write);
    let written = tables(&s.tables_written);
    assert!(written.contains(&"orders".to_string()));
    assert!(
        !written.contains(&"o".to_string()),
        "an alias is not a table: {written:?}"
    );
}

/// Runs `f` on a thread with a deliberately small stack, as a tokio worker or a fuzzer would.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("thread spawns")
        .join()
        .expect("classification did not panic or overflow")
}

#[test]
fn deep_and_long_inputs_neither_overflow_nor_panic_even_on_a_small_stack() {
    let inputs = vec![
        format!("SELECT {}", vec!["1"; 30_000].join("+")),
        format!(
            "SELECT * FROM t WHERE {}",
            vec!["a = 1"; 6_000].join(" OR ")
        ),
        format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
        format!("SELECT {}1", "NOT ".repeat(10_000)),
        format!("SELECT {}1", "-".repeat(30_000)),
        format!("SELECT a{}", "->b".repeat(15_000)),
        format!("SELECT a{}", "[1]".repeat(15_000)),
        format!("SELECT {}{}", "f(".repeat(5_000), ")".repeat(5_000)),
        format!(
            "SELECT * FROM {}",
            vec!["(SELECT * FROM t"; 2_000].join(" JOIN ")
        ),
    ];
    for sql in inputs {
        for dialect in Dialect::ALL {
            let sql = sql.clone();
            let c = on_small_stack(move || {
                let options = ClassifyOptions {
                    max_input_bytes: 1 << 20,
                    ..ClassifyOptions::default()
                };
                classify(&sql, dialect, &options)
            });
            // Whatever the outcome, a refusal is never a read.
            if !c.is_ok() {
                assert_eq!(c.category, Category::Unknown);
            }
        }
    }
}
