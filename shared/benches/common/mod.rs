//! What the benchmarks share: the statement sample and the policy decisions run against.

use std::path::PathBuf;

use std::hint::black_box;

use countersign_shared::policy::{Identity, Policy, Principal, Request};
use countersign_shared::sql::{classify, ClassifyOptions, Dialect};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Every 8th statement of the PostgreSQL regression corpus that PostgreSQL accepts
/// (`../shared/corpus/pg_regress_labeled.jsonl`), or a small built-in sample, loudly, without it.
pub fn sample() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/pg_regress_labeled.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "!!! corpus not found at {}: benchmarking a small built-in sample instead",
            path.display()
        );
        return vec![
            "SELECT o.id, sum(i.price) FROM orders o JOIN items i ON i.order_id = o.id WHERE o.created > now() - interval '1 day' GROUP BY o.id".into(),
            "DELETE FROM orders WHERE id = 42".into(),
            "UPDATE users SET email = lower(email) WHERE id IN (SELECT user_id FROM orders)".into(),
            "CREATE TABLE t (id int primary key, note text)".into(),
        ];
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|row| {
            row["pg_ok"].as_bool() == Some(true) && row["psql_vars"].as_bool() == Some(false)
        })
        .filter_map(|row| row["sql"].as_str().map(str::to_string))
        .step_by(8)
        .collect()
}

/// The example policy from `deploy/`.
pub fn example_policy() -> Policy {
    Policy::from_str(
        include_str!("../../../deploy/policy.example.toml"),
        "policy.example.toml",
    )
    .expect("the example policy loads")
}

/// The requester of every benchmarked decision: an engineer.
pub fn requester() -> Identity {
    Identity {
        principal: Principal::parse("console:alice").expect("principal"),
        groups: Vec::new(),
    }
}

/// The baseline: a bare sqlparser parse of every statement.
pub fn parse_all(statements: &[String]) {
    for sql in statements {
        let _ = black_box(Parser::parse_sql(&PostgreSqlDialect {}, black_box(sql)));
    }
}

/// Classifies every statement.
pub fn classify_all(statements: &[String], options: &ClassifyOptions) {
    for sql in statements {
        black_box(classify(black_box(sql), Dialect::Postgres, options));
    }
}

/// Decides every statement on `prod` for `requester`.
pub fn decide_all(statements: &[String], policy: &Policy, requester: &Identity) {
    for sql in statements {
        black_box(policy.decide(&Request {
            target: "prod",
            requester,
            sql: black_box(sql),
            estimated_rows: Some(10),
        }));
    }
}
