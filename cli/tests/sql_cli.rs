//! `countersign sql classify` as scripts use it: text, JSON, JSON Lines, exit codes.

mod common;

use common::{countersign, stdout};
use serde_json::Value;

#[test]
fn text_output_explains_a_hidden_write() {
    let out = countersign(
        &["sql", "classify", "--dialect", "postgres"],
        Some("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d"),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("category: write\n"), "{text}");
    assert!(text.contains("tables written: orders"), "{text}");
    assert!(
        text.contains("flags: writable_cte, missing_where, returning"),
        "{text}"
    );
}

#[test]
fn json_output_has_exactly_the_public_shape() {
    let out = countersign(
        &["sql", "classify", "--dialect", "mysql", "--format", "json"],
        Some("DELETE FROM Orders WHERE id = 1"),
    );
    assert_eq!(out.status.code(), Some(0));
    let value: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let keys: Vec<&String> = value.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["category", "error", "ok", "statements"]);
    assert_eq!(value["ok"], true);
    assert_eq!(value["error"], Value::Null);
    assert_eq!(value["category"], "write");
    let statement = &value["statements"][0];
    let keys: Vec<&String> = statement.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "category",
            "flags",
            "tables_read",
            "tables_written",
            "verbs",
            "where"
        ]
    );
    assert_eq!(statement["verbs"], serde_json::json!(["DELETE"]));
    assert_eq!(statement["tables_written"], serde_json::json!(["Orders"]));
    assert_eq!(statement["where"], true);
    assert_eq!(statement["flags"], serde_json::json!([]));
}

#[test]
fn unclassifiable_input_exits_1_with_the_reason() {
    let out = countersign(
        &["sql", "classify", "--format", "json"],
        Some("SELECT 1 /*! , sleep(1) */"),
    );
    assert_eq!(out.status.code(), Some(1));
    let value: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(value["ok"], false);
    assert_eq!(value["category"], "unknown");
    assert_eq!(value["statements"], serde_json::json!([]));
    assert!(value["error"]
        .as_str()
        .expect("error")
        .contains("executable comments"));
}

#[test]
fn jsonl_gives_one_line_per_input_line_in_order_with_the_worst_category_on_top() {
    let input = [
        r#"{"sql": "SELECT 1", "id": 1}"#,
        r#"{"sql": "SELECT 1; GRANT ALL ON t TO bob; DELETE FROM t"}"#,
        r#"not json"#,
        r#"{"query": "SELECT 1"}"#,
        r#"{"sql": ""}"#,
        r#"{"sql": "SELECT * FROM t FOR UPDATE"}"#,
    ]
    .join("\n");
    // Enough lines to cross a batch boundary and exercise the parallel path.
    let mut big = format!("{input}\n{}", r#"{"sql": "UPDATE t SET a = 1"}"#);
    for _ in 0..5000 {
        big.push('\n');
        big.push_str(r#"{"sql": "SELECT a FROM t WHERE b = 2"}"#);
    }
    big.push('\n');
    big.push_str(r#"{"sql": "DROP TABLE t"}"#);
    let out = countersign(&["sql", "classify", "--input", "jsonl"], Some(&big));
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5008);
    let categories: Vec<&str> = lines
        .iter()
        .map(|l| l["category"].as_str().expect("category"))
        .collect();
    assert_eq!(
        &categories[..7],
        [
            "read",
            "privilege",
            "unknown",
            "unknown",
            "unknown",
            "write",
            "write"
        ]
    );
    assert!(categories[7..5007].iter().all(|c| *c == "read"));
    assert_eq!(categories[5007], "ddl");
    assert_eq!(lines[1]["statements"].as_array().expect("array").len(), 3);
    assert!(lines[2]["error"]
        .as_str()
        .expect("error")
        .starts_with("line 3: "));
    assert!(lines[3]["error"]
        .as_str()
        .expect("error")
        .starts_with("line 4: "));
    assert_eq!(lines[4]["ok"], false);
}

#[test]
fn the_size_cap_can_be_set() {
    let out = countersign(
        &["sql", "classify", "--max-bytes", "8"],
        Some("SELECT 123456789"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("over the limit of 8 bytes"));
}

#[test]
fn an_unknown_dialect_is_a_usage_error() {
    let out = countersign(
        &["sql", "classify", "--dialect", "oracle"],
        Some("SELECT 1"),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown dialect 'oracle'"), "{err}");
}
